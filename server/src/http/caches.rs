//! `/api/v1/workflows/{name}/caches`: a workflow's saved cache entries,
//! with its usage and quota, and removing one (editors, audited). A
//! removed entry's chunks are left to the collector, like an artifact's.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use xene_api::caches::{CacheEntry, CacheList};

use super::AppState;
use super::error::ApiError;
use crate::access::Principal;
use crate::storage::{caches, workflows};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_caches))
        .routes(routes!(delete_cache))
}

async fn workflow_exists(state: &AppState, name: &str) -> Result<(), ApiError> {
    if workflows::exists(&state.db, name).await? {
        Ok(())
    } else {
        Err(ApiError::NotFound(format!("no workflow named {name:?}")))
    }
}

/// A workflow's saved cache entries, the most recently used first (at most
/// 200; `total` and `bytes` count them all), and its cache quota.
#[utoipa::path(
    get, path = "/api/v1/workflows/{name}/caches", tag = "caches",
    params(("name" = String, Path, description = "Workflow name")),
    responses((status = 200, body = CacheList), (status = 404, description = "No such workflow"))
)]
async fn list_caches(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<CacheList>, ApiError> {
    let Path(name) = name?;
    workflow_exists(&state, &name).await?;
    let listed = caches::list(&state.db, &name).await?;
    let entries = listed
        .entries
        .into_iter()
        .map(|e| CacheEntry {
            id: e.id,
            name: e.name,
            key: e.key,
            files: e.files,
            bytes: e.bytes,
            created_at: e.created_at,
            used_at: e.used_at,
        })
        .collect();
    Ok(Json(CacheList {
        entries,
        total: listed.total,
        bytes: listed.bytes,
        quota: state.db.quotas().cache_bytes,
    }))
}

/// Remove one of a workflow's cache entries: the next restore of its key
/// misses (or finds another by a restore key).
#[utoipa::path(
    delete, path = "/api/v1/workflows/{name}/caches/{id}", tag = "caches",
    params(
        ("name" = String, Path, description = "Workflow name"),
        ("id" = i64, Path, description = "Cache entry id"),
    ),
    responses((status = 204), (status = 404, description = "No such workflow, or no such entry of it"))
)]
async fn delete_cache(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    path: Result<Path<(String, i64)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path((name, id)) = path?;
    workflow_exists(&state, &name).await?;
    let Some((cache, key)) = caches::delete(&state.db, &name, id).await? else {
        return Err(ApiError::NotFound(format!(
            "workflow {name:?} has no cache entry {id}"
        )));
    };
    let detail = format!("cache {cache} {key} (id {id})");
    super::audit::record(&state, &principal, "cache.delete", &name, &detail).await;
    Ok(StatusCode::NO_CONTENT)
}
