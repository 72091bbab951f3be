//! The database: SQLite (embedded default) or PostgreSQL, behind one pool.
//!
//! Queries are built at run time through sqlx's `Any` driver so one code path
//! serves both backends. The rules that keep SQL portable: placeholders are
//! `$1, $2, ...` (sqlx maps them on SQLite too), times are UTC milliseconds in
//! BIGINT columns, ids are TEXT. Migrations are per backend, kept in step.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, ConnectOptions, Executor};

pub mod access;
pub mod agents;
pub mod approvals;
pub mod artifacts;
pub mod attempt_caches;
pub mod attempt_views;
pub mod attempts;
pub mod auth;
pub mod caches;
pub mod changes;
pub mod cron;
pub mod dashboard;
pub mod events;
pub mod hooks;
pub mod leases;
pub mod logs;
pub mod news;
pub mod placement;
pub mod readiness;
pub mod retention;
pub mod rotation;
pub mod run_secrets;
pub mod runs;
pub mod secrets;
pub mod sessions;
pub mod specs;
pub mod workflows;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
    #[error("cannot create the database directory {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("cannot apply database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
}

/// A person from a `LEFT JOIN users`' name and email: none where no user
/// matched (an agent, `anonymous`, a user since removed).
pub fn person(name: Option<String>, email: Option<String>) -> Option<xene_api::access::Person> {
    match (name, email) {
        (None, None) => None,
        (name, email) => Some(xene_api::access::Person {
            name: name.unwrap_or_default(),
            email: email.unwrap_or_default(),
        }),
    }
}

/// Wall-clock time as stored: UTC milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub use news::{ALL_AGENTS, Change, News};

/// The model of the runs created from now on: 1, the run goes to one agent
/// which walks its DAG; 2, the server places its tasks one by one
/// (`task_attempts`). New runs are of model 2; runs of model 1 from before
/// are converted (`runs::convert_queued`). Tests may choose per database
/// with `Db::with_run_model`.
pub const RUN_MODEL: i64 = 2;

/// The server's database handle; cheap to clone.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    /// Who must look again (see `news`).
    news: std::sync::Arc<News>,
    /// Agents heard from since the last `agents::flush_seen`: their
    /// heartbeats are written in one statement per period, not one each.
    seen: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    log_cap: i64,
    /// The lease of an attempt placed where a task just freed its slot
    /// (`attempts::hand_off`); none: freed slots wait for the scheduler.
    handoff_lease_ms: Option<i64>,
    /// SQLite has one writer at a time: write transactions take turns here,
    /// first come first served, instead of polling SQLite's lock with
    /// sleeps (which let a hundred busy runs starve each other for 700 ms).
    write_turn: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// How the write turn was used, for the metrics: the hot path's cost is
    /// mostly how long transactions hold it.
    turns: std::sync::Arc<TurnStats>,
    /// The model of new runs (see `RUN_MODEL`).
    run_model: i64,
    /// What each workflow may keep (`--cache-quota`, `--artifact-quota`).
    quotas: caches::Quotas,
}

/// A write transaction (from `Db::begin_write`). It reads as the
/// connection, like sqlx's own (`&mut *tx`); on SQLite it holds the
/// process's write turn until it commits, rolls back or is dropped.
pub struct WriteTx {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    _turn: Option<Turn>,
}

/// Counts of the SQLite write turn since the process started.
#[derive(Debug, Default)]
pub struct TurnStats {
    taken: std::sync::atomic::AtomicU64,
    waited_us: std::sync::atomic::AtomicU64,
    held_us: std::sync::atomic::AtomicU64,
}

/// What `TurnStats` says: turns taken, and the seconds spent waiting for
/// and holding them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TurnFigures {
    pub taken: u64,
    pub waited_secs: f64,
    pub held_secs: f64,
}

