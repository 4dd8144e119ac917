//! Resource addresses, built and taken apart here only (after terraform's `internal/addrs`).
//!
//! An address is `<kind>.<name>`, e.g. `aws_vpc.main`; a name may carry a key in brackets,
//! `<kind>.<name>[<key>]`, e.g. `aws_subnet.private[0]` or `aws_iam_role.irsa[demo/demo-app]`.
//! The graph ([`super::expand`]) makes every address with these functions, and what looks a
//! resource up by address (outputs, preflight, refresh, `connect`, the sandbox, the plan's
//! access summary) names it with them too.

use std::fmt::Display;

use super::ResourceKind;
use crate::spec::model::{Identity, MAIN_DATABASE};

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
    /// The referenced Aurora cluster of the database of logical name `database`:
    /// `data.aws_rds_cluster.existing` for `database.existing` (the shorthand's),
    /// `data.aws_rds_cluster.<database>` for `databases.<database>.existing`.
    pub fn rds_cluster(database: &str) -> String {
        format!("data.aws_rds_cluster.{}", super::referenced_name(database))
    }

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

/// The name a referenced database's resources carry: `existing` for the shorthand's
/// (`database.existing`), its logical name for the others.
fn referenced_name(database: &str) -> &str {
    if database == MAIN_DATABASE {
        "existing"
    } else {
        database
    }
}

/// The Aurora cluster the database of logical name `database` creates:
/// `aws_rds_cluster.<database>` (`aws_rds_cluster.main` for `database:`).
pub fn rds_cluster(database: &str) -> String {
    of(ResourceKind::RdsCluster, database)
}

/// IAM database authentication turned on in a referenced Aurora cluster
/// (`enable_iam_auth`): `aws_rds_cluster_iam_auth.existing` for `database.existing`,
/// `aws_rds_cluster_iam_auth.<database>` for the others.
pub fn rds_iam_auth(database: &str) -> String {
    of(ResourceKind::RdsClusterIamAuth, referenced_name(database))
}

/// Aurora instance `index` of the database's cluster (0 is the first, the writer when created).
pub fn rds_instance(database: &str, index: usize) -> String {
    keyed(ResourceKind::RdsClusterInstance, database, index)
}

/// The name of a created database's own resource of a kind the stack has one of per
/// database (its security group, `database`; its subnet group, `main`): `base` for the
/// shorthand's, `<base>_<database>` for the others (`main` becomes the logical name).
pub fn per_database(base: &str, database: &str) -> String {
    match (database == MAIN_DATABASE, base) {
        (true, _) => base.to_string(),
        (false, "main") => database.to_string(),
        (false, _) => format!("{base}_{database}"),
    }
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

/// The key of a database user's addresses: `<user>` in the shorthand's database,
/// `<database>/<user>` in the others.
fn user_key(database: &str, user: &str) -> String {
    if database == MAIN_DATABASE {
        user.to_string()
    } else {
        format!("{database}/{user}")
    }
}

/// The logical name of the database a database user's or grant's address
/// (`postgresql_role.user[...]`, `postgresql_grant.user[...]`) is in: the inverse of
/// [`db_user_role`] and [`db_user_grant`]; `None` for any other address.
pub fn database_of(address: &str) -> Option<&str> {
    let key = key_of(address, ResourceKind::PostgresRole, "user")
        .or_else(|| key_of(address, ResourceKind::PostgresGrant, "user"))?;
    Some(
        key.split_once('/')
            .map_or(MAIN_DATABASE, |(database, _)| database),
    )
}

/// The IAM-only database user `user` of the database of logical name `database`:
/// `postgresql_role.user[<user>]` (`database:`), `postgresql_role.user[<database>/<user>]`.
pub fn db_user_role(database: &str, user: &str) -> String {
    keyed(ResourceKind::PostgresRole, "user", user_key(database, user))
}

/// The privileges of the database user `user` of the database `database`, keyed as
/// [`db_user_role`].
pub fn db_user_grant(database: &str, user: &str) -> String {
    keyed(
        ResourceKind::PostgresGrant,
        "user",
        user_key(database, user),
    )
}

/// The relay of the database `database` ([`crate::relay::name`]) in `namespace`
/// ([`crate::relay::namespace`]); the database's users and grants come after it.
pub fn relay(namespace: &str, database: &str) -> String {
    of(
        ResourceKind::KubernetesDbRelay,
        &format!("{namespace}/{}", crate::relay::name(database)),
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
        assert_eq!(rds_instance("main", 0), "aws_rds_cluster_instance.main[0]");
        assert_eq!(
            relay("pwless", "main"),
            "kubernetes_db_relay.pwless/db-relay"
        );
        // The shorthand's database keeps the addresses a one-database stack always had.
        assert_eq!(db_user_role("main", "app"), "postgresql_role.user[app]");
        assert_eq!(rds_iam_auth("main"), "aws_rds_cluster_iam_auth.existing");
        assert_eq!(data::rds_cluster("main"), "data.aws_rds_cluster.existing");
        assert_eq!(per_database("database", "main"), "database");
        // Another database's carry its logical name.
        assert_eq!(
            db_user_grant("orders", "app"),
            "postgresql_grant.user[orders/app]"
        );
        assert_eq!(rds_cluster("orders"), "aws_rds_cluster.orders");
        assert_eq!(rds_iam_auth("orders"), "aws_rds_cluster_iam_auth.orders");
        assert_eq!(data::rds_cluster("orders"), "data.aws_rds_cluster.orders");
        assert_eq!(per_database("database", "orders"), "database_orders");
        assert_eq!(per_database("main", "orders"), "orders");
        for database in ["main", "orders"] {
            assert_eq!(database_of(&db_user_role(database, "app")), Some(database));
            assert_eq!(database_of(&db_user_grant(database, "app")), Some(database));
        }
        assert_eq!(database_of(&rds_cluster("orders")), None);
        assert_eq!(
            relay("pwless", "orders"),
            "kubernetes_db_relay.pwless/db-relay-orders"
        );
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
            rds_cluster("main"),
            rds_instance("main", 0),
            irsa_role("demo", "demo-app"),
            irsa_policy("demo", "demo-app"),
            db_user_role("main", "app_user"),
            db_user_grant("main", "app_user"),
            relay(crate::relay::NAMESPACE, "main"),
        ] {
            assert!(made.contains(named.as_str()), "the graph has no {named}");
        }
    }
}
