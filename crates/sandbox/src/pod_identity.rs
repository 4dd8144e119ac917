//! The EKS Pod Identity Agent, in the sandbox: what a node's agent does for a pod of a service
//! account that has a Pod Identity association, done by `pwless sandbox run` for the command it
//! runs.
//!
//! On EKS the agent listens on a link-local address; the pod's environment names it in
//! `AWS_CONTAINER_CREDENTIALS_FULL_URI` and names the service-account token (audience
//! `pods.eks.amazonaws.com`) in `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`. The SDK's container
//! credentials provider sends the token as the `Authorization` header; the agent trades it with
//! EKS Auth's `AssumeRoleForPodIdentity` (which checks the token, the association and the
//! role's trust) and answers the credentials as JSON
//! (<https://docs.aws.amazon.com/eks/latest/userguide/pod-id-how-it-works.html>).
//! Here the agent listens on loopback (the SDKs accept `http://127.0.0.1` there), and EKS Auth
//! is the sandbox's moto (scripts/moto_pod_identity.py). Each credential it hands out is also
//! registered with the sandbox's token verifier, which cannot learn secrets from moto.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use serde_json::json;

use crate::{AssumeError, register_credentials, web_identity_token};

/// The audience of the token the agent presents, and the service principal roles trust.
pub const AUDIENCE: &str = "pods.eks.amazonaws.com";

/// A service account as EKS Pod Identity sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PodIdentity {
    pub cluster_name: String,
    /// The cluster's OIDC issuer: the issuer of its service-account tokens.
    pub issuer: String,
    pub namespace: String,
    pub service_account: String,
}

/// A running agent: the URL and token file a pod's environment names.
#[derive(Debug)]
pub struct Agent {
    /// `http://127.0.0.1:PORT/v1/credentials`: `AWS_CONTAINER_CREDENTIALS_FULL_URI`.
    pub url: String,
    /// The service-account token: `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`.
    pub token_file: PathBuf,
    /// The role session EKS Auth made for the first request (`arn:...:assumed-role/...`).
    pub session_arn: String,
}

struct Shared {
    client: aws_sdk_eksauth::Client,
    cluster_name: String,
    /// The token verifiers' registries (one per sandbox PostgreSQL).
    registries: Vec<PathBuf>,
}

impl Shared {
    /// One `AssumeRoleForPodIdentity` for `token`: the agent's JSON answer and the session's
    /// ARN, or EKS Auth's refusal with its code and message.
    async fn credentials(&self, token: &str) -> Result<(serde_json::Value, String), AssumeError> {
        let out = self
            .client
            .assume_role_for_pod_identity()
            .cluster_name(&self.cluster_name)
            .token(token)
            .send()
            .await
            .map_err(|error| {
                AssumeError(format!(
                    "EKS Auth refused the Pod Identity credentials: {}",
                    pwless_iam_auth::errors::chain(&error)
                ))
            })?;
        let session = out
            .assumed_role_user()
            .map(|user| user.arn().to_string())
            .unwrap_or_default();
        let credentials = out
            .credentials()
            .ok_or_else(|| AssumeError("EKS Auth answered without credentials".into()))?;
        for registry in &self.registries {
            register_credentials(
                registry,
                credentials.access_key_id(),
                credentials.secret_access_key(),
                Some(credentials.session_token()),
            )
            .map_err(|error| {
                AssumeError(format!(
                    "cannot register the credentials with the sandbox's token verifier: {error}"
                ))
            })?;
        }
        let expiration = std::time::UNIX_EPOCH
            + std::time::Duration::from_secs(
                u64::try_from(credentials.expiration().secs()).unwrap_or_default(),
            );
        Ok((
            json!({
                "AccessKeyId": credentials.access_key_id(),
                "SecretAccessKey": credentials.secret_access_key(),
                "Token": credentials.session_token(),
                "Expiration": humantime::format_rfc3339_seconds(expiration).to_string(),
            }),
            session,
        ))
    }

