//! The load test: simulated agents over real WebSockets (they speak the
//! protocol and report each run done at once, so the server is what is
//! measured), many runs started through the API, and live log viewers on
//! runs that print for a while, against one real `xene` process. Prints
//! throughput, latency percentiles and the server's peak memory; asserts
//! only that every run ended, every viewer saw every line, and the server
//! stayed up.
//!
//! `load_short` is the short form (SQLite, 50 agents, 500 runs, 10 viewers), part
//! of the test suite. `load_long` (ignored; `cargo xtask load`) takes
//! `XENE_LOAD_AGENTS` (1,000), `XENE_LOAD_RUNS` (10,000) and
//! `XENE_LOAD_VIEWERS` (100), on SQLite and then PostgreSQL.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use xene_core::event::{LogStream, RunEvent};
use xene_core::protocol::{AgentMessage, AttemptRef, PROTOCOL_VERSION, ServerMessage};
use xene_core::status::{StepStatus, TaskStatus};

use crate::process::Xene;
use crate::util::{Backend, TestDb};

const WORKFLOW: &str = "name: load
pipelines:
  quick:
    tasks:
      t:
        steps:
          - name: s
            run: 'true'
  watched:
    tasks:
      t:
        steps:
          - name: s
            run: 'true'
";

/// Log lines a watched run prints, one every `LINE_EVERY`.
const WATCHED_LINES: usize = 20;
const LINE_EVERY: Duration = Duration::from_millis(250);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[derive(Default)]
pub(crate) struct Measured {
    /// Run id -> when its start request returned, and when its agent got it
    /// and when the server acknowledged its last event.
    posted: Mutex<HashMap<i64, Instant>>,
    dispatched: Mutex<HashMap<i64, Instant>>,
    stored: Mutex<HashMap<i64, Instant>>,
    start_latency: Mutex<Vec<Duration>>,
    /// From a log line's creation on the agent to a viewer receiving it.
    view_latency: Mutex<Vec<i64>>,
    lines_seen: AtomicUsize,
    /// Connection attempts the server refused or closed before the
    /// WebSocket was up.
    pub(crate) refused: AtomicUsize,
    /// Set to make the agents hang up (at their next heartbeat).
    pub(crate) done: AtomicBool,
}

fn percentiles(what: &str, mut samples: Vec<f64>) -> String {
    if samples.is_empty() {
        return format!("{what}: none");
    }
    samples.sort_by(f64::total_cmp);
    let at = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    format!(
        "{what}: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} samples)",
        at(0.50),
        at(0.90),
        at(0.99),
        samples[samples.len() - 1],
        samples.len()
    )
}

fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

pub(crate) async fn join(xene: &Xene) -> String {
    let (status, token) = xene.post("/api/v1/agents/join-tokens", "{}").await;
    assert_eq!(status, 201, "{token}");
    let (status, joined) = xene
        .post(
            "/api/v1/agents/join",
            json!({ "token": token["token"] }).to_string(),
        )
        .await;
    assert_eq!(status, 201, "{joined}");
    joined["credential"].as_str().unwrap().to_string()
}

/// The events of a task attempt done at once, `lines` log lines (stamped
/// with their creation time) included.
fn events(lines: usize) -> Vec<RunEvent> {
    let mut all = started();
    for _ in 0..lines {
        all.push(log_line());
    }
    all.extend(finish());
    all
}

