//! Recovery of a run that died: its pending operations are settled before anything is planned.
//!
//! A pending create may or may not have happened: the resource is looked up by its
//! `pwless:address` tag or deterministic name and, if found, recorded — never created twice.
//! A kind whose create is idempotent (a Kubernetes server-side apply) is not looked up: the
//! plan creates it again, which is the same apply — and needs no cluster access before the
//! plan has made the access entries.
//! A pending update or delete leaves the resource recorded as it was; the refresh that follows
//! shows where it really stands, and the plan finishes the job.

use std::time::Duration;

use super::{Event, Events, Journal, Settlement};
use crate::graph::ResourceKind;
use crate::provider::{Applied, Inputs, Provider, ProviderError};
use crate::state::{Operation, StateError};

/// How long an interrupted create is looked for before it is taken as never made. The dead
/// run's request may still be in flight, and cloud reads are eventually consistent: a create
/// that lands after a too-early "not found" would be made twice.
pub const GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    #[error("cannot save the state")]
    State(#[from] StateError),
    #[error("{address}: an interrupted create of a {kind} cannot be checked by this pwless")]
    Unsupported { address: String, kind: ResourceKind },
    #[error("{address}: cannot check an interrupted create")]
    Check {
        address: String,
        source: ProviderError,
    },
}

/// Settles every pending operation, in the order they were begun, reporting each as an
/// [`Event::Settled`]. `grace` is how long a create is looked for ([`GRACE`]). Stops at the
/// first operation it cannot settle: what is settled so far is saved.
pub async fn recover<P: Provider>(
    journal: &Journal,
    provider: &P,
    events: &dyn Events,
    grace: Duration,
) -> Result<(), RecoverError> {
    let pending = journal.snapshot().await.pending_operations;
    for operation in pending {
        let address = operation.address.as_str();
        let settlement = match operation.operation {
            Operation::Create if operation.kind.create_is_idempotent() => {
                journal.forget_pending(address).await?;
                Settlement::MadeAgain
            }
            Operation::Create => {
                let inputs = operation.inputs.clone().unwrap_or_default();
                if !provider.supports(operation.kind) {
                    return Err(RecoverError::Unsupported {
                        address: address.to_string(),
                        kind: operation.kind,
                    });
                }
                match adopt_patiently(provider, address, operation.kind, &inputs, grace).await {
                    Ok(Some(applied)) => {
                        journal
                            .recorded(
                                address,
                                operation.kind,
                                inputs,
                                applied,
                                operation.dependencies.clone(),
                            )
                            .await?;
                        Settlement::Adopted
                    }
                    // Not there, or its name is held by another's resource: ours was never
                    // made. (Never adopt the other: the next apply refuses it by name.)
                    Ok(None) => {
                        journal.forget_pending(address).await?;
                        Settlement::NotCreated
                    }
                    Err(taken) if taken.kind == crate::provider::ErrorKind::Taken => {
                        journal.forget_pending(address).await?;
                        Settlement::NotCreated
                    }
                    Err(source) => {
                        return Err(RecoverError::Check {
                            address: address.to_string(),
                            source,
                        });
                    }
                }
            }
            Operation::Update | Operation::Delete => {
                journal.forget_pending(address).await?;
                Settlement::Refreshed {
                    operation: operation.operation,
                }
            }
        };
        events.emit(Event::Settled {
            address: address.to_string(),
            settlement,
        });
    }
    Ok(())
}

/// [`Provider::adopt`], asked again with backoff until found or `grace` has passed (asked
/// once when `grace` is zero).
async fn adopt_patiently<P: Provider>(
    provider: &P,
    address: &str,
    kind: ResourceKind,
    inputs: &Inputs,
    grace: Duration,
) -> Result<Option<Applied>, ProviderError> {
    let started = tokio::time::Instant::now();
    for delay in crate::provider::wait::delays() {
        if let Some(found) = provider.adopt(address, kind, inputs).await? {
            return Ok(Some(found));
        }
        if started.elapsed() + delay > grace {
            return Ok(None);
        }
        tokio::time::sleep(delay).await;
    }
    Ok(None)
}
