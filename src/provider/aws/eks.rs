//! EKS: the cluster (access entries mode, private endpoint always on) and its managed node
//! group. Both are named deterministically, so an interrupted create is found by name.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_eks::types::{
    AuthenticationMode, ClusterStatus, CreateAccessConfigRequest, KubernetesNetworkConfigRequest,
    NodegroupScalingConfig, NodegroupStatus, UpdateAccessConfigRequest, UpdateStatus,
    VpcConfigRequest,
};
use serde_json::{Value, json};

use super::{AwsProvider, READY_LIMIT, RETRY_LIMIT, found, missing_field, sdk_error};
use crate::graph::ResourceKind;
use crate::plan::Observed;
use crate::provider::wait::{self, Poll};
use crate::provider::{
    Applied, Inputs, ProviderError, input_bool, input_str, input_strings, input_tags, overlay,
    tags_value,
};
use crate::state::ResourceState;

fn tag_map(inputs: &Inputs) -> HashMap<String, String> {
    input_tags(inputs).into_iter().collect()
}

fn tags_of(tags: Option<&HashMap<String, String>>) -> Value {
    let sorted: BTreeMap<String, String> = tags.cloned().unwrap_or_default().into_iter().collect();
    tags_value(sorted)
}

fn scaling(inputs: &Inputs) -> Result<NodegroupScalingConfig, ProviderError> {
    let scaling = inputs
        .get("scaling")
        .and_then(Value::as_object)
        .ok_or_else(|| ProviderError::permanent("input `scaling` is missing"))?;
    let size = |name: &str| {
        scaling
            .get(name)
            .and_then(Value::as_i64)
            .and_then(|value| i32::try_from(value).ok())
            .ok_or_else(|| ProviderError::permanent(format!("input `scaling.{name}` is missing")))
    };
    Ok(NodegroupScalingConfig::builder()
        .min_size(size("min_size")?)
        .desired_size(size("desired_size")?)
        .max_size(size("max_size")?)
        .build())
}

pub(super) async fn create(
    aws: &AwsProvider,
    kind: ResourceKind,
    inputs: &Inputs,
) -> Result<Applied, ProviderError> {
    match kind {
        ResourceKind::EksCluster => {
            let name = input_str(inputs, "name")?;
            let vpc_config = VpcConfigRequest::builder()
                .set_subnet_ids(Some(input_strings(inputs, "subnet_ids")?))
                .endpoint_public_access(input_bool(inputs, "endpoint_public_access")?)
                .endpoint_private_access(input_bool(inputs, "endpoint_private_access")?)
                .build();
            let mut call = aws
                .eks
                .create_cluster()
                .name(name)
                .version(input_str(inputs, "version")?)
                .role_arn(input_str(inputs, "role_arn")?)
                .resources_vpc_config(vpc_config)
                .access_config(
                    CreateAccessConfigRequest::builder()
                        .authentication_mode(AuthenticationMode::from(input_str(
                            inputs,
                            "authentication_mode",
                        )?))
                        .bootstrap_cluster_creator_admin_permissions(false)
                        .build(),
                )
                .set_tags(Some(tag_map(inputs)));
            if let Some(block) = inputs.get("service_ipv4_cidr").and_then(Value::as_str) {
                call = call.kubernetes_network_config(
                    KubernetesNetworkConfigRequest::builder()
                        .service_ipv4_cidr(block)
                        .build(),
                );
            }
            // A role just created may not be assumable by EKS yet (IAM is eventually consistent).
            wait::retrying(RETRY_LIMIT, || async {
                call.clone().send().await.map(drop).map_err(|e| {
                    sdk_error("create the EKS cluster")(e).retry_on(&["InvalidParameterException"])
                })
            })
            .await?;
            wait_cluster(aws, name).await
        }
        ResourceKind::EksNodeGroup => {
            let cluster = input_str(inputs, "cluster_name")?;
            let name = input_str(inputs, "node_group_name")?;
            let call = aws
                .eks
                .create_nodegroup()
                .cluster_name(cluster)
                .nodegroup_name(name)
                .node_role(input_str(inputs, "node_role_arn")?)
                .set_subnets(Some(input_strings(inputs, "subnet_ids")?))
                .set_instance_types(Some(input_strings(inputs, "instance_types")?))
                .scaling_config(scaling(inputs)?)
                .version(input_str(inputs, "version")?)
                .set_tags(Some(tag_map(inputs)));
            wait::retrying(RETRY_LIMIT, || async {
                call.clone().send().await.map(drop).map_err(|e| {
                    sdk_error("create the EKS node group")(e)
                        .retry_on(&["InvalidParameterException"])
                })
            })
            .await?;
            wait_node_group(aws, cluster, name).await
        }
        other => Err(ProviderError::permanent(format!(
            "{other} is not an EKS resource"
        ))),
    }
}

