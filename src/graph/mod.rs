//! The resource graph: the stack expanded into the low-level resources pwless manages, as a
//! petgraph DAG whose edges mean "must happen after" (dependency -> dependent).

pub mod address;
mod expand;
pub mod expr;
pub mod kind;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};

pub use expand::{
    APP_CA_BUNDLE_PATH, POD_IDENTITY_AGENT_ADDON, expand, service_accounts, stack_uses_relay,
    uses_relay,
};
pub use expr::{Expr, OutputRef};
pub use kind::{Provider, ResourceKind};

use crate::spec::Stack;

/// One resource as the stack wants it.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    /// Unique and stable: `aws_subnet.private[0]`, `postgresql_role.user[app_user]`.
    pub address: String,
    pub kind: ResourceKind,
    pub inputs: BTreeMap<String, Expr>,
    /// Ordering needs that no input reference expresses (an EKS cluster needs its role's
    /// policy attached before it is created).
    pub depends_on: BTreeSet<String>,
}

impl Resource {
    pub fn new(address: String, kind: ResourceKind) -> Self {
        Resource {
            address,
            kind,
            inputs: BTreeMap::new(),
            depends_on: BTreeSet::new(),
        }
    }

    pub fn input(mut self, name: &str, value: impl Into<Expr>) -> Self {
        self.inputs.insert(name.to_string(), value.into());
        self
    }

    pub fn after(mut self, address: &str) -> Self {
        self.depends_on.insert(address.to_string());
        self
    }

    /// [`Resource::after`] each of `addresses` (none: unchanged).
    pub fn after_each<S: AsRef<str>>(mut self, addresses: impl IntoIterator<Item = S>) -> Self {
        self.depends_on.extend(
            addresses
                .into_iter()
                .map(|address| address.as_ref().to_string()),
        );
        self
    }

    /// Every address this resource must come after: explicit ones and referenced ones.
    pub fn dependencies(&self) -> BTreeSet<&str> {
        let mut all: BTreeSet<&str> = self.depends_on.iter().map(String::as_str).collect();
        for expr in self.inputs.values() {
            for reference in expr.references() {
                all.insert(reference.address.as_str());
            }
        }
        all
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    #[error("two resources have the address `{0}`")]
    DuplicateAddress(String),
    #[error("`{from}` depends on `{to}`, which is not a resource of this stack")]
    UnknownDependency { from: String, to: String },
    #[error("`{from}` refers to output `{output}` of `{to}`, which a {kind} does not have")]
    UnknownOutput {
        from: String,
        to: String,
        kind: ResourceKind,
        output: String,
    },
    #[error("dependency cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    /// The stack references existing resources that were not read yet
    /// ([`crate::ops::discover`] fills in their facts).
    #[error("the stack references existing resources that were not read first")]
    Unread,
}

/// The resources of a stack and their dependencies, checked to be acyclic.
#[derive(Debug, Clone)]
pub struct ResourceGraph {
    graph: DiGraph<Resource, ()>,
    index: HashMap<String, NodeIndex>,
    /// A topological order, stable: among ready resources the one declared first goes first.
    order: Vec<NodeIndex>,
}

impl ResourceGraph {
    /// The graph of a stack whose referenced resources are known ([`Stack::is_known`]);
    /// [`GraphError::Unread`] otherwise.
    ///
    /// [`Stack::is_known`]: crate::spec::Stack::is_known
    pub fn from_stack(stack: &Stack) -> Result<Self, GraphError> {
        if !stack.is_known() {
            return Err(GraphError::Unread);
        }
        Self::build(expand(stack))
    }

