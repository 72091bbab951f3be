//! What each task attempt's cache restores found (`attempt_caches`), kept
//! so that a task's result tells the tasks that read it
//! (`if: tasks.build.caches.cargo == 'miss'`). A task's result is that of
//! the attempt it ended with (`task_runs.attempt`), so a retry's restores
//! replace the failed try's.

use std::collections::BTreeMap;

use sqlx::Row;
use xene_core::cache::{CacheHit, MAX_CACHES};

/// Records what one cache's restore found for `attempt`, while it runs.
/// The first report of a cache stays (the same event sent again changes
/// nothing), and an attempt keeps at most `MAX_CACHES` of them: an agent
/// cannot grow the table past what a task may declare.
pub async fn record(
    conn: &mut sqlx::AnyConnection,
    attempt: i64,
    name: &str,
    hit: CacheHit,
    key: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO attempt_caches (attempt_id, name, hit, key) SELECT $1, $2, $3, $4 \
         WHERE (SELECT COUNT(*) FROM attempt_caches WHERE attempt_id = $1) < $5 \
         AND EXISTS (SELECT 1 FROM task_attempts WHERE id = $1 AND status IN ('placed', 'running')) \
         ON CONFLICT (attempt_id, name) DO NOTHING",
    )
    .bind(attempt)
    .bind(name)
    .bind(hit.as_str())
    .bind(key)
    .bind(MAX_CACHES as i64)
    .execute(conn)
    .await?;
    Ok(())
}

/// The restores of the attempts that gave `tasks` (of `run_id`) their
/// results, by task then cache; a task without any is absent.
pub async fn of_results(
    conn: &mut sqlx::AnyConnection,
    run_id: i64,
    tasks: &[&str],
) -> Result<BTreeMap<String, BTreeMap<String, CacheHit>>, sqlx::Error> {
    let mut out: BTreeMap<String, BTreeMap<String, CacheHit>> = BTreeMap::new();
    for chunk in tasks.chunks(100) {
        let placeholders: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "SELECT a.task, c.name, c.hit FROM task_runs t \
             JOIN task_attempts a ON a.run_id = t.run_id AND a.task = t.task AND a.number = t.attempt \
             JOIN attempt_caches c ON c.attempt_id = a.id \
             WHERE t.run_id = $1 AND t.task IN ({})",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(&sql).bind(run_id);
        for task in chunk {
            query = query.bind(*task);
        }
        for row in query.fetch_all(&mut *conn).await? {
            let hit: String = row.get(2);
            // Written by `record` only; another word is passed over.
            let Ok(hit) = hit.parse::<CacheHit>() else {
                continue;
            };
            out.entry(row.get(0)).or_default().insert(row.get(1), hit);
        }
    }
    Ok(out)
}
