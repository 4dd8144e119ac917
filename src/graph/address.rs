//! Resource addresses, built and taken apart here only (after terraform's `internal/addrs`).
//!
//! An address is `<kind>.<name>`, e.g. `aws_vpc.main`; a name may carry a key in brackets,
//! `<kind>.<name>[<key>]`, e.g. `aws_subnet.private[0]` or `aws_iam_role.irsa[demo/demo-app]`.
//! The graph ([`super::expand`]) makes every address with these functions, and what looks a
//! resource up by address (outputs, preflight, refresh, `connect`, the sandbox, the plan's
//! access summary) names it with them too.

use std::fmt::Display;

use super::ResourceKind;
use crate::spec::model::Identity;

/// `<kind>.<name>`.
pub fn of(kind: ResourceKind, name: &str) -> String {
    format!("{}.{name}", kind.name())
}

/// `<kind>.<name>[<key>]`.
pub fn keyed(kind: ResourceKind, name: &str, key: impl Display) -> String {
    format!("{}.{name}[{key}]", kind.name())
}

/// The key of `address` when it is `<kind>.<name>[<key>]`, e.g. `demo/demo-app` of
/// `aws_iam_role.irsa[demo/demo-app]` for (`IamRole`, `irsa`).
pub fn key_of<'a>(address: &'a str, kind: ResourceKind, name: &str) -> Option<&'a str> {
    address
        .strip_prefix(kind.name())?
        .strip_prefix('.')?
        .strip_prefix(name)?
        .strip_prefix('[')?
        .strip_suffix(']')
}

/// The stack's VPC.
pub fn vpc() -> String {
    of(ResourceKind::Vpc, "main")
}

/// A subnet of a tier (`public`, `private`), one per availability zone.
pub fn subnet(tier: &str, index: usize) -> String {
    keyed(ResourceKind::Subnet, tier, index)
}

/// The addresses of what a plan reads but never manages ([`crate::plan::Read`]): Terraform's
/// `data.<type>.<name>`.
pub mod data {
    /// The referenced VPC (`network.existing.vpc_id`).
    pub const VPC: &str = "data.aws_vpc.existing";
    /// The referenced EKS cluster (`cluster.existing`).
    pub const EKS_CLUSTER: &str = "data.aws_eks_cluster.existing";
    /// The IAM OIDC provider of a referenced cluster that is not the stack's.
    pub const OIDC_PROVIDER: &str = "data.aws_iam_openid_connect_provider.existing";
    /// The Pod Identity Agent add-on of a referenced cluster that is not the stack's.
    pub const POD_IDENTITY_AGENT: &str = "data.aws_eks_addon.pod_identity_agent";
    /// The referenced Aurora cluster (`database.existing`).
    pub const RDS_CLUSTER: &str = "data.aws_rds_cluster.existing";

    /// A referenced subnet of a tier (`private`, `public`), in the stack's order.
    pub fn subnet(tier: &str, index: usize) -> String {
        format!("data.aws_subnet.{tier}[{index}]")
    }
}

/// The EKS cluster.
pub fn eks_cluster() -> String {
    of(ResourceKind::EksCluster, "main")
}

/// The EKS managed node group.
pub fn eks_node_group() -> String {
    of(ResourceKind::EksNodeGroup, "main")
}

/// The EKS cluster's IAM OIDC provider (IRSA's trust anchor).
pub fn oidc_provider() -> String {
    of(ResourceKind::OidcProvider, "eks")
}

/// The EKS access entry that gives `principal` (an IAM ARN) cluster-admin.
pub fn admin_access_entry(principal: &str) -> String {
    keyed(ResourceKind::EksAccessEntry, "admin", principal)
}

/// The Aurora cluster.
pub fn rds_cluster() -> String {
    of(ResourceKind::RdsCluster, "main")
}

/// IAM database authentication turned on in the referenced Aurora cluster
/// (`database.existing.enable_iam_auth`).
pub fn rds_iam_auth() -> String {
    of(ResourceKind::RdsClusterIamAuth, "existing")
}

/// Aurora instance `index` (0 is the first, the writer when created).
pub fn rds_instance(index: usize) -> String {
    keyed(ResourceKind::RdsClusterInstance, "main", index)
}

