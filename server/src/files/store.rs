//! The object store that keeps artifacts' blobs, one object per digest
//! under `blobs/sha256/<first 2 hex>/<64 hex>`: the local file system under
//! the data directory (this server moves the bytes, through signed URLs
//! of its own), or an S3-compatible store (agents move the bytes straight
//! to and from it, through presigned URLs). Files over `SINGLE_PUT_MAX`
//! go up in parts of `PART_SIZE` with either, each part's request short
//! enough for the body deadlines of the server and of proxies.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::local::LocalFileSystem;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::signer::{HeaderName, HeaderValue, Method, SignedUrlOptions, Signer};
use object_store::{ObjectStore, ObjectStoreExt};
use sha2::{Digest as _, Sha256};
use xene_core::artifact::{Digest, PART_SIZE, SINGLE_PUT_MAX};
use xene_core::protocol::{BlobUpload, CompletedUpload, Transfer};

use super::local_disk::{self, PRIVATE_DIR};
use super::local_urls::{BlobMethod, LocalUrls, Part, is_upload_id};
use crate::config::artifacts::{ArtifactArgs, StoreKind};
use crate::storage::now_ms;

/// The most parts of one multipart upload (S3's limit): with
/// `PART_SIZE` parts, the largest file an artifact may hold.
pub const MAX_PARTS: u64 = 10_000;

/// The largest file an artifact may hold.
pub const MAX_FILE_BYTES: u64 = MAX_PARTS * PART_SIZE;

/// The directory of a local store where uploads are written before they
/// are verified and renamed into place (the collector empties it of old
/// leftovers).
pub const LOCAL_TEMP_DIR: &str = "tmp";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("artifact store: {0}")]
    Config(String),
    #[error("artifact store: {0}")]
    Object(#[from] object_store::Error),
    #[error("artifact store: {0}")]
    Io(#[from] std::io::Error),
    /// What the agent sent is not what it said: nothing was kept.
    #[error("{0}")]
    Rejected(String),
}

impl From<local_disk::DiskError> for StoreError {
    fn from(e: local_disk::DiskError) -> Self {
        match e {
            local_disk::DiskError::Io(e) => Self::Io(e),
            local_disk::DiskError::Rejected(why) => Self::Rejected(why),
        }
    }
}

/// One blob the store holds, as listed.
#[derive(Debug, Clone)]
pub struct StoredBlob {
    pub digest: Digest,
    pub size: u64,
    /// When it was last written (UTC ms).
    pub modified_ms: i64,
}

enum Backend {
    /// Files under `root`, served by this server.
    Local {
        root: PathBuf,
    },
    S3(Arc<AmazonS3>),
}

pub struct BlobStore {
    objects: Arc<dyn ObjectStore>,
    backend: Backend,
    urls: LocalUrls,
    /// How long a URL handed out stays valid.
    ttl: Duration,
}

impl std::fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlobStore({})", self.objects)
    }
}

/// The object key of a blob.
pub fn key(digest: &Digest) -> Path {
    let hex = digest.hex();
    Path::from(format!("blobs/sha256/{}/{hex}", &hex[..2]))
}

impl BlobStore {
    /// Opens the store the flags name. `data_dir` holds the local store;
    /// `url_secret` keys the local store's URLs.
    pub fn open(
        args: &ArtifactArgs,
        data_dir: &FsPath,
        url_secret: &[u8],
    ) -> Result<Self, StoreError> {
        let urls = LocalUrls::new(url_secret);
        let ttl = args.artifact_url_ttl;
        match args.artifact_store {
            StoreKind::Local => {
                let root = data_dir.join("artifacts");
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(PRIVATE_DIR)
                    .create(root.join(LOCAL_TEMP_DIR))?;
                let objects = Arc::new(LocalFileSystem::new_with_prefix(&root)?);
                Ok(Self {
                    objects,
                    backend: Backend::Local { root },
                    urls,
                    ttl,
                })
            }
            StoreKind::S3 => {
                let s3 = Arc::new(s3_from(args)?);
                Ok(Self {
                    objects: s3.clone(),
                    backend: Backend::S3(s3),
                    urls,
                    ttl,
                })
            }
        }
    }

    /// The local store's directory, if it is local.
    pub fn local_root(&self) -> Option<&FsPath> {
        match &self.backend {
            Backend::Local { root } => Some(root),
            Backend::S3(_) => None,
        }
    }

