//! One cache restored: its full key computed, the server asked for the
//! entry of that key or of a restore key, its chunks downloaded (each
//! checked against its digest), unpacked into the spool and placed.

use std::collections::HashMap;
use std::io::BufReader;

use tokio_util::sync::CancellationToken;
use xene_core::artifact::{ManifestEntry, check_stored_path};
use xene_core::cache::{CacheHit, MAX_CACHE_BYTES, MAX_CACHE_FILES, MAX_CHUNKS, chunk_name};
use xene_core::protocol::{BlobDownload, FilesAnswer, FilesRequest};

use super::super::collect::PathEntry;
use super::super::fetch::{Downloads, download_blobs};
use super::super::publish::unexpected_for;
use super::super::publish::{files_text, number};
use super::super::{FileChannel, Spool, size_text};
use super::unpack::{Unpacked, Unpacker};
use super::{RenderedCache, Restored, place, reason};
use crate::runtime::Workspace;

/// The bytes a chunk may hold besides its files' (headers, padding, the
/// end), per file and per chunk.
const OVERHEAD_PER_FILE: u64 = 4 * 1024;
const OVERHEAD_PER_CHUNK: u64 = 2 * 1024;

/// Restores `cache` into `workspace` by its `full` key (computed before
/// any cache was restored): what it found, and the log line that says so.
/// Never an error: one is a line, and a miss.
pub(crate) async fn restore(
    channel: &dyn FileChannel,
    workspace: Workspace<'_>,
    cache: &RenderedCache,
    full: Result<String, String>,
    spool: &Spool,
    cancel: &CancellationToken,
) -> (Restored, String) {
    let name = &cache.name;
    let miss = |key: String| Restored {
        name: name.clone(),
        hit: CacheHit::Miss,
        key,
        matched: None,
    };
    let full = match full {
        Ok(full) => full,
        Err(e) => {
            return (
                miss(cache.key.clone()),
                format!("cache {name}: not restored: {e}"),
            );
        }
    };
    match entry(channel, workspace, cache, &full, spool, cancel).await {
        Ok(None) => (miss(full.clone()), format!("cache {name}: miss {full}")),
        Ok(Some((matched, line))) => {
            let hit = if matched == full {
                CacheHit::Hit
            } else {
                CacheHit::Partial
            };
            let line = match hit {
                CacheHit::Hit => format!("cache {name}: hit {full} ({line})"),
                _ => format!("cache {name}: restored {matched} for {full} (partial): {line}"),
            };
            let restored = Restored {
                name: name.clone(),
                hit,
                key: full,
                matched: Some(matched),
            };
            (restored, line)
        }
        Err(e) => (
            miss(full.clone()),
            format!(
                "cache {name}: not restored ({full}, a miss): {}",
                reason(name, &e)
            ),
        ),
    }
}

/// Asks for the entry and restores it: its key and what was restored,
/// `None` on a miss.
async fn entry(
    channel: &dyn FileChannel,
    workspace: Workspace<'_>,
    cache: &RenderedCache,
    full: &str,
    spool: &Spool,
    cancel: &CancellationToken,
) -> Result<Option<(String, String)>, String> {
    let name = &cache.name;
    let label = format!("cache {name}");
    let cancelled = || "the task was cancelled".to_string();
    let asked = channel.ask(FilesRequest::CacheRestore {
        name: name.clone(),
        key: full.to_string(),
        restore_keys: cache.restore_keys.clone(),
    });
    // Waits on the network end at a cancel; work on the spool and the
    // workspace (below) stops at its next file, and is waited for.
    let answer = tokio::select! {
        answer = asked => answer?,
        () = cancel.cancelled() => return Err(cancelled()),
    };
    let (matched, files, chunks, downloads) = match answer {
        FilesAnswer::CacheEntry { key: None, .. } => return Ok(None),
        FilesAnswer::CacheEntry {
            key: Some(key),
            files,
            chunks,
            downloads,
        } => (key, files, chunks, downloads),
        FilesAnswer::Refused { error } => return Err(error),
        other => return Err(unexpected_for(&label, &other)),
    };
    check_entry(cache, full, &matched, files, &chunks, &downloads)?;
    let downloaded = download_blobs(
        channel,
        Downloads::Cache { key: &matched },
        name,
        &chunks,
        &downloads,
        spool,
    );
    let blobs = tokio::select! {
        blobs = downloaded => blobs?,
        () = cancel.cancelled() => return Err(cancelled()),
    };
    // Each chunk in order; a blob is removed once its last chunk is read,
    // so the spool holds about one copy of the entry.
    let mut uses: HashMap<_, usize> = HashMap::new();
    for chunk in &chunks {
        *uses.entry(&chunk.digest).or_default() += 1;
    }
    let mut unpacker = Unpacker::default();
    unpacker.cancel = Some(cancel.clone());
    for chunk in &chunks {
        let blob = blobs[&chunk.digest].clone();
        let left = uses.get_mut(&chunk.digest).expect("every chunk is counted");
        *left -= 1;
        let last = *left == 0;
        let spooled = spool.clone();
        let path = chunk.path.clone();
        unpacker = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(&blob).map_err(|e| format!("reading {path}: {e}"))?;
            unpacker
                .chunk(BufReader::with_capacity(1024 * 1024, file), &spooled)
                .map_err(|e| format!("chunk {path}: {e}"))?;
            if last {
                std::fs::remove_file(&blob).map_err(|e| format!("removing {path}: {e}"))?;
            }
            Ok::<_, String>(unpacker)
        })
        .await
        .map_err(|e| format!("unpacking failed: {e}"))??;
    }
    // An entry saved with other paths (a restore key's) may hold files
    // this cache's paths do not take: they are not placed.
    let (files, outside) = within_paths(&cache.paths, unpacker.files)?;
    let count = files.len() as u64;
    let bytes: u64 = files.iter().map(|f| f.size).sum();
    let kept = place::place(workspace, files, cancel).await?;
    let mut line = format!(
        "{}, {} restored",
        files_text(count - kept.files),
        size_text(bytes - kept.bytes)
    );
    if kept.files > 0 {
        line.push_str(&format!(
            ", {} already in the workspace kept",
            number(kept.files)
        ));
    }
    if outside > 0 {
        line.push_str(&format!(", {} outside its paths left out", number(outside)));
    }
    Ok(Some((matched, line)))
}

