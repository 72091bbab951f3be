//! The harness: a Xene server on a free port over a fresh database, SQLite
//! (a file in a temp dir) or PostgreSQL (a throwaway server from Debian's
//! packages, started here).

use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::oneshot;
use xene_server::config::Args;

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
    pub fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
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

/// A running Xene server; stops when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    pub async fn start(db: &TestDb) -> Self {
        Self::start_with(db, |_| {}).await
    }

    /// Starts with flags adjusted by `configure`.
    pub async fn start_with(db: &TestDb, configure: impl FnOnce(&mut Args)) -> Self {
        let mut args = Args::for_data_dir(db.dir.path().to_path_buf());
        args.database_url = Some(db.url.clone());
        configure(&mut args);
        let server = xene_server::Server::bind(&args)
            .await
            .expect("server starts");
        let addr = server.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(server.serve(async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            stop: Some(stop),
            done: Some(done),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        response(reqwest::get(self.url(path)).await.expect("GET")).await
    }

    pub async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let client = reqwest::Client::new();
        response(
            client
                .post(self.url(path))
                .body(body)
                .send()
                .await
                .expect("POST"),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> u16 {
        let client = reqwest::Client::new();
        client
            .delete(self.url(path))
            .send()
            .await
            .expect("DELETE")
            .status()
            .as_u16()
    }

    /// Polls a run until it reaches a final status; returns it.
    pub async fn wait_for_run(&self, id: i64) -> Value {
        let started = Instant::now();
        loop {
            let (status, run) = self.get(&format!("/api/v1/runs/{id}")).await;
            assert_eq!(status, 200, "{run}");
            if ["success", "error", "cancelled"].contains(&run["status"].as_str().unwrap()) {
                return run;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "run {id} did not finish: {run}"
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

/// A throwaway PostgreSQL server on a free port. The cluster is initialised
/// once into `target/` and copied per test, because initdb is the slow part.
pub struct Postgres {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Postgres {
    pub fn start() -> Self {
        let bin = postgres_bin_dir();
        let template = cluster_template(&bin);
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        copy_dir(&template, &data);
        // PostgreSQL refuses a data directory others can read.
        std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        let owner = postgres_user();
        chown_tree(dir.path(), owner);
        let port = free_port();
        let mut cmd = Command::new(bin.join("postgres"));
        cmd.arg("-D")
            .arg(&data)
            .args([
                "-p",
                &port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
            ])
            .arg("-k")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("postgres.log")).unwrap());
        if let Some((uid, gid)) = owner {
            cmd.uid(uid).gid(gid);
        }
        let child = cmd
            .spawn()
            .expect("postgres starts (apt-get install postgresql)");
        let pg = Self {
            port,
            child,
            _dir: dir,
        };
        pg.wait_ready();
        pg
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn wait_ready(&self) {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                // Accepting TCP is not accepting queries: give start-up a beat.
                let ready = Command::new(postgres_bin_dir().join("pg_isready"))
                    .args([
                        "-h",
                        "127.0.0.1",
                        "-p",
                        &self.port.to_string(),
                        "-U",
                        "postgres",
                    ])
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                if ready {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("postgres did not start on port {}", self.port);
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn postgres_bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (apt-get install postgresql)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("postgres").is_file())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("a PostgreSQL server binary under /usr/lib/postgresql")
}

/// The uid/gid of the `postgres` user when running as root (PostgreSQL
/// refuses to run as root); `None` when running as anyone else.
fn postgres_user() -> Option<(u32, u32)> {
    let uid = String::from_utf8(Command::new("id").arg("-u").output().ok()?.stdout).ok()?;
    if uid.trim() != "0" {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.starts_with("postgres:"))?;
    let fields: Vec<&str> = line.split(':').collect();
    Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?))
}

fn cluster_template(bin: &Path) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let version = bin
        .parent()
        .and_then(|p| p.file_name())
        .unwrap()
        .to_string_lossy()
        .to_string();
    let template = target.join(format!("pg-template-{version}"));
    if template.join("PG_VERSION").is_file() {
        return template;
    }
    // Tests run in parallel processes: build in a private dir, then rename.
    std::fs::create_dir_all(&target).unwrap();
    let building = tempfile::tempdir_in(&target).expect("temp dir");
    let owner = postgres_user();
    chown_tree(building.path(), owner);
    let data = building.path().join("data");
    let mut cmd = Command::new(bin.join("initdb"));
    cmd.arg("-D")
        .arg(&data)
        .args(["-A", "trust", "-U", "postgres", "--no-sync"])
        .stdout(Stdio::null());
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid);
    }
    let status = cmd.status().expect("initdb runs");
    assert!(status.success(), "initdb failed");
    if std::fs::rename(&data, &template).is_err() {
        assert!(
            template.join("PG_VERSION").is_file(),
            "cannot place the PostgreSQL template"
        );
    }
    template
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

fn chown_tree(path: &Path, owner: Option<(u32, u32)>) {
    let Some((uid, gid)) = owner else { return };
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            chown_tree(&entry.unwrap().path(), owner);
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The status and JSON body of a response; every API answer is JSON, errors too.
async fn response(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"))
    };
    (status, body)
}
