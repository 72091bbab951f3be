//! Readiness of runs of model 2 (the server places their tasks): which
//! tasks run next. The transaction that makes a task final calls
//! `task_ended`, which lowers its dependants' counters, decides each that
//! reaches 0 (run it: a `ready` attempt; or end it `skipped`,
//! `not_executed`, `error`), cascades, and ends the run when no task is
//! left. `resync` recomputes the same from rows for runs marked `dirty`: the
//! level-triggered backstop behind the incremental path.
//!
//! Counters only move in the transaction whose guarded UPDATE moved a task
//! to a final status, so an event sent twice cannot lower them twice.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::Row;
use xene_core::condition::Condition;
use xene_core::context::TaskResult;
use xene_core::dag::Dag;
use xene_core::plan::{self, Verdict};
use xene_core::spec::{Pipeline, Retries, Task};
use xene_core::status::{RunStatus, TaskStatus};

use super::{Db, StorageError, WriteTx, now_ms};

/// Runs one backstop pass looks at.
pub const RESYNC_PAGE: i64 = 200;

/// Names bound in one `IN (...)` list.
const IN_CHUNK: usize = 500;

/// What ending tasks changed, for the news its caller announces once the
/// transaction committed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    /// Attempts made ready.
    pub ready: usize,
    /// The run's final status, when this made it final.
    pub run_final: Option<RunStatus>,
}

impl Ended {
    fn absorb(&mut self, other: Ended) {
        self.ready += other.ready;
        self.run_final = self.run_final.or(other.run_final);
    }
}

/// What a run's tasks keep for placement and readiness, from the spec, so
/// that neither parses it again.
pub struct TaskRules {
    /// The pipeline's selector merged with the task's, as JSON.
    pub selector: String,
    /// `docker` or `shell`.
    pub runtime: &'static str,
    pub condition: Option<String>,
    /// The tasks depending on it, as JSON names.
    pub dependants: String,
    /// How many tasks it depends on.
    pub waiting_on: i64,
    pub retries: i64,
    pub backoff_ms: Option<i64>,
}

impl TaskRules {
    pub fn of(pipeline: &Pipeline, dag: &Dag, name: &str, task: &Task) -> Self {
        Self {
            selector: serde_json::to_string(&pipeline.task_selector(task)).expect("maps serialize"),
            runtime: if task.image.is_some() {
                "docker"
            } else {
                "shell"
            },
            condition: task.condition.clone(),
            dependants: serde_json::to_string(dag.dependants(name)).expect("names serialize"),
            waiting_on: task.depends_on.len() as i64,
            retries: i64::from(task.retries.count),
            backoff_ms: task.retries.backoff.map(|d| d.as_millis() as i64),
        }
    }
}

/// The retry policy as stored with a task.
pub(crate) fn retries_of(count: i64, backoff_ms: Option<i64>) -> Retries {
    Retries {
        count: count.clamp(0, i64::from(u32::MAX)) as u32,
        backoff: backoff_ms.map(|ms| std::time::Duration::from_millis(ms.max(0) as u64)),
    }
}

/// A new run's first decisions: each task without dependencies gets a
/// `ready` attempt, or ends (its `if` reads only params), in the run's
/// insert transaction.
pub(crate) async fn start_run(tx: &mut WriteTx, run_id: i64) -> Result<Ended, sqlx::Error> {
    let roots: Vec<String> = sqlx::query_scalar(
        "SELECT task FROM task_runs WHERE run_id = $1 AND status = 'pending' AND waiting_on = 0 \
         ORDER BY position",
    )
    .bind(run_id)
    .fetch_all(&mut **tx)
    .await?;
    let now = now_ms();
    let mut out = Ended::default();
    for root in roots {
        match decide(tx, run_id, &root, now).await? {
            Decided::Ready => out.ready += 1,
            Decided::Ended(status) => out.absorb(task_ended(tx, run_id, &root, status).await?),
            Decided::Nothing => {}
        }
    }
    let left: Option<i64> = sqlx::query_scalar("SELECT tasks_left FROM runs WHERE id = $1")
        .bind(run_id)
        .fetch_one(&mut **tx)
        .await?;
    if left == Some(0) && out.run_final.is_none() {
        out.run_final = finish_run(tx, run_id, now).await?;
    }
    Ok(out)
}

