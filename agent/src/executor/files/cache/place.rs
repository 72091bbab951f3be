//! An entry's unpacked files placed in the workspace, keeping what is
//! there: a file whose path is taken (by a file, a directory, a link), or
//! that a link or a file stands in the way of, is not placed, and counted.
//!
//! On this machine each file is moved (or copied) in with no-replace
//! calls, and never through a link (`place_files`). In a container, whose
//! workspace is reached only through the engine's tar archives, the top
//! directories the entry writes into are exported first (links not
//! followed) to learn which of its paths exist and which directories are
//! real, and one archive of the files that are free goes in, with entries
//! only for the directories to make. Files a step's leftover process makes
//! between the two are overwritten: the archive API cannot refuse them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use xene_core::artifact::ManifestEntry;

use super::super::archive::{entry_name, import_files, open, with_reader};
use super::super::collect::unhashed;
use super::super::fetch::{Kept, place_files};
use super::reason;
use super::unpack::Unpacked;
use crate::runtime::{Workspace, WorkspaceArchive};

/// Above this many top directories (or files), the whole workspace is
/// exported once rather than each of them.
const MAX_EXPORTS: usize = 16;

/// Places `files`; what was kept. On this machine, a `cancel` stops it at
/// the next file; a container's one archive goes in whole.
pub(crate) async fn place(
    workspace: Workspace<'_>,
    files: Vec<Unpacked>,
    cancel: &CancellationToken,
) -> Result<Kept, String> {
    // Placing reads a manifest entry's path, mode and size, not its digest.
    let zero = unhashed();
    let entries: Vec<(ManifestEntry, PathBuf)> = files
        .into_iter()
        .map(|f| {
            let entry = ManifestEntry {
                path: f.path,
                size: f.size,
                mode: f.mode,
                digest: zero.clone(),
            };
            (entry, f.file)
        })
        .collect();
    match workspace {
        Workspace::Dir { root, owner } => {
            let root = root.to_path_buf();
            let cancel = cancel.clone();
            tokio::task::spawn_blocking(move || {
                place_files(&root, owner, "", &entries, true, Some(&cancel))
            })
            .await
            .map_err(|e| format!("placing its files failed: {e}"))?
        }
        Workspace::Archive(_) if cancel.is_cancelled() => Err("the task was cancelled".into()),
        Workspace::Archive(archive) => place_in_archive(archive, entries).await,
    }
}

async fn place_in_archive(
    workspace: &dyn WorkspaceArchive,
    files: Vec<(ManifestEntry, PathBuf)>,
) -> Result<Kept, String> {
    // Every path the entry writes, and every directory on the way.
    let mut wanted = BTreeSet::new();
    for (entry, _) in &files {
        wanted.extend(ancestors(&entry.path).map(str::to_string));
        wanted.insert(entry.path.clone());
    }
    let existing = existing(workspace, Arc::new(wanted)).await?;
    let mut kept = Kept::default();
    let mut free = Vec::with_capacity(files.len());
    for (entry, file) in files {
        let blocked = existing.contains_key(&entry.path)
            || ancestors(&entry.path).any(|dir| existing.get(dir) == Some(&false));
        if blocked {
            kept.files += 1;
            kept.bytes += entry.size;
        } else {
            free.push((entry, file));
        }
    }
    let real_dirs: BTreeSet<String> = existing
        .into_iter()
        .filter_map(|(path, is_dir)| is_dir.then_some(path))
        .collect();
    if !free.is_empty() {
        import_files(workspace, "", free, real_dirs).await?;
    }
    Ok(kept)
}

/// The directories above `path`, outermost first.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

/// Which of `wanted` exist in the container's workspace: true for a real
/// directory, false for anything else (a file, a link, a device).
async fn existing(
    workspace: &dyn WorkspaceArchive,
    wanted: Arc<BTreeSet<String>>,
) -> Result<BTreeMap<String, bool>, String> {
    let tops: BTreeSet<&str> = wanted
        .iter()
        .map(|p| p.split('/').next().unwrap_or_default())
        .collect();
    // Exporting a top path names its entries from it; the workspace's own
    // export names them from its directory, one component to drop.
    let exports: Vec<(&str, bool)> = if tops.len() > MAX_EXPORTS {
        vec![("", true)]
    } else {
        tops.into_iter().map(|top| (top, false)).collect()
    };
    let mut found = BTreeMap::new();
    for (path, drop_first) in exports {
        let Some(archive) = open(workspace, path, "")
            .await
            .map_err(|e| reason("", &e))?
        else {
            continue;
        };
        let wanted = wanted.clone();
        let mut seen = std::mem::take(&mut found);
        found = with_reader(archive, move |reader| {
            list(reader, drop_first, &wanted, &mut seen).map(|()| seen)
        })
        .await?
        .map_err(|e| reason("", &e))?;
    }
    Ok(found)
}

/// Reads an exported archive's headers, noting each of `wanted` it holds.
fn list(
    reader: impl std::io::Read,
    drop_first: bool,
    wanted: &BTreeSet<String>,
    found: &mut BTreeMap<String, bool>,
) -> Result<(), String> {
    let io = |e: std::io::Error| format!("reading the container's workspace: {e}");
    let mut archive = tar::Archive::new(reader);
    for item in archive.entries().map_err(io)? {
        let item = item.map_err(io)?;
        let (name, _) = entry_name(&item.path().map_err(io)?, "")?;
        let path = if drop_first {
            match name.split_once('/') {
                Some((_, rest)) => rest.to_string(),
                None => continue,
            }
        } else {
            name
        };
        if wanted.contains(&path) {
            found.insert(path, item.header().entry_type().is_dir());
        }
    }
    Ok(())
}
