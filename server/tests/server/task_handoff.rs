//! A slot freed by a task's end goes, in the same transaction, to the
//! oldest ready attempt its agent fits (SQLite); what it does not fit, or
//! an agent that drains, waits for the scheduler. PostgreSQL hands nothing
//! on: every freed slot goes back to the scheduler.

use std::time::Duration;

use xene_core::protocol::AttemptRef;
use xene_core::status::TaskStatus;
use xene_server::storage::{Db, agents, attempts, events};

use crate::attempt_fixtures::{model_2_db, start_run};
use crate::task_attempts::{finished, place, ready, started};
use crate::util::{BACKENDS, Backend, TestDb};

const HAND: &str = r#"
name: hand
pipelines:
  p:
    tasks:
      a: {steps: ['true']}
      b: {steps: ['true']}
      c: {steps: ['true'], selector: {gpu: "yes"}}
      d: {steps: ['true'], depends_on: [a]}
"#;

/// Runs attempt `id` of `task` to success on `agent`; the attempt its slot
/// went to, if any.
async fn run_through(db: &Db, id: i64, task: &str, agent: &str) -> Option<i64> {
    let events = [started(task, 1), finished(task, TaskStatus::Success, 1)];
    let applied = events::apply_attempt(db, AttemptRef { id }, agent, 1, &events)
        .await
        .unwrap();
    assert_eq!(applied.new, 2);
    applied.handed_off.map(|(attempt, _)| attempt)
}

async fn status_and_agent(db: &Db, attempt: i64) -> (String, Option<String>) {
    sqlx::query_as("SELECT status, agent_id FROM task_attempts WHERE id = $1")
        .bind(attempt)
        .fetch_one(db.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_freed_slot_goes_to_the_oldest_ready_task_its_agent_fits() {
    for backend in BACKENDS {
        let test_db = TestDb::new(backend);
        let db = model_2_db(&test_db, HAND)
            .await
            .with_handoff(Duration::from_secs(60));
        // One slot, the shell runtime, no labels: c (gpu) never fits.
        sqlx::query(
            "INSERT INTO agents (id, name, capacity, state, last_seen_at, created_at, runtimes) \
             VALUES ('x', 'x', 1, 'online', 0, 0, '[\"shell\"]')",
        )
        .execute(db.pool())
        .await
        .unwrap();
        let run = start_run(&db, "hand", &[]).await;
        let roots = ready(&db, run).await;
        place(&db, roots["a"].id, "x").await;

        // a ends: b (older than d, which a's end made ready) takes its slot.
        let handed = run_through(&db, roots["a"].id, "a", "x").await;
        let b = roots["b"].id;
        if backend == Backend::Postgres {
            assert_eq!(handed, None, "PostgreSQL leaves it to the scheduler");
            assert_eq!(status_and_agent(&db, b).await, ("ready".into(), None));
            continue;
        }
        assert_eq!(handed, Some(b), "{backend:?}");
        assert_eq!(
            status_and_agent(&db, b).await,
            ("placed".into(), Some("x".into()))
        );
        let run_status: String = sqlx::query_scalar("SELECT status FROM runs WHERE id = $1")
            .bind(run)
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(run_status, "running");

        // A draining agent takes nothing new: d waits for the scheduler.
        assert!(agents::set_draining(&db, "x", true).await.unwrap());
        assert_eq!(run_through(&db, b, "b", "x").await, None);
        let waiting = ready(&db, run).await;
        assert_eq!(
            waiting.keys().collect::<Vec<_>>(),
            ["c", "d"],
            "c and d still ready"
        );

        // d ends and nothing it fits is left: c stays for another agent.
        assert!(agents::set_draining(&db, "x", false).await.unwrap());
        place(&db, waiting["d"].id, "x").await;
        assert_eq!(run_through(&db, waiting["d"].id, "d", "x").await, None);
        assert_eq!(
            status_and_agent(&db, waiting["c"].id).await,
            ("ready".into(), None)
        );
    }
}

const LIMITED: &str = r#"
name: limited
pipelines:
  p:
    concurrency: 1
    tasks:
      x: {steps: ['true']}
      y: {steps: ['true']}
      z: {steps: ['true']}
"#;

/// Whoever places (the scheduler from its own count, a handoff from its
/// own), the database keeps a run within its `concurrency`; and an attempt
/// that avoids an agent stops the handoff there: the scheduler, which sees
/// every agent, places it.
#[tokio::test]
async fn placements_keep_concurrency_and_leave_avoided_attempts_to_the_scheduler() {
    for backend in BACKENDS {
        let test_db = TestDb::new(backend);
        let db = model_2_db(&test_db, LIMITED)
            .await
            .with_handoff(Duration::from_secs(60));
        sqlx::query(
            "INSERT INTO agents (id, name, capacity, state, last_seen_at, created_at, runtimes) \
             VALUES ('x', 'x', 4, 'online', 0, 0, '[\"shell\"]')",
        )
        .execute(db.pool())
        .await
        .unwrap();
        let run = start_run(&db, "limited", &[]).await;
        let ready = ready(&db, run).await;
        let both = attempts::place_many(&db, &[(ready["x"].id, "x"), (ready["y"].id, "x")], 60_000)
            .await
            .unwrap();
        assert_eq!(both, [true, false], "{backend:?}: concurrency 1 holds");
        if backend == Backend::Postgres {
            continue;
        }
        // y, the oldest, avoids x (lost there once): x's freed slot goes to
        // the scheduler, not to z behind it.
        sqlx::query("UPDATE task_attempts SET avoid_agent = 'x' WHERE id = $1")
            .bind(ready["y"].id)
            .execute(db.pool())
            .await
            .unwrap();
        assert_eq!(run_through(&db, ready["x"].id, "x", "x").await, None);
        assert_eq!(
            status_and_agent(&db, ready["z"].id).await,
            ("ready".into(), None)
        );
    }
}
