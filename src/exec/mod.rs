//! The executor: carries out a [`Plan`] through a [`Provider`].
//!
//! - The plan's changes become operations ([`Operation`]): a create or an update is one, a
//!   delete one, a replace a delete followed by a create. Edges mean "must happen after": a
//!   create or update after the creates and updates of what it depends on; a delete after the
//!   deletes of what depends on it, and after the in-place updates of those (a route table
//!   drops its NAT route before the NAT gateway goes).
//! - The walk starts every ready operation at once, up to `parallelism`, skips the dependents
//!   of a failure and reports every error at the end. A state that cannot be saved halts it:
//!   nothing more starts, and what is in flight finishes (and fails to save the same way).
//! - It prints nothing: progress goes to an [`Events`] sink as [`Event`]s.
//! - Every side effect is journaled ([`journal`]): the pending operation is persisted before
//!   the call, the resource right after it.
//! - The first Ctrl-C stops starting new operations; what is in flight finishes and is saved.
//!   A second abandons what is in flight: its pending operations stay in the state for the
//!   next run to settle, and the executor returns within a second ([`Options::abort`]).

pub mod event;
pub mod journal;
pub mod recover;
pub mod refresh;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::task::JoinSet;

use crate::plan::{Action, Plan, ResourceChange, Summary};
use crate::provider::{Inputs, Provider};
use crate::state::{Operation, ResourceState};

pub use event::{Event, Events, OpError, Outcome, Settlement};
pub use journal::Journal;

/// One step of a plan's change: a create or update is one operation, a delete one, a replace a
/// delete followed by a create.
#[derive(Debug)]
struct Op {
    operation: Operation,
    change: usize,
}

/// What happened to each operation.
#[derive(Debug, Default)]
pub struct Report {
    /// (address, outcome, how long it took)
    pub done: Vec<(String, Outcome, Duration)>,
    /// (address, why), in the order they failed.
    pub failed: Vec<(String, OpError)>,
    /// Not started: a dependency failed, the state could not be saved, or apply was
    /// interrupted.
    pub skipped: Vec<String>,
    pub interrupted: bool,
    /// [`Options::abort`] was set: the run stopped without waiting for what was in flight.
    pub aborted: bool,
    /// In flight when the run was aborted. Each may or may not have taken effect; its pending
    /// operation stays in the state, and the next run settles it.
    pub abandoned: Vec<String>,
    /// Every finished operation's start and end (seconds since the apply began) and the
    /// operations it had to wait for, for `--timings`.
    pub timings: Vec<Timing>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Timing {
    pub address: String,
    /// `apply` (a create or update) or `destroy`.
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

    /// What was done, counted as the plan counts it: every delete outcome is a destroy.
    pub fn summary(&self) -> Summary {
        let mut summary = Summary::default();
        for (_, outcome, _) in &self.done {
            match outcome {
                Outcome::Created => summary.add += 1,
                Outcome::Updated => summary.change += 1,
                Outcome::Destroyed | Outcome::AlreadyGone | Outcome::RemovedFromState => {
                    summary.destroy += 1
                }
            }
        }
        summary
    }

    /// The failures as (address, message), for rendering.
    pub fn failure_messages(&self) -> Vec<(String, String)> {
        self.failed
            .iter()
            .map(|(address, error)| (address.clone(), crate::errors::chain(error)))
            .collect()
    }
}

pub struct Options {
    pub parallelism: usize,
    /// Set by the first Ctrl-C: start nothing new.
    pub stop: Arc<AtomicBool>,
    /// Set by a second Ctrl-C: abandon what is in flight and return (looked at every second).
    pub abort: Arc<AtomicBool>,
    /// Where progress goes.
    pub events: Arc<dyn Events>,
}

/// Carries out `plan`. The caller has checked that the plan is current for the journal's state
/// and that `provider` supports every kind in it.
///
/// Never fails as a whole: every operation's outcome or error is in the [`Report`]. A failed
/// state write ([`OpError::State`]) stops the run: what is in flight finishes, nothing more
/// starts.
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

