//! State in S3.
//!
//! - The state object is written with compare-and-swap: `If-Match` on the ETag that was read
//!   (`If-None-Match: *` for the first write), so a writer holding a stale copy is refused
//!   with 412 instead of clobbering a newer state.
//! - The lock is an object beside it, `<key>.lock`, created with `If-None-Match: *` and holding
//!   who/when/what. Its holder renews it (a conditional rewrite) every third of the lease; a
//!   lock whose object has not been rewritten for a whole lease (S3's own `Last-Modified`) is
//!   stale, and the next run takes it over with `If-Match` on its ETag, so two runs can never
//!   both take over the same stale lock. A crashed holder's lock thus ends by itself.
//! - A holder that cannot renew (someone took the lock over, or S3 was out of reach for a
//!   lease) marks the lock lost and makes no further write.
//! - Every write asks for server-side encryption: SSE-KMS with `kms_key_id`, else AES256.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;

use super::{LockInfo, Revision, StateError};
use crate::provider::aws::sdk_error;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub bucket: String,
    pub key: String,
    pub region: String,
    pub lease: Duration,
    pub kms_key_id: Option<String>,
}

impl Target {
    pub fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    fn lock_key(&self) -> String {
        format!("{}.lock", self.key)
    }
}

/// What the lock object holds.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct LockRecord {
    #[serde(flatten)]
    info: LockInfo,
    lease_seconds: u64,
    renewed: String,
}

/// A client for the bucket's region; path-style addressing when the endpoint is overridden
/// (a local S3 emulator, MinIO), since those do not serve bucket subdomains.
pub(crate) async fn client(target: &Target) -> aws_sdk_s3::Client {
    let config = crate::provider::aws::load_config(&target.region).await;
    let mut builder = aws_sdk_s3::config::Builder::from(&config);
    if config.endpoint_url().is_some() {
        builder = builder.force_path_style(true);
    }
    aws_sdk_s3::Client::from_conf(builder.build())
}

/// A held lock and the client that renews it.
pub struct S3Store {
    client: aws_sdk_s3::Client,
    target: Target,
    lock: Arc<LockState>,
    renewer: tokio::task::JoinHandle<()>,
    /// What the user should know about the lock taken (a takeover) and the bucket (no
    /// versioning), one line each, for the caller to say.
    notices: Vec<String>,
}

