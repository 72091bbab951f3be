//! An in-test TCP relay that can cut a network path: an agent dials the
//! relay instead of the server, and the test cuts and heals the link
//! without Docker (the long soak cuts containers' networks for real).
//!
//! A cut is a black hole, as a lost route is: nothing is forwarded either
//! way and nothing is closed, so neither end hears of it until its own
//! timeouts (the agent's, the server's lease). Connections made during the
//! cut are accepted and never forwarded. Healing closes every connection
//! the cut held (after a partition longer than the lease both ends have
//! given up on them) and forwards new ones again.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct Relay {
    /// Where the agent dials: `http://127.0.0.1:PORT`.
    pub url: String,
    cut: Arc<watch::Sender<bool>>,
    accept: JoinHandle<()>,
}

impl Relay {
    /// Relays connections to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let cut = Arc::new(watch::channel(false).0);
        let upstream = upstream.to_string();
        let state = cut.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relay(client, upstream.clone(), state.subscribe()));
            }
        });
        Self {
            url: format!("http://{addr}"),
            cut,
            accept,
        }
    }

    /// From now on nothing passes, in either direction.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Closes what the cut held; new connections pass again.
    pub fn heal(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        // Held connections end when their wait sees the sender gone.
    }
}

async fn relay(mut client: TcpStream, upstream: String, mut cut: watch::Receiver<bool>) {
    if *cut.borrow_and_update() {
        // Dialled during the cut: never forwarded, closed at the heal.
        let _ = cut.wait_for(|cut| !*cut).await;
        return;
    }
    let Ok(mut server) = TcpStream::connect(&upstream).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => return,
        _ = cut.wait_for(|cut| *cut) => {}
    }
    // The copy is dropped: nothing moves, both sockets stay open, until
    // the heal closes them.
    let _ = cut.wait_for(|cut| !*cut).await;
    drop((client, server));
}
