//! `GET /metrics`: OpenMetrics text for Prometheus.

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let metrics = &state.ctx.metrics;
    metrics
        .refresh_from_db(&state.db, state.ctx.timings.pickup_timeout)
        .await;
    (
        [(
            header::CONTENT_TYPE,
            xene_agent::telemetry::OPENMETRICS_CONTENT_TYPE,
        )],
        metrics.render(),
    )
}
