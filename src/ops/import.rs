//! `pwless import ADDRESS ID`: brings a resource that exists into the state under an address of
//! the stack, as Terraform's `import` does: the resource is read by its id through its provider
//! (nothing is changed), and what was read is recorded. The next plan then shows what apply
//! would change to make it match the stack, like any drift; from then on pwless manages it,
//! and destroy deletes it (with consent for what holds data).
//!
//! Refused, changing nothing: an address the stack does not have, one the state records
//! already, an id recorded at another address, a kind pwless cannot import (what lives
//! inside another resource: rules, associations, policies, grants, Kubernetes objects; and
//! what names a resource the stack makes, or whose outputs cannot be read back), an id of
//! another kind (`subnet-…` for a VPC), a name other than the one the stack gives the
//! resource (the next plan would replace it), a resource that does not exist, one another
//! pwless stack's tags (a database user: its comment) claim, one whose outputs the stack's
//! other resources take cannot be read, and a state with pending operations (a plan settles
//! them first).

use std::collections::BTreeMap;

use serde_json::Value;

use super::UserError;
use crate::graph::{ResourceGraph, ResourceKind};
use crate::plan::Observed;
use crate::provider::{Applied, Provider as _};
use crate::state::{ResourceState, State};

/// How a kind's import id identifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IdIs {
    /// The cloud's id, which starts with `prefix` (an EC2 id, an ARN); `what` names the kind.
    Id {
        prefix: &'static str,
        what: &'static str,
    },
    /// The resource's unique name, the input `input` (also its recorded id).
    Name {
        input: &'static str,
        what: &'static str,
    },
}

/// What a kind's import id is; `None` for a kind that cannot be imported.
fn id_of(kind: ResourceKind) -> Option<IdIs> {
    use ResourceKind::*;
    let id = |prefix, what| Some(IdIs::Id { prefix, what });
    let name = |input, what| Some(IdIs::Name { input, what });
    match kind {
        Vpc => id("vpc-", "a VPC"),
        Subnet => id("subnet-", "a subnet"),
        InternetGateway => id("igw-", "an internet gateway"),
        RouteTable => id("rtb-", "a route table"),
        SecurityGroup => id("sg-", "a security group"),
        OidcProvider => id("arn:", "an IAM OIDC provider (its ARN)"),
        IamRole => name("name", "an IAM role"),
        EksCluster => name("name", "an EKS cluster"),
        RdsCluster => name("cluster_identifier", "an Aurora cluster"),
        PostgresRole => name("name", "a database user"),
        // Not yet: a NAT gateway names an Elastic IP of the stack's (its replacement would
        // follow), and a DB subnet group's and an instance's reads give back no outputs.
        _ => None,
    }
}

/// EC2 id prefixes and what they name, to say what a misplaced id is
/// (<https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/resource-ids.html>).
const EC2_PREFIXES: &[(&str, &str)] = &[
    ("vpc-", "a VPC"),
    ("subnet-", "a subnet"),
    ("igw-", "an internet gateway"),
    ("rtb-", "a route table"),
    ("sg-", "a security group"),
    ("nat-", "a NAT gateway"),
    ("eipalloc-", "an Elastic IP"),
    ("i-", "an instance"),
];

/// What `import` recorded.
#[derive(Debug, Clone)]
pub struct Imported {
    pub address: String,
    pub id: String,
}

/// The resource at `address` of `graph`, its inputs resolved from `state` as far as they can
/// be (an input naming an output the state lacks is left out), with `id` set as its kind's
/// import id: what its provider reads it by. Errors: the address is not the stack's, or is
/// recorded already, the id is recorded at another address, its kind cannot be imported, the
/// id is of another kind, or names another resource than the stack's.
pub fn prepare(
    graph: &ResourceGraph,
    state: &State,
    address: &str,
    id: &str,
) -> Result<ResourceState, UserError> {
    let Some(resource) = graph.get(address) else {
        let addresses: Vec<&str> = graph
            .in_order()
            .map(|resource| resource.address.as_str())
            .collect();
        let hint = match crate::spec::diagnostic::did_you_mean(address, addresses.iter().copied()) {
            Some(near) => format!("did you mean `{near}`? (`pwless graph` lists them all)"),
            None => "`pwless graph` lists the stack's addresses".to_string(),
        };
        return Err(UserError(format!(
            "the stack has no resource `{address}`: {hint}; add it to the stack first"
        )));
    };
    if state.resource(address).is_some() {
        return Err(UserError(format!(
            "the state records `{address}` already: pwless manages it (`pwless state pull` shows it)"
        )));
    }
    if let Some(other) = state
        .resources
        .iter()
        .find(|recorded| recorded.kind == resource.kind && recorded.id.as_deref() == Some(id))
    {
        return Err(UserError(format!(
            "`{id}` is recorded already, as `{}`: one resource under two addresses would be changed and deleted twice",
            other.address
        )));
    }
    if !state.pending_operations.is_empty() {
        return Err(UserError(
            "the state has pending operations from an interrupted run: run `pwless plan` (it settles them), then import".into(),
        ));
    }
    let kind = resource.kind;
    let Some(how) = id_of(kind) else {
        return Err(UserError(format!(
            "{kind} cannot be imported: pwless makes it with the stack (what lives inside another resource, or names one the stack makes); import the VPC, subnets, route tables, security groups, IAM roles, OIDC provider, EKS cluster, Aurora cluster or database users it belongs with, and let apply make the rest"
        )));
    };
    // What the state cannot resolve yet (a reference to a resource not recorded) is left
    // out: the next plan then records it by an update, never taking it for a change that
    // replaces.
    let mut inputs = BTreeMap::new();
    for (name, expr) in &resource.inputs {
        let value = expr.resolve(&mut |reference| {
            state
                .resource(&reference.address)
                .and_then(|applied| applied.outputs.get(&reference.output))
                .cloned()
        });
        if let Some(value) = value {
            inputs.insert(name.clone(), value);
        }
    }
    let mut outputs = BTreeMap::new();
    match how {
        IdIs::Id { prefix, what } => {
            if !id.starts_with(prefix) || id.len() == prefix.len() {
                let found = EC2_PREFIXES
                    .iter()
                    .find(|(other, _)| id.starts_with(other))
                    .map_or("not".to_string(), |(_, other)| format!("{other}'s, not"));
                return Err(UserError(format!(
                    "`{id}` is {found} the id of {what}, which {address} is ({kind} ids start with `{prefix}`)"
                )));
            }
            // What the create records: an EC2 id as `id`, the provider's ARN as `arn`.
            let output = if kind == ResourceKind::OidcProvider {
                "arn"
            } else {
                "id"
            };
            outputs.insert(output.to_string(), Value::from(id));
        }
        IdIs::Name { input, what } => {
            let Some(wanted) = inputs.get(input).and_then(Value::as_str) else {
                return Err(UserError(format!(
                    "the name the stack gives {address} is not known yet: import what it names first"
                )));
            };
            if wanted != id {
                return Err(UserError(format!(
                    "the stack names {address} `{wanted}`, not `{id}`: the next plan would replace {what} of another name; import `{wanted}`, or rename what the stack names"
                )));
            }
            inputs.insert(input.to_string(), Value::from(id));
        }
    }
    Ok(ResourceState {
        address: address.to_string(),
        kind,
        id: Some(id.to_string()),
        inputs,
        outputs,
        dependencies: graph
            .dependencies_of(address)
            .into_iter()
            .map(str::to_string)
            .collect(),
    })
}

