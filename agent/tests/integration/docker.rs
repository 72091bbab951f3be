//! The executor on the Docker runtime, against the real engine.

use std::collections::BTreeMap;

use tokio_util::sync::CancellationToken;
use xene_core::event::RunEvent;
use xene_core::status::{RunStatus, StepStatus, TaskStatus};

use xene_agent::runtime::docker::{ContainerLimits, DockerConfig};

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
    // The engine's own words stay in the agent's log.
    assert!(!error.contains("Docker responded"), "{error}");
    assert_eq!(docker_leftovers(&run.report.run_id), Vec::<String>::new());
}

fn limited(limits: ContainerLimits) -> xene_agent::ExecutorConfig {
    xene_agent::ExecutorConfig {
        docker: DockerConfig {
            limits,
            ..DockerConfig::default()
        },
        ..util::config()
    }
}

/// What a task's container may use, as its cgroup reports it.
const SHOW_LIMITS: &str = r#"cg=/sys/fs/cgroup
              if [ -f $cg/memory/memory.limit_in_bytes ]; then
                echo "$(cat $cg/memory/memory.limit_in_bytes) $(cat $cg/pids/pids.max) $(cat $cg/cpu/cpu.cfs_quota_us)/$(cat $cg/cpu/cpu.cfs_period_us)" > "$XENE_OUTPUT"
              else
                echo "$(cat $cg/memory.max) $(cat $cg/pids.max) $(cat $cg/cpu.max | tr ' ' /)" > "$XENE_OUTPUT"
              fi"#;

/// Containers had no memory, process or CPU limit: one task could take the
/// machine (a fork bomb, a leak) from every other task and the agent.
#[tokio::test(flavor = "multi_thread")]
async fn containers_get_memory_pids_and_cpu_limits() {
    let image = busybox_image();
    let yaml = format!(
        "name: limits
pipelines:
  p:
    tasks:
      show:
        image: {image}
        steps:
          - |
              {SHOW_LIMITS}
"
    );
    let run = |config| {
        let yaml = yaml.clone();
        async move { util::run_on(&yaml, config).await }
    };
    let defaults = run(util::config()).await;
    let cpus = ContainerLimits::default().cpus;
    assert_eq!(
        defaults.task("show").output.as_deref(),
        Some(format!("{} 1024 {}/100000", 2u64 << 30, (cpus * 100_000.0) as u64).as_str()),
        "{:?}",
        defaults.report
    );
    let set = run(limited(ContainerLimits {
        memory_bytes: 256 << 20,
        pids: 64,
        cpus: 0.5,
    }))
    .await;
    assert_eq!(
        set.task("show").output.as_deref(),
        Some(format!("{} 64 50000/100000", 256u64 << 20).as_str())
    );
    let unlimited = run(limited(ContainerLimits {
        memory_bytes: 0,
        pids: 0,
        cpus: 0.0,
    }))
    .await;
    let output = unlimited.task("show").output.clone().unwrap_or_default();
    assert!(output.ends_with(" max -1/100000"), "{output}");
}

/// The engine's refusal (here: more CPUs than it has) reached users word
/// for word; they get what happened, the agent's log gets the details.
#[tokio::test(flavor = "multi_thread")]
async fn engine_errors_are_not_echoed_to_users() {
    let image = busybox_image();
    let config = limited(ContainerLimits {
        cpus: 1000.0,
        ..ContainerLimits::default()
    });
    let yaml = format!(
        "name: refused
pipelines:
  p:
    tasks:
      greedy:
        image: {image}
        steps: [echo never]
"
    );
    let run = util::run_on(&yaml, config).await;
    let greedy = run.task("greedy");
    assert_eq!(greedy.status, TaskStatus::Error);
    let error = greedy.error.as_deref().unwrap_or("");
    assert!(error.contains("the engine refused the request"), "{error}");
    assert!(!error.contains("CPUs"), "{error}");
    assert_eq!(docker_leftovers(&run.report.run_id), Vec::<String>::new());
}

/// In a container the output arrives as an archive: a FIFO there is no
/// regular file either.
#[tokio::test(flavor = "multi_thread")]
async fn a_fifo_output_in_a_container_is_refused() {
    let image = busybox_image();
    let run = run(&format!(
        "name: fifo
pipelines:
  p:
    tasks:
      fifo:
        image: {image}
        steps: [mkfifo \"$XENE_OUTPUT\"]
"
    ))
    .await;
    let fifo = run.task("fifo");
    assert_eq!(fifo.status, TaskStatus::Error);
    assert!(
        fifo.error
            .as_deref()
            .unwrap_or("")
            .contains("not a regular file"),
        "{fifo:?}"
    );
}

/// Ids of the containers and volumes labelled as made by agent `owner`.
fn owned(owner: &str) -> Vec<String> {
    let label = format!("label=xene.agent={owner}");
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

/// Makes what a killed agent leaves: a running container and a volume
/// labelled with its id.
fn leave_behind(owner: &str, image: &str) {
    let label = format!("xene.agent={owner}");
    for args in [
        vec!["volume", "create", "--label", &label],
        vec!["run", "-d", "--label", &label, image, "sleep", "600"],
    ] {
        let status = std::process::Command::new("docker")
            .args(&args)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("running docker");
        assert!(status.success(), "docker {args:?}");
    }
}

/// An agent killed with kill -9 left its steps' containers running; the
/// server placed those attempts again. Its next start removes what
/// carries its id, and nothing of another agent's.
#[tokio::test(flavor = "multi_thread")]
async fn a_connected_agent_removes_what_its_killed_process_left() {
    let image = busybox_image();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let ours = format!("sweep-ours-{nanos}");
    let theirs = format!("sweep-theirs-{nanos}");

    // What its runtime creates carries its id.
    let config = xene_agent::ExecutorConfig {
        docker: DockerConfig {
            owner: Some(ours.clone()),
            ..DockerConfig::default()
        },
        ..util::config()
    };
    let yaml = format!(
        r#"name: owned
pipelines:
  p:
    tasks:
      t:
        image: {image}
        steps: ["echo step"]
"#
    );
    let seen = ours.clone();
    let run = run_with(
        &yaml,
        config.clone(),
        BTreeMap::new(),
        CancellationToken::new(),
        move |event| {
            if matches!(event, RunEvent::Log { data, .. } if data == "step") {
                assert_eq!(owned(&seen).len(), 2, "a container and a volume");
            }
        },
    )
    .await;
    assert_eq!(run.report.status, RunStatus::Success);
    assert_eq!(owned(&ours), Vec::<String>::new());

    leave_behind(&ours, image);
    leave_behind(&theirs, image);
    assert_eq!(owned(&ours).len(), 2);
    xene_agent::Executor::new(config).sweep_leftovers().await;
    assert_eq!(owned(&ours), Vec::<String>::new());
    assert_eq!(owned(&theirs).len(), 2, "another agent's are not touched");

    // Tidy up the other agent's.
    let other = xene_agent::Executor::new(xene_agent::ExecutorConfig {
        docker: DockerConfig {
            owner: Some(theirs.clone()),
            ..DockerConfig::default()
        },
        ..util::config()
    });
    other.sweep_leftovers().await;
    assert_eq!(owned(&theirs), Vec::<String>::new());
}
