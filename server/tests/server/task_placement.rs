//! What the scheduler and the agents' sessions read and write of task
//! attempts, through storage on both backends: waiting reasons mirrored on
//! the run, placement guards, load counts, lease renewal per agent, and
//! upstream outputs read in pages.

use std::collections::{BTreeMap, BTreeSet};

use xene_core::event::RunEvent;
use xene_core::protocol::AttemptRef;
use xene_core::status::TaskStatus;
use xene_server::storage::{Db, attempts, events, now_ms};

use crate::attempt_fixtures::{model_2_db, start_run};
use crate::util::{BACKENDS, TestDb};

const WIDE: &str = r#"
name: wide
pipelines:
  p:
    selector: {os: linux}
    concurrency: 2
    tasks:
      a: {steps: ['true'], selector: {gpu: "yes"}}
      b: {steps: ['true'], image: alpine}
      c: {steps: ['true']}
      d: {steps: ['true'], depends_on: [a, b, c]}
"#;

async fn setup(test_db: &TestDb) -> (Db, i64) {
    let db = model_2_db(test_db, WIDE).await;
    sqlx::query(
        "INSERT INTO agents (id, name, capacity, state, last_seen_at, created_at, revoked) \
         VALUES ('x', 'x', 4, 'online', 0, 0, 0), ('y', 'y', 4, 'online', 0, 0, 0), \
         ('gone', 'gone', 4, 'online', 0, 0, 1)",
    )
    .execute(db.pool())
    .await
    .unwrap();
    let run = start_run(&db, "wide", &[]).await;
    (db, run)
}

async fn run_reason(db: &Db, run: i64) -> (String, Option<String>) {
    sqlx::query_as("SELECT scheduler_status, scheduler_reason FROM runs WHERE id = $1")
        .bind(run)
        .fetch_one(db.pool())
        .await
        .unwrap()
}

async fn lease_of(db: &Db, attempt: i64) -> Option<i64> {
    attempts::get(db, attempt)
        .await
        .unwrap()
        .unwrap()
        .lease_expires_at
}

