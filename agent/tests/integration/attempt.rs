//! `Executor::run_attempt`: one try of one task, as a server dispatches it
//! (and as the server's built-in agent runs it in process). Real shell
//! processes and a real Docker engine.

use std::collections::BTreeMap;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use xene_agent::{AttemptIds, AttemptRequest, Executor, ExecutorConfig, TaskReport};
use xene_core::context::TaskResult;
use xene_core::event::RunEvent;
use xene_core::protocol::{AttemptRef, SecretValue, TaskDispatch};
use xene_core::status::{StepStatus, TaskStatus};

use crate::util::{self, HANG_GUARD, busybox_image, pipeline};

/// A request for task `task` of the one pipeline in `yaml`.
fn request(yaml: &str, task: &str, number: u32) -> AttemptRequest {
    let pipeline = pipeline(yaml);
    let run_id = format!("{}-{number}-test", xene_agent::new_run_id());
    AttemptRequest {
        ids: AttemptIds {
            context: format!("{run_id}-{task}-a1"),
            run_id,
            task: task.to_string(),
            number,
        },
        spec: pipeline.tasks[task].clone(),
        pipeline_env: pipeline.env.clone(),
        params: BTreeMap::new(),
        secrets: BTreeMap::new(),
        outputs: BTreeMap::new(),
        delivered: None,
        files: None,
        cache_save: false,
    }
}

async fn attempt(
    config: ExecutorConfig,
    request: AttemptRequest,
    cancel: CancellationToken,
    on_event: impl Fn(&RunEvent) + Send + 'static,
) -> (TaskReport, Vec<RunEvent>) {
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
    let report = tokio::time::timeout(HANG_GUARD, executor.run_attempt(request, sender, cancel))
        .await
        .expect("the attempt hung");
    (report, collector.await.expect("collector"))
}

fn shell_config(root: &std::path::Path) -> ExecutorConfig {
    let mut config = util::config();
    config.shell.root = root.to_path_buf();
    config
}

