//! What pages and lists show of task attempts: which agent ran each task
//! of a run and each attempt, and the agents of each run in a list. Read
//! queries over `task_attempts`, kept apart from the scheduler's own reads
//! so that pages never shape its hot path. (What each agent holds now is
//! in `agents::list`.)

use std::collections::{BTreeMap, HashMap};

use sqlx::Row;

use super::{Db, StorageError};
use xene_api::run::{Run, TaskAttempt, TaskRun};

/// Fills each task's `agent_id` and `attempts` from its attempts, and the
/// run's `agents`. A run placed whole on one agent (before task placement)
/// has no attempt rows: its tasks that started show the run's agent.
pub async fn fill_tasks(db: &Db, run: &mut Run, tasks: &mut [TaskRun]) -> Result<(), StorageError> {
    let mut attempts = of_run(db, run.id).await?;
    let mut agents = std::collections::BTreeSet::new();
    for task in tasks.iter_mut() {
        let mine = attempts.remove(&task.name).unwrap_or_default();
        agents.extend(mine.iter().filter_map(|a| a.agent_id.clone()));
        task.agent_id = if mine.is_empty() {
            // Placed whole: the run's agent ran every task that started.
            task.started_at.and(run.agent.clone())
        } else {
            // A retry waiting for an agent shows where the task last ran.
            mine.iter().rev().find_map(|a| a.agent_id.clone())
        };
        task.attempts = mine;
    }
    run.agents = match &run.agent {
        Some(agent) if agents.is_empty() => vec![agent.clone()],
        _ => agents.into_iter().collect(),
    };
    Ok(())
}

/// Fills each run's `agents` for a list.
pub async fn fill_runs(db: &Db, runs: &mut [Run]) -> Result<(), StorageError> {
    let ids: Vec<i64> = runs.iter().map(|r| r.id).collect();
    let mut agents = agents_of_runs(db, &ids).await?;
    for run in runs {
        run.agents = match agents.remove(&run.id) {
            Some(agents) => agents,
            None => run.agent.iter().cloned().collect(),
        };
    }
    Ok(())
}

/// A run's attempts by task, oldest first. Bounded by the run: a task has
/// at most its retries plus a few re-placements of attempts lost before
/// they started.
async fn of_run(db: &Db, run_id: i64) -> Result<BTreeMap<String, Vec<TaskAttempt>>, StorageError> {
    let rows = sqlx::query(
        "SELECT task, number, agent_id, status, started_at, finished_at, error, scheduler_reason \
         FROM task_attempts WHERE run_id = $1 ORDER BY task, number",
    )
    .bind(run_id)
    .fetch_all(db.pool())
    .await?;
    let mut out: BTreeMap<String, Vec<TaskAttempt>> = BTreeMap::new();
    for r in &rows {
        let status: String = r.get(3);
        let error: Option<String> = r.get(6);
        let reason: Option<String> = r.get(7);
        out.entry(r.get(0)).or_default().push(TaskAttempt {
            number: r.get(1),
            agent_id: r.get(2),
            // Why a ready attempt waits is the most useful thing to say of it.
            error: if status == "ready" {
                reason.or(error)
            } else {
                error
            },
            status,
            started_at: r.get(4),
            finished_at: r.get(5),
        });
    }
    Ok(out)
}

/// The runs' tasks' agents for a list: per run, the distinct agents that
/// hold or ran its tasks, in order of id. A run placed whole on one
/// agent has none here (the list shows its `agent`).
async fn agents_of_runs(
    db: &Db,
    run_ids: &[i64],
) -> Result<HashMap<i64, Vec<String>>, StorageError> {
    let mut out: HashMap<i64, Vec<String>> = HashMap::new();
    // A page of runs is at most a few hundred; chunked all the same, so
    // no statement carries more placeholders than a backend takes.
    for ids in run_ids.chunks(500) {
        let placeholders: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT DISTINCT run_id, agent_id FROM task_attempts \
             WHERE agent_id IS NOT NULL AND run_id IN ({}) ORDER BY run_id, agent_id",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for id in ids {
            query = query.bind(id);
        }
        for r in query.fetch_all(db.pool()).await? {
            out.entry(r.get(0)).or_default().push(r.get(1));
        }
    }
    Ok(out)
}
