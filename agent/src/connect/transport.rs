//! How the agent reaches the server: the URL rules (TLS unless the server is
//! on this machine or insecure is allowed), the rustls client config (a CA
//! file, a pinned certificate, or the system's roots; optional client
//! certificate), dialing, and the WebSocket as a typed message pair.
//!
//! One `ClientConfig` serves both the join request and the WebSocket, so
//! they trust exactly the same server.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::{Sink, SinkExt, Stream, StreamExt, future};
use hyper::Uri;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use xene_core::protocol::{AgentMessage, ServerMessage};

// Defined once, with the protocol, for the server and the agent.
pub use xene_core::protocol::{CLOSE_REPLACED, CLOSE_REVOKED, CLOSE_UNSUPPORTED_PROTOCOL};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Wrong settings: retrying cannot help.
    #[error("{0}")]
    Config(String),
    /// The server answered the upgrade with 401 or 403.
    #[error("the server refused this agent's credential (HTTP {0}): it was revoked or is invalid")]
    Unauthorized(u16),
    /// Anything that may work on a later try.
    #[error("{0}")]
    Failed(String),
}

/// How a connection failed, as the session sees it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The server closed with code 4001: the credential is revoked.
    #[error("the server revoked this agent's credential")]
    Revoked,
    /// The server closed with code 4000: it does not speak this agent's
    /// protocol. The server's reason says which it needs and how to get it.
    #[error("the server does not speak this agent's protocol: {0}")]
    Unsupported(String),
    #[error("{0}")]
    Lost(String),
}

/// The server's address, checked against the transport rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The URL as given, without a trailing slash; credentials are stored
    /// for it.
    pub server: String,
    pub tls: bool,
    /// Without the brackets of an IPv6 address.
    pub host: String,
    pub port: u16,
    /// The server's path prefix, `""` or like `/xene`.
    pub base_path: String,
}

impl Endpoint {
    /// Accepts `https://`/`wss://`, and `http://`/`ws://` only to a loopback
    /// host or with `allow_insecure`: a credential must not cross a network
    /// in the clear by accident.
    pub fn parse(server: &str, allow_insecure: bool) -> Result<Self, TransportError> {
        let server = server.trim().trim_end_matches('/').to_string();
        let uri: Uri = server
            .parse()
            .map_err(|e| TransportError::Config(format!("invalid server url {server:?}: {e}")))?;
        let tls = match uri.scheme_str() {
            Some("https" | "wss") => true,
            Some("http" | "ws") => false,
            _ => {
                return Err(TransportError::Config(format!(
                    "invalid server url {server:?}: expected https://HOST[:PORT] (or http:// to this machine)"
                )));
            }
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| TransportError::Config(format!("server url {server:?} has no host")))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if uri.query().is_some() {
            return Err(TransportError::Config(format!(
                "server url {server:?} must not have a query"
            )));
        }
        if !tls && !allow_insecure && !is_loopback(&host) {
            return Err(TransportError::Config(format!(
                "refusing to connect to {server} without TLS: {host} is not this machine; \
                 use https:// (or --allow-insecure on a trusted network)"
            )));
        }
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let base_path = uri.path().trim_end_matches('/').to_string();
        Ok(Self {
            server,
            tls,
            host,
            port,
            base_path,
        })
    }

    /// `host:port` as in a URL or a `Host` header.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    pub fn path(&self, path: &str) -> String {
        format!("{}{path}", self.base_path)
    }

    pub fn ws_url(&self, path: &str) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}{}", self.authority(), self.path(path))
    }
}

/// 127.0.0.0/8, ::1 and `localhost`.
pub fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whom the agent trusts, and how it proves itself.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// PEM file of the CA certificates to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// Trust exactly the server certificate with this SHA-256 (hex).
    pub server_cert_sha256: Option<String>,
    /// PEM certificate chain and key for mutual TLS.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

/// The rustls config (ring provider) for `options`.
pub fn tls_config(options: &TlsOptions) -> Result<Arc<ClientConfig>, TransportError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TransportError::Config(format!("tls: {e}")))?;
    let builder = match (&options.server_cert_sha256, &options.ca_file) {
        (Some(_), Some(_)) => {
            return Err(TransportError::Config(
                "--server-cert-sha256 and --ca-file exclude each other".into(),
            ));
        }
        (Some(pin), None) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedCert::new(pin, &provider)?)),
        (None, Some(file)) => {
            let mut roots = RootCertStore::empty();
            let certs = read_certs(file)?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(TransportError::Config(format!(
                    "{}: no usable CA certificate",
                    file.display()
                )));
            }
            builder.with_root_certificates(roots)
        }
        (None, None) => {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(TransportError::Config(
                    "no system CA certificates found: give --ca-file or --server-cert-sha256"
                        .into(),
                ));
            }
            builder.with_root_certificates(roots)
        }
    };
    let config = match (&options.client_cert, &options.client_key) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let chain = read_certs(cert)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| TransportError::Config(format!("{}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TransportError::Config(format!("client certificate: {e}")))?
        }
        _ => {
            return Err(TransportError::Config(
                "--client-cert and --client-key go together".into(),
            ));
        }
    };
    Ok(Arc::new(config))
}

