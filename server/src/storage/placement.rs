//! Runs as a whole on their way to agents: the runs still queued (none of
//! their tasks placed yet), and ending the leases an agent holds when it
//! will not report on them. Task attempts are placed, leased and renewed in
//! `attempts`.

use super::runs::{RUN_COLUMNS, Run, run_from_row};
use super::{Db, StorageError};

/// Runs waiting for an agent (none of their tasks placed yet) after
/// `after_id`, oldest first.
pub async fn queued(db: &Db, after_id: i64, limit: i64) -> Result<Vec<Run>, StorageError> {
    let rows = sqlx::query(&format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE status = 'queued' AND id > $1 ORDER BY id LIMIT $2"
    ))
    .bind(after_id)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(run_from_row).collect()
}

/// Ends the leases of every run and task attempt `agent` holds: it will
/// not report on them (it restarted, or was revoked), so the supervisor
/// deals with them now rather than when the leases run out.
pub async fn end_leases_of(db: &Db, agent: &str) -> Result<(), StorageError> {
    sqlx::query(
        "UPDATE runs SET lease_expires_at = 0 WHERE agent_id = $1 \
         AND status IN ('starting_up', 'running', 'shutting_down')",
    )
    .bind(agent)
    .execute(&mut *db.write_conn().await?)
    .await?;
    super::attempts::end_leases_of(db, agent).await?;
    Ok(())
}
