//! The harness: a Xene server on a free port over a fresh database, SQLite
//! (a file in a temp dir) or PostgreSQL (a throwaway server from Debian's
//! packages, started here).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::oneshot;
use xene_server::config::Args;

#[path = "../support/admin.rs"]
mod admin;
pub use admin::{admin_token, client_with_token, private_tempdir};
#[path = "../support/postgres.rs"]
mod postgres;
pub use postgres::Postgres;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub const BACKENDS: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

/// A database for one test; a PostgreSQL server stops when this is dropped.
pub struct TestDb {
    pub url: String,
    pub dir: tempfile::TempDir,
    _postgres: Option<Postgres>,
}

impl TestDb {
    /// Every file the database keeps its data in: the SQLite file with its
    /// journal, or the PostgreSQL cluster's files (WAL included).
    pub fn files(&self) -> Vec<std::path::PathBuf> {
        let root = match &self._postgres {
            Some(pg) => pg.data_dir(),
            None => {
                return ["xene.db", "xene.db-wal", "xene.db-shm"]
                    .iter()
                    .map(|f| self.dir.path().join(f))
                    .filter(|p| p.exists())
                    .collect();
            }
        };
        files_under(&root)
    }

    pub fn new(backend: Backend) -> Self {
        // Private, as the server asks of a data directory (tempfile's are
        // not).
        let dir = private_tempdir();
        match backend {
            Backend::Sqlite => {
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("xene.db").display());
                Self {
                    url,
                    dir,
                    _postgres: None,
                }
            }
            Backend::Postgres => {
                let pg = Postgres::start();
                Self {
                    url: pg.url(),
                    dir,
                    _postgres: Some(pg),
                }
            }
        }
    }
}

/// A running Xene server; stops when dropped. Its helpers act as the local
/// admin, with the token the server wrote into its data directory.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The local admin API token.
    pub token: String,
    /// A client that sends the admin token.
    pub client: reqwest::Client,
    /// The one-time sign-in link the server printed, if any.
    pub sign_in_link: Option<String>,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<Result<(), xene_server::ServerError>>>,
}

impl TestServer {
    pub async fn start(db: &TestDb) -> Self {
        Self::start_with(db, |_| {}).await
    }

