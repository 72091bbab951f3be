//! News: who must look again, and why. Storage functions announce what they
//! changed; controllers, agents' sessions and live feeds subscribe. Besides
//! storage only the gateway's sweep for undelivered runs announces
//! (`remind_session`); no one else wakes anyone, so every cause of work is
//! listed here.
//!
//! News only says "look again": every listener also looks on its own now
//! and then (the controllers' resync, the gateway's sweep for undelivered
//! runs, a feed that lagged), so lost news delays work but never loses it.
//! On PostgreSQL the news that other replicas need (runs and agents) goes
//! through NOTIFY, which this replica hears too; SQLite has one server, so
//! it stays in this process. Most controllers' wake-ups stay in this
//! process (a controller runs on the one replica holding its lease, and the
//! others' resync is its fallback); those on a task's path from ended to
//! started (`tasks_ready`, `runs_dirty`, `room_freed`) and lost leases
//! (`leases_ended`) also cross replicas by NOTIFY on `xene_controllers`,
//! since that lease may sit on another replica.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::AnyPool;
use tokio::sync::{Notify, broadcast};

use super::Backend;
use super::changes::{Following, Hub};

/// What a run's news says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// This run's state changed (and maybe its logs).
    Run(i64),
    /// Only this run's logs grew: its state is as it was.
    Logs(i64),
    /// Anything may have changed (news may have been missed): look again.
    All,
}

/// News for every agent at once.
pub const ALL_AGENTS: &str = "*";

/// How much agent news waits for a slow session before it is told it lagged.
const AGENT_NEWS_BUFFER: usize = 4096;

/// Controllers named in `xene_controllers` news.
const CONTROLLER_SCHEDULER: &str = "scheduler";
const CONTROLLER_READINESS: &str = "readiness";
const CONTROLLER_SUPERVISOR: &str = "supervisor";

/// The news hub; one per `Db`, shared by its clones.
#[derive(Debug)]
pub struct News {
    backend: Backend,
    pool: AnyPool,
    /// Runs' news, for feeds.
    runs: Arc<Hub>,
    /// Which agent has work: an agent id, or `*` for every agent. Each
    /// session looks only at its own news, so a run placed on one agent
    /// does not send a thousand sessions to the database; one that lagged
    /// behind looks anyway.
    agents: broadcast::Sender<Arc<str>>,
    scheduler: Arc<Notify>,
    supervisor: Arc<Notify>,
    readiness: Arc<Notify>,
    builtin_agent: Arc<Notify>,
    /// A NOTIFY per controller is on its way: a burst of wake-ups (a
    /// thousand attempts ending) sends one, not a thousand.
    notifying: Arc<[AtomicBool; 3]>,
}

impl News {
    /// The hub for a database; on PostgreSQL it also starts relaying the
    /// other replicas' news, for as long as the hub lives.
    pub(crate) fn new(backend: Backend, pool: AnyPool, url: &str) -> Arc<Self> {
        let news = Arc::new(Self {
            backend,
            pool,
            runs: Hub::new(),
            agents: broadcast::Sender::new(AGENT_NEWS_BUFFER),
            scheduler: Arc::default(),
            supervisor: Arc::default(),
            readiness: Arc::default(),
            builtin_agent: Arc::default(),
            notifying: Default::default(),
        });
        if backend == Backend::Postgres {
            tokio::spawn(listen(url.to_string(), Arc::downgrade(&news)));
        }
        news
    }

    // Announcing.

    /// A run's state changed: its feed and the lists look again, on every
    /// replica.
    pub async fn run_changed(&self, run_id: i64) {
        self.announce(Change::Run(run_id)).await
    }

    /// A run's logs grew (its state did not change): its feed reads them.
    pub async fn logs_grew(&self, run_id: i64) {
        self.announce(Change::Logs(run_id)).await
    }

