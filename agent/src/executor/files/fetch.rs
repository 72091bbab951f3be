//! One needed artifact fetched: its manifest asked for, each distinct blob
//! downloaded to the spool and checked against its digest, then its files
//! placed in the workspace under the need's path, confined to it.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use futures::{StreamExt, TryStreamExt};
use xene_core::artifact::{self, Digest, MAX_FILES, ManifestEntry};
use xene_core::protocol::{BlobDownload, FilesAnswer, FilesRequest, Transfer};
use xene_core::spec::Need;

use super::archive::place_archive;
use super::collect::{join, normalize};
use super::publish::{files_text, is_expired, unexpected, unexpected_text};
use super::{FileChannel, Spool, reborrow, size_text};
use crate::runtime::Workspace;
use tokio_util::sync::CancellationToken;

/// How many blobs come down at once.
const DOWNLOADS_AT_ONCE: usize = 4;

/// Fetches every need into `workspace`, one after the other; each
/// artifact's log line goes to `log` as it is done. Every manifest is asked
/// for first: needs whose files would meet in the workspace are refused
/// before anything is downloaded or placed, whatever the workspace is.
pub(crate) async fn fetch_all(
    channel: &dyn FileChannel,
    workspace: Workspace<'_>,
    needs: &[Need],
    spool: &Spool,
    log: &mut Vec<String>,
) -> Result<(), String> {
    let mut asked = Vec::with_capacity(needs.len());
    for need in needs {
        asked.push(ask(channel, need).await?);
    }
    check_disjoint(
        needs
            .iter()
            .zip(&asked)
            .map(|(need, (files, _))| (need, files.as_slice())),
    )?;
    for (need, (files, downloads)) in needs.iter().zip(asked) {
        let line = fetch(channel, reborrow(&workspace), need, files, downloads, spool).await?;
        log.push(line);
        spool.empty().await?;
    }
    Ok(())
}

/// The manifest of `need` and where its blobs come down from, checked.
async fn ask(
    channel: &dyn FileChannel,
    need: &Need,
) -> Result<(Vec<ManifestEntry>, Vec<BlobDownload>), String> {
    let name = &need.name;
    let refused = |error: String| format!("artifact {name}: {error}");
    let (files, downloads) = match channel
        .ask(FilesRequest::Fetch { name: name.clone() })
        .await
        .map_err(refused)?
    {
        FilesAnswer::Downloads { files, downloads } => (files, downloads),
        FilesAnswer::Refused { error } => return Err(refused(error)),
        other => return Err(unexpected(name, &other)),
    };
    artifact::check_manifest(&files).map_err(refused)?;
    if downloads.len() > MAX_FILES {
        return Err(refused(format!("more than {MAX_FILES} downloads")));
    }
    Ok((files, downloads))
}

/// Refuses needs whose files would meet where they are placed: one path
/// placed twice, or a file where another need places a directory. Placing
/// would refuse them too, but only once the first need is in place, and
/// differently on the shell and in a container.
fn check_disjoint<'a>(
    needs: impl Iterator<Item = (&'a Need, &'a [ManifestEntry])>,
) -> Result<(), String> {
    // Sorted: with several collisions, the same one is named each time.
    let mut placed: BTreeMap<String, &str> = BTreeMap::new();
    for (need, files) in needs {
        let dir = normalize(&need.path);
        for file in files {
            let path = join(&dir, &file.path);
            if let Some(other) = placed.get(&path) {
                return Err(format!(
                    "artifacts {other} and {} both place {path}",
                    need.name
                ));
            }
            placed.insert(path, &need.name);
        }
    }
    for (path, name) in &placed {
        let mut end = 0;
        while let Some(slash) = path[end..].find('/') {
            let dir = &path[..end + slash];
            if let Some(other) = placed.get(dir) {
                return Err(format!(
                    "artifact {other} places the file {dir}, and artifact {name} places {path} in it"
                ));
            }
            end += slash + 1;
        }
    }
    Ok(())
}

