//! Moving artifact bytes over HTTP: a blob (or one part of it) uploaded
//! from a range of a file, and a blob downloaded into a file while it is
//! hashed. The server only says where (`Transfer`s): a presigned URL of an
//! object store, or a signed server-relative URL of the local store, joined
//! to the server's base URL.
//!
//! Memory stays bounded whatever the size: bodies stream in chunks both
//! ways. No credential of the agent is ever sent (the URLs carry their own
//! signatures), and errors never show a URL's query (its signature).

use std::io::SeekFrom;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::StreamExt;
use reqwest::header::{CONTENT_LENGTH, ETAG, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, Method, Response, Url};
use rustls::ClientConfig;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufWriter};
use xene_core::artifact::Digest;
use xene_core::protocol::Transfer;

use super::transport::{Endpoint, TlsOptions, TransportError, is_loopback, store_tls_config};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A download that receives nothing for this long is dead. (reqwest's
/// read timeout is not used: it also runs while an upload's body is sent,
/// and would cut a large part on a slow link.)
const STALL: Duration = Duration::from_secs(60);
/// The slowest transfer tolerated: a transfer of N bytes may take
/// `SETTLE + N / MIN_RATE`, so a stalled one ends instead of hanging.
const MIN_RATE: u64 = 256 * 1024;
const SETTLE: Duration = Duration::from_secs(60);
/// A download whose size the response does not say.
const UNSIZED_DEADLINE: Duration = Duration::from_secs(3600);
/// The read size of an upload's file (each read is a blocking call).
const CHUNK: usize = 1024 * 1024;
/// The write buffer of a download.
const WRITE_BUFFER: usize = 1024 * 1024;
/// The most of an error response read to explain it.
const ERROR_BODY: usize = 4096;

/// HTTP for artifact transfers.
#[derive(Debug, Clone)]
pub struct BlobHttp {
    /// `http(s)://HOST:PORT[/PREFIX]`: server-relative URLs go after it.
    base: Url,
    base_path: String,
    /// To the server: exactly the WebSocket's TLS trust (CA file or pin,
    /// client certificate).
    server: Client,
    /// To an object store: the system's roots and the CA file. Made on
    /// first use: an agent of a local store never loads the system's
    /// roots for it.
    store: OnceLock<Result<Client, String>>,
    options: TlsOptions,
    allow_insecure: bool,
    stall: Duration,
}

impl BlobHttp {
    /// For the server at `endpoint`, whose WebSocket uses `server_tls`
    /// (when it is `https`).
    pub fn new(
        endpoint: &Endpoint,
        server_tls: Option<&Arc<ClientConfig>>,
        options: &TlsOptions,
        allow_insecure: bool,
    ) -> Result<Self, TransportError> {
        let scheme = if endpoint.tls { "https" } else { "http" };
        let base = format!("{scheme}://{}/", endpoint.authority());
        let base = Url::parse(&base)
            .map_err(|e| TransportError::Config(format!("server url {base:?}: {e}")))?;
        // A plain server is never reached over TLS.
        let server_tls = match server_tls {
            Some(tls) => tls.clone(),
            None => no_roots()?,
        };
        Ok(Self {
            base,
            base_path: endpoint.base_path.clone(),
            server: client(&server_tls)?,
            store: OnceLock::new(),
            options: options.clone(),
            allow_insecure,
            stall: STALL,
        })
    }

    #[cfg(test)]
    fn with_stall(mut self, stall: Duration) -> Self {
        self.stall = stall;
        self
    }

    fn store(&self) -> Result<&Client, String> {
        self.store
            .get_or_init(|| {
                let tls = store_tls_config(&self.options).map_err(|e| e.to_string())?;
                client(&tls).map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// PUTs `len` bytes of `file` from `offset`; returns the response's
    /// `ETag`, if any.
    pub async fn upload(
        &self,
        transfer: &Transfer,
        file: &Path,
        offset: u64,
        len: u64,
    ) -> Result<Option<String>, String> {
        let (client, url) = self.target(transfer, Method::PUT)?;
        let shown = format!("PUT {}", shown(&url));
        let mut source = tokio::fs::File::open(file)
            .await
            .map_err(|e| format!("{}: {e}", file.display()))?;
        let size = source
            .metadata()
            .await
            .map_err(|e| format!("{}: {e}", file.display()))?
            .len();
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(format!(
                "{}: {size} bytes, shorter than the {len} bytes at {offset} to upload",
                file.display()
            ));
        }
        source
            .seek(SeekFrom::Start(offset))
            .await
            .map_err(|e| format!("{}: {e}", file.display()))?;
        let mut headers = headers(transfer)?;
        headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
        let request = client
            .put(url)
            .headers(headers)
            .body(reqwest::Body::wrap_stream(file_range(source, len)));
        let send = async {
            let response = request.send().await.map_err(|e| failed(&shown, &e))?;
            let response = success(response, &shown).await?;
            Ok(response
                .headers()
                .get(ETAG)
                .and_then(|etag| etag.to_str().ok())
                .map(str::to_string))
        };
        tokio::time::timeout(deadline(len), send)
            .await
            .map_err(|_| format!("{shown}: timed out"))?
    }

    /// GETs a blob into `dest` (created or truncated), returning the
    /// SHA-256 of what was written. A failed download removes `dest`.
    pub async fn download(&self, transfer: &Transfer, dest: &Path) -> Result<Digest, String> {
        let (client, url) = self.target(transfer, Method::GET)?;
        let shown = format!("GET {}", shown(&url));
        let request = client.get(url).headers(headers(transfer)?);
        let response = tokio::time::timeout(SETTLE, async {
            let response = request.send().await.map_err(|e| failed(&shown, &e))?;
            success(response, &shown).await
        })
        .await
        .map_err(|_| format!("{shown}: timed out"))??;
        let limit = response.content_length().map_or(UNSIZED_DEADLINE, deadline);
        let written = tokio::time::timeout(limit, write_body(response, dest, &shown, self.stall))
            .await
            .unwrap_or_else(|_| Err(format!("{shown}: timed out")));
        if written.is_err() {
            let _ = tokio::fs::remove_file(dest).await;
        }
        written
    }

    /// The client and full URL of `transfer`, checked.
    fn target(&self, transfer: &Transfer, method: Method) -> Result<(&Client, Url), String> {
        if !transfer.method.eq_ignore_ascii_case(method.as_str()) {
            return Err(format!(
                "the server asked for {:?} where {method} was expected",
                transfer.method
            ));
        }
        let url = transfer.url.as_str();
        if url.starts_with('/') {
            // `//host/...` would name another host.
            if url.starts_with("//") || url.contains('\\') {
                return Err("the server sent an invalid relative url".into());
            }
            let joined = self
                .base
                .join(&format!("{}{url}", self.base_path))
                .map_err(|e| format!("the server sent an invalid relative url: {e}"))?;
            if joined.origin() != self.base.origin() {
                return Err("the server sent a relative url for another host".into());
            }
            return Ok((&self.server, joined));
        }
        let parsed = Url::parse(url).map_err(|e| format!("the server sent an invalid url: {e}"))?;
        let host = parsed.host_str().unwrap_or_default();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        match parsed.scheme() {
            "https" => {}
            "http" if self.allow_insecure || is_loopback(host) => {}
            "http" => {
                return Err(format!(
                    "refusing to move artifact bytes to {} without TLS: {host} is not this \
                     machine (the store needs https://, or the agent --allow-insecure)",
                    shown(&parsed)
                ));
            }
            other => return Err(format!("the server sent a url of scheme {other:?}")),
        }
        if host.is_empty() || !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(format!(
                "the server sent an invalid url: {}",
                shown(&parsed)
            ));
        }
        Ok((self.store()?, parsed))
    }
}

fn no_roots() -> Result<Arc<ClientConfig>, TransportError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TransportError::Config(format!("tls: {e}")))?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Direct connections, never through a proxy of the environment, as the
/// WebSocket's (a loopback store would otherwise go to the proxy too).
fn client(tls: &Arc<ClientConfig>) -> Result<Client, TransportError> {
    Client::builder()
        .use_preconfigured_tls(ClientConfig::clone(tls))
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_keepalive(Duration::from_secs(30))
        // A presigned URL is for one object: a redirect is not followed.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("xene-agent/", env!("CARGO_PKG_VERSION")))
        .no_proxy()
        .build()
        .map_err(|e| TransportError::Config(format!("http client: {e}")))
}

/// How long moving `len` bytes may take.
fn deadline(len: u64) -> Duration {
    SETTLE + Duration::from_secs(len / MIN_RATE)
}

/// The transfer's headers; the body's length is the agent's to say.
fn headers(transfer: &Transfer) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for (name, value) in &transfer.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("the server sent an invalid header name {name:?}"))?;
        if name == CONTENT_LENGTH {
            continue;
        }
        // Values may be signatures: not shown.
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("the server sent an invalid value for header {name}"))?;
        headers.insert(name, value);
    }
    Ok(headers)
}

