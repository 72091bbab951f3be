//! Waiting for something to become true. The timeout only turns a hang
//! into a failure; nothing here measures time.

use std::time::{Duration, Instant};

/// How often a condition is looked at again.
const POLL: Duration = Duration::from_millis(20);

/// Polls `check` until it gives `Ok`; panics after `timeout` with `what`
/// and the last `Err` (what was seen instead). A check still running when
/// the time is up is dropped, so a hanging check fails too.
pub async fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let started = Instant::now();
    let mut seen = String::from("(no check finished)");
    loop {
        let remaining = timeout.saturating_sub(started.elapsed());
        // The check is polled before the deadline, so one that is ready
        // always counts, even with no time left.
        match tokio::time::timeout(remaining, check()).await {
            Ok(Ok(value)) => return value,
            Ok(Err(now)) => seen = now,
            Err(_) => panic!(
                "{what}: not within {timeout:?}: a check was still running; the last one saw:\n{seen}"
            ),
        }
        assert!(
            started.elapsed() < timeout,
            "{what}: not within {timeout:?}:\n{seen}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// [`wait_for`] for code that does not run on an async runtime. `check`
/// must not block for long: nothing can interrupt it, so the timeout is
/// only looked at between checks and a check that hangs hangs the wait.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    #[should_panic(expected = "a check was still running")]
    async fn a_check_that_hangs_is_timed_out() {
        wait_for("nothing", Duration::from_millis(50), async || {
            std::future::pending::<Result<(), String>>().await
        })
        .await;
    }

    #[tokio::test]
    async fn a_check_that_passes_gives_its_value() {
        let mut tries = 0;
        let got = wait_for("the third try", Duration::from_secs(60), async || {
            tries += 1;
            if tries < 3 {
                Err(format!("try {tries}"))
            } else {
                Ok(tries)
            }
        })
        .await;
        assert_eq!(got, 3);
    }
}
