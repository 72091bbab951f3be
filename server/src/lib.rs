//! The Xene server as a library, so tests and benchmarks run the real thing
//! in-process on a real socket.

use std::net::SocketAddr;

use anyhow::Context;
use std::sync::Arc;

use axum::serve::ListenerExt;
use leptos::prelude::LeptosOptions;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub mod config;
pub mod controllers;
pub mod gateway;
pub mod http;
pub mod metrics;
pub mod storage;
pub mod telemetry;
pub mod tls;

use config::Args;
use http::AppState;
use storage::Db;

/// A server bound to its socket, ready to serve.
pub struct Server {
    listener: TcpListener,
    state: AppState,
    local_agent: Option<controllers::local_agent::LocalAgentConfig>,
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl Server {
    /// Connects the database, applies migrations and binds the address.
    pub async fn bind(args: &Args) -> anyhow::Result<Self> {
        // Checked before anything else so a bad certificate fails fast.
        let tls = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(tls::server_config(
                cert,
                key,
                args.tls_client_ca.as_deref(),
            )?),
            (None, None) if args.tls_client_ca.is_none() => None,
            _ => anyhow::bail!(
                "--tls-cert and --tls-key go together (and --tls-client-ca needs them)"
            ),
        };
        let db = Db::connect(&args.database_url())
            .await
            .context("opening the database")?;
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
        let ctx = controllers::Context {
            db: db.clone(),
            instance: format!(
                "{}#{}@{}",
                args.local_agent_id(),
                std::process::id(),
                storage::now_ms()
            ),
            timings: controllers::Timings {
                run_lease: args.run_lease,
                pickup_timeout: args.pickup_timeout,
                ..Default::default()
            },
            metrics: Arc::default(),
            wake_scheduler: Arc::new(Notify::new()),
            wake_supervisor: Arc::new(Notify::new()),
            wake_agents: Arc::new(Notify::new()),
            agent_news: tokio::sync::broadcast::Sender::new(1024),
            shutdown: CancellationToken::new(),
        };
        let local_agent = (!args.no_local_agent).then(|| {
            controllers::local_agent::LocalAgentConfig::new(
                args.local_agent_id(),
                args.local_agent_capacity,
                args.local_agent_shell,
                controllers::local_agent::LocalAgentConfig::default_work_dir(),
            )
        });
        let state = AppState {
            db,
            leptos,
            ctx,
            gateway: Arc::default(),
            public_url: args.public_url.clone().unwrap_or_else(|| {
                let scheme = if tls.is_some() { "https" } else { "http" };
                format!("{scheme}://{addr}")
            }),
            agent_binary: args.agent_binary(),
        };
        Ok(Self {
            listener,
            state,
            local_agent,
            tls,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Shortens the controllers' timings (tests use this to see leases end quickly).
    pub fn set_timings(&mut self, timings: controllers::Timings) {
        self.state.ctx.timings = timings;
    }

    /// Serves and runs the controllers until `shutdown` resolves, then
    /// stops them and closes the database.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let ctx = self.state.ctx.clone();
        let mut controllers = vec![
            tokio::spawn(controllers::scheduler::run(ctx.clone())),
            tokio::spawn(controllers::supervisor::run(ctx.clone())),
        ];
        if let Some(config) = self.local_agent {
            controllers.push(tokio::spawn(controllers::local_agent::run(
                ctx.clone(),
                config,
            )));
        }
        let app = http::router(self.state);
        let stop = ctx.shutdown.clone();
        let result = match self.tls {
            Some(config) => {
                let serving = tokio::spawn(tls::serve(self.listener, config, app, stop.clone()));
                shutdown.await;
                stop.cancel();
                serving.await.map_err(anyhow::Error::from)
            }
            // Without TCP_NODELAY a small message written right after
            // another (a dispatch after an ack) waits for the peer's delayed
            // ACK: 40 ms on every back-to-back dispatch.
            None => axum::serve(
                self.listener.tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                }),
                app,
            )
            .with_graceful_shutdown(async move {
                shutdown.await;
                stop.cancel();
            })
            .await
            .map_err(anyhow::Error::from),
        };
        ctx.shutdown.cancel();
        for controller in controllers {
            let _ = controller.await;
        }
        ctx.db.close().await;
        result
    }
}

/// Runs the server until Ctrl-C or SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let server = Server::bind(&args).await?;
    tracing::info!(
        addr = %server.local_addr(),
        database = server.state.db.backend().name(),
        site = %server.state.leptos.site_root,
        "xene is listening on {}",
        server.state.public_url
    );
    server.serve(shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}
