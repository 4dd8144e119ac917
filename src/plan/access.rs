//! Who may log in as whom after a plan: the access matrix, one link per (service account,
//! database) with the database user its IAM role may connect as there (`rds-db:connect` on
//! one dbuser ARN) and the cluster resource id, and who gets cluster-admin through EKS access
//! entries. Computed with the plan, from its changes, so the human and the JSON
//! renderers show the same thing (docs/plan-json.md, `access`).

use std::ops::Not;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Action, Mode, ResourceChange};
use crate::graph::{Expr, ResourceKind, address};
use crate::spec::model::Identity;

/// The access a plan leaves. Empty for a destroy.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AccessSummary {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub database: Vec<DatabaseAccess>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_admins: Vec<ClusterAdmin>,
    /// The database users the plan keeps or makes that no access entry's role may log in as
    /// (sorted; `<user>` in the `database:` shorthand's database, `<database>/<user>` in the
    /// others): a user nothing in the stack uses, which the plan flags. (Two entries cannot
    /// give one user different privileges: privileges belong to the user, not to an entry.)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unused_users: Vec<String>,
    /// The users that may log in to a database's cluster but that the stack does not declare,
    /// as the refresh found them (none without a refresh, or where the database cannot be
    /// reached): a team's own, which pwless never touches, or one this stack made and no
    /// longer records. The plan flags each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undeclared_users: Vec<UndeclaredUser>,
}

/// A login role of a database's cluster that the stack does not declare.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UndeclaredUser {
    /// The logical name of the database whose cluster holds it (`main` for `database:`).
    pub database: String,
    pub user: String,
    /// Its comment says this stack made it (`pwless:stack=…`): a user it made and no longer
    /// records (a state restored from an older copy, an entry removed by hand).
    #[serde(default, skip_serializing_if = "Not::not")]
    pub made_by_this_stack: bool,
}

impl AccessSummary {
    pub fn is_empty(&self) -> bool {
        self.database.is_empty()
            && self.cluster_admins.is_empty()
            && self.unused_users.is_empty()
            && self.undeclared_users.is_empty()
    }
}

/// One link of the access matrix: a Kubernetes service account whose role (IRSA or Pod
/// Identity) may log in to one database as one IAM-only database user (one `rds-db:connect`
/// grant of the role's policy). A service account with several databases has one link each. A
/// value known only after apply is `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatabaseAccess {
    /// `namespace/name`.
    pub service_account: String,
    /// This plan takes the access away (the role's policy is deleted); the other fields are
    /// then absent.
    #[serde(default, skip_serializing_if = "Not::not")]
    pub revoked: bool,
    /// The database's logical name (`main` for `database:`), when the plan makes or keeps the
    /// user the grant names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_user: Option<String>,
    /// The Aurora cluster's identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// The cluster resource id the dbuser ARN names (`cluster-ABC…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_resource_id: Option<String>,
    /// The role's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iam_role: Option<String>,
    /// How pods get the role's credentials: `irsa` or `pod_identity` (a migration shows the
    /// entry twice: the old mechanism revoked, the new one granted); `irsa` in plans saved
    /// before Pod Identity existed.
    #[serde(default)]
    pub identity: Identity,
}

/// A principal with cluster-admin through an EKS access entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterAdmin {
    pub principal_arn: String,
    /// This plan takes cluster-admin away.
    #[serde(default, skip_serializing_if = "Not::not")]
    pub revoked: bool,
}

/// A cluster resource id as a plan holds it: known, or the output of the Aurora cluster it waits
/// for (the address of a cluster the plan creates).
#[derive(Debug, Clone, PartialEq)]
enum ResourceId {
    Known(String),
    OutputOf(String),
    Unknown,
}

impl ResourceId {
    fn of_value(value: Option<&Value>) -> ResourceId {
        value
            .and_then(Value::as_str)
            .map_or(ResourceId::Unknown, |id| ResourceId::Known(id.to_string()))
    }

    fn of_expr(expr: Option<&Expr>) -> ResourceId {
        match expr {
            Some(Expr::Value(value)) => ResourceId::of_value(Some(value)),
            Some(Expr::Ref(reference)) => ResourceId::OutputOf(reference.address.clone()),
            _ => ResourceId::Unknown,
        }
    }

