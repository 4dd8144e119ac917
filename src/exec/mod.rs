//! The executor: carries out a [`Plan`] through a [`Provider`].
//!
//! - The plan's changes become operations: a create or update is one `Apply`, a delete one
//!   `Destroy`, a replace a `Destroy` followed by an `Apply`. Edges mean "must happen after":
//!   an `Apply` after the `Apply`s of what it depends on; a `Destroy` after the `Destroy`s of
//!   what depends on it, and after the in-place updates of those (a route table drops its NAT
//!   route before the NAT gateway goes).
//! - The walk starts every ready operation at once, up to `parallelism`, skips the dependents
//!   of a failure and reports every error at the end.
//! - Every side effect is journaled ([`journal`]): the pending operation is persisted before
//!   the call, the resource right after it.
//! - The first Ctrl-C stops starting new operations; what is in flight finishes and is saved.

pub mod journal;
pub mod recover;
pub mod refresh;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::task::JoinSet;

use crate::plan::{Action, Plan, ResourceChange};
use crate::provider::{Inputs, Provider};
use crate::state::{Operation, ResourceState};

pub use journal::Journal;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Destroy,
    Apply,
}

#[derive(Debug)]
struct Op {
    step: Step,
    change: usize,
}

/// What happened to each operation.
#[derive(Debug, Default)]
pub struct Report {
    /// (address, what was done, how long it took)
    pub done: Vec<(String, &'static str, Duration)>,
    /// (address, error message)
    pub failed: Vec<(String, String)>,
    /// Not started: a dependency failed, or apply was interrupted.
    pub skipped: Vec<String>,
    pub interrupted: bool,
    /// Every finished operation's start and end (seconds since the apply began) and the
    /// operations it had to wait for, for `--timings`.
    pub timings: Vec<Timing>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Timing {
    pub address: String,
    pub step: &'static str,
    pub start: f64,
    pub end: f64,
    /// Indexes into the timings of the operations this one came after.
    pub after: Vec<usize>,
}

impl Report {
    pub fn succeeded(&self) -> bool {
        self.failed.is_empty() && self.skipped.is_empty()
    }
}

pub struct Options {
    pub parallelism: usize,
    /// Set by the first Ctrl-C: start nothing new.
    pub stop: Arc<AtomicBool>,
}

/// Carries out `plan`. The caller has checked that the plan is current for the journal's state
/// and that `provider` supports every kind in it.
pub async fn apply<P: Provider + 'static>(
    plan: &Plan,
    journal: Arc<Journal>,
    provider: Arc<P>,
    options: &Options,
) -> Report {
    let changes: Arc<Vec<ResourceChange>> = Arc::new(plan.resource_changes.clone());
    let (ops, after) = operations(&changes, &journal.snapshot().await.resources);
    let mut waiting: Vec<usize> = vec![0; ops.len()];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); ops.len()];
    for (op, befores) in after.iter().enumerate() {
        waiting[op] = befores.len();
        for &before in befores {
            dependents[before].push(op);
        }
    }

    let mut report = Report::default();
    let mut ready: Vec<usize> = (0..ops.len())
        .filter(|op| waiting[*op] == 0)
        .rev()
        .collect();
    let mut blocked = vec![false; ops.len()];
    let mut running: JoinSet<(usize, Result<Done, String>, Duration, Duration)> = JoinSet::new();
    let began = Instant::now();
    // Per operation in flight: when it started and when it next says it is still at it.
    let mut in_flight: BTreeMap<usize, (Instant, Duration)> = BTreeMap::new();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut finished_at: Vec<Option<(f64, f64)>> = vec![None; ops.len()];
    let mut first_failure: HashMap<String, String> = HashMap::new();
    let ops = Arc::new(ops);

    loop {
        while running.len() < options.parallelism.max(1) && !options.stop.load(Ordering::SeqCst) {
            let Some(op) = ready.pop() else { break };
            let (changes, journal, provider, ops) = (
                changes.clone(),
                journal.clone(),
                provider.clone(),
                ops.clone(),
            );
            in_flight.insert(op, (Instant::now(), HEARTBEAT));
            running.spawn(async move {
                let offset = began.elapsed();
                let started = Instant::now();
                let result = run(
                    &ops[op],
                    &changes[ops[op].change],
                    &journal,
                    provider.as_ref(),
                )
                .await;
                (op, result, offset, started.elapsed())
            });
        }
        // Long operations (EKS, Aurora) say they are still at it every HEARTBEAT of their own.
        let finished = loop {
            tokio::select! {
                finished = running.join_next() => break finished,
                _ = ticker.tick() => {
                    for (op, (since, next)) in in_flight.iter_mut() {
                        let elapsed = since.elapsed();
                        if elapsed >= *next {
                            *next += HEARTBEAT;
                            let change = &changes[ops[*op].change];
                            progress(&format!(
                                "{}: still {}... [{}s elapsed]",
                                change.address,
                                verb(ops[*op].step, change.action),
                                elapsed.as_secs()
                            ));
                        }
                    }
                }
            }
        };
        let Some(finished) = finished else {
            break;
        };
        let (op, result, offset, elapsed) = match finished {
            Ok(outcome) => outcome,
            Err(panic) => {
                // A task that panicked is a bug; report it and keep the others going.
                report.failed.push((
                    "(executor)".into(),
                    format!("an operation panicked: {panic}"),
                ));
                continue;
            }
        };
        in_flight.remove(&op);
        let address = changes[ops[op].change].address.clone();
        match result {
            Ok(Done { what, id }) => {
                finished_at[op] = Some((offset.as_secs_f64(), (offset + elapsed).as_secs_f64()));
                // The resource's id once known, as Terraform shows it: `[id=vpc-0abc…]`.
                let id = id.map(|id| format!(" [id={id}]")).unwrap_or_default();
                progress(&format!(
                    "{address}: {what} after {:.1}s{id}",
                    elapsed.as_secs_f64()
                ));
                report.done.push((address, what, elapsed));
                for &next in &dependents[op] {
                    waiting[next] -= 1;
                    if waiting[next] == 0 && !blocked[next] {
                        ready.push(next);
                    }
                }
            }
            Err(message) => {
                // One cause, one message: a failure like an earlier one points at it.
                match first_failure.get(&message) {
                    Some(first) => progress(&format!(
                        "{address}: failed after {:.1}s (the same error as {first})",
                        elapsed.as_secs_f64()
                    )),
                    None => {
                        progress(&format!(
                            "{address}: failed after {:.1}s: {message}",
                            elapsed.as_secs_f64()
                        ));
                        first_failure.insert(message.clone(), address.clone());
                    }
                }
                report.failed.push((address, message));
                let mut pending = dependents[op].clone();
                while let Some(next) = pending.pop() {
                    if !blocked[next] {
                        blocked[next] = true;
                        pending.extend(dependents[next].iter().copied());
                    }
                }
            }
        }
    }
    report.interrupted = options.stop.load(Ordering::SeqCst);
    let mut index_of = vec![None; ops.len()];
    for (op, times) in finished_at.iter().enumerate() {
        if let Some((start, end)) = times {
            index_of[op] = Some(report.timings.len());
            report.timings.push(Timing {
                address: changes[ops[op].change].address.clone(),
                step: if ops[op].step == Step::Destroy {
                    "destroy"
                } else {
                    "apply"
                },
                start: *start,
                end: *end,
                after: Vec::new(),
            });
        }
    }
    for (op, befores) in after.iter().enumerate() {
        if let Some(index) = index_of[op] {
            report.timings[index].after = befores
                .iter()
                .filter_map(|before| index_of[*before])
                .collect();
        }
    }
    let finished: std::collections::HashSet<&str> = report
        .done
        .iter()
        .map(|(address, ..)| address.as_str())
        .chain(report.failed.iter().map(|(address, _)| address.as_str()))
        .collect();
    for op in ops.iter() {
        let address = &changes[op.change].address;
        if !finished.contains(address.as_str()) && !report.skipped.contains(address) {
            report.skipped.push(address.clone());
        }
    }
    report
}

