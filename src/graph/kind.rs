//! The kinds of resource pwless manages, and what each kind's schema says about change:
//! which inputs force a replacement, which its provider's update changes in place (every input
//! is in exactly one of the two, checked by a test over the example stacks), and which outputs
//! it has.

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
    ($( $variant:ident => $name:literal, $provider:ident, force_new: [$($force:literal),*], update: [$($update:literal),*], outputs: [$($output:literal),*]; )*) => {
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

            /// Inputs its provider's update changes on a live resource. Every input the graph
            /// gives a kind is in exactly one of [`Self::force_new`] and this list (checked by
            /// a test over the example stacks), so a planned in-place update is one the
            /// provider carries out.
            pub fn updatable(self) -> &'static [&'static str] {
                match self { $(ResourceKind::$variant => &[$($update),*],)* }
            }

            /// Outputs known only after the resource exists.
            pub fn outputs(self) -> &'static [&'static str] {
                match self { $(ResourceKind::$variant => &[$($output),*],)* }
            }
        }
    };
}

kinds! {
    Vpc => "aws_vpc", Aws, force_new: ["cidr_block"], update: ["tags", "enable_dns_support", "enable_dns_hostnames"], outputs: ["id"];
    InternetGateway => "aws_internet_gateway", Aws, force_new: ["vpc_id"], update: ["tags"], outputs: ["id"];
    Subnet => "aws_subnet", Aws, force_new: ["vpc_id", "cidr_block", "availability_zone"], update: ["tags", "map_public_ip_on_launch"], outputs: ["id"];
    ElasticIp => "aws_eip", Aws, force_new: ["domain"], update: ["tags"], outputs: ["id", "public_ip"];
    NatGateway => "aws_nat_gateway", Aws, force_new: ["subnet_id", "allocation_id", "connectivity_type"], update: ["tags"], outputs: ["id"];
    RouteTable => "aws_route_table", Aws, force_new: ["vpc_id"], update: ["tags", "routes"], outputs: ["id"];
    RouteTableAssociation => "aws_route_table_association", Aws, force_new: ["subnet_id", "route_table_id"], update: [], outputs: ["id"];
    SecurityGroup => "aws_security_group", Aws, force_new: ["vpc_id", "name", "description"], update: ["tags"], outputs: ["id"];
    SecurityGroupRule => "aws_security_group_rule", Aws, force_new: ["security_group_id", "type", "protocol", "from_port", "to_port", "cidr_ipv4"], update: [], outputs: ["id"];
    IamRole => "aws_iam_role", Aws, force_new: ["name"], update: ["tags", "assume_role_policy", "web_identity", "pod_identity"], outputs: ["arn", "name"];
    IamRolePolicyAttachment => "aws_iam_role_policy_attachment", Aws, force_new: ["role", "policy_arn"], update: [], outputs: [];
    IamRolePolicy => "aws_iam_role_policy", Aws, force_new: ["role", "name"], update: ["rds_db_connect"], outputs: [];
    EksCluster => "aws_eks_cluster", Aws, force_new: ["name", "role_arn", "service_ipv4_cidr", "vpc_id"], update: ["tags", "version", "endpoint_public_access", "endpoint_private_access", "authentication_mode", "subnet_ids"], outputs: ["name", "arn", "endpoint", "certificate_authority", "oidc_issuer"];
    EksAccessEntry => "aws_eks_access_entry", Aws, force_new: ["cluster_name", "principal_arn"], update: ["tags", "policy_arn"], outputs: ["arn"];
    EksAddon => "aws_eks_addon", Aws, force_new: ["cluster_name", "addon_name"], update: ["tags", "shared"], outputs: ["arn"];
    EksPodIdentityAssociation => "aws_eks_pod_identity_association", Aws, force_new: ["cluster_name", "namespace", "service_account"], update: ["tags", "role_arn"], outputs: ["association_id", "association_arn"];
    EksNodeGroup => "aws_eks_node_group", Aws, force_new: ["cluster_name", "node_group_name", "node_role_arn", "subnet_ids", "instance_types"], update: ["tags", "scaling", "version"], outputs: ["arn"];
    OidcProvider => "aws_iam_openid_connect_provider", Aws, force_new: ["url"], update: ["tags", "client_ids", "shared"], outputs: ["arn"];
    DbSubnetGroup => "aws_db_subnet_group", Aws, force_new: ["name", "vpc_id"], update: ["tags", "description", "subnet_ids"], outputs: ["name", "arn"];
    RdsCluster => "aws_rds_cluster", Aws, force_new: ["cluster_identifier", "engine", "database_name", "master_username", "db_subnet_group_name", "storage_encrypted", "vpc_id"], update: ["tags", "engine_version", "iam_database_authentication_enabled", "iam_auth_error_log", "port", "vpc_security_group_ids", "master_password", "final_snapshot"], outputs: ["cluster_identifier", "arn", "endpoint", "reader_endpoint", "port", "cluster_resource_id", "master_user_secret_arn"];
    RdsClusterIamAuth => "aws_rds_cluster_iam_auth", Aws, force_new: ["cluster_identifier"], update: ["enabled", "shared"], outputs: [];
    RdsClusterInstance => "aws_rds_cluster_instance", Aws, force_new: ["identifier", "cluster_identifier", "engine"], update: ["tags", "instance_class", "publicly_accessible"], outputs: ["arn", "endpoint"];
    PostgresRole => "postgresql_role", Postgres, force_new: ["name", "cluster_resource_id"], update: ["login", "password", "attributes", "member_of", "connection"], outputs: [];
    PostgresGrant => "postgresql_grant", Postgres, force_new: ["role", "database", "cluster_resource_id"], update: ["schema", "connection", "database_privileges", "schema_privileges", "table_privileges", "table_owners"], outputs: [];
    KubernetesNamespace => "kubernetes_namespace", Kubernetes, force_new: ["name", "cluster_arn"], update: ["labels", "shared"], outputs: [];
    KubernetesServiceAccount => "kubernetes_service_account", Kubernetes, force_new: ["namespace", "name", "cluster_arn"], update: ["role_arn", "labels"], outputs: [];
    KubernetesDeployment => "kubernetes_deployment", Kubernetes, force_new: ["namespace", "name", "cluster_arn"], update: ["service_account", "image", "replicas", "port", "labels", "env", "identity"], outputs: [];
    KubernetesService => "kubernetes_service", Kubernetes, force_new: ["namespace", "name", "cluster_arn"], update: ["type", "port", "target_port", "selector", "labels"], outputs: ["load_balancer_hostname"];
    KubernetesConfigMap => "kubernetes_config_map", Kubernetes, force_new: ["namespace", "name", "cluster_arn"], update: ["labels", "data"], outputs: [];
    KubernetesNetworkPolicy => "kubernetes_network_policy", Kubernetes, force_new: ["namespace", "name", "cluster_arn"], update: ["labels", "pod_selector", "egress_cidr", "egress_port"], outputs: [];
    KubernetesDbRelay => "kubernetes_db_relay", Kubernetes, force_new: ["namespace", "name", "cluster_arn"], update: ["labels", "image", "config_map", "config_sha256", "endpoint", "port"], outputs: [];
}

