//! The records side of the artifact collector (mark and sweep): which blob
//! rows no manifest names and nobody touched within the grace, and the
//! claims that keep a digest's row away while its object is deleted.
//!
//! A claim is a `blobs` row with `touched_at = -(when it was claimed)`:
//! `missing_blobs` counts it as missing, `stage` refuses it, and
//! `insert_blobs` waits until it is given up. So an object is deleted only
//! while its digest has a claim and no live row, and a publish that
//! inserts its row first, then checks the object, never counts on an
//! object the collector deletes.

use std::collections::BTreeSet;

use xene_core::artifact::Digest;

use super::placeholders;
use crate::storage::{Db, StorageError};

/// A claim older than this was left by a collector that stopped half-way.
pub const STALE_CLAIM_MS: i64 = 10 * 60 * 1000;

/// Up to `limit` digests whose row no manifest names and nobody touched
/// since `cutoff` (UTC ms), least recently touched first.
pub async fn unreferenced(db: &Db, cutoff: i64, limit: i64) -> Result<Vec<Digest>, StorageError> {
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT digest FROM blobs b WHERE b.touched_at >= 0 AND b.touched_at < $1 \
         AND NOT EXISTS (SELECT 1 FROM artifact_files f WHERE f.digest = b.digest) \
         ORDER BY b.touched_at LIMIT $2",
    )
    .bind(cutoff)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|d| Digest::parse(d).map_err(StorageError::Corrupt))
        .collect()
}

/// Turns `digest`'s row into the claim `claim` (a negative time) if no
/// manifest names it and nobody touched it since `cutoff`; true when
/// claimed.
///
/// The manifests are looked at again once the row is held: on
/// PostgreSQL, an `UPDATE` that waited for a publish's transaction re-reads
/// the row but not the manifests that transaction added, and a publish
/// always touches (and so holds) the row before it adds its manifest.
pub async fn claim_row(
    db: &Db,
    digest: &Digest,
    cutoff: i64,
    claim: i64,
) -> Result<bool, StorageError> {
    debug_assert!(claim < 0);
    let mut tx = db.begin_write().await?;
    let claimed = sqlx::query(
        "UPDATE blobs SET touched_at = $1 WHERE digest = $2 AND touched_at >= 0 AND touched_at < $3 \
         AND NOT EXISTS (SELECT 1 FROM artifact_files f WHERE f.digest = blobs.digest)",
    )
    .bind(claim)
    .bind(digest.as_str())
    .bind(cutoff)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if claimed == 0 {
        return Ok(false);
    }
    let named: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM artifact_files WHERE digest = $1 LIMIT 1")
            .bind(digest.as_str())
            .fetch_optional(&mut *tx)
            .await?;
    if named.is_some() {
        tx.rollback().await?;
        return Ok(false);
    }
    tx.commit().await?;
    Ok(true)
}

/// Claims `digest`, which has no row (an object whose upload was never
/// committed); false when a row (live or claimed) exists.
pub async fn claim_absent(db: &Db, digest: &Digest, claim: i64) -> Result<bool, StorageError> {
    debug_assert!(claim < 0);
    let claimed = sqlx::query(
        "INSERT INTO blobs (digest, size, touched_at) VALUES ($1, 0, $2) ON CONFLICT (digest) DO NOTHING",
    )
    .bind(digest.as_str())
    .bind(claim)
    .execute(&mut *db.write_conn().await?)
    .await?
    .rows_affected();
    Ok(claimed == 1)
}

/// Gives up the claim: the digest has no row any more.
pub async fn release(db: &Db, digest: &Digest, claim: i64) -> Result<(), StorageError> {
    sqlx::query("DELETE FROM blobs WHERE digest = $1 AND touched_at = $2")
        .bind(digest.as_str())
        .bind(claim)
        .execute(&mut *db.write_conn().await?)
        .await?;
    Ok(())
}

/// Drops claims made before `before` (UTC ms) by a collector that stopped
/// half-way; how many.
pub async fn release_stale(db: &Db, before: i64) -> Result<u64, StorageError> {
    Ok(
        sqlx::query("DELETE FROM blobs WHERE touched_at < 0 AND touched_at > $1")
            .bind(-before)
            .execute(&mut *db.write_conn().await?)
            .await?
            .rows_affected(),
    )
}

/// Which of `digests` have a row, live or claimed.
pub async fn with_rows(db: &Db, digests: &[Digest]) -> Result<BTreeSet<String>, StorageError> {
    let mut out = BTreeSet::new();
    for chunk in digests.chunks(super::CHUNK) {
        let sql = format!(
            "SELECT digest FROM blobs WHERE digest IN ({})",
            placeholders(1, chunk.len())
        );
        let mut query = sqlx::query_scalar::<_, String>(&sql);
        for d in chunk {
            query = query.bind(d.as_str());
        }
        out.extend(query.fetch_all(db.pool()).await?);
    }
    Ok(out)
}

/// Drops staged manifests whose attempt is over (an attempt lost with its
/// agent ends without publishing), staged before `before`; how many.
pub async fn drop_orphan_staged(db: &Db, before: i64) -> Result<u64, StorageError> {
    Ok(sqlx::query(
        "DELETE FROM artifacts WHERE id IN (SELECT a.id FROM artifacts a WHERE a.state = 'staged' \
         AND a.created_at < $1 AND NOT EXISTS (SELECT 1 FROM task_attempts t \
         WHERE t.id = a.attempt_id AND t.status IN ('placed', 'running')) LIMIT 500)",
    )
    .bind(before)
    .execute(&mut *db.write_conn().await?)
    .await?
    .rows_affected())
}