/// `task` of `run_id` just became final (`status`), in the caller's
/// transaction, whose guarded UPDATE moved it: counts it, decides the
/// dependants it unblocked (cascading through those that end without
/// running), and ends the run when no task is left.
pub(crate) async fn task_ended(
    tx: &mut WriteTx,
    run_id: i64,
    task: &str,
    status: TaskStatus,
) -> Result<Ended, sqlx::Error> {
    let now = now_ms();
    let mut out = Ended::default();
    // Bounded by the DAG: each task ends once (guarded UPDATEs).
    let mut ended = vec![(task.to_string(), status)];
    while let Some((task, status)) = ended.pop() {
        tracing::trace!(run_id, task, status = status.as_str(), "task ended");
        let left: Option<i64> = sqlx::query_scalar(
            "UPDATE runs SET tasks_left = tasks_left - 1 WHERE id = $1 AND tasks_left > 0 \
             RETURNING tasks_left",
        )
        .bind(run_id)
        .fetch_optional(&mut **tx)
        .await?;
        let dependants: Option<Option<String>> =
            sqlx::query_scalar("SELECT dependants FROM task_runs WHERE run_id = $1 AND task = $2")
                .bind(run_id)
                .bind(&task)
                .fetch_optional(&mut **tx)
                .await?;
        for dependant in names(dependants.flatten().as_deref()) {
            let waiting: Option<i64> = sqlx::query_scalar(
                "UPDATE task_runs SET waiting_on = waiting_on - 1 WHERE run_id = $1 AND task = $2 \
                 AND status = 'pending' AND waiting_on > 0 RETURNING waiting_on",
            )
            .bind(run_id)
            .bind(&dependant)
            .fetch_optional(&mut **tx)
            .await?;
            if waiting != Some(0) {
                continue;
            }
            match decide(tx, run_id, &dependant, now).await? {
                Decided::Ready => out.ready += 1,
                Decided::Ended(status) => ended.push((dependant, status)),
                Decided::Nothing => {}
            }
        }
        if left == Some(0) {
            out.run_final = finish_run(tx, run_id, now).await?.or(out.run_final);
        }
    }
    Ok(out)
}

enum Decided {
    /// It runs: a `ready` attempt waits for the scheduler.
    Ready,
    /// It ended without running.
    Ended(TaskStatus),
    /// It was not pending any more.
    Nothing,
}

/// Everything `task` depends on has ended: does it run?
async fn decide(
    tx: &mut WriteTx,
    run_id: i64,
    task: &str,
    now: i64,
) -> Result<Decided, sqlx::Error> {
    let row = sqlx::query(
        "SELECT t.condition, t.depends_on, r.cancel_requested FROM task_runs t \
         JOIN runs r ON r.id = t.run_id WHERE t.run_id = $1 AND t.task = $2 AND t.status = 'pending'",
    )
    .bind(run_id)
    .bind(task)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else {
        return Ok(Decided::Nothing);
    };
    let condition: Option<String> = row.get(0);
    let dependencies = names(row.get::<Option<String>, _>(1).as_deref());
    let cancelled = row.get::<i64, _>(2) != 0;
    // Conditions read params and outputs; without one only the
    // dependencies' statuses count.
    let mut reads: BTreeSet<String> = dependencies.iter().cloned().collect();
    let mut params = BTreeMap::new();
    if let Some(text) = &condition {
        if let Ok(parsed) = Condition::parse(text) {
            reads.extend(
                parsed
                    .references()
                    .iter()
                    .filter_map(|r| r.task().map(str::to_string)),
            );
        }
        let stored: String = sqlx::query_scalar("SELECT params FROM runs WHERE id = $1")
            .bind(run_id)
            .fetch_one(&mut **tx)
            .await?;
        params = serde_json::from_str(&stored).unwrap_or_default();
    }
    let results = results(tx, run_id, &reads, condition.is_some()).await?;
    let (status, error) = match plan::verdict(
        condition.as_deref(),
        &dependencies,
        &results,
        &params,
        cancelled,
    ) {
        Verdict::Run => {
            insert_ready(tx, run_id, task, now, Retry::First).await?;
            return Ok(Decided::Ready);
        }
        Verdict::Skip => (TaskStatus::Skipped, None),
        Verdict::NotExecuted => (TaskStatus::NotExecuted, None),
        Verdict::Fail(error) => (TaskStatus::Error, Some(error)),
    };
    Ok(
        if end_pending(tx, run_id, task, status, error.as_deref(), now).await? {
            Decided::Ended(status)
        } else {
            Decided::Nothing
        },
    )
}

