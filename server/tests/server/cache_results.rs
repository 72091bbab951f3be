//! Caches as the server keeps them for people and for later tasks (issue
//! 25), on SQLite and PostgreSQL:
//!
//! - what an agent reports a restore found (`RunEvent::CacheRestored`) is
//!   stored once per attempt, and the attempt that gave the task's result
//!   (a retry's, not the failed first one's) is its task's result: a
//!   dependant's `if: tasks.build.caches.cargo == 'hit'` runs it, `==
//!   'miss'` skips it, and the dependant's dispatch carries it; a dispatch may save caches unless
//!   its pipeline's `cache_save` says `never` for the run's trigger (a bare
//!   WebSocket client plays the agent);
//! - `GET /api/v1/workflows/{name}/caches` lists a workflow's saved
//!   entries to viewers with its usage and quota; `DELETE
//!   .../caches/{id}` is an editor's, audited, and only of that workflow's
//!   entries; the artifact usage says its quota.

use serde_json::{Value, json};
use xene_core::access::Role;
use xene_core::cache::CacheHit;
use xene_core::event::RunEvent;
use xene_core::status::TaskStatus;

use xene_core::protocol::{ServerMessage, TaskDispatch};

use crate::agent_socket::{Socket, connect, hello_with, join, receive, send};
use crate::gateway::task_events;
use crate::util::{BACKENDS, TestDb, TestServer, client_with_token, response};

const SPEC: &str = "
name: cached
pipelines:
  p:
    selector: {pool: raw}
    cache_save: {webhook: never}
    tasks:
      build:
        retries: {count: 1, backoff: 10ms}
        caches:
          - name: cargo
            key: cargo-1
            paths: [target]
        steps: ['true']
      after_miss:
        depends_on: [build]
        if: tasks.build.caches.cargo == 'miss'
        steps: ['true']
      after_hit:
        depends_on: [build]
        if: tasks.build.caches.cargo == 'hit'
        steps: ['true']
  q:
    selector: {pool: raw}
    cache_save: {manual: never}
    tasks:
      only:
        caches:
          - name: deps
            key: deps
            paths: [deps]
        steps: ['true']
";

fn finished(task: &str) -> RunEvent {
    ended(task, 1, TaskStatus::Success)
}

fn ended(task: &str, attempt: u32, status: TaskStatus) -> RunEvent {
    RunEvent::TaskFinished {
        task: task.into(),
        status,
        output: None,
        duration_ms: 1,
        attempt,
        error: None,
        retry_in_ms: None,
    }
}

fn started(task: &str) -> RunEvent {
    RunEvent::TaskStarted {
        task: task.into(),
        attempt: 1,
    }
}

fn restored(hit: CacheHit) -> RunEvent {
    RunEvent::CacheRestored {
        task: "build".into(),
        cache: "cargo".into(),
        hit,
        key: "cargo-1".into(),
    }
}

/// The next task dispatch, passing over acknowledgements and pongs.
async fn next_task(socket: &mut Socket) -> TaskDispatch {
    loop {
        match receive(socket).await {
            Ok(ServerMessage::TaskDispatch(dispatch)) => return *dispatch,
            Ok(ServerMessage::TaskAck { .. } | ServerMessage::Pong) => continue,
            other => panic!("expected a task dispatch, got {other:?}"),
        }
    }
}

fn task<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no task {name}: {run}"))
}

