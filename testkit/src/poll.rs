//! Polling with a deadline: one loop ([`poll`]) behind the tests' [`eventually`] (which fails
//! the test) and the benchmark's [`wait_for`] (which returns an error and how long it took).

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::bail;

/// How long a condition may take before a test fails.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Calls `check` every `every` until it returns `Some`; an error when it fails, or when `limit`
/// has passed without it.
pub async fn poll<T, F, Fut>(
    what: &str,
    limit: Duration,
    every: Duration,
    mut check: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if started.elapsed() > limit {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(every).await;
    }
}

/// Polls `check` (every 5 ms: the benchmark's latencies are measured with it) until it holds;
/// how long that took.
pub async fn wait_for<F, Fut>(what: &str, limit: Duration, mut check: F) -> anyhow::Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    let every = Duration::from_millis(5);
    poll(what, limit, every, || {
        let holds = check();
        async move { Ok(holds.await.then_some(())) }
    })
    .await?;
    Ok(started.elapsed())
}

/// Polls `check` until it returns `Some`, failing the test with `what` after [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_within(DEADLINE, what, check).await
}

/// [`eventually`] with another deadline, for what waits on someone else's backoff.
pub async fn eventually_within<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let every = Duration::from_millis(200);
    let found = poll(what, limit, every, || {
        let found = check();
        async move { Ok(found.await) }
    });
    found.await.unwrap_or_else(|e| panic!("{e}"))
}