/// The files of `files` one of `paths` takes (as a collection would), and
/// how many it does not.
pub(crate) fn within_paths(
    paths: &[String],
    files: Vec<Unpacked>,
) -> Result<(Vec<Unpacked>, u64), String> {
    let entries = paths
        .iter()
        .map(|p| PathEntry::parse(p))
        .collect::<Result<Vec<_>, _>>()?;
    let (inside, outside): (Vec<_>, Vec<_>) = files
        .into_iter()
        .partition(|f| entries.iter().any(|e| takes_path(e, &f.path)));
    Ok((inside, outside.len() as u64))
}

/// Whether the file at `path` (in the workspace) is one `entry` takes: it
/// is under its base, and, for a glob, the glob matches it or a directory
/// above it.
fn takes_path(entry: &PathEntry, path: &str) -> bool {
    let base = &entry.base;
    let under = base.is_empty()
        || path == base
        || path
            .strip_prefix(base.as_str())
            .is_some_and(|rest| rest.starts_with('/'));
    if !under {
        return false;
    }
    if entry.glob.is_none() {
        return true;
    }
    path.match_indices('/')
        .map(|(i, _)| &path[..i])
        .chain([path])
        .any(|prefix| entry.takes(prefix))
}

/// Refuses an answer no server of ours gives: a key that is neither the
/// full key nor one a restore key starts, chunks out of order or past an
/// entry's bounds.
fn check_entry(
    cache: &RenderedCache,
    full: &str,
    matched: &str,
    files: u64,
    chunks: &[ManifestEntry],
    downloads: &[BlobDownload],
) -> Result<(), String> {
    if matched != full
        && !cache
            .restore_keys
            .iter()
            .any(|p| matched.starts_with(p.as_str()))
    {
        return Err(format!(
            "the server gave entry {matched:?}, which neither its key nor a restore key names"
        ));
    }
    if files > MAX_CACHE_FILES as u64 {
        return Err(format!(
            "the entry holds {files} files, more than {MAX_CACHE_FILES}"
        ));
    }
    if chunks.len() > MAX_CHUNKS || downloads.len() > MAX_CHUNKS {
        return Err(format!("the entry has more than {MAX_CHUNKS} chunks"));
    }
    let mut total = 0u64;
    for (i, chunk) in chunks.iter().enumerate() {
        check_stored_path(&chunk.path)?;
        if chunk.path != chunk_name(i) {
            return Err(format!(
                "the entry's chunk {i} is named {:?}, not {:?}",
                chunk.path,
                chunk_name(i)
            ));
        }
        total = total.saturating_add(chunk.size);
    }
    let most = MAX_CACHE_BYTES
        + OVERHEAD_PER_FILE * MAX_CACHE_FILES as u64
        + OVERHEAD_PER_CHUNK * MAX_CHUNKS as u64;
    if total > most {
        return Err(format!(
            "the entry's chunks hold {total} bytes, more than {most}"
        ));
    }
    Ok(())
}
