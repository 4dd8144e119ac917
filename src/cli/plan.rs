//! `pwless plan`: the changes apply would make, or destroy would, with `--destroy`.

use std::path::PathBuf;

use anyhow::Context;

use super::engine;
use super::{EXIT_CHANGES, EXIT_OK, StackArgs};
use crate::plan::{Mode, ObservedState};
use crate::provider::Providers;
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
    /// How many resources may be read at once.
    #[arg(long, default_value_t = engine::DEFAULT_PARALLELISM, value_name = "N")]
    pub parallelism: usize,
}

pub fn run(args: PlanArgs, style: Style) -> anyhow::Result<u8> {
    let file = args.stack.file()?;
    let (stack, graph) = super::load_graph(&file)?;
    let location = args.stack.location(&stack)?;
    let mode = if args.destroy {
        Mode::Destroy
    } else {
        Mode::Normal
    };

    let plan = engine::runtime()?.block_on(async {
        // With no local state there is nothing to lock, settle or read: plan offline and leave
        // nothing behind (no state directory, no lock file), as `terraform plan` does, unless
        // a first apply holds the lock (its state is being written). A state that appears
        // meanwhile makes a saved plan of this one stale (`Plan::check_current`).
        if let crate::state::Location::Local(path) = &location
            && engine::read_state(&location, &stack.name).await?.is_none()
        {
            crate::state::local::LocalStore::refuse_if_locked(path)?;
            return anyhow::Ok(engine::make_plan(
                &stack,
                &graph,
                &crate::state::State::new(&stack.name),
                false,
                &ObservedState::new(),
                mode,
            ));
        }
        let opened = engine::open_state(&location, &stack.name, "plan").await?;
        // Without recorded resources or pending operations there is nothing to read: the
        // plan is made offline, with no credentials needed.
        let needs_cloud = engine::needs_cloud(&opened.state, args.refresh);
        engine::with_journal(opened, async |journal, existed| {
            if !needs_cloud {
                let state = journal.snapshot().await;
                return Ok(engine::make_plan(
                    &stack,
                    &graph,
                    &state,
                    existed,
                    &ObservedState::new(),
                    mode,
                ));
            }
            let provider = Providers::for_stack(&stack, super::stack_dir(&file)).await;
            let settings =
                crate::db::Settings::for_stack(&stack.database.connection, super::stack_dir(&file));
            let (exists, observed) = engine::prepare(
                &journal,
                existed,
                &provider,
                engine::Preparation {
                    refresh: args.refresh,
                    parallelism: args.parallelism,
                    mode,
                    // The plan's JSON is the one thing on stdout: recovery's lines go to stderr.
                    events: &engine::Progress { json: false },
                    database: &settings,
                },
            )
            .await?;
            let state = journal.snapshot().await;
            let plan = engine::make_plan(&stack, &graph, &state, exists, &observed, mode);
            // What apply would refuse, said now (the plan itself is still shown).
            let findings = super::preflight::check(&plan, &provider.config, Some(&settings)).await;
            for problem in &findings.problems {
                eprintln!("warning: apply would refuse: {problem}");
            }
            for warning in &findings.warnings {
                eprintln!("warning: {warning}");
            }
            Ok(plan)
        })
        .await
    })?;

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