#[tokio::test(flavor = "multi_thread")]
async fn an_attempt_runs_one_try_with_its_ids_outputs_and_secrets() {
    let yaml = r#"name: attempt
pipelines:
  p:
    env: {FROM_PIPELINE: "{{ params.level }}"}
    params:
      level: {default: "1"}
    tasks:
      build: {steps: ["true"]}
      test:
        depends_on: [build]
        secrets: [TOKEN]
        retries: {count: 3, backoff: 10ms}
        steps:
          - name: show
            run: |
              echo "run=$XENE_RUN_ID attempt=$XENE_ATTEMPT task=$XENE_TASK"
              echo "built=$XENE_OUTPUT_BUILD level=$FROM_PIPELINE token=$TOKEN"
              echo {{ tasks.build.output }} > "$XENE_OUTPUT"
          - "false"
        post: [echo post ran]
"#;
    let root = tempfile::tempdir().unwrap();
    let mut request = request(yaml, "test", 2);
    request.params = [("level".to_string(), "7".to_string())].into();
    request.secrets = [("TOKEN".to_string(), SecretValue::new("hunter22"))].into();
    request.outputs = [(
        "build".to_string(),
        TaskResult {
            caches: Default::default(),
            status: TaskStatus::Success,
            output: Some("v1.2".into()),
        },
    )]
    .into();
    let run_id = request.ids.run_id.clone();
    let (report, events) = attempt(
        shell_config(root.path()),
        request,
        CancellationToken::new(),
        |_| {},
    )
    .await;

    // One try, whatever the retries: the server decides the next.
    assert_eq!(report.status, TaskStatus::Error);
    assert_eq!(report.attempts, 2);
    assert_eq!(report.output.as_deref(), Some("v1.2"));
    assert_eq!(
        report.steps.iter().map(|s| s.status).collect::<Vec<_>>(),
        [StepStatus::Success, StepStatus::Error, StepStatus::Success]
    );
    assert!(
        matches!(&events[0], RunEvent::TaskStarted { task, attempt: 2 } if task == "test"),
        "{events:#?}"
    );
    let finished: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, RunEvent::TaskFinished { .. }))
        .collect();
    assert_eq!(finished.len(), 1, "{events:#?}");
    assert!(
        matches!(
            finished[0],
            RunEvent::TaskFinished {
                status: TaskStatus::Error,
                attempt: 2,
                retry_in_ms: None,
                ..
            }
        ),
        "{finished:?}"
    );
    assert!(matches!(events.last(), Some(RunEvent::TaskFinished { .. })));
    assert!(
        !events.iter().any(|e| matches!(
            e,
            RunEvent::RunStarted { .. } | RunEvent::RunFinished { .. }
        )),
        "an attempt reports its task only"
    );
    let lines: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            RunEvent::Log { data, .. } => Some(data.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        lines,
        [
            format!("run={run_id} attempt=2 task=test").as_str(),
            "built=v1.2 level=7 token=***",
            "post ran"
        ]
    );
    // Its context is gone when it returns.
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_attempt_that_cannot_render_reports_only_its_end() {
    let yaml = r#"name: attempt
pipelines:
  p:
    tasks:
      a: {steps: ["true"]}
      b:
        depends_on: [a]
        secrets: [TOKEN]
        steps: ["true"]
"#;
    let root = tempfile::tempdir().unwrap();
    let (report, events) = attempt(
        shell_config(root.path()),
        request(yaml, "b", 1),
        CancellationToken::new(),
        |_| {},
    )
    .await;
    assert_eq!(report.status, TaskStatus::Error);
    assert_eq!(report.attempts, 0);
    assert_eq!(
        report.error.as_deref(),
        Some(r#"secret "TOKEN" was not provided"#)
    );
    assert_eq!(
        events,
        [RunEvent::TaskFinished {
            task: "b".into(),
            status: TaskStatus::Error,
            output: None,
            duration_ms: 0,
            attempt: 0,
            error: report.error.clone(),
            retry_in_ms: None,
        }]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_attempt_ends_cancelled_without_its_post_steps() {
    let yaml = r#"name: attempt
pipelines:
  p:
    tasks:
      slow:
        steps: ["echo ready; sleep 60"]
        post: ["echo post ran"]
"#;
    let root = tempfile::tempdir().unwrap();
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    let (report, events) = attempt(
        shell_config(root.path()),
        request(yaml, "slow", 1),
        cancel,
        move |event| {
            if matches!(event, RunEvent::Log { data, .. } if data == "ready") {
                trigger.cancel();
            }
        },
    )
    .await;
    assert_eq!(report.status, TaskStatus::Cancelled);
    assert_eq!(
        report.steps.iter().map(|s| s.status).collect::<Vec<_>>(),
        [StepStatus::Cancelled, StepStatus::NotExecuted]
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, RunEvent::Log { data, .. } if data == "post ran"))
    );
    assert!(matches!(
        events.last(),
        Some(RunEvent::TaskFinished {
            status: TaskStatus::Cancelled,
            attempt: 1,
            retry_in_ms: None,
            ..
        })
    ));
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dispatch_becomes_an_attempt_named_for_its_run_number_and_id() {
    let pipeline = pipeline(
        "name: w\npipelines:\n  p:\n    tasks:\n      t: {steps: [\"echo $XENE_RUN_ID $XENE_ATTEMPT\"]}\n",
    );
    let dispatch = TaskDispatch {
        cache_save: Default::default(),
        attempt: AttemptRef { id: 901 },
        run_id: 12,
        task: "t".into(),
        number: 3,
        workflow: "w".into(),
        pipeline_name: "p".into(),
        spec: pipeline.tasks["t"].clone(),
        pipeline_env: BTreeMap::new(),
        params: BTreeMap::new(),
        secrets: BTreeMap::new(),
        outputs: BTreeMap::new(),
        more_outputs: false,
        traceparent: None,
    };
    let request = AttemptRequest::from_dispatch(dispatch, "inc");
    assert_eq!(request.ids.run_id, "12-3-inc");
    assert_eq!(request.ids.number, 3);
    assert!(
        request.ids.context.contains("a901"),
        "{}",
        request.ids.context
    );
    let root = tempfile::tempdir().unwrap();
    let (report, events) = attempt(
        shell_config(root.path()),
        request,
        CancellationToken::new(),
        |_| {},
    )
    .await;
    assert_eq!(report.status, TaskStatus::Success);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, RunEvent::Log { data, .. } if data == "12-3-inc 3")),
        "{events:#?}"
    );
}

