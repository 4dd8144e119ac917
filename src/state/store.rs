//! [`StateStore`]: the one interface to a stack's state, wherever it lives.
//!
//! A store is opened with its lock held. It reads the state (refusing corrupt documents, newer
//! formats and moved states) and writes it with compare-and-swap on the revision it read, as
//! the next serial: one conditional write per checkpoint on every backend. The backends below
//! deal in bytes and revisions only.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{FORMAT_VERSION, Revision, State, StateError};
use super::{local::LocalStore, postgres::PgStore, s3::S3Store};
use crate::spec::model::StateBackend;

/// Where a stack's state lives, resolved from the stack's `state:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    S3(super::s3::Target),
    Postgres(super::postgres::Target),
}

impl Location {
    /// `stack_dir` is where relative paths start; `override_path` is `--state PATH`, which
    /// only a local state takes.
    pub fn resolve(
        backend: &StateBackend,
        stack_dir: &Path,
        stack: &str,
        region: &str,
        override_path: Option<&Path>,
    ) -> Result<Location, String> {
        match (backend, override_path) {
            (StateBackend::Local { .. }, Some(path)) => Ok(Location::Local(path.to_path_buf())),
            (StateBackend::Local { path: Some(path) }, None) => {
                Ok(Location::Local(stack_dir.join(path)))
            }
            (StateBackend::Local { path: None }, None) => Ok(Location::Local(
                stack_dir.join("state").join(format!("{stack}.json")),
            )),
            (_, Some(_)) => Err(format!(
                "--state is for a local state file, and this stack keeps its state in {}; leave --state out",
                Location::resolve(backend, stack_dir, stack, region, None)?.describe()
            )),
            (
                StateBackend::S3 {
                    bucket,
                    key,
                    region: bucket_region,
                    lock_lease_seconds,
                    kms_key_id,
                },
                None,
            ) => Ok(Location::S3(super::s3::Target {
                bucket: bucket.clone(),
                key: key.clone(),
                region: bucket_region.clone().unwrap_or_else(|| region.to_string()),
                lease: Duration::from_secs(u64::from(*lock_lease_seconds)),
                kms_key_id: kms_key_id.clone(),
            })),
            (StateBackend::Postgres { url_env, table }, None) => {
                Ok(Location::Postgres(super::postgres::Target {
                    url_env: url_env.clone(),
                    table: table.clone(),
                    stack: stack.to_string(),
                }))
            }
        }
    }

    /// Whether both name the same stored state, whatever their lock settings.
    pub fn same_place(&self, other: &Location) -> bool {
        let canonical = |path: &Path| std::fs::canonicalize(path).unwrap_or(path.to_path_buf());
        match (self, other) {
            (Location::Local(a), Location::Local(b)) => canonical(a) == canonical(b),
            (Location::S3(a), Location::S3(b)) => a.bucket == b.bucket && a.key == b.key,
            (Location::Postgres(a), Location::Postgres(b)) => {
                a.url_env == b.url_env && a.table == b.table && a.stack == b.stack
            }
            _ => false,
        }
    }

    /// How messages name it.
    pub fn describe(&self) -> String {
        match self {
            Location::Local(path) => super::local::location(path),
            Location::S3(target) => target.location(),
            Location::Postgres(target) => target.location(),
        }
    }

    /// The compact form `pwless state migrate --from` takes: `local:PATH`, `s3://BUCKET/KEY`,
    /// `postgres:ENV_VAR[/TABLE]`.
    pub fn to_argument(&self) -> String {
        match self {
            Location::Local(path) => format!("local:{}", path.display()),
            Location::S3(target) => target.location(),
            Location::Postgres(target) => format!("postgres:{}/{}", target.url_env, target.table),
        }
    }