    fn known(&self) -> Option<String> {
        match self {
            ResourceId::Known(id) => Some(id.clone()),
            _ => None,
        }
    }
}

/// The grants of a planned `rds-db:connect` policy: (database user, cluster resource id), one
/// per dbuser ARN, known or waiting for the cluster's output. (A plan saved before policies
/// held several grants has one map instead of the list.)
fn grants(policy: &ResourceChange) -> Vec<(Option<String>, ResourceId)> {
    let of_value = |grant: &Value| {
        (
            grant
                .get("db_user")
                .and_then(Value::as_str)
                .map(str::to_string),
            ResourceId::of_value(grant.get("cluster_resource_id")),
        )
    };
    if let Some(value) = policy
        .after
        .as_ref()
        .and_then(|after| after.get("rds_db_connect"))
    {
        return match value {
            Value::Array(items) => items.iter().map(of_value).collect(),
            single => vec![of_value(single)],
        };
    }
    let of_expr = |grant: &Expr| match grant {
        Expr::Value(value) => of_value(value),
        Expr::Map(entries) => (
            match entries.get("db_user") {
                Some(Expr::Value(Value::String(user))) => Some(user.clone()),
                _ => None,
            },
            ResourceId::of_expr(entries.get("cluster_resource_id")),
        ),
        _ => (None, ResourceId::Unknown),
    };
    match policy.after_unknown.get("rds_db_connect") {
        Some(Expr::List(items)) => items.iter().map(of_expr).collect(),
        Some(single) => vec![of_expr(single)],
        None => Vec::new(),
    }
}

/// The access `changes` leave, read from the planned role policies (their `rds_db_connect`
/// grants), roles, database users and access entries. Each grant is tied to its database by
/// the database user of its name in the same cluster (the same cluster resource id, known or
/// the same cluster's output); the cluster's identifier comes from the cluster the plan
/// makes or keeps, or for a referenced one from the plan's `reads`.
pub fn summarize(changes: &[ResourceChange], mode: Mode, reads: &[super::Read]) -> AccessSummary {
    if mode == Mode::Destroy {
        return AccessSummary::default();
    }
    let change = |address: &str| changes.iter().find(|change| change.address == address);
    // The database users the plan makes or keeps: (address key, database, name, resource id).
    let users: Vec<(String, String, String, ResourceId)> = changes
        .iter()
        .filter(|change| {
            change.kind == ResourceKind::PostgresRole && change.action != Action::Delete
        })
        .filter_map(|change| {
            let key = address::key_of(&change.address, ResourceKind::PostgresRole, "user")?;
            let database = address::database_of(&change.address)?;
            let id = match change
                .after
                .as_ref()
                .and_then(|after| after.get("cluster_resource_id"))
            {
                Some(value) => ResourceId::of_value(Some(value)),
                None => ResourceId::of_expr(change.after_unknown.get("cluster_resource_id")),
            };
            Some((
                key.to_string(),
                database.to_string(),
                known(change, "name", None)?,
                id,
            ))
        })
        .collect();
    let cluster_of = |database: &str| {
        reads
            .iter()
            .find(|read| read.address == address::data::rds_cluster(database))
            .map(|read| read.id.clone())
            .or_else(|| {
                change(&address::rds_cluster(database))
                    .and_then(|cluster| known(cluster, "cluster_identifier", None))
            })
    };
    let mut summary = AccessSummary::default();
    let mut used = std::collections::BTreeSet::new();
    for policy in changes {
        let Some((entry, identity)) = [Identity::Irsa, Identity::PodIdentity]
            .into_iter()
            .find_map(|identity| {
                address::key_of(
                    &policy.address,
                    ResourceKind::IamRolePolicy,
                    identity.name(),
                )
                .map(|entry| (entry, identity))
            })
        else {
            continue;
        };
        if policy.action == Action::Delete {
            summary.database.push(DatabaseAccess {
                service_account: entry.to_string(),
                revoked: true,
                database: None,
                db_user: None,
                cluster: None,
                cluster_resource_id: None,
                iam_role: None,
                identity,
            });
            continue;
        }
        let iam_role = change(&address::keyed(
            ResourceKind::IamRole,
            identity.name(),
            entry,
        ))
        .and_then(|role| known(role, "name", None));
        for (db_user, id) in grants(policy) {
            let user = users.iter().find(|(_, _, name, user_id)| {
                Some(name) == db_user.as_ref() && *user_id == id && id != ResourceId::Unknown
            });
            let database = user.map(|(key, database, _, _)| {
                used.insert(key.clone());
                database.clone()
            });
            summary.database.push(DatabaseAccess {
                service_account: entry.to_string(),
                revoked: false,
                cluster: database.as_deref().and_then(cluster_of),
                database,
                db_user,
                cluster_resource_id: id.known(),
                iam_role: iam_role.clone(),
                identity,
            });
        }
    }
    let mut unused: Vec<String> = users
        .into_iter()
        .filter(|(key, _, _, _)| !used.contains(key))
        .map(|(key, _, _, _)| key)
        .collect();
    unused.sort();
    summary.unused_users = unused;
    for entry in changes {
        if let Some(principal) =
            address::key_of(&entry.address, ResourceKind::EksAccessEntry, "admin")
        {
            summary.cluster_admins.push(ClusterAdmin {
                principal_arn: principal.to_string(),
                revoked: entry.action == Action::Delete,
            });
        }
    }
    summary
}