#[tokio::test]
async fn a_restore_reported_is_the_tasks_result_and_dispatches_say_whether_to_save() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start_with(&db, |a| a.no_local_agent = true).await;
        let (status, body) = server.post("/api/v1/workflows", SPEC).await;
        assert_eq!(status, 201, "{body}");
        let (_, credential) = join(&server, json!({ "pool": "raw" })).await;
        let (status, run) = server
            .post("/api/v1/workflows/cached/pipelines/p/runs", "")
            .await;
        assert_eq!(status, 201, "{run}");
        let run_id = run["id"].as_i64().unwrap();
        let mut agent = connect(&server, &credential, &hello_with(1, vec![])).await;
        let build = next_task(&mut agent).await;
        assert_eq!(build.task, "build");
        // A manual run of a pipeline that only keeps webhook runs from saving.
        assert!(build.cache_save, "{build:?}");
        let attempt = build.attempt;
        send(
            &mut agent,
            &task_events(attempt, 0, &[started("build"), restored(CacheHit::Miss)]),
        )
        .await;
        // The same events again, then another report of the same cache: the
        // first stays.
        send(
            &mut agent,
            &task_events(attempt, 0, &[started("build"), restored(CacheHit::Miss)]),
        )
        .await;
        // It fails, with a retry left.
        send(
            &mut agent,
            &task_events(
                attempt,
                2,
                &[
                    restored(CacheHit::Hit),
                    ended("build", 1, TaskStatus::Error),
                ],
            ),
        )
        .await;

        // Attempt 2 finds the entry and gives the task's result: a
        // dependant reads its restores, not the first attempt's.
        let retried = next_task(&mut agent).await;
        assert_eq!((retried.task.as_str(), retried.number), ("build", 2));
        let started_2 = RunEvent::TaskStarted {
            task: "build".into(),
            attempt: 2,
        };
        send(
            &mut agent,
            &task_events(
                retried.attempt,
                0,
                &[
                    started_2,
                    restored(CacheHit::Hit),
                    ended("build", 2, TaskStatus::Success),
                ],
            ),
        )
        .await;

        let next = next_task(&mut agent).await;
        assert_eq!(next.task, "after_hit", "{next:?}");
        assert!(next.cache_save);
        let read = &next.outputs["build"];
        assert_eq!(read.status, TaskStatus::Success);
        assert_eq!(
            read.caches.get("cargo"),
            Some(&CacheHit::Hit),
            "{:?}",
            next.outputs
        );
        send(
            &mut agent,
            &task_events(
                next.attempt,
                0,
                &[started("after_hit"), finished("after_hit")],
            ),
        )
        .await;
        let run = server.wait_for_run(run_id).await;
        assert_eq!(run["status"], "success", "{run}");
        assert_eq!(task(&run, "after_hit")["status"], "success", "{run}");
        assert_eq!(task(&run, "after_miss")["status"], "skipped", "{run}");

        // Stored once, as first reported.
        let storage = xene_server::storage::Db::connect(&db.url).await.unwrap();
        let rows: Vec<(String, String, String)> =
            sqlx::query_as("SELECT name, hit, key FROM attempt_caches WHERE attempt_id = $1")
                .bind(attempt.id)
                .fetch_all(storage.pool())
                .await
                .unwrap();
        assert_eq!(
            rows,
            [(
                "cargo".to_string(),
                "miss".to_string(),
                "cargo-1".to_string()
            )],
            "{backend:?}"
        );

        // A pipeline whose manual runs save no caches.
        let (status, run) = server
            .post("/api/v1/workflows/cached/pipelines/q/runs", "")
            .await;
        assert_eq!(status, 201, "{run}");
        let only = next_task(&mut agent).await;
        assert_eq!(only.task, "only");
        assert!(!only.cache_save, "{only:?}");
        server.stop().await;
    }
}

const SMALL: &str = "
name: NAME
pipelines:
  p:
    tasks:
      t:
        steps: ['true']
";

/// A token of `role` for the local admin.
async fn client_of(server: &TestServer, role: Role) -> reqwest::Client {
    let (status, body) = server
        .post(
            "/api/v1/tokens",
            json!({"name": format!("as {role}"), "role": role}).to_string(),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    client_with_token(body["token"].as_str().unwrap())
}

/// Inserts a saved (or staged) entry as the files service would; its id.
async fn entry(
    storage: &xene_server::storage::Db,
    workflow: &str,
    key: &str,
    state: &str,
    bytes: i64,
    used_at: i64,
) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO caches (workflow, name, key, attempt_id, state, files, bytes, created_at, used_at) \
         VALUES ($1, 'cargo', $2, 1, $3, 3, $4, 1000, $5) RETURNING id",
    )
    .bind(workflow)
    .bind(key)
    .bind(state)
    .bind(bytes)
    .bind(used_at)
    .fetch_one(storage.pool())
    .await
    .unwrap()
}

