//! Polling for effects that complete after a response was sent (background revalidation, the
//! outbox relay, a bus consumer, a pool that recovers).

use std::future::Future;
use std::time::{Duration, Instant};

/// How long [`eventually`] waits before it fails the test.
pub const TIMEOUT: Duration = Duration::from_secs(15);
/// The pause between two checks.
pub const INTERVAL: Duration = Duration::from_millis(25);

/// Retries `check` until it returns `Some` and returns that value; panics naming `what` after
/// [`TIMEOUT`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {TIMEOUT:?} waiting for: {what}"
        );
        tokio::time::sleep(INTERVAL).await;
    }
}

/// [`eventually`] for a condition: retries `check` until it returns true.
pub async fn eventually_true<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually(what, || {
        let fut = check();
        async move { fut.await.then_some(()) }
    })
    .await
}
