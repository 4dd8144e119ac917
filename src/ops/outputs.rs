//! What an applied stack offers its users, read from the state: one [`StackOutputs`] for
//! `pwless output`, apply's closing summary, `token`, `connect` and `sandbox run`.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::graph::{ResourceKind, address};
use crate::spec::Stack;
use crate::spec::model::Identity;
use crate::state::State;

/// An output of the stack's EKS cluster (`name`, `arn` or `oidc_issuer`): a referenced
/// cluster's as discovery read it ([`crate::ops::discover`]), else what the state records of
/// the cluster the stack made; `None` when neither knows it.
pub fn eks_cluster_output<'a>(stack: &'a Stack, state: &'a State, output: &str) -> Option<&'a str> {
    if let Some(existing) = &stack.cluster.existing {
        let read = existing.read()?;
        return match output {
            "name" => Some(read.name.as_str()),
            "arn" => Some(read.arn.as_str()),
            "oidc_issuer" => Some(read.oidc_issuer.as_str()),
            _ => None,
        };
    }
    state
        .resource(&address::eks_cluster())
        .and_then(|cluster| cluster.outputs.get(output))
        .and_then(Value::as_str)
}

/// The outputs of a state. Serialized (camelCase) it is what `pwless output --json` prints;
/// a value not yet known (the resource not applied) is absent. The fields marked "not printed"
/// are for pwless's own commands.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StackOutputs {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vpc_id: Option<String>,
    /// Subnet ids of the public tier, in address order.
    pub public_subnet_ids: Vec<String>,
    /// Subnet ids of the private tier, in address order.
    pub private_subnet_ids: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_endpoint: Option<String>,
    /// The EKS cluster's OIDC issuer URL (`https://oidc.eks.REGION.amazonaws.com/id/…`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_oidc_issuer: Option<String>,
    /// The ARN of the IAM OIDC provider for that issuer (not printed).
    #[serde(skip)]
    pub oidc_provider_arn: Option<String>,
    /// The Aurora cluster's writer endpoint (of the `database:` shorthand's database; every
    /// database's are under `databases`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_reader_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_port: Option<u16>,
    /// The cluster resource id (`cluster-…`) that dbuser ARNs name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_cluster_resource_id: Option<String>,
    /// The Secrets Manager secret RDS manages for the master password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_master_secret_arn: Option<String>,
    /// Each database's outputs, by logical name; printed when the stack has a database other
    /// than the shorthand's (`main`, whose are the `database…` fields above too).
    #[serde(skip_serializing_if = "only_main")]
    pub databases: BTreeMap<String, DatabaseOutputs>,
    /// The role ARN (IRSA or Pod Identity) of each access entry, by
    /// `namespace/service_account`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub access_role_arns: BTreeMap<String, String>,
    /// The IRSA roles' ARNs alone, by `namespace/service_account` (not printed).
    #[serde(skip)]
    pub irsa_role_arns: BTreeMap<String, String>,
    /// The IRSA roles' names alone (not printed).
    #[serde(skip)]
    pub irsa_role_names: BTreeMap<String, String>,
    /// The database relay each database user's role was managed through (its recorded
    /// `connection.relay`: `cluster_arn`, `namespace`, `app`, `stack`), by the role's address
    /// ([`address::db_user_role`]) (not printed).
    #[serde(skip)]
    pub relays: BTreeMap<String, Value>,
    /// The demo app's address: port 80 of its Service's load balancer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_url: Option<String>,
}

/// The outputs of one database of the stack.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseOutputs {
    /// The Aurora cluster's writer endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reader_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The cluster resource id (`cluster-…`) that dbuser ARNs name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_resource_id: Option<String>,
    /// The Secrets Manager secret RDS manages for the master password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_secret_arn: Option<String>,
}

fn only_main(databases: &BTreeMap<String, DatabaseOutputs>) -> bool {
    databases
        .keys()
        .all(|key| key == crate::spec::model::MAIN_DATABASE)
}

