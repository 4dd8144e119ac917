//! `pwless output [NAME]`: what the applied stack offers its users, from the state.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{StackArgs, UserError};
use crate::graph::{ResourceKind, address};
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
    let ids = |tier: &str| -> Value {
        Value::Array(
            state
                .resources
                .iter()
                .filter(|resource| {
                    address::key_of(&resource.address, ResourceKind::Subnet, tier).is_some()
                })
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
    put("vpcId", output(&address::vpc(), "id"));
    put("publicSubnetIds", Some(ids("public")));
    put("privateSubnetIds", Some(ids("private")));
    put("clusterName", output(&address::eks_cluster(), "name"));
    put(
        "clusterEndpoint",
        output(&address::eks_cluster(), "endpoint"),
    );
    put(
        "clusterOidcIssuer",
        output(&address::eks_cluster(), "oidc_issuer"),
    );
    put(
        "databaseEndpoint",
        output(&address::rds_cluster(), "endpoint"),
    );
    put(
        "databaseReaderEndpoint",
        output(&address::rds_cluster(), "reader_endpoint"),
    );
    put("databasePort", output(&address::rds_cluster(), "port"));
    put(
        "databaseClusterResourceId",
        output(&address::rds_cluster(), "cluster_resource_id"),
    );
    put(
        "databaseMasterSecretArn",
        output(&address::rds_cluster(), "master_user_secret_arn"),
    );
    let roles: serde_json::Map<String, Value> = state
        .resources
        .iter()
        .filter_map(|resource| {
            let key = address::key_of(&resource.address, ResourceKind::IamRole, "irsa")?;
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
        .filter(|resource| resource.kind == ResourceKind::KubernetesService)
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
