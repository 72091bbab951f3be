//! The harness: a Xene server in this process on a free port over a fresh
//! database (`xene_testkit::TestDb`: SQLite, or a throwaway PostgreSQL).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use xene_server::config::Args;

pub use xene_testkit::{
    BACKENDS, Backend, TestDb, admin_token, client_with_token, files_under, private_tempdir,
    response,
};

/// A running Xene server; stops when dropped. Its helpers act as the local
/// admin, with the token the server wrote into its data directory.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The local admin API token.
    pub token: String,
    /// A client that sends the admin token.
    pub client: reqwest::Client,
    /// The same client, for this server's API.
    api: xene_testkit::Client,
    /// The one-time sign-in link the server printed, if any.
    pub sign_in_link: Option<String>,
    server: Option<xene_server::Spawned>,
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
            .expect("server starts")
            .spawn();
        let addr = server.addr;
        let sign_in_link = server.sign_in_link.clone();
        let token = admin_token(&args.data_dir());
        let client = client_with_token(&token);
        Self {
            addr,
            api: xene_testkit::Client::new(format!("http://{addr}"), client.clone()),
            client,
            token,
            sign_in_link,
            server: Some(server),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.api.get_status(path).await
    }

    pub async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        self.api.post_status(path, body).await
    }

    pub async fn delete(&self, path: &str) -> u16 {
        self.api.delete_status(path).await
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
        if let Some(server) = self.server.take() {
            server.stop().await.expect("server stops cleanly");
        }
    }
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
