//! `placement: together` through storage: the pin holds in SQL whatever the
//! scheduler read, survives the loss of one of the agent's tasks while it
//! holds others, and is dropped when its agent is gone and holds nothing.

use xene_core::event::RunEvent;
use xene_core::protocol::AttemptRef;
use xene_server::storage::{Db, attempts, events, now_ms, runs};

use crate::attempt_fixtures::model_2_run;
use crate::util::{BACKENDS, TestDb};

const TOGETHER: &str = r#"
name: together
pipelines:
  p:
    placement: together
    tasks:
      a: {steps: ['true']}
      b: {steps: ['true']}
      c: {steps: ['true'], depends_on: [a, b]}
"#;

/// A model-2 database with the workflow, agents `first` and `second`, and
/// a started run; its ready attempts by task.
async fn setup(test_db: &TestDb) -> (Db, i64, Vec<(String, i64)>) {
    let (db, run) = model_2_run(test_db, TOGETHER, "together", &["first", "second"]).await;
    let ready = ready(&db, run).await;
    (db, run, ready)
}

async fn ready(db: &Db, run: i64) -> Vec<(String, i64)> {
    attempts::ready_page(db, 0, i64::MAX / 4, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.run_id == run)
        .map(|a| (a.task, a.id))
        .collect()
}

async fn pinned(db: &Db, run: i64) -> Option<String> {
    sqlx::query_scalar("SELECT pinned_agent FROM runs WHERE id = $1")
        .bind(run)
        .fetch_one(db.pool())
        .await
        .unwrap()
}

async fn place(db: &Db, placements: &[(i64, &str)]) -> Vec<bool> {
    attempts::place_many(db, placements, 60_000).await.unwrap()
}

#[tokio::test]
async fn the_pin_holds_in_sql_within_one_chunk_and_after_it() {
    for backend in BACKENDS {
        let test_db = TestDb::new(backend);
        let (db, run, roots) = setup(&test_db).await;
        let [(_, a), (_, b)] = roots[..] else {
            panic!("{roots:?}")
        };
        // One scheduler pass that read the run unpinned places its two
        // roots on two agents: the second is refused.
        assert_eq!(
            place(&db, &[(a, "first"), (b, "second")]).await,
            [true, false],
            "{backend:?}"
        );
        assert_eq!(pinned(&db, run).await.as_deref(), Some("first"));
        // So is a later placement that read a stale pin.
        assert_eq!(place(&db, &[(b, "second")]).await, [false], "{backend:?}");
        assert_eq!(place(&db, &[(b, "first")]).await, [true], "{backend:?}");
    }
}

#[tokio::test]
async fn losing_one_task_keeps_the_pin_while_the_agent_holds_another() {
    for backend in BACKENDS {
        let test_db = TestDb::new(backend);
        let (db, run, roots) = setup(&test_db).await;
        let [(_, a), (_, b)] = roots[..] else {
            panic!("{roots:?}")
        };
        assert_eq!(
            place(&db, &[(a, "first"), (b, "first")]).await,
            [true, true]
        );
        let started = RunEvent::TaskStarted {
            task: "b".into(),
            attempt: 1,
        };
        events::apply_attempt(&db, AttemptRef { id: b }, "first", 0, &[started])
            .await
            .unwrap();
        // a alone is lost (its process died); first still runs b.
        attempts::end_lease(&db, a, "first").await.unwrap();
        let expired = attempts::expire_leases(&db, now_ms()).await.unwrap();
        assert_eq!((expired.lost, expired.again), (1, 1), "{backend:?}");
        assert_eq!(
            pinned(&db, run).await.as_deref(),
            Some("first"),
            "{backend:?}: still pinned"
        );
        let again = ready(&db, run).await;
        assert_eq!(again.len(), 1, "{backend:?}");
        assert_eq!(place(&db, &[(again[0].1, "second")]).await, [false]);
        assert_eq!(place(&db, &[(again[0].1, "first")]).await, [true]);
    }
}

