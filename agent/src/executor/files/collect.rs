//! What a `publish` takes from a workspace directory of this machine (the
//! shell runtime): its paths resolved, its files found, checked and hashed.
//!
//! Each entry of `paths` is stored relative to its base: a literal directory
//! gives its contents, a literal file its file name, a glob the files it
//! matches relative to the literal directory before its first wildcard (a
//! directory it matches gives all of its contents). Links are followed only
//! while they stay inside the workspace.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use xene_core::artifact::{
    self, Digest, Glob, MAX_ARTIFACT_BYTES, MAX_FILES, MAX_PATH_BYTES, ManifestEntry,
};
use xene_core::cache::MAX_CACHE_FILES;
use xene_core::spec::Publish;

/// The most directory entries one artifact's collection looks at (matching
/// or not), so a glob over a huge tree ends with an error, not never.
pub(crate) const MAX_VISITED: usize = 200_000;

/// How a collection stores and bounds what it finds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules {
    /// Stored paths are relative to the workspace, not to each base: a
    /// cache's files go back where they were.
    pub workspace_paths: bool,
    pub max_files: usize,
    pub max_visited: usize,
    /// The most links a container's collection follows.
    pub max_links: usize,
    /// Each file's digest is computed (an artifact's manifest, a cache's
    /// `hash_files`); a cache's `paths` are hashed once, as chunks, so
    /// their files get a zero digest.
    pub hash: bool,
}

impl Rules {
    pub(crate) const ARTIFACT: Rules = Rules {
        workspace_paths: false,
        max_files: MAX_FILES,
        max_visited: MAX_VISITED,
        max_links: MAX_FILES,
        hash: true,
    };
    /// A cache's `hash_files`.
    pub(crate) const CACHE: Rules = Rules {
        workspace_paths: true,
        max_files: MAX_CACHE_FILES,
        max_visited: 4 * MAX_CACHE_FILES,
        max_links: MAX_CACHE_FILES,
        hash: true,
    };
    /// A cache's `paths`: packing hashes their bytes.
    pub(crate) const CACHE_PATHS: Rules = Rules {
        hash: false,
        ..Rules::CACHE
    };

    /// The stored path of what a `paths` entry's base gives: a directory's
    /// contents are under it, a literal file is its name (an artifact's) or
    /// its whole path (a cache's).
    pub(crate) fn base_stored(&self, base: &str) -> (String, String) {
        if self.workspace_paths {
            return (base.to_string(), base.to_string());
        }
        let file = base.rsplit('/').next().unwrap_or_default().to_string();
        (file, String::new())
    }
}

/// One `paths` entry of a `publish`, resolved.
pub(crate) struct PathEntry {
    /// The directory (or, for a literal, the file) it is stored relative
    /// to, relative to the workspace; "" for the workspace itself.
    pub base: String,
    pub glob: Option<Glob>,
}

impl PathEntry {
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        if artifact::has_wildcard(text) {
            let glob = Glob::parse(text)?;
            return Ok(Self {
                base: normalize(glob.base()),
                glob: Some(glob),
            });
        }
        Ok(Self {
            base: normalize(text),
            glob: None,
        })
    }

    /// Whether the file or directory at `rel` (relative to the workspace,
    /// under the base) is taken, all of its contents with it.
    pub(crate) fn takes(&self, rel: &str) -> bool {
        self.glob.as_ref().is_none_or(|glob| glob.matches(rel))
    }

    /// Whether something below the directory at `rel` can be taken; a walk
    /// skips the directories where nothing can.
    pub(crate) fn may_take_below(&self, rel: &str) -> bool {
        self.glob
            .as_ref()
            .is_none_or(|glob| glob.may_match_below(rel))
    }
}

/// `a/./b/` as `a/b`; "" for the workspace.
pub(crate) fn normalize(path: &str) -> String {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}

pub(crate) fn join(dir: &str, name: &str) -> String {
    match (dir.is_empty(), name.is_empty()) {
        (true, _) => name.to_string(),
        (_, true) => dir.to_string(),
        _ => format!("{dir}/{name}"),
    }
}

