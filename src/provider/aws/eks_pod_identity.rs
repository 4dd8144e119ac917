//! EKS Pod Identity: the Pod Identity Agent add-on and one association per service account
//! that uses it (issue 19). An association ties (cluster, namespace, service account) to a role;
//! the agent on each node hands a pod of that service account the role's credentials
//! (<https://docs.aws.amazon.com/eks/latest/userguide/pod-identities.html>).
//!
//! An association is unique per (cluster, namespace, service account): EKS refuses a second
//! with ResourceInUseException, so a create whose answer was lost is adopted by listing the
//! service account's associations, when its tags say it is this stack's. The add-on is found
//! by its name on the cluster, and adopted the same way.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aws_sdk_eks::types::{Addon, AddonStatus, PodIdentityAssociation};
use serde_json::{Value, json};

use super::{AwsProvider, RETRY_LIMIT, check_owner, found, missing_field, sdk_error};
use crate::graph::ResourceKind;
use crate::plan::Observed;
use crate::provider::wait::{self, Poll};
use crate::provider::{Applied, Inputs, ProviderError, input_str, input_tags, overlay, tags_value};
use crate::state::ResourceState;

/// How long an add-on may take to become ACTIVE or to go: EKS installs it on every node.
const ADDON_WAIT: Duration = Duration::from_secs(20 * 60);

/// How long a created or changed association is given to take effect before what depends on
/// it (the service account losing its IRSA annotation, the pods rolled over) goes ahead:
/// "EKS Pod Identity associations are eventually consistent, and may take several seconds to
/// be effective after the initial API call returns successfully" (CreatePodIdentityAssociation,
/// Amazon EKS API Reference); eksctl's maintainers advise 15 seconds (eksctl#7709). The API
/// offers no way to see when it is effective.
const ASSOCIATION_SETTLE: Duration = Duration::from_secs(15);

fn tags_of(tags: Option<&HashMap<String, String>>) -> Value {
    tags_value(
        tags.map(|tags| tags.clone().into_iter().collect::<BTreeMap<_, _>>())
            .unwrap_or_default(),
    )
}

fn association_applied(association: &PodIdentityAssociation) -> Result<Applied, ProviderError> {
    let id = association
        .association_id()
        .ok_or_else(|| missing_field("the association id"))?;
    let arn = association
        .association_arn()
        .ok_or_else(|| missing_field("the association ARN"))?;
    Ok(Applied {
        id: Some(id.to_string()),
        outputs: BTreeMap::from([
            ("association_id".to_string(), json!(id)),
            ("association_arn".to_string(), json!(arn)),
        ]),
    })
}

fn addon_applied(addon: &Addon) -> Applied {
    Applied {
        id: addon.addon_name().map(str::to_string),
        outputs: BTreeMap::from([(
            "arn".to_string(),
            json!(addon.addon_arn().unwrap_or_default()),
        )]),
    }
}

pub(super) async fn create(
    aws: &AwsProvider,
    kind: ResourceKind,
    inputs: &Inputs,
) -> Result<Applied, ProviderError> {
    let cluster = input_str(inputs, "cluster_name")?;
    let tags: HashMap<String, String> = input_tags(inputs).into_iter().collect();
    // One token for every send of this create: EKS answers a repeat with the first result.
    let token = uuid::Uuid::new_v4().to_string();
    match kind {
        ResourceKind::EksPodIdentityAssociation => {
            let call = aws
                .eks
                .create_pod_identity_association()
                .cluster_name(cluster)
                .namespace(input_str(inputs, "namespace")?)
                .service_account(input_str(inputs, "service_account")?)
                .role_arn(input_str(inputs, "role_arn")?)
                .client_request_token(token)
                .set_tags(Some(tags));
            let out = wait::retrying(RETRY_LIMIT, || async {
                // A role IAM has only just made may not be visible to EKS yet.
                call.clone().send().await.map_err(|error| {
                    sdk_error("create the EKS Pod Identity association")(error)
                        .retry_on(&["InvalidParameterException"])
                })
            })
            .await?;
            let applied = association_applied(
                out.association()
                    .ok_or_else(|| missing_field("the association"))?,
            )?;
            tokio::time::sleep(ASSOCIATION_SETTLE).await;
            Ok(applied)
        }
        ResourceKind::EksAddon => {
            let name = input_str(inputs, "addon_name")?;
            aws.eks
                .create_addon()
                .cluster_name(cluster)
                .addon_name(name)
                .client_request_token(token)
                .set_tags(Some(tags))
                .send()
                .await
                .map_err(sdk_error("create the EKS add-on"))?;
            Ok(addon_applied(&wait_active(aws, cluster, name).await?))
        }
        other => Err(ProviderError::permanent(format!(
            "{other} is not an EKS Pod Identity resource"
        ))),
    }
}

