//! The REST client: JSON over reqwest (rustls), WebSockets for the live
//! feeds, and the mapping of answers to exit codes.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use xene_api::error::ErrorBody;

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

/// An answer: its status and its body as the server sent it.
pub struct Answer {
    pub status: StatusCode,
    text: String,
}

impl Answer {
    /// The body as the xene-api type it is.
    pub fn read<T: DeserializeOwned>(&self) -> anyhow::Result<T> {
        serde_json::from_str(&self.text).map_err(|e| {
            fail(
                Exit::Failed,
                format!("the server's answer is not what xenectl reads: {e}"),
            )
        })
    }

    /// The body for `-o json|yaml`: as sent, every field included (JSON
    /// when it is JSON, else its text).
    pub fn json(&self) -> Value {
        if self.text.trim().is_empty() {
            return Value::Null;
        }
        serde_json::from_str(&self.text).unwrap_or_else(|_| Value::String(self.text.clone()))
    }
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
        if status.is_success() || accept.contains(&status) {
            return Ok(Answer { status, text });
        }
        Err(self.refused(status, &text))
    }

    /// `GET`, the body read as `T`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.answer(path).await?.read()
    }

    /// `GET`, the answer kept as sent (for `-o json|yaml`).
    pub async fn answer(&self, path: &str) -> anyhow::Result<Answer> {
        self.send(Method::GET, path, None, &[]).await
    }

    pub async fn post(&self, path: &str, body: &impl Serialize) -> anyhow::Result<Answer> {
        self.send(Method::POST, path, Some(Body::json(body)?), &[])
            .await
    }

    pub async fn put(&self, path: &str, body: &impl Serialize) -> anyhow::Result<Answer> {
        self.send(Method::PUT, path, Some(Body::json(body)?), &[])
            .await
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<()> {
        self.send(Method::DELETE, path, None, &[]).await?;
        Ok(())
    }

    /// `GET` a download: the answer with its body not yet read. The whole
    /// download has no deadline (a large one takes what it takes); each
    /// chunk of it is awaited at most a request's time (see [`next_chunk`]).
    pub async fn download(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        let response = self
            .request(Method::GET, path)
            .timeout(Duration::from_secs(7 * 24 * 3600))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.map_err(|e| self.unreachable(e))?;
        Err(self.refused(status, &text))
    }

    /// The next chunk of a download; `None` at its end.
    pub async fn next_chunk(
        &self,
        response: &mut reqwest::Response,
    ) -> anyhow::Result<Option<impl AsRef<[u8]> + use<>>> {
        match tokio::time::timeout(REQUEST_TIMEOUT, response.chunk()).await {
            Ok(chunk) => chunk.map_err(|e| self.unreachable(e)),
            Err(_) => Err(fail(
                Exit::Unreachable,
                format!(
                    "{} sent nothing for {} s: the download stopped",
                    self.base,
                    REQUEST_TIMEOUT.as_secs()
                ),
            )),
        }
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

    /// The error for a refusal: the server's `ErrorBody` when it sent one.
    fn refused(&self, status: StatusCode, text: &str) -> anyhow::Error {
        let body = serde_json::from_str::<ErrorBody>(text).ok();
        let message = body
            .as_ref()
            .map_or_else(|| status.to_string(), |b| b.error.clone());
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
                let faults = body.and_then(|b| b.message).unwrap_or_default();
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
                    .as_deref()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
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

impl Body {
    /// A request body of xene-api as JSON.
    pub fn json(body: &impl Serialize) -> anyhow::Result<Self> {
        Ok(Self::Json(
            serde_json::to_value(body).context("encoding the request")?,
        ))
    }
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
