//! Caches as records: entries of a workflow's caches, each a list of
//! chunks (tar files) naming content-addressed blobs, as artifacts'
//! manifests do. An entry is `staged` by the attempt that saved it and
//! `saved` in the transaction that ends that attempt when it succeeded
//! (`save_attempt`); the first saved entry of a (workflow, name, key) wins.
//! Caches outlive runs; past the workflow's quota (`quota::Quotas`) the
//! least recently used entries are evicted as another is saved. Blobs are
//! left to the collector, which keeps every digest `cache_chunks` names.

use std::collections::BTreeSet;

use sqlx::Row;
use xene_core::artifact::{Digest, ManifestEntry};

use super::artifacts::{
    CHUNK, Staged, entry_of, insert_entries, lock_workflow, to_i64, touch_blobs, touch_sql,
};
use super::{Db, StorageError, WriteTx, now_ms};

pub mod quota;

pub use quota::Quotas;

/// Entries evicted per statement while a workflow is past its quota.
const EVICT_PAGE: i64 = 100;

/// The most saved entries a workflow keeps: past them the least recently
/// used are evicted as another is saved, whatever their bytes.
pub const MAX_ENTRIES: i64 = 10_000;

/// The most entries `list` shows (`CacheList::total` counts them all).
pub const LIST_LIMIT: usize = 200;

/// A saved entry, as `lookup` finds it for a restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub id: i64,
    /// Its full key (the one asked for, or one starting with a restore key).
    pub key: String,
    /// How many files its chunks hold.
    pub files: u64,
    /// Its chunks, by path.
    pub chunks: Vec<ManifestEntry>,
}

/// A saved entry, as pages and the API show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheView {
    pub id: i64,
    pub name: String,
    pub key: String,
    pub files: u64,
    pub bytes: u64,
    /// When it was saved (UTC ms).
    pub created_at: i64,
    /// When a restore last used it (UTC ms; its save at first).
    pub used_at: i64,
}

/// A workflow's saved entries: the `LIST_LIMIT` most recently used, and
/// how many there are and the bytes they take in all.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CacheList {
    pub entries: Vec<CacheView>,
    pub total: u64,
    pub bytes: u64,
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Stages the entry `key` of cache `name` of `workflow`, saved by
/// `attempt_id` with `chunks` holding `files` files: invisible until the
/// attempt succeeds. In one transaction that holds the attempt's row (so
/// it cannot end meanwhile) and touches every blob the chunks name, so the
/// collector cannot remove one. A staged entry of the same name by this
/// attempt is replaced.
pub async fn stage(
    db: &Db,
    attempt_id: i64,
    workflow: &str,
    name: &str,
    key: &str,
    files: u64,
    chunks: &[ManifestEntry],
) -> Result<Staged, StorageError> {
    if let Err(e) = xene_core::artifact::check_manifest(chunks) {
        return Ok(Staged::Invalid(e));
    }
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    let held: Option<i64> = sqlx::query_scalar(
        "UPDATE task_attempts SET id = id WHERE id = $1 AND status = 'running' RETURNING id",
    )
    .bind(attempt_id)
    .fetch_optional(&mut *tx)
    .await?;
    if held.is_none() {
        return Ok(Staged::NotRunning);
    }
    if let Some(missing) = touch_blobs(db, &mut tx, chunks, now).await? {
        return Ok(Staged::MissingBlob(missing));
    }
    sqlx::query("DELETE FROM caches WHERE attempt_id = $1 AND name = $2 AND state = 'staged'")
        .bind(attempt_id)
        .bind(name)
        .execute(&mut *tx)
        .await?;
    let bytes: u64 = chunks.iter().map(|f| f.size).fold(0, u64::saturating_add);
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO caches (workflow, name, key, attempt_id, state, files, bytes, created_at, used_at) \
         VALUES ($1, $2, $3, $4, 'staged', $5, $6, $7, $7) RETURNING id",
    )
    .bind(workflow)
    .bind(name)
    .bind(key)
    .bind(attempt_id)
    .bind(to_i64(files))
    .bind(to_i64(bytes))
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    insert_entries(
        &mut tx,
        "INSERT INTO cache_chunks (cache_id, path, size, mode, digest) VALUES",
        id,
        chunks,
    )
    .await?;
    tx.commit().await?;
    Ok(Staged::Stored)
}

