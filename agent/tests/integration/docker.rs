//! The executor on the Docker runtime, against the real engine.

use std::collections::BTreeMap;

use tokio_util::sync::CancellationToken;
use xene_core::event::RunEvent;
use xene_core::status::{RunStatus, StepStatus, TaskStatus};

use crate::util::{self, busybox_image, docker_leftovers, run, run_with};

#[tokio::test(flavor = "multi_thread")]
async fn steps_share_a_workspace_and_outputs_flow_on() {
    let image = busybox_image();
    let run = run(&format!(
        r#"name: docker
pipelines:
  p:
    env: {{ FROM_PIPELINE: p }}
    tasks:
      build:
        image: {image}
        steps:
          - name: write
            run: echo built > artifact; echo "$XENE_WORKSPACE $(pwd) $XENE_TASK $FROM_PIPELINE"
          - name: read
            run: cat artifact; cat artifact > "$XENE_OUTPUT"
      test:
        image: {image}
        depends_on: [build]
        steps:
          - name: check
            run: echo "got {{{{ tasks.build.output }}}}"; test ! -e artifact
"#
    ))
    .await;
    assert_eq!(run.report.status, RunStatus::Success, "{:#?}", run.report);
    assert_eq!(
        run.logs("build"),
        ["/workspace /workspace build p", "built"]
    );
    assert_eq!(run.task("build").output.as_deref(), Some("built"));
    assert_eq!(run.logs("test"), ["got built"]);
    assert_eq!(docker_leftovers(&run.report.run_id), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_step_in_a_container_reports_its_exit_code_and_post_runs() {
    let image = busybox_image();
    let run = run(&format!(
        r#"name: docker-fail
pipelines:
  p:
    tasks:
      broken:
        image: {image}
        steps: ["echo to stderr >&2; exit 4", "echo never"]
        post: ["echo cleaning up"]
"#
    ))
    .await;
    let broken = run.task("broken");
    assert_eq!(broken.status, TaskStatus::Error);
    assert_eq!(broken.steps[0].exit_code, Some(4));
    assert_eq!(
        run.step_statuses("broken"),
        [
            StepStatus::Error,
            StepStatus::NotExecuted,
            StepStatus::Success
        ]
    );
    assert_eq!(run.logs("broken"), ["to stderr", "cleaning up"]);
    assert_eq!(docker_leftovers(&run.report.run_id), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timeout_kills_the_step_in_its_container_and_cleans_up() {
    let image = busybox_image();
    let run = run(&format!(
        r#"name: docker-timeout
pipelines:
  p:
    tasks:
      slow:
        image: {image}
        timeout: 1s
        steps: ["sleep 100"]
        post: ["echo post ran"]
"#
    ))
    .await;
    let slow = run.task("slow");
    assert_eq!(slow.status, TaskStatus::Error);
    assert!(
        slow.error.as_deref().unwrap_or("").contains("timed out"),
        "{slow:?}"
    );
    assert_eq!(slow.steps[0].status, StepStatus::Error);
    assert_eq!(slow.steps[1].status, StepStatus::Success);
    assert_eq!(run.logs("slow"), ["post ran"]);
    assert_eq!(docker_leftovers(&run.report.run_id), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_removes_every_container_and_volume() {
    let image = busybox_image();
    let yaml = format!(
        r#"name: docker-cancel
pipelines:
  p:
    tasks:
      one:
        image: {image}
        steps: [{{ name: sleeps, run: "sleep 100" }}]
      two:
        image: {image}
        steps: [{{ name: sleeps, run: "sleep 100" }}]
      later:
        image: {image}
        depends_on: [one, two]
        steps: ["echo never"]
"#
    );
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    let started = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let run = run_with(
        &yaml,
        util::config(),
        BTreeMap::new(),
        cancel,
        move |event| {
            if matches!(event, RunEvent::StepStarted { .. })
                && started.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 1
            {
                trigger.cancel();
            }
        },
    )
    .await;
    assert_eq!(run.report.status, RunStatus::Cancelled);
    assert_eq!(run.task("one").status, TaskStatus::Cancelled);
    assert_eq!(run.task("two").status, TaskStatus::Cancelled);
    assert_eq!(run.task("later").status, TaskStatus::NotExecuted);
    assert_eq!(docker_leftovers(&run.report.run_id), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_image_fails_the_task_with_a_clear_message() {
    let run = run(r#"name: no-image
pipelines:
  p:
    tasks:
      missing:
        image: xene-test/does-not-exist:1
        steps: ["echo never"]
"#)
    .await;
    let missing = run.task("missing");
    assert_eq!(missing.status, TaskStatus::Error);
    let error = missing.error.as_deref().unwrap_or("");
    assert!(
        error.contains("xene-test/does-not-exist:1") && error.contains("not present locally"),
        "{error}"
    );
    assert_eq!(docker_leftovers(&run.report.run_id), Vec::<String>::new());
}
