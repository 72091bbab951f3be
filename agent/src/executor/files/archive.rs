//! Artifacts in and out of a workspace reached only through tar archives
//! (a container's): a `publish` read from the engine's archives of its
//! bases, each matching file spooled to this machine while it is hashed;
//! a need's files written as one archive the engine extracts.
//!
//! Tar is read and written in blocking threads; the archive streams pass
//! through small bounded channels, so memory stays bounded whatever the
//! sizes.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::io::{Read, Write};
use std::path::PathBuf;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::mpsc;
use xene_core::artifact::{MAX_FILES, ManifestEntry};
use xene_core::spec::Publish;

use super::Spool;
use super::collect::{Collected, Collector, PathEntry, hash_copy, join};
use crate::runtime::{RuntimeError, WorkspaceArchive};

/// How many links deep collection follows (a link in a linked directory
/// counts twice).
const MAX_LINK_HOPS: usize = 8;

/// A link found in an archive, followed once the archive is read.
struct Link {
    stored: String,
    /// Its target, relative to the workspace.
    target: String,
    /// How many links led to it, itself included.
    hops: usize,
}

/// What one archive is read as: a `paths` entry, or a link followed.
struct Source {
    entry: PathEntry,
    /// What stored paths start with: a followed link's own path, or "".
    prefix: String,
    /// How many links led here.
    hops: usize,
}

