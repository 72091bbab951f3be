//! A cache's full key: its rendered key, then, when it hashes files, the
//! hash of the files its `hash_files` match, as `core::cache::full_key`
//! writes it.

use sha2::{Digest as _, Sha256};

use super::super::Spool;
use super::super::collect::{Collected, Rules};
use super::{RenderedCache, collect};
use crate::runtime::Workspace;

/// The full key of `cache` in `workspace`.
pub(crate) async fn full_key(
    workspace: Workspace<'_>,
    cache: &RenderedCache,
    spool: &Spool,
) -> Result<String, String> {
    if cache.hash_files.is_empty() {
        return Ok(cache.key.clone());
    }
    let files = collect(
        workspace,
        &cache.name,
        &cache.hash_files,
        spool,
        Rules::CACHE,
    )
    .await
    .map_err(|e| format!("hashing its hash_files: {e}"))?;
    Ok(xene_core::cache::full_key(
        &cache.key,
        Some(&files_hash(&files)),
    ))
}

/// The SHA-256, in hex, over the sorted lines `PATH\0DIGEST\n` of `files`
/// (paths in the workspace): the same files give the same hash wherever
/// the workspace is; no files give the hash of nothing.
pub(crate) fn files_hash(files: &[Collected]) -> String {
    let mut lines: Vec<String> = files
        .iter()
        .map(|f| format!("{}\0{}\n", f.entry.path, f.entry.digest))
        .collect();
    lines.sort_unstable();
    let mut hasher = Sha256::new();
    for line in &lines {
        hasher.update(line.as_bytes());
    }
    let hash: [u8; 32] = hasher.finalize().into();
    xene_core::artifact::Digest::from_sha256(&hash)
        .hex()
        .to_string()
}
