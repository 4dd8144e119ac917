//! `pwless apply` and `pwless destroy`: plan (or load a saved plan), confirm, carry it out.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use super::engine::{self, DEFAULT_PARALLELISM};
use super::{EXIT_OK, StackArgs, UserError};
use crate::exec::{self, Options};
use crate::plan::{Mode, Plan};
use crate::render::Style;

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// The stack file [default: pwless.yaml, else stack.yaml, in the current directory; not
    /// used with a saved PLANFILE].
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Apply this saved plan (`pwless plan -o FILE`) exactly; refused if the state moved since.
    #[arg(value_name = "PLANFILE", conflicts_with = "file")]
    pub plan_file: Option<PathBuf>,
    /// A local state file [default: the stack's (or saved plan's) `state:` section, else
    /// state/STACK.json beside the stack or plan file].
    #[arg(long, value_name = "PATH")]
    pub state: Option<PathBuf>,
    /// Consent to the data loss the plan shows at ADDRESS (the Aurora cluster or an instance
    /// deleted or replaced, the EKS cluster replaced); without it such a plan changes nothing.
    /// Repeatable.
    #[arg(long = "allow-destroy", value_name = "ADDRESS")]
    pub allow_destroy: Vec<String>,
    #[command(flatten)]
    pub common: RunArgs,
}

#[derive(Debug, clap::Args)]
pub struct DestroyArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    #[command(flatten)]
    pub common: RunArgs,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Do not ask for confirmation.
    #[arg(long)]
    pub auto_approve: bool,
    /// How many operations may run at once.
    #[arg(long, default_value_t = DEFAULT_PARALLELISM, value_name = "N")]
    pub parallelism: usize,
    /// Read the live resources before planning (`--refresh=false` plans against the state alone).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub refresh: bool,
    /// Write each operation's start, end and prerequisites as JSON to FILE (for benchmarks).
    #[arg(long, value_name = "FILE")]
    pub timings: Option<PathBuf>,
    /// Stream the run as JSON lines on stdout (docs/plan-json.md): the plan, each operation's
    /// events, the summary and the outputs. Needs --auto-approve or a saved plan.
    #[arg(long)]
    pub json: bool,
}

pub fn apply(args: ApplyArgs, style: Style) -> anyhow::Result<u8> {
    if args.plan_file.is_none() {
        refuse_json_without_approval(&args.common)?;
    }
    match &args.plan_file {
        Some(plan_file) => apply_saved(
            plan_file,
            args.state.clone(),
            &args.common,
            &args.allow_destroy,
            style,
        ),
        None => {
            let stack = StackArgs {
                file: args.file.clone(),
                state: args.state.clone(),
            };
            plan_and_run(
                &stack,
                &args.common,
                &args.allow_destroy,
                Mode::Normal,
                style,
            )
        }
    }
}

pub fn destroy(args: DestroyArgs, style: Style) -> anyhow::Result<u8> {
    refuse_json_without_approval(&args.common)?;
    // A destroy is consent in itself.
    plan_and_run(&args.stack, &args.common, &[], Mode::Destroy, style)
}

/// `--json` leaves no place for the question: it needs `--auto-approve` (a saved plan was
/// approved when it was reviewed). Checked before anything is read or locked.
fn refuse_json_without_approval(common: &RunArgs) -> Result<(), UserError> {
    if common.json && !common.auto_approve {
        return Err(UserError(
            "--json streams the run without asking for confirmation: add --auto-approve, or apply a saved plan (pwless plan -o FILE, then pwless apply FILE --json)".into(),
        ));
    }
    Ok(())
}

fn plan_and_run(
    stack_args: &StackArgs,
    common: &RunArgs,
    allow_destroy: &[String],
    mode: Mode,
    style: Style,
) -> anyhow::Result<u8> {
    let (stack, graph) = match mode {
        Mode::Normal => super::load_graph(&stack_args.file()?)?,
        Mode::Destroy => super::load_for_destroy(&stack_args.file()?)?,
    };
    let operation = if mode == Mode::Destroy {
        "destroy"
    } else {
        "apply"
    };
    let location = stack_args.location(&stack)?;
    let file = stack_args.file()?;
    let progress = engine::Progress { json: common.json };
    engine::runtime()?.block_on(async {
        let interrupts = engine::Interrupts::watch();
        crate::ops::run::plan_then(
            crate::ops::run::PlanRequest {
                stack: &stack,
                graph: &graph,
                stack_dir: super::stack_dir(&file),
                location: &location,
                mode,
                refresh: common.refresh,
                parallelism: common.parallelism,
                events: &progress,
                interrupt: Some(&interrupts.pressed),
            },
            operation,
            async |planned, live| {
                refuse_on_problems(planned.findings)?;
                let how = How {
                    common,
                    allow_destroy,
                    interrupts: &interrupts,
                    style,
                };
                run(planned.plan, live, &how).await
            },
        )
        .await
    })
}