struct LockState {
    /// The lock object's ETag as we last wrote it; `None` once released.
    etag: tokio::sync::Mutex<Option<String>>,
    /// Why the lock is no longer ours, once it is not.
    lost: Mutex<Option<String>>,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// How a failed S3 call reads to the user: one line saying what and what to do.
fn explain(target: &Target, action: &str, error: crate::provider::ProviderError) -> StateError {
    let code = error.code.as_deref().unwrap_or_default();
    StateError::Backend(match code {
        "LostAnswer" => error.message,
        "NoSuchBucket" => format!(
            "S3 bucket `{}` does not exist (in {}): create it, with versioning on so earlier states are kept, or fix `state.bucket` in the stack file; nothing was changed",
            target.bucket, target.region
        ),
        "AccessDenied" | "Forbidden" | "AllAccessDisabled" => format!(
            "no permission to {action} {}: the caller needs s3:GetObject, s3:PutObject and s3:DeleteObject on arn:aws:s3:::{}/{}*; nothing was changed",
            target.location(),
            target.bucket,
            target.key
        ),
        "PermanentRedirect" | "AuthorizationHeaderMalformed" => format!(
            "S3 bucket `{}` is not in {}: set `state.region` to the bucket's region; nothing was changed",
            target.bucket, target.region
        ),
        _ => format!("{}; nothing was changed", error.message),
    })
}

fn is_precondition(error: &crate::provider::ProviderError) -> bool {
    matches!(
        error.code.as_deref(),
        Some("PreconditionFailed" | "ConditionalRequestConflict")
    )
}

fn is_missing_key(error: &crate::provider::ProviderError) -> bool {
    matches!(error.code.as_deref(), Some("NoSuchKey" | "NotFound"))
}

struct Object {
    bytes: Vec<u8>,
    etag: String,
    last_modified: Option<std::time::SystemTime>,
}

async fn get_object(
    client: &aws_sdk_s3::Client,
    target: &Target,
    key: &str,
) -> Result<Option<Object>, StateError> {
    let output = match client
        .get_object()
        .bucket(&target.bucket)
        .key(key)
        .send()
        .await
        .map_err(sdk_error("read"))
    {
        Ok(output) => output,
        Err(error) if is_missing_key(&error) => return Ok(None),
        Err(error) => return Err(explain(target, "read", error)),
    };
    let etag = output.e_tag().unwrap_or_default().to_string();
    let last_modified = output
        .last_modified()
        .and_then(|time| std::time::SystemTime::try_from(*time).ok());
    let bytes = output
        .body
        .collect()
        .await
        .map_err(|error| {
            StateError::Backend(format!(
                "cannot read s3://{}/{key}: {error}; nothing was changed",
                target.bucket
            ))
        })?
        .into_bytes()
        .to_vec();
    Ok(Some(Object {
        bytes,
        etag,
        last_modified,
    }))
}

/// `If-Match: etag`, or `If-None-Match: *` when `expected` is `None`; the new ETag.
///
/// A lost answer: when a write's answer is lost (a 5xx, a dropped connection) the write may
/// have landed, so sending it again gets 412 (the object is no longer at `expected`). The
/// write is therefore sent without the SDK's retries, and tried again here: a 412 to a second
/// or later try means the object is read back, and when it holds exactly these bytes the
/// earlier try landed and its ETag is returned. A 412 to the first try is always a conflict
/// (another writer), even with the same bytes.
async fn put_object(
    client: &aws_sdk_s3::Client,
    target: &Target,
    key: &str,
    bytes: Vec<u8>,
    expected: Option<&str>,
) -> Result<String, crate::provider::ProviderError> {
    let started = tokio::time::Instant::now();
    let mut delays = crate::provider::wait::delays();
    let mut tries = 0;
    loop {
        tries += 1;
        match put_once(client, target, key, bytes.clone(), expected).await {
            // 409: another conditional write to the key is in flight (ours, maybe): S3 says
            // to try again.
            Err(error) if error.code.as_deref() == Some("ConditionalRequestConflict") => {
                let delay = delays.next().unwrap_or(Duration::from_secs(15));
                if started.elapsed() + delay > WRITE_LIMIT {
                    return Err(error);
                }
                tokio::time::sleep(delay).await;
            }
            Err(error) if is_precondition(&error) && tries > 1 => {
                return match get_object(client, target, key).await {
                    Ok(Some(object)) if object.bytes == bytes => Ok(object.etag),
                    Ok(_) => Err(error),
                    // The read back failed: say that, not a conflict that may not be one.
                    Err(read) => Err(crate::provider::ProviderError {
                        code: Some("LostAnswer".into()),
                        ..crate::provider::ProviderError::permanent(format!(
                            "the answer to writing {} was lost, and reading it back failed ({read}): the write may have landed; run `pwless state pull` to see",
                            target.location()
                        ))
                    }),
                };
            }
            Err(error) if error.kind == crate::provider::ErrorKind::Retryable => {
                let delay = delays.next().unwrap_or(Duration::from_secs(15));
                if started.elapsed() + delay > WRITE_LIMIT {
                    return Err(error);
                }
                tokio::time::sleep(delay).await;
            }
            other => return other,
        }
    }
}

/// How long a state or lock write is tried again after throttling or a lost answer.
const WRITE_LIMIT: Duration = Duration::from_secs(60);

async fn put_once(
    client: &aws_sdk_s3::Client,
    target: &Target,
    key: &str,
    bytes: Vec<u8>,
    expected: Option<&str>,
) -> Result<String, crate::provider::ProviderError> {
    let mut request = client
        .put_object()
        .bucket(&target.bucket)
        .key(key)
        .content_type("application/json")
        .body(ByteStream::from(bytes));
    request = match &target.kms_key_id {
        Some(key_id) => request
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .ssekms_key_id(key_id),
        None => request.server_side_encryption(ServerSideEncryption::Aes256),
    };
    request = match expected {
        Some(etag) => request.if_match(etag),
        None => request.if_none_match("*"),
    };
    // Tried again by put_object, which tells a lost answer from a conflict; the SDK's own
    // retries would not.
    let output = request
        .customize()
        .config_override(
            aws_sdk_s3::config::Builder::default()
                .retry_config(aws_config::retry::RetryConfig::disabled()),
        )
        .send()
        .await
        .map_err(sdk_error("write"))?;
    Ok(output.e_tag().unwrap_or_default().to_string())
}

fn record(info: &LockInfo, lease: Duration) -> Vec<u8> {
    serde_json::to_vec(&LockRecord {
        info: info.clone(),
        lease_seconds: lease.as_secs(),
        renewed: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
    })
    .unwrap_or_default()
}

/// Whether a lock object last written at `last_modified` (S3's clock) has outlived `lease`.
fn expired(last_modified: Option<std::time::SystemTime>, lease: Duration) -> bool {
    last_modified.is_some_and(|written| {
        std::time::SystemTime::now()
            .duration_since(written)
            .is_ok_and(|age| age > lease)
    })
}

impl S3Store {
    /// Takes the lock for `operation`: creates the lock object, or takes over one whose lease
    /// ran out; refuses at once when a live holder has it.
    pub async fn open(target: &Target, operation: &str) -> Result<Self, StateError> {
        let client = client(target).await;
        let info = LockInfo::new(operation);
        let lock_key = target.lock_key();
        let mut took_over = None;
        let mut attempts = 0;
        let etag = loop {
            attempts += 1;
            match put_object(
                &client,
                target,
                &lock_key,
                record(&info, target.lease),
                None,
            )
            .await
            {
                Ok(etag) => break etag,
                Err(error) if is_precondition(&error) => {}
                Err(error) => return Err(explain(target, "lock", error)),
            }
            // Someone's lock is there: live, or left by a run that died?
            let Some(existing) = get_object(&client, target, &lock_key).await? else {
                if attempts < 5 {
                    continue; // released in between: try again
                }
                return Err(StateError::Backend(format!(
                    "cannot take the lock on {}: it keeps appearing and vanishing; run again",
                    target.location()
                )));
            };
            let holder = serde_json::from_slice::<LockRecord>(&existing.bytes).ok();
            let lease = holder.as_ref().map_or(target.lease, |holder| {
                Duration::from_secs(holder.lease_seconds)
            });
            let holder_text = holder.as_ref().map_or_else(
                || "an unreadable lock record".to_string(),
                |holder| holder.info.to_string(),
            );
            if !expired(existing.last_modified, lease) {
                return Err(StateError::Locked {
                    location: target.location(),
                    holder: holder_text,
                    hint: format!(
                        "if that run is gone, its lease ends {} s after its last renewal and the next run takes over; `pwless force-unlock {}` ends it now",
                        lease.as_secs(),
                        holder
                            .as_ref()
                            .map_or("ID", |holder| holder.info.id.as_str())
                    ),
                });
            }
            // Stale: take it over, but only this exact version of it.
            match put_object(
                &client,
                target,
                &lock_key,
                record(&info, target.lease),
                Some(&existing.etag),
            )
            .await
            {
                Ok(etag) => {
                    took_over = Some(holder_text);
                    break etag;
                }
                Err(error) if is_precondition(&error) || is_missing_key(&error) => {
                    if attempts >= 5 {
                        return Err(StateError::Backend(format!(
                            "cannot take the lock on {}: other runs keep taking it; run again",
                            target.location()
                        )));
                    }
                }
                Err(error) => return Err(explain(target, "lock", error)),
            }
        };
        let mut notices = Vec::new();
        if let Some(previous) = took_over {
            notices.push(format!(
                "Took over the lock on {} from {previous}: its lease had run out (the run probably died).",
                target.location()
            ));
        }
        notices.extend(warn_without_versioning(&client, target).await);
        let lock = Arc::new(LockState {
            etag: tokio::sync::Mutex::new(Some(etag)),
            lost: Mutex::new(None),
        });
        let renewer = tokio::spawn(renew(client.clone(), target.clone(), info, lock.clone()));
        Ok(S3Store {
            client,
            target: target.clone(),
            lock,
            renewer,
            notices,
        })
    }