/// The rustls config (ring provider) for an object store's presigned URLs
/// (another host than the server): the system's roots and the CA file's
/// certificates (a private store is often under the same private CA). A
/// pin names the server's own certificate and the client certificate
/// proves the agent to the server only, so neither applies here.
pub fn store_tls_config(options: &TlsOptions) -> Result<Arc<ClientConfig>, TransportError> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(file) = &options.ca_file {
        roots.add_parsable_certificates(read_certs(file)?);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TransportError::Config(format!("tls: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn read_certs(file: &PathBuf) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let certs = CertificateDer::pem_file_iter(file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TransportError::Config(format!("{}: {e}", file.display())))?;
    if certs.is_empty() {
        return Err(TransportError::Config(format!(
            "{}: no PEM certificate",
            file.display()
        )));
    }
    Ok(certs)
}

/// Trusts exactly one server certificate, by the SHA-256 of its DER bytes,
/// whatever its name, issuer or dates: the operator vouched for that very
/// certificate (typically self-signed). The handshake signatures are still
/// checked, so only the holder of its key gets through.
#[derive(Debug)]
pub struct PinnedCert {
    sha256: [u8; 32],
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedCert {
    pub fn new(hex: &str, provider: &CryptoProvider) -> Result<Self, TransportError> {
        let hex: String = hex
            .chars()
            .filter(|c| !matches!(c, ':' | ' '))
            .collect::<String>()
            .to_ascii_lowercase();
        let bad = || {
            TransportError::Config(format!(
                "--server-cert-sha256: expected 64 hex digits, got {hex:?}"
            ))
        };
        let mut sha256 = [0u8; 32];
        hex::decode_to_slice(&hex, &mut sha256).map_err(|_| bad())?;
        Ok(Self {
            sha256,
            algorithms: provider.signature_verification_algorithms,
        })
    }
}

/// The SHA-256 of a certificate's DER bytes, as hex.
pub fn cert_sha256(cert: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, cert))
}

impl ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let digest = ring::digest::digest(&ring::digest::SHA256, end_entity.as_ref());
        if digest.as_ref() == self.sha256 {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the server's certificate (sha256 {}) is not the pinned one",
                cert_sha256(end_entity.as_ref())
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A byte stream to the server, plain or TLS.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}
pub type Conn = Box<dyn Io>;

/// Opens a TCP connection to the server, with TLS when the endpoint says so.
pub async fn dial(
    endpoint: &Endpoint,
    tls: Option<&Arc<ClientConfig>>,
) -> Result<Conn, TransportError> {
    let address = endpoint.authority();
    let tcp = tokio::time::timeout(
        CONNECT_TIMEOUT,
        TcpStream::connect((endpoint.host.as_str(), endpoint.port)),
    )
    .await
    .map_err(|_| TransportError::Failed(format!("connecting to {address}: timed out")))?
    .map_err(|e| TransportError::Failed(format!("connecting to {address}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    keepalive(&tcp);
    if !endpoint.tls {
        return Ok(Box::new(tcp));
    }
    let config = tls.ok_or_else(|| TransportError::Config("tls is not configured".into()))?;
    let name = ServerName::try_from(endpoint.host.clone())
        .map_err(|e| TransportError::Config(format!("server name {:?}: {e}", endpoint.host)))?;
    let stream = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio_rustls::TlsConnector::from(config.clone()).connect(name, tcp),
    )
    .await
    .map_err(|_| TransportError::Failed(format!("tls handshake with {address}: timed out")))?
    .map_err(|e| TransportError::Failed(format!("tls handshake with {address}: {e}")))?;
    Ok(Box::new(stream))
}

/// A server that vanishes without closing (power loss, a dropped NAT
/// entry) must not leave the agent waiting forever on a dead connection.
fn keepalive(tcp: &TcpStream) {
    let socket = socket2::SockRef::from(tcp);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(30))
        .with_interval(Duration::from_secs(10))
        .with_retries(3);
    if let Err(e) = socket.set_tcp_keepalive(&keepalive) {
        tracing::debug!(error = %e, "cannot set tcp keepalive");
    }
    // Unacknowledged writes (heartbeats) to a dead peer end the connection.
    if let Err(e) = socket.set_tcp_user_timeout(Some(Duration::from_secs(60))) {
        tracing::debug!(error = %e, "cannot set tcp user timeout");
    }
}

pub type MessageSink = Box<dyn Sink<AgentMessage, Error = LinkError> + Send + Unpin>;
pub type MessageStream = Box<dyn Stream<Item = Result<ServerMessage, LinkError>> + Send + Unpin>;

/// Opens the agent WebSocket with `credential` and returns it as typed
/// messages.
pub async fn open(
    endpoint: &Endpoint,
    tls: Option<&Arc<ClientConfig>>,
    credential: &str,
) -> Result<(MessageSink, MessageStream), TransportError> {
    let url = endpoint.ws_url("/api/v1/agents/connect");
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| TransportError::Config(format!("{url}: {e}")))?;
    let bearer = format!("Bearer {credential}")
        .parse()
        .map_err(|_| TransportError::Config("the credential is not a valid header value".into()))?;
    request.headers_mut().insert("authorization", bearer);
    let conn = dial(endpoint, tls).await?;
    let (ws, _) = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio_tungstenite::client_async_with_config(request, conn, None),
    )
    .await
    .map_err(|_| TransportError::Failed(format!("{url}: websocket handshake timed out")))?
    .map_err(|e| match e {
        tungstenite::Error::Http(response) if matches!(response.status().as_u16(), 401 | 403) => {
            TransportError::Unauthorized(response.status().as_u16())
        }
        tungstenite::Error::Http(response) => {
            TransportError::Failed(format!("{url}: HTTP {}", response.status()))
        }
        e => TransportError::Failed(format!("{url}: {e}")),
    })?;
    Ok(typed(ws))
}

