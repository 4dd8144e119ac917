//! RDS: the DB subnet group, the Aurora PostgreSQL cluster (IAM authentication on, master
//! password managed by RDS or read from the environment at apply time) and its instances.
//! All are named deterministically, so an interrupted create is found by name. And, for a
//! referenced cluster whose stack says `enable_iam_auth: true`, its IAM database
//! authentication turned on (`aws_rds_cluster_iam_auth`: never turned off again).

use std::collections::BTreeMap;

use aws_sdk_rds::types::Tag;
use serde_json::{Value, json};

use super::{AwsProvider, READY_LIMIT, RETRY_LIMIT, found, missing_field, sdk_error};
use crate::graph::ResourceKind;
use crate::plan::Observed;
use crate::provider::wait::{self, Poll};
use crate::provider::{
    Applied, Inputs, ProviderError, input_bool, input_i64, input_str, input_strings, input_tags,
    overlay, tags_value,
};
use crate::secret::Secret;
use crate::state::ResourceState;

/// The log type of IAM database authentication errors an Aurora PostgreSQL cluster exports to
/// CloudWatch Logs, as log group `/aws/rds/cluster/<cluster>/iam-db-auth-error`
/// ("Troubleshooting for IAM DB authentication", Amazon Aurora User Guide).
pub const IAM_AUTH_ERROR_LOG: &str = "iam-db-auth-error";

fn tags(inputs: &Inputs) -> Vec<Tag> {
    input_tags(inputs)
        .into_iter()
        .map(|(key, value)| Tag::builder().key(key).value(value).build())
        .collect()
}

fn tags_of(tags: &[Tag]) -> Value {
    let sorted: BTreeMap<String, String> = tags
        .iter()
        .filter_map(|tag| {
            Some((
                tag.key()?.to_string(),
                tag.value().unwrap_or_default().to_string(),
            ))
        })
        .collect();
    tags_value(sorted)
}

/// How the master password is given: `None` for managed by RDS, else the password read now
/// from the environment variable the stack names. Never stored, never printed.
fn master_password(inputs: &Inputs) -> Result<Option<Secret>, ProviderError> {
    let source = inputs
        .get("master_password")
        .ok_or_else(|| ProviderError::permanent("input `master_password` is missing"))?;
    if source.get("managed").and_then(Value::as_bool) == Some(true) {
        return Ok(None);
    }
    let variable = source.get("env").and_then(Value::as_str).ok_or_else(|| {
        ProviderError::permanent("input `master_password` is neither managed nor {env: VAR}")
    })?;
    match std::env::var(variable) {
        Ok(value) if !value.is_empty() => Ok(Some(Secret::new(value))),
        _ => Err(ProviderError::permanent(format!(
            "environment variable {variable} (the database's master_password.env) is not set; set it to the master password for this apply"
        ))),
    }
}

fn cluster_outputs(cluster: &aws_sdk_rds::types::DbCluster) -> Applied {
    Applied {
        id: cluster.db_cluster_identifier().map(str::to_string),
        outputs: BTreeMap::from([
            (
                "cluster_identifier".to_string(),
                json!(cluster.db_cluster_identifier()),
            ),
            ("arn".to_string(), json!(cluster.db_cluster_arn())),
            ("endpoint".to_string(), json!(cluster.endpoint())),
            (
                "reader_endpoint".to_string(),
                json!(cluster.reader_endpoint()),
            ),
            ("port".to_string(), json!(cluster.port())),
            (
                "cluster_resource_id".to_string(),
                json!(cluster.db_cluster_resource_id()),
            ),
            (
                "master_user_secret_arn".to_string(),
                json!(
                    cluster
                        .master_user_secret()
                        .and_then(|secret| secret.secret_arn())
                ),
            ),
        ]),
    }
}