    /// What the user should know about the lock and the bucket, one line each.
    pub fn notices(&self) -> &[String] {
        &self.notices
    }

    pub fn location(&self) -> String {
        self.target.location()
    }

    pub async fn get(&self) -> Result<Option<(Vec<u8>, Revision)>, StateError> {
        get(&self.client, &self.target).await
    }

    /// Replaces the state object if it is still at `expected`; refused once the lock is lost.
    pub async fn put(
        &self,
        bytes: &[u8],
        expected: Option<&Revision>,
    ) -> Result<Revision, StateError> {
        if let Some(why) = self
            .lock
            .lost
            .lock()
            .map(|lost| lost.clone())
            .unwrap_or(None)
        {
            return Err(StateError::LockLost {
                location: self.location(),
                why,
            });
        }
        match put_object(
            &self.client,
            &self.target,
            &self.target.key,
            bytes.to_vec(),
            expected.map(|revision| revision.0.as_str()),
        )
        .await
        {
            Ok(etag) => Ok(Revision(etag)),
            Err(error) if is_precondition(&error) || is_missing_key(&error) => {
                Err(StateError::conflict(self.location()))
            }
            Err(error) => Err(explain(&self.target, "write", error)),
        }
    }

    /// Stops renewing and deletes the lock object, if it is still ours.
    pub async fn release(self) {
        let mut etag = self.lock.etag.lock().await;
        self.renewer.abort();
        if let Some(current) = etag.take() {
            let lost = self
                .lock
                .lost
                .lock()
                .map(|lost| lost.is_some())
                .unwrap_or(true);
            if !lost {
                let _ = self
                    .client
                    .delete_object()
                    .bucket(&self.target.bucket)
                    .key(self.target.lock_key())
                    .if_match(current)
                    .send()
                    .await;
            }
        }
    }
}

/// Earlier states are S3's to keep: the warning to give when the bucket keeps none. `None`
/// also when the caller may not read the setting.
async fn warn_without_versioning(client: &aws_sdk_s3::Client, target: &Target) -> Option<String> {
    let versioning = client
        .get_bucket_versioning()
        .bucket(&target.bucket)
        .send()
        .await
        .ok()?;
    (versioning.status() != Some(&aws_sdk_s3::types::BucketVersioningStatus::Enabled)).then(|| {
        format!(
            "warning: versioning is off for bucket {b}, so S3 keeps no earlier state to go back to; turn it on: aws s3api put-bucket-versioning --bucket {b} --versioning-configuration Status=Enabled",
            b = target.bucket
        )
    })
}

pub(crate) async fn get(
    client: &aws_sdk_s3::Client,
    target: &Target,
) -> Result<Option<(Vec<u8>, Revision)>, StateError> {
    Ok(get_object(client, target, &target.key)
        .await?
        .map(|object| (object.bytes, Revision(object.etag))))
}

/// Rewrites the lock object every third of the lease, each time only if it is still the
/// version we wrote. Gives up, marking the lock lost, when someone else's version is there or
/// no renewal got through for a whole lease.
async fn renew(client: aws_sdk_s3::Client, target: Target, info: LockInfo, lock: Arc<LockState>) {
    let period = target.lease / 3;
    let mut last_renewed = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(period).await;
        let mut etag = lock.etag.lock().await;
        let Some(current) = etag.clone() else {
            return;
        };
        let lose = |why: String| {
            if let Ok(mut lost) = lock.lost.lock() {
                *lost = Some(why);
            }
        };
        match put_object(
            &client,
            &target,
            &target.lock_key(),
            record(&info, target.lease),
            Some(&current),
        )
        .await
        {
            Ok(new) => {
                *etag = Some(new);
                last_renewed = tokio::time::Instant::now();
            }
            Err(error) if is_precondition(&error) || is_missing_key(&error) => {
                lose("another run took it over or it was force-unlocked".into());
                *etag = None;
                return;
            }
            Err(error) => {
                if last_renewed.elapsed() > target.lease {
                    lose(format!(
                        "it could not be renewed for {} s: {}",
                        target.lease.as_secs(),
                        error.message
                    ));
                    *etag = None;
                    return;
                }
            }
        }
    }
}