fn cluster_outputs(cluster: &aws_sdk_eks::types::Cluster) -> Result<Applied, ProviderError> {
    let name = cluster
        .name()
        .ok_or_else(|| missing_field("the cluster name"))?;
    let issuer = cluster
        .identity()
        .and_then(|identity| identity.oidc())
        .and_then(|oidc| oidc.issuer());
    Ok(Applied {
        id: Some(name.to_string()),
        outputs: BTreeMap::from([
            ("name".to_string(), json!(name)),
            ("arn".to_string(), json!(cluster.arn())),
            ("endpoint".to_string(), json!(cluster.endpoint())),
            (
                "certificate_authority".to_string(),
                json!(cluster.certificate_authority().and_then(|ca| ca.data())),
            ),
            ("oidc_issuer".to_string(), json!(issuer)),
        ]),
    })
}

async fn wait_cluster(aws: &AwsProvider, name: &str) -> Result<Applied, ProviderError> {
    wait::until(
        &format!("EKS cluster {name} to be ACTIVE"),
        READY_LIMIT,
        || async {
            let out = aws
                .eks
                .describe_cluster()
                .name(name)
                .send()
                .await
                .map_err(sdk_error("describe the EKS cluster"))?;
            let cluster = out.cluster().ok_or_else(|| missing_field("the cluster"))?;
            match cluster.status() {
                Some(ClusterStatus::Active) => Ok(Poll::Ready(cluster_outputs(cluster)?)),
                Some(ClusterStatus::Failed) => Err(ProviderError::permanent(format!(
                    "EKS cluster {name} failed"
                ))),
                other => Ok(Poll::Pending(format!("{other:?}"))),
            }
        },
    )
    .await
}

/// Waits for an update EKS accepted (UpdateClusterConfig, UpdateClusterVersion,
/// UpdateNodegroupConfig, UpdateNodegroupVersion) to end, by its id (DescribeUpdate): a failed
/// update also ends with the cluster ACTIVE ("If the update fails, the status is Failed, and an
/// error detail explains the reason for the failure", UpdateClusterVersion, Amazon EKS API
/// Reference), so the cluster's status cannot tell failure from success. Errors: the update
/// `Failed` or was `Cancelled`, with EKS's error codes and messages.
async fn wait_update(
    aws: &AwsProvider,
    cluster: &str,
    node_group: Option<&str>,
    update: Option<&aws_sdk_eks::types::Update>,
    what: &str,
) -> Result<(), ProviderError> {
    let Some(id) = update.and_then(|update| update.id()) else {
        return Err(missing_field("the update's id"));
    };
    wait::until(
        &format!("{what} (EKS update {id}) to finish"),
        READY_LIMIT,
        || async {
            let out = aws
                .eks
                .describe_update()
                .name(cluster)
                .update_id(id)
                .set_nodegroup_name(node_group.map(str::to_string))
                .send()
                .await
                .map_err(sdk_error("describe the EKS update"))?;
            let update = out.update().ok_or_else(|| missing_field("the update"))?;
            match update.status() {
                Some(UpdateStatus::Successful) => Ok(Poll::Ready(())),
                Some(status @ (UpdateStatus::Failed | UpdateStatus::Cancelled)) => {
                    let errors: Vec<String> = update
                        .errors()
                        .iter()
                        .map(|error| {
                            format!(
                                "{}: {}",
                                error.error_code().map_or("?", |code| code.as_str()),
                                error.error_message().unwrap_or_default()
                            )
                        })
                        .collect();
                    Err(ProviderError::permanent(format!(
                        "{what}: EKS update {id} {}: {}",
                        status.as_str().to_lowercase(),
                        if errors.is_empty() {
                            "no reason given".to_string()
                        } else {
                            errors.join("; ")
                        }
                    )))
                }
                other => Ok(Poll::Pending(format!("{other:?}"))),
            }
        },
    )
    .await
}