/// Turns IAM database authentication on in cluster `identifier` at once (ModifyDBCluster
/// `EnableIAMDatabaseAuthentication`, `ApplyImmediately`; tried again while the cluster is busy
/// with another change), and waits until the cluster reports it on and is available again.
/// Changes nothing else: users that log in with passwords keep doing so
/// (<https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/UsingWithRDS.IAMDBAuth.Enabling.html>).
async fn turn_iam_auth_on(aws: &AwsProvider, identifier: &str) -> Result<Applied, ProviderError> {
    let call = aws
        .rds
        .modify_db_cluster()
        .db_cluster_identifier(identifier)
        .enable_iam_database_authentication(true)
        .apply_immediately(true);
    wait::retrying(RETRY_LIMIT, || async {
        call.clone().send().await.map(drop).map_err(|e| {
            sdk_error("turn IAM database authentication on")(e)
                .retry_on(&["InvalidDBClusterStateFault"])
        })
    })
    .await?;
    wait::until(
        &format!("Aurora cluster {identifier} to have IAM database authentication on"),
        READY_LIMIT,
        || async {
            let out = aws
                .rds
                .describe_db_clusters()
                .db_cluster_identifier(identifier)
                .send()
                .await
                .map_err(sdk_error("describe the Aurora cluster"))?;
            let cluster = out
                .db_clusters()
                .first()
                .ok_or_else(|| missing_field("the cluster"))?;
            let on = cluster.iam_database_authentication_enabled() == Some(true);
            Ok(match cluster.status() {
                Some("available") if on => Poll::Ready(()),
                status => Poll::Pending(format!(
                    "{}, IAM database authentication {}",
                    status.unwrap_or("unknown"),
                    if on { "on" } else { "off" }
                )),
            })
        },
    )
    .await?;
    Ok(Applied {
        id: Some(identifier.to_string()),
        outputs: BTreeMap::new(),
    })
}

pub(super) async fn create(
    aws: &AwsProvider,
    kind: ResourceKind,
    inputs: &Inputs,
) -> Result<Applied, ProviderError> {
    let rds = &aws.rds;
    match kind {
        ResourceKind::RdsClusterIamAuth => {
            turn_iam_auth_on(aws, input_str(inputs, "cluster_identifier")?).await
        }
        ResourceKind::DbSubnetGroup => {
            let name = input_str(inputs, "name")?;
            let out = rds
                .create_db_subnet_group()
                .db_subnet_group_name(name)
                .db_subnet_group_description(input_str(inputs, "description")?)
                .set_subnet_ids(Some(input_strings(inputs, "subnet_ids")?))
                .set_tags(Some(tags(inputs)))
                .send()
                .await
                .map_err(sdk_error("create the DB subnet group"))?;
            let arn = out
                .db_subnet_group()
                .and_then(|group| group.db_subnet_group_arn());
            Ok(Applied {
                id: Some(name.to_string()),
                outputs: BTreeMap::from([
                    ("name".to_string(), json!(name)),
                    ("arn".to_string(), json!(arn)),
                ]),
            })
        }
        ResourceKind::RdsCluster => {
            let identifier = input_str(inputs, "cluster_identifier")?;
            let password = master_password(inputs)?;
            let mut call = rds
                .create_db_cluster()
                .db_cluster_identifier(identifier)
                .engine(input_str(inputs, "engine")?)
                .engine_version(input_str(inputs, "engine_version")?)
                .database_name(input_str(inputs, "database_name")?)
                .master_username(input_str(inputs, "master_username")?)
                .enable_iam_database_authentication(input_bool(
                    inputs,
                    "iam_database_authentication_enabled",
                )?)
                .storage_encrypted(input_bool(inputs, "storage_encrypted")?)
                .set_enable_cloudwatch_logs_exports(
                    // States from before pwless exported it have no such input: off.
                    input_bool(inputs, "iam_auth_error_log")
                        .unwrap_or(false)
                        .then(|| vec![IAM_AUTH_ERROR_LOG.to_string()]),
                )
                .port(input_i64(inputs, "port")? as i32)
                .db_subnet_group_name(input_str(inputs, "db_subnet_group_name")?)
                .set_vpc_security_group_ids(Some(input_strings(inputs, "vpc_security_group_ids")?))
                .copy_tags_to_snapshot(true)
                .set_tags(Some(tags(inputs)));
            call = match &password {
                None => call.manage_master_user_password(true),
                Some(secret) => call.master_user_password(secret.expose()),
            };
            call.send()
                .await
                .map_err(sdk_error("create the Aurora cluster"))?;
            wait_cluster(aws, identifier).await
        }
        ResourceKind::RdsClusterInstance => {
            let identifier = input_str(inputs, "identifier")?;
            rds.create_db_instance()
                .db_instance_identifier(identifier)
                .db_cluster_identifier(input_str(inputs, "cluster_identifier")?)
                .engine(input_str(inputs, "engine")?)
                .db_instance_class(input_str(inputs, "instance_class")?)
                .publicly_accessible(input_bool(inputs, "publicly_accessible")?)
                .set_tags(Some(tags(inputs)))
                .send()
                .await
                .map_err(sdk_error("create the Aurora instance"))?;
            wait_instance(aws, identifier).await
        }
        other => Err(ProviderError::permanent(format!(
            "{other} is not an RDS resource"
        ))),
    }
}

