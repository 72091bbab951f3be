//! The readiness controller: the level-triggered backstop behind the
//! incremental readiness of runs of model 2 (`storage::readiness`). Runs
//! marked `dirty` (at a server's start, at an upgrade's conversion, or by a
//! path that could not decide inline) are looked at again from their rows:
//! counters recomputed, unblocked tasks decided, finished runs ended. Runs
//! of model 1 still queued once new runs are of model 2 are converted first.

use super::Context;
use crate::storage::{StorageError, readiness, runs};

pub async fn run(ctx: Context) {
    // What happened while no server ran (or before this one took over) is
    // seen on the first pass.
    if let Err(e) = readiness::mark_active_dirty(&ctx.db).await {
        tracing::warn!(error = %e, "cannot mark active runs for readiness; the next start will");
    }
    // Runs of model 1 under way belong to agents that are refused now.
    if let Err(e) = runs::end_model_1_leases(&ctx.db).await {
        tracing::warn!(error = %e, "cannot end the leases of runs placed whole; they run out");
    }
    let wake = ctx.db.news().readiness();
    super::run_singleton(ctx, "readiness", wake, |ctx| {
        Box::pin(async move { pass(ctx).await })
    })
    .await;
}

pub async fn pass(ctx: &Context) -> Result<(), StorageError> {
    // Runs queued before new runs were of model 2 (an upgrade).
    runs::convert_queued(&ctx.db).await?;
    let looked = readiness::resync_dirty(&ctx.db).await?;
    if looked as i64 == readiness::RESYNC_PAGE {
        // More are marked: look again at once rather than at the resync.
        ctx.db.news().runs_dirty();
    }
    Ok(())
}
