//! Agents joining and leaving: join tokens, the one-time exchange of a token
//! for a credential, and revocation.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::ApiError;
use crate::access::Principal;
use crate::gateway::{Ending, limits};
use crate::storage::access::audit;
use crate::storage::{attempts, auth};
use xene_api::agents::{Credential, JoinRequest, JoinToken, JoinTokenRequest};

/// The longest a join token may live.
const MAX_TOKEN_TTL_MS: i64 = 30 * 24 * 3600 * 1000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_join_token))
        .routes(routes!(join))
        .routes(routes!(revoke_agent))
}

/// Create a one-time join token for an agent.
#[utoipa::path(
    post, path = "/api/v1/agents/join-tokens", tag = "agents",
    request_body(content = Option<JoinTokenRequest>, content_type = "application/json"),
    responses((status = 201, body = JoinToken), (status = 400, description = "Bad expiry, labels or capacity"))
)]
async fn create_join_token(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<JoinToken>), ApiError> {
    let body = body?;
    let request: JoinTokenRequest = super::json_body(&body)?;
    let ttl_ms = match &request.expires_in {
        None => 3600 * 1000,
        Some(text) => {
            let ttl = xene_core::duration::parse(text)
                .map_err(|e| ApiError::BadRequest(format!("expires_in: {e}")))?;
            ttl.as_millis() as i64
        }
    };
    if !(1..=MAX_TOKEN_TTL_MS).contains(&ttl_ms) {
        return Err(ApiError::BadRequest(
            "expires_in must be between 1ms and 30d".into(),
        ));
    }
    if let Some(labels) = &request.labels {
        limits::check_labels(labels).map_err(|e| ApiError::BadRequest(format!("labels: {e}")))?;
    }
    if let Some(capacity) = request.capacity
        && !(1..=limits::MAX_CAPACITY).contains(&capacity)
    {
        return Err(ApiError::BadRequest(format!(
            "capacity must be between 1 and {}",
            limits::MAX_CAPACITY
        )));
    }
    let fixed = auth::Fixed {
        // `{}` was how clients said "nothing more" before labels were fixed.
        labels: request.labels.filter(|l| !l.is_empty()),
        capacity: request.capacity,
    };
    let (token, expires_at) = auth::create_join_token(&state.db, &fixed, ttl_ms).await?;
    let labels =
        serde_json::json!({ "labels": fixed.labels, "capacity": fixed.capacity }).to_string();
    audit(
        &state.db,
        &principal.user_id,
        "join_token.create",
        "",
        &labels,
        &principal.remote,
    )
    .await?;
    let base = state.public_url.trim_end_matches('/');
    let (install_command, install_note) = if plain_http_beyond_loopback(base) {
        (
            None,
            Some(format!(
                "{base} is plain HTTP: serve HTTPS (--tls-cert, or --public-url https://... behind a TLS proxy) \
                 to get an install command, or copy xene-agent to the machine yourself and run \
                 XENE_JOIN_TOKEN=<token> xene-agent connect --server {base} --allow-insecure"
            )),
        )
    } else {
        (
            Some(format!(
                "curl -fsSL {base}/install.sh | XENE_JOIN_TOKEN={token} sh"
            )),
            None,
        )
    };
    Ok((
        StatusCode::CREATED,
        Json(JoinToken {
            token,
            expires_at,
            labels: fixed.labels,
            capacity: fixed.capacity,
            install_command,
            install_note,
        }),
    ))
}

/// Exchange a join token, once, for an agent credential.
#[utoipa::path(
    post, path = "/api/v1/agents/join", tag = "agents",
    request_body(content = JoinRequest, content_type = "application/json"),
    responses(
        (status = 201, body = Credential),
        (status = 400, description = "Malformed body"),
        (status = 401, description = "Token malformed, unknown, expired or already used"),
    )
)]
async fn join(
    State(state): State<AppState>,
    super::guard::Remote(remote): super::guard::Remote,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Credential>), ApiError> {
    let body = body?;
    let request: JoinRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("malformed JSON body: {e}")))?;
    let name = request.name.unwrap_or_default();
    if name.len() > 253 || name.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(
            "name must be at most 253 printable characters".into(),
        ));
    }
    let joined = auth::join(&state.db, &request.token, &name).await?;
    if name.is_empty() {
        sqlx::query("UPDATE agents SET name = id WHERE id = $1")
            .bind(&joined.agent_id)
            .execute(
                &mut *state
                    .db
                    .write_conn()
                    .await
                    .map_err(|e| ApiError::Internal(e.into()))?,
            )
            .await
            .map_err(|e| ApiError::Internal(e.into()))?;
    }
    tracing::info!(agent = %joined.agent_id, "an agent joined");
    let actor = format!("agent:{}", joined.agent_id);
    audit(
        &state.db,
        &actor,
        "agent.join",
        &joined.agent_id,
        &name,
        &remote,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(Credential {
            agent_id: joined.agent_id,
            credential: joined.credential,
        }),
    ))
}

/// Revoke an agent: its credential stops working and its connection closes at once.
#[utoipa::path(
    delete, path = "/api/v1/agents/{id}", tag = "agents",
    params(("id" = String, Path, description = "Agent id")),
    responses((status = 204, description = "Revoked"), (status = 404, description = "No such remote agent"))
)]
async fn revoke_agent(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(id) = id?;
    if !auth::revoke(&state.db, &id).await? {
        return Err(ApiError::NotFound(format!(
            "no remote agent with id {id:?}"
        )));
    }
    state.gateway.disconnect(&id, Ending::Revoked);
    // Its task attempts will not be reported on: deal with them now, not
    // when the leases end.
    attempts::end_leases_of(&state.db, &id).await?;
    tracing::info!(agent = %id, "agent revoked");
    audit(
        &state.db,
        &principal.user_id,
        "agent.revoke",
        &id,
        "",
        &principal.remote,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Whether `url` is `http://` to a host other than this machine.
fn plain_http_beyond_loopback(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    !loopback
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_plain_http_beyond_this_machine_is_insecure() {
        for (url, insecure) in [
            ("http://127.0.0.1:8080", false),
            ("http://localhost:8080", false),
            ("http://[::1]:8080", false),
            ("https://xene.example.com", false),
            ("http://xene.example.com", true),
            ("http://10.0.0.5:8080", true),
        ] {
            assert_eq!(super::plain_http_beyond_loopback(url), insecure, "{url}");
        }
    }
}