/// The planned value of `input` (or of its field `key`) as text, when known at plan time.
fn known(change: &ResourceChange, input: &str, key: Option<&str>) -> Option<String> {
    let text = |value: &Value| {
        value
            .as_str()
            .map_or_else(|| value.to_string(), str::to_string)
    };
    if let Some(value) = change.after.as_ref().and_then(|after| after.get(input)) {
        return match key {
            None => Some(text(value)),
            Some(key) => value.get(key).map(text),
        };
    }
    match (change.after_unknown.get(input), key) {
        (Some(Expr::Map(entries)), Some(key)) => match entries.get(key) {
            Some(Expr::Value(value)) => Some(text(value)),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The access matrix of `examples/many-databases.yaml`'s first plan: one link per
    /// (service account, database), each tied to its database and cluster, the referenced
    /// cluster's resource id known and the created one's not yet.
    #[test]
    fn the_access_matrix_has_a_link_per_service_account_and_database() {
        let stack = crate::graph::many_databases();
        let graph = crate::graph::ResourceGraph::from_stack(&stack).unwrap();
        let plan = crate::plan::plan(
            &stack,
            &graph,
            None,
            &crate::plan::ObservedState::new(),
            Mode::Normal,
        );
        let mut links: Vec<String> = plan
            .access
            .database
            .iter()
            .map(|link| {
                let text = |value: &Option<String>| value.clone().unwrap_or("?".into());
                format!(
                    "{} {} {} {} {}",
                    link.service_account,
                    text(&link.database),
                    text(&link.db_user),
                    text(&link.cluster),
                    text(&link.cluster_resource_id)
                )
            })
            .collect();
        links.sort();
        assert_eq!(
            links,
            [
                "analytics/reports orders reporting shop-platform-orders ?",
                "analytics/reports shop reporting shop-aurora cluster-SHOPAURORA",
                "orders/api orders orders_api shop-platform-orders ?",
                "storefront/web shop storefront shop-aurora cluster-SHOPAURORA",
            ]
        );
        assert!(plan.access.unused_users.is_empty(), "{:?}", plan.access);

        // Without the reports service's `orders` entry, orders' `reporting` is nobody's; shop's
        // of the same name still is the reports service's.
        let mut fewer = stack.clone();
        fewer
            .access
            .retain(|entry| !(entry.service_account == "reports" && entry.database == "orders"));
        let graph = crate::graph::ResourceGraph::from_stack(&fewer).unwrap();
        let plan = crate::plan::plan(
            &fewer,
            &graph,
            None,
            &crate::plan::ObservedState::new(),
            Mode::Normal,
        );
        assert_eq!(plan.access.unused_users, ["orders/reporting"]);
        let human = crate::render::plan::human(&plan, crate::render::Style { color: false });
        assert!(
            human.contains("  ! database user reporting of database orders: no service account may log in as it"),
            "{human}"
        );
        assert!(
            human.contains("  analytics/reports -> database shop, database user reporting\n      on cluster shop-aurora (resource id cluster-SHOPAURORA)"),
            "{human}"
        );
    }
}
