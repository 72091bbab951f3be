//! Artifacts in and out of a workspace reached only through tar archives
//! (a container's): a `publish` read from the engine's archives of its
//! bases, each matching file spooled to this machine while it is hashed;
//! a need's files written as one archive the engine extracts.
//!
//! Tar is read and written in blocking threads; the archive streams pass
//! through small bounded channels, so memory stays bounded whatever the
//! sizes.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::mpsc;
use xene_core::artifact::{Digest, ManifestEntry};
use xene_core::spec::Publish;

use super::Spool;
use super::collect::{
    Collected, Collector, PathEntry, Rules, hash_copy, join, plain_copy, unhashed,
};
use crate::runtime::{RuntimeError, WorkspaceArchive};

/// How many links deep collection follows (a link in a linked directory
/// counts twice).
const MAX_LINK_HOPS: usize = 8;

/// What one archive is read as: a `paths` entry's base, or a link followed.
struct Source {
    /// The path exported, relative to the workspace (a link's target).
    export: String,
    /// The path the glob sees for it (a followed link's own path).
    logical: String,
    /// The stored path of the exported path when it is a regular file.
    file_stored: String,
    /// What the stored paths of what it holds start with.
    dir_stored: String,
    /// Everything in it is taken (a literal path, or a link the glob took).
    taken: bool,
    /// The paths exported on the way here, its own included: a link back
    /// into one of them is a loop.
    chain: Vec<String>,
}

/// What reading archives builds up, moved into each blocking read.
struct Reading {
    collector: Collector,
    /// Files spooled, by digest: the same bytes are spooled once.
    by_digest: HashMap<Digest, PathBuf>,
    /// Links found, followed once the archive is read.
    links: Vec<Source>,
}

/// Collects one `publish` from a container's workspace. Links are
/// followed (as the shell runtime does) while they stay inside it.
pub(crate) async fn collect_archive(
    workspace: &dyn WorkspaceArchive,
    publish: &Publish,
    spool: &Spool,
) -> Result<Vec<Collected>, String> {
    collect_archive_with(workspace, publish, spool, Rules::ARTIFACT).await
}

/// [`collect_archive`] by `rules`.
pub(crate) async fn collect_archive_with(
    workspace: &dyn WorkspaceArchive,
    publish: &Publish,
    spool: &Spool,
    rules: Rules,
) -> Result<Vec<Collected>, String> {
    let name = publish.name.clone();
    let mut reading = Reading {
        collector: Collector::with_rules(&name, rules),
        by_digest: HashMap::new(),
        links: Vec::new(),
    };
    let mut matched_any = false;
    let mut known = HashSet::new();
    for text in &publish.paths {
        let entry = Arc::new(PathEntry::parse(text).map_err(|e| format!("artifact {name}: {e}"))?);
        let before = reading.collector.files.len();
        let is_glob = entry.glob.is_some();
        let base = entry.base.clone();
        let (file_stored, dir_stored) = rules.base_stored(&base);
        let mut queue = VecDeque::from([Source {
            file_stored,
            export: base.clone(),
            logical: base.clone(),
            dir_stored,
            taken: !is_glob,
            chain: vec![base],
        }]);
        while let Some(mut source) = queue.pop_front() {
            let real = real_path(workspace, &source, &name, &mut known).await?;
            let archive = match &real {
                Some(real) => {
                    if let Some(last) = source.chain.last_mut() {
                        last.clone_from(real);
                    }
                    source.export.clone_from(real);
                    open(workspace, real, &name).await?
                }
                None => None,
            };
            let Some(archive) = archive else {
                // A link to nothing the glob did not take: nothing to take.
                if source.chain.len() > 1 && !source.taken {
                    continue;
                }
                if source.chain.len() > 1 {
                    return Err(format!(
                        "artifact {name}: {} is a symbolic link to nothing",
                        source.logical
                    ));
                }
                if !is_glob && !publish.optional {
                    return Err(format!(
                        "artifact {name}: {text} does not exist in the workspace"
                    ));
                }
                continue;
            };
            let spooled = spool.clone();
            let entry = entry.clone();
            reading = with_reader(archive, move |reader| {
                read_tar(reader, &entry, &source, &mut reading, &spooled).map(|()| reading)
            })
            .await??;
            for link in reading.links.drain(..) {
                if link.chain.len() > MAX_LINK_HOPS + 1 {
                    return Err(format!(
                        "artifact {name}: {} is reached through more than {MAX_LINK_HOPS} links",
                        link.logical
                    ));
                }
                queue.push_back(link);
            }
            if queue.len() > rules.max_links {
                return Err(format!(
                    "artifact {name}: more than {} links",
                    rules.max_links
                ));
            }
        }
        let found = reading.collector.files.len() > before;
        matched_any |= found;
        if is_glob && !found && !publish.optional {
            return Err(format!("artifact {name}: {text} matches no file"));
        }
    }
    if !matched_any && !publish.optional {
        return Err(format!("artifact {name}: its paths hold no file"));
    }
    reading.collector.finish()
}

