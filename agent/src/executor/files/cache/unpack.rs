//! An entry's chunks read back into the spool, confined: each regular
//! file is written to a spool file of its own (never at a path the chunk
//! names), and only its path in the workspace is kept, checked as an
//! artifact's stored path is. Directories are passed over (placing makes
//! the ones a file needs); links, devices and anything else, `..`,
//! absolute paths, a path twice and a file or byte count past an entry's
//! bounds stop it.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::PathBuf;

use tokio_util::sync::CancellationToken;
use xene_core::artifact::check_stored_path;
use xene_core::cache::{MAX_CACHE_BYTES, MAX_CACHE_FILES};
use xene_core::tar::{BLOCK, Decoder, Step, padding};

use super::super::Spool;

/// A file unpacked: its path in the workspace, its mode, and where its
/// bytes are in the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unpacked {
    pub path: String,
    pub size: u64,
    pub mode: u32,
    pub file: PathBuf,
}

/// Reads an entry's chunks one after the other, its bounds and the paths
/// seen carried from one chunk to the next.
#[derive(Debug, Default)]
pub(crate) struct Unpacker {
    pub files: Vec<Unpacked>,
    pub bytes: u64,
    seen: HashSet<String>,
    dirs: usize,
    /// Checked at each file: a cancelled task's restore stops there.
    pub cancel: Option<CancellationToken>,
}

impl Unpacker {
    /// Reads one chunk to its end. Blocking.
    pub(crate) fn chunk(&mut self, mut reader: impl Read, spool: &Spool) -> Result<(), String> {
        let mut decoder = Decoder::default();
        let mut block = [0u8; BLOCK];
        loop {
            if self.cancel.as_ref().is_some_and(|c| c.is_cancelled()) {
                return Err("the task was cancelled".into());
            }
            read_exact(&mut reader, &mut block)?;
            match decoder.header(&block)? {
                Step::End => return Ok(()),
                Step::Extension { len } => {
                    // The decoder bounds `len` (`MAX_EXTENSION`).
                    let mut data = vec![0u8; len as usize + padding(len)];
                    read_exact(&mut reader, &mut data)?;
                    decoder.extension(&data[..len as usize])?;
                }
                Step::Dir { path, .. } => {
                    let path = path.strip_suffix('/').unwrap_or(&path).to_string();
                    self.check(&path)?;
                    self.dirs += 1;
                    if self.dirs > MAX_CACHE_FILES {
                        return Err(format!(
                            "the entry holds more than {MAX_CACHE_FILES} directories"
                        ));
                    }
                }
                Step::File {
                    path, size, mode, ..
                } => {
                    self.check(&path)?;
                    if self.files.len() >= MAX_CACHE_FILES {
                        return Err(format!("the entry holds more than {MAX_CACHE_FILES} files"));
                    }
                    if size > MAX_CACHE_BYTES - self.bytes {
                        return Err(format!(
                            "the entry holds more than {MAX_CACHE_BYTES} bytes (at {path})"
                        ));
                    }
                    let file = spool.path();
                    write_file(&mut reader, &file, size)
                        .map_err(|e| format!("unpacking {path}: {e}"))?;
                    skip(&mut reader, padding(size) as u64)?;
                    self.bytes += size;
                    self.files.push(Unpacked {
                        path,
                        size,
                        mode: mode & 0o777,
                        file,
                    });
                }
                Step::Other { kind, path, .. } => {
                    let what = match kind {
                        b'1' => "a hard link",
                        b'2' => "a symbolic link",
                        b'3' | b'4' => "a device",
                        b'6' => "a FIFO",
                        _ => "neither a file nor a directory",
                    };
                    return Err(format!(
                        "the entry holds {path:?}, {what}: only files and directories are restored"
                    ));
                }
            }
        }
    }

    /// A path as an artifact stores it (relative, no `..`, bounded), seen
    /// once.
    fn check(&mut self, path: &str) -> Result<(), String> {
        check_stored_path(path).map_err(|e| format!("the entry holds a bad path: {e}"))?;
        if !self.seen.insert(path.to_string()) {
            return Err(format!("the entry holds {path:?} twice"));
        }
        Ok(())
    }
}

fn read_exact(reader: &mut impl Read, buf: &mut [u8]) -> Result<(), String> {
    reader.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => "a chunk ends before its archive does".to_string(),
        _ => format!("reading a chunk: {e}"),
    })
}

fn skip(reader: &mut impl Read, len: u64) -> Result<(), String> {
    let skipped = std::io::copy(&mut reader.take(len), &mut std::io::sink())
        .map_err(|e| format!("reading a chunk: {e}"))?;
    if skipped != len {
        return Err("a chunk ends before its archive does".into());
    }
    Ok(())
}

/// Copies the next `size` bytes to a new file `dest`, private to the
/// agent until it is placed.
fn write_file(reader: &mut impl Read, dest: &std::path::Path, size: u64) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dest)?;
    let copied = std::io::copy(&mut reader.take(size), &mut out)?;
    if copied != size {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the chunk ends inside the file",
        ));
    }
    out.flush()
}
