//! One cache saved: the files of its paths collected, packed into chunks,
//! the chunks the server lacks uploaded, and the entry committed, staged
//! for the attempt (saved when it succeeds; the first save of a key wins).

use xene_core::artifact::ManifestEntry;
use xene_core::protocol::{FilesAnswer, FilesRequest};

use super::super::collect::Rules;
use super::super::publish::files_text;
use super::super::publish::{Uploads, unexpected_for, upload_files};
use super::super::{FileChannel, Spool, reborrow, size_text};
use super::pack::pack;
use super::{RenderedCache, collect, reason};
use crate::runtime::Workspace;

/// Saves `cache` from `workspace` under `key`: the log line that says how
/// it went. Never an error: one is a `not saved` line.
pub(crate) async fn save(
    channel: &dyn FileChannel,
    workspace: Workspace<'_>,
    cache: &RenderedCache,
    key: &str,
    spool: &Spool,
) -> String {
    let name = &cache.name;
    match try_save(channel, workspace, cache, key, spool).await {
        Ok(line) => format!("cache {name}: {line}"),
        Err(e) => format!("cache {name}: not saved: {}", reason(name, &e)),
    }
}

async fn try_save(
    channel: &dyn FileChannel,
    workspace: Workspace<'_>,
    cache: &RenderedCache,
    key: &str,
    spool: &Spool,
) -> Result<String, String> {
    let name = &cache.name;
    let files = collect(
        reborrow(&workspace),
        name,
        &cache.paths,
        spool,
        Rules::CACHE_PATHS,
    )
    .await?;
    if files.is_empty() {
        return Err("its paths hold no file".into());
    }
    // Files spooled out of a container go once packed; a directory's stay.
    let remove_sources = matches!(workspace, Workspace::Archive(_));
    let spooled = spool.clone();
    let packed = tokio::task::spawn_blocking(move || pack(&files, &spooled, remove_sources))
        .await
        .map_err(|e| format!("packing its files failed: {e}"))??;
    let (completed, uploaded) =
        upload_files(channel, Uploads::Cache { key }, name, &packed.chunks).await?;
    let chunks: Vec<ManifestEntry> = packed.chunks.iter().map(|c| c.entry.clone()).collect();
    let answer = channel
        .ask(FilesRequest::CacheSave {
            name: name.clone(),
            key: key.to_string(),
            chunks,
            completed,
            files: packed.files,
        })
        .await?;
    match answer {
        FilesAnswer::Committed => Ok(format!(
            "saved {key} ({}, {}, {} uploaded)",
            files_text(packed.files),
            size_text(packed.bytes),
            size_text(uploaded)
        )),
        FilesAnswer::Refused { error } => Err(error),
        other => Err(unexpected_for(&format!("cache {name}"), &other)),
    }
}
