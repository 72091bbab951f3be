//! The supervisor: runs whose agent stopped renewing their lease become
//! `unknown` and, with attempts left, go back to the queue; with none left
//! their unfinished tasks and steps end too (`unknown` if they were running,
//! `not_executed` if they never started), in the same transaction. Task
//! attempts (runs of model 2) whose lease ran out are re-placed, retried or
//! ended by `attempts::expire_leases`. Agents that went silent are marked
//! offline.

use super::Context;
use crate::storage::{StorageError, agents, attempts, now_ms, runs};

pub async fn run(ctx: Context) {
    let wake = ctx.db.news().supervisor();
    super::run_singleton(ctx, "supervisor", wake, |ctx| {
        Box::pin(async move { pass(ctx).await })
    })
    .await;
}

pub async fn pass(ctx: &Context) -> Result<(), StorageError> {
    let (lost, requeued) = runs::expire_leases(&ctx.db).await?;
    if lost > 0 {
        tracing::warn!(lost, requeued, "runs lost with their agents");
    }
    let expired = attempts::expire_leases(&ctx.db, now_ms()).await?;
    if expired.lost > 0 {
        tracing::warn!(
            lost = expired.lost,
            again = expired.again,
            "task attempts lost with their agents"
        );
    }
    if expired.lost >= attempts::EXPIRE_PAGE as u64 {
        // A page at most per pass: more may have run out, look again now
        // rather than at the next resync.
        ctx.db.news().leases_ended();
    }
    // Silent for as long as a run lease: whatever it held has expired too.
    agents::mark_silent_offline(&ctx.db, ctx.timings.run_lease.as_millis() as i64).await?;
    // Runs held `together` by an agent that is gone and holds none of
    // their tasks would wait for it forever.
    attempts::unpin_absent(&ctx.db).await?;
    Ok(())
}
