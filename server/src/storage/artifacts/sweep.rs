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

use crate::storage::{Db, StorageError, now_ms};

/// A claim older than this was left by a collector that stopped half-way:
/// a live one lasts one object's deletion, and its collector renews its
/// lease (`controllers::collector`) far more often than this.
pub const STALE_CLAIM_MS: i64 = 10 * 60 * 1000;

/// Up to `limit` digests whose row no manifest and no cache entry names
/// and nobody touched since `cutoff` (UTC ms), least recently touched
/// first.
pub async fn unreferenced(db: &Db, cutoff: i64, limit: i64) -> Result<Vec<Digest>, StorageError> {
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT digest FROM blobs b WHERE b.touched_at >= 0 AND b.touched_at < $1 \
         AND NOT EXISTS (SELECT 1 FROM artifact_files f WHERE f.digest = b.digest) \
         AND NOT EXISTS (SELECT 1 FROM cache_chunks c WHERE c.digest = b.digest) \
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

/// A claim made now: negative, and stamped with the time it is made, so
/// `release_stale` of another collector never takes one in use.
fn claim_now() -> i64 {
    -now_ms().max(1)
}

/// Turns `digest`'s row into a claim (stamped now) if no manifest or cache
/// entry names it and nobody touched it since `cutoff`; the claim when
/// claimed, for `release`.
///
/// The manifests are looked at again once the row is held: on
/// PostgreSQL, an `UPDATE` that waited for a publish's transaction re-reads
/// the row but not the manifests that transaction added, and a publish
/// (or a cache's stage) always touches (and so holds) the row before it
/// adds its manifest (or chunks).
pub async fn claim_row(db: &Db, digest: &Digest, cutoff: i64) -> Result<Option<i64>, StorageError> {
    let mut tx = db.begin_write().await?;
    let claim = claim_now();
    let claimed = sqlx::query(
        "UPDATE blobs SET touched_at = $1 WHERE digest = $2 AND touched_at >= 0 AND touched_at < $3 \
         AND NOT EXISTS (SELECT 1 FROM artifact_files f WHERE f.digest = blobs.digest) \
         AND NOT EXISTS (SELECT 1 FROM cache_chunks c WHERE c.digest = blobs.digest)",
    )
    .bind(claim)
    .bind(digest.as_str())
    .bind(cutoff)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if claimed == 0 {
        return Ok(None);
    }
    let named: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM artifact_files WHERE digest = $1 \
         UNION ALL SELECT 1 FROM cache_chunks WHERE digest = $1 LIMIT 1",
    )
    .bind(digest.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    if named.is_some() {
        tx.rollback().await?;
        return Ok(None);
    }
    tx.commit().await?;
    Ok(Some(claim))
}

/// Claims `digest`, which has no row (an object whose upload was never
/// committed), stamped now; none when a row (live or claimed) exists.
pub async fn claim_absent(db: &Db, digest: &Digest) -> Result<Option<i64>, StorageError> {
    let claim = claim_now();
    let claimed = sqlx::query(
        "INSERT INTO blobs (digest, size, touched_at) VALUES ($1, 0, $2) ON CONFLICT (digest) DO NOTHING",
    )
    .bind(digest.as_str())
    .bind(claim)
    .execute(&mut *db.write_conn().await?)
    .await?
    .rows_affected();
    Ok((claimed == 1).then_some(claim))
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
    let mut conn = db.pool().acquire().await?;
    for chunk in digests.chunks(super::CHUNK) {
        let chunk: Vec<&Digest> = chunk.iter().collect();
        out.extend(super::rows_of(&mut conn, &chunk, false).await?);
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
