//! Tasks of one run ending at the same moment, each in its own
//! transaction (PostgreSQL lets them run at once; SQLite's writers take
//! turns): the counters stay exact, the task they all unblock gets exactly
//! one attempt, and a cancel in the middle of it all leaves nothing behind.

use xene_core::event::RunEvent;
use xene_core::protocol::AttemptRef;
use xene_core::status::TaskStatus;
use xene_server::storage::{Db, attempts, events, runs};

use crate::attempt_fixtures::{add_agent, model_2_db, start_run};
use crate::util::{BACKENDS, TestDb};

const FAN: usize = 24;

fn fan_spec() -> String {
    let mut spec = String::from("name: fan\npipelines:\n  p:\n    tasks:\n");
    let roots: Vec<String> = (0..FAN).map(|i| format!("r{i}")).collect();
    for root in &roots {
        spec.push_str(&format!("      {root}: {{steps: ['true']}}\n"));
    }
    spec.push_str(&format!(
        "      join: {{steps: ['true'], depends_on: [{}]}}\n",
        roots.join(", ")
    ));
    spec
}

async fn setup(test_db: &TestDb) -> Db {
    let db = model_2_db(test_db, &fan_spec()).await;
    add_agent(&db, "a", 100).await;
    db
}

/// Places every ready attempt of `run` on agent `a`; (attempt, task) pairs.
async fn place_all(db: &Db, run: i64) -> Vec<(i64, String)> {
    let ready: Vec<(i64, String)> = attempts::ready_page(db, 0, i64::MAX / 4, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.run_id == run)
        .map(|a| (a.id, a.task))
        .collect();
    let pairs: Vec<(i64, &str)> = ready.iter().map(|(id, _)| (*id, "a")).collect();
    let placed = attempts::place_many(db, &pairs, 60_000).await.unwrap();
    assert!(placed.iter().all(|p| *p));
    ready
}

/// Each task's start and end, reported at once from its own task.
async fn finish_all_at_once(db: &Db, placed: Vec<(i64, String)>) {
    let reports: Vec<_> = placed
        .into_iter()
        .map(|(id, task)| {
            let db = db.clone();
            tokio::spawn(async move {
                let events = [
                    RunEvent::TaskStarted {
                        task: task.clone(),
                        attempt: 1,
                    },
                    RunEvent::TaskFinished {
                        task,
                        status: TaskStatus::Success,
                        output: None,
                        duration_ms: 1,
                        attempt: 1,
                        error: None,
                        retry_in_ms: None,
                    },
                ];
                events::apply_attempt(&db, AttemptRef { id }, "a", 0, &events).await
            })
        })
        .collect();
    for report in reports {
        let applied = report.await.unwrap().unwrap();
        assert!(!applied.stale);
    }
}

async fn counters(db: &Db, run: i64) -> (String, Option<i64>, i64) {
    let (status, left): (String, Option<i64>) =
        sqlx::query_as("SELECT status, tasks_left FROM runs WHERE id = $1")
            .bind(run)
            .fetch_one(db.pool())
            .await
            .unwrap();
    let join_attempts: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM task_attempts WHERE run_id = $1 AND task = 'join'",
    )
    .bind(run)
    .fetch_one(db.pool())
    .await
    .unwrap();
    (status, left, join_attempts)
}

#[tokio::test]
async fn tasks_ending_at_once_unblock_their_dependant_once() {
    for backend in BACKENDS {
        let test_db = TestDb::new(backend);
        let db = setup(&test_db).await;
        let run = start_run(&db, "fan", &[]).await;
        let roots = place_all(&db, run).await;
        assert_eq!(roots.len(), FAN);
        finish_all_at_once(&db, roots).await;
        assert_eq!(
            counters(&db, run).await,
            ("running".into(), Some(1), 1),
            "{backend:?}"
        );
        let join = place_all(&db, run).await;
        assert_eq!(join.len(), 1);
        finish_all_at_once(&db, join).await;
        assert_eq!(
            counters(&db, run).await,
            ("success".into(), Some(0), 1),
            "{backend:?}"
        );
    }
}

#[tokio::test]
async fn a_cancel_among_ending_tasks_leaves_nothing_behind() {
    for backend in BACKENDS {
        let test_db = TestDb::new(backend);
        let db = setup(&test_db).await;
        let run = start_run(&db, "fan", &[]).await;
        let roots = place_all(&db, run).await;
        let (first, rest) = roots.split_at(FAN / 2);
        let cancel = {
            let db = db.clone();
            tokio::spawn(async move { runs::cancel(&db, run).await })
        };
        finish_all_at_once(&db, first.to_vec()).await;
        cancel.await.unwrap().unwrap();
        // The agent stops the others.
        let stopped: Vec<(i64, String)> = rest.to_vec();
        let reports: Vec<_> = stopped
            .into_iter()
            .map(|(id, task)| {
                let db = db.clone();
                tokio::spawn(async move {
                    let events = [RunEvent::TaskFinished {
                        task,
                        status: TaskStatus::Cancelled,
                        output: None,
                        duration_ms: 1,
                        attempt: 1,
                        error: None,
                        retry_in_ms: None,
                    }];
                    events::apply_attempt(&db, AttemptRef { id }, "a", 5, &events).await
                })
            })
            .collect();
        for report in reports {
            report.await.unwrap().unwrap();
        }
        assert_eq!(
            counters(&db, run).await,
            ("cancelled".into(), Some(0), 0),
            "{backend:?}: join never got an attempt"
        );
        let join: String =
            sqlx::query_scalar("SELECT status FROM task_runs WHERE run_id = $1 AND task = 'join'")
                .bind(run)
                .fetch_one(db.pool())
                .await
                .unwrap();
        assert_eq!(join, "not_executed", "{backend:?}");
        let left: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM task_attempts WHERE run_id = $1 AND status IN ('ready', 'placed', 'running')",
        )
        .bind(run)
        .fetch_one(db.pool())
        .await
        .unwrap();
        assert_eq!(left, 0, "{backend:?}");
    }
}