impl ResourceKind {
    /// The outputs that are one of its own inputs, unchanged (a deterministic name, a port
    /// asked for): known at plan time whenever that input is, even while the resource is
    /// created or replaced, so what references them is planned exactly (no spurious "known
    /// after apply", and so no spurious replacement). Each is named as the input it echoes.
    pub fn echoed_outputs(self) -> &'static [&'static str] {
        match self {
            ResourceKind::IamRole | ResourceKind::EksCluster | ResourceKind::DbSubnetGroup => {
                &["name"]
            }
            ResourceKind::RdsCluster => &["cluster_identifier", "port"],
            _ => &[],
        }
    }

    /// The inputs that name the resource this one lives in: when that one is replaced or made
    /// again (deleted outside pwless), this one is gone with it and is made again too, even
    /// when the reference reads the same (an echoed name). An instance lives in its Aurora
    /// cluster, a node group and an access entry in their EKS cluster, an inline policy and an
    /// attachment in their role, database users and grants in their cluster, Kubernetes
    /// objects in their EKS cluster.
    pub fn parent_inputs(self) -> &'static [&'static str] {
        use ResourceKind::*;
        match self {
            RdsClusterInstance => &["cluster_identifier"],
            EksNodeGroup | EksAccessEntry | EksAddon | EksPodIdentityAssociation => {
                &["cluster_name"]
            }
            IamRolePolicy | IamRolePolicyAttachment => &["role"],
            PostgresRole | PostgresGrant => &["cluster_resource_id"],
            KubernetesNamespace
            | KubernetesServiceAccount
            | KubernetesDeployment
            | KubernetesService
            | KubernetesConfigMap
            | KubernetesNetworkPolicy
            | KubernetesDbRelay => &["cluster_arn"],
            _ => &[],
        }
    }

    /// Whether creating it again is harmless: a Kubernetes object is a server-side apply under
    /// its deterministic name, so a second create is the same apply; IAM database
    /// authentication turned on is turned on again. A failed or interrupted
    /// create of such a kind needs no adoption: the next plan simply creates it again.
    pub fn create_is_idempotent(self) -> bool {
        // Turning IAM database authentication on in a referenced cluster is one
        // ModifyDBCluster that may be sent again.
        self.provider() == Provider::Kubernetes || self == ResourceKind::RdsClusterIamAuth
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

    #[test]
    fn every_input_the_graph_emits_is_either_replaced_or_updated_in_place() {
        // Before, which inputs an update can change lived only in the providers' match arms:
        // an emitted input in neither list (the EKS authentication mode, the NAT gateway's
        // connectivity type) planned an in-place update that failed at apply.
        use std::collections::{BTreeMap, BTreeSet};
        let mut emitted: BTreeMap<ResourceKind, BTreeSet<String>> = BTreeMap::new();
        for (file, text) in [
            (
                "stack.example.yaml",
                include_str!("../../stack.example.yaml"),
            ),
            (
                "examples/aws-only.yaml",
                include_str!("../../examples/aws-only.yaml"),
            ),
            (
                "examples/with-users.yaml",
                include_str!("../../examples/with-users.yaml"),
            ),
            (
                "examples/pod-identity.yaml",
                include_str!("../../examples/pod-identity.yaml"),
            ),
        ] {
            let stack = crate::spec::parse_str(std::path::Path::new(file), text).unwrap();
            let graph = crate::graph::ResourceGraph::from_stack(&stack).unwrap();
            for resource in graph.in_order() {
                emitted
                    .entry(resource.kind)
                    .or_default()
                    .extend(resource.inputs.keys().cloned());
            }
        }
        // A stack on a referenced network and cluster emits what those do (`shared`), and one
        // on a referenced Aurora cluster its IAM authentication turned on.
        for stack in [
            crate::graph::referenced_stack(false, None),
            crate::graph::referenced_everything(),
        ] {
            let graph = crate::graph::ResourceGraph::from_stack(&stack).unwrap();
            for resource in graph.in_order() {
                emitted
                    .entry(resource.kind)
                    .or_default()
                    .extend(resource.inputs.keys().cloned());
            }
        }
        for kind in ResourceKind::ALL {
            let inputs = emitted
                .get(kind)
                .unwrap_or_else(|| panic!("no example stack has a {kind}"));
            for input in inputs {
                let replaced = kind.force_new().contains(&input.as_str());
                let updated = kind.updatable().contains(&input.as_str());
                assert!(
                    replaced != updated,
                    "{kind} input `{input}`: force_new {replaced}, updatable {updated}; it must be in exactly one"
                );
            }
            for listed in kind.force_new().iter().chain(kind.updatable()) {
                assert!(
                    inputs.contains(*listed),
                    "{kind} lists `{listed}`, which the graph never emits"
                );
            }
            for parent in kind.parent_inputs() {
                assert!(
                    kind.force_new().contains(parent),
                    "{kind}: the input `{parent}` naming what it lives in must force a replacement"
                );
            }
            for echoed in kind.echoed_outputs() {
                assert!(
                    kind.outputs().contains(echoed) && inputs.contains(*echoed),
                    "{kind} echoes `{echoed}`, which must be both an output and an input"
                );
            }
        }
    }
}
