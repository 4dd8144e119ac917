//! `pwless plan`: the changes apply would make, or destroy would, with `--destroy`.

use std::path::PathBuf;

use anyhow::Context;

use super::engine;
use super::{EXIT_CHANGES, EXIT_OK, StackArgs};
use crate::plan::Mode;
use crate::render::Style;

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
    /// Save the plan to FILE, for `pwless show FILE` and `pwless apply FILE`.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Read the live resources first (`--refresh=false` plans against the state alone).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub refresh: bool,
    /// Consent to the data loss the plan shows at ADDRESS, recorded in the saved plan (`-o`),
    /// so `pwless apply FILE` carries it out. Repeatable.
    #[arg(long = "allow-destroy", value_name = "ADDRESS")]
    pub allow_destroy: Vec<String>,
    /// How many resources may be read at once.
    #[arg(long, default_value_t = engine::DEFAULT_PARALLELISM, value_name = "N")]
    pub parallelism: usize,
}

pub fn run(args: PlanArgs, style: Style) -> anyhow::Result<u8> {
    let file = args.stack.file()?;
    let mode = if args.destroy {
        Mode::Destroy
    } else {
        Mode::Normal
    };
    let (stack, graph) = match mode {
        Mode::Normal => super::load_graph(&file)?,
        Mode::Destroy => super::load_for_destroy(&file)?,
    };
    let location = args.stack.location(&stack)?;

    let crate::ops::run::Planned { plan, findings } = engine::runtime()?.block_on(async {
        let interrupts = engine::Interrupts::watch();
        crate::ops::run::plan(crate::ops::run::PlanRequest {
            stack: &stack,
            graph: &graph,
            stack_dir: super::stack_dir(&file),
            location: &location,
            mode,
            refresh: args.refresh,
            parallelism: args.parallelism,
            // The plan's JSON is the one thing on stdout: recovery's lines go to stderr.
            events: &engine::Progress { json: false },
            interrupt: Some(&interrupts.pressed),
        })
        .await
    })?;
    let mut plan = plan;
    // The consent is recorded where the plan destroys data; the rest is said, not kept.
    for address in &args.allow_destroy {
        if plan.data_losses().any(|change| change.address == *address) {
            plan.allowed_destroy.push(address.clone());
        } else {
            eprintln!("warning: --allow-destroy {address}: this plan destroys no data there");
        }
    }
    for note in &findings.notes {
        eprintln!("{note}");
    }
    // What apply would refuse, said now (the plan itself is still shown).
    for problem in &findings.problems {
        eprintln!("warning: apply would refuse: {problem}");
    }
    for warning in &findings.warnings {
        eprintln!("warning: {warning}");
    }

    if let Some(out) = &args.out {
        let bytes = crate::render::plan::json(&plan);
        crate::state::local::atomic_write(out, bytes.as_bytes())
            .with_context(|| format!("cannot save the plan to {}", out.display()))?;
        eprintln!(
            "Saved the plan to {}; `pwless apply {}` applies exactly this.",
            out.display(),
            out.display()
        );
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