    /// A run was queued: feeds hear of it and the scheduler places it (or
    /// its first tasks), wherever its lease is.
    pub async fn run_queued(&self, run_id: i64) {
        self.run_changed(run_id).await;
        self.tasks_ready();
    }

    /// Runs wait to be placed (new, or back in the queue): the scheduler
    /// looks.
    pub fn queue_grew(&self) {
        self.scheduler.notify_one();
    }

    /// An agent has room (a run of its ended, or it came online): the
    /// scheduler looks, on whichever replica holds its lease.
    pub fn room_freed(&self) {
        self.wake_controller(CONTROLLER_SCHEDULER);
    }

    /// Runs' leases ended before their agents finished them: the supervisor
    /// retries or ends them, on whichever replica holds its lease.
    pub fn leases_ended(&self) {
        self.wake_controller(CONTROLLER_SUPERVISOR);
    }

    /// Task attempts became ready (a run's roots, a dependant, a retry): the
    /// scheduler looks, on whichever replica holds its lease.
    pub fn tasks_ready(&self) {
        self.wake_controller(CONTROLLER_SCHEDULER);
    }

    /// Runs were marked dirty: the readiness controller looks, on whichever
    /// replica holds its lease.
    pub fn runs_dirty(&self) {
        self.wake_controller(CONTROLLER_READINESS);
    }

    /// Wakes a controller here at once and, on PostgreSQL, on every other
    /// replica by NOTIFY (a second wake-up here is harmless). Wake-ups
    /// that come while a NOTIFY for the same controller is on its way
    /// ride on it: the controller looks at everything when it wakes.
    fn wake_controller(&self, name: &'static str) {
        self.controller(name).notify_one();
        if self.backend == Backend::Postgres {
            let slot = match name {
                CONTROLLER_READINESS => 1,
                CONTROLLER_SUPERVISOR => 2,
                _ => 0,
            };
            if self.notifying[slot].swap(true, Ordering::AcqRel) {
                return;
            }
            let pool = self.pool.clone();
            let notifying = self.notifying.clone();
            tokio::spawn(async move {
                // Cleared before sending: a wake-up from now on needs its
                // own NOTIFY, as this one may already be read.
                notifying[slot].store(false, Ordering::Release);
                let notified = sqlx::query("SELECT pg_notify('xene_controllers', $1)")
                    .bind(name)
                    .execute(&pool)
                    .await;
                if let Err(e) = notified {
                    tracing::warn!(controller = name, error = %e, "cannot wake a controller on other replicas; their resync will");
                }
            });
        }
    }

    /// The wake-up of a controller named in `xene_controllers` news.
    fn controller(&self, name: &str) -> &Notify {
        match name {
            CONTROLLER_READINESS => &self.readiness,
            CONTROLLER_SUPERVISOR => &self.supervisor,
            _ => &self.scheduler,
        }
    }

    /// An agent (`None`: every agent), built-in or remote, wherever it is
    /// connected, has runs to start or cancel.
    pub fn agent_has_work(&self, agent: Option<&str>) {
        self.builtin_agent.notify_one();
        let agent = agent.unwrap_or(ALL_AGENTS);
        match self.backend {
            Backend::Sqlite => {
                let _ = self.agents.send(Arc::from(agent));
            }
            Backend::Postgres => {
                let pool = self.pool.clone();
                let local = self.agents.clone();
                let agent = agent.to_string();
                tokio::spawn(async move {
                    let notified = sqlx::query("SELECT pg_notify('xene_agents', $1)")
                        .bind(&agent)
                        .execute(&pool)
                        .await;
                    // At least this replica's sessions hear it.
                    if notified.is_err() {
                        let _ = local.send(Arc::from(agent.as_str()));
                    }
                });
            }
        }
    }

    /// Reminds the session of an agent connected to this replica to look at
    /// its runs (news of them may have been lost).
    pub fn remind_session(&self, agent: &str) {
        let _ = self.agents.send(Arc::from(agent));
    }