/// Fetches `need`, whose manifest is `files`, into `workspace`; the log
/// line that says so.
async fn fetch(
    channel: &dyn FileChannel,
    workspace: Workspace<'_>,
    need: &Need,
    files: Vec<ManifestEntry>,
    downloads: Vec<BlobDownload>,
    spool: &Spool,
) -> Result<String, String> {
    let name = &need.name;
    let refused = |error: String| format!("artifact {name}: {error}");
    let blobs = download_blobs(
        channel,
        Downloads::Artifact,
        name,
        &files,
        &downloads,
        spool,
    )
    .await?;

    // `out/` and `./out` are `out`.
    let dir = normalize(&need.path);
    let placed: Vec<(ManifestEntry, PathBuf)> = files
        .iter()
        .map(|f| (f.clone(), blobs[&f.digest].clone()))
        .collect();
    match workspace {
        Workspace::Dir { root, owner } => {
            let root = root.to_path_buf();
            tokio::task::spawn_blocking(move || place_dir(&root, owner, &dir, &placed))
                .await
                .map_err(|e| format!("placing its files failed: {e}"))
                .and_then(|placed| placed)
                .map_err(refused)?;
        }
        Workspace::Archive(archive) => place_archive(archive, &dir, placed)
            .await
            .map_err(refused)?,
    }
    let bytes: u64 = files.iter().map(|f| f.size).sum();
    Ok(format!(
        "fetched {name}: {}, {}",
        files_text(files.len() as u64),
        size_text(bytes)
    ))
}

/// What blobs come down for: an artifact's files (asked for again by
/// `Fetch`), or a cache entry's chunks (by `CacheRestore` of its key).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Downloads<'a> {
    Artifact,
    Cache { key: &'a str },
}

impl Downloads<'_> {
    fn label(&self, name: &str) -> String {
        match self {
            Downloads::Artifact => format!("artifact {name}"),
            Downloads::Cache { .. } => format!("cache {name}"),
        }
    }

    /// The downloads of `files` asked for again: refused when what the
    /// name holds changed meanwhile. Its errors are bare: the caller puts
    /// the label and the file before them.
    async fn again(
        &self,
        channel: &dyn FileChannel,
        name: &str,
        files: &[ManifestEntry],
    ) -> Result<Vec<BlobDownload>, String> {
        let request = match self {
            Downloads::Artifact => FilesRequest::Fetch {
                name: name.to_string(),
            },
            Downloads::Cache { key } => FilesRequest::CacheRestore {
                name: name.to_string(),
                key: key.to_string(),
                restore_keys: Vec::new(),
            },
        };
        match channel.ask(request).await? {
            FilesAnswer::Downloads {
                files: again,
                downloads,
            } if again == files => Ok(downloads),
            FilesAnswer::Downloads { .. } => {
                Err("it was published again while it was fetched".into())
            }
            FilesAnswer::CacheEntry {
                key: Some(again),
                chunks,
                downloads,
                ..
            } if matches!(self, Downloads::Cache { key } if *key == again) && chunks == files => {
                Ok(downloads)
            }
            FilesAnswer::CacheEntry { .. } => Err("the entry is gone or changed".into()),
            FilesAnswer::Refused { error } => Err(error),
            other => Err(unexpected_text(&other)),
        }
    }
}