async fn wait_cluster(aws: &AwsProvider, identifier: &str) -> Result<Applied, ProviderError> {
    wait::until(
        &format!("Aurora cluster {identifier} to be available"),
        READY_LIMIT,
        || async {
            let out = aws
                .rds
                .describe_db_clusters()
                .db_cluster_identifier(identifier)
                .send()
                .await;
            let out = out.map_err(sdk_error("describe the Aurora cluster"))?;
            let cluster = out
                .db_clusters()
                .first()
                .ok_or_else(|| missing_field("the cluster"))?;
            match cluster.status() {
                Some("available") => Ok(Poll::Ready(cluster_outputs(cluster))),
                Some(
                    status @ ("failed"
                    | "inaccessible-encryption-credentials"
                    | "incompatible-parameters"),
                ) => Err(ProviderError::permanent(format!(
                    "Aurora cluster {identifier} is {status}"
                ))),
                other => Ok(Poll::Pending(other.unwrap_or("unknown").to_string())),
            }
        },
    )
    .await
}

async fn wait_instance(aws: &AwsProvider, identifier: &str) -> Result<Applied, ProviderError> {
    wait::until(
        &format!("Aurora instance {identifier} to be available"),
        READY_LIMIT,
        || async {
            let out = aws
                .rds
                .describe_db_instances()
                .db_instance_identifier(identifier)
                .send()
                .await;
            let out = out.map_err(sdk_error("describe the Aurora instance"))?;
            let instance = out
                .db_instances()
                .first()
                .ok_or_else(|| missing_field("the instance"))?;
            match instance.db_instance_status() {
                Some("available") => Ok(Poll::Ready(Applied {
                    id: Some(identifier.to_string()),
                    outputs: BTreeMap::from([
                        ("arn".to_string(), json!(instance.db_instance_arn())),
                        (
                            "endpoint".to_string(),
                            json!(instance.endpoint().and_then(|endpoint| endpoint.address())),
                        ),
                    ]),
                })),
                Some(status @ ("failed" | "incompatible-parameters" | "storage-full")) => Err(
                    ProviderError::permanent(format!("Aurora instance {identifier} is {status}")),
                ),
                other => Ok(Poll::Pending(other.unwrap_or("unknown").to_string())),
            }
        },
    )
    .await
}

