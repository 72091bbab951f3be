//! The built-in agent's file channel: its requests are answered by the
//! service in process; a server-relative URL (the local store) is served
//! in process by the same code as the blob route, URL check included; an
//! absolute one (a presigned S3 URL) goes over HTTP like a remote agent's.

use std::io::SeekFrom;
use std::path::Path;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{Stream, StreamExt};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use xene_agent::executor::FileChannel;
use xene_core::artifact::Digest;
use xene_core::protocol::{AttemptRef, FilesAnswer, FilesRequest, Transfer};

use super::local;
use super::local_urls::{Grant, parse_relative};
use super::service::Service;
use crate::storage::now_ms;

pub struct BuiltInFiles {
    ctx: Service,
    agent: String,
    attempt: AttemptRef,
    http: reqwest::Client,
}

impl BuiltInFiles {
    pub fn new(ctx: Service, agent: String, attempt: AttemptRef, http: reqwest::Client) -> Self {
        Self {
            ctx,
            agent,
            attempt,
            http,
        }
    }

    /// What a server-relative URL grants, checked as the route checks it.
    fn grant(&self, transfer: &Transfer) -> Result<Grant, String> {
        let (digest, query) = parse_relative(&transfer.url).map_err(|e| e.to_string())?;
        self.ctx
            .blobs
            .urls()
            .verify(&transfer.method, &digest, &query, now_ms())
            .map_err(|e| e.to_string())
    }

    async fn upload_to(
        &self,
        transfer: &Transfer,
        file: &Path,
        offset: u64,
        len: u64,
    ) -> Result<Option<String>, String> {
        let mut opened = tokio::fs::File::open(file)
            .await
            .map_err(|e| format!("cannot open {}: {e}", file.display()))?;
        opened
            .seek(SeekFrom::Start(offset))
            .await
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let bytes = tokio_util::io::ReaderStream::new(opened.take(len));
        if transfer.url.starts_with('/') {
            let grant = self.grant(transfer)?;
            let etag = local::receive(&self.ctx.blobs, &grant, bytes)
                .await
                .map_err(|e| e.to_string())?;
            return Ok(Some(etag));
        }
        let mut put = self
            .http
            .put(&transfer.url)
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(reqwest::Body::wrap_stream(bytes));
        for (name, value) in &transfer.headers {
            put = put.header(name, value);
        }
        let response = put
            .send()
            .await
            // Without the URL: its query is the signature, and this text
            // lands in task errors that viewers read.
            .map_err(|e| {
                format!(
                    "uploading to the artifact store failed: {}",
                    e.without_url()
                )
            })?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(format!(
                "the artifact store refused an upload ({status}): {}",
                body.chars().take(300).collect::<String>()
            ));
        }
        Ok(response
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string))
    }

    async fn download_to(&self, transfer: &Transfer, dest: &Path) -> Result<Digest, String> {
        if transfer.url.starts_with('/') {
            let grant = self.grant(transfer)?;
            let (_, bytes) = local::serve(&self.ctx.blobs, &grant)
                .await
                .map_err(|e| e.to_string())?;
            return write_hashing(bytes, dest).await;
        }
        let response = self.http.get(&transfer.url).send().await.map_err(|e| {
            format!(
                "downloading from the artifact store failed: {}",
                e.without_url()
            )
        })?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("the artifact store refused a download ({status})"));
        }
        let bytes = response
            .bytes_stream()
            .map(|r| r.map_err(|e| e.without_url()));
        write_hashing(bytes, dest).await
    }
}

/// Writes `bytes` to `dest` (created or truncated) and returns their digest.
async fn write_hashing<S, B, E>(mut bytes: S, dest: &Path) -> Result<Digest, String>
where
    S: Stream<Item = Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
    E: std::fmt::Display,
{
    let fail = |e: std::io::Error| format!("cannot write {}: {e}", dest.display());
    let mut file = tokio::fs::File::create(dest).await.map_err(fail)?;
    let mut hasher = Sha256::new();
    while let Some(chunk) = bytes.next().await {
        let chunk = chunk.map_err(|e| format!("the download broke off: {e}"))?;
        hasher.update(chunk.as_ref());
        file.write_all(chunk.as_ref()).await.map_err(fail)?;
    }
    file.flush().await.map_err(fail)?;
    Ok(Digest::from_sha256(&hasher.finalize().into()))
}

impl FileChannel for BuiltInFiles {
    fn ask(&self, request: FilesRequest) -> BoxFuture<'_, Result<FilesAnswer, String>> {
        Box::pin(async move {
            Ok(super::service::answer(&self.ctx, &self.agent, self.attempt, request).await)
        })
    }

    fn upload<'a>(
        &'a self,
        transfer: &'a Transfer,
        file: &'a Path,
        offset: u64,
        len: u64,
    ) -> BoxFuture<'a, Result<Option<String>, String>> {
        Box::pin(self.upload_to(transfer, file, offset, len))
    }

    fn download<'a>(
        &'a self,
        transfer: &'a Transfer,
        dest: &'a Path,
    ) -> BoxFuture<'a, Result<Digest, String>> {
        Box::pin(self.download_to(transfer, dest))
    }
}

/// The built-in agent's HTTP client for presigned URLs: no redirects, and
/// a connection that stalls is given up.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(std::time::Duration::from_secs(10))
        .read_timeout(std::time::Duration::from_secs(60))
        .build()
        .unwrap_or_default()
}

/// A file channel for `attempt` of the built-in agent `agent`.
pub fn for_attempt(
    ctx: &Service,
    agent: &str,
    attempt: AttemptRef,
    http: &reqwest::Client,
) -> Arc<dyn FileChannel> {
    Arc::new(BuiltInFiles::new(
        ctx.clone(),
        agent.to_string(),
        attempt,
        http.clone(),
    ))
}
