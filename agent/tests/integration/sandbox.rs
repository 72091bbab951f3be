//! Shell steps under a supervisor (the sandbox of a server's built-in
//! agent): another user when root, Landlock around the workspace, and every
//! process of the step ended with it.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use xene_agent::runtime::sandbox::Sandbox;
use xene_core::event::RunEvent;
use xene_core::status::{RunStatus, TaskStatus};

use crate::util::{self, run_with};

fn sandboxed(root: &std::path::Path) -> xene_agent::ExecutorConfig {
    let sandbox = Sandbox::new(
        env!("CARGO_BIN_EXE_xene-agent").into(),
        format!("agent-test-{}", std::process::id()),
        Vec::new(),
    )
    .expect("a sandbox");
    xene_agent::ExecutorConfig {
        shell: xene_agent::runtime::shell::ShellConfig {
            root: root.to_path_buf(),
            inherit_env: false,
            sandbox: Some(sandbox),
        },
        kill_grace: Duration::from_millis(300),
        ..util::config()
    }
}

/// Processes with `word` as one of their arguments.
fn processes_with(word: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|&b| b == 0).any(|arg| arg == word.as_bytes()))
        })
        .collect()
}

fn tag() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{}", nanos % 1_000_000)
}

/// A sandboxed step writes its workspace and `$TMPDIR` only (a directory
/// open to all is still closed to it), runs as `nobody` under root, keeps
/// its exit code, and nothing it started outlives it, not even a process in
/// a session of its own.
#[tokio::test(flavor = "multi_thread")]
async fn a_sandboxed_step_writes_only_its_workspace_and_ends_whole() {
    let root = tempfile::tempdir().unwrap();
    let open = tempfile::tempdir().unwrap();
    std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let tag = tag();
    let yaml = format!(
        r#"name: boxed
pipelines:
  p:
    tasks:
      boxed:
        steps:
          - id -u
          - touch {open}/x 2>/dev/null || echo "denied outside"
          - echo kept > "$TMPDIR/f" && cat "$TMPDIR/f" && echo here > mine && cat mine
          - |
            (setsid sleep 300.{tag} > /dev/null 2>&1 &)
            sleep 301.{tag} > /dev/null 2>&1 &
            echo started
      fails:
        steps: [exit 3]
"#,
        open = open.path().display()
    );
    let run = run_with(
        &yaml,
        sandboxed(root.path()),
        BTreeMap::new(),
        CancellationToken::new(),
        |_| {},
    )
    .await;
    assert_eq!(
        run.task("boxed").status,
        TaskStatus::Success,
        "{:?}",
        run.report
    );
    let uid = if rustix::process::geteuid().is_root() {
        "65534".to_string()
    } else {
        rustix::process::geteuid().as_raw().to_string()
    };
    assert_eq!(
        run.logs("boxed"),
        [uid.as_str(), "denied outside", "kept", "here", "started"]
    );
    assert!(!open.path().join("x").exists());
    assert_eq!(run.task("fails").steps[0].exit_code, Some(3));
    for word in [format!("300.{tag}"), format!("301.{tag}")] {
        assert!(processes_with(&word).is_empty(), "{word} outlived its step");
    }
}

/// A cancelled step that ignores SIGTERM is killed after the grace, with
/// what it set loose.
#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_sandboxed_step_ends_after_the_grace() {
    let root = tempfile::tempdir().unwrap();
    let tag = tag();
    let yaml = format!(
        r#"name: stubborn
pipelines:
  p:
    tasks:
      stubborn:
        steps:
          - |
            trap '' TERM
            (setsid sleep 302.{tag} > /dev/null 2>&1 &)
            echo ready
            sleep 100
"#
    );
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    let run = run_with(
        &yaml,
        sandboxed(root.path()),
        BTreeMap::new(),
        cancel,
        move |event| {
            if matches!(event, RunEvent::Log { data, .. } if data == "ready") {
                trigger.cancel();
            }
        },
    )
    .await;
    assert_eq!(run.report.status, RunStatus::Cancelled, "{:?}", run.report);
    assert_eq!(run.task("stubborn").steps[0].exit_code, Some(128 + 9));
    assert!(processes_with(&format!("302.{tag}")).is_empty());
}
