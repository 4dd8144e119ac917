//! The planner. No I/O: everything it knows comes in through its arguments.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet};

use serde_json::Value;

use super::{Action, Mode, PLAN_FORMAT_VERSION, Plan, PriorState, ResourceChange, summarize};
use crate::graph::{Expr, ResourceGraph};
use crate::state::{ResourceState, State};

/// What a refresh saw of one resource in the cloud.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    /// It is gone (deleted outside pwless).
    Missing,
    /// It exists with these inputs and outputs.
    Present {
        inputs: BTreeMap<String, Value>,
        outputs: BTreeMap<String, Value>,
    },
}

/// Refresh results by address. Resources not in the map were not read (`--refresh=false`).
pub type ObservedState = HashMap<String, Observed>;

/// Computes the plan that takes the infrastructure from `prior` (as `observed`, where read)
/// to what `graph` describes — or, in [`Mode::Destroy`], to nothing.
///
/// `prior` is `None` when there is no state file yet.
pub fn plan(
    stack: &crate::spec::Stack,
    graph: &ResourceGraph,
    prior: Option<&State>,
    observed: &ObservedState,
    mode: Mode,
) -> Plan {
    let empty = State::new(&stack.name);
    let state = prior.unwrap_or(&empty);
    let mut changes = match mode {
        Mode::Normal => plan_normal(graph, state, observed),
        Mode::Destroy => Vec::new(),
    };
    let keep: HashSet<&str> = match mode {
        Mode::Normal => graph
            .in_order()
            .map(|resource| resource.address.as_str())
            .collect(),
        Mode::Destroy => HashSet::new(),
    };
    changes.extend(plan_deletes(state, &keep, observed));
    if let Some(prior) = prior {
        name_final_snapshots(&mut changes, prior, observed);
    }
    forget_with_the_cluster(&mut changes);
    keep_shared(&mut changes, state);
    explain_iam_auth(&mut changes);
    list_holdings(&mut changes, observed);
    mark_data_loss(&mut changes, observed);
    let summary = summarize(&changes);
    let reads = match mode {
        Mode::Normal => super::reads(stack),
        Mode::Destroy => Vec::new(),
    };
    Plan {
        format_version: PLAN_FORMAT_VERSION,
        pwless_version: env!("CARGO_PKG_VERSION").to_string(),
        stack: stack.name.clone(),
        region: stack.region.clone(),
        mode,
        state_backend: stack.state.clone(),
        prior_state: PriorState {
            lineage: prior.map(|state| state.lineage.clone()),
            serial: prior.map_or(0, |state| state.serial),
        },
        access: super::access::summarize(&changes, mode, &reads),
        resource_changes: changes,
        summary,
        allowed_destroy: Vec::new(),
        reads,
    }
}