async fn describe_addon(
    aws: &AwsProvider,
    cluster: &str,
    name: &str,
) -> Result<Option<Addon>, ProviderError> {
    let out = aws
        .eks
        .describe_addon()
        .cluster_name(cluster)
        .addon_name(name)
        .send()
        .await;
    Ok(found(out.map_err(sdk_error("describe the EKS add-on")))?.and_then(|out| out.addon))
}

/// Waits until the add-on is ACTIVE; CREATE_FAILED or DEGRADED ends the wait with EKS's
/// health issues (e.g. no nodes to run the agent on).
async fn wait_active(aws: &AwsProvider, cluster: &str, name: &str) -> Result<Addon, ProviderError> {
    wait::until(&format!("EKS add-on {name}"), ADDON_WAIT, || async {
        let Some(addon) = describe_addon(aws, cluster, name).await? else {
            return Ok(Poll::Pending("not listed yet".into()));
        };
        match addon.status() {
            Some(AddonStatus::Active) => Ok(Poll::Ready(addon)),
            Some(status @ (AddonStatus::CreateFailed | AddonStatus::Degraded)) => {
                let issues: Vec<String> = addon
                    .health()
                    .map(|health| {
                        health
                            .issues()
                            .iter()
                            .map(|issue| {
                                format!(
                                    "{}: {}",
                                    issue.code().map(|code| code.as_str()).unwrap_or("?"),
                                    issue.message().unwrap_or_default()
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                Err(ProviderError::permanent(format!(
                    "EKS add-on {name} is {}: {}",
                    status.as_str(),
                    if issues.is_empty() {
                        "EKS gives no health issue".to_string()
                    } else {
                        issues.join("; ")
                    }
                )))
            }
            other => Ok(Poll::Pending(
                other
                    .map_or("no status", |status| status.as_str())
                    .to_string(),
            )),
        }
    })
    .await
}

async fn describe_association(
    aws: &AwsProvider,
    cluster: &str,
    id: &str,
) -> Result<Option<PodIdentityAssociation>, ProviderError> {
    let out = aws
        .eks
        .describe_pod_identity_association()
        .cluster_name(cluster)
        .association_id(id)
        .send()
        .await;
    Ok(
        found(out.map_err(sdk_error("describe the EKS Pod Identity association")))?
            .and_then(|out| out.association),
    )
}

pub(super) async fn read(
    aws: &AwsProvider,
    resource: &ResourceState,
) -> Result<Observed, ProviderError> {
    let prior = &resource.inputs;
    let cluster = input_str(prior, "cluster_name")?;
    match resource.kind {
        ResourceKind::EksPodIdentityAssociation => {
            let id = resource
                .outputs
                .get("association_id")
                .and_then(Value::as_str)
                .ok_or_else(|| missing_field("the recorded association id"))?;
            let Some(association) = describe_association(aws, cluster, id).await? else {
                return Ok(Observed::Missing);
            };
            Ok(Observed::Present {
                inputs: overlay(
                    prior,
                    [
                        ("role_arn", json!(association.role_arn())),
                        ("namespace", json!(association.namespace())),
                        ("service_account", json!(association.service_account())),
                        ("tags", tags_of(association.tags())),
                    ],
                ),
                outputs: association_applied(&association)?.outputs,
            })
        }
        _ => {
            let name = input_str(prior, "addon_name")?;
            let Some(addon) = describe_addon(aws, cluster, name).await? else {
                return Ok(Observed::Missing);
            };
            Ok(Observed::Present {
                inputs: overlay(prior, [("tags", tags_of(addon.tags()))]),
                outputs: addon_applied(&addon).outputs,
            })
        }
    }
}

pub(super) async fn update(
    aws: &AwsProvider,
    resource: &ResourceState,
    inputs: &Inputs,
    changed: &[String],
) -> Result<Applied, ProviderError> {
    let arn_output = match resource.kind {
        ResourceKind::EksPodIdentityAssociation => "association_arn",
        _ => "arn",
    };
    let arn = || {
        resource
            .outputs
            .get(arn_output)
            .and_then(Value::as_str)
            .ok_or_else(|| {
                ProviderError::permanent(format!(
                    "the state records no {arn_output} for {}",
                    resource.address
                ))
            })
    };
    for name in changed {
        match (resource.kind, name.as_str()) {
            (ResourceKind::EksPodIdentityAssociation, "role_arn") => {
                let id = resource
                    .outputs
                    .get("association_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| missing_field("the recorded association id"))?;
                aws.eks
                    .update_pod_identity_association()
                    .cluster_name(input_str(inputs, "cluster_name")?)
                    .association_id(id)
                    .role_arn(input_str(inputs, "role_arn")?)
                    .client_request_token(uuid::Uuid::new_v4().to_string())
                    .send()
                    .await
                    .map_err(sdk_error("update the EKS Pod Identity association"))?;
                tokio::time::sleep(ASSOCIATION_SETTLE).await;
            }
            (_, "tags") => super::eks::sync_tags(aws, arn()?, &resource.inputs, inputs).await?,
            // The planner's bookkeeping (never delete what other stacks may use): nothing
            // to send.
            (ResourceKind::EksAddon, "shared") => {}
            (kind, other) => return Err(super::not_in_place(kind, other)),
        }
    }
    Ok(Applied::unchanged(resource))
}

pub(super) async fn delete(
    aws: &AwsProvider,
    resource: &ResourceState,
) -> Result<(), ProviderError> {
    let prior = &resource.inputs;
    let cluster = input_str(prior, "cluster_name")?;
    match resource.kind {
        ResourceKind::EksPodIdentityAssociation => {
            let Some(id) = resource
                .outputs
                .get("association_id")
                .and_then(Value::as_str)
            else {
                return Ok(());
            };
            let deleted = aws
                .eks
                .delete_pod_identity_association()
                .cluster_name(cluster)
                .association_id(id)
                .send()
                .await;
            found(deleted.map_err(sdk_error("delete the EKS Pod Identity association")))?;
            Ok(())
        }
        _ => {
            let name = input_str(prior, "addon_name")?;
            let deleted = aws
                .eks
                .delete_addon()
                .cluster_name(cluster)
                .addon_name(name)
                .send()
                .await;
            if found(deleted.map_err(sdk_error("delete the EKS add-on")))?.is_none() {
                return Ok(());
            }
            wait::until(&format!("EKS add-on {name} to go"), ADDON_WAIT, || async {
                Ok(match describe_addon(aws, cluster, name).await? {
                    None => Poll::Ready(()),
                    Some(addon) => Poll::Pending(
                        addon
                            .status()
                            .map_or("no status", |status| status.as_str())
                            .to_string(),
                    ),
                })
            })
            .await
        }
    }
}

/// The association of `namespace/service_account` on `cluster`, if it has one (EKS allows one):
/// ListPodIdentityAssociations, then DescribePodIdentityAssociation for its role and tags.
pub(crate) async fn association_of(
    aws: &AwsProvider,
    cluster: &str,
    namespace: &str,
    service_account: &str,
) -> Result<Option<PodIdentityAssociation>, ProviderError> {
    let listed = aws
        .eks
        .list_pod_identity_associations()
        .cluster_name(cluster)
        .namespace(namespace)
        .service_account(service_account)
        .send()
        .await
        .map_err(sdk_error("list the EKS Pod Identity associations"))?;
    match listed
        .associations()
        .iter()
        .find_map(|summary| summary.association_id())
    {
        Some(id) => describe_association(aws, cluster, id).await,
        None => Ok(None),
    }
}

/// The association or add-on an interrupted create made, when its tags say it is this stack's
/// (else `ErrorKind::Taken`, from [`check_owner`]).
pub(super) async fn adopt(
    aws: &AwsProvider,
    address: &str,
    kind: ResourceKind,
    inputs: &Inputs,
) -> Result<Option<Applied>, ProviderError> {
    let cluster = input_str(inputs, "cluster_name")?;
    let stack = inputs
        .get("tags")
        .and_then(|tags| tags.get("pwless:stack"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    match kind {
        ResourceKind::EksPodIdentityAssociation => {
            let (namespace, service_account) = (
                input_str(inputs, "namespace")?,
                input_str(inputs, "service_account")?,
            );
            let Some(association) =
                association_of(aws, cluster, namespace, service_account).await?
            else {
                return Ok(None);
            };
            check_owner(
                &format!("the Pod Identity association of {namespace}/{service_account}"),
                &tags_of(association.tags()),
                stack,
                address,
            )?;
            Ok(Some(association_applied(&association)?))
        }
        _ => {
            let name = input_str(inputs, "addon_name")?;
            let Some(addon) = describe_addon(aws, cluster, name).await? else {
                return Ok(None);
            };
            check_owner(
                &format!("the EKS add-on {name}"),
                &tags_of(addon.tags()),
                stack,
                address,
            )?;
            Ok(Some(addon_applied(&wait_active(aws, cluster, name).await?)))
        }
    }
}
