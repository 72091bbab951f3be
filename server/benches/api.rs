//! Figures for the server in-process on a real socket and a real database:
//! (a) the API latency of starting a run, (b) the time from "run requested"
//! to "first step started" on the built-in agent, (c) the throughput of a
//! long queue of no-op runs. It prints figures and asserts nothing about time.
//!
//! `cargo bench -p xene-server --bench api`; `XENE_BENCH_RUNS` sets the queue
//! length of (c) (default 10000), `XENE_BENCH_POSTGRES=0` skips PostgreSQL.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use xene_server::config::Args;
use xene_testkit::{Client, Postgres, admin_client, private_tempdir, sqlite_url};

const NOOP: &str =
    "name: bench\npipelines:\n  noop:\n    tasks:\n      t:\n        steps: [\"true\"]\n";
const START: &str = "/api/v1/workflows/bench/pipelines/noop/runs";
/// Runs the built-in agent executes at once in every phase.
const CAPACITY: i64 = 16;

struct Running {
    api: Client,
    server: xene_server::Spawned,
}

impl Running {
    async fn start(url: &str, data_dir: &Path, configure: impl FnOnce(&mut Args)) -> Self {
        let mut args = Args::for_data_dir(data_dir.to_path_buf());
        // Shell steps run under `xene` (this bench binary cannot supervise them).
        args.local_agent_supervisor = Some(env!("CARGO_BIN_EXE_xene").into());
        args.database_url = Some(url.to_string());
        args.local_agent_capacity = CAPACITY;
        args.local_agent_id = Some("bench".into());
        configure(&mut args);
        let server = xene_server::Server::bind(&args)
            .await
            .expect("server starts")
            .spawn();
        let base = format!("http://{}", server.addr);
        let api = Client::new(base, admin_client(data_dir));
        Self { api, server }
    }

    async fn stop(self) {
        self.server.stop().await.expect("server stops cleanly");
    }

    async fn start_run(&self) -> i64 {
        let response = self
            .api
            .http
            .post(self.api.url(START))
            .send()
            .await
            .expect("POST");
        assert_eq!(response.status(), 201, "start run");
        let run: Value = response.json().await.expect("JSON");
        run["id"].as_i64().expect("run id")
    }

    /// Waits until nothing is queued or running; returns the runs by status.
    async fn drain(&self, poll: Duration) -> Value {
        loop {
            let stats: Value = self.api.get("/api/v1/stats").await;
            if stats["waiting_runs"] == 0 && stats["running_runs"] == 0 {
                return stats["runs_by_status"].clone();
            }
            tokio::time::sleep(poll).await;
        }
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let queue: usize = std::env::var("XENE_BENCH_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    runtime.block_on(async {
        let dir = private_tempdir();
        bench("sqlite", &sqlite_url(dir.path()), dir.path(), queue).await;
        if std::env::var("XENE_BENCH_POSTGRES").as_deref() != Ok("0") {
            let pg = Postgres::start();
            let dir = private_tempdir();
            bench("postgres", &pg.url(), dir.path(), queue).await;
        }
    });
}

async fn bench(backend: &str, url: &str, data_dir: &Path, queue: usize) {
    println!("== {backend} (built-in agent capacity {CAPACITY})");
    let server = Running::start(url, data_dir, |_| {}).await;
    server.api.apply(NOOP).await;
    // Warm the connection pools and the executor before timing anything.
    for _ in 0..10 {
        server.start_run().await;
    }
    server.drain(Duration::from_millis(10)).await;

    // (a) Serial POSTs, while the agent executes what they queue, as in use.
    let mut latencies = Vec::with_capacity(200);
    for _ in 0..200 {
        let started = Instant::now();
        server.start_run().await;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    report("(a) POST .../runs latency", "ms", &mut latencies);
    server.drain(Duration::from_millis(10)).await;

    // (b) One run at a time on an idle server: the server's own timestamps
    // of the request and of the first step's start.
    let mut pickups = Vec::with_capacity(50);
    for _ in 0..50 {
        let id = server.start_run().await;
        let run = loop {
            let run: Value = server.api.get(&format!("/api/v1/runs/{id}")).await;
            if run["finished_at"].is_i64() {
                break run;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        assert_eq!(run["status"], "success", "{run}");
        let first_step = run["tasks"][0]["steps"][0]["started_at"]
            .as_i64()
            .expect("step started");
        pickups.push((first_step - run["requested_at"].as_i64().unwrap()) as f64);
    }
    report("(b) requested -> first step started", "ms", &mut pickups);
    server.stop().await;

    // (c) Queue first with no agent, so the queue is whole before the clock
    // starts; then a server with its agent works through it.
    let enqueuer = Running::start(url, data_dir, |args| args.no_local_agent = true).await;
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    let enqueuer = std::sync::Arc::new(enqueuer);
    for worker in 0..8 {
        let enqueuer = enqueuer.clone();
        workers.spawn(async move {
            for _ in (worker..queue).step_by(8) {
                enqueuer.start_run().await;
            }
        });
    }
    workers.join_all().await;
    let enqueue_secs = started.elapsed().as_secs_f64();
    println!(
        "(c) enqueued {queue} runs in {enqueue_secs:.1} s ({:.0} runs/s, 8 clients)",
        queue as f64 / enqueue_secs
    );
    let Ok(enqueuer) = std::sync::Arc::try_unwrap(enqueuer) else {
        unreachable!("workers are done")
    };
    enqueuer.stop().await;

    let started = Instant::now();
    let server = Running::start(url, data_dir, |_| {}).await;
    let by_status = server.drain(Duration::from_millis(100)).await;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "(c) executed {queue} queued no-op runs in {secs:.1} s: {:.0} runs/s; runs by status: {by_status}",
        queue as f64 / secs
    );
    server.stop().await;
}

fn report(what: &str, unit: &str, samples: &mut [f64]) {
    samples.sort_by(f64::total_cmp);
    let at = |p: usize| samples[(samples.len() * p / 100).min(samples.len() - 1)];
    println!(
        "{what}: p50 {:.1} {unit}, p95 {:.1} {unit}, max {:.1} {unit} (n = {})",
        at(50),
        at(95),
        samples[samples.len() - 1],
        samples.len()
    );
}