impl StackOutputs {
    /// Reads the outputs of `state`'s resources, found by their addresses
    /// ([`crate::graph::address`]).
    pub fn from_state(state: &State) -> Self {
        let output = |address: &str, name: &str| -> Option<Value> {
            state
                .resource(address)
                .and_then(|resource| resource.outputs.get(name))
                .filter(|value| !value.is_null())
                .cloned()
        };
        let text = |address: &str, name: &str| -> Option<String> {
            output(address, name).and_then(|value| value.as_str().map(str::to_string))
        };
        let ids = |tier: &str| -> Vec<String> {
            state
                .resources
                .iter()
                .filter(|resource| {
                    address::key_of(&resource.address, ResourceKind::Subnet, tier).is_some()
                })
                .filter_map(|resource| resource.id.clone())
                .collect()
        };
        let roles = |identity: Identity, name: &str| -> BTreeMap<String, String> {
            state
                .resources
                .iter()
                .filter_map(|resource| {
                    let key =
                        address::key_of(&resource.address, ResourceKind::IamRole, identity.name())?;
                    let value = resource.outputs.get(name)?.as_str()?;
                    Some((key.to_string(), value.to_string()))
                })
                .collect()
        };
        // In a migration both roles exist: the one the service account uses now counts (its
        // IRSA annotation while it has one, else the Pod Identity role).
        let annotated = |key: &str| {
            state
                .resource(&address::of(ResourceKind::KubernetesServiceAccount, key))
                .and_then(|account| account.inputs.get("role_arn"))
                .is_some_and(Value::is_string)
        };
        let access_roles = |name: &str| {
            let mut all = roles(Identity::PodIdentity, name);
            for (key, value) in roles(Identity::Irsa, name) {
                if annotated(&key) || !all.contains_key(&key) {
                    all.insert(key, value);
                }
            }
            all
        };
        let relays = state
            .resources
            .iter()
            .filter(|resource| resource.kind == ResourceKind::PostgresRole)
            .filter_map(|resource| {
                let relay = resource.inputs.get("connection")?.get("relay")?;
                relay
                    .is_object()
                    .then(|| (resource.address.clone(), relay.clone()))
            })
            .collect();
        let eks = address::eks_cluster();
        // Every database the state holds something of: a created Aurora cluster, or users.
        let mut keys: std::collections::BTreeSet<String> = state
            .resources
            .iter()
            .filter(|resource| resource.kind == ResourceKind::RdsCluster)
            .filter_map(|resource| {
                resource
                    .address
                    .strip_prefix(ResourceKind::RdsCluster.name())?
                    .strip_prefix('.')
                    .map(str::to_string)
            })
            .collect();
        keys.extend(
            state
                .resources
                .iter()
                .filter_map(|resource| address::database_of(&resource.address))
                .map(str::to_string),
        );
        let databases = keys
            .into_iter()
            .map(|key| {
                let cluster = address::rds_cluster(&key);
                // A referenced Aurora cluster is not in the state; its users' recorded inputs
                // say where it is (the endpoint and port their connection used, the resource
                // id their dbuser ARNs name).
                let recorded_role = state.resources.iter().find(|resource| {
                    resource.kind == ResourceKind::PostgresRole
                        && address::database_of(&resource.address) == Some(key.as_str())
                });
                let role_input = |path: &[&str]| -> Option<Value> {
                    let mut value = recorded_role?.inputs.get(path[0])?;
                    for step in &path[1..] {
                        value = value.get(step)?;
                    }
                    (!value.is_null()).then(|| value.clone())
                };
                let role_text = |path: &[&str]| {
                    role_input(path).and_then(|value| value.as_str().map(str::to_string))
                };
                let outputs = DatabaseOutputs {
                    endpoint: text(&cluster, "endpoint")
                        .or_else(|| role_text(&["connection", "endpoint"])),
                    reader_endpoint: text(&cluster, "reader_endpoint"),
                    port: output(&cluster, "port")
                        .or_else(|| role_input(&["connection", "port"]))
                        .and_then(|port| port.as_u64())
                        .and_then(|port| u16::try_from(port).ok()),
                    cluster_resource_id: text(&cluster, "cluster_resource_id")
                        .or_else(|| role_text(&["cluster_resource_id"])),
                    master_secret_arn: text(&cluster, "master_user_secret_arn")
                        .or_else(|| role_text(&["connection", "master_secret_arn"])),
                };
                (key, outputs)
            })
            .collect();
        StackOutputs {
            vpc_id: text(&address::vpc(), "id"),
            public_subnet_ids: ids("public"),
            private_subnet_ids: ids("private"),
            cluster_name: text(&eks, "name"),
            cluster_endpoint: text(&eks, "endpoint"),
            cluster_oidc_issuer: text(&eks, "oidc_issuer"),
            oidc_provider_arn: text(&address::oidc_provider(), "arn"),
            databases,
            access_role_arns: access_roles("arn"),
            irsa_role_arns: roles(Identity::Irsa, "arn"),
            irsa_role_names: roles(Identity::Irsa, "name"),
            relays,
            app_url: state
                .resources
                .iter()
                .filter(|resource| resource.kind == ResourceKind::KubernetesService)
                .find_map(|resource| resource.outputs.get("load_balancer_hostname"))
                .and_then(Value::as_str)
                .map(|host| format!("http://{host}")),
            ..StackOutputs::default()
        }
        .with_main_database()
    }

