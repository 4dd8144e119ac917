//! What plan, apply and destroy share: lock and read the state, settle what an interrupted run
//! left pending, refresh, and plan.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::exec::{Event, Events, Journal, recover, refresh::refresh};
use crate::graph::ResourceGraph;
use crate::plan::{Mode, ObservedState, Plan};
use crate::provider::Providers;
use crate::spec::Stack;
use crate::state::{Location, State, StateError, StateStore};

use super::UserError;

/// Default number of operations in flight (Terraform's is 10).
pub const DEFAULT_PARALLELISM: usize = 32;

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// A runtime for commands that only read: one thread is plenty.
pub(crate) fn block_on<T>(work: impl std::future::Future<Output = T>) -> anyhow::Result<T> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(work))
}

/// An open state: the lock held, the state read, and whether one existed.
pub(crate) struct Opened {
    pub store: StateStore,
    pub state: State,
    pub existed: bool,
}

/// Refuses a state of another stack, or one that `pwless state migrate` moved away.
fn check_state(location: &Location, state: &State, stack: &str) -> anyhow::Result<()> {
    if let Some(to) = &state.moved_to {
        return Err(StateError::Moved {
            location: location.describe(),
            to: to.clone(),
        }
        .into());
    }
    if state.stack != stack {
        return Err(UserError(format!(
            "{} belongs to stack `{}`, not `{stack}`; {}",
            location.describe(),
            state.stack,
            match location {
                Location::Local(_) => "pass another --state path",
                _ => "point the stack's `state:` section elsewhere",
            }
        ))
        .into());
    }
    Ok(())
}

/// Takes the lock and reads the state. On any refusal after the lock was taken, the lock is
/// let go before returning.
pub(crate) async fn open_state(
    location: &Location,
    stack: &str,
    operation: &str,
) -> anyhow::Result<Opened> {
    let mut store = open_store(location, operation).await?;
    let existing = match store.read().await {
        Ok(existing) => existing,
        Err(error) => {
            store.release().await;
            return Err(error.into());
        }
    };
    if let Some(state) = &existing
        && let Err(error) = check_state(location, state, stack)
    {
        store.release().await;
        return Err(error);
    }
    let existed = existing.is_some();
    Ok(Opened {
        store,
        state: existing.unwrap_or_else(|| State::new(stack)),
        existed,
    })
}

/// Takes the lock ([`StateStore::open`]) and says the store's notices on stderr.
pub(crate) async fn open_store(
    location: &Location,
    operation: &str,
) -> Result<StateStore, StateError> {
    let store = StateStore::open(location, operation).await?;
    for notice in store.notices() {
        eprintln!("{notice}");
    }
    Ok(store)
}

/// Reads the state without the lock, for commands that only read it; `None` when there is
/// none yet.
pub(crate) async fn read_state(location: &Location, stack: &str) -> anyhow::Result<Option<State>> {
    let state = crate::state::store::read_unlocked(location).await?;
    if let Some(state) = &state {
        check_state(location, state, stack)?;
    }
    Ok(state)
}

/// Runs `work` with the opened state in a journal, then lets go of the lock whatever
/// `work` returned.
pub(crate) async fn with_journal<T>(
    opened: Opened,
    work: impl AsyncFnOnce(Arc<Journal>, bool) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let journal = Arc::new(Journal::new(opened.store, opened.state));
    let result = work(journal.clone(), opened.existed).await;
    if let Some(journal) = Arc::into_inner(journal) {
        journal.release().await;
    }
    result
}

/// Does this state need the cloud before it can be planned against?
pub(crate) fn needs_cloud(state: &State, refresh: bool) -> bool {
    !state.pending_operations.is_empty() || (refresh && !state.resources.is_empty())
}

/// How [`prepare`] settles and refreshes.
pub(crate) struct Preparation<'a> {
    /// Read the live resources (`--refresh`).
    pub refresh: bool,
    pub parallelism: usize,
    pub mode: Mode,
    /// Where recovery reports what it settled.
    pub events: &'a dyn Events,
    /// The stack's database connection settings (for the RDS CA bundle).
    pub database: &'a crate::db::Settings,
}

