//! Who may log in as whom after a plan: per `access` entry, the database user its IAM role may
//! connect as (`rds-db:connect` on one dbuser ARN), and who gets cluster-admin through EKS
//! access entries. Computed with the plan, from its changes, so the human and the JSON
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
    /// (sorted): a user nothing in the stack uses, which the plan flags. (Two entries cannot
    /// give one user different privileges: privileges belong to the user, not to an entry.)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unused_users: Vec<String>,
}

impl AccessSummary {
    pub fn is_empty(&self) -> bool {
        self.database.is_empty() && self.cluster_admins.is_empty() && self.unused_users.is_empty()
    }
}

/// One `access` entry: a Kubernetes service account whose role (IRSA or Pod Identity) may log
/// in as one
/// IAM-only database user. A value known only after apply is `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatabaseAccess {
    /// `namespace/name`.
    pub service_account: String,
    /// This plan takes the access away (the role's policy is deleted); the other fields are
    /// then absent.
    #[serde(default, skip_serializing_if = "Not::not")]
    pub revoked: bool,
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

/// The access `changes` leave, read from the planned IRSA role policies (their
/// `rds_db_connect` input), roles and access entries.
/// `referenced_cluster` is the identifier of the Aurora cluster the stack references
/// (`database.existing`), which no change holds.
pub fn summarize(
    changes: &[ResourceChange],
    mode: Mode,
    referenced_cluster: Option<&str>,
) -> AccessSummary {
    if mode == Mode::Destroy {
        return AccessSummary::default();
    }
    let change = |address: &str| changes.iter().find(|change| change.address == address);
    let cluster = change(&address::rds_cluster())
        .and_then(|cluster| known(cluster, "cluster_identifier", None))
        .or_else(|| referenced_cluster.map(str::to_string));
    let mut summary = AccessSummary::default();
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
                db_user: None,
                cluster: None,
                cluster_resource_id: None,
                iam_role: None,
                identity,
            });
            continue;
        }
        summary.database.push(DatabaseAccess {
            service_account: entry.to_string(),
            revoked: false,
            db_user: known(policy, "rds_db_connect", Some("db_user")),
            cluster: cluster.clone(),
            cluster_resource_id: known(policy, "rds_db_connect", Some("cluster_resource_id")),
            iam_role: change(&address::keyed(
                ResourceKind::IamRole,
                identity.name(),
                entry,
            ))
            .and_then(|role| known(role, "name", None)),
            identity,
        });
    }
    let used: std::collections::BTreeSet<&str> = summary
        .database
        .iter()
        .filter(|access| !access.revoked)
        .filter_map(|access| access.db_user.as_deref())
        .collect();
    let mut unused: Vec<String> = changes
        .iter()
        .filter(|change| {
            change.kind == ResourceKind::PostgresRole && change.action != Action::Delete
        })
        .filter_map(|change| known(change, "name", None))
        .filter(|user| !used.contains(user.as_str()))
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
