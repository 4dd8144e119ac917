//! EKS bearer tokens: how pwless authenticates to a cluster's Kubernetes API without kubectl,
//! a kubeconfig or aws-iam-authenticator.
//!
//! The token is `k8s-aws-v1.` + base64url (unpadded) of a presigned STS
//! `GetCallerIdentity` URL whose signature covers the `x-k8s-aws-id: <cluster name>` header,
//! valid 60 s for the presign (EKS accepts the token for 15 minutes) — byte for byte what
//! `aws eks get-token` prints for the same credentials, region, cluster and time. EKS calls STS
//! with it and maps the caller to its access entry.

use std::time::SystemTime;

use base64::Engine as _;

use crate::secret::Secret;
use crate::token::{Presign, SigningCredentials, amz_date, presign_query, signing_key};

pub const TOKEN_PREFIX: &str = "k8s-aws-v1.";
/// The header that binds a token to one cluster.
pub const CLUSTER_HEADER: &str = "x-k8s-aws-id";
/// How long the presigned URL is valid, as `aws eks get-token` signs it.
const PRESIGN_SECONDS: u32 = 60;
/// How long EKS accepts a token: callers make a new one well before this.
pub const TOKEN_LIFETIME: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// The regional STS host a token is signed for (`sts.us-west-2.amazonaws.com`), in the
/// region's partition ([`crate::partition::Partition::sts_host`]).
pub fn sts_host(region: &str) -> String {
    crate::partition::Partition::of_region(region).sts_host(region)
}

/// A bearer token for the cluster named `cluster_name`, signed as of `now`.
pub fn token(
    credentials: &SigningCredentials,
    region: &str,
    cluster_name: &str,
    now: SystemTime,
) -> Secret {
    let stamp = amz_date(now);
    let key = signing_key(credentials, &stamp[..8], region, "sts");
    let host = sts_host(region);
    let query = presign_query(
        credentials,
        &key,
        &Presign {
            region,
            service: "sts",
            stamp: &stamp,
            params: "Action=GetCallerIdentity&Version=2011-06-15",
            expires: PRESIGN_SECONDS,
            host: &host,
            extra_headers: &[(CLUSTER_HEADER, cluster_name)],
        },
    );
    let url = format!("https://{host}/?{query}");
    let mut token = String::from(TOKEN_PREFIX);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(url.as_bytes(), &mut token);
    Secret::new(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_a_presigned_get_caller_identity_bound_to_the_cluster() {
        let credentials = SigningCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Secret::new("secret".into()),
            session_token: None,
        };
        let token = token(&credentials, "us-west-2", "main", SystemTime::UNIX_EPOCH);
        let encoded = token.expose().strip_prefix(TOKEN_PREFIX).unwrap();
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(encoded)
            .unwrap();
        let url = String::from_utf8(url).unwrap();
        assert!(
            url.starts_with(
                "https://sts.us-west-2.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&"
            ),
            "{url}"
        );
        assert!(
            url.contains("X-Amz-SignedHeaders=host%3Bx-k8s-aws-id"),
            "{url}"
        );
        assert!(url.contains("X-Amz-Expires=60"), "{url}");
        assert!(!format!("{token:?}").contains("X-Amz"));
        assert_eq!(sts_host("cn-north-1"), "sts.cn-north-1.amazonaws.com.cn");
    }
}