/// The IRSA role of one service account (`namespace/name`).
pub fn irsa_role(namespace: &str, service_account: &str) -> String {
    access_role(namespace, service_account, Identity::Irsa)
}

/// The inline policy of an IRSA role: `rds-db:connect` as one database user.
pub fn irsa_policy(namespace: &str, service_account: &str) -> String {
    access_policy(namespace, service_account, Identity::Irsa)
}

/// The role of one access entry: its IRSA role, or its EKS Pod Identity role
/// (`aws_iam_role.pod_identity["namespace/name"]`), by `identity`.
pub fn access_role(namespace: &str, service_account: &str, identity: Identity) -> String {
    keyed(
        ResourceKind::IamRole,
        identity.name(),
        format!("{namespace}/{service_account}"),
    )
}

/// The inline `rds-db:connect` policy of [`access_role`].
pub fn access_policy(namespace: &str, service_account: &str, identity: Identity) -> String {
    keyed(
        ResourceKind::IamRolePolicy,
        identity.name(),
        format!("{namespace}/{service_account}"),
    )
}

/// The EKS Pod Identity association of one service account.
pub fn pod_identity_association(namespace: &str, service_account: &str) -> String {
    keyed(
        ResourceKind::EksPodIdentityAssociation,
        "main",
        format!("{namespace}/{service_account}"),
    )
}

/// The EKS Pod Identity Agent add-on.
pub fn pod_identity_agent() -> String {
    of(ResourceKind::EksAddon, "pod_identity_agent")
}

/// The IAM-only database user `user`.
pub fn db_user_role(user: &str) -> String {
    keyed(ResourceKind::PostgresRole, "user", user)
}

/// The privileges of the database user `user`.
pub fn db_user_grant(user: &str) -> String {
    keyed(ResourceKind::PostgresGrant, "user", user)
}

/// The database relay's Deployment in `namespace` ([`crate::relay::namespace`]); database
/// users and grants come after it.
pub fn relay(namespace: &str) -> String {
    of(
        ResourceKind::KubernetesDbRelay,
        &format!("{namespace}/{}", crate::relay::NAME),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_back_out_of_the_addresses_they_went_into() {
        let role = irsa_role("demo", "demo-app");
        assert_eq!(role, "aws_iam_role.irsa[demo/demo-app]");
        assert_eq!(
            key_of(&role, ResourceKind::IamRole, "irsa"),
            Some("demo/demo-app")
        );
        assert_eq!(key_of(&role, ResourceKind::IamRolePolicy, "irsa"), None);
        assert_eq!(key_of(&role, ResourceKind::IamRole, "irs"), None);
        assert_eq!(key_of(&vpc(), ResourceKind::Vpc, "main"), None);
        let entry = admin_access_entry("arn:aws:iam::123456789012:role/a[b]");
        assert_eq!(
            key_of(&entry, ResourceKind::EksAccessEntry, "admin"),
            Some("arn:aws:iam::123456789012:role/a[b]")
        );
        assert_eq!(subnet("private", 1), "aws_subnet.private[1]");
        assert_eq!(rds_instance(0), "aws_rds_cluster_instance.main[0]");
        assert_eq!(relay("pwless"), "kubernetes_db_relay.pwless/db-relay");
    }

    #[test]
    fn the_named_addresses_are_the_graphs() {
        // What other modules look up by name must be what the graph made.
        let stack = crate::spec::parse_str(
            std::path::Path::new("stack.example.yaml"),
            include_str!("../../stack.example.yaml"),
        )
        .unwrap();
        let graph = crate::graph::ResourceGraph::from_stack(&stack).unwrap();
        let made: std::collections::BTreeSet<&str> = graph
            .in_order()
            .map(|resource| resource.address.as_str())
            .collect();
        let admin = stack
            .cluster
            .admins
            .first()
            .expect("the example names an admin");
        for named in [
            vpc(),
            subnet("public", 0),
            subnet("private", 1),
            eks_cluster(),
            eks_node_group(),
            oidc_provider(),
            admin_access_entry(admin),
            rds_cluster(),
            rds_instance(0),
            irsa_role("demo", "demo-app"),
            irsa_policy("demo", "demo-app"),
            db_user_role("app_user"),
            db_user_grant("app_user"),
            relay(crate::relay::NAMESPACE),
        ] {
            assert!(made.contains(named.as_str()), "the graph has no {named}");
        }
    }
}