#[tokio::test]
async fn a_run_pinned_to_a_gone_agent_holding_nothing_is_unpinned() {
    for backend in BACKENDS {
        let test_db = TestDb::new(backend);
        let (db, run, roots) = setup(&test_db).await;
        let (a, b) = (roots[0].1, roots[1].1);
        assert_eq!(place(&db, &[(a, "first")]).await, [true]);
        let done = [
            RunEvent::TaskStarted {
                task: "a".into(),
                attempt: 1,
            },
            RunEvent::TaskFinished {
                task: "a".into(),
                status: xene_core::status::TaskStatus::Success,
                output: None,
                duration_ms: 1,
                attempt: 1,
                error: None,
                retry_in_ms: None,
            },
        ];
        events::apply_attempt(&db, AttemptRef { id: a }, "first", 0, &done)
            .await
            .unwrap();
        // Online, first keeps the run although it holds nothing now.
        assert_eq!(attempts::unpin_absent(&db).await.unwrap(), 0);
        sqlx::query("UPDATE agents SET state = 'offline' WHERE id = 'first'")
            .execute(db.pool())
            .await
            .unwrap();
        assert_eq!(attempts::unpin_absent(&db).await.unwrap(), 1, "{backend:?}");
        assert_eq!(pinned(&db, run).await, None, "{backend:?}");
        assert_eq!(place(&db, &[(b, "second")]).await, [true], "{backend:?}");
        assert_eq!(pinned(&db, run).await.as_deref(), Some("second"));
    }
}

#[tokio::test]
async fn a_cancelled_runs_attempts_are_cancelled_even_without_their_flag() {
    for backend in BACKENDS {
        let test_db = TestDb::new(backend);
        let (db, run, roots) = setup(&test_db).await;
        let (a, b) = (roots[0].1, roots[1].1);
        assert_eq!(place(&db, &[(a, "first")]).await, [true]);
        // What a placement racing a cancel on PostgreSQL leaves: the run
        // asks to stop, the attempt placed meanwhile does not.
        sqlx::query("UPDATE runs SET cancel_requested = 1 WHERE id = $1")
            .bind(run)
            .execute(db.pool())
            .await
            .unwrap();
        let held = attempts::held_by(&db, "first").await.unwrap();
        assert_eq!(held.len(), 1);
        assert!(held[0].cancel_requested, "{backend:?}: the agent is told");
        assert_eq!(
            place(&db, &[(b, "first")]).await,
            [false],
            "{backend:?}: nothing more is placed"
        );
    }
}

#[tokio::test]
async fn failing_a_run_whose_tasks_are_placed_cancels_them_with_the_reason() {
    for backend in BACKENDS {
        let test_db = TestDb::new(backend);
        let (db, run, roots) = setup(&test_db).await;
        let (a, b) = (roots[0].1, roots[1].1);
        assert_eq!(place(&db, &[(a, "first")]).await, [true]);
        let attempt = runs::get_run(&db, run).await.unwrap().unwrap().attempt;
        runs::fail_attempt(&db, run, attempt, "the secret S was deleted")
            .await
            .unwrap();
        let held = attempts::held_by(&db, "first").await.unwrap();
        assert!(
            held.len() == 1 && held[0].cancel_requested,
            "{backend:?}: the placed task is asked to stop: {held:?}"
        );
        assert_eq!(
            attempts::get(&db, b).await.unwrap().unwrap().status,
            "cancelled",
            "{backend:?}"
        );
        let cancelled = [RunEvent::TaskFinished {
            task: "a".into(),
            status: xene_core::status::TaskStatus::Cancelled,
            output: None,
            duration_ms: 1,
            attempt: 1,
            error: None,
            retry_in_ms: None,
        }];
        events::apply_attempt(&db, AttemptRef { id: a }, "first", 0, &cancelled)
            .await
            .unwrap();
        let run = runs::get_run(&db, run).await.unwrap().unwrap();
        assert_eq!(run.status.as_str(), "cancelled", "{backend:?}");
        assert_eq!(run.error.as_deref(), Some("the secret S was deleted"));
    }
}
