//! IAM: roles (service roles and IRSA roles), managed-policy attachments, the inline
//! `rds-db:connect` policy of an IRSA role, and the cluster's OIDC provider.
//!
//! The two documents that decide who gets into the database are built here and nowhere else:
//! - an IRSA trust policy: `sts:AssumeRoleWithWebIdentity` from the cluster's OIDC provider,
//!   `StringEquals` on both `<issuer>:sub` (the one service account) and `<issuer>:aud`;
//! - its permission: `rds-db:connect` on exactly one `dbuser` ARN — the account from STS, the
//!   partition from the region, the cluster *resource id*, never a wildcard.

use std::collections::BTreeMap;

use aws_sdk_iam::types::Tag;
use serde_json::{Value, json};

use super::{AwsProvider, RETRY_LIMIT, found, missing_field, sdk_error};
use crate::graph::ResourceKind;
use crate::plan::Observed;
use crate::provider::wait;
use crate::provider::{
    Applied, Inputs, ProviderError, input_str, input_strings, input_tags, overlay, tags_value,
};
use crate::state::ResourceState;

fn tags(inputs: &Inputs) -> Vec<Tag> {
    tag_list(input_tags(inputs))
}

fn tag_list(pairs: Vec<(String, String)>) -> Vec<Tag> {
    pairs
        .into_iter()
        .filter_map(|(key, value)| Tag::builder().key(key).value(value).build().ok())
        .collect()
}

fn tags_of(tags: &[Tag]) -> Value {
    let sorted: BTreeMap<String, String> = tags
        .iter()
        .map(|tag| (tag.key().to_string(), tag.value().to_string()))
        .collect();
    tags_value(sorted)
}

/// The trust policy of a role: given literally (`assume_role_policy`), for an IRSA role built
/// from `web_identity`, for an EKS Pod Identity role from `pod_identity`.
pub(crate) fn trust_document(inputs: &Inputs) -> Result<Value, ProviderError> {
    if let Some(document) = inputs.get("assume_role_policy") {
        return Ok(document.clone());
    }
    if let Some(identity) = inputs.get("pod_identity") {
        return pod_identity_trust(identity);
    }
    let identity = inputs
        .get("web_identity")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            ProviderError::permanent("a role needs `assume_role_policy` or `web_identity`")
        })?;
    let field = |name: &str| {
        identity.get(name).and_then(Value::as_str).ok_or_else(|| {
            ProviderError::permanent(format!("input `web_identity.{name}` is missing"))
        })
    };
    let host = issuer_host(field("issuer")?);
    Ok(json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": field("provider_arn")?},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {
                format!("{host}:sub"): field("subject")?,
                format!("{host}:aud"): field("audience")?,
            }},
        }],
    }))
}

/// The trust of an EKS Pod Identity role (`pod_identity`: `{cluster_arn, namespace,
/// service_account}`): `pods.eks.amazonaws.com` may `sts:AssumeRole` and `sts:TagSession`,
/// only for the session tags EKS sets for that cluster, namespace and service account. Without
/// the conditions any association in the account could use the role ("Create IAM role with
/// trust policy required by EKS Pod Identity" and "Enable or disable session tags", Amazon EKS
/// User Guide: EKS tags each session with `eks-cluster-arn`, `kubernetes-namespace` and
/// `kubernetes-service-account`, among others).
fn pod_identity_trust(identity: &Value) -> Result<Value, ProviderError> {
    let field = |name: &str| {
        identity.get(name).and_then(Value::as_str).ok_or_else(|| {
            ProviderError::permanent(format!("input `pod_identity.{name}` is missing"))
        })
    };
    Ok(json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": crate::partition::POD_IDENTITY_PRINCIPAL},
            "Action": ["sts:AssumeRole", "sts:TagSession"],
            "Condition": {"StringEquals": {
                "aws:RequestTag/eks-cluster-arn": field("cluster_arn")?,
                "aws:RequestTag/kubernetes-namespace": field("namespace")?,
                "aws:RequestTag/kubernetes-service-account": field("service_account")?,
            }},
        }],
    }))
}

