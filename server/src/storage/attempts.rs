//! Task attempts of runs of model 2: one row per dispatch of a task, what
//! the scheduler places, an agent leases (renewed by its heartbeats) and
//! the supervisor expires. How a run's tasks become ready is `readiness`;
//! how an attempt's events apply is `events::apply_attempt`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use sqlx::Row;
use sqlx::any::AnyRow;
use xene_core::context::TaskResult;
use xene_core::status::TaskStatus;

use super::readiness::{self, Retry};
use super::{Db, StorageError, WriteTx, now_ms};

mod handoff;
mod leases;
mod place;
pub(crate) use handoff::hand_off;
pub use leases::{end_lease, end_leases_of, renew_for_agents, unpin_absent};
pub use place::place_many;

/// Placements written in one transaction (and most the scheduler holds
/// before writing them).
pub const PLACE_CHUNK: usize = 64;

/// Most attempts `expire_leases` looks at in one call.
pub const EXPIRE_PAGE: i64 = 1000;

/// Most times an attempt lost before it started is placed again without
/// using a retry (Tork caps redelivery at 5 too).
pub const MAX_LOST_UNSTARTED: i64 = 5;

/// Ids or names bound in one `IN (...)` list.
const IN_CHUNK: usize = 500;

/// What a lost attempt's error says.
const LOST: &str = "its agent stopped renewing the lease";

/// A `ready` attempt with what placing it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyAttempt {
    pub id: i64,
    pub run_id: i64,
    pub task: String,
    pub number: i64,
    /// The agent an earlier attempt of the task was lost on (avoid it if
    /// another fits).
    pub avoid_agent: Option<String>,
    /// Why it waits, as last recorded.
    pub scheduler_reason: Option<String>,
    /// When it could first be placed: ready, and past its retry backoff
    /// (queue wait and "stuck" count from here).
    pub ready_at: i64,
    /// The labels it needs: the pipeline's selector merged with the task's.
    pub selector: BTreeMap<String, String>,
    /// `docker` or `shell`.
    pub runtime: String,
    /// `spread` or `together`.
    pub placement: String,
    /// Under `together`: the agent holding the run.
    pub pinned_agent: Option<String>,
    /// Under `together`: every runtime the run's tasks use (its first agent
    /// must have them all); empty otherwise.
    pub run_runtimes: Vec<String>,
    /// Most attempts of the run placed or running at once.
    pub concurrency: Option<i64>,
    pub workflow: String,
    pub version: i64,
    pub pipeline: String,
}

/// Ready attempts after `after` (an attempt id) that may be placed at
/// `now` (past their backoff), oldest first: FIFO between runs.
pub async fn ready_page(
    db: &Db,
    after: i64,
    now: i64,
    limit: i64,
) -> Result<Vec<ReadyAttempt>, StorageError> {
    ready_page_on(&mut *db.pool().acquire().await?, after, now, limit).await
}