    let events = &options.events;
    let mut report = Report::default();
    let mut ready: Vec<usize> = (0..ops.len())
        .filter(|op| waiting[*op] == 0)
        .rev()
        .collect();
    let mut blocked = vec![false; ops.len()];
    type Finished = (usize, Result<Done, OpError>, Duration, Duration);
    let mut running: JoinSet<Finished> = JoinSet::new();
    let began = Instant::now();
    // Per operation in flight: when it started and when it next says it is still at it.
    let mut in_flight: BTreeMap<usize, (Instant, Duration)> = BTreeMap::new();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // An interval's first tick is at once: take it, so the walk first looks up after a second.
    ticker.tick().await;
    let mut finished_at: Vec<Option<(f64, f64)>> = vec![None; ops.len()];
    let mut first_failure: HashMap<String, String> = HashMap::new();
    // Set when the state could not be saved: nothing more may start.
    let mut halted = false;
    let ops = Arc::new(ops);

    loop {
        while running.len() < options.parallelism.max(1)
            && !halted
            && !options.stop.load(Ordering::SeqCst)
        {
            let Some(op) = ready.pop() else { break };
            let (changes, journal, provider, ops, events) = (
                changes.clone(),
                journal.clone(),
                provider.clone(),
                ops.clone(),
                events.clone(),
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
                    events.as_ref(),
                )
                .await;
                (op, result, offset, started.elapsed())
            });
        }
        // Long operations (EKS, Aurora) say they are still at it every HEARTBEAT of their own.
        let finished = loop {
            tokio::select! {
                finished = running.join_next() => break Some(finished),
                _ = ticker.tick() => {
                    if options.abort.load(Ordering::SeqCst) {
                        break None;
                    }
                    for (op, (since, next)) in in_flight.iter_mut() {
                        let elapsed = since.elapsed();
                        if elapsed >= *next {
                            *next += HEARTBEAT;
                            events.emit(Event::StillRunning {
                                address: changes[ops[*op].change].address.clone(),
                                operation: ops[*op].operation,
                                elapsed_seconds: elapsed.as_secs(),
                            });
                        }
                    }
                }
            }
        };
        let Some(finished) = finished else {
            // Aborted: the tasks in flight are dropped where they wait. Each one's pending
            // operation was saved before its call, so nothing is lost, only left to settle.
            report.aborted = true;
            report.abandoned = in_flight
                .keys()
                .map(|op| changes[ops[*op].change].address.clone())
                .collect();
            running.abort_all();
            while running.join_next().await.is_some() {}
            break;
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
                    OpError::Provider(crate::provider::ProviderError::permanent(format!(
                        "an operation panicked: {panic}"
                    ))),
                ));
                continue;
            }
        };
        in_flight.remove(&op);
        let address = changes[ops[op].change].address.clone();
        match result {
            Ok(Done { outcome, id }) => {
                finished_at[op] = Some((offset.as_secs_f64(), (offset + elapsed).as_secs_f64()));
                events.emit(Event::Done {
                    address: address.clone(),
                    outcome,
                    elapsed_seconds: elapsed.as_secs_f64(),
                    id,
                });
                report.done.push((address, outcome, elapsed));
                for &next in &dependents[op] {
                    waiting[next] -= 1;
                    if waiting[next] == 0 && !blocked[next] {
                        ready.push(next);
                    }
                }
            }
            Err(error) => {
                halted |= matches!(error, OpError::State(_));
                // One cause, one message: a failure like an earlier one points at it.
                let message = crate::errors::chain(&error);
                let same_as = first_failure.get(&message).cloned();
                if same_as.is_none() {
                    first_failure.insert(message.clone(), address.clone());
                }
                events.emit(Event::Failed {
                    address: address.clone(),
                    operation: ops[op].operation,
                    elapsed_seconds: elapsed.as_secs_f64(),
                    code: error.code().map(str::to_string),
                    error: message,
                    same_as,
                });
                report.failed.push((address, error));
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
    // A second Ctrl-C that came after the last operation in flight had finished (before the
    // next tick saw it) abandoned nothing, but it still stopped the run.
    report.aborted |= options.abort.load(Ordering::SeqCst);
    let mut index_of = vec![None; ops.len()];
    for (op, times) in finished_at.iter().enumerate() {
        if let Some((start, end)) = times {
            index_of[op] = Some(report.timings.len());
            report.timings.push(Timing {
                address: changes[ops[op].change].address.clone(),
                step: if ops[op].operation == Operation::Delete {
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
        if !finished.contains(address.as_str())
            && !report.skipped.contains(address)
            && !report.abandoned.contains(address)
        {
            report.skipped.push(address.clone());
        }
    }
    report
}

/// How often an operation in flight says it is still running (Terraform's interval).
const HEARTBEAT: Duration = Duration::from_secs(10);

/// The operations of a plan and, per operation, the operations it must come after.
fn operations(changes: &[ResourceChange], prior: &[ResourceState]) -> (Vec<Op>, Vec<Vec<usize>>) {
    let mut ops = Vec::new();
    let mut apply_of: HashMap<&str, usize> = HashMap::new();
    let mut destroy_of: HashMap<&str, usize> = HashMap::new();
    for (index, change) in changes.iter().enumerate() {
        if matches!(change.action, Action::Delete | Action::Replace) {
            destroy_of.insert(change.address.as_str(), ops.len());
            ops.push(Op {
                operation: Operation::Delete,
                change: index,
            });
        }
        if matches!(
            change.action,
            Action::Create | Action::Update | Action::Replace
        ) {
            apply_of.insert(change.address.as_str(), ops.len());
            ops.push(Op {
                operation: if change.action == Action::Update {
                    Operation::Update
                } else {
                    Operation::Create
                },
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
        match op.operation {
            Operation::Create | Operation::Update => {
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
            Operation::Delete if change.forget => {
                for dependency in dependencies_of.get(address).copied().unwrap_or_default() {
                    if let Some(&destroy) = destroy_of.get(dependency.as_str())
                        && !forgotten.contains(dependency.as_str())
                    {
                        after[index].push(destroy);
                    }
                }
            }
            Operation::Delete => {
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
    // A pure delete also waits for the in-place updates of what used a resource it goes with
    // (one it depends on that goes too), and of what depended on those users in turn: an inline
    // policy goes with its role, and the role's service account and the Deployment running as
    // it move to their new role before either goes (a state recorded before a newer graph made
    // them depend on the policy itself). These waits are added last, and only where they close
    // no loop: one that would (the new role's users waiting, through a replaced node group, for
    // this very delete) is left out, as the order without it is the one a plan gave before.
    for (index, op) in ops.iter().enumerate() {
        let change = &changes[op.change];
        if op.operation != Operation::Delete || change.action != Action::Delete || change.forget {
            continue;
        }
        let address = change.address.as_str();
        let mut users: Vec<&str> = dependencies_of
            .get(address)
            .copied()
            .unwrap_or_default()
            .iter()
            .filter(|dependency| action_of.get(dependency.as_str()) == Some(&Action::Delete))
            .flat_map(|dependency| {
                state_dependents
                    .get(dependency.as_str())
                    .into_iter()
                    .flatten()
                    .copied()
            })
            .collect();
        let mut seen = std::collections::HashSet::new();
        while let Some(user) = users.pop() {
            if !seen.insert(user) || action_of.get(user) != Some(&Action::Update) {
                continue;
            }
            users.extend(state_dependents.get(user).into_iter().flatten().copied());
            if let Some(&apply) = apply_of.get(user)
                && !waits_for(&after, apply, index)
            {
                after[index].push(apply);
            }
        }
    }
    (ops, after)
}

/// Whether operation `from` already waits, directly or through others, for operation `to`.
fn waits_for(after: &[Vec<usize>], from: usize, to: usize) -> bool {
    let mut stack = vec![from];
    let mut seen = vec![false; after.len()];
    while let Some(op) = stack.pop() {
        if op == to {
            return true;
        }
        if !std::mem::replace(&mut seen[op], true) {
            stack.extend(after[op].iter().copied());
        }
    }
    false
}

/// What a finished operation did, and the resource's id when it has one.
struct Done {
    outcome: Outcome,
    id: Option<String>,
}

impl Done {
    fn new(outcome: Outcome, id: Option<String>) -> Self {
        Done { outcome, id }
    }
}

/// One operation, journaled: the pending operation persisted, the provider called, the result
/// (or, after a failure, what [`settle_failed`] leaves) persisted.
async fn run<P: Provider>(
    op: &Op,
    change: &ResourceChange,
    journal: &Journal,
    provider: &P,
    events: &dyn Events,
) -> Result<Done, OpError> {
    let address = change.address.as_str();
    let started = |operation: Operation, changed: &[String]| {
        events.emit(Event::Started {
            address: address.to_string(),
            operation,
            changed: changed.to_vec(),
        })
    };
    if op.operation == Operation::Delete {
        let Some(mut resource) = journal.resource(address).await else {
            return Ok(Done::new(Outcome::AlreadyGone, None));
        };
        if change.forget {
            // It went with what contained it (the plan says which): no call to make.
            journal.deleted(address).await?;
            return Ok(Done::new(Outcome::RemovedFromState, resource.id));
        }
        // The final snapshot the plan named (and showed) is the one taken.
        if let Some(snapshot) = &change.final_snapshot {
            resource.inputs.insert(
                "final_snapshot_identifier".into(),
                Value::String(snapshot.clone()),
            );
        }
        started(Operation::Delete, &[]);
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
            settle_failed(journal, address, &error, false).await;
            return Err(error.into());
        }
        journal.deleted(address).await?;
        return Ok(Done::new(Outcome::Destroyed, resource.id));
    }
    let inputs = resolve(change, journal).await?;
    let existing = if op.operation == Operation::Update {
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
    let (operation, token, pending_inputs, dependencies) = match &existing {
        Some(resource) => (
            Operation::Update,
            resource.id.clone().unwrap_or_default(),
            None,
            Vec::new(),
        ),
        None => (
            Operation::Create,
            format!("tag:pwless:address={address}"),
            Some(inputs.clone()),
            change.depends_on.clone(),
        ),
    };
    // An update names the inputs it changes; a create (also the second half of a replace)
    // makes the resource whole.
    let changed: &[String] = if operation == Operation::Update {
        &change.changed
    } else {
        &[]
    };
    started(operation, changed);
    journal
        .begin(
            address,
            change.kind,
            operation,
            token,
            pending_inputs,
            dependencies,
        )
        .await?;
    let (result, repeatable, outcome) = match &existing {
        Some(resource) => (
            provider.update(resource, &inputs, &change.changed).await,
            false,
            Outcome::Updated,
        ),
        None => (
            provider.create(address, change.kind, &inputs).await,
            change.kind.create_is_idempotent(),
            Outcome::Created,
        ),
    };
    let applied = match result {
        Ok(applied) => applied,
        Err(error) => {
            settle_failed(journal, address, &error, repeatable).await;
            return Err(error.into());
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
    Ok(Done::new(outcome, id))
}

/// After a failed call: an operation that may have taken effect stays pending, for the next
/// run to settle (adopt a create, refresh the rest); one that surely did not (the error is
/// [`crate::provider::ErrorKind::Local`]: nothing reached the service, or
/// [`crate::provider::ErrorKind::Taken`]: the name belongs to another's resource) or that is
/// safe to repeat (`repeatable`) is cleared, and the next plan simply plans it again.
/// The provider's error is what the operation reports either way: a state that cannot be
/// saved now only leaves the pending entry in place, which the next run settles (and the next
/// write of this run meets the same state error, and halts the run).
async fn settle_failed(
    journal: &Journal,
    address: &str,
    error: &crate::provider::ProviderError,
    repeatable: bool,
) {
    if repeatable
        || matches!(
            error.kind,
            crate::provider::ErrorKind::Local | crate::provider::ErrorKind::Taken
        )
    {
        let _ = journal.forget_pending(address).await;
    }
}

/// The change's inputs with every "known after apply" value looked up in the state as it is
/// now (its dependencies have been applied).
async fn resolve(change: &ResourceChange, journal: &Journal) -> Result<Inputs, OpError> {
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
            .ok_or_else(|| OpError::Unresolved {
                input: name.clone(),
            })?;
        inputs.insert(name.clone(), value);
    }
    Ok(inputs)
}

#[cfg(test)]
mod tests;
