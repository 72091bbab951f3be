//! `/api/v1/runs/{id}/artifacts`: what a run's tasks published, and their
//! downloads (one file as it is, several as a tar stream written on the
//! fly); pinning a run; a workflow's artifact usage. Bytes are streamed
//! from the store, never held whole; the store is trusted (agents verify
//! what they fetch, `xenectl` what it downloads), only each blob's length
//! is held to its manifest so a short one cannot shift the tar.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use xene_api::artifacts::{ArtifactFile, ArtifactInfo, ArtifactUsage, Pinned, RunArtifacts};
use xene_api::tar;
use xene_core::artifact::ManifestEntry;

use super::AppState;
use super::error::ApiError;
use crate::access::Principal;
use crate::storage::{artifacts, runs, workflows};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_artifacts))
        .routes(routes!(download))
        .routes(routes!(pin, unpin))
        .routes(routes!(usage))
}

async fn run_exists(state: &AppState, id: i64) -> Result<(), ApiError> {
    match runs::get_run(&state.db, id).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::NotFound(format!("no run with id {id}"))),
    }
}

fn file_of(entry: &ManifestEntry) -> ArtifactFile {
    ArtifactFile {
        path: entry.path.clone(),
        size: entry.size,
        mode: entry.mode,
        digest: entry.digest.as_str().to_string(),
    }
}

