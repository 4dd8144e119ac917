//! The state file: what pwless has created, as JSON, with a format `version`, a `lineage`
//! fixed when the state is born and a `serial` that rises with every write.
//!
//! [`store`] owns the file on disk: the exclusive lock, atomic writes and the backup.

pub mod store;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::graph::ResourceKind;

pub use store::{LockInfo, StateError, StateStore};

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
