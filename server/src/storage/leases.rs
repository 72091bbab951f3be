//! Named leases: whoever holds one does that singleton job (scheduling,
//! supervision) until it stops renewing; then another server takes over.

use super::{Db, StorageError, now_ms};

/// Takes or renews the lease `name` for `holder`. True when `holder` holds it now.
pub async fn acquire(db: &Db, name: &str, holder: &str, ttl_ms: i64) -> Result<bool, StorageError> {
    let now = now_ms();
    let result = sqlx::query(
        "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
         WHERE leases.holder = excluded.holder OR leases.expires_at < $4",
    )
    .bind(name)
    .bind(holder)
    .bind(now + ttl_ms)
    .bind(now)
    .execute(&mut *db.write_conn().await?)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Gives the lease up at once, so another server need not wait for it to expire.
pub async fn release(db: &Db, name: &str, holder: &str) -> Result<(), StorageError> {
    sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
        .bind(name)
        .bind(holder)
        .execute(&mut *db.write_conn().await?)
        .await?;
    Ok(())
}

pub async fn holder(db: &Db, name: &str) -> Result<Option<String>, StorageError> {
    Ok(
        sqlx::query_scalar("SELECT holder FROM leases WHERE name = $1 AND expires_at >= $2")
            .bind(name)
            .bind(now_ms())
            .fetch_optional(db.pool())
            .await?,
    )
}
