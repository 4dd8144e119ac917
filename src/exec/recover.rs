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

use super::Journal;
use crate::graph::ResourceKind;
use crate::provider::{Applied, Inputs, Provider, ProviderError};
use crate::state::Operation;

/// How long an interrupted create is looked for before it is taken as never made. The dead
/// run's request may still be in flight, and cloud reads are eventually consistent: a create
/// that lands after a too-early "not found" would be made twice.
const GRACE: Duration = Duration::from_secs(10);

/// Settles every pending operation; returns what it did, one line each.
pub async fn recover<P: Provider>(journal: &Journal, provider: &P) -> Result<Vec<String>, String> {
    let pending = journal.snapshot().await.pending_operations;
    let mut notes = Vec::new();
    for operation in pending {
        let address = operation.address.as_str();
        match operation.operation {
            Operation::Create if operation.kind.create_is_idempotent() => {
                journal.forget_pending(address).await?;
                notes.push(format!(
                    "{address}: an interrupted create is simply made again (it is idempotent)"
                ));
            }
            Operation::Create => {
                let inputs = operation.inputs.clone().unwrap_or_default();
                if !provider.supports(operation.kind) {
                    return Err(format!(
                        "{address}: an interrupted create of a {} cannot be checked by this pwless",
                        operation.kind
                    ));
                }
                match adopt_patiently(provider, address, operation.kind, &inputs).await {
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
                        notes.push(format!(
                            "{address}: adopted the resource an interrupted run created"
                        ));
                    }
                    Ok(None) => {
                        journal.forget_pending(address).await?;
                        notes.push(format!("{address}: an interrupted run had not created it"));
                    }
                    Err(error) => {
                        return Err(format!(
                            "{address}: cannot check an interrupted create: {}",
                            error.message
                        ));
                    }
                }
            }
            Operation::Update | Operation::Delete => {
                journal.forget_pending(address).await?;
                notes.push(
                    format!(
                        "{address}: an interrupted {:?} is settled by refreshing it",
                        operation.operation
                    )
                    .to_lowercase(),
                );
            }
        }
    }
    Ok(notes)
}

/// [`Provider::adopt`], asked again with backoff until found or [`GRACE`] has passed.
async fn adopt_patiently<P: Provider>(
    provider: &P,
    address: &str,
    kind: ResourceKind,
    inputs: &Inputs,
) -> Result<Option<Applied>, ProviderError> {
    let started = tokio::time::Instant::now();
    for delay in crate::provider::wait::delays() {
        if let Some(found) = provider.adopt(address, kind, inputs).await? {
            return Ok(Some(found));
        }
        if started.elapsed() + delay > GRACE {
            return Ok(None);
        }
        tokio::time::sleep(delay).await;
    }
    Ok(None)
}