    async fn answer(&self, request: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let respond = |status: StatusCode, body: serde_json::Value| {
            let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
            *response.status_mut() = status;
            response
        };
        if request.uri().path() != "/v1/credentials" {
            return respond(StatusCode::NOT_FOUND, json!({"message": "not found"}));
        }
        let Some(token) = request
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
        else {
            return respond(
                StatusCode::BAD_REQUEST,
                json!({"message": "no service-account token in the Authorization header"}),
            );
        };
        match self.credentials(token).await {
            Ok((body, _)) => respond(StatusCode::OK, body),
            Err(error) => respond(StatusCode::FORBIDDEN, json!({"message": error.to_string()})),
        }
    }
}

/// Starts the agent for `identity` on a loopback port, its token in `directory` (mode 0600).
/// It first gets the credentials once, so that a service account EKS would refuse (no
/// association, a role whose trust refuses it) is said before any command runs. The agent
/// serves until the runtime stops. Errors: EKS Auth's refusal (with its code), the token file
/// or the port cannot be made, the verifier's registry cannot be written.
pub async fn start_agent(
    config: &aws_config::SdkConfig,
    identity: &PodIdentity,
    registries: Vec<PathBuf>,
    directory: &Path,
) -> Result<Agent, AssumeError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default();
    let subject = format!(
        "system:serviceaccount:{}:{}",
        identity.namespace, identity.service_account
    );
    let token = web_identity_token(&identity.issuer, &subject, AUDIENCE, now);
    let token_file = directory.join("eks-pod-identity-token");
    write_private(&token_file, &token)
        .map_err(|error| AssumeError(format!("cannot write {}: {error}", token_file.display())))?;
    let shared = Arc::new(Shared {
        client: aws_sdk_eksauth::Client::new(config),
        cluster_name: identity.cluster_name.clone(),
        registries,
    });
    let (_, session_arn) = shared.credentials(&token).await?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|error| AssumeError(format!("cannot listen on loopback: {error}")))?;
    let port = listener
        .local_addr()
        .map_err(|error| AssumeError(format!("cannot listen on loopback: {error}")))?
        .port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let shared = shared.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let shared = shared.clone();
                    async move { Ok::<_, Infallible>(shared.answer(request).await) }
                });
                // A client that hangs up mid-request is its own business.
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(Agent {
        url: format!("http://127.0.0.1:{port}/v1/credentials"),
        token_file,
        session_arn,
    })
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?
        .write_all(contents.as_bytes())
}

