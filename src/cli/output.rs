//! `pwless output [NAME]`: what the applied stack offers its users, from the state.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{StackArgs, UserError};
use crate::state::State;

#[derive(Debug, clap::Args)]
pub struct OutputArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// One output; its value alone is printed (strings without quotes), for scripts.
    pub name: Option<String>,
    /// Print JSON (every output as one object, or the one value) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The outputs of a state, by name.
pub fn outputs(state: &State) -> BTreeMap<String, Value> {
    let output = |address: &str, name: &str| {
        state
            .resource(address)
            .and_then(|resource| resource.outputs.get(name))
            .cloned()
    };
    let ids = |prefix: &str| -> Value {
        Value::Array(
            state
                .resources
                .iter()
                .filter(|resource| resource.address.starts_with(prefix))
                .filter_map(|resource| resource.id.clone().map(Value::String))
                .collect(),
        )
    };
    let mut outputs = BTreeMap::new();
    let mut put = |name: &str, value: Option<Value>| {
        if let Some(value) = value.filter(|value| !value.is_null()) {
            outputs.insert(name.to_string(), value);
        }
    };
    put("vpcId", output("aws_vpc.main", "id"));
    put("publicSubnetIds", Some(ids("aws_subnet.public[")));
    put("privateSubnetIds", Some(ids("aws_subnet.private[")));
    put("clusterName", output("aws_eks_cluster.main", "name"));
    put(
        "clusterEndpoint",
        output("aws_eks_cluster.main", "endpoint"),
    );
    put(
        "clusterOidcIssuer",
        output("aws_eks_cluster.main", "oidc_issuer"),
    );
    put(
        "databaseEndpoint",
        output("aws_rds_cluster.main", "endpoint"),
    );
    put(
        "databaseReaderEndpoint",
        output("aws_rds_cluster.main", "reader_endpoint"),
    );
    put("databasePort", output("aws_rds_cluster.main", "port"));
    put(
        "databaseClusterResourceId",
        output("aws_rds_cluster.main", "cluster_resource_id"),
    );
    put(
        "databaseMasterSecretArn",
        output("aws_rds_cluster.main", "master_user_secret_arn"),
    );
    let roles: serde_json::Map<String, Value> = state
        .resources
        .iter()
        .filter_map(|resource| {
            let key = resource
                .address
                .strip_prefix("aws_iam_role.irsa[")?
                .strip_suffix(']')?;
            Some((key.to_string(), resource.outputs.get("arn")?.clone()))
        })
        .collect();
    if !roles.is_empty() {
        put("accessRoleArns", Some(json!(roles)));
    }
    // The demo app's Service listens on port 80 of its load balancer.
    let app_host = state
        .resources
        .iter()
        .filter(|resource| resource.kind == crate::graph::ResourceKind::KubernetesService)
        .find_map(|resource| resource.outputs.get("load_balancer_hostname"))
        .and_then(Value::as_str)
        .map(|host| json!(format!("http://{host}")));
    put("appUrl", app_host);
    outputs
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

pub fn run(args: OutputArgs) -> anyhow::Result<u8> {
    let stack = crate::spec::load(&args.stack.file()?)?;
    let location = args.stack.location(&stack)?;
    let Some(state) = super::engine::block_on(super::engine::read_state(&location, &stack.name))??
    else {
        return Err(UserError(format!(
            "no state in {}: apply the stack first",
            location.describe()
        ))
        .into());
    };
    let all = outputs(&state);
    let text = match &args.name {
        Some(name) => {
            let value = all.get(name).ok_or_else(|| {
                UserError(format!(
                    "no output `{name}`; the outputs are: {}",
                    all.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
            })?;
            match (value, args.json) {
                (Value::String(text), false) => format!("{text}\n"),
                (value, _) => format!("{}\n", serde_json::to_string_pretty(value)?),
            }
        }
        None if args.json => format!("{}\n", serde_json::to_string_pretty(&all)?),
        None => text(&all),
    };
    super::print(&text)?;
    Ok(super::EXIT_OK)
}