/// `ready_page` read on `conn` (a transaction's, to see its own writes).
async fn ready_page_on(
    conn: &mut sqlx::AnyConnection,
    after: i64,
    now: i64,
    limit: i64,
) -> Result<Vec<ReadyAttempt>, StorageError> {
    let rows = sqlx::query(
        "SELECT a.id, a.run_id, a.task, a.number, a.avoid_agent, a.scheduler_reason, \
         CASE WHEN a.not_before > a.ready_at THEN a.not_before ELSE a.ready_at END, \
         t.selector, t.runtime, r.placement, r.pinned_agent, r.concurrency, r.workflow, r.version, r.pipeline, \
         CASE WHEN r.placement = 'together' THEN (SELECT COUNT(*) FROM task_runs u \
             WHERE u.run_id = a.run_id AND u.runtime = 'docker') ELSE 0 END, \
         CASE WHEN r.placement = 'together' THEN (SELECT COUNT(*) FROM task_runs u \
             WHERE u.run_id = a.run_id AND COALESCE(u.runtime, 'shell') = 'shell') ELSE 0 END \
         FROM task_attempts a JOIN task_runs t ON t.run_id = a.run_id AND t.task = a.task \
         JOIN runs r ON r.id = a.run_id \
         WHERE a.status = 'ready' AND (a.not_before IS NULL OR a.not_before <= $1) AND a.id > $2 \
         ORDER BY a.id LIMIT $3",
    )
    .bind(now)
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .iter()
        .map(|r| ReadyAttempt {
            id: r.get(0),
            run_id: r.get(1),
            task: r.get(2),
            number: r.get(3),
            avoid_agent: r.get(4),
            scheduler_reason: r.get(5),
            ready_at: r.get(6),
            selector: r
                .get::<Option<String>, _>(7)
                .and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or_default(),
            runtime: r
                .get::<Option<String>, _>(8)
                .unwrap_or_else(|| "shell".into()),
            placement: r.get(9),
            pinned_agent: r.get(10),
            concurrency: r.get(11),
            workflow: r.get(12),
            version: r.get(13),
            pipeline: r.get(14),
            run_runtimes: [
                ("docker", r.get::<i64, _>(15)),
                ("shell", r.get::<i64, _>(16)),
            ]
            .into_iter()
            .filter(|(_, tasks)| *tasks > 0)
            .map(|(runtime, _)| runtime.to_string())
            .collect(),
        })
        .collect())
}

/// The earliest backoff still running among ready attempts: when the
/// scheduler should look again without news.
pub async fn next_not_before(db: &Db, now: i64) -> Result<Option<i64>, StorageError> {
    Ok(sqlx::query_scalar(
        "SELECT MIN(not_before) FROM task_attempts WHERE status = 'ready' AND not_before > $1",
    )
    .bind(now)
    .fetch_one(db.pool())
    .await?)
}

/// How many attempts each agent holds (placed or running).
pub async fn load(db: &Db) -> Result<HashMap<String, i64>, StorageError> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT agent_id, COUNT(*) FROM task_attempts WHERE status IN ('placed', 'running') \
         AND agent_id IS NOT NULL GROUP BY agent_id",
    )
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().collect())
}

/// How many attempts of each of `run_ids` are placed or running (runs with
/// none are absent).
pub async fn running_per_run(db: &Db, run_ids: &[i64]) -> Result<HashMap<i64, i64>, StorageError> {
    let mut out = HashMap::new();
    for chunk in run_ids.chunks(IN_CHUNK) {
        let sql = format!(
            "SELECT run_id, COUNT(*) FROM task_attempts WHERE run_id IN ({}) \
             AND status IN ('placed', 'running') GROUP BY run_id",
            placeholders(1, chunk.len())
        );
        let mut query = sqlx::query_as::<_, (i64, i64)>(&sql);
        for id in chunk {
            query = query.bind(*id);
        }
        out.extend(query.fetch_all(db.pool()).await?);
    }
    Ok(out)
}

/// Records why a ready attempt still waits; its run's reason mirrors its
/// oldest waiting attempt's. Written (and announced) only when it changes:
/// the scheduler says it again on every pass.
pub async fn set_waiting_reason(db: &Db, attempt: i64, reason: &str) -> Result<(), StorageError> {
    set_waiting_reasons(db, &[(attempt, reason.to_string())]).await
}

/// Reasons written at once.
const REASON_CHUNK: usize = 256;