pub(super) async fn read(
    aws: &AwsProvider,
    resource: &ResourceState,
) -> Result<Observed, ProviderError> {
    let rds = &aws.rds;
    let prior = &resource.inputs;
    match resource.kind {
        ResourceKind::RdsClusterIamAuth => {
            let out = rds
                .describe_db_clusters()
                .db_cluster_identifier(input_str(prior, "cluster_identifier")?)
                .send()
                .await;
            let Some(out) = found(out.map_err(sdk_error("describe the Aurora cluster")))? else {
                return Ok(Observed::Missing);
            };
            let Some(cluster) = out.db_clusters().first() else {
                return Ok(Observed::Missing);
            };
            Ok(Observed::Present {
                inputs: overlay(
                    prior,
                    vec![(
                        "enabled",
                        json!(cluster.iam_database_authentication_enabled() == Some(true)),
                    )],
                ),
                outputs: resource.outputs.clone(),
            })
        }
        ResourceKind::DbSubnetGroup => {
            let out = rds
                .describe_db_subnet_groups()
                .db_subnet_group_name(input_str(prior, "name")?)
                .send()
                .await;
            let Some(out) = found(out.map_err(sdk_error("describe the DB subnet group")))? else {
                return Ok(Observed::Missing);
            };
            let Some(group) = out.db_subnet_groups().first() else {
                return Ok(Observed::Missing);
            };
            let mut subnets: Vec<&str> = group
                .subnets()
                .iter()
                .filter_map(|subnet| subnet.subnet_identifier())
                .collect();
            // AWS does not keep the order; compare as the plan has it when the sets match.
            let mut planned: Vec<String> = input_strings(prior, "subnet_ids").unwrap_or_default();
            let same_set = {
                let mut a = subnets.clone();
                a.sort_unstable();
                planned.sort_unstable();
                a == planned
            };
            if same_set {
                subnets = Vec::new();
            }
            let mut observed = vec![
                ("description", json!(group.db_subnet_group_description())),
                // (An answer without it keeps the recorded one.)
                (
                    "vpc_id",
                    group.vpc_id().map_or_else(
                        || prior.get("vpc_id").cloned().unwrap_or_default(),
                        |id| json!(id),
                    ),
                ),
            ];
            if !same_set {
                observed.push(("subnet_ids", json!(subnets)));
            }
            let tags = list_tags(aws, group.db_subnet_group_arn()).await?;
            observed.push(("tags", tags));
            Ok(Observed::Present {
                inputs: overlay(prior, observed),
                outputs: resource.outputs.clone(),
            })
        }
        ResourceKind::RdsCluster => {
            let out = rds
                .describe_db_clusters()
                .db_cluster_identifier(input_str(prior, "cluster_identifier")?)
                .send()
                .await;
            let Some(out) = found(out.map_err(sdk_error("describe the Aurora cluster")))? else {
                return Ok(Observed::Missing);
            };
            let Some(cluster) = out.db_clusters().first() else {
                return Ok(Observed::Missing);
            };
            if cluster.status() == Some("deleting") {
                return Ok(Observed::Missing);
            }
            let security_groups: Vec<&str> = cluster
                .vpc_security_groups()
                .iter()
                .filter_map(|group| group.vpc_security_group_id())
                .collect();
            let mut observed = vec![
                ("engine", json!(cluster.engine())),
                ("engine_version", json!(cluster.engine_version())),
                ("database_name", json!(cluster.database_name())),
                ("master_username", json!(cluster.master_username())),
                (
                    "iam_database_authentication_enabled",
                    json!(cluster.iam_database_authentication_enabled()),
                ),
                ("storage_encrypted", json!(cluster.storage_encrypted())),
                ("port", json!(cluster.port())),
                ("db_subnet_group_name", json!(cluster.db_subnet_group())),
                ("vpc_security_group_ids", json!(security_groups)),
                ("tags", tags_of(cluster.tag_list())),
            ];
            // Read only where the state records it: a cluster from before pwless exported the
            // log is planned as an update that turns it on, not as a change made outside pwless.
            if prior.contains_key("iam_auth_error_log") {
                observed.push((
                    "iam_auth_error_log",
                    json!(
                        cluster
                            .enabled_cloudwatch_logs_exports()
                            .iter()
                            .any(|export| export == IAM_AUTH_ERROR_LOG)
                    ),
                ));
            }
            // A managed password shows as a Secrets Manager secret; an env one cannot be seen.
            if cluster.master_user_secret().is_some() {
                observed.push(("master_password", json!({"managed": true})));
            }
            Ok(Observed::Present {
                inputs: overlay(prior, observed),
                outputs: cluster_outputs(cluster).outputs,
            })
        }
        ResourceKind::RdsClusterInstance => {
            let out = rds
                .describe_db_instances()
                .db_instance_identifier(input_str(prior, "identifier")?)
                .send()
                .await;
            let Some(out) = found(out.map_err(sdk_error("describe the Aurora instance")))? else {
                return Ok(Observed::Missing);
            };
            let Some(instance) = out.db_instances().first() else {
                return Ok(Observed::Missing);
            };
            if instance.db_instance_status() == Some("deleting") {
                return Ok(Observed::Missing);
            }
            let observed = [
                (
                    "cluster_identifier",
                    json!(instance.db_cluster_identifier()),
                ),
                ("engine", json!(instance.engine())),
                ("instance_class", json!(instance.db_instance_class())),
                ("publicly_accessible", json!(instance.publicly_accessible())),
                ("tags", tags_of(instance.tag_list())),
            ];
            Ok(Observed::Present {
                inputs: overlay(prior, observed),
                outputs: resource.outputs.clone(),
            })
        }
        other => Err(ProviderError::permanent(format!(
            "{other} is not an RDS resource"
        ))),
    }
}