/// The results of `reads` (final tasks only), with outputs and what their
/// caches' restores found when asked (a condition reads them).
async fn results(
    tx: &mut WriteTx,
    run_id: i64,
    reads: &BTreeSet<String>,
    outputs: bool,
) -> Result<BTreeMap<String, TaskResult>, sqlx::Error> {
    let mut out = BTreeMap::new();
    let reads: Vec<&String> = reads.iter().collect();
    for chunk in reads.chunks(IN_CHUNK) {
        let placeholders: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
        let output = if outputs { "output" } else { "NULL" };
        let sql = format!(
            "SELECT task, status, {output} FROM task_runs WHERE run_id = $1 AND task IN ({})",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(&sql).bind(run_id);
        for name in chunk {
            query = query.bind(name.as_str());
        }
        for row in query.fetch_all(&mut **tx).await? {
            let status: String = row.get(1);
            let Ok(status) = status.parse::<TaskStatus>() else {
                continue;
            };
            if status.is_finished() {
                out.insert(
                    row.get(0),
                    TaskResult {
                        caches: Default::default(),
                        status,
                        output: row.get(2),
                    },
                );
            }
        }
    }
    if outputs && !out.is_empty() {
        let tasks: Vec<&str> = out.keys().map(String::as_str).collect();
        let mut caches = super::attempt_caches::of_results(tx, run_id, &tasks).await?;
        for (task, result) in &mut out {
            result.caches = caches.remove(task).unwrap_or_default();
        }
    }
    Ok(out)
}

/// Why an attempt is made ready.
#[derive(Debug, Clone)]
pub(crate) enum Retry {
    /// The task's first attempt.
    First,
    /// A try failed (or its agent was lost after it started): a retry
    /// that uses one of the task's `retries`, not placed before `not_before`.
    After {
        not_before: i64,
        avoid: Option<String>,
    },
    /// Its attempt was lost before it started: placed again at once, using
    /// no retry, preferably elsewhere.
    Lost { avoid: String },
}

/// Inserts the next `ready` attempt of a task; its id.
pub(crate) async fn insert_ready(
    tx: &mut WriteTx,
    run_id: i64,
    task: &str,
    now: i64,
    why: Retry,
) -> Result<i64, sqlx::Error> {
    let (not_before, avoid, counts) = match why {
        Retry::First => (None, None, 1),
        Retry::After { not_before, avoid } => (Some(not_before), avoid, 1),
        Retry::Lost { avoid } => (None, Some(avoid), 0),
    };
    sqlx::query_scalar(
        "INSERT INTO task_attempts (run_id, task, number, status, not_before, avoid_agent, counts_retry, ready_at) \
         VALUES ($1, $2, (SELECT COALESCE(MAX(number), 0) + 1 FROM task_attempts WHERE run_id = $1 AND task = $2), \
         'ready', $3, $4, $5, $6) RETURNING id",
    )
    .bind(run_id)
    .bind(task)
    .bind(not_before)
    .bind(avoid)
    .bind(counts)
    .bind(now)
    .fetch_one(&mut **tx)
    .await
}

/// Ends a task that is still pending (it will not run); whether it did.
pub(crate) async fn end_pending(
    tx: &mut WriteTx,
    run_id: i64,
    task: &str,
    status: TaskStatus,
    error: Option<&str>,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let moved = sqlx::query(
        "UPDATE task_runs SET status = $1, error = $2, finished_at = $3 \
         WHERE run_id = $4 AND task = $5 AND status = 'pending'",
    )
    .bind(status.as_str())
    .bind(error)
    .bind(now)
    .bind(run_id)
    .bind(task)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if moved == 1 {
        end_steps(tx, run_id, task, status).await?;
    }
    Ok(moved == 1)
}

/// A task became final: its steps that never ran end `not_executed`, those
/// left running end `cancelled` if the task was, else `unknown`.
pub(crate) async fn end_steps(
    tx: &mut WriteTx,
    run_id: i64,
    task: &str,
    status: TaskStatus,
) -> Result<(), sqlx::Error> {
    let running = if status == TaskStatus::Cancelled {
        "cancelled"
    } else {
        "unknown"
    };
    for (from, to) in [("pending", "not_executed"), ("running", running)] {
        sqlx::query(
            "UPDATE step_runs SET status = $1 WHERE run_id = $2 AND task = $3 AND status = $4",
        )
        .bind(to)
        .bind(run_id)
        .bind(task)
        .bind(from)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Every task of the run is final: the run is too.
async fn finish_run(
    tx: &mut WriteTx,
    run_id: i64,
    now: i64,
) -> Result<Option<RunStatus>, sqlx::Error> {
    let statuses: Vec<String> =
        sqlx::query_scalar("SELECT status FROM task_runs WHERE run_id = $1")
            .bind(run_id)
            .fetch_all(&mut **tx)
            .await?;
    let cancelled: i64 = sqlx::query_scalar("SELECT cancel_requested FROM runs WHERE id = $1")
        .bind(run_id)
        .fetch_one(&mut **tx)
        .await?;
    let statuses: Vec<TaskStatus> = statuses.iter().filter_map(|s| s.parse().ok()).collect();
    // `run_status` also says `unknown` for a task lost with its agent.
    let status = plan::run_status(statuses.iter().copied(), cancelled != 0);
    let ended = sqlx::query(
        "UPDATE runs SET status = $1, finished_at = $2, lease_expires_at = NULL, \
         scheduler_reason = NULL WHERE id = $3 \
         AND status IN ('queued', 'starting_up', 'running', 'shutting_down')",
    )
    .bind(status.as_str())
    .bind(now)
    .bind(run_id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok((ended == 1).then_some(status))
}

/// Names stored as a JSON array (empty when absent or unreadable).
fn names(stored: Option<&str>) -> Vec<String> {
    stored
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default()
}

/// Marks every unfinished run of model 2 dirty, for the backstop to look
/// at: at a server's start, what happened while none ran is seen.
pub async fn mark_active_dirty(db: &Db) -> Result<u64, StorageError> {
    let marked = sqlx::query(
        "UPDATE runs SET dirty = dirty + 1 WHERE model = 2 \
         AND status IN ('queued', 'starting_up', 'running', 'shutting_down')",
    )
    .execute(&mut *db.write_conn().await?)
    .await?
    .rows_affected();
    if marked > 0 {
        db.news().runs_dirty();
    }
    Ok(marked)
}

/// One backstop pass: every run marked dirty (at most `RESYNC_PAGE`) is
/// looked at again from its rows. Returns how many were.
pub async fn resync_dirty(db: &Db) -> Result<usize, StorageError> {
    let dirty: Vec<(i64, i64)> =
        sqlx::query_as("SELECT id, dirty FROM runs WHERE dirty > 0 ORDER BY id LIMIT $1")
            .bind(RESYNC_PAGE)
            .fetch_all(db.pool())
            .await?;
    for &(id, seen) in &dirty {
        let ended = resync(db, id, seen).await?;
        if ended.ready > 0 {
            db.news().tasks_ready();
        }
        db.news().run_changed(id).await;
    }
    Ok(dirty.len())
}

/// Recomputes a run's counters from its rows, decides every pending task
/// whose dependencies are final and that has no attempt under way, ends
/// the run when no task is left, and clears its mark unless it was marked
/// again meanwhile (`seen`).
pub async fn resync(db: &Db, run_id: i64, seen: i64) -> Result<Ended, StorageError> {
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    // The run's attempt rows first, then its task and run rows: the order
    // every writer of a run's attempts takes (events, placement, the
    // supervisor, cancel), so that on PostgreSQL no two transactions wait
    // on each other in a circle.
    lock_run(&mut tx, run_id).await?;
    let mut out = Ended::default();
    let model: Option<(i64, String)> =
        sqlx::query_as("SELECT model, status FROM runs WHERE id = $1")
            .bind(run_id)
            .fetch_optional(&mut *tx)
            .await?;
    let active_run = model.as_ref().is_some_and(|(model, status)| {
        *model == 2
            && !status
                .parse::<RunStatus>()
                .is_ok_and(|s| s.is_finished() || s == RunStatus::Unknown)
    });
    if active_run {
        let rows = sqlx::query(
            "SELECT task, status, depends_on FROM task_runs WHERE run_id = $1 ORDER BY position",
        )
        .bind(run_id)
        .fetch_all(&mut *tx)
        .await?;
        let under_way: BTreeSet<String> = sqlx::query_scalar(
            "SELECT DISTINCT task FROM task_attempts WHERE run_id = $1 \
             AND status IN ('ready', 'placed', 'running')",
        )
        .bind(run_id)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
        let status: BTreeMap<String, TaskStatus> = rows
            .iter()
            .map(|r| {
                let status: String = r.get(1);
                let status = status.parse().unwrap_or(TaskStatus::Unknown);
                (r.get(0), status)
            })
            .collect();
        let left = status.values().filter(|s| !s.is_finished()).count() as i64;
        sqlx::query("UPDATE runs SET tasks_left = $1 WHERE id = $2")
            .bind(left)
            .bind(run_id)
            .execute(&mut *tx)
            .await?;
        let mut unblocked = Vec::new();
        for row in &rows {
            let task: String = row.get(0);
            if status[&task] != TaskStatus::Pending {
                continue;
            }
            let waiting = names(row.get::<Option<String>, _>(2).as_deref())
                .iter()
                .filter(|d| status.get(*d).is_some_and(|s| !s.is_finished()))
                .count() as i64;
            sqlx::query(
                "UPDATE task_runs SET waiting_on = $1 WHERE run_id = $2 AND task = $3 AND status = 'pending'",
            )
            .bind(waiting)
            .bind(run_id)
            .bind(&task)
            .execute(&mut *tx)
            .await?;
            if waiting == 0 && !under_way.contains(&task) {
                unblocked.push(task);
            }
        }
        for task in unblocked {
            match decide(&mut tx, run_id, &task, now).await? {
                Decided::Ready => out.ready += 1,
                Decided::Ended(status) => {
                    out.absorb(task_ended(&mut tx, run_id, &task, status).await?)
                }
                Decided::Nothing => {}
            }
        }
        if left == 0 && out.run_final.is_none() {
            out.run_final = finish_run(&mut tx, run_id, now).await?;
        }
    }
    sqlx::query("UPDATE runs SET dirty = 0 WHERE id = $1 AND dirty = $2")
        .bind(run_id)
        .bind(seen)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(out)
}

/// A run has at most one attempt under way per task: the bound of queries
/// over one run's attempts.
const MAX_RUN_ATTEMPTS: i64 = xene_core::parse::MAX_TASKS as i64;

/// Locks a run's attempt rows under way in id order, on PostgreSQL, before
/// a transaction writes several of them: two writers that each lock some
/// in their own order (a cancel, a resync, a placement) would wait on each
/// other in a circle. SQLite's write transaction already excludes others.
/// It lives here, beside what every path that ends a task calls, so that
/// `attempts` may use readiness without readiness using `attempts`.
pub(crate) async fn lock_run(tx: &mut WriteTx, run_id: i64) -> Result<(), sqlx::Error> {
    if tx.backend_name() != "PostgreSQL" {
        return Ok(());
    }
    sqlx::query(
        "SELECT id FROM task_attempts WHERE run_id = $1 \
         AND status IN ('ready', 'placed', 'running') ORDER BY id LIMIT $2 FOR UPDATE",
    )
    .bind(run_id)
    .bind(MAX_RUN_ATTEMPTS)
    .fetch_all(&mut **tx)
    .await?;
    Ok(())
}
