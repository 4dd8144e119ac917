//! Expansion of a validated stack into the resources pwless manages.
//!
//! The secure choices live here, once, so no stack can leave them out: IAM authentication on
//! the database, the managed master password, database ingress only from the cluster's
//! security group, one IRSA role per service account scoped to one database user.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::{Expr, Resource, ResourceKind, address};
use crate::partition::IRSA_AUDIENCE;
use crate::spec::model::{
    Access, AdminAccess, Database, DatabaseSubnets, Identity, MasterPassword, NatGateways,
    Privilege, PrivilegeTarget, Stack,
};
use crate::spec::names;

/// Where the demo image keeps the RDS CA bundle it verifies the database certificate with.
pub const APP_CA_BUNDLE_PATH: &str = "/etc/pwless/rds-ca-bundle.pem";
/// The EKS access policy `cluster.admins` get, cluster-wide (its ARN is the partition's:
/// [`crate::partition::Partition::cluster_access_policy`]).
pub const CLUSTER_ADMIN_POLICY: &str = "AmazonEKSClusterAdminPolicy";

/// The EKS add-on that runs the Pod Identity Agent on every node.
pub const POD_IDENTITY_AGENT_ADDON: &str = "eks-pod-identity-agent";

struct Expander<'s> {
    stack: &'s Stack,
    resources: Vec<Resource>,
}

/// The values of the Aurora cluster other resources take (outputs of a created cluster, the
/// read values of a referenced one).
#[derive(Debug, Clone, Copy)]
enum DatabaseValue {
    Endpoint,
    Port,
    ClusterResourceId,
    MasterSecretArn,
}

impl DatabaseValue {
    /// The created cluster's output of this value (`aws_rds_cluster` in the kind table).
    fn output(self) -> &'static str {
        match self {
            DatabaseValue::Endpoint => "endpoint",
            DatabaseValue::Port => "port",
            DatabaseValue::ClusterResourceId => "cluster_resource_id",
            DatabaseValue::MasterSecretArn => "master_user_secret_arn",
        }
    }
}

pub fn expand(stack: &Stack) -> Vec<Resource> {
    let mut expander = Expander {
        stack,
        resources: Vec::new(),
    };
    expander.network();
    expander.cluster();
    for database in &stack.databases {
        expander.relay(database);
        expander.database(database);
    }
    expander.access();
    expander.kubernetes();
    expander.resources
}

/// Whether pwless reaches `database` through a relay in the stack's EKS cluster: its path is
/// `cluster` and it has users to manage.
pub fn uses_relay(database: &Database) -> bool {
    database.connection.admin_access == AdminAccess::Cluster && !database.users.is_empty()
}

/// Whether any database of the stack is reached through a relay ([`uses_relay`]).
pub fn stack_uses_relay(stack: &Stack) -> bool {
    stack.databases.iter().any(uses_relay)
}

/// Each service account of `access` once, in the order of its first entry, with its entries
/// (one per database it may log in to): it gets one IAM role.
pub fn service_accounts(stack: &Stack) -> Vec<(&Access, Vec<&Access>)> {
    let mut accounts: Vec<(&Access, Vec<&Access>)> = Vec::new();
    for entry in &stack.access {
        match accounts.iter_mut().find(|(first, _)| {
            first.namespace == entry.namespace && first.service_account == entry.service_account
        }) {
            Some((_, entries)) => entries.push(entry),
            None => accounts.push((entry, vec![entry])),
        }
    }
    accounts
}