/// Sends an EKS update, tried again while the cluster is busy with another
/// (ResourceInUseException: "Cluster has an update in progress"; EKS runs one update at a
/// time, and one made outside pwless may still be running).
async fn while_busy<T, E, F, Fut>(mut send: F, action: &'static str) -> Result<T, ProviderError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<
            Output = Result<
                T,
                aws_sdk_eks::error::SdkError<E, aws_sdk_eks::config::http::HttpResponse>,
            >,
        >,
    E: aws_sdk_eks::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    wait::retrying(READY_LIMIT, || {
        let sent = send();
        async move {
            sent.await
                .map_err(|error| sdk_error(action)(error).retry_on(&["ResourceInUseException"]))
        }
    })
    .await
}

async fn wait_node_group(
    aws: &AwsProvider,
    cluster: &str,
    name: &str,
) -> Result<Applied, ProviderError> {
    wait::until(
        &format!("node group {name} to be ACTIVE"),
        READY_LIMIT,
        || async {
            let out = aws
                .eks
                .describe_nodegroup()
                .cluster_name(cluster)
                .nodegroup_name(name)
                .send()
                .await
                .map_err(sdk_error("describe the node group"))?;
            let group = out
                .nodegroup()
                .ok_or_else(|| missing_field("the node group"))?;
            match group.status() {
                Some(NodegroupStatus::Active) => Ok(Poll::Ready(Applied {
                    id: Some(format!("{cluster}:{name}")),
                    outputs: BTreeMap::from([("arn".to_string(), json!(group.nodegroup_arn()))]),
                })),
                Some(
                    NodegroupStatus::CreateFailed
                    | NodegroupStatus::DeleteFailed
                    | NodegroupStatus::Degraded,
                ) => Err(ProviderError::permanent(format!(
                    "node group {name} is {:?}",
                    group.status()
                ))),
                other => Ok(Poll::Pending(format!("{other:?}"))),
            }
        },
    )
    .await
}

