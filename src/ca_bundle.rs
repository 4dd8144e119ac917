//! The RDS CA bundle without a manual download.
//!
//! pwless verifies the database certificate against the RDS certificate authorities
//! (`verify-full`). Where the bundle comes from, first match wins:
//! 1. `PWLESS_DB_CA_BUNDLE`, else the stack's `database.ca_bundle` (a path of the user's);
//! 2. `global-bundle.pem` beside the stack file, when there is one;
//! 3. the user's cache, `$XDG_CACHE_HOME/pwless/rds-global-bundle.pem` (else
//!    `$HOME/.cache/pwless/…`; another file per partition, [`cache_file`]), fetched over HTTPS
//!    from the address AWS publishes for the stack's partition
//!    ([`crate::partition::Partition::rds_ca_bundle_url`]: [`DEFAULT_URL`] in the commercial
//!    partition) the first time it is needed, and said so on stderr. `PWLESS_RDS_CA_BUNDLE_URL`
//!    overrides the address (a mirror, or a test server); the server's certificate is checked
//!    against the system's roots (`SSL_CERT_FILE` and `SSL_CERT_DIR` are honoured).
//!
//! A fetched bundle is kept only when it holds at least one PEM certificate, and is written
//! whole (a temporary file renamed into place), so a half download is never used.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::partition::Partition;

/// Where AWS publishes the bundle of every commercial region's RDS certificate authorities.
pub const DEFAULT_URL: &str = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem";
/// The variable that overrides the partition's address.
pub const URL_VARIABLE: &str = "PWLESS_RDS_CA_BUNDLE_URL";
/// A bundle larger than this is not the RDS bundle (it is about 160 KB).
const MAX_BYTES: usize = 4 * 1024 * 1024;
/// How long the whole fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// The address to fetch from for a stack in `region`: `PWLESS_RDS_CA_BUNDLE_URL`, else the
/// address AWS publishes for the region's partition.
pub fn url(region: &str) -> String {
    std::env::var(URL_VARIABLE)
        .ok()
        .filter(|value| !value.is_empty())
        .unwrap_or_else(|| Partition::of_region(region).rds_ca_bundle_url(region))
}

/// The cached bundle's file name for a stack in `region`: `rds-global-bundle.pem` in the
/// commercial partition, `rds-aws-us-gov-global-bundle.pem` in GovCloud, the region's own
/// (`rds-cn-north-1-bundle.pem`) in China, as the bundles differ.
pub fn cache_file(region: &str) -> String {
    match Partition::of_region(region) {
        Partition::Aws => "rds-global-bundle.pem".to_string(),
        Partition::AwsUsGov => "rds-aws-us-gov-global-bundle.pem".to_string(),
        Partition::AwsCn => format!("rds-{region}-bundle.pem"),
    }
}

/// The cached bundle's path: `$XDG_CACHE_HOME/pwless/<cache_file>`, else
/// `$HOME/.cache/pwless/<cache_file>`; `None` when neither variable is set.
pub fn cache_path(region: &str) -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
    let base = var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("pwless").join(cache_file(region)))
}

/// The one command that fetches the bundle to `path` by hand.
pub fn fetch_command(path: &Path, url: &str) -> String {
    let dir = path.parent().unwrap_or(Path::new("."));
    format!(
        "mkdir -p '{}' && curl -fsSL '{url}' -o '{}'",
        dir.display(),
        path.display()
    )
}

/// A bundle [`ensure`] fetched; its `Display` is the line that tells the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub certificates: usize,
    pub url: String,
    pub path: PathBuf,
}

impl std::fmt::Display for Fetched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Fetched the RDS CA bundle ({} certificates) from {} into {}",
            self.certificates,
            self.url,
            self.path.display()
        )
    }
}

