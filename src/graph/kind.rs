//! The kinds of resource pwless manages, and what each kind's schema says about change:
//! which inputs force a replacement (the rest are updated in place) and which outputs it has.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Who carries out the changes of a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Provider {
    Aws,
    Postgres,
    Kubernetes,
}

macro_rules! kinds {
    ($( $variant:ident => $name:literal, $provider:ident, force_new: [$($force:literal),*], outputs: [$($output:literal),*]; )*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum ResourceKind {
            $(
                #[serde(rename = $name)]
                $variant,
            )*
        }

        impl ResourceKind {
            pub const ALL: &'static [ResourceKind] = &[$(ResourceKind::$variant),*];

            /// The type name used in addresses, like `aws_vpc`.
            pub fn name(self) -> &'static str {
                match self { $(ResourceKind::$variant => $name,)* }
            }

            pub fn provider(self) -> Provider {
                match self { $(ResourceKind::$variant => Provider::$provider,)* }
            }

            /// Inputs that cannot change on a live resource: a change replaces it.
            pub fn force_new(self) -> &'static [&'static str] {
                match self { $(ResourceKind::$variant => &[$($force),*],)* }
            }

            /// Outputs known only after the resource exists.
            pub fn outputs(self) -> &'static [&'static str] {
                match self { $(ResourceKind::$variant => &[$($output),*],)* }
            }
        }
    };
}

kinds! {
    Vpc => "aws_vpc", Aws, force_new: ["cidr_block"], outputs: ["id"];
    InternetGateway => "aws_internet_gateway", Aws, force_new: ["vpc_id"], outputs: ["id"];
    Subnet => "aws_subnet", Aws, force_new: ["vpc_id", "cidr_block", "availability_zone"], outputs: ["id"];
    ElasticIp => "aws_eip", Aws, force_new: ["domain"], outputs: ["id", "public_ip"];
    NatGateway => "aws_nat_gateway", Aws, force_new: ["subnet_id", "allocation_id"], outputs: ["id"];
    RouteTable => "aws_route_table", Aws, force_new: ["vpc_id"], outputs: ["id"];
    RouteTableAssociation => "aws_route_table_association", Aws, force_new: ["subnet_id", "route_table_id"], outputs: ["id"];
    SecurityGroup => "aws_security_group", Aws, force_new: ["vpc_id", "name", "description"], outputs: ["id"];
    SecurityGroupRule => "aws_security_group_rule", Aws, force_new: ["security_group_id", "type", "protocol", "from_port", "to_port", "cidr_ipv4"], outputs: ["id"];
    IamRole => "aws_iam_role", Aws, force_new: ["name"], outputs: ["arn", "name"];
    IamRolePolicyAttachment => "aws_iam_role_policy_attachment", Aws, force_new: ["role", "policy_arn"], outputs: [];
    IamRolePolicy => "aws_iam_role_policy", Aws, force_new: ["role", "name"], outputs: [];
    EksCluster => "aws_eks_cluster", Aws, force_new: ["name", "role_arn", "subnet_ids", "service_ipv4_cidr"], outputs: ["name", "arn", "endpoint", "certificate_authority", "oidc_issuer"];
    EksAccessEntry => "aws_eks_access_entry", Aws, force_new: ["cluster_name", "principal_arn"], outputs: ["arn"];
    EksNodeGroup => "aws_eks_node_group", Aws, force_new: ["cluster_name", "node_group_name", "node_role_arn", "subnet_ids", "instance_types"], outputs: ["arn"];
    OidcProvider => "aws_iam_openid_connect_provider", Aws, force_new: ["url"], outputs: ["arn"];
    DbSubnetGroup => "aws_db_subnet_group", Aws, force_new: ["name"], outputs: ["name", "arn"];
    RdsCluster => "aws_rds_cluster", Aws, force_new: ["cluster_identifier", "engine", "database_name", "master_username", "db_subnet_group_name", "storage_encrypted"], outputs: ["cluster_identifier", "arn", "endpoint", "reader_endpoint", "port", "cluster_resource_id", "master_user_secret_arn"];
    RdsClusterInstance => "aws_rds_cluster_instance", Aws, force_new: ["identifier", "cluster_identifier", "engine"], outputs: ["arn", "endpoint"];
    PostgresRole => "postgresql_role", Postgres, force_new: ["name", "cluster_resource_id"], outputs: [];
    PostgresGrant => "postgresql_grant", Postgres, force_new: ["role", "database", "cluster_resource_id"], outputs: [];
    KubernetesNamespace => "kubernetes_namespace", Kubernetes, force_new: ["name", "cluster_arn"], outputs: [];
    KubernetesServiceAccount => "kubernetes_service_account", Kubernetes, force_new: ["namespace", "name", "cluster_arn"], outputs: [];
    KubernetesDeployment => "kubernetes_deployment", Kubernetes, force_new: ["namespace", "name", "cluster_arn"], outputs: [];
    KubernetesService => "kubernetes_service", Kubernetes, force_new: ["namespace", "name", "cluster_arn"], outputs: ["load_balancer_hostname"];
    KubernetesConfigMap => "kubernetes_config_map", Kubernetes, force_new: ["namespace", "name", "cluster_arn"], outputs: [];
    KubernetesNetworkPolicy => "kubernetes_network_policy", Kubernetes, force_new: ["namespace", "name", "cluster_arn"], outputs: [];
    KubernetesDbRelay => "kubernetes_db_relay", Kubernetes, force_new: ["namespace", "name", "cluster_arn"], outputs: [];
}

impl ResourceKind {
    /// Whether creating it again is harmless: a Kubernetes object is a server-side apply under
    /// its deterministic name, so a second create is the same apply. A failed or interrupted
    /// create of such a kind needs no adoption: the next plan simply creates it again.
    pub fn create_is_idempotent(self) -> bool {
        self.provider() == Provider::Kubernetes
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown resource kind `{0}`")]
pub struct UnknownKind(pub String);

impl FromStr for ResourceKind {
    type Err = UnknownKind;

    fn from_str(name: &str) -> Result<Self, UnknownKind> {
        ResourceKind::ALL
            .iter()
            .copied()
            .find(|kind| kind.name() == name)
            .ok_or_else(|| UnknownKind(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        let mut names = std::collections::BTreeSet::new();
        for kind in ResourceKind::ALL {
            assert_eq!(kind.name().parse::<ResourceKind>(), Ok(*kind));
            assert!(names.insert(kind.name()));
            let json = serde_json::to_string(kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.name()));
        }
    }
}
