//! Caches through the executor with `xene-agent run`'s local store, on the
//! shell and in containers. Its entries live as long as the run's store, so
//! tasks of one run that share a cache's name show miss, hit and partial:
//!
//! - `first`: both caches miss, the steps (post too) see `miss` and the
//!   full key, both are saved; `if: tasks.first.caches.deps == 'hit'`
//!   skips `skipped`;
//! - `second` (after it, the same keys): both hit, the steps find what
//!   `first` left, nothing is saved; `downstream` runs;
//! - `third` (after it): `deps` restores `first`'s entry by its restore key
//!   (`partial`) and is saved under its own key; `gen`'s key hashes a file
//!   its `make` step writes (`after: make`) and that file differs, so it
//!   misses;
//! - `venv`: a `**` key glob passes over a link out of the workspace it
//!   does not take (a virtualenv's `python`), and a save whose paths hold
//!   no file is a line, the task still a success;
//! - `late`: its `after` step fails, so its cache is never restored: the
//!   post step sees `miss` and the rendered key.

use std::collections::BTreeMap;

use tokio_util::sync::CancellationToken;
use xene_agent::ExecutorConfig;
use xene_core::cache::CacheHit;
use xene_core::event::RunEvent;
use xene_core::status::TaskStatus;

use crate::util::{self, Run, busybox_image, docker_leftovers, run_with};

/// A task with both caches; `deps`'s key is `KEY`, its lock file holds
/// `lock LOCK`.
fn task(name: &str, image: &str, after: &str, key: &str, lock: &str) -> String {
    format!(
        r#"
      {name}:
        {image}
        {after}
        env: {{LOCK: "{lock}"}}
        caches:
          - name: deps
            key: "{key}"
            restore_keys: ["deps-"]
            paths: [deps]
          - name: gen-out
            key: gen
            hash_files: [gen/lock]
            paths: [gen/out]
            after: make
        steps:
          - name: make
            run: |
              echo "deps: $XENE_CACHE_DEPS $XENE_CACHE_DEPS_KEY; gen: ${{XENE_CACHE_GEN_OUT:-unset}}"
              if [ -f deps/v ]; then echo "found deps/v $(cat deps/v)"; fi
              mkdir -p deps gen && echo "$LOCK" > deps/v && echo "lock $LOCK" > gen/lock
          - name: use
            run: |
              echo "gen: $XENE_CACHE_GEN_OUT"
              if [ -f gen/out/x ]; then echo "found gen/out/x $(cat gen/out/x)"; fi
              mkdir -p gen/out && echo "$LOCK" > gen/out/x
        post:
          - name: tidy
            run: |
              echo "post: $XENE_CACHE_DEPS $XENE_CACHE_GEN_OUT_KEY""#
    )
}

fn workflow(image: Option<&str>) -> String {
    let image = image.map_or(String::new(), |i| format!("image: {i}"));
    let first = task("first", &image, "", "deps-{{ params.v }}", "1");
    let second = task(
        "second",
        &image,
        "depends_on: [first]",
        "deps-{{ params.v }}",
        "1",
    );
    let third = task(
        "third",
        &image,
        "depends_on: [second]",
        "deps-{{ params.v }}-b",
        "2",
    );
    format!(
        r#"name: caches
pipelines:
  p:
    params:
      v: "1"
    tasks:{first}{second}{third}
      downstream:
        {image}
        depends_on: [second]
        if: "tasks.second.caches.deps == 'hit'"
        steps: ["echo deps hit upstream"]
      skipped:
        {image}
        depends_on: [first]
        if: "tasks.first.caches.deps == 'hit'"
        steps: ["echo never"]
      venv:
        {image}
        caches:
          - name: py
            key: py
            hash_files: ["**/requirements.txt"]
            paths: [nothing]
            after: link
        steps:
          - name: link
            run: mkdir -p .venv/bin nothing && ln -s /bin/sh .venv/bin/python && echo flask > requirements.txt
          - name: use
            run: 'echo "py: $XENE_CACHE_PY"'
      late:
        {image}
        caches: [{{name: late, key: "late-{{{{ params.v }}}}", paths: [l], after: fail}}]
        steps:
          - name: fail
            run: exit 3
        post:
          - name: see
            run: 'echo "late: $XENE_CACHE_LATE $XENE_CACHE_LATE_KEY"'
"#
    )
}

