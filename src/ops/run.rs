//! Plan, apply and destroy as library calls: lock and read the state, settle what a dead run
//! left pending, refresh, plan, check what apply needs, carry the plan out; the lock is let go
//! whatever happened. The caller renders the [`Planned`] plan, asks for approval, and reports
//! what [`execute`] returns.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use super::UserError;
use super::outputs::StackOutputs;
use super::preflight::{self, Findings};
use crate::exec::{self, Events, Journal, Options, Report, recover, refresh::refresh};
use crate::graph::ResourceGraph;
use crate::plan::{Mode, ObservedState, Plan};
use crate::provider::{Provider, Providers};
use crate::spec::Stack;
use crate::state::{Location, State, StateError, StateStore};

/// Default number of operations in flight (Terraform's is 10).
pub const DEFAULT_PARALLELISM: usize = 32;

/// An open state: the lock held, the state read, and whether one existed.
pub struct Opened {
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
/// let go before returning. `operation` names the run in the lock (`apply`, `state push`).
pub async fn open_state(
    location: &Location,
    stack: &str,
    operation: &str,
    events: &dyn Events,
) -> anyhow::Result<Opened> {
    let mut store = open_store(location, operation, events).await?;
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

/// Takes the lock ([`StateStore::open`]); the store's notices (an expired lock taken over,
/// versioning off) go to `events`.
pub async fn open_store(
    location: &Location,
    operation: &str,
    events: &dyn Events,
) -> Result<StateStore, StateError> {
    let store = StateStore::open(location, operation).await?;
    for notice in store.notices() {
        events.emit(exec::Event::Notice {
            message: notice.to_string(),
        });
    }
    Ok(store)
}

/// Reads the state without the lock, for commands that only read it; `None` when there is
/// none yet. Refuses a state of another stack, or one moved away.
pub async fn read_state(location: &Location, stack: &str) -> anyhow::Result<Option<State>> {
    let state = crate::state::store::read_unlocked(location).await?;
    if let Some(state) = &state {
        check_state(location, state, stack)?;
    }
    Ok(state)
}

/// [`read_state`] for commands that need an applied stack: no state is a [`UserError`] that
/// says where it looked and to apply first.
pub async fn read_applied_state(location: &Location, stack: &str) -> anyhow::Result<State> {
    read_state(location, stack).await?.ok_or_else(|| {
        UserError(format!(
            "no state in {}: apply the stack first",
            location.describe()
        ))
        .into()
    })
}

/// Runs `work` with the opened state in a journal, then lets go of the lock whatever
/// `work` returned.
pub async fn with_journal<T>(
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
pub fn needs_cloud(state: &State, refresh: bool) -> bool {
    !state.pending_operations.is_empty() || (refresh && !state.resources.is_empty())
}

/// How [`prepare`] settles and refreshes.
pub struct Preparation<'a> {
    /// Read the live resources (`--refresh`).
    pub refresh: bool,
    pub parallelism: usize,
    pub mode: Mode,
    /// Where recovery and the refresh report what they do.
    pub events: &'a dyn Events,
    /// Each database's connection settings (for the RDS CA bundle).
    pub database: &'a [crate::db::Settings],
}

/// Settles pending operations and refreshes; gives back whether a state exists and what was
/// observed. Errors: credentials that do not resolve, a recovery that cannot finish, reads
/// that fail (all of them, grouped by message).
pub async fn prepare(
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
    let pending = journal.snapshot().await.pending_operations.len();
    if pending > 0 {
        events.emit(exec::Event::Recovering { pending });
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
        events.emit(exec::Event::Refreshing {
            resources: to_read.resources.len(),
        });
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
            databases
                .resources
                .retain(|resource| !unreachable.contains(&resource.address));
            events.emit(exec::Event::NotRefreshed {
                addresses: unreachable,
            });
        }
        // Reading the database needs the RDS CA bundle: fetched now, and said, when the user's
        // cache lacks it (a failure is the refresh's to report, with the same words).
        let mut bundles: Vec<(&std::path::Path, &str)> = Vec::new();
        for settings in database {
            if let Some(url) = &settings.ca_bundle_url
                && !bundles.iter().any(|(path, _)| *path == settings.ca_bundle)
            {
                bundles.push((&settings.ca_bundle, url));
            }
        }
        for (bundle, url) in bundles {
            if !databases.resources.is_empty()
                && let Ok(Some(fetched)) = crate::ca_bundle::ensure(bundle, url).await
            {
                events.emit(exec::Event::Notice {
                    message: fetched.to_string(),
                });
            }
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
/// (`connection.relay`) when the refresh saw their database's relay Deployment, the EKS
/// cluster or its node group missing: nothing can reach the database that way until apply
/// makes them again. Another database's relay, there, does not stop this one's refresh.
fn unreachable_through_relay(databases: &State, observed: &ObservedState) -> Vec<String> {
    let missing =
        |address: &str| matches!(observed.get(address), Some(crate::plan::Observed::Missing));
    // Without the cluster or its nodes, no relay runs; else each database's own relay.
    let cluster_gone = [
        crate::graph::address::eks_cluster(),
        crate::graph::address::eks_node_group(),
    ]
    .iter()
    .any(|address| missing(address));
    databases
        .resources
        .iter()
        .filter(|resource| {
            let Some(relay) = resource
                .inputs
                .get("connection")
                .and_then(|connection| connection.get("relay"))
                .filter(|relay| relay.is_object())
            else {
                return false;
            };
            let own = relay["namespace"].as_str().and_then(|namespace| {
                crate::graph::address::database_of(&resource.address)
                    .map(|database| crate::graph::address::relay(namespace, database))
            });
            cluster_gone || own.is_some_and(|own| missing(&own))
        })
        .map(|resource| resource.address.clone())
        .collect()
}

/// The login roles of each database's cluster that the stack does not declare (the access
/// matrix's flag), read through the connection of a user of it that this refresh read (so
/// the way there, the relay or a tunnel, is known to work: before the first apply nothing is
/// read, and a cluster the refresh could not reach waits for no relay here). A cluster two
/// databases share is read once, against the users of both.
async fn undeclared_users(
    stack: &Stack,
    state: &State,
    observed: &ObservedState,
    provider: &Providers,
) -> Vec<crate::plan::access::UndeclaredUser> {
    use crate::graph::{ResourceKind, address};
    let Some(postgres) = provider.postgres.as_ref() else {
        return Vec::new();
    };
    let mut found = Vec::new();
    let mut read_clusters: Vec<String> = Vec::new();
    for database in &stack.databases {
        let Some(inputs) = state
            .resources
            .iter()
            .find(|resource| {
                resource.kind == ResourceKind::PostgresRole
                    && address::database_of(&resource.address) == Some(&database.key)
                    && matches!(
                        observed.get(&resource.address),
                        Some(crate::plan::Observed::Present { .. })
                    )
            })
            .map(|resource| &resource.inputs)
        else {
            continue;
        };
        let cluster = inputs
            .get("cluster_resource_id")
            .and_then(serde_json::Value::as_str)
            .unwrap_or(&database.key)
            .to_string();
        if read_clusters.contains(&cluster) {
            continue;
        }
        let Ok(roles) = postgres.login_roles(inputs).await else {
            continue;
        };
        // Every user the stack declares in this cluster, whichever database names it.
        let declared: Vec<&str> = stack
            .databases
            .iter()
            .filter(|other| {
                other.key == database.key
                    || matches!((&other.existing, &database.existing), (Some(a), Some(b))
                        if a.cluster_identifier.id == b.cluster_identifier.id)
            })
            .flat_map(|other| other.users.iter().map(|user| user.name.as_str()))
            // And what the state records there: a user this plan drops is not undeclared.
            .chain(
                state
                    .resources
                    .iter()
                    .filter(|resource| {
                        resource.kind == ResourceKind::PostgresRole
                            && resource.inputs.get("cluster_resource_id")
                                == inputs.get("cluster_resource_id")
                    })
                    .filter_map(|resource| resource.inputs.get("name")?.as_str()),
            )
            .collect();
        found.extend(
            roles
                .into_iter()
                .filter(|(name, _)| !declared.contains(&name.as_str()))
                .map(
                    |(user, made_by_this_stack)| crate::plan::access::UndeclaredUser {
                        database: database.key.clone(),
                        user,
                        made_by_this_stack,
                    },
                ),
        );
        read_clusters.push(cluster);
    }
    found
}

/// Refuses at once, in one plain line, when the AWS credentials do not resolve.
pub async fn check_credentials(provider: &Providers) -> anyhow::Result<()> {
    crate::provider::aws::check_credentials(&provider.config)
        .await
        .map_err(|message| UserError(message).into())
}

/// The plan of `stack` against `state` (`exists`: whether a state was there) and what was
/// observed.
pub fn make_plan(
    stack: &Stack,
    graph: &ResourceGraph,
    state: &State,
    exists: bool,
    observed: &ObservedState,
    mode: Mode,
) -> Plan {
    crate::plan::plan(stack, graph, exists.then_some(state), observed, mode)
}

/// What to plan, and how.
pub struct PlanRequest<'a> {
    pub stack: &'a Stack,
    pub graph: &'a ResourceGraph,
    /// The stack file's directory: relative paths in the stack (the CA bundle) start there.
    pub stack_dir: &'a Path,
    /// Where the state is.
    pub location: &'a Location,
    pub mode: Mode,
    /// Read the live resources first (`--refresh`).
    pub refresh: bool,
    /// How many resources may be read at once.
    pub parallelism: usize,
    /// Where recovery and the refresh report what they do.
    pub events: &'a dyn Events,
    /// Notified on Ctrl-C: planning stops, the lock is let go, and the call returns
    /// [`super::Cancelled`].
    pub interrupt: Option<&'a tokio::sync::Notify>,
}

/// `work`, unless `interrupt` is notified first: then [`super::Cancelled`] (`what` names the
/// command). Dropping `work` midway is safe for what it may be doing here (reading, or settling
/// pending operations, whose state writes are each whole or not at all).
pub async fn cancellable<T>(
    interrupt: Option<&tokio::sync::Notify>,
    what: &'static str,
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    match interrupt {
        None => work.await,
        Some(interrupt) => tokio::select! {
            result = work => result,
            () = interrupt.notified() => Err(super::Cancelled(what).into()),
        },
    }
}

/// A plan, and what the preflight found about applying it.
pub struct Planned {
    pub plan: Plan,
    /// Problems make apply refuse the plan; `pwless plan` says them as warnings.
    pub findings: Findings,
}

/// What a run holds while it applies: the journal (the state's lock with it) and the
/// providers.
pub struct Live {
    pub journal: Arc<Journal>,
    pub provider: Arc<Providers>,
}

/// `pwless plan`: the plan of the stack against its state, and the preflight's findings; the
/// lock is let go before returning. Offline (no lock, no credentials, nothing left behind)
/// when there is no local state yet, or nothing recorded to read, as `terraform plan` does;
/// a first apply that holds the lock of a local state is waited for by refusing.
pub async fn plan(request: PlanRequest<'_>) -> anyhow::Result<Planned> {
    let PlanRequest {
        stack,
        graph,
        location,
        mode,
        refresh,
        ..
    } = request;
    let offline = |state: &State, exists: bool| Planned {
        plan: make_plan(stack, graph, state, exists, &ObservedState::new(), mode),
        findings: Findings::default(),
    };
    // A state that appears meanwhile makes a saved plan of this one stale
    // (`Plan::check_current`).
    if let Location::Local(path) = location
        && read_state(location, &stack.name).await?.is_none()
    {
        crate::state::local::LocalStore::refuse_if_locked(path)?;
        return Ok(offline(&State::new(&stack.name), false));
    }
    let opened = open_state(location, &stack.name, "plan", request.events).await?;
    // Without recorded resources or pending operations there is nothing to read: the plan is
    // made offline, with no credentials needed.
    let needs_cloud = needs_cloud(&opened.state, refresh);
    with_journal(opened, async |journal, existed| {
        if !needs_cloud {
            return Ok(offline(&journal.snapshot().await, existed));
        }
        let (planned, _provider) = cancellable(
            request.interrupt,
            "plan",
            plan_live(&request, &journal, existed),
        )
        .await?;
        Ok(planned)
    })
    .await
}

/// Settles, refreshes, plans and checks, with the lock held.
async fn plan_live(
    request: &PlanRequest<'_>,
    journal: &Journal,
    existed: bool,
) -> anyhow::Result<(Planned, Providers)> {
    let provider = Providers::for_stack(request.stack, request.stack_dir).await;
    let settings: Vec<crate::db::Settings> = request
        .stack
        .databases
        .iter()
        .map(|database| {
            crate::db::Settings::for_database(request.stack, database, request.stack_dir)
        })
        .collect();
    let (exists, observed) = prepare(
        journal,
        existed,
        &provider,
        Preparation {
            refresh: request.refresh,
            parallelism: request.parallelism,
            mode: request.mode,
            events: request.events,
            database: &settings,
        },
    )
    .await?;
    let state = journal.snapshot().await;
    let mut plan = make_plan(
        request.stack,
        request.graph,
        &state,
        exists,
        &observed,
        request.mode,
    );
    if request.refresh && request.mode == Mode::Normal {
        plan.access.undeclared_users =
            undeclared_users(request.stack, &state, &observed, &provider).await;
    }
    let findings = preflight::check(&plan, &provider.config, Some(&settings)).await;
    Ok((Planned { plan, findings }, provider))
}

/// `pwless apply` and `pwless destroy`: takes the lock, settles, refreshes, plans and checks,
/// then hands the plan and the live run to `then` (which asks for approval and calls
/// [`execute`]); the lock is let go whatever `then` returns. `operation` names the run in the
/// lock (`apply`, `destroy`).
pub async fn plan_then<T>(
    request: PlanRequest<'_>,
    operation: &str,
    then: impl AsyncFnOnce(Planned, Live) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let opened = open_state(
        request.location,
        &request.stack.name,
        operation,
        request.events,
    )
    .await?;
    with_journal(opened, async |journal, existed| {
        let (planned, provider) = cancellable(
            request.interrupt,
            what(request.mode),
            plan_live(&request, &journal, existed),
        )
        .await?;
        then(
            planned,
            Live {
                journal,
                provider: Arc::new(provider),
            },
        )
        .await
    })
    .await
}

/// The command a run of `mode` is, for messages.
fn what(mode: Mode) -> &'static str {
    match mode {
        Mode::Normal => "apply",
        Mode::Destroy => "destroy",
    }
}

/// `pwless apply PLANFILE`: takes the lock, refuses a plan the state moved away from (or with
/// operations pending since), checks credentials and the preflight, then hands the plan to
/// `then` as [`plan_then`] does. No refresh: a saved plan was reviewed already, and is applied
/// as it is.
pub async fn saved_then<T>(
    plan: Plan,
    location: &Location,
    events: &dyn Events,
    interrupt: Option<&tokio::sync::Notify>,
    then: impl AsyncFnOnce(Planned, Live) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let opened = open_state(location, &plan.stack, "apply", events).await?;
    with_journal(opened, async |journal, existed| {
        let (plan, provider, findings) =
            cancellable(interrupt, "apply", check_saved(plan, &journal, existed)).await?;
        then(
            Planned { plan, findings },
            Live {
                journal,
                provider: Arc::new(provider),
            },
        )
        .await
    })
    .await
}

/// What [`saved_then`] checks before it hands the plan on.
async fn check_saved(
    plan: Plan,
    journal: &Journal,
    existed: bool,
) -> anyhow::Result<(Plan, Providers, Findings)> {
    let current = journal.snapshot().await;
    plan.check_current(existed.then_some(&current))
        .map_err(|stale| UserError(format!("the saved plan cannot be applied: {stale}")))?;
    if !current.pending_operations.is_empty() {
        return Err(UserError(
            "an interrupted run left pending operations; make a new plan (it settles them first)"
                .into(),
        )
        .into());
    }
    let provider = Providers::aws_only(&plan.stack, &plan.region).await;
    check_credentials(&provider).await?;
    let findings = preflight::check(&plan, &provider.config, None).await;
    Ok((plan, provider, findings))
}

/// Refuses a plan some of whose changes no provider of this run can make (a saved plan
/// carries no database settings), before anything changes: the addresses, or `Ok`.
pub fn unsupported(plan: &Plan, provider: &Providers) -> Result<(), Vec<String>> {
    let unsupported: Vec<String> = plan
        .resource_changes
        .iter()
        // A forgotten delete makes no call: it needs no provider.
        .filter(|change| change.makes_call() && !provider.supports(change.kind))
        .map(|change| change.address.clone())
        .collect();
    if unsupported.is_empty() {
        Ok(())
    } else {
        Err(unsupported)
    }
}

/// What an apply or destroy did.
pub struct Executed {
    pub report: Report,
    /// The final snapshots taken of the Aurora clusters that were destroyed (one per cluster).
    pub kept_snapshots: Vec<String>,
    /// What the stack offers once an apply succeeded (empty for a destroy or a failure).
    pub outputs: BTreeMap<String, Value>,
}

/// Carries out an approved plan ([`exec::apply`]) and gathers what the caller reports.
/// `allowed`: the addresses whose data loss the user consented to now (`--allow-destroy`),
/// beside those the plan records. Errors: the plan destroys data without consent
/// ([`crate::plan::NoConsent`]); nothing was changed.
pub async fn execute(
    plan: &Plan,
    live: &Live,
    allowed: &[String],
    options: &Options,
) -> Result<Executed, crate::plan::NoConsent> {
    plan.check_consent(allowed)?;
    let report = exec::apply(plan, live.journal.clone(), live.provider.clone(), options).await;
    // The final snapshots that were taken: their clusters were destroyed.
    let kept_snapshots = plan
        .resource_changes
        .iter()
        .filter(|change| {
            report.done.iter().any(|(address, outcome, _)| {
                *address == change.address && *outcome == exec::Outcome::Destroyed
            })
        })
        .filter_map(|change| change.final_snapshot.clone())
        .collect();
    let outputs = if report.succeeded() && plan.mode == Mode::Normal {
        StackOutputs::from_state(&live.journal.snapshot().await).to_map()
    } else {
        BTreeMap::new()
    };
    Ok(Executed {
        report,
        kept_snapshots,
        outputs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{ResourceKind, address};
    use crate::plan::Observed;

    fn user(database: &str, namespace: &str) -> crate::state::ResourceState {
        crate::state::ResourceState {
            address: address::db_user_role(database, "reporting"),
            kind: ResourceKind::PostgresRole,
            id: None,
            inputs: [(
                "connection".to_string(),
                serde_json::json!({"relay": {"namespace": namespace, "app": "x", "stack": "s"}}),
            )]
            .into(),
            outputs: Default::default(),
            dependencies: Vec::new(),
        }
    }

    /// One database's relay gone stops the refresh of that database's users only: the other
    /// database's relay still reaches its own.
    #[test]
    fn a_missing_relay_holds_back_only_its_own_databases_users() {
        let mut databases = State::new("s");
        databases.upsert(user("main", "pwless"));
        databases.upsert(user("orders", "pwless"));
        let mut observed = ObservedState::new();
        observed.insert(address::relay("pwless", "orders"), Observed::Missing);
        assert_eq!(
            unreachable_through_relay(&databases, &observed),
            [address::db_user_role("orders", "reporting")]
        );
        // Without the EKS cluster, no relay runs.
        observed.insert(address::eks_cluster(), Observed::Missing);
        assert_eq!(unreachable_through_relay(&databases, &observed).len(), 2);
    }
}
