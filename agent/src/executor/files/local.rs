//! Artifacts and caches of `xene-agent run`: a store in a directory of the
//! run, with the server's rules (an artifact is published when its attempt
//! ends as its `when` says; a need reads the published one; a cache entry
//! is saved when its attempt succeeds, the first save of a key winning, and
//! a restore takes the entry of its key, else the newest one a restore key
//! starts), and a [`FileChannel`] per attempt that answers as a server
//! would. Blobs are content-addressed and checked before they are kept, as
//! on a server.
//!
//! Its transfers are paths of this store (`/blobs/<hex>`,
//! `/parts/<hex>-<upload>/<n>`), never sent anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::BoxFuture;
use xene_core::artifact::{Digest, ManifestEntry};
use xene_core::protocol::{
    BlobDownload, BlobUpload, CompletedUpload, FilesAnswer, FilesRequest, Transfer,
};
use xene_core::spec::{PublishWhen, Task};

use super::FileChannel;
use super::collect::hash_copy;

/// The blobs and published manifests of one local run.
pub struct LocalStore {
    dir: PathBuf,
    part_size: u64,
    published: Mutex<BTreeMap<String, Vec<ManifestEntry>>>,
    /// Saved cache entries, oldest first.
    caches: Mutex<Vec<CacheEntry>>,
    /// Names each upload's parts: two attempts uploading the same blob at
    /// once (an empty file, a shared tool) never write the same part file.
    next_upload: AtomicU64,
}

impl LocalStore {
    /// A store in `dir` (created; the caller removes it after the run).
    /// Blobs larger than `part_size` go up in parts of that size.
    pub fn new(dir: PathBuf, part_size: u64) -> std::io::Result<Arc<Self>> {
        // Possibly in a shared temp dir: its own, closed to others.
        crate::runtime::shell::ensure_private_dir(&dir)?;
        std::fs::create_dir_all(dir.join("blobs"))?;
        std::fs::create_dir_all(dir.join("parts"))?;
        Ok(Arc::new(Self {
            dir,
            part_size: part_size.max(1),
            published: Mutex::new(BTreeMap::new()),
            caches: Mutex::new(Vec::new()),
            next_upload: AtomicU64::new(0),
        }))
    }

    /// The store of a run: each blob in one part, whatever its size
    /// (nothing here limits a part, and every part is one more copy).
    pub fn for_run(dir: PathBuf) -> std::io::Result<Arc<Self>> {
        Self::new(dir, u64::MAX)
    }

    /// Removes the store and all it holds.
    pub fn remove(&self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "could not remove the artifact store");
        }
    }

    /// Where the store keeps the blob of `digest`.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join("blobs").join(digest.hex())
    }

    /// The channel of one attempt of `task`.
    pub fn channel(self: &Arc<Self>, task: &Task) -> Arc<LocalChannel> {
        Arc::new(LocalChannel(Arc::new(Attempt {
            store: self.clone(),
            publishes: task
                .publish
                .iter()
                .map(|p| (p.name.clone(), p.when == PublishWhen::Always))
                .collect(),
            needs: task.needs.iter().map(|n| n.name.clone()).collect(),
            caches: task.caches.iter().map(|c| c.name.clone()).collect(),
            staged: Mutex::new(BTreeMap::new()),
            staged_caches: Mutex::new(Vec::new()),
            uploads: Mutex::new(BTreeMap::new()),
        })))
    }

    /// Part `n` of upload `id` (`<hex>-<number>`).
    fn part_path(&self, id: &str, n: usize) -> PathBuf {
        self.dir.join("parts").join(format!("{id}.{n}"))
    }
}

/// A cache entry, staged or saved.
#[derive(Debug, Clone)]
struct CacheEntry {
    name: String,
    key: String,
    files: u64,
    chunks: Vec<ManifestEntry>,
}

/// One attempt's view of a [`LocalStore`]: it stages what it commits, and
/// [`LocalChannel::finish`] publishes it as the attempt's end says.
pub struct LocalChannel(Arc<Attempt>);

struct Attempt {
    store: Arc<LocalStore>,
    /// What the task publishes, and whether `when: always`.
    publishes: BTreeMap<String, bool>,
    needs: BTreeSet<String>,
    /// The caches the task declares.
    caches: BTreeSet<String>,
    staged: Mutex<BTreeMap<String, Vec<ManifestEntry>>>,
    staged_caches: Mutex<Vec<CacheEntry>>,
    /// The upload this attempt was last told to make of each blob.
    uploads: Mutex<BTreeMap<Digest, String>>,
}

impl LocalChannel {
    /// The attempt ended: its staged artifacts are published when it
    /// succeeded, or when they are `when: always`; its staged cache entries
    /// are saved when it succeeded, unless an entry of their key is.
    pub fn finish(&self, succeeded: bool) {
        let this = &self.0;
        let entries = std::mem::take(&mut *this.staged_caches.lock().expect("staged lock"));
        if succeeded {
            let mut saved = this.store.caches.lock().expect("caches lock");
            for entry in entries {
                if !saved
                    .iter()
                    .any(|e| e.name == entry.name && e.key == entry.key)
                {
                    saved.push(entry);
                }
            }
        }
        let staged = std::mem::take(&mut *this.staged.lock().expect("staged lock"));
        let mut published = this.store.published.lock().expect("published lock");
        for (name, files) in staged {
            if succeeded || this.publishes.get(&name) == Some(&true) {
                published.insert(name, files);
            }
        }
    }
}

