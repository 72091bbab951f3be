//! The artifact collector (singleton by lease), at start and every few
//! minutes: prunes the artifacts of runs past `--artifact-retention`
//! (pinned runs keep theirs) and the staged manifests and cache entries of
//! attempts that ended without publishing or saving them, sets each
//! workflow's stored bytes (`xene_workflow_stored_bytes`), then marks and
//! sweeps the blobs: rows no manifest or cache entry names and nobody
//! touched within `GRACE_MS` go with their
//! objects; objects without a row (uploads never committed) go once older
//! than the grace; so do the local store's temporary files.
//!
//! An object is deleted only under a claim on its digest
//! (`storage::artifacts::sweep`), so a publish racing the collector either
//! keeps the blob (it touched the row first) or is told it is missing.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use xene_core::artifact::Digest;

use super::Context;
use crate::metrics::Metrics;
use crate::storage::artifacts::{GRACE_MS, sweep};
use crate::storage::{Db, StorageError, caches, leases, now_ms, retention};

/// How often the collector works (and once at start).
pub const PERIOD: Duration = Duration::from_secs(300);

// A scrape drops the stored bytes after three periods without a pass here.
const _: () = assert!(crate::metrics::STORED_MAX_AGE.as_secs() == 3 * PERIOD.as_secs());

/// Rows or objects looked at per page, and pages per pass: a pass is
/// bounded (the store is listed once per pass, `PAGE * PAGES` objects at
/// most); what is left waits for the next.
const PAGE: usize = 1000;
const PAGES: usize = 10;

/// One blob an object store holds, as the collector lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedBlob {
    pub digest: Digest,
    /// When its object was last written (UTC ms).
    pub modified_ms: i64,
}

/// What the collector needs of the object store that keeps blobs.
pub trait BlobDeleter: Send + Sync {
    /// Up to `limit` blobs whose digest sorts after `after` (from the
    /// first when none), in digest order.
    fn list_after<'a>(
        &'a self,
        after: Option<&'a Digest>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<ListedBlob>, String>>;
    /// When the object of `digest` was last written (UTC ms); none when
    /// the store lacks it.
    fn modified<'a>(&'a self, digest: &'a Digest) -> BoxFuture<'a, Result<Option<i64>, String>>;
    /// Deletes the object of `digest`; one already gone is no error.
    fn delete<'a>(&'a self, digest: &'a Digest) -> BoxFuture<'a, Result<(), String>>;
    /// Deletes temporary files (unfinished uploads) written before
    /// `before` (UTC ms); how many.
    fn sweep_temp(&self, before: i64) -> BoxFuture<'_, Result<u64, String>>;
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Collected {
    /// Artifacts past retention, and staged ones of ended attempts.
    pub artifacts: u64,
    /// Staged cache entries of ended attempts.
    pub caches: u64,
    /// Blob rows no manifest named, removed with their objects.
    pub rows: u64,
    /// Objects deleted (with a row removed, or without one).
    pub objects: u64,
    /// Temporary files deleted.
    pub temp: u64,
}

/// Where a pass goes on: the digest after which objects are listed next.
#[derive(Debug, Default)]
pub struct Cursor {
    after: Option<Digest>,
    last: Option<Instant>,
}

/// The name of the collector's lease.
pub const LEASE: &str = "collector";

/// The collector's hold on its lease through a pass: a pass may take longer
/// than the lease lasts (thousands of deletes), so it is renewed as the
/// pass goes, and the pass stops as soon as another server holds it (whose
/// `release_stale` must never meet a claim in use).
pub struct Lease {
    holder: String,
    ttl: Duration,
    renewed: Option<Instant>,
}

impl Lease {
    pub fn new(holder: &str, ttl: Duration) -> Self {
        Self {
            holder: holder.to_string(),
            ttl,
            renewed: None,
        }
    }