impl TurnStats {
    pub fn figures(&self) -> TurnFigures {
        use std::sync::atomic::Ordering::Relaxed;
        TurnFigures {
            taken: self.taken.load(Relaxed),
            waited_secs: self.waited_us.load(Relaxed) as f64 / 1e6,
            held_secs: self.held_us.load(Relaxed) as f64 / 1e6,
        }
    }
}

/// The write turn, held: its time is counted when it is given back.
struct Turn {
    _guard: tokio::sync::OwnedMutexGuard<()>,
    since: std::time::Instant,
    stats: std::sync::Arc<TurnStats>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        let held = u64::try_from(self.since.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.stats
            .held_us
            .fetch_add(held, std::sync::atomic::Ordering::Relaxed);
    }
}

impl WriteTx {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        let Self { tx, _turn } = self;
        tx.commit().await
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        let Self { tx, _turn } = self;
        tx.rollback().await
    }
}

/// A connection for one write statement outside a transaction; on SQLite it
/// waits for its turn like `WriteTx`, so a lease renewal is never starved by
/// a stream of transactions handing the lock to each other.
pub struct WriteConn {
    conn: sqlx::pool::PoolConnection<sqlx::Any>,
    _turn: Option<Turn>,
}

impl std::ops::Deref for WriteConn {
    type Target = sqlx::AnyConnection;

    fn deref(&self) -> &Self::Target {
        &self.conn
    }
}

impl std::ops::DerefMut for WriteConn {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.conn
    }
}

