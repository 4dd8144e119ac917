//! Refresh: read every recorded resource concurrently, so a no-op plan costs about as much as
//! the slowest single read.

use futures_util::stream::{self, StreamExt};

use crate::plan::ObservedState;
use crate::provider::Provider;
use crate::state::State;

/// Observes every resource of `state` the provider supports; all read errors are returned.
pub async fn refresh<P: Provider>(
    state: &State,
    provider: &P,
    parallelism: usize,
) -> Result<ObservedState, Vec<(String, String)>> {
    let reads = stream::iter(
        state
            .resources
            .iter()
            .filter(|resource| provider.supports(resource.kind)),
    )
    .map(|resource| async move { (resource.address.clone(), provider.read(resource).await) })
    .buffer_unordered(parallelism.max(1))
    .collect::<Vec<_>>()
    .await;
    let mut observed = ObservedState::new();
    let mut errors = Vec::new();
    for (address, result) in reads {
        match result {
            Ok(seen) => {
                observed.insert(address, seen);
            }
            Err(error) => errors.push((address, error.message)),
        }
    }
    if errors.is_empty() {
        Ok(observed)
    } else {
        Err(errors)
    }
}