    /// Starts with flags adjusted by `configure`.
    pub async fn start_with(db: &TestDb, configure: impl FnOnce(&mut Args)) -> Self {
        let mut args = Args::for_data_dir(db.dir.path().to_path_buf());
        args.database_url = Some(db.url.clone());
        // The built-in agent's shell steps run under a supervisor, the `xene`
        // binary (this process is the test binary).
        args.local_agent_supervisor = Some(env!("CARGO_BIN_EXE_xene").into());
        configure(&mut args);
        let server = xene_server::Server::bind(&args)
            .await
            .expect("server starts");
        let addr = server.local_addr();
        let sign_in_link = server.sign_in_link().map(String::from);
        let token = admin_token(&args.data_dir());
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(server.serve(async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            client: client_with_token(&token),
            token,
            sign_in_link,
            stop: Some(stop),
            done: Some(done),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        response(self.client.get(self.url(path)).send().await.expect("GET")).await
    }

    pub async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        response(
            self.client
                .post(self.url(path))
                .body(body)
                .send()
                .await
                .expect("POST"),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> u16 {
        self.client
            .delete(self.url(path))
            .send()
            .await
            .expect("DELETE")
            .status()
            .as_u16()
    }

    /// Polls a run until it reaches a final status; returns it.
    pub async fn wait_for_run(&self, id: i64) -> Value {
        self.wait_run_until(id, |run| {
            ["success", "error", "cancelled"].contains(&run["status"].as_str().unwrap())
        })
        .await
    }

    /// Polls a run until `done` holds; returns it. The timeout only keeps a
    /// broken server from hanging the test.
    pub async fn wait_run_until(&self, id: i64, done: impl Fn(&Value) -> bool) -> Value {
        let started = Instant::now();
        loop {
            let (status, run) = self.get(&format!("/api/v1/runs/{id}")).await;
            assert_eq!(status, 200, "{run}");
            if done(&run) {
                return run;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "run {id} never got there: {run}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops gracefully and waits until the database is closed.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = self.done.take() {
            done.await
                .expect("server task")
                .expect("server stops cleanly");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The status and JSON body of a response; every API answer is JSON, errors too.
pub async fn response(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"))
    };
    (status, body)
}

/// Every file below `dir`, at any depth (tests grep them for what must not
/// be stored).
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// Gives `workflow`'s webhook `pipeline` a hook and delivers `{}` to it as
/// GitHub would (signed with the hook's secret, no admin token): the
/// answer, and the reason the hook's deliveries log gives for it.
pub async fn deliver_to_new_hook(
    server: &TestServer,
    workflow: &str,
    pipeline: &str,
) -> (u16, Value, String) {
    use hmac::{Hmac, Mac};
    let (status, hook) = server
        .post(
            &format!("/api/v1/workflows/{workflow}/pipelines/{pipeline}/hook"),
            "",
        )
        .await;
    assert_eq!(status, 201, "{hook}");
    let body = b"{}".to_vec();
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(hook["secret"].as_str().unwrap().as_bytes()).unwrap();
    mac.update(&body);
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let path = hook["path"].as_str().unwrap();
    let (status, answer) = response(
        reqwest::Client::new()
            .post(server.url(path))
            .header("x-hub-signature-256", signature)
            .body(body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let id = path.rsplit('/').next().unwrap();
    let (_, deliveries) = server.get(&format!("/api/v1/hooks/{id}/deliveries")).await;
    let reason = deliveries["deliveries"][0]["reason"].as_str();
    (status, answer, reason.unwrap_or_default().to_string())
}

/// The cron fire of `workflow` once there is one, as (outcome, reason),
/// after backdating the workflow a year: the controller catches up the
/// latest fire of a yearly schedule.
pub async fn backdated_cron_fire(db: &TestDb, workflow: &str) -> (String, String) {
    let storage = xene_server::storage::Db::connect(&db.url).await.unwrap();
    sqlx::query("UPDATE workflows SET updated_at = updated_at - $1 WHERE name = $2")
        .bind(366_i64 * 24 * 3600 * 1000)
        .bind(workflow)
        .execute(storage.pool())
        .await
        .unwrap();
    cron_fire_where(db, workflow, |_| true).await
}

/// The first cron fire of `workflow` whose outcome passes `wanted`.
pub async fn cron_fire_where(
    db: &TestDb,
    workflow: &str,
    wanted: impl Fn(&str) -> bool,
) -> (String, String) {
    let storage = xene_server::storage::Db::connect(&db.url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let fires: Vec<(String, String)> =
            sqlx::query_as("SELECT outcome, reason FROM cron_fires WHERE workflow = $1")
                .bind(workflow)
                .fetch_all(storage.pool())
                .await
                .unwrap();
        if let Some(fire) = fires.into_iter().next()
            && wanted(&fire.0)
        {
            return fire;
        }
        assert!(Instant::now() < deadline, "no fire of {workflow}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many runs the server lists (its first page).
pub async fn run_count(server: &TestServer) -> usize {
    server.get("/api/v1/runs").await.1["runs"]
        .as_array()
        .unwrap()
        .len()
}

/// What an agent reports as it starts step `s` of task `t`: how every
/// hand-written run of the tests that play an agent begins.
pub fn started_events() -> Vec<xene_core::event::RunEvent> {
    use xene_core::event::RunEvent;
    vec![
        RunEvent::RunStarted {
            run_id: "x".into(),
            pipeline: "p".into(),
        },
        RunEvent::TaskStarted {
            task: "t".into(),
            attempt: 1,
        },
        RunEvent::StepStarted {
            task: "t".into(),
            step: "s".into(),
        },
    ]
}