async fn list_tags(aws: &AwsProvider, arn: Option<&str>) -> Result<Value, ProviderError> {
    let Some(arn) = arn else {
        return Ok(tags_value(Vec::new()));
    };
    let out = aws
        .rds
        .list_tags_for_resource()
        .resource_name(arn)
        .send()
        .await
        .map_err(sdk_error("list tags"))?;
    Ok(tags_of(out.tag_list()))
}

pub(super) async fn update(
    aws: &AwsProvider,
    resource: &ResourceState,
    inputs: &Inputs,
    changed: &[String],
) -> Result<Applied, ProviderError> {
    let rds = &aws.rds;
    let arn = resource
        .outputs
        .get("arn")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    // Each resource's changes go out in one modify call, as terraform's does: a second
    // ModifyDBCluster while the first is still applying is refused (InvalidDBClusterStateFault).
    let mut cluster_fields: Vec<&str> = Vec::new();
    let mut modify_instance = false;
    let mut modify_subnet_group = false;
    for name in changed {
        match (resource.kind, name.as_str()) {
            (_, "tags") => {
                let changes = crate::provider::tag_changes(&resource.inputs, inputs);
                if !changes.removed.is_empty() {
                    rds.remove_tags_from_resource()
                        .resource_name(&arn)
                        .set_tag_keys(Some(changes.removed))
                        .send()
                        .await
                        .map_err(sdk_error("remove tags"))?;
                }
                if !changes.set.is_empty() {
                    rds.add_tags_to_resource()
                        .resource_name(&arn)
                        .set_tags(Some(
                            changes
                                .set
                                .into_iter()
                                .map(|(key, value)| Tag::builder().key(key).value(value).build())
                                .collect(),
                        ))
                        .send()
                        .await
                        .map_err(sdk_error("set tags"))?;
                }
            }
            // Recorded only: a state from before pwless recorded the group's VPC (a change of
            // VPC is planned as a replacement).
            (ResourceKind::DbSubnetGroup | ResourceKind::RdsCluster, "vpc_id")
                if !resource.inputs.contains_key("vpc_id") => {}
            (ResourceKind::DbSubnetGroup, "subnet_ids" | "description") => {
                modify_subnet_group = true;
            }
            (
                ResourceKind::RdsCluster,
                field @ ("engine_version"
                | "iam_database_authentication_enabled"
                | "iam_auth_error_log"
                | "port"
                | "vpc_security_group_ids"
                | "master_password"),
            ) => cluster_fields.push(field),
            // Read at delete time; nothing to tell AWS now.
            (ResourceKind::RdsCluster, "final_snapshot") => {}
            (ResourceKind::RdsClusterIamAuth, "enabled") => {
                return turn_iam_auth_on(aws, input_str(inputs, "cluster_identifier")?).await;
            }
            // Recorded only (the planner forgets a shared resource instead of deleting it).
            (ResourceKind::RdsClusterIamAuth, "shared") => {}
            (ResourceKind::RdsClusterInstance, "instance_class" | "publicly_accessible") => {
                modify_instance = true;
            }
            (kind, name) => {
                return Err(super::not_in_place(kind, name));
            }
        }
    }
    if modify_subnet_group {
        rds.modify_db_subnet_group()
            .db_subnet_group_name(input_str(inputs, "name")?)
            .db_subnet_group_description(input_str(inputs, "description")?)
            .set_subnet_ids(Some(input_strings(inputs, "subnet_ids")?))
            .send()
            .await
            .map_err(sdk_error("modify the DB subnet group"))?;
    }
    if !cluster_fields.is_empty() {
        let mut call = rds
            .modify_db_cluster()
            .db_cluster_identifier(input_str(inputs, "cluster_identifier")?)
            .apply_immediately(true);
        for field in &cluster_fields {
            call = match *field {
                "engine_version" => call
                    .engine_version(input_str(inputs, "engine_version")?)
                    .allow_major_version_upgrade(true),
                "iam_database_authentication_enabled" => {
                    call.enable_iam_database_authentication(input_bool(inputs, field)?)
                }
                // Only this export is pwless's: others someone turned on stay as they are.
                "iam_auth_error_log" => {
                    let export = aws_sdk_rds::types::CloudwatchLogsExportConfiguration::builder();
                    call.cloudwatch_logs_export_configuration(
                        if input_bool(inputs, field)? {
                            export.enable_log_types(IAM_AUTH_ERROR_LOG)
                        } else {
                            export.disable_log_types(IAM_AUTH_ERROR_LOG)
                        }
                        .build(),
                    )
                }
                "port" => call.port(input_i64(inputs, "port")? as i32),
                "vpc_security_group_ids" => {
                    call.set_vpc_security_group_ids(Some(input_strings(inputs, field)?))
                }
                _ => match master_password(inputs)? {
                    None => call.manage_master_user_password(true),
                    Some(secret) => call
                        .manage_master_user_password(false)
                        .master_user_password(secret.expose()),
                },
            };
        }
        // A cluster still busy with an earlier change (a backup, a modification) refuses
        // with InvalidDBClusterStateFault: tried again, as terraform does.
        wait::retrying(RETRY_LIMIT, || async {
            call.clone().send().await.map(drop).map_err(|e| {
                sdk_error("modify the Aurora cluster")(e).retry_on(&["InvalidDBClusterStateFault"])
            })
        })
        .await?;
    }
    if modify_instance {
        let call = rds
            .modify_db_instance()
            .db_instance_identifier(input_str(inputs, "identifier")?)
            .db_instance_class(input_str(inputs, "instance_class")?)
            .publicly_accessible(input_bool(inputs, "publicly_accessible")?)
            .apply_immediately(true);
        wait::retrying(RETRY_LIMIT, || async {
            call.clone().send().await.map(drop).map_err(|e| {
                sdk_error("modify the Aurora instance")(e).retry_on(&["InvalidDBInstanceState"])
            })
        })
        .await?;
    }
    match resource.kind {
        ResourceKind::RdsCluster => {
            wait_cluster(aws, input_str(inputs, "cluster_identifier")?).await
        }
        ResourceKind::RdsClusterInstance => {
            wait_instance(aws, input_str(inputs, "identifier")?).await
        }
        _ => Ok(Applied::unchanged(resource)),
    }
}