    /// True while this server holds the lease, renewed once a third of it
    /// has passed since it was last.
    pub async fn keep(&mut self, db: &Db) -> Result<bool, StorageError> {
        if self.renewed.is_some_and(|at| at.elapsed() < self.ttl / 3) {
            return Ok(true);
        }
        let asked = Instant::now();
        let ttl_ms = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
        let held = leases::acquire(db, LEASE, &self.holder, ttl_ms).await?;
        self.renewed = held.then_some(asked);
        Ok(held)
    }
}

pub async fn run(ctx: Context, store: Arc<dyn BlobDeleter>, retention: Duration) {
    // Work is due by the clock: the resync wakes it, `PERIOD` paces it.
    let wake = Arc::new(tokio::sync::Notify::new());
    let cursor = Arc::new(Mutex::new(Cursor::default()));
    super::run_singleton(ctx, LEASE, wake, move |ctx| {
        let (store, cursor) = (store.clone(), cursor.clone());
        Box::pin(async move {
            let due = cursor
                .lock()
                .expect("cursor")
                .last
                .is_none_or(|at| at.elapsed() >= PERIOD);
            if !due {
                return Ok(());
            }
            let mut lease = Lease::new(&ctx.instance, ctx.timings.controller_lease);
            let done = pass(
                &ctx.db,
                &ctx.metrics,
                store.as_ref(),
                retention,
                &cursor,
                &mut lease,
                now_ms(),
            )
            .await;
            cursor.lock().expect("cursor").last = Some(Instant::now());
            let done = done?;
            if done != Collected::default() {
                tracing::info!(
                    artifacts = done.artifacts,
                    caches = done.caches,
                    rows = done.rows,
                    objects = done.objects,
                    temp = done.temp,
                    "artifact collector"
                );
            }
            Ok(())
        })
    })
    .await;
}

/// Deletes the object of `digest` if the store has it: true when it did.
async fn delete_existing(store: &dyn BlobDeleter, digest: &Digest) -> Result<bool, String> {
    match store.modified(digest).await? {
        Some(_) => store.delete(digest).await.map(|()| true),
        None => Ok(false),
    }
}

/// One pass at time `now` (UTC ms), while `lease` holds; `retention` zero
/// keeps artifacts forever. The first error of the store ends it (the next
/// pass tries again).
pub async fn pass(
    db: &Db,
    metrics: &Metrics,
    store: &dyn BlobDeleter,
    retention: Duration,
    cursor: &Mutex<Cursor>,
    lease: &mut Lease,
    now: i64,
) -> Result<Collected, StorageError> {
    let mut out = Collected::default();
    if !lease.keep(db).await? {
        // Another server collects: its series are the ones to read.
        metrics.clear_workflow_stored();
        return Ok(out);
    }
    sweep::release_stale(db, now - sweep::STALE_CLAIM_MS).await?;
    if !retention.is_zero() {
        let before = now - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        out.artifacts += retention::prune_artifacts(db, before).await?;
    }
    out.artifacts += sweep::drop_orphan_staged(db, now).await?;
    out.caches += caches::drop_orphan_staged(db, now).await?;
    // A gauge is no reason to leave the blobs be.
    match caches::quota::stored_by_workflow(db).await {
        Ok(stored) => metrics.set_workflow_stored(&stored),
        Err(e) => tracing::warn!(error = %e, "reading each workflow's stored bytes failed"),
    }
    let cutoff = now - GRACE_MS;
    for _ in 0..PAGES {
        let page = sweep::unreferenced(db, cutoff, PAGE as i64).await?;
        for digest in &page {
            if !lease.keep(db).await? {
                return Ok(out);
            }
            let Some(claim) = sweep::claim_row(db, digest, cutoff).await? else {
                continue;
            };
            let gone = delete_existing(store, digest).await;
            // Its row goes anyway: an object left, rowless, is swept later.
            sweep::release(db, digest, claim).await?;
            out.rows += 1;
            match gone {
                Ok(true) => {
                    out.objects += 1;
                    metrics.artifact_blobs_deleted(1);
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(%digest, error = %e, "deleting a blob failed; the collector stops until its next pass");
                    return Ok(out);
                }
            }
        }
        if page.len() < PAGE {
            break;
        }
    }
    match sweep_objects(db, metrics, store, cursor, lease, cutoff).await? {
        Some(deleted) => out.objects += deleted,
        None => return Ok(out),
    }
    match store.sweep_temp(cutoff).await {
        Ok(n) => out.temp = n,
        Err(e) => tracing::warn!(error = %e, "deleting old temporary uploads failed"),
    }
    Ok(out)
}

/// Objects without a row, written before `cutoff`: uploads never committed
/// (or whose row went while the delete failed). One listing of up to
/// `PAGE * PAGES` objects, going on where the last pass stopped; how many
/// were deleted, none when the store failed or the lease was lost.
async fn sweep_objects(
    db: &Db,
    metrics: &Metrics,
    store: &dyn BlobDeleter,
    cursor: &Mutex<Cursor>,
    lease: &mut Lease,
    cutoff: i64,
) -> Result<Option<u64>, StorageError> {
    let after = cursor.lock().expect("cursor").after.clone();
    let listed = match store.list_after(after.as_ref(), PAGE * PAGES).await {
        Ok(listed) => listed,
        Err(e) => {
            tracing::warn!(error = %e, "listing the artifact store failed");
            return Ok(None);
        }
    };
    let mut deleted = 0;
    // The last object looked at: where the next pass goes on if this one
    // stops half-way.
    let mut done: Option<&Digest> = None;
    for page in listed.chunks(PAGE) {
        let digests: Vec<Digest> = page.iter().map(|b| b.digest.clone()).collect();
        let with_rows = sweep::with_rows(db, &digests).await?;
        for blob in page {
            if blob.modified_ms >= cutoff || with_rows.contains(blob.digest.as_str()) {
                done = Some(&blob.digest);
                continue;
            }
            if !lease.keep(db).await? {
                stop_at(cursor, done, after);
                return Ok(None);
            }
            let Some(claim) = sweep::claim_absent(db, &blob.digest).await? else {
                done = Some(&blob.digest);
                continue;
            };
            // Looked at again under the claim: an upload since the listing
            // makes it young.
            let gone = match store.modified(&blob.digest).await {
                Ok(Some(modified)) if modified < cutoff => {
                    store.delete(&blob.digest).await.map(|()| true)
                }
                Ok(_) => Ok(false),
                Err(e) => Err(e),
            };
            sweep::release(db, &blob.digest, claim).await?;
            match gone {
                Ok(true) => {
                    deleted += 1;
                    metrics.artifact_blobs_deleted(1);
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(digest = %blob.digest, error = %e, "deleting a blob failed; the collector stops until its next pass");
                    stop_at(cursor, done, after);
                    return Ok(None);
                }
            }
            done = Some(&blob.digest);
        }
    }
    // At the end of the store, the next pass starts again at its first.
    let next = if listed.len() < PAGE * PAGES {
        None
    } else {
        listed.last().map(|b| b.digest.clone())
    };
    cursor.lock().expect("cursor").after = next;
    Ok(Some(deleted))
}

/// A sweep of objects stopped after `done` (or before any, going on
/// after `after`): the next pass goes on from there.
fn stop_at(cursor: &Mutex<Cursor>, done: Option<&Digest>, after: Option<Digest>) {
    cursor.lock().expect("cursor").after = done.cloned().or(after);
}

/// An object store's blobs, as the collector sees them: the server's blob
/// store hands over its objects, its key layout and (local) its temporary
/// directory, so the collector needs nothing else of `files`.
pub struct StoredObjects {
    pub objects: Arc<dyn object_store::ObjectStore>,
    /// The object key of a digest.
    pub key: fn(&Digest) -> object_store::path::Path,
    /// The prefix every blob's key starts with.
    pub prefix: object_store::path::Path,
    /// Lists in key order (S3 does; a local directory's walk does not).
    pub ordered: bool,
    /// Where a local store writes uploads before they are verified.
    pub temp_dir: Option<std::path::PathBuf>,
}

impl BlobDeleter for StoredObjects {
    fn list_after<'a>(
        &'a self,
        after: Option<&'a Digest>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<ListedBlob>, String>> {
        use futures::StreamExt;
        Box::pin(async move {
            let mut listing = match after {
                Some(after) => self
                    .objects
                    .list_with_offset(Some(&self.prefix), &(self.key)(after)),
                None => self.objects.list(Some(&self.prefix)),
            };
            // In key order (which is digest order) the first `limit` are
            // the page; otherwise all of it is read, keeping the smallest.
            let mut page = std::collections::BTreeMap::new();
            while let Some(meta) = listing.next().await {
                let meta = meta.map_err(|e| e.to_string())?;
                let Some(digest) = meta
                    .location
                    .filename()
                    .and_then(|hex| Digest::parse(&format!("sha256:{hex}")).ok())
                else {
                    continue;
                };
                page.insert(digest, meta.last_modified.timestamp_millis());
                if page.len() > limit {
                    page.pop_last();
                }
                if self.ordered && page.len() == limit {
                    break;
                }
            }
            Ok(page
                .into_iter()
                .map(|(digest, modified_ms)| ListedBlob {
                    digest,
                    modified_ms,
                })
                .collect())
        })
    }

