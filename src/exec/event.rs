//! What the executor and recovery report while they work, and the typed outcomes and errors of
//! an operation.
//!
//! The engine never prints: it hands each [`Event`] to an [`Events`] sink, and the caller
//! decides how it looks (`render::progress`: a human line on stderr, or one JSON object per
//! line for `pwless apply --json`). The shape follows terraform's hooks
//! (`internal/terraform/hook.go`: PreApply, PostApply, and the UI hook's periodic "Still
//! creating...").

use std::sync::Arc;

use serde::Serialize;

use crate::provider::ProviderError;
use crate::state::{Operation, StateError};

/// Receives the executor's and recovery's events, in the order they happen. Called from the
/// executor's task: an implementation should not block for long.
pub trait Events: Send + Sync {
    fn emit(&self, event: Event);
}

/// A sink that drops every event (a caller that wants only the final [`super::Report`]).
pub struct Discard;

impl Events for Discard {
    fn emit(&self, _event: Event) {}
}

/// One thing that happened while a run prepared (recovery, refresh) or applied. Serialized with
/// a `type` field (`started`, `still_running`, `done`, `failed`, `settled`, `recovering`,
/// `refreshing`, `not_refreshed`, `notice`): the `pwless apply --json` lines
/// (docs/plan-json.md).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// An operation begins; its pending operation is persisted next, then the provider is
    /// called. `changed` names the inputs an update changes (empty for a create or delete,
    /// also the two halves of a replace).
    Started {
        address: String,
        operation: Operation,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        changed: Vec<String>,
    },
    /// An operation is still in flight, every 10 s of its own (terraform's interval).
    StillRunning {
        address: String,
        operation: Operation,
        elapsed_seconds: u64,
    },
    /// An operation finished; `id` is the resource's id when it has one.
    Done {
        address: String,
        outcome: Outcome,
        elapsed_seconds: f64,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// An operation failed; its dependents will not start. `same_as` names an earlier
    /// resource that failed with the same message (one cause, one message).
    Failed {
        address: String,
        operation: Operation,
        elapsed_seconds: f64,
        error: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        code: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        same_as: Option<String>,
    },
    /// Recovery settled an operation a run that died had left pending.
    Settled {
        address: String,
        settlement: Settlement,
    },
    /// A run that died left `pending` operations; they are settled (each a `Settled`) before
    /// anything is planned.
    Recovering { pending: usize },
    /// The live resources are being read before planning (`resources` of them).
    Refreshing { resources: usize },
    /// Database resources that cannot be read: they are reached through the database relay,
    /// and the refresh saw the relay, its EKS cluster or its nodes missing. The plan takes them
    /// as recorded, and makes the relay again.
    NotRefreshed { addresses: Vec<String> },
    /// Something done on the way that the user should know of, in words (the state store took
    /// over an expired lock, the RDS CA bundle was fetched into the user's cache).
    Notice { message: String },
}

/// What a finished operation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Created,
    Updated,
    Destroyed,
    /// A delete found nothing recorded to delete.
    AlreadyGone,
    /// A delete that only removed the state entry: the resource went with what contained it
    /// (database users with their cluster, [`crate::plan::ResourceChange::forget`]).
    RemovedFromState,
}

impl Outcome {
    /// The past participle the progress line uses: `created`, `removed from the state`.
    pub fn words(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Updated => "updated",
            Outcome::Destroyed => "destroyed",
            Outcome::AlreadyGone => "already gone",
            Outcome::RemovedFromState => "removed from the state",
        }
    }
}

/// How recovery settled a pending operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "how", rename_all = "snake_case")]
pub enum Settlement {
    /// A create that is idempotent (a server-side apply) is left to the plan to make again.
    MadeAgain,
    /// The resource an interrupted create made was found and recorded.
    Adopted,
    /// An interrupted create had not made the resource (looked for during the grace period).
    NotCreated,
    /// An interrupted update or delete: the refresh that follows shows where it stands.
    Refreshed { operation: Operation },
}

impl Settlement {
    /// The human sentence after the address.
    pub fn words(self) -> &'static str {
        match self {
            Settlement::MadeAgain => {
                "an interrupted create is simply made again (it is idempotent)"
            }
            Settlement::Adopted => "adopted the resource an interrupted run created",
            Settlement::NotCreated => "an interrupted run had not created it",
            Settlement::Refreshed {
                operation: Operation::Delete,
            } => "an interrupted delete is settled by refreshing it",
            Settlement::Refreshed { .. } => "an interrupted update is settled by refreshing it",
        }
    }
}

/// Why an operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OpError {
    /// The provider's answer (the service's code and message are kept).
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The state could not be written. The run starts nothing more: without a state write no
    /// further change can be recorded.
    #[error("cannot save the state")]
    State(#[source] Arc<StateError>),
    /// A "known after apply" input whose dependency left no such output.
    #[error("input `{input}` is still unknown: a dependency did not produce its output")]
    Unresolved { input: String },
}

impl OpError {
    /// The service's error code, for a provider error that has one.
    pub fn code(&self) -> Option<&str> {
        match self {
            OpError::Provider(error) => error.code.as_deref(),
            _ => None,
        }
    }
}

impl From<StateError> for OpError {
    fn from(error: StateError) -> Self {
        OpError::State(Arc::new(error))
    }
}
