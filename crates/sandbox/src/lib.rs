//! Acting as a Kubernetes service account in the sandbox, without a cluster: what EKS's pod
//! identity webhook and STS would do for a pod, done by `pwless sandbox run`.
//!
//! On EKS a pod gets a projected service-account token (a JWT from the cluster's OIDC issuer)
//! and the SDK trades it for the IRSA role's credentials with `AssumeRoleWithWebIdentity`; STS
//! checks the role's trust policy against the token's claims. moto issues the credentials but
//! checks nothing, so [`trust_allows`] does STS's part: the statement must allow
//! `sts:AssumeRoleWithWebIdentity` to the cluster's OIDC provider, and every condition on the
//! issuer's `sub`/`aud` keys must hold (`StringEquals`, `StringLike`); a statement with another
//! condition is not honoured. The credentials are then registered with the sandbox's token
//! verifier (scripts/iam-verifier.py), which cannot learn secrets from moto.
//!
//! The sandbox's tools, in a crate of their own (issue 15): `pwless sandbox run` uses them; the
//! rest of the product does not.

#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod pod_identity;

use std::path::Path;

use base64::Engine as _;
use serde_json::{Value, json};

/// Whether a role's trust policy lets a web identity with these claims assume it: `Ok`, or
/// why not. A condition other than `StringEquals`/`StringLike` on the issuer's `sub` and `aud`
/// cannot be told here: with `unknown_holds` false the statement then does not apply (the
/// sandbox, which honours only what it emulates); with it true the condition is taken as
/// holding (`pwless doctor` on AWS, where `aws:SourceAccount` and the like are common).
pub fn trust_allows(
    document: &Value,
    provider_arn: &str,
    issuer: &str,
    subject: &str,
    audience: &str,
    unknown_holds: bool,
) -> Result<(), String> {
    let host = issuer.trim_start_matches("https://").trim_end_matches('/');
    let claims = [
        (format!("{host}:sub"), subject),
        (format!("{host}:aud"), audience),
    ];
    let statements = match document.get("Statement") {
        Some(Value::Array(items)) => items.clone(),
        Some(single) => vec![single.clone()],
        None => Vec::new(),
    };
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
    let mut denied = None;
    let mut allowed = false;
    for statement in &statements {
        let actions = list(statement.get("Action"));
        if !actions
            .iter()
            .any(|action| wildcard(&action.to_lowercase(), "sts:assumerolewithwebidentity"))
        {
            continue;
        }
        let principals = list(statement.get("Principal").and_then(|p| p.get("Federated")));
        if !principals.iter().any(|principal| principal == provider_arn) {
            continue;
        }
        let conditions_hold = match statement.get("Condition") {
            None => Ok(()),
            Some(Value::Object(operators)) => operators.iter().try_for_each(|(operator, keys)| {
                let Some(keys) = keys.as_object() else {
                    return Err(format!("condition `{operator}` is not a map"));
                };
                keys.iter().try_for_each(|(key, expected)| {
                    let known = matches!(operator.as_str(), "StringEquals" | "StringLike");
                    let Some(claim) = claims
                        .iter()
                        .find(|(name, _)| name == key && known)
                        .map(|(_, value)| *value)
                    else {
                        return if unknown_holds {
                            Ok(())
                        } else {
                            Err(format!("condition `{operator}` on `{key}` is not emulated"))
                        };
                    };
                    let expected = list(Some(expected));
                    let holds = if operator == "StringEquals" {
                        expected.iter().any(|value| value == claim)
                    } else {
                        expected.iter().any(|value| wildcard(value, claim))
                    };
                    if holds {
                        Ok(())
                    } else {
                        Err(format!(
                            "{operator} {key} wants {expected:?}, the token has {claim:?}"
                        ))
                    }
                })
            }),
            Some(_) => Err("the condition is not a map".to_string()),
        };
        match (
            statement.get("Effect").and_then(Value::as_str),
            conditions_hold,
        ) {
            (Some("Deny"), Ok(())) => return Err("an explicit Deny in the trust policy".into()),
            (Some("Allow"), Ok(())) => allowed = true,
            (Some("Allow"), Err(reason)) => denied = Some(reason),
            _ => {}
        }
    }
    if allowed {
        Ok(())
    } else {
        Err(denied.unwrap_or_else(|| {
            format!("no statement lets a web identity from {provider_arn} assume the role")
        }))
    }
}

