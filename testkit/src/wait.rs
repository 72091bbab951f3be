//! Waiting for something to become true. The timeout only turns a hang
//! into a failure; nothing here measures time.

use std::time::{Duration, Instant};

/// How often a condition is looked at again.
const POLL: Duration = Duration::from_millis(20);

/// Polls `check` until it gives `Ok`; panics after `timeout` with `what`
/// and the last `Err` (what was seen instead).
pub async fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let started = Instant::now();
    loop {
        match check().await {
            Ok(value) => return value,
            Err(seen) => assert!(
                started.elapsed() < timeout,
                "{what}: not within {timeout:?}:\n{seen}"
            ),
        }
        tokio::time::sleep(POLL).await;
    }
}

/// [`wait_for`] for code that does not run on an async runtime.
pub fn wait_for_blocking<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let started = Instant::now();
    loop {
        match check() {
            Ok(value) => return value,
            Err(seen) => assert!(
                started.elapsed() < timeout,
                "{what}: not within {timeout:?}:\n{seen}"
            ),
        }
        std::thread::sleep(POLL);
    }
}
