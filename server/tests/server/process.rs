//! Real `xene` processes for tests that kill and restart servers.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::TestDb;

/// A `xene` process. Dropping it kills it, so a failing test leaves no
/// server behind; on a failure its log is printed to explain why.
pub struct Xene {
    child: Child,
    pub base: String,
    log: PathBuf,
    pub agent_id: String,
    pub http: reqwest::Client,
}

impl Xene {
    pub async fn start(db: &TestDb, agent_id: &str, extra: &[&str]) -> Self {
        Self::start_with_env(db, agent_id, extra, &[]).await
    }

    /// Starts with extra environment variables (they win over the defaults here).
    pub async fn start_with_env(
        db: &TestDb,
        agent_id: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let started = Instant::now();
        let log = db
            .dir
            .path()
            .join(format!("xene-{agent_id}-{}.log", nonce()));
        let data_dir = db.dir.path().join(format!("data-{agent_id}"));
        // Replicas of one database share one master key for secrets, as
        // they must in production.
        let key_file = db.dir.path().join("secrets-master.key");
        if !key_file.exists() {
            std::fs::write(&key_file, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n").unwrap();
            // Xene refuses a key file others can read.
            let private =
                <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600);
            std::fs::set_permissions(&key_file, private).unwrap();
        }
        let child = Command::new(env!("CARGO_BIN_EXE_xene"))
            // Port 0 and the logged address: no race for a free port between parallel tests.
            .args(if extra.contains(&"--addr") {
                &[][..]
            } else {
                &["--addr", "127.0.0.1:0"][..]
            })
            .args(["--local-agent-id", agent_id, "--database-url", &db.url])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(extra)
            .env("NO_COLOR", "1")
            .env("XENE_SECRETS_KEY_FILE", &key_file)
            .env("RUST_LOG", "warn,xene_server=info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("xene starts");
        let mut xene = Self {
            child,
            base: String::new(),
            log,
            agent_id: agent_id.to_string(),
            http: reqwest::Client::new(),
        };
        loop {
            if let Some(status) = xene.child.try_wait().unwrap() {
                panic!(
                    "xene exited with {status} before listening:\n{}",
                    xene.log_text()
                );
            }
            if let Some(base) = listening_url(&xene.log_text()) {
                xene.base = base.to_string();
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "xene did not start:\n{}",
                xene.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The server wrote the local admin token before it listened.
        xene.http = crate::util::client_with_token(&crate::util::admin_token(&data_dir));
        // This client speaks plain HTTP only; HTTPS tests check their own way.
        if xene.base.starts_with("http://") {
            let (status, body) = xene.get("/healthz").await;
            assert_eq!(status, 200, "{body}");
        }
        xene
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no graceful shutdown, no lease released, nothing flushed.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("GET");
        json_of(response).await
    }

    pub async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .body(body)
            .send()
            .await
            .expect("POST");
        json_of(response).await
    }

    pub async fn apply(&self, yaml: &str) {
        let (status, body) = self.post("/api/v1/workflows", yaml.to_string()).await;
        assert!(status == 201 || status == 200, "apply: {status} {body}");
    }

    pub async fn start_run(&self, workflow: &str, pipeline: &str, params: Value) -> i64 {
        let path = format!("/api/v1/workflows/{workflow}/pipelines/{pipeline}/runs");
        let (status, body) = self
            .post(&path, json!({ "params": params }).to_string())
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_i64().expect("a run id")
    }

    pub async fn run(&self, id: i64) -> Value {
        let (status, run) = self.get(&format!("/api/v1/runs/{id}")).await;
        assert_eq!(status, 200, "{run}");
        run
    }

    /// Polls run `id` until `done` holds; the timeout only keeps a broken
    /// server from hanging the test.
    pub async fn wait_run(
        &self,
        id: i64,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let started = Instant::now();
        loop {
            let run = self.run(id).await;
            if done(&run) {
                return run;
            }
            assert!(
                started.elapsed() < timeout,
                "run {id} stuck: {run}\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_finished(&self, id: i64, timeout: Duration) -> Value {
        self.wait_run(id, timeout, |run| {
            ["success", "error", "cancelled", "unknown"]
                .contains(&run["status"].as_str().unwrap_or_default())
        })
        .await
    }

    pub async fn logs(&self, id: i64) -> Vec<Value> {
        let (status, page) = self
            .get(&format!("/api/v1/runs/{id}/logs?limit=10000"))
            .await;
        assert_eq!(status, 200, "{page}");
        page["lines"].as_array().expect("lines").clone()
    }
}

impl Drop for Xene {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- log of xene {} ---\n{}", self.agent_id, self.log_text());
        }
    }
}

pub fn nonce() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// The URL the server logs it listens on, `http://` or `https://`.
pub(crate) fn listening_url(log: &str) -> Option<&str> {
    let start = log.find("listening on http")? + "listening on ".len();
    let rest = &log[start..];
    let end = rest.find(|c: char| c.is_whitespace() || c == '"' || c == '\u{1b}')?;
    Some(&rest[..end])
}

async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}")),
    )
}