impl std::ops::Deref for WriteTx {
    type Target = sqlx::AnyConnection;

    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

impl Db {
    /// Connects, creating a SQLite file and its directory when missing, and
    /// applies the migrations of the backend.
    pub async fn connect(url: &str) -> Result<Self, StorageError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StorageError::UnsupportedUrl(redact(url)));
        };
        if backend == Backend::Sqlite {
            create_sqlite_dir(url)?;
        }
        let options = AnyConnectOptions::from_str(url)
            .map_err(StorageError::Connect)?
            .log_statements(tracing::log::LevelFilter::Trace)
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_millis(500));
        let mut pool_options = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 8 } else { 16 })
            .acquire_timeout(Duration::from_secs(10));
        if backend == Backend::Sqlite {
            // WAL lets readers proceed while a writer commits; the busy timeout
            // makes concurrent writers wait instead of failing at once.
            pool_options = pool_options.after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;")
                        .await?;
                    Ok(())
                })
            });
        }
        let pool = pool_options
            .connect_with(options)
            .await
            .map_err(StorageError::Connect)?;
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        let news = News::new(backend, pool.clone(), url);
        Ok(Self {
            pool,
            backend,
            news,
            seen: Default::default(),
            log_cap: logs::DEFAULT_CAP_BYTES,
            handoff_lease_ms: None,
            write_turn: Default::default(),
            turns: Default::default(),
            run_model: RUN_MODEL,
            quotas: caches::Quotas::default(),
        })
    }

    /// Sets the per-step log cap (bytes).
    pub fn with_log_cap(mut self, cap: i64) -> Self {
        self.log_cap = cap.max(2 * logs::MAX_CHUNK_BYTES as i64);
        self
    }

    pub fn log_cap(&self) -> i64 {
        self.log_cap
    }

    /// Hands a slot freed by a task's end to the next ready attempt that
    /// agent fits, leased for `lease` (see `attempts::hand_off`).
    pub fn with_handoff(mut self, lease: Duration) -> Self {
        self.handoff_lease_ms = Some(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        self
    }

    pub fn handoff_lease_ms(&self) -> Option<i64> {
        self.handoff_lease_ms
    }

    /// Sets the model of new runs (1 or 2, see `RUN_MODEL`).
    pub fn with_run_model(mut self, model: i64) -> Self {
        self.run_model = model;
        self
    }

    /// The model of new runs (see `RUN_MODEL`).
    pub fn run_model(&self) -> i64 {
        self.run_model
    }

    /// Sets what each workflow may keep.
    pub fn with_quotas(mut self, quotas: caches::Quotas) -> Self {
        self.quotas = quotas;
        self
    }

    /// What each workflow may keep.
    pub fn quotas(&self) -> caches::Quotas {
        self.quotas
    }

    /// Where changes are announced and heard (see `news`).
    pub fn news(&self) -> &News {
        &self.news
    }

    /// Notes that an agent was heard from (written by `agents::flush_seen`).
    pub fn agent_seen(&self, agent: &str) {
        self.seen.lock().unwrap().insert(agent.to_string());
    }

    pub(crate) fn forget_seen(&self, agent: &str) {
        self.seen.lock().unwrap().remove(agent);
    }

    pub(crate) fn take_seen(&self) -> Vec<String> {
        std::mem::take(&mut *self.seen.lock().unwrap())
            .into_iter()
            .collect()
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Starts a transaction that will write. On SQLite it takes the write
    /// lock up front: a transaction that reads first and writes later fails
    /// outright (SQLITE_BUSY_SNAPSHOT) when another writer committed in
    /// between, where waiting for the lock at BEGIN just works.
    pub async fn begin_write(&self) -> Result<WriteTx, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => {
                let turn = self.take_turn().await;
                let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
                Ok(WriteTx {
                    tx,
                    _turn: Some(turn),
                })
            }
            Backend::Postgres => Ok(WriteTx {
                tx: self.pool.begin().await?,
                _turn: None,
            }),
        }
    }

    async fn take_turn(&self) -> Turn {
        use std::sync::atomic::Ordering::Relaxed;
        let asked = std::time::Instant::now();
        let guard = self.write_turn.clone().lock_owned().await;
        let since = std::time::Instant::now();
        let waited = u64::try_from((since - asked).as_micros()).unwrap_or(u64::MAX);
        self.turns.taken.fetch_add(1, Relaxed);
        self.turns.waited_us.fetch_add(waited, Relaxed);
        Turn {
            _guard: guard,
            since,
            stats: self.turns.clone(),
        }
    }

    /// The SQLite write turn's use so far (zero on PostgreSQL).
    pub fn write_turns(&self) -> TurnFigures {
        self.turns.figures()
    }

    /// A connection for a single write statement (see `WriteConn`).
    pub async fn write_conn(&self) -> Result<WriteConn, sqlx::Error> {
        let turn = match self.backend {
            Backend::Sqlite => Some(self.take_turn().await),
            Backend::Postgres => None,
        };
        Ok(WriteConn {
            conn: self.pool.acquire().await?,
            _turn: turn,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A round trip to the database, for health checks.
    pub async fn ping(&self) -> Result<(), StorageError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn create_sqlite_dir(url: &str) -> Result<(), StorageError> {
    let path = url
        .trim_start_matches("sqlite:")
        .trim_start_matches("//")
        .split('?')
        .next()
        .unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    if let Some(dir) = Path::new(path).parent()
        && !dir.as_os_str().is_empty()
        && !dir.exists()
    {
        use std::os::unix::fs::DirBuilderExt;
        // Whoever reads the database can forge tokens' owners and read
        // every run: private from the start.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| StorageError::CreateDir {
                path: dir.display().to_string(),
                source,
            })?;
    }
    // The file is made 0600 before SQLite opens it, so its -wal and -shm
    // (which SQLite gives the database file's mode) are private too.
    let create = url.contains("mode=rwc");
    crate::data_dir::private_sqlite_file(Path::new(path), create).map_err(|e| {
        StorageError::CreateDir {
            path: path.to_string(),
            source: std::io::Error::other(e.to_string()),
        }
    })
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}://{user}:***{}", &url[..scheme], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("mysql://h/db"), "mysql://h/db");
    }

    #[tokio::test]
    async fn rejects_unknown_schemes_without_connecting() {
        let err = Db::connect("mysql://u:pw@localhost/x").await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported database URL \"mysql://u:***@localhost/x\": use sqlite://PATH or postgres://..."
        );
    }
}
