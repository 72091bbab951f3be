//! `GET /install.sh` and the agent binary it downloads from this server,
//! with its checksum, so installing an agent needs nothing but the server.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::SystemTime;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tower_http::services::ServeFile;

use super::AppState;
use super::error::ApiError;

const SCRIPT: &str = include_str!("install.sh");

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/install.sh", get(script))
        .route("/download/xene-agent", get(binary))
        .route("/download/xene-agent.sha256", get(checksum))
}

async fn script(State(state): State<AppState>) -> impl IntoResponse {
    let body = SCRIPT.replace("__XENE_SERVER__", state.public_url.trim_end_matches('/'));
    (
        [(header::CONTENT_TYPE, "text/x-shellscript; charset=utf-8")],
        body,
    )
}

#[derive(Debug, Deserialize)]
struct Download {
    /// `uname -m` of the machine asking.
    arch: Option<String>,
}

/// The agent binary this server hands out, if it has one for `arch`.
fn agent_binary(
    state: &AppState,
    query: Result<Query<Download>, QueryRejection>,
) -> Result<PathBuf, ApiError> {
    let Query(query) = query?;
    let ours = std::env::consts::ARCH;
    if let Some(arch) = query.arch.as_deref()
        && arch != ours
        && !(arch == "amd64" && ours == "x86_64")
        && !(arch == "arm64" && ours == "aarch64")
    {
        return Err(ApiError::NotFound(format!(
            "this server has no xene-agent for {arch}, only for {ours}"
        )));
    }
    match &state.agent_binary {
        Some(path) if path.is_file() => Ok(path.clone()),
        _ => Err(ApiError::NotFound(
            "this server has no xene-agent binary to hand out (put it beside `xene` or pass --agent-binary)".into(),
        )),
    }
}

/// The binary, streamed from its file (with ranges and conditional
/// requests) rather than read into memory for every download.
async fn binary(
    State(state): State<AppState>,
    query: Result<Query<Download>, QueryRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let path = agent_binary(&state, query)?;
    let mut response = ServeFile::new_with_mime(&path, &mime::APPLICATION_OCTET_STREAM)
        .try_call(request)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .map(Body::new);
    response.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"xene-agent\""),
    );
    Ok(response)
}

async fn checksum(
    State(state): State<AppState>,
    query: Result<Query<Download>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let path = agent_binary(&state, query)?;
    let digest = sha256_of(path)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain")],
        format!("{digest}  xene-agent\n"),
    ))
}

/// Which version of a file a digest is of: its size and modification time.
type Version = (SystemTime, u64);

/// Digests already made, by path.
static DIGESTS: LazyLock<Mutex<HashMap<PathBuf, (Version, String)>>> =
    LazyLock::new(Mutex::default);
/// Held while a digest is made, so requests that arrive meanwhile wait for
/// it instead of each reading the whole binary again. The hashing thread
/// holds it (an owned guard) and stores the digest before letting go: a
/// client hanging up drops its request, not the work it began.
static HASHING: LazyLock<Arc<tokio::sync::Mutex<()>>> = LazyLock::new(Arc::default);
/// How many times a file was read to hash it, for tests.
static HASHED: AtomicU64 = AtomicU64::new(0);

/// How many digests this process has computed (not served from memory).
pub fn digests_computed() -> u64 {
    HASHED.load(Ordering::Relaxed)
}

/// The file's SHA-256 in hex, computed once per version of the file, not
/// on every request: the agent binary is tens of MB, and this route is
/// open to anyone.
async fn sha256_of(path: PathBuf) -> std::io::Result<String> {
    let cached = |version: &Version| {
        DIGESTS
            .lock()
            .unwrap()
            .get(&path)
            .filter(|(v, _)| v == version)
            .map(|(_, digest)| digest.clone())
    };
    let version = version_of(&path).await?;
    if let Some(digest) = cached(&version) {
        return Ok(digest);
    }
    let hashing = HASHING.clone().lock_owned().await;
    let version = version_of(&path).await?;
    if let Some(digest) = cached(&version) {
        return Ok(digest);
    }
    // Runs to its end even when this request is dropped.
    tokio::task::spawn_blocking(move || {
        let _hashing = hashing;
        HASHED.fetch_add(1, Ordering::Relaxed);
        let mut hasher = Sha256::new();
        std::io::copy(&mut std::fs::File::open(&path)?, &mut hasher)?;
        let digest = hex::encode(hasher.finalize());
        DIGESTS
            .lock()
            .unwrap()
            .insert(path, (version, digest.clone()));
        Ok::<_, std::io::Error>(digest)
    })
    .await
    .map_err(std::io::Error::other)?
}

async fn version_of(path: &Path) -> std::io::Result<Version> {
    let meta = tokio::fs::metadata(path).await?;
    Ok((meta.modified()?, meta.len()))
}
