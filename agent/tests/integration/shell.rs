//! The executor on the shell runtime: scheduling, statuses, outputs,
//! conditions, timeouts, retries, cancellation.

use std::collections::BTreeMap;

use tokio_util::sync::CancellationToken;
use xene_core::event::RunEvent;
use xene_core::status::{RunStatus, StepStatus, TaskStatus};

use crate::util::{self, alive, run, run_cancelled_when_ready, run_with};

#[tokio::test(flavor = "multi_thread")]
async fn fan_out_runs_concurrently() {
    let dir = tempfile::tempdir().unwrap();
    // Each branch waits until all three have started, so the run can only
    // succeed if they really run at the same time (the timeout fails a
    // serial run instead of hanging it).
    let branch = r#"
        depends_on: [start]
        timeout: 60s
        steps:
          - run: |
              touch DIR/started-$XENE_TASK
              while [ "$(ls DIR | wc -l)" -lt 3 ]; do sleep 0.02; done
    "#;
    let yaml = format!(
        "name: fan
pipelines:
  p:
    concurrency: 3
    tasks:
      start:
        steps: ['true']
      a: {branch}
      b: {branch}
      c: {branch}
      join:
        depends_on: [a, b, c]
        steps: [\"ls DIR\"]
"
    )
    .replace("DIR", dir.path().to_str().unwrap());
    let run = run(&yaml).await;
    assert_eq!(run.report.status, RunStatus::Success, "{:#?}", run.report);
    assert_eq!(run.logs("join"), ["started-a", "started-b", "started-c"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chain_runs_in_order_and_steps_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "name: chain
pipelines:
  p:
    tasks:
      first:
        steps: [\"echo first >> DIR/log\", \"echo first-2 >> DIR/log\"]
      second:
        depends_on: [first]
        steps: [\"echo second >> DIR/log\"]
      third:
        depends_on: [second]
        steps: [\"echo third >> DIR/log\"]
"
    .replace("DIR", dir.path().to_str().unwrap());
    let run = run(&yaml).await;
    assert_eq!(run.report.status, RunStatus::Success);
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
    assert_eq!(log, "first\nfirst-2\nsecond\nthird\n");
    let finished_first =
        run.position(|e| matches!(e, RunEvent::TaskFinished { task, .. } if task == "first"));
    let started_second =
        run.position(|e| matches!(e, RunEvent::TaskStarted { task, .. } if task == "second"));
    assert!(finished_first < started_second);
    assert!(matches!(
        run.events.first(),
        Some(RunEvent::RunStarted { .. })
    ));
    assert!(matches!(
        run.events.last(),
        Some(RunEvent::RunFinished {
            status: RunStatus::Success,
            ..
        })
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_step_stops_its_task_and_its_dependants() {
    let run = run("name: fails
pipelines:
  p:
    tasks:
      broken:
        steps:
          - name: ok
            run: echo fine
          - name: boom
            run: exit 3
          - name: after
            run: echo never
      downstream:
        depends_on: [broken]
        steps: [echo never]
      further:
        depends_on: [downstream]
        steps: [echo never]
      independent:
        steps: [echo fine]
")
    .await;
    assert_eq!(run.report.status, RunStatus::Error);
    let broken = run.task("broken");
    assert_eq!(broken.status, TaskStatus::Error);
    assert_eq!(
        run.step_statuses("broken"),
        [
            StepStatus::Success,
            StepStatus::Error,
            StepStatus::NotExecuted
        ]
    );
    assert_eq!(broken.steps[1].exit_code, Some(3));
    assert_eq!(run.task("downstream").status, TaskStatus::NotExecuted);
    assert_eq!(run.task("further").status, TaskStatus::NotExecuted);
    assert_eq!(run.task("downstream").attempts, 0);
    assert_eq!(run.task("independent").status, TaskStatus::Success);
    assert!(!run.logs("downstream").contains(&"never"));
}

#[tokio::test(flavor = "multi_thread")]
async fn post_steps_always_run_and_their_failure_fails_the_task() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "name: post
pipelines:
  p:
    tasks:
      failing:
        steps: [\"exit 1\", \"echo never\"]
        post:
          - name: cleanup
            run: touch DIR/cleaned
          - name: second-cleanup
            run: touch DIR/cleaned-again
      post-fails:
        steps: [echo fine]
        post: [\"exit 7\"]
"
    .replace("DIR", dir.path().to_str().unwrap());
    let run = run(&yaml).await;
    assert_eq!(
        run.step_statuses("failing"),
        [
            StepStatus::Error,
            StepStatus::NotExecuted,
            StepStatus::Success,
            StepStatus::Success
        ]
    );
    assert!(run.task("failing").steps[2].post);
    assert!(dir.path().join("cleaned").exists());
    assert!(dir.path().join("cleaned-again").exists());
    assert_eq!(run.task("post-fails").status, TaskStatus::Error);
    assert_eq!(
        run.step_statuses("post-fails"),
        [StepStatus::Success, StepStatus::Error]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn outputs_flow_through_templates_into_scripts_and_env() {
    let run = run(r#"name: outputs
pipelines:
  p:
    params:
      greeting: hello
    env:
      FROM_PIPELINE: "{{ params.greeting }}"
    tasks:
      produce:
        steps:
          - echo "v1.2.3" > "$XENE_OUTPUT"
      consume:
        depends_on: [produce]
        env:
          VERSION: "{{ tasks.produce.output }}"
        steps:
          - name: use
            run: |
              echo "script {{ tasks.produce.output }}"
              echo "env $VERSION $FROM_PIPELINE"
              printf 'built %s\n\n' "$VERSION" > "$XENE_OUTPUT"
      silent:
        steps: ['true']
"#)
    .await;
    assert_eq!(run.report.status, RunStatus::Success, "{:#?}", run.report);
    assert_eq!(run.task("produce").output.as_deref(), Some("v1.2.3"));
    assert_eq!(run.logs("consume"), ["script v1.2.3", "env v1.2.3 hello"]);
    // Only the one trailing newline is trimmed.
    assert_eq!(
        run.task("consume").output.as_deref(),
        Some("built v1.2.3\n")
    );
    assert_eq!(run.task("silent").output, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn params_given_to_the_run_override_the_defaults() {
    let params = BTreeMap::from([("who".to_string(), "run".to_string())]);
    let yaml = "name: params
pipelines:
  p:
    params: {who: default}
    tasks:
      hello:
        steps: [\"echo hello {{ params.who }}\"]
";
    let run = run_with(
        yaml,
        util::config(),
        params,
        CancellationToken::new(),
        |_| {},
    )
    .await;
    assert_eq!(run.logs("hello"), ["hello run"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn conditions_run_or_skip_tasks() {
    let run = run(r#"name: conditions
pipelines:
  p:
    tasks:
      check:
        steps: [echo yes > $XENE_OUTPUT]
      fails:
        steps: [exit 1]
      when-yes:
        depends_on: [check]
        if: tasks.check.output == 'yes'
        steps: [echo ran]
      when-no:
        depends_on: [check]
        if: tasks.check.output == 'no'
        steps: [echo never]
      on-failure:
        depends_on: [fails]
        if: tasks.fails.status == 'error'
        steps: [echo handling the failure]
      after-skipped:
        depends_on: [when-no]
        steps: [echo never]
"#)
    .await;
    assert_eq!(run.task("when-yes").status, TaskStatus::Success);
    assert_eq!(run.logs("when-yes"), ["ran"]);
    assert_eq!(run.task("when-no").status, TaskStatus::Skipped);
    assert_eq!(run.task("when-no").attempts, 0);
    assert_eq!(run.task("on-failure").status, TaskStatus::Success);
    // A task without `if` needs every dependency to have succeeded.
    assert_eq!(run.task("after-skipped").status, TaskStatus::NotExecuted);
    assert_eq!(run.report.status, RunStatus::Error, "`fails` failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timeout_kills_the_step_and_everything_it_started() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "name: timeout
pipelines:
  p:
    tasks:
      slow:
        timeout: 500ms
        steps:
          - name: sleeps
            run: |
              sleep 100 &
              echo $! > DIR/pid
              wait
          - name: never
            run: echo never
        post:
          - echo post ran
      after:
        depends_on: [slow]
        steps: [echo never]
"
    .replace("DIR", dir.path().to_str().unwrap());
    let run = run(&yaml).await;
    let slow = run.task("slow");
    assert_eq!(slow.status, TaskStatus::Error);
    assert!(
        slow.error.as_deref().unwrap_or("").contains("timed out"),
        "{slow:?}"
    );
    assert_eq!(
        run.step_statuses("slow"),
        [
            StepStatus::Error,
            StepStatus::NotExecuted,
            StepStatus::Success
        ]
    );
    assert_eq!(slow.steps[0].exit_code, Some(128 + 15), "killed by SIGTERM");
    assert_eq!(run.logs("slow"), ["post ran"]);
    assert_eq!(run.task("after").status, TaskStatus::NotExecuted);
    let pid: u32 = std::fs::read_to_string(dir.path().join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(!alive(pid), "the background sleep survived");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_step_ignoring_sigterm_is_killed_after_the_grace() {
    let yaml = "name: stubborn
pipelines:
  p:
    tasks:
      stubborn:
        timeout: 300ms
        steps:
          - trap '' TERM; sleep 100
";
    let config = xene_agent::ExecutorConfig {
        kill_grace: std::time::Duration::from_millis(200),
        ..util::config()
    };
    let run = util::run_on(yaml, config).await;
    assert_eq!(run.task("stubborn").status, TaskStatus::Error);
    assert_eq!(run.task("stubborn").steps[0].exit_code, Some(128 + 9));
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_run_the_task_again_until_it_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "name: retries
pipelines:
  p:
    tasks:
      flaky:
        retries: {count: 3, backoff: 10ms}
        steps:
          - name: prepare
            run: echo $XENE_WORKSPACE >> DIR/workspaces; touch left-behind
          - name: once-fails
            run: |
              if [ -f DIR/failed-once ]; then echo ok; exit 0; fi
              touch DIR/failed-once
              exit 1
      hopeless:
        retries: {count: 2, backoff: 10ms}
        steps: [exit 1]
"
    .replace("DIR", dir.path().to_str().unwrap());
    let run = run(&yaml).await;
    let flaky = run.task("flaky");
    assert_eq!(flaky.status, TaskStatus::Success);
    assert_eq!(flaky.attempts, 2);
    let workspaces = std::fs::read_to_string(dir.path().join("workspaces")).unwrap();
    let workspaces: Vec<&str> = workspaces.lines().collect();
    assert_eq!(workspaces.len(), 2);
    assert_ne!(
        workspaces[0], workspaces[1],
        "each attempt gets a fresh context"
    );
    let retry_events: Vec<_> = run
        .events
        .iter()
        .filter(|e| {
            matches!(e, RunEvent::TaskFinished { task, retry_in_ms: Some(_), .. } if task == "flaky")
        })
        .collect();
    assert_eq!(retry_events.len(), 1);

    let hopeless = run.task("hopeless");
    assert_eq!(hopeless.status, TaskStatus::Error);
    assert_eq!(hopeless.attempts, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_kills_running_steps_and_skips_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let yaml = "name: cancel
pipelines:
  p:
    tasks:
      running:
        steps:
          - name: sleeps
            run: echo $$ > DIR/pid; exec sleep 100
          - echo never
        post: [echo never]
      later:
        depends_on: [running]
        steps: [echo never]
"
    .replace("DIR", dir.path().to_str().unwrap());
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    let config = xene_agent::ExecutorConfig {
        shell: xene_agent::runtime::shell::ShellConfig {
            root: root.path().to_path_buf(),
            ..Default::default()
        },
        ..util::config()
    };
    let run = run_with(&yaml, config, BTreeMap::new(), cancel, move |event| {
        if matches!(event, RunEvent::StepStarted { step, .. } if step == "sleeps") {
            trigger.cancel();
        }
    })
    .await;
    assert_eq!(run.report.status, RunStatus::Cancelled);
    assert_eq!(run.task("running").status, TaskStatus::Cancelled);
    assert_eq!(
        run.step_statuses("running"),
        [
            StepStatus::Cancelled,
            StepStatus::NotExecuted,
            StepStatus::NotExecuted
        ]
    );
    assert_eq!(run.task("later").status, TaskStatus::NotExecuted);
    assert!(run.logs("running").is_empty());
    // The step may be cancelled between creating the file and writing it.
    if let Ok(pid) = std::fs::read_to_string(dir.path().join("pid"))
        && let Ok(pid) = pid.trim().parse()
    {
        assert!(!alive(pid));
    }
    assert_eq!(
        std::fs::read_dir(root.path()).unwrap().count(),
        0,
        "run directory left behind"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn environment_layers_and_secrets_are_masked() {
    let run = run(r#"name: env
pipelines:
  p:
    env: {LAYER: pipeline, ONLY_PIPELINE: p}
    tasks:
      show:
        env: {LAYER: task}
        secrets: [TOKEN]
        steps:
          - name: print
            env: {LAYER: step}
            run: |
              echo "$LAYER $ONLY_PIPELINE $XENE_TASK $XENE_STEP"
              echo "token=$TOKEN"
              test -n "$XENE_RUN_ID"
              test "$(pwd)" = "$XENE_WORKSPACE"
      missing-secret:
        secrets: [NOT_PROVIDED]
        steps: [echo never]
"#)
    .await;
    assert_eq!(run.logs("show"), ["step p show print", "token=***"]);
    assert_eq!(run.task("show").status, TaskStatus::Success);
    let missing = run.task("missing-secret");
    assert_eq!(missing.status, TaskStatus::Error);
    assert!(missing.error.as_deref().unwrap().contains("NOT_PROVIDED"));
}

#[tokio::test(flavor = "multi_thread")]
async fn stderr_lines_are_tagged_and_partial_lines_kept() {
    let run = run(r#"name: streams
pipelines:
  p:
    tasks:
      t:
        steps:
          - printf 'out\nno newline'; echo err >&2
"#)
    .await;
    let mut lines: Vec<(String, xene_core::event::LogStream)> = run
        .events
        .iter()
        .filter_map(|e| match e {
            RunEvent::Log { data, stream, .. } => Some((data.clone(), *stream)),
            _ => None,
        })
        .collect();
    lines.sort_by(|a, b| a.0.cmp(&b.0));
    use xene_core::event::LogStream::{Stderr, Stdout};
    assert_eq!(
        lines,
        [
            ("err".into(), Stderr),
            ("no newline".into(), Stdout),
            ("out".into(), Stdout)
        ]
    );
}

/// A line on stdout then one on stderr, written at once by each of 20
/// steps: stdout's first every time, whether the agent read them apart or
/// together (one reader for both pipes, `runtime/streams.rs`; two readers
/// polled in turn gave either order).
#[tokio::test(flavor = "multi_thread")]
async fn stdout_then_stderr_written_at_once_keep_their_order() {
    let steps: String = (1..=20)
        .map(|i| format!("          - echo out-{i}; echo err-{i} >&2\n"))
        .collect();
    let run = run(&format!(
        "name: order\npipelines:\n  p:\n    tasks:\n      t:\n        steps:\n{steps}"
    ))
    .await;
    use xene_core::event::LogStream::{Stderr, Stdout};
    let lines: Vec<(String, xene_core::event::LogStream)> = run
        .events
        .iter()
        .filter_map(|e| match e {
            RunEvent::Log { data, stream, .. } => Some((data.clone(), *stream)),
            _ => None,
        })
        .collect();
    let want: Vec<(String, xene_core::event::LogStream)> = (1..=20)
        .flat_map(|i| [(format!("out-{i}"), Stdout), (format!("err-{i}"), Stderr)])
        .collect();
    assert_eq!(lines, want);
}

/// The config of a server's agents: a clean environment.
fn clean_config(root: &std::path::Path) -> xene_agent::ExecutorConfig {
    xene_agent::ExecutorConfig {
        shell: xene_agent::runtime::shell::ShellConfig {
            root: root.to_path_buf(),
            inherit_env: false,
            sandbox: None,
        },
        kill_grace: std::time::Duration::from_millis(500),
        ..util::config()
    }
}

/// Waits for DIR/pid, written by a process that left the step's group and
/// session with `setsid`, then prints "ready".
const ESCAPE: &str = "setsid sh -c 'echo $$ > DIR/pid; exec sleep 1000' &
              while [ ! -s DIR/pid ]; do sleep 0.01; done
              echo ready";

fn escaped_pid(dir: &std::path::Path) -> u32 {
    std::fs::read_to_string(dir.join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// A child that left the step's process group (and session) with `setsid`
/// kept the step's pipes open: neither the timeout nor a cancel ended the
/// step, which hung for as long as the child lived.
#[tokio::test(flavor = "multi_thread")]
async fn a_setsid_child_cannot_outlive_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let yaml = format!(
        "name: escape
pipelines:
  p:
    tasks:
      escape:
        timeout: 2s
        steps:
          - |
              {ESCAPE}
              sleep 1000
"
    )
    .replace("DIR", dir.path().to_str().unwrap());
    let run = util::run_on(&yaml, clean_config(root.path())).await;
    let task = run.task("escape");
    assert_eq!(task.status, TaskStatus::Error);
    assert!(
        task.error.as_deref().unwrap_or("").contains("timed out"),
        "{task:?}"
    );
    assert!(!alive(escaped_pid(dir.path())), "the setsid child survived");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_setsid_child_cannot_outlive_a_cancel() {
    let dir = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let yaml = format!(
        "name: escape
pipelines:
  p:
    tasks:
      escape:
        steps:
          - |
              {ESCAPE}
              sleep 1000
"
    )
    .replace("DIR", dir.path().to_str().unwrap());
    let run = run_cancelled_when_ready(&yaml, clean_config(root.path())).await;
    assert_eq!(run.report.status, RunStatus::Cancelled);
    assert!(!alive(escaped_pid(dir.path())), "the setsid child survived");
}

/// A step that ends while a `setsid` child still holds its output: the
/// child is found by the step's id and killed, and the step ends.
#[tokio::test(flavor = "multi_thread")]
async fn a_setsid_child_holding_the_output_does_not_hang_the_step() {
    let dir = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let yaml = format!(
        "name: escape
pipelines:
  p:
    tasks:
      escape:
        steps:
          - |
              {ESCAPE}
      next:
        depends_on: [escape]
        steps: [echo next]
"
    )
    .replace("DIR", dir.path().to_str().unwrap());
    let run = util::run_on(&yaml, clean_config(root.path())).await;
    assert_eq!(run.report.status, RunStatus::Success, "{:?}", run.report);
    assert_eq!(run.logs("escape"), ["ready"]);
    assert!(!alive(escaped_pid(dir.path())), "the setsid child survived");
}

/// `$XENE_OUTPUT` was opened with a blocking open: a FIFO there blocked an
/// async worker (and the run) forever; a link read any file the agent may.
#[tokio::test(flavor = "multi_thread")]
async fn the_output_file_must_be_a_regular_file() {
    let run = run("name: outputs
pipelines:
  p:
    tasks:
      fifo:
        steps: [mkfifo \"$XENE_OUTPUT\"]
      link:
        steps: [ln -s /etc/passwd \"$XENE_OUTPUT\"]
      fine:
        steps: [echo fine > \"$XENE_OUTPUT\"]
")
    .await;
    for task in ["fifo", "link"] {
        let report = run.task(task);
        assert_eq!(report.status, TaskStatus::Error, "{task}");
        assert!(
            report
                .error
                .as_deref()
                .unwrap_or("")
                .contains("not a regular file"),
            "{task}: {report:?}"
        );
    }
    assert_eq!(run.task("fine").output.as_deref(), Some("fine"));
}

/// A server's agents give steps a clean environment: none of the agent's
/// own variables (its credentials among them), `HOME` in the workspace.
#[tokio::test(flavor = "multi_thread")]
async fn a_clean_environment_holds_only_the_steps_variables() {
    let root = tempfile::tempdir().unwrap();
    let yaml = "name: env
pipelines:
  p:
    tasks:
      show:
        env: {MINE: here}
        steps:
          - env
          - test \"$HOME\" = \"$XENE_WORKSPACE\"
";
    let run = util::run_on(yaml, clean_config(root.path())).await;
    assert_eq!(run.task("show").status, TaskStatus::Success);
    let mut names: Vec<&str> = run
        .logs("show")
        .into_iter()
        .filter_map(|line| line.split_once('=').map(|(name, _)| name))
        .filter(|name| !name.starts_with("XENE_"))
        .collect();
    names.sort();
    // `PWD`, `SHLVL` and `_` come from sh itself.
    names.retain(|n| !["PWD", "SHLVL", "_", "OLDPWD"].contains(n));
    assert_eq!(names, ["HOME", "LANG", "MINE", "PATH"]);
}
