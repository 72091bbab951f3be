//! The figures of `cargo xtask bench-tasks` (issue 24: runs placed task by
//! task). Ignored: that command builds the release binaries and runs it
//! with `XENE_BIN` and `XENE_AGENT_BIN` pointing at them (without them it
//! measures the debug build). `XENE_BENCH_TASKS` names the parts
//! (`fanout,chain,latency`, default all). It prints figures and asserts
//! nothing about time; every figure comes from the server's own times
//! (a run's `requested_at` and `finished_at`, an attempt's `ready_at` and
//! `started_at`), so this driver's speed is not in them. SQLite.
//!
//! - fanout: 1,000 independent `sleep 0.1` tasks in one run over 4
//!   `xene-agent connect` of capacity 8 (ideal 1000/32 × 0.1 s = 3.1 s,
//!   target ≤ 1.25×), and the same run on 1 agent;
//! - chain: a 40-task chain of `true` through the server (built-in agent;
//!   one remote agent) against `xene-agent run` of the same file (target
//!   ≤ 2×), medians of 10;
//! - latency: ready → started of a task on a warm agent while 1,000 idle
//!   protocol clients (the load test's) are connected (target p99 < 25 ms).
//!   It needs about 2,000 open files.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use xene_testkit::bins::{agent_binary, xene_binary};
use xene_testkit::{Agent, Xene};

use crate::util::{Backend, TestDb};

const FANOUT: usize = 1000;
const CHAIN: usize = 40;
const CHAIN_RUNS: usize = 10;
const IDLE_AGENTS: usize = 1000;
const LATENCY_RUNS: usize = 100;
/// Each remote agent's capacity.
const AGENT_CAPACITY: usize = 8;

fn workflow() -> String {
    let step =
        |run: &str| format!("        steps:\n          - name: s\n            run: '{run}'\n");
    let mut fanout = String::new();
    for i in 0..FANOUT {
        fanout += &format!("      t{i:04}:\n{}", step("sleep 0.1"));
    }
    let mut chain = String::new();
    for i in 1..=CHAIN {
        let after = match i {
            1 => String::new(),
            _ => format!("        depends_on: [c{:02}]\n", i - 1),
        };
        chain += &format!("      c{i:02}:\n{after}{}", step("true"));
    }
    format!(
        "name: bench
pipelines:
  fanout:
    tasks:
{fanout}  chain:
    tasks:
{chain}  one:
    selector: {{pool: real}}
    tasks:
      t:
{}",
        step("true")
    )
}

async fn start_xene(db: &TestDb, extra: &[&str]) -> Xene {
    Xene::builder(xene_binary(), db.dir.path().join("data"))
        .args(["--database-url", &db.url])
        .args(extra)
        .start()
        .await
}

fn start_agent(xene: &Xene, token: &str, dir: &Path, name: &str) -> Agent {
    Agent::builder(agent_binary(), &xene.base, token, &dir.join(name))
        .name(name)
        .args(["--allow-shell", "--capacity", &AGENT_CAPACITY.to_string()])
        .start()
}

async fn wait_online(xene: &Xene, n: usize) {
    xene_testkit::wait_for("agents online", Duration::from_secs(120), async || {
        let (_, agents) = xene.get_status("/api/v1/agents").await;
        let online = agents["agents"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["builtin"] == false && a["state"] == "online")
            .count();
        if online >= n {
            Ok(())
        } else {
            Err(format!("{online} of {n} online"))
        }
    })
    .await;
}

