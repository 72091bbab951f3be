//! The server's metrics for `/metrics`, with the official Prometheus client.
//!
//! Counters and histograms are kept in process as things happen. The few
//! numbers that live only in the database (queued and running runs) are read
//! at scrape time with indexed counts under a timeout; one that cannot be
//! read is left out of that scrape instead of failing it. Label values are
//! bounded: statuses and triggers are closed sets, routes are the router's
//! patterns, and pipelines are capped at [`MAX_PIPELINES`] distinct values.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use xene_core::event::RunEvent;

use crate::storage::{Db, StorageError, now_ms};

/// Distinct `pipeline` label values kept; the rest are counted as `other`.
pub const MAX_PIPELINES: usize = 200;

/// How long a scrape waits for one database count.
const DB_GAUGE_TIMEOUT: Duration = Duration::from_secs(2);

/// Stored bytes older than this are dropped at a scrape: three collector
/// periods (of 5 minutes) without a pass here.
pub const STORED_MAX_AGE: Duration = Duration::from_secs(15 * 60);

/// Queue and start times: 1 ms to an hour.
const WAIT_BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0, 3600.0,
];
/// Request and event-apply times: 0.5 ms to 10 s.
const FAST_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, 10.0,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    trigger: String,
    pipeline: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FinishedRunLabels {
    status: String,
    trigger: String,
    pipeline: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoredLabels {
    workflow: String,
    kind: &'static str,
}

fn wait_histogram() -> Histogram {
    Histogram::new(WAIT_BUCKETS)
}

fn fast_histogram() -> Histogram {
    Histogram::new(FAST_BUCKETS)
}

/// Every metric of one server.
pub struct Metrics {
    registry: Registry,
    runs_started: Family<RunLabels, Counter>,
    runs_finished: Family<FinishedRunLabels, Counter>,
    tasks_finished: Family<StatusLabel, Counter>,
    steps_finished: Family<StatusLabel, Counter>,
    webhook_deliveries: Family<OutcomeLabel, Counter>,
    sign_ins: Family<OutcomeLabel, Counter>,
    agent_connects: Counter,
    agent_disconnects: Family<ReasonLabel, Counter>,
    queue_wait: Histogram,
    start_latency: Histogram,
    task_duration: Histogram,
    request_duration: Family<RequestLabels, Histogram, fn() -> Histogram>,
    event_apply: Histogram,
    from_db: std::sync::Arc<DbGauges>,
    agents_connected: Family<KindLabel, Gauge>,
    feed_clients: Gauge,
    artifact_uploaded_bytes: Counter,
    artifact_blobs_deleted: Counter,
    workflow_stored: Family<StoredLabels, Gauge>,
    /// When the collector last set `workflow_stored` here: a server that
    /// lost the collector's lease no longer runs its pass (and so never
    /// clears it there), so a scrape drops series this old.
    workflow_stored_at: Mutex<Option<std::time::Instant>>,
    pipelines: Mutex<HashSet<String>>,
    /// Trace contexts of runs requested through this process, so that the
    /// spans of their execution join the request's trace.
    pub run_traces: RunTraces,
}

/// The W3C `traceparent` of the request that created each run, for runs
/// created by this process while it exports traces. Telemetry, not state:
/// a run executed by another replica, or after a restart, starts a trace of
/// its own. Bounded: the oldest entries go first.
#[derive(Debug, Default)]
pub struct RunTraces(Mutex<std::collections::BTreeMap<i64, String>>);

impl RunTraces {
    const MAX: usize = 10_000;

    /// Remembers the trace of the current span for `run_id`, if it is exported.
    pub fn remember(&self, run_id: i64) {
        if let Some(traceparent) = xene_agent::telemetry::traceparent(&tracing::Span::current()) {
            let mut traces = self.0.lock().unwrap();
            traces.insert(run_id, traceparent);
            while traces.len() > Self::MAX {
                traces.pop_first();
            }
        }
    }

    /// Makes the request that created `run_id` the parent of `span`.
    pub fn adopt(&self, run_id: i64, span: &tracing::Span) {
        if let Some(traceparent) = self.0.lock().unwrap().get(&run_id) {
            xene_agent::telemetry::set_remote_parent(span, traceparent);
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut m = Self {
            registry: Registry::default(),
            runs_started: Family::default(),
            runs_finished: Family::default(),
            tasks_finished: Family::default(),
            steps_finished: Family::default(),
            webhook_deliveries: Family::default(),
            sign_ins: Family::default(),
            agent_connects: Counter::default(),
            agent_disconnects: Family::default(),
            queue_wait: wait_histogram(),
            start_latency: wait_histogram(),
            task_duration: Histogram::new(xene_agent::metrics::DURATION_BUCKETS),
            request_duration: Family::new_with_constructor(fast_histogram),
            event_apply: fast_histogram(),
            from_db: std::sync::Arc::default(),
            agents_connected: Family::default(),
            feed_clients: Gauge::default(),
            artifact_uploaded_bytes: Counter::default(),
            artifact_blobs_deleted: Counter::default(),
            workflow_stored: Family::default(),
            workflow_stored_at: Mutex::default(),
            pipelines: Mutex::default(),
            run_traces: RunTraces::default(),
        };
        let r = &mut m.registry;
        r.register(
            "xene_runs_started",
            "Runs requested, by trigger and pipeline (workflow/pipeline)",
            m.runs_started.clone(),
        );
        r.register(
            "xene_runs_finished",
            "Runs ended, by status, trigger and pipeline",
            m.runs_finished.clone(),
        );
        r.register(
            "xene_tasks_finished",
            "Tasks ended, by status (a retried attempt counts when the task ends)",
            m.tasks_finished.clone(),
        );
        r.register(
            "xene_steps_finished",
            "Steps ended, by status",
            m.steps_finished.clone(),
        );
        r.register(
            "xene_webhook_deliveries",
            "Webhook deliveries received, by outcome",
            m.webhook_deliveries.clone(),
        );
        r.register(
            "xene_sign_ins",
            "Sign-in attempts, by outcome",
            m.sign_ins.clone(),
        );
        r.register(
            "xene_gateway_connects",
            "Remote agent connections opened",
            m.agent_connects.clone(),
        );
        r.register(
            "xene_gateway_disconnects",
            "Remote agent connections ended, by reason",
            m.agent_disconnects.clone(),
        );
        r.register_with_unit(
            "xene_run_queue_wait",
            "Time a task attempt waited to be placed on an agent, from ready (a run's first tasks: from its request)",
            Unit::Seconds,
            m.queue_wait.clone(),
        );
        r.register_with_unit(
            "xene_run_start_latency",
            "Time from a run's request to its agent starting it",
            Unit::Seconds,
            m.start_latency.clone(),
        );
        r.register_with_unit(
            "xene_task_duration",
            "Duration of ended tasks",
            Unit::Seconds,
            m.task_duration.clone(),
        );
        r.register_with_unit(
            "xene_http_request_duration",
            "HTTP requests, by method, route pattern and status",
            Unit::Seconds,
            m.request_duration.clone(),
        );
        r.register_with_unit(
            "xene_event_apply",
            "Time to store a batch of run events reported by an agent",
            Unit::Seconds,
            m.event_apply.clone(),
        );
        r.register_collector(Box::new(m.from_db.clone()));
        r.register(
            "xene_agents_connected",
            "Agents connected to this server process, by kind (builtin, remote)",
            m.agents_connected.clone(),
        );
        r.register(
            "xene_feed_clients",
            "Browsers and CLIs following live run updates from this server process",
            m.feed_clients.clone(),
        );
        r.register(
            "xene_artifact_uploaded_bytes",
            "Bytes of artifacts' blobs uploaded (blobs the store already held are not)",
            m.artifact_uploaded_bytes.clone(),
        );
        r.register(
            "xene_artifact_blobs_deleted",
            "Artifacts' blobs deleted from the store by the collector",
            m.artifact_blobs_deleted.clone(),
        );
        r.register(
            "xene_workflow_stored_bytes",
            "Bytes each workflow keeps in the store, by kind (artifacts, caches), as of the collector's last pass",
            m.workflow_stored.clone(),
        );
        xene_agent::telemetry::register_common(r, "xene");
        m
    }

    /// Blobs of `bytes` were uploaded for a publish.
    pub fn artifact_uploaded(&self, bytes: u64) {
        self.artifact_uploaded_bytes.inc_by(bytes);
    }

    /// The collector deleted `n` blobs.
    pub fn artifact_blobs_deleted(&self, n: u64) {
        self.artifact_blobs_deleted.inc_by(n);
    }

    /// What each workflow keeps, from the collector's pass: the series of
    /// workflows no longer listed go.
    pub fn set_workflow_stored(&self, stored: &[crate::storage::caches::quota::WorkflowStored]) {
        self.workflow_stored.clear();
        *self.workflow_stored_at.lock().unwrap() = Some(std::time::Instant::now());
        for w in stored {
            for (kind, bytes) in [("artifacts", w.artifacts), ("caches", w.caches)] {
                let labels = StoredLabels {
                    workflow: w.workflow.clone(),
                    kind,
                };
                let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
                self.workflow_stored.get_or_create(&labels).set(bytes);
            }
        }
    }

    /// Drops every workflow's stored bytes: this server is not (or no
    /// longer) the collector, whose series are the ones to read.
    pub fn clear_workflow_stored(&self) {
        self.workflow_stored.clear();
        *self.workflow_stored_at.lock().unwrap() = None;
    }

    /// Drops the stored bytes set longer than `max_age` ago: the collector
    /// that set them has not run here since (another server holds its
    /// lease).
    pub fn expire_workflow_stored(&self, max_age: Duration) {
        let set_at = *self.workflow_stored_at.lock().unwrap();
        if set_at.is_some_and(|at| at.elapsed() >= max_age) {
            self.clear_workflow_stored();
        }
    }

    /// The `pipeline` label for `workflow/pipeline`, or `other` once the cap
    /// of distinct values is reached.
    fn pipeline_label(&self, workflow: &str, pipeline: &str) -> String {
        let name = format!("{workflow}/{pipeline}");
        let mut seen = self.pipelines.lock().unwrap();
        if seen.contains(&name) {
            return name;
        }
        if seen.len() < MAX_PIPELINES {
            seen.insert(name.clone());
            return name;
        }
        "other".into()
    }

    /// A run was requested.
    pub fn run_started(&self, trigger: &str, workflow: &str, pipeline: &str) {
        self.runs_started
            .get_or_create(&RunLabels {
                trigger: trigger.into(),
                pipeline: self.pipeline_label(workflow, pipeline),
            })
            .inc();
    }

    /// A run ended with `status`.
    pub fn run_finished(&self, status: &str, trigger: &str, workflow: &str, pipeline: &str) {
        self.runs_finished
            .get_or_create(&FinishedRunLabels {
                status: status.into(),
                trigger: trigger.into(),
                pipeline: self.pipeline_label(workflow, pipeline),
            })
            .inc();
    }

    /// A webhook delivery was received; `outcome` is one of a fixed set
    /// (`accepted`, `rejected`, ...).
    pub fn webhook_delivery(&self, outcome: &'static str) {
        self.webhook_deliveries
            .get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            })
            .inc();
    }

    /// A sign-in ended; `outcome` is one of a fixed set.
    pub fn sign_in(&self, outcome: &'static str) {
        self.sign_ins
            .get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            })
            .inc();
    }

    /// A remote agent connected; returns a guard that counts it as
    /// connected until dropped.
    pub fn agent_connected(&self, kind: &'static str) -> ConnectedGuard {
        if kind == "remote" {
            self.agent_connects.inc();
        }
        let gauge = self
            .agents_connected
            .get_or_create(&KindLabel { kind: kind.into() })
            .clone();
        gauge.inc();
        ConnectedGuard(gauge)
    }

    /// A remote agent's connection ended; `reason` is one of a fixed set.
    pub fn agent_disconnected(&self, reason: &'static str) {
        self.agent_disconnects
            .get_or_create(&ReasonLabel {
                reason: reason.into(),
            })
            .inc();
    }

    /// A client started following live updates; counted until the guard drops.
    pub fn feed_client(&self) -> ConnectedGuard {
        self.feed_clients.inc();
        ConnectedGuard(self.feed_clients.clone())
    }

    /// From a task attempt's readiness to its placement on an agent.
    pub fn observe_queue_wait(&self, ms: i64) {
        self.queue_wait.observe(ms.max(0) as f64 / 1000.0);
    }

    /// From the run's request to its agent starting it.
    pub fn observe_start_latency(&self, ms: i64) {
        self.start_latency.observe(ms.max(0) as f64 / 1000.0);
    }

    /// One HTTP request answered. `route` is the router's pattern (bounded).
    pub fn observe_request(&self, method: &str, route: &str, status: u16, latency: Duration) {
        self.request_duration
            .get_or_create(&RequestLabels {
                method: method.into(),
                route: route.into(),
                status,
            })
            .observe(latency.as_secs_f64());
    }

    /// One batch of events stored.
    pub fn observe_event_apply(&self, took: Duration) {
        self.event_apply.observe(took.as_secs_f64());
    }

    /// Counts what newly stored events say: tasks and steps ended, and a
    /// run's start and end (whose labels are read from the database, once
    /// per run).
    pub async fn observe_events(&self, db: &Db, run_id: i64, events: &[RunEvent]) {
        let mut run = None;
        for event in events {
            match event {
                RunEvent::TaskFinished {
                    status,
                    duration_ms,
                    retry_in_ms: None,
                    attempt,
                    ..
                } => {
                    self.tasks_finished
                        .get_or_create(&StatusLabel {
                            status: status.to_string(),
                        })
                        .inc();
                    if *attempt > 0 {
                        self.task_duration.observe(*duration_ms as f64 / 1000.0);
                    }
                }
                RunEvent::StepFinished { status, .. } => {
                    self.steps_finished
                        .get_or_create(&StatusLabel {
                            status: status.to_string(),
                        })
                        .inc();
                }
                RunEvent::RunStarted { .. } | RunEvent::RunFinished { .. } => {
                    if run.is_none() {
                        run = match run_labels(db, run_id).await {
                            Ok(labels) => labels,
                            Err(e) => {
                                tracing::warn!(run_id, error = %e, "cannot read a run's labels for metrics");
                                None
                            }
                        };
                    }
                    let Some(run) = &run else { continue };
                    match event {
                        RunEvent::RunStarted { .. } => {
                            self.observe_start_latency(now_ms() - run.requested_at);
                        }
                        RunEvent::RunFinished { status, .. } => self.run_finished(
                            status.as_str(),
                            &run.trigger,
                            &run.workflow,
                            &run.pipeline,
                        ),
                        _ => {}
                    }
                }
                _ => {}
            }
        }
    }

    /// A queued run was cancelled before any agent took it.
    pub async fn run_cancelled(&self, db: &Db, run_id: i64) {
        if let Ok(Some(run)) = run_labels(db, run_id).await {
            self.run_finished("cancelled", &run.trigger, &run.workflow, &run.pipeline);
        }
    }

    /// Reads the gauges that live in the database: indexed counts, each
    /// under a timeout. One that fails is left out of the scrape.
    pub async fn refresh_from_db(&self, db: &Db, pickup_timeout: Duration) {
        self.expire_workflow_stored(STORED_MAX_AGE);
        let mut runs = Vec::new();
        for status in ["queued", "starting_up", "running", "shutting_down"] {
            match tokio::time::timeout(DB_GAUGE_TIMEOUT, count_runs(db, status)).await {
                Ok(Ok(n)) => runs.push((status, n)),
                failed => warn_gauge("xene_runs", failure(failed)),
            }
        }
        let before = now_ms() - pickup_timeout.as_millis() as i64;
        let stuck = match tokio::time::timeout(
            DB_GAUGE_TIMEOUT,
            crate::storage::runs::count_waiting_since(db, before),
        )
        .await
        {
            Ok(Ok(n)) => Some(n),
            failed => {
                warn_gauge("xene_runs_stuck", failure(failed));
                None
            }
        };
        let mut agents = Vec::new();
        for state in ["online", "offline"] {
            match tokio::time::timeout(DB_GAUGE_TIMEOUT, count_agents(db, state)).await {
                Ok(Ok(n)) => agents.push((state, n)),
                failed => warn_gauge("xene_agents", failure(failed)),
            }
        }
        let artifact_bytes = match tokio::time::timeout(
            DB_GAUGE_TIMEOUT,
            crate::storage::artifacts::stored_bytes(db),
        )
        .await
        {
            Ok(Ok(n)) => Some(n),
            failed => {
                warn_gauge("xene_artifact_bytes", failure(failed));
                None
            }
        };
        *self.from_db.values.lock().unwrap() = DbValues {
            runs,
            stuck,
            agents,
            artifact_bytes,
            turns: (db.backend() == crate::storage::Backend::Sqlite).then(|| db.write_turns()),
        };
    }

    /// The OpenMetrics text of every metric.
    pub fn render(&self) -> String {
        xene_agent::telemetry::encode(&self.registry)
    }
}