/// Ids of the containers and volumes labelled with an attempt's context.
fn labelled(context: &str) -> Vec<String> {
    let label = format!("label=xene.attempt={context}");
    let mut found = Vec::new();
    for args in [
        vec!["ps", "-a", "-q", "--filter", &label],
        vec!["volume", "ls", "-q", "--filter", &label],
    ] {
        let output = std::process::Command::new("docker")
            .args(&args)
            .output()
            .expect("running docker");
        assert!(output.status.success(), "docker {args:?}");
        found.extend(
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .map(str::to_string),
        );
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn a_docker_attempt_is_labelled_with_its_context_and_leaves_nothing() {
    let yaml = format!(
        r#"name: attempt
pipelines:
  p:
    tasks:
      t:
        image: {}
        steps: ["echo ready; while [ ! -e go ]; do sleep 0.05; done; echo hi > $XENE_OUTPUT"]
"#,
        busybox_image()
    );
    let request = request(&yaml, "t", 1);
    let context = request.ids.context.clone();
    let seen = context.clone();
    let (report, _) = attempt(
        util::config(),
        request,
        CancellationToken::new(),
        move |event| {
            if matches!(event, RunEvent::Log { data, .. } if data == "ready") {
                // While the step waits: its container and volume carry the
                // attempt's label; the file lets it go on.
                let found = labelled(&seen);
                assert_eq!(found.len(), 2, "{found:?}");
                let status = std::process::Command::new("docker")
                    .args(["exec", &found[0], "touch", "/workspace/go"])
                    .status()
                    .expect("docker exec");
                assert!(status.success());
            }
        },
    )
    .await;
    assert_eq!(report.status, TaskStatus::Success, "{report:?}");
    assert_eq!(report.output.as_deref(), Some("hi"));
    assert_eq!(labelled(&context), Vec::<String>::new());
}

/// A killed agent's attempts run again elsewhere: a shell step must not go
/// on here after it (the ledger of a chaos test would count it twice).
#[test]
fn a_killed_agent_takes_its_shell_steps_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let workflow = dir.path().join("wf.yaml");
    std::fs::write(
        &workflow,
        format!(
            "name: orphan\npipelines:\n  p:\n    tasks:\n      t:\n        steps: ['echo $$ > {}; while true; do sleep 0.1; done']\n",
            pid_file.display()
        ),
    )
    .unwrap();
    let mut agent = util::agent()
        .arg("run")
        .arg(&workflow)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    util::wait_for_file(&pid_file);
    let pid: u32 = xene_testkit::wait_for_blocking("the step's pid", HANG_GUARD, || {
        let text = std::fs::read_to_string(&pid_file).map_err(|e| e.to_string())?;
        text.trim().parse().map_err(|_| text.clone())
    });
    assert!(util::alive(pid));
    agent.kill().unwrap();
    agent.wait().unwrap();
    xene_testkit::wait_for_blocking("the step to die with its agent", HANG_GUARD, || {
        if util::alive(pid) {
            Err(format!("{pid} is alive"))
        } else {
            Ok(())
        }
    });
}