/// Starts a run of `pipeline`, waits for its end (polling every `poll`)
/// and gives it; it must succeed. Runs go one at a time, so the newest
/// run of the list is this one: the list is polled, not the run with its
/// 1,000 tasks, whose every read would take the machine's time.
async fn run(xene: &Xene, pipeline: &str, poll: Duration) -> Value {
    let path = format!("/api/v1/workflows/bench/pipelines/{pipeline}/runs");
    let (status, body) = xene.post_status(&path, "{}").await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_i64().unwrap();
    xene_testkit::wait_for("the run to end", Duration::from_secs(600), async || {
        let (_, list) = xene.get_status("/api/v1/runs?limit=1").await;
        let newest = &list["runs"][0];
        let status = newest["status"].as_str().unwrap_or_default();
        if newest["id"] == id && ["success", "error", "cancelled", "unknown"].contains(&status) {
            return Ok(());
        }
        tokio::time::sleep(poll).await;
        Err(format!("{newest}"))
    })
    .await;
    let (_, run) = xene.get_status(&format!("/api/v1/runs/{id}")).await;
    assert_eq!(run["status"], "success", "{run}");
    run
}

/// Requested → finished, by the server's clock, in ms.
fn took_ms(run: &Value) -> f64 {
    (run["finished_at"].as_i64().unwrap() - run["requested_at"].as_i64().unwrap()) as f64
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn at(samples: &[f64], p: f64) -> f64 {
    samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)]
}

/// Where the time of `runs` went, by their attempts' times (the server's
/// clock, ms): medians of ready → placed (the scheduler), placed → started
/// (the session, the dispatch, the agent's spawn, `TaskStarted` back),
/// started → finished (the step, `TaskFinished` back) and, for a chain,
/// a task's end → the next one ready; and the share of the slots' time the
/// steps held (`slots` slots over each run's span). For a fan-out, also
/// how long a freed slot stayed empty: an agent's k-th placement past its
/// capacity refills the slot of its (k - capacity)-th end.
async fn phases(db: &TestDb, runs: &[Value], slots: usize, chain: bool) -> String {
    let storage = xene_server::storage::Db::connect(&db.url).await.unwrap();
    let (mut placing, mut starting, mut running, mut handing) = (vec![], vec![], vec![], vec![]);
    let (mut busy, mut span) = (0.0, 0.0);
    let mut refilling = Vec::new();
    for run in runs {
        type Row = (i64, Option<i64>, Option<i64>, Option<i64>, Option<String>);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT ready_at, placed_at, started_at, finished_at, agent_id FROM task_attempts \
             WHERE run_id = $1 ORDER BY ready_at, id",
        )
        .bind(run["id"].as_i64().unwrap())
        .fetch_all(storage.pool())
        .await
        .unwrap();
        let mut per_agent = std::collections::BTreeMap::<String, (Vec<i64>, Vec<i64>)>::new();
        for (_, placed, _, finished, agent) in &rows {
            let (places, ends) = per_agent
                .entry(agent.clone().unwrap_or_default())
                .or_default();
            places.extend(*placed);
            ends.extend(*finished);
        }
        for (mut places, mut ends) in per_agent.into_values() {
            places.sort();
            ends.sort();
            for (k, placed) in places.iter().enumerate().skip(AGENT_CAPACITY) {
                if let Some(end) = ends.get(k - AGENT_CAPACITY) {
                    refilling.push((placed - end) as f64);
                }
            }
        }
        let mut ended: Option<i64> = None;
        for (ready, placed, started, finished, _) in rows {
            let ms = |from: Option<i64>, to: Option<i64>| Some((to? - from?) as f64);
            placing.extend(ms(Some(ready), placed));
            starting.extend(ms(placed, started));
            running.extend(ms(started, finished));
            busy += ms(started, finished).unwrap_or(0.0);
            if chain {
                handing.extend(ms(ended, Some(ready)));
            }
            ended = finished;
        }
        span += took_ms(run) * slots as f64;
    }
    let mut said = format!(
        "ready → placed {:.0} ms, placed → started {:.0} ms, started → finished {:.0} ms",
        median(placing),
        median(starting),
        median(running)
    );
    if chain {
        said += &format!(", a task's end → the next ready {:.0} ms", median(handing));
    } else if !refilling.is_empty() {
        refilling.sort_by(f64::total_cmp);
        said += &format!(
            ", a freed slot → filled again {:.0} ms (p90 {:.0} ms)",
            at(&refilling, 0.5),
            at(&refilling, 0.9)
        );
    }
    said + &format!(
        " (medians); steps held the slots {:.0} % of the time",
        busy / span * 100.0
    )
}

