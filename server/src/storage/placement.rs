//! The runs still queued (none of their tasks placed yet). Task attempts
//! are placed, leased and renewed in `attempts`.

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