#[tokio::test]
async fn the_scheduler_reads_what_it_places_by_and_writes_guarded() {
    for backend in BACKENDS {
        let test_db = TestDb::new(backend);
        let (db, run) = setup(&test_db).await;
        let page = attempts::ready_page(&db, 0, now_ms(), 10).await.unwrap();
        let by_task: BTreeMap<&str, &attempts::ReadyAttempt> =
            page.iter().map(|a| (a.task.as_str(), a)).collect();
        assert_eq!(by_task.keys().copied().collect::<Vec<_>>(), ["a", "b", "c"]);
        let a = by_task["a"];
        assert_eq!(
            a.selector,
            BTreeMap::from([("gpu".into(), "yes".into()), ("os".into(), "linux".into())]),
            "{backend:?}: the task's selector over the pipeline's"
        );
        assert_eq!(
            (a.runtime.as_str(), by_task["b"].runtime.as_str()),
            ("shell", "docker")
        );
        assert_eq!(a.concurrency, Some(2));
        assert_eq!((a.workflow.as_str(), a.pipeline.as_str()), ("wide", "p"));
        // Paged by id.
        let after = attempts::ready_page(&db, page[0].id, now_ms(), 10)
            .await
            .unwrap();
        assert_eq!(after.len(), 2, "{backend:?}");

        // a waits: its reason shows on the run, written once.
        let reason = "no online agent has labels gpu=yes (task `a`)";
        attempts::set_waiting_reason(&db, a.id, reason)
            .await
            .unwrap();
        attempts::set_waiting_reason(&db, a.id, reason)
            .await
            .unwrap();
        assert_eq!(
            run_reason(&db, run).await,
            ("not_scheduled".into(), Some(reason.into())),
            "{backend:?}"
        );

        // Revoked agents and attempts no longer ready are refused.
        let (b, c) = (by_task["b"].id, by_task["c"].id);
        let placed =
            attempts::place_many(&db, &[(b, "gone"), (b, "x"), (b, "y"), (c, "y")], 60_000)
                .await
                .unwrap();
        assert_eq!(placed, [false, true, false, true], "{backend:?}");
        assert_eq!(
            run_reason(&db, run).await,
            ("scheduled".into(), Some(reason.into())),
            "{backend:?}: a still waits, and the run says why"
        );
        let load = attempts::load(&db).await.unwrap();
        assert_eq!(
            (load.get("x"), load.get("y"), load.get("gone")),
            (Some(&1), Some(&1), None)
        );
        let per_run = attempts::running_per_run(&db, &[run, run + 1000])
            .await
            .unwrap();
        assert_eq!(per_run.get(&run), Some(&2), "{backend:?}");
        assert_eq!(per_run.get(&(run + 1000)), None);

        // Renewal touches only the agents named.
        let (before_b, before_c) = (lease_of(&db, b).await, lease_of(&db, c).await);
        let renewed = attempts::renew_for_agents(&db, &["x".into()], 3_600_000)
            .await
            .unwrap();
        assert_eq!(renewed, 1, "{backend:?}");
        assert!(lease_of(&db, b).await > before_b, "{backend:?}");
        assert_eq!(lease_of(&db, c).await, before_c, "{backend:?}");

        // The run's `concurrency` (2) is full: a is refused, whatever the
        // placer counted.
        let refused = attempts::place_many(&db, &[(a.id, "x")], 60_000)
            .await
            .unwrap();
        assert_eq!(refused, [false], "{backend:?}");
        // c ends (as a success would end it): a is placed at last, and
        // the run's reason goes.
        sqlx::query("UPDATE task_attempts SET status = 'success' WHERE id = $1")
            .bind(c)
            .execute(db.pool())
            .await
            .unwrap();
        let placed = attempts::place_many(&db, &[(a.id, "x")], 60_000)
            .await
            .unwrap();
        assert_eq!(placed, [true], "{backend:?}");
        assert_eq!(run_reason(&db, run).await, ("scheduled".into(), None));
        let held: Vec<String> = attempts::held_by(&db, "x")
            .await
            .unwrap()
            .into_iter()
            .map(|h| h.task)
            .collect();
        assert_eq!(held, ["a", "b"], "{backend:?}");
    }
}

#[tokio::test]
async fn upstream_outputs_are_read_in_pages_of_whole_results() {
    for backend in BACKENDS {
        let test_db = TestDb::new(backend);
        let (db, run) = setup(&test_db).await;
        let roots = attempts::ready_page(&db, 0, now_ms(), 10).await.unwrap();
        for root in &roots {
            attempts::place_many(&db, &[(root.id, "x")], 60_000)
                .await
                .unwrap();
            let events = [
                RunEvent::TaskStarted {
                    task: root.task.clone(),
                    attempt: 1,
                },
                RunEvent::TaskFinished {
                    task: root.task.clone(),
                    status: TaskStatus::Success,
                    output: Some(root.task.repeat(100)),
                    duration_ms: 1,
                    attempt: 1,
                    error: None,
                    retry_in_ms: None,
                },
            ];
            events::apply_attempt(&db, AttemptRef { id: root.id }, "x", 0, &events)
                .await
                .unwrap();
        }
        let reads: BTreeSet<String> = ["a", "b", "c"].map(String::from).into();
        // Two results fit 250 bytes; a third does not.
        let mut pages = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..5 {
            let (page, next) = attempts::read_outputs(&db, run, &reads, after.as_deref(), 250)
                .await
                .unwrap();
            pages.push(page.keys().cloned().collect::<Vec<_>>());
            assert!(page.values().all(|r| r.status == TaskStatus::Success
                && r.output.as_ref().is_some_and(|o| o.len() == 100)));
            match next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(pages, [vec!["a", "b"], vec!["c"]], "{backend:?}");
        // A budget smaller than one result still moves on, one at a time.
        let (page, next) = attempts::read_outputs(&db, run, &reads, None, 10)
            .await
            .unwrap();
        assert_eq!((page.len(), next.as_deref()), (1, Some("a")), "{backend:?}");
    }
}