/// What each `CacheRestored` of `task` said: (cache, hit, key).
fn restored(run: &Run, task: &str) -> Vec<(String, CacheHit, String)> {
    run.events
        .iter()
        .filter_map(|e| match e {
            RunEvent::CacheRestored {
                task: t,
                cache,
                hit,
                key,
            } if t == task => Some((cache.clone(), *hit, key.clone())),
            _ => None,
        })
        .collect()
}

/// The key `gen-out` restored under in `task`: `gen-` and 32 hex digits,
/// not those of the hash of no file (its file is made by `make`).
fn gen_key(run: &Run, task: &str) -> String {
    let key = restored(run, task)
        .into_iter()
        .find(|(cache, ..)| cache == "gen-out")
        .expect("gen-out restored")
        .2;
    let hex = key.strip_prefix("gen-").unwrap_or_default();
    assert!(
        hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "{key}"
    );
    // SHA-256 of nothing: what the key would hash before `make` ran.
    assert_ne!(hex, "e3b0c44298fc1c149afbf4c8996fb924", "{key}");
    key
}

/// Asserts that `task`'s log holds a line starting with each of `lines`,
/// in that order.
fn in_order(run: &Run, task: &str, lines: &[&str]) {
    let log = run.logs(task);
    let mut from = 0;
    for want in lines {
        let Some(at) = log[from..].iter().position(|l| l.starts_with(want)) else {
            panic!("{task}: no line {want:?} after line {from} in {log:#?}");
        };
        from += at + 1;
    }
}

fn no_line(run: &Run, task: &str, part: &str) {
    let log = run.logs(task);
    assert!(!log.iter().any(|l| l.contains(part)), "{task}: {log:#?}");
}

