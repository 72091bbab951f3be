//! The scheduler: puts ready task attempts on agents that fit (merged
//! selector labels, the runtime, a free slot, the run's `concurrency`,
//! `placement: together`), the least loaded first, and records why an
//! attempt waits when none fits. Woken by `tasks_ready` news (a run
//! created, a task ended, an agent joined or freed a slot), from any
//! replica; its resync only covers lost news and retries' backoffs.
//! Between runs it is FIFO by attempt id: a big run's tasks may hold the
//! fleet before a later small run's.

pub use crate::choose;
mod tasks;

use std::sync::{Arc, Mutex};

use super::Context;
use crate::storage::{StorageError, attempts, now_ms};

pub use tasks::Memory;

pub async fn run(ctx: Context) {
    let wake = ctx.db.news().scheduler();
    let memory = Arc::new(Mutex::new(Memory::default()));
    let waker = wake.clone();
    super::run_singleton(ctx, "scheduler", wake, move |ctx| {
        let memory = memory.clone();
        let waker = waker.clone();
        Box::pin(async move {
            pass_with(ctx, &memory).await?;
            wake_after_backoff(ctx, &memory, waker).await
        })
    })
    .await;
}

/// One look at the ready task attempts. Returns how many were placed.
pub async fn pass(ctx: &Context) -> Result<usize, StorageError> {
    pass_with(ctx, &Mutex::new(Memory::default())).await
}

async fn pass_with(ctx: &Context, memory: &Mutex<Memory>) -> Result<usize, StorageError> {
    let mut remembered = std::mem::take(&mut *memory.lock().unwrap());
    let placed = tasks::pass(ctx, &mut remembered).await;
    *memory.lock().unwrap() = remembered;
    placed
}

/// Wakes the scheduler when the earliest retry backoff ends, so a retry
/// waits for its backoff and not for the next resync on top of it. One
/// timer at a time: a later backoff waits for the pass the earlier wakes.
async fn wake_after_backoff(
    ctx: &Context,
    memory: &Mutex<Memory>,
    wake: Arc<tokio::sync::Notify>,
) -> Result<(), StorageError> {
    let now = now_ms();
    let Some(at) = attempts::next_not_before(&ctx.db, now).await? else {
        return Ok(());
    };
    {
        let mut memory = memory.lock().unwrap();
        if memory.wake_at.is_some_and(|set| set > now && set <= at) {
            return Ok(());
        }
        memory.wake_at = Some(at);
    }
    let shutdown = ctx.shutdown.clone();
    let delay = std::time::Duration::from_millis(u64::try_from(at - now).unwrap_or(0));
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::time::sleep(delay) => wake.notify_one(),
            _ = shutdown.cancelled() => {}
        }
    });
    Ok(())
}
