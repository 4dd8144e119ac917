//! Adaptive polling for readiness and deletion, and retries with backoff.
//!
//! The SDK's waiters poll every 30 s at the least; a resource that is ready after 3 s would
//! cost 27 s of nothing. pwless checks after 0.5 s, then backs off (x1.6) to at most 15 s.

use std::future::Future;
use std::time::Duration;

use super::{ErrorKind, ProviderError};

/// The delays between checks: 0.5 s, 0.8 s, 1.3 s, … capped at 15 s.
pub fn delays() -> impl Iterator<Item = Duration> {
    std::iter::successors(Some(Duration::from_millis(500)), |previous| {
        Some(previous.mul_f64(1.6).min(Duration::from_secs(15)))
    })
}

/// What one poll found.
pub enum Poll<T> {
    Ready(T),
    Pending(String),
}

/// Polls `check` until it is ready, a permanent error, or `limit` passes.
pub async fn until<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> Result<T, ProviderError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Poll<T>, ProviderError>>,
{
    let started = tokio::time::Instant::now();
    let mut last = String::new();
    for delay in delays() {
        match check().await {
            Ok(Poll::Ready(value)) => return Ok(value),
            Ok(Poll::Pending(status)) => last = status,
            Err(error) if error.kind == ErrorKind::Retryable => last = error.message,
            Err(error) => return Err(error),
        }
        if started.elapsed() + delay > limit {
            break;
        }
        tokio::time::sleep(delay).await;
    }
    Err(ProviderError {
        kind: ErrorKind::Permanent,
        code: None,
        message: format!(
            "gave up waiting for {what} after {}s (last seen: {last})",
            limit.as_secs()
        ),
    })
}

/// Runs `call` again while it fails with a retryable error (throttling, IAM's eventual
/// consistency, a dependency still draining), backing off, for at most `limit`.
pub async fn retrying<T, F, Fut>(limit: Duration, mut call: F) -> Result<T, ProviderError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ProviderError>>,
{
    let started = tokio::time::Instant::now();
    let mut delays = delays();
    loop {
        match call().await {
            Err(error) if error.kind == ErrorKind::Retryable => {
                let delay = delays.next().unwrap_or(Duration::from_secs(15));
                if started.elapsed() + delay > limit {
                    return Err(error);
                }
                tokio::time::sleep(delay).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_check_comes_quickly_and_backoff_is_capped() {
        let first: Vec<Duration> = delays().take(12).collect();
        assert_eq!(first[0], Duration::from_millis(500));
        assert!(first.windows(2).all(|pair| pair[0] <= pair[1]));
        assert_eq!(*first.last().unwrap(), Duration::from_secs(15));
    }
}