/// Settles pending operations and refreshes; gives back whether a state exists and what was
/// observed.
pub(crate) async fn prepare(
    journal: &Journal,
    existed: bool,
    provider: &Providers,
    how: Preparation<'_>,
) -> anyhow::Result<(bool, ObservedState)> {
    let Preparation {
        refresh: refresh_live,
        parallelism,
        mode,
        events,
        database,
    } = how;
    // Before any call: missing credentials are one message, not one per resource.
    check_credentials(provider).await?;
    if !journal.snapshot().await.pending_operations.is_empty() {
        eprintln!("An interrupted run left pending operations; settling them first:");
        recover::recover(journal, provider, events, recover::GRACE)
            .await
            .map_err(|error| UserError(crate::errors::chain(&error)))?;
    }
    let mut observed = ObservedState::new();
    let state = journal.snapshot().await;
    // A destroy removes the database users and grants with their cluster, from the state
    // alone (`Plan::forget`): there is nothing to read in a database that is going.
    let mut to_read = state.clone();
    if mode == Mode::Destroy {
        to_read
            .resources
            .retain(|resource| resource.kind.provider() != crate::graph::Provider::Postgres);
    }
    if refresh_live && !to_read.resources.is_empty() {
        eprintln!("Refreshing {} resources...", to_read.resources.len());
        // The database is read after the rest: through the relay in the cluster, which must
        // be seen to be there first.
        let mut databases = to_read.clone();
        databases
            .resources
            .retain(|resource| resource.kind.provider() == crate::graph::Provider::Postgres);
        to_read
            .resources
            .retain(|resource| resource.kind.provider() != crate::graph::Provider::Postgres);
        let failed = |errors: Vec<(String, String)>| {
            UserError(format!(
                "cannot refresh {} resources:\n{}",
                errors.len(),
                crate::render::grouped_errors(&errors)
            ))
        };
        observed = refresh(&to_read, provider, parallelism)
            .await
            .map_err(failed)?;
        let unreachable = unreachable_through_relay(&databases, &observed);
        if !unreachable.is_empty() {
            eprintln!(
                "Not refreshed: {} (the database relay, its EKS cluster or its nodes are gone, so the database cannot be read; the plan takes them as recorded, and makes the relay again)",
                unreachable.join(", ")
            );
            databases
                .resources
                .retain(|resource| !unreachable.contains(&resource.address));
        }
        // Reading the database needs the RDS CA bundle: fetched now, and said, when the user's
        // cache lacks it (a failure is the refresh's to report, with the same words).
        if !databases.resources.is_empty()
            && let Some(url) = &database.ca_bundle_url
            && let Ok(Some(fetched)) = crate::ca_bundle::ensure(&database.ca_bundle, url).await
        {
            eprintln!("{fetched}");
        }
        observed.extend(
            refresh(&databases, provider, parallelism)
                .await
                .map_err(failed)?,
        );
    }
    Ok((existed || !state.resources.is_empty(), observed))
}

/// The database resources of `databases` recorded as reached through the relay
/// (`connection.relay`) when the refresh saw the relay's Deployment, the EKS cluster or its node
/// group missing: nothing can reach the database that way until apply makes them again.
fn unreachable_through_relay(databases: &State, observed: &ObservedState) -> Vec<String> {
    let missing =
        |address: &str| matches!(observed.get(address), Some(crate::plan::Observed::Missing));
    if ![
        crate::graph::address::relay(),
        crate::graph::address::eks_cluster(),
        crate::graph::address::eks_node_group(),
    ]
    .iter()
    .any(|address| missing(address))
    {
        return Vec::new();
    }
    databases
        .resources
        .iter()
        .filter(|resource| {
            resource
                .inputs
                .get("connection")
                .and_then(|connection| connection.get("relay"))
                .is_some_and(serde_json::Value::is_object)
        })
        .map(|resource| resource.address.clone())
        .collect()
}

/// Refuses at once, in one plain line, when the AWS credentials do not resolve.
pub(crate) async fn check_credentials(provider: &Providers) -> anyhow::Result<()> {
    crate::provider::aws::check_credentials(&provider.config)
        .await
        .map_err(|message| UserError(message).into())
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

/// The CLI's sink for the engine's events: a human line each on stderr, or with `--json` one
/// JSON object each on stdout.
pub(crate) struct Progress {
    pub json: bool,
}

impl Events for Progress {
    fn emit(&self, event: Event) {
        use std::io::Write as _;
        // A closed pipe must not stop an apply: the state records what happens either way.
        if self.json {
            let _ = writeln!(
                std::io::stdout().lock(),
                "{}",
                crate::render::progress::json_line(&event)
            );
        } else {
            let _ = writeln!(
                std::io::stderr().lock(),
                "{}",
                crate::render::progress::line(&event)
            );
        }
    }
}

/// Ctrl-C handling for apply: the first stops new work (`stop`); the second abandons what is
/// in flight (`abort`): the executor returns, its pending operations stay saved for the next
/// run to settle, and the caller lets go of the state's lock before exiting with 130. A third
/// exits at once, should letting go of the lock hang.
pub(crate) fn watch_interrupts(stop: Arc<AtomicBool>, abort: Arc<AtomicBool>) {
    let presses = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            match presses.fetch_add(1, Ordering::SeqCst) {
                0 => {
                    stop.store(true, Ordering::SeqCst);
                    eprintln!(
                        "\nInterrupted: starting nothing new, finishing what is in flight. Press Ctrl-C again to stop at once."
                    );
                }
                1 => {
                    abort.store(true, Ordering::SeqCst);
                    eprintln!(
                        "\nStopping: what is in flight stays pending for the next run to settle; letting go of the state's lock. Press Ctrl-C again to exit without letting go."
                    );
                }
                _ => std::process::exit(i32::from(super::EXIT_INTERRUPTED)),
            }
        }
    });
}
