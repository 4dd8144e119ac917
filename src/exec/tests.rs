//! Table tests of the executor and recovery over the in-memory provider
//! ([`crate::provider::fake::FakeProvider`]): the order of operations, replace, failures,
//! interrupts, a state that cannot be saved, and the settling of what a dead run left pending.
//! The journal writes a real local state file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::*;
use crate::graph::{Expr, ResourceKind};
use crate::provider::fake::{Call, FakeProvider};
use crate::provider::{ErrorKind, ProviderError};
use crate::state::{Location, PendingOperation, State, StateStore};

/// Keeps every event, for assertions.
#[derive(Default)]
struct Recorder(Mutex<Vec<Event>>);

impl Events for Recorder {
    fn emit(&self, event: Event) {
        self.0.lock().unwrap().push(event);
    }
}

impl Recorder {
    fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }
}

/// A journal over a fresh local state file holding `prior`, and where it lives.
struct Harness {
    journal: Arc<Journal>,
    path: PathBuf,
    dir: PathBuf,
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn harness(prior: State) -> Harness {
    let dir = std::env::temp_dir().join(format!("pwless-exec-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("state.json");
    let location = Location::Local(path.clone());
    let mut store = StateStore::open(&location, "apply").await.unwrap();
    store.read().await.unwrap();
    let mut prior = prior;
    store.write(&mut prior).await.unwrap();
    Harness {
        journal: Arc::new(Journal::new(store, prior)),
        path,
        dir,
    }
}

fn kind_of(address: &str) -> ResourceKind {
    let name = address.split('.').next().unwrap();
    *ResourceKind::ALL
        .iter()
        .find(|kind| kind.name() == name)
        .unwrap_or_else(|| panic!("no kind {name}"))
}

/// A recorded resource with `dependencies`.
fn recorded(address: &str, dependencies: &[&str]) -> ResourceState {
    ResourceState {
        address: address.into(),
        kind: kind_of(address),
        id: Some(format!("old-{address}")),
        inputs: BTreeMap::from([("name".to_string(), json!(address))]),
        outputs: BTreeMap::from([("id".to_string(), json!(format!("old-{address}")))]),
        dependencies: dependencies.iter().map(|d| d.to_string()).collect(),
    }
}

fn state_of(mut resources: Vec<ResourceState>) -> State {
    let mut state = State::new("test");
    // A state keeps its resources sorted by address (lookups rely on it).
    resources.sort_by(|a, b| a.address.cmp(&b.address));
    state.resources = resources;
    state
}

fn change(address: &str, action: Action, depends_on: &[&str]) -> ResourceChange {
    let inputs = BTreeMap::from([("name".to_string(), json!(address))]);
    ResourceChange {
        address: address.into(),
        kind: kind_of(address),
        action,
        reason: None,
        before: (action != Action::Create).then(|| inputs.clone()),
        after: (action != Action::Delete).then_some(inputs),
        after_unknown: BTreeMap::new(),
        changed: if matches!(action, Action::Update | Action::Replace) {
            vec!["name".into()]
        } else {
            vec![]
        },
        replace_paths: vec![],
        depends_on: depends_on.iter().map(|d| d.to_string()).collect(),
        final_snapshot: None,
        forget: false,
        data_loss: None,
        holdings: Vec::new(),
    }
}

fn plan_of(changes: Vec<ResourceChange>) -> Plan {
    Plan {
        format_version: crate::plan::PLAN_FORMAT_VERSION,
        pwless_version: "test".into(),
        stack: "test".into(),
        region: "us-east-1".into(),
        mode: crate::plan::Mode::Normal,
        state_backend: Default::default(),
        prior_state: crate::plan::PriorState {
            lineage: None,
            serial: 0,
        },
        summary: crate::plan::summarize(&changes),
        access: Default::default(),
        allowed_destroy: Vec::new(),
        reads: Vec::new(),
        resource_changes: changes,
    }
}

/// The two Ctrl-C flags of [`Options`].
#[derive(Default)]
struct Interrupts {
    stop: Arc<AtomicBool>,
    abort: Arc<AtomicBool>,
}

/// Runs `plan` with parallelism `parallelism`; the report, the events and the state after.
async fn execute(
    plan: &Plan,
    harness: &Harness,
    provider: Arc<FakeProvider>,
    parallelism: usize,
    interrupts: Interrupts,
) -> (Report, Vec<Event>, State) {
    let recorder = Arc::new(Recorder::default());
    let report = apply(
        plan,
        harness.journal.clone(),
        provider,
        &Options {
            parallelism,
            stop: interrupts.stop,
            abort: interrupts.abort,
            events: recorder.clone(),
        },
    )
    .await;
    (report, recorder.events(), harness.journal.snapshot().await)
}

fn position(log: &[String], entry: &str) -> usize {
    log.iter()
        .position(|line| line == entry)
        .unwrap_or_else(|| panic!("`{entry}` is not in the log {log:?}"))
}

fn outcomes(report: &Report) -> Vec<(String, Outcome)> {
    report
        .done
        .iter()
        .map(|(address, outcome, _)| (address.clone(), *outcome))
        .collect()
}

#[tokio::test]
async fn a_replace_destroys_then_creates_and_its_dependents_wait_for_the_new_one() {
    let harness = harness(state_of(vec![
        recorded("aws_vpc.main", &[]),
        recorded("aws_subnet.a", &["aws_vpc.main"]),
    ]))
    .await;
    let plan = plan_of(vec![
        change("aws_vpc.main", Action::Replace, &[]),
        change("aws_subnet.a", Action::Replace, &["aws_vpc.main"]),
    ]);
    let provider = Arc::new(
        FakeProvider::new()
            .with_live("aws_vpc.main", "old-aws_vpc.main")
            .with_live("aws_subnet.a", "old-aws_subnet.a"),
    );
    let (report, events, state) =
        execute(&plan, &harness, provider.clone(), 8, Default::default()).await;
    assert!(report.succeeded(), "{:?}", report.failure_messages());
    // Both halves of a replace start as a delete and a create, naming no changed inputs.
    assert!(events.contains(&Event::Started {
        address: "aws_vpc.main".into(),
        operation: Operation::Create,
        changed: vec![],
    }));
    let log = provider.log();
    // The subnet goes before the VPC it is in, each old one before its new one, and the new
    // subnet only into the new VPC.
    assert!(position(&log, "deleted aws_subnet.a") < position(&log, "deleting aws_vpc.main"));
    assert!(position(&log, "deleted aws_vpc.main") < position(&log, "creating aws_vpc.main"));
    assert!(position(&log, "created aws_vpc.main") < position(&log, "creating aws_subnet.a"));
    assert_eq!(
        report.summary(),
        crate::plan::Summary {
            add: 2,
            change: 0,
            destroy: 2
        }
    );
    let vpc = state.resource("aws_vpc.main").unwrap();
    assert!(vpc.id.as_deref().unwrap().starts_with("fake-"), "{vpc:?}");
    assert!(state.pending_operations.is_empty());
}

#[tokio::test]
async fn a_delete_waits_for_its_dependents_in_place_updates() {
    // A route table drops its route to the NAT gateway before the gateway goes.
    let harness = harness(state_of(vec![
        recorded("aws_nat_gateway.main", &[]),
        recorded("aws_route_table.private", &["aws_nat_gateway.main"]),
    ]))
    .await;
    let plan = plan_of(vec![
        change("aws_route_table.private", Action::Update, &[]),
        change(
            "aws_nat_gateway.main",
            Action::Delete,
            &["aws_route_table.private"],
        ),
    ]);
    let provider = Arc::new(
        FakeProvider::new()
            .with_live("aws_nat_gateway.main", "nat-1")
            .with_live("aws_route_table.private", "rtb-1"),
    );
    let (report, events, state) =
        execute(&plan, &harness, provider.clone(), 8, Default::default()).await;
    assert!(report.succeeded(), "{:?}", report.failure_messages());
    let log = provider.log();
    assert!(
        position(&log, "updated aws_route_table.private")
            < position(&log, "deleting aws_nat_gateway.main")
    );
    assert_eq!(
        outcomes(&report),
        vec![
            ("aws_route_table.private".into(), Outcome::Updated),
            ("aws_nat_gateway.main".into(), Outcome::Destroyed),
        ]
    );
    assert!(events.contains(&Event::Started {
        address: "aws_route_table.private".into(),
        operation: Operation::Update,
        changed: vec!["name".into()],
    }));
    assert!(state.resource("aws_nat_gateway.main").is_none());
    assert_eq!(
        state
            .resource("aws_route_table.private")
            .unwrap()
            .id
            .as_deref(),
        Some("rtb-1")
    );
}

/// An identity migration on a state recorded before the service account depended on the
/// connect policy: the policy, which nothing depended on, went first, and the service account
/// lost its login before it moved to the new role. A pure delete now also waits for the updates
/// of what used the resource it goes with.
#[tokio::test]
async fn a_delete_waits_for_the_updates_of_what_used_the_resource_it_goes_with() {
    let harness = harness(state_of(vec![
        recorded("aws_iam_role.irsa[demo/app]", &[]),
        recorded(
            "aws_iam_role_policy.irsa[demo/app]",
            &["aws_iam_role.irsa[demo/app]"],
        ),
        recorded(
            "kubernetes_service_account.demo/app",
            &["aws_iam_role.irsa[demo/app]"],
        ),
    ]))
    .await;
    let plan = plan_of(vec![
        change("kubernetes_service_account.demo/app", Action::Update, &[]),
        change("aws_iam_role_policy.irsa[demo/app]", Action::Delete, &[]),
        change("aws_iam_role.irsa[demo/app]", Action::Delete, &[]),
    ]);
    let provider = Arc::new(
        FakeProvider::new()
            .with_live("aws_iam_role.irsa[demo/app]", "r")
            .with_live("aws_iam_role_policy.irsa[demo/app]", "p")
            .with_live("kubernetes_service_account.demo/app", "sa"),
    );
    let (report, _, _) = execute(&plan, &harness, provider.clone(), 8, Default::default()).await;
    assert!(report.succeeded(), "{:?}", report.failure_messages());
    let log = provider.log();
    assert!(
        position(&log, "updated kubernetes_service_account.demo/app")
            < position(&log, "deleting aws_iam_role_policy.irsa[demo/app]"),
        "{log:?}"
    );
}

/// The wait above must not close a loop: a Pod Identity -> IRSA migration of the last Pod
/// Identity entry together with a node group replacement (the add-on goes before the old node
/// group, the association before the add-on, and the Deployment's update waits for the new
/// node group) would have stalled every one of these operations.
#[tokio::test]
async fn the_wait_for_users_of_what_goes_along_closes_no_loop() {
    let harness = harness(state_of(vec![
        recorded("aws_eks_node_group.main", &[]),
        recorded(
            "aws_eks_addon.pod_identity_agent",
            &["aws_eks_node_group.main"],
        ),
        recorded("aws_iam_role.pod_identity[demo/app]", &[]),
        recorded(
            "aws_iam_role_policy.pod_identity[demo/app]",
            &["aws_iam_role.pod_identity[demo/app]"],
        ),
        recorded(
            "aws_eks_pod_identity_association.main[demo/app]",
            &[
                "aws_eks_addon.pod_identity_agent",
                "aws_iam_role_policy.pod_identity[demo/app]",
                "aws_iam_role.pod_identity[demo/app]",
            ],
        ),
        recorded(
            "kubernetes_deployment.demo/pwless-demo",
            &[
                "aws_iam_role_policy.pod_identity[demo/app]",
                "aws_eks_node_group.main",
            ],
        ),
    ]))
    .await;
    let plan = plan_of(vec![
        change("aws_eks_node_group.main", Action::Replace, &[]),
        change(
            "kubernetes_deployment.demo/pwless-demo",
            Action::Update,
            &["aws_eks_node_group.main"],
        ),
        change("aws_eks_addon.pod_identity_agent", Action::Delete, &[]),
        change(
            "aws_eks_pod_identity_association.main[demo/app]",
            Action::Delete,
            &[],
        ),
        change(
            "aws_iam_role_policy.pod_identity[demo/app]",
            Action::Delete,
            &[],
        ),
        change("aws_iam_role.pod_identity[demo/app]", Action::Delete, &[]),
    ]);
    let mut provider = FakeProvider::new();
    for address in [
        "aws_eks_node_group.main",
        "aws_eks_addon.pod_identity_agent",
        "aws_iam_role.pod_identity[demo/app]",
        "aws_iam_role_policy.pod_identity[demo/app]",
        "aws_eks_pod_identity_association.main[demo/app]",
        "kubernetes_deployment.demo/pwless-demo",
    ] {
        provider = provider.with_live(address, "live");
    }
    let provider = Arc::new(provider);
    let (report, _, _) = execute(&plan, &harness, provider.clone(), 8, Default::default()).await;
    assert!(report.succeeded(), "{:?}", report.failure_messages());
    assert!(report.skipped.is_empty(), "stalled: {:?}", report.skipped);
    let log = provider.log();
    // The policy itself still waits for the Deployment that used it.
    assert!(
        position(&log, "updated kubernetes_deployment.demo/pwless-demo")
            < position(&log, "deleting aws_iam_role_policy.pod_identity[demo/app]"),
        "{log:?}"
    );
}

/// Two steps through the users: a state recorded before the Deployment depended on the policy
/// still rolls the Deployment over before the policy goes.
#[tokio::test]
async fn a_delete_also_waits_for_what_depended_on_the_users() {
    let harness = harness(state_of(vec![
        recorded("aws_iam_role.irsa[demo/app]", &[]),
        recorded(
            "aws_iam_role_policy.irsa[demo/app]",
            &["aws_iam_role.irsa[demo/app]"],
        ),
        recorded(
            "kubernetes_service_account.demo/app",
            &["aws_iam_role.irsa[demo/app]"],
        ),
        recorded(
            "kubernetes_deployment.demo/pwless-demo",
            &["kubernetes_service_account.demo/app"],
        ),
    ]))
    .await;
    let plan = plan_of(vec![
        change("kubernetes_service_account.demo/app", Action::Update, &[]),
        change(
            "kubernetes_deployment.demo/pwless-demo",
            Action::Update,
            &["kubernetes_service_account.demo/app"],
        ),
        change("aws_iam_role_policy.irsa[demo/app]", Action::Delete, &[]),
        change("aws_iam_role.irsa[demo/app]", Action::Delete, &[]),
    ]);
    let mut provider = FakeProvider::new();
    for address in [
        "aws_iam_role.irsa[demo/app]",
        "aws_iam_role_policy.irsa[demo/app]",
        "kubernetes_service_account.demo/app",
        "kubernetes_deployment.demo/pwless-demo",
    ] {
        provider = provider.with_live(address, "live");
    }
    let provider = Arc::new(provider);
    let (report, _, _) = execute(&plan, &harness, provider.clone(), 8, Default::default()).await;
    assert!(report.succeeded(), "{:?}", report.failure_messages());
    let log = provider.log();
    assert!(
        position(&log, "updated kubernetes_deployment.demo/pwless-demo")
            < position(&log, "deleting aws_iam_role_policy.irsa[demo/app]"),
        "{log:?}"
    );
}

#[tokio::test]
async fn a_failure_skips_its_dependents_and_every_error_is_reported_with_its_code() {
    let denied = ProviderError {
        kind: ErrorKind::Permanent,
        code: Some("UnauthorizedOperation".into()),
        message: "not authorized to perform ec2:CreateVpc".into(),
    };
    let harness = harness(State::new("test")).await;
    let plan = plan_of(vec![
        change("aws_vpc.main", Action::Create, &[]),
        change("aws_subnet.a", Action::Create, &["aws_vpc.main"]),
        change("aws_route_table.public", Action::Create, &["aws_subnet.a"]),
        change("aws_iam_role.cluster", Action::Create, &[]),
        change("aws_eip.nat", Action::Create, &[]),
        change("aws_iam_role.node", Action::Create, &[]),
    ]);
    let provider = Arc::new(
        FakeProvider::new()
            .failing(Call::Create, "aws_vpc.main", denied.clone())
            .failing(Call::Create, "aws_iam_role.cluster", denied.clone())
            .failing(
                Call::Create,
                "aws_eip.nat",
                ProviderError::permanent("address limit exceeded"),
            ),
    );
    let (report, events, state) =
        execute(&plan, &harness, provider.clone(), 8, Default::default()).await;
    let failed: Vec<&str> = report.failed.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(failed.len(), 3, "{failed:?}");
    for address in ["aws_vpc.main", "aws_iam_role.cluster", "aws_eip.nat"] {
        assert!(failed.contains(&address), "{address} in {failed:?}");
    }
    assert_eq!(
        report.skipped,
        vec!["aws_subnet.a".to_string(), "aws_route_table.public".into()]
    );
    assert!(
        !provider
            .log()
            .iter()
            .any(|line| line.contains("aws_subnet.a"))
    );
    // The independent role was still made.
    assert_eq!(
        outcomes(&report),
        vec![("aws_iam_role.node".into(), Outcome::Created)]
    );
    assert!(state.resource("aws_iam_role.node").is_some());
    // The second failure with the same message points at the first, and keeps the code.
    let failures: Vec<(String, Option<String>, Option<String>)> = events
        .iter()
        .filter_map(|event| match event {
            Event::Failed {
                address,
                code,
                same_as,
                ..
            } => Some((address.clone(), code.clone(), same_as.clone())),
            _ => None,
        })
        .collect();
    let pointing: Vec<_> = failures
        .iter()
        .filter(|(_, _, same)| same.is_some())
        .collect();
    assert_eq!(pointing.len(), 1, "{failures:?}");
    assert_eq!(pointing[0].1.as_deref(), Some("UnauthorizedOperation"));
    // A permanent error may have taken effect: the creates stay pending for the next run.
    let pending: Vec<&str> = state
        .pending_operations
        .iter()
        .map(|operation| operation.address.as_str())
        .collect();
    assert_eq!(pending.len(), 3, "{pending:?}");
}

#[tokio::test]
async fn a_failure_that_reached_nothing_or_of_an_idempotent_create_is_not_left_pending() {
    let harness = harness(State::new("test")).await;
    let plan = plan_of(vec![
        change("postgresql_role.app", Action::Create, &[]),
        change("kubernetes_namespace.app", Action::Create, &[]),
        change("aws_vpc.main", Action::Create, &[]),
    ]);
    let provider = Arc::new(
        FakeProvider::new()
            .failing(
                Call::Create,
                "postgresql_role.app",
                ProviderError::permanent("cannot connect").local(),
            )
            .failing(
                Call::Create,
                "kubernetes_namespace.app",
                ProviderError::permanent("the API server refused"),
            )
            .failing(
                Call::Create,
                "aws_vpc.main",
                ProviderError {
                    kind: ErrorKind::Retryable,
                    code: Some("RequestLimitExceeded".into()),
                    message: "slow down".into(),
                },
            ),
    );
    let (report, _, state) = execute(&plan, &harness, provider, 8, Default::default()).await;
    assert_eq!(report.failed.len(), 3);
    let pending: Vec<&str> = state
        .pending_operations
        .iter()
        .map(|operation| operation.address.as_str())
        .collect();
    // Only the VPC's create may have happened: its answer was lost, not refused locally.
    assert_eq!(pending, vec!["aws_vpc.main"]);
}

#[tokio::test]
async fn an_interrupt_starts_nothing_new_and_saves_what_was_in_flight() {
    let stop = Arc::new(AtomicBool::new(false));
    let pressed = stop.clone();
    let harness = harness(State::new("test")).await;
    let plan = plan_of(vec![
        change("aws_vpc.main", Action::Create, &[]),
        change("aws_iam_role.cluster", Action::Create, &[]),
        change("aws_iam_role.node", Action::Create, &[]),
    ]);
    // Ctrl-C while the first create is in flight.
    let provider = Arc::new(
        FakeProvider::new().with_hook(Box::new(move |call, address| {
            if call == Call::Create && address == "aws_vpc.main" {
                pressed.store(true, Ordering::SeqCst);
            }
        })),
    );
    let interrupts = Interrupts {
        stop,
        ..Default::default()
    };
    let (report, _, state) = execute(&plan, &harness, provider.clone(), 1, interrupts).await;
    assert!(report.interrupted);
    assert_eq!(
        outcomes(&report),
        vec![("aws_vpc.main".into(), Outcome::Created)]
    );
    assert_eq!(
        report.skipped,
        vec![
            "aws_iam_role.cluster".to_string(),
            "aws_iam_role.node".into()
        ]
    );
    assert_eq!(provider.live(), vec!["aws_vpc.main".to_string()]);
    // What was in flight is recorded, and nothing is left pending.
    assert!(state.resource("aws_vpc.main").is_some());
    assert!(state.pending_operations.is_empty());
    // ...on disk, not only in memory.
    let on_disk: State = serde_json::from_slice(&std::fs::read(&harness.path).unwrap()).unwrap();
    assert!(on_disk.resource("aws_vpc.main").is_some());
}

#[tokio::test]
async fn a_second_interrupt_abandons_what_is_in_flight_and_leaves_it_pending() {
    // Before, a second Ctrl-C exited the process from a task: an S3 lock stayed held until its
    // lease ran out. Now the executor returns, and the caller lets go of the lock.
    let interrupts = Interrupts::default();
    let (stop, abort) = (interrupts.stop.clone(), interrupts.abort.clone());
    let harness = harness(State::new("test")).await;
    let plan = plan_of(vec![
        change("aws_vpc.main", Action::Create, &[]),
        change("aws_iam_role.cluster", Action::Create, &[]),
    ]);
    // Both presses while the VPC's create waits on a cloud that does not answer.
    let provider = Arc::new(
        FakeProvider::new()
            .hanging("aws_vpc.main")
            .with_hook(Box::new(move |call, address| {
                if call == Call::Create && address == "aws_vpc.main" {
                    stop.store(true, Ordering::SeqCst);
                    abort.store(true, Ordering::SeqCst);
                }
            })),
    );
    let (report, _, state) = execute(&plan, &harness, provider.clone(), 1, interrupts).await;
    assert!(report.aborted && report.interrupted);
    assert_eq!(report.abandoned, vec!["aws_vpc.main".to_string()]);
    assert_eq!(report.skipped, vec!["aws_iam_role.cluster".to_string()]);
    assert!(report.done.is_empty() && report.failed.is_empty());
    // The create may have reached the cloud: it stays pending, for the next run to settle.
    let pending: Vec<&str> = state
        .pending_operations
        .iter()
        .map(|operation| operation.address.as_str())
        .collect();
    assert_eq!(pending, vec!["aws_vpc.main"]);
    assert!(
        !provider
            .log()
            .iter()
            .any(|line| line.contains("aws_iam_role"))
    );
}

#[tokio::test]
async fn a_second_interrupt_after_the_last_operation_finished_still_stops_the_run() {
    // Before, a second Ctrl-C that came between the last operation's end and the executor's
    // next look was lost: the run ended as interrupted (exit 1), not stopped (exit 130).
    let interrupts = Interrupts::default();
    let (stop, abort) = (interrupts.stop.clone(), interrupts.abort.clone());
    let harness = harness(State::new("test")).await;
    let plan = plan_of(vec![
        change("aws_vpc.main", Action::Create, &[]),
        change("aws_iam_role.cluster", Action::Create, &[]),
    ]);
    let provider = Arc::new(
        FakeProvider::new().with_hook(Box::new(move |call, address| {
            if call == Call::Create && address == "aws_vpc.main" {
                stop.store(true, Ordering::SeqCst);
                abort.store(true, Ordering::SeqCst);
            }
        })),
    );
    let (report, _, state) = execute(&plan, &harness, provider, 1, interrupts).await;
    assert!(report.aborted, "{report:?}");
    assert!(report.abandoned.is_empty());
    assert_eq!(
        outcomes(&report),
        vec![("aws_vpc.main".into(), Outcome::Created)]
    );
    assert!(state.pending_operations.is_empty());
}

#[tokio::test]
async fn a_state_that_cannot_be_saved_stops_the_run_once() {
    // Before, a lost lock or a conflicting write became "cannot save the state" for every
    // remaining operation, each of which still called its provider first.
    let harness = harness(State::new("test")).await;
    let path = harness.path.clone();
    let plan = plan_of(vec![
        change("aws_vpc.main", Action::Create, &[]),
        change("aws_iam_role.cluster", Action::Create, &[]),
        change("aws_iam_role.node", Action::Create, &[]),
        change("aws_eip.nat", Action::Create, &[]),
    ]);
    // Someone writes the state behind the journal's back while the role is being created.
    let provider = Arc::new(
        FakeProvider::new().with_hook(Box::new(move |call, address| {
            if call == Call::Create && address == "aws_iam_role.cluster" {
                let mut text = std::fs::read_to_string(&path).unwrap();
                text.push(' ');
                std::fs::write(&path, text).unwrap();
            }
        })),
    );
    let (report, events, _) =
        execute(&plan, &harness, provider.clone(), 1, Default::default()).await;
    assert_eq!(report.failed.len(), 1, "{:?}", report.failure_messages());
    let (address, error) = &report.failed[0];
    assert_eq!(address, "aws_iam_role.cluster");
    assert!(
        matches!(error, OpError::State(state) if matches!(**state, crate::state::StateError::Conflict { .. })),
        "{error:?}"
    );
    let message = crate::errors::chain(error);
    assert!(message.contains("changed since it was read"), "{message}");
    assert_eq!(
        report.skipped,
        vec!["aws_iam_role.node".to_string(), "aws_eip.nat".into()]
    );
    // Nothing more reached the provider.
    assert!(
        !provider
            .log()
            .iter()
            .any(|line| line.contains("node") || line.contains("nat"))
    );
    let failures = events
        .iter()
        .filter(|event| matches!(event, Event::Failed { .. }))
        .count();
    assert_eq!(failures, 1);
}

#[tokio::test]
async fn unknown_inputs_are_resolved_from_the_outputs_of_what_was_applied_first() {
    let harness = harness(State::new("test")).await;
    let mut subnet = change("aws_subnet.a", Action::Create, &["aws_vpc.main"]);
    subnet
        .after_unknown
        .insert("vpc_id".into(), Expr::output("aws_vpc.main", "id"));
    let mut orphan = change("aws_subnet.b", Action::Create, &["aws_vpc.main"]);
    orphan.after_unknown.insert(
        "vpc_id".into(),
        Expr::output("aws_vpc.main", "no_such_output"),
    );
    let plan = plan_of(vec![
        change("aws_vpc.main", Action::Create, &[]),
        subnet,
        orphan,
    ]);
    let provider = Arc::new(FakeProvider::new());
    let (report, _, state) = execute(&plan, &harness, provider, 8, Default::default()).await;
    let vpc_id = state.resource("aws_vpc.main").unwrap().id.clone().unwrap();
    assert_eq!(
        state.resource("aws_subnet.a").unwrap().inputs.get("vpc_id"),
        Some(&Value::String(vpc_id))
    );
    assert_eq!(report.failed.len(), 1);
    assert!(matches!(
        &report.failed[0],
        (address, OpError::Unresolved { input }) if address == "aws_subnet.b" && input == "vpc_id"
    ));
}

fn pending(address: &str, operation: Operation) -> PendingOperation {
    PendingOperation {
        address: address.into(),
        kind: kind_of(address),
        operation,
        token: format!("tag:pwless:address={address}"),
        started_at: "2026-11-30T00:00:00Z".into(),
        inputs: Some(BTreeMap::from([("name".to_string(), json!(address))])),
        dependencies: vec![],
    }
}

#[tokio::test]
async fn recovery_adopts_what_a_dead_run_created_and_forgets_what_it_had_not() {
    let mut prior = state_of(vec![recorded("aws_iam_role.node", &[])]);
    prior.pending_operations = vec![
        pending("aws_vpc.main", Operation::Create),
        pending("aws_subnet.a", Operation::Create),
        pending("kubernetes_namespace.app", Operation::Create),
        pending("aws_iam_role.node", Operation::Update),
    ];
    let harness = harness(prior).await;
    // The VPC's create landed although its answer was lost; the subnet's never did.
    let provider = FakeProvider::new().with_live("aws_vpc.main", "vpc-landed");
    let recorder = Recorder::default();
    recover::recover(&harness.journal, &provider, &recorder, Duration::ZERO)
        .await
        .unwrap();
    let settled: Vec<(String, Settlement)> = recorder
        .events()
        .into_iter()
        .map(|event| match event {
            Event::Settled {
                address,
                settlement,
            } => (address, settlement),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        settled,
        vec![
            ("aws_vpc.main".into(), Settlement::Adopted),
            ("aws_subnet.a".into(), Settlement::NotCreated),
            ("kubernetes_namespace.app".into(), Settlement::MadeAgain),
            (
                "aws_iam_role.node".into(),
                Settlement::Refreshed {
                    operation: Operation::Update
                }
            ),
        ]
    );
    let state = harness.journal.snapshot().await;
    assert!(state.pending_operations.is_empty());
    assert_eq!(
        state.resource("aws_vpc.main").unwrap().id.as_deref(),
        Some("vpc-landed")
    );
    assert!(state.resource("aws_subnet.a").is_none());
    // An idempotent create is not looked for: it needs no access the plan has not made yet.
    assert!(
        !provider
            .log()
            .iter()
            .any(|line| line.contains("kubernetes"))
    );
}

#[tokio::test]
async fn recovery_that_cannot_check_a_create_stops_and_keeps_it_pending() {
    let mut prior = State::new("test");
    prior.pending_operations = vec![
        pending("aws_vpc.main", Operation::Create),
        pending("postgresql_role.app", Operation::Create),
    ];
    let harness = harness(prior).await;
    let provider = FakeProvider::new()
        .failing(
            Call::Adopt,
            "aws_vpc.main",
            ProviderError {
                kind: ErrorKind::Retryable,
                code: Some("Throttling".into()),
                message: "rate exceeded".into(),
            },
        )
        .without(ResourceKind::PostgresRole);
    let error = recover::recover(
        &harness.journal,
        &provider,
        &super::event::Discard,
        Duration::ZERO,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&error, recover::RecoverError::Check { address, source } if address == "aws_vpc.main" && source.code.as_deref() == Some("Throttling")),
        "{error:?}"
    );
    assert_eq!(harness.journal.snapshot().await.pending_operations.len(), 2);

    let harness = harness_with_unsupported().await;
    let error = recover::recover(
        &harness.journal,
        &FakeProvider::new().without(ResourceKind::PostgresRole),
        &super::event::Discard,
        Duration::ZERO,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&error, recover::RecoverError::Unsupported { address, .. } if address == "postgresql_role.app"),
        "{error:?}"
    );
    assert_eq!(harness.journal.snapshot().await.pending_operations.len(), 1);
}

async fn harness_with_unsupported() -> Harness {
    let mut prior = State::new("test");
    prior.pending_operations = vec![pending("postgresql_role.app", Operation::Create)];
    harness(prior).await
}

#[tokio::test]
async fn forgotten_users_leave_the_state_only_after_their_cluster_is_deleted() {
    // Before, a user's state entry went first (dependents first), so a failed cluster
    // delete left roles that still existed but were no longer recorded.
    let stack = crate::spec::parse_str(
        std::path::Path::new("stack.yaml"),
        include_str!("../../stack.example.yaml"),
    )
    .unwrap();
    let graph = crate::graph::ResourceGraph::from_stack(&stack).unwrap();
    // The example stack as the executor records it, applied over the fake provider.
    let created = crate::plan::plan(
        &stack,
        &graph,
        None,
        &crate::plan::ObservedState::new(),
        crate::plan::Mode::Normal,
    );
    let harness = harness(State::new(&stack.name)).await;
    let (report, _, state) = execute(
        &created,
        &harness,
        Arc::new(FakeProvider::new()),
        8,
        Interrupts::default(),
    )
    .await;
    assert!(report.succeeded(), "{:?}", report.failure_messages());
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
