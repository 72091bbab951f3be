//! Runs of model 1 (placed whole) when a server of model 2 starts over
//! their database: queued ones are converted and their tasks placed one by
//! one; those under way on an old agent are requeued, keeping the tasks
//! that succeeded, then converted.

use std::collections::BTreeMap;

use xene_core::event::RunEvent;
use xene_core::protocol::AttemptRef;
use xene_core::status::{RunStatus, TaskStatus};
use xene_server::storage::{Db, attempts, events, now_ms, readiness, runs, workflows};

use crate::util::{BACKENDS, TestDb};

const CHAIN: &str = r#"
name: chain
pipelines:
  p:
    tasks:
      a: {steps: ['true']}
      b: {steps: ['true'], depends_on: [a]}
"#;

/// Runs every ready attempt of `run` to success on `agent`, until none is
/// left (bounded); the tasks it ran, in order.
async fn run_ready(db: &Db, run: i64, agent: &str) -> Vec<String> {
    let mut ran = Vec::new();
    for _ in 0..10 {
        let ready: Vec<_> = attempts::ready_page(db, 0, i64::MAX / 4, 100)
            .await
            .unwrap()
            .into_iter()
            .filter(|a| a.run_id == run)
            .collect();
        if ready.is_empty() {
            break;
        }
        for attempt in ready {
            let placed = attempts::place_many(db, &[(attempt.id, agent)], 60_000)
                .await
                .unwrap();
            assert_eq!(placed, [true]);
            let task = attempt.task.clone();
            let events = [
                RunEvent::TaskStarted {
                    task: task.clone(),
                    attempt: 1,
                },
                RunEvent::TaskFinished {
                    task: task.clone(),
                    status: TaskStatus::Success,
                    output: None,
                    duration_ms: 1,
                    attempt: 1,
                    error: None,
                    retry_in_ms: None,
                },
            ];
            let applied =
                events::apply_attempt(db, AttemptRef { id: attempt.id }, agent, 0, &events)
                    .await
                    .unwrap();
            ran.push(task);
            let (_, status) = model_and_status(db, run).await;
            // What the caller records in its metrics.
            assert_eq!(applied.run_started, ran.len() == 1, "{ran:?}");
            let finished = (status == "success").then_some(RunStatus::Success);
            assert_eq!(applied.run_finished, finished, "{ran:?}");
        }
    }
    ran
}

async fn model_and_status(db: &Db, run: i64) -> (i64, String) {
    sqlx::query_as("SELECT model, status FROM runs WHERE id = $1")
        .bind(run)
        .fetch_one(db.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn runs_placed_whole_are_converted_and_finish_task_by_task() {
    for backend in BACKENDS {
        let test_db = TestDb::new(backend);
        let old = Db::connect(&test_db.url).await.unwrap().with_run_model(1);
        let workflow = xene_core::parse_workflow(CHAIN).unwrap();
        workflows::apply(&old, &workflow, CHAIN, None)
            .await
            .unwrap()
            .unwrap();
        sqlx::query(
            "INSERT INTO agents (id, name, capacity, state, last_seen_at, created_at) \
             VALUES ('old', 'old', 1, 'online', 0, 0), ('new', 'new', 4, 'online', 0, 0)",
        )
        .execute(old.pool())
        .await
        .unwrap();
        let queued = runs::create(&old, "chain", "p", BTreeMap::new(), "manual")
            .await
            .unwrap()
            .id;
        // One under way on an old agent, whose task a succeeded.
        let busy = runs::create(&old, "chain", "p", BTreeMap::new(), "manual")
            .await
            .unwrap()
            .id;
        // Placed whole, as a server of model 1 did.
        let placed = sqlx::query(
            "UPDATE runs SET status = 'starting_up', scheduler_status = 'scheduled', agent_id = 'old', \
             scheduled_at = $1, lease_expires_at = $2 WHERE id = $3 AND status = 'queued'",
        )
        .bind(now_ms())
        .bind(now_ms() + 60_000)
        .bind(busy)
        .execute(old.pool())
        .await
        .unwrap();
        assert_eq!(placed.rows_affected(), 1);
        sqlx::query(
            "UPDATE task_runs SET status = 'success', output = 'kept' WHERE run_id = $1 AND task = 'a'",
        )
        .bind(busy)
        .execute(old.pool())
        .await
        .unwrap();
        assert!(
            attempts::ready_page(&old, 0, now_ms(), 10)
                .await
                .unwrap()
                .is_empty()
        );

        // A server of model 2 starts over the same database.
        let db = Db::connect(&test_db.url).await.unwrap().with_run_model(2);
        assert_eq!(
            runs::end_model_1_leases(&db).await.unwrap(),
            1,
            "{backend:?}"
        );
        let (lost, requeued) = runs::expire_leases(&db).await.unwrap();
        assert_eq!(
            (lost, requeued),
            (1, 1),
            "{backend:?}: requeued for the upgrade"
        );
        assert_eq!(runs::convert_queued(&db).await.unwrap(), 2, "{backend:?}");
        assert_eq!(
            readiness::resync_dirty(&db).await.unwrap(),
            2,
            "{backend:?}"
        );

        assert_eq!(
            run_ready(&db, queued, "new").await,
            ["a", "b"],
            "{backend:?}"
        );
        assert_eq!(model_and_status(&db, queued).await, (2, "success".into()));
        assert_eq!(
            run_ready(&db, busy, "new").await,
            ["b"],
            "{backend:?}: a succeeded before the upgrade and is not run again"
        );
        assert_eq!(model_and_status(&db, busy).await, (2, "success".into()));
        let output: Option<String> =
            sqlx::query_scalar("SELECT output FROM task_runs WHERE run_id = $1 AND task = 'a'")
                .bind(busy)
                .fetch_one(db.pool())
                .await
                .unwrap();
        assert_eq!(output.as_deref(), Some("kept"), "{backend:?}");
    }
}
