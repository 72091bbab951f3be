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
//! verify, place). Against `cp` of the same file (the median of three;
//! local store) and `curl -T` of it to the same moto (S3), each timed
//! here. Then the same run again: what it uploads (nothing) and how long
//! publishing takes. And the agent's peak resident memory (`VmHWM`).
//!
//! Then a cache of `XENE_BENCH_CACHE_FILES` small files (default 10,000;
//! 0 skips it) through the same server: a miss that saves it (save = the
//! task's end − its last step's end), then a hit that restores it (the
//! task's start − its first step's start), against `tar -c | tar -x` of
//! the same files.

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

/// The cache case: the step copies the files in on a miss; a hit restores
/// them before it, so it copies nothing.
const CACHE_WORKFLOW: &str = "
name: cachebench
pipelines:
  p:
    tasks:
      build:
        caches:
          - name: files
            key: bench-files
            paths: [files]
        steps:
          - name: make
            run: test -d files || cp -r \"$XENE_PARAM_SRC\" files
    params:
      src: {type: string, required: true}
";

fn cache_files() -> usize {
    std::env::var("XENE_BENCH_CACHE_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

/// `count` small files (0.5 to 4 KiB, 100 to a directory) under `dir`.
fn make_small_files(dir: &Path, count: usize) {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..count {
        let sub = dir.join(format!("d{:03}", i / 100));
        if i.is_multiple_of(100) {
            std::fs::create_dir_all(&sub).unwrap();
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = 512 + (seed % 3584) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|j| (seed.rotate_left(j as u32 % 64) >> (j % 8)) as u8)
            .collect();
        std::fs::write(sub.join(format!("f{i:05}.txt")), bytes).unwrap();
    }
}

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

/// Runs pipeline `p` of `workflow` with param `src` to its end: the run
/// and its log as `task: data` lines.
async fn run_to_end(xene: &Xene, workflow: &str, src: &Path) -> (Value, String) {
    let body = json!({ "params": { "src": src.display().to_string() } });
    let (status, run) = xene
        .post_status(
            &format!("/api/v1/workflows/{workflow}/pipelines/p/runs"),
            body.to_string(),
        )
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
    (run, log)
}

fn task(run: &Value, name: &str) -> Value {
    run["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap()
        .clone()
}

fn at(v: &Value) -> i64 {
    v.as_i64().unwrap()
}

/// From the task's start on its agent to its first step's start.
fn before_first_step(task: &Value) -> f64 {
    seconds(at(&task["steps"][0]["started_at"]) - at(&task["started_at"]))
}

/// From the task's last step's end to its end.
fn after_last_step(task: &Value) -> f64 {
    let last = task["steps"].as_array().unwrap().last().unwrap().clone();
    seconds(at(&task["finished_at"]) - at(&last["finished_at"]))
}

async fn one_run(xene: &Xene, src: &Path) -> Figures {
    let (run, log) = run_to_end(xene, "bench", src).await;
    let (build, using) = (task(&run, "build"), task(&run, "use"));
    Figures {
        publish_s: after_last_step(&build),
        fetch_s: seconds(at(&using["steps"][0]["started_at"]) - at(&build["finished_at"])),
        log,
    }
}

/// The cache case: a miss that saves the files, then a hit that restores
/// them.
struct CacheFigures {
    miss_s: f64,
    save_s: f64,
    hit_s: f64,
    log: String,
}

async fn cache_runs(xene: &Xene, files: &Path) -> CacheFigures {
    let (first, first_log) = run_to_end(xene, "cachebench", files).await;
    let (second, second_log) = run_to_end(xene, "cachebench", files).await;
    let log = format!("{first_log}\n{second_log}");
    assert!(
        second_log.contains("cache files: hit"),
        "the second run did not hit:\n{log}"
    );
    let (first, second) = (task(&first, "build"), task(&second, "build"));
    CacheFigures {
        miss_s: before_first_step(&first),
        save_s: after_last_step(&first),
        hit_s: before_first_step(&second),
        log,
    }
}

/// Two runs on a fresh server with `extra` flags: the figures of each,
/// and the agent's peak memory.
async fn bench_store(
    dir: &Path,
    src: &Path,
    files: Option<&Path>,
    extra: &[String],
) -> (Figures, Figures, Option<CacheFigures>, f64) {
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
    let cache = match files {
        Some(files) => {
            xene.apply(CACHE_WORKFLOW).await;
            Some(cache_runs(&xene, files).await)
        }
        None => None,
    };
    (first, second, cache, rss)
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
    // Warm: every figure reads the file from the page cache. The median of
    // three: one `cp` beside other work varies by several times.
    let mut cps: Vec<f64> = (0..3)
        .map(|_| {
            let took = timed(
                Command::new("cp")
                    .arg(&src)
                    .arg(dir.path().join("copy.bin")),
            );
            std::fs::remove_file(dir.path().join("copy.bin")).unwrap();
            took
        })
        .collect();
    cps.sort_by(f64::total_cmp);
    let cp_s = cps[1];
    let s3 = S3::start();
    let url = s3.presigned_put("curl-baseline");
    let curl_s = timed(
        Command::new("curl")
            .args(["-sS", "-f", "-o", "/dev/null", "-T"])
            .arg(&src)
            .arg(&url),
    );
    let s3_flags: Vec<String> = s3.xene_args();
    let count = cache_files();
    let files = dir.path().join("small");
    let cache_base = if count > 0 {
        make_small_files(&files, count);
        // Warm, then timed: what a restore does, by tar.
        let through_tar = |to: &str| {
            let to = dir.path().join(to);
            std::fs::create_dir(&to).unwrap();
            timed(Command::new("sh").arg("-c").arg(format!(
                "tar -cf - -C '{}' . | tar -xf - -C '{}'",
                files.display(),
                to.display()
            )))
        };
        through_tar("warm");
        Some(through_tar("untarred"))
    } else {
        None
    };

    println!("\n== bench-artifacts: one file of {mib} MiB of random bytes ==");
    println!(
        "cp of the file (median of 3):           {cp_s:>7.2} s  ({:.2} to {:.2} s)",
        cps[0], cps[2]
    );
    println!("curl -T of the file to moto:            {curl_s:>7.2} s");
    if let Some(tar_s) = cache_base {
        let label = format!("tar | tar of {count} small files:");
        println!("{label:<40}{tar_s:>7.2} s");
    }
    for (store, extra) in [("local", Vec::new()), ("s3 (moto)", s3_flags)] {
        let small = cache_base.map(|_| files.as_path());
        let (first, second, cache, rss) = bench_store(dir.path(), &src, small, &extra).await;
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
        if let (Some(cache), Some(tar_s)) = (cache, cache_base) {
            let label = format!("cache of {count} files, miss (lookup):");
            println!("{label:<40}{:>7.2} s", cache.miss_s);
            println!(
                "cache save:                             {:>7.2} s  ({:.2}x tar | tar)",
                cache.save_s,
                cache.save_s / tar_s
            );
            println!(
                "cache hit (restore):                    {:>7.2} s  ({:.2}x tar | tar)",
                cache.hit_s,
                cache.hit_s / tar_s
            );
            for line in cache.log.lines().filter(|l| l.contains("cache files:")) {
                println!("  {line}");
            }
        }
    }
}
