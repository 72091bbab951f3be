//! The Xene server as a library, so tests and benchmarks run the real thing
//! in-process on a real socket.

use std::net::SocketAddr;

use std::sync::Arc;

use leptos::prelude::LeptosOptions;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub mod access;
pub mod choose;
pub mod config;
pub mod controllers;
pub mod data_dir;
pub mod files;
pub mod gateway;
pub mod http;
pub mod listen;
pub mod metrics;
pub mod settings;
pub mod storage;
pub mod telemetry;
pub mod tls;
pub mod vault;

use config::Args;
use http::AppState;
use storage::Db;

/// Why the server could not start, or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("--tls-cert and --tls-key go together (and --tls-client-ca needs them)")]
    TlsFlags,
    #[error("opening the database")]
    Database(#[source] storage::StorageError),
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the listener stopped")]
    Listener(#[source] tokio::task::JoinError),
    #[error("setting up sign-in and access")]
    Access(#[source] access::AccessError),
    #[error("opening the secrets store")]
    Secrets(#[source] storage::secrets::SecretsError),
    #[error(transparent)]
    DataDir(#[from] data_dir::DataDirError),
    #[error(transparent)]
    LocalAgent(controllers::local_agent::LocalAgentError),
    #[error("opening the artifact store")]
    Files(#[source] files::FilesError),
    #[error("reading --metrics-token-file {path}: {reason}")]
    MetricsToken {
        path: std::path::PathBuf,
        reason: String,
    },
}

/// A server bound to its socket, ready to serve.
pub struct Server {
    listener: TcpListener,
    state: AppState,
    local_agent: Option<controllers::local_agent::LocalAgentConfig>,
    tls: Option<Arc<rustls::ServerConfig>>,
    sign_in_link: Option<String>,
    log_retention: std::time::Duration,
    artifact_retention: std::time::Duration,
    limits: listen::ListenArgs,
}

/// The bearer token `/metrics` asks for: the file's first line, at least
/// 16 characters (a scraper's credential, not a password to remember).
fn read_metrics_token(path: &std::path::Path) -> Result<Arc<str>, ServerError> {
    let fail = |reason: String| ServerError::MetricsToken {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let token = text.lines().next().unwrap_or("").trim();
    if token.len() < 16 || token.len() > 4096 {
        return Err(fail(
            "the token must be 16 to 4096 characters on the first line".into(),
        ));
    }
    Ok(token.into())
}

impl Server {
    /// Connects the database, applies migrations and binds the address.
    pub async fn bind(args: &Args) -> Result<Self, ServerError> {
        let metrics_token = match &args.metrics_token_file {
            Some(path) => Some(read_metrics_token(path)?),
            None => None,
        };
        // Checked before anything else so a bad certificate fails fast.
        let tls = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(tls::server_config(
                cert,
                key,
                args.tls_client_ca.as_deref(),
            )?),
            (None, None) if args.tls_client_ca.is_none() => None,
            _ => return Err(ServerError::TlsFlags),
        };
        // Before anything is written in it: made private, or refused if open.
        let prepared = data_dir::prepare(&args.data_dir(), &args.database_url())?;
        let db = Db::connect(&args.database_url())
            .await
            .map_err(ServerError::Database)?
            .with_log_cap(args.log_cap_per_step)
            .with_handoff(args.task_lease)
            .with_quotas(args.artifacts.quotas());
        let vault = Arc::new(open_vault(&db, args).await.map_err(ServerError::Secrets)?);
        if prepared.database_was_open {
            // Whoever read it holds the signing key an older Xene kept in clear.
            storage::access::replace_plain_signing_key(&db, &vault)
                .await
                .map_err(ServerError::Secrets)?;
        }
        // After the signing key is known sealed (its URLs' key derives from it).
        let blobs = Arc::new(
            files::open(args, &db, &vault)
                .await
                .map_err(ServerError::Files)?,
        );
        // Pipelines stored before their trigger was: the list reads rows
        // only. Unfilled rows are still listed (by their trigger's kind).
        if let Err(e) = storage::workflows::backfill_triggers(&db).await {
            tracing::warn!(error = %e, "pipelines' triggers were not filled in");
        }
        let listen = |source| ServerError::Listen {
            addr: args.addr,
            source,
        };
        let listener = TcpListener::bind(args.addr).await.map_err(listen)?;
        let addr = listener.local_addr().map_err(listen)?;
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
            .output_name(xene_app::bundle_name(&site_root))
            .site_root(site_root.display().to_string())
            .site_pkg_dir("pkg")
            .site_addr(addr)
            .build();
        let mut ctx = controllers::Context {
            db: db.clone(),
            instance: format!(
                "{}#{}@{}",
                args.local_agent_id(),
                std::process::id(),
                storage::now_ms()
            ),
            timings: controllers::Timings {
                run_lease: args.task_lease,
                pickup_timeout: args.pickup_timeout,
                ..Default::default()
            },
            metrics: Arc::default(),
            shutdown: CancellationToken::new(),
            vault,
            specs: Arc::default(),
            public_url: Arc::from(""),
            blobs,
        };
        let local_agent = controllers::local_agent::configure(args)
            .await
            .map_err(ServerError::LocalAgent)?;
        let public_url = args.public_url.clone().unwrap_or_else(|| {
            let scheme = if tls.is_some() { "https" } else { "http" };
            format!("{scheme}://{addr}")
        });
        ctx.public_url = Arc::from(public_url.as_str());
        // Behind a proxy that ends TLS, the public URL says what browsers see.
        let https = tls.is_some() || public_url.starts_with("https://");
        let access = access::AccessState::new(&db, &ctx.vault, args, addr, &public_url, https)
            .await
            .map_err(ServerError::Access)?;
        let sign_in_link = access::bootstrap(&db, &access, &args.data_dir(), &public_url)
            .await
            .map_err(ServerError::Access)?;
        let state = AppState {
            db,
            leptos,
            ctx,
            gateway: Arc::default(),
            public_url,
            agent_binary: args.agent_binary(),
            access: Arc::new(access),
            serves_tls: tls.is_some(),
            metrics_token,
        };
        Ok(Self {
            listener,
            state,
            local_agent,
            tls,
            sign_in_link,
            log_retention: args.log_retention,
            artifact_retention: args.artifacts.artifact_retention,
            limits: args.listen.clone(),
        })
    }

    /// The one-time link that signs in the first admin, while there is none.
    pub fn sign_in_link(&self) -> Option<&str> {
        self.sign_in_link.as_deref()
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
    ) -> Result<(), ServerError> {
        let ctx = self.state.ctx.clone();
        let mut controllers = vec![
            tokio::spawn(controllers::scheduler::run(ctx.clone())),
            tokio::spawn(controllers::supervisor::run(ctx.clone())),
            tokio::spawn(controllers::readiness::run(ctx.clone())),
            tokio::spawn(controllers::cron::run(ctx.clone())),
        ];
        controllers.push(tokio::spawn(prune_sessions(ctx.clone())));
        controllers.push(tokio::spawn(flush_liveness(
            ctx.clone(),
            self.state.gateway.clone(),
        )));
        controllers.push(tokio::spawn(storage::logs::prune_forever(
            ctx.db.clone(),
            self.log_retention,
            ctx.shutdown.clone(),
        )));
        let stored = controllers::collector::StoredObjects {
            objects: ctx.blobs.objects().clone(),
            key: files::store::key,
            prefix: "blobs/sha256".into(),
            ordered: ctx.blobs.local_root().is_none(),
            temp_dir: (ctx.blobs.local_root()).map(|r| r.join(files::store::LOCAL_TEMP_DIR)),
        };
        controllers.push(tokio::spawn(controllers::collector::run(
            ctx.clone(),
            Arc::new(stored),
            self.artifact_retention,
        )));
        if let Some(config) = self.local_agent {
            controllers.push(tokio::spawn(controllers::local_agent::run(
                ctx.clone(),
                config,
            )));
        }
        let app = http::router(self.state);
        let stop = ctx.shutdown.clone();
        let serving = tokio::spawn(listen::serve(
            self.listener,
            self.tls,
            app,
            self.limits,
            stop.clone(),
        ));
        shutdown.await;
        stop.cancel();
        let result = serving.await.map_err(ServerError::Listener);
        ctx.shutdown.cancel();
        for controller in controllers {
            let _ = controller.await;
        }
        ctx.db.close().await;
        result
    }
}

/// A server serving on a task of the current runtime: how tests and
/// benchmarks run it in process. Dropping it stops the server.
pub struct Spawned {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The one-time link that signs in the first admin, while there is none.
    pub sign_in_link: Option<String>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<Result<(), ServerError>>>,
}

impl Server {
    /// Serves on a new task until the returned handle is stopped or dropped.
    pub fn spawn(self) -> Spawned {
        let addr = self.local_addr();
        let sign_in_link = self.sign_in_link.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let done = tokio::spawn(self.serve(async move {
            let _ = stopped.await;
        }));
        Spawned {
            addr,
            sign_in_link,
            stop: Some(stop),
            done: Some(done),
        }
    }
}

impl Spawned {
    /// Stops the server and waits until it has stopped its controllers and
    /// closed its database.
    pub async fn stop(mut self) -> Result<(), ServerError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.done.take() {
            Some(done) => done.await.map_err(ServerError::Listener)?,
            None => Ok(()),
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Loads the master keys of secrets and proves they are the database's. The
/// default key file is made only for a database that never had one, so a
/// lost file is reported, not silently replaced by a new key.
async fn open_vault(db: &Db, args: &Args) -> Result<vault::Vault, storage::secrets::SecretsError> {
    let (source, is_default) = args.secrets_key_source();
    let has_check = storage::secrets::has_key_check(db).await?;
    if let (vault::KeySource::File(path), true, true) = (&source, is_default, has_check)
        && !path.exists()
    {
        return Err(vault::VaultError::Lost(path.clone()).into());
    }
    let create = is_default && !has_check;
    let vault = vault::Vault::load(source, create)?;
    storage::secrets::check_key(db, &vault).await?;
    Ok(vault)
}

/// Runs the server until Ctrl-C or SIGTERM.
pub async fn run(args: Args) -> Result<(), ServerError> {
    let server = Server::bind(&args).await?;
    tracing::info!(
        addr = %server.local_addr(),
        database = server.state.db.backend().name(),
        site = %server.state.leptos.site_root,
        "xene is listening on {}",
        server.state.public_url
    );
    if let Some(link) = server.sign_in_link() {
        // On stderr and unadorned, so it can be copied from any terminal.
        eprintln!(
            "\n    No admin has signed in yet. Open this one-time link to sign in as the first admin:\n\n        {link}\n\n    The local admin token for xenectl is in {}\n",
            args.data_dir().join(access::LOCAL_TOKEN_FILE).display()
        );
    }
    server.serve(shutdown_signal()).await
}

/// Writes the agents' heartbeats in one statement per period (a run lease's
/// quarter, at most a second, so the scheduler never thinks a live agent
/// silent), and ends the sessions of agents revoked through any replica.
///
/// The same flush renews the leases of the task attempts those agents
/// hold, a statement per 500 agents.
///
/// Every few seconds it also looks, in one query for all agents, for task
/// attempts placed on an agent connected here that it has not started:
/// news of them was lost (a dropped notification) or the agent turned them
/// away when full. Their sessions are told to dispatch; idle agents cost
/// nothing.
async fn flush_liveness(ctx: controllers::Context, gateway: Arc<gateway::Gateway>) {
    let period = (ctx.timings.run_lease / 4).min(std::time::Duration::from_secs(1));
    let mut rounds = 0u32;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = ctx.shutdown.cancelled() => return,
        }
        rounds = rounds.wrapping_add(1);
        if rounds.is_multiple_of(5) && gateway.connected() > 0 {
            match storage::agents::with_unstarted_work(&ctx.db).await {
                Ok(agents) => {
                    for agent in agents.iter().filter(|a| gateway.is_connected(a)) {
                        ctx.db.news().remind_session(agent);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "looking for undelivered runs failed"),
            }
        }
        let lease_ms = ctx.timings.run_lease.as_millis() as i64;
        match storage::agents::flush_seen(&ctx.db, |id| gateway.is_connected(id), lease_ms).await {
            Ok(revoked) => {
                for agent in revoked {
                    gateway.disconnect(&agent, gateway::Ending::Revoked);
                }
            }
            Err(e) => tracing::warn!(error = %e, "writing agents' heartbeats failed"),
        }
    }
}

/// Expired browser sessions are deleted now and then; reads ignore them anyway.
async fn prune_sessions(ctx: controllers::Context) {
    let store = storage::sessions::DbSessionStore::new(ctx.db.clone());
    loop {
        if let Err(e) = store.delete_expired().await {
            tracing::warn!(error = %e, "pruning expired sessions failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(600)) => {}
            _ = ctx.shutdown.cancelled() => return,
        }
    }
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
