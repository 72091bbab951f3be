//! What the landing page shows, read in a few bounded statements: each
//! list a range of an index (`runs_by_status`, `task_attempts_ready`,
//! `agents_by_state`) cut by a `LIMIT`, and the counts over unfinished runs
//! only, so a long history of finished runs costs nothing.

use std::collections::BTreeMap;

use sqlx::Row;
use sqlx::any::AnyRow;
use xene_api::dashboard::{DASHBOARD_LIST, Dashboard, RunBrief, RunGroup};

use super::{Db, StorageError};

const BRIEF_COLUMNS: &str = "id, workflow, pipeline, version, status, trigger, requested_at, \
    started_at, finished_at, error, scheduler_reason";

/// The longest error a brief carries, in characters.
const ERROR_CHARS: usize = 300;

/// Statuses of runs that hold an agent's attention.
const RUNNING: [&str; 3] = ["starting_up", "running", "shutting_down"];
/// Statuses of runs that failed.
const FAILED: [&str; 2] = ["error", "unknown"];

/// The dashboard; runs waiting since before `stuck_before` (UTC ms) are stuck.
pub async fn read(db: &Db, stuck_before: i64) -> Result<Dashboard, StorageError> {
    let counts = active_counts(db).await?;
    let count = |statuses: &[&str]| -> i64 {
        statuses
            .iter()
            .map(|s| counts.get(*s).copied().unwrap_or(0))
            .sum()
    };
    let mut running = latest(db, &RUNNING, true).await?;
    running.truncate(DASHBOARD_LIST);
    let queued = latest(db, &["queued"], false).await?;
    let mut failures = latest(db, &FAILED, true).await?;
    failures.truncate(DASHBOARD_LIST);
    name_failed_tasks(db, &mut failures).await?;
    let (online, draining, offline) = agents(db).await?;
    Ok(Dashboard {
        running: RunGroup {
            count: count(&RUNNING),
            runs: running,
        },
        queued: RunGroup {
            count: count(&["queued"]),
            runs: queued,
        },
        stuck: RunGroup {
            count: super::runs::count_waiting_since(db, stuck_before).await?,
            runs: stuck(db, stuck_before).await?,
        },
        failures,
        agents_online: online,
        agents_draining: draining,
        agents_offline: offline,
        workflows: sqlx::query_scalar("SELECT COUNT(*) FROM workflows WHERE deleted = 0")
            .fetch_one(db.pool())
            .await?,
    })
}

/// How many runs are in each unfinished status: a range of the status
/// index, never the finished history.
async fn active_counts(db: &Db) -> Result<BTreeMap<String, i64>, StorageError> {
    let rows = sqlx::query(
        "SELECT status, COUNT(*) FROM runs \
         WHERE status IN ('queued', 'starting_up', 'running', 'shutting_down') GROUP BY status",
    )
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
        .collect())
}

/// The newest (or oldest) runs of these statuses: at most a list's length
/// of each, read from the status index, merged.
async fn latest(
    db: &Db,
    statuses: &[&str],
    newest_first: bool,
) -> Result<Vec<RunBrief>, StorageError> {
    let order = if newest_first { "DESC" } else { "ASC" };
    // One bounded range per status; the statuses are constants, not input.
    let parts: Vec<String> = statuses
        .iter()
        .map(|status| {
            format!(
                "SELECT * FROM (SELECT {BRIEF_COLUMNS} FROM runs WHERE status = '{status}' \
                 ORDER BY id {order} LIMIT {DASHBOARD_LIST}) AS s_{status}"
            )
        })
        .collect();
    let rows = sqlx::query(&parts.join(" UNION ALL "))
        .fetch_all(db.pool())
        .await?;
    let mut runs = rows.iter().map(brief).collect::<Result<Vec<_>, _>>()?;
    runs.sort_by_key(|r| r.id);
    if newest_first {
        runs.reverse();
    }
    Ok(runs)
}