    /// Anything may have changed: every feed of this replica looks again.
    pub fn look_again(&self) {
        self.runs.deliver(Change::All);
    }

    async fn announce(&self, change: Change) {
        let (run_id, payload) = match change {
            Change::Run(id) => (id, id.to_string()),
            Change::Logs(id) => (id, format!("L{id}")),
            Change::All => {
                self.look_again();
                return;
            }
        };
        match self.backend {
            Backend::Sqlite => self.runs.deliver(change),
            Backend::Postgres => {
                let notified = sqlx::query("SELECT pg_notify('xene_runs', $1)")
                    .bind(payload)
                    .execute(&self.pool)
                    .await;
                if let Err(e) = notified {
                    tracing::warn!(run_id, error = %e, "cannot announce a change; feeds catch up on the next one");
                }
            }
        }
    }

    // Subscribing.

    /// News of one run from now on, for its feed.
    pub fn follow(&self, run_id: i64) -> Following {
        self.runs.follow(run_id)
    }

    /// News of every run's state from now on, for lists (`Change::Run`,
    /// `Change::All`; growing logs are not news here).
    pub fn list(&self) -> broadcast::Receiver<Change> {
        self.runs.subscribe_list()
    }

    /// Agent news from now on (ids of agents with work, `*` for all), fed
    /// by every replica on PostgreSQL; for agents' sessions.
    pub fn agents(&self) -> broadcast::Receiver<Arc<str>> {
        self.agents.subscribe()
    }

    /// Wakes the scheduler.
    pub fn scheduler(&self) -> Arc<Notify> {
        self.scheduler.clone()
    }

    /// Wakes the supervisor.
    pub fn supervisor(&self) -> Arc<Notify> {
        self.supervisor.clone()
    }

    /// Wakes the readiness controller.
    pub fn readiness(&self) -> Arc<Notify> {
        self.readiness.clone()
    }

    /// Wakes this process's built-in agent.
    pub fn builtin_agent(&self) -> Arc<Notify> {
        self.builtin_agent.clone()
    }
}

/// Relays PostgreSQL notifications to this process's listeners, for as long
/// as the hub lives; after a lost connection, says that anything may have
/// changed, so no feed or session misses what happened meanwhile.
async fn listen(url: String, news: Weak<News>) {
    let mut delay = Duration::from_millis(200);
    loop {
        let listener = async {
            let mut listener = sqlx::postgres::PgListener::connect(&url).await?;
            listener
                .listen_all(["xene_runs", "xene_agents", "xene_controllers"])
                .await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = match listener.await {
            Ok(l) => l,
            Err(e) => {
                if news.upgrade().is_none() {
                    return;
                }
                tracing::warn!(error = %e, "cannot listen for changes; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        delay = Duration::from_millis(200);
        match news.upgrade() {
            Some(news) => {
                news.runs.deliver(Change::All);
                let _ = news.agents.send(Arc::from(ALL_AGENTS));
            }
            None => return,
        }
        loop {
            // Wakes now and then to notice that the hub is gone.
            let note = match tokio::time::timeout(Duration::from_secs(5), listener.try_recv()).await
            {
                Err(_) => {
                    if news.upgrade().is_none() {
                        return;
                    }
                    continue;
                }
                Ok(Ok(Some(note))) => note,
                // The connection dropped: reconnect, then say "look again".
                Ok(Ok(None)) | Ok(Err(_)) => break,
            };
            let Some(news) = news.upgrade() else { return };
            let payload = note.payload();
            if note.channel() == "xene_agents" {
                let _ = news.agents.send(Arc::from(payload));
                continue;
            }
            if note.channel() == "xene_controllers" {
                news.controller(payload).notify_one();
                continue;
            }
            let change = match payload.strip_prefix('L') {
                Some(id) => id.parse().ok().map(Change::Logs),
                None => payload.parse().ok().map(Change::Run),
            };
            if let Some(change) = change {
                news.runs.deliver(change);
            }
        }
    }
}
