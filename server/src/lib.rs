//! The Xene server as a library, so tests and benchmarks run the real thing
//! in-process on a real socket.

use std::net::SocketAddr;

use anyhow::Context;
use leptos::prelude::LeptosOptions;
use tokio::net::TcpListener;

pub mod config;
pub mod http;
pub mod storage;
pub mod telemetry;

use config::Args;
use http::AppState;
use storage::Db;

/// A server bound to its socket, ready to serve.
pub struct Server {
    listener: TcpListener,
    state: AppState,
}

impl Server {
    /// Connects the database, applies migrations and binds the address.
    pub async fn bind(args: &Args) -> anyhow::Result<Self> {
        let db = Db::connect(&args.database_url()).await.context("opening the database")?;
        let listener = TcpListener::bind(args.addr)
            .await
            .with_context(|| format!("cannot listen on {}", args.addr))?;
        let addr = listener.local_addr()?;
        let site_root = match args.site_dir() {
            Some(dir) => dir,
            None => {
                tracing::warn!(
                    "no web UI bundle found (build it with `cargo xtask site` or pass --site-dir); \
                     pages render but stay static"
                );
                // A directory that holds nothing, so no stray file is ever served.
                args.data_dir().join("no-site-bundle")
            }
        };
        let leptos = LeptosOptions::builder()
            .output_name(xene_app::BUNDLE_NAME)
            .site_root(site_root.display().to_string())
            .site_pkg_dir("pkg")
            .site_addr(addr)
            .build();
        Ok(Self { listener, state: AppState { db, leptos } })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves until `shutdown` resolves, then closes the database.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let db = self.state.db.clone();
        let app = http::router(self.state);
        axum::serve(self.listener, app).with_graceful_shutdown(shutdown).await?;
        db.close().await;
        Ok(())
    }
}

/// Runs the server until Ctrl-C or SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let server = Server::bind(&args).await?;
    tracing::info!(
        addr = %server.local_addr(),
        database = server.state.db.backend().name(),
        site = %server.state.leptos.site_root,
        "xene is listening on http://{}",
        server.local_addr()
    );
    server.serve(shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}