/// The artifacts a run's tasks published, by task and name (each with its
/// first 1000 files; `files` counts them all).
#[utoipa::path(
    get, path = "/api/v1/runs/{id}/artifacts", tag = "artifacts",
    params(("id" = i64, Path, description = "Run id")),
    responses((status = 200, body = RunArtifacts), (status = 404, description = "No such run"))
)]
async fn list_artifacts(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<RunArtifacts>, ApiError> {
    let Path(id) = id?;
    run_exists(&state, id).await?;
    let artifacts = artifacts::list_run(&state.db, id)
        .await?
        .into_iter()
        .map(|a| ArtifactInfo {
            when: if a.when_always { "always" } else { "success" }.into(),
            entries: a.entries.iter().map(file_of).collect(),
            task: a.task,
            name: a.name,
            files: a.files,
            bytes: a.bytes,
            created_at: a.created_at,
        })
        .collect();
    Ok(Json(RunArtifacts { artifacts }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DownloadQuery {
    /// Only this file of the artifact (its path in it).
    pub path: Option<String>,
}

/// Download an artifact: its one file as it is, or a tar stream of all its
/// files (each with its digest as its PAX `comment`); with
/// `path`, that one file.
#[utoipa::path(
    get, path = "/api/v1/runs/{id}/artifacts/{name}", tag = "artifacts",
    params(
        ("id" = i64, Path, description = "Run id"),
        ("name" = String, Path, description = "Artifact name"),
        DownloadQuery
    ),
    responses(
        (status = 200, description = "The file (`Content-Disposition: attachment`), or a tar \
            stream of several", content(
            (String = "application/octet-stream"),
            (String = "application/x-tar"),
        )),
        (status = 404, description = "No such run, artifact or file"),
    )
)]
async fn download(
    State(state): State<AppState>,
    path: Result<Path<(i64, String)>, PathRejection>,
    query: Result<Query<DownloadQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Path((id, name)) = path?;
    let Query(query) = query?;
    run_exists(&state, id).await?;
    let Some(entries) = artifacts::published(&state.db, id, &name).await? else {
        return Err(ApiError::NotFound(format!(
            "run {id} has no artifact named {name:?}"
        )));
    };
    let blobs = state.ctx.blobs.clone();
    let one = match (&query.path, entries.as_slice()) {
        (Some(path), _) => Some(
            entries
                .iter()
                .find(|e| &e.path == path)
                .ok_or_else(|| {
                    ApiError::NotFound(format!(
                        "artifact {name:?} of run {id} has no file {path:?}"
                    ))
                })?
                .clone(),
        ),
        (None, [single]) => Some(single.clone()),
        (None, _) => None,
    };
    if let Some(entry) = one {
        let body = blobs
            .read_verified(&entry.digest)
            .await
            .map_err(|e| unreadable(&entry, e))?;
        let body = exact(body, &entry);
        return Ok(attachment(
            "application/octet-stream",
            &file_name(&entry.path),
            entry.size,
            Body::from_stream(body),
        ));
    }
    let length = entries
        .iter()
        .map(|e| header_of(e).len() as u64 + e.size + tar::padding(e.size) as u64)
        .sum::<u64>()
        + tar::END.len() as u64;
    let files = stream::iter(entries)
        .then(move |entry| {
            let blobs = blobs.clone();
            async move {
                let head = Bytes::from(header_of(&entry));
                let body = blobs.read_verified(&entry.digest).await.map_err(|e| {
                    let _ = unreadable(&entry, e);
                    std::io::Error::other(format!("{}: cannot be read", entry.path))
                })?;
                let pad = Bytes::from(vec![0u8; tar::padding(entry.size)]);
                Ok::<_, std::io::Error>(
                    stream::once(async { Ok(head) })
                        .chain(exact(body, &entry))
                        .chain(stream::once(async { Ok(pad) })),
                )
            }
        })
        .try_flatten()
        .chain(stream::once(async { Ok(Bytes::from_static(&tar::END)) }));
    Ok(attachment(
        "application/x-tar",
        &format!("{name}.tar"),
        length,
        Body::from_stream(files),
    ))
}

fn header_of(entry: &ManifestEntry) -> Vec<u8> {
    tar::file_header(
        &entry.path,
        entry.size,
        entry.mode,
        Some(entry.digest.as_str()),
    )
}

// The store's types are not named here: `files` reaches `http` through
// the gateway, and naming them would close an import circle.
fn unreadable(
    entry: &ManifestEntry,
    e: impl std::error::Error + Send + Sync + 'static,
) -> ApiError {
    tracing::error!(digest = %entry.digest.as_str(), error = %e, "an artifact's blob cannot be read");
    ApiError::Internal(Box::new(e))
}

/// A blob's bytes, held to the size its manifest gives: a longer or
/// shorter one ends the stream with an error rather than a wrong file.
fn exact<E: std::fmt::Display + Send + 'static>(
    body: BoxStream<'static, Result<Bytes, E>>,
    entry: &ManifestEntry,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + use<E> {
    let (size, path) = (entry.size, entry.path.clone());
    stream::try_unfold((body, 0u64), move |(mut body, seen)| {
        let path = path.clone();
        async move {
            match body.next().await {
                Some(chunk) => {
                    let chunk = chunk.map_err(|e| std::io::Error::other(e.to_string()))?;
                    let seen = seen + chunk.len() as u64;
                    if seen > size {
                        return Err(std::io::Error::other(format!(
                            "{path}: the store holds more than its {size} bytes"
                        )));
                    }
                    Ok(Some((chunk, (body, seen))))
                }
                None if seen == size => Ok(None),
                None => Err(std::io::Error::other(format!(
                    "{path}: the store holds {seen} of its {size} bytes"
                ))),
            }
        }
    })
}

/// The last component of a stored path, made safe for a header.
fn file_name(path: &str) -> String {
    path.rsplit('/').next().unwrap_or(path).to_string()
}

fn attachment(kind: &'static str, name: &str, length: u64, body: Body) -> Response {
    // A plain ASCII name for every browser, the exact one (RFC 6266's
    // `filename*`) for those that read it.
    let plain: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let disposition = format!(
        "attachment; filename=\"{plain}\"; filename*=UTF-8''{}",
        xene_api::paths::encode(name)
    );
    (
        [
            (header::CONTENT_TYPE, kind.to_string()),
            (header::CONTENT_LENGTH, length.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        body,
    )
        .into_response()
}

/// Pin a run: its artifacts are kept whatever the retention.
#[utoipa::path(
    put, path = "/api/v1/runs/{id}/pin", tag = "artifacts",
    params(("id" = i64, Path, description = "Run id")),
    responses((status = 200, body = Pinned), (status = 404, description = "No such run"))
)]
async fn pin(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<Pinned>, ApiError> {
    set_pin(state, principal, id, true).await
}

/// Unpin a run: retention applies to its artifacts again.
#[utoipa::path(
    delete, path = "/api/v1/runs/{id}/pin", tag = "artifacts",
    params(("id" = i64, Path, description = "Run id")),
    responses((status = 200, body = Pinned), (status = 404, description = "No such run"))
)]
async fn unpin(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<Pinned>, ApiError> {
    set_pin(state, principal, id, false).await
}

async fn set_pin(
    state: AppState,
    principal: Principal,
    id: Result<Path<i64>, PathRejection>,
    pinned: bool,
) -> Result<Json<Pinned>, ApiError> {
    let Path(id) = id?;
    if !artifacts::pin(&state.db, id, pinned).await? {
        return Err(ApiError::NotFound(format!("no run with id {id}")));
    }
    let action = if pinned { "run.pin" } else { "run.unpin" };
    super::audit::record(&state, &principal, action, &format!("run {id}"), "").await;
    Ok(Json(Pinned { id, pinned }))
}

/// How much artifact storage a workflow's runs hold, and its quota.
#[utoipa::path(
    get, path = "/api/v1/workflows/{name}/artifacts", tag = "artifacts",
    params(("name" = String, Path, description = "Workflow name")),
    responses((status = 200, body = ArtifactUsage), (status = 404, description = "No such workflow"))
)]
async fn usage(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<ArtifactUsage>, ApiError> {
    let Path(name) = name?;
    if !workflows::exists(&state.db, &name).await? {
        return Err(ApiError::NotFound(format!("no workflow named {name:?}")));
    }
    let bytes = artifacts::usage(&state.db, &name).await?;
    Ok(Json(ArtifactUsage {
        workflow: name,
        bytes,
        quota: state.db.quotas().artifact_bytes,
    }))
}
