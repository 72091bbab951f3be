//! Artifacts as records: manifests of content-addressed blobs, `staged` by
//! the attempt that committed them and `published` in the transaction that
//! makes that attempt final (`publish_attempt`), so a failed or lost attempt
//! never leaves one visible; the `blobs` the object store holds; pins.
//!
//! The blobs' rows and the collector (`artifacts/sweep.rs`) agree through
//! `touched_at`: a publish touches every blob it counts on, and the
//! collector removes only rows no manifest names and nobody touched for
//! `GRACE_MS`. A negative `touched_at` is the collector's claim on a digest
//! whose object it is deleting: such a row counts as missing.

use std::collections::BTreeSet;

use sqlx::Row;
use xene_core::artifact::{Digest, ManifestEntry};

use super::{Db, StorageError, WriteTx, now_ms};

pub mod sweep;

/// How long a blob nobody names is kept after a publish last counted on it
/// (and an object without a row after it was written): longer than any
/// publish takes between asking which blobs are missing and committing.
/// An agent may upload through a URL until it expires (up to
/// `config::artifacts::MAX_URL_TTL`, 1 h) and commits only once all its
/// uploads are done, so the first objects of a long publish stay rowless
/// for that long: the grace is the longest URL life plus 2 h to spare.
pub const GRACE_MS: i64 = 3 * 3600 * 1000;

/// The most manifest entries `list_run` shows for a whole run, in (task,
/// name, path) order (besides one-file artifacts' entries); each
/// artifact's `files` says how many it has (`published` reads them all).
pub const ENTRIES_SHOWN: usize = 1000;

/// Rows per multi-row statement: within both backends' placeholder limits.
pub(super) const CHUNK: usize = 500;

/// How often `insert_blobs` looks again at a digest the collector is
/// deleting right now (a claim lasts one object's deletion).
const CLAIM_WAITS: u32 = 20;

/// What `stage` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Staged {
    /// Stored, staged for the attempt (replacing what it staged before
    /// under that name).
    Stored,
    /// The attempt is not running (ended, lost, or not of that run and
    /// task): nothing was stored.
    NotRunning,
    /// A blob the manifest names has no row (never committed, or removed by
    /// the collector): nothing was stored.
    MissingBlob(Digest),
    /// The manifest is not a valid one: nothing was stored.
    Invalid(String),
    /// The workflow keeps `kept` bytes of artifacts besides what this one
    /// replaces: with it, more than its `quota` (`--artifact-quota`).
    /// Nothing was stored.
    OverQuota {
        workflow: String,
        kept: u64,
        quota: u64,
    },
}

/// A published artifact, as pages and the API show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactView {
    pub task: String,
    pub name: String,
    pub attempt_id: i64,
    pub when_always: bool,
    pub files: u64,
    pub bytes: u64,
    pub created_at: i64,
    /// The first `ENTRIES_SHOWN` entries, by path.
    pub entries: Vec<ManifestEntry>,
}

