//! `GET /api/v1/agents/connect`: the WebSocket remote agents hold, opened
//! with `Authorization: Bearer <credential>`.

use axum::Router;
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::{SinkExt, StreamExt};
use xene_core::protocol::{AgentMessage, ServerMessage};

use super::AppState;
use super::error::ApiError;
use super::guard::Remote;
use crate::gateway::session::{self, Outgoing};
use crate::storage::agents;
use crate::storage::auth::{self, AgentIdentity};

/// The largest message (and frame) an agent may send, refused from the
/// frame's header before its payload is read or parsed. An agent's batch of
/// events is at most 1 MiB as sent (one event alone may exceed that: an
/// event holds at most 64 KiB of output, under 400 KiB escaped), a hello at
/// most 1,024 running runs and 32 labels (tens of KiB). Agents of older
/// versions counted a batch's 1 MiB before JSON escaping, and a control
/// character escapes to six bytes: their batches reach about 6 MiB, which
/// must pass, or they would send the same batch again forever. Data larger
/// than a message (outputs a task reads, a fan-in's items) is for agents to
/// fetch in bounded pages, never to carry in one message.
pub const MAX_MESSAGE_BYTES: usize = 8 << 20;
/// tungstenite zero-fills its whole read buffer (128 KiB by default) on
/// every read, so each idle agent kept that much resident: most of the
/// server's memory per connection. Agents mostly send heartbeats; a big
/// batch of events grows the buffer for as long as it needs.
const READ_BUFFER_BYTES: usize = 8 << 10;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/agents/connect", get(connect))
}

async fn connect(
    State(state): State<AppState>,
    Remote(remote): Remote,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let credential = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::Unauthorized(
                "an agent credential is required (Authorization: Bearer ...)".into(),
            )
        })?;
    let identity = auth::authenticate(&state.db, credential.trim()).await?;
    // An agent's connection leaves the strangers' budget: a thousand agents
    // behind one address all connect.
    crate::listen::trust(&extensions);
    // Secrets travel only where nobody on the way can read them: over our
    // own TLS, on this machine, or from a TLS-ending proxy on this machine
    // (a proxy elsewhere leaves a plain hop between it and us).
    let local = remote
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.to_canonical().is_loopback());
    let secure_link = state.serves_tls || local;
    let upgrade = upgrade.map_err(|e| {
        ApiError::BadRequest(format!(
            "this endpoint takes a WebSocket: {}",
            e.body_text()
        ))
    })?;
    Ok(upgrade
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .read_buffer_size(READ_BUFFER_BYTES)
        .on_upgrade(move |socket| serve(state, identity, secure_link, socket))
        .into_response())
}

/// One agent's session, in a span naming the agent for everything it logs.
async fn serve(state: AppState, identity: AgentIdentity, secure_link: bool, socket: WebSocket) {
    let span = tracing::info_span!("agent_session", agent_id = %identity.id);
    tracing::Instrument::instrument(serve_in_span(state, identity, secure_link, socket), span).await
}

async fn serve_in_span(
    state: AppState,
    identity: AgentIdentity,
    secure_link: bool,
    socket: WebSocket,
) {
    let agent_id = identity.id.clone();
    let _connected = state.ctx.metrics.agent_connected("remote");
    tracing::info!("agent connected");
    let (sink, stream) = socket.split();
    let out = sink.with(|outgoing: Outgoing| async move {
        Ok::<_, axum::Error>(match outgoing {
            Outgoing::Message(message) => Message::Text(encode(&message).into()),
            Outgoing::Close(code, reason) => Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })),
        })
    });
    let incoming = stream
        .take_while(|frame| std::future::ready(!matches!(frame, Ok(Message::Close(_)))))
        .filter_map(|frame| {
            std::future::ready(match frame {
                // serde's message may quote the input: bounded for the log.
                Ok(Message::Text(text)) => Some(
                    serde_json::from_str::<AgentMessage>(text.as_str())
                        .map_err(|e| format!("malformed message: {}", session::clip(&e))),
                ),
                Ok(Message::Binary(_)) => {
                    Some(Err("binary frames are not part of the protocol".to_string()))
                }
                Ok(_) => None,
                Err(e) => Some(Err(session::clip(&e))),
            })
        });
    let (end, generation) = session::run(
        state.ctx.clone(),
        &state.gateway,
        identity,
        secure_link,
        Box::pin(out),
        Box::pin(incoming),
    )
    .await;
    state.ctx.metrics.agent_disconnected(end.kind());
    tracing::info!(reason = %session::clip(&end), "agent session ended");
    if let Some(generation) = generation
        && state.gateway.unregister(&agent_id, generation)
    {
        let _ = agents::set_offline(&state.db, &agent_id).await;
    }
}

fn encode(message: &ServerMessage) -> String {
    serde_json::to_string(message).expect("protocol messages serialize")
}