/// `len` bytes of `file` from where it is, in chunks of [`CHUNK`].
fn file_range(
    file: tokio::fs::File,
    len: u64,
) -> impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static {
    futures::stream::try_unfold(file.take(len), |mut range| async move {
        let wanted = range.limit().min(CHUNK as u64) as usize;
        if wanted == 0 {
            return Ok(None);
        }
        let mut chunk = bytes::BytesMut::with_capacity(wanted);
        while chunk.len() < wanted {
            if range.read_buf(&mut chunk).await? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the file became shorter while it was uploaded",
                ));
            }
        }
        Ok(Some((chunk.freeze(), range)))
    })
}

/// Writes a response's body to `dest` chunk by chunk, hashing it; a body
/// that sends nothing for `stall` fails.
async fn write_body(
    response: Response,
    dest: &Path,
    shown: &str,
    stall: Duration,
) -> Result<Digest, String> {
    let file = tokio::fs::File::create(dest)
        .await
        .map_err(|e| format!("{}: {e}", dest.display()))?;
    let mut file = BufWriter::with_capacity(WRITE_BUFFER, file);
    let mut hasher = Sha256::new();
    let mut body = response.bytes_stream();
    loop {
        let chunk = match tokio::time::timeout(stall, body.next()).await {
            Ok(Some(chunk)) => chunk.map_err(|e| failed(shown, &e))?,
            Ok(None) => break,
            Err(_) => {
                return Err(format!(
                    "{shown}: nothing received for {} s",
                    stall.as_secs_f32()
                ));
            }
        };
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|e| format!("{}: {e}", dest.display()))?;
    }
    file.flush()
        .await
        .map_err(|e| format!("{}: {e}", dest.display()))?;
    Ok(Digest::from_sha256(&hasher.finalize().into()))
}