    fn modified<'a>(&'a self, digest: &'a Digest) -> BoxFuture<'a, Result<Option<i64>, String>> {
        use object_store::ObjectStoreExt;
        Box::pin(async move {
            match self.objects.head(&(self.key)(digest)).await {
                Ok(meta) => Ok(Some(meta.last_modified.timestamp_millis())),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e.to_string()),
            }
        })
    }

    fn delete<'a>(&'a self, digest: &'a Digest) -> BoxFuture<'a, Result<(), String>> {
        use object_store::ObjectStoreExt;
        Box::pin(async move {
            match self.objects.delete(&(self.key)(digest)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        })
    }

    fn sweep_temp(&self, before: i64) -> BoxFuture<'_, Result<u64, String>> {
        let Some(dir) = self.temp_dir.clone() else {
            return Box::pin(async { Ok(0) });
        };
        Box::pin(async move {
            tokio::task::spawn_blocking(move || remove_older(&dir, before))
                .await
                .map_err(|e| e.to_string())?
        })
    }
}

/// Removes the files of `dir` last written before `before` (UTC ms), at
/// most `PAGE * PAGES` per call; how many.
fn remove_older(dir: &std::path::Path, before: i64) -> Result<u64, String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    };
    let mut removed = 0;
    for entry in entries.take(PAGE * PAGES) {
        let entry = entry.map_err(|e| e.to_string())?;
        let Ok(meta) = entry.metadata() else { continue };
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(i64::MAX, |d| {
                i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
            });
        if meta.is_file() && modified < before && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}
