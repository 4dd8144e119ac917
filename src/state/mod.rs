//! The state file: what pwless has created, as JSON, with a format `version`, a `lineage`
//! fixed when the state is born and a `serial` that rises with every write.
//!
//! [`store::StateStore`] is the one interface to wherever the state lives: lock, read, and
//! compare-and-swap writes. The backends below it deal in bytes and revisions:
//! [`local`] (a file: `flock`, atomic rename, backup), [`s3`] (conditional writes, a lock
//! object with a lease) and [`postgres`] (a row per stack, an advisory lock).

pub mod local;
pub mod postgres;
pub mod s3;
pub mod store;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::graph::ResourceKind;

pub use store::{Location, StateStore};

/// The state format this build reads and writes. A newer file is refused, never rewritten.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    /// Identifies this state's history; a plan or a pushed state from another lineage is refused.
    pub lineage: String,
    /// Rises by one on every write.
    pub serial: u64,
    pub stack: String,
    /// The pwless that last wrote the file.
    pub pwless_version: String,
    /// Sorted by address.
    pub resources: Vec<ResourceState>,
    /// Side effects started but not known to have finished: each is written before its call
    /// and cleared right after, so a crashed run can be recovered.
    #[serde(default)]
    pub pending_operations: Vec<PendingOperation>,
    /// Set when `pwless state migrate` moved this state elsewhere: what is left here is a
    /// marker that refuses every run, so no one works on a stale copy by mistake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_to: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceState {
    pub address: String,
    pub kind: ResourceKind,
    /// The cloud's identifier (a VPC id, an ARN, a role name).
    pub id: Option<String>,
    /// The inputs it was last applied with, every reference resolved.
    pub inputs: BTreeMap<String, Value>,
    pub outputs: BTreeMap<String, Value>,
    /// Addresses it depended on when applied; destroy deletes in the reverse order.
    pub dependencies: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Create,
    Update,
    Delete,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingOperation {
    pub address: String,
    pub kind: ResourceKind,
    pub operation: Operation,
    /// The idempotency token or deterministic name the call uses, so a crashed create can be
    /// found and adopted instead of repeated.
    pub token: String,
    pub started_at: String,
    /// For a create: the resolved inputs and dependencies, so recovery can record what it
    /// adopts exactly as the finished create would have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<BTreeMap<String, Value>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<String>,
}

impl State {
    /// A new, empty state with a fresh lineage, serial 0. It exists on disk only once written.
    pub fn new(stack: &str) -> Self {
        State {
            version: FORMAT_VERSION,
            lineage: uuid::Uuid::new_v4().to_string(),
            serial: 0,
            stack: stack.to_string(),
            pwless_version: env!("CARGO_PKG_VERSION").to_string(),
            resources: Vec::new(),
            pending_operations: Vec::new(),
            moved_to: None,
        }
    }

    pub fn resource(&self, address: &str) -> Option<&ResourceState> {
        self.resources
            .binary_search_by(|resource| resource.address.as_str().cmp(address))
            .ok()
            .map(|index| &self.resources[index])
    }

    /// Inserts or replaces the resource at its address, keeping the list sorted.
    pub fn upsert(&mut self, resource: ResourceState) {
        match self
            .resources
            .binary_search_by(|existing| existing.address.cmp(&resource.address))
        {
            Ok(index) => self.resources[index] = resource,
            Err(index) => self.resources.insert(index, resource),
        }
    }

    pub fn remove(&mut self, address: &str) -> Option<ResourceState> {
        self.resources
            .binary_search_by(|resource| resource.address.as_str().cmp(address))
            .ok()
            .map(|index| self.resources.remove(index))
    }

    /// Puts the resources in address order, as [`State::resource`] expects. Called on every
    /// state read, so a hand-edited file still works.
    pub(crate) fn normalize(&mut self) {
        self.resources.sort_by(|a, b| a.address.cmp(&b.address));
    }
}

/// Which version of the stored bytes a store read: a SHA-256 of the file, an S3 ETag, a
/// PostgreSQL row revision. A write names the revision it replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision(pub String);

/// Who holds a lock, recorded by its holder so a refused run can name it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockInfo {
    pub id: String,
    pub who: String,
    pub pid: u32,
    pub operation: String,
    pub created: String,
}

impl LockInfo {
    pub fn new(operation: &str) -> Self {
        LockInfo {
            id: uuid::Uuid::new_v4().to_string(),
            who: who(),
            pid: std::process::id(),
            operation: operation.to_string(),
            created: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        }
    }
}

impl std::fmt::Display for LockInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (pid {}) running `{}` since {} (lock id {})",
            self.who, self.pid, self.operation, self.created, self.id
        )
    }
}

fn who() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|host| host.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into());
    format!("{user}@{host}")
}

/// What can go wrong with a state store. Each says where (`location`) and what to do.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{location} is locked by {holder}; {hint}")]
    Locked {
        location: String,
        holder: String,
        hint: String,
    },
    #[error("{location} is not valid pwless state ({reason}); it was left untouched — {recovery}")]
    Corrupt {
        location: String,
        reason: String,
        recovery: String,
    },
    #[error(
        "{location} has format version {found}, newer than this pwless understands ({FORMAT_VERSION}); upgrade pwless"
    )]
    NewerVersion { location: String, found: u64 },
    #[error("{location} changed since it was read{detail}; refusing to overwrite it")]
    Conflict { location: String, detail: String },
    #[error(
        "{location} was moved to {to} by `pwless state migrate`; point the stack's `state:` section at {to} (the stack file in git may be older than the move)"
    )]
    Moved { location: String, to: String },
    #[error(
        "the lock on {location} was lost ({why}); stopping before another write — run again to continue"
    )]
    LockLost { location: String, why: String },
    /// One line from a backend: a missing bucket, no permission, an unreachable database.
    #[error("{0}")]
    Backend(String),
    #[error("{action} {}", path.display())]
    Io {
        action: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl StateError {
    pub(crate) fn conflict(location: String) -> Self {
        StateError::Conflict {
            location,
            detail: String::new(),
        }
    }
}