/// The target directory cargo builds into.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// Has cargo build `xene-agent`, for `target` when given.
pub fn build_agent(target: Option<&str>) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--quiet",
        "--package",
        "xene-agent",
        "--bin",
        "xene-agent",
    ]);
    if let Some(target) = target {
        cmd.args(["--target", target]);
    }
    let status = cmd.status().expect("cargo runs");
    assert!(status.success(), "building xene-agent {target:?} failed");
}

/// The `xene-agent` binary. It belongs to another package, so cargo does
/// not hand its path to these tests: `cargo nextest run --workspace` (what
/// `cargo xtask test` runs) builds it beside them; a run of this package
/// alone builds it here when it is missing. `XENE_AGENT_BIN` overrides.
pub fn agent_binary() -> PathBuf {
    static FOUND: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    FOUND
        .get_or_init(|| {
            if let Some(path) = std::env::var_os("XENE_AGENT_BIN") {
                return PathBuf::from(path);
            }
            let path = target_dir().join("debug/xene-agent");
            if !path.is_file() {
                build_agent(None);
            }
            path
        })
        .clone()
}

/// A `xene-agent connect` process; killed when dropped.
pub struct Agent {
    child: Child,
    pub log: PathBuf,
    pub name: String,
}

impl Agent {
    pub fn start(
        server: &str,
        token: &str,
        state_dir: &std::path::Path,
        name: &str,
        extra: &[&str],
    ) -> Self {
        Self::start_with_env(server, token, state_dir, name, extra, &[])
    }

    /// Starts with extra environment variables (they win over the defaults here).
    pub fn start_with_env(
        server: &str,
        token: &str,
        state_dir: &std::path::Path,
        name: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        std::fs::create_dir_all(state_dir).unwrap();
        let log = state_dir.join(format!("agent-{}.log", nonce()));
        let child = Command::new(agent_binary())
            .args([
                "connect",
                "--server",
                server,
                "--join-token",
                token,
                "--name",
                name,
            ])
            .arg("--state-dir")
            .arg(state_dir)
            .args(extra)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("xene-agent starts");
        Self {
            child,
            log,
            name: name.to_string(),
        }
    }

    /// SIGKILL: the agent gets no chance to report or clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the agent to exit by itself; its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- log of agent {} ---\n{}", self.name, self.log_text());
        }
    }
}

impl Xene {
    /// A one-time join token with these labels.
    pub async fn join_token(&self, labels: Value) -> String {
        let (status, token) = self
            .post(
                "/api/v1/agents/join-tokens",
                json!({ "labels": labels }).to_string(),
            )
            .await;
        assert_eq!(status, 201, "{token}");
        token["token"].as_str().unwrap().to_string()
    }

    /// Waits until `n` remote agents are online.
    pub async fn wait_agents_online(&self, n: usize) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let (_, agents) = self.get("/api/v1/agents").await;
            let online: Vec<Value> = agents["agents"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["builtin"] == false && a["state"] == "online")
                .cloned()
                .collect();
            if online.len() >= n {
                return online;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "agents never came online: {agents}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