/// How many directories `real_path` remembers as checked, per `publish`.
const MAX_KNOWN_DIRS: usize = 4096;

/// `source.export` with no link among its parent components, or `None`
/// when one of them is missing or not a directory. The engine's archive
/// API follows links in every component but the last, within the
/// container's root (not the workspace) and as root, so each parent is
/// exported in turn first: the archive of a link is that link alone, and
/// its target is resolved as a link the walk meets is (`resolve_link`),
/// then checked again from the start. `known` holds directories found
/// real before. A step's process still running could swap a checked
/// directory for a link before the export: the archive API leaves no way
/// to pin a path.
async fn real_path(
    workspace: &dyn WorkspaceArchive,
    source: &Source,
    name: &str,
    known: &mut HashSet<String>,
) -> Result<Option<String>, String> {
    let logical = &source.logical;
    let components = |path: &str| -> VecDeque<String> {
        path.split('/')
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect()
    };
    let mut rest = components(&source.export);
    let mut done = String::new();
    let mut hops = 0;
    // Each turn takes a component off `rest`, or follows one of at most
    // `MAX_LINK_HOPS` links (whose targets are bounded paths).
    while rest.len() > 1 {
        let Some(part) = rest.pop_front() else { break };
        let path = join(&done, &part);
        if known.contains(&path) {
            done = path;
            continue;
        }
        match kind_of(workspace, &path, name).await? {
            Some(Kind::Dir) => {
                if known.len() < MAX_KNOWN_DIRS {
                    known.insert(path.clone());
                }
                done = path;
            }
            Some(Kind::Link(target)) => {
                hops += 1;
                if hops > MAX_LINK_HOPS {
                    return Err(format!(
                        "artifact {name}: {logical} is reached through more than {MAX_LINK_HOPS} links"
                    ));
                }
                let Some(target) = resolve_link(&path, &target) else {
                    return Err(format!(
                        "artifact {name}: {logical} leads out of the workspace through a symbolic link ({path})"
                    ));
                };
                let mut resolved = components(&target);
                resolved.extend(rest);
                rest = resolved;
                done = String::new();
            }
            Some(Kind::Other) | None => return Ok(None),
        }
    }
    Ok(Some(
        rest.into_iter().fold(done, |path, part| join(&path, &part)),
    ))
}

/// What a path in the workspace is, read from its archive's first entry.
enum Kind {
    Dir,
    Link(String),
    Other,
}

/// The kind of `path`, `None` when there is nothing there.
async fn kind_of(
    workspace: &dyn WorkspaceArchive,
    path: &str,
    name: &str,
) -> Result<Option<Kind>, String> {
    let Some(archive) = open(workspace, path, name).await? else {
        return Ok(None);
    };
    let (name, path) = (name.to_string(), path.to_string());
    with_reader(archive, move |reader| {
        let io =
            |e: std::io::Error| format!("artifact {name}: reading the container's archive: {e}");
        let mut archive = tar::Archive::new(reader);
        let Some(item) = archive.entries().map_err(io)?.next() else {
            return Ok(None);
        };
        let item = item.map_err(io)?;
        let kind = item.header().entry_type();
        if kind.is_dir() {
            return Ok(Some(Kind::Dir));
        }
        if !kind.is_symlink() {
            return Ok(Some(Kind::Other));
        }
        match item.link_name().map_err(io)? {
            Some(target) => match target.to_str() {
                Some(target) => Ok(Some(Kind::Link(target.to_string()))),
                None => Err(format!(
                    "artifact {name}: {path} is a symbolic link whose target is not UTF-8"
                )),
            },
            None => Err(format!(
                "artifact {name}: {path} is a symbolic link with no target"
            )),
        }
    })
    .await?
}

/// The archive of `path`, `None` when there is nothing there.
pub(crate) async fn open<'a>(
    workspace: &'a dyn WorkspaceArchive,
    path: &'a str,
    name: &str,
) -> Result<Option<Archive<'a>>, String> {
    let mut stream = workspace.export(path);
    match stream.next().await {
        None | Some(Err(RuntimeError::NotInWorkspace(_))) => Ok(None),
        Some(Err(e)) => Err(format!("artifact {name}: reading the workspace: {e}")),
        Some(Ok(first)) => Ok(Some(Archive { first, stream })),
    }
}

