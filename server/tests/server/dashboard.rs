//! The landing dashboard's one read, and the audit log's new entries and
//! filters, read as the UI reads them (the `xene-api` types), on both
//! database backends: PostgreSQL with a collation that ignores punctuation,
//! as an ICU locale may, so no filter leans on how `.` and `/` sort.

use std::time::{Duration, Instant};

use xene_api::access::AuditPage;
use xene_api::dashboard::{DASHBOARD_LIST, Dashboard};
use xene_api::paths;

use sqlx::Connection;

use crate::util::{BACKENDS, Backend, TestDb, TestServer};

/// Tasks of the `fanout` pipeline that wait for an agent with a GPU: more
/// than four lists' worth, all of one run.
const FANOUT: usize = 4 * DASHBOARD_LIST + 1;

/// The workflow: [`SPEC`], and two pipelines whose runs start (a task
/// runs) and then wait for a GPU: `fanout` with [`FANOUT`] such tasks,
/// `one` with one.
fn spec() -> String {
    let mut spec = SPEC.to_string();
    let gpu_task = |name: &str| {
        format!("      {name}:\n        selector: {{gpu: \"yes\"}}\n        steps: [\"true\"]\n")
    };
    let start = "    tasks:\n      ok:\n        steps: [\"true\"]\n";
    spec.push_str(&format!("  fanout:\n{start}"));
    for i in 0..FANOUT {
        spec.push_str(&gpu_task(&format!("g{i}")));
    }
    spec.push_str(&format!("  one:\n{start}{}", gpu_task("g")));
    spec
}