pub(super) async fn read(
    aws: &AwsProvider,
    resource: &ResourceState,
) -> Result<Observed, ProviderError> {
    let prior = &resource.inputs;
    match resource.kind {
        ResourceKind::EksCluster => {
            let name = input_str(prior, "name")?;
            let out = aws
                .eks
                .describe_cluster()
                .name(name)
                .send()
                .await
                .map_err(sdk_error("describe the EKS cluster"));
            let Some(out) = found(out)? else {
                return Ok(Observed::Missing);
            };
            let Some(cluster) = out.cluster() else {
                return Ok(Observed::Missing);
            };
            if matches!(cluster.status(), Some(ClusterStatus::Deleting)) {
                return Ok(Observed::Missing);
            }
            let vpc = cluster.resources_vpc_config();
            let mut observed = vec![
                ("version", json!(cluster.version())),
                // (An answer without it, as moto's, keeps the recorded one.)
                (
                    "vpc_id",
                    vpc.and_then(|vpc| vpc.vpc_id()).map_or_else(
                        || prior.get("vpc_id").cloned().unwrap_or_default(),
                        |id| json!(id),
                    ),
                ),
                ("role_arn", json!(cluster.role_arn())),
                (
                    "subnet_ids",
                    json!(vpc.map(|vpc| vpc.subnet_ids()).unwrap_or_default()),
                ),
                (
                    "endpoint_public_access",
                    json!(vpc.map(|vpc| vpc.endpoint_public_access())),
                ),
                (
                    "endpoint_private_access",
                    json!(vpc.map(|vpc| vpc.endpoint_private_access())),
                ),
                ("tags", tags_of(cluster.tags())),
            ];
            if let Some(mode) = cluster
                .access_config()
                .and_then(|access| access.authentication_mode())
            {
                observed.push(("authentication_mode", json!(mode.as_str())));
            }
            // EKS picks a service block when none was asked for: only a chosen one can drift.
            if !prior.get("service_ipv4_cidr").is_none_or(Value::is_null) {
                let block = cluster
                    .kubernetes_network_config()
                    .and_then(|config| config.service_ipv4_cidr());
                observed.push(("service_ipv4_cidr", json!(block)));
            }
            let outputs = cluster_outputs(cluster)?.outputs;
            Ok(Observed::Present {
                inputs: overlay(prior, observed),
                outputs,
            })
        }
        ResourceKind::EksNodeGroup => {
            let cluster = input_str(prior, "cluster_name")?;
            let name = input_str(prior, "node_group_name")?;
            let out = aws
                .eks
                .describe_nodegroup()
                .cluster_name(cluster)
                .nodegroup_name(name)
                .send()
                .await;
            let Some(out) = found(out.map_err(sdk_error("describe the node group")))? else {
                return Ok(Observed::Missing);
            };
            let Some(group) = out.nodegroup() else {
                return Ok(Observed::Missing);
            };
            if matches!(group.status(), Some(NodegroupStatus::Deleting)) {
                return Ok(Observed::Missing);
            }
            let scaling = group.scaling_config().map(|config| {
                json!({"min_size": config.min_size(), "desired_size": config.desired_size(), "max_size": config.max_size()})
            });
            let observed = [
                ("node_role_arn", json!(group.node_role())),
                ("subnet_ids", json!(group.subnets())),
                ("instance_types", json!(group.instance_types())),
                ("scaling", scaling.unwrap_or(Value::Null)),
                ("version", json!(group.version())),
                ("tags", tags_of(group.tags())),
            ];
            Ok(Observed::Present {
                inputs: overlay(prior, observed),
                outputs: resource.outputs.clone(),
            })
        }
        other => Err(ProviderError::permanent(format!(
            "{other} is not an EKS resource"
        ))),
    }
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
        .unwrap_or_default()
        .to_string();
    // Both endpoint flags go in one call: a second call asking for no change is refused
    // ("Cluster is already at the desired configuration").
    let mut endpoint_access_sent = false;
    for name in changed {
        match (resource.kind, name.as_str()) {
            (_, "tags") => sync_tags(aws, &arn, &resource.inputs, inputs).await?,
            (ResourceKind::EksCluster, "authentication_mode") => {
                // EKS changes the mode one way only (CONFIG_MAP -> API_AND_CONFIG_MAP -> API,
                // "Change authentication mode to use access entries", Amazon EKS User Guide);
                // pwless makes clusters with API, the last, so this only ever moves forward.
                let cluster = input_str(inputs, "name")?;
                let call = aws
                    .eks
                    .update_cluster_config()
                    // One token for every send (see below).
                    .client_request_token(uuid::Uuid::new_v4().to_string())
                    .name(cluster)
                    .access_config(
                        UpdateAccessConfigRequest::builder()
                            .authentication_mode(AuthenticationMode::from(input_str(
                                inputs,
                                "authentication_mode",
                            )?))
                            .build(),
                    );
                let out = while_busy(|| call.clone().send(), "change the EKS authentication mode")
                    .await?;
                let what = "the EKS authentication mode change";
                wait_update(aws, cluster, None, out.update(), what).await?;
                wait_cluster(aws, cluster).await?;
            }
            (ResourceKind::EksCluster, "version") => {
                let cluster = input_str(inputs, "name")?;
                let call = aws
                    .eks
                    .update_cluster_version()
                    // One token for every send: a send again after a lost answer is the same
                    // update to EKS, not a second one.
                    .client_request_token(uuid::Uuid::new_v4().to_string())
                    .name(cluster)
                    .version(input_str(inputs, "version")?);
                let out = while_busy(|| call.clone().send(), "upgrade the EKS cluster").await?;
                wait_update(aws, cluster, None, out.update(), "the EKS upgrade").await?;
                wait_cluster(aws, cluster).await?;
            }
            (ResourceKind::EksCluster, "endpoint_public_access" | "endpoint_private_access")
                if !endpoint_access_sent =>
            {
                endpoint_access_sent = true;
                let cluster = input_str(inputs, "name")?;
                let call = aws
                    .eks
                    .update_cluster_config()
                    // One token for every send: a send again after a lost answer is the same
                    // update to EKS, not a second one.
                    .client_request_token(uuid::Uuid::new_v4().to_string())
                    .name(cluster)
                    .resources_vpc_config(
                        VpcConfigRequest::builder()
                            .endpoint_public_access(input_bool(inputs, "endpoint_public_access")?)
                            .endpoint_private_access(input_bool(inputs, "endpoint_private_access")?)
                            .build(),
                    );
                let out =
                    while_busy(|| call.clone().send(), "change the EKS endpoint access").await?;
                let what = "the EKS endpoint access change";
                wait_update(aws, cluster, None, out.update(), what).await?;
                wait_cluster(aws, cluster).await?;
            }
            (ResourceKind::EksCluster, "subnet_ids") => {
                // EKS changes a cluster's subnets in place (UpdateClusterConfig,
                // resourcesVpcConfig.subnetIds; "View Amazon EKS networking requirements for
                // VPC and subnets", Amazon EKS User Guide): a subnet made again needs no new
                // cluster. The new subnets must be in the zones the cluster was made with.
                let cluster = input_str(inputs, "name")?;
                let call = aws
                    .eks
                    .update_cluster_config()
                    // One token for every send: a send again after a lost answer is the same
                    // update to EKS, not a second one.
                    .client_request_token(uuid::Uuid::new_v4().to_string())
                    .name(cluster)
                    .resources_vpc_config(
                        VpcConfigRequest::builder()
                            .set_subnet_ids(Some(input_strings(inputs, "subnet_ids")?))
                            .build(),
                    );
                let out =
                    while_busy(|| call.clone().send(), "change the EKS cluster's subnets").await?;
                let what = "the EKS subnet change";
                wait_update(aws, cluster, None, out.update(), what).await?;
                wait_cluster(aws, cluster).await?;
            }
            (ResourceKind::EksNodeGroup, "scaling") => {
                let (cluster, group) = (
                    input_str(inputs, "cluster_name")?,
                    input_str(inputs, "node_group_name")?,
                );
                let call = aws
                    .eks
                    .update_nodegroup_config()
                    // One token for every send: a send again after a lost answer is the same
                    // update to EKS, not a second one.
                    .client_request_token(uuid::Uuid::new_v4().to_string())
                    .cluster_name(cluster)
                    .nodegroup_name(group)
                    .scaling_config(scaling(inputs)?);
                let out = while_busy(|| call.clone().send(), "scale the node group").await?;
                let what = "the node group's scaling";
                wait_update(aws, cluster, Some(group), out.update(), what).await?;
                wait_node_group(aws, cluster, group).await?;
            }
            (ResourceKind::EksNodeGroup, "version") => {
                let (cluster, group) = (
                    input_str(inputs, "cluster_name")?,
                    input_str(inputs, "node_group_name")?,
                );
                let call = aws
                    .eks
                    .update_nodegroup_version()
                    // One token for every send: a send again after a lost answer is the same
                    // update to EKS, not a second one.
                    .client_request_token(uuid::Uuid::new_v4().to_string())
                    .cluster_name(cluster)
                    .nodegroup_name(group)
                    .version(input_str(inputs, "version")?);
                let out = while_busy(|| call.clone().send(), "upgrade the node group").await?;
                let what = "the node group's upgrade";
                wait_update(aws, cluster, Some(group), out.update(), what).await?;
                wait_node_group(aws, cluster, group).await?;
            }
            (ResourceKind::EksCluster, "endpoint_public_access" | "endpoint_private_access") => {}
            // Recorded only: a state from before pwless recorded the cluster's VPC (a change of
            // VPC is planned as a replacement).
            (ResourceKind::EksCluster, "vpc_id") if !resource.inputs.contains_key("vpc_id") => {}
            (kind, name) => {
                return Err(super::not_in_place(kind, name));
            }
        }
    }
    match resource.kind {
        ResourceKind::EksCluster => wait_cluster(aws, input_str(inputs, "name")?).await,
        _ => Ok(Applied::unchanged(resource)),
    }
}