fn plan_normal(
    graph: &ResourceGraph,
    state: &State,
    observed: &ObservedState,
) -> Vec<ResourceChange> {
    // Resources whose outputs apply will produce anew (created or replaced), and of those the
    // outputs known already: the ones that echo a known input (`ResourceKind::echoed_outputs`).
    let mut outputs_unknown: HashSet<&str> = HashSet::new();
    let mut echoed: HashMap<&str, BTreeMap<String, Value>> = HashMap::new();
    // Resources replaced, or made again after they were deleted outside pwless: what lives in
    // them (`ResourceKind::parent_inputs`) went with them, even when the reference reads the
    // same (an echoed name), so such an input counts as changed.
    let mut remade: HashSet<&str> = HashSet::new();
    let mut changes = Vec::with_capacity(graph.len());

    for resource in graph.in_order() {
        let address = resource.address.as_str();
        let prior = state.resource(address);
        let seen = observed.get(address);
        let mut reason = None;

        // Another kind at the same address: the old resource is deleted, the new one created.
        let kind_changed = prior.is_some_and(|prior| prior.kind != resource.kind);
        if let Some(prior) = prior.filter(|_| kind_changed) {
            reason = Some(format!(
                "its kind changed from {} to {}",
                prior.kind, resource.kind
            ));
        }
        let before: Option<&BTreeMap<String, Value>> = match (prior, seen) {
            (None, _) => None,
            (Some(prior), _) if kind_changed => Some(&prior.inputs),
            (Some(_), Some(Observed::Missing)) => {
                reason = Some("it was deleted outside pwless".to_string());
                None
            }
            (Some(prior), Some(Observed::Present { inputs, .. })) => {
                if *inputs != prior.inputs {
                    reason = Some("it was changed outside pwless".to_string());
                }
                Some(inputs)
            }
            (Some(prior), None) => Some(&prior.inputs),
        };

        let mut after = BTreeMap::new();
        let mut after_unknown = BTreeMap::new();
        for (name, expr) in &resource.inputs {
            let mut lookup = |reference: &crate::graph::OutputRef| -> Option<Value> {
                if outputs_unknown.contains(reference.address.as_str()) {
                    return echoed
                        .get(reference.address.as_str())
                        .and_then(|known| known.get(&reference.output))
                        .cloned();
                }
                let outputs = match observed.get(&reference.address) {
                    Some(Observed::Present { outputs, .. }) => Some(outputs),
                    Some(Observed::Missing) => None,
                    None => state
                        .resource(&reference.address)
                        .map(|resource| &resource.outputs),
                };
                outputs
                    .and_then(|outputs| outputs.get(&reference.output))
                    .cloned()
            };
            match expr.partially_resolve(&mut lookup) {
                Expr::Value(value) => {
                    after.insert(name.clone(), value);
                }
                partial => {
                    after_unknown.insert(name.clone(), partial);
                }
            }
        }

        let (action, changed, replace_paths) = match before {
            None => (Action::Create, Vec::new(), Vec::new()),
            Some(before) => {
                let names: BTreeSet<&String> = before
                    .keys()
                    .chain(after.keys())
                    .chain(after_unknown.keys())
                    .collect();
                let changed: Vec<String> = names
                    .into_iter()
                    .filter(|name| {
                        after_unknown.contains_key(*name)
                            || before.get(*name) != after.get(*name)
                            || (resource.kind.parent_inputs().contains(&name.as_str())
                                && resource.inputs.get(*name).is_some_and(|expr| {
                                    expr.references().iter().any(|reference| {
                                        remade.contains(reference.address.as_str())
                                    })
                                }))
                    })
                    .cloned()
                    .collect();
                let force_new = resource.kind.force_new();
                // An input the recorded resource never had (a newer pwless added it to the
                // kind, e.g. the EKS cluster's `vpc_id`) is recorded by an update, never the
                // cause of a replacement.
                let replace_paths: Vec<String> = changed
                    .iter()
                    .filter(|name| force_new.contains(&name.as_str()) && before.contains_key(*name))
                    .cloned()
                    .collect();
                let action = if kind_changed {
                    Action::Replace
                } else if changed.is_empty() {
                    Action::NoOp
                } else if replace_paths.is_empty() {
                    Action::Update
                } else {
                    Action::Replace
                };
                (action, changed, replace_paths)
            }
        };
        if action == Action::NoOp {
            reason = None;
        }
        if action == Action::Replace && reason.is_none() {
            // Replaced only because what it lives in is made anew: say that, not that a name
            // which reads the same "cannot change".
            let parent = resource
                .kind
                .parent_inputs()
                .iter()
                .filter_map(|name| resource.inputs.get(*name))
                .flat_map(|expr| expr.references())
                .find(|reference| remade.contains(reference.address.as_str()));
            let only_parent = replace_paths.iter().all(|name| {
                resource.kind.parent_inputs().contains(&name.as_str())
                    && before.is_some_and(|before| before.get(name) == after.get(name))
            });
            reason = Some(match parent {
                Some(parent) if only_parent => {
                    format!("it lives in {}, which is made anew", parent.address)
                }
                _ => format!("{} cannot change in place", replace_paths.join(", ")),
            });
        }
        if action == Action::Replace || (action == Action::Create && prior.is_some()) {
            remade.insert(address);
        }
        if matches!(action, Action::Create | Action::Replace) {
            outputs_unknown.insert(address);
            let known: BTreeMap<String, Value> = resource
                .kind
                .echoed_outputs()
                .iter()
                .filter_map(|name| Some((name.to_string(), after.get(*name)?.clone())))
                .collect();
            echoed.insert(address, known);
        }
        changes.push(ResourceChange {
            address: resource.address.clone(),
            kind: resource.kind,
            action,
            reason,
            before: before.cloned(),
            after: Some(after),
            after_unknown,
            changed,
            replace_paths,
            depends_on: graph
                .dependencies_of(address)
                .into_iter()
                .map(str::to_string)
                .collect(),
            final_snapshot: None,
            forget: false,
            data_loss: None,
            holdings: Vec::new(),
        });
    }
    changes
}