fn failure<T>(result: Result<Result<T, StorageError>, tokio::time::error::Elapsed>) -> String {
    match result {
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {DB_GAUGE_TIMEOUT:?}"),
        Ok(Ok(_)) => "no error".into(),
    }
}

fn warn_gauge(name: &str, error: String) {
    tracing::warn!(
        metric = name,
        error,
        "a gauge could not be read; it is left out of this scrape"
    );
}

/// The gauges read from the database by the last scrape, encoded only
/// when they could be read.
#[derive(Debug, Default)]
struct DbGauges {
    values: Mutex<DbValues>,
}

#[derive(Debug, Default)]
struct DbValues {
    runs: Vec<(&'static str, i64)>,
    stuck: Option<i64>,
    agents: Vec<(&'static str, i64)>,
    /// Bytes the artifact store holds, each blob once.
    artifact_bytes: Option<u64>,
    /// SQLite's write turn (this process's writers take turns).
    turns: Option<crate::storage::TurnFigures>,
}

impl prometheus_client::collector::Collector for DbGauges {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::MetricType;
        use prometheus_client::metrics::gauge::ConstGauge;

        let values = self.values.lock().unwrap();
        if !values.runs.is_empty() {
            let mut family = encoder.encode_descriptor(
                "xene_runs",
                "Runs waiting or executing, by status (from the database at scrape time)",
                None,
                MetricType::Gauge,
            )?;
            for (status, n) in &values.runs {
                let labels = StatusLabel {
                    status: (*status).to_string(),
                };
                ConstGauge::new(*n).encode(family.encode_family(&labels)?)?;
            }
        }
        if !values.agents.is_empty() {
            let mut family = encoder.encode_descriptor(
                "xene_agents",
                "Agents (not revoked) by state, every replica's (from the database at scrape time)",
                None,
                MetricType::Gauge,
            )?;
            for (state, n) in &values.agents {
                let labels = StateLabel {
                    state: (*state).to_string(),
                };
                ConstGauge::new(*n).encode(family.encode_family(&labels)?)?;
            }
        }
        if let Some(turns) = values.turns {
            use prometheus_client::metrics::counter::ConstCounter;
            for (name, help, value) in [
                (
                    "xene_sqlite_write_turns",
                    "SQLite write transactions and statements, which take turns",
                    turns.taken as f64,
                ),
                (
                    "xene_sqlite_write_turn_wait_seconds",
                    "Time writers spent waiting for their turn",
                    turns.waited_secs,
                ),
                (
                    "xene_sqlite_write_turn_held_seconds",
                    "Time writers held the turn (their transactions' length)",
                    turns.held_secs,
                ),
            ] {
                let counter = ConstCounter::new(value);
                counter.encode(encoder.encode_descriptor(
                    name,
                    help,
                    None,
                    counter.metric_type(),
                )?)?;
            }
        }
        if let Some(n) = values.artifact_bytes {
            let gauge = ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX));
            gauge.encode(encoder.encode_descriptor(
                "xene_artifact_bytes",
                "Bytes of artifacts' blobs the store holds, each blob once",
                None,
                gauge.metric_type(),
            )?)?;
        }
        if let Some(n) = values.stuck {
            let gauge = ConstGauge::new(n);
            gauge.encode(encoder.encode_descriptor(
                "xene_runs_stuck",
                "Queued runs nobody picked up within the pick-up timeout",
                None,
                gauge.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

/// Counts a gauge up while alive.
pub struct ConnectedGuard(Gauge);

impl Drop for ConnectedGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

struct Labels {
    workflow: String,
    pipeline: String,
    trigger: String,
    requested_at: i64,
}

async fn run_labels(db: &Db, run_id: i64) -> Result<Option<Labels>, StorageError> {
    use sqlx::Row;
    let row =
        sqlx::query("SELECT workflow, pipeline, trigger, requested_at FROM runs WHERE id = $1")
            .bind(run_id)
            .fetch_optional(db.pool())
            .await?;
    Ok(row.map(|row| Labels {
        workflow: row.get(0),
        pipeline: row.get(1),
        trigger: row.get(2),
        requested_at: row.get(3),
    }))
}

/// An index range count (`agents_by_state`), never a table scan.
async fn count_agents(db: &Db, state: &str) -> Result<i64, StorageError> {
    use sqlx::Row;
    let row = sqlx::query("SELECT COUNT(*) FROM agents WHERE state = $1 AND revoked = 0")
        .bind(state)
        .fetch_one(db.pool())
        .await?;
    Ok(row.get(0))
}

/// An index range count (`runs_by_status`), never a table scan.
async fn count_runs(db: &Db, status: &str) -> Result<i64, StorageError> {
    use sqlx::Row;
    let row = sqlx::query("SELECT COUNT(*) FROM runs WHERE status = $1")
        .bind(status)
        .fetch_one(db.pool())
        .await?;
    Ok(row.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_gauge_that_cannot_be_read_is_left_out_not_the_scrape() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("x.db").display());
        let db = Db::connect(&url).await.unwrap();
        let metrics = Metrics::new();
        metrics.refresh_from_db(&db, Duration::from_secs(60)).await;
        let text = metrics.render();
        assert!(
            text.contains("\nxene_runs{status=\"queued\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("\nxene_runs_stuck 0\n"), "{text}");

        db.close().await;
        metrics.refresh_from_db(&db, Duration::from_secs(60)).await;
        let text = metrics.render();
        assert!(!text.contains("xene_runs{"), "{text}");
        assert!(!text.contains("xene_runs_stuck"), "{text}");
        assert!(text.contains("xene_build_info{version="), "{text}");
        assert!(text.contains("process_open_fds"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn pipeline_labels_are_capped() {
        let metrics = Metrics::new();
        for i in 0..MAX_PIPELINES + 10 {
            metrics.run_started("manual", "w", &format!("p{i}"));
        }
        let text = metrics.render();
        let series = text
            .lines()
            .filter(|l| l.starts_with("xene_runs_started_total{"))
            .count();
        assert_eq!(series, MAX_PIPELINES + 1, "{text}");
        assert!(text.contains("xene_runs_started_total{trigger=\"manual\",pipeline=\"other\"} 10"));
    }
}
