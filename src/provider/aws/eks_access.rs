//! EKS access entries: who may use the cluster's Kubernetes API. The cluster is made with
//! access-entry authentication and without the implicit admin of its creator, so every admin
//! is a resource in the stack (`cluster.admins`), reviewable in the plan: an entry for the IAM
//! principal plus one access policy (cluster-admin, cluster-wide) associated with it.
//!
//! An entry is found by (cluster, principal), so an interrupted create is adopted, not made
//! twice. Deleting the entry removes its policy associations with it.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_eks::types::{AccessScope, AccessScopeType};
use serde_json::{Value, json};

use super::{AwsProvider, RETRY_LIMIT, found, missing_field, sdk_error};
use crate::graph::ResourceKind;
use crate::plan::Observed;
use crate::provider::wait;
use crate::provider::{Applied, Inputs, ProviderError, input_str, input_tags, overlay, tags_value};
use crate::state::ResourceState;

fn key(inputs: &Inputs) -> Result<(&str, &str), ProviderError> {
    Ok((
        input_str(inputs, "cluster_name")?,
        input_str(inputs, "principal_arn")?,
    ))
}

fn applied(entry: &aws_sdk_eks::types::AccessEntry) -> Result<Applied, ProviderError> {
    let arn = entry
        .access_entry_arn()
        .ok_or_else(|| missing_field("the access entry ARN"))?;
    Ok(Applied {
        id: entry.principal_arn().map(str::to_string),
        outputs: BTreeMap::from([("arn".to_string(), json!(arn))]),
    })
}

async fn associate(aws: &AwsProvider, inputs: &Inputs) -> Result<(), ProviderError> {
    let (cluster, principal) = key(inputs)?;
    let call = aws
        .eks
        .associate_access_policy()
        .cluster_name(cluster)
        .principal_arn(principal)
        .policy_arn(input_str(inputs, "policy_arn")?)
        .access_scope(
            AccessScope::builder()
                .r#type(AccessScopeType::Cluster)
                .build(),
        );
    wait::retrying(RETRY_LIMIT, || async {
        call.clone()
            .send()
            .await
            .map(drop)
            .map_err(sdk_error("associate the access policy"))
    })
    .await
}

/// The policies associated with the entry of (cluster, principal).
async fn associated(
    aws: &AwsProvider,
    cluster: &str,
    principal: &str,
) -> Result<Vec<aws_sdk_eks::types::AssociatedAccessPolicy>, ProviderError> {
    Ok(aws
        .eks
        .list_associated_access_policies()
        .cluster_name(cluster)
        .principal_arn(principal)
        .send()
        .await
        .map_err(sdk_error("list the access policies"))?
        .associated_access_policies()
        .to_vec())
}

/// Takes away every policy associated with the entry other than the declared one
/// (DisassociateAccessPolicy): an access entry grants exactly what the stack says.
async fn disassociate_others(aws: &AwsProvider, inputs: &Inputs) -> Result<(), ProviderError> {
    let (cluster, principal) = key(inputs)?;
    let declared = input_str(inputs, "policy_arn")?;
    for policy in &associated(aws, cluster, principal).await? {
        let Some(arn) = policy.policy_arn().filter(|arn| *arn != declared) else {
            continue;
        };
        aws.eks
            .disassociate_access_policy()
            .cluster_name(cluster)
            .principal_arn(principal)
            .policy_arn(arn)
            .send()
            .await
            .map_err(sdk_error("disassociate the access policy"))?;
    }
    Ok(())
}

/// The entry of the inputs' (cluster, principal), or `None` when there is none.
async fn describe(
    aws: &AwsProvider,
    inputs: &Inputs,
) -> Result<Option<aws_sdk_eks::types::AccessEntry>, ProviderError> {
    let (cluster, principal) = key(inputs)?;
    let out = aws
        .eks
        .describe_access_entry()
        .cluster_name(cluster)
        .principal_arn(principal)
        .send()
        .await;
    Ok(
        found(out.map_err(sdk_error("describe the access entry")))?
            .and_then(|out| out.access_entry),
    )
}