/// IAM's `*` and `?` wildcards: `*` any run of characters, `?` any one character (also
/// `pwless doctor`'s policy evaluation).
pub fn wildcard(pattern: &str, text: &str) -> bool {
    let (pattern, text): (Vec<char>, Vec<char>) =
        (pattern.chars().collect(), text.chars().collect());
    // Iterative glob match with backtracking to the last star.
    let (mut p, mut t, mut star, mut mark) = (0, 0, None, 0);
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some(p);
            mark = t;
            p += 1;
        } else if let Some(position) = star {
            p = position + 1;
            mark += 1;
            t = mark;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

/// A projected service-account token as EKS would mint it (unsigned: moto's STS checks no
/// signature, and [`trust_allows`] checks the claims).
pub fn web_identity_token(issuer: &str, subject: &str, audience: &str, now: u64) -> String {
    let encode = |value: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string().as_bytes())
    };
    let header = json!({"alg": "RS256", "kid": "pwless-sandbox", "typ": "JWT"});
    let claims = json!({"iss": issuer, "sub": subject, "aud": [audience], "iat": now, "nbf": now, "exp": now + 3600});
    format!("{}.{}.c2FuZGJveA", encode(&header), encode(&claims))
}

/// Adds credentials to the verifier's registry (a JSON map from access key id), written
/// atomically so a login in between reads the old or the new file, never half of one. Writers
/// take turns (an exclusive lock on `<registry>.lock`, across processes and the Pod Identity
/// agent's concurrent requests), so none loses another's entry. A registry that is not JSON is
/// an error, never silently emptied.
pub fn register_credentials(
    registry: &Path,
    access_key_id: &str,
    secret_access_key: &str,
    session_token: Option<&str>,
) -> std::io::Result<()> {
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(registry.with_extension("lock"))?;
    lock.lock()?;
    let mut entries: serde_json::Map<String, Value> = match std::fs::read(registry) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|error| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} is not the registry's JSON: {error}", registry.display()),
            )
        })?,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Default::default(),
        Err(error) => return Err(error),
    };
    entries.insert(
        access_key_id.to_string(),
        json!({"secret_access_key": secret_access_key, "session_token": session_token}),
    );
    let temporary = registry.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&temporary, Value::Object(entries).to_string())?;
    std::fs::rename(&temporary, registry)
    // The lock goes with `lock`.
}

/// The temporary credentials of a service account's IRSA role, as STS hands them to a pod
/// (Debug shows the secrets as `[redacted]`).
#[derive(Debug)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: pwless_iam_auth::secret::Secret,
    pub session_token: pwless_iam_auth::secret::Secret,
}

/// A service account as IRSA sees it: its role (ARN and name), the cluster's OIDC issuer and
/// provider, and the token's audience.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// `system:serviceaccount:NAMESPACE:NAME`, the token's `sub`.
    pub subject: String,
    /// The token's `aud` (`sts.amazonaws.com` for IRSA).
    pub audience: String,
    pub role_arn: String,
    pub role_name: String,
    pub issuer: String,
    pub oidc_provider_arn: String,
}

/// Why [`assume_as`] could not get a service account's credentials; each says what a pod on
/// EKS would meet, with the cause from below.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AssumeError(pub(crate) String);