/// The task and its step start.
fn started() -> Vec<RunEvent> {
    vec![
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

fn log_line() -> RunEvent {
    RunEvent::Log {
        task: "t".into(),
        step: "s".into(),
        stream: LogStream::Stdout,
        data: format!("at={}", now_ms()),
    }
}

fn finish() -> Vec<RunEvent> {
    vec![
        RunEvent::StepFinished {
            task: "t".into(),
            step: "s".into(),
            status: StepStatus::Success,
            exit_code: Some(0),
            duration_ms: 1,
        },
        RunEvent::TaskFinished {
            task: "t".into(),
            status: TaskStatus::Success,
            output: None,
            duration_ms: 1,
            attempt: 1,
            error: None,
            retry_in_ms: None,
        },
    ]
}

/// One simulated agent (protocol 2): hello, then each task dispatch is
/// reported done (a watched run's task prints its lines over time first),
/// with heartbeats. A
/// connection refused or closed before the WebSocket is up is tried again
/// after a short backoff, as a real agent does, for up to 60 s.
pub(crate) async fn agent(
    base: String,
    credential: String,
    measured: Arc<Measured>,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let url = format!("{}/api/v1/agents/connect", base.replace("http://", "ws://"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut backoff = Duration::from_millis(50);
    let socket = loop {
        let mut request = url.as_str().into_client_request().unwrap();
        request.headers_mut().insert(
            "Authorization",
            format!("Bearer {credential}").parse().unwrap(),
        );
        match tokio_tungstenite::connect_async(request).await {
            Ok((socket, _)) => break socket,
            Err(e) => {
                assert!(Instant::now() < deadline, "an agent connects: {e}");
                measured.refused.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    };
    drop(permit);
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<AgentMessage>();
    let writer = tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            let text = serde_json::to_string(&message).unwrap();
            if sink.send(Message::text(text)).await.is_err() {
                break;
            }
        }
    });
    tx.send(AgentMessage::Hello {
        protocol: PROTOCOL_VERSION,
        agent_version: "load".into(),
        labels: Default::default(),
        runtimes: vec!["shell".into()],
        capacity: 4,
        attempts: vec![],
    })
    .unwrap();
    let held: Arc<Mutex<Vec<AttemptRef>>> = Arc::default();
    let mut heartbeat = tokio::time::interval(Duration::from_secs(2));
    // Last event number per attempt, and its run: the ack of that one
    // means "stored".
    let mut last_seq: HashMap<AttemptRef, (u64, i64)> = HashMap::new();
    loop {
        tokio::select! {
            _ = heartbeat.tick() => {
                if measured.done.load(Ordering::Relaxed) {
                    break;
                }
                let attempts = held.lock().unwrap().clone();
                let _ = tx.send(AgentMessage::Heartbeat { attempts });
            }
            frame = stream.next() => {
                let Some(Ok(frame)) = frame else { break };
                let Message::Text(text) = frame else { continue };
                let Ok(message) = serde_json::from_str::<ServerMessage>(text.as_str()) else { continue };
                match message {
                    ServerMessage::TaskDispatch(d) => {
                        let (attempt, run_id) = (d.attempt, d.run_id);
                        measured.dispatched.lock().unwrap().insert(run_id, Instant::now());
                        held.lock().unwrap().push(attempt);
                        if d.pipeline_name == "watched" {
                            let first = started();
                            let lines = first.len();
                            last_seq.insert(attempt, ((lines + WATCHED_LINES + finish().len() - 1) as u64, run_id));
                            let tx = tx.clone();
                            tokio::spawn(async move {
                                let _ = tx.send(AgentMessage::TaskEvents { attempt, first_seq: 0, events: first });
                                for i in 0..WATCHED_LINES {
                                    tokio::time::sleep(LINE_EVERY).await;
                                    let _ = tx.send(AgentMessage::TaskEvents {
                                        attempt, first_seq: (lines + i) as u64, events: vec![log_line()],
                                    });
                                }
                                let _ = tx.send(AgentMessage::TaskEvents {
                                    attempt, first_seq: (lines + WATCHED_LINES) as u64, events: finish(),
                                });
                            });
                        } else {
                            let all = events(1);
                            last_seq.insert(attempt, (all.len() as u64 - 1, run_id));
                            let _ = tx.send(AgentMessage::TaskEvents { attempt, first_seq: 0, events: all });
                        }
                    }
                    ServerMessage::TaskAck { attempt, seq } if last_seq.get(&attempt).map(|l| l.0) == Some(seq) => {
                        let (_, run_id) = last_seq.remove(&attempt).unwrap();
                        measured.stored.lock().unwrap().insert(run_id, Instant::now());
                        held.lock().unwrap().retain(|a| *a != attempt);
                    }
                    ServerMessage::StopTask { attempt } | ServerMessage::CancelTask { attempt } => {
                        held.lock().unwrap().retain(|a| *a != attempt);
                    }
                    _ => {}
                }
            }
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// A live log viewer: the run's feed until its end, timing each line.
async fn viewer(base: String, token: String, run: i64, measured: Arc<Measured>) -> usize {
    let mut request = format!(
        "{}/api/v1/runs/{run}/events",
        base.replace("http://", "ws://")
    )
    .into_client_request()
    .unwrap();
    request
        .headers_mut()
        .insert("Authorization", format!("Bearer {token}").parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("a viewer connects");
    let mut lines = 0;
    while let Some(Ok(frame)) = socket.next().await {
        let Message::Text(text) = frame else { continue };
        let message: Value = serde_json::from_str(text.as_str()).unwrap();
        match message["type"].as_str() {
            Some("log") => {
                let now = now_ms();
                for line in message["data"].as_str().unwrap_or("").lines() {
                    if let Some(at) = line.strip_prefix("at=").and_then(|a| a.parse::<i64>().ok()) {
                        measured.view_latency.lock().unwrap().push(now - at);
                        lines += 1;
                    }
                }
            }
            Some("end") => break,
            _ => {}
        }
    }
    measured.lines_seen.fetch_add(lines, Ordering::Relaxed);
    lines
}

async fn load(backend: Backend, agents: usize, runs: usize, viewers: usize) {
    let db = TestDb::new(backend);
    let xene = Xene::start(&db, "load", &["--no-local-agent"]).await;
    xene.apply(WORKFLOW).await;
    let measured = Arc::new(Measured::default());
    let began = Instant::now();

    // Agents join and connect, 32 at a time.
    let gate = Arc::new(Semaphore::new(32));
    let mut credentials = Vec::new();
    for _ in 0..agents {
        credentials.push(join(&xene).await);
    }
    let mut agent_tasks = Vec::new();
    for credential in credentials {
        let permit = gate.clone().acquire_owned().await.unwrap();
        let (base, measured) = (xene.base.clone(), measured.clone());
        agent_tasks.push(tokio::spawn(agent(base, credential, measured, permit)));
    }
    xene.wait_agents_online(agents).await;
    let connected = began.elapsed();
    let rss_idle = peak_rss_mib(xene.pid());

    // The watched runs first, each with its viewer; then the rest.
    let admin = crate::util::admin_token(&db.dir.path().join("data-load"));
    let mut viewer_tasks = Vec::new();
    for _ in 0..viewers {
        let id = xene.start_run("load", "watched", json!({})).await;
        let (base, token, measured) = (xene.base.clone(), admin.clone(), measured.clone());
        viewer_tasks.push(tokio::spawn(viewer(base, token, id, measured)));
    }
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(16));
    let mut starts = Vec::new();
    for _ in 0..runs {
        let permit = gate.clone().acquire_owned().await.unwrap();
        let (http, base, measured) = (xene.http.clone(), xene.base.clone(), measured.clone());
        starts.push(tokio::spawn(async move {
            let sent = Instant::now();
            let answer = http
                .post(format!("{base}/api/v1/workflows/load/pipelines/quick/runs"))
                .body("{}")
                .send()
                .await
                .expect("start a run");
            assert_eq!(answer.status(), 201);
            let body: Value = answer.json().await.unwrap();
            let now = Instant::now();
            measured.start_latency.lock().unwrap().push(now - sent);
            measured
                .posted
                .lock()
                .unwrap()
                .insert(body["id"].as_i64().unwrap(), now);
            drop(permit);
        }));
    }
    for start in starts {
        start.await.unwrap();
    }
    let requested = started.elapsed();
    // Every quick run stored.
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let stored = measured.stored.lock().unwrap().len();
        if stored >= runs + viewers {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {stored} of {} runs ended\n{}",
            runs + viewers,
            xene.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all_done = started.elapsed();
    for viewer in viewer_tasks {
        let lines = tokio::time::timeout(Duration::from_secs(120), viewer)
            .await
            .expect("every viewer sees its run end")
            .unwrap();
        assert_eq!(lines, WATCHED_LINES, "a viewer missed lines");
    }
    measured.done.store(true, Ordering::Relaxed);
    let (status, stats) = xene.get("/api/v1/stats").await;
    assert_eq!(status, 200);
    let successes = stats["runs_by_status"]["success"].as_i64().unwrap_or(0);
    assert_eq!(successes as usize, runs + viewers, "{stats}");
    let peak = peak_rss_mib(xene.pid());

    let (posted, dispatched, stored) = (
        measured.posted.lock().unwrap(),
        measured.dispatched.lock().unwrap(),
        measured.stored.lock().unwrap(),
    );
    let since_posted = |at: &HashMap<i64, Instant>| -> Vec<f64> {
        posted
            .iter()
            .filter_map(|(id, p)| {
                at.get(id)
                    .map(|a| a.saturating_duration_since(*p).as_secs_f64() * 1000.0)
            })
            .collect()
    };
    eprintln!(
        "load ({backend:?}, debug build): {agents} agents connected in {:.1} s (server {rss_idle:.0} MiB); \
         {runs} runs requested in {:.1} s ({:.0}/s), all stored after {:.1} s ({:.0} runs/s end to end); \
         {viewers} viewers saw {} lines",
        connected.as_secs_f64(),
        requested.as_secs_f64(),
        runs as f64 / requested.as_secs_f64(),
        all_done.as_secs_f64(),
        runs as f64 / all_done.as_secs_f64(),
        measured.lines_seen.load(Ordering::Relaxed),
    );
    eprintln!(
        "load: {}",
        percentiles(
            "start request",
            measured
                .start_latency
                .lock()
                .unwrap()
                .iter()
                .map(|d| d.as_secs_f64() * 1000.0)
                .collect()
        )
    );
    eprintln!(
        "load: {}",
        percentiles("requested -> dispatched", since_posted(&dispatched))
    );
    eprintln!(
        "load: {}",
        percentiles("requested -> result stored", since_posted(&stored))
    );
    eprintln!(
        "load: {}",
        percentiles(
            "log line -> live viewer",
            measured
                .view_latency
                .lock()
                .unwrap()
                .iter()
                .map(|&ms| ms as f64)
                .collect()
        )
    );
    eprintln!("load: server peak memory (VmHWM) {peak:.0} MiB");
    for task in agent_tasks {
        task.abort();
    }
}

/// The short form, in every test run.
#[tokio::test(flavor = "multi_thread")]
async fn load_short() {
    load(Backend::Sqlite, 50, 500, 10).await;
}

/// The long form (`cargo xtask load`), on SQLite and PostgreSQL.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "long: run by cargo xtask load"]
async fn load_long() {
    let number = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(default)
    };
    let (agents, runs, viewers) = (
        number("XENE_LOAD_AGENTS", 1000),
        number("XENE_LOAD_RUNS", 10_000),
        number("XENE_LOAD_VIEWERS", 100),
    );
    // `XENE_LOAD_BACKEND=sqlite` or `postgres` for one of them.
    let only = std::env::var("XENE_LOAD_BACKEND").unwrap_or_default();
    for (name, backend) in [("sqlite", Backend::Sqlite), ("postgres", Backend::Postgres)] {
        if only.is_empty() || only == name {
            load(backend, agents, runs, viewers).await;
        }
    }
}
