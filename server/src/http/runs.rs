//! `/api/v1/runs`: list, inspect and cancel runs, and read their logs.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use xene_core::status::RunStatus;

use super::AppState;
use super::error::ApiError;
use crate::storage::runs::{self, Cancelled, RunFilter};
use crate::storage::{attempt_views, logs};
use xene_api::run::{CancelResponse, LogLine, LogPage, RunDetail, RunList};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_runs))
        .routes(routes!(get_run))
        .routes(routes!(cancel_run))
        .routes(routes!(run_logs))
        .routes(routes!(raw_step_log))
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
    if let Some(trigger) = &filter.trigger
        && !["manual", "webhook", "cron"].contains(&trigger.as_str())
    {
        return Err(ApiError::BadRequest(format!(
            "unknown trigger {trigger:?}: expected manual, webhook or cron"
        )));
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
    let (mut runs, next_cursor) = runs::list(&state.db, &filter).await?;
    attempt_views::fill_runs(&state.db, &mut runs).await?;
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
    axum::Extension(principal): axum::Extension<crate::access::Principal>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<(StatusCode, Json<CancelResponse>), ApiError> {
    let Path(id) = id?;
    let outcome = runs::cancel(&state.db, id).await?;
    super::audit::record(&state, &principal, "run.cancel", &format!("run {id}"), "").await;
    if outcome == Cancelled::Now {
        state.ctx.metrics.run_cancelled(&state.db, id).await;
    }
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
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    /// Only this task's lines.
    pub task: Option<String>,
    /// Only this step's lines (of `task`).
    pub step: Option<String>,
    /// Lines after this offset (the page's `next_offset`).
    pub after: Option<i64>,
    /// About this many lines at most (1 to 10000, default 1000): whole
    /// chunks are returned, at least one.
    pub limit: Option<i64>,
    /// At most this many bytes of log (1 to 8388608, default 1048576),
    /// again in whole chunks, at least one.
    pub max_bytes: Option<i64>,
}

/// A run's log lines, oldest first, a page bounded in lines and bytes.
#[utoipa::path(
    get, path = "/api/v1/runs/{id}/logs", tag = "runs",
    params(("id" = i64, Path, description = "Run id"), LogQuery),
    responses((status = 200, body = LogPage), (status = 400), (status = 404, description = "No such run"))
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
    let max_bytes = query.max_bytes.unwrap_or(1024 * 1024);
    if !(1..=logs::MAX_READ_BYTES).contains(&max_bytes) {
        return Err(ApiError::BadRequest(format!(
            "max_bytes must be between 1 and {}, not {max_bytes}",
            logs::MAX_READ_BYTES
        )));
    }
    if runs::get_run(&state.db, id).await?.is_none() {
        return Err(ApiError::NotFound(format!("no run with id {id}")));
    }
    let after = query.after.unwrap_or(0);
    let filter = logs::Filter {
        task: query.task.as_deref(),
        step: query.step.as_deref(),
        after,
        max_bytes,
    };
    let mut lines = Vec::new();
    let mut next_offset = after;
    for chunk in logs::chunks(&state.db, id, &filter).await? {
        if !lines.is_empty() && lines.len() as i64 + 1 > limit {
            break;
        }
        next_offset = chunk.cursor;
        for line in chunk
            .data
            .strip_suffix('\n')
            .unwrap_or(&chunk.data)
            .split('\n')
        {
            lines.push(LogLine {
                offset: chunk.cursor,
                attempt: chunk.attempt,
                task: chunk.task.clone(),
                step: chunk.step.clone(),
                stream: chunk.stream.clone(),
                data: line.to_string(),
                at: chunk.at,
            });
        }
    }
    Ok(Json(LogPage { lines, next_offset }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RawLogQuery {
    /// Which attempt of the task (default: the latest that logged).
    pub attempt: Option<i64>,
}

/// A step's whole log as plain text, streamed; a part dropped by the
/// per-step cap is marked where it was.
#[utoipa::path(
    get, path = "/api/v1/runs/{id}/logs/{task}/{step}", tag = "runs",
    params(
        ("id" = i64, Path, description = "Run id"),
        ("task" = String, Path, description = "Task name"),
        ("step" = String, Path, description = "Step name"),
        RawLogQuery
    ),
    responses((status = 200, content_type = "text/plain", body = String), (status = 404))
)]
async fn raw_step_log(
    State(state): State<AppState>,
    path: Result<Path<(i64, String, String)>, PathRejection>,
    query: Result<Query<RawLogQuery>, QueryRejection>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let Path((id, task, step)) = path?;
    let Query(query) = query?;
    let attempt = match query.attempt {
        Some(a) => Some(a),
        None => logs::latest_attempt(&state.db, id, &task, &step).await?,
    };
    let Some(attempt) = attempt else {
        return Err(ApiError::NotFound(format!(
            "no log for step {step:?} of task {task:?} in run {id}"
        )));
    };
    let db = state.db.clone();
    // Page by page, so a 100 MB log never sits in memory.
    let body = futures::stream::unfold(Some(0i64), move |from| {
        let db = db.clone();
        let (task, step) = (task.clone(), step.clone());
        async move {
            let from = from?;
            match logs::step_chunks(&db, id, attempt, &task, &step, from, 4 * 1024 * 1024).await {
                Ok(chunks) if chunks.is_empty() => None,
                Ok(chunks) => {
                    let mut out = String::new();
                    let mut at = from;
                    for chunk in chunks {
                        if chunk.offset > at && at > 0 {
                            out.push_str(&format!(
                                "[... {} bytes cut by the per-step log cap ...]\n",
                                chunk.offset - at
                            ));
                        }
                        at = chunk.offset + chunk.data.len() as i64;
                        out.push_str(&chunk.data);
                    }
                    Some((Ok::<_, std::io::Error>(out), Some(at)))
                }
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
            }
        }
    });
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "text/plain; charset=utf-8",
            ),
            (axum::http::header::CACHE_CONTROL, "no-store"),
        ],
        axum::body::Body::from_stream(body),
    )
        .into_response())
}
