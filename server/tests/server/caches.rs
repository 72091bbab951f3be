//! Caches (issue 25) end to end through the server: the built-in agent on
//! SQLite and PostgreSQL, and a remote `xene-agent connect` with the
//! entries on S3 (moto with request authentication on).
//!
//! - run 1 of `p`: both caches miss, the steps see it, both are saved;
//!   `hit` (`if: tasks.build.caches.deps == 'hit'`) is skipped;
//! - run 2: both hit, the steps find run 1's files, `hit` runs;
//! - run 3 (another param): `deps` restores run 1's entry by its restore
//!   key (partial); `gen` hashes a file its `make` step writes (`after:
//!   make`), which changed, so it misses;
//! - (remote, S3) past the workflow's quota, the least recently used
//!   entries are evicted;
//! - `hooked` says `cache_save: {webhook: never}`: a run its webhook
//!   started restores (a miss) and saves nothing, so the manual run after
//!   it misses too.
//!
//! The timeouts only turn a hang into a failure: nothing here is timed.

use serde_json::{Value, json};
use xene_testkit::S3;

use crate::artifacts::{Fleet, use_s3};
use crate::util::{BACKENDS, TestDb, TestServer, deliver_to_new_hook};

const WORKFLOW: &str = r#"
name: cached
pipelines:
  p:
    params:
      v: "1"
    tasks:
      build:
        caches:
          - name: deps
            key: "deps-{{ params.v }}"
            restore_keys: ["deps-"]
            paths: [deps]
          - name: gen
            key: gen
            hash_files: [lock]
            paths: [gen]
            after: make
        steps:
          - name: make
            run: |
              echo "deps $XENE_CACHE_DEPS $XENE_CACHE_DEPS_KEY"
              if [ -f deps/v ]; then echo "found deps $(cat deps/v)"; fi
              mkdir -p deps gen && echo "$XENE_PARAM_V" > deps/v && echo "lock $XENE_PARAM_V" > lock
          - name: use
            run: |
              echo "gen $XENE_CACHE_GEN"
              if [ -f gen/x ]; then echo "found gen $(cat gen/x)"; fi
              echo "$XENE_PARAM_V" > gen/x
      hit:
        depends_on: [build]
        if: "tasks.build.caches.deps == 'hit'"
        steps: ["echo downstream saw a hit"]
  hooked:
    trigger: webhook
    cache_save: {webhook: never}
    tasks:
      w:
        caches: [{name: w, key: w, paths: [w]}]
        steps: ['echo "w $XENE_CACHE_W"; mkdir -p w && echo w > w/f']
"#;

/// Starts a run of `cached`'s `pipeline` with `v` and waits for its end;
/// its log, one `task: data` line per line.
async fn run(server: &TestServer, pipeline: &str, v: Option<&str>) -> (Value, String) {
    let body = match v {
        Some(v) => json!({"params": {"v": v}}).to_string(),
        None => String::new(),
    };
    let (status, run) = server
        .post(
            &format!("/api/v1/workflows/cached/pipelines/{pipeline}/runs"),
            body,
        )
        .await;
    assert_eq!(status, 201, "{run}");
    finished(server, run["id"].as_i64().unwrap()).await
}

