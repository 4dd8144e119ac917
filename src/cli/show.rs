//! `pwless show PLANFILE`: a saved plan, and whether the state still matches it.

use std::path::PathBuf;

use anyhow::Context;

use crate::plan::Plan;
use crate::render::Style;
use crate::state::StateStore;

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// A plan saved with `pwless plan -o FILE`.
    pub plan_file: PathBuf,
    /// The state file the plan is checked against [default: state/STACK.json beside the plan file].
    #[arg(long, value_name = "PATH")]
    pub state: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ShowArgs, style: Style) -> anyhow::Result<u8> {
    let bytes = std::fs::read(&args.plan_file)
        .with_context(|| format!("cannot read plan file {}", args.plan_file.display()))?;
    let plan: Plan = serde_json::from_slice(&bytes).map_err(|error| {
        super::UserError(format!(
            "{} is not a pwless plan file: {error}",
            args.plan_file.display()
        ))
    })?;
    if args.json {
        super::print(&crate::render::plan::json(&plan))?;
    } else {
        super::print(&crate::render::plan::human(&plan, style))?;
    }
    let state_path = args
        .state
        .clone()
        .unwrap_or_else(|| super::default_state_path(&args.plan_file, &plan.stack));
    let mut store = StateStore::open(&state_path, "show")?;
    let state = store.read()?;
    match plan.check_current(state.as_ref()) {
        Ok(()) => {
            eprintln!(
                "The plan matches state {} and can be applied.",
                state_path.display()
            );
            Ok(super::EXIT_OK)
        }
        Err(stale) => Err(super::UserError(format!("the plan is stale: {stale}")).into()),
    }
}
