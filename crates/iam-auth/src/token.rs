//! RDS IAM authentication tokens: a SigV4 query-presigned
//! `https://host:port/?Action=connect&DBUser=...` for service `rds-db`, valid 900 s, scheme
//! stripped — byte for byte what botocore's `generate_db_auth_token` makes for the same
//! credentials, time, host, port, user and region.
//!
//! Usable by other Rust programs: [`TokenSigner`] holds credentials (from the standard chain
//! with [`TokenSigner::from_environment`]) and a region, which is required — no silent
//! `us-east-1`. The token is an [`AuthToken`], whose `Debug`/`Display` are redacted; the raw
//! value comes out only through [`AuthToken::expose`], for the connection that needs it.

use std::fmt;
use std::sync::Mutex;
use std::time::SystemTime;

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::secret::Secret;

/// How long a token is valid: the most RDS accepts.
pub const EXPIRES_SECONDS: u32 = 900;
const SERVICE: &str = "rds-db";
/// SHA-256 of the empty payload.
const EMPTY_PAYLOAD_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error(
        "a region is required to sign a database token (pass --region or set AWS_REGION); pwless never guesses one"
    )]
    NoRegion,
    #[error("no AWS credentials found in the standard chain: {0}")]
    NoCredentials(String),
    #[error("the {0} must not be empty")]
    Empty(&'static str),
}

/// An IAM database authentication token. Never printed by accident: `Debug` and `Display`
/// show `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthToken(Secret);

impl AuthToken {
    /// The token, to hand to the connection as its password.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }
}

impl fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthToken([redacted])")
    }
}

impl fmt::Display for AuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// AWS credentials for signing.
#[derive(Debug, Clone)]
pub struct SigningCredentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
}

impl From<&aws_credential_types::Credentials> for SigningCredentials {
    /// The SDK's credentials, with the secret parts held as [`Secret`]s.
    fn from(credentials: &aws_credential_types::Credentials) -> Self {
        SigningCredentials {
            access_key_id: credentials.access_key_id().to_string(),
            secret_access_key: Secret::new(credentials.secret_access_key().to_string()),
            session_token: credentials
                .session_token()
                .map(|token| Secret::new(token.to_string())),
        }
    }
}

/// Signs tokens for one set of credentials in one region. The derived signing key changes
/// once a day and is cached, so a token costs two hashes and one HMAC after the first.
pub struct TokenSigner {
    credentials: SigningCredentials,
    region: String,
    /// (date `YYYYMMDD`, signing key for that date)
    key: Mutex<Option<(String, [u8; 32])>>,
}

impl fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSigner")
            .field("access_key_id", &self.credentials.access_key_id)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl TokenSigner {
    pub fn new(credentials: SigningCredentials, region: &str) -> Result<Self, TokenError> {
        if region.is_empty() {
            return Err(TokenError::NoRegion);
        }
        Ok(TokenSigner {
            credentials,
            region: region.to_string(),
            key: Mutex::new(None),
        })
    }

    /// Credentials from the standard AWS chain (environment, profiles, SSO, web identity as
    /// IRSA sets it up, container credentials as EKS Pod Identity does).
    pub async fn from_environment(region: &str) -> Result<Self, TokenError> {
        use aws_credential_types::provider::ProvideCredentials;
        if region.is_empty() {
            return Err(TokenError::NoRegion);
        }
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_string()))
            .load()
            .await;
        let provider = config
            .credentials_provider()
            .ok_or_else(|| TokenError::NoCredentials("no provider configured".into()))?;
        let credentials = provider
            .provide_credentials()
            .await
            .map_err(|error| TokenError::NoCredentials(error.to_string()))?;
        TokenSigner::new(SigningCredentials::from(&credentials), region)
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// A token for `user` at `host:port`, signed as of `now`. The host is signed in lower case
    /// and kept as written in the token's URL, byte for byte as botocore's
    /// `generate_db_auth_token` makes it (tests/it/token.rs compares the two).
    pub fn token(
        &self,
        host: &str,
        port: u16,
        user: &str,
        now: SystemTime,
    ) -> Result<AuthToken, TokenError> {
        if host.is_empty() {
            return Err(TokenError::Empty("database host"));
        }
        if user.is_empty() {
            return Err(TokenError::Empty("database user"));
        }
        let stamp = amz_date(now);
        let key = self.signing_key(&stamp[..8]);
        let mut params = String::with_capacity(64);
        params.push_str("Action=connect&DBUser=");
        encode_into(&mut params, user);
        // Host names are case-insensitive (RFC 4343): the signed host header is the host in
        // lower case, as botocore signs it (`urlsplit(url).hostname`), whatever case the user
        // wrote; the URL keeps it as written, as botocore's does.
        let host_header = if port == 443 {
            host.to_ascii_lowercase()
        } else {
            format!("{}:{port}", host.to_ascii_lowercase())
        };
        let query = presign_query(
            &self.credentials,
            &key,
            &Presign {
                region: &self.region,
                service: SERVICE,
                stamp: &stamp,
                params: &params,
                expires: EXPIRES_SECONDS,
                host: &host_header,
                extra_headers: &[],
            },
        );
        // The URL always names the port; the signed host header drops the default one.
        let mut token = String::with_capacity(host.len() + 7 + query.len());
        token.push_str(host);
        token.push(':');
        token.push_str(&port.to_string());
        token.push_str("/?");
        token.push_str(&query);
        Ok(AuthToken(Secret::new(token)))
    }

    fn signing_key(&self, date: &str) -> [u8; 32] {
        let mut cached = self
            .key
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((cached_date, key)) = cached.as_ref()
            && cached_date == date
        {
            return *key;
        }
        let key = signing_key(&self.credentials, date, &self.region, SERVICE);
        *cached = Some((date.to_string(), key));
        key
    }
}