/// Whether `workflow` has a saved entry `key` of cache `name` (a save of
/// it would change nothing: the first save of a key wins).
pub async fn is_saved(
    db: &Db,
    workflow: &str,
    name: &str,
    key: &str,
) -> Result<bool, StorageError> {
    let id: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM caches WHERE workflow = $1 AND name = $2 AND key = $3 AND state = 'saved'",
    )
    .bind(workflow)
    .bind(name)
    .bind(key)
    .fetch_optional(db.pool())
    .await?;
    Ok(id.is_some())
}

/// The attempt `attempt_id` ended, in the transaction that ended it: its
/// staged entries are saved when it `succeeded` (and `quota` is not 0),
/// each unless its (workflow, name, key) is saved already (the first save
/// wins); then each workflow saved to evicts its least recently used
/// entries while past `quota`, never one this attempt saved. The others
/// are dropped. Returns how many were saved.
pub async fn save_attempt(
    tx: &mut WriteTx,
    attempt_id: i64,
    succeeded: bool,
    quota: u64,
) -> Result<u64, sqlx::Error> {
    let staged: Vec<(i64, String, i64)> = if succeeded && quota > 0 {
        // In (name, key) order, as every save takes them: two attempts
        // saving the same keys on PostgreSQL wait on each other's unique
        // index entries in one order, never in a circle.
        sqlx::query_as(
            "SELECT id, workflow, bytes FROM caches WHERE attempt_id = $1 AND state = 'staged' \
             ORDER BY name, key, id",
        )
        .bind(attempt_id)
        .fetch_all(&mut **tx)
        .await?
    } else {
        Vec::new()
    };
    let now = now_ms();
    let mut saved = 0;
    let mut workflows = BTreeSet::new();
    for (id, workflow, bytes) in &staged {
        if to_u64(*bytes) > quota {
            continue;
        }
        // A copy, so a concurrent save of the same key (PostgreSQL) waits
        // on the unique index and then does nothing, instead of failing
        // the transaction that ends this attempt.
        let copy: Option<i64> = sqlx::query_scalar(
            "INSERT INTO caches (workflow, name, key, attempt_id, state, files, bytes, created_at, used_at) \
             SELECT workflow, name, key, attempt_id, 'saved', files, bytes, $1, $1 FROM caches \
             WHERE id = $2 ON CONFLICT DO NOTHING RETURNING id",
        )
        .bind(now)
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
        let Some(copy) = copy else { continue };
        sqlx::query("UPDATE cache_chunks SET cache_id = $1 WHERE cache_id = $2")
            .bind(copy)
            .bind(id)
            .execute(&mut **tx)
            .await?;
        saved += 1;
        workflows.insert(workflow.clone());
    }
    sqlx::query("DELETE FROM caches WHERE attempt_id = $1 AND state = 'staged'")
        .bind(attempt_id)
        .execute(&mut **tx)
        .await?;
    for workflow in &workflows {
        evict(tx, workflow, attempt_id, quota).await?;
    }
    Ok(saved)
}

