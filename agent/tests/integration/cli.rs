//! `xene-agent run`: exit codes, live output, `--json`, invalid specs and
//! Ctrl-C, through the built binary.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::util::{agent, wait_for_file};

fn write(dir: &Path, name: &str, yaml: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, yaml.replace("DIR", dir.to_str().unwrap())).unwrap();
    path
}

fn run(args: &[&str], file: &Path) -> Output {
    agent()
        .arg("run")
        .arg(file)
        .args(args)
        .output()
        .expect("running xene-agent")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const PASSING: &str = r#"name: ok
pipelines:
  main:
    params: {who: world}
    tasks:
      build:
        steps:
          - name: compile
            run: echo "hello {{ params.who }}"; echo v1 > $XENE_OUTPUT
      test:
        depends_on: [build]
        steps:
          - name: unit
            run: echo "testing {{ tasks.build.output }}"
"#;

#[test]
fn a_passing_run_prints_prefixed_lines_and_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "ok.yaml", PASSING);
    let output = run(&["--param", "who=cli"], &file);
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        text(&output.stderr)
    );
    assert!(stdout.contains("[build/compile] hello cli\n"), "{stdout}");
    assert!(stdout.contains("[test/unit] testing v1\n"), "{stdout}");
    let header = stdout
        .lines()
        .find(|l| l.starts_with("TASK"))
        .expect("a summary table");
    for column in ["STATUS", "ATTEMPTS", "DURATION"] {
        assert!(header.contains(column));
    }
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("build ") && l.contains("success"))
    );
    // Not a terminal: no progress line.
    assert!(!stdout.contains("done, running"));
}

#[test]
fn a_failing_run_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "fail.yaml",
        "name: fail
pipelines:
  main:
    tasks:
      broken:
        steps: [exit 1]
",
    );
    let output = run(&[], &file);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stdout).contains("[broken/step-1] failed with exit code 1"),
        "{}",
        text(&output.stdout)
    );
}

#[test]
fn json_prints_one_report_and_nothing_live() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "ok.yaml", PASSING);
    let output = run(&["--json"], &file);
    assert_eq!(output.status.code(), Some(0));
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("stdout is one JSON object");
    assert_eq!(report["status"], "success");
    assert_eq!(report["pipeline"], "main");
    let build = &report["tasks"]["build"];
    assert_eq!(build["status"], "success");
    assert_eq!(build["attempts"], 1);
    assert_eq!(build["output"], "v1");
    assert!(build["duration_ms"].is_u64());
    assert_eq!(build["steps"][0]["name"], "compile");
    assert_eq!(build["steps"][0]["exit_code"], 0);
    assert_eq!(report["tasks"]["test"]["output"], serde_json::Value::Null);
    // Live lines went to stderr.
    assert!(text(&output.stderr).contains("[build/compile] hello world"));
}

#[test]
fn an_invalid_spec_exits_2_and_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "bad.yaml",
        "name: bad
pipelines:
  main:
    tasks:
      runs-if-valid:
        steps: [touch DIR/ran]
      broken:
        depends_on: [nope]
        timeout: soon
        steps: ['true']
",
    );
    let output = run(&[], &file);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("nope"), "{stderr}");
    assert!(
        stderr.contains("timeout"),
        "every diagnostic is printed: {stderr}"
    );
    assert!(stderr.contains("nothing ran"));
    assert!(output.stdout.is_empty());
    assert!(!dir.path().join("ran").exists());
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "ok.yaml", PASSING);
    assert_eq!(run(&["--param", "unknown=1"], &file).status.code(), Some(2));
    assert_eq!(run(&["--pipeline", "other"], &file).status.code(), Some(2));
    assert_eq!(
        run(&[], &dir.path().join("missing.yaml")).status.code(),
        Some(2)
    );
    let two = write(
        dir.path(),
        "two.yaml",
        "name: two
pipelines:
  a: {tasks: {t: {steps: ['true']}}}
  b: {tasks: {t: {steps: ['true']}}}
",
    );
    assert_eq!(run(&[], &two).status.code(), Some(2));
    assert_eq!(run(&["--pipeline", "b"], &two).status.code(), Some(0));
}

#[test]
fn help_and_version() {
    let help = agent().arg("--help").output().unwrap();
    assert_eq!(help.status.code(), Some(0));
    assert!(text(&help.stdout).contains("run"));
    let run_help = agent().args(["run", "--help"]).output().unwrap();
    for flag in ["--pipeline", "--param", "--json", "--concurrency"] {
        assert!(text(&run_help.stdout).contains(flag), "{flag}");
    }
    let version = agent().arg("--version").output().unwrap();
    assert_eq!(
        text(&version.stdout).trim(),
        format!("xene-agent {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn ctrl_c_cancels_the_run_and_exits_130() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "long.yaml",
        "name: long
pipelines:
  main:
    tasks:
      long:
        steps:
          - name: sleeps
            run: touch DIR/started; sleep 100
      after:
        depends_on: [long]
        steps: [touch DIR/after-ran]
",
    );
    let child = agent()
        .arg("run")
        .arg(&file)
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_file(&dir.path().join("started"));
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", text(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["status"], "cancelled");
    assert_eq!(report["tasks"]["long"]["status"], "cancelled");
    assert_eq!(report["tasks"]["after"]["status"], "not_executed");
    assert!(!dir.path().join("after-ran").exists());
}

/// On a connected agent the shell's work directory was `<state dir>/work`:
/// the credential sat a `..` away from every step. Now it may not be there.
#[test]
fn a_work_dir_inside_the_state_dir_is_refused() {
    let state = tempfile::tempdir().unwrap();
    let work = state.path().join("work");
    let output = agent()
        .args([
            "connect",
            "--server",
            "http://127.0.0.1:9",
            "--join-token",
            "xjt_x",
        ])
        .args(["--allow-shell", "--state-dir"])
        .arg(state.path())
        .arg("--work-dir")
        .arg(&work)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("inside the state directory"),
        "{}",
        text(&output.stderr)
    );
    assert!(!work.exists());
}