pub(super) async fn delete(
    aws: &AwsProvider,
    resource: &ResourceState,
) -> Result<(), ProviderError> {
    let rds = &aws.rds;
    let prior = &resource.inputs;
    match resource.kind {
        // Never turned off again: the cluster is its owners', and others may log in with
        // tokens by now. (The planner forgets it instead of deleting it; this is the guard.)
        ResourceKind::RdsClusterIamAuth => Ok(()),
        ResourceKind::DbSubnetGroup => {
            let name = input_str(prior, "name")?;
            let result = wait::retrying(RETRY_LIMIT, || async {
                rds.delete_db_subnet_group()
                    .db_subnet_group_name(name)
                    .send()
                    .await
                    .map(drop)
                    .map_err(|e| {
                        sdk_error("delete the DB subnet group")(e)
                            .retry_on(&["InvalidDBSubnetGroupStateFault"])
                    })
            })
            .await;
            found(result).map(drop)
        }
        ResourceKind::RdsCluster => {
            let identifier = input_str(prior, "cluster_identifier")?;
            // A final snapshot keeps the data: destroy removes the cluster, not the only copy.
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let keep = prior
                .get("final_snapshot")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            let mut call = rds
                .delete_db_cluster()
                .db_cluster_identifier(identifier)
                .skip_final_snapshot(!keep);
            if keep {
                // The plan names it (and shows it); a delete outside a plan gets a timestamp.
                let snapshot = prior
                    .get("final_snapshot_identifier")
                    .and_then(Value::as_str)
                    .map_or_else(|| format!("{identifier}-final-{stamp}"), str::to_string);
                call = call.final_db_snapshot_identifier(snapshot);
            }
            let deleted = call
                .send()
                .await
                .map_err(sdk_error("delete the Aurora cluster"));
            if found(deleted)?.is_none() {
                return Ok(());
            }
            wait::until(
                &format!("Aurora cluster {identifier} to be deleted"),
                READY_LIMIT,
                || async {
                    let out = rds
                        .describe_db_clusters()
                        .db_cluster_identifier(identifier)
                        .send()
                        .await;
                    Ok(
                        match found(out.map_err(sdk_error("describe the Aurora cluster")))? {
                            None => Poll::Ready(()),
                            Some(out) if out.db_clusters().is_empty() => Poll::Ready(()),
                            Some(out) => Poll::Pending(
                                out.db_clusters()
                                    .first()
                                    .and_then(|c| c.status())
                                    .unwrap_or("unknown")
                                    .to_string(),
                            ),
                        },
                    )
                },
            )
            .await
        }
        ResourceKind::RdsClusterInstance => {
            let identifier = input_str(prior, "identifier")?;
            let deleted = rds
                .delete_db_instance()
                .db_instance_identifier(identifier)
                .send()
                .await
                .map_err(sdk_error("delete the Aurora instance"));
            if found(deleted)?.is_none() {
                return Ok(());
            }
            wait::until(
                &format!("Aurora instance {identifier} to be deleted"),
                READY_LIMIT,
                || async {
                    let out = rds
                        .describe_db_instances()
                        .db_instance_identifier(identifier)
                        .send()
                        .await;
                    Ok(
                        match found(out.map_err(sdk_error("describe the Aurora instance")))? {
                            None => Poll::Ready(()),
                            Some(out) if out.db_instances().is_empty() => Poll::Ready(()),
                            Some(out) => Poll::Pending(
                                out.db_instances()
                                    .first()
                                    .and_then(|i| i.db_instance_status())
                                    .unwrap_or("unknown")
                                    .to_string(),
                            ),
                        },
                    )
                },
            )
            .await
        }
        other => Err(ProviderError::permanent(format!(
            "{other} is not an RDS resource"
        ))),
    }
}

