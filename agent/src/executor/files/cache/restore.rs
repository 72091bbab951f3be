//! One cache restored: its full key computed, the server asked for the
//! entry of that key or of a restore key, its chunks downloaded (each
//! checked against its digest), unpacked into the spool and placed.

use std::collections::HashMap;
use std::io::BufReader;

use xene_core::artifact::{ManifestEntry, check_stored_path};
use xene_core::cache::{CacheHit, MAX_CACHE_BYTES, MAX_CACHE_FILES, MAX_CHUNKS, chunk_name};
use xene_core::protocol::{BlobDownload, FilesAnswer, FilesRequest};

use super::super::fetch::{Downloads, download_blobs};
use super::super::publish::unexpected_for;
use super::super::{FileChannel, Spool, reborrow, size_text};
use super::unpack::Unpacker;
use super::{RenderedCache, Restored, files_text, key, number, place, reason};
use crate::runtime::Workspace;

/// The bytes a chunk may hold besides its files' (headers, padding, the
/// end), per file and per chunk.
const OVERHEAD_PER_FILE: u64 = 4 * 1024;
const OVERHEAD_PER_CHUNK: u64 = 2 * 1024;

/// Restores `cache` into `workspace`: what it found, and the log line that
/// says so. Never an error: one is a line, and a miss.
pub(crate) async fn restore(
    channel: &dyn FileChannel,
    workspace: Workspace<'_>,
    cache: &RenderedCache,
    spool: &Spool,
) -> (Restored, String) {
    let name = &cache.name;
    let miss = |key: String| Restored {
        name: name.clone(),
        hit: CacheHit::Miss,
        key,
        matched: None,
    };
    let full = match key::full_key(reborrow(&workspace), cache, spool).await {
        Ok(full) => full,
        Err(e) => {
            return (
                miss(cache.key.clone()),
                format!("cache {name}: not restored: {e}"),
            );
        }
    };
    match entry(channel, workspace, cache, &full, spool).await {
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
) -> Result<Option<(String, String)>, String> {
    let name = &cache.name;
    let label = format!("cache {name}");
    let answer = channel
        .ask(FilesRequest::CacheRestore {
            name: name.clone(),
            key: full.to_string(),
            restore_keys: cache.restore_keys.clone(),
        })
        .await?;
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
    let blobs = download_blobs(
        channel,
        Downloads::Cache { key: &matched },
        name,
        &chunks,
        &downloads,
        spool,
    )
    .await?;
    // Each chunk in order; a blob is removed once its last chunk is read,
    // so the spool holds about one copy of the entry.
    let mut uses: HashMap<_, usize> = HashMap::new();
    for chunk in &chunks {
        *uses.entry(&chunk.digest).or_default() += 1;
    }
    let mut unpacker = Unpacker::default();
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
    let (count, bytes) = (unpacker.files.len() as u64, unpacker.bytes);
    let kept = place::place(workspace, unpacker.files).await?;
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
    Ok(Some((matched, line)))
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