pub(crate) struct Archive<'a> {
    first: Bytes,
    stream: BoxStream<'a, Result<Bytes, RuntimeError>>,
}

/// Runs `read` in a blocking thread over the bytes of `archive`.
pub(crate) async fn with_reader<T: Send + 'static>(
    archive: Archive<'_>,
    read: impl FnOnce(ChannelReader) -> T + Send + 'static,
) -> Result<T, String> {
    let (sender, receiver) = mpsc::channel(4);
    let blocking = tokio::task::spawn_blocking(move || {
        read(ChannelReader {
            receiver,
            chunk: Bytes::new(),
        })
    });
    let Archive { first, mut stream } = archive;
    let forward = async move {
        if sender.send(Ok(first)).await.is_err() {
            return;
        }
        while let Some(chunk) = stream.next().await {
            let failed = chunk.is_err();
            // The reader stopped early (an error, or the archive's end).
            if sender.send(chunk.map_err(|e| e.to_string())).await.is_err() || failed {
                return;
            }
        }
    };
    let ((), read) = tokio::join!(forward, blocking);
    read.map_err(|e| format!("reading an archive failed: {e}"))
}

/// A blocking reader over chunks sent from the async side.
pub(crate) struct ChannelReader {
    receiver: mpsc::Receiver<Result<Bytes, String>>,
    chunk: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.receiver.blocking_recv() {
                None => return Ok(0),
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk = self.chunk.slice(n..);
        Ok(n)
    }
}

/// An entry's name in the archive, `/`-separated (lossily), and whether
/// it is UTF-8; refused unless every component is a plain name.
pub(crate) fn entry_name(path: &std::path::Path, artifact: &str) -> Result<(String, bool), String> {
    let mut parts = Vec::new();
    let mut utf8 = true;
    for component in path.components() {
        match component {
            std::path::Component::Normal(part) => {
                utf8 &= part.to_str().is_some();
                parts.push(part.to_string_lossy());
            }
            std::path::Component::CurDir => {}
            _ => {
                return Err(format!(
                    "artifact {artifact}: the container's archive holds an unsafe path {:?}",
                    path.display().to_string()
                ));
            }
        }
    }
    Ok((parts.join("/"), utf8))
}

/// Reads one archive of `source` (entries named from its last component),
/// adding what `entry` takes to the collector and the links to follow.
/// What is not taken and cannot hold anything taken is passed over
/// unlooked at: its names are not checked nor counted.
fn read_tar(
    reader: impl Read,
    entry: &PathEntry,
    source: &Source,
    reading: &mut Reading,
    spool: &Spool,
) -> Result<(), String> {
    let name = reading.collector.name.clone();
    let io = |e: std::io::Error| format!("artifact {name}: reading the container's archive: {e}");
    let mut archive = tar::Archive::new(reader);
    // Hard links name an earlier entry of the same archive.
    let mut spooled: HashMap<String, Collected> = HashMap::new();
    for item in archive.entries().map_err(io)? {
        let mut item = item.map_err(io)?;
        let (path, utf8) = entry_name(&item.path().map_err(io)?, &name)?;
        let sub = path.split_once('/').map_or("", |(_, sub)| sub);
        let real = join(&source.export, sub);
        let rel = join(&source.logical, sub);
        let kind = item.header().entry_type();
        let is_root = sub.is_empty();
        if is_root && kind.is_dir() {
            continue;
        }
        let taken = source.taken || taken_under(entry, &source.logical, sub);
        let may_hold = (kind.is_dir() || kind.is_symlink()) && entry.may_take_below(&rel);
        if !taken && !may_hold {
            continue;
        }
        if !utf8 {
            return Err(format!(
                "artifact {name}: a file name under {:?} is not UTF-8",
                source.logical
            ));
        }
        let collector = &mut reading.collector;
        collector.visit()?;
        let stored = if is_root {
            source.file_stored.clone()
        } else {
            join(&source.dir_stored, sub)
        };
        collector.check_length(&stored)?;
        if kind.is_dir() {
            continue;
        }
        if kind.is_symlink() {
            let Some(target) = item.link_name().map_err(io)? else {
                return Err(format!(
                    "artifact {name}: {rel} is a symbolic link with no target"
                ));
            };
            let Some(target) = target.to_str() else {
                return Err(format!(
                    "artifact {name}: {rel} is a symbolic link whose target is not UTF-8"
                ));
            };
            let Some(target) = resolve_link(&real, target) else {
                // Not taken, it holds nothing to take (`.venv/bin/python`
                // under `**/requirements.txt`): passed over.
                if !taken {
                    continue;
                }
                return Err(format!(
                    "artifact {name}: {rel} is a symbolic link leading out of the workspace"
                ));
            };
            let holds = |outer: &str| {
                outer == target || target.is_empty() || outer.starts_with(&format!("{target}/"))
            };
            if holds(&real) || source.chain.iter().any(|c| holds(c)) {
                return Err(format!(
                    "artifact {name}: {rel} is a symbolic link to a directory holding it (a loop)"
                ));
            }
            let dir_stored = if is_root {
                source.dir_stored.clone()
            } else {
                stored.clone()
            };
            push_link(
                reading, &name, &target, rel, stored, dir_stored, taken, source,
            )?;
            continue;
        }
        if !taken {
            continue;
        }
        if kind.is_hard_link() {
            let target = item
                .link_name()
                .map_err(io)?
                .map(|t| entry_name(&t, &name))
                .transpose()?
                .map(|(target, _)| target)
                .unwrap_or_default();
            collector.check_path(&stored)?;
            match spooled.get(&target) {
                Some(earlier) => {
                    let mut file = earlier.clone();
                    file.entry.path = stored;
                    collector.add(file)?;
                }
                // A file the glob did not take: its own path read again,
                // as the regular file it is.
                None => {
                    push_link(
                        reading,
                        &name,
                        &real,
                        rel,
                        stored.clone(),
                        stored,
                        true,
                        source,
                    )?;
                }
            }
            continue;
        }
        if !(kind.is_file() || kind == tar::EntryType::Continuous) {
            return Err(format!(
                "artifact {name}: {rel} is not a regular file, a directory or a link"
            ));
        }
        collector.check_path(&stored)?;
        // Refused on its header, before a byte of it is spooled.
        let size = item.header().size().map_err(io)?;
        collector.room_for(&stored, size)?;
        let mode = item.header().mode().map_err(io)? & 0o777;
        let hash = reading.collector.rules.hash;
        let file =
            spool_file(&mut item, spool, stored, mode, hash, &mut reading.by_digest).map_err(io)?;
        spooled.insert(path, file.clone());
        reading.collector.add(file)?;
    }
    Ok(())
}