/// Run `id` once it ended, and its log; panics unless it succeeded.
async fn finished(server: &TestServer, id: i64) -> (Value, String) {
    let run = server.wait_for_run(id).await;
    let (_, page) = server
        .get(&format!("/api/v1/runs/{id}/logs?limit=10000"))
        .await;
    let log = page["lines"]
        .as_array()
        .unwrap_or_else(|| panic!("{page}"))
        .iter()
        .map(|l| {
            format!(
                "{}: {}",
                l["task"].as_str().unwrap(),
                l["data"].as_str().unwrap()
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(run["status"], "success", "{run}\n{log}");
    (run, log)
}

fn task_status(run: &Value, task: &str) -> String {
    run["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == task)
        .unwrap_or_else(|| panic!("no task {task}: {run}"))["status"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Asserts that `log` holds each of `lines` (a line starting with it), in
/// that order.
fn in_order(log: &str, lines: &[&str]) {
    let mut from = 0;
    let all: Vec<&str> = log.lines().collect();
    for want in lines {
        let Some(at) = all[from..].iter().position(|l| l.starts_with(want)) else {
            panic!("no line {want:?} after line {from} in:\n{log}");
        };
        from += at + 1;
    }
}

/// Runs 1 to 3 of `p` on `server` (whatever runs its tasks).
async fn miss_hit_partial(server: &TestServer) {
    let (status, body) = server.post("/api/v1/workflows", WORKFLOW).await;
    assert_eq!(status, 201, "{body}");

    let (first, log) = run(server, "p", None).await;
    in_order(
        &log,
        &[
            "build: cache deps: miss deps-1",
            "build: deps miss deps-1",
            "build: cache gen: miss gen-",
            "build: gen miss",
            "build: cache deps: saved deps-1 (",
            "build: cache gen: saved gen-",
        ],
    );
    assert!(!log.contains("found"), "{log}");
    assert_eq!(task_status(&first, "hit"), "skipped", "{first}");

    let (second, log) = run(server, "p", None).await;
    in_order(
        &log,
        &[
            "build: cache deps: hit deps-1 (1 file",
            "build: deps hit deps-1",
            "build: found deps 1",
            "build: cache gen: hit gen-",
            "build: gen hit",
            "build: found gen 1",
            "hit: downstream saw a hit",
        ],
    );
    assert!(!log.contains("saved"), "{log}");
    assert_eq!(task_status(&second, "hit"), "success", "{second}");

    let (third, log) = run(server, "p", Some("2")).await;
    in_order(
        &log,
        &[
            "build: cache deps: restored deps-1 for deps-2 (partial)",
            "build: deps partial deps-1",
            "build: found deps 1",
            "build: cache gen: miss gen-",
            "build: gen miss",
            "build: cache deps: saved deps-2 (",
            "build: cache gen: saved gen-",
        ],
    );
    assert_eq!(task_status(&third, "hit"), "skipped", "{third}");
}

/// `hooked`: a webhook's run restores and saves nothing; the manual run
/// after it finds nothing saved, and saves.
async fn webhook_runs_save_nothing(server: &TestServer) {
    let (status, answer, reason) = deliver_to_new_hook(server, "cached", "hooked").await;
    assert_eq!(status, 202, "{answer} {reason}");
    let (_, log) = finished(server, answer["run_id"].as_i64().unwrap()).await;
    in_order(
        &log,
        &["w: cache w: miss w", "w: w miss", "w: cache w: not saved"],
    );
    let (_, log) = run(server, "hooked", None).await;
    in_order(
        &log,
        &["w: cache w: miss w", "w: w miss", "w: cache w: saved w ("],
    );
}

#[tokio::test]
async fn caches_through_the_built_in_agent() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start(&db).await;
        miss_hit_partial(&server).await;
        webhook_runs_save_nothing(&server).await;
        server.stop().await;
    }
}

/// Through a remote agent, on S3, with a quota two entries fit in (each
/// one chunk of about 2 KiB): run 3's saves take the workflow past it, so
/// the entries run 2 used go, least recently used first; run 4 (run 1's
/// keys again) finds them gone.
#[tokio::test]
async fn caches_through_a_remote_agent_on_s3() {
    let s3 = S3::start();
    let fleet = Fleet::start(&["a"], |args| {
        use_s3(args, &s3);
        args.artifacts.cache_quota = 5_000;
    })
    .await;
    let server = &fleet.server;
    miss_hit_partial(server).await;
    let (status, list) = server.get("/api/v1/workflows/cached/caches").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        (&list["total"], &list["quota"]),
        (&json!(2), &json!(5000)),
        "{list}"
    );
    let entries: Vec<(&str, &str)> = list["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["key"].as_str().unwrap()))
        .collect();
    assert!(entries.contains(&("deps", "deps-2")), "{list}");
    let (_, log) = run(server, "p", None).await;
    in_order(
        &log,
        &[
            "build: cache deps: restored deps-2 for deps-1 (partial)",
            "build: cache gen: miss gen-",
        ],
    );

    // The entries' chunks went up to and came down from the bucket, every
    // request presigned and found good by moto.
    let checked = s3.presigned_requests();
    assert!(!checked.is_empty(), "no presigned request reached moto");
    assert!(
        checked.iter().all(|(_, _, verdict)| verdict == "ok"),
        "moto refused a presigned URL: {checked:?}"
    );
    assert!(!s3.objects().is_empty());
}
