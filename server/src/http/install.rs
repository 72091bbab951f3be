//! `GET /install.sh` and the agent binary it downloads from this server,
//! with its checksum, so installing an agent needs nothing but the server.

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Deserialize;
use sha2::{Digest, Sha256};

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

/// The bytes of the agent binary this server hands out, if it has one for `arch`.
async fn agent_binary(
    state: &AppState,
    query: Result<Query<Download>, QueryRejection>,
) -> Result<Vec<u8>, ApiError> {
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
        Some(path) if path.is_file() => tokio::fs::read(path).await.map_err(|e| ApiError::Internal(e.into())),
        _ => Err(ApiError::NotFound(
            "this server has no xene-agent binary to hand out (put it beside `xene` or pass --agent-binary)".into(),
        )),
    }
}

async fn binary(
    State(state): State<AppState>,
    query: Result<Query<Download>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let bytes = agent_binary(&state, query).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"xene-agent\"".to_string(),
            ),
        ],
        bytes,
    ))
}

async fn checksum(
    State(state): State<AppState>,
    query: Result<Query<Download>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let bytes = agent_binary(&state, query).await?;
    let digest: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((
        [(header::CONTENT_TYPE, "text/plain")],
        format!("{digest}  xene-agent\n"),
    ))
}