fn apply_saved(
    plan_file: &PathBuf,
    state: Option<PathBuf>,
    common: &RunArgs,
    allow_destroy: &[String],
    style: Style,
) -> anyhow::Result<u8> {
    let bytes = std::fs::read(plan_file)
        .with_context(|| format!("cannot read plan file {}", plan_file.display()))?;
    let plan = Plan::from_saved(&bytes).map_err(|error| {
        UserError(format!(
            "{} is not a pwless plan file: {error}",
            plan_file.display()
        ))
    })?;
    let location = super::plan_location(&plan, plan_file, state.as_deref())?;
    let progress = engine::Progress { json: common.json };
    // A saved plan was reviewed already: it is applied as it is, with no new refresh and no
    // question.
    let common = RunArgs {
        auto_approve: true,
        parallelism: common.parallelism,
        refresh: common.refresh,
        timings: common.timings.clone(),
        json: common.json,
    };
    engine::runtime()?.block_on(async {
        let interrupts = engine::Interrupts::watch();
        crate::ops::run::saved_then(
            plan,
            &location,
            &progress,
            Some(&interrupts.pressed),
            async |planned, live| {
                refuse_on_problems(planned.findings)?;
                let how = How {
                    common: &common,
                    allow_destroy,
                    interrupts: &interrupts,
                    style,
                };
                run(planned.plan, live, &how).await
            },
        )
        .await
    })
}

/// How [`run`] carries out a plan.
struct How<'a> {
    common: &'a RunArgs,
    /// `--allow-destroy`: consent given now to the plan's data loss at these addresses.
    allow_destroy: &'a [String],
    interrupts: &'a engine::Interrupts,
    style: Style,
}

async fn run(plan: Plan, live: crate::ops::run::Live, how: &How<'_>) -> anyhow::Result<u8> {
    let How {
        common,
        allow_destroy,
        interrupts,
        style,
    } = *how;
    if common.json {
        json_line(&serde_json::json!({"type": "plan", "plan": &plan}))?;
    } else {
        super::print(&crate::render::plan::human(&plan, style))?;
    }
    if !plan.has_changes() {
        if common.json {
            json_line(&summary_record(&plan, &exec::Report::default(), &[]))?;
        }
        return Ok(EXIT_OK);
    }
    // Consent before the question: a plan that destroys data without it changes nothing.
    for unused in plan.check_consent(allow_destroy)? {
        eprintln!("warning: --allow-destroy {unused}: this plan destroys no data there");
    }
    if let Err(unsupported) = crate::ops::run::unsupported(&plan, &live.provider) {
        return Err(UserError(format!(
            "a saved plan cannot manage database users ({} of its resources: {}); nothing was changed. \
             Plan and apply with -f STACK, which reads the database settings from the stack",
            unsupported.len(),
            unsupported.join(", ")
        ))
        .into());
    }
    if !common.auto_approve && !confirm(plan.mode, &interrupts.pressed).await? {
        eprintln!("Nothing was changed.");
        return Ok(super::EXIT_ERROR);
    }
    interrupts.executing();
    let crate::ops::run::Executed {
        report,
        kept_snapshots,
        outputs,
    } = crate::ops::run::execute(
        &plan,
        &live,
        allow_destroy,
        &Options {
            parallelism: common.parallelism,
            stop: interrupts.stop.clone(),
            abort: interrupts.abort.clone(),
            events: Arc::new(engine::Progress { json: common.json }),
        },
    )
    .await?;
    let summary = report.summary();
    if common.json {
        json_line(&summary_record(&plan, &report, &kept_snapshots))?;
        if !outputs.is_empty() {
            json_line(&serde_json::json!({"type": "outputs", "outputs": outputs}))?;
        }
    }
    // After the summary: a file that cannot be written loses no line of the run.
    if let Some(path) = &common.timings {
        let text = serde_json::to_string_pretty(&report.timings)?;
        std::fs::write(path, text)
            .with_context(|| format!("cannot write timings to {}", path.display()))?;
    }
    // Said whatever else failed: the cluster is gone, its snapshot is what is left.
    for snapshot in &kept_snapshots {
        eprintln!("Kept the final snapshot {snapshot} of the Aurora cluster.");
    }
    // Terraform's words, which users know: a destroy run says so.
    let (done, stopped) = match plan.mode {
        crate::plan::Mode::Destroy => ("Destroy complete", "destroy stopped"),
        _ => ("Apply complete", "apply stopped"),
    };
    let crate::plan::Summary {
        add: added,
        change: changed,
        destroy: destroyed,
    } = summary;
    if report.succeeded() {
        eprintln!("\n{done}. Resources: {added} added, {changed} changed, {destroyed} destroyed.");
        // As `terraform apply` ends: what the stack now offers, as `pwless output` prints it.
        if !common.json && !outputs.is_empty() {
            super::print(&format!(
                "\nOutputs:\n\n{}",
                crate::ops::outputs::text(&outputs)
            ))?;
        }
        return Ok(EXIT_OK);
    }
    if report.aborted {
        // The lock is let go on the way out (`ops::run::with_journal`); main exits with 130.
        return Err(super::Interrupted {
            summary: format!(
                "{stopped}: {added} added, {changed} changed, {destroyed} destroyed; stopped by a second Ctrl-C"
            ),
            abandoned: report.abandoned.clone(),
        }
        .into());
    }
    let mut message = format!("{stopped}: {added} added, {changed} changed, {destroyed} destroyed");
    if report.interrupted {
        message.push_str("; interrupted");
    }
    if !report.failed.is_empty() {
        message.push('\n');
        message.push_str(&crate::render::grouped_errors(&report.failure_messages()));
    }
    if !report.skipped.is_empty() {
        message.push_str(&format!("\n  not started: {}", report.skipped.join(", ")));
    }
    message.push_str("\nThe state records everything that was done; run apply again to continue.");
    Err(UserError(message).into())
}

