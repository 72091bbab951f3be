//! In-process measurements for `/metrics`: histograms of what the database
//! does not keep (queue wait, start latency, task durations). Counts of runs
//! and agents come from the database at scrape time.

use std::fmt::Write;
use std::sync::Mutex;

/// Upper bounds in seconds, shared by every histogram: from 1 ms to 1 h.
const BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0, 3600.0,
];

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bound, count) in BUCKETS.iter().zip(self.counts.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bound, count) in BUCKETS.iter().zip(self.counts.iter()) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"+Inf\"}} {}\n{name}_sum {}\n{name}_count {}",
            self.count, self.sum, self.count
        );
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    queue_wait: Mutex<Histogram>,
    start_latency: Mutex<Histogram>,
    task_duration: Mutex<Histogram>,
}

impl Metrics {
    /// From the run's request to its placement on an agent.
    pub fn observe_queue_wait(&self, ms: i64) {
        self.queue_wait
            .lock()
            .unwrap()
            .observe(ms.max(0) as f64 / 1000.0);
    }

    /// From the run's request to its agent starting it.
    pub fn observe_start_latency(&self, ms: i64) {
        self.start_latency
            .lock()
            .unwrap()
            .observe(ms.max(0) as f64 / 1000.0);
    }

    pub fn observe_task_duration(&self, ms: u64) {
        self.task_duration
            .lock()
            .unwrap()
            .observe(ms as f64 / 1000.0);
    }

    pub fn render(&self, out: &mut String) {
        self.queue_wait.lock().unwrap().render(
            out,
            "xene_run_queue_wait_seconds",
            "Time from a run's request to its placement on an agent.",
        );
        self.start_latency.lock().unwrap().render(
            out,
            "xene_run_start_latency_seconds",
            "Time from a run's request to its agent starting it.",
        );
        self.task_duration.lock().unwrap().render(
            out,
            "xene_task_duration_seconds",
            "Duration of finished tasks.",
        );
    }
}