/// `20261124T120000Z`: SigV4's timestamp of `now`.
///
/// This and [`signing_key`], [`Presign`] and [`presign_query`] are the one SigV4 query presigner
/// ("Authenticating Requests: Using Query Parameters (AWS Signature Version 4)", Amazon S3 API
/// Reference) behind RDS auth tokens here and pwless's EKS bearer tokens.
pub fn amz_date(now: SystemTime) -> String {
    // "2026-11-24T12:00:00Z" -> "20261124T120000Z"
    humantime::format_rfc3339_seconds(now)
        .to_string()
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect()
}

/// The SigV4 signing key of one day, region and service.
pub fn signing_key(
    credentials: &SigningCredentials,
    date: &str,
    region: &str,
    service: &str,
) -> [u8; 32] {
    let secret = format!("AWS4{}", credentials.secret_access_key.expose());
    let key = [date, region, service, "aws4_request"]
        .iter()
        .fold(None::<[u8; 32]>, |key, part| {
            Some(hmac(
                key.as_ref().map_or(secret.as_bytes(), |key| key.as_slice()),
                part.as_bytes(),
            ))
        });
    key.unwrap_or_default()
}

/// What one SigV4 query presign of a `GET /` covers.
pub struct Presign<'a> {
    pub region: &'a str,
    pub service: &'a str,
    /// `YYYYMMDDTHHMMSSZ`, from [`amz_date`].
    pub stamp: &'a str,
    /// The request's own parameters, encoded and sorted, all sorting before `X-Amz-*`
    /// (`Action=connect&DBUser=u`).
    pub params: &'a str,
    pub expires: u32,
    /// The `host` header as signed.
    pub host: &'a str,
    /// Further signed headers, lowercase names sorting after `host`, in order.
    pub extra_headers: &'a [(&'a str, &'a str)],
}

/// The query string of a presigned `GET /`, signature last, laid out as botocore's
/// `SigV4QueryAuth` lays it out.
pub fn presign_query(
    credentials: &SigningCredentials,
    key: &[u8; 32],
    presign: &Presign<'_>,
) -> String {
    let scope = format!(
        "{}/{}/{}/aws4_request",
        &presign.stamp[..8],
        presign.region,
        presign.service
    );
    let credential = format!("{}/{scope}", credentials.access_key_id);
    let mut signed_headers = String::from("host");
    let mut canonical_headers = format!("host:{}\n", presign.host);
    for (name, value) in presign.extra_headers {
        signed_headers.push(';');
        signed_headers.push_str(name);
        canonical_headers.push_str(&format!("{name}:{}\n", value.trim()));
    }

    let mut query = String::with_capacity(1024);
    query.push_str(presign.params);
    query.push_str("&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=");
    encode_into(&mut query, &credential);
    query.push_str("&X-Amz-Date=");
    query.push_str(presign.stamp);
    query.push_str("&X-Amz-Expires=");
    query.push_str(&presign.expires.to_string());
    // The canonical query is sorted: the session token sorts before SignedHeaders, though
    // the final URL puts it after (as botocore does).
    let mut canonical_query = query.clone();
    let mut token_param = String::new();
    if let Some(token) = &credentials.session_token {
        token_param.push_str("&X-Amz-Security-Token=");
        encode_into(&mut token_param, token.expose());
        canonical_query.push_str(&token_param);
    }
    let mut signed_param = String::from("&X-Amz-SignedHeaders=");
    encode_into(&mut signed_param, &signed_headers);
    canonical_query.push_str(&signed_param);
    query.push_str(&signed_param);
    query.push_str(&token_param);

    let canonical_request = format!(
        "GET\n/\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{EMPTY_PAYLOAD_SHA256}"
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
        presign.stamp,
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    query.push_str("&X-Amz-Signature=");
    query.push_str(&hex::encode(hmac(key, string_to_sign.as_bytes())));
    query
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length: new_from_slice cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// AWS's URI encoding (RFC 3986 unreserved characters kept, uppercase hex).
pub(crate) fn encode_into(out: &mut String, text: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(byte >> 4)] as char);
            out.push(HEX[usize::from(byte & 15)] as char);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(token: Option<&str>) -> TokenSigner {
        TokenSigner::new(
            SigningCredentials {
                access_key_id: "AKIDEXAMPLE".into(),
                secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into()),
                session_token: token.map(|token| Secret::new(token.into())),
            },
            "us-west-2",
        )
        .unwrap()
    }

    #[test]
    fn tokens_never_print_themselves() {
        let token = signer(None)
            .token("db", 5432, "u", SystemTime::now())
            .unwrap();
        assert_eq!(format!("{token}"), "[redacted]");
        assert!(!format!("{token:?}").contains("X-Amz"));
        assert!(token.expose().contains("X-Amz-Signature="));
        assert!(!format!("{:?}", signer(Some("tok"))).contains("wJalr"));
    }

    #[test]
    fn a_region_is_required() {
        let credentials = signer(None).credentials.clone();
        assert_eq!(
            TokenSigner::new(credentials, "").unwrap_err(),
            TokenError::NoRegion
        );
    }

    #[test]
    fn encoding_is_aws_uri_encoding() {
        let mut out = String::new();
        encode_into(&mut out, "a b+/=ü~._-");
        assert_eq!(out, "a%20b%2B%2F%3D%C3%BC~._-");
    }
}