    fn recovery(&self) -> String {
        match self {
            Location::Local(path) => {
                let mut backup = path.as_os_str().to_os_string();
                backup.push(".backup");
                format!(
                    "restore it from {} or fix it by hand",
                    PathBuf::from(backup).display()
                )
            }
            Location::S3(_) => {
                "restore an earlier version of the object (keep versioning on for this) or fix it by hand".into()
            }
            Location::Postgres(target) => format!(
                "fix the document in table {} by hand (`pwless state pull` of a good copy, then `pwless state push`, needs a readable state)",
                target.table
            ),
        }
    }
}

enum Backend {
    Local(LocalStore),
    S3(Box<S3Store>),
    Postgres(Box<PgStore>),
}

/// An open, locked state. Call [`StateStore::release`] when done: a local file and a
/// PostgreSQL lock also end with the process, but an S3 lock would wait out its lease.
pub struct StateStore {
    location: Location,
    backend: Backend,
    /// What the last read or write saw: `None` before any read, `Some(None)` for "no state".
    seen: Option<Option<(Revision, u64)>>,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl StateStore {
    /// Takes the lock for `operation` (`plan`, `apply`, ...); refuses at once when held.
    pub async fn open(location: &Location, operation: &str) -> Result<Self, StateError> {
        let backend = match location {
            Location::Local(path) => Backend::Local(LocalStore::open(path, operation)?),
            Location::S3(target) => Backend::S3(Box::new(S3Store::open(target, operation).await?)),
            Location::Postgres(target) => {
                Backend::Postgres(Box::new(PgStore::open(target, operation).await?))
            }
        };
        Ok(StateStore {
            location: location.clone(),
            backend,
            seen: None,
        })
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// What the user should know about the opened state, one line each, for the caller to
    /// say: an S3 lock taken over from a dead run, a bucket without versioning.
    pub fn notices(&self) -> &[String] {
        match &self.backend {
            Backend::S3(store) => store.notices(),
            _ => &[],
        }
    }

    /// How messages name it (with the database server, for PostgreSQL).
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Postgres(store) => store.location(),
            _ => self.location.describe(),
        }
    }

    async fn get(&self) -> Result<Option<(Vec<u8>, Revision)>, StateError> {
        match &self.backend {
            Backend::Local(store) => store.get(),
            Backend::S3(store) => store.get().await,
            Backend::Postgres(store) => store.get().await,
        }
    }

    /// Writes `document` (`state`, serialized) if the stored revision is still `expected`.
    async fn put(
        &self,
        state: &State,
        document: &str,
        expected: Option<&Revision>,
    ) -> Result<Revision, StateError> {
        let bytes = document.as_bytes();
        match &self.backend {
            Backend::Local(store) => store.put(bytes, expected),
            Backend::S3(store) => store.put(bytes, expected).await,
            Backend::Postgres(store) => store.put(state, document, expected).await,
        }
    }

    /// Reads the state; `None` if there is none yet. Refuses corrupt and newer documents.
    pub async fn read(&mut self) -> Result<Option<State>, StateError> {
        match self.get().await? {
            None => {
                self.seen = Some(None);
                Ok(None)
            }
            Some((bytes, revision)) => {
                let state = parse(&self.location, &bytes)?;
                self.seen = Some(Some((revision, state.serial)));
                Ok(Some(state))
            }
        }
    }

    /// Writes `state` as the next serial (and sets `state.serial` to it). The state must have
    /// been read through this store first, and not changed since.
    pub async fn write(&mut self, state: &mut State) -> Result<(), StateError> {
        if self.seen.is_none() {
            // Covers corrupt or unread documents: never overwrite what we could not read.
            self.read().await?;
        }
        let next = match &self.seen {
            Some(Some((_, serial))) => serial + 1,
            _ => state.serial.max(1),
        };
        let mut next_state = state.clone();
        next_state.serial = next;
        self.put_exact(&next_state).await?;
        *state = next_state;
        Ok(())
    }