/// A file collected for an artifact: its manifest entry, and where its bytes
/// are on this machine (in the workspace, or spooled out of a container).
#[derive(Debug, Clone)]
pub(crate) struct Collected {
    pub entry: ManifestEntry,
    pub source: PathBuf,
}

/// An artifact's files as they are found, with its bounds.
pub(crate) struct Collector {
    pub name: String,
    pub rules: Rules,
    pub files: BTreeMap<String, Collected>,
    pub visited: usize,
    /// The bytes of the files taken so far, at most [`MAX_ARTIFACT_BYTES`].
    pub bytes: u64,
}

impl Collector {
    #[cfg(test)]
    pub(crate) fn new(name: &str) -> Self {
        Self::with_rules(name, Rules::ARTIFACT)
    }

    pub(crate) fn with_rules(name: &str, rules: Rules) -> Self {
        Self {
            name: name.to_string(),
            rules,
            files: BTreeMap::new(),
            visited: 0,
            bytes: 0,
        }
    }

    /// Counts one directory entry looked at.
    pub(crate) fn visit(&mut self) -> Result<(), String> {
        self.visited += 1;
        if self.visited > self.rules.max_visited {
            return Err(format!(
                "artifact {}: its paths cover more than {} files and directories",
                self.name, self.rules.max_visited
            ));
        }
        Ok(())
    }

    /// How many more bytes the artifact may hold; an error when a file of
    /// `size` bytes does not fit, before anything of it is read.
    pub(crate) fn room_for(&self, stored: &str, size: u64) -> Result<u64, String> {
        let room = MAX_ARTIFACT_BYTES - self.bytes;
        if size > room {
            return Err(format!(
                "artifact {}: with {stored} ({size} bytes) its files hold more than {MAX_ARTIFACT_BYTES} bytes",
                self.name
            ));
        }
        Ok(room)
    }

    /// Checks the length of a path looked at, taken or not (a link cycle
    /// ends here, its path growing past the bound).
    pub(crate) fn check_length(&self, stored: &str) -> Result<(), String> {
        if stored.len() > MAX_PATH_BYTES {
            return Err(format!(
                "artifact {}: a path is longer than {MAX_PATH_BYTES} bytes (a link loop?): {}...",
                self.name,
                stored.chars().take(80).collect::<String>()
            ));
        }
        Ok(())
    }

    /// Checks a stored path before anything is read for it: only what is
    /// taken, so an odd name elsewhere under a base is no error.
    pub(crate) fn check_path(&self, stored: &str) -> Result<(), String> {
        self.check_length(stored)?;
        artifact::check_stored_path(stored).map_err(|e| format!("artifact {}: {e}", self.name))
    }

    pub(crate) fn add(&mut self, file: Collected) -> Result<(), String> {
        self.check_path(&file.entry.path)?;
        if self.files.contains_key(&file.entry.path) {
            // A workspace path twice is one file reached twice (`target`
            // and `target/debug`): kept once.
            if self.rules.workspace_paths {
                return Ok(());
            }
            return Err(format!(
                "artifact {}: two of its paths give the file {:?}",
                self.name, file.entry.path
            ));
        }
        if self.files.len() >= self.rules.max_files {
            return Err(format!(
                "artifact {}: more than {} files",
                self.name, self.rules.max_files
            ));
        }
        self.room_for(&file.entry.path, file.entry.size)?;
        self.bytes += file.entry.size;
        self.files.insert(file.entry.path.clone(), file);
        Ok(())
    }

    /// The manifest, checked as the server will.
    pub(crate) fn finish(self) -> Result<Vec<Collected>, String> {
        let files: Vec<Collected> = self.files.into_values().collect();
        // A cache's paths were each checked as they were added, and may be
        // more than an artifact's files.
        if !self.rules.workspace_paths {
            let entries: Vec<ManifestEntry> = files.iter().map(|f| f.entry.clone()).collect();
            artifact::check_manifest(&entries)
                .map_err(|e| format!("artifact {}: {e}", self.name))?;
        }
        Ok(files)
    }
}