/// `set_waiting_reason` for many attempts: one transaction per chunk, each
/// run's own reason updated once. A pass that finds a thousand attempts
/// waiting must not take the write turn a thousand times.
pub async fn set_waiting_reasons(db: &Db, reasons: &[(i64, String)]) -> Result<(), StorageError> {
    for chunk in reasons.chunks(REASON_CHUNK) {
        let mut runs = std::collections::BTreeSet::new();
        let mut tx = db.begin_write().await?;
        for (attempt, reason) in chunk {
            let run_id: Option<i64> = sqlx::query_scalar(
                "UPDATE task_attempts SET scheduler_reason = $1 WHERE id = $2 AND status = 'ready' \
                 AND (scheduler_reason IS NULL OR scheduler_reason <> $1) RETURNING run_id",
            )
            .bind(reason)
            .bind(attempt)
            .fetch_optional(&mut *tx)
            .await?;
            runs.extend(run_id);
        }
        for run_id in &runs {
            sqlx::query(
                "UPDATE runs SET scheduler_reason = (SELECT a.scheduler_reason FROM task_attempts a \
                     WHERE a.run_id = $1 AND a.status = 'ready' ORDER BY a.id LIMIT 1), \
                 scheduler_status = CASE WHEN status = 'queued' THEN 'not_scheduled' ELSE scheduler_status END \
                 WHERE id = $1 AND status IN ('queued', 'starting_up', 'running')",
            )
            .bind(run_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        for run_id in runs {
            db.news().run_changed(run_id).await;
        }
    }
    Ok(())
}

/// An attempt an agent holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldAttempt {
    pub id: i64,
    pub run_id: i64,
    pub task: String,
    pub number: i64,
    /// Someone asked for its run to stop: send `CancelTask`.
    pub cancel_requested: bool,
    /// Its `TaskStarted` was stored (status `running`, else `placed`).
    pub started: bool,
    pub lease_expires_at: Option<i64>,
}

/// The attempts `agent` holds (placed or running), oldest first.
pub async fn held_by(db: &Db, agent: &str) -> Result<Vec<HeldAttempt>, StorageError> {
    let rows = sqlx::query(
        // The run's flag too: on PostgreSQL a placement that committed
        // while its run was being cancelled may have missed the attempt's.
        "SELECT a.id, a.run_id, a.task, a.number, a.cancel_requested + r.cancel_requested, \
         a.status, a.lease_expires_at \
         FROM task_attempts a JOIN runs r ON r.id = a.run_id \
         WHERE a.agent_id = $1 AND a.status IN ('placed', 'running') ORDER BY a.id",
    )
    .bind(agent)
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .iter()
        .map(|r| HeldAttempt {
            id: r.get(0),
            run_id: r.get(1),
            task: r.get(2),
            number: r.get(3),
            cancel_requested: r.get::<i64, _>(4) != 0,
            started: r.get::<String, _>(5) == "running",
            lease_expires_at: r.get(6),
        })
        .collect())
}

/// What `expire_leases` did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Expired {
    /// Attempts whose lease ran out (now `unknown`).
    pub lost: u64,
    /// Of those, how many got a next attempt (re-placed or retried).
    pub again: u64,
}

