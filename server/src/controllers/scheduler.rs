//! The scheduler: puts ready task attempts on agents that fit (merged
//! selector labels, the runtime, a free slot, the run's `concurrency`,
//! `placement: together`), the least loaded first, and records why an
//! attempt waits when none fits. Woken by `tasks_ready` news (a run
//! created, a task ended, an agent joined or freed a slot), from any
//! replica; its resync only covers lost news and retries' backoffs.
//! Between runs it is FIFO by attempt id: a big run's tasks may hold the
//! fleet before a later small run's.

pub mod choose;
mod tasks;

use super::Context;
use crate::storage::StorageError;

pub async fn run(ctx: Context) {
    let wake = ctx.db.news().scheduler();
    super::run_singleton(ctx, "scheduler", wake, |ctx| {
        Box::pin(async move { pass(ctx).await.map(|_| ()) })
    })
    .await;
}

/// One look at the ready task attempts. Returns how many were placed.
pub async fn pass(ctx: &Context) -> Result<usize, StorageError> {
    tasks::pass(ctx).await
}
