//! Artifacts through the executor: published after the main steps, fetched
//! before the first step, on the shell (sandboxed) and in containers, with
//! the run's local store (`xene-agent run`) or a store driven by the test
//! through the same `FileChannel`.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use xene_agent::executor::files::{FileChannel, LocalStore};
use xene_agent::{AttemptIds, AttemptRequest, Executor};
use xene_core::event::RunEvent;
use xene_core::status::{StepStatus, TaskStatus};

use crate::util::{self, HANG_GUARD, busybox_image, docker_leftovers, pipeline, run_on};

/// `build` publishes a binary, a directory (links inside it followed) with
/// a glob beside it, an optional glob that matches nothing and the binary
/// again (stored once);
/// `test` needs two of them at two places and finds them whole, with their
/// modes, owned by its user, writable. Beside them: `when: always` from a
/// failed task, a required glob that matches nothing, a link leading out.
fn workflow(image: Option<&str>) -> String {
    let image = image.map_or(String::new(), |i| format!("image: {i}"));
    format!(
        r#"name: artifacts
pipelines:
  p:
    tasks:
      build:
        {image}
        steps:
          - name: make
            run: |
              mkdir -p target/release dist/js reports
              printf app > target/release/app && chmod 755 target/release/app
              echo page > dist/index.html && echo js > dist/js/app.js
              ln -s index.html dist/home.html && ln -s js dist/scripts
              echo '<r/>' > reports/unit.xml && echo no > reports/notes.txt
        publish:
          - {{name: binary, path: target/release/app}}
          - {{name: site, paths: [dist, "reports/*.xml"]}}
          - {{name: extra, path: "nothing/*.bin", optional: true}}
          - {{name: copy, path: target/release/app}}
      test:
        {image}
        depends_on: [build]
        needs: [binary, {{name: site, path: out/site/}}]
        steps:
          - name: check
            run: |
              test -x app && test "$(cat app)" = app
              for f in app out/site out/site/js out/site/js/app.js; do
                test "$(stat -c %u $f)" = "$(id -u)" || echo "$f is not ours"
              done
              cat out/site/index.html out/site/home.html out/site/js/app.js out/site/scripts/app.js
              cat out/site/unit.xml
              test ! -e out/site/notes.txt && echo more > out/site/new
      broken:
        {image}
        steps: ["echo report > r.txt; exit 3"]
        publish:
          - {{name: report, path: r.txt, when: always}}
          - {{name: never, path: r.txt}}
      missing:
        {image}
        steps: ["true"]
        publish: [{{name: none, path: "*.xml"}}]
      leak:
        {image}
        steps: ["ln -s /etc/passwd pw"]
        publish: [{{name: pw, path: pw}}]
      late:
        {image}
        steps: ["echo x > x.txt"]
        post: ["exit 4"]
        publish: [{{name: late, path: x.txt}}]
"#
    )
}

async fn check_run(config: xene_agent::ExecutorConfig, image: Option<&str>) -> String {
    let run = run_on(&workflow(image), config).await;
    assert_eq!(
        run.task("build").status,
        TaskStatus::Success,
        "{run:#?}",
        run = run.report
    );
    assert_eq!(
        run.logs("build"),
        [
            "staged binary: 1 file, 3 B (3 B uploaded)",
            "staged site: 5 files, 21 B (13 B uploaded)",
            "staged extra: 0 files, 0 B (0 B uploaded)",
            "staged copy: 1 file, 3 B (0 B uploaded)",
        ]
    );
    assert_eq!(
        run.task("test").status,
        TaskStatus::Success,
        "{:#?}",
        run.report
    );
    assert_eq!(
        run.logs("test"),
        [
            "fetched binary: 1 file, 3 B",
            "fetched site: 5 files, 21 B",
            "page",
            "page",
            "js",
            "js",
            "<r/>"
        ]
    );
    let broken = run.task("broken");
    assert_eq!(broken.status, TaskStatus::Error);
    assert_eq!(
        run.logs("broken"),
        ["staged report: 1 file, 7 B (7 B uploaded)"]
    );
    let missing = run.task("missing");
    assert_eq!(missing.status, TaskStatus::Error);
    assert_eq!(
        missing.error.as_deref(),
        Some("artifact none: *.xml matches no file")
    );
    // The log says it too, on stderr.
    assert_eq!(
        run.logs("missing"),
        ["artifact none: *.xml matches no file"]
    );
    let leak = run.task("leak");
    assert_eq!(leak.status, TaskStatus::Error);
    let error = leak.error.clone().unwrap_or_default();
    assert!(
        error.starts_with("artifact pw: pw ") && error.contains("out of the workspace"),
        "{error}"
    );
    // Staged before a post step failed: the log says it is dropped.
    assert_eq!(run.task("late").status, TaskStatus::Error);
    assert_eq!(
        run.logs("late"),
        [
            "staged late: 1 file, 2 B (2 B uploaded)",
            "dropped staged late: the task failed after they were staged (only `when: always` artifacts are kept from a failed attempt)",
        ]
    );
    run.report.run_id
}