/// How often an operation in flight says it is still running (Terraform's interval).
const HEARTBEAT: Duration = Duration::from_secs(10);

/// The progressive verb of an operation: `creating`, `updating`, `destroying`.
fn verb(step: Step, action: Action) -> &'static str {
    match (step, action) {
        (Step::Destroy, _) => "destroying",
        (Step::Apply, Action::Update) => "updating",
        (Step::Apply, _) => "creating",
    }
}

fn progress(line: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{line}");
}

/// The operations of a plan and, per operation, the operations it must come after.
fn operations(changes: &[ResourceChange], prior: &[ResourceState]) -> (Vec<Op>, Vec<Vec<usize>>) {
    let mut ops = Vec::new();
    let mut apply_of: HashMap<&str, usize> = HashMap::new();
    let mut destroy_of: HashMap<&str, usize> = HashMap::new();
    for (index, change) in changes.iter().enumerate() {
        if matches!(change.action, Action::Delete | Action::Replace) {
            destroy_of.insert(change.address.as_str(), ops.len());
            ops.push(Op {
                step: Step::Destroy,
                change: index,
            });
        }
        if matches!(
            change.action,
            Action::Create | Action::Update | Action::Replace
        ) {
            apply_of.insert(change.address.as_str(), ops.len());
            ops.push(Op {
                step: Step::Apply,
                change: index,
            });
        }
    }
    // Who depended on whom when last applied.
    let mut state_dependents: HashMap<&str, Vec<&str>> = HashMap::new();
    for resource in prior {
        for dependency in &resource.dependencies {
            state_dependents
                .entry(dependency.as_str())
                .or_default()
                .push(resource.address.as_str());
        }
    }
    let action_of: HashMap<&str, Action> = changes
        .iter()
        .map(|change| (change.address.as_str(), change.action))
        .collect();
    let forgotten: std::collections::HashSet<&str> = changes
        .iter()
        .filter(|change| change.forget)
        .map(|change| change.address.as_str())
        .collect();
    let dependencies_of: HashMap<&str, &[String]> = prior
        .iter()
        .map(|resource| (resource.address.as_str(), resource.dependencies.as_slice()))
        .collect();
    let mut after = vec![Vec::new(); ops.len()];
    for (index, op) in ops.iter().enumerate() {
        let change = &changes[op.change];
        let address = change.address.as_str();
        match op.step {
            Step::Apply => {
                if let Some(&destroy) = destroy_of.get(address) {
                    after[index].push(destroy);
                }
                for dependency in &change.depends_on {
                    if let Some(&apply) = apply_of.get(dependency.as_str()) {
                        after[index].push(apply);
                    }
                }
            }
            // A forgotten resource leaves the state only after what contained it is really
            // gone: if the cluster's delete fails, its users stay recorded (they still exist).
            Step::Destroy if change.forget => {
                for dependency in dependencies_of.get(address).copied().unwrap_or_default() {
                    if let Some(&destroy) = destroy_of.get(dependency.as_str())
                        && !forgotten.contains(dependency.as_str())
                    {
                        after[index].push(destroy);
                    }
                }
            }
            Step::Destroy => {
                for dependent in state_dependents.get(address).into_iter().flatten() {
                    // A forgotten dependent goes after this one (above), not before.
                    if forgotten.contains(dependent) {
                        continue;
                    }
                    if let Some(&destroy) = destroy_of.get(dependent) {
                        after[index].push(destroy);
                    }
                    // A pure delete waits for dependents updated in place to let go of it.
                    if change.action == Action::Delete
                        && action_of.get(dependent) == Some(&Action::Update)
                        && let Some(&apply) = apply_of.get(dependent)
                    {
                        after[index].push(apply);
                    }
                }
            }
        }
    }
    (ops, after)
}

