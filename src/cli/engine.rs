//! What plan, apply and destroy share: lock and read the state, settle what an interrupted run
//! left pending, refresh, and plan.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::exec::{Journal, recover::recover, refresh::refresh};
use crate::graph::ResourceGraph;
use crate::plan::{Mode, ObservedState, Plan};
use crate::provider::Providers;
use crate::spec::Stack;
use crate::state::{State, StateStore};

use super::UserError;

/// Default number of operations in flight (Terraform's is 10).
pub const DEFAULT_PARALLELISM: usize = 32;

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// An open state: the lock held, the state read, and whether a file existed.
pub(crate) struct Opened {
    pub store: StateStore,
    pub state: State,
    pub existed: bool,
}

pub(crate) fn open_state(path: &Path, stack: &str, operation: &str) -> anyhow::Result<Opened> {
    let mut store = StateStore::open(path, operation)?;
    let existing = store.read()?;
    if let Some(state) = &existing
        && state.stack != stack
    {
        return Err(UserError(format!(
            "state file {} belongs to stack `{}`, not `{stack}`; pass another --state path",
            path.display(),
            state.stack
        ))
        .into());
    }
    let existed = existing.is_some();
    Ok(Opened {
        store,
        state: existing.unwrap_or_else(|| State::new(stack)),
        existed,
    })
}

/// Does this state need the cloud before it can be planned against?
pub(crate) fn needs_cloud(state: &State, refresh: bool) -> bool {
    !state.pending_operations.is_empty() || (refresh && !state.resources.is_empty())
}

/// Settles pending operations and refreshes; gives back the journal (holding the store) and
/// what was observed.
pub(crate) async fn prepare(
    opened: Opened,
    provider: &Providers,
    refresh_live: bool,
    parallelism: usize,
) -> anyhow::Result<(Journal, bool, ObservedState)> {
    let existed = opened.existed;
    let journal = Journal::new(opened.store, opened.state);
    if !journal.snapshot().await.pending_operations.is_empty() {
        eprintln!("An interrupted run left pending operations; settling them first:");
        for note in recover(&journal, provider).await.map_err(UserError)? {
            eprintln!("  {note}");
        }
    }
    let mut observed = ObservedState::new();
    let state = journal.snapshot().await;
    if refresh_live && !state.resources.is_empty() {
        eprintln!("Refreshing {} resources...", state.resources.len());
        observed = refresh(&state, provider, parallelism)
            .await
            .map_err(|errors| {
                let lines: Vec<String> = errors
                    .iter()
                    .map(|(address, message)| format!("  {address}: {message}"))
                    .collect();
                UserError(format!(
                    "cannot refresh {} resources:\n{}",
                    errors.len(),
                    lines.join("\n")
                ))
            })?;
    }
    Ok((journal, existed || !state.resources.is_empty(), observed))
}

pub(crate) fn make_plan(
    stack: &Stack,
    graph: &ResourceGraph,
    state: &State,
    exists: bool,
    observed: &ObservedState,
    mode: Mode,
) -> Plan {
    crate::plan::plan(stack, graph, exists.then_some(state), observed, mode)
}

/// Ctrl-C handling for apply: the first stops new work, the second exits at once (the state is
/// saved after every operation, and what was in flight is pending, to be recovered).
pub(crate) fn watch_interrupts(stop: Arc<AtomicBool>) {
    let presses = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            if presses.fetch_add(1, Ordering::SeqCst) == 0 {
                stop.store(true, Ordering::SeqCst);
                eprintln!(
                    "\nInterrupted: starting nothing new, finishing what is in flight. Press Ctrl-C again to stop at once."
                );
            } else {
                eprintln!(
                    "\nStopped. The state is saved; operations in flight are pending and the next run settles them."
                );
                std::process::exit(130);
            }
        }
    });
}
