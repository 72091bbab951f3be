//! An entry's files packed into tar chunks in the spool: regular files
//! only, in path order, each with its mode and nothing else of the machine
//! (mtime 0, uid and gid 0, no digest), so the same files always give the
//! same chunks. A chunk is closed once it holds `CHUNK_BYTES`.

use std::collections::HashMap;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use xene_core::artifact::{Digest, ManifestEntry};
use xene_core::cache::{CHUNK_BYTES, MAX_CACHE_BYTES, MAX_CACHE_FILES, MAX_CHUNKS, chunk_name};
use xene_core::tar::{END, file_header, padding};

use super::super::Spool;
use super::super::collect::Collected;

/// An entry packed: its chunks (as files to upload) and what they hold.
#[derive(Debug)]
pub(crate) struct Packed {
    pub chunks: Vec<Collected>,
    pub files: u64,
    pub bytes: u64,
}

/// Packs `files` (sorted by path, as a collection gives them) into chunks
/// in the spool. With `remove_sources`, each source is removed once its
/// last file is packed (sources spooled out of a container), so the spool
/// holds about one copy of the entry. Blocking.
pub(crate) fn pack(
    files: &[Collected],
    spool: &Spool,
    remove_sources: bool,
) -> Result<Packed, String> {
    pack_sized(files, spool, remove_sources, CHUNK_BYTES)
}

/// [`pack`] with chunks closed at `chunk_bytes` (tests make small ones).
pub(crate) fn pack_sized(
    files: &[Collected],
    spool: &Spool,
    remove_sources: bool,
    chunk_bytes: u64,
) -> Result<Packed, String> {
    if files.len() > MAX_CACHE_FILES {
        return Err(format!(
            "{} files, more than the {MAX_CACHE_FILES} a cache entry may hold",
            files.len()
        ));
    }
    let bytes: u64 = files.iter().map(|f| f.entry.size).sum();
    if bytes > MAX_CACHE_BYTES {
        return Err(format!(
            "its files hold {bytes} bytes, more than the {MAX_CACHE_BYTES} a cache entry may"
        ));
    }
    let mut uses: HashMap<&Path, usize> = HashMap::new();
    for file in files {
        *uses.entry(file.source.as_path()).or_default() += 1;
    }
    let mut chunks = Vec::new();
    let mut open: Option<Chunk> = None;
    for file in files {
        if open.is_none() {
            if chunks.len() >= MAX_CHUNKS {
                return Err(format!("more than {MAX_CHUNKS} chunks"));
            }
            open = Some(Chunk::create(spool.path())?);
        }
        let chunk = open.as_mut().expect("a chunk is open");
        chunk.append(file)?;
        if chunk.len >= chunk_bytes {
            let full = open.take().expect("a chunk is open");
            chunks.push(full.close(chunks.len())?);
        }
        let left = uses
            .get_mut(file.source.as_path())
            .expect("every source is counted");
        *left -= 1;
        if remove_sources && *left == 0 {
            std::fs::remove_file(&file.source)
                .map_err(|e| format!("removing a spooled file: {e}"))?;
        }
    }
    if let Some(last) = open {
        chunks.push(last.close(chunks.len())?);
    }
    Ok(Packed {
        chunks,
        files: files.len() as u64,
        bytes,
    })
}

/// A chunk being written, hashed as it goes.
struct Chunk {
    path: PathBuf,
    out: BufWriter<std::fs::File>,
    hasher: Sha256,
    len: u64,
}

impl Chunk {
    fn create(path: PathBuf) -> Result<Self, String> {
        let file = std::fs::File::create_new(&path)
            .map_err(|e| format!("creating a chunk in the spool: {e}"))?;
        Ok(Self {
            path,
            out: BufWriter::with_capacity(1024 * 1024, file),
            hasher: Sha256::new(),
            len: 0,
        })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
        self.out
            .write_all(bytes)
            .map_err(|e| format!("writing a chunk: {e}"))
    }

    /// One file: its header, its bytes (exactly the size collected: a file
    /// that shrank since is an error), its padding.
    fn append(&mut self, file: &Collected) -> Result<(), String> {
        let entry = &file.entry;
        let path = &entry.path;
        self.write(&file_header(path, entry.size, entry.mode & 0o777, None))?;
        let source =
            std::fs::File::open(&file.source).map_err(|e| format!("reading {path}: {e}"))?;
        let mut reader = source.take(entry.size);
        let mut buffer = vec![0u8; 256 * 1024];
        let mut copied = 0u64;
        loop {
            let n = match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("reading {path}: {e}")),
            };
            self.write(&buffer[..n])?;
            copied += n as u64;
        }
        if copied != entry.size {
            return Err(format!("{path} changed while it was packed"));
        }
        self.write(&vec![0u8; padding(entry.size)])
    }

    /// Ends the archive: chunk `index` of the entry.
    fn close(mut self, index: usize) -> Result<Collected, String> {
        self.write(&END)?;
        self.out
            .flush()
            .map_err(|e| format!("writing a chunk: {e}"))?;
        let hash: [u8; 32] = self.hasher.finalize().into();
        Ok(Collected {
            entry: ManifestEntry {
                path: chunk_name(index),
                size: self.len,
                mode: 0o644,
                digest: Digest::from_sha256(&hash),
            },
            source: self.path,
        })
    }
}