/// The inverse of [`pod_identity_trust`]: the `pod_identity` a document grants, or the document
/// itself (which then differs from any planned value) if it is anything else.
fn pod_identity_of(document: &Value) -> Value {
    let parsed = (|| {
        let [statement] = document.get("Statement")?.as_array()?.as_slice() else {
            return None;
        };
        let expected = pod_identity_trust(&json!({
            "cluster_arn": statement.pointer("/Condition/StringEquals/aws:RequestTag~1eks-cluster-arn")?,
            "namespace": statement.pointer("/Condition/StringEquals/aws:RequestTag~1kubernetes-namespace")?,
            "service_account": statement.pointer("/Condition/StringEquals/aws:RequestTag~1kubernetes-service-account")?,
        }))
        .ok()?;
        (expected.get("Statement")?.get(0)? == statement).then(|| {
            let equals = &statement["Condition"]["StringEquals"];
            json!({
                "cluster_arn": equals["aws:RequestTag/eks-cluster-arn"],
                "namespace": equals["aws:RequestTag/kubernetes-namespace"],
                "service_account": equals["aws:RequestTag/kubernetes-service-account"],
            })
        })
    })();
    parsed.unwrap_or_else(|| json!({"unrecognized_trust_policy": document}))
}

/// `https://oidc.eks.../id/X` -> `oidc.eks.../id/X`, as IAM condition keys and ARNs write it.
fn issuer_host(issuer: &str) -> &str {
    issuer.trim_start_matches("https://").trim_end_matches('/')
}

/// The inverse of [`trust_document`] for IRSA roles: the `web_identity` a document grants, or
/// the document itself (which then differs from any planned value) if it is anything else.
fn web_identity_of(document: &Value) -> Value {
    let parsed = (|| {
        let statements = document.get("Statement")?.as_array()?;
        let [statement] = statements.as_slice() else {
            return None;
        };
        if statement.get("Effect")?.as_str()? != "Allow"
            || statement.get("Action")?.as_str()? != "sts:AssumeRoleWithWebIdentity"
        {
            return None;
        }
        let provider = statement.get("Principal")?.get("Federated")?.as_str()?;
        let conditions = statement.get("Condition")?.as_object()?;
        if conditions.len() != 1 {
            return None;
        }
        let equals = conditions.get("StringEquals")?.as_object()?;
        if equals.len() != 2 {
            return None;
        }
        let (sub_key, subject) = equals.iter().find(|(key, _)| key.ends_with(":sub"))?;
        let host = sub_key.strip_suffix(":sub")?;
        let audience = equals.get(&format!("{host}:aud"))?.as_str()?;
        Some(json!({
            "provider_arn": provider,
            "issuer": format!("https://{host}"),
            "subject": subject.as_str()?,
            "audience": audience,
        }))
    })();
    parsed.unwrap_or_else(|| json!({"unrecognized_trust_policy": document}))
}

/// The dbuser ARN one grant of the `rds_db_connect` input names
/// (`arn:<partition>:rds-db:<region>:<account>:dbuser:<cluster resource id>/<user>`,
/// <https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/UsingWithRDS.IAMDBAuth.IAMPolicy.html>).
/// Errors: a field missing, empty or holding a wildcard.
pub(crate) fn db_user_arn(connect: &Value, account: &str) -> Result<String, ProviderError> {
    let field = |name: &str| {
        connect
            .get(name)
            .and_then(Value::as_str)
            .filter(|value| !value.is_empty() && !value.contains('*') && !value.contains('?'))
            .ok_or_else(|| {
                ProviderError::permanent(format!(
                    "input `rds_db_connect.{name}` is missing or holds a wildcard"
                ))
            })
    };
    Ok(format!(
        "arn:{}:rds-db:{}:{account}:dbuser:{}/{}",
        field("partition")?,
        field("region")?,
        field("cluster_resource_id")?,
        field("db_user")?
    ))
}