/// Names the final snapshot of every Aurora cluster the plan deletes or replaces while it
/// still exists and its `final_snapshot` input is on (the default), so the plan can show what
/// is kept and apply takes exactly that snapshot. Snapshot identifiers: 1 to 255 letters,
/// digits and hyphens, a letter first, no double or trailing hyphen (RDS API reference,
/// `CreateDBClusterSnapshot`); the cluster identifier already obeys these rules.
fn name_final_snapshots(changes: &mut [ResourceChange], prior: &State, observed: &ObservedState) {
    for change in changes.iter_mut() {
        if change.kind != crate::graph::ResourceKind::RdsCluster
            || !matches!(change.action, Action::Delete | Action::Replace)
            || matches!(observed.get(&change.address), Some(Observed::Missing))
        {
            continue;
        }
        let Some(before) = &change.before else {
            continue;
        };
        let keep = before
            .get("final_snapshot")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let Some(identifier) = before.get("cluster_identifier").and_then(Value::as_str) else {
            continue;
        };
        if keep {
            let lineage: String = prior
                .lineage
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .take(8)
                .collect();
            change.final_snapshot = Some(format!("{identifier}-final-{lineage}-{}", prior.serial));
        }
    }
}

/// Marks each delete or replace of a resource that holds data, and still exists, with what is
/// lost ([`ResourceChange::data_loss`]): the Aurora cluster (its databases; whether a final
/// snapshot is kept is [`ResourceChange::final_snapshot`]), its instances, the EKS cluster
/// (everything running in it, pwless's or not), a database user that owns objects (its
/// application's tables: [`super::Holding`]).
fn mark_data_loss(changes: &mut [ResourceChange], observed: &ObservedState) {
    use crate::graph::ResourceKind;
    for change in changes.iter_mut() {
        if !matches!(change.action, Action::Delete | Action::Replace)
            || matches!(observed.get(&change.address), Some(Observed::Missing))
        {
            continue;
        }
        change.data_loss = match change.kind {
            ResourceKind::RdsCluster => {
                Some("every database, table and row in the Aurora cluster".to_string())
            }
            ResourceKind::RdsClusterInstance => Some(
                "an Aurora instance: its sessions are cut, and with no instance left the cluster serves nothing (the data is in the cluster's storage)".to_string(),
            ),
            ResourceKind::EksCluster => Some(
                "the EKS cluster and everything running in it: workloads, their volumes' attachments, every Kubernetes object, pwless's or not".to_string(),
            ),
            // A user that owns tables (its application's): they are kept, the master's from
            // then on, but the application loses them with its login.
            // Not read this run (no refresh, the database out of reach) or its holdings not
            // understood: what it owns is not known, so it counts as owning something.
            ResourceKind::PostgresRole
                if !change.forget
                    && !matches!(
                        observed.get(&change.address),
                        Some(Observed::Present { outputs, .. })
                            if outputs.get("holdings").is_some_and(|h| serde_json::from_value::<Vec<super::Holding>>(h.clone()).is_ok())
                    ) =>
            {
                Some("a database user that was not read from the database this run, so what it owns is not known (plan again with the database reachable to see)".to_string())
            }
            ResourceKind::PostgresRole if change.holdings.iter().any(|h| h.owns > 0) => {
                let owned: u64 = change.holdings.iter().map(|h| h.owns).sum();
                let databases: Vec<&str> = change
                    .holdings
                    .iter()
                    .filter(|h| h.owns > 0)
                    .map(|h| h.database.as_deref().unwrap_or("the cluster"))
                    .collect();
                Some(format!(
                    "the database user that owns {owned} object(s) in {} (kept, reassigned to the master user, but its application loses them with its login)",
                    databases.join(", ")
                ))
            }
            _ => None,
        };
    }
}