    pub fn build(resources: Vec<Resource>) -> Result<Self, GraphError> {
        let mut graph = DiGraph::with_capacity(resources.len(), resources.len() * 2);
        let mut index = HashMap::with_capacity(resources.len());
        for resource in resources {
            let address = resource.address.clone();
            let node = graph.add_node(resource);
            if index.insert(address.clone(), node).is_some() {
                return Err(GraphError::DuplicateAddress(address));
            }
        }
        let mut edges = Vec::new();
        for node in graph.node_indices() {
            let resource = &graph[node];
            for expr in resource.inputs.values() {
                for reference in expr.references() {
                    let Some(&target) = index.get(&reference.address) else {
                        return Err(GraphError::UnknownDependency {
                            from: resource.address.clone(),
                            to: reference.address.clone(),
                        });
                    };
                    let target_kind = graph[target].kind;
                    if !target_kind.outputs().contains(&reference.output.as_str()) {
                        return Err(GraphError::UnknownOutput {
                            from: resource.address.clone(),
                            to: reference.address.clone(),
                            kind: target_kind,
                            output: reference.output.clone(),
                        });
                    }
                }
            }
            for dependency in resource.dependencies() {
                let Some(&target) = index.get(dependency) else {
                    return Err(GraphError::UnknownDependency {
                        from: resource.address.clone(),
                        to: dependency.to_string(),
                    });
                };
                edges.push((target, node));
            }
        }
        for (from, to) in edges {
            graph.add_edge(from, to, ());
        }
        let order = stable_topological_order(&graph)?;
        Ok(ResourceGraph {
            graph,
            index,
            order,
        })
    }

    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }

    pub fn get(&self, address: &str) -> Option<&Resource> {
        self.index.get(address).map(|node| &self.graph[*node])
    }

    /// Resources in dependency order: each after everything it depends on.
    pub fn in_order(&self) -> impl Iterator<Item = &Resource> {
        self.order.iter().map(|node| &self.graph[*node])
    }

    /// Addresses `address` directly depends on, sorted.
    pub fn dependencies_of(&self, address: &str) -> Vec<&str> {
        let Some(&node) = self.index.get(address) else {
            return Vec::new();
        };
        let mut found: Vec<&str> = self
            .graph
            .neighbors_directed(node, Direction::Incoming)
            .map(|dependency| self.graph[dependency].address.as_str())
            .collect();
        found.sort_unstable();
        found.dedup();
        found
    }

    /// Graphviz DOT; edges point from a dependency to what needs it.
    pub fn to_dot(&self) -> String {
        let mut out = String::from(
            "digraph pwless {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n",
        );
        for resource in self.in_order() {
            out.push_str(&format!("  {};\n", quote_dot(&resource.address)));
        }
        for resource in self.in_order() {
            for dependency in self.dependencies_of(&resource.address) {
                out.push_str(&format!(
                    "  {} -> {};\n",
                    quote_dot(dependency),
                    quote_dot(&resource.address)
                ));
            }
        }
        out.push_str("}\n");
        out
    }

    /// A Mermaid flowchart, as GitHub renders it in Markdown.
    pub fn to_mermaid(&self) -> String {
        let ids: HashMap<&str, String> = self
            .in_order()
            .enumerate()
            .map(|(number, resource)| (resource.address.as_str(), format!("r{number}")))
            .collect();
        let mut out = String::from("flowchart LR\n");
        for resource in self.in_order() {
            let label = resource.address.replace('"', "#quot;");
            out.push_str(&format!(
                "  {}[\"{}\"]\n",
                ids[resource.address.as_str()],
                label
            ));
        }
        for resource in self.in_order() {
            for dependency in self.dependencies_of(&resource.address) {
                out.push_str(&format!(
                    "  {} --> {}\n",
                    ids[dependency],
                    ids[resource.address.as_str()]
                ));
            }
        }
        out
    }
}

