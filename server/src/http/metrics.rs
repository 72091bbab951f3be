//! `GET /metrics`: Prometheus text exposition.

use std::fmt::Write;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use super::AppState;
use super::error::ApiError;

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let stats = super::agents::collect(&state).await?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP xene_runs Runs by status.\n# TYPE xene_runs gauge"
    );
    for status in [
        "queued",
        "starting_up",
        "running",
        "success",
        "error",
        "cancelled",
        "shutting_down",
        "unknown",
    ] {
        let n = stats.runs_by_status.get(status).copied().unwrap_or(0);
        let _ = writeln!(out, "xene_runs{{status=\"{status}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP xene_runs_stuck Queued runs nobody picked up in time.\n# TYPE xene_runs_stuck gauge"
    );
    let _ = writeln!(out, "xene_runs_stuck {}", stats.stuck_runs);
    let _ = writeln!(
        out,
        "# HELP xene_agents Agents by state.\n# TYPE xene_agents gauge"
    );
    for (agent_state, n) in &stats.agents_by_state {
        let _ = writeln!(out, "xene_agents{{state=\"{agent_state}\"}} {n}");
    }
    state.ctx.metrics.render(&mut out);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out))
}
