//! Answers an agent's requests about the caches of a task attempt it holds
//! (routed here by the service, its parent, which checked the hold): the entry to
//! restore (its key exactly, else the newest by each restore key), where to
//! upload an entry's chunks (only the blobs the store lacks), and its save,
//! staged for the attempt and saved when it succeeds. The task must declare
//! the cache. Whether the run may save caches is the server's to decide
//! (its pipeline's `cache_save` for the run's trigger), whatever the agent
//! says; so is the quota. A refused save is a warning in the task's log,
//! never a failure (the agent's to say).

use std::collections::BTreeMap;

use xene_api::artifacts::size_text;
use xene_core::artifact::{Digest, ManifestEntry};
use xene_core::cache::{MAX_CACHE_BYTES, MAX_CACHE_FILES, check_key, chunk_name};
use xene_core::protocol::{AttemptRef, BlobDownload, CompletedUpload, FilesAnswer};

use super::{Failure, Held, Service, checked, refuse, shown, store_blobs, uploads};
use crate::storage::artifacts::Staged;
use crate::storage::{caches, workflows};

/// That the task of `held` declares cache `name`, and `key` is one.
fn declared(held: &Held, name: &str, key: &str) -> Result<(), Failure> {
    if !held.task.caches.iter().any(|c| c.name == name) {
        return refuse(format!(
            "task {} declares no cache {}",
            held.task_name,
            shown(name)
        ));
    }
    check_key(key).map_err(Failure::Refused)
}

/// The entry to restore, or a miss (`key: None`).
pub(super) async fn restore(
    ctx: &Service,
    held: &Held,
    name: &str,
    key: &str,
    restore_keys: &[String],
) -> Result<FilesAnswer, Failure> {
    declared(held, name, key)?;
    for prefix in restore_keys {
        check_key(prefix).map_err(Failure::Refused)?;
    }
    let Some(found) = caches::lookup(&ctx.db, &held.workflow, name, key, restore_keys).await?
    else {
        return Ok(FilesAnswer::CacheEntry {
            key: None,
            files: 0,
            chunks: Vec::new(),
            downloads: Vec::new(),
        });
    };
    let mut sizes: BTreeMap<&Digest, u64> = BTreeMap::new();
    for chunk in &found.chunks {
        sizes.insert(&chunk.digest, chunk.size);
    }
    let mut downloads = Vec::with_capacity(sizes.len());
    for (digest, size) in sizes {
        downloads.push(BlobDownload {
            digest: digest.clone(),
            transfer: ctx.blobs.download(digest, size).await?,
        });
    }
    Ok(FilesAnswer::CacheEntry {
        key: Some(found.key),
        files: found.files,
        chunks: found.chunks,
        downloads,
    })
}

/// That this run may save an entry of `bytes` of cache `name`: its
/// pipeline saves caches for its trigger, and so does every other pipeline
/// of its spec version that declares a cache of that name (entries are
/// the workflow's, per name and key: a pipeline that never saves for this
/// trigger must not restore what another saved), and the entry fits the
/// quota.
async fn savable(ctx: &Service, held: &Held, name: &str, bytes: u64) -> Result<(), Failure> {
    if !held.cache_save.allows(&held.trigger) {
        return refuse(format!(
            "pipeline {}'s cache_save says never for runs started by {}: cache {} is not saved",
            held.pipeline,
            held.trigger,
            shown(name)
        ));
    }
    if let Some(other) = guarded_by(ctx, held, name).await? {
        return refuse(format!(
            "pipeline {other} also declares cache {} and its cache_save says never for runs \
             started by {}: entries are shared by the workflow's pipelines, so cache {} is not \
             saved",
            shown(name),
            held.trigger,
            shown(name)
        ));
    }
    if bytes > MAX_CACHE_BYTES {
        return refuse(format!(
            "cache {} is {}, more than the {} an entry may hold",
            shown(name),
            size_text(bytes),
            size_text(MAX_CACHE_BYTES)
        ));
    }
    let quota = ctx.db.quotas().cache_bytes;
    if quota == 0 {
        return refuse("this server saves no caches (--cache-quota 0)");
    }
    if bytes > quota {
        return refuse(format!(
            "cache {} is {}, more than the workflow's cache quota {} (--cache-quota)",
            shown(name),
            size_text(bytes),
            size_text(quota)
        ));
    }
    Ok(())
}