/// A PostgreSQL database whose collation ignores punctuation (ICU's root
/// locale with `alternate=shifted`): `run.start` sorts after `run/` there.
async fn punctuation_blind(db: &mut TestDb) {
    let mut conn = sqlx::postgres::PgConnection::connect(&db.url)
        .await
        .unwrap();
    sqlx::query(
        "CREATE DATABASE punctuation_blind TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C' \
         LOCALE_PROVIDER icu ICU_LOCALE 'und-u-ka-shifted'",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let sorted: bool = sqlx::query_scalar("SELECT 'run.start' > 'run/'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(!sorted, "the cluster's own collation is bytewise");
    conn.close().await.unwrap();
    let (server, _) = db.url.rsplit_once('/').expect("a database URL");
    db.url = format!("{server}/punctuation_blind");
    let mut conn = sqlx::postgres::PgConnection::connect(&db.url)
        .await
        .unwrap();
    let sorted: bool = sqlx::query_scalar("SELECT 'run.start' > 'run/'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(sorted, "punctuation is ignored");
    conn.close().await.unwrap();
}

const SPEC: &str = "\
name: daily
pipelines:
  fails:
    tasks:
      broken:
        steps:
          - run: echo something broke >&2; exit 3
  slow:
    tasks:
      wait:
        steps:
          - run: sleep 30
  nowhere:
    selector: {gpu: \"yes\"}
    tasks:
      train:
        steps: [\"true\"]
";

async fn dashboard(server: &TestServer) -> Dashboard {
    let (status, body) = server.get(&paths::dashboard()).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_value(body).expect("the dashboard reads as xene_api::dashboard::Dashboard")
}

async fn start(server: &TestServer, pipeline: &str) -> i64 {
    let (status, run) = server
        .post(&paths::pipeline_runs("daily", pipeline), "{}")
        .await;
    assert_eq!(status, 201, "{run}");
    run["id"].as_i64().unwrap()
}

async fn audit(server: &TestServer, query: &str) -> AuditPage {
    let (status, body) = server.get(&format!("{}?{query}", paths::audit())).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_value(body).unwrap()
}

/// Runs running, queued (more than a list holds), stuck and failed each
/// land in their list, bounded, with the whole count; a run with many
/// tasks waiting is one stuck run among others; the agents online are
/// counted. Starting, cancelling, applying and deleting are audited, by a
/// person with a name, and the log filters by kind, action and actor.
#[tokio::test]
async fn the_dashboard_lists_what_needs_a_look_and_the_audit_log_filters() {
    for backend in BACKENDS {
        let mut db = TestDb::new(backend);
        if backend == Backend::Postgres {
            punctuation_blind(&mut db).await;
        }
        let server =
            TestServer::start_with(&db, |args| args.pickup_timeout = Duration::from_millis(300))
                .await;
        let (status, body) = server.post(&paths::workflows(), spec()).await;
        assert_eq!(status, 201, "{body}");

        let failed = start(&server, "fails").await;
        let run = server.wait_for_run(failed).await;
        assert_eq!(run["status"], "error", "{run}");
        let slow = start(&server, "slow").await;
        server
            .wait_run_until(slow, |run| run["status"] == "running")
            .await;
        // Running, their GPU tasks waiting: the fan-out's first.
        let mut started_waiting = Vec::new();
        for pipeline in ["fanout", "one"] {
            let id = start(&server, pipeline).await;
            server
                .wait_run_until(id, |run| run["status"] == "running")
                .await;
            started_waiting.push(id);
        }
        let [fanout, one] = started_waiting[..] else {
            unreachable!()
        };
        let mut waiting = Vec::new();
        for _ in 0..DASHBOARD_LIST + 1 {
            waiting.push(start(&server, "nowhere").await);
        }

        // Stuck once the pick-up timeout has passed.
        let started = Instant::now();
        let board = loop {
            let board = dashboard(&server).await;
            if board.stuck.count as usize == waiting.len() + 2 {
                break board;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "{board:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let ids =
            |runs: &[xene_api::dashboard::RunBrief]| runs.iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(board.running.count, 3, "{backend:?}: {board:?}");
        assert_eq!(ids(&board.running.runs), [one, fanout, slow]);
        // Oldest first, a list's length of them, the whole count beside.
        assert_eq!(board.queued.count as usize, waiting.len());
        assert_eq!(ids(&board.queued.runs), waiting[..DASHBOARD_LIST]);
        // The fan-out's many waiting tasks are one run: the next run with a
        // task waiting follows it, then the queued ones.
        let mut stuck = vec![fanout, one];
        stuck.extend(&waiting[..DASHBOARD_LIST - 2]);
        assert_eq!(ids(&board.stuck.runs), stuck, "{backend:?}");
        assert!(
            board.stuck.runs[2]
                .scheduler_reason
                .as_deref()
                .is_some_and(|r| r.contains("gpu=yes")),
            "{board:?}"
        );
        assert_eq!(ids(&board.failures), [failed]);
        assert_eq!(board.failures[0].failed_task.as_deref(), Some("broken"));
        assert_eq!(board.agents_online, 1, "the built-in agent: {board:?}");
        assert_eq!(board.workflows, 1);

        let (status, body) = server.post(&paths::run_cancel(slow), "").await;
        assert!(status == 200 || status == 202, "{status} {body}");
        assert_eq!(server.delete(&paths::workflow("daily")).await, 204);

        // Every run started and the cancel, newest first, by a named person.
        let runs = audit(&server, "action=run&limit=500").await;
        let actions: Vec<&str> = runs.entries.iter().map(|e| e.action.as_str()).collect();
        let mut want = vec!["run.cancel"];
        want.extend(std::iter::repeat_n("run.start", waiting.len() + 4));
        assert_eq!(actions, want, "{backend:?}");
        assert_eq!(runs.entries[0].target, format!("run {slow}"));
        let who = runs.entries[0]
            .who
            .clone()
            .expect("the token's user is known");
        assert_eq!(who.shown(), "local xenectl");
        let last = runs.entries.last().unwrap();
        assert_eq!(last.detail, "daily/fails version 1", "{last:?}");

        let applied = audit(&server, "action=workflow.apply").await;
        assert_eq!(applied.entries.len(), 1, "{applied:?}");
        assert_eq!(applied.entries[0].target, "daily");
        assert_eq!(applied.entries[0].detail, "version 1");
        let workflows = audit(&server, "action=workflow").await;
        let actions: Vec<&str> = workflows
            .entries
            .iter()
            .map(|e| e.action.as_str())
            .collect();
        assert_eq!(actions, ["workflow.delete", "workflow.apply"]);

        // By actor: what the local admin did, and nobody else's.
        let actor = &runs.entries[0].actor;
        let mine = audit(&server, &format!("actor={actor}&limit=500")).await;
        assert!(mine.entries.iter().all(|e| &e.actor == actor));
        assert_eq!(mine.entries.len(), waiting.len() + 4 + 1 + 2);
        let nobody = audit(&server, "actor=u_nobody").await;
        assert!(nobody.entries.is_empty());

        // A target names a person only where it is a user's id: the local
        // admin's token, made for its user; not a workflow named like one.
        let made = audit(&server, "action=token.create").await;
        let for_user = made
            .entries
            .iter()
            .find(|e| e.actor == "xene")
            .expect("the local token");
        assert_eq!(&for_user.target, actor);
        assert_eq!(
            for_user.target_person.as_ref().map(|p| p.shown()),
            Some("local xenectl")
        );
        let named = format!(
            "name: {actor}\npipelines:\n  p:\n    tasks:\n      t:\n        steps: [\"true\"]\n"
        );
        let (status, body) = server.post(&paths::workflows(), named).await;
        assert_eq!(status, 201, "{body}");
        let applied = audit(&server, "action=workflow.apply&limit=1").await;
        assert_eq!(&applied.entries[0].target, actor);
        assert!(applied.entries[0].target_person.is_none(), "{applied:?}");
        let (status, _) = server.get(&format!("{}?action=%01", paths::audit())).await;
        assert_eq!(status, 400, "a control character is refused");
        server.stop().await;
    }
}
