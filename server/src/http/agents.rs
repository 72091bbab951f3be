//! `/api/v1/agents` and `/api/v1/stats`: who can run work, and how the queue is doing.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::ApiError;
use crate::storage::agents;
use crate::storage::{now_ms, runs};
use xene_api::agents::{AgentList, Stats};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_agents))
        .routes(routes!(stats))
}

/// List agents with their labels, capacity, load and state.
#[utoipa::path(get, path = "/api/v1/agents", tag = "agents", responses((status = 200, body = AgentList)))]
async fn list_agents(State(state): State<AppState>) -> Result<Json<AgentList>, ApiError> {
    Ok(Json(AgentList {
        agents: agents::list(&state.db).await?,
    }))
}

/// The queue and the agents at a glance.
#[utoipa::path(get, path = "/api/v1/stats", tag = "agents", responses((status = 200, body = Stats)))]
async fn stats(State(state): State<AppState>) -> Result<Json<Stats>, ApiError> {
    Ok(Json(collect(&state).await?))
}

pub async fn collect(state: &AppState) -> Result<Stats, crate::storage::StorageError> {
    let by_status = runs::count_by_status(&state.db).await?;
    let count = |s: &str| by_status.get(s).copied().unwrap_or(0);
    let stuck_before = now_ms() - state.ctx.timings.pickup_timeout.as_millis() as i64;
    let mut agents_by_state =
        BTreeMap::from([("online".to_string(), 0), ("offline".to_string(), 0)]);
    for agent in agents::list(&state.db).await? {
        *agents_by_state.entry(agent.state.to_string()).or_default() += 1;
    }
    Ok(Stats {
        waiting_runs: count("queued"),
        stuck_runs: runs::count_waiting_since(&state.db, stuck_before).await?,
        running_runs: count("starting_up") + count("running") + count("shutting_down"),
        runs_by_status: by_status,
        agents_by_state,
    })
}
