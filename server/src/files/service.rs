//! Answers an agent's requests about the files of a task attempt it holds:
//! where to upload the blobs of an artifact its task publishes (only those
//! the store lacks), committing that artifact's manifest, staged for the
//! attempt, and where to download an artifact its task needs (the
//! manifest its producer published in the same run). Every refusal is a
//! clear reason the task fails with; nothing is stored by a refused
//! request. Caches' requests go to `service/caches.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use xene_api::artifacts::size_text;
use xene_core::artifact::{Digest, ManifestEntry, PART_SIZE, SINGLE_PUT_MAX, check_manifest};
use xene_core::protocol::{AttemptRef, CompletedUpload, FilesAnswer, FilesRequest};
use xene_core::spec::{CacheSave, Task};

use super::store::{BlobStore, MAX_FILE_BYTES, StoreError};
use crate::metrics::Metrics;
use crate::storage::Db;
use crate::storage::artifacts::{self, InsertBlobsError, Staged, sweep};
use crate::storage::specs::Specs;
use crate::storage::{StorageError, attempts, runs};

mod caches;

/// What answering takes: the database, the parsed specs, the blob store
/// and the metrics (a controller's `Context` holds them all).
#[derive(Clone)]
pub struct Service {
    pub db: Db,
    pub specs: Arc<Specs>,
    pub blobs: Arc<BlobStore>,
    pub metrics: Arc<Metrics>,
}

/// How many HEAD requests a check sends at once.
const HEADS_AT_ONCE: usize = 16;
/// How often, and how long apart, a publish looks again for the
/// collector's claim on a digest to go (as `insert_blobs` waits).
const CLAIM_WAITS: u32 = 20;
const CLAIM_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// A refusal, or a failure of the server's own (logged; the agent hears a
/// short reason).
enum Failure {
    Refused(String),
    Storage(StorageError),
    Store(StoreError),
}