/// Reads `reader` to its end into `sink` (when given), hashing it: its
/// digest and size.
pub(crate) fn hash_copy(
    mut reader: impl Read,
    mut sink: Option<&mut dyn std::io::Write>,
) -> std::io::Result<(Digest, u64)> {
    let mut hasher = Sha256::new();
    let size = copy_each(&mut reader, |bytes| {
        hasher.update(bytes);
        match sink.as_deref_mut() {
            Some(sink) => sink.write_all(bytes),
            None => Ok(()),
        }
    })?;
    let hash: [u8; 32] = hasher.finalize().into();
    Ok((Digest::from_sha256(&hash), size))
}

/// The digest of a file a collection by `Rules { hash: false, .. }`
/// does not hash.
pub(crate) fn unhashed() -> Digest {
    Digest::from_sha256(&[0; 32])
}

/// Reads `reader` to its end into `sink`: its size. `hash_copy` without
/// the hash.
pub(crate) fn plain_copy(
    mut reader: impl Read,
    sink: &mut dyn std::io::Write,
) -> std::io::Result<u64> {
    copy_each(&mut reader, |bytes| sink.write_all(bytes))
}

/// Reads `reader` to its end, 64 KiB at a time, handing each read to
/// `each`: the bytes read.
fn copy_each(
    reader: &mut impl Read,
    mut each: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> std::io::Result<u64> {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        each(&buffer[..n])?;
        size += n as u64;
    }
    Ok(size)
}

/// Collects one `publish` from the workspace directory `root`, hashing
/// every file in place. Blocking: run it off the async workers.
pub(crate) fn collect_dir(root: &Path, publish: &Publish) -> Result<Vec<Collected>, String> {
    collect_dir_with(root, publish, Rules::ARTIFACT)
}

/// [`collect_dir`] by `rules`.
pub(crate) fn collect_dir_with(
    root: &Path,
    publish: &Publish,
    rules: Rules,
) -> Result<Vec<Collected>, String> {
    let name = &publish.name;
    let io = |what: &str, e: std::io::Error| format!("artifact {name}: {what}: {e}");
    let real_root = root
        .canonicalize()
        .map_err(|e| io("the workspace is gone", e))?;
    let mut collector = Collector::with_rules(name, rules);
    let mut matched_any = false;
    for text in &publish.paths {
        let entry = PathEntry::parse(text).map_err(|e| format!("artifact {name}: {e}"))?;
        let before = collector.files.len();
        let walk = Walk {
            root: &real_root,
            entry: &entry,
        };
        let base = root.join(&entry.base);
        let real = match base.canonicalize() {
            Ok(real) => real,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if entry.glob.is_none() && !publish.optional {
                    return Err(format!(
                        "artifact {name}: {text} does not exist in the workspace"
                    ));
                }
                continue;
            }
            Err(e) => return Err(io(&format!("reading {text}"), e)),
        };
        if !real.starts_with(&real_root) {
            return Err(format!(
                "artifact {name}: {text} leads out of the workspace through a symbolic link"
            ));
        }
        let meta = std::fs::metadata(&real).map_err(|e| io(&format!("reading {text}"), e))?;
        let (file_stored, dir_stored) = rules.base_stored(&entry.base);
        match &entry.glob {
            None if meta.is_file() => {
                walk.add_file(&mut collector, &real, &meta, file_stored)?;
            }
            None if meta.is_dir() => {
                walk.dir(&mut collector, &real, &entry.base, &dir_stored, true)?
            }
            None => {
                return Err(format!(
                    "artifact {name}: {text} is not a regular file or a directory"
                ));
            }
            Some(_) if meta.is_dir() => {
                walk.dir(&mut collector, &real, &entry.base, &dir_stored, false)?
            }
            Some(_) => {}
        }
        matched_any |= collector.files.len() > before;
        if entry.glob.is_some() && collector.files.len() == before && !publish.optional {
            return Err(format!("artifact {name}: {text} matches no file"));
        }
    }
    // An optional artifact may end up empty; a required one has files.
    if !matched_any && !publish.optional {
        return Err(format!("artifact {name}: its paths hold no file"));
    }
    collector.finish()
}

struct Walk<'a> {
    /// The workspace, links resolved.
    root: &'a Path,
    entry: &'a PathEntry,
}