    /// The top-level `database…` fields from `databases`' shorthand entry.
    fn with_main_database(mut self) -> Self {
        let main = self
            .databases
            .get(crate::spec::model::MAIN_DATABASE)
            .cloned()
            .unwrap_or_default();
        self.database_endpoint = main.endpoint;
        self.database_reader_endpoint = main.reader_endpoint;
        self.database_port = main.port;
        self.database_cluster_resource_id = main.cluster_resource_id;
        self.database_master_secret_arn = main.master_secret_arn;
        self
    }

    /// The printed outputs by name, as `pwless output --json` prints them.
    pub fn to_map(&self) -> BTreeMap<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map.into_iter().collect(),
            // Plain strings, numbers and maps always serialize to an object.
            _ => BTreeMap::new(),
        }
    }

    /// The writer endpoint and port of the database of logical name `key`, when known.
    pub fn database(&self, key: &str) -> Option<(&str, u16)> {
        let database = self.databases.get(key)?;
        Some((database.endpoint.as_deref()?, database.port.unwrap_or(5432)))
    }

    /// [`StackOutputs::database`] of `database`, or why none is known, in words that name
    /// what is missing: the created cluster's address, or the referenced cluster's identifier.
    pub fn database_of(
        &self,
        database: &crate::spec::model::Database,
    ) -> Result<(&str, u16), String> {
        self.database(&database.key)
            .ok_or_else(|| match &database.existing {
                Some(existing) => format!(
                    "no endpoint of Aurora cluster `{}` is known (it was not read, and the state records no database user): apply the stack first",
                    existing.cluster_identifier.id
                ),
                None => format!(
                    "the state has no database endpoint ({}): apply the stack first",
                    address::rds_cluster(&database.key)
                ),
            })
    }

    /// The IRSA identity of `namespace/service_account` (what `pwless sandbox run --as` acts
    /// as); errors name the output the state lacks (the stack not applied yet).
    pub fn irsa_identity(
        &self,
        namespace: &str,
        service_account: &str,
    ) -> Result<pwless_sandbox::Identity, super::UserError> {
        let key = format!("{namespace}/{service_account}");
        let missing = |what: &str| {
            super::UserError(format!("the state has no {what}: apply the stack first"))
        };
        let role = |roles: &BTreeMap<String, String>| {
            roles.get(&key).cloned().ok_or_else(|| {
                missing(&format!(
                    "IRSA role for {key} ({})",
                    address::irsa_role(namespace, service_account)
                ))
            })
        };
        Ok(pwless_sandbox::Identity {
            subject: format!("system:serviceaccount:{namespace}:{service_account}"),
            audience: crate::partition::IRSA_AUDIENCE.to_string(),
            role_arn: role(&self.irsa_role_arns)?,
            role_name: role(&self.irsa_role_names)?,
            issuer: self
                .cluster_oidc_issuer
                .clone()
                .ok_or_else(|| missing("OIDC issuer of the EKS cluster"))?,
            oidc_provider_arn: self
                .oidc_provider_arn
                .clone()
                .ok_or_else(|| missing("IAM OIDC provider"))?,
        })
    }

    /// These outputs with the values of what `stack` references and discovery read
    /// (`network.existing`, `cluster.existing`, `database.existing`), which the state does not
    /// hold: the VPC and subnet ids, the cluster's name, endpoint and issuer, the OIDC provider
    /// IRSA roles trust when it is not the stack's, and the Aurora cluster's endpoints, port,
    /// resource id and master secret.
    pub fn with_references(mut self, stack: &Stack) -> Self {
        if let Some(read) = stack.network.read() {
            self.vpc_id = Some(read.vpc_id.clone());
            self.private_subnet_ids = read
                .private
                .iter()
                .map(|subnet| subnet.id.clone())
                .collect();
            self.public_subnet_ids = read.public.iter().map(|subnet| subnet.id.clone()).collect();
        }
        if let Some(read) = stack.cluster.read() {
            self.cluster_name = Some(read.name.clone());
            self.cluster_endpoint = Some(read.endpoint.clone());
            self.cluster_oidc_issuer = Some(read.oidc_issuer.clone());
            if let Some(arn) = &read.oidc_provider_arn {
                self.oidc_provider_arn = Some(arn.clone());
            }
        }
        for database in &stack.databases {
            if let Some(read) = database.read() {
                self.databases.insert(
                    database.key.clone(),
                    DatabaseOutputs {
                        endpoint: Some(read.endpoint.clone()),
                        reader_endpoint: read.reader_endpoint.clone(),
                        port: Some(read.port),
                        cluster_resource_id: Some(read.cluster_resource_id.clone()),
                        master_secret_arn: read.master_secret_arn.clone(),
                    },
                );
            }
        }
        self.with_main_database()
    }

    /// The EKS Pod Identity view of `namespace/service_account` (what `pwless sandbox run
    /// --as` acts as for a `pod_identity` entry): the cluster and its token issuer; errors
    /// name the output the state lacks.
    pub fn pod_identity(
        &self,
        namespace: &str,
        service_account: &str,
    ) -> Result<pwless_sandbox::pod_identity::PodIdentity, super::UserError> {
        let missing = |what: &str| {
            super::UserError(format!(
                "the state has no {what} ({}): apply the stack first",
                address::eks_cluster()
            ))
        };
        Ok(pwless_sandbox::pod_identity::PodIdentity {
            cluster_name: self
                .cluster_name
                .clone()
                .ok_or_else(|| missing("EKS cluster name"))?,
            issuer: self
                .cluster_oidc_issuer
                .clone()
                .ok_or_else(|| missing("OIDC issuer of the EKS cluster"))?,
            namespace: namespace.to_string(),
            service_account: service_account.to_string(),
        })
    }
}

