//! Polling for readiness and deletion, and retries with backoff.
//!
//! The SDK's waiters poll every 30 s at the least; a resource that is ready after 3 s would
//! cost 27 s of nothing. pwless polls at an interval proportional to the time already waited
//! ([`poll_interval`]: 5 % of it, from 0.5 s, at most 15 s), so readiness is noticed within
//! 5 % of any wait (or 0.5 s), whether AWS takes seconds or a quarter of an hour. A geometric
//! backoff (x1.6 to 15 s) noticed a 10-minute EKS cluster up to 60 % late when the last pauses
//! were long against the wait. Retries of failed calls ([`retrying`]) keep the geometric
//! backoff ([`delays`]): there the point is to back off.

use std::future::Future;
use std::time::Duration;

use super::{ErrorKind, ProviderError};

/// The delays between checks: 0.5 s, 0.8 s, 1.3 s, … capped at 15 s.
pub fn delays() -> impl Iterator<Item = Duration> {
    std::iter::successors(Some(Duration::from_millis(500)), |previous| {
        Some(previous.mul_f64(1.6).min(Duration::from_secs(15)))
    })
}

/// The pause after a check made `elapsed` into a wait: 5 % of `elapsed`, at least 0.5 s, at
/// most 15 s. A resource ready at time T is then seen by T + max(0.5 s, 5 % of T) (or 15 s,
/// for waits beyond 5 minutes).
pub fn poll_interval(elapsed: Duration) -> Duration {
    elapsed
        .mul_f64(0.05)
        .clamp(Duration::from_millis(500), Duration::from_secs(15))
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
    let mut last;
    loop {
        match check().await {
            Ok(Poll::Ready(value)) => return Ok(value),
            Ok(Poll::Pending(status)) => last = status,
            Err(error) if error.kind == ErrorKind::Retryable => last = error.message,
            Err(error) => return Err(error),
        }
        let delay = poll_interval(started.elapsed());
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

    /// When a poll that checks at 0, then after each [`poll_interval`], first sees a resource
    /// that became ready at `ready` (checks take no time here).
    fn noticed(ready: Duration) -> Duration {
        let mut now = Duration::ZERO;
        while now < ready {
            now += poll_interval(now);
        }
        now
    }

    #[test]
    fn readiness_is_noticed_within_five_percent_of_the_wait_or_half_a_second() {
        // The case: a geometric backoff noticed waits of minutes up to 60 % late.
        for seconds in [1.0, 3.0, 10.0, 42.0, 100.0, 299.0, 300.0] {
            let ready = Duration::from_secs_f64(seconds);
            let late = noticed(ready) - ready;
            let allowed = ready.mul_f64(0.05).max(Duration::from_millis(500));
            assert!(
                late <= allowed + Duration::from_millis(1),
                "ready at {seconds}s, noticed {late:?} late (allowed {allowed:?})"
            );
        }
        // Beyond 5 minutes the 15 s cap bounds it.
        for seconds in [600.0, 900.0, 1800.0] {
            let ready = Duration::from_secs_f64(seconds);
            assert!(noticed(ready) - ready <= Duration::from_secs(15));
        }
    }
}