pub(super) async fn sync_tags(
    aws: &AwsProvider,
    arn: &str,
    old: &Inputs,
    new: &Inputs,
) -> Result<(), ProviderError> {
    let changes = crate::provider::tag_changes(old, new);
    if !changes.removed.is_empty() {
        aws.eks
            .untag_resource()
            .resource_arn(arn)
            .set_tag_keys(Some(changes.removed))
            .send()
            .await
            .map_err(sdk_error("remove tags"))?;
    }
    if !changes.set.is_empty() {
        aws.eks
            .tag_resource()
            .resource_arn(arn)
            .set_tags(Some(changes.set.into_iter().collect()))
            .send()
            .await
            .map_err(sdk_error("set tags"))?;
    }
    Ok(())
}

pub(super) async fn delete(
    aws: &AwsProvider,
    resource: &ResourceState,
) -> Result<(), ProviderError> {
    let prior = &resource.inputs;
    match resource.kind {
        ResourceKind::EksCluster => {
            let name = input_str(prior, "name")?;
            let deleted = aws
                .eks
                .delete_cluster()
                .name(name)
                .send()
                .await
                .map_err(sdk_error("delete the EKS cluster"));
            if found(deleted)?.is_none() {
                return Ok(());
            }
            wait::until(
                &format!("EKS cluster {name} to be deleted"),
                READY_LIMIT,
                || async {
                    let out = aws
                        .eks
                        .describe_cluster()
                        .name(name)
                        .send()
                        .await
                        .map_err(sdk_error("describe the EKS cluster"));
                    Ok(match found(out)? {
                        None => Poll::Ready(()),
                        Some(out) => {
                            Poll::Pending(format!("{:?}", out.cluster().and_then(|c| c.status())))
                        }
                    })
                },
            )
            .await
        }
        ResourceKind::EksNodeGroup => {
            let (cluster, group) = (
                input_str(prior, "cluster_name")?,
                input_str(prior, "node_group_name")?,
            );
            let deleted = aws
                .eks
                .delete_nodegroup()
                .cluster_name(cluster)
                .nodegroup_name(group)
                .send()
                .await;
            if found(deleted.map_err(sdk_error("delete the node group")))?.is_none() {
                return Ok(());
            }
            wait::until(
                &format!("node group {group} to be deleted"),
                READY_LIMIT,
                || async {
                    let out = aws
                        .eks
                        .describe_nodegroup()
                        .cluster_name(cluster)
                        .nodegroup_name(group)
                        .send()
                        .await;
                    Ok(
                        match found(out.map_err(sdk_error("describe the node group")))? {
                            None => Poll::Ready(()),
                            Some(out) => Poll::Pending(format!(
                                "{:?}",
                                out.nodegroup().and_then(|g| g.status())
                            )),
                        },
                    )
                },
            )
            .await
        }
        other => Err(ProviderError::permanent(format!(
            "{other} is not an EKS resource"
        ))),
    }
}

