//! The journal: the one writer of the state during an apply.
//!
//! Before each side effect its pending operation is persisted; right after it, the resource
//! (or its removal). Each step is one atomic state write, so a process killed at any point
//! leaves a state that says what it had done and what it was in the middle of.

use std::collections::BTreeMap;

use serde_json::Value;
use tokio::sync::Mutex;

use crate::graph::ResourceKind;
use crate::provider::Applied;
use crate::state::{Operation, PendingOperation, ResourceState, State, StateError, StateStore};

pub struct Journal {
    inner: Mutex<(StateStore, State)>,
}

impl Journal {
    pub fn new(store: StateStore, state: State) -> Self {
        Journal {
            inner: Mutex::new((store, state)),
        }
    }

    pub async fn snapshot(&self) -> State {
        self.inner.lock().await.1.clone()
    }

    pub async fn resource(&self, address: &str) -> Option<ResourceState> {
        self.inner.lock().await.1.resource(address).cloned()
    }

    /// Gives back the store (still locked) and the final state.
    pub fn into_parts(self) -> (StateStore, State) {
        self.inner.into_inner()
    }

    /// Lets go of the state's lock.
    pub async fn release(self) {
        self.inner.into_inner().0.release().await;
    }

    /// One edit, written at once. A failed write leaves the edit in memory only: the caller
    /// must stop (the executor starts nothing more, [`super::OpError::State`]).
    async fn change(&self, edit: impl FnOnce(&mut State)) -> Result<(), StateError> {
        let mut guard = self.inner.lock().await;
        let (store, state) = &mut *guard;
        edit(state);
        store.write(state).await
    }

    /// Persists that `operation` on `address` is about to start.
    pub async fn begin(
        &self,
        address: &str,
        kind: ResourceKind,
        operation: Operation,
        token: String,
        inputs: Option<BTreeMap<String, Value>>,
        dependencies: Vec<String>,
    ) -> Result<(), StateError> {
        let pending = PendingOperation {
            address: address.to_string(),
            kind,
            operation,
            token,
            started_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            inputs,
            dependencies,
        };
        self.change(|state| {
            state
                .pending_operations
                .retain(|existing| existing.address != address);
            state.pending_operations.push(pending);
        })
        .await
    }

    /// Records a created, updated or adopted resource and clears its pending operation.
    pub async fn recorded(
        &self,
        address: &str,
        kind: ResourceKind,
        inputs: BTreeMap<String, Value>,
        applied: Applied,
        dependencies: Vec<String>,
    ) -> Result<(), StateError> {
        let resource = ResourceState {
            address: address.to_string(),
            kind,
            id: applied.id,
            inputs,
            outputs: applied.outputs,
            dependencies,
        };
        self.change(|state| {
            state
                .pending_operations
                .retain(|existing| existing.address != address);
            state.upsert(resource);
        })
        .await
    }

    /// Records a deletion and clears its pending operation.
    pub async fn deleted(&self, address: &str) -> Result<(), StateError> {
        self.change(|state| {
            state
                .pending_operations
                .retain(|existing| existing.address != address);
            state.remove(address);
        })
        .await
    }

    /// Clears a pending operation that recovery settled without recording anything.
    pub async fn forget_pending(&self, address: &str) -> Result<(), StateError> {
        self.change(|state| {
            state
                .pending_operations
                .retain(|existing| existing.address != address)
        })
        .await
    }
}