impl Expander<'_> {
    fn push(&mut self, resource: Resource) -> String {
        let address = resource.address.clone();
        self.resources.push(resource);
        address
    }

    /// AWS tags: the stack's own, plus `pwless:stack`, `pwless:address` and `Name`.
    fn tags(&self, address: &str, name: &str, extra: &[(&str, &str)]) -> Value {
        let mut tags = serde_json::Map::new();
        for (key, value) in &self.stack.tags {
            tags.insert(key.clone(), json!(value));
        }
        for (key, value) in extra {
            tags.insert((*key).to_string(), json!(value));
        }
        tags.insert("Name".into(), json!(name));
        tags.insert("pwless:stack".into(), json!(self.stack.name));
        tags.insert("pwless:address".into(), json!(address));
        Value::Object(tags)
    }

    fn aws(&mut self, kind: ResourceKind, name: &str, display_name: &str) -> Resource {
        let address = address::of(kind, name);
        let tags = self.tags(&address, display_name, &[]);
        Resource::new(address, kind).input("tags", tags)
    }

    fn network(&mut self) {
        let stack = self.stack;
        let network = &stack.network;
        let name = &stack.name;
        // A referenced network is read, never managed: nothing of it enters the graph.
        if network.existing.is_some() {
            return;
        }

        let vpc = self.aws(ResourceKind::Vpc, "main", name);
        let vpc = self.push(
            vpc.input("cidr_block", network.cidr.to_string())
                .input("enable_dns_support", true)
                .input("enable_dns_hostnames", true),
        );
        let igw = self.aws(ResourceKind::InternetGateway, "main", name);
        let igw = self.push(igw.input("vpc_id", Expr::output(&vpc, "id")));

        let mut public_subnets = Vec::new();
        let mut private_subnets = Vec::new();
        for (index, zone) in network.availability_zones.iter().enumerate() {
            for (tier, blocks, role_tag, list) in [
                (
                    "public",
                    &network.public_subnets,
                    "kubernetes.io/role/elb",
                    &mut public_subnets,
                ),
                (
                    "private",
                    &network.private_subnets,
                    "kubernetes.io/role/internal-elb",
                    &mut private_subnets,
                ),
            ] {
                let subnet_address = address::subnet(tier, index);
                let tags = self.tags(
                    &subnet_address,
                    &format!("{name}-{tier}-{zone}"),
                    &[(role_tag, "1")],
                );
                let subnet = Resource::new(subnet_address, ResourceKind::Subnet)
                    .input("vpc_id", Expr::output(&vpc, "id"))
                    .input("cidr_block", blocks[index].to_string())
                    .input("availability_zone", zone.as_str())
                    .input("map_public_ip_on_launch", tier == "public")
                    .input("tags", tags);
                list.push(self.push(subnet));
            }
        }

        let nat_count = match network.nat_gateways {
            NatGateways::None => 0,
            NatGateways::Single => 1,
            NatGateways::PerAz => network.availability_zones.len(),
        };
        let mut nat_gateways = Vec::new();
        for (index, public_subnet) in public_subnets.iter().enumerate().take(nat_count) {
            let eip = self.aws(
                ResourceKind::ElasticIp,
                &format!("nat[{index}]"),
                &format!("{name}-nat-{index}"),
            );
            let eip = self.push(eip.input("domain", "vpc"));
            let nat = self.aws(
                ResourceKind::NatGateway,
                &format!("main[{index}]"),
                &format!("{name}-{index}"),
            );
            let nat = nat
                .input("subnet_id", Expr::output(public_subnet, "id"))
                .input("allocation_id", Expr::output(&eip, "id"))
                .input("connectivity_type", "public")
                // NAT gateways need the internet gateway attached to start.
                .after(&igw);
            nat_gateways.push(self.push(nat));
        }

        let public_table = self.aws(
            ResourceKind::RouteTable,
            "public",
            &format!("{name}-public"),
        );
        let public_table = self.push(
            public_table
                .input("vpc_id", Expr::output(&vpc, "id"))
                .input(
                    "routes",
                    Expr::List(vec![Expr::Map(
                        [
                            (
                                "destination_cidr_block".to_string(),
                                Expr::from("0.0.0.0/0"),
                            ),
                            ("gateway_id".to_string(), Expr::output(&igw, "id")),
                        ]
                        .into(),
                    )]),
                ),
        );
        for (index, subnet) in public_subnets.iter().enumerate() {
            let association = Resource::new(
                address::keyed(ResourceKind::RouteTableAssociation, "public", index),
                ResourceKind::RouteTableAssociation,
            )
            .input("subnet_id", Expr::output(subnet, "id"))
            .input("route_table_id", Expr::output(&public_table, "id"));
            self.push(association);
        }
        for (index, subnet) in private_subnets.iter().enumerate() {
            let table = self.aws(
                ResourceKind::RouteTable,
                &format!("private[{index}]"),
                &format!("{name}-private-{index}"),
            );
            let routes = match nat_gateways.get(index).or(nat_gateways.first()) {
                Some(nat) => Expr::List(vec![Expr::Map(
                    [
                        (
                            "destination_cidr_block".to_string(),
                            Expr::from("0.0.0.0/0"),
                        ),
                        ("nat_gateway_id".to_string(), Expr::output(nat, "id")),
                    ]
                    .into(),
                )]),
                None => Expr::Value(json!([])),
            };
            let table = self.push(
                table
                    .input("vpc_id", Expr::output(&vpc, "id"))
                    .input("routes", routes),
            );
            let association = Resource::new(
                address::keyed(ResourceKind::RouteTableAssociation, "private", index),
                ResourceKind::RouteTableAssociation,
            )
            .input("subnet_id", Expr::output(subnet, "id"))
            .input("route_table_id", Expr::output(&table, "id"));
            self.push(association);
        }
    }

    /// What discovery read of a referenced EKS cluster; `None` for a cluster the stack creates.
    fn read_cluster(&self) -> Option<&crate::spec::model::ReadCluster> {
        self.stack.cluster.read()
    }

    /// The EKS cluster's name: the referenced one's, or the created one's output.
    fn cluster_name(&self) -> Expr {
        match self.read_cluster() {
            Some(read) => Expr::from(read.name.as_str()),
            None => Expr::output(&address::eks_cluster(), "name"),
        }
    }

    /// The EKS cluster's ARN (the Kubernetes objects name their cluster by it).
    fn cluster_arn(&self) -> Expr {
        match self.read_cluster() {
            Some(read) => Expr::from(read.arn.as_str()),
            None => Expr::output(&address::eks_cluster(), "arn"),
        }
    }

    /// The EKS cluster's OIDC issuer URL.
    fn oidc_issuer(&self) -> Expr {
        match self.read_cluster() {
            Some(read) => Expr::from(read.oidc_issuer.as_str()),
            None => Expr::output(&address::eks_cluster(), "oidc_issuer"),
        }
    }

    /// The IAM OIDC provider IRSA roles trust: one that exists and is not the stack's, or the
    /// stack's own.
    fn oidc_provider_arn(&self) -> Expr {
        match self
            .read_cluster()
            .and_then(|read| read.oidc_provider_arn.as_ref())
        {
            Some(arn) => Expr::from(arn.as_str()),
            None => Expr::output(&address::oidc_provider(), "arn"),
        }
    }

    /// Whether the stack manages the Pod Identity Agent add-on (it does unless it references
    /// a cluster where one is installed that is not the stack's).
    fn manages_agent(&self) -> bool {
        !self
            .read_cluster()
            .is_some_and(|read| read.pod_identity_agent)
    }

    /// `resource`, marked `shared` when the cluster is a referenced one: other stacks on that
    /// cluster may use it (the issuer's OIDC provider, the Pod Identity Agent), so the planner
    /// never deletes it, only forgets it.
    fn shared_on_referenced_cluster(&self, resource: Resource) -> Resource {
        if self.stack.cluster.existing.is_some() {
            resource.input("shared", true)
        } else {
            resource
        }
    }

    /// What runs in pods comes after these: the stack's node group; none for a referenced
    /// cluster, which has its nodes already.
    fn nodes(&self) -> Vec<String> {
        if self.stack.cluster.existing.is_some() {
            Vec::new()
        } else {
            vec![address::eks_node_group()]
        }
    }

    /// What a Pod Identity association comes after: the agent add-on the stack manages; none
    /// when it uses one installed already.
    fn agent(&self) -> Vec<String> {
        if self.manages_agent() {
            vec![address::pod_identity_agent()]
        } else {
            Vec::new()
        }
    }

    /// The VPC's id: the referenced one's, or the output of the one the stack creates.
    fn vpc_id(&self) -> Expr {
        match self.read_network() {
            Some(read) => Expr::from(read.vpc_id.as_str()),
            None => Expr::output(&address::vpc(), "id"),
        }
    }

    /// What discovery read of a referenced network; `None` for a network the stack creates.
    fn read_network(&self) -> Option<&crate::spec::model::ReadNetwork> {
        self.stack.network.read()
    }

    /// The ids of the `tier` subnets (`private` or `public`), in order.
    fn subnet_ids(&self, tier: &str) -> Expr {
        if let Some(read) = self.read_network() {
            let subnets = if tier == "public" {
                &read.public
            } else {
                &read.private
            };
            return Expr::List(
                subnets
                    .iter()
                    .map(|subnet| Expr::from(subnet.id.as_str()))
                    .collect(),
            );
        }
        Expr::List(
            (0..self.stack.network.availability_zones.len())
                .map(|index| Expr::output(&address::subnet(tier, index), "id"))
                .collect(),
        )
    }

    /// A value of a database's Aurora cluster: read from a referenced one (a literal), or the
    /// output of the one the stack creates.
    fn database_value(database: &Database, value: DatabaseValue) -> Expr {
        let Some(read) = database.read() else {
            return Expr::output(&address::rds_cluster(&database.key), value.output());
        };
        match value {
            DatabaseValue::Endpoint => Expr::from(read.endpoint.as_str()),
            DatabaseValue::Port => Expr::from(u32::from(read.port)),
            DatabaseValue::ClusterResourceId => Expr::from(read.cluster_resource_id.as_str()),
            DatabaseValue::MasterSecretArn => Expr::Value(
                read.master_secret_arn
                    .as_deref()
                    .map_or(Value::Null, Value::from),
            ),
        }
    }

    fn managed_policy(&self, name: &str) -> String {
        self.stack.partition().managed_policy(name)
    }

    /// An IAM role a service principal assumes, with managed policies attached.
    fn service_role(
        &mut self,
        name: &str,
        role_name: &str,
        service: &str,
        policies: &[&str],
    ) -> (String, Vec<String>) {
        let trust = json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"Service": service},
                "Action": "sts:AssumeRole",
            }],
        });
        let role = self.aws(ResourceKind::IamRole, name, role_name);
        let role = self.push(
            role.input("name", role_name)
                .input("assume_role_policy", trust),
        );
        let mut attachments = Vec::new();
        for policy in policies {
            let attachment = Resource::new(
                address::keyed(ResourceKind::IamRolePolicyAttachment, name, policy),
                ResourceKind::IamRolePolicyAttachment,
            )
            .input("role", Expr::output(&role, "name"))
            .input("policy_arn", self.managed_policy(policy));
            attachments.push(self.push(attachment));
        }
        (role, attachments)
    }

    fn cluster(&mut self) {
        let stack = self.stack;
        let name = &stack.name;
        let cluster_spec = &stack.cluster;
        // A referenced cluster is read, never managed; its issuer gets the stack's OIDC
        // provider only when IAM has none that is not the stack's.
        if let Some(read) = self.read_cluster() {
            if read.oidc_provider_arn.is_none() {
                self.oidc_provider();
            }
            return;
        }

        let (cluster_role, cluster_attachments) = self.service_role(
            "eks_cluster",
            &names::cluster_role(name),
            stack.partition().eks_principal(),
            &["AmazonEKSClusterPolicy"],
        );
        let (node_role, node_attachments) = self.service_role(
            "eks_node",
            &names::node_role(name),
            stack.partition().ec2_principal(),
            &[
                "AmazonEKSWorkerNodePolicy",
                "AmazonEKS_CNI_Policy",
                "AmazonEC2ContainerRegistryReadOnly",
            ],
        );

        let mut subnet_ids = Vec::new();
        for tier in ["private", "public"] {
            if let Expr::List(items) = self.subnet_ids(tier) {
                subnet_ids.extend(items);
            }
        }
        let cluster = self.aws(ResourceKind::EksCluster, "main", name);
        let mut cluster = cluster
            .input("name", name.as_str())
            .input("version", cluster_spec.version.as_str())
            .input("role_arn", Expr::output(&cluster_role, "arn"))
            .input("subnet_ids", Expr::List(subnet_ids))
            // A cluster cannot move to another VPC (its subnets can change within one).
            .input("vpc_id", self.vpc_id())
            .input(
                "endpoint_public_access",
                cluster_spec.endpoint_public_access,
            )
            .input("endpoint_private_access", true)
            .input("authentication_mode", "API")
            .input(
                "service_ipv4_cidr",
                cluster_spec
                    .service_cidr
                    .map_or(Value::Null, |block| json!(block.to_string())),
            );
        for attachment in &cluster_attachments {
            cluster = cluster.after(attachment);
        }
        let cluster = self.push(cluster);

        // Who may use the Kubernetes API: one access entry with cluster-admin per principal.
        for principal in &cluster_spec.admins {
            let entry = self
                .aws(
                    ResourceKind::EksAccessEntry,
                    &format!("admin[{principal}]"),
                    principal,
                )
                .input("cluster_name", Expr::output(&cluster, "name"))
                .input("principal_arn", principal.as_str())
                .input(
                    "policy_arn",
                    stack
                        .partition()
                        .cluster_access_policy(CLUSTER_ADMIN_POLICY),
                );
            self.push(entry);
        }

        let node_group_spec = &cluster_spec.node_group;
        let node_group = self.aws(
            ResourceKind::EksNodeGroup,
            "main",
            &format!("{name}-default"),
        );
        let mut node_group = node_group
            .input("cluster_name", Expr::output(&cluster, "name"))
            .input("node_group_name", "default")
            .input("node_role_arn", Expr::output(&node_role, "arn"))
            .input("subnet_ids", self.subnet_ids("private"))
            .input("instance_types", json!(node_group_spec.instance_types))
            .input(
                "scaling",
                json!({
                    "min_size": node_group_spec.min_size,
                    "desired_size": node_group_spec.desired_size,
                    "max_size": node_group_spec.max_size,
                }),
            )
            .input("version", cluster_spec.version.as_str())
            .after(&cluster);
        for attachment in &node_attachments {
            node_group = node_group.after(attachment);
        }
        // Nodes in private subnets pull images through the NAT routes (a referenced network
        // has its own, in place already).
        let created_routes = if stack.network.existing.is_none() {
            stack.network.availability_zones.len()
        } else {
            0
        };
        for index in 0..created_routes {
            node_group = node_group.after(&address::keyed(
                ResourceKind::RouteTableAssociation,
                "private",
                index,
            ));
        }
        self.push(node_group);

        self.oidc_provider();
    }

    /// The IAM OIDC provider for the cluster's issuer, which IRSA roles trust.
    fn oidc_provider(&mut self) {
        let oidc = self.aws(
            ResourceKind::OidcProvider,
            "eks",
            &format!("{}-eks-oidc", self.stack.name),
        );
        let issuer = self.oidc_issuer();
        let oidc = oidc
            .input("url", issuer)
            .input("client_ids", json!([IRSA_AUDIENCE]));
        let oidc = self.shared_on_referenced_cluster(oidc);
        self.push(oidc);
    }

    /// The relay of a database ([`crate::relay`]): its configuration, a NetworkPolicy that lets
    /// it reach only the database port, and its Deployment, which is applied once the nodes
    /// are there, the policy is in place and the cluster serves, and waited for until its pod is
    /// available. Each database has its own ([`crate::relay::name`]).
    fn relay(&mut self, database: &Database) {
        use sha2::Digest as _;
        let stack = self.stack;
        if !uses_relay(database) {
            return;
        }
        let cluster_arn = self.cluster_arn();
        let relay_namespace = crate::relay::namespace(stack);
        let relay_name = crate::relay::name(&database.key);
        let app_label = crate::relay::app_label(&database.key);
        let namespace = address::of(ResourceKind::KubernetesNamespace, &relay_namespace);
        let id = format!("{relay_namespace}/{relay_name}");
        let labels = json!({
            "app.kubernetes.io/name": app_label,
            "app.kubernetes.io/managed-by": "pwless",
            "pwless/stack": stack.name,
        });
        let config_map = self.push(
            Resource::new(
                address::of(ResourceKind::KubernetesConfigMap, &id),
                ResourceKind::KubernetesConfigMap,
            )
            .input("namespace", relay_namespace.as_str())
            .input("name", relay_name.as_str())
            .input("labels", labels.clone())
            .input("data", json!({"haproxy.cfg": crate::relay::HAPROXY_CONFIG}))
            .input("cluster_arn", cluster_arn.clone())
            .after(&namespace),
        );
        let policy = self.push(
            Resource::new(
                address::of(ResourceKind::KubernetesNetworkPolicy, &id),
                ResourceKind::KubernetesNetworkPolicy,
            )
            .input("namespace", relay_namespace.as_str())
            .input("name", relay_name.as_str())
            .input("labels", labels.clone())
            .input("pod_selector", json!({"app.kubernetes.io/name": app_label}))
            .input("egress_cidr", stack.network.cidr.to_string())
            // A created cluster's port is always 5432 (see `database`): a constant here keeps
            // the policy unchanged when the cluster is replaced. A referenced one's is read.
            .input(
                "egress_port",
                u32::from(database.read().map_or(crate::relay::PORT, |read| read.port)),
            )
            .input("cluster_arn", cluster_arn.clone())
            .after(&namespace),
        );
        let digest = hex::encode(sha2::Sha256::digest(
            crate::relay::HAPROXY_CONFIG.as_bytes(),
        ));
        let relay = Resource::new(
            address::relay(&relay_namespace, &database.key),
            ResourceKind::KubernetesDbRelay,
        )
        .input("namespace", relay_namespace.as_str())
        .input("name", relay_name.as_str())
        .input("labels", labels)
        .input(
            "image",
            database
                .connection
                .relay_image
                .as_deref()
                .unwrap_or(crate::relay::IMAGE),
        )
        .input("config_map", relay_name.as_str())
        .input("config_sha256", digest)
        .input(
            "endpoint",
            Self::database_value(database, DatabaseValue::Endpoint),
        )
        .input("port", Self::database_value(database, DatabaseValue::Port))
        .input("cluster_arn", cluster_arn)
        .after(&config_map)
        .after(&policy)
        .after_each(self.nodes())
        // A created cluster serves once its first instance is there.
        .after_each(
            database
                .existing
                .is_none()
                .then(|| address::rds_instance(&database.key, 0))
                .iter(),
        );
        self.push(relay);
    }

    fn database(&mut self, database: &Database) {
        if database.existing.is_none() {
            self.aurora_cluster(database);
        }
        self.database_users(database);
    }

    /// The Aurora cluster a database creates: its security group and rules, subnet group,
    /// cluster and instances, named [`names::rds_cluster`].
    fn aurora_cluster(&mut self, database: &Database) {
        let stack = self.stack;
        let name = names::rds_cluster(&stack.name, &database.key);
        let key = database.key.as_str();
        let security_group = self.aws(
            ResourceKind::SecurityGroup,
            &address::per_database("database", key),
            &format!("{name}-database"),
        );
        let security_group = self.push(
            security_group
                .input("vpc_id", self.vpc_id())
                .input("name", format!("{name}-database"))
                .input(
                    "description",
                    format!("pwless {name}: PostgreSQL from the private subnets only"),
                ),
        );
        // Ingress on 5432 only from the private subnets, where the EKS nodes run and where the
        // VPC CNI gives pods their addresses; never from the internet. (The EKS-made cluster
        // security group would be tighter still, but the sandbox's EKS does not report it.)
        for (index, block) in stack.network.private_subnets.iter().enumerate() {
            self.push(
                Resource::new(
                    address::keyed(
                        ResourceKind::SecurityGroupRule,
                        &format!("{}_from_private", address::per_database("database", key)),
                        index,
                    ),
                    ResourceKind::SecurityGroupRule,
                )
                .input("security_group_id", Expr::output(&security_group, "id"))
                .input("type", "ingress")
                .input("protocol", "tcp")
                .input("from_port", 5432u32)
                .input("to_port", 5432u32)
                .input("cidr_ipv4", block.to_string()),
            );
        }

        let tier = match database.subnets {
            DatabaseSubnets::Private => "private",
            DatabaseSubnets::Public => "public",
        };
        let subnet_group = self.aws(
            ResourceKind::DbSubnetGroup,
            &address::per_database("main", key),
            &name,
        );
        let subnet_group = self.push(
            subnet_group
                .input("name", name.as_str())
                .input("description", format!("pwless {name}: {tier} subnets"))
                .input("subnet_ids", self.subnet_ids(tier))
                // A subnet group cannot move to another VPC (its subnets can change within one).
                .input("vpc_id", self.vpc_id()),
        );

        let master_password = match &database.master_password {
            MasterPassword::Managed => json!({"managed": true}),
            MasterPassword::Env(variable) => json!({"env": variable}),
        };
        let rds = self.aws(ResourceKind::RdsCluster, key, &name);
        let rds = self.push(
            rds.input("cluster_identifier", name.as_str())
                .input("engine", "aurora-postgresql")
                .input("engine_version", database.engine_version.as_str())
                .input("database_name", database.name.as_str())
                .input("master_username", database.master_username.as_str())
                .input("master_password", master_password)
                .input("iam_database_authentication_enabled", true)
                .input("storage_encrypted", true)
                .input("final_snapshot", database.final_snapshot)
                .input("iam_auth_error_log", database.iam_auth_error_log)
                .input("port", 5432u32)
                .input("db_subnet_group_name", Expr::output(&subnet_group, "name"))
                // An Aurora cluster cannot move to another VPC (ModifyDBCluster takes no subnet
                // group): a new VPC replaces it, with consent, instead of an update that fails
                // halfway.
                .input("vpc_id", self.vpc_id())
                .input(
                    "vpc_security_group_ids",
                    Expr::List(vec![Expr::output(&security_group, "id")]),
                ),
        );
        for index in 0..database.instances {
            let identifier = format!("{name}-{}", index + 1);
            let instance = self.aws(
                ResourceKind::RdsClusterInstance,
                &format!("{key}[{index}]"),
                &identifier,
            );
            self.push(
                instance
                    .input("identifier", identifier.as_str())
                    .input(
                        "cluster_identifier",
                        Expr::output(&rds, "cluster_identifier"),
                    )
                    .input("engine", "aurora-postgresql")
                    .input("instance_class", database.instance_class.as_str())
                    .input(
                        "publicly_accessible",
                        database.subnets == DatabaseSubnets::Public,
                    )
                    .after(&rds),
            );
        }
    }

    /// A database's users and their privileges, in the created or the referenced cluster.
    fn database_users(&mut self, database: &Database) {
        let stack = self.stack;
        let name = &stack.name;
        let key = database.key.as_str();
        // A referenced cluster whose IAM authentication the stack may turn on: the users come
        // after it is on.
        let iam_auth = match &database.existing {
            Some(existing) if existing.enable_iam_auth && !database.users.is_empty() => {
                let turn_on =
                    Resource::new(address::rds_iam_auth(key), ResourceKind::RdsClusterIamAuth)
                        .input(
                            "cluster_identifier",
                            existing.cluster_identifier.id.as_str(),
                        )
                        .input("enabled", true)
                        // Never turned off: when the stack lets go of it, only the state entry goes.
                        .input("shared", true);
                Some(self.push(turn_on))
            }
            _ => None,
        };
        // What the users come after: the relay they are reached through, else the first
        // instance of a created cluster (a referenced one serves already).
        let reached_through = if uses_relay(database) {
            Some(address::relay(&crate::relay::namespace(stack), key))
        } else {
            database
                .existing
                .is_none()
                .then(|| address::rds_instance(key, 0))
        };
        // Where pwless reaches the cluster to manage users: through the relay in the EKS
        // cluster, else straight (a tunnel may stand in between).
        let mut connection = std::collections::BTreeMap::from([
            // The database the users live in: a refresh after `database.name` changed still
            // reads them where they are.
            ("database".to_string(), Expr::from(database.name.as_str())),
            (
                "endpoint".to_string(),
                Self::database_value(database, DatabaseValue::Endpoint),
            ),
            (
                "port".to_string(),
                Self::database_value(database, DatabaseValue::Port),
            ),
            (
                "master_secret_arn".to_string(),
                Self::database_value(database, DatabaseValue::MasterSecretArn),
            ),
        ]);
        if !database.is_main() {
            // Which database's settings (tunnel, CA bundle, master password) reach it; the
            // shorthand's is the default, so a one-database stack's inputs stay as they were.
            connection.insert("db".to_string(), Expr::from(key));
        }
        if let Some(read) = database.read() {
            // The master user a password from the environment is for (a destroy reads no
            // stack facts).
            connection.insert(
                "master_username".to_string(),
                Expr::from(read.master_username.as_str()),
            );
        }
        if uses_relay(database) {
            let mut relay = std::collections::BTreeMap::from([
                ("cluster_arn".to_string(), self.cluster_arn()),
                (
                    "namespace".to_string(),
                    Expr::from(crate::relay::namespace(stack)),
                ),
                ("app".to_string(), Expr::from(crate::relay::app_label(key))),
                ("stack".to_string(), Expr::from(name.as_str())),
            ]);
            if !database.is_main() {
                relay.insert("name".to_string(), Expr::from(crate::relay::name(key)));
            }
            connection.insert("relay".to_string(), Expr::Map(relay));
        }
        let connection = Expr::Map(connection);
        for user in &database.users {
            let role = Resource::new(
                address::db_user_role(key, &user.name),
                ResourceKind::PostgresRole,
            )
            .input("name", user.name.as_str())
            .input("login", true)
            .input("password", Value::Null)
            // Every attribute that could let the user do more than its grants say, off (issue
            // 17, item 6): drift on any of them is read and planned back.
            .input(
                "attributes",
                json!(crate::provider::postgres::role_attributes_off()),
            )
            .input("member_of", json!(["rds_iam"]))
            .input("connection", connection.clone())
            .input(
                "cluster_resource_id",
                Self::database_value(database, DatabaseValue::ClusterResourceId),
            )
            .after_each(reached_through.iter().chain(&iam_auth));
            let role = self.push(role);
            let privileges_on = |target: PrivilegeTarget| -> Value {
                json!(
                    user.privileges
                        .iter()
                        .filter(|privilege| privilege.target() == target)
                        .map(|privilege| Privilege::name(*privilege))
                        .collect::<Vec<_>>()
                )
            };
            let others: Vec<&str> = database
                .users
                .iter()
                .map(|other| other.name.as_str())
                .filter(|other| *other != user.name)
                .collect();
            let grant = Resource::new(
                address::db_user_grant(key, &user.name),
                ResourceKind::PostgresGrant,
            )
            .input("role", user.name.as_str())
            .input("database", database.name.as_str())
            .input("schema", user.schema.as_str())
            .input("connection", connection.clone())
            .input(
                "database_privileges",
                privileges_on(PrivilegeTarget::Database),
            )
            .input("schema_privileges", privileges_on(PrivilegeTarget::Schema))
            .input("table_privileges", privileges_on(PrivilegeTarget::Tables))
            // The other users whose tables the privileges cover too (issue 17, item 4; the
            // master's are always covered): tables an application creates later included.
            .input("table_owners", json!(others))
            .input(
                "cluster_resource_id",
                Self::database_value(database, DatabaseValue::ClusterResourceId),
            )
            .after(&role)
            .after_each(others.iter().map(|other| address::db_user_role(key, other)));
            self.push(grant);
        }
    }

    fn access(&mut self) {
        let stack = self.stack;
        if self.manages_agent()
            && stack
                .access
                .iter()
                .any(|entry| entry.identity == Identity::PodIdentity)
        {
            // The agent runs on the nodes (a DaemonSet) and hands pods their credentials
            // (<https://docs.aws.amazon.com/eks/latest/userguide/pod-id-agent-setup.html>).
            let agent = self
                .aws(
                    ResourceKind::EksAddon,
                    "pod_identity_agent",
                    POD_IDENTITY_AGENT_ADDON,
                )
                .input("cluster_name", self.cluster_name())
                .input("addon_name", POD_IDENTITY_AGENT_ADDON)
                .after_each(self.nodes());
            let agent = self.shared_on_referenced_cluster(agent);
            self.push(agent);
        }
        for (entry, entries) in service_accounts(stack) {
            let (namespace, service_account) = (&entry.namespace, &entry.service_account);
            let role_name = names::access_role(&stack.name, entry);
            let role_address = address::access_role(namespace, service_account, entry.identity);
            let tags = self.tags(&role_address, &role_name, &[]);
            let role = Resource::new(role_address, ResourceKind::IamRole)
                .input("name", role_name.as_str())
                .input("tags", tags);
            let role = match entry.identity {
                Identity::Irsa => role.input(
                    "web_identity",
                    Expr::Map(
                        [
                            ("provider_arn".to_string(), self.oidc_provider_arn()),
                            ("issuer".to_string(), self.oidc_issuer()),
                            (
                                "subject".to_string(),
                                Expr::from(format!(
                                    "system:serviceaccount:{namespace}:{service_account}"
                                )),
                            ),
                            ("audience".to_string(), Expr::from(IRSA_AUDIENCE)),
                        ]
                        .into(),
                    ),
                ),
                Identity::PodIdentity => role.input(
                    "pod_identity",
                    Expr::Map(
                        [
                            ("cluster_arn".to_string(), self.cluster_arn()),
                            ("namespace".to_string(), Expr::from(namespace.as_str())),
                            (
                                "service_account".to_string(),
                                Expr::from(service_account.as_str()),
                            ),
                        ]
                        .into(),
                    ),
                ),
            };
            let role = self.push(role);
            // One `rds-db:connect` grant (a dbuser ARN) per database the service account may log
            // in to, as exactly its user there, and nothing more.
            let grants = entries
                .iter()
                .map(|entry| {
                    let database = stack
                        .database(&entry.database)
                        .expect("validation ties every access entry to a database of the stack");
                    Expr::Map(
                        [
                            ("partition".to_string(), Expr::from(stack.partition().id())),
                            ("region".to_string(), Expr::from(stack.region.as_str())),
                            (
                                "cluster_resource_id".to_string(),
                                Self::database_value(database, DatabaseValue::ClusterResourceId),
                            ),
                            ("db_user".to_string(), Expr::from(entry.db_user.as_str())),
                        ]
                        .into(),
                    )
                })
                .collect();
            let policy = Resource::new(
                address::access_policy(namespace, service_account, entry.identity),
                ResourceKind::IamRolePolicy,
            )
            .input("role", Expr::output(&role, "name"))
            .input("name", "rds-db-connect")
            .input("rds_db_connect", Expr::List(grants));
            let policy = self.push(policy);
            if entry.identity == Identity::PodIdentity {
                let address = address::pod_identity_association(namespace, service_account);
                let tags = self.tags(&address, &format!("{namespace}/{service_account}"), &[]);
                // Ready only with the agent running and the role allowed to connect: the
                // service account then stops naming an IRSA role (kubernetes()).
                let association = Resource::new(address, ResourceKind::EksPodIdentityAssociation)
                    .input("cluster_name", self.cluster_name())
                    .input("namespace", namespace.as_str())
                    .input("service_account", service_account.as_str())
                    .input("role_arn", Expr::output(&role, "arn"))
                    .input("tags", tags)
                    .after(&policy)
                    .after_each(self.agent());
                self.push(association);
            }
        }
    }

    fn kubernetes(&mut self) {
        let stack = self.stack;
        let cluster_arn = self.cluster_arn();
        let labels = json!({"app.kubernetes.io/managed-by": "pwless", "pwless/stack": stack.name});

        let namespaces: BTreeSet<&str> = stack
            .access
            .iter()
            .map(|entry| entry.namespace.as_str())
            .chain(stack.app.iter().map(|app| app.namespace.as_str()))
            .collect();
        let relay_namespace = stack_uses_relay(stack).then(|| crate::relay::namespace(stack));
        let namespaces = namespaces
            .into_iter()
            .map(|namespace| (namespace, self.stack.cluster.existing.is_some()))
            .chain(
                relay_namespace
                    .as_deref()
                    .map(|namespace| (namespace, false)),
            );
        let mut seen = BTreeSet::new();
        for (namespace, shared) in namespaces {
            if !seen.insert(namespace) {
                continue;
            }
            // A namespace of a referenced cluster is shared with what runs there already:
            // pwless makes it when it is missing, claims none of its labels, and never deletes
            // it (the planner only forgets it: `shared`).
            let resource = Resource::new(
                address::of(ResourceKind::KubernetesNamespace, namespace),
                ResourceKind::KubernetesNamespace,
            )
            .input("name", namespace)
            .input("cluster_arn", cluster_arn.clone());
            let resource = if shared {
                resource.input("labels", json!({})).input("shared", true)
            } else {
                resource.input("labels", labels.clone())
            };
            // Every other object lives in a namespace: after the access entries, before their
            // removal.
            let resource = stack
                .cluster
                .admins
                .iter()
                .fold(resource, |resource, admin| {
                    resource.after(&address::admin_access_entry(admin))
                });
            self.push(resource);
        }
        for (entry, _) in service_accounts(stack) {
            let account = Resource::new(
                address::of(
                    ResourceKind::KubernetesServiceAccount,
                    &format!("{}/{}", entry.namespace, entry.service_account),
                ),
                ResourceKind::KubernetesServiceAccount,
            )
            .input("namespace", entry.namespace.as_str())
            .input("name", entry.service_account.as_str())
            .input("labels", labels.clone())
            .input("cluster_arn", cluster_arn.clone())
            .after(&address::of(
                ResourceKind::KubernetesNamespace,
                &entry.namespace,
            ));
            // After the role may connect; and so, in a migration, the old role's permission
            // stays until the service account has moved to the new mechanism.
            let account = account.after(&address::access_policy(
                &entry.namespace,
                &entry.service_account,
                entry.identity,
            ));
            // IRSA: the annotation names the role. Pod Identity: no annotation (the SDKs take a
            // web identity before the agent's credentials), and only once the association is
            // there, so that pods started meanwhile still get credentials.
            let account = match entry.identity {
                Identity::Irsa => account.input(
                    "role_arn",
                    Expr::output(
                        &address::irsa_role(&entry.namespace, &entry.service_account),
                        "arn",
                    ),
                ),
                Identity::PodIdentity => account.input("role_arn", Value::Null).after(
                    &address::pod_identity_association(&entry.namespace, &entry.service_account),
                ),
            };
            self.push(account);
        }

        let Some(app) = &stack.app else { return };
        let Some(entry) = stack.access.iter().find(|entry| {
            entry.namespace == app.namespace
                && entry.service_account == app.service_account
                && entry.database == app.database
        }) else {
            return;
        };
        let database = stack
            .database(&app.database)
            .expect("validation ties the app to a database of the stack");
        let app_labels = json!({
            "app.kubernetes.io/name": "pwless-demo",
            "app.kubernetes.io/managed-by": "pwless",
            "pwless/stack": stack.name,
        });
        let deployment = Resource::new(
            address::of(
                ResourceKind::KubernetesDeployment,
                &format!("{}/pwless-demo", app.namespace),
            ),
            ResourceKind::KubernetesDeployment,
        )
        .input("namespace", app.namespace.as_str())
        .input("name", "pwless-demo")
        .input("service_account", app.service_account.as_str())
        .input("image", app.image.as_str())
        .input("replicas", app.replicas)
        .input("port", u32::from(app.port))
        .input("labels", app_labels.clone())
        .input(
            "env",
            Expr::Map(
                [
                    (
                        "DB_ENDPOINT".to_string(),
                        Self::database_value(database, DatabaseValue::Endpoint),
                    ),
                    (
                        "DB_PORT".to_string(),
                        Self::database_value(database, DatabaseValue::Port),
                    ),
                    ("DB_NAME".to_string(), Expr::from(database.name.as_str())),
                    ("DB_USER".to_string(), Expr::from(entry.db_user.as_str())),
                    ("AWS_REGION".to_string(), Expr::from(stack.region.as_str())),
                    ("RDS_CA_CERT".to_string(), Expr::from(APP_CA_BUNDLE_PATH)),
                    ("PORT".to_string(), Expr::from(app.port.to_string())),
                ]
                .into(),
            ),
        )
        .input("cluster_arn", cluster_arn.clone())
        .after(&address::of(
            ResourceKind::KubernetesServiceAccount,
            &format!("{}/{}", entry.namespace, entry.service_account),
        ))
        // A migration between IRSA and Pod Identity takes the old role's permission away only
        // after the pods rolled over to the new mechanism (a pure delete waits for its
        // dependents' updates; the role goes after its policy).
        .after(&address::access_policy(
            &entry.namespace,
            &entry.service_account,
            entry.identity,
        ))
        .after(&address::db_user_grant(&entry.database, &entry.db_user))
        .after_each(self.nodes());
        // Pod Identity is a pod template annotation: switching to it or back rolls the pods
        // over, so that they pick the mechanism up (an IRSA stack's Deployment is unchanged).
        let deployment = match entry.identity {
            Identity::Irsa => deployment,
            Identity::PodIdentity => deployment.input("identity", entry.identity.name()),
        };
        self.push(deployment);

        // The load balancer's network interfaces sit in the public subnets: deleting the Service
        // before the internet gateway and routes lets destroy release them first.
        let mut service = Resource::new(
            address::of(
                ResourceKind::KubernetesService,
                &format!("{}/pwless-demo", app.namespace),
            ),
            ResourceKind::KubernetesService,
        )
        .input("namespace", app.namespace.as_str())
        .input("name", "pwless-demo")
        .input("type", "LoadBalancer")
        .input("port", 80u32)
        .input("target_port", u32::from(app.port))
        .input("selector", json!({"app.kubernetes.io/name": "pwless-demo"}))
        .input("labels", app_labels)
        .input("cluster_arn", cluster_arn)
        .after(&address::of(
            ResourceKind::KubernetesNamespace,
            &app.namespace,
        ));
        if stack.network.existing.is_none() {
            service = service
                .after(&address::of(ResourceKind::InternetGateway, "main"))
                .after(&address::of(ResourceKind::RouteTable, "public"));
            for index in 0..stack.network.availability_zones.len() {
                service = service.after(&address::keyed(
                    ResourceKind::RouteTableAssociation,
                    "public",
                    index,
                ));
            }
        }
        self.push(service);
    }
}