/// Reads `prepared` through its kind's provider and gives what to record: the inputs and
/// outputs read. Errors: the resource does not exist; another pwless stack's tags (or, for a
/// database user, its comment) claim it; an output the stack's other resources take was not
/// read back; the provider's own error, with its code.
pub async fn read(
    providers: &crate::provider::Providers,
    stack: &str,
    prepared: &ResourceState,
) -> anyhow::Result<(BTreeMap<String, Value>, Applied)> {
    let id = prepared.id.clone().unwrap_or_default();
    let kind = prepared.kind;
    let observed = providers.read(prepared).await.map_err(|error| {
        let hint = if kind == ResourceKind::PostgresRole {
            " (pwless reaches a database user through its cluster as apply made it: apply the stack first)"
        } else {
            ""
        };
        UserError(format!(
            "cannot read {kind} `{id}`: {}{hint}",
            crate::errors::chain(&error)
        ))
    })?;
    let Observed::Present { inputs, outputs } = observed else {
        return Err(UserError(format!(
            "there is no {kind} `{id}` to import (in the stack's region and account)"
        ))
        .into());
    };
    let owner = match (kind, &providers.postgres) {
        (ResourceKind::PostgresRole, Some(postgres)) => postgres
            .role_stack(&prepared.inputs, &id)
            .await
            .map_err(|error| UserError(format!("cannot read {kind} `{id}`: {}", error.message)))?,
        _ => inputs
            .get("tags")
            .and_then(|tags| tags.get("pwless:stack"))
            .and_then(Value::as_str)
            .map(str::to_string),
    };
    if let Some(owner) = owner.filter(|owner| owner != stack) {
        return Err(UserError(format!(
            "{kind} `{id}` is marked as stack {owner}'s (pwless:stack): two stacks would manage it; import it there, or remove it from that stack first"
        ))
        .into());
    }
    let mut recorded_outputs = prepared.outputs.clone();
    recorded_outputs.extend(outputs);
    if let Some(missing) = kind
        .outputs()
        .iter()
        .find(|output| recorded_outputs.get(**output).is_none_or(Value::is_null))
    {
        return Err(UserError(format!(
            "{kind} `{id}` was read, but not its `{missing}`, which the stack's other resources take: it cannot be imported"
        ))
        .into());
    }
    Ok((
        inputs,
        Applied {
            id: Some(id),
            outputs: recorded_outputs,
        },
    ))
}

/// Imports `id` as `address` of `stack` (whose references were read): takes the state's lock,
/// checks ([`prepare`]), reads the resource ([`read`]), records it, lets go of the lock.
/// Changes nothing in the cloud. Errors: those of [`prepare`] and [`read`], and a state that
/// cannot be locked, read or written.
pub async fn import(
    stack: &crate::spec::Stack,
    graph: &ResourceGraph,
    location: &crate::state::Location,
    stack_dir: &std::path::Path,
    address: &str,
    id: &str,
    events: &dyn crate::exec::Events,
) -> anyhow::Result<Imported> {
    let opened = super::run::open_state(location, &stack.name, "import", events).await?;
    super::run::with_journal(opened, async |journal, _| {
        let state = journal.snapshot().await;
        let prepared = prepare(graph, &state, address, id)?;
        let providers = crate::provider::Providers::for_stack(stack, stack_dir).await;
        super::run::check_credentials(&providers).await?;
        let (inputs, applied) = read(&providers, &stack.name, &prepared).await?;
        journal
            .recorded(
                &prepared.address,
                prepared.kind,
                inputs,
                applied,
                prepared.dependencies.clone(),
            )
            .await?;
        Ok(Imported {
            address: address.to_string(),
            id: id.to_string(),
        })
    })
    .await
}