    /// Writes `state` with its own serial (a migration keeps it), over what was read.
    pub async fn put_exact(&mut self, state: &State) -> Result<(), StateError> {
        if self.seen.is_none() {
            self.read().await?;
        }
        let mut document = state.clone();
        document.version = FORMAT_VERSION;
        document.pwless_version = env!("CARGO_PKG_VERSION").to_string();
        let mut text = serde_json::to_string_pretty(&document)
            .map_err(|error| StateError::Backend(format!("cannot serialize the state: {error}")))?;
        text.push('\n');
        let expected = self
            .seen
            .as_ref()
            .and_then(|seen| seen.as_ref().map(|(revision, _)| revision.clone()));
        match self.put(&document, &text, expected.as_ref()).await {
            Ok(revision) => {
                self.seen = Some(Some((revision, document.serial)));
                Ok(())
            }
            Err(StateError::Conflict { location, .. }) => {
                let read = self
                    .seen
                    .as_ref()
                    .and_then(|seen| seen.as_ref().map(|(_, serial)| *serial));
                let now = self
                    .get()
                    .await
                    .ok()
                    .flatten()
                    .and_then(|(bytes, _)| parse(&self.location, &bytes).ok())
                    .map(|state| state.serial);
                let describe = |serial: Option<u64>| {
                    serial.map_or_else(|| "none".to_string(), |serial| serial.to_string())
                };
                Err(StateError::Conflict {
                    location,
                    detail: format!(
                        " (serial {} read, {} there now: another writer got in)",
                        describe(read),
                        describe(now)
                    ),
                })
            }
            Err(other) => Err(other),
        }
    }

    /// Lets go of the lock.
    pub async fn release(self) {
        match self.backend {
            Backend::Local(store) => drop(store),
            Backend::S3(store) => (*store).release().await,
            Backend::Postgres(store) => (*store).release().await,
        }
    }
}

/// Reads the state at `location` without taking the lock, for commands that only read: every
/// backend replaces the document whole, so a reader sees one state or the next.
pub async fn read_unlocked(location: &Location) -> Result<Option<State>, StateError> {
    let found = match location {
        Location::Local(path) => super::local::get(path)?,
        Location::S3(target) => {
            let client = super::s3::client(target).await;
            super::s3::get(&client, target).await?
        }
        Location::Postgres(target) => super::postgres::read_unlocked(target).await?,
    };
    found.map(|(bytes, _)| parse(location, &bytes)).transpose()
}

/// Ends the lock `id` on `location` (`pwless force-unlock`); gives who held it.
pub async fn force_unlock(location: &Location, id: &str) -> Result<String, StateError> {
    match location {
        Location::Local(path) => Err(StateError::Backend(format!(
            "{} needs no force-unlock: its lock is held by a process and ends with it; if a pwless process is stuck, stop that process",
            super::local::location(path)
        ))),
        Location::S3(target) => super::s3::force_unlock(target, id).await,
        Location::Postgres(target) => super::postgres::force_unlock(target, id).await,
    }
}

/// Parses a state document; refuses corrupt ones and newer formats.
pub fn parse(location: &Location, bytes: &[u8]) -> Result<State, StateError> {
    parse_named(&location.describe(), &location.recovery(), bytes)
}

/// [`parse`] for a document that is not in a store (a file given to `state push`).
pub fn parse_named(name: &str, recovery: &str, bytes: &[u8]) -> Result<State, StateError> {
    let corrupt = |reason: String| StateError::Corrupt {
        location: name.to_string(),
        reason,
        recovery: recovery.to_string(),
    };
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|error| corrupt(error.to_string()))?;
    let version = value
        .get("version")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| corrupt("no format `version`".into()))?;
    if version > u64::from(FORMAT_VERSION) {
        return Err(StateError::NewerVersion {
            location: name.to_string(),
            found: version,
        });
    }
    let mut state: State =
        serde_json::from_value(value).map_err(|error| corrupt(error.to_string()))?;
    state.normalize();
    Ok(state)
}