/// Gives each delete or replace of a database user that still exists (and is not forgotten
/// with its cluster) what it owns or holds, from the refresh (the PostgreSQL provider's
/// `holdings` output of the role: [`super::Holding`]).
fn list_holdings(changes: &mut [ResourceChange], observed: &ObservedState) {
    for change in changes.iter_mut() {
        if change.kind != crate::graph::ResourceKind::PostgresRole
            || change.forget
            || !matches!(change.action, Action::Delete | Action::Replace)
        {
            continue;
        }
        if let Some(Observed::Present { outputs, .. }) = observed.get(&change.address)
            && let Some(holdings) = outputs.get("holdings")
        {
            change.holdings = serde_json::from_value(holdings.clone()).unwrap_or_default();
        }
    }
}

/// When the plan deletes or replaces an Aurora cluster, the database users and grants that
/// lived in it go with it: their deletes only remove state entries (no connection to a
/// database that is going anyway, so destroy works without the CA bundle or a way in). Only
/// that cluster's: the users of another database of the stack (a referenced cluster, which
/// stays) are dropped as usual.
fn forget_with_the_cluster(changes: &mut [ResourceChange]) {
    let going: HashSet<String> = changes
        .iter()
        .filter(|change| {
            change.kind == crate::graph::ResourceKind::RdsCluster
                && matches!(change.action, Action::Delete | Action::Replace)
        })
        .map(|change| change.address.clone())
        .collect();
    if going.is_empty() {
        return;
    }
    for change in changes.iter_mut() {
        let Some(cluster) = crate::graph::address::database_of(&change.address)
            .map(crate::graph::address::rds_cluster)
            .filter(|cluster| going.contains(cluster))
        else {
            continue;
        };
        if change.kind.provider() == crate::graph::Provider::Postgres
            && matches!(change.action, Action::Delete | Action::Replace)
        {
            change.forget = true;
            if change.action == Action::Delete && change.reason.is_none() {
                change.reason = Some(format!(
                    "it goes with {cluster}; only the state entry is removed"
                ));
            }
        }
    }
}

/// What is recorded as `shared` (on a cluster the stack references, which other stacks and
/// teams use: its namespaces, the issuer's OIDC provider, the Pod Identity Agent) is never
/// deleted, by a delete or by a replace: only its state entry is removed.
/// Says what turning IAM database authentication on in a referenced Aurora cluster changes
/// for the users already there: nothing for password users (only members of `rds_iam` must
/// use tokens,
/// <https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/UsingWithRDS.IAMDBAuth.DBAccounts.html>).
fn explain_iam_auth(changes: &mut [ResourceChange]) {
    for change in changes.iter_mut() {
        if change.kind == crate::graph::ResourceKind::RdsClusterIamAuth
            && change.action == Action::Create
            && change.reason.is_none()
        {
            change.reason = Some(
                "turns IAM database authentication on in the referenced cluster, in place and at once (the stack's enable_iam_auth): users that log in with passwords keep doing so; only members of rds_iam, the stack's users, must log in with tokens; pwless never turns it off".into(),
            );
        }
    }
}

fn keep_shared(changes: &mut [ResourceChange], state: &State) {
    for change in changes.iter_mut() {
        let shared = matches!(change.action, Action::Delete | Action::Replace)
            && state
                .resource(&change.address)
                .and_then(|resource| resource.inputs.get("shared"))
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false);
        if shared {
            change.forget = true;
            if change.action == Action::Delete {
                change.reason = Some(
                    "others on the cluster the stack references may use it: pwless never deletes it; only the state entry is removed".into(),
                );
            }
        }
    }
}