/// What a finished operation did, and the resource's id when it has one.
struct Done {
    what: &'static str,
    id: Option<String>,
}

impl Done {
    fn new(what: &'static str, id: Option<String>) -> Self {
        Done { what, id }
    }
}

/// One operation, journaled.
async fn run<P: Provider>(
    op: &Op,
    change: &ResourceChange,
    journal: &Journal,
    provider: &P,
) -> Result<Done, String> {
    let address = change.address.as_str();
    match op.step {
        Step::Destroy => {
            let Some(mut resource) = journal.resource(address).await else {
                return Ok(Done::new("already gone", None));
            };
            if change.forget {
                // It went with what contained it (the plan says which): no call to make.
                journal.deleted(address).await?;
                return Ok(Done::new("removed from the state", resource.id));
            }
            // The final snapshot the plan named (and showed) is the one taken.
            if let Some(snapshot) = &change.final_snapshot {
                resource.inputs.insert(
                    "final_snapshot_identifier".into(),
                    Value::String(snapshot.clone()),
                );
            }
            progress(&format!("{address}: destroying..."));
            journal
                .begin(
                    address,
                    change.kind,
                    Operation::Delete,
                    resource.id.clone().unwrap_or_default(),
                    None,
                    Vec::new(),
                )
                .await?;
            if let Err(error) = provider.delete(&resource).await {
                settle_failed(journal, address, &error, false).await?;
                return Err(error.message);
            }
            journal.deleted(address).await?;
            Ok(Done::new("destroyed", resource.id))
        }
        Step::Apply => {
            let inputs = resolve(change, journal).await?;
            let existing = if change.action == Action::Update {
                // The provider changes what is there now: the observed inputs when the plan
                // refreshed (drift), else the recorded ones.
                journal.resource(address).await.map(|mut resource| {
                    if let Some(before) = &change.before {
                        resource.inputs = before.clone();
                    }
                    resource
                })
            } else {
                None
            };
            match existing {
                Some(resource) => {
                    progress(&format!(
                        "{address}: updating ({})...",
                        change.changed.join(", ")
                    ));
                    journal
                        .begin(
                            address,
                            change.kind,
                            Operation::Update,
                            resource.id.clone().unwrap_or_default(),
                            None,
                            Vec::new(),
                        )
                        .await?;
                    let applied = match provider.update(&resource, &inputs, &change.changed).await {
                        Ok(applied) => applied,
                        Err(error) => {
                            settle_failed(journal, address, &error, false).await?;
                            return Err(error.message);
                        }
                    };
                    let id = applied.id.clone();
                    journal
                        .recorded(
                            address,
                            change.kind,
                            inputs,
                            applied,
                            change.depends_on.clone(),
                        )
                        .await?;
                    Ok(Done::new("updated", id))
                }
                None => {
                    progress(&format!("{address}: creating..."));
                    let token = format!("tag:pwless:address={address}");
                    journal
                        .begin(
                            address,
                            change.kind,
                            Operation::Create,
                            token,
                            Some(inputs.clone()),
                            change.depends_on.clone(),
                        )
                        .await?;
                    let applied = match provider.create(address, change.kind, &inputs).await {
                        Ok(applied) => applied,
                        Err(error) => {
                            settle_failed(
                                journal,
                                address,
                                &error,
                                change.kind.create_is_idempotent(),
                            )
                            .await?;
                            return Err(error.message);
                        }
                    };
                    let id = applied.id.clone();
                    journal
                        .recorded(
                            address,
                            change.kind,
                            inputs,
                            applied,
                            change.depends_on.clone(),
                        )
                        .await?;
                    Ok(Done::new("created", id))
                }
            }
        }
    }
}

