//! Real `xene` processes for tests that kill and restart servers: the
//! testkit's process, started from this package's `xene` over a test's
//! database, with the calls these tests make of it.

use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::TestDb;

pub use xene_testkit::bins::{agent_binary, build_agent, target_dir};
pub use xene_testkit::{Agent, listening_url, nonce};

/// A `xene` process over a test's database, acting as the local admin.
/// Dropping it kills it, so a failing test leaves no server behind; on a
/// failure its log is printed to explain why.
pub struct Xene {
    process: xene_testkit::Xene,
    pub agent_id: String,
}

impl Deref for Xene {
    type Target = xene_testkit::Xene;

    fn deref(&self) -> &xene_testkit::Xene {
        &self.process
    }
}

impl DerefMut for Xene {
    fn deref_mut(&mut self) -> &mut xene_testkit::Xene {
        &mut self.process
    }
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
        let mut builder = xene_testkit::Xene::builder(env!("CARGO_BIN_EXE_xene"), &data_dir)
            .name(agent_id)
            .log(
                db.dir
                    .path()
                    .join(format!("xene-{agent_id}-{}.log", nonce())),
            )
            .args(["--local-agent-id", agent_id, "--database-url", &db.url])
            .args(extra)
            .env("XENE_SECRETS_KEY_FILE", &key_file);
        for (key, value) in env {
            builder = builder.env(key, value);
        }
        let xene = Self {
            process: builder.start().await,
            agent_id: agent_id.to_string(),
        };
        // This client speaks plain HTTP only; HTTPS tests check their own way.
        if xene.base.starts_with("http://") {
            let (status, body) = xene.get("/healthz").await;
            assert_eq!(status, 200, "{body}");
        }
        xene
    }

    /// GETs `path`: the status and the JSON body, whatever the status.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.get_status(path).await
    }

    /// POSTs `body` to `path`: the status and the JSON body, whatever the
    /// status.
    pub async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        self.post_status(path, body).await
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
