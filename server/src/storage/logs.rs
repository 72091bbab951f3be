//! Step logs: stored once, append-only, as chunks with byte offsets in
//! their step's log, apart from the state rows. A step's log is capped:
//! past the cap the first half is kept whole and only the latest half
//! rolls, so the end, where errors are, is never lost. Every read is
//! bounded in bytes.

use sqlx::Row;

use super::{Db, StorageError, now_ms};

/// The per-step cap when none is set: 32 MiB.
pub const DEFAULT_CAP_BYTES: i64 = 32 * 1024 * 1024;
/// A chunk is cut at this size when appended, so no read holds more.
pub const MAX_CHUNK_BYTES: usize = 1024 * 1024;
/// The most one read returns (at least one chunk, whatever its size).
pub const MAX_READ_BYTES: i64 = 8 * 1024 * 1024;

pub use xene_api::feed::LogChunk;

/// Appends a chunk of a step's log inside the transaction that applies it,
/// then trims the step's log to the cap.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn append(
    tx: &mut super::WriteTx,
    cap: i64,
    run_id: i64,
    attempt: i64,
    task: &str,
    step: &str,
    stream: &str,
    data: &str,
    lines: i64,
    now: i64,
) -> Result<(), sqlx::Error> {
    let bytes = data.len() as i64;
    let total: i64 = sqlx::query_scalar(
        "INSERT INTO step_logs (run_id, attempt, task, step, bytes, lines) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (run_id, attempt, task, step) DO UPDATE SET bytes = step_logs.bytes + $5, lines = step_logs.lines + $6 \
         RETURNING bytes",
    )
    .bind(run_id)
    .bind(attempt)
    .bind(task)
    .bind(step)
    .bind(bytes)
    .bind(lines)
    .fetch_one(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO log_chunks (run_id, attempt, task, step, stream, offset_bytes, bytes, data, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(run_id)
    .bind(attempt)
    .bind(task)
    .bind(step)
    .bind(stream)
    .bind(total - bytes)
    .bind(bytes)
    .bind(data)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    if total > cap {
        let head = cap / 2;
        let tail = cap - head;
        // Chunks that began in the head stay; of the rest, those that ended
        // more than `tail` bytes ago go.
        sqlx::query(
            "DELETE FROM log_chunks WHERE run_id = $1 AND task = $2 AND step = $3 AND attempt = $4 \
             AND offset_bytes >= $5 AND offset_bytes + bytes <= $6",
        )
        .bind(run_id)
        .bind(task)
        .bind(step)
        .bind(attempt)
        .bind(head)
        .bind(total - tail)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Which chunks a read wants.
#[derive(Debug, Default, Clone)]
pub struct Filter<'a> {
    pub task: Option<&'a str>,
    pub step: Option<&'a str>,
    /// Chunks after this cursor.
    pub after: i64,
    /// At most this many bytes of data (but at least one chunk).
    pub max_bytes: i64,
}

/// Chunks of a run in the order they arrived, bounded in bytes: first the
/// sizes are read, then only the rows that fit.
pub async fn chunks(
    db: &Db,
    run_id: i64,
    filter: &Filter<'_>,
) -> Result<Vec<LogChunk>, StorageError> {
    let sizes: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT id, bytes FROM log_chunks WHERE run_id = $1 AND id > $2 \
         AND ($3 IS NULL OR task = $3) AND ($4 IS NULL OR step = $4) ORDER BY id LIMIT 1000",
    )
    .bind(run_id)
    .bind(filter.after)
    .bind(filter.task)
    .bind(filter.step)
    .fetch_all(db.pool())
    .await?;
    let max = filter.max_bytes.clamp(1, MAX_READ_BYTES);
    let mut last = None;
    let mut sum = 0;
    for (id, bytes) in sizes {
        if last.is_some() && sum + bytes > max {
            break;
        }
        sum += bytes;
        last = Some(id);
    }
    let Some(last) = last else {
        return Ok(Vec::new());
    };
    let rows = sqlx::query(
        "SELECT id, attempt, task, step, stream, offset_bytes, data, at FROM log_chunks \
         WHERE run_id = $1 AND id > $2 AND id <= $3 AND ($4 IS NULL OR task = $4) AND ($5 IS NULL OR step = $5) ORDER BY id",
    )
    .bind(run_id)
    .bind(filter.after)
    .bind(last)
    .bind(filter.task)
    .bind(filter.step)
    .fetch_all(db.pool())
    .await?;
    Ok(rows.iter().map(chunk_from).collect())
}

fn chunk_from(row: &sqlx::any::AnyRow) -> LogChunk {
    LogChunk {
        cursor: row.get(0),
        attempt: row.get(1),
        task: row.get(2),
        step: row.get(3),
        stream: row.get(4),
        offset: row.get(5),
        data: row.get(6),
        at: row.get(7),
    }
}

/// A step's log from byte `from` on, in order, bounded in bytes; for the
/// raw download, which pages through it with the returned chunks' ends.
pub async fn step_chunks(
    db: &Db,
    run_id: i64,
    attempt: i64,
    task: &str,
    step: &str,
    from: i64,
    max_bytes: i64,
) -> Result<Vec<LogChunk>, StorageError> {
    let sizes: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT offset_bytes, bytes FROM log_chunks WHERE run_id = $1 AND attempt = $2 AND task = $3 AND step = $4 \
         AND offset_bytes >= $5 ORDER BY offset_bytes LIMIT 1000",
    )
    .bind(run_id)
    .bind(attempt)
    .bind(task)
    .bind(step)
    .bind(from)
    .fetch_all(db.pool())
    .await?;
    let mut last = None;
    let mut sum = 0;
    for (offset, bytes) in sizes {
        if last.is_some() && sum + bytes > max_bytes {
            break;
        }
        sum += bytes;
        last = Some(offset);
    }
    let Some(last) = last else {
        return Ok(Vec::new());
    };
    let rows = sqlx::query(
        "SELECT id, attempt, task, step, stream, offset_bytes, data, at FROM log_chunks \
         WHERE run_id = $1 AND attempt = $2 AND task = $3 AND step = $4 AND offset_bytes >= $5 AND offset_bytes <= $6 \
         ORDER BY offset_bytes",
    )
    .bind(run_id)
    .bind(attempt)
    .bind(task)
    .bind(step)
    .bind(from)
    .bind(last)
    .fetch_all(db.pool())
    .await?;
    Ok(rows.iter().map(chunk_from).collect())
}

/// The latest attempt that logged anything for a step.
pub async fn latest_attempt(
    db: &Db,
    run_id: i64,
    task: &str,
    step: &str,
) -> Result<Option<i64>, StorageError> {
    Ok(sqlx::query_scalar(
        "SELECT MAX(attempt) FROM step_logs WHERE run_id = $1 AND task = $2 AND step = $3",
    )
    .bind(run_id)
    .bind(task)
    .bind(step)
    .fetch_one(db.pool())
    .await?)
}

/// Deletes the logs and events of runs that finished before `before_ms`
/// and are not pinned, a bounded batch at a time; returns how many rows
/// went.
pub async fn prune(db: &Db, before_ms: i64) -> Result<u64, StorageError> {
    let mut total = 0;
    for table in ["log_chunks", "step_logs", "run_events"] {
        // Subqueries keep each statement portable and bounded.
        let sql = format!(
            "DELETE FROM {table} WHERE run_id IN (SELECT id FROM runs WHERE finished_at IS NOT NULL AND finished_at < $1 \
             AND pinned_at IS NULL AND id IN (SELECT DISTINCT run_id FROM {table}) LIMIT 100)"
        );
        total += sqlx::query(&sql)
            .bind(before_ms)
            .execute(&mut *db.write_conn().await?)
            .await?
            .rows_affected();
    }
    // A task attempt's events are keyed by the attempt, not the run.
    total += sqlx::query(
        "DELETE FROM attempt_events WHERE attempt_id IN (SELECT a.id FROM task_attempts a \
         JOIN runs r ON r.id = a.run_id WHERE r.finished_at IS NOT NULL AND r.finished_at < $1 \
         AND r.pinned_at IS NULL AND a.id IN (SELECT DISTINCT attempt_id FROM attempt_events) LIMIT 100)",
    )
    .bind(before_ms)
    .execute(&mut *db.write_conn().await?)
    .await?
    .rows_affected();
    Ok(total)
}

/// Prunes now and then until `stop`; a retention of zero keeps everything.
pub async fn prune_forever(
    db: Db,
    retention: std::time::Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    if retention.is_zero() {
        return;
    }
    loop {
        let before = now_ms() - retention.as_millis() as i64;
        match super::retention::prune_records(&db, before).await {
            Ok(n) => tracing::debug!(rows = n, "pruned old tokens, agents and versions"),
            Err(e) => tracing::warn!(error = %e, "pruning old records failed"),
        }
        loop {
            match prune(&db, before).await {
                Ok(0) => break,
                Ok(n) => tracing::debug!(rows = n, "pruned old logs and events"),
                Err(e) => {
                    tracing::warn!(error = %e, "pruning old logs and events failed");
                    break;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {}
            _ = stop.cancelled() => return,
        }
    }
}