    /// The local store's URLs (also what checks the ones it handed out).
    pub fn urls(&self) -> &LocalUrls {
        &self.urls
    }

    /// The object store itself (for the collector's listing and deleting).
    pub fn objects(&self) -> &Arc<dyn ObjectStore> {
        &self.objects
    }

    fn expires_ms(&self) -> i64 {
        now_ms() + self.ttl.as_millis() as i64
    }

    /// Where and how the agent uploads a blob: one PUT up to
    /// `SINGLE_PUT_MAX`, else (S3) parts of `PART_SIZE` of one multipart
    /// upload, completed by `complete`.
    pub async fn upload(&self, digest: &Digest, size: u64) -> Result<BlobUpload, StoreError> {
        let single = |transfer: Transfer| BlobUpload {
            digest: digest.clone(),
            size,
            part_size: size.max(SINGLE_PUT_MAX),
            parts: vec![transfer],
            upload_id: None,
        };
        let parts = size.div_ceil(PART_SIZE);
        if parts > MAX_PARTS {
            return Err(StoreError::Rejected(format!(
                "a file of {size} bytes is over the {MAX_FILE_BYTES} bytes a file may have"
            )));
        }
        let s3 = match &self.backend {
            Backend::Local { .. } if size <= SINGLE_PUT_MAX => {
                let url = self
                    .urls
                    .sign(BlobMethod::Put, digest, size, self.expires_ms());
                return Ok(single(transfer("PUT", url)));
            }
            Backend::Local { .. } => return Ok(self.local_parts(digest, size, parts)),
            Backend::S3(s3) => s3,
        };
        let path = key(digest);
        if size <= SINGLE_PUT_MAX {
            // S3 checks the bytes against their SHA-256 (the header is
            // signed, so the agent must send it): no agent can store other
            // bytes under a digest.
            let checksum = base64_sha256(digest);
            let options = SignedUrlOptions::default().with_signed_header(
                HeaderName::from_static("x-amz-checksum-sha256"),
                HeaderValue::from_str(&checksum).expect("base64 is a header value"),
            );
            let url = s3
                .signed_url_opts(Method::PUT, &path, self.ttl, &options)
                .await?;
            let mut put = transfer("PUT", url.to_string());
            put.headers.insert("x-amz-checksum-sha256".into(), checksum);
            return Ok(single(put));
        }
        let upload_id = s3.create_multipart(&path).await?;
        let mut transfers = Vec::with_capacity(parts as usize);
        for number in 1..=parts {
            let options = SignedUrlOptions::default().with_query([
                ("partNumber", number.to_string()),
                ("uploadId", upload_id.clone()),
            ]);
            let url = s3
                .signed_url_opts(Method::PUT, &path, self.ttl, &options)
                .await?;
            transfers.push(transfer("PUT", url.to_string()));
        }
        Ok(BlobUpload {
            digest: digest.clone(),
            size,
            part_size: PART_SIZE,
            parts: transfers,
            upload_id: Some(upload_id),
        })
    }