/// What EKS and STS do for a pod of `identity`: reads the role's trust policy from IAM and
/// checks it as STS would ([`trust_allows`]), makes the service-account token
/// ([`web_identity_token`]) and trades it with STS `AssumeRoleWithWebIdentity` for the role's
/// credentials. Errors: the role cannot be read, its trust would refuse the service account,
/// STS refuses (each with the cause from below).
pub async fn assume_as(
    config: &aws_config::SdkConfig,
    identity: &Identity,
) -> Result<Credentials, AssumeError> {
    use AssumeError as UserError;
    let Identity {
        subject,
        audience,
        role_arn,
        role_name,
        issuer,
        oidc_provider_arn,
    } = identity;
    let iam = aws_sdk_iam::Client::new(config);
    let role = iam
        .get_role()
        .role_name(role_name)
        .send()
        .await
        .map_err(|error| {
            UserError(format!(
                "cannot read IAM role {role_name}: {}",
                pwless_iam_auth::errors::chain(&error)
            ))
        })?;
    let document = role
        .role()
        .and_then(|role| role.assume_role_policy_document())
        // IAM answers policy documents percent-encoded (RFC 3986).
        .map(|document| percent_encoding::percent_decode_str(document).decode_utf8_lossy())
        .unwrap_or_default();
    let document: Value = serde_json::from_str(&document).unwrap_or_default();
    trust_allows(
        &document,
        oidc_provider_arn,
        issuer,
        subject,
        audience,
        false,
    )
    .map_err(|why| {
        UserError(format!(
            "STS would refuse {subject} the role {role_name}: {why}"
        ))
    })?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default();
    let token = web_identity_token(issuer, subject, audience, now);
    let service_account = subject.rsplit(':').next().unwrap_or(subject);
    let assumed = aws_sdk_sts::Client::new(config)
        .assume_role_with_web_identity()
        .role_arn(role_arn)
        .role_session_name(format!("pwless-sandbox-{service_account}"))
        .web_identity_token(token)
        .send()
        .await
        .map_err(|error| {
            UserError(format!(
                "the sandbox STS refused {subject} the role {role_name}: {}",
                pwless_iam_auth::errors::chain(&error)
            ))
        })?;
    let credentials = assumed
        .credentials
        .ok_or_else(|| UserError("STS answered without credentials".into()))?;
    Ok(Credentials {
        access_key_id: credentials.access_key_id().to_string(),
        secret_access_key: pwless_iam_auth::secret::Secret::new(
            credentials.secret_access_key().to_string(),
        ),
        session_token: pwless_iam_auth::secret::Secret::new(
            credentials.session_token().to_string(),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROVIDER: &str =
        "arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-west-2.amazonaws.com/id/X";
    const ISSUER: &str = "https://oidc.eks.us-west-2.amazonaws.com/id/X";

    fn trust(condition: Value) -> Value {
        json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Federated": PROVIDER},
            "Action": "sts:AssumeRoleWithWebIdentity", "Condition": condition}]})
    }

    #[test]
    fn the_trust_pwless_writes_admits_its_service_account_only() {
        let document = trust(json!({"StringEquals": {
            "oidc.eks.us-west-2.amazonaws.com/id/X:sub": "system:serviceaccount:demo:demo-app",
            "oidc.eks.us-west-2.amazonaws.com/id/X:aud": "sts.amazonaws.com"}}));
        let check = |subject: &str, audience: &str| {
            trust_allows(&document, PROVIDER, ISSUER, subject, audience, false)
        };
        assert!(check("system:serviceaccount:demo:demo-app", "sts.amazonaws.com").is_ok());
        assert!(check("system:serviceaccount:demo:other", "sts.amazonaws.com").is_err());
        assert!(check("system:serviceaccount:demo:demo-app", "other-audience").is_err());
        let other_provider = "arn:aws:iam::123456789012:oidc-provider/elsewhere";
        assert!(
            trust_allows(
                &document,
                other_provider,
                ISSUER,
                "system:serviceaccount:demo:demo-app",
                "sts.amazonaws.com",
                false
            )
            .is_err()
        );
    }

    #[test]
    fn string_like_and_unknown_operators() {
        let like = trust(
            json!({"StringLike": {"oidc.eks.us-west-2.amazonaws.com/id/X:sub": "system:serviceaccount:demo:*"}}),
        );
        assert!(
            trust_allows(
                &like,
                PROVIDER,
                ISSUER,
                "system:serviceaccount:demo:any",
                "x",
                false
            )
            .is_ok()
        );
        assert!(
            trust_allows(
                &like,
                PROVIDER,
                ISSUER,
                "system:serviceaccount:prod:any",
                "x",
                false
            )
            .is_err()
        );
        let unknown = trust(json!({"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}));
        assert!(trust_allows(&unknown, PROVIDER, ISSUER, "s", "a", false).is_err());
        // `pwless doctor` cannot tell such a condition, and takes it as holding.
        assert!(trust_allows(&unknown, PROVIDER, ISSUER, "s", "a", true).is_ok());
    }

    #[test]
    fn wildcards_are_iams() {
        assert!(wildcard("a*c", "abbbc") && wildcard("a?c", "abc") && wildcard("*", ""));
        assert!(!wildcard("a?c", "ac") && !wildcard("abc", "abcd"));
    }
}