/// One `--json` line on stdout.
fn json_line(record: &serde_json::Value) -> anyhow::Result<()> {
    super::print(&format!("{record}\n"))
}

/// The `summary` line of `--json`: what was done, counted as the plan counts, and what failed
/// or did not start.
fn summary_record(
    plan: &Plan,
    report: &exec::Report,
    kept_snapshots: &[String],
) -> serde_json::Value {
    let summary = report.summary();
    let failed: Vec<serde_json::Value> = report
        .failed
        .iter()
        .map(|(address, error)| {
            serde_json::json!({"address": address, "error": crate::errors::chain(error), "code": error.code()})
        })
        .collect();
    serde_json::json!({
        "type": "summary",
        "mode": plan.mode,
        "succeeded": report.succeeded(),
        "interrupted": report.interrupted,
        "add": summary.add,
        "change": summary.change,
        "destroy": summary.destroy,
        "failed": failed,
        "not_started": report.skipped,
        "abandoned": report.abandoned,
        // The first, as before a stack could have several clusters; all of them below.
        "kept_final_snapshot": kept_snapshots.first(),
        "kept_final_snapshots": kept_snapshots,
    })
}

/// Says what the preflight did and its warnings; refuses the run, changing nothing, when it found problems:
/// all of them at once.
fn refuse_on_problems(findings: crate::ops::preflight::Findings) -> anyhow::Result<()> {
    for note in &findings.notes {
        eprintln!("{note}");
    }
    for warning in &findings.warnings {
        eprintln!("warning: {warning}");
    }
    match findings.problems.as_slice() {
        [] => Ok(()),
        [one] => Err(UserError(format!("{one}; nothing was changed")).into()),
        many => Err(UserError(format!(
            "{} problems; nothing was changed:\n  {}",
            many.len(),
            many.join("\n  ")
        ))
        .into()),
    }
}

/// Asks for `yes` on a terminal; refuses without one. Ctrl-C while it waits is
/// [`crate::ops::Cancelled`]. The answer is read on a thread of its own, so the runtime goes on
/// (an S3 lock keeps being renewed) and the question can be given up.
async fn confirm(mode: Mode, interrupted: &tokio::sync::Notify) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Err(UserError(
            "not applying without confirmation: run in a terminal to answer `yes`, or pass --auto-approve; nothing was changed".into(),
        )
        .into());
    }
    let (question, what) = match mode {
        Mode::Normal => ("Apply these changes? Only `yes` is accepted: ", "apply"),
        Mode::Destroy => (
            "Destroy all these resources? Only `yes` is accepted: ",
            "destroy",
        ),
    };
    eprint!("\n{question}");
    std::io::stderr().flush()?;
    let (answered, answer) = tokio::sync::oneshot::channel();
    // Left blocked on stdin if the question is given up: the process exits soon after.
    std::thread::spawn(move || {
        let mut answer = String::new();
        let read = std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .map(|_| answer);
        let _ = answered.send(read);
    });
    tokio::select! {
        answer = answer => Ok(answer?.map_err(anyhow::Error::from)?.trim() == "yes"),
        () = interrupted.notified() => Err(crate::ops::Cancelled(what).into()),
    }
}