/// Makes sure the bundle is at `path`: nothing to do when a file is there (`None`); else
/// fetches it from `url` and writes it whole (`Some`, for the caller to tell the user).
/// Errors (one line, with the command that fetches it by hand): the address cannot be
/// reached, answers other than 200, or sends no PEM certificate; the file cannot be written.
pub async fn ensure(path: &Path, url: &str) -> Result<Option<Fetched>, String> {
    if path.exists() {
        return Ok(None);
    }
    let failed = |why: String| {
        format!(
            "no RDS CA bundle at {}, and it cannot be fetched from {url}: {why}; fetch it with `{}`, or point PWLESS_DB_CA_BUNDLE at a copy",
            path.display(),
            fetch_command(path, url)
        )
    };
    let bytes = tokio::time::timeout(FETCH_TIMEOUT, fetch(url))
        .await
        .map_err(|_| failed(format!("no answer within {} s", FETCH_TIMEOUT.as_secs())))?
        .map_err(failed)?;
    let certificates = crate::db::certificates(&bytes)
        .map_err(|error| failed(format!("the answer is not PEM certificates ({error})")))?;
    if certificates.is_empty() {
        return Err(failed("the answer holds no certificate".into()));
    }
    write_whole(path, &bytes).map_err(|error| {
        format!(
            "cannot write the RDS CA bundle to {}: {error}; point PWLESS_DB_CA_BUNDLE at a copy",
            path.display()
        )
    })?;
    Ok(Some(Fetched {
        certificates: certificates.len(),
        url: url.to_string(),
        path: path.to_path_buf(),
    }))
}

/// GET `url` over HTTPS (HTTP/1.1, the system's roots), the body when the answer is 200.
async fn fetch(url: &str) -> Result<Vec<u8>, String> {
    use http_body_util::BodyExt as _;
    let uri: http::Uri = url
        .parse()
        .map_err(|error| format!("`{url}` is not a URL ({error})"))?;
    if uri.scheme_str() != Some("https") {
        return Err(format!(
            "`{url}` is not an https:// address (the bundle is what every later check trusts)"
        ));
    }
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())
        .map_err(|error| format!("cannot load the system's root certificates ({error})"))?
        .https_only()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, http_body_util::Empty<bytes::Bytes>>(connector);
    let response = client
        .get(uri)
        .await
        .map_err(|error| crate::errors::chain(&error))?;
    if response.status() != http::StatusCode::OK {
        return Err(format!("the server answered {}", response.status()));
    }
    let body = http_body_util::Limited::new(response.into_body(), MAX_BYTES)
        .collect()
        .await
        .map_err(|error| format!("the answer broke off ({error})"))?;
    Ok(body.to_bytes().to_vec())
}

/// Writes `bytes` to a temporary file beside `path`, then renames it into place.
fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&temporary);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fetch_command_names_the_path_and_the_address() {
        let command = fetch_command(
            Path::new("/home/a/.cache/pwless/rds-global-bundle.pem"),
            DEFAULT_URL,
        );
        assert_eq!(
            command,
            "mkdir -p '/home/a/.cache/pwless' && curl -fsSL 'https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem' -o '/home/a/.cache/pwless/rds-global-bundle.pem'"
        );
    }

    /// Each partition's bundle is cached under its own name, so a laptop with stacks in two
    /// partitions never verifies one's database against the other's authorities.
    #[test]
    fn each_partition_caches_its_own_bundle() {
        let files: std::collections::BTreeSet<String> = [
            "us-west-2",
            "eu-central-1",
            "cn-north-1",
            "cn-northwest-1",
            "us-gov-west-1",
            "us-gov-east-1",
        ]
        .into_iter()
        .map(cache_file)
        .collect();
        assert_eq!(
            files.into_iter().collect::<Vec<_>>(),
            [
                "rds-aws-us-gov-global-bundle.pem",
                "rds-cn-north-1-bundle.pem",
                "rds-cn-northwest-1-bundle.pem",
                "rds-global-bundle.pem"
            ]
        );
        assert_eq!(Partition::Aws.rds_ca_bundle_url("us-west-2"), DEFAULT_URL);
    }
}
