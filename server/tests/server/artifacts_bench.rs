//! The figures of `cargo xtask bench-artifacts` (issue 25). Ignored: that
//! command builds the release binaries and runs it with `XENE_BIN` and
//! `XENE_AGENT_BIN` pointing at them (without them it measures the debug
//! build). `XENE_BENCH_ARTIFACT_MIB` sets the file's size (default 1024).
//! It prints figures and asserts nothing about time. SQLite, one `xene`
//! process, one `xene-agent connect` process.
//!
//! A task publishes one file of random bytes (a hard link to a file made
//! once, so making it costs nothing), a second task needs it. From the
//! server's own times: publish = the task's end − its last step's end
//! (hash, ask, upload, commit); fetch = the needing task's first step's
//! start − the publishing task's end (placing it, then ask, download,
//! verify, place). Against `cp` of the same file (local store) and
//! `curl -T` of it to the same moto (S3), each timed here. Then the same
//! run again: what it uploads (nothing) and how long publishing takes.
//! And the agent's peak resident memory (`VmHWM`).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use xene_testkit::bins::{agent_binary, xene_binary};
use xene_testkit::{Agent, S3, Xene};

use crate::util::{Backend, TestDb};

const WORKFLOW: &str = "
name: bench
pipelines:
  p:
    tasks:
      build:
        steps:
          - name: make
            run: ln \"$XENE_PARAM_SRC\" big || cp \"$XENE_PARAM_SRC\" big
        publish:
          - name: big
            path: big
      use:
        depends_on: [build]
        needs: [big]
        steps:
          - name: check
            run: test -s big
    params:
      src: {type: string, required: true}
";

fn mib() -> u64 {
    std::env::var("XENE_BENCH_ARTIFACT_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
}

fn seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

fn timed(command: &mut Command) -> f64 {
    let started = Instant::now();
    let status = command.status().expect("the baseline command runs");
    assert!(status.success(), "{command:?}: {status}");
    started.elapsed().as_secs_f64()
}

/// The agent's peak resident memory, in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kb / 1024.0
}

struct Figures {
    publish_s: f64,
    fetch_s: f64,
    log: String,
}

async fn one_run(xene: &Xene, src: &Path) -> Figures {
    let body = json!({ "params": { "src": src.display().to_string() } });
    let (status, run) = xene
        .post_status("/api/v1/workflows/bench/pipelines/p/runs", body.to_string())
        .await;
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_i64().unwrap();
    let run = xene_testkit::wait_for("the run to end", Duration::from_secs(1800), async || {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (_, run) = xene.get_status(&format!("/api/v1/runs/{id}")).await;
        if run["finished_at"].is_i64() {
            Ok(run)
        } else {
            Err(run.to_string())
        }
    })
    .await;
    let (_, logs) = xene
        .get_status(&format!("/api/v1/runs/{id}/logs?limit=1000"))
        .await;
    let log: Vec<String> = logs["lines"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            format!(
                "{}: {}",
                l["task"].as_str().unwrap_or(""),
                l["data"].as_str().unwrap_or("")
            )
        })
        .collect();
    let log = log.join("\n");
    assert_eq!(run["status"], "success", "{run}\n{log}");
    let task = |name: &str| -> Value {
        run["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap()
            .clone()
    };
    let (build, using) = (task("build"), task("use"));
    let at = |v: &Value| v.as_i64().unwrap();
    let last_step = build["steps"].as_array().unwrap().last().unwrap().clone();
    let first_step = using["steps"].as_array().unwrap()[0].clone();
    Figures {
        publish_s: seconds(at(&build["finished_at"]) - at(&last_step["finished_at"])),
        fetch_s: seconds(at(&first_step["started_at"]) - at(&build["finished_at"])),
        log,
    }
}

/// Two runs on a fresh server with `extra` flags: the figures of each,
/// and the agent's peak memory.
async fn bench_store(dir: &Path, src: &Path, extra: &[String]) -> (Figures, Figures, f64) {
    let db = TestDb::new(Backend::Sqlite);
    let xene = Xene::builder(xene_binary(), db.dir.path().join("data"))
        .args(["--database-url", &db.url, "--no-local-agent"])
        .args(extra)
        .start()
        .await;
    xene.apply(WORKFLOW).await;
    let token = xene.join_token(json!({})).await;
    let agent = Agent::builder(
        agent_binary(),
        &xene.base,
        &token,
        &dir.join(format!("agent-{}", xene_testkit::nonce())),
    )
    .args(["--allow-shell"])
    .start();
    xene_testkit::wait_for("the agent online", Duration::from_secs(60), async || {
        let (_, agents) = xene.get_status("/api/v1/agents").await;
        let online = agents["agents"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| a["state"] == "online");
        if online {
            Ok(())
        } else {
            Err(agents.to_string())
        }
    })
    .await;
    let first = one_run(&xene, src).await;
    let second = one_run(&xene, src).await;
    let rss = peak_rss_mib(agent.pid());
    (first, second, rss)
}

fn uploaded(log: &str) -> String {
    log.lines()
        .find_map(|l| {
            l.split_once("staged big: ")
                .map(|(_, rest)| rest.to_string())
        })
        .unwrap_or_else(|| format!("(no staged line in:\n{log})"))
}

#[tokio::test]
#[ignore = "long: run by `cargo xtask bench-artifacts` on release binaries"]
async fn bench_artifacts() {
    let mib = mib();
    let dir = xene_testkit::private_tempdir();
    let src = dir.path().join("random.bin");
    let made = Command::new("head")
        .args(["-c", &format!("{}", mib * 1024 * 1024), "/dev/urandom"])
        .stdout(std::fs::File::create(&src).unwrap())
        .status()
        .unwrap();
    assert!(made.success());
    // Warm: every figure reads the file from the page cache.
    let cp_s = timed(
        Command::new("cp")
            .arg(&src)
            .arg(dir.path().join("copy.bin")),
    );
    std::fs::remove_file(dir.path().join("copy.bin")).unwrap();
    let s3 = S3::start();
    let url = s3.presigned_put("curl-baseline");
    let curl_s = timed(
        Command::new("curl")
            .args(["-sS", "-f", "-o", "/dev/null", "-T"])
            .arg(&src)
            .arg(&url),
    );
    let s3_flags: Vec<String> = s3.xene_args();

    println!("\n== bench-artifacts: one file of {mib} MiB of random bytes ==");
    println!("cp of the file:                         {cp_s:>7.2} s");
    println!("curl -T of the file to moto:            {curl_s:>7.2} s");
    for (store, extra) in [("local", Vec::new()), ("s3 (moto)", s3_flags)] {
        let (first, second, rss) = bench_store(dir.path(), &src, &extra).await;
        let base = if store == "local" { cp_s } else { curl_s };
        println!("-- {store} store --");
        println!(
            "publish:                                {:>7.2} s  ({:.2}x the baseline)  {}",
            first.publish_s,
            first.publish_s / base,
            uploaded(&first.log)
        );
        println!(
            "fetch:                                  {:>7.2} s  ({:.2}x the baseline)",
            first.fetch_s,
            first.fetch_s / base
        );
        println!(
            "publish again (dedup):                  {:>7.2} s  {}",
            second.publish_s,
            uploaded(&second.log)
        );
        println!(
            "fetch again:                            {:>7.2} s",
            second.fetch_s
        );
        println!("agent peak resident memory:             {rss:>7.1} MiB");
    }
}