/// Attempts whose lease ran out become `unknown`; each then, in its own
/// transaction: never started, placed again without using a retry (at most
/// `MAX_LOST_UNSTARTED` times); started with cancel requested, its task
/// ends `cancelled`; started with retries left, retried after the backoff;
/// else its task ends `unknown`. A run held `together` by the lost agent is
/// unpinned, so its next task pins it to one other agent. Tasks that
/// finished elsewhere are untouched: only attempts expire.
pub async fn expire_leases(db: &Db, now: i64) -> Result<Expired, StorageError> {
    let rows: Vec<(i64, i64, String, String, Option<String>)> = sqlx::query_as(
        "SELECT id, run_id, task, status, agent_id FROM task_attempts \
         WHERE status IN ('placed', 'running') AND lease_expires_at < $1 ORDER BY id LIMIT $2",
    )
    .bind(now)
    .bind(EXPIRE_PAGE)
    .fetch_all(db.pool())
    .await?;
    let mut out = Expired::default();
    let mut ready = false;
    for (id, run_id, task, _, agent) in rows {
        let mut tx = db.begin_write().await?;
        // Checked again: the agent may have renewed, or reported, meanwhile.
        let was: Option<String> = sqlx::query_scalar(
            "SELECT status FROM task_attempts WHERE id = $1 AND status IN ('placed', 'running') \
             AND lease_expires_at < $2",
        )
        .bind(id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(was) = was else {
            continue;
        };
        let marked = sqlx::query(
            "UPDATE task_attempts SET status = 'unknown', error = $1, finished_at = $2 \
             WHERE id = $3 AND status = $4 AND lease_expires_at < $2",
        )
        .bind(LOST)
        .bind(now)
        .bind(id)
        .bind(&was)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if marked == 0 {
            continue;
        }
        out.lost += 1;
        // Nobody knows how its publish ended: what it staged never shows.
        super::artifacts::discard_staged(&mut tx, id).await?;
        super::caches::discard_staged(&mut tx, id).await?;
        let agent = agent.unwrap_or_default();
        // Unpinned only once the agent holds none of its tasks: while it
        // runs the others, the run's next tasks still go there.
        sqlx::query(
            "UPDATE runs SET pinned_agent = NULL WHERE id = $1 AND pinned_agent = $2 \
             AND NOT EXISTS (SELECT 1 FROM task_attempts o WHERE o.run_id = $1 \
                 AND o.agent_id = $2 AND o.status IN ('placed', 'running'))",
        )
        .bind(run_id)
        .bind(&agent)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE step_runs SET status = 'unknown' WHERE run_id = $1 AND task = $2 AND status = 'running'",
        )
        .bind(run_id)
        .bind(&task)
        .execute(&mut *tx)
        .await?;
        let next = after_loss(&mut tx, run_id, &task, was == "running", &agent, now).await?;
        tx.commit().await?;
        match next {
            Next::Again => {
                out.again += 1;
                ready = true;
            }
            Next::Ended(ended) => ready |= ended.ready > 0,
        }
        db.news().run_changed(run_id).await;
    }
    if ready {
        db.news().tasks_ready();
    }
    if out.lost > 0 {
        // Their agents' slots are free (as far as the scheduler counts).
        db.news().room_freed();
    }
    Ok(out)
}

enum Next {
    /// Another attempt is ready.
    Again,
    /// The task ended.
    Ended(readiness::Ended),
}

