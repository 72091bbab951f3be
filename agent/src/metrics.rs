//! The server-connected agent's own metrics, served by `xene-agent connect
//! --metrics-addr`. One set per process: an agent process serves one server.

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use xene_core::event::RunEvent;

/// Label set of a finished task or step: its status only, so the set
/// stays bounded whatever the workflows are called.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    /// The status, in the API's spelling.
    pub status: String,
}

/// The agent's metrics.
pub struct AgentMetrics {
    registry: Registry,
    /// Task attempts ended (every try counts), by status.
    pub tasks_finished: Family<StatusLabel, Counter>,
    /// Steps ended, by status.
    pub steps_finished: Family<StatusLabel, Counter>,
    /// Durations of finished tasks.
    pub task_duration: Histogram,
    /// Task attempts executing now (a server's agent runs attempts).
    pub running_tasks: Gauge,
    /// 1 while the WebSocket to the server is up.
    pub connected: Gauge,
    /// Connections to the server opened.
    pub connects: Counter,
    /// Connections to the server lost or closed.
    pub disconnects: Counter,
}

/// The same bounds as the server's task durations: 10 ms to an hour.
pub const DURATION_BUCKETS: [f64; 12] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0, 120.0, 600.0, 3600.0,
];

/// This process's agent metrics.
pub static METRICS: LazyLock<AgentMetrics> = LazyLock::new(AgentMetrics::new);

impl AgentMetrics {
    fn new() -> Self {
        let mut registry = Registry::default();
        let metrics = Self {
            tasks_finished: Family::default(),
            steps_finished: Family::default(),
            task_duration: Histogram::new(DURATION_BUCKETS),
            running_tasks: Gauge::default(),
            connected: Gauge::default(),
            connects: Counter::default(),
            disconnects: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "xene_agent_tasks_finished",
            "Task attempts this agent finished, by status",
            metrics.tasks_finished.clone(),
        );
        registry.register(
            "xene_agent_steps_finished",
            "Steps this agent ended, by status",
            metrics.steps_finished.clone(),
        );
        registry.register_with_unit(
            "xene_agent_task_duration",
            "Duration of tasks this agent ended",
            Unit::Seconds,
            metrics.task_duration.clone(),
        );
        registry.register(
            "xene_agent_running_tasks",
            "Task attempts executing on this agent",
            metrics.running_tasks.clone(),
        );
        registry.register(
            "xene_agent_connected",
            "1 while the connection to the server is up",
            metrics.connected.clone(),
        );
        registry.register(
            "xene_agent_connects",
            "Connections to the server opened",
            metrics.connects.clone(),
        );
        registry.register(
            "xene_agent_disconnects",
            "Connections to the server lost or closed",
            metrics.disconnects.clone(),
        );
        crate::telemetry::register_common(&mut registry, "xene_agent");
        Self {
            registry,
            ..metrics
        }
    }

    /// Counts what an executor reported.
    pub fn observe(&self, event: &RunEvent) {
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
                // A task that never started has no duration worth a sample.
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
            _ => {}
        }
    }

    /// The OpenMetrics text of every metric.
    pub fn render(&self) -> String {
        crate::telemetry::encode(&self.registry)
    }
}

/// Counts a task attempt as executing for as long as it lives, panics
/// included.
pub struct RunningTask(());

impl RunningTask {
    /// Counts one more executing attempt.
    pub fn new() -> Self {
        METRICS.running_tasks.inc();
        Self(())
    }
}

impl Default for RunningTask {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for RunningTask {
    fn drop(&mut self) {
        METRICS.running_tasks.dec();
    }
}