impl Attempt {
    fn answer(&self, request: FilesRequest) -> FilesAnswer {
        match self.try_answer(request) {
            Ok(answer) => answer,
            Err(error) => FilesAnswer::Refused { error },
        }
    }

    fn try_answer(&self, request: FilesRequest) -> Result<FilesAnswer, String> {
        let store = &self.store;
        match request {
            FilesRequest::Publish { name, files } => {
                self.check_publishes(&name)?;
                Ok(self.uploads(files))
            }
            FilesRequest::Commit {
                name,
                files,
                completed,
            } => {
                self.check_publishes(&name)?;
                self.complete(&files, &completed)?;
                self.staged.lock().expect("staged lock").insert(name, files);
                Ok(FilesAnswer::Committed)
            }
            FilesRequest::Fetch { name } => {
                if !self.needs.contains(&name) {
                    return Err(format!("the task does not need {name}"));
                }
                let published = store.published.lock().expect("published lock");
                let Some(files) = published.get(&name) else {
                    return Err(format!("no task of this run has published {name}"));
                };
                Ok(FilesAnswer::Downloads {
                    files: files.clone(),
                    downloads: downloads(files),
                })
            }
            FilesRequest::CacheRestore {
                name,
                key,
                restore_keys,
            } => {
                self.check_caches(&name)?;
                let saved = store.caches.lock().expect("caches lock");
                let of_name = || saved.iter().rev().filter(|e| e.name == name);
                let found = of_name().find(|e| e.key == key).or_else(|| {
                    restore_keys
                        .iter()
                        .find_map(|prefix| of_name().find(|e| e.key.starts_with(prefix.as_str())))
                });
                Ok(match found {
                    Some(entry) => FilesAnswer::CacheEntry {
                        key: Some(entry.key.clone()),
                        files: entry.files,
                        chunks: entry.chunks.clone(),
                        downloads: downloads(&entry.chunks),
                    },
                    None => FilesAnswer::CacheEntry {
                        key: None,
                        files: 0,
                        chunks: Vec::new(),
                        downloads: Vec::new(),
                    },
                })
            }
            FilesRequest::CacheUpload { name, chunks, .. } => {
                self.check_caches(&name)?;
                Ok(self.uploads(chunks))
            }
            FilesRequest::CacheSave {
                name,
                key,
                chunks,
                completed,
                files,
            } => {
                self.check_caches(&name)?;
                self.complete(&chunks, &completed)?;
                let mut staged = self.staged_caches.lock().expect("staged lock");
                staged.retain(|e| e.name != name);
                staged.push(CacheEntry {
                    name,
                    key,
                    files,
                    chunks,
                });
                Ok(FilesAnswer::Committed)
            }
        }
    }

    /// The uploads of the blobs of `files` the store lacks.
    fn uploads(&self, files: Vec<ManifestEntry>) -> FilesAnswer {
        let store = &self.store;
        let mut uploads = Vec::new();
        let mut seen = BTreeSet::new();
        for file in files {
            if !seen.insert(file.digest.clone()) || store.blob_path(&file.digest).exists() {
                continue;
            }
            let id = format!(
                "{}-{}",
                file.digest.hex(),
                store.next_upload.fetch_add(1, Ordering::Relaxed)
            );
            let count = if file.size <= store.part_size {
                1
            } else {
                file.size.div_ceil(store.part_size) as usize
            };
            let given = &mut *self.uploads.lock().expect("uploads lock");
            given.insert(file.digest.clone(), id.clone());
            uploads.push(BlobUpload {
                digest: file.digest,
                size: file.size,
                part_size: store.part_size,
                parts: (0..count)
                    .map(|n| transfer("PUT", format!("/parts/{id}/{n}")))
                    .collect(),
                upload_id: (count > 1).then_some(id),
            });
        }
        FilesAnswer::Uploads { uploads }
    }

    /// Keeps the blobs of `files` not kept yet, from their uploads.
    fn complete(
        &self,
        files: &[ManifestEntry],
        completed: &[CompletedUpload],
    ) -> Result<(), String> {
        let multipart: BTreeSet<&Digest> = completed.iter().map(|c| &c.digest).collect();
        for file in files {
            if !self.store.blob_path(&file.digest).exists() {
                self.assemble(file, completed, multipart.contains(&file.digest))?;
            }
        }
        Ok(())
    }

    fn check_caches(&self, name: &str) -> Result<(), String> {
        if self.caches.contains(name) {
            Ok(())
        } else {
            Err(format!("the task has no cache {name}"))
        }
    }

    fn check_publishes(&self, name: &str) -> Result<(), String> {
        if self.publishes.contains_key(name) {
            Ok(())
        } else {
            Err(format!("the task does not publish {name}"))
        }
    }