    /// A local multipart upload: parts written into one temporary file
    /// at their offsets, checked whole by `complete`.
    fn local_parts(&self, digest: &Digest, size: u64, parts: u64) -> BlobUpload {
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).expect("the OS has randomness");
        let upload = hex::encode(id);
        let expires = self.expires_ms();
        let transfers = (1..=parts)
            .map(|number| {
                let len = PART_SIZE.min(size - (number - 1) * PART_SIZE);
                let part = Part {
                    upload: upload.clone(),
                    number,
                };
                transfer("PUT", self.urls.sign_part(digest, len, expires, &part))
            })
            .collect();
        BlobUpload {
            digest: digest.clone(),
            size,
            part_size: PART_SIZE,
            parts: transfers,
            upload_id: Some(upload),
        }
    }

    /// Completes a multipart upload of a blob of `size` bytes: S3 with the
    /// parts' ETags the agent got, the local store by checking the parts'
    /// file whole and renaming it into place.
    ///
    /// A blob already stored with its size is kept and the upload dropped:
    /// a Commit sent again (after a reconnect) finds its blob there, and an
    /// upload begun while the blob was missing can never replace the object
    /// other manifests name once someone else stored it (S3 does not check
    /// a multipart upload's parts against the digest).
    pub async fn complete(&self, done: &CompletedUpload, size: u64) -> Result<(), StoreError> {
        let Some(upload_id) = &done.upload_id else {
            return Ok(());
        };
        if self.size_of(&done.digest).await? == Some(size) {
            self.abort(&done.digest, upload_id).await;
            return Ok(());
        }
        let s3 = match &self.backend {
            Backend::Local { root } => {
                return assemble(root, &done.digest, upload_id, size).await;
            }
            Backend::S3(s3) => s3,
        };
        let parts = done
            .etags
            .iter()
            .map(|etag| PartId {
                content_id: etag.clone(),
            })
            .collect();
        s3.complete_multipart(&key(&done.digest), upload_id, parts)
            .await?;
        Ok(())
    }

    /// Drops a multipart upload's parts; one already gone (completed, or
    /// dropped before) is no error, and a failure only leaves parts the
    /// collector (local) or the bucket's lifecycle rule (S3) removes.
    async fn abort(&self, digest: &Digest, upload_id: &str) {
        let dropped = match &self.backend {
            Backend::Local { root } => {
                if !is_upload_id(upload_id) {
                    return;
                }
                match tokio::fs::remove_file(parts_file(root, digest, upload_id)).await {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    other => other.map_err(StoreError::from),
                }
            }
            Backend::S3(s3) => {
                match s3
                    .abort_multipart(&key(digest), &upload_id.to_string())
                    .await
                {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
        };
        if let Err(e) = dropped {
            tracing::warn!(%digest, error = %e, "dropping a multipart upload of a stored blob failed");
        }
    }

    /// Where the agent downloads a blob from.
    pub async fn download(&self, digest: &Digest, size: u64) -> Result<Transfer, StoreError> {
        match &self.backend {
            Backend::Local { .. } => Ok(transfer(
                "GET",
                self.urls
                    .sign(BlobMethod::Get, digest, size, self.expires_ms()),
            )),
            Backend::S3(s3) => {
                let url = s3.signed_url(Method::GET, &key(digest), self.ttl).await?;
                Ok(transfer("GET", url.to_string()))
            }
        }
    }

    /// The size of a stored blob, or `None` when the store lacks it.
    pub async fn size_of(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        match self.objects.head(&key(digest)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// A blob's bytes, streamed. The local store reads its file directly
    /// (`local_disk`), in large chunks on blocking threads.
    pub async fn read(
        &self,
        digest: &Digest,
    ) -> Result<BoxStream<'static, Result<Bytes, StoreError>>, StoreError> {
        self.read_checked(digest, false).await
    }

    /// A blob's bytes, streamed and hashed on the way: the last chunk goes
    /// out only once the whole is the digest's, else an error ends the
    /// stream in its place, so a reader (an HTTP download, cut short) never
    /// gets all of a blob whose object is not its digest's. One chunk is
    /// held back; hashing costs about what reading does.
    pub async fn read_verified(
        &self,
        digest: &Digest,
    ) -> Result<BoxStream<'static, Result<Bytes, StoreError>>, StoreError> {
        self.read_checked(digest, true).await
    }

    async fn read_checked(
        &self,
        digest: &Digest,
        verify: bool,
    ) -> Result<BoxStream<'static, Result<Bytes, StoreError>>, StoreError> {
        if let Backend::Local { root } = &self.backend {
            let file = local_disk::open(fs_path(root, digest), digest).await?;
            return Ok(local_disk::read(file, digest.clone(), verify)
                .map(|r| r.map_err(StoreError::from))
                .boxed());
        }
        let got = self.objects.get(&key(digest)).await?;
        let bytes = got
            .into_stream()
            .map(|r| r.map_err(StoreError::from))
            .boxed();
        if verify {
            Ok(verified(bytes, digest.clone()).boxed())
        } else {
            Ok(bytes)
        }
    }

    /// Deletes a blob; one already gone is no error.
    pub async fn delete(&self, digest: &Digest) -> Result<(), StoreError> {
        match self.objects.delete(&key(digest)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every blob the store holds (objects under `blobs/` whose key is no
    /// digest are skipped).
    pub fn list(&self) -> BoxStream<'static, Result<StoredBlob, StoreError>> {
        self.objects
            .list(Some(&Path::from("blobs/sha256")))
            .filter_map(|item| async move {
                match item {
                    Ok(meta) => {
                        let name = meta.location.filename()?;
                        let digest = Digest::parse(&format!("sha256:{name}")).ok()?;
                        Some(Ok(StoredBlob {
                            digest,
                            size: meta.size,
                            modified_ms: meta.last_modified.timestamp_millis(),
                        }))
                    }
                    Err(e) => Some(Err(e.into())),
                }
            })
            .boxed()
    }
}

/// What `read_verified` streams along with the bytes (an object store's).
struct Verifying {
    bytes: BoxStream<'static, Result<Bytes, StoreError>>,
    digest: Digest,
    hasher: Sha256,
    held: Option<Bytes>,
    ended: bool,
}

/// `bytes` one chunk behind, the last one only when the whole hashes to
/// `digest`.
fn verified(
    bytes: BoxStream<'static, Result<Bytes, StoreError>>,
    digest: Digest,
) -> impl futures::Stream<Item = Result<Bytes, StoreError>> + Send + 'static {
    let state = Verifying {
        bytes,
        digest,
        hasher: Sha256::new(),
        held: None,
        ended: false,
    };
    futures::stream::unfold(state, |mut s| async move {
        if s.ended {
            return None;
        }
        loop {
            match s.bytes.next().await {
                Some(Ok(chunk)) => {
                    if chunk.is_empty() {
                        continue;
                    }
                    s.hasher.update(&chunk);
                    if let Some(before) = s.held.replace(chunk) {
                        return Some((Ok(before), s));
                    }
                }
                Some(Err(e)) => {
                    s.ended = true;
                    return Some((Err(e), s));
                }
                None => {
                    s.ended = true;
                    let whole =
                        Digest::from_sha256(&std::mem::take(&mut s.hasher).finalize().into());
                    if whole != s.digest {
                        let damaged = StoreError::Rejected(format!(
                            "blob {} in the artifact store hashes to {whole}: it is damaged",
                            s.digest
                        ));
                        return Some((Err(damaged), s));
                    }
                    let last = s.held.take()?;
                    return Some((Ok(last), s));
                }
            }
        }
    })
}

/// The temporary file of a multipart upload's parts.
pub(super) fn parts_file(root: &FsPath, digest: &Digest, upload: &str) -> PathBuf {
    root.join(LOCAL_TEMP_DIR)
        .join(format!("{}.{upload}.parts", digest.hex()))
}

/// Where a local store keeps a blob.
pub(super) fn fs_path(root: &FsPath, digest: &Digest) -> PathBuf {
    root.join(key(digest).as_ref())
}

/// Completes a local multipart upload: the parts' file becomes the blob
/// only when it holds exactly `size` bytes of its digest, checked after it
/// was renamed to a private name; a part upload still in flight never
/// writes into it (`local_disk`).
pub async fn assemble(
    root: &FsPath,
    digest: &Digest,
    upload: &str,
    size: u64,
) -> Result<(), StoreError> {
    if !is_upload_id(upload) {
        return Err(StoreError::Rejected(format!(
            "the upload of blob {digest} names no upload of this store"
        )));
    }
    let file = parts_file(root, digest, upload);
    let private = file.with_extension(format!("{}.whole", random_suffix()));
    Ok(local_disk::assemble(file, private, fs_path(root, digest), digest, size).await?)
}

/// A name no other writer picks, for temporary files.
pub(super) fn random_suffix() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the OS has randomness");
    hex::encode(bytes)
}