#[tokio::test]
async fn viewers_list_caches_and_editors_remove_their_workflows_entries() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start_with(&db, |a| {
            a.no_local_agent = true;
            a.artifacts.cache_quota = 5 << 20;
            a.artifacts.artifact_quota = Some(7 << 20);
        })
        .await;
        for name in ["mine", "theirs"] {
            let (status, body) = server
                .post("/api/v1/workflows", SMALL.replace("NAME", name))
                .await;
            assert_eq!(status, 201, "{body}");
        }
        let storage = xene_server::storage::Db::connect(&db.url).await.unwrap();
        let old = entry(&storage, "mine", "cargo-old", "saved", 100, 2000).await;
        let new = entry(&storage, "mine", "cargo-new", "saved", 20, 3000).await;
        entry(&storage, "mine", "cargo-staged", "staged", 5, 4000).await;
        let theirs = entry(&storage, "theirs", "cargo-1", "saved", 7, 2000).await;

        let viewer = client_of(&server, Role::Viewer).await;
        let editor = client_of(&server, Role::Editor).await;
        let list = server.url("/api/v1/workflows/mine/caches");
        let (status, body) = response(viewer.get(&list).send().await.unwrap()).await;
        assert_eq!(status, 200, "{body}");
        let keys: Vec<&str> = body["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["key"].as_str().unwrap())
            .collect();
        assert_eq!(keys, ["cargo-new", "cargo-old"], "{body}");
        assert_eq!(body["total"], 2, "{body}");
        assert_eq!(body["bytes"], 120, "{body}");
        assert_eq!(body["quota"], 5 << 20, "{body}");
        let first = &body["entries"][0];
        assert_eq!(
            (
                &first["id"],
                &first["name"],
                &first["files"],
                &first["bytes"]
            ),
            (&json!(new), &json!("cargo"), &json!(3), &json!(20)),
            "{body}"
        );
        assert_eq!(
            (&first["created_at"], &first["used_at"]),
            (&json!(1000), &json!(3000))
        );
        let (status, body) = server.get("/api/v1/workflows/nobody/caches").await;
        assert_eq!(status, 404, "{body}");
        let (status, usage) = server.get("/api/v1/workflows/mine/artifacts").await;
        assert_eq!(status, 200, "{usage}");
        assert_eq!(usage["quota"], 7 << 20, "{usage}");

        let delete = async |client: &reqwest::Client, workflow: &str, id: i64| {
            client
                .delete(server.url(&format!("/api/v1/workflows/{workflow}/caches/{id}")))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        };
        assert_eq!(delete(&viewer, "mine", old).await, 403);
        // Another workflow's entry, through this one's path: not found.
        assert_eq!(delete(&editor, "mine", theirs).await, 404);
        assert_eq!(delete(&editor, "nobody", old).await, 404);
        assert_eq!(delete(&editor, "mine", old).await, 204);
        assert_eq!(delete(&editor, "mine", old).await, 404);
        let (_, body) = server.get("/api/v1/workflows/mine/caches").await;
        assert_eq!(
            (&body["total"], &body["bytes"]),
            (&json!(1), &json!(20)),
            "{body}"
        );
        let (_, body) = server.get("/api/v1/workflows/theirs/caches").await;
        assert_eq!(body["total"], 1, "{body}");

        // The log's `cache` kind reads them.
        let (_, audit) = server.get("/api/v1/audit?action=cache&limit=50").await;
        let removals: Vec<(&str, &str, &str)> = audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let text = |k: &str| e[k].as_str().unwrap();
                (text("action"), text("target"), text("detail"))
            })
            .collect();
        assert_eq!(
            removals,
            [(
                "cache.delete",
                "mine",
                &*format!("cache cargo cargo-old (id {old})")
            )],
            "{audit}"
        );
        server.stop().await;
    }
}