/// The first other pipeline (by name) of the run's spec version that
/// declares cache `name` and never saves caches for the run's trigger.
async fn guarded_by(ctx: &Service, held: &Held, name: &str) -> Result<Option<String>, Failure> {
    let spec = workflows::spec_of_version(&ctx.db, &held.workflow, held.version).await?;
    let Some(spec) = spec else {
        return refuse(format!(
            "the run's version of workflow {} is gone",
            held.workflow
        ));
    };
    let mut names: Vec<&String> = spec.pipelines.keys().collect();
    names.sort();
    Ok(names
        .into_iter()
        .find(|p| {
            let pipeline = &spec.pipelines[*p];
            **p != held.pipeline
                && !pipeline.cache_save.allows(&held.trigger)
                && pipeline
                    .tasks
                    .values()
                    .any(|t| t.caches.iter().any(|c| c.name == name))
        })
        .cloned())
}

/// That `chunks` are an entry's: at least one, named `chunk_name(i)` in
/// order (what agents pack and unpack).
fn chunks_named(name: &str, chunks: &[ManifestEntry]) -> Result<(), Failure> {
    if chunks.is_empty() {
        return refuse(format!("cache {} has no chunks", shown(name)));
    }
    for (i, chunk) in chunks.iter().enumerate() {
        let want = chunk_name(i);
        if chunk.path != want {
            return refuse(format!(
                "chunk {i} of cache {} is named {}, not {want}",
                shown(name),
                shown(&chunk.path)
            ));
        }
    }
    Ok(())
}

fn total_bytes(chunks: &[ManifestEntry]) -> u64 {
    chunks.iter().map(|c| c.size).fold(0, u64::saturating_add)
}

/// Where to upload the entry's chunks the store lacks; refused early when
/// the entry could not be saved anyway.
pub(super) async fn upload(
    ctx: &Service,
    held: &Held,
    name: &str,
    key: &str,
    chunks: &[ManifestEntry],
) -> Result<FilesAnswer, Failure> {
    declared(held, name, key)?;
    chunks_named(name, chunks)?;
    savable(ctx, held, name, total_bytes(chunks)).await?;
    uploads(ctx, chunks).await
}

/// Stages the entry for the attempt (saved when it succeeds), once its
/// chunks are all in the store, whole. An entry of this key saved already
/// is `Committed` without more: the first save of a key wins.
#[allow(clippy::too_many_arguments)]
pub(super) async fn save(
    ctx: &Service,
    attempt: AttemptRef,
    held: &Held,
    name: &str,
    key: &str,
    chunks: &[ManifestEntry],
    completed: &[CompletedUpload],
    files: u64,
) -> Result<FilesAnswer, Failure> {
    declared(held, name, key)?;
    chunks_named(name, chunks)?;
    let bytes = total_bytes(chunks);
    savable(ctx, held, name, bytes).await?;
    if files > MAX_CACHE_FILES as u64 {
        return refuse(format!(
            "cache {} holds {files} files, more than the {MAX_CACHE_FILES} an entry may",
            shown(name)
        ));
    }
    if caches::is_saved(&ctx.db, &held.workflow, name, key).await? {
        return Ok(FilesAnswer::Committed);
    }
    let blobs = checked(chunks)?;
    let what = format!("cache {}", shown(name));
    let uploaded = store_blobs(ctx, &what, &blobs, completed).await?;
    let staged = caches::stage(
        &ctx.db,
        attempt.id,
        &held.workflow,
        name,
        key,
        files,
        chunks,
    )
    .await?;
    match staged {
        Staged::Stored => {
            ctx.metrics.artifact_uploaded(uploaded);
            Ok(FilesAnswer::Committed)
        }
        Staged::NotRunning => refuse(format!(
            "task attempt {} is no longer running: {what} was not kept",
            attempt.id
        )),
        Staged::MissingBlob(digest) => refuse(format!(
            "blob {digest} is no longer in the artifact store; save again"
        )),
        Staged::Invalid(reason) => refuse(reason),
        // Caches have their own quota, checked above and as they are saved.
        Staged::OverQuota { .. } => refuse(format!("{what} passes the workflow's quota")),
    }
}