pub(super) fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Stores the manifest `name` committed by `attempt_id` (of `task` in
/// `run_id`), staged: invisible until the attempt ends. In one transaction
/// that holds the attempt's row (so it cannot end meanwhile) and touches
/// every blob the manifest names, so the collector cannot remove one.
#[allow(clippy::too_many_arguments)]
pub async fn stage(
    db: &Db,
    attempt_id: i64,
    run_id: i64,
    task: &str,
    name: &str,
    when_always: bool,
    files: &[ManifestEntry],
) -> Result<Staged, StorageError> {
    if let Err(e) = xene_core::artifact::check_manifest(files) {
        return Ok(Staged::Invalid(e));
    }
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    let held: Option<i64> = sqlx::query_scalar(
        "UPDATE task_attempts SET id = id WHERE id = $1 AND run_id = $2 AND task = $3 \
         AND status = 'running' RETURNING id",
    )
    .bind(attempt_id)
    .bind(run_id)
    .bind(task)
    .fetch_optional(&mut *tx)
    .await?;
    if held.is_none() {
        return Ok(Staged::NotRunning);
    }
    let bytes: u64 = files.iter().map(|f| f.size).fold(0, u64::saturating_add);
    if let Some(quota) = db.quotas().artifact_bytes {
        // Counted and compared here, with the workflow's writers taking
        // turns: two commits checked at once would both pass.
        let workflow: String = sqlx::query_scalar("SELECT workflow FROM runs WHERE id = $1")
            .bind(run_id)
            .fetch_one(&mut *tx)
            .await?;
        lock_workflow(&mut tx, &workflow).await?;
        let kept = artifact_bytes_besides(&mut tx, &workflow, run_id, name).await?;
        if kept.saturating_add(bytes) > quota {
            return Ok(Staged::OverQuota {
                workflow,
                kept,
                quota,
            });
        }
    }
    if let Some(missing) = touch_blobs(db, &mut tx, files, now).await? {
        return Ok(Staged::MissingBlob(missing));
    }
    sqlx::query("DELETE FROM artifacts WHERE attempt_id = $1 AND name = $2 AND state = 'staged'")
        .bind(attempt_id)
        .bind(name)
        .execute(&mut *tx)
        .await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO artifacts (run_id, task, name, attempt_id, state, when_always, files, bytes, created_at) \
         VALUES ($1, $2, $3, $4, 'staged', $5, $6, $7, $8) RETURNING id",
    )
    .bind(run_id)
    .bind(task)
    .bind(name)
    .bind(attempt_id)
    .bind(i64::from(when_always))
    .bind(files.len() as i64)
    .bind(to_i64(bytes))
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    insert_entries(
        &mut tx,
        "INSERT INTO artifact_files (artifact_id, path, size, mode, digest) VALUES",
        id,
        files,
    )
    .await?;
    tx.commit().await?;
    Ok(Staged::Stored)
}

/// Touches the live blob rows of every digest `entries` name (see
/// `touch_sql`): the first digest without one (missing, or claimed by the
/// collector), if any.
pub(super) async fn touch_blobs(
    db: &Db,
    tx: &mut WriteTx,
    entries: &[ManifestEntry],
    now: i64,
) -> Result<Option<Digest>, sqlx::Error> {
    let digests: BTreeSet<&Digest> = entries.iter().map(|f| &f.digest).collect();
    let digests: Vec<&Digest> = digests.into_iter().collect();
    for chunk in digests.chunks(CHUNK) {
        let sql = touch_sql(db, chunk.len());
        let mut query = sqlx::query(&sql).bind(now);
        for d in chunk {
            query = query.bind(d.as_str());
        }
        let touched = query.execute(&mut **tx).await?.rows_affected();
        if touched as usize != chunk.len() {
            let present = rows_of(tx, chunk, true).await?;
            if let Some(missing) = chunk.iter().find(|d| !present.contains(d.as_str())) {
                return Ok(Some((*missing).clone()));
            }
        }
    }
    Ok(None)
}

