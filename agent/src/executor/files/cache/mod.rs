//! Caches on the agent: an entry's full key computed from the workspace,
//! the entry restored (downloaded, checked, unpacked, placed keeping what
//! is there) and saved (packed into tar chunks, uploaded, committed). A
//! cache never fails its task: whatever goes wrong is a line in the log,
//! and a miss or no save.
//!
//! An entry is the files of its `paths`, collected as a `publish` is but
//! stored by their paths in the workspace, packed in path order into tar
//! chunks of about [`CHUNK_BYTES`](xene_core::cache::CHUNK_BYTES) whose
//! bytes depend on nothing but the files: an unchanged entry uploads
//! nothing.

mod key;
mod pack;
mod place;
mod restore;
mod save;
#[cfg(test)]
mod tests;
mod unpack;

use tokio_util::sync::CancellationToken;
use xene_core::cache::CacheHit;
use xene_core::spec::{Publish, PublishWhen};

use super::archive::collect_archive_with;
use super::collect::{Collected, Rules, collect_dir_with};
use super::{FileChannel, Spool, reborrow};
use crate::runtime::Workspace;

/// A cache with its templates rendered (C2 renders them like env values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RenderedCache {
    pub name: String,
    /// Rendered, before the hash of `hash_files` is appended.
    pub key: String,
    pub hash_files: Vec<String>,
    pub restore_keys: Vec<String>,
    pub paths: Vec<String>,
    pub after: Option<String>,
}

/// What one cache's restore found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Restored {
    pub name: String,
    pub hit: CacheHit,
    /// The full key computed (the rendered key when it could not be).
    pub key: String,
    /// The key of the entry restored, `None` on a miss.
    pub matched: Option<String>,
}

/// Restores each of `caches` whose `after` is `after`, one after the
/// other; each one's line goes to `log`. Never an error.
pub(crate) async fn restore_all(
    channel: &dyn FileChannel,
    workspace: Workspace<'_>,
    caches: &[RenderedCache],
    after: Option<&str>,
    spool: &Spool,
    log: &mut Vec<String>,
    cancel: &CancellationToken,
) -> Vec<Restored> {
    let due: Vec<&RenderedCache> = caches
        .iter()
        .filter(|c| c.after.as_deref() == after)
        .collect();
    let mut restored = Vec::with_capacity(due.len());
    if due.is_empty() {
        return restored;
    }
    let made = spool.make().await;
    // Every full key before any restore: one cache's files restored must
    // not change what another's `hash_files` match.
    let mut keys = Vec::with_capacity(due.len());
    for cache in &due {
        if cancel.is_cancelled() {
            return restored;
        }
        keys.push(match &made {
            Ok(()) => key::full_key(reborrow(&workspace), cache, spool).await,
            Err(e) => Err(e.clone()),
        });
        if made.is_ok()
            && let Err(e) = spool.empty().await
        {
            log.push(format!("cache {}: {e}", cache.name));
        }
    }
    for (cache, full) in due.into_iter().zip(keys) {
        if cancel.is_cancelled() {
            break;
        }
        let (found, line) = match &made {
            Ok(()) => {
                let workspace = reborrow(&workspace);
                restore::restore(channel, workspace, cache, full, spool, cancel).await
            }
            Err(e) => (
                Restored {
                    name: cache.name.clone(),
                    hit: CacheHit::Miss,
                    key: cache.key.clone(),
                    matched: None,
                },
                format!("cache {}: not restored: {e}", cache.name),
            ),
        };
        log.push(line);
        if made.is_ok()
            && let Err(e) = spool.empty().await
        {
            log.push(format!("cache {}: {e}", cache.name));
        }
        restored.push(found);
    }
    restored
}

/// Saves each of `restored` that was not a hit, when `cache_save`; each
/// one's line goes to `log`. Never an error.
pub(crate) async fn save_all(
    channel: &dyn FileChannel,
    workspace: Workspace<'_>,
    caches: &[RenderedCache],
    cache_save: bool,
    restored: &[Restored],
    spool: &Spool,
    log: &mut Vec<String>,
) {
    let mut made = None;
    for found in restored.iter().filter(|r| r.hit != CacheHit::Hit) {
        let Some(cache) = caches.iter().find(|c| c.name == found.name) else {
            continue;
        };
        let name = &cache.name;
        // A full key with a hash always differs from the rendered key:
        // equal, its hash could not be computed, and the entry would be
        // saved under a key no restore asks for.
        if !cache.hash_files.is_empty() && found.key == cache.key {
            log.push(format!(
                "cache {name}: not saved: its key could not be computed"
            ));
            continue;
        }
        if !cache_save {
            log.push(format!(
                "cache {name}: not saved: its pipeline's cache_save says never for this run's trigger"
            ));
            continue;
        }
        if made.is_none() {
            made = Some(spool.make().await);
        }
        if let Some(Err(e)) = &made {
            log.push(format!("cache {name}: not saved: {e}"));
            continue;
        }
        let line = save::save(channel, reborrow(&workspace), cache, &found.key, spool).await;
        log.push(line);
        if let Err(e) = spool.empty().await {
            log.push(format!("cache {name}: {e}"));
        }
    }
}

/// The files `paths` take in the workspace, by their paths in it, by
/// `rules` (`Rules::CACHE` or `Rules::CACHE_PATHS`); a path that matches
/// nothing takes nothing. Errors say what, without the "artifact NAME:" a
/// collection starts them with.
async fn collect(
    workspace: Workspace<'_>,
    name: &str,
    paths: &[String],
    spool: &Spool,
    rules: Rules,
) -> Result<Vec<Collected>, String> {
    let publish = Publish {
        name: name.to_string(),
        paths: paths.to_vec(),
        optional: true,
        when: PublishWhen::Success,
    };
    let collected = match workspace {
        Workspace::Dir { root, .. } => {
            let root = root.to_path_buf();
            tokio::task::spawn_blocking(move || collect_dir_with(&root, &publish, rules))
                .await
                .map_err(|e| format!("collecting its files failed: {e}"))?
        }
        Workspace::Archive(archive) => collect_archive_with(archive, &publish, spool, rules).await,
    };
    collected.map_err(|e| reason(name, &e))
}

/// `e` without the label collection and transfers start it with.
fn reason(name: &str, e: &str) -> String {
    for label in [format!("artifact {name}: "), format!("cache {name}: ")] {
        if let Some(rest) = e.strip_prefix(&label) {
            return rest.to_string();
        }
    }
    e.to_string()
}
