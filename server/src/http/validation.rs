//! Validating a workflow is CPU and memory in the size of its text: about
//! 85 MB at the peak for a dense spec near the 1 MiB limit. So only as many
//! validations run at once as the machine has cores, a few more wait their
//! turn, and past that the answer is 503 with `Retry-After` (xenectl and
//! the editor wait and try again). Forty editors saving at once cost a few
//! hundred MB, not gigabytes.

use std::sync::LazyLock;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use xene_core::Diagnostics;
use xene_core::spec::Workflow;

use super::error::ApiError;

/// Seconds a refused client is told to wait: about one validation.
pub const RETRY_AFTER_SECS: u32 = 1;

struct Limits {
    /// Validations that may run at once: one per core.
    running: std::sync::Arc<Semaphore>,
    /// Validations that may be running or waiting: a small queue more.
    admitted: std::sync::Arc<Semaphore>,
}

/// One per process: the limit is the machine's, whichever server asks.
static LIMITS: LazyLock<Limits> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    Limits {
        running: std::sync::Arc::new(Semaphore::new(cores)),
        admitted: std::sync::Arc::new(Semaphore::new(cores * 3)),
    }
});

/// Validates `text` off the async workers, or says the server is busy.
pub async fn parse_workflow(text: String) -> Result<Result<Workflow, Diagnostics>, ApiError> {
    let busy = || ApiError::Busy {
        message: format!(
            "the server is validating as many workflows as it can: try again in {RETRY_AFTER_SECS} s"
        ),
        retry_after: RETRY_AFTER_SECS,
    };
    let admitted = LIMITS
        .admitted
        .clone()
        .try_acquire_owned()
        .map_err(|_| busy())?;
    let running = LIMITS
        .running
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| busy())?;
    // The permits go with the work: a client that hangs up does not free
    // its place while its validation still runs.
    let permits: (OwnedSemaphorePermit, OwnedSemaphorePermit) = (admitted, running);
    tokio::task::spawn_blocking(move || {
        let _permits = permits;
        xene_core::parse_workflow(&text)
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))
}