/// Deletes for every state resource not in `keep`, ordered so that a resource goes only
/// after everything that depended on it.
fn plan_deletes(
    state: &State,
    keep: &HashSet<&str>,
    observed: &ObservedState,
) -> Vec<ResourceChange> {
    let doomed: Vec<&ResourceState> = state
        .resources
        .iter()
        .filter(|resource| !keep.contains(resource.address.as_str()))
        .collect();
    if doomed.is_empty() {
        return Vec::new();
    }
    let position: HashMap<&str, usize> = doomed
        .iter()
        .enumerate()
        .map(|(index, resource)| (resource.address.as_str(), index))
        .collect();
    // dependents[i]: doomed resources that depend on doomed[i]; they must be deleted first.
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); doomed.len()];
    for (index, resource) in doomed.iter().enumerate() {
        for dependency in &resource.dependencies {
            if let Some(&target) = position.get(dependency.as_str())
                && target != index
            {
                dependents[target].push(index);
            }
        }
    }
    // Kahn over the reversed edges; among ready resources, address order, for stability.
    let mut remaining: Vec<usize> = dependents.iter().map(Vec::len).collect();
    let mut dependencies_of: Vec<Vec<usize>> = vec![Vec::new(); doomed.len()];
    for (target, list) in dependents.iter().enumerate() {
        for &dependent in list {
            dependencies_of[dependent].push(target);
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> = (0..doomed.len())
        .filter(|index| remaining[*index] == 0)
        .map(Reverse)
        .collect();
    let mut order = Vec::with_capacity(doomed.len());
    let mut placed = vec![false; doomed.len()];
    while let Some(Reverse(index)) = ready.pop() {
        order.push(index);
        placed[index] = true;
        for &dependency in &dependencies_of[index] {
            remaining[dependency] -= 1;
            if remaining[dependency] == 0 {
                ready.push(Reverse(dependency));
            }
        }
    }
    // A cycle in a hand-edited state must not lose resources: append what is left.
    order.extend((0..doomed.len()).filter(|index| !placed[*index]));

    order
        .into_iter()
        .map(|index| {
            let resource = doomed[index];
            let reason = match observed.get(&resource.address) {
                Some(Observed::Missing) => {
                    Some("it is already gone; only the state entry is removed".to_string())
                }
                _ if keep.is_empty() => None,
                _ => Some("it is no longer in the stack".to_string()),
            };
            let mut depends_on: Vec<String> = dependents[index]
                .iter()
                .map(|dependent| doomed[*dependent].address.clone())
                .collect();
            depends_on.sort();
            ResourceChange {
                address: resource.address.clone(),
                kind: resource.kind,
                action: Action::Delete,
                reason,
                before: Some(resource.inputs.clone()),
                after: None,
                after_unknown: BTreeMap::new(),
                changed: Vec::new(),
                replace_paths: Vec::new(),
                depends_on,
                final_snapshot: None,
                forget: false,
                data_loss: None,
                holdings: Vec::new(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::graph::ResourceKind;
    use crate::state::ResourceState;

    fn recorded(address: &str, kind: ResourceKind, inputs: serde_json::Value) -> ResourceState {
        let inputs: BTreeMap<String, serde_json::Value> = serde_json::from_value(inputs).unwrap();
        ResourceState {
            address: address.into(),
            kind,
            id: Some(format!("{address}-id")),
            inputs,
            outputs: BTreeMap::new(),
            dependencies: Vec::new(),
        }
    }

    /// Before, any Aurora cluster the plan deleted made every database user's delete a
    /// state-only forget: destroying a stack that created one cluster and referenced another
    /// left the stack's users in the referenced cluster, with nothing recording them.
    #[test]
    fn only_the_users_of_a_cluster_that_goes_are_forgotten_with_it() {
        let stack = crate::graph::many_databases();
        let mut state = State::new(&stack.name);
        state.serial = 1;
        state.upsert(recorded(
            &crate::graph::address::rds_cluster("orders"),
            ResourceKind::RdsCluster,
            json!({"cluster_identifier": "shop-platform-orders", "final_snapshot": false}),
        ));
        for database in ["shop", "orders"] {
            for (address, kind) in [
                (
                    crate::graph::address::db_user_role(database, "reporting"),
                    ResourceKind::PostgresRole,
                ),
                (
                    crate::graph::address::db_user_grant(database, "reporting"),
                    ResourceKind::PostgresGrant,
                ),
            ] {
                state.upsert(recorded(&address, kind, json!({"name": "reporting"})));
            }
        }
        let graph = ResourceGraph::from_stack(&stack).unwrap();
        let destroy = plan(
            &stack,
            &graph,
            Some(&state),
            &ObservedState::new(),
            Mode::Destroy,
        );
        let change = |address: String| {
            destroy
                .resource_changes
                .iter()
                .find(|change| change.address == address)
                .unwrap_or_else(|| panic!("{address}"))
                .clone()
        };
        for forgotten in [
            crate::graph::address::db_user_role("orders", "reporting"),
            crate::graph::address::db_user_grant("orders", "reporting"),
        ] {
            let change = change(forgotten);
            assert!(change.forget, "{change:?}");
            assert_eq!(
                change.reason.as_deref(),
                Some("it goes with aws_rds_cluster.orders; only the state entry is removed")
            );
        }
        for dropped in [
            crate::graph::address::db_user_role("shop", "reporting"),
            crate::graph::address::db_user_grant("shop", "reporting"),
        ] {
            let change = change(dropped);
            assert_eq!(change.action, Action::Delete);
            assert!(!change.forget, "{change:?}");
        }
    }

    #[test]
    fn what_is_shared_on_a_referenced_cluster_is_forgotten_never_deleted() {
        let stack = crate::graph::referenced_stack(false, None);
        let graph = ResourceGraph::from_stack(&stack).unwrap();
        let mut state = State::new(&stack.name);
        state.serial = 1;
        // The team's namespace, recorded on another cluster: the stack moved clusters.
        state.upsert(recorded(
            "kubernetes_namespace.demo",
            ResourceKind::KubernetesNamespace,
            json!({"name": "demo", "labels": {}, "shared": true,
                   "cluster_arn": "arn:aws:eks:us-west-2:123456789012:cluster/before"}),
        ));
        // A namespace the stack no longer has, and an OIDC provider made for others too.
        state.upsert(recorded(
            "kubernetes_namespace.gone",
            ResourceKind::KubernetesNamespace,
            json!({"name": "gone", "labels": {}, "shared": true,
                   "cluster_arn": "arn:aws:eks:us-west-2:123456789012:cluster/team-cluster"}),
        ));
        // The stack's own relay namespace is not shared: it goes.
        state.upsert(recorded(
            "kubernetes_namespace.pwless-old",
            ResourceKind::KubernetesNamespace,
            json!({"name": "pwless-old", "labels": {},
                   "cluster_arn": "arn:aws:eks:us-west-2:123456789012:cluster/team-cluster"}),
        ));
        let normal = plan(
            &stack,
            &graph,
            Some(&state),
            &ObservedState::new(),
            Mode::Normal,
        );
        let change = |address: &str| {
            normal
                .resource_changes
                .iter()
                .find(|change| change.address == address)
                .unwrap_or_else(|| panic!("{address}"))
        };
        assert_eq!(change("kubernetes_namespace.demo").action, Action::Replace);
        assert!(change("kubernetes_namespace.demo").forget);
        assert_eq!(change("kubernetes_namespace.gone").action, Action::Delete);
        assert!(change("kubernetes_namespace.gone").forget);
        assert!(!change("kubernetes_namespace.gone").makes_call());
        assert!(!change("kubernetes_namespace.pwless-old").forget);

        // A destroy forgets the shared ones too.
        let destroy = plan(
            &stack,
            &ResourceGraph::build(Vec::new()).unwrap(),
            Some(&state),
            &ObservedState::new(),
            Mode::Destroy,
        );
        let forgotten: Vec<(&str, bool)> = destroy
            .resource_changes
            .iter()
            .map(|change| (change.address.as_str(), change.forget))
            .collect();
        assert!(
            forgotten.contains(&("kubernetes_namespace.demo", true)),
            "{forgotten:?}"
        );
        assert!(
            forgotten.contains(&("kubernetes_namespace.gone", true)),
            "{forgotten:?}"
        );
        assert!(
            forgotten.contains(&("kubernetes_namespace.pwless-old", false)),
            "{forgotten:?}"
        );
    }
}
