//! The local store's disk work, on blocking threads in chunks of
//! [`CHUNK`]: reading a blob (hashed on the way when asked), writing an
//! upload (hashed) or a part (at its offset), and assembling a multipart
//! upload's parts into the blob. The async workers only pass buffers
//! around: a 1 GiB blob is 1,024 blocking calls, not the 131,072 of
//! object_store's 8 KiB chunks, and SHA-256 never runs on a worker.
//!
//! A part write and the assembly of its upload meet on the parts' file:
//! the assembly first renames it to a private name, then takes an
//! exclusive `flock`, so the chunk writes under way end first; a part
//! writer takes a shared `flock` for each chunk and writes only while
//! the parts' name still names its file. A late part (its request opened
//! the file before the rename) thus never writes into the blob.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use axum::body::Bytes;
use futures::Stream;
use rustix::fs::{FlockOperation, flock};
use sha2::{Digest as _, Sha256};
use xene_core::artifact::Digest;

/// The size of each read and write of the local store's files.
pub const CHUNK: usize = 1 << 20;
/// Modes of what the local store makes: the data directory's files are
/// its user's alone.
pub const PRIVATE_DIR: u32 = 0o700;
pub const PRIVATE_FILE: u32 = 0o600;

/// Why the disk work failed (`store::StoreError` takes it).
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("artifact store: {0}")]
    Io(#[from] std::io::Error),
    /// The bytes are not what they should be: nothing was kept.
    #[error("{0}")]
    Rejected(String),
}

/// Makes the directories above `path`, private.
pub async fn make_parent(path: &Path) -> std::io::Result<()> {
    let Some(dir) = path.parent() else {
        return Ok(());
    };
    let mut builder = tokio::fs::DirBuilder::new();
    builder.recursive(true).mode(PRIVATE_DIR);
    builder.create(dir).await
}

/// Runs `work` on a blocking thread.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, DiskError> + Send + 'static,
) -> Result<T, DiskError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| DiskError::Io(std::io::Error::other(e)))?
}

/// Opens a stored blob's file for reading.
pub async fn open(path: PathBuf, digest: &Digest) -> Result<File, DiskError> {
    let missing = format!("blob {digest} is not in the artifact store");
    blocking(move || match File::open(&path) {
        Ok(file) => Ok(file),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(DiskError::Rejected(missing)),
        Err(e) => Err(e.into()),
    })
    .await
}

/// What [`read`] streams along.
struct Reading {
    file: Option<File>,
    /// Set when the bytes are checked against `digest`.
    hasher: Option<Sha256>,
    digest: Digest,
    /// The chunk held back until the next is read (verified reads only).
    held: Option<Bytes>,
}

/// The bytes of `file`, in chunks of [`CHUNK`] read on blocking threads.
/// With `verify`, they are hashed there too, and the last chunk goes out
/// only once the whole is `digest`'s (else an error ends the stream in
/// its place: a reader cut short never gets all of a damaged blob).
pub fn read(
    file: File,
    digest: Digest,
    verify: bool,
) -> impl Stream<Item = Result<Bytes, DiskError>> + Send + 'static {
    let state = Reading {
        file: Some(file),
        hasher: verify.then(Sha256::new),
        digest,
        held: None,
    };
    futures::stream::try_unfold(state, |mut s| async move {
        loop {
            let Some(file) = s.file.take() else {
                return Ok(None);
            };
            let hasher = s.hasher.take();
            let (file, chunk, hasher) = blocking(move || {
                let mut hasher = hasher;
                let mut chunk = Vec::with_capacity(CHUNK);
                (&file).take(CHUNK as u64).read_to_end(&mut chunk)?;
                if let Some(hasher) = &mut hasher {
                    hasher.update(&chunk);
                }
                Ok((file, chunk, hasher))
            })
            .await?;
            if chunk.is_empty() {
                if let Some(hasher) = hasher {
                    let whole = Digest::from_sha256(&hasher.finalize().into());
                    if whole != s.digest {
                        return Err(DiskError::Rejected(format!(
                            "blob {} in the artifact store hashes to {whole}: it is damaged",
                            s.digest
                        )));
                    }
                }
                return Ok(s.held.take().map(|last| (last, s)));
            }
            s.file = Some(file);
            let chunk = Bytes::from(chunk);
            if hasher.is_none() {
                return Ok(Some((chunk, s)));
            }
            s.hasher = hasher;
            if let Some(before) = s.held.replace(chunk) {
                return Ok(Some((before, s)));
            }
        }
    })
}

/// Where a [`Writer`] puts its bytes.
enum Target {
    /// A new file, written from its start while hashed.
    Whole { hasher: Sha256 },
    /// A multipart upload's parts' file at `path`, from `offset`.
    Part { path: PathBuf, offset: u64 },
}

/// Writes a body into a file in chunks of [`CHUNK`], each on a blocking
/// thread.
pub struct Writer {
    file: Option<File>,
    target: Target,
    buffer: Vec<u8>,
}

impl Writer {
    /// A new private file at `path` (never one that exists).
    pub async fn create(path: PathBuf) -> Result<Self, DiskError> {
        let file = blocking(move || {
            Ok(std::fs::OpenOptions::new()
                .mode(PRIVATE_FILE)
                .write(true)
                .create_new(true)
                .open(&path)?)
        })
        .await?;
        Ok(Self::new(
            file,
            Target::Whole {
                hasher: Sha256::new(),
            },
        ))
    }