impl From<StorageError> for Failure {
    fn from(e: StorageError) -> Self {
        Self::Storage(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

fn refuse<T>(reason: impl Into<String>) -> Result<T, Failure> {
    Err(Failure::Refused(reason.into()))
}

/// The answer to `request` about `attempt` from `agent` (bounded by the
/// gateway's `limits::check_files` when it came over the wire).
pub async fn answer(
    ctx: &Service,
    agent: &str,
    attempt: AttemptRef,
    request: FilesRequest,
) -> FilesAnswer {
    let asked = match &request {
        FilesRequest::Publish { .. } => "publish",
        FilesRequest::Commit { .. } => "commit",
        FilesRequest::Fetch { .. } => "fetch",
        FilesRequest::CacheRestore { .. } => "cache restore",
        FilesRequest::CacheUpload { .. } => "cache upload",
        FilesRequest::CacheSave { .. } => "cache save",
    };
    match answer_inner(ctx, agent, attempt, request).await {
        Ok(answer) => answer,
        Err(Failure::Refused(error)) => FilesAnswer::Refused { error },
        Err(Failure::Storage(e)) => {
            tracing::error!(agent, attempt = attempt.id, asked, error = %e, "answering a files request failed");
            FilesAnswer::Refused {
                error: "the server's database failed while handling the artifact (see the server's log)"
                    .into(),
            }
        }
        Err(Failure::Store(e)) => {
            tracing::error!(agent, attempt = attempt.id, asked, error = %e, "answering a files request failed");
            FilesAnswer::Refused {
                error: "the server could not use its artifact store (see the server's log)".into(),
            }
        }
    }
}

/// The attempt and its task, once it is known to be this agent's.
struct Held {
    run_id: i64,
    workflow: String,
    /// The run's spec version.
    version: i64,
    pipeline: String,
    /// What started the run (`manual`, `webhook`, `cron`, ...).
    trigger: String,
    /// Which runs of its pipeline may save caches.
    cache_save: CacheSave,
    task_name: String,
    task: Task,
}

async fn answer_inner(
    ctx: &Service,
    agent: &str,
    attempt: AttemptRef,
    request: FilesRequest,
) -> Result<FilesAnswer, Failure> {
    // Fetching (and restoring caches) comes before the attempt's start may
    // be stored; publishing only while it runs.
    let fetching = matches!(
        request,
        FilesRequest::Fetch { .. } | FilesRequest::CacheRestore { .. }
    );
    let held = held(ctx, agent, attempt, fetching).await?;
    match request {
        FilesRequest::Publish { name, files } => {
            publishes(&held, &name)?;
            within_artifact_quota(ctx, &held, &name, &files).await?;
            uploads(ctx, &files).await
        }
        FilesRequest::Commit {
            name,
            files,
            completed,
        } => {
            let when_always = publishes(&held, &name)?;
            commit(ctx, attempt, &held, &name, when_always, &files, &completed).await
        }
        FilesRequest::Fetch { name } => fetch(ctx, &held, &name).await,
        FilesRequest::CacheRestore {
            name,
            key,
            restore_keys,
        } => caches::restore(ctx, &held, &name, &key, &restore_keys).await,
        FilesRequest::CacheUpload { name, key, chunks } => {
            caches::upload(ctx, &held, &name, &key, &chunks).await
        }
        FilesRequest::CacheSave {
            name,
            key,
            chunks,
            completed,
            files,
        } => caches::save(ctx, attempt, &held, &name, &key, &chunks, &completed, files).await,
    }
}

/// The attempt, if `agent` holds it running (or only placed there, when
/// `placed_too`) and its task is known.
async fn held(
    ctx: &Service,
    agent: &str,
    attempt: AttemptRef,
    placed_too: bool,
) -> Result<Held, Failure> {
    let row = attempts::get(&ctx.db, attempt.id).await?;
    let Some(row) = row.filter(|a| a.agent_id.as_deref() == Some(agent)) else {
        return refuse(format!(
            "task attempt {} is not held by this agent",
            attempt.id
        ));
    };
    let live = row.status == "running" || (placed_too && row.status == "placed");
    if !live {
        return refuse(format!(
            "task attempt {} is {}, not running: its files are no longer taken",
            attempt.id, row.status
        ));
    }
    let Some(run) = runs::get_run(&ctx.db, row.run_id).await? else {
        return refuse(format!("the run of task attempt {} is gone", attempt.id));
    };
    let pipeline = ctx
        .specs
        .pipeline(&ctx.db, &run.workflow, run.version, &run.pipeline)
        .await?;
    let Some((task, cache_save)) =
        pipeline.and_then(|p| Some((p.tasks.get(&row.task).cloned()?, p.cache_save)))
    else {
        return refuse(format!("the task of attempt {} is gone", attempt.id));
    };
    Ok(Held {
        run_id: row.run_id,
        workflow: run.workflow,
        version: run.version,
        pipeline: run.pipeline,
        trigger: run.trigger,
        cache_save,
        task_name: row.task,
        task,
    })
}

/// Whether the artifact is published from failed attempts too, if the
/// task publishes it.
fn publishes(held: &Held, name: &str) -> Result<bool, Failure> {
    match held.task.publish.iter().find(|p| p.name == name) {
        Some(publish) => Ok(publish.when == xene_core::spec::PublishWhen::Always),
        None => refuse(format!(
            "task {} publishes no artifact {}",
            held.task_name,
            shown(name)
        )),
    }
}

/// Refuses an artifact that would take its workflow's artifacts past
/// `--artifact-quota` (what it replaces in its run not counted): an early
/// hint, before anything is uploaded; `artifacts::stage` decides.
async fn within_artifact_quota(
    ctx: &Service,
    held: &Held,
    name: &str,
    files: &[ManifestEntry],
) -> Result<(), Failure> {
    let Some(quota) = ctx.db.quotas().artifact_bytes else {
        return Ok(());
    };
    let bytes = files.iter().map(|f| f.size).fold(0, u64::saturating_add);
    let mut conn = ctx.db.pool().acquire().await.map_err(StorageError::from)?;
    let kept = artifacts::artifact_bytes_besides(&mut conn, &held.workflow, held.run_id, name)
        .await
        .map_err(StorageError::from)?;
    if kept.saturating_add(bytes) > quota {
        return refuse(over_artifact_quota(
            &held.workflow,
            kept,
            name,
            bytes,
            quota,
        ));
    }
    Ok(())
}

fn over_artifact_quota(workflow: &str, kept: u64, name: &str, bytes: u64, quota: u64) -> String {
    format!(
        "workflow {workflow} keeps {} of artifacts; {}'s {} would pass its quota {} \
         (--artifact-quota); unpin or let retention remove old runs",
        size_text(kept),
        shown(name),
        size_text(bytes),
        size_text(quota)
    )
}

/// The manifest's distinct blobs with their sizes, once it is valid.
fn checked(files: &[ManifestEntry]) -> Result<BTreeMap<&Digest, u64>, Failure> {
    check_manifest(files).map_err(Failure::Refused)?;
    let mut blobs = BTreeMap::new();
    for file in files {
        if file.size > MAX_FILE_BYTES {
            return refuse(format!(
                "file {} has {} bytes, more than the {MAX_FILE_BYTES} a file may have",
                shown(&file.path),
                file.size
            ));
        }
        if let Some(size) = blobs.insert(&file.digest, file.size)
            && size != file.size
        {
            return refuse(format!(
                "file {} has {} bytes but another file of the same digest {size}",
                shown(&file.path),
                file.size
            ));
        }
    }
    Ok(blobs)
}

/// Uploads for the blobs the store lacks: those without a row, and those
/// whose row has no object (an upload that died after its commit began).
async fn uploads(ctx: &Service, files: &[ManifestEntry]) -> Result<FilesAnswer, Failure> {
    let blobs = checked(files)?;
    let digests: Vec<Digest> = blobs.keys().map(|d| (*d).clone()).collect();
    let mut missing = unclaimed_missing(ctx, &digests).await?;
    let present: Vec<(&Digest, u64)> = blobs
        .iter()
        .filter(|(d, _)| !missing.contains(d))
        .map(|(d, size)| (*d, *size))
        .collect();
    missing.extend(lacking(ctx, &present).await?.into_iter().cloned());
    // Counted before anything is signed or a multipart upload created: an
    // answer that cannot reach the agent must not cost the memory of its
    // URLs (10,000 files of the largest size would be 10^8 of them).
    let transfers: u64 = missing
        .iter()
        .map(|d| blobs[d].div_ceil(PART_SIZE).max(1))
        .sum();
    if transfers.saturating_mul(transfer_bytes(ctx)) > ANSWER_BYTES {
        return refuse(format!(
            "the artifact's blobs need {transfers} upload URLs, more than one answer carries; \
             publish fewer or smaller files in it (an archive of them, say)"
        ));
    }
    let mut uploads = Vec::with_capacity(missing.len());
    for digest in &missing {
        match ctx.blobs.upload(digest, blobs[digest]).await {
            Ok(upload) => uploads.push(upload),
            Err(StoreError::Rejected(reason)) => return refuse(reason),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(FilesAnswer::Uploads { uploads })
}

/// What an answer about files may take: the gateway's `MAX_ANSWER_BYTES`
/// (a test holds them equal; files does not import the gateway).
pub const ANSWER_BYTES: u64 = 8 << 20;

/// What one transfer (its URL and headers, as JSON, with its digest) is
/// counted for in an answer: more than the store's URLs take, so an
/// answer counted within `ANSWER_BYTES` fits it. Presigned S3 URLs carry
/// credentials, a date and a signature; the local store's, a signature.
fn transfer_bytes(ctx: &Service) -> u64 {
    if ctx.blobs.local_root().is_some() {
        512
    } else {
        2048
    }
}

/// Refuses an artifact whose `Fetch` answer (its manifest and one download
/// per distinct blob) could not reach an agent: published, it could never
/// be fetched.
fn fetchable(ctx: &Service, files: &[ManifestEntry], blobs: usize) -> Result<(), Failure> {
    let manifest = serde_json::to_vec(files)
        .map_err(|e| Failure::Refused(format!("the manifest cannot be encoded: {e}")))?
        .len() as u64;
    let answer = manifest.saturating_add((blobs as u64).saturating_mul(transfer_bytes(ctx)));
    if answer > ANSWER_BYTES {
        return refuse(format!(
            "the artifact's manifest and download URLs would take about {answer} bytes, \
             more than the {ANSWER_BYTES} of an answer; publish fewer files in it"
        ));
    }
    Ok(())
}

/// Which of `digests` have no live row, once none of them is claimed by
/// the collector: a claimed digest's object is being deleted, and so would
/// be a fresh upload of it. A claim lasts one object's deletion, so this
/// waits a little for it to go, then refuses (the task's retry publishes
/// again, once the collector is done).
async fn unclaimed_missing(ctx: &Service, digests: &[Digest]) -> Result<Vec<Digest>, Failure> {
    let mut waits = 0;
    loop {
        let missing = artifacts::missing_blobs(&ctx.db, digests).await?;
        if missing.is_empty() {
            return Ok(missing);
        }
        // Rows of digests without a live row are claims.
        let claimed = sweep::with_rows(&ctx.db, &missing).await?;
        let Some(digest) = claimed.first() else {
            return Ok(missing);
        };
        waits += 1;
        if waits >= CLAIM_WAITS {
            return refuse(format!(
                "blob {digest} is being removed by the artifact collector; publish again"
            ));
        }
        tokio::time::sleep(CLAIM_WAIT).await;
    }
}

/// The blobs of `blobs` the store does not hold with their size.
async fn lacking<'a>(
    ctx: &Service,
    blobs: &[(&'a Digest, u64)],
) -> Result<Vec<&'a Digest>, StoreError> {
    // Owned, so the checks run on any task (a borrowed closure's future is
    // not `Send` for every lifetime).
    let owned: Vec<(usize, Digest)> = blobs
        .iter()
        .enumerate()
        .map(|(i, (digest, _))| (i, (*digest).clone()))
        .collect();
    let checks = owned.into_iter().map(|(i, digest)| {
        let store = ctx.blobs.clone();
        async move { (i, store.size_of(&digest).await) }
    });
    let sizes: Vec<(usize, Result<Option<u64>, StoreError>)> = futures::stream::iter(checks)
        .buffer_unordered(HEADS_AT_ONCE)
        .collect()
        .await;
    let mut lacking = Vec::new();
    for (i, stored) in sizes {
        let (digest, size) = blobs[i];
        if stored? != Some(size) {
            lacking.push(digest);
        }
    }
    // In the manifest's order, whatever order the checks ended in.
    lacking.sort();
    Ok(lacking)
}

#[allow(clippy::too_many_arguments)]
async fn commit(
    ctx: &Service,
    attempt: AttemptRef,
    held: &Held,
    name: &str,
    when_always: bool,
    files: &[ManifestEntry],
    completed: &[CompletedUpload],
) -> Result<FilesAnswer, Failure> {
    let blobs = checked(files)?;
    fetchable(ctx, files, blobs.len())?;
    within_artifact_quota(ctx, held, name, files).await?;
    let what = format!("artifact {}", shown(name));
    let uploaded = store_blobs(ctx, &what, &blobs, completed).await?;
    let staged = artifacts::stage(
        &ctx.db,
        attempt.id,
        held.run_id,
        &held.task_name,
        name,
        when_always,
        files,
    )
    .await?;
    match staged {
        Staged::Stored => {
            ctx.metrics.artifact_uploaded(uploaded);
            Ok(FilesAnswer::Committed)
        }
        Staged::NotRunning => refuse(format!(
            "task attempt {} is no longer running: {what} was not kept",
            attempt.id,
        )),
        Staged::MissingBlob(digest) => refuse(format!(
            "blob {digest} is no longer in the artifact store; publish again"
        )),
        Staged::Invalid(reason) => refuse(reason),
        Staged::OverQuota {
            workflow,
            kept,
            quota,
        } => {
            let bytes = files.iter().map(|f| f.size).fold(0, u64::saturating_add);
            refuse(over_artifact_quota(&workflow, kept, name, bytes, quota))
        }
    }
}

/// Completes the multipart uploads of `what`'s `blobs`, records them and
/// checks that the store holds each, whole: the bytes uploaded new to the
/// store (for the metric) once it does.
async fn store_blobs(
    ctx: &Service,
    what: &str,
    blobs: &BTreeMap<&Digest, u64>,
    completed: &[CompletedUpload],
) -> Result<u64, Failure> {
    for done in completed {
        let Some(size) = blobs.get(&done.digest) else {
            return refuse(format!(
                "upload of blob {} completed, but no file of {what} has it",
                done.digest,
            ));
        };
        let parts = size.div_ceil(PART_SIZE);
        if *size <= SINGLE_PUT_MAX || done.upload_id.is_none() || done.etags.len() as u64 != parts {
            return refuse(format!(
                "the upload of blob {} ({size} bytes) completes with {} parts, not {parts}",
                done.digest,
                done.etags.len()
            ));
        }
        match ctx.blobs.complete(done, *size).await {
            Ok(()) => {}
            Err(StoreError::Rejected(reason)) => return refuse(reason),
            Err(e) => {
                tracing::warn!(digest = %done.digest, error = %e, "completing a multipart upload failed");
                return refuse(format!(
                    "the artifact store did not complete the upload of blob {}; publish again",
                    done.digest
                ));
            }
        }
    }
    // The blobs new to the store: what this publish uploaded, for the
    // metric.
    let digests: Vec<Digest> = blobs.keys().map(|d| (*d).clone()).collect();
    let fresh = artifacts::missing_blobs(&ctx.db, &digests).await?;
    // Rows first, so the collector leaves the objects be; then the objects
    // must all be there, whole.
    let rows: Vec<(Digest, u64)> = blobs.iter().map(|(d, s)| ((*d).clone(), *s)).collect();
    match artifacts::insert_blobs(&ctx.db, &rows).await {
        Ok(()) => {}
        Err(InsertBlobsError::Collecting(digest)) => {
            return refuse(format!(
                "blob {digest} is being removed by the artifact collector; publish again"
            ));
        }
        Err(InsertBlobsError::Storage(e)) => return Err(e.into()),
    }
    let all: Vec<(&Digest, u64)> = blobs.iter().map(|(d, s)| (*d, *s)).collect();
    if let Some(digest) = lacking(ctx, &all).await?.first() {
        return refuse(format!(
            "blob {digest} is not in the artifact store with its {} bytes: its upload did not finish",
            blobs[digest]
        ));
    }
    // The objects are there with these sizes: rows an earlier failed
    // publish made with other sizes are set right.
    artifacts::verified_sizes(&ctx.db, &rows).await?;
    Ok(fresh.iter().map(|d| blobs[d]).sum())
}

async fn fetch(ctx: &Service, held: &Held, name: &str) -> Result<FilesAnswer, Failure> {
    if !held.task.needs.iter().any(|n| n.name == name) {
        return refuse(format!(
            "task {} does not need artifact {}",
            held.task_name,
            shown(name)
        ));
    }
    let Some(files) = artifacts::published(&ctx.db, held.run_id, name).await? else {
        return refuse(format!(
            "artifact {} was not published in this run (the task publishing it did not succeed)",
            shown(name)
        ));
    };
    let mut sizes: BTreeMap<&Digest, u64> = BTreeMap::new();
    for file in &files {
        sizes.insert(&file.digest, file.size);
    }
    let mut downloads = Vec::with_capacity(sizes.len());
    for (digest, size) in sizes {
        downloads.push(xene_core::protocol::BlobDownload {
            digest: digest.clone(),
            transfer: ctx.blobs.download(digest, size).await?,
        });
    }
    Ok(FilesAnswer::Downloads { files, downloads })
}

/// A name from the agent as a reason shows it: quoted and cut short.
fn shown(text: &str) -> String {
    let cut: String = text.chars().take(80).collect();
    format!("{cut:?}")
}