/// The outputs as `name = value` lines (values as JSON), names aligned: what `pwless output`
/// prints and what apply prints at its end.
pub fn text(outputs: &BTreeMap<String, Value>) -> String {
    let width = outputs.keys().map(String::len).max().unwrap_or(0);
    outputs
        .iter()
        .map(|(name, value)| {
            format!(
                "{name:<width$} = {}\n",
                serde_json::to_string(value).unwrap_or_default()
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ResourceState;
    use serde_json::json;

    fn resource(address: &str, kind: ResourceKind, outputs: Value) -> ResourceState {
        ResourceState {
            address: address.to_string(),
            kind,
            id: None,
            inputs: BTreeMap::new(),
            outputs: serde_json::from_value(outputs).unwrap(),
            dependencies: Vec::new(),
        }
    }

    #[test]
    fn outputs_are_read_by_address_and_printed_in_camel_case_without_unknown_values() {
        let mut state = State::new("demo");
        state.resources = vec![
            resource(
                &address::rds_cluster("main"),
                ResourceKind::RdsCluster,
                json!({"endpoint": "db.cluster-x.us-west-2.rds.amazonaws.com", "port": 5432, "cluster_resource_id": "cluster-ABC"}),
            ),
            resource(
                &address::irsa_role("team", "api"),
                ResourceKind::IamRole,
                json!({"arn": "arn:aws:iam::123456789012:role/r", "name": "r"}),
            ),
        ];
        // A state keeps its resources sorted by address.
        state.resources.sort_by(|a, b| a.address.cmp(&b.address));
        let outputs = StackOutputs::from_state(&state);
        assert_eq!(
            outputs.database("main"),
            Some(("db.cluster-x.us-west-2.rds.amazonaws.com", 5432))
        );
        assert_eq!(outputs.irsa_role_names["team/api"], "r");
        assert_eq!(
            Value::Object(outputs.to_map().into_iter().collect()),
            json!({
                "publicSubnetIds": [],
                "privateSubnetIds": [],
                "databaseEndpoint": "db.cluster-x.us-west-2.rds.amazonaws.com",
                "databasePort": 5432,
                "databaseClusterResourceId": "cluster-ABC",
                "accessRoleArns": {"team/api": "arn:aws:iam::123456789012:role/r"},
            })
        );
    }
}
