//! Level-triggered controllers. Desired state lives in the database; each
//! controller compares it with what it observes and acts. A controller wakes
//! on a change notification or on its periodic resync, whichever comes
//! first, so a lost notification delays work but never loses it. Singleton
//! controllers run only on the server holding their lease.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use futures::future::BoxFuture;

use crate::metrics::Metrics;
use crate::storage::{Db, StorageError, leases};

pub mod collector;
pub mod cron;
pub mod dispatch;
pub mod local_agent;
pub mod readiness;
pub mod scheduler;
pub mod supervisor;

/// Timings of the controllers; tests shorten them.
#[derive(Debug, Clone)]
pub struct Timings {
    /// How often every controller looks again without being woken.
    pub resync: Duration,
    /// How long a task attempt's lease lasts without a heartbeat from its
    /// agent (`--task-lease`).
    pub run_lease: Duration,
    /// How long a controller lease lasts without renewal.
    pub controller_lease: Duration,
    /// A queued run waiting longer than this is reported as stuck.
    pub pickup_timeout: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            resync: Duration::from_secs(1),
            run_lease: Duration::from_secs(15),
            controller_lease: Duration::from_secs(10),
            pickup_timeout: Duration::from_secs(300),
        }
    }
}

/// What the controllers share.
#[derive(Clone)]
pub struct Context {
    pub db: Db,
    /// This server process, as a lease holder.
    pub instance: String,
    pub timings: Timings,
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
    /// Opens secrets for the runs that use them.
    pub vault: Arc<crate::vault::Vault>,
    /// Parsed pipelines by workflow version: dispatch never parses a spec.
    pub specs: Arc<crate::storage::specs::Specs>,
    /// The URL agents reach this server at, for the install command an
    /// agent of another protocol is told to run.
    pub public_url: Arc<str>,
    /// Where artifacts' blobs are stored.
    pub blobs: Arc<crate::files::BlobStore>,
}

/// What answering agents' requests about files takes, from `ctx`.
pub fn files_service(ctx: &Context) -> crate::files::service::Service {
    crate::files::service::Service {
        db: ctx.db.clone(),
        specs: ctx.specs.clone(),
        blobs: ctx.blobs.clone(),
        metrics: ctx.metrics.clone(),
    }
}

impl Context {
    /// Waits for a wake-up, the resync period, or shutdown (returns false).
    pub async fn wait(&self, wake: &Notify) -> bool {
        tokio::select! {
            _ = wake.notified() => true,
            _ = tokio::time::sleep(self.timings.resync) => true,
            _ = self.shutdown.cancelled() => false,
        }
    }
}

/// Counts what applying a task attempt's events did: the events new to
/// the store, and the run's start or end they caused (which no agent
/// reports any more: the server derives them).
pub async fn observe_applied(
    ctx: &Context,
    run_id: i64,
    fresh: &[xene_core::event::RunEvent],
    applied: &crate::storage::events::AttemptApplied,
) {
    use xene_core::event::RunEvent;
    if let Some((_, waited_ms)) = applied.handed_off {
        ctx.metrics.observe_queue_wait(waited_ms);
    }
    ctx.metrics.observe_events(&ctx.db, run_id, fresh).await;
    let mut run = Vec::new();
    if applied.run_started {
        run.push(RunEvent::RunStarted {
            run_id: run_id.to_string(),
            pipeline: String::new(),
        });
    }
    if let Some(status) = applied.run_finished {
        run.push(RunEvent::RunFinished {
            status,
            duration_ms: 0,
        });
    }
    if !run.is_empty() {
        ctx.metrics.observe_events(&ctx.db, run_id, &run).await;
    }
}

/// Runs `pass` whenever `wake` fires or the resync period passes, on the one
/// server that holds the lease `name`; gives the lease up on shutdown so
/// another server takes over at once.
pub async fn run_singleton(
    ctx: Context,
    name: &'static str,
    wake: Arc<Notify>,
    pass: impl for<'a> Fn(&'a Context) -> BoxFuture<'a, Result<(), StorageError>>,
) {
    let ttl = ctx.timings.controller_lease;
    let ttl_ms = ttl.as_millis() as i64;
    // When the lease was last taken or renewed here: renewed only once a
    // third of it has passed, not at every wake-up (a write per task of a
    // chain otherwise), which leaves two thirds of it for the pass.
    let mut renewed: Option<std::time::Instant> = None;
    while ctx.wait(&wake).await {
        let held = renewed.is_some_and(|at| at.elapsed() < ttl / 3);
        let asked = std::time::Instant::now();
        let taken = if held {
            Ok(true)
        } else {
            leases::acquire(&ctx.db, name, &ctx.instance, ttl_ms).await
        };
        match taken {
            Ok(true) => {
                if !held {
                    renewed = Some(asked);
                }
                if let Err(e) = pass(&ctx).await {
                    tracing::warn!(controller = name, error = %e, "pass failed; retrying at the next resync");
                }
            }
            Ok(false) => renewed = None,
            Err(e) => {
                renewed = None;
                tracing::warn!(controller = name, error = %e, "cannot take the lease");
            }
        }
    }
    let _ = leases::release(&ctx.db, name, &ctx.instance).await;
}