async fn fanout(agents: usize) -> (f64, String) {
    let db = TestDb::new(Backend::Sqlite);
    let xene = start_xene(&db, &["--no-local-agent"]).await;
    xene.apply(&workflow()).await;
    let mut fleet = Vec::new();
    for i in 0..agents {
        let token = xene.join_token(json!({})).await;
        fleet.push(start_agent(
            &xene,
            &token,
            db.dir.path(),
            &format!("fan-{i}"),
        ));
    }
    wait_online(&xene, agents).await;
    let before = write_turns(&xene).await;
    let run = run(&xene, "fanout", Duration::from_millis(500)).await;
    let after = write_turns(&xene).await;
    let mut phases = phases(&db, std::slice::from_ref(&run), agents * 8, false).await;
    let took = took_ms(&run) / 1000.0;
    let [taken, waited, held] = [0, 1, 2].map(|i| after[i] - before[i]);
    phases.push_str(&format!(
        "; SQLite write turns: {taken:.0} ({:.1} a task), held {held:.2} s ({:.0} % of the run), \
         waited for {waited:.2} s in all",
        taken / 1000.0,
        100.0 * held / took
    ));
    (took, phases)
}

/// The server's SQLite write-turn counters (taken, seconds waited, seconds
/// held), from its metrics.
async fn write_turns(xene: &Xene) -> [f64; 3] {
    let text = reqwest::get(format!("{}/metrics", xene.base))
        .await
        .expect("metrics answer")
        .text()
        .await
        .expect("metrics text");
    [
        "xene_sqlite_write_turns_total",
        "xene_sqlite_write_turn_wait_seconds_total",
        "xene_sqlite_write_turn_held_seconds_total",
    ]
    .map(|name| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    })
}

