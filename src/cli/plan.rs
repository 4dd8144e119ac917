//! `pwless plan`: the changes apply would make, or destroy would, with `--destroy`.

use std::path::PathBuf;

use anyhow::Context;

use super::{EXIT_CHANGES, EXIT_OK, StackArgs};
use crate::plan::{Mode, ObservedState};
use crate::render::Style;
use crate::state::StateStore;

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// Plan the destruction of everything in the state.
    #[arg(long)]
    pub destroy: bool,
    /// Print the documented JSON plan (docs/plan-json.md) instead of the human one.
    #[arg(long)]
    pub json: bool,
    /// Exit 0 when there are no changes, 2 when there are, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Save the plan to FILE, for `pwless show` and, later, `pwless apply FILE`.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: Option<PathBuf>,
}

pub fn run(args: PlanArgs, style: Style) -> anyhow::Result<u8> {
    let (stack, graph) = super::load_graph(&args.stack.file)?;
    let state_path = args.stack.state_path(&stack.name);
    let mut store = StateStore::open(&state_path, "plan")?;
    let prior = match store.read()? {
        Some(state) if state.stack != stack.name => {
            return Err(super::UserError(format!(
                "state file {} belongs to stack `{}`, not `{}`; pass another --state path",
                state_path.display(),
                state.stack,
                stack.name
            ))
            .into());
        }
        other => other,
    };
    drop(store);

    // Refreshing (reading live resources) comes with the AWS providers; until then the plan
    // is against the recorded state alone.
    let observed = ObservedState::new();
    let mode = if args.destroy {
        Mode::Destroy
    } else {
        Mode::Normal
    };
    let plan = crate::plan::plan(&stack.name, &graph, prior.as_ref(), &observed, mode);

    if let Some(out) = &args.out {
        let bytes = crate::render::plan::json(&plan);
        crate::state::store::atomic_write(out, bytes.as_bytes())
            .with_context(|| format!("cannot save the plan to {}", out.display()))?;
        eprintln!("Saved the plan to {}.", out.display());
    }
    if args.json {
        super::print(&crate::render::plan::json(&plan))?;
    } else {
        super::print(&crate::render::plan::human(&plan, style))?;
    }
    Ok(if args.detailed_exitcode && plan.has_changes() {
        EXIT_CHANGES
    } else {
        EXIT_OK
    })
}