/// Removes the lock `id` whoever holds it (`pwless force-unlock`). Refuses another id.
pub async fn force_unlock(target: &Target, id: &str) -> Result<String, StateError> {
    let client = client(target).await;
    let Some(existing) = get_object(&client, target, &target.lock_key()).await? else {
        return Err(StateError::Backend(format!(
            "{} is not locked; nothing was changed",
            target.location()
        )));
    };
    let holder = serde_json::from_slice::<LockRecord>(&existing.bytes).ok();
    match &holder {
        Some(holder) if holder.info.id == id => {}
        Some(holder) => {
            return Err(StateError::Backend(format!(
                "the lock on {} is {}, not {id}; nothing was changed",
                target.location(),
                holder.info
            )));
        }
        None => {
            return Err(StateError::Backend(format!(
                "the lock on {} is unreadable, so its id cannot be checked; delete s3://{}/{} by hand if you are sure",
                target.location(),
                target.bucket,
                target.lock_key()
            )));
        }
    }
    client
        .delete_object()
        .bucket(&target.bucket)
        .key(target.lock_key())
        .if_match(&existing.etag)
        .send()
        .await
        .map_err(sdk_error("unlock"))
        .map_err(|error| {
            if is_precondition(&error) {
                StateError::Backend(format!(
                    "the lock on {} changed while it was being removed (renewed or taken over); nothing was changed — check it and try again",
                    target.location()
                ))
            } else {
                explain(target, "unlock", error)
            }
        })?;
    Ok(holder
        .map(|holder| holder.info.to_string())
        .unwrap_or_default())
}
