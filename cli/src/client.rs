//! The REST client: JSON over reqwest (rustls), WebSockets for the live
//! feeds, and the mapping of answers to exit codes.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::config::Target;
use crate::error::{Exit, fail};

/// How many times a request answered "busy" (503 with `Retry-After`) is
/// sent again, and the longest wait honoured each time.
const BUSY_RETRIES: u32 = 5;
const BUSY_WAIT_MAX: Duration = Duration::from_secs(10);

/// How long a busy server asks to wait (`Retry-After` in seconds, 1 to 10),
/// or `None` when the answer is not "busy, try again".
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    if response.status() != StatusCode::SERVICE_UNAVAILABLE {
        return None;
    }
    let seconds: u64 = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds).clamp(Duration::from_secs(1), BUSY_WAIT_MAX))
}

/// The longest a single request may take; feeds are not requests.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Client {
    http: reqwest::Client,
    pub base: String,
    token: Option<String>,
}

/// An answer's body: JSON when it is JSON.
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl Client {
    pub fn new(target: &Target) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("xenectl/", env!("CARGO_PKG_VERSION")))
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            // A redirect could carry the token to another host.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            http,
            base: target.server.clone(),
            token: target.token.clone(),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let builder = self.http.request(method, self.url(path));
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    /// Sends and reads the answer; any 4xx or 5xx becomes an error with its
    /// exit code, unless `accept` takes it.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
        accept: &[StatusCode],
    ) -> anyhow::Result<Answer> {
        // A busy server (503 with Retry-After) did nothing: ask again a few
        // times, as long as it says.
        let mut retries = 0;
        let response = loop {
            let mut request = self.request(method.clone(), path);
            request = match &body {
                Some(Body::Json(v)) => request.json(v),
                Some(Body::Text(t)) => request
                    .header(reqwest::header::CONTENT_TYPE, "application/yaml")
                    .body(t.clone()),
                None => request,
            };
            let response = request.send().await.map_err(|e| self.unreachable(e))?;
            match retry_after(&response) {
                Some(wait) if retries < BUSY_RETRIES => {
                    retries += 1;
                    eprintln!(
                        "xenectl: the server is busy; asking again in {} s",
                        wait.as_secs()
                    );
                    tokio::time::sleep(wait).await;
                }
                _ => break response,
            }
        };
        let status = response.status();
        let text = response.text().await.map_err(|e| self.unreachable(e))?;
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status.is_success() || accept.contains(&status) {
            return Ok(Answer { status, body });
        }
        Err(self.refused(status, &body))
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        Ok(self.send(Method::GET, path, None, &[]).await?.body)
    }

    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        Ok(self
            .send(Method::POST, path, Some(Body::Json(body)), &[])
            .await?
            .body)
    }

    pub async fn put(&self, path: &str, body: Value) -> anyhow::Result<Answer> {
        self.send(Method::PUT, path, Some(Body::Json(body)), &[])
            .await
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<()> {
        self.send(Method::DELETE, path, None, &[]).await?;
        Ok(())
    }

    fn unreachable(&self, e: reqwest::Error) -> anyhow::Error {
        let mut cause = String::new();
        let mut source: Option<&dyn std::error::Error> = Some(&e);
        while let Some(s) = source {
            cause = s.to_string();
            source = s.source();
        }
        fail(
            Exit::Unreachable,
            format!("cannot reach {}: {cause}", self.base),
        )
    }

    fn refused(&self, status: StatusCode, body: &Value) -> anyhow::Error {
        let message = body
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| status.to_string());
        let (exit, message) = match status {
            StatusCode::UNAUTHORIZED if self.token.is_none() => (
                Exit::Auth,
                format!(
                    "{message} ({}: run `xenectl login --server {}`)",
                    self.base, self.base
                ),
            ),
            StatusCode::UNAUTHORIZED => (
                Exit::Auth,
                format!("{message}: the token was refused; run `xenectl login` again"),
            ),
            StatusCode::FORBIDDEN => (Exit::Auth, message),
            StatusCode::NOT_FOUND => (Exit::NotFound, message),
            StatusCode::UNPROCESSABLE_ENTITY => {
                let faults = body
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                (Exit::Usage, format!("{message}\n{faults}"))
            }
            s if s.is_client_error() => (Exit::Usage, message),
            _ => (Exit::Failed, format!("the server failed: {message}")),
        };
        fail(exit, message)
    }

    /// Opens a WebSocket feed at `path`, with the token in a header (never in
    /// the URL, where logs would keep it).
    pub async fn websocket(&self, path: &str) -> anyhow::Result<WebSocketStream<Box<dyn Io>>> {
        let url = self.url(path);
        let ws_url = if let Some(rest) = url.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = url.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            url.clone()
        };
        let mut request = ws_url.as_str().into_client_request()?;
        if let Some(token) = &self.token {
            request.headers_mut().insert(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {token}").parse()?,
            );
        }
        let host = crate::config::host_of(&self.base);
        let tls = url.starts_with("https://");
        let port = request
            .uri()
            .port_u16()
            .unwrap_or(if tls { 443 } else { 80 });
        let addr = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let tcp = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::net::TcpStream::connect(&addr),
        )
        .await
        .map_err(|_| {
            fail(
                Exit::Unreachable,
                format!("cannot reach {}: timed out", self.base),
            )
        })?
        .map_err(|e| {
            fail(
                Exit::Unreachable,
                format!("cannot reach {}: {e}", self.base),
            )
        })?;
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn Io> = if tls {
            let name = rustls::pki_types::ServerName::try_from(host.clone())
                .with_context(|| format!("bad host name {host:?}"))?;
            Box::new(tls_connector().connect(name, tcp).await.map_err(|e| {
                fail(
                    Exit::Unreachable,
                    format!("TLS with {} failed: {e}", self.base),
                )
            })?)
        } else {
            Box::new(tcp)
        };
        match tokio_tungstenite::client_async(request, stream).await {
            Ok((ws, _)) => Ok(ws),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                let body = response
                    .body()
                    .as_ref()
                    .and_then(|b| serde_json::from_slice(b).ok())
                    .unwrap_or(Value::Null);
                Err(self.refused(
                    StatusCode::from_u16(response.status().as_u16())
                        .unwrap_or(StatusCode::BAD_GATEWAY),
                    &body,
                ))
            }
            Err(e) => Err(fail(
                Exit::Unreachable,
                format!("cannot open the feed at {}: {e}", self.base),
            )),
        }
    }
}

pub enum Body {
    Json(Value),
    Text(String),
}

/// A connection the WebSocket runs over: plain TCP or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

fn tls_connector() -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Puts a value in a URL path or query.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