    /// The parts' file at `path` (made when it is the first part), from
    /// `offset`.
    pub async fn part(path: PathBuf, offset: u64) -> Result<Self, DiskError> {
        let opened = path.clone();
        let file = blocking(move || {
            Ok(std::fs::OpenOptions::new()
                .mode(PRIVATE_FILE)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&opened)?)
        })
        .await?;
        Ok(Self::new(file, Target::Part { path, offset }))
    }

    fn new(file: File, target: Target) -> Self {
        Self {
            file: Some(file),
            target,
            buffer: Vec::with_capacity(CHUNK),
        }
    }

    /// Takes `bytes`, writing whenever a chunk is full.
    pub async fn write(&mut self, mut bytes: &[u8]) -> Result<(), DiskError> {
        while !bytes.is_empty() {
            let take = bytes.len().min(CHUNK - self.buffer.len());
            self.buffer.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.buffer.len() == CHUNK {
                self.flush().await?;
            }
        }
        Ok(())
    }

    /// Writes what is buffered.
    async fn flush(&mut self) -> Result<(), DiskError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let file = self.file.take().ok_or_else(|| {
            DiskError::Io(std::io::Error::other(
                "an earlier write of this file failed",
            ))
        })?;
        let buffer = std::mem::take(&mut self.buffer);
        let target = std::mem::replace(
            &mut self.target,
            Target::Whole {
                hasher: Sha256::new(),
            },
        );
        let (file, mut buffer, target) = blocking(move || {
            let target = match target {
                Target::Whole { mut hasher } => {
                    hasher.update(&buffer);
                    (&file).write_all(&buffer)?;
                    Target::Whole { hasher }
                }
                Target::Part { path, offset } => {
                    write_part_chunk(&file, &path, offset, &buffer)?;
                    Target::Part {
                        path,
                        offset: offset + buffer.len() as u64,
                    }
                }
            };
            Ok((file, buffer, target))
        })
        .await?;
        buffer.clear();
        self.file = Some(file);
        self.buffer = buffer;
        self.target = target;
        Ok(())
    }

    /// Writes the rest and syncs it. A new file's digest is returned (a
    /// blob row may soon name it); a part's is `None` (it is checked whole
    /// by [`assemble`]).
    pub async fn finish(mut self) -> Result<Option<Digest>, DiskError> {
        self.flush().await?;
        let file = self
            .file
            .take()
            .ok_or_else(|| DiskError::Io(std::io::Error::other("the file was not written")))?;
        match std::mem::replace(
            &mut self.target,
            Target::Whole {
                hasher: Sha256::new(),
            },
        ) {
            Target::Whole { hasher } => {
                blocking(move || Ok(file.sync_all()?)).await?;
                Ok(Some(Digest::from_sha256(&hasher.finalize().into())))
            }
            Target::Part { .. } => {
                // Its pages reach the disk while other parts still come:
                // the sync of the whole on Commit has little left to do.
                blocking(move || Ok(file.sync_data()?)).await?;
                Ok(None)
            }
        }
    }
}

/// Writes one chunk of a part at `offset`, under a shared lock, only while
/// `path` still names `file` (see the module's comment).
fn write_part_chunk(file: &File, path: &Path, offset: u64, chunk: &[u8]) -> Result<(), DiskError> {
    flock(file, FlockOperation::LockShared).map_err(std::io::Error::from)?;
    let written = (|| {
        let ours = file.metadata()?;
        let named = match std::fs::metadata(path) {
            Ok(named) => Some(named),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        if named.is_none_or(|n| n.ino() != ours.ino() || n.dev() != ours.dev()) {
            return Err(DiskError::Rejected(
                "the upload this part belongs to was completed or dropped meanwhile".into(),
            ));
        }
        file.write_all_at(chunk, offset)?;
        Ok(())
    })();
    let _ = flock(file, FlockOperation::Unlock);
    written
}

/// Checks the parts' file `parts` whole and makes it the blob at `dest`:
/// renamed to `private` first (no part write starts on it after that),
/// locked (the chunk writes under way end), then it must hold exactly
/// `size` bytes of `digest`, read and hashed on a blocking thread. No
/// copy: the bytes checked are the bytes named.
pub async fn assemble(
    parts: PathBuf,
    private: PathBuf,
    dest: PathBuf,
    digest: &Digest,
    size: u64,
) -> Result<(), DiskError> {
    match tokio::fs::rename(&parts, &private).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(DiskError::Rejected(format!(
                "no part of blob {digest} was uploaded"
            )));
        }
        Err(e) => return Err(e.into()),
    }
    let checked = {
        let digest = digest.clone();
        let private = private.clone();
        blocking(move || check_whole(&private, &digest, size)).await
    };
    let placed = match checked {
        Ok(()) => {
            async {
                make_parent(&dest).await?;
                tokio::fs::rename(&private, &dest).await?;
                Ok(())
            }
            .await
        }
        Err(e) => Err(e),
    };
    if placed.is_err() {
        let _ = tokio::fs::remove_file(&private).await;
    }
    placed
}

/// `file` holds exactly `size` bytes hashing to `digest`, on disk.
fn check_whole(file: &Path, digest: &Digest, size: u64) -> Result<(), DiskError> {
    let file = File::open(file)?;
    flock(&file, FlockOperation::LockExclusive).map_err(std::io::Error::from)?;
    let got = file.metadata()?.len();
    if got != size {
        return Err(DiskError::Rejected(format!(
            "the parts of blob {digest} hold {got} bytes, not {size}"
        )));
    }
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; CHUNK];
    let mut reader = (&file).take(size);
    loop {
        let n = reader.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    let whole = Digest::from_sha256(&hasher.finalize().into());
    if whole != *digest {
        return Err(DiskError::Rejected(format!(
            "the parts of blob {digest} hash to {whole}"
        )));
    }
    // On disk before it is named: a blob row points at it.
    file.sync_all()?;
    Ok(())
}