    /// Joins a blob's uploaded parts and keeps it when its size and digest
    /// are right (nothing is kept otherwise).
    fn assemble(
        &self,
        file: &ManifestEntry,
        completed: &[CompletedUpload],
        multipart: bool,
    ) -> Result<(), String> {
        let store = &self.store;
        let Some(id) = self
            .uploads
            .lock()
            .expect("uploads lock")
            .get(&file.digest)
            .cloned()
        else {
            return Err(format!("blob of {} was not uploaded", file.path));
        };
        let count = if multipart {
            let done = completed.iter().find(|c| c.digest == file.digest);
            done.map_or(0, |c| c.etags.len())
        } else {
            1
        };
        let joined = store.dir.join("parts").join(format!("{id}.joined"));
        let result = (|| -> std::io::Result<(Digest, u64)> {
            if count == 1 {
                std::fs::rename(store.part_path(&id, 0), &joined)?;
            } else {
                let mut out = std::fs::File::create(&joined)?;
                for n in 0..count {
                    let mut part = std::fs::File::open(store.part_path(&id, n))?;
                    std::io::copy(&mut part, &mut out)?;
                }
            }
            hash_copy(std::fs::File::open(&joined)?, None)
        })();
        for n in 0..count.max(1) {
            let _ = std::fs::remove_file(store.part_path(&id, n));
        }
        let kept = match result {
            Ok((digest, size)) if digest == file.digest && size == file.size => {
                std::fs::rename(&joined, store.blob_path(&file.digest))
                    .map_err(|e| format!("keeping blob {}: {e}", file.digest))
            }
            Ok(_) => Err(format!(
                "the bytes uploaded for {} do not match its digest",
                file.path
            )),
            Err(e) => Err(format!("blob of {} was not uploaded: {e}", file.path)),
        };
        let _ = std::fs::remove_file(&joined);
        kept
    }

    /// The store path a transfer of this channel names.
    fn resolve(&self, transfer: &Transfer) -> Result<PathBuf, String> {
        let hex_ok = |hex: &str| Digest::parse(&format!("sha256:{hex}")).is_ok();
        let parts: Vec<&str> = transfer.url.split('/').collect();
        match parts.as_slice() {
            ["", "blobs", hex] if hex_ok(hex) => Ok(self.store.dir.join("blobs").join(hex)),
            ["", "parts", id, n]
                if id.split_once('-').is_some_and(|(hex, seq)| {
                    hex_ok(hex) && !seq.is_empty() && seq.bytes().all(|b| b.is_ascii_digit())
                }) =>
            {
                let n: usize = n.parse().map_err(|_| "a bad part number".to_string())?;
                Ok(self.store.part_path(id, n))
            }
            _ => Err(format!(
                "{:?} is not a transfer of this store",
                transfer.url
            )),
        }
    }
}

/// One download per distinct digest of `files`.
fn downloads(files: &[ManifestEntry]) -> Vec<BlobDownload> {
    let digests: BTreeSet<&Digest> = files.iter().map(|f| &f.digest).collect();
    digests
        .into_iter()
        .map(|digest| BlobDownload {
            digest: digest.clone(),
            transfer: transfer("GET", format!("/blobs/{}", digest.hex())),
        })
        .collect()
}

fn transfer(method: &str, url: String) -> Transfer {
    Transfer {
        method: method.into(),
        url,
        headers: BTreeMap::new(),
    }
}

impl FileChannel for LocalChannel {
    fn ask(&self, request: FilesRequest) -> BoxFuture<'_, Result<FilesAnswer, String>> {
        let attempt = self.0.clone();
        async move {
            // File work, off the async workers.
            tokio::task::spawn_blocking(move || attempt.answer(request))
                .await
                .map_err(|e| e.to_string())
        }
        .boxed()
    }

    fn upload<'a>(
        &'a self,
        transfer: &'a Transfer,
        file: &'a Path,
        offset: u64,
        len: u64,
    ) -> BoxFuture<'a, Result<Option<String>, String>> {
        async move {
            let dest = self.0.resolve(transfer)?;
            let file = file.to_path_buf();
            tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                let mut input = std::fs::File::open(file)?;
                input.seek(SeekFrom::Start(offset))?;
                let mut out = std::fs::File::create(dest)?;
                let copied = std::io::copy(&mut input.take(len), &mut out)?;
                if copied != len {
                    return Err(std::io::Error::other("the file is shorter than its part"));
                }
                out.flush()
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
            Ok(None)
        }
        .boxed()
    }

    fn download<'a>(
        &'a self,
        transfer: &'a Transfer,
        dest: &'a Path,
    ) -> BoxFuture<'a, Result<Digest, String>> {
        async move {
            let source = self.0.resolve(transfer)?;
            let dest = dest.to_path_buf();
            tokio::task::spawn_blocking(move || -> std::io::Result<Digest> {
                let input = std::fs::File::open(source)?;
                let mut out = std::fs::File::create(dest)?;
                Ok(hash_copy(input, Some(&mut out))?.0)
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
        }
        .boxed()
    }
}
