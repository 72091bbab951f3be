//! Level-triggered controllers. Desired state lives in the database; each
//! controller compares it with what it observes and acts. A controller wakes
//! on a change notification or on its periodic resync, whichever comes
//! first, so a lost notification delays work but never loses it. Singleton
//! controllers run only on the server holding their lease.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::storage::Db;

pub mod local_agent;
pub mod scheduler;
pub mod supervisor;

/// Timings of the controllers; tests shorten them.
#[derive(Debug, Clone)]
pub struct Timings {
    /// How often every controller looks again without being woken.
    pub resync: Duration,
    /// How long a run's lease lasts without a heartbeat from its agent.
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
    pub wake_scheduler: Arc<Notify>,
    pub wake_supervisor: Arc<Notify>,
    /// Agents waiting to hear that runs were put on them (or cancelled).
    pub wake_agents: Arc<Notify>,
    /// The same news for remote agents' sessions: a counter, because a
    /// watch never loses a change to a session that was busy when it came.
    pub agent_news: watch::Sender<u64>,
    pub shutdown: CancellationToken,
}

impl Context {
    /// Tells every agent, built-in and remote, to look at its runs again.
    pub fn tell_agents(&self) {
        self.wake_agents.notify_one();
        self.agent_news.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Waits for a wake-up, the resync period, or shutdown (returns false).
    pub async fn wait(&self, wake: &Notify) -> bool {
        tokio::select! {
            _ = wake.notified() => true,
            _ = tokio::time::sleep(self.timings.resync) => true,
            _ = self.shutdown.cancelled() => false,
        }
    }
}
