//! Figures for live logs, with the server in-process on a real socket and a
//! real SQLite database: (a) a step prints a line -> a feed client receives
//! it, while 100 runs print at once; (b) log ingest, end to end, from a
//! step's output to stored chunks; (c) the peak memory meanwhile. It prints
//! figures and asserts nothing about time.
//!
//! `cargo bench -p xene-server --bench feed`; `XENE_BENCH_FEED_RUNS` sets
//! the runs of (a) (default 100), `XENE_BENCH_INGEST_MB` the log of (b)
//! (default 200).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use xene_server::config::Args;
use xene_testkit::{admin_token, client_with_token, private_tempdir};

/// Each line carries the time it was printed, in microseconds (bash's
/// EPOCHREALTIME needs no process per line).
const PRINTER: &str = r#"
name: printer
pipelines:
  p:
    tasks:
      t:
        steps:
          - name: print
            run: |
              bash -c 'for i in $(seq 1 40); do echo "${EPOCHREALTIME/./}"; sleep 0.1; done'
"#;

const FLOOD: &str = r#"
name: flood
pipelines:
  p:
    params: {mb: "200"}
    tasks:
      t:
        steps:
          - name: flood
            run: head -c $(({{ params.mb }} * 1048576)) /dev/zero | tr '\0' 'x' | fold -w 99
"#;

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn percentile(sorted: &[i64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let runs: usize = std::env::var("XENE_BENCH_FEED_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100);
    let mb: usize = std::env::var("XENE_BENCH_INGEST_MB")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    runtime.block_on(async {
        let dir = private_tempdir();
        let mut args = Args::for_data_dir(dir.path().to_path_buf());
        // Shell steps run under `xene` (this bench binary cannot supervise them).
        args.local_agent_supervisor = Some(env!("CARGO_BIN_EXE_xene").into());
        args.local_agent_capacity = runs.max(1) as i64;
        // Everything is kept, so (b) measures storing, not the cap's deletes.
        args.log_cap_per_step = 1 << 40;
        let server = xene_server::Server::bind(&args)
            .await
            .expect("server starts")
            .spawn();
        let base = format!("http://{}", server.addr);
        let token = admin_token(dir.path());
        let http = client_with_token(&token);

        feed_latency(&http, &base, &token, runs).await;
        ingest(&http, &base, mb).await;
        println!(
            "bench process (server in-process) peak RSS: {:.1} MiB",
            peak_rss_mib()
        );

        server.stop().await.expect("server stops");
    });
}

async fn apply(http: &reqwest::Client, base: &str, spec: &str) {
    let r = http
        .post(format!("{base}/api/v1/workflows"))
        .body(spec.to_string())
        .send()
        .await
        .expect("apply");
    assert!(r.status().is_success(), "apply: {}", r.status());
}

async fn start(http: &reqwest::Client, base: &str, workflow: &str, body: &str) -> i64 {
    let r = http
        .post(format!(
            "{base}/api/v1/workflows/{workflow}/pipelines/p/runs"
        ))
        .body(body.to_string())
        .send()
        .await
        .expect("start");
    let run: Value = r.json().await.expect("JSON");
    run["id"].as_i64().expect("run id")
}

/// (a): one feed client per run; each line's latency is its arrival time
/// minus the time the step printed it.
async fn feed_latency(http: &reqwest::Client, base: &str, token: &str, runs: usize) {
    apply(http, base, PRINTER).await;
    let mut clients = Vec::new();
    for _ in 0..runs {
        let id = start(http, base, "printer", "").await;
        let url = format!(
            "{}/api/v1/runs/{id}/events",
            base.replacen("http://", "ws://", 1)
        );
        let mut request = url.into_client_request().unwrap();
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        let (mut socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("feed");
        clients.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while let Some(Ok(message)) = socket.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let value: Value = serde_json::from_str(&text).unwrap();
                match value["type"].as_str() {
                    Some("log") => {
                        let received = now_us();
                        for line in value["data"].as_str().unwrap().lines() {
                            if let Ok(printed) = line.trim().parse::<i64>() {
                                latencies.push(received - printed);
                            }
                        }
                    }
                    Some("end") => break,
                    _ => {}
                }
            }
            latencies
        }));
    }
    let started = Instant::now();
    let mut all = Vec::new();
    for client in clients {
        all.extend(client.await.expect("client"));
    }
    all.sort_unstable();
    println!(
        "feed latency, step prints a line -> client receives it, {runs} runs printing at once: \
         {} lines in {:.1} s, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        all.len(),
        started.elapsed().as_secs_f64(),
        percentile(&all, 0.5),
        percentile(&all, 0.99),
        percentile(&all, 1.0),
    );
}

/// (b): one step prints `mb` MiB of 100-byte lines as fast as it can.
async fn ingest(http: &reqwest::Client, base: &str, mb: usize) {
    apply(http, base, FLOOD).await;
    let started = Instant::now();
    let id = start(
        http,
        base,
        "flood",
        &format!(r#"{{"params": {{"mb": "{mb}"}}}}"#),
    )
    .await;
    loop {
        let run: Value = http
            .get(format!("{base}/api/v1/runs/{id}"))
            .send()
            .await
            .expect("GET run")
            .json()
            .await
            .expect("JSON");
        if run["status"] == "success" {
            break;
        }
        assert!(run["status"] != "error", "{run}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let lines = (mb * 1048576 / 100) as f64;
    println!(
        "log ingest into SQLite, end to end: {mb} MiB in {secs:.2} s = {:.1} MiB/s, {:.0} lines/s",
        mb as f64 / secs,
        lines / secs
    );
}