/// Medians of the chain through a server with its built-in agent, through
/// one remote agent, and of `xene-agent run` of the same file, in ms.
async fn chain() -> (f64, f64, f64, Vec<String>) {
    let mut through = Vec::new();
    let mut said = Vec::new();
    for builtin in [true, false] {
        let db = TestDb::new(Backend::Sqlite);
        let flags: &[&str] = match builtin {
            true => &["--local-agent-shell", "true", "--local-agent-capacity", "8"],
            false => &["--no-local-agent"],
        };
        let xene = start_xene(&db, flags).await;
        xene.apply(&workflow()).await;
        let _agent = if builtin {
            None
        } else {
            let token = xene.join_token(json!({})).await;
            let agent = start_agent(&xene, &token, db.dir.path(), "chain");
            wait_online(&xene, 1).await;
            Some(agent)
        };
        // The first run warms the caches; it is not counted.
        run(&xene, "chain", Duration::from_millis(20)).await;
        let mut runs = Vec::new();
        for _ in 0..CHAIN_RUNS {
            runs.push(run(&xene, "chain", Duration::from_millis(20)).await);
        }
        through.push(median(runs.iter().map(took_ms).collect()));
        said.push(phases(&db, &runs, 1, true).await);
    }
    let dir = xene_testkit::private_tempdir();
    let file = dir.path().join("bench.yaml");
    std::fs::write(&file, workflow()).unwrap();
    let mut local = Vec::new();
    for i in 0..=CHAIN_RUNS {
        let began = Instant::now();
        let status = std::process::Command::new(agent_binary())
            .arg("run")
            .arg(&file)
            .args(["--pipeline", "chain"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "xene-agent run of the chain");
        if i > 0 {
            local.push(began.elapsed().as_secs_f64() * 1000.0);
        }
    }
    (through[0], through[1], median(local), said)
}

/// Ready → started of `one`'s task, ms, sorted, with the idle clients on.
async fn latency() -> Vec<f64> {
    let db = TestDb::new(Backend::Sqlite);
    let xene = start_xene(&db, &["--no-local-agent"]).await;
    xene.apply(&workflow()).await;
    let token = xene.join_token(json!({ "pool": "real" })).await;
    let _agent = start_agent(&xene, &token, db.dir.path(), "warm");
    wait_online(&xene, 1).await;

    let measured = Arc::new(crate::load::Measured::default());
    let gate = Arc::new(tokio::sync::Semaphore::new(32));
    let mut idle = Vec::new();
    for _ in 0..IDLE_AGENTS {
        let credential = join(&xene).await;
        let permit = gate.clone().acquire_owned().await.unwrap();
        let (base, measured) = (xene.base.clone(), measured.clone());
        idle.push(tokio::spawn(crate::load::agent(
            base, credential, measured, permit,
        )));
    }
    wait_online(&xene, IDLE_AGENTS + 1).await;

    // Warm: the agent's first spawns, the server's caches.
    for _ in 0..5 {
        run(&xene, "one", Duration::from_millis(5)).await;
    }
    let mut ids = Vec::new();
    for _ in 0..LATENCY_RUNS {
        ids.push(
            run(&xene, "one", Duration::from_millis(5)).await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    let storage = xene_server::storage::Db::connect(&db.url).await.unwrap();
    let mut samples = Vec::new();
    for id in ids {
        let (ready, started): (i64, i64) = sqlx::query_as(
            "SELECT ready_at, started_at FROM task_attempts WHERE run_id = $1 AND number = 1",
        )
        .bind(id)
        .fetch_one(storage.pool())
        .await
        .unwrap();
        samples.push((started - ready) as f64);
    }
    measured
        .done
        .store(true, std::sync::atomic::Ordering::Relaxed);
    for client in idle {
        client.abort();
    }
    samples.sort_by(f64::total_cmp);
    samples
}

async fn join(xene: &Xene) -> String {
    let (status, token) = xene.post_status("/api/v1/agents/join-tokens", "{}").await;
    assert_eq!(status, 201, "{token}");
    let body = json!({ "token": token["token"] }).to_string();
    let (status, joined) = xene.post_status("/api/v1/agents/join", body).await;
    assert_eq!(status, 201, "{joined}");
    joined["credential"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a benchmark: run by cargo xtask bench-tasks"]
async fn bench_tasks() {
    let parts = std::env::var("XENE_BENCH_TASKS").unwrap_or_default();
    let wanted = |part: &str| parts.is_empty() || parts.split(',').any(|p| p == part);
    println!(
        "bench-tasks: xene {}, xene-agent {}",
        xene_binary().display(),
        agent_binary().display()
    );
    if wanted("fanout") {
        let ideal = FANOUT as f64 / 32.0 * 0.1;
        let (four, phases) = fanout(4).await;
        println!(
            "fanout: {FANOUT} × sleep 0.1 over 4 agents of capacity 8: {four:.2} s \
             (ideal {ideal:.2} s: {:.2}×, target ≤ 1.25×)",
            four / ideal
        );
        println!("fanout: 4 agents: {phases}");
        let (one, phases) = fanout(1).await;
        println!(
            "fanout: the same run on 1 agent of capacity 8: {one:.2} s (ideal {:.2} s: {:.2}×)",
            ideal * 4.0,
            one / (ideal * 4.0)
        );
        println!("fanout: 1 agent: {phases}");
    }
    if wanted("chain") {
        let (builtin, remote, local, phases) = chain().await;
        println!(
            "chain: {CHAIN} × true, medians of {CHAIN_RUNS}: xene-agent run {local:.0} ms; \
             through the server, built-in agent {builtin:.0} ms ({:.2}×), one remote agent \
             {remote:.0} ms ({:.2}×) (target ≤ 2×)",
            builtin / local,
            remote / local
        );
        println!("chain: built-in agent: {}", phases[0]);
        println!("chain: remote agent: {}", phases[1]);
    }
    if wanted("latency") {
        let samples = latency().await;
        println!(
            "latency: ready → started, warm agent, {IDLE_AGENTS} idle agents connected: \
             p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms ({} runs; target p99 < 25 ms)",
            at(&samples, 0.5),
            at(&samples, 0.99),
            samples[samples.len() - 1],
            samples.len()
        );
    }
}