pub(super) async fn adopt(
    aws: &AwsProvider,
    address: &str,
    kind: ResourceKind,
    inputs: &Inputs,
) -> Result<Option<Applied>, ProviderError> {
    match kind {
        ResourceKind::EksCluster => {
            let name = input_str(inputs, "name")?;
            let out = aws
                .eks
                .describe_cluster()
                .name(name)
                .send()
                .await
                .map_err(sdk_error("look up the EKS cluster"));
            match found(out)? {
                None => Ok(None),
                Some(out) => {
                    super::check_owner(
                        &format!("EKS cluster {name}"),
                        &tags_of(out.cluster().and_then(|cluster| cluster.tags())),
                        &aws.stack,
                        address,
                    )?;
                    wait_cluster(aws, name).await.map(Some)
                }
            }
        }
        ResourceKind::EksNodeGroup => {
            let (cluster, group) = (
                input_str(inputs, "cluster_name")?,
                input_str(inputs, "node_group_name")?,
            );
            let out = aws
                .eks
                .describe_nodegroup()
                .cluster_name(cluster)
                .nodegroup_name(group)
                .send()
                .await;
            match found(out.map_err(sdk_error("look up the node group")))? {
                None => Ok(None),
                Some(out) => {
                    super::check_owner(
                        &format!("EKS node group {group} of cluster {cluster}"),
                        &tags_of(out.nodegroup().and_then(|group| group.tags())),
                        &aws.stack,
                        address,
                    )?;
                    wait_node_group(aws, cluster, group).await.map(Some)
                }
            }
        }
        other => Err(ProviderError::permanent(format!(
            "{other} is not an EKS resource"
        ))),
    }
}
