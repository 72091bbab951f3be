//! The artifact collector (singleton by lease), at start and every few
//! minutes: prunes the artifacts of runs past `--artifact-retention`
//! (pinned runs keep theirs) and the staged manifests of attempts that
//! ended without publishing them, then marks and sweeps the blobs: rows no
//! manifest names and nobody touched within `GRACE_MS` go with their
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
use crate::storage::{Db, StorageError, now_ms, retention};

/// How often the collector works (and once at start).
pub const PERIOD: Duration = Duration::from_secs(300);

/// Rows or objects looked at per page, and pages per pass: a pass is
/// bounded; what is left waits for the next.
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

pub async fn run(ctx: Context, store: Arc<dyn BlobDeleter>, retention: Duration) {
    // Work is due by the clock: the resync wakes it, `PERIOD` paces it.
    let wake = Arc::new(tokio::sync::Notify::new());
    let cursor = Arc::new(Mutex::new(Cursor::default()));
    super::run_singleton(ctx, "collector", wake, move |ctx| {
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
            let done = pass(
                &ctx.db,
                &ctx.metrics,
                store.as_ref(),
                retention,
                &cursor,
                now_ms(),
            )
            .await;
            cursor.lock().expect("cursor").last = Some(Instant::now());
            let done = done?;
            if done != Collected::default() {
                tracing::info!(
                    artifacts = done.artifacts,
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

/// One pass at time `now` (UTC ms); `retention` zero keeps artifacts
/// forever.
pub async fn pass(
    db: &Db,
    metrics: &Metrics,
    store: &dyn BlobDeleter,
    retention: Duration,
    cursor: &Mutex<Cursor>,
    now: i64,
) -> Result<Collected, StorageError> {
    let mut out = Collected::default();
    sweep::release_stale(db, now - sweep::STALE_CLAIM_MS).await?;
    if !retention.is_zero() {
        let before = now - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        out.artifacts += retention::prune_artifacts(db, before).await?;
    }
    out.artifacts += sweep::drop_orphan_staged(db, now).await?;
    let cutoff = now - GRACE_MS;
    // A claim is negative and unique to this pass.
    let claim = -now.max(1);
    for _ in 0..PAGES {
        let page = sweep::unreferenced(db, cutoff, PAGE as i64).await?;
        for digest in &page {
            if !sweep::claim_row(db, digest, cutoff, claim).await? {
                continue;
            }
            out.rows += 1;
            match store.delete(digest).await {
                Ok(()) => {
                    out.objects += 1;
                    metrics.artifact_blobs_deleted(1);
                }
                // Its row goes anyway: the object, rowless, is swept later.
                Err(e) => tracing::warn!(%digest, error = %e, "deleting a blob failed"),
            }
            sweep::release(db, digest, claim).await?;
        }
        if page.len() < PAGE {
            break;
        }
    }
    out.objects += sweep_objects(db, metrics, store, cursor, cutoff, claim).await?;
    match store.sweep_temp(cutoff).await {
        Ok(n) => out.temp = n,
        Err(e) => tracing::warn!(error = %e, "deleting old temporary uploads failed"),
    }
    Ok(out)
}

/// Objects without a row, written before `cutoff`: uploads never committed
/// (or whose row went while the delete failed). A page of the listing at a
/// time, going on where the last pass stopped.
async fn sweep_objects(
    db: &Db,
    metrics: &Metrics,
    store: &dyn BlobDeleter,
    cursor: &Mutex<Cursor>,
    cutoff: i64,
    claim: i64,
) -> Result<u64, StorageError> {
    let mut deleted = 0;
    for _ in 0..PAGES {
        let after = cursor.lock().expect("cursor").after.clone();
        let listed = match store.list_after(after.as_ref(), PAGE).await {
            Ok(listed) => listed,
            Err(e) => {
                tracing::warn!(error = %e, "listing the artifact store failed");
                return Ok(deleted);
            }
        };
        let digests: Vec<Digest> = listed.iter().map(|b| b.digest.clone()).collect();
        let with_rows = sweep::with_rows(db, &digests).await?;
        for blob in &listed {
            if blob.modified_ms >= cutoff || with_rows.contains(blob.digest.as_str()) {
                continue;
            }
            if !sweep::claim_absent(db, &blob.digest, claim).await? {
                continue;
            }
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
                    tracing::warn!(digest = %blob.digest, error = %e, "deleting a blob failed")
                }
            }
        }
        let mut cursor = cursor.lock().expect("cursor");
        if listed.len() < PAGE {
            // The end of the store: the next pass starts again at its first.
            cursor.after = None;
            break;
        }
        cursor.after = listed.last().map(|b| b.digest.clone());
    }
    Ok(deleted)
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