async fn check_run(config: ExecutorConfig, image: Option<&str>) -> String {
    use CacheHit::{Hit, Miss, Partial};
    let s = |t: &str| t.to_string();
    let run = run_with(
        &workflow(image),
        config,
        BTreeMap::new(),
        CancellationToken::new(),
        |_| {},
    )
    .await;
    for task in ["first", "second", "third", "downstream"] {
        assert_eq!(
            run.task(task).status,
            TaskStatus::Success,
            "{task}: {:#?}\n{:#?}",
            run.report,
            run.logs(task)
        );
    }

    let gen1 = gen_key(&run, "first");
    assert_eq!(
        restored(&run, "first"),
        [
            (s("deps"), Miss, s("deps-1")),
            (s("gen-out"), Miss, gen1.clone())
        ]
    );
    // In the order things happen: restored before `make`, `gen-out` right
    // after it, saved after the main steps, then `post`.
    in_order(
        &run,
        "first",
        &[
            "cache deps: miss deps-1",
            "deps: miss deps-1; gen: unset",
            &format!("cache gen-out: miss {gen1}"),
            "gen: miss",
            "cache deps: saved deps-1 (1 file, 2 B, ",
            &format!("cache gen-out: saved {gen1} (1 file, 2 B, "),
            &format!("post: miss {gen1}"),
        ],
    );
    no_line(&run, "first", "found");
    assert_eq!(run.task("first").caches.get("deps"), Some(&Miss));
    assert_eq!(run.task("skipped").status, TaskStatus::Skipped);

    assert_eq!(gen_key(&run, "second"), gen1);
    assert_eq!(
        restored(&run, "second"),
        [
            (s("deps"), Hit, s("deps-1")),
            (s("gen-out"), Hit, gen1.clone())
        ]
    );
    in_order(
        &run,
        "second",
        &[
            "cache deps: hit deps-1 (1 file, 2 B restored)",
            "deps: hit deps-1; gen: unset",
            "found deps/v 1",
            &format!("cache gen-out: hit {gen1} (1 file, 2 B restored)"),
            "gen: hit",
            "found gen/out/x 1",
            &format!("post: hit {gen1}"),
        ],
    );
    no_line(&run, "second", "saved");
    assert_eq!(run.logs("downstream"), ["deps hit upstream"]);

    let gen2 = gen_key(&run, "third");
    assert_ne!(gen2, gen1, "the key did not hash the file `make` wrote");
    assert_eq!(
        restored(&run, "third"),
        [
            (s("deps"), Partial, s("deps-1")),
            (s("gen-out"), Miss, gen2.clone())
        ]
    );
    in_order(
        &run,
        "third",
        &[
            "cache deps: restored deps-1 for deps-1-b (partial)",
            "deps: partial deps-1; gen: unset",
            "found deps/v 1",
            &format!("cache gen-out: miss {gen2}"),
            "gen: miss",
            "cache deps: saved deps-1-b (1 file, 2 B, ",
            &format!("cache gen-out: saved {gen2} ("),
            &format!("post: partial {gen2}"),
        ],
    );
    no_line(&run, "third", "found gen");

    assert_eq!(run.task("venv").status, TaskStatus::Success);
    let py = restored(&run, "venv");
    assert_eq!((py[0].0.as_str(), py[0].1), ("py", Miss), "{py:?}");
    let hex = py[0].2.strip_prefix("py-").unwrap_or_default();
    assert_eq!(hex.len(), 32, "{py:?}");
    in_order(
        &run,
        "venv",
        &[
            &format!("cache py: miss {}", py[0].2),
            "py: miss",
            "cache py: not saved: its paths hold no file",
        ],
    );
    assert_eq!(run.task("late").status, TaskStatus::Error);
    assert!(restored(&run, "late").is_empty());
    in_order(&run, "late", &["late: miss late-1"]);
    run.report.run_id
}

/// On the shell, sandboxed (the steps' user is another when the agent is
/// root): what is restored is theirs to change.
#[tokio::test(flavor = "multi_thread")]
async fn caches_miss_hit_and_restore_by_prefix_on_the_shell() {
    let root = tempfile::tempdir().unwrap();
    check_run(crate::sandbox::sandboxed(root.path()), None).await;
    // The run's store (its entries) and every spool are gone with it.
    let left: Vec<_> = std::fs::read_dir(root.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn caches_miss_hit_and_restore_by_prefix_in_containers() {
    let root = tempfile::tempdir().unwrap();
    let mut config = util::config();
    config.shell.root = root.path().to_path_buf();
    let run_id = check_run(config, Some(busybox_image())).await;
    assert_eq!(docker_leftovers(&run_id), Vec::<String>::new());
}

/// A key that renders to what no store takes (here a param with a line
/// break) fails its task before it starts, as an env value that does not
/// render does; nothing runs.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_that_renders_badly_fails_the_task_before_it_starts() {
    let yaml = r#"name: bad
pipelines:
  p:
    params:
      v: "1"
    tasks:
      t:
        caches: [{name: c, key: "c-{{ params.v }}", paths: [c]}]
        steps: ["echo ran"]
"#;
    let params = BTreeMap::from([("v".to_string(), "a\nb".to_string())]);
    let root = tempfile::tempdir().unwrap();
    let mut config = util::config();
    config.shell.root = root.path().to_path_buf();
    let run = run_with(yaml, config, params, CancellationToken::new(), |_| {}).await;
    let task = run.task("t");
    assert_eq!((task.status, task.attempts), (TaskStatus::Error, 0));
    assert_eq!(
        task.error.as_deref(),
        Some(r#"cache c key: cache key "c-a\nb" holds a control character"#)
    );
    assert!(run.logs("t").is_empty());
}