/// The policy that allows `rds-db:connect` as each of `arns` and nothing more: one statement
/// per dbuser ARN, in order.
pub(crate) fn connect_document(arns: &[String]) -> Value {
    let statements: Vec<Value> = arns
        .iter()
        .map(|arn| json!({"Effect": "Allow", "Action": "rds-db:connect", "Resource": arn}))
        .collect();
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// The inverse of [`connect_document`]: the `rds_db_connect` input (a list of grants) a
/// document grants; a document of any other shape is kept whole as
/// `{"unrecognized_policy": document}`, so the plan puts the stack's policy back.
fn connect_of(document: &Value, account: &str) -> Value {
    let grant = |statement: &Value| -> Option<Value> {
        if statement.as_object()?.len() != 3
            || statement.get("Effect")?.as_str()? != "Allow"
            || statement.get("Action")?.as_str()? != "rds-db:connect"
        {
            return None;
        }
        let arn = statement.get("Resource")?.as_str()?;
        let rest = arn.strip_prefix("arn:")?;
        let [partition, service, region, arn_account, resource] =
            rest.splitn(5, ':').collect::<Vec<_>>()[..]
        else {
            return None;
        };
        let (cluster, user) = resource.strip_prefix("dbuser:")?.split_once('/')?;
        if service != "rds-db" || arn_account != account {
            return None;
        }
        Some(
            json!({"partition": partition, "region": region, "cluster_resource_id": cluster, "db_user": user}),
        )
    };
    let parsed = (|| {
        let statements = document.get("Statement")?.as_array()?;
        if statements.is_empty() {
            return None;
        }
        statements.iter().map(grant).collect::<Option<Vec<_>>>()
    })();
    match parsed {
        Some(grants) => Value::Array(grants),
        None => json!({"unrecognized_policy": document}),
    }
}

/// IAM answers policy documents percent-encoded (RFC 3986: `+` is a plus, not a space); an
/// invalid escape is kept as it is.
pub(crate) fn url_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// A policy document as IAM answers it (percent-encoded, or plain JSON) parsed; a document
/// that is not JSON becomes a JSON string.
pub(crate) fn parse_document(text: &str) -> Value {
    let decoded = if text.trim_start().starts_with('{') {
        text.to_string()
    } else {
        url_decode(text)
    };
    serde_json::from_str(&decoded).unwrap_or(Value::String(decoded))
}

fn role_applied(role: &aws_sdk_iam::types::Role) -> Applied {
    Applied {
        id: Some(role.role_name().to_string()),
        outputs: BTreeMap::from([
            ("arn".to_string(), json!(role.arn())),
            ("name".to_string(), json!(role.role_name())),
        ]),
    }
}

fn attachment_id(inputs: &Inputs) -> Result<String, ProviderError> {
    Ok(format!(
        "{}|{}",
        input_str(inputs, "role")?,
        input_str(inputs, "policy_arn")?
    ))
}

pub(super) async fn create(
    aws: &AwsProvider,
    kind: ResourceKind,
    inputs: &Inputs,
) -> Result<Applied, ProviderError> {
    let iam = &aws.iam;
    match kind {
        ResourceKind::IamRole => {
            let document = trust_document(inputs)?;
            let out = wait::retrying(RETRY_LIMIT, || async {
                // A just-created OIDC provider may not be visible to IAM yet.
                iam.create_role()
                    .role_name(input_str(inputs, "name")?)
                    .assume_role_policy_document(document.to_string())
                    .set_tags(Some(tags(inputs)))
                    .send()
                    .await
                    .map_err(|e| {
                        sdk_error("create the IAM role")(e).retry_on(&["MalformedPolicyDocument"])
                    })
            })
            .await?;
            let role = out.role().ok_or_else(|| missing_field("the role"))?;
            Ok(role_applied(role))
        }
        ResourceKind::IamRolePolicyAttachment => {
            iam.attach_role_policy()
                .role_name(input_str(inputs, "role")?)
                .policy_arn(input_str(inputs, "policy_arn")?)
                .send()
                .await
                .map_err(sdk_error("attach the managed policy"))?;
            Ok(Applied {
                id: Some(attachment_id(inputs)?),
                outputs: BTreeMap::new(),
            })
        }
        ResourceKind::IamRolePolicy => {
            put_connect_policy(aws, inputs).await?;
            Ok(Applied {
                id: Some(format!(
                    "{}:{}",
                    input_str(inputs, "role")?,
                    input_str(inputs, "name")?
                )),
                outputs: BTreeMap::new(),
            })
        }
        ResourceKind::OidcProvider => {
            let out = iam
                .create_open_id_connect_provider()
                .url(input_str(inputs, "url")?)
                .set_client_id_list(Some(input_strings(inputs, "client_ids")?))
                .set_tags(Some(tags(inputs)))
                .send()
                .await
                .map_err(sdk_error("create the OIDC provider"))?;
            let arn = out
                .open_id_connect_provider_arn()
                .ok_or_else(|| missing_field("the OIDC provider ARN"))?;
            Ok(Applied {
                id: Some(arn.to_string()),
                outputs: BTreeMap::from([("arn".to_string(), json!(arn))]),
            })
        }
        other => Err(ProviderError::permanent(format!(
            "{other} is not an IAM resource"
        ))),
    }
}

async fn put_connect_policy(aws: &AwsProvider, inputs: &Inputs) -> Result<(), ProviderError> {
    // A list of grants; one map alone is a plan saved before a role could hold several.
    let grants = match inputs.get("rds_db_connect") {
        Some(Value::Array(grants)) => grants.clone(),
        Some(single @ Value::Object(_)) => vec![single.clone()],
        _ => Vec::new(),
    };
    if grants.is_empty() {
        return Err(ProviderError::permanent(
            "input `rds_db_connect` is missing or grants nothing",
        ));
    }
    let account = aws.account().await?;
    let arns = grants
        .iter()
        .map(|grant| db_user_arn(grant, &account))
        .collect::<Result<Vec<_>, _>>()?;
    aws.iam
        .put_role_policy()
        .role_name(input_str(inputs, "role")?)
        .policy_name(input_str(inputs, "name")?)
        .policy_document(connect_document(&arns).to_string())
        .send()
        .await
        .map_err(sdk_error("put the rds-db:connect policy"))?;
    Ok(())
}

pub(super) async fn read(
    aws: &AwsProvider,
    resource: &ResourceState,
) -> Result<Observed, ProviderError> {
    let iam = &aws.iam;
    let prior = &resource.inputs;
    let present = |inputs: Inputs| Observed::Present {
        inputs,
        outputs: resource.outputs.clone(),
    };
    match resource.kind {
        ResourceKind::IamRole => {
            let out = iam
                .get_role()
                .role_name(input_str(prior, "name")?)
                .send()
                .await
                .map_err(sdk_error("read the IAM role"));
            let Some(out) = found(out)? else {
                return Ok(Observed::Missing);
            };
            let role = out.role().ok_or_else(|| missing_field("the role"))?;
            let document = parse_document(role.assume_role_policy_document().unwrap_or_default());
            let trust = if prior.contains_key("web_identity") {
                ("web_identity", web_identity_of(&document))
            } else if prior.contains_key("pod_identity") {
                ("pod_identity", pod_identity_of(&document))
            } else {
                ("assume_role_policy", document)
            };
            Ok(Observed::Present {
                inputs: overlay(prior, [trust, ("tags", tags_of(role.tags()))]),
                outputs: role_applied(role).outputs,
            })
        }
        ResourceKind::IamRolePolicyAttachment => {
            let role = input_str(prior, "role")?;
            let policy = input_str(prior, "policy_arn")?;
            let out = iam
                .list_attached_role_policies()
                .role_name(role)
                .send()
                .await
                .map_err(sdk_error("list the role's policies"));
            let Some(out) = found(out)? else {
                return Ok(Observed::Missing);
            };
            let attached = out
                .attached_policies()
                .iter()
                .any(|attached| attached.policy_arn() == Some(policy));
            Ok(if attached {
                present(prior.clone())
            } else {
                Observed::Missing
            })
        }
        ResourceKind::IamRolePolicy => {
            let out = iam
                .get_role_policy()
                .role_name(input_str(prior, "role")?)
                .policy_name(input_str(prior, "name")?)
                .send()
                .await
                .map_err(sdk_error("read the inline policy"));
            let Some(out) = found(out)? else {
                return Ok(Observed::Missing);
            };
            let document = parse_document(out.policy_document());
            let connect = connect_of(&document, &aws.account().await?);
            Ok(present(overlay(prior, [("rds_db_connect", connect)])))
        }
        ResourceKind::OidcProvider => {
            let arn = resource
                .id
                .as_deref()
                .ok_or_else(|| ProviderError::permanent("the OIDC provider has no recorded ARN"))?;
            let out = iam
                .get_open_id_connect_provider()
                .open_id_connect_provider_arn(arn)
                .send()
                .await;
            let Some(out) = found(out.map_err(sdk_error("read the OIDC provider")))? else {
                return Ok(Observed::Missing);
            };
            // IAM answers the URL without its scheme.
            let url = out.url().map(|url| {
                if url.starts_with("https://") {
                    url.to_string()
                } else {
                    format!("https://{url}")
                }
            });
            Ok(present(overlay(
                prior,
                [
                    ("url", json!(url)),
                    ("client_ids", json!(out.client_id_list())),
                    ("tags", tags_of(out.tags())),
                ],
            )))
        }
        other => Err(ProviderError::permanent(format!(
            "{other} is not an IAM resource"
        ))),
    }
}

pub(super) async fn update(
    aws: &AwsProvider,
    resource: &ResourceState,
    inputs: &Inputs,
    changed: &[String],
) -> Result<Applied, ProviderError> {
    let iam = &aws.iam;
    for name in changed {
        match (resource.kind, name.as_str()) {
            (ResourceKind::IamRole, "assume_role_policy" | "web_identity" | "pod_identity") => {
                iam.update_assume_role_policy()
                    .role_name(input_str(inputs, "name")?)
                    .policy_document(trust_document(inputs)?.to_string())
                    .send()
                    .await
                    .map_err(sdk_error("update the trust policy"))?;
            }
            (ResourceKind::IamRole, "tags") => {
                let role = input_str(inputs, "name")?;
                let changes = crate::provider::tag_changes(&resource.inputs, inputs);
                if !changes.removed.is_empty() {
                    iam.untag_role()
                        .role_name(role)
                        .set_tag_keys(Some(changes.removed))
                        .send()
                        .await
                        .map_err(sdk_error("remove tags"))?;
                }
                if !changes.set.is_empty() {
                    iam.tag_role()
                        .role_name(role)
                        .set_tags(Some(tag_list(changes.set)))
                        .send()
                        .await
                        .map_err(sdk_error("set tags"))?;
                }
            }
            (ResourceKind::IamRolePolicy, "rds_db_connect") => {
                put_connect_policy(aws, inputs).await?
            }
            (ResourceKind::OidcProvider, "client_ids") => {
                let arn = resource.id.as_deref().unwrap_or_default();
                let old = input_strings(&resource.inputs, "client_ids").unwrap_or_default();
                let new = input_strings(inputs, "client_ids")?;
                for client in new.iter().filter(|client| !old.contains(client)) {
                    iam.add_client_id_to_open_id_connect_provider()
                        .open_id_connect_provider_arn(arn)
                        .client_id(client)
                        .send()
                        .await
                        .map_err(sdk_error("add a client id"))?;
                }
                for client in old.iter().filter(|client| !new.contains(client)) {
                    iam.remove_client_id_from_open_id_connect_provider()
                        .open_id_connect_provider_arn(arn)
                        .client_id(client)
                        .send()
                        .await
                        .map_err(sdk_error("remove a client id"))?;
                }
            }
            (ResourceKind::OidcProvider, "tags") => {
                // Before, tags were only ever added: one removed from the stack stayed on the
                // provider, and every plan showed it again.
                let arn = resource.id.as_deref().unwrap_or_default();
                let changes = crate::provider::tag_changes(&resource.inputs, inputs);
                if !changes.removed.is_empty() {
                    iam.untag_open_id_connect_provider()
                        .open_id_connect_provider_arn(arn)
                        .set_tag_keys(Some(changes.removed))
                        .send()
                        .await
                        .map_err(sdk_error("remove tags"))?;
                }
                if !changes.set.is_empty() {
                    iam.tag_open_id_connect_provider()
                        .open_id_connect_provider_arn(arn)
                        .set_tags(Some(tag_list(changes.set)))
                        .send()
                        .await
                        .map_err(sdk_error("set tags"))?;
                }
            }
            // The planner's bookkeeping (never delete what other stacks may use): nothing
            // to send.
            (ResourceKind::OidcProvider, "shared") => {}
            (kind, name) => {
                return Err(super::not_in_place(kind, name));
            }
        }
    }
    Ok(Applied::unchanged(resource))
}

pub(super) async fn delete(
    aws: &AwsProvider,
    resource: &ResourceState,
) -> Result<(), ProviderError> {
    let iam = &aws.iam;
    let prior = &resource.inputs;
    let result = match resource.kind {
        ResourceKind::IamRole => {
            let role = input_str(prior, "name")?;
            wait::retrying(RETRY_LIMIT, || async {
                iam.delete_role()
                    .role_name(role)
                    .send()
                    .await
                    .map(drop)
                    .map_err(|e| sdk_error("delete the IAM role")(e).retry_on(&["DeleteConflict"]))
            })
            .await
        }
        ResourceKind::IamRolePolicyAttachment => iam
            .detach_role_policy()
            .role_name(input_str(prior, "role")?)
            .policy_arn(input_str(prior, "policy_arn")?)
            .send()
            .await
            .map(drop)
            .map_err(sdk_error("detach the managed policy")),
        ResourceKind::IamRolePolicy => iam
            .delete_role_policy()
            .role_name(input_str(prior, "role")?)
            .policy_name(input_str(prior, "name")?)
            .send()
            .await
            .map(drop)
            .map_err(sdk_error("delete the inline policy")),
        ResourceKind::OidcProvider => {
            let arn = resource.id.as_deref().unwrap_or_default();
            iam.delete_open_id_connect_provider()
                .open_id_connect_provider_arn(arn)
                .send()
                .await
                .map(drop)
                .map_err(sdk_error("delete the OIDC provider"))
        }
        other => Err(ProviderError::permanent(format!(
            "{other} is not an IAM resource"
        ))),
    };
    found(result).map(drop)
}

pub(super) async fn adopt(
    aws: &AwsProvider,
    address: &str,
    kind: ResourceKind,
    inputs: &Inputs,
) -> Result<Option<Applied>, ProviderError> {
    let iam = &aws.iam;
    match kind {
        ResourceKind::IamRole => {
            let name = input_str(inputs, "name")?;
            let out = iam
                .get_role()
                .role_name(name)
                .send()
                .await
                .map_err(sdk_error("look up the IAM role"));
            let Some(role) = found(out)?.and_then(|out| out.role().cloned()) else {
                return Ok(None);
            };
            super::check_owner(
                &format!("IAM role {name}"),
                &tags_of(role.tags()),
                &aws.stack,
                address,
            )?;
            Ok(Some(role_applied(&role)))
        }
        ResourceKind::IamRolePolicyAttachment => {
            let out = iam
                .list_attached_role_policies()
                .role_name(input_str(inputs, "role")?)
                .send()
                .await;
            let Some(out) = found(out.map_err(sdk_error("list the role's policies")))? else {
                return Ok(None);
            };
            let policy = input_str(inputs, "policy_arn")?;
            let attached = out
                .attached_policies()
                .iter()
                .any(|attached| attached.policy_arn() == Some(policy));
            Ok(attached.then(|| Applied {
                id: attachment_id(inputs).ok(),
                outputs: BTreeMap::new(),
            }))
        }
        ResourceKind::IamRolePolicy => {
            let (role, name) = (input_str(inputs, "role")?, input_str(inputs, "name")?);
            let out = iam
                .get_role_policy()
                .role_name(role)
                .policy_name(name)
                .send()
                .await;
            Ok(
                found(out.map_err(sdk_error("look up the inline policy")))?.map(|_| Applied {
                    id: Some(format!("{role}:{name}")),
                    outputs: BTreeMap::new(),
                }),
            )
        }
        ResourceKind::OidcProvider => {
            // Its ARN follows from the account and the issuer URL.
            let arn = format!(
                "arn:{}:iam::{}:oidc-provider/{}",
                partition_of_arn(inputs),
                aws.account().await?,
                issuer_host(input_str(inputs, "url")?)
            );
            let out = iam
                .get_open_id_connect_provider()
                .open_id_connect_provider_arn(&arn)
                .send()
                .await;
            Ok(
                found(out.map_err(sdk_error("look up the OIDC provider")))?.map(|_| Applied {
                    id: Some(arn.clone()),
                    outputs: BTreeMap::from([("arn".to_string(), json!(arn))]),
                }),
            )
        }
        other => Err(ProviderError::permanent(format!(
            "{other} is not an IAM resource"
        ))),
    }
}

/// The partition for an ARN, from the issuer URL's region (`oidc.eks.<region>.amazonaws.com`,
/// `.com.cn` in China).
fn partition_of_arn(inputs: &Inputs) -> &'static str {
    let region = inputs
        .get("url")
        .and_then(Value::as_str)
        .and_then(|url| issuer_host(url).split('.').nth(2))
        .unwrap_or("");
    crate::partition::Partition::of_region(region).id()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn irsa_inputs() -> Inputs {
        let mut inputs = Inputs::new();
        inputs.insert(
            "web_identity".into(),
            json!({
                "provider_arn": "arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-west-2.amazonaws.com/id/ABC",
                "issuer": "https://oidc.eks.us-west-2.amazonaws.com/id/ABC",
                "subject": "system:serviceaccount:demo:demo-app",
                "audience": "sts.amazonaws.com",
            }),
        );
        inputs
    }

    #[test]
    fn irsa_trust_pins_subject_and_audience_and_reads_back() {
        let document = trust_document(&irsa_inputs()).unwrap();
        let equals = &document["Statement"][0]["Condition"]["StringEquals"];
        assert_eq!(
            equals["oidc.eks.us-west-2.amazonaws.com/id/ABC:sub"],
            "system:serviceaccount:demo:demo-app"
        );
        assert_eq!(
            equals["oidc.eks.us-west-2.amazonaws.com/id/ABC:aud"],
            "sts.amazonaws.com"
        );
        assert_eq!(
            document["Statement"][0]["Action"],
            "sts:AssumeRoleWithWebIdentity"
        );
        assert_eq!(web_identity_of(&document), irsa_inputs()["web_identity"]);
        // Loosen it (drop `aud`): the read no longer matches the plan.
        let mut loose = document.clone();
        loose["Statement"][0]["Condition"]["StringEquals"]
            .as_object_mut()
            .unwrap()
            .retain(|key, _| key.ends_with(":sub"));
        assert_ne!(web_identity_of(&loose), irsa_inputs()["web_identity"]);
    }

    #[test]
    fn pod_identity_trust_pins_cluster_namespace_and_service_account_and_reads_back() {
        let identity = json!({"cluster_arn": "arn:aws:eks:us-west-2:123456789012:cluster/s",
            "namespace": "demo", "service_account": "demo-app"});
        let document = pod_identity_trust(&identity).unwrap();
        assert_eq!(
            document["Statement"][0]["Principal"]["Service"],
            "pods.eks.amazonaws.com"
        );
        assert_eq!(
            document["Statement"][0]["Action"],
            json!(["sts:AssumeRole", "sts:TagSession"])
        );
        assert_eq!(pod_identity_of(&document), identity);
        // A loosened trust (the service account condition dropped) is drift, not equal.
        let mut loose = document.clone();
        loose["Statement"][0]["Condition"]["StringEquals"]
            .as_object_mut()
            .unwrap()
            .remove("aws:RequestTag/kubernetes-service-account");
        assert_ne!(pod_identity_of(&loose), identity);
        let mut widened = document;
        widened["Statement"][0]["Principal"] = json!({"Service": "ec2.amazonaws.com"});
        assert_ne!(pod_identity_of(&widened), identity);
    }

    #[test]
    fn connect_policy_names_exactly_its_db_users_and_refuses_wildcards() {
        let app = json!({"partition": "aws", "region": "us-west-2", "cluster_resource_id": "cluster-ABC", "db_user": "app_user"});
        let arn = db_user_arn(&app, "123456789012").unwrap();
        assert_eq!(
            arn,
            "arn:aws:rds-db:us-west-2:123456789012:dbuser:cluster-ABC/app_user"
        );
        let document = connect_document(std::slice::from_ref(&arn));
        assert_eq!(connect_of(&document, "123456789012"), json!([app]));
        assert_ne!(
            connect_of(&document, "999999999999"),
            json!([app]),
            "another account's ARN is not ours"
        );
        // Two databases: one statement each, read back in order.
        let orders = json!({"partition": "aws", "region": "us-west-2", "cluster_resource_id": "cluster-XYZ", "db_user": "orders_app"});
        let both = [arn, db_user_arn(&orders, "123456789012").unwrap()];
        let document = connect_document(&both);
        assert_eq!(document["Statement"].as_array().unwrap().len(), 2);
        assert_eq!(connect_of(&document, "123456789012"), json!([app, orders]));
        // A statement that grants anything more is not a shape pwless wrote.
        let mut widened = document.clone();
        widened["Statement"][1]["Condition"] = json!({"Bool": {"aws:SecureTransport": "true"}});
        assert!(
            connect_of(&widened, "123456789012")
                .get("unrecognized_policy")
                .is_some()
        );
        let mut other_action = document;
        other_action["Statement"][0]["Action"] = json!("rds-db:*");
        assert!(
            connect_of(&other_action, "123456789012")
                .get("unrecognized_policy")
                .is_some()
        );
        let wildcard = json!({"partition": "aws", "region": "us-west-2", "cluster_resource_id": "*", "db_user": "app_user"});
        assert!(db_user_arn(&wildcard, "123456789012").is_err());
    }

    #[test]
    fn documents_are_url_decoded() {
        let encoded = "%7B%22Version%22%3A%222012-10-17%22%7D";
        assert_eq!(parse_document(encoded), json!({"Version": "2012-10-17"}));
        assert_eq!(url_decode("a%2"), "a%2");
    }
}
