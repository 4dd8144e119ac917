//! `pwless show PLANFILE`: a saved plan, and whether the state still matches it.

use std::path::PathBuf;

use anyhow::Context;

use crate::plan::Plan;
use crate::render::Style;

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// A plan saved with `pwless plan -o FILE`.
    pub plan_file: PathBuf,
    /// A local state file to check the plan against [default: the plan's state backend, else
    /// state/STACK.json beside the plan file].
    #[arg(long, value_name = "PATH")]
    pub state: Option<PathBuf>,
    /// Print the documented JSON plan (docs/plan-json.md) instead of the human one.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ShowArgs, style: Style) -> anyhow::Result<u8> {
    let bytes = std::fs::read(&args.plan_file)
        .with_context(|| format!("cannot read plan file {}", args.plan_file.display()))?;
    let plan = Plan::from_saved(&bytes).map_err(|error| {
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
    let location = super::plan_location(&plan, &args.plan_file, args.state.as_deref())?;
    let state = super::engine::block_on(crate::ops::run::read_state(&location, &plan.stack))??;
    match plan.check_current(state.as_ref()) {
        Ok(()) => {
            eprintln!(
                "The plan matches {} and can be applied.",
                location.describe()
            );
            Ok(super::EXIT_OK)
        }
        Err(stale) => Err(super::UserError(format!("the plan is stale: {stale}")).into()),
    }
}
