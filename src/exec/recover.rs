//! Recovery of a run that died: its pending operations are settled before anything is planned.
//!
//! A pending create may or may not have happened: the resource is looked up by its
//! `pwless:address` tag or deterministic name and, if found, recorded — never created twice.
//! A pending update or delete leaves the resource recorded as it was; the refresh that follows
//! shows where it really stands, and the plan finishes the job.

use super::Journal;
use crate::provider::Provider;
use crate::state::Operation;

/// Settles every pending operation; returns what it did, one line each.
pub async fn recover<P: Provider>(journal: &Journal, provider: &P) -> Result<Vec<String>, String> {
    let pending = journal.snapshot().await.pending_operations;
    let mut notes = Vec::new();
    for operation in pending {
        let address = operation.address.as_str();
        match operation.operation {
            Operation::Create => {
                let inputs = operation.inputs.clone().unwrap_or_default();
                if !provider.supports(operation.kind) {
                    return Err(format!(
                        "{address}: an interrupted create of a {} cannot be checked by this pwless",
                        operation.kind
                    ));
                }
                match provider.adopt(address, operation.kind, &inputs).await {
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
