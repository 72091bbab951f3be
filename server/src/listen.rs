//! The accept loop for plain HTTP and HTTPS alike: a bound on open
//! connections, a budget of unauthenticated connections per client address
//! (`guests`), deadlines for a request's headers (a client that sends them
//! a byte at a time is cut off) and for its body (`deadline`), the client's
//! address for handlers, and a graceful end.
//!
//! Deadlines end with the request: a WebSocket, once upgraded, and a long
//! response (a log, a feed) are not cut.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use clap::builder::TypedValueParser as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

mod busy;
mod deadline;
pub mod guests;

use busy::BusyBody;
pub use deadline::BodyTimeouts;
use deadline::{DeadlineBody, LongBody};
use guests::{Busy, Guests, Visit};

/// Open HTTP connections at most, counted from accept until the request
/// on them upgrades or the connection closes. An upgraded WebSocket (an
/// agent's, a browser's feed) gives its slot back: upgraded connections are
/// not bounded here (agents by their credentials, feeds by the sessions and
/// tokens that open them). Past it, new connections wait in the kernel's
/// backlog until one closes.
pub const MAX_CONNECTIONS: usize = 10_000;
/// A request's headers must arrive within this long (and so must the TLS
/// handshake): slow clients cannot hold connections open for nothing.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Connection limits. Hidden flags: the defaults suit every deployment;
/// tests shrink them to see them act.
#[derive(Debug, Clone, clap::Args)]
pub struct ListenArgs {
    /// Open connections at most.
    #[arg(long, env = "XENE_MAX_CONNECTIONS", default_value_t = MAX_CONNECTIONS, hide = true,
          value_parser = clap::value_parser!(u32).range(8..=1_000_000).map(|n| n as usize))]
    pub max_connections: usize,
    /// Unauthenticated connections one client address (an IPv6 /64) may
    /// hold; all of them together may hold three quarters of
    /// `max-connections`.
    #[arg(long, env = "XENE_GUEST_CONNECTIONS_PER_ADDRESS", default_value_t = 256, hide = true,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000).map(|n| n as usize))]
    pub guest_connections_per_address: usize,
    /// How long an unauthenticated request's body may take to arrive.
    #[arg(long, env = "XENE_GUEST_BODY_TIMEOUT", default_value = "15s", hide = true,
          value_parser = parse_timeout)]
    pub guest_body_timeout: Duration,
    /// How long an authenticated request's body may take to arrive.
    #[arg(long, env = "XENE_BODY_TIMEOUT", default_value = "60s", hide = true,
          value_parser = parse_timeout)]
    pub body_timeout: Duration,
    /// Addresses (comma-separated) of the reverse proxies in front of this
    /// server, like `127.0.0.1,::1` for a TLS-ending proxy on this machine.
    /// Every client of a proxy reaches Xene from the proxy's address, so
    /// connections from these addresses are exempt from the budget of
    /// unauthenticated connections per address (they still count in the
    /// total): the proxy must then limit connections per client itself.
    /// Default: none.
    #[arg(
        long,
        env = "XENE_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_name = "IP"
    )]
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

impl Default for ListenArgs {
    fn default() -> Self {
        Self {
            max_connections: MAX_CONNECTIONS,
            guest_connections_per_address: 256,
            guest_body_timeout: Duration::from_secs(15),
            body_timeout: Duration::from_secs(60),
            trusted_proxies: Vec::new(),
        }
    }
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    let timeout = xene_core::duration::parse(text).map_err(|e| e.to_string())?;
    if timeout < Duration::from_secs(1) {
        return Err("at least 1s".into());
    }
    Ok(timeout)
}

/// Marks the connection a request came on as authenticated: it leaves the
/// guests' budget and its bodies get the longer deadline. Called by
/// whatever checked the request's credential.
pub fn trust(extensions: &axum::http::Extensions) {
    if let Some(visit) = extensions.get::<Arc<Visit>>() {
        visit.trust();
    }
}

/// Gives this request's body alone the longer deadline of trusted
/// connections, for a credential that must not trust the connection.
pub fn allow_long_body(extensions: &axum::http::Extensions) {
    if let Some(long) = extensions.get::<Arc<LongBody>>() {
        long.allow();
    }
}

