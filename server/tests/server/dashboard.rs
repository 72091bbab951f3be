//! The landing dashboard's one read, and the audit log's new entries and
//! filters, read as the UI reads them (the `xene-api` types), on both
//! database backends.

use std::time::{Duration, Instant};

use xene_api::access::AuditPage;
use xene_api::dashboard::{DASHBOARD_LIST, Dashboard};
use xene_api::paths;

use crate::util::{BACKENDS, TestDb, TestServer};

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
/// land in their list, bounded, with the whole count; the agents online
/// are counted. Starting, cancelling, applying and deleting are audited,
/// by a person with a name, and the log filters by kind, action and actor.
#[tokio::test]
async fn the_dashboard_lists_what_needs_a_look_and_the_audit_log_filters() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server =
            TestServer::start_with(&db, |args| args.pickup_timeout = Duration::from_millis(300))
                .await;
        let (status, body) = server.post(&paths::workflows(), SPEC.to_string()).await;
        assert_eq!(status, 201, "{body}");

        let failed = start(&server, "fails").await;
        let run = server.wait_for_run(failed).await;
        assert_eq!(run["status"], "error", "{run}");
        let slow = start(&server, "slow").await;
        server
            .wait_run_until(slow, |run| run["status"] == "running")
            .await;
        let mut waiting = Vec::new();
        for _ in 0..DASHBOARD_LIST + 1 {
            waiting.push(start(&server, "nowhere").await);
        }

        // Stuck once the pick-up timeout has passed.
        let started = Instant::now();
        let board = loop {
            let board = dashboard(&server).await;
            if board.stuck.count as usize == waiting.len() {
                break board;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "{board:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let ids =
            |runs: &[xene_api::dashboard::RunBrief]| runs.iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(board.running.count, 1, "{backend:?}: {board:?}");
        assert_eq!(ids(&board.running.runs), [slow]);
        // Oldest first, a list's length of them, the whole count beside.
        assert_eq!(board.queued.count as usize, waiting.len());
        assert_eq!(ids(&board.queued.runs), waiting[..DASHBOARD_LIST]);
        assert_eq!(ids(&board.stuck.runs), waiting[..DASHBOARD_LIST]);
        assert!(
            board.stuck.runs[0]
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
        want.extend(std::iter::repeat_n("run.start", waiting.len() + 2));
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
        assert_eq!(mine.entries.len(), waiting.len() + 2 + 1 + 2);
        let nobody = audit(&server, "actor=u_nobody").await;
        assert!(nobody.entries.is_empty());
        let (status, _) = server.get(&format!("{}?action=%01", paths::audit())).await;
        assert_eq!(status, 400, "a control character is refused");
        server.stop().await;
    }
}
