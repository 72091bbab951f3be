//! `/api/v1/agents` and `/api/v1/stats`: who can run work, and how the queue is doing.

use std::collections::BTreeMap;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::ApiError;
use crate::access::Principal;
use crate::storage::access::audit;
use crate::storage::agents;
use crate::storage::{now_ms, runs};
use xene_api::agents::{Agent, AgentList, Stats};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_agents))
        .routes(routes!(drain_agent, undrain_agent))
        .routes(routes!(stats))
}

/// List agents with their labels, capacity, load, state, whether they
/// drain, and the tasks they hold now.
#[utoipa::path(get, path = "/api/v1/agents", tag = "agents", responses((status = 200, body = AgentList)))]
async fn list_agents(State(state): State<AppState>) -> Result<Json<AgentList>, ApiError> {
    Ok(Json(AgentList {
        agents: agents::list(&state.db).await?,
    }))
}

/// Drain an agent: it takes no new tasks and finishes those it holds
/// (tasks of a run kept on it by `placement: together` still go there).
/// Answers the agent as it is now; once it holds nothing, it is drained.
#[utoipa::path(
    post, path = "/api/v1/agents/{id}/drain", tag = "agents",
    params(("id" = String, Path, description = "Agent id")),
    responses((status = 200, description = "The agent as it is now", body = Agent), (status = 404, description = "No such agent"))
)]
async fn drain_agent(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Agent>, ApiError> {
    set_draining(&state, &principal, id, true).await
}

/// Take a drained (or draining) agent back into service.
#[utoipa::path(
    delete, path = "/api/v1/agents/{id}/drain", tag = "agents",
    params(("id" = String, Path, description = "Agent id")),
    responses((status = 200, description = "The agent as it is now", body = Agent), (status = 404, description = "No such agent"))
)]
async fn undrain_agent(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Agent>, ApiError> {
    set_draining(&state, &principal, id, false).await
}

async fn set_draining(
    state: &AppState,
    principal: &Principal,
    id: Result<Path<String>, PathRejection>,
    draining: bool,
) -> Result<Json<Agent>, ApiError> {
    let Path(id) = id?;
    let unknown = || ApiError::NotFound(format!("no agent with id {id:?}"));
    if !agents::set_draining(&state.db, &id, draining).await? {
        return Err(unknown());
    }
    let action = if draining {
        "agent.drain"
    } else {
        "agent.undrain"
    };
    tracing::info!(agent = %id, draining, "agent drain changed");
    audit(
        &state.db,
        &principal.user_id,
        action,
        &id,
        "",
        &principal.remote,
    )
    .await?;
    let agent = agents::list(&state.db)
        .await?
        .into_iter()
        .find(|a| a.id == id)
        .ok_or_else(unknown)?;
    Ok(Json(agent))
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
    for agent in agents::rows(&state.db).await? {
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