/// A 2xx response, else an error with the status and what the body says
/// (an object store's error code and message; else its first line).
async fn success(response: Response, shown: &str) -> Result<Response, String> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        body.extend_from_slice(&chunk[..chunk.len().min(ERROR_BODY - body.len())]);
        if body.len() >= ERROR_BODY {
            break;
        }
    }
    let reason = explain(&String::from_utf8_lossy(&body));
    let reason = if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    };
    Err(format!("{shown}: HTTP {status}{reason}"))
}

/// The gist of an error body: the server's JSON `error`, S3's `<Code>` and
/// `<Message>` (its other elements may repeat the request's signed parts),
/// else the first line.
fn explain(body: &str) -> String {
    if let Ok(serde_json::Value::Object(object)) = serde_json::from_str(body)
        && let Some(serde_json::Value::String(error)) = object.get("error")
    {
        return error
            .chars()
            .filter(|c| !c.is_control())
            .take(300)
            .collect();
    }
    let element = |name: &str| {
        let start = body.find(&format!("<{name}>"))? + name.len() + 2;
        let end = start + body[start..].find(&format!("</{name}>"))?;
        Some(body[start..end].trim().to_string())
    };
    let text = match (element("Code"), element("Message")) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code,
        _ if body.trim_start().starts_with('<') => String::new(),
        _ => body.lines().next().unwrap_or_default().trim().to_string(),
    };
    text.chars().filter(|c| !c.is_control()).take(300).collect()
}

fn failed(shown: &str, error: &reqwest::Error) -> String {
    let mut text = format!("{shown}: {}", strip_url(error));
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// reqwest's message without the URL it names (its query is a signature).
fn strip_url(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "timed out".into();
    }
    if error.is_connect() {
        return "cannot connect".into();
    }
    if error.is_body() || error.is_decode() {
        return "the transfer broke off".into();
    }
    "the request failed".into()
}

/// A URL as it may be shown: no query, no credentials.
fn shown(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    format!("{}://{host}{port}{}", url.scheme(), url.path())
}

#[cfg(test)]
mod tests;