/// The oldest runs nobody picked up in time, as `runs::count_waiting_since`
/// counts them: queued since before `before`, or with a task attempt ready
/// since then.
async fn stuck(db: &Db, before: i64) -> Result<Vec<RunBrief>, StorageError> {
    let limit = DASHBOARD_LIST as i64;
    let mut ids: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM runs WHERE status = 'queued' AND requested_at < $1 ORDER BY id LIMIT $2",
    )
    .bind(before)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    // The oldest runs with a task ready since then, each once however many
    // of its tasks wait: a fan-out of many waiting tasks is one run.
    let waiting: Vec<i64> = sqlx::query_scalar(
        "SELECT run_id FROM task_attempts WHERE status = 'ready' AND ready_at < $1 \
         AND (not_before IS NULL OR not_before < $1) GROUP BY run_id ORDER BY run_id LIMIT $2",
    )
    .bind(before)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    ids.extend(waiting);
    ids.sort_unstable();
    ids.dedup();
    ids.truncate(DASHBOARD_LIST);
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT {BRIEF_COLUMNS} FROM runs WHERE id IN ({}) ORDER BY id",
        placeholders.join(", ")
    );
    let mut query = sqlx::query(&sql);
    for id in &ids {
        query = query.bind(*id);
    }
    let rows = query.fetch_all(db.pool()).await?;
    rows.iter().map(brief).collect()
}

/// Agents online, of those draining, and offline (revoked ones left out).
async fn agents(db: &Db) -> Result<(i64, i64, i64), StorageError> {
    let rows = sqlx::query(
        "SELECT state, draining, COUNT(*) FROM agents WHERE revoked = 0 \
         AND state IN ('online', 'offline') GROUP BY state, draining",
    )
    .fetch_all(db.pool())
    .await?;
    let (mut online, mut draining, mut offline) = (0, 0, 0);
    for row in &rows {
        let state: String = row.get(0);
        let is_draining: i64 = row.get(1);
        let n: i64 = row.get(2);
        match state.as_str() {
            "online" => {
                online += n;
                if is_draining != 0 {
                    draining += n;
                }
            }
            _ => offline += n,
        }
    }
    Ok((online, draining, offline))
}

fn brief(row: &AnyRow) -> Result<RunBrief, StorageError> {
    let status: String = row.get(4);
    let error: Option<String> = row.get(9);
    Ok(RunBrief {
        id: row.get(0),
        workflow: row.get(1),
        pipeline: row.get(2),
        version: row.get(3),
        status: status
            .parse()
            .map_err(|e: xene_core::status::UnknownStatus| StorageError::Corrupt(e.to_string()))?,
        trigger: row.get(5),
        requested_at: row.get(6),
        started_at: row.get(7),
        finished_at: row.get(8),
        error: error.map(|e| {
            if e.chars().count() > ERROR_CHARS {
                let cut: String = e.chars().take(ERROR_CHARS - 1).collect();
                format!("{cut}…")
            } else {
                e
            }
        }),
        scheduler_reason: row.get(10),
        failed_task: None,
    })
}

/// Fills in each failed run's first failed task: one read of the task
/// rows of at most a list's length of runs, by their key.
async fn name_failed_tasks(db: &Db, runs: &mut [RunBrief]) -> Result<(), StorageError> {
    if runs.is_empty() {
        return Ok(());
    }
    let placeholders: Vec<String> = (1..=runs.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT run_id, task FROM task_runs WHERE run_id IN ({}) AND status = 'error' \
         ORDER BY run_id, position",
        placeholders.join(", ")
    );
    let mut query = sqlx::query(&sql);
    for run in runs.iter() {
        query = query.bind(run.id);
    }
    for row in query.fetch_all(db.pool()).await? {
        let id: i64 = row.get(0);
        if let Some(run) = runs
            .iter_mut()
            .find(|r| r.id == id && r.failed_task.is_none())
        {
            run.failed_task = Some(row.get(1));
        }
    }
    Ok(())
}
