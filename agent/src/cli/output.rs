//! What a local run prints: live lines prefixed by task and step, a progress
//! line on a terminal, a summary table at the end; or, with `--json`, one
//! JSON report (live lines then go to stderr).

use std::collections::BTreeSet;
use std::io::{self, Write};

use tokio::sync::mpsc;
use xene_agent::RunReport;
use xene_core::event::RunEvent;
use xene_core::status::{StepStatus, TaskStatus};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Live lines on stdout with a progress line kept at the bottom.
    Terminal,
    /// Live lines on stdout (a pipe or a file).
    Plain,
    /// Live lines on stderr; the report as JSON on stdout at the end.
    Json,
}

pub struct Printer {
    mode: Mode,
    total: usize,
    finished: usize,
    running: BTreeSet<String>,
    /// Whether a progress line is on screen and must be cleared first.
    progress_shown: bool,
}

impl Printer {
    pub fn new(mode: Mode, total: usize) -> Self {
        Self {
            mode,
            total,
            finished: 0,
            running: BTreeSet::new(),
            progress_shown: false,
        }
    }

    /// Prints events until the executor drops its sender.
    pub async fn print(mut self, mut events: mpsc::Receiver<RunEvent>) -> Self {
        let mut out: Box<dyn Write + Send> = match self.mode {
            Mode::Json => Box::new(io::BufWriter::new(io::stderr())),
            Mode::Terminal | Mode::Plain => Box::new(io::BufWriter::new(io::stdout())),
        };
        while let Some(event) = events.recv().await {
            self.event(&mut out, event);
            // Batch what is already queued, then flush once.
            while let Ok(event) = events.try_recv() {
                self.event(&mut out, event);
            }
            if self.mode == Mode::Terminal {
                self.draw_progress(&mut out);
            }
            let _ = out.flush();
        }
        if self.progress_shown {
            let _ = write!(out, "\r\x1b[2K");
            let _ = out.flush();
        }
        self
    }

    fn event(&mut self, out: &mut dyn Write, event: RunEvent) {
        if self.progress_shown {
            let _ = write!(out, "\r\x1b[2K");
            self.progress_shown = false;
        }
        let _ = match event {
            RunEvent::RunStarted { run_id, pipeline } => {
                writeln!(
                    out,
                    "run {run_id}: pipeline {pipeline}, {} task(s)",
                    self.total
                )
            }
            RunEvent::TaskStarted { task, attempt } => {
                self.running.insert(task.clone());
                if attempt > 1 {
                    writeln!(out, "[{task}] attempt {attempt}")
                } else {
                    Ok(())
                }
            }
            // A restore's line is in the task's log already.
            RunEvent::StepStarted { .. } | RunEvent::CacheRestored { .. } => Ok(()),
            RunEvent::Log {
                task, step, data, ..
            } => writeln!(out, "[{task}/{step}] {data}"),
            RunEvent::Logs {
                task, step, data, ..
            } => data
                .lines()
                .try_for_each(|line| writeln!(out, "[{task}/{step}] {line}")),
            RunEvent::StepFinished {
                task,
                step,
                status,
                exit_code,
                ..
            } => match (status, exit_code) {
                (StepStatus::Error, Some(code)) => {
                    writeln!(out, "[{task}/{step}] failed with exit code {code}")
                }
                (StepStatus::Cancelled, _) => writeln!(out, "[{task}/{step}] cancelled"),
                _ => Ok(()),
            },
            RunEvent::TaskFinished {
                task,
                status,
                duration_ms,
                error,
                retry_in_ms,
                ..
            } => {
                self.running.remove(&task);
                let error = error.map(|e| format!(": {e}")).unwrap_or_default();
                if let Some(wait) = retry_in_ms {
                    writeln!(
                        out,
                        "[{task}] {}{error}; retrying in {}",
                        status.as_str(),
                        seconds(wait)
                    )
                } else {
                    self.finished += 1;
                    writeln!(
                        out,
                        "[{task}] {} in {}{error}",
                        status.as_str(),
                        seconds(duration_ms)
                    )
                }
            }
            RunEvent::RunFinished { .. } => Ok(()),
        };
    }

    fn draw_progress(&mut self, out: &mut dyn Write) {
        if self.finished == self.total || self.running.is_empty() {
            return;
        }
        let mut running: Vec<&str> = self.running.iter().map(String::as_str).take(4).collect();
        if self.running.len() > 4 {
            running.push("...");
        }
        let _ = write!(
            out,
            "-- {}/{} done, running: {}",
            self.finished,
            self.total,
            running.join(", ")
        );
        self.progress_shown = true;
    }

    /// The summary table, or the JSON report.
    pub fn finish(&self, report: &RunReport) -> io::Result<()> {
        let mut out = io::stdout().lock();
        if self.mode == Mode::Json {
            serde_json::to_writer(&mut out, report)?;
            return writeln!(out);
        }
        let width = report
            .tasks
            .keys()
            .map(String::len)
            .max()
            .unwrap_or(4)
            .max(4);
        writeln!(out)?;
        writeln!(
            out,
            "{:width$}  {:12}  {:>8}  {:>9}",
            "TASK", "STATUS", "ATTEMPTS", "DURATION"
        )?;
        for (name, task) in &report.tasks {
            let duration = if task.status == TaskStatus::Skipped || task.attempts == 0 {
                "-".to_string()
            } else {
                seconds(task.duration_ms)
            };
            writeln!(
                out,
                "{name:width$}  {:12}  {:>8}  {:>9}",
                task.status.as_str(),
                task.attempts,
                duration
            )?;
        }
        writeln!(
            out,
            "\nrun {} {} in {}",
            report.run_id,
            report.status.as_str(),
            seconds(report.duration_ms)
        )
    }
}

fn seconds(ms: u64) -> String {
    format!("{:.2}s", ms as f64 / 1000.0)
}