/// Serves `app` (over TLS with `tls`) until `shutdown`, then lets open
/// connections finish for up to 30 s.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: Router,
    limits: ListenArgs,
    shutdown: CancellationToken,
) {
    let acceptor = tls.map(TlsAcceptor::from);
    let connections = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let guests = Guests::new(guests::Limits {
        per_address: limits.guest_connections_per_address,
        total: limits.max_connections / 4 * 3,
        grace: guests::GRACE,
        busy_grace: guests::BUSY_GRACE,
        proxies: limits.trusted_proxies.clone(),
    });
    let timeouts = BodyTimeouts {
        guest: limits.guest_body_timeout,
        trusted: limits.body_timeout,
    };
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = shutdown.cancelled() => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let Some(visit) = guests.admit(peer.ip()) else {
            // Closed at once; debug only, as a flood would flood the log.
            tracing::debug!(%peer, "refused: the address holds its unauthenticated connections");
            continue;
        };
        let visit = Arc::new(visit);
        // Without TCP_NODELAY a small message written right after another
        // (a dispatch after an ack) waits for the peer's delayed ACK: 40 ms.
        let _ = tcp.set_nodelay(true);
        // Handlers and the audit log see the client's address; whatever
        // authenticates a request marks its connection trusted (`trust`).
        // A request is busy from when its body has arrived (or its answer
        // begins) until its answer has gone out.
        let on_request = visit.clone();
        let app = app.clone();
        let service = hyper::service::service_fn(
            move |req: axum::extract::Request<hyper::body::Incoming>| {
                let (mut parts, body) = req.into_parts();
                parts.extensions.insert(axum::extract::ConnectInfo(peer));
                parts.extensions.insert(on_request.clone());
                let long = Arc::new(LongBody::default());
                parts.extensions.insert(long.clone());
                let busy = Arc::new(Busy::new(on_request.clone()));
                let body = DeadlineBody::new(body, timeouts, busy.clone(), long);
                let request =
                    axum::extract::Request::from_parts(parts, axum::body::Body::new(body));
                let app = app.clone();
                async move {
                    let response = app.oneshot(request).await?;
                    Ok::<_, std::convert::Infallible>(
                        response.map(|body| axum::body::Body::new(BusyBody::new(body, busy))),
                    )
                }
            },
        );
        let shutdown = shutdown.clone();
        let acceptor = acceptor.clone();
        connections.spawn(async move {
            let _slot = slot;
            let evicted = visit.evicted.clone();
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            match acceptor {
                Some(acceptor) => {
                    let handshake = tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(tcp));
                    let tls = tokio::select! {
                        tls = handshake => match tls {
                            Ok(Ok(tls)) => tls,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => return,
                        },
                        _ = evicted.cancelled() => return,
                    };
                    let connection = http
                        .serve_connection(TokioIo::new(tls), service)
                        .with_upgrades();
                    drive(connection, &shutdown, &evicted).await;
                }
                None => {
                    let connection = http
                        .serve_connection(TokioIo::new(tcp), service)
                        .with_upgrades();
                    drive(connection, &shutdown, &evicted).await;
                }
            }
            // The visit leaves the guests' budget when its last holder (this
            // task, or a request still in flight) lets go.
            drop(visit);
        });
    }
    connections.close();
    let _ = tokio::time::timeout(Duration::from_secs(30), connections.wait()).await;
}

/// Runs a connection to its end; on shutdown, lets its request finish; when
/// evicted (a guest that gave way to a newcomer), closes it at once.
async fn drive<C>(connection: C, shutdown: &CancellationToken, evicted: &CancellationToken)
where
    C: std::future::Future + GracefulConnection,
{
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = evicted.cancelled() => {}
        _ = shutdown.cancelled() => {
            connection.as_mut().shutdown_gracefully();
            let _ = connection.await;
        }
    }
}

/// A connection that can be asked to finish its request and close.
trait GracefulConnection {
    fn shutdown_gracefully(self: std::pin::Pin<&mut Self>);
}

impl<I, S> GracefulConnection for hyper::server::conn::http1::UpgradeableConnection<I, S>
where
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn shutdown_gracefully(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}
