//! A bare WebSocket client that plays an agent's side of the protocol
//! message by message, for the gateway's tests.

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use xene_core::protocol::{
    AgentMessage, AttemptRef, PROTOCOL_VERSION, ServerMessage, TaskDispatch,
};

use crate::util::TestServer;

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn join(server: &TestServer, labels: Value) -> (String, String) {
    join_with(server, json!({ "labels": labels })).await
}

/// Joins with a token made from `request` (the join-token API's body).
pub async fn join_with(server: &TestServer, request: Value) -> (String, String) {
    let (status, token) = server
        .post("/api/v1/agents/join-tokens", request.to_string())
        .await;
    assert_eq!(status, 201, "{token}");
    let token = token["token"].as_str().unwrap().to_string();
    let (status, joined) = server
        .post(
            "/api/v1/agents/join",
            json!({ "token": token, "name": "test-agent" }).to_string(),
        )
        .await;
    assert_eq!(status, 201, "{joined}");
    (
        joined["agent_id"].as_str().unwrap().to_string(),
        joined["credential"].as_str().unwrap().to_string(),
    )
}

pub async fn dial(
    server: &TestServer,
    credential: &str,
) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
    let mut request = format!("ws://{}/api/v1/agents/connect", server.addr)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "Authorization",
        format!("Bearer {credential}").parse().unwrap(),
    );
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(socket, _)| socket)
}

pub async fn send(socket: &mut Socket, message: &AgentMessage) {
    socket
        .send(Message::text(serde_json::to_string(message).unwrap()))
        .await
        .unwrap();
}

/// The next protocol message, skipping pings; `None` when the server closed.
pub async fn receive(socket: &mut Socket) -> Result<ServerMessage, Option<(CloseCode, String)>> {
    loop {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(20), socket.next())
            .await
            .expect("the server answers within 20 s");
        match frame {
            Some(Ok(Message::Text(text))) => {
                return Ok(serde_json::from_str(text.as_str()).unwrap());
            }
            Some(Ok(Message::Close(frame))) => {
                return Err(frame.map(|f| (f.code, f.reason.to_string())));
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Err(None),
        }
    }
}

/// A protocol-2 hello of an agent with capacity 2 that still holds
/// `attempts` from before.
pub fn hello(attempts: Vec<AttemptRef>) -> AgentMessage {
    hello_with(2, attempts)
}

pub fn hello_with(capacity: u32, attempts: Vec<AttemptRef>) -> AgentMessage {
    AgentMessage::Hello {
        protocol: PROTOCOL_VERSION,
        agent_version: "test".into(),
        labels: [("os".to_string(), "plan9".to_string())].into(),
        runtimes: vec!["shell".into()],
        capacity,
        attempts,
    }
}

/// Dials, says hello, and reads the welcome.
pub async fn connect(server: &TestServer, credential: &str, hello: &AgentMessage) -> Socket {
    let mut socket = dial(server, credential).await.unwrap();
    send(&mut socket, hello).await;
    match receive(&mut socket).await {
        Ok(ServerMessage::Welcome { .. }) => socket,
        other => panic!("no welcome: {other:?}"),
    }
}

/// The next task dispatch, passing over pongs; panics on anything else.
pub async fn next_task(socket: &mut Socket) -> TaskDispatch {
    loop {
        match receive(socket).await {
            Ok(ServerMessage::TaskDispatch(dispatch)) => return *dispatch,
            Ok(ServerMessage::Pong) => continue,
            other => panic!("expected a task dispatch, got {other:?}"),
        }
    }
}

/// A heartbeat holding `attempts`.
pub fn heartbeat(attempts: Vec<AttemptRef>) -> AgentMessage {
    AgentMessage::Heartbeat { attempts }
}