/// What follows an attempt of `task` lost with its agent.
async fn after_loss(
    tx: &mut WriteTx,
    run_id: i64,
    task: &str,
    started: bool,
    agent: &str,
    now: i64,
) -> Result<Next, sqlx::Error> {
    let row = sqlx::query(
        "SELECT t.retries, t.backoff_ms, t.retries_used, r.cancel_requested, \
         (SELECT COUNT(*) FROM task_attempts a WHERE a.run_id = $1 AND a.task = $2 AND a.counts_retry = 0) \
         FROM task_runs t JOIN runs r ON r.id = t.run_id WHERE t.run_id = $1 AND t.task = $2",
    )
    .bind(run_id)
    .bind(task)
    .fetch_one(&mut **tx)
    .await?;
    let (retries, backoff_ms, used, cancel, replaced): (i64, Option<i64>, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    let cancelled = cancel != 0;
    if !started && !cancelled && replaced < MAX_LOST_UNSTARTED {
        // Nothing ran, so nothing runs twice.
        sqlx::query(
            "UPDATE task_runs SET status = 'pending' WHERE run_id = $1 AND task = $2 AND status = 'running'",
        )
        .bind(run_id)
        .bind(task)
        .execute(&mut **tx)
        .await?;
        let avoid = agent.to_string();
        readiness::insert_ready(tx, run_id, task, now, Retry::Lost { avoid }).await?;
        return Ok(Next::Again);
    }
    if !cancelled && used < retries {
        retry(
            tx,
            run_id,
            task,
            used,
            retries_of(retries, backoff_ms),
            Some(agent),
            now,
        )
        .await?;
        return Ok(Next::Again);
    }
    let (status, error) = match (cancelled, started) {
        (true, true) => (TaskStatus::Cancelled, None),
        (true, false) => (TaskStatus::NotExecuted, None),
        (false, _) => (TaskStatus::Unknown, Some(LOST)),
    };
    let ended = end_task(tx, run_id, task, status, error, now).await?;
    Ok(Next::Ended(ended))
}

fn retries_of(count: i64, backoff_ms: Option<i64>) -> xene_core::spec::Retries {
    readiness::retries_of(count, backoff_ms)
}

/// Uses one of a task's retries (`used` were): its next attempt is ready
/// after the backoff.
pub(crate) async fn retry(
    tx: &mut WriteTx,
    run_id: i64,
    task: &str,
    used: i64,
    policy: xene_core::spec::Retries,
    avoid: Option<&str>,
    now: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query(
        "UPDATE task_runs SET retries_used = retries_used + 1 WHERE run_id = $1 AND task = $2",
    )
    .bind(run_id)
    .bind(task)
    .execute(&mut **tx)
    .await?;
    let delay = policy.delay(u32::try_from(used + 1).unwrap_or(u32::MAX));
    let not_before = now.saturating_add(delay.as_millis().min(i64::MAX as u128) as i64);
    let avoid = avoid.map(str::to_string);
    readiness::insert_ready(tx, run_id, task, now, Retry::After { not_before, avoid }).await
}

/// Ends a task that is pending or running, with its steps, and carries the
/// news through readiness; nothing when it had ended already.
pub(crate) async fn end_task(
    tx: &mut WriteTx,
    run_id: i64,
    task: &str,
    status: TaskStatus,
    error: Option<&str>,
    now: i64,
) -> Result<readiness::Ended, sqlx::Error> {
    let moved = sqlx::query(
        "UPDATE task_runs SET status = $1, error = COALESCE($2, error), finished_at = $3 \
         WHERE run_id = $4 AND task = $5 AND status IN ('pending', 'running')",
    )
    .bind(status.as_str())
    .bind(error)
    .bind(now)
    .bind(run_id)
    .bind(task)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if moved == 0 {
        return Ok(readiness::Ended::default());
    }
    readiness::end_steps(tx, run_id, task, status).await?;
    readiness::task_ended(tx, run_id, task, status).await
}

/// Fails an attempt that has not finished (its secrets are missing, its
/// pipeline is gone), with the reason people will read: its task ends
/// `error` without a retry (another try would fail the same way).
pub async fn fail(db: &Db, attempt: i64, reason: &str) -> Result<(), StorageError> {
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    let row: Option<(i64, String)> = sqlx::query_as(
        "UPDATE task_attempts SET status = 'error', error = $1, finished_at = $2 \
         WHERE id = $3 AND status IN ('ready', 'placed', 'running') RETURNING run_id, task",
    )
    .bind(reason)
    .bind(now)
    .bind(attempt)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((run_id, task)) = row else {
        return Ok(());
    };
    // Failed by the server: what it staged never shows (artifacts before
    // its task and run, the order every writer takes).
    super::artifacts::discard_staged(&mut tx, attempt).await?;
    super::caches::discard_staged(&mut tx, attempt).await?;
    let ended = end_task(&mut tx, run_id, &task, TaskStatus::Error, Some(reason), now).await?;
    // What keeps a task from executing at all (a secret not approved, a
    // version that no longer runs) is the run's trouble too: its page and
    // the runs list say it.
    sqlx::query("UPDATE runs SET error = COALESCE(error, $1) WHERE id = $2")
        .bind(reason)
        .bind(run_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    db.news().run_changed(run_id).await;
    db.news().room_freed();
    if ended.ready > 0 {
        db.news().tasks_ready();
    }
    Ok(())
}

/// A page of the results of `names` (tasks of `run_id`), whole, by name
/// after `after`, as many as fit `budget` bytes of output (at least one),
/// and the name to go on after when more are left.
pub async fn read_outputs(
    db: &Db,
    run_id: i64,
    names: &BTreeSet<String>,
    after: Option<&str>,
    budget: usize,
) -> Result<(BTreeMap<String, TaskResult>, Option<String>), StorageError> {
    let rest: Vec<&String> = names
        .iter()
        .filter(|n| after.is_none_or(|a| n.as_str() > a))
        .collect();
    let mut page = BTreeMap::new();
    let mut used = 0usize;
    for chunk in rest.chunks(100) {
        let sql = format!(
            "SELECT task, status, output FROM task_runs WHERE run_id = $1 AND task IN ({}) ORDER BY task",
            placeholders(2, chunk.len())
        );
        let mut query = sqlx::query(&sql).bind(run_id);
        for name in chunk {
            query = query.bind(name.as_str());
        }
        let mut rows: Vec<(String, String, Option<String>)> = query
            .fetch_all(db.pool())
            .await?
            .iter()
            .map(|row| (row.get(0), row.get(1), row.get(2)))
            .collect();
        // By bytes, as `after` and the chunks compare: the database's
        // collation may order names otherwise, and a page cut by it would
        // skip the names it put after the cut but bytes put before.
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        let tasks: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
        let mut caches =
            super::attempt_caches::of_results(&mut *db.pool().acquire().await?, run_id, &tasks)
                .await?;
        for (task, status, output) in rows {
            let caches = caches.remove(&task).unwrap_or_default();
            let size = task.len()
                + output.as_ref().map_or(0, String::len)
                + caches.keys().map(|name| name.len() + 8).sum::<usize>();
            if !page.is_empty() && used + size > budget {
                let last = page.keys().next_back().cloned();
                return Ok((page, last));
            }
            used += size;
            let status = status.parse().unwrap_or(TaskStatus::Unknown);
            page.insert(
                task,
                TaskResult {
                    caches,
                    status,
                    output,
                },
            );
        }
    }
    Ok((page, None))
}

/// One attempt as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub id: i64,
    pub run_id: i64,
    pub task: String,
    pub number: i64,
    /// ready | placed | running | success | error | cancelled | unknown
    pub status: String,
    pub agent_id: Option<String>,
    pub lease_expires_at: Option<i64>,
    pub not_before: Option<i64>,
    pub avoid_agent: Option<String>,
    /// False for a re-placement of an attempt lost before it started.
    pub counts_retry: bool,
    pub cancel_requested: bool,
    pub scheduler_reason: Option<String>,
    pub error: Option<String>,
    pub ready_at: i64,
    pub placed_at: Option<i64>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub duration_ms: Option<i64>,
}

const ATTEMPT_COLUMNS: &str = "id, run_id, task, number, status, agent_id, lease_expires_at, not_before, \
    avoid_agent, counts_retry, cancel_requested, scheduler_reason, error, ready_at, placed_at, \
    started_at, finished_at, duration_ms";

fn attempt_from_row(r: &AnyRow) -> Attempt {
    Attempt {
        id: r.get(0),
        run_id: r.get(1),
        task: r.get(2),
        number: r.get(3),
        status: r.get(4),
        agent_id: r.get(5),
        lease_expires_at: r.get(6),
        not_before: r.get(7),
        avoid_agent: r.get(8),
        counts_retry: r.get::<i64, _>(9) != 0,
        cancel_requested: r.get::<i64, _>(10) != 0,
        scheduler_reason: r.get(11),
        error: r.get(12),
        ready_at: r.get(13),
        placed_at: r.get(14),
        started_at: r.get(15),
        finished_at: r.get(16),
        duration_ms: r.get(17),
    }
}

/// One attempt by id.
pub async fn get(db: &Db, attempt: i64) -> Result<Option<Attempt>, StorageError> {
    let row = sqlx::query(&format!(
        "SELECT {ATTEMPT_COLUMNS} FROM task_attempts WHERE id = $1"
    ))
    .bind(attempt)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.as_ref().map(attempt_from_row))
}

/// Every attempt of a run, by task and number.
pub async fn of_run(db: &Db, run_id: i64) -> Result<Vec<Attempt>, StorageError> {
    let rows = sqlx::query(&format!(
        "SELECT {ATTEMPT_COLUMNS} FROM task_attempts WHERE run_id = $1 ORDER BY task, number"
    ))
    .bind(run_id)
    .fetch_all(db.pool())
    .await?;
    Ok(rows.iter().map(attempt_from_row).collect())
}

/// `$first, $first+1, ...`: `count` placeholders.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}