fn quote_dot(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Kahn's algorithm with a min-heap on declaration order, so the order is deterministic and
/// reads like the stack file. On a cycle, names the resources on one.
fn stable_topological_order(graph: &DiGraph<Resource, ()>) -> Result<Vec<NodeIndex>, GraphError> {
    let mut waiting: Vec<usize> = graph
        .node_indices()
        .map(|node| graph.neighbors_directed(node, Direction::Incoming).count())
        .collect();
    let mut ready: BinaryHeap<Reverse<NodeIndex>> = graph
        .node_indices()
        .filter(|node| waiting[node.index()] == 0)
        .map(Reverse)
        .collect();
    let mut order = Vec::with_capacity(graph.node_count());
    while let Some(Reverse(node)) = ready.pop() {
        order.push(node);
        for dependent in graph.neighbors_directed(node, Direction::Outgoing) {
            waiting[dependent.index()] -= 1;
            if waiting[dependent.index()] == 0 {
                ready.push(Reverse(dependent));
            }
        }
    }
    if order.len() == graph.node_count() {
        return Ok(order);
    }
    // Walk back along unresolved dependencies until a node repeats: that is a cycle.
    let Some(start) = graph.node_indices().find(|node| waiting[node.index()] > 0) else {
        return Err(GraphError::Cycle(Vec::new()));
    };
    let mut path = vec![start];
    let mut seen: HashMap<NodeIndex, usize> = HashMap::from([(start, 0)]);
    let mut current = start;
    loop {
        let Some(next) = graph
            .neighbors_directed(current, Direction::Incoming)
            .find(|dependency| waiting[dependency.index()] > 0)
        else {
            return Err(GraphError::Cycle(vec![graph[current].address.clone()]));
        };
        if let Some(&position) = seen.get(&next) {
            let mut cycle: Vec<String> = path[position..]
                .iter()
                .rev()
                .map(|node| graph[*node].address.clone())
                .collect();
            cycle.push(cycle[0].clone());
            return Err(GraphError::Cycle(cycle));
        }
        seen.insert(next, path.len());
        path.push(next);
        current = next;
    }
}

#[cfg(test)]
/// The Pod Identity example on a referenced network and cluster, read as discovery would
/// have read it (`agent`: whether the cluster has an agent add-on that is not the stack's;
/// `provider`: the ARN of an OIDC provider for its issuer that is not the stack's).
pub(crate) fn referenced_stack(agent: bool, provider: Option<&str>) -> Stack {
    use crate::spec::model::{ReadCluster, ReadNetwork, ReadSubnet};
    let text = include_str!("../../examples/pod-identity.yaml");
    let text = text
        .replacen("  cidr: 10.0.0.0/16\n", "  existing: {vpc_id: vpc-0123456789abcdef0, private_subnet_ids: [subnet-0123456789abcdef1, subnet-0123456789abcdef2], public_subnet_ids: [subnet-0123456789abcdef3, subnet-0123456789abcdef4]}\n", 1);
    let text: String = text
        .lines()
        .filter(|line| {
            ![
                "  availability_zones:",
                "  nat_gateways:",
                "  version:",
                "  node_group:",
                "  admins:",
                "    - arn:",
            ]
            .iter()
            .any(|start| line.starts_with(start))
        })
        .map(|line| {
            if line.starts_with("cluster:") {
                "cluster:\n  existing: {name: team-cluster}\n".to_string()
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    let mut stack = crate::spec::parse_str(std::path::Path::new("t.yaml"), &text)
        .unwrap_or_else(|errors| panic!("{errors}\n{text}"));
    let block = |text: &str| text.parse().unwrap();
    let subnet = |id: &str, zone: &str, cidr: &str| ReadSubnet {
        id: id.into(),
        availability_zone: zone.into(),
        cidr: block(cidr),
    };
    stack.network.record_read(ReadNetwork {
        vpc_id: "vpc-0123456789abcdef0".into(),
        cidr: block("10.9.0.0/16"),
        private: vec![
            subnet("subnet-0123456789abcdef1", "us-west-2a", "10.9.0.0/24"),
            subnet("subnet-0123456789abcdef2", "us-west-2b", "10.9.1.0/24"),
        ],
        public: vec![
            subnet("subnet-0123456789abcdef3", "us-west-2a", "10.9.2.0/24"),
            subnet("subnet-0123456789abcdef4", "us-west-2b", "10.9.3.0/24"),
        ],
    });
    stack.cluster.record_read(ReadCluster {
        name: "team-cluster".into(),
        arn: "arn:aws:eks:us-west-2:123456789012:cluster/team-cluster".into(),
        endpoint: "https://TEAM.gr7.us-west-2.eks.amazonaws.com".into(),
        oidc_issuer: "https://oidc.eks.us-west-2.amazonaws.com/id/TEAM".into(),
        vpc_id: "vpc-0123456789abcdef0".into(),
        version: "1.31".into(),
        oidc_provider_arn: provider.map(str::to_string),
        pod_identity_agent: agent,
    });
    stack
}

/// [`referenced_stack`] whose Aurora cluster is referenced too (`database.existing`: the team's
/// `team-aurora`, its database `shop`, port 6543, IAM authentication off and the stack allowed
/// to turn it on), as discovery would leave it.
#[cfg(test)]
pub(crate) fn referenced_everything() -> Stack {
    use crate::spec::model::ReadDatabase;
    let mut stack = referenced_stack(false, None);
    let text = "stack: t\nregion: us-west-2\nnetwork: {existing: {vpc_id: vpc-0123456789abcdef0, private_subnet_ids: [subnet-0123456789abcdef1, subnet-0123456789abcdef2]}}\ncluster: {existing: {name: team-cluster}}\ndatabase:\n  existing: {cluster_identifier: team-aurora, name: shop, enable_iam_auth: true}\n  users:\n    - {name: app_user, privileges: [connect, usage, select, insert]}\n    - {name: reporting, privileges: [connect, usage, select]}\n";
    let parsed = crate::spec::parse_str(std::path::Path::new("t.yaml"), text)
        .unwrap_or_else(|errors| panic!("{errors}"));
    stack.databases = parsed.databases;
    stack.databases[0].record_read(ReadDatabase {
        cluster_identifier: "team-aurora".into(),
        arn: "arn:aws:rds:us-west-2:123456789012:cluster:team-aurora".into(),
        endpoint: "team-aurora.cluster-c1.us-west-2.rds.amazonaws.com".into(),
        port: 6543,
        reader_endpoint: None,
        cluster_resource_id: "cluster-TEAMAURORA".into(),
        engine_version: "16.4".into(),
        vpc_id: "vpc-0123456789abcdef0".into(),
        master_username: "teamadmin".into(),
        master_secret_arn: Some(
            "arn:aws:secretsmanager:us-west-2:123456789012:secret:rds!cluster-x".into(),
        ),
        iam_auth: false,
    });
    stack
}

/// `examples/many-databases.yaml` as discovery would leave it: the team's network, EKS cluster
/// (with its OIDC provider and agent) and Aurora cluster `shop-aurora` (resource id
/// `cluster-SHOPAURORA`) read; the `orders` cluster is the stack's to create.
#[cfg(test)]
pub(crate) fn many_databases() -> Stack {
    use crate::spec::model::{ReadCluster, ReadDatabase, ReadNetwork, ReadSubnet};
    let mut stack = crate::spec::parse_str(
        std::path::Path::new("many-databases.yaml"),
        include_str!("../../examples/many-databases.yaml"),
    )
    .unwrap_or_else(|errors| panic!("{errors}"));
    let subnet = |id: &str, zone: &str, cidr: &str| ReadSubnet {
        id: id.into(),
        availability_zone: zone.into(),
        cidr: cidr.parse().unwrap(),
    };
    stack.network.record_read(ReadNetwork {
        vpc_id: "vpc-0123456789abcdef0".into(),
        cidr: "10.9.0.0/16".parse().unwrap(),
        private: vec![
            subnet("subnet-0123456789abcdef1", "us-west-2a", "10.9.0.0/24"),
            subnet("subnet-0123456789abcdef2", "us-west-2b", "10.9.1.0/24"),
        ],
        public: Vec::new(),
    });
    stack.cluster.record_read(ReadCluster {
        name: "platform-prod".into(),
        arn: "arn:aws:eks:us-west-2:123456789012:cluster/platform-prod".into(),
        endpoint: "https://PROD.gr7.us-west-2.eks.amazonaws.com".into(),
        oidc_issuer: "https://oidc.eks.us-west-2.amazonaws.com/id/PROD".into(),
        vpc_id: "vpc-0123456789abcdef0".into(),
        version: "1.31".into(),
        oidc_provider_arn: Some(
            "arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-west-2.amazonaws.com/id/PROD"
                .into(),
        ),
        pod_identity_agent: true,
    });
    stack
        .database_mut("shop")
        .expect("the example has a shop database")
        .record_read(ReadDatabase {
            cluster_identifier: "shop-aurora".into(),
            arn: "arn:aws:rds:us-west-2:123456789012:cluster:shop-aurora".into(),
            endpoint: "shop-aurora.cluster-c1.us-west-2.rds.amazonaws.com".into(),
            port: 5432,
            reader_endpoint: None,
            cluster_resource_id: "cluster-SHOPAURORA".into(),
            engine_version: "16.4".into(),
            vpc_id: "vpc-0123456789abcdef0".into(),
            master_username: "shopadmin".into(),
            master_secret_arn: Some(
                "arn:aws:secretsmanager:us-west-2:123456789012:secret:rds!cluster-s".into(),
            ),
            iam_auth: true,
        });
    stack
}

#[cfg(test)]
mod tests {
    use super::*;
    use referenced_stack;

    fn vpc(address: &str) -> Resource {
        Resource::new(address.into(), ResourceKind::Vpc)
    }

    #[test]
    fn order_respects_dependencies_and_declaration_order() {
        let graph = ResourceGraph::build(vec![
            vpc("c").after("b"),
            vpc("a"),
            vpc("b").input("x", Expr::output("a", "id")),
            vpc("d"),
        ])
        .unwrap();
        let order: Vec<&str> = graph.in_order().map(|r| r.address.as_str()).collect();
        assert_eq!(order, ["a", "b", "c", "d"]);
        assert_eq!(graph.dependencies_of("c"), ["b"]);
    }

    #[test]
    fn a_referenced_network_and_cluster_are_literals_not_resources() {
        let graph = ResourceGraph::from_stack(&referenced_stack(true, None)).unwrap();
        let kinds: Vec<ResourceKind> = graph.in_order().map(|resource| resource.kind).collect();
        for kind in [
            ResourceKind::Vpc,
            ResourceKind::Subnet,
            ResourceKind::InternetGateway,
            ResourceKind::NatGateway,
            ResourceKind::RouteTable,
            ResourceKind::EksCluster,
            ResourceKind::EksNodeGroup,
            ResourceKind::EksAccessEntry,
            // the cluster's own agent add-on is used as it is
            ResourceKind::EksAddon,
        ] {
            assert!(!kinds.contains(&kind), "{kind}");
        }
        // IAM has no OIDC provider for the issuer: the stack makes one, for that issuer.
        let oidc = graph.get(&address::oidc_provider()).unwrap();
        assert_eq!(
            oidc.inputs["url"],
            Expr::from("https://oidc.eks.us-west-2.amazonaws.com/id/TEAM")
        );
        // The Kubernetes objects name the referenced cluster; the database is in its VPC.
        // The relay is the stack's own, in a namespace of its own; the app's namespaces are
        // shared with what runs on the cluster already.
        let relay = graph
            .get(&address::relay("pwless-pod-identity", "main"))
            .unwrap();
        assert_eq!(relay.inputs["namespace"], Expr::from("pwless-pod-identity"));
        let shared = graph
            .get(&address::of(ResourceKind::KubernetesNamespace, "demo"))
            .unwrap();
        assert_eq!(shared.inputs["shared"], Expr::from(true));
        assert_eq!(shared.inputs["labels"], Expr::Value(serde_json::json!({})));
        let own = graph
            .get(&address::of(
                ResourceKind::KubernetesNamespace,
                "pwless-pod-identity",
            ))
            .unwrap();
        assert!(!own.inputs.contains_key("shared"));
        assert_eq!(
            relay.inputs["cluster_arn"],
            Expr::from("arn:aws:eks:us-west-2:123456789012:cluster/team-cluster")
        );
        let group = graph
            .get(&address::of(ResourceKind::SecurityGroup, "database"))
            .unwrap();
        assert_eq!(group.inputs["vpc_id"], Expr::from("vpc-0123456789abcdef0"));
        let policy = graph
            .get(&address::of(
                ResourceKind::KubernetesNetworkPolicy,
                "pwless-pod-identity/db-relay",
            ))
            .unwrap();
        assert_eq!(policy.inputs["egress_cidr"], Expr::from("10.9.0.0/16"));

        // A cluster without an agent gets the stack's; an OIDC provider that is the team's
        // is trusted as it is.
        let team_provider =
            "arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-west-2.amazonaws.com/id/TEAM";
        let graph =
            ResourceGraph::from_stack(&referenced_stack(false, Some(team_provider))).unwrap();
        assert!(graph.get(&address::pod_identity_agent()).is_some());
        assert!(graph.get(&address::oidc_provider()).is_none());
        let role = graph
            .get(&address::access_role(
                "reports",
                "reporter",
                crate::spec::model::Identity::Irsa,
            ))
            .unwrap();
        let Expr::Map(trust) = &role.inputs["web_identity"] else {
            panic!("{:?}", role.inputs["web_identity"]);
        };
        assert_eq!(trust["provider_arn"], Expr::from(team_provider));
    }

    #[test]
    fn a_referenced_aurora_cluster_adds_its_users_only_and_its_values_are_literals() {
        let stack = referenced_everything();
        let graph = ResourceGraph::from_stack(&stack).unwrap();
        let kinds: Vec<ResourceKind> = graph.in_order().map(|resource| resource.kind).collect();
        for kind in [
            ResourceKind::RdsCluster,
            ResourceKind::RdsClusterInstance,
            ResourceKind::DbSubnetGroup,
            ResourceKind::SecurityGroup,
            ResourceKind::SecurityGroupRule,
        ] {
            assert!(!kinds.contains(&kind), "{kind}");
        }
        // Every value of the cluster is the one read: nothing waits on a cluster of the stack's.
        for resource in graph.in_order() {
            for input in resource.inputs.values() {
                assert!(
                    input
                        .references()
                        .iter()
                        .all(|reference| reference.address != address::rds_cluster("main")),
                    "{}",
                    resource.address
                );
            }
        }
        let role = graph
            .get(&address::db_user_role("main", "app_user"))
            .unwrap();
        assert_eq!(
            role.inputs["cluster_resource_id"],
            Expr::from("cluster-TEAMAURORA")
        );
        let Expr::Map(connection) = &role.inputs["connection"] else {
            panic!("{:?}", role.inputs["connection"]);
        };
        assert_eq!(
            connection["endpoint"],
            Expr::from("team-aurora.cluster-c1.us-west-2.rds.amazonaws.com")
        );
        assert_eq!(connection["port"], Expr::from(6543u32));
        assert_eq!(connection["database"], Expr::from("shop"));
        assert_eq!(connection["master_username"], Expr::from("teamadmin"));
        // The users are reached through the stack's relay, which waits for no instance, once
        // the cluster's IAM authentication is on (the stack may turn it on; never off).
        let mut after = graph.dependencies_of(&address::db_user_role("main", "app_user"));
        after.sort();
        assert_eq!(
            after,
            [
                address::rds_iam_auth("main"),
                address::relay("pwless-pod-identity", "main")
            ]
        );
        let iam_auth = graph.get(&address::rds_iam_auth("main")).unwrap();
        assert_eq!(
            iam_auth.inputs["cluster_identifier"],
            Expr::from("team-aurora")
        );
        assert_eq!(iam_auth.inputs["shared"], Expr::from(true));
        let relay = graph
            .get(&address::relay("pwless-pod-identity", "main"))
            .unwrap();
        assert_eq!(relay.inputs["port"], Expr::from(6543u32));
        let policy = graph
            .get(&address::of(
                ResourceKind::KubernetesNetworkPolicy,
                "pwless-pod-identity/db-relay",
            ))
            .unwrap();
        assert_eq!(policy.inputs["egress_port"], Expr::from(6543u32));
        let grant = graph
            .get(&address::db_user_grant("main", "reporting"))
            .unwrap();
        assert_eq!(grant.inputs["database"], Expr::from("shop"));
        // Each dbuser ARN names the referenced cluster's resource id.
        let connect = graph
            .get(&address::access_policy(
                "reports",
                "reporter",
                crate::spec::model::Identity::Irsa,
            ))
            .unwrap();
        let Expr::List(grants) = &connect.inputs["rds_db_connect"] else {
            panic!("{:?}", connect.inputs["rds_db_connect"]);
        };
        let [Expr::Map(statement)] = grants.as_slice() else {
            panic!("{grants:?}");
        };
        assert_eq!(
            statement["cluster_resource_id"],
            Expr::from("cluster-TEAMAURORA")
        );
    }

    #[test]
    fn each_database_gets_its_own_cluster_users_and_relay_and_a_service_account_one_role_for_all() {
        let stack = many_databases();
        let graph = ResourceGraph::from_stack(&stack).unwrap();
        let addresses: BTreeSet<&str> = graph
            .in_order()
            .map(|resource| resource.address.as_str())
            .collect();
        // The created database's cluster, named `<stack>-<database>`; nothing of the referenced
        // one, and no `main` anything.
        let orders = graph.get(&address::rds_cluster("orders")).unwrap();
        assert_eq!(
            orders.inputs["cluster_identifier"],
            Expr::from("shop-platform-orders")
        );
        assert_eq!(orders.inputs["database_name"], Expr::from("orders"));
        for created in [
            address::rds_instance("orders", 0),
            address::of(ResourceKind::SecurityGroup, "database_orders"),
            address::of(ResourceKind::DbSubnetGroup, "orders"),
        ] {
            assert!(addresses.contains(created.as_str()), "no {created}");
        }
        assert!(
            addresses
                .iter()
                .all(|address| !address.ends_with(".main") && !address.contains(".main[")),
            "{addresses:?}"
        );
        assert!(graph.get(&address::rds_cluster("shop")).is_none());
        // `reporting` is a user of each database, apart: two roles, each in its own cluster.
        let shop_reporting = graph
            .get(&address::db_user_role("shop", "reporting"))
            .unwrap();
        let orders_reporting = graph
            .get(&address::db_user_role("orders", "reporting"))
            .unwrap();
        assert_eq!(
            shop_reporting.inputs["cluster_resource_id"],
            Expr::from("cluster-SHOPAURORA")
        );
        assert_eq!(
            orders_reporting.inputs["cluster_resource_id"],
            Expr::output(&address::rds_cluster("orders"), "cluster_resource_id")
        );
        let Expr::Map(connection) = &orders_reporting.inputs["connection"] else {
            panic!("{:?}", orders_reporting.inputs["connection"]);
        };
        assert_eq!(connection["db"], Expr::from("orders"));
        assert_eq!(connection["database"], Expr::from("orders"));
        // Each database has its relay, reaching its own endpoint; each user waits for its own.
        let namespace = crate::relay::namespace(&stack);
        let shop_relay = graph.get(&address::relay(&namespace, "shop")).unwrap();
        let orders_relay = graph.get(&address::relay(&namespace, "orders")).unwrap();
        assert_eq!(
            shop_relay.inputs["endpoint"],
            Expr::from("shop-aurora.cluster-c1.us-west-2.rds.amazonaws.com")
        );
        assert_eq!(
            orders_relay.inputs["endpoint"],
            Expr::output(&address::rds_cluster("orders"), "endpoint")
        );
        assert_eq!(orders_relay.inputs["name"], Expr::from("db-relay-orders"));
        assert!(
            graph
                .dependencies_of(&address::db_user_role("orders", "reporting"))
                .contains(&address::relay(&namespace, "orders").as_str())
        );
        assert!(
            !graph
                .dependencies_of(&address::db_user_role("shop", "reporting"))
                .contains(&address::relay(&namespace, "orders").as_str())
        );
        // One role per service account: the reports service's may connect as `reporting` in
        // each cluster, one grant each, and as nothing else.
        let reports = graph
            .get(&address::access_policy(
                "analytics",
                "reports",
                crate::spec::model::Identity::Irsa,
            ))
            .unwrap();
        let Expr::List(grants) = &reports.inputs["rds_db_connect"] else {
            panic!("{:?}", reports.inputs["rds_db_connect"]);
        };
        let grant = |index: usize, field: &str| match &grants[index] {
            Expr::Map(grant) => grant[field].clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(grants.len(), 2);
        assert_eq!(grant(0, "db_user"), Expr::from("reporting"));
        assert_eq!(
            grant(0, "cluster_resource_id"),
            Expr::from("cluster-SHOPAURORA")
        );
        assert_eq!(grant(1, "db_user"), Expr::from("reporting"));
        assert_eq!(
            grant(1, "cluster_resource_id"),
            Expr::output(&address::rds_cluster("orders"), "cluster_resource_id")
        );
        let storefront = graph
            .get(&address::access_policy(
                "storefront",
                "web",
                crate::spec::model::Identity::Irsa,
            ))
            .unwrap();
        let Expr::List(grants) = &storefront.inputs["rds_db_connect"] else {
            panic!("{:?}", storefront.inputs["rds_db_connect"]);
        };
        assert_eq!(grants.len(), 1);
        let roles = graph
            .in_order()
            .filter(|resource| resource.kind == ResourceKind::IamRole)
            .count();
        let accounts = graph
            .in_order()
            .filter(|resource| resource.kind == ResourceKind::KubernetesServiceAccount)
            .count();
        assert_eq!((roles, accounts), (3, 3));
    }

    #[test]
    fn cycles_are_named() {
        let error = ResourceGraph::build(vec![
            vpc("a").after("c"),
            vpc("b").after("a"),
            vpc("c").after("b"),
            vpc("d"),
        ])
        .unwrap_err();
        let GraphError::Cycle(cycle) = error else {
            panic!("{error:?}")
        };
        assert_eq!(cycle.len(), 4);
        assert_eq!(cycle.first(), cycle.last());
        for address in ["a", "b", "c"] {
            assert!(cycle.iter().any(|node| node == address), "{cycle:?}");
        }
    }

    #[test]
    fn unknown_references_are_errors() {
        let error = ResourceGraph::build(vec![vpc("a").input("x", Expr::output("nope", "id"))])
            .unwrap_err();
        assert!(matches!(error, GraphError::UnknownDependency { .. }));
        let error = ResourceGraph::build(vec![
            vpc("a"),
            vpc("b").input("x", Expr::output("a", "endpoint")),
        ])
        .unwrap_err();
        assert!(matches!(error, GraphError::UnknownOutput { .. }));
        let error = ResourceGraph::build(vec![vpc("a"), vpc("a")]).unwrap_err();
        assert_eq!(error, GraphError::DuplicateAddress("a".into()));
    }
}