/// Evicts `workflow`'s saved entries, least recently used first, while
/// they take more than `quota` bytes or are more than `MAX_ENTRIES`;
/// never one saved by `keep_attempt`.
async fn evict(
    tx: &mut WriteTx,
    workflow: &str,
    keep_attempt: i64,
    quota: u64,
) -> Result<u64, sqlx::Error> {
    // Two attempts' ends evicting in one workflow at once would count the
    // same entries and wait on each other's deletes (PostgreSQL).
    lock_workflow(tx, workflow).await?;
    let (count, total): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM caches \
         WHERE workflow = $1 AND state = 'saved'",
    )
    .bind(workflow)
    .fetch_one(&mut **tx)
    .await?;
    let mut total = to_u64(total);
    let mut count = count;
    let mut evicted = 0;
    while total > quota || count > MAX_ENTRIES {
        let page: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT id, bytes FROM caches WHERE workflow = $1 AND state = 'saved' \
             AND attempt_id <> $2 ORDER BY used_at, id LIMIT $3",
        )
        .bind(workflow)
        .bind(keep_attempt)
        .bind(EVICT_PAGE)
        .fetch_all(&mut **tx)
        .await?;
        if page.is_empty() {
            break;
        }
        for (id, bytes) in page {
            if total <= quota && count <= MAX_ENTRIES {
                break;
            }
            // Its chunks go with it (ON DELETE CASCADE).
            let deleted = sqlx::query("DELETE FROM caches WHERE id = $1")
                .bind(id)
                .execute(&mut **tx)
                .await?
                .rows_affected();
            if deleted == 1 {
                total = total.saturating_sub(to_u64(bytes));
                count -= 1;
                evicted += 1;
            }
        }
    }
    Ok(evicted)
}

/// Drops what `attempt_id` staged: an attempt that did not succeed saves
/// nothing.
pub async fn discard_staged(tx: &mut WriteTx, attempt_id: i64) -> Result<u64, sqlx::Error> {
    save_attempt(tx, attempt_id, false, 0).await
}

/// The saved entry of cache `name` of `workflow` to restore: `key`
/// exactly, else, for each of `restore_keys` in order, the most recently
/// saved entry whose key starts with it. In one write transaction: a hit
/// is marked used now, and the blobs it names are touched (so the
/// collector's grace covers the downloads even if the entry is evicted
/// meanwhile). An entry deleted meanwhile is passed over; one whose blobs
/// are not all in the store, or with no chunks, is a miss.
pub async fn lookup(
    db: &Db,
    workflow: &str,
    name: &str,
    key: &str,
    restore_keys: &[String],
) -> Result<Option<Found>, StorageError> {
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    let mut found: Option<(i64, String, i64)> = None;
    for prefix in std::iter::once(None).chain(restore_keys.iter().map(Some)) {
        let candidate: Option<(i64, String, i64)> = match prefix {
            None => {
                sqlx::query_as(
                    "SELECT id, key, files FROM caches WHERE workflow = $1 AND name = $2 \
                     AND key = $3 AND state = 'saved'",
                )
                .bind(workflow)
                .bind(name)
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?
            }
            // substr, not LIKE: a key's `%` and `_` are plain characters.
            Some(prefix) => {
                sqlx::query_as(
                    "SELECT id, key, files FROM caches WHERE workflow = $1 AND name = $2 \
                     AND state = 'saved' AND substr(key, 1, length(CAST($3 AS TEXT))) = $3 \
                     ORDER BY created_at DESC, id DESC LIMIT 1",
                )
                .bind(workflow)
                .bind(name)
                .bind(prefix)
                .fetch_optional(&mut *tx)
                .await?
            }
        };
        let Some(candidate) = candidate else { continue };
        // Held from here to the commit: a delete or an eviction meanwhile
        // (PostgreSQL) leaves nothing to update, and the next key is tried.
        let used: Option<i64> = sqlx::query_scalar(
            "UPDATE caches SET used_at = $1 WHERE id = $2 AND state = 'saved' RETURNING id",
        )
        .bind(now)
        .bind(candidate.0)
        .fetch_optional(&mut *tx)
        .await?;
        if used.is_some() {
            found = Some(candidate);
            break;
        }
    }
    let Some((id, key, files)) = found else {
        return Ok(None);
    };
    let rows = sqlx::query(
        "SELECT path, size, mode, digest FROM cache_chunks WHERE cache_id = $1 ORDER BY path",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    let chunks: Vec<ManifestEntry> = rows
        .iter()
        .map(|r| entry_of(r, 0))
        .collect::<Result<_, _>>()?;
    if chunks.is_empty() {
        return Ok(None);
    }
    // Unlike `touch_blobs`, which reads which digest fell short and goes
    // on when none is gone, the first short touch is a miss here.
    let digests: BTreeSet<&Digest> = chunks.iter().map(|c| &c.digest).collect();
    let digests: Vec<&Digest> = digests.into_iter().collect();
    for part in digests.chunks(CHUNK) {
        let sql = touch_sql(db, part.len());
        let mut query = sqlx::query(&sql).bind(now);
        for d in part {
            query = query.bind(d.as_str());
        }
        // A blob removed (or being removed by the collector): the entry
        // cannot be restored whole.
        if query.execute(&mut *tx).await?.rows_affected() as usize != part.len() {
            return Ok(None);
        }
    }
    tx.commit().await?;
    Ok(Some(Found {
        id,
        key,
        files: to_u64(files),
        chunks,
    }))
}

/// `workflow`'s saved entries, most recently used first (at most
/// `LIST_LIMIT`), with their count and bytes in all.
pub async fn list(db: &Db, workflow: &str) -> Result<CacheList, StorageError> {
    let rows = sqlx::query(
        "SELECT id, name, key, files, bytes, created_at, used_at FROM caches \
         WHERE workflow = $1 AND state = 'saved' ORDER BY used_at DESC, id DESC LIMIT $2",
    )
    .bind(workflow)
    .bind(LIST_LIMIT as i64)
    .fetch_all(db.pool())
    .await?;
    let entries = rows
        .iter()
        .map(|r| CacheView {
            id: r.get(0),
            name: r.get(1),
            key: r.get(2),
            files: to_u64(r.get(3)),
            bytes: to_u64(r.get(4)),
            created_at: r.get(5),
            used_at: r.get(6),
        })
        .collect();
    let (total, bytes): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM caches \
         WHERE workflow = $1 AND state = 'saved'",
    )
    .bind(workflow)
    .fetch_one(db.pool())
    .await?;
    Ok(CacheList {
        entries,
        total: to_u64(total),
        bytes: to_u64(bytes),
    })
}