pub(super) async fn create(aws: &AwsProvider, inputs: &Inputs) -> Result<Applied, ProviderError> {
    let (cluster, principal) = key(inputs)?;
    let tags: HashMap<String, String> = input_tags(inputs).into_iter().collect();
    let call = aws
        .eks
        .create_access_entry()
        .cluster_name(cluster)
        .principal_arn(principal)
        .r#type("STANDARD")
        .set_tags(Some(tags));
    let out = wait::retrying(RETRY_LIMIT, || async {
        // A principal IAM has only just made may not be visible to EKS yet.
        call.clone().send().await.map_err(|error| {
            sdk_error("create the EKS access entry")(error).retry_on(&["InvalidParameterException"])
        })
    })
    .await?;
    let entry = out
        .access_entry()
        .ok_or_else(|| missing_field("the access entry"))?;
    let result = applied(entry)?;
    associate(aws, inputs).await?;
    Ok(result)
}

pub(super) async fn read(
    aws: &AwsProvider,
    resource: &ResourceState,
) -> Result<Observed, ProviderError> {
    let prior = &resource.inputs;
    let (cluster, principal) = key(prior)?;
    let Some(entry) = describe(aws, prior).await? else {
        return Ok(Observed::Missing);
    };
    let entry = &entry;
    let associated = associated(aws, cluster, principal).await?;
    // The declared policy counts only with cluster-wide scope, and alone: another policy
    // associated with the entry (by hand, or the one a changed `policy_arn` replaced) is
    // drift, which the update takes away.
    let declared = input_str(prior, "policy_arn")?;
    let cluster_wide = associated.iter().any(|policy| {
        policy.policy_arn() == Some(declared)
            && policy
                .access_scope()
                .and_then(|scope| scope.r#type())
                .is_some_and(|scope| *scope == AccessScopeType::Cluster)
    }) && associated
        .iter()
        .all(|policy| policy.policy_arn() == Some(declared));
    let tags: BTreeMap<String, String> = entry
        .tags()
        .map(|tags| tags.clone().into_iter().collect())
        .unwrap_or_default();
    Ok(Observed::Present {
        inputs: overlay(
            prior,
            [
                (
                    "policy_arn",
                    if cluster_wide {
                        json!(declared)
                    } else {
                        Value::Null
                    },
                ),
                ("tags", tags_value(tags)),
            ],
        ),
        outputs: applied(entry)?.outputs,
    })
}

pub(super) async fn update(
    aws: &AwsProvider,
    resource: &ResourceState,
    inputs: &Inputs,
    changed: &[String],
) -> Result<Applied, ProviderError> {
    let arn = resource
        .outputs
        .get("arn")
        .and_then(Value::as_str)
        .unwrap_or_default();
    for name in changed {
        match name.as_str() {
            "policy_arn" => {
                associate(aws, inputs).await?;
                disassociate_others(aws, inputs).await?;
            }
            "tags" => super::eks::sync_tags(aws, arn, &resource.inputs, inputs).await?,
            other => return Err(super::not_in_place(resource.kind, other)),
        }
    }
    Ok(Applied::unchanged(resource))
}

pub(super) async fn delete(
    aws: &AwsProvider,
    resource: &ResourceState,
) -> Result<(), ProviderError> {
    let (cluster, principal) = key(&resource.inputs)?;
    let deleted = aws
        .eks
        .delete_access_entry()
        .cluster_name(cluster)
        .principal_arn(principal)
        .send()
        .await;
    found(deleted.map_err(sdk_error("delete the access entry")))?;
    Ok(())
}

pub(super) async fn adopt(
    aws: &AwsProvider,
    kind: ResourceKind,
    inputs: &Inputs,
) -> Result<Option<Applied>, ProviderError> {
    debug_assert_eq!(kind, ResourceKind::EksAccessEntry);
    let Some(entry) = describe(aws, inputs).await? else {
        return Ok(None);
    };
    let entry = &entry;
    // The create may have stopped between the entry and its policy: associating is idempotent.
    let result = applied(entry)?;
    associate(aws, inputs).await?;
    Ok(Some(result))
}