fn transfer(method: &str, url: String) -> Transfer {
    Transfer {
        method: method.into(),
        url,
        headers: Default::default(),
    }
}

/// The digest's 32 bytes in base64, as S3's checksum headers carry them.
fn base64_sha256(digest: &Digest) -> String {
    use base64::Engine;
    let bytes = hex::decode(digest.hex()).expect("a digest is hex");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn s3_from(args: &ArtifactArgs) -> Result<AmazonS3, StoreError> {
    let bucket = args
        .s3_bucket
        .as_deref()
        .ok_or_else(|| StoreError::Config("--artifact-store s3 needs --s3-bucket".into()))?;
    // object_store's HTTP client is rustls without a bundled provider: it
    // takes the process default, this crate's ring. Another caller may
    // have installed it first, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_region(&args.s3_region);
    if let Some(endpoint) = &args.s3_endpoint {
        // A store on a private network or in tests may speak plain HTTP.
        builder = builder
            .with_endpoint(endpoint)
            .with_allow_http(endpoint.starts_with("http://"));
    }
    match (&args.s3_access_key_id, &args.s3_secret_access_key) {
        (Some(id), Some(secret)) => {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
        }
        (None, None) => {}
        _ => {
            return Err(StoreError::Config(
                "--s3-access-key-id and --s3-secret-access-key go together".into(),
            ));
        }
    }
    Ok(builder.build()?)
}