impl Walk<'_> {
    /// Walks directory `dir` (at `rel` in the workspace, stored under
    /// `stored`); `taken`: its whole contents are taken.
    fn dir(
        &self,
        collector: &mut Collector,
        dir: &Path,
        rel: &str,
        stored: &str,
        taken: bool,
    ) -> Result<(), String> {
        let name = collector.name.clone();
        let io = |e: std::io::Error| format!("artifact {name}: reading {rel:?}: {e}");
        let mut children = Vec::new();
        for child in std::fs::read_dir(dir).map_err(io)? {
            collector.visit()?;
            children.push(child.map_err(io)?.file_name());
        }
        children.sort();
        for child in children {
            let lossy = child.to_string_lossy();
            let child_rel = join(rel, &lossy);
            let child_taken = taken || self.entry.takes(&child_rel);
            // Nothing there or below is taken: not even looked at.
            if !child_taken && !self.entry.may_take_below(&child_rel) {
                continue;
            }
            let Some(child) = child.to_str() else {
                return Err(format!(
                    "artifact {name}: a file name under {rel:?} is not UTF-8"
                ));
            };
            let child_stored = join(stored, child);
            collector.check_length(&child_stored)?;
            let path = dir.join(child);
            let Some((real, meta)) = self.resolve(&name, &path, &child_rel, child_taken)? else {
                continue;
            };
            if meta.is_dir() {
                self.dir(collector, &real, &child_rel, &child_stored, child_taken)?;
            } else if !child_taken {
            } else if meta.is_file() {
                self.add_file(collector, &real, &meta, child_stored)?;
            } else {
                return Err(format!(
                    "artifact {name}: {child_rel} is not a regular file, a directory or a link"
                ));
            }
        }
        Ok(())
    }

    /// The file or directory at `path`, through a link only when it stays
    /// inside the workspace; `None` for a link to nothing or out of the
    /// workspace that is not `taken`.
    fn resolve(
        &self,
        name: &str,
        path: &Path,
        rel: &str,
        taken: bool,
    ) -> Result<Option<(PathBuf, std::fs::Metadata)>, String> {
        let io = |e: std::io::Error| format!("artifact {name}: reading {rel}: {e}");
        let meta = std::fs::symlink_metadata(path).map_err(io)?;
        if !meta.file_type().is_symlink() {
            return Ok(Some((path.to_path_buf(), meta)));
        }
        let real = match path.canonicalize() {
            Ok(real) => real,
            // A link the glob does not take holds nothing to take when it
            // leads nowhere or out of the workspace (`.venv/bin/python`
            // under `**/requirements.txt`): passed over, not refused.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !taken => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(format!(
                    "artifact {name}: {rel} is a symbolic link to nothing"
                ));
            }
            Err(e) => return Err(io(e)),
        };
        if !real.starts_with(self.root) {
            if !taken {
                return Ok(None);
            }
            return Err(format!(
                "artifact {name}: {rel} is a symbolic link leading out of the workspace"
            ));
        }
        let meta = std::fs::metadata(&real).map_err(io)?;
        Ok(Some((real, meta)))
    }

    fn add_file(
        &self,
        collector: &mut Collector,
        real: &Path,
        meta: &std::fs::Metadata,
        stored: String,
    ) -> Result<(), String> {
        collector.check_path(&stored)?;
        let room = collector.room_for(&stored, meta.len())?;
        let name = &collector.name;
        let (digest, size) = if collector.rules.hash {
            let file = std::fs::File::open(real)
                .map_err(|e| format!("artifact {name}: reading {stored}: {e}"))?;
            // A file growing while it is read stops at the bound too.
            hash_copy(file.take(room.saturating_add(1)), None)
                .map_err(|e| format!("artifact {name}: reading {stored}: {e}"))?
        } else {
            // Packing reads exactly this size, and fails if it changed.
            (unhashed(), meta.len())
        };
        collector.add(Collected {
            entry: ManifestEntry {
                path: stored,
                size,
                mode: meta.mode() & 0o777,
                digest,
            },
            source: real.to_path_buf(),
        })
    }
}

#[cfg(test)]
#[path = "collect_tests.rs"]
mod tests;