/// Inserts `entries` as manifest rows of the record `id`: `insert` is the
/// statement up to its values, its columns (record id, path, size, mode,
/// digest).
pub(super) async fn insert_entries(
    tx: &mut WriteTx,
    insert: &str,
    id: i64,
    entries: &[ManifestEntry],
) -> Result<(), sqlx::Error> {
    for chunk in entries.chunks(CHUNK) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| {
                let p = 2 + i * 4;
                format!("($1, ${p}, ${}, ${}, ${})", p + 1, p + 2, p + 3)
            })
            .collect();
        let sql = format!("{insert} {}", rows.join(", "));
        let mut query = sqlx::query(&sql).bind(id);
        for f in chunk {
            query = query
                .bind(f.path.as_str())
                .bind(to_i64(f.size))
                .bind(i64::from(f.mode & 0o777))
                .bind(f.digest.as_str());
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// The statement that touches the live rows of `n` digests (bound from
/// `$2`, `$1` the time). On PostgreSQL it locks them in digest order first:
/// every writer of several blob rows takes them in that order (chunks too
/// go in that order), so two publishes, or a publish and a `missing_blobs`,
/// never wait on each other in a circle. A row claimed meanwhile by the
/// collector is re-read once its claim commits, and left out.
pub(super) fn touch_sql(db: &Db, n: usize) -> String {
    let digests = placeholders(2, n);
    match db.backend() {
        super::Backend::Postgres => format!(
            "UPDATE blobs SET touched_at = $1 WHERE digest IN (SELECT digest FROM blobs \
             WHERE touched_at >= 0 AND digest IN ({digests}) ORDER BY digest FOR UPDATE) \
             AND touched_at >= 0"
        ),
        super::Backend::Sqlite => {
            format!(
                "UPDATE blobs SET touched_at = $1 WHERE touched_at >= 0 AND digest IN ({digests})"
            )
        }
    }
}

/// Bytes of `workflow`'s artifacts, published and staged, besides those of
/// (`run_id`, `name`), which a commit of that name in that run replaces.
/// Each state is summed on its own, through its partial index by run.
pub async fn artifact_bytes_besides(
    conn: &mut sqlx::AnyConnection,
    workflow: &str,
    run_id: i64,
    name: &str,
) -> Result<u64, sqlx::Error> {
    let mut total: u64 = 0;
    for state in ["published", "staged"] {
        let sql = format!(
            "SELECT CAST(COALESCE(SUM(a.bytes), 0) AS BIGINT) FROM runs r \
             JOIN artifacts a ON a.run_id = r.id AND a.state = '{state}' \
             WHERE r.workflow = $1 AND NOT (a.run_id = $2 AND a.name = $3)"
        );
        let bytes: i64 = sqlx::query_scalar(&sql)
            .bind(workflow)
            .bind(run_id)
            .bind(name)
            .fetch_one(&mut *conn)
            .await?;
        total = total.saturating_add(u64::try_from(bytes).unwrap_or(0));
    }
    Ok(total)
}

/// Serializes, until `tx` ends, the writers that count `workflow`'s bytes
/// against a quota and then add or evict (a stage past `--artifact-quota`,
/// an eviction past `--cache-quota`), so two never both pass on one count.
/// PostgreSQL only: a SQLite write transaction holds the database's lock.
/// The two-key form (25 for issue 25) keeps apart from the one-key lock
/// `workflows::apply` takes on the same name.
pub async fn lock_workflow(tx: &mut WriteTx, workflow: &str) -> Result<(), sqlx::Error> {
    if tx.backend_name() == "PostgreSQL" {
        sqlx::query("SELECT pg_advisory_xact_lock(25, hashtext($1))")
            .bind(workflow)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Which of `digests` (at most `CHUNK`) have a row: a live one only when
/// `live`, else live or claimed by the collector.
pub(super) async fn rows_of(
    conn: &mut sqlx::AnyConnection,
    digests: &[&Digest],
    live: bool,
) -> Result<BTreeSet<String>, sqlx::Error> {
    let sql = format!(
        "SELECT digest FROM blobs WHERE {}digest IN ({})",
        if live { "touched_at >= 0 AND " } else { "" },
        placeholders(1, digests.len())
    );
    let mut query = sqlx::query_scalar::<_, String>(&sql);
    for d in digests {
        query = query.bind(d.as_str());
    }
    Ok(query.fetch_all(conn).await?.into_iter().collect())
}

/// The attempt `attempt_id` ended, in the transaction that ended it: its
/// staged manifests are published when it `succeeded`, or whatever the end
/// for those of `when: always`, each replacing the one published before
/// under its (run, name); the others are dropped. Returns how many were
/// published.
pub async fn publish_attempt(
    tx: &mut WriteTx,
    attempt_id: i64,
    succeeded: bool,
) -> Result<u64, sqlx::Error> {
    let staged: Vec<(i64, i64, String)> = sqlx::query_as(
        "SELECT id, run_id, name FROM artifacts WHERE attempt_id = $1 AND state = 'staged' \
         AND ($2 = 1 OR when_always = 1) ORDER BY id",
    )
    .bind(attempt_id)
    .bind(i64::from(succeeded))
    .fetch_all(&mut **tx)
    .await?;
    for (id, run_id, name) in &staged {
        // Its files go with it (ON DELETE CASCADE).
        sqlx::query(
            "DELETE FROM artifacts WHERE run_id = $1 AND name = $2 AND state = 'published'",
        )
        .bind(run_id)
        .bind(name)
        .execute(&mut **tx)
        .await?;
        sqlx::query("UPDATE artifacts SET state = 'published' WHERE id = $1")
            .bind(id)
            .execute(&mut **tx)
            .await?;
    }
    discard_staged(tx, attempt_id).await?;
    Ok(staged.len() as u64)
}

/// Drops what `attempt_id` staged and did not publish: an attempt lost with
/// its agent (ended `unknown`) never publishes.
pub async fn discard_staged(tx: &mut WriteTx, attempt_id: i64) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query("DELETE FROM artifacts WHERE attempt_id = $1 AND state = 'staged'")
            .bind(attempt_id)
            .execute(&mut **tx)
            .await?
            .rows_affected(),
    )
}

pub(super) fn entry_of(r: &sqlx::any::AnyRow, first: usize) -> Result<ManifestEntry, StorageError> {
    let digest: String = r.get(first + 3);
    Ok(ManifestEntry {
        path: r.get(first),
        size: u64::try_from(r.get::<i64, _>(first + 1)).unwrap_or(0),
        mode: u32::try_from(r.get::<i64, _>(first + 2)).unwrap_or(0) & 0o777,
        digest: Digest::parse(&digest).map_err(StorageError::Corrupt)?,
    })
}

async fn entries(
    db: &Db,
    artifact_id: i64,
    limit: usize,
) -> Result<Vec<ManifestEntry>, StorageError> {
    let rows = sqlx::query(
        "SELECT path, size, mode, digest FROM artifact_files WHERE artifact_id = $1 ORDER BY path LIMIT $2",
    )
    .bind(artifact_id)
    .bind(limit as i64)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(|r| entry_of(r, 0)).collect()
}

/// The entries of the artifacts `ids`, whose files add up to at most
/// `ENTRIES_SHOWN`, by artifact: one query per `CHUNK` of them.
async fn entries_of(
    db: &Db,
    ids: &[i64],
) -> Result<std::collections::HashMap<i64, Vec<ManifestEntry>>, StorageError> {
    let mut out: std::collections::HashMap<i64, Vec<ManifestEntry>> =
        std::collections::HashMap::new();
    for chunk in ids.chunks(CHUNK) {
        let sql = format!(
            "SELECT artifact_id, path, size, mode, digest FROM artifact_files \
             WHERE artifact_id IN ({}) ORDER BY artifact_id, path",
            placeholders(1, chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(id);
        }
        for r in query.fetch_all(db.pool()).await? {
            out.entry(r.get(0)).or_default().push(entry_of(&r, 1)?);
        }
    }
    Ok(out)
}

/// The published manifest `name` of run `run_id`, whole.
pub async fn published(
    db: &Db,
    run_id: i64,
    name: &str,
) -> Result<Option<Vec<ManifestEntry>>, StorageError> {
    let id: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM artifacts WHERE run_id = $1 AND name = $2 AND state = 'published'",
    )
    .bind(run_id)
    .bind(name)
    .fetch_optional(db.pool())
    .await?;
    match id {
        Some(id) => Ok(Some(entries(db, id, xene_core::artifact::MAX_FILES).await?)),
        None => Ok(None),
    }
}

/// The published artifacts of run `run_id`, by task and name, with at most
/// `ENTRIES_SHOWN` entries for the whole run: the first artifacts' whole,
/// then the first entries of the one that would pass the bound, then none.
/// An artifact of one file always has its entry (it downloads as that
/// file), and one of several never shows just one (it would look like a
/// one-file artifact).
pub async fn list_run(db: &Db, run_id: i64) -> Result<Vec<ArtifactView>, StorageError> {
    let rows = sqlx::query(
        "SELECT id, task, name, attempt_id, when_always, files, bytes, created_at FROM artifacts \
         WHERE run_id = $1 AND state = 'published' ORDER BY task, name",
    )
    .bind(run_id)
    .fetch_all(db.pool())
    .await?;
    let mut out: Vec<ArtifactView> = Vec::with_capacity(rows.len());
    // Artifacts shown whole (their files fit what is left of the bound),
    // then the one cut short.
    let (mut whole, mut cut) = (Vec::new(), None);
    let mut left = ENTRIES_SHOWN as u64;
    for r in &rows {
        let files = u64::try_from(r.get::<i64, _>(5)).unwrap_or(0);
        let id: i64 = r.get(0);
        if files == 1 {
            whole.push(id);
            left = left.saturating_sub(1);
        } else if files <= left {
            whole.push(id);
            left -= files;
        } else if left >= 2 {
            cut = Some((id, left));
            left = 0;
        }
        out.push(ArtifactView {
            task: r.get(1),
            name: r.get(2),
            attempt_id: r.get(3),
            when_always: r.get::<i64, _>(4) != 0,
            files,
            bytes: u64::try_from(r.get::<i64, _>(6)).unwrap_or(0),
            created_at: r.get(7),
            entries: Vec::new(),
        });
    }
    let mut shown = entries_of(db, &whole).await?;
    if let Some((id, limit)) = cut {
        shown.insert(id, entries(db, id, limit as usize).await?);
    }
    for (view, r) in out.iter_mut().zip(&rows) {
        if let Some(entries) = shown.remove(&r.get::<i64, _>(0)) {
            view.entries = entries;
        }
    }
    Ok(out)
}

/// Which of `digests` the store lacks (no live row), in their first order;
/// the present ones are touched, so the collector keeps them while the
/// publish that asked goes on.
pub async fn missing_blobs(db: &Db, digests: &[Digest]) -> Result<Vec<Digest>, StorageError> {
    // Touched in digest order (see `touch_sql`); answered in theirs.
    let sorted: BTreeSet<&Digest> = digests.iter().collect();
    let distinct: Vec<&Digest> = sorted.into_iter().collect();
    let now = now_ms();
    let mut lacking = BTreeSet::new();
    for chunk in distinct.chunks(CHUNK) {
        let sql = touch_sql(db, chunk.len());
        let mut query = sqlx::query(&sql).bind(now);
        for d in chunk {
            query = query.bind(d.as_str());
        }
        query.execute(&mut *db.write_conn().await?).await?;
        let mut conn = db.pool().acquire().await?;
        let present = rows_of(&mut conn, chunk, true).await?;
        lacking.extend(
            chunk
                .iter()
                .filter(|d| !present.contains(d.as_str()))
                .map(|d| (*d).clone()),
        );
    }
    let mut missing = Vec::with_capacity(lacking.len());
    for d in digests {
        if lacking.remove(d) {
            missing.push(d.clone());
        }
    }
    Ok(missing)
}

/// Why `insert_blobs` stored nothing more.
#[derive(Debug, thiserror::Error)]
pub enum InsertBlobsError {
    #[error("blob {0} is being removed by the artifact collector; publish again")]
    Collecting(Digest),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<sqlx::Error> for InsertBlobsError {
    fn from(e: sqlx::Error) -> Self {
        Self::Storage(e.into())
    }
}

/// Records blobs (digest, size) as held by the store, touched now.
///
/// Call it BEFORE checking that their objects exist (HEAD), then stage:
/// a row claims its object against the collector, which deletes only
/// objects without one; a check made before the row exists may see an
/// object the collector deletes right after.
pub async fn insert_blobs(db: &Db, blobs: &[(Digest, u64)]) -> Result<(), InsertBlobsError> {
    // In digest order, so writers on PostgreSQL lock rows in one order.
    let mut seen = BTreeSet::new();
    let mut distinct: Vec<&(Digest, u64)> = blobs.iter().filter(|(d, _)| seen.insert(d)).collect();
    distinct.sort_by(|a, b| a.0.cmp(&b.0));
    for chunk in distinct.chunks(CHUNK) {
        let mut waits = 0;
        loop {
            let now = now_ms();
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| format!("(${}, ${}, $1)", 2 + 2 * i, 3 + 2 * i))
                .collect();
            let sql = format!(
                "INSERT INTO blobs (digest, size, touched_at) VALUES {} \
                 ON CONFLICT (digest) DO UPDATE SET touched_at = excluded.touched_at \
                 WHERE blobs.touched_at >= 0",
                rows.join(", ")
            );
            let mut query = sqlx::query(&sql).bind(now);
            for (d, size) in chunk {
                query = query.bind(d.as_str()).bind(to_i64(*size));
            }
            let stored = query
                .execute(&mut *db.write_conn().await?)
                .await?
                .rows_affected();
            if stored as usize == chunk.len() {
                break;
            }
            // Some digest is claimed by the collector, deleting its object:
            // its row comes back once the claim is given up.
            waits += 1;
            if waits >= CLAIM_WAITS {
                let mut conn = db.pool().acquire().await?;
                let digests: Vec<&Digest> = chunk.iter().map(|(d, _)| d).collect();
                let live = rows_of(&mut conn, &digests, true).await?;
                let claimed = digests
                    .into_iter()
                    .find(|d| !live.contains(d.as_str()))
                    .unwrap_or(&chunk[0].0);
                return Err(InsertBlobsError::Collecting(claimed.clone()));
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// Sets the sizes of blobs whose objects were just found in the store
/// with them (HEAD): `insert_blobs` keeps the size a row was first made
/// with, which a publish that failed its check may have made up. In digest
/// order, as every writer of several blob rows; a claimed row is left be.
pub async fn verified_sizes(db: &Db, blobs: &[(Digest, u64)]) -> Result<(), StorageError> {
    let sizes: std::collections::BTreeMap<&Digest, u64> =
        blobs.iter().map(|(d, s)| (d, *s)).collect();
    let sorted: Vec<&Digest> = sizes.keys().copied().collect();
    // Read first: a row of the right size (nearly all) is not written.
    let mut wrong: Vec<&Digest> = Vec::new();
    for chunk in sorted.chunks(CHUNK) {
        let sql = format!(
            "SELECT digest, size FROM blobs WHERE touched_at >= 0 AND digest IN ({})",
            placeholders(1, chunk.len())
        );
        let mut query = sqlx::query_as::<_, (String, i64)>(&sql);
        for d in chunk {
            query = query.bind(d.as_str());
        }
        let stored: std::collections::HashMap<String, i64> =
            query.fetch_all(db.pool()).await?.into_iter().collect();
        wrong.extend(chunk.iter().filter(|d| {
            stored
                .get(d.as_str())
                .is_some_and(|s| *s != to_i64(sizes[*d]))
        }));
    }
    for digest in wrong {
        sqlx::query("UPDATE blobs SET size = $1 WHERE digest = $2 AND touched_at >= 0")
            .bind(to_i64(sizes[digest]))
            .bind(digest.as_str())
            .execute(&mut *db.write_conn().await?)
            .await?;
    }
    Ok(())
}

/// Pins or unpins run `run_id`: a pinned run keeps its artifacts whatever
/// the retention. False when there is no such run.
pub async fn pin(db: &Db, run_id: i64, pinned: bool) -> Result<bool, StorageError> {
    let changed = sqlx::query(
        "UPDATE runs SET pinned_at = CASE WHEN $1 = 1 THEN COALESCE(pinned_at, $2) ELSE NULL END \
         WHERE id = $3",
    )
    .bind(i64::from(pinned))
    .bind(now_ms())
    .bind(run_id)
    .execute(&mut *db.write_conn().await?)
    .await?
    .rows_affected();
    Ok(changed == 1)
}

/// When run `run_id` was pinned (UTC ms); none when it is not (or does
/// not exist).
pub async fn pinned_at(db: &Db, run_id: i64) -> Result<Option<i64>, StorageError> {
    Ok(
        sqlx::query_scalar::<_, Option<i64>>("SELECT pinned_at FROM runs WHERE id = $1")
            .bind(run_id)
            .fetch_optional(db.pool())
            .await?
            .flatten(),
    )
}

/// Bytes of the published artifacts of `workflow`'s runs (each artifact
/// counted whole, even where blobs are shared).
pub async fn usage(db: &Db, workflow: &str) -> Result<u64, StorageError> {
    let bytes: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(a.bytes), 0) AS BIGINT) FROM artifacts a \
         JOIN runs r ON r.id = a.run_id WHERE r.workflow = $1 AND a.state = 'published'",
    )
    .bind(workflow)
    .fetch_one(db.pool())
    .await?;
    Ok(u64::try_from(bytes).unwrap_or(0))
}

/// Bytes the store holds (each blob once).
pub async fn stored_bytes(db: &Db) -> Result<u64, StorageError> {
    let bytes: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM blobs WHERE touched_at >= 0",
    )
    .fetch_one(db.pool())
    .await?;
    Ok(u64::try_from(bytes).unwrap_or(0))
}