/// Collects one `publish` from a container's workspace.
pub(crate) async fn collect_archive(
    workspace: &dyn WorkspaceArchive,
    publish: &Publish,
    spool: &Spool,
) -> Result<Vec<Collected>, String> {
    let name = publish.name.clone();
    let mut collector = Collector::new(&name);
    let mut matched_any = false;
    for text in &publish.paths {
        let entry = PathEntry::parse(text).map_err(|e| format!("artifact {name}: {e}"))?;
        let before = collector.files.len();
        let is_glob = entry.glob.is_some();
        let mut queue = VecDeque::from([Source {
            entry,
            prefix: String::new(),
            hops: 0,
        }]);
        while let Some(source) = queue.pop_front() {
            let base = source.entry.base.clone();
            let Some(archive) = open(workspace, &base, &name).await? else {
                if source.hops > 0 {
                    return Err(format!(
                        "artifact {name}: {} is a symbolic link to nothing",
                        source.prefix
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
            let (returned, links) = with_reader(archive, move |reader| {
                let mut links = Vec::new();
                let read = read_tar(reader, &source, &mut collector, &spooled, &mut links);
                read.map(|()| (collector, links))
            })
            .await??;
            collector = returned;
            for link in links {
                if link.hops > MAX_LINK_HOPS {
                    return Err(format!(
                        "artifact {name}: {} is reached through more than {MAX_LINK_HOPS} links",
                        link.stored
                    ));
                }
                queue.push_back(Source {
                    entry: PathEntry::literal(&link.target),
                    prefix: link.stored,
                    hops: link.hops,
                });
            }
            if queue.len() > MAX_FILES {
                return Err(format!("artifact {name}: more than {MAX_FILES} links"));
            }
        }
        matched_any |= collector.files.len() > before;
        if is_glob && collector.files.len() == before && !publish.optional {
            return Err(format!("artifact {name}: {text} matches no file"));
        }
    }
    if !matched_any && !publish.optional {
        return Err(format!("artifact {name}: its paths hold no file"));
    }
    collector.finish()
}

/// The archive of `path`, `None` when there is nothing there.
async fn open<'a>(
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

struct Archive<'a> {
    first: Bytes,
    stream: BoxStream<'a, Result<Bytes, RuntimeError>>,
}

/// Runs `read` in a blocking thread over the bytes of `archive`.
async fn with_reader<T: Send + 'static>(
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
struct ChannelReader {
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

/// An entry's name in the archive, `/`-separated; refused unless every
/// component is a plain name.
fn entry_name(path: &std::path::Path, artifact: &str) -> Result<String, String> {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            std::path::Component::Normal(part) => match part.to_str() {
                Some(part) => parts.push(part),
                None => {
                    return Err(format!(
                        "artifact {artifact}: a file name in the workspace is not UTF-8"
                    ));
                }
            },
            std::path::Component::CurDir => {}
            _ => {
                return Err(format!(
                    "artifact {artifact}: the container's archive holds an unsafe path {:?}",
                    path.display().to_string()
                ));
            }
        }
    }
    Ok(parts.join("/"))
}

/// Reads one base's archive (entries named from the base's last
/// component), adding what its entry takes to `collector`.
fn read_tar(
    reader: impl Read,
    source: &Source,
    collector: &mut Collector,
    spool: &Spool,
    links: &mut Vec<Link>,
) -> Result<(), String> {
    let name = collector.name.clone();
    let io = |e: std::io::Error| format!("artifact {name}: reading the container's archive: {e}");
    let mut archive = tar::Archive::new(reader);
    // Hard links name an earlier entry of the same archive.
    let mut spooled: HashMap<String, Collected> = HashMap::new();
    let entry = &source.entry;
    for item in archive.entries().map_err(io)? {
        let mut item = item.map_err(io)?;
        collector.visit()?;
        let path = entry_name(&item.path().map_err(io)?, &name)?;
        let sub = path.split_once('/').map_or("", |(_, sub)| sub);
        let rel = join(&entry.base, sub);
        let kind = item.header().entry_type();
        let stored = if sub.is_empty() {
            // The base itself: a literal file is stored by its name (or
            // as the link that led to it).
            if entry.glob.is_some() || kind.is_dir() {
                continue;
            }
            match entry.base.rsplit('/').next() {
                _ if !source.prefix.is_empty() => source.prefix.clone(),
                name => name.unwrap_or_default().to_string(),
            }
        } else {
            join(&source.prefix, sub)
        };
        collector.check_path(&stored)?;
        if kind.is_dir() || !taken(entry, sub) {
            continue;
        }
        if kind.is_symlink() {
            let target = item
                .link_name()
                .map_err(io)?
                .and_then(|t| t.to_str().map(str::to_string))
                .unwrap_or_default();
            let Some(target) = resolve_link(&rel, &target) else {
                return Err(format!(
                    "artifact {name}: {rel} is a symbolic link leading out of the workspace"
                ));
            };
            if links.len() >= MAX_FILES {
                return Err(format!("artifact {name}: more than {MAX_FILES} links"));
            }
            links.push(Link {
                stored,
                target,
                hops: source.hops + 1,
            });
            continue;
        }
        if kind.is_hard_link() {
            let target = item
                .link_name()
                .map_err(io)?
                .map(|t| entry_name(&t, &name))
                .transpose()?
                .unwrap_or_default();
            let Some(earlier) = spooled.get(&target) else {
                return Err(format!(
                    "artifact {name}: {rel} is a hard link to a file it does not publish"
                ));
            };
            let mut file = earlier.clone();
            file.entry.path = stored;
            collector.add(file)?;
            continue;
        }
        if !(kind.is_file() || kind == tar::EntryType::Continuous) {
            return Err(format!(
                "artifact {name}: {rel} is not a regular file, a directory or a link"
            ));
        }
        let mode = item.header().mode().map_err(io)? & 0o777;
        let file = spool_file(&mut item, spool, stored, mode).map_err(io)?;
        spooled.insert(path, file.clone());
        collector.add(file)?;
    }
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
    let mut collector = Collector::new("art");
    let mut links = Vec::new();
    let source = Source {
        entry: PathEntry::parse(path)?,
        prefix: String::new(),
        hops: 0,
    };
    read_tar(reader, &source, &mut collector, spool, &mut links)?;
    let links = links.into_iter().map(|l| (l.stored, l.target)).collect();
    Ok((collector.finish()?, links))
}

/// Whether `sub` (relative to the base), or a directory above it, is taken.
fn taken(entry: &PathEntry, sub: &str) -> bool {
    let mut end = 0;
    loop {
        let next = sub[end..].find('/').map(|i| end + i);
        let prefix = &sub[..next.unwrap_or(sub.len())];
        if entry.takes(&join(&entry.base, prefix)) {
            return true;
        }
        match next {
            Some(slash) => end = slash + 1,
            None => return false,
        }
    }
}

fn spool_file(
    reader: impl Read,
    spool: &Spool,
    stored: String,
    mode: u32,
) -> std::io::Result<Collected> {
    let source = spool.path();
    let mut out = std::fs::File::create(&source)?;
    let (digest, size) = hash_copy(reader, Some(&mut out))?;
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
    let (sender, mut receiver) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let dir = dir.to_string();
    let writer = tokio::task::spawn_blocking(move || write_tar(&dir, &files, sender));
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
    for dir in &dirs {
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