/// Queues a link (or a hard link read again) to follow.
#[allow(clippy::too_many_arguments)]
fn push_link(
    reading: &mut Reading,
    name: &str,
    target: &str,
    logical: String,
    file_stored: String,
    dir_stored: String,
    taken: bool,
    source: &Source,
) -> Result<(), String> {
    let most = reading.collector.rules.max_links;
    if reading.links.len() >= most {
        return Err(format!("artifact {name}: more than {most} links"));
    }
    let mut chain = source.chain.clone();
    chain.push(target.to_string());
    reading.links.push(Source {
        export: target.to_string(),
        logical,
        file_stored,
        dir_stored,
        taken,
        chain,
    });
    Ok(())
}

/// The links a test sees: (stored path, target).
#[cfg(test)]
pub(crate) type TestLinks = Vec<(String, String)>;

/// `read_tar` over one archive of the base of `path`: the files (as the
/// manifest lists them) and the links left to follow.
#[cfg(test)]
pub(crate) fn read_tar_for_test(
    reader: impl Read,
    path: &str,
    spool: &Spool,
) -> Result<(Vec<Collected>, TestLinks), String> {
    let entry = PathEntry::parse(path)?;
    let source = Source {
        export: entry.base.clone(),
        logical: entry.base.clone(),
        file_stored: entry
            .base
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string(),
        dir_stored: String::new(),
        taken: entry.glob.is_none(),
        chain: vec![entry.base.clone()],
    };
    let mut reading = Reading {
        collector: Collector::new("art"),
        by_digest: HashMap::new(),
        links: Vec::new(),
    };
    read_tar(reader, &entry, &source, &mut reading, spool)?;
    let links = reading
        .links
        .into_iter()
        .map(|l| (l.file_stored, l.export))
        .collect();
    Ok((reading.collector.finish()?, links))
}

/// Whether `sub` (relative to the exported path, seen by the glob at
/// `logical`), or a directory above it, is taken.
fn taken_under(entry: &PathEntry, logical: &str, sub: &str) -> bool {
    let mut end = 0;
    loop {
        let next = sub[end..].find('/').map(|i| end + i);
        let prefix = &sub[..next.unwrap_or(sub.len())];
        if entry.takes(&join(logical, prefix)) {
            return true;
        }
        match next {
            Some(slash) => end = slash + 1,
            None => return false,
        }
    }
}

