//! The agent's credential: read from `<state dir>/credential.json`, or got
//! once by trading the one-time join token at `POST /api/v1/agents/join`
//! and stored there (mode 0600) for every later start.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use serde::{Deserialize, Serialize};

use super::transport::{self, Endpoint, TransportError};

pub const CREDENTIAL_FILE: &str = "credential.json";

const JOIN_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    /// The server URL it was issued by: a credential for another server is
    /// not used.
    pub server: String,
    pub agent_id: String,
    pub credential: String,
}

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The server said no (bad, expired or used token): retrying cannot help.
    #[error("the server refused to join (HTTP {status}): {message}")]
    Refused { status: u16, message: String },
    /// Not reached, or a server error: may work on a later try.
    #[error("joining: {0}")]
    Failed(String),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl JoinError {
    fn file(path: &Path, source: std::io::Error) -> Self {
        Self::File {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The stored credential for `server`, if there is one.
pub fn load(state_dir: &Path, server: &str) -> Result<Option<Credential>, JoinError> {
    let path = state_dir.join(CREDENTIAL_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(JoinError::file(&path, e)),
    };
    let credential: Credential = serde_json::from_str(&text).map_err(|e| {
        JoinError::file(
            &path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        )
    })?;
    if credential.server.trim_end_matches('/') != server.trim_end_matches('/') {
        tracing::warn!(
            file = %path.display(),
            stored = credential.server,
            "the stored credential is for another server; joining anew"
        );
        return Ok(None);
    }
    Ok(Some(credential))
}

/// Writes the credential where only this user can read it: the directory
/// 0700, the file 0600, replaced atomically.
pub fn store(state_dir: &Path, credential: &Credential) -> Result<(), JoinError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
        .map_err(|e| JoinError::file(state_dir, e))?;
    let path = state_dir.join(CREDENTIAL_FILE);
    let temporary = state_dir.join(format!("{CREDENTIAL_FILE}.tmp"));
    let _ = std::fs::remove_file(&temporary);
    let json = serde_json::to_vec_pretty(credential).expect("a credential serializes");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(|e| JoinError::file(&temporary, e))?;
    file.write_all(&json)
        .and_then(|()| file.sync_all())
        .map_err(|e| JoinError::file(&temporary, e))?;
    std::fs::rename(&temporary, &path).map_err(|e| JoinError::file(&path, e))
}

#[derive(Serialize)]
struct JoinRequest<'a> {
    token: &'a str,
    name: &'a str,
}

#[derive(Deserialize)]
struct JoinResponse {
    agent_id: String,
    credential: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
}

/// Trades the join token for a credential.
pub async fn join(
    endpoint: &Endpoint,
    tls: Option<&Arc<ClientConfig>>,
    token: &str,
    name: &str,
) -> Result<Credential, JoinError> {
    let (status, body) = tokio::time::timeout(JOIN_TIMEOUT, post_join(endpoint, tls, token, name))
        .await
        .map_err(|_| JoinError::Failed("the server did not answer in time".into()))??;
    match status {
        200..=299 => {
            let response: JoinResponse = serde_json::from_slice(&body)
                .map_err(|e| JoinError::Failed(format!("unexpected answer: {e}")))?;
            Ok(Credential {
                server: endpoint.server.clone(),
                agent_id: response.agent_id,
                credential: response.credential,
            })
        }
        400..=499 => {
            let message = serde_json::from_slice::<ErrorBody>(&body).map_or_else(
                |_| String::from_utf8_lossy(&body).trim().to_string(),
                |b| b.error,
            );
            Err(JoinError::Refused { status, message })
        }
        _ => Err(JoinError::Failed(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&body).trim()
        ))),
    }
}

async fn post_join(
    endpoint: &Endpoint,
    tls: Option<&Arc<ClientConfig>>,
    token: &str,
    name: &str,
) -> Result<(u16, Bytes), JoinError> {
    let conn = transport::dial(endpoint, tls).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(conn))
        .await
        .map_err(|e| JoinError::Failed(e.to_string()))?;
    // Drives the connection while the request is in flight; it ends with it.
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "join connection");
        }
    });
    let body = serde_json::to_vec(&JoinRequest { token, name }).expect("serializes");
    let request = Request::post(endpoint.path("/api/v1/agents/join"))
        .header("host", endpoint.authority())
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| JoinError::Failed(e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| JoinError::Failed(e.to_string()))?;
    let status = response.status().as_u16();
    let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
        .collect()
        .await
        .map_err(|e| JoinError::Failed(format!("reading the answer: {e}")))?
        .to_bytes();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    #[test]
    fn credentials_are_private_and_per_server() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let credential = Credential {
            server: "https://ci.example.com".into(),
            agent_id: "a1".into(),
            credential: "secret".into(),
        };
        store(&state, &credential).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(&state.join(CREDENTIAL_FILE)), 0o600);
        assert_eq!(
            load(&state, "https://ci.example.com/").unwrap(),
            Some(credential)
        );
        assert_eq!(load(&state, "https://other.example.com").unwrap(), None);
        assert_eq!(load(&dir.path().join("none"), "https://x").unwrap(), None);
    }

    /// Answers one HTTP request with `status` and a JSON `body`, and returns
    /// the request.
    async fn serve_once(
        status: &'static str,
        body: &'static str,
    ) -> (Endpoint, tokio::task::JoinHandle<String>) {
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buffer = [0u8; 4096];
            // Headers, then the body by its length.
            loop {
                let n = socket.read(&mut buffer).await.unwrap();
                request.extend_from_slice(&buffer[..n]);
                let text = String::from_utf8_lossy(&request);
                if let Some(end) = text.find("\r\n\r\n") {
                    let length: usize = text
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    if request.len() >= end + 4 + length {
                        break;
                    }
                }
            }
            socket.write_all(response.as_bytes()).await.unwrap();
            socket.shutdown().await.unwrap();
            String::from_utf8(request).unwrap()
        });
        let endpoint = Endpoint::parse(&format!("http://127.0.0.1:{port}/"), false).unwrap();
        (endpoint, server)
    }

    #[tokio::test]
    async fn join_trades_the_token_for_a_credential() {
        let (endpoint, server) =
            serve_once("201 Created", r#"{"agent_id":"ag1","credential":"c-123"}"#).await;
        let credential = join(&endpoint, None, "tok", "box-1").await.unwrap();
        assert_eq!(
            credential,
            Credential {
                server: format!("http://127.0.0.1:{}", endpoint.port),
                agent_id: "ag1".into(),
                credential: "c-123".into(),
            }
        );
        let request = server.await.unwrap();
        assert!(
            request.starts_with("POST /api/v1/agents/join HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(
            request.ends_with(r#"{"token":"tok","name":"box-1"}"#),
            "{request}"
        );
    }

    #[tokio::test]
    async fn a_refused_token_is_reported_with_the_servers_reason() {
        let (endpoint, _server) =
            serve_once("401 Unauthorized", r#"{"error":"join token has expired"}"#).await;
        match join(&endpoint, None, "tok", "box-1").await {
            Err(JoinError::Refused { status, message }) => {
                assert_eq!(status, 401);
                assert_eq!(message, "join token has expired");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
}