/// Downloads each distinct blob of `files` to the spool, checked against
/// its digest and size: where each one is.
pub(crate) async fn download_blobs(
    channel: &dyn FileChannel,
    kind: Downloads<'_>,
    name: &str,
    files: &[ManifestEntry],
    downloads: &[BlobDownload],
    spool: &Spool,
) -> Result<HashMap<Digest, PathBuf>, String> {
    let label = kind.label(name);
    let refused = |error: String| format!("{label}: {error}");
    // Every file of a digest must give it the same size: the one checked.
    let mut wanted: HashMap<&Digest, &ManifestEntry> = HashMap::new();
    for file in files {
        let first = *wanted.entry(&file.digest).or_insert(file);
        if first.size != file.size {
            return Err(refused(format!(
                "files {} and {} have the same digest but different sizes",
                first.path, file.path
            )));
        }
    }
    let mut transfers = HashMap::new();
    for download in downloads {
        if wanted.contains_key(&download.digest) {
            transfers
                .entry(&download.digest)
                .or_insert(&download.transfer);
        }
    }
    if let Some(file) = files.iter().find(|f| !transfers.contains_key(&f.digest)) {
        return Err(refused(format!(
            "the server gave no download for file {}",
            file.path
        )));
    }
    let mut pending = Vec::new();
    for (digest, transfer) in transfers {
        let file = wanted[digest];
        pending.push(async move {
            let dest = spool.path();
            download(channel, kind, name, files, file, transfer, &dest).await?;
            Ok::<_, String>((digest.clone(), dest))
        });
    }
    // A stream over the futures, not over a closure making them: that
    // would not be `Send`. The first failure stops the other downloads.
    futures::stream::iter(pending)
        .buffer_unordered(DOWNLOADS_AT_ONCE)
        .try_collect()
        .await
}

/// Downloads the blob of `file` to `dest` and checks it. A URL that
/// expired while others came down (a large artifact takes long) is asked
/// for again, once.
async fn download(
    channel: &dyn FileChannel,
    kind: Downloads<'_>,
    name: &str,
    files: &[ManifestEntry],
    file: &ManifestEntry,
    transfer: &Transfer,
    dest: &Path,
) -> Result<(), String> {
    let label = kind.label(name);
    let failed = |e: String| format!("{label}: downloading {}: {e}", file.path);
    let got = match channel.download(transfer, dest).await {
        Ok(got) => got,
        Err(e) if is_expired(&e) => {
            let refused =
                |error: String| format!("{label}: asking again for {}: {error}", file.path);
            let renewed = kind.again(channel, name, files).await.map_err(refused)?;
            let Some(renewed) = renewed.into_iter().find(|d| d.digest == file.digest) else {
                return Err(refused("the server gave no download for it".into()));
            };
            channel
                .download(&renewed.transfer, dest)
                .await
                .map_err(|again| failed(format!("{again} (after a new URL was asked for: {e})")))?
        }
        Err(e) => return Err(failed(e)),
    };
    let size = tokio::fs::symlink_metadata(dest)
        .await
        .map_err(|e| failed(e.to_string()))?
        .len();
    if got != file.digest || size != file.size {
        return Err(format!(
            "{label}: file {} does not match its digest",
            file.path
        ));
    }
    Ok(())
}

/// Copies each file's blob to `dir`/path under `root`, creating the
/// directories on the way; nothing is written through a link or over an
/// existing file. What is created is given to `owner`.
pub(crate) fn place_dir(
    root: &Path,
    owner: Option<(u32, u32)>,
    dir: &str,
    files: &[(ManifestEntry, PathBuf)],
) -> Result<(), String> {
    place_files(root, owner, dir, files, false, None).map(|_| ())
}

/// Files not placed because their paths were taken.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Kept {
    pub files: u64,
    pub bytes: u64,
}

