//! `GET /api/v1/dashboard`: the landing page's one read (see
//! `storage::dashboard` for what it costs).

use axum::Json;
use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use xene_api::dashboard::Dashboard;

use super::AppState;
use super::error::ApiError;
use crate::storage::{dashboard, now_ms};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(read_dashboard))
}

/// What needs a look now: runs running, queued and stuck (nobody picked
/// them up within the pick-up timeout), the latest failures, and the
/// agents online. Each list holds at most 10 runs, with the whole count.
#[utoipa::path(get, path = "/api/v1/dashboard", tag = "runs", responses((status = 200, body = Dashboard)))]
async fn read_dashboard(State(state): State<AppState>) -> Result<Json<Dashboard>, ApiError> {
    let stuck_before = now_ms() - state.ctx.timings.pickup_timeout.as_millis() as i64;
    Ok(Json(dashboard::read(&state.db, stuck_before).await?))
}