/// JSON text frames as protocol messages. Frames that are not messages this
/// agent knows are logged and skipped, so a newer server can add some.
pub fn typed(ws: WebSocketStream<Conn>) -> (MessageSink, MessageStream) {
    let (write, read) = ws.split();
    let sink = write
        .sink_map_err(|e| LinkError::Lost(format!("sending: {e}")))
        .with(|message: AgentMessage| {
            future::ready(
                serde_json::to_string(&message)
                    .map(Message::text)
                    .map_err(|e| LinkError::Lost(format!("encoding a message: {e}"))),
            )
        });
    let stream = read.filter_map(|frame| {
        future::ready(match frame {
            Ok(Message::Text(text)) => match serde_json::from_str::<ServerMessage>(&text) {
                Ok(message) => Some(Ok(message)),
                Err(e) => {
                    tracing::warn!(error = %e, "skipping a message this agent does not understand");
                    None
                }
            },
            Ok(Message::Close(Some(frame))) if frame.code == CloseCode::from(CLOSE_REVOKED) => {
                Some(Err(LinkError::Revoked))
            }
            Ok(Message::Close(Some(frame)))
                if frame.code == CloseCode::from(CLOSE_UNSUPPORTED_PROTOCOL) =>
            {
                Some(Err(LinkError::Unsupported(frame.reason.to_string())))
            }
            Ok(Message::Close(Some(frame))) if frame.code == CloseCode::from(CLOSE_REPLACED) => {
                Some(Err(LinkError::Lost(
                    "replaced by a newer connection with this agent's credential \
                     (is another agent running with the same state dir?)"
                        .into(),
                )))
            }
            Ok(Message::Close(frame)) => Some(Err(LinkError::Lost(match frame {
                Some(frame) if !frame.reason.is_empty() => {
                    format!("the server closed the connection: {}", frame.reason)
                }
                _ => "the server closed the connection".into(),
            }))),
            Ok(_) => None,
            Err(e) => Some(Err(LinkError::Lost(e.to_string()))),
        })
    });
    (Box::new(sink), Box::new(stream))
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;

    use super::*;

    #[test]
    fn plain_connections_only_stay_on_this_machine() {
        let refused = Endpoint::parse("http://ci.example.com", false).unwrap_err();
        assert!(refused.to_string().contains("without TLS"), "{refused}");
        assert!(Endpoint::parse("ws://10.0.0.5:8080", false).is_err());
        for local in [
            "http://localhost:8080",
            "ws://127.0.0.1",
            "http://127.9.9.9:1",
            "http://[::1]:8080/",
        ] {
            let endpoint = Endpoint::parse(local, false).unwrap();
            assert!(!endpoint.tls, "{local}");
        }
        let insecure = Endpoint::parse("http://ci.example.com", true).unwrap();
        assert_eq!(
            insecure.ws_url("/api/v1/agents/connect"),
            "ws://ci.example.com:80/api/v1/agents/connect"
        );
    }

    #[test]
    fn urls_keep_the_servers_prefix_and_ports() {
        let endpoint = Endpoint::parse("https://ci.example.com/xene/", false).unwrap();
        assert_eq!(endpoint.server, "https://ci.example.com/xene");
        assert_eq!(endpoint.port, 443);
        assert_eq!(
            endpoint.ws_url("/api/v1/agents/connect"),
            "wss://ci.example.com:443/xene/api/v1/agents/connect"
        );
        let v6 = Endpoint::parse("wss://[::1]:8443", false).unwrap();
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.authority(), "[::1]:8443");
        assert!(Endpoint::parse("ftp://ci.example.com", false).is_err());
        assert!(Endpoint::parse("ci.example.com", false).is_err());
    }

    #[test]
    fn pins_are_64_hex_digits() {
        let provider = rustls::crypto::ring::default_provider();
        let hex = "AB:".repeat(31) + "AB";
        assert!(PinnedCert::new(&hex, &provider).is_ok());
        assert!(PinnedCert::new("abcd", &provider).is_err());
        assert!(PinnedCert::new(&"zz".repeat(32), &provider).is_err());
    }

    struct TestCert {
        der: CertificateDer<'static>,
        key: PrivateKeyDer<'static>,
        pem: String,
        key_pem: String,
    }

    fn self_signed() -> TestCert {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        TestCert {
            der: certified.cert.der().clone(),
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
                certified.signing_key.serialize_der(),
            )),
            pem: certified.cert.pem(),
            key_pem: certified.signing_key.serialize_pem(),
        }
    }

    /// A TLS server on loopback with `cert` that runs `serve` on each
    /// connection it accepts.
    async fn tls_server<F, Fut>(cert: &TestCert, serve: F) -> u16
    where
        F: Fn(tokio_rustls::server::TlsStream<TcpStream>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der.clone()], cert.key.clone_key())
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    serve(tls).await;
                }
            }
        });
        port
    }

    fn endpoint(port: u16) -> Endpoint {
        Endpoint::parse(&format!("https://localhost:{port}"), false).unwrap()
    }

    fn pinned(cert: &[u8]) -> Arc<ClientConfig> {
        tls_config(&TlsOptions {
            server_cert_sha256: Some(cert_sha256(cert)),
            ..TlsOptions::default()
        })
        .unwrap()
    }

    #[tokio::test]
    async fn a_pin_accepts_exactly_its_certificate() {
        let cert = self_signed();
        let port = tls_server(&cert, |mut tls| async move {
            let _ = tls.write_all(b"hi").await;
            let _ = tls.shutdown().await;
        })
        .await;

        let mut conn = dial(&endpoint(port), Some(&pinned(&cert.der)))
            .await
            .unwrap();
        let mut greeting = String::new();
        conn.read_to_string(&mut greeting).await.unwrap();
        assert_eq!(greeting, "hi");

        let other = self_signed();
        let error = dial(&endpoint(port), Some(&pinned(&other.der)))
            .await
            .err()
            .expect("another certificate is refused");
        assert!(error.to_string().contains("not the pinned one"), "{error}");
    }

    #[tokio::test]
    async fn a_ca_file_is_trusted_and_only_it() {
        let cert = self_signed();
        let port = tls_server(&cert, |mut tls| async move {
            let _ = tls.write_all(b"hi").await;
            let _ = tls.shutdown().await;
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let trusted = dir.path().join("ca.pem");
        std::fs::write(&trusted, &cert.pem).unwrap();
        let config = tls_config(&TlsOptions {
            ca_file: Some(trusted),
            ..TlsOptions::default()
        })
        .unwrap();
        dial(&endpoint(port), Some(&config)).await.unwrap();

        let stranger = dir.path().join("other.pem");
        std::fs::write(&stranger, self_signed().pem).unwrap();
        let config = tls_config(&TlsOptions {
            ca_file: Some(stranger),
            ..TlsOptions::default()
        })
        .unwrap();
        assert!(dial(&endpoint(port), Some(&config)).await.is_err());
    }

    #[tokio::test]
    async fn a_client_certificate_gets_through_mutual_tls() {
        let server_cert = self_signed();
        let client = self_signed();
        let mut client_roots = RootCertStore::empty();
        client_roots.add(client.der.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(client_roots),
            provider.clone(),
        )
        .build()
        .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![server_cert.der.clone()], server_cert.key.clone_key())
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let _ = tls.write_all(b"hi").await;
                    let _ = tls.shutdown().await;
                }
            }
        });

        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("client.pem"), dir.path().join("client.key"));
        std::fs::write(&cert, &client.pem).unwrap();
        std::fs::write(&key, &client.key_pem).unwrap();
        let pin = Some(cert_sha256(&server_cert.der));
        let with_cert = tls_config(&TlsOptions {
            server_cert_sha256: pin.clone(),
            client_cert: Some(cert),
            client_key: Some(key),
            ..TlsOptions::default()
        })
        .unwrap();
        let mut conn = dial(&endpoint(port), Some(&with_cert)).await.unwrap();
        let mut greeting = String::new();
        conn.read_to_string(&mut greeting).await.unwrap();
        assert_eq!(greeting, "hi");

        // Without one, the server ends the handshake (with TLS 1.3 the
        // client may only learn it on its first read).
        let without = tls_config(&TlsOptions {
            server_cert_sha256: pin,
            ..TlsOptions::default()
        })
        .unwrap();
        let refused = match dial(&endpoint(port), Some(&without)).await {
            Err(_) => true,
            Ok(mut conn) => conn.read_to_string(&mut String::new()).await.is_err(),
        };
        assert!(refused);
    }

    #[tokio::test]
    async fn the_websocket_carries_the_credential_and_typed_messages() {
        let cert = self_signed();
        let (seen, mut authorization) = tokio::sync::mpsc::unbounded_channel();
        let port = tls_server(&cert, move |tls| {
            let seen = seen.clone();
            async move {
                // The error type is tungstenite's, not ours.
                #[allow(clippy::result_large_err)]
                let callback = |request: &Request, response: Response| {
                    let header = request.headers().get("authorization").cloned();
                    let _ = seen.send((request.uri().path().to_string(), header));
                    Ok(response)
                };
                let mut ws = tokio_tungstenite::accept_hdr_async(tls, callback)
                    .await
                    .unwrap();
                let Some(Ok(Message::Text(hello))) = ws.next().await else {
                    panic!("a text frame first");
                };
                assert!(hello.starts_with(r#"{"type":"hello""#), "{hello}");
                let welcome = ServerMessage::Welcome {
                    agent_id: "a1".into(),
                    heartbeat_ms: 1000,
                };
                ws.send(Message::text(serde_json::to_string(&welcome).unwrap()))
                    .await
                    .unwrap();
                ws.send(Message::text(r#"{"type":"from_the_future"}"#))
                    .await
                    .unwrap();
                ws.send(Message::Close(Some(CloseFrame {
                    code: CloseCode::from(CLOSE_REVOKED),
                    reason: "revoked".into(),
                })))
                .await
                .unwrap();
            }
        })
        .await;

        let (mut sink, mut stream) = open(&endpoint(port), Some(&pinned(&cert.der)), "cred-1")
            .await
            .unwrap();
        let (path, header) = authorization.recv().await.unwrap();
        assert_eq!(path, "/api/v1/agents/connect");
        assert_eq!(header.unwrap(), "Bearer cred-1");
        let hello = AgentMessage::Hello {
            protocol: xene_core::protocol::PROTOCOL_VERSION,
            agent_version: "test".into(),
            labels: Default::default(),
            runtimes: vec!["docker".into()],
            capacity: 1,
            attempts: vec![],
        };
        sink.send(hello).await.unwrap();
        assert!(matches!(
            stream.next().await,
            Some(Ok(ServerMessage::Welcome { .. }))
        ));
        // The unknown message is skipped; the close says revoked.
        assert_eq!(stream.next().await, Some(Err(LinkError::Revoked)));
    }

    #[tokio::test]
    async fn an_unauthorized_upgrade_is_told_apart() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut buffer = [0u8; 4096];
            let _ = tcp.read(&mut buffer).await;
            let _ = tcp
                .write_all(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n")
                .await;
        });
        let endpoint = Endpoint::parse(&format!("http://127.0.0.1:{port}"), false).unwrap();
        match open(&endpoint, None, "old").await {
            Err(TransportError::Unauthorized(401)) => {}
            Err(e) => panic!("expected unauthorized, got {e}"),
            Ok(_) => panic!("expected unauthorized, got a connection"),
        }
    }
}