pub(super) async fn adopt(
    aws: &AwsProvider,
    address: &str,
    kind: ResourceKind,
    inputs: &Inputs,
) -> Result<Option<Applied>, ProviderError> {
    let rds = &aws.rds;
    match kind {
        // Its create may be sent again (`create_is_idempotent`): nothing to adopt.
        ResourceKind::RdsClusterIamAuth => Ok(None),
        ResourceKind::DbSubnetGroup => {
            let name = input_str(inputs, "name")?;
            let out = rds
                .describe_db_subnet_groups()
                .db_subnet_group_name(name)
                .send()
                .await;
            let Some(out) = found(out.map_err(sdk_error("look up the DB subnet group")))? else {
                return Ok(None);
            };
            let Some(group) = out.db_subnet_groups().first() else {
                return Ok(None);
            };
            super::check_owner(
                &format!("DB subnet group {name}"),
                &list_tags(aws, group.db_subnet_group_arn()).await?,
                &aws.stack,
                address,
            )?;
            Ok(Some(Applied {
                id: Some(name.to_string()),
                outputs: BTreeMap::from([
                    ("name".to_string(), json!(name)),
                    ("arn".to_string(), json!(group.db_subnet_group_arn())),
                ]),
            }))
        }
        ResourceKind::RdsCluster => {
            let identifier = input_str(inputs, "cluster_identifier")?;
            let out = rds
                .describe_db_clusters()
                .db_cluster_identifier(identifier)
                .send()
                .await;
            match found(out.map_err(sdk_error("look up the Aurora cluster")))? {
                None => Ok(None),
                Some(out) => {
                    super::check_owner(
                        &format!("Aurora cluster {identifier}"),
                        &tags_of(
                            out.db_clusters()
                                .first()
                                .map(|cluster| cluster.tag_list())
                                .unwrap_or_default(),
                        ),
                        &aws.stack,
                        address,
                    )?;
                    wait_cluster(aws, identifier).await.map(Some)
                }
            }
        }
        ResourceKind::RdsClusterInstance => {
            let identifier = input_str(inputs, "identifier")?;
            let out = rds
                .describe_db_instances()
                .db_instance_identifier(identifier)
                .send()
                .await;
            match found(out.map_err(sdk_error("look up the Aurora instance")))? {
                None => Ok(None),
                Some(out) => {
                    super::check_owner(
                        &format!("Aurora instance {identifier}"),
                        &tags_of(
                            out.db_instances()
                                .first()
                                .map(|instance| instance.tag_list())
                                .unwrap_or_default(),
                        ),
                        &aws.stack,
                        address,
                    )?;
                    wait_instance(aws, identifier).await.map(Some)
                }
            }
        }
        other => Err(ProviderError::permanent(format!(
            "{other} is not an RDS resource"
        ))),
    }
}