/// Whether a role's trust policy lets EKS Pod Identity assume it for a session with these
/// session tags (`eks-cluster-arn`, `kubernetes-namespace`, ...): `Ok`, or why not. EKS calls
/// STS `AssumeRole` with tags, so both `sts:AssumeRole` and `sts:TagSession` must be allowed to
/// `pods.eks.amazonaws.com`, and an explicit Deny of either wins ("Create IAM role with trust
/// policy required by EKS Pod Identity", Amazon EKS User Guide). Conditions: `StringEquals` and
/// `StringLike` on `aws:RequestTag/<tag>`. Any other condition key or operator cannot be told
/// here: with `unknown_holds` false such a statement does not apply (the sandbox's EKS Auth,
/// scripts/moto_pod_identity.py, honours only what it emulates); with it true the condition is
/// taken as holding (`pwless doctor` on AWS, where `aws:SourceAccount` and the like are common
/// and an unknown Deny must not be overlooked).
pub fn trust_allows(
    document: &serde_json::Value,
    tags: &[(&str, &str)],
    unknown_holds: bool,
) -> Result<(), String> {
    use serde_json::Value;
    let list = |value: Option<&Value>| -> Vec<String> {
        match value {
            Some(Value::String(text)) => vec![text.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    };
    let matches = |statement: &Value, action: &str| -> bool {
        let principal = statement.get("Principal");
        let trusted = principal.and_then(Value::as_str) == Some("*")
            || list(principal.and_then(|p| p.get("Service")))
                .iter()
                .any(|service| service == AUDIENCE);
        let acts = list(statement.get("Action"))
            .iter()
            .any(|pattern| crate::wildcard(&pattern.to_lowercase(), &action.to_lowercase()));
        let conditions_hold = match statement.get("Condition") {
            None => true,
            Some(Value::Object(operators)) => operators.iter().all(|(operator, keys)| {
                keys.as_object().is_some_and(|keys| {
                    keys.iter().all(|(key, expected)| {
                        let known_operator =
                            matches!(operator.as_str(), "StringEquals" | "StringLike");
                        let Some(tag) = key
                            .strip_prefix("aws:RequestTag/")
                            .filter(|_| known_operator)
                        else {
                            return unknown_holds;
                        };
                        let Some((_, value)) = tags.iter().find(|(name, _)| *name == tag) else {
                            return false;
                        };
                        let expected = list(Some(expected));
                        if operator == "StringEquals" {
                            expected.iter().any(|e| e == value)
                        } else {
                            expected.iter().any(|e| crate::wildcard(e, value))
                        }
                    })
                })
            }),
            Some(_) => false,
        };
        trusted && acts && conditions_hold
    };
    let statements = match document.get("Statement") {
        Some(Value::Array(items)) => items.clone(),
        Some(single) => vec![single.clone()],
        None => Vec::new(),
    };
    let effect = |statement: &Value, wanted: &str| {
        statement.get("Effect").and_then(Value::as_str) == Some(wanted)
    };
    for action in ["sts:AssumeRole", "sts:TagSession"] {
        if statements
            .iter()
            .any(|statement| effect(statement, "Deny") && matches(statement, action))
        {
            return Err(format!("an explicit Deny of {action} in the trust policy"));
        }
        if !statements
            .iter()
            .any(|statement| effect(statement, "Allow") && matches(statement, action))
        {
            return Err(format!(
                "no statement allows {AUDIENCE} {action} for this cluster, namespace and service account"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trust(condition: serde_json::Value, actions: serde_json::Value) -> serde_json::Value {
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Principal": {"Service": "pods.eks.amazonaws.com"}, "Action": actions,
            "Condition": condition}]})
    }

    const TAGS: &[(&str, &str)] = &[
        (
            "eks-cluster-arn",
            "arn:aws:eks:us-west-2:123456789012:cluster/c",
        ),
        ("kubernetes-namespace", "demo"),
        ("kubernetes-service-account", "demo-app"),
    ];

    #[test]
    fn the_trust_pwless_writes_admits_its_service_account_only() {
        let document = trust(
            json!({"StringEquals": {
                "aws:RequestTag/eks-cluster-arn": "arn:aws:eks:us-west-2:123456789012:cluster/c",
                "aws:RequestTag/kubernetes-namespace": "demo",
                "aws:RequestTag/kubernetes-service-account": "demo-app"}}),
            json!(["sts:AssumeRole", "sts:TagSession"]),
        );
        assert_eq!(trust_allows(&document, TAGS, false), Ok(()));
        let other = [TAGS[0], TAGS[1], ("kubernetes-service-account", "other")];
        assert!(trust_allows(&document, &other, false).is_err());
        // Without sts:TagSession EKS cannot tag the session.
        let untagged = trust(
            json!({"StringEquals": {"aws:RequestTag/kubernetes-namespace": "demo"}}),
            json!("sts:AssumeRole"),
        );
        assert!(
            trust_allows(&untagged, TAGS, false)
                .unwrap_err()
                .contains("TagSession")
        );
        // Another condition key is not emulated: the sandbox does not honour the statement,
        // doctor takes it as holding.
        let unknown = trust(
            json!({"StringEquals": {"aws:SourceAccount": "123456789012"}}),
            json!("sts:*"),
        );
        assert!(trust_allows(&unknown, TAGS, false).is_err());
        assert_eq!(trust_allows(&unknown, TAGS, true), Ok(()));
        let mut denied = document.clone();
        denied["Statement"]
            .as_array_mut()
            .unwrap()
            .push(json!({"Effect": "Deny", "Principal": "*", "Action": "sts:TagSession"}));
        assert!(
            trust_allows(&denied, TAGS, false)
                .unwrap_err()
                .contains("Deny")
        );
    }
}
