//! `GET /metrics`: OpenMetrics text for Prometheus.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = &state.metrics_token
        && !bearer_matches(&headers, token)
    {
        return super::error::ApiError::Unauthorized("/metrics needs its bearer token".into())
            .into_response();
    }
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
        .into_response()
}

/// Compared in constant time: the answer must not tell how much of a
/// guess was right.
fn bearer_matches(headers: &HeaderMap, token: &str) -> bool {
    use subtle::ConstantTimeEq;
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| bool::from(given.as_bytes().ct_eq(token.as_bytes())))
}