/// After a failed call: an operation that may have taken effect stays pending, for the next
/// run to settle (adopt a create, refresh the rest); one that surely did not (the error is
/// [`crate::provider::ErrorKind::Local`]: nothing reached the service) or that is safe to
/// repeat (`repeatable`) is cleared, and the next plan simply plans it again.
async fn settle_failed(
    journal: &Journal,
    address: &str,
    error: &crate::provider::ProviderError,
    repeatable: bool,
) -> Result<(), String> {
    if repeatable || error.kind == crate::provider::ErrorKind::Local {
        journal.forget_pending(address).await?;
    }
    Ok(())
}

/// The change's inputs with every "known after apply" value looked up in the state as it is
/// now (its dependencies have been applied).
async fn resolve(change: &ResourceChange, journal: &Journal) -> Result<Inputs, String> {
    let mut inputs: BTreeMap<String, Value> = change.after.clone().unwrap_or_default();
    if change.after_unknown.is_empty() {
        return Ok(inputs);
    }
    let state = journal.snapshot().await;
    for (name, expr) in &change.after_unknown {
        let value = expr
            .resolve(&mut |reference| {
                state
                    .resource(&reference.address)
                    .and_then(|resource| resource.outputs.get(&reference.output))
                    .cloned()
            })
            .ok_or_else(|| {
                format!("input `{name}` is still unknown: a dependency did not produce its output")
            })?;
        inputs.insert(name.clone(), value);
    }
    Ok(inputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgotten_users_leave_the_state_only_after_their_cluster_is_deleted() {
        // Before, a user's state entry went first (dependents first), so a failed cluster
        // delete left roles that still existed but were no longer recorded.
        let stack = crate::spec::parse_str(
            std::path::Path::new("stack.yaml"),
            include_str!("../../stack.example.yaml"),
        )
        .unwrap();
        let graph = crate::graph::ResourceGraph::from_stack(&stack).unwrap();
        let state = crate::testing::applied_state(&stack.name, &graph);
        let plan = crate::plan::plan(
            &stack,
            &graph,
            Some(&state),
            &crate::plan::ObservedState::new(),
            crate::plan::Mode::Destroy,
        );
        let (ops, after) = operations(&plan.resource_changes, &state.resources);
        let index_of = |address: &str| {
            ops.iter()
                .position(|op| plan.resource_changes[op.change].address == address)
                .unwrap()
        };
        let cluster = index_of("aws_rds_cluster.main");
        for user in [
            "postgresql_role.user[app_user]",
            "postgresql_grant.user[app_user]",
        ] {
            let user = index_of(user);
            assert!(
                after[user].contains(&cluster),
                "{user} must wait for the cluster"
            );
            assert!(
                !after[cluster].contains(&user),
                "the cluster must not wait for {user}"
            );
        }
    }
}