/// On the shell, sandboxed: steps run as another user when the agent is
/// root, and what is fetched is theirs.
#[tokio::test(flavor = "multi_thread")]
async fn artifacts_flow_between_sandboxed_shell_tasks() {
    let root = tempfile::tempdir().unwrap();
    check_run(crate::sandbox::sandboxed(root.path()), None).await;
    // The run's store and every spool are gone with it.
    let left: Vec<_> = std::fs::read_dir(root.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn artifacts_flow_between_containers() {
    let image = busybox_image();
    let root = tempfile::tempdir().unwrap();
    let mut config = util::config();
    config.shell.root = root.path().to_path_buf();
    let run_id = check_run(config, Some(image)).await;
    assert_eq!(docker_leftovers(&run_id), Vec::<String>::new());
}

fn request(yaml: &str, task: &str, files: Arc<dyn FileChannel>) -> AttemptRequest {
    let pipeline = pipeline(yaml);
    let run_id = format!("{}-1-test", xene_agent::new_run_id());
    AttemptRequest {
        ids: AttemptIds {
            context: format!("{run_id}-{task}-a1"),
            run_id,
            task: task.to_string(),
            number: 1,
        },
        spec: pipeline.tasks[task].clone(),
        pipeline_env: BTreeMap::new(),
        params: BTreeMap::new(),
        secrets: BTreeMap::new(),
        outputs: BTreeMap::new(),
        delivered: None,
        files: Some(files),
        cache_save: false,
    }
}

/// One attempt at a time through a store the test holds, in parts of 4
/// bytes: what it published comes back whole; a blob changed in the store
/// fails the attempt that needs it before its first step runs, and that
/// attempt publishes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_download_that_does_not_match_its_digest_fails_the_task() {
    let yaml = r#"name: verify
pipelines:
  p:
    tasks:
      build:
        steps: ["printf 0123456789 > app"]
        publish: [{name: binary, path: app}]
      test:
        depends_on: [build]
        needs: [binary]
        steps: ["test \"$(cat app)\" = 0123456789"]
        publish: [{name: seen, path: app, when: always}]
"#;
    let root = tempfile::tempdir().unwrap();
    let store = LocalStore::new(root.path().join("store"), 4).unwrap();
    let mut config = util::config();
    config.shell.root = root.path().to_path_buf();
    let executor = Executor::new(config);
    let attempt = |task: &str| {
        let channel = store.channel(&pipeline(yaml).tasks[task]);
        let request = request(yaml, task, channel.clone());
        let executor = executor.clone();
        async move {
            let (events, mut receiver) = mpsc::channel(256);
            let report = tokio::time::timeout(
                HANG_GUARD,
                executor.run_attempt(request, events, CancellationToken::new()),
            )
            .await
            .expect("the attempt hung");
            channel.finish(report.status == TaskStatus::Success);
            let mut logs = Vec::new();
            while let Ok(event) = receiver.try_recv() {
                if let RunEvent::Log { data, .. } = event {
                    logs.push(data);
                }
            }
            (report, logs)
        }
    };
    assert_eq!(attempt("build").await.0.status, TaskStatus::Success);
    let (report, logs) = attempt("test").await;
    assert_eq!(report.status, TaskStatus::Success);
    assert_eq!(
        logs,
        [
            "fetched binary: 1 file, 10 B",
            "staged seen: 1 file, 10 B (0 B uploaded)"
        ]
    );

    for blob in std::fs::read_dir(root.path().join("store/blobs")).unwrap() {
        std::fs::write(blob.unwrap().path(), "0123456780").unwrap();
    }
    let (report, logs) = attempt("test").await;
    assert_eq!(report.status, TaskStatus::Error);
    let error = "artifact binary: file app does not match its digest";
    assert_eq!(report.error.as_deref(), Some(error));
    assert_eq!(report.steps[0].status, StepStatus::NotExecuted);
    // Nothing ran, so nothing is published, `when: always` or not.
    assert_eq!(logs, [error]);
}

/// The artifact spool sits under the shell's root even for a container,
/// where the Docker sweep does not look: what a publish killed mid-way
/// left there (its copy out of the container outliving the attempt) is
/// removed by the attempt's own sweep, whatever the runtime.
#[tokio::test(flavor = "multi_thread")]
async fn a_containers_leftover_spool_is_swept() {
    let yaml = format!(
        r#"name: spool
pipelines:
  p:
    tasks:
      t:
        image: {}
        steps: ["true"]
"#,
        busybox_image()
    );
    let root = tempfile::tempdir().unwrap();
    let store = LocalStore::for_run(root.path().join("store")).unwrap();
    let task = &pipeline(&yaml).tasks["t"];
    let request = request(&yaml, "t", store.channel(task));
    let context = &request.ids.context;
    // Its name as the executor makes it, with nothing to replace.
    assert!(
        context
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    );
    let spool = root.path().join(format!("xene-{context}.files"));
    std::fs::create_dir(&spool).unwrap();
    std::fs::write(spool.join("f0"), "half an artifact").unwrap();
    let mut config = util::config();
    config.shell.root = root.path().to_path_buf();
    let (events, _receiver) = mpsc::channel(256);
    let report = tokio::time::timeout(
        HANG_GUARD,
        Executor::new(config).run_attempt(request, events, CancellationToken::new()),
    )
    .await
    .expect("the attempt hung");
    assert_eq!(report.status, TaskStatus::Success, "{report:#?}");
    assert!(!spool.exists());
}