/// [`place_dir`]; with `keep`, a file whose path is taken (by anything,
/// or a link or a file on its way) is not placed, and what is there is
/// kept as it is: how many were kept. `cancel` stops it at the next file.
/// A file's mode and owner are set through a descriptor opened without
/// following a link (a step's process may swap the path meanwhile); a
/// directory made here is given with `lchown`.
pub(crate) fn place_files(
    root: &Path,
    owner: Option<(u32, u32)>,
    dir: &str,
    files: &[(ManifestEntry, PathBuf)],
    keep: bool,
    cancel: Option<&CancellationToken>,
) -> Result<Kept, String> {
    let mut kept = Kept::default();
    let give_dir = |path: &Path| -> Result<(), String> {
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::lchown(path, Some(uid), Some(gid))
                .map_err(|e| format!("giving {} to the steps' user: {e}", path.display()))?;
        }
        Ok(())
    };
    let mut uses: HashMap<&Path, usize> = HashMap::new();
    for (_, blob) in files {
        *uses.entry(blob.as_path()).or_default() += 1;
    }
    'files: for (entry, blob) in files {
        if cancel.is_some_and(|c| c.is_cancelled()) {
            return Err("the task was cancelled".into());
        }
        let rel = join(dir, &entry.path);
        let mut at = root.to_path_buf();
        let mut parts = rel.split('/').peekable();
        while let Some(part) = parts.next() {
            if matches!(part, "" | "." | "..") {
                return Err(format!("the path {rel:?} is not a plain relative path"));
            }
            at.push(part);
            if parts.peek().is_none() {
                break;
            }
            match std::fs::symlink_metadata(&at) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) if keep => {
                    kept.files += 1;
                    kept.bytes += entry.size;
                    continue 'files;
                }
                Ok(_) => {
                    return Err(format!(
                        "cannot place {rel}: {} is in the way (a file or a link, not a directory)",
                        at.strip_prefix(root).unwrap_or(&at).display()
                    ));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    std::fs::create_dir(&at).map_err(|e| format!("creating {rel}: {e}"))?;
                    give_dir(&at)?;
                }
                Err(e) => return Err(format!("placing {rel}: {e}")),
            }
        }
        let left = uses.get_mut(blob.as_path()).expect("every blob is counted");
        *left -= 1;
        // A blob's last file takes the blob itself: no second copy of its
        // bytes when the spool and the workspace share a file system.
        let placed = match *left > 0 {
            true => copy_new(blob, &at, &rel),
            false => match moved(blob, &at, &rel) {
                Ok(true) => Ok(()),
                Ok(false) => copy_new(blob, &at, &rel),
                Err(e) => Err(e),
            },
        };
        match placed {
            Ok(()) => {}
            Err(Place::Taken(_)) if keep => {
                kept.files += 1;
                kept.bytes += entry.size;
                continue;
            }
            Err(Place::Taken(e) | Place::Failed(e)) => return Err(e),
        }
        set_mode_and_owner(&at, entry.mode & 0o777, owner)
            .map_err(|e| format!("setting the mode and owner of {rel}: {e}"))?;
    }
    Ok(kept)
}

/// `fchmod` and `fchown` of the regular file at `at`, opened without
/// following a link (nor blocking on a FIFO put in its place).
pub(crate) fn set_mode_and_owner(
    at: &Path,
    mode: u32,
    owner: Option<(u32, u32)>,
) -> std::io::Result<()> {
    use rustix::fs::{CWD, Mode, OFlags, openat};
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let file = std::fs::File::from(openat(CWD, at, flags, Mode::empty())?);
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("it is no longer a regular file"));
    }
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
    }
    Ok(())
}

/// Why a file was not placed.
enum Place {
    /// Something is at its path already.
    Taken(String),
    Failed(String),
}

/// Moves `blob` to `at` unless something is there; false when it cannot be
/// moved (another file system), and it is to be copied.
fn moved(blob: &Path, at: &Path, rel: &str) -> Result<bool, Place> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    match renameat_with(CWD, blob, CWD, at, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::EXIST) => Err(Place::Taken(format!(
            "cannot place {rel}: something is already there"
        ))),
        Err(_) => Ok(false),
    }
}

/// Copies `blob` to a new file `at`; `create_new` refuses any existing
/// name, a link included, without following it.
fn copy_new(blob: &Path, at: &Path, rel: &str) -> Result<(), Place> {
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(at)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                Place::Taken(format!("cannot place {rel}: something is already there"))
            }
            _ => Place::Failed(format!("placing {rel}: {e}")),
        })?;
    let mut input =
        std::fs::File::open(blob).map_err(|e| Place::Failed(format!("reading a blob: {e}")))?;
    std::io::copy(&mut input, &mut out)
        .map_err(|e| Place::Failed(format!("writing {rel}: {e}")))?;
    Ok(())
}