/// Spools one file while hashing it (with `hash`); bytes already spooled
/// under the same digest are kept once.
fn spool_file(
    reader: impl Read,
    spool: &Spool,
    stored: String,
    mode: u32,
    hash: bool,
    by_digest: &mut HashMap<Digest, PathBuf>,
) -> std::io::Result<Collected> {
    let path = spool.path();
    let mut out = std::fs::File::create(&path)?;
    if !hash {
        let size = plain_copy(reader, &mut out)?;
        return Ok(Collected {
            entry: ManifestEntry {
                path: stored,
                size,
                mode,
                digest: unhashed(),
            },
            source: path,
        });
    }
    let (digest, size) = hash_copy(reader, Some(&mut out))?;
    drop(out);
    let source = match by_digest.get(&digest) {
        Some(earlier) => {
            std::fs::remove_file(&path)?;
            earlier.clone()
        }
        None => {
            by_digest.insert(digest.clone(), path.clone());
            path
        }
    };
    Ok(Collected {
        entry: ManifestEntry {
            path: stored,
            size,
            mode,
            digest,
        },
        source,
    })
}

/// The target of a link at `rel` (relative to the workspace), relative to
/// the workspace; `None` when it leads out of it.
fn resolve_link(rel: &str, target: &str) -> Option<String> {
    let workspace = crate::runtime::docker::WORKSPACE;
    let (mut parts, rest): (Vec<&str>, &str) = match target.strip_prefix('/') {
        Some(_) => {
            let rest = target.strip_prefix(workspace)?;
            if !(rest.is_empty() || rest.starts_with('/')) {
                return None;
            }
            (Vec::new(), rest)
        }
        None => {
            let mut parts: Vec<&str> = rel.split('/').collect();
            parts.pop();
            (parts, target)
        }
    };
    for part in rest.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            part => parts.push(part),
        }
    }
    Some(parts.join("/"))
}

/// Writes a need's files (`files` with the blob each one's bytes are in)
/// into the workspace under `dir`, as one archive.
pub(crate) async fn place_archive(
    workspace: &dyn WorkspaceArchive,
    dir: &str,
    files: Vec<(ManifestEntry, PathBuf)>,
) -> Result<(), String> {
    import_files(workspace, dir, files, BTreeSet::new()).await
}

/// [`place_archive`], with no entry for the directories of `existing`
/// (the engine would reset their modes and times).
pub(crate) async fn import_files(
    workspace: &dyn WorkspaceArchive,
    dir: &str,
    files: Vec<(ManifestEntry, PathBuf)>,
    existing: BTreeSet<String>,
) -> Result<(), String> {
    let (sender, mut receiver) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let dir = dir.to_string();
    let writer = tokio::task::spawn_blocking(move || write_tar(&dir, &files, &existing, sender));
    let stream = futures::stream::poll_fn(move |cx| receiver.poll_recv(cx)).boxed();
    let (imported, written) = tokio::join!(workspace.import(stream), writer);
    imported.map_err(|e| format!("writing into the workspace: {e}"))?;
    written
        .map_err(|e| format!("writing an archive failed: {e}"))?
        .map_err(|e| format!("writing an archive: {e}"))
}

fn write_tar(
    dir: &str,
    files: &[(ManifestEntry, PathBuf)],
    existing: &BTreeSet<String>,
    sender: mpsc::Sender<Result<Bytes, std::io::Error>>,
) -> std::io::Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut dirs = BTreeSet::new();
    for (entry, _) in files {
        let path = join(dir, &entry.path);
        let mut end = 0;
        while let Some(slash) = path[end..].find('/') {
            dirs.insert(path[..end + slash].to_string());
            end += slash + 1;
        }
    }
    let mut builder = tar::Builder::new(ChannelWriter {
        sender,
        buffer: Vec::with_capacity(CHUNK),
    });
    for dir in dirs.difference(existing) {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_size(0);
        header.set_mtime(now);
        builder.append_data(&mut header, dir, std::io::empty())?;
    }
    for (entry, blob) in files {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(entry.mode);
        header.set_size(entry.size);
        header.set_mtime(now);
        let file = std::fs::File::open(blob)?;
        builder.append_data(&mut header, join(dir, &entry.path), file.take(entry.size))?;
    }
    builder.into_inner()?.flush()
}

const CHUNK: usize = 64 * 1024;

/// A blocking writer whose bytes go, in chunks, to the async side.
struct ChannelWriter {
    sender: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buffer: Vec<u8>,
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len().min(CHUNK - self.buffer.len());
        self.buffer.extend_from_slice(&buf[..n]);
        if self.buffer.len() >= CHUNK {
            self.flush()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(CHUNK),
        ));
        self.sender
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "import ended"))
    }
}