/// Deletes `workflow`'s saved entry `id` (its blobs are left to the
/// collector): its name and key, none when it has no entry of that id.
pub async fn delete(
    db: &Db,
    workflow: &str,
    id: i64,
) -> Result<Option<(String, String)>, StorageError> {
    Ok(sqlx::query_as(
        "DELETE FROM caches WHERE id = $1 AND workflow = $2 AND state = 'saved' \
         RETURNING name, key",
    )
    .bind(id)
    .bind(workflow)
    .fetch_optional(&mut *db.write_conn().await?)
    .await?)
}

/// Deletes every entry of `workflow` (deleted), in the transaction that
/// deletes it; their blobs are left to the collector.
pub async fn delete_workflow(tx: &mut WriteTx, workflow: &str) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query("DELETE FROM caches WHERE workflow = $1")
        .bind(workflow)
        .execute(&mut **tx)
        .await?
        .rows_affected())
}

/// Bytes of `workflow`'s saved entries (each counted whole, even where
/// blobs are shared).
pub async fn usage(db: &Db, workflow: &str) -> Result<u64, StorageError> {
    let bytes: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM caches \
         WHERE workflow = $1 AND state = 'saved'",
    )
    .bind(workflow)
    .fetch_one(db.pool())
    .await?;
    Ok(to_u64(bytes))
}

/// Drops staged entries whose attempt is over (an attempt lost with its
/// agent, or failed by the server, ends without saving), staged before
/// `before`; how many.
pub async fn drop_orphan_staged(db: &Db, before: i64) -> Result<u64, StorageError> {
    Ok(sqlx::query(
        "DELETE FROM caches WHERE id IN (SELECT c.id FROM caches c WHERE c.state = 'staged' \
         AND c.created_at < $1 AND NOT EXISTS (SELECT 1 FROM task_attempts t \
         WHERE t.id = c.attempt_id AND t.status IN ('placed', 'running')) LIMIT 500)",
    )
    .bind(before)
    .execute(&mut *db.write_conn().await?)
    .await?
    .rows_affected())
}
