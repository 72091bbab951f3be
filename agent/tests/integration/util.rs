//! Shared helpers: workflows from YAML, running them in-process, the test
//! image, Docker leftovers, and the built binary.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use xene_agent::{Executor, ExecutorConfig, RunReport, RunRequest, TaskReport, new_run_id};
use xene_core::event::RunEvent;
use xene_core::protocol::SecretValue;
use xene_core::spec::Pipeline;
use xene_core::status::StepStatus;
pub use xene_testkit::docker::busybox_image;

/// Only guards against a hung run; nothing is asserted about time.
pub const HANG_GUARD: Duration = Duration::from_secs(120);

/// The one pipeline of a workflow written in YAML; panics with every
/// diagnostic when it is invalid.
pub fn pipeline(yaml: &str) -> Pipeline {
    let workflow = match xene_core::parse_workflow(yaml) {
        Ok(workflow) => workflow,
        Err(diagnostics) => panic!("invalid test workflow:\n{diagnostics}"),
    };
    assert_eq!(
        workflow.pipelines.len(),
        1,
        "test workflows have one pipeline"
    );
    workflow
        .pipelines
        .into_values()
        .next()
        .expect("one pipeline")
}

pub fn config() -> ExecutorConfig {
    ExecutorConfig {
        kill_grace: Duration::from_secs(2),
        ..ExecutorConfig::default()
    }
}

pub struct Run {
    pub report: RunReport,
    pub events: Vec<RunEvent>,
}

impl Run {
    pub fn task(&self, name: &str) -> &TaskReport {
        self.report
            .tasks
            .get(name)
            .unwrap_or_else(|| panic!("no task {name} in the report"))
    }

    pub fn step_statuses(&self, task: &str) -> Vec<StepStatus> {
        self.task(task).steps.iter().map(|s| s.status).collect()
    }

    /// The `data` of every log line of `task`, in order.
    pub fn logs(&self, task: &str) -> Vec<&str> {
        self.events
            .iter()
            .filter_map(|e| match e {
                RunEvent::Log { task: t, data, .. } if t == task => Some(data.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The position of the first event matching `pred`.
    pub fn position(&self, pred: impl Fn(&RunEvent) -> bool) -> usize {
        self.events.iter().position(pred).expect("no such event")
    }
}

pub async fn run(yaml: &str) -> Run {
    run_on(yaml, config()).await
}

/// Runs a workflow in-process with `config`, no params, to its end.
pub async fn run_on(yaml: &str, config: ExecutorConfig) -> Run {
    run_with(
        yaml,
        config,
        Default::default(),
        CancellationToken::new(),
        |_| {},
    )
    .await
}

/// Runs a workflow in-process; `on_event` sees each event as it arrives (to
/// cancel at the right moment, say).
pub async fn run_with(
    yaml: &str,
    config: ExecutorConfig,
    params: std::collections::BTreeMap<String, String>,
    cancel: CancellationToken,
    on_event: impl Fn(&RunEvent) + Send + 'static,
) -> Run {
    let request = RunRequest {
        run_id: new_run_id(),
        pipeline_name: "test".into(),
        pipeline: pipeline(yaml),
        params,
        secrets: [("TOKEN".to_string(), SecretValue::new("s3cr3t-value"))].into(),
        completed: Default::default(),
    };
    let (sender, mut receiver) = mpsc::channel(64);
    let collector = tokio::spawn(async move {
        let mut events = Vec::new();
        while let Some(event) = receiver.recv().await {
            on_event(&event);
            events.push(event);
        }
        events
    });
    let executor = Executor::new(config);
    let report = tokio::time::timeout(HANG_GUARD, executor.run(request, sender, cancel))
        .await
        .expect("the run hung")
        .expect("the run started");
    let events = collector.await.expect("collector");
    Run { report, events }
}

/// Runs a workflow and cancels it once a step prints the line `ready`.
pub async fn run_cancelled_when_ready(yaml: &str, config: ExecutorConfig) -> Run {
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    run_with(yaml, config, Default::default(), cancel, move |event| {
        if matches!(event, RunEvent::Log { data, .. } if data == "ready") {
            trigger.cancel();
        }
    })
    .await
}

/// Containers and volumes still labelled with this run.
pub fn docker_leftovers(run_id: &str) -> Vec<String> {
    let label = format!("label=xene.run={run_id}");
    let mut found = Vec::new();
    for args in [
        vec!["ps", "-a", "-q", "--filter", &label],
        vec!["volume", "ls", "-q", "--filter", &label],
    ] {
        let output = Command::new("docker")
            .args(&args)
            .output()
            .expect("running docker");
        assert!(output.status.success(), "docker {args:?} failed");
        found.extend(
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .map(str::to_string),
        );
    }
    found
}

/// The `xene-agent` binary under test.
pub fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_xene-agent"))
}

/// Whether a process with this pid exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| !stat.contains(") Z "))
        .unwrap_or(false)
}

/// Waits for a file to appear; panics after the hang guard.
pub fn wait_for_file(path: &Path) {
    let what = format!("{} to appear", path.display());
    xene_testkit::wait_for_blocking(&what, HANG_GUARD, || {
        path.exists().then_some(()).ok_or_else(String::new)
    });
}
