//! `/api/v1/runs`: list, inspect and cancel runs, and read their logs.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use xene_core::status::RunStatus;

use super::AppState;
use super::error::ApiError;
use crate::storage::events::{self, LogLine};
use crate::storage::runs::{self, Cancelled, Run, RunDetail, RunFilter};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_runs))
        .routes(routes!(get_run))
        .routes(routes!(cancel_run))
        .routes(routes!(run_logs))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunList {
    pub runs: Vec<Run>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// List runs, newest first, with filters and cursor pagination.
#[utoipa::path(
    get, path = "/api/v1/runs", tag = "runs", params(RunFilter),
    responses((status = 200, body = RunList), (status = 400, description = "Bad filter"))
)]
async fn list_runs(
    State(state): State<AppState>,
    filter: Result<Query<RunFilter>, QueryRejection>,
) -> Result<Json<RunList>, ApiError> {
    let Query(filter) = filter?;
    if let Some(status) = &filter.status {
        status
            .parse::<RunStatus>()
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    }
    if let Some(limit) = filter.limit
        && !(1..=500).contains(&limit)
    {
        return Err(ApiError::BadRequest(format!(
            "limit must be between 1 and 500, not {limit}"
        )));
    }
    if let Some(cursor) = &filter.cursor {
        cursor
            .parse::<i64>()
            .map_err(|_| ApiError::BadRequest(format!("malformed cursor {cursor:?}")))?;
    }
    let (runs, next_cursor) = runs::list(&state.db, &filter).await?;
    Ok(Json(RunList { runs, next_cursor }))
}

/// A run with its tasks and steps, their statuses, timings and outputs.
#[utoipa::path(
    get, path = "/api/v1/runs/{id}", tag = "runs",
    params(("id" = i64, Path, description = "Run id")),
    responses((status = 200, body = RunDetail), (status = 404, description = "No such run"))
)]
async fn get_run(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<RunDetail>, ApiError> {
    let Path(id) = id?;
    runs::get(&state.db, id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no run with id {id}")))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CancelResponse {
    pub id: i64,
    /// `cancelled` when it had not started; `cancelling` while its agent stops it.
    pub status: String,
}

/// Cancel a run. Finished runs cannot be cancelled (409).
#[utoipa::path(
    post, path = "/api/v1/runs/{id}/cancel", tag = "runs",
    params(("id" = i64, Path, description = "Run id")),
    responses(
        (status = 200, description = "Cancelled before it started", body = CancelResponse),
        (status = 202, description = "Its agent is stopping it", body = CancelResponse),
        (status = 404, description = "No such run"),
        (status = 409, description = "Already finished"),
    )
)]
async fn cancel_run(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<(StatusCode, Json<CancelResponse>), ApiError> {
    let Path(id) = id?;
    let outcome = runs::cancel(&state.db, id).await?;
    if outcome == Cancelled::Now {
        state.ctx.metrics.run_cancelled(&state.db, id).await;
    }
    state.ctx.tell_agents(None);
    Ok(match outcome {
        Cancelled::Now => (
            StatusCode::OK,
            Json(CancelResponse {
                id,
                status: "cancelled".into(),
            }),
        ),
        Cancelled::Requested => (
            StatusCode::ACCEPTED,
            Json(CancelResponse {
                id,
                status: "cancelling".into(),
            }),
        ),
    })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct LogQuery {
    /// Only this task's lines.
    pub task: Option<String>,
    /// Lines after this offset (the last `offset` seen).
    pub after: Option<i64>,
    /// At most this many lines (1 to 10000, default 1000).
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LogPage {
    pub lines: Vec<LogLine>,
    /// Pass as `after` to continue.
    pub next_offset: i64,
}

/// A run's log lines, oldest first.
#[utoipa::path(
    get, path = "/api/v1/runs/{id}/logs", tag = "runs",
    params(("id" = i64, Path, description = "Run id"), LogQuery),
    responses((status = 200, body = LogPage), (status = 404, description = "No such run"))
)]
async fn run_logs(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
    query: Result<Query<LogQuery>, QueryRejection>,
) -> Result<Json<LogPage>, ApiError> {
    let Path(id) = id?;
    let Query(query) = query?;
    let limit = query.limit.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit must be between 1 and 10000, not {limit}"
        )));
    }
    if runs::get(&state.db, id).await?.is_none() {
        return Err(ApiError::NotFound(format!("no run with id {id}")));
    }
    let after = query.after.unwrap_or(0);
    let lines = events::logs(&state.db, id, query.task.as_deref(), after, limit).await?;
    let next_offset = lines.last().map_or(after, |l| l.offset);
    Ok(Json(LogPage { lines, next_offset }))
}
