//! Figures for remote agents over authenticated WebSockets, with the real
//! release binaries as separate processes (so `/proc` shows each one's own
//! memory): (1) the resident memory of an idle `xene-agent connect`, (2) the
//! server's memory with 1,000 connected agents, (3) the time from "run
//! requested" to "first step started" on a remote agent over loopback, idle
//! and again with the 1,000 agents connected. It prints figures and asserts
//! nothing about time.
//!
//! It builds nothing itself: build the binaries first, then run it:
//!
//! ```sh
//! cargo build --release -p xene-server -p xene-agent
//! cargo bench -p xene-server --bench agents
//! ```
//!
//! `XENE_BIN` and `XENE_AGENT_BIN` point at other binaries than
//! `target/release/{xene,xene-agent}`; `XENE_BENCH_AGENTS` sets the number of
//! WebSockets of (2) (default 1000), `XENE_BENCH_DISPATCHES` the runs of (3)
//! (default 30). The load needs two file descriptors per agent (one in this
//! process, one in the server, which inherits this process's limit): the
//! bench raises its soft limit up to the hard one itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use xene_core::protocol::{AgentMessage, PROTOCOL_VERSION, ServerMessage};
use xene_testkit::{Agent, Xene};

/// Only the real agent's token carries `pool: real`, so no run of the bench
/// ever goes to one of the load's sockets, which execute nothing.
const WORKFLOW: &str = "name: bench\npipelines:\n  noop:\n    selector: {pool: real}\n    tasks:\n      t:\n        steps: [\"true\"]\n";
const START: &str = "/api/v1/workflows/bench/pipelines/noop/runs";
/// Joins and handshakes of the load in flight at once: enough to keep both
/// cores busy without a burst of connects overflowing the listen backlog.
const LOAD_CONCURRENCY: usize = 32;

fn main() {
    let (xene_bin, agent_bin) = binaries();
    raise_open_files_limit();
    let agents: usize = env_number("XENE_BENCH_AGENTS", 1000);
    let dispatches: usize = env_number("XENE_BENCH_DISPATCHES", 30);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(bench(&xene_bin, &agent_bin, agents, dispatches));
}

async fn bench(xene_bin: &Path, agent_bin: &Path, agents: usize, dispatches: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let xene = start_xene(xene_bin, dir.path()).await;
    println!("server {} (pid {})", xene.base, xene.pid());
    xene.apply(WORKFLOW).await;

    // (1) The real agent, idle once it is online.
    let token = xene.join_token(json!({ "pool": "real" })).await;
    let agent = Agent::builder(agent_bin, &xene.base, &token, &dir.path().join("agent"))
        .name("bench-agent")
        .args(["--allow-shell"])
        .start();
    wait_online(&xene, 1, Duration::from_secs(30), || agent.log_text()).await;
    // Settle: allocator caches, the first heartbeat, lazily built TLS roots.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = memory(agent.pid());
    println!(
        "(1) idle agent (pid {}): VmRSS {:.1} MB, VmHWM {:.1} MB (target < 15 MB)",
        agent.pid(),
        mb(idle.rss_kb),
        mb(idle.hwm_kb)
    );

    // (3) Before the load, so it measures the path and not the load.
    dispatch_latency(&xene, dispatches, "(3) idle server").await;

    // (2) The load's sockets on top of the real agent.
    let before = memory(xene.pid());
    println!(
        "(2) server before the load: VmRSS {:.1} MB, VmHWM {:.1} MB",
        mb(before.rss_kb),
        mb(before.hwm_kb)
    );
    let started = Instant::now();
    let load = Load::connect(&xene, agents).await;
    wait_online(&xene, 1 + agents, Duration::from_secs(120), || {
        agent.log_text()
    })
    .await;
    let online = memory(xene.pid());
    println!(
        "(2) server with {agents} more agents online ({:.1} s to join and connect them): \
         VmRSS {:.1} MB, VmHWM {:.1} MB, {:.1} KB per agent",
        started.elapsed().as_secs_f64(),
        mb(online.rss_kb),
        mb(online.hwm_kb),
        (online.rss_kb as f64 - before.rss_kb as f64) / agents as f64
    );
    // Two rounds of heartbeats and resyncs, so every session has touched all
    // the state it keeps while steady.
    tokio::time::sleep(Duration::from_millis(2 * load.heartbeat_ms + 1000)).await;
    let steady = memory(xene.pid());
    println!(
        "(2) server steady with {} agents (after {} ms): VmRSS {:.1} MB, VmHWM {:.1} MB, \
         {:.1} KB per agent (target < 200 MB)",
        1 + agents,
        2 * load.heartbeat_ms + 1000,
        mb(steady.rss_kb),
        mb(steady.hwm_kb),
        (steady.rss_kb as f64 - before.rss_kb as f64) / agents as f64
    );
    let cpu = cpu_ticks(xene.pid());
    let window = Duration::from_secs(5);
    tokio::time::sleep(window).await;
    println!(
        "(2) server CPU while {} agents idle: {:.0} % of one core",
        1 + agents,
        cpu_ticks(xene.pid()).saturating_sub(cpu) as f64
            / ticks_per_second()
            / window.as_secs_f64()
            * 100.0
    );
    let statements = |text: &str| text.matches("sqlx::query").count();
    let before_window = statements(&xene.log_text());
    let window = Duration::from_secs(10);
    tokio::time::sleep(window).await;
    println!(
        "(2) database statements while {} agents idle: {:.1} per second (target 0)",
        1 + agents,
        (statements(&xene.log_text()) - before_window) as f64 / window.as_secs_f64()
    );
    let agent_now = memory(agent.pid());
    println!(
        "(1) idle agent after all that: VmRSS {:.1} MB",
        mb(agent_now.rss_kb)
    );

    // (3) again: every connected session hears of every placement.
    dispatch_latency(
        &xene,
        dispatches,
        &format!("(3) with {} agents connected", 1 + agents),
    )
    .await;
    let lost = load.stop();
    if lost > 0 {
        println!("note: {lost} load connections ended early");
    }
}

/// Serial runs on the real agent; the server's own timestamps.
async fn dispatch_latency(xene: &Xene, n: usize, what: &str) {
    // One run first, so the shell runtime's work directory and the
    // connections exist before the clock matters.
    run_to_end(xene).await;
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let run = run_to_end(xene).await;
        let first_step = run["tasks"][0]["steps"][0]["started_at"]
            .as_i64()
            .unwrap_or_else(|| panic!("first step never started: {run}"));
        samples.push((first_step - run["requested_at"].as_i64().expect("requested_at")) as f64);
    }
    report(
        &format!("{what}: remote agent, requested -> first step started (target < 25 ms)"),
        "ms",
        &mut samples,
    );
}

/// Agents that say hello and heartbeat like a real one, but run nothing:
/// one task per WebSocket in this process.
struct Load {
    tasks: JoinSet<()>,
    heartbeat_ms: u64,
}

impl Load {
    async fn connect(xene: &Xene, n: usize) -> Self {
        let gate = Arc::new(Semaphore::new(LOAD_CONCURRENCY));
        let mut tasks = JoinSet::new();
        let (welcomed, mut welcomes) = tokio::sync::mpsc::unbounded_channel();
        for i in 0..n {
            let gate = gate.clone();
            let http = xene.http.clone();
            let base = xene.base.clone();
            let welcomed = welcomed.clone();
            tasks.spawn(async move {
                let permit = gate.acquire_owned().await.expect("semaphore");
                let credential = join(&http, &base, &format!("load-{i}")).await;
                let mut socket = open(&base, &credential).await;
                let heartbeat_ms = hello(&mut socket).await;
                drop(permit);
                let _ = welcomed.send(heartbeat_ms);
                keep_alive(socket, heartbeat_ms).await;
            });
        }
        drop(welcomed);
        let mut heartbeat_ms = 0;
        for _ in 0..n {
            heartbeat_ms = welcomes
                .recv()
                .await
                .expect("a load connection failed before its welcome");
        }
        Self {
            tasks,
            heartbeat_ms,
        }
    }

    /// Drops every connection; how many had ended by themselves.
    fn stop(mut self) -> usize {
        let mut ended = 0;
        while let Some(done) = self.tasks.try_join_next() {
            if done.is_ok() {
                ended += 1;
            }
        }
        self.tasks.abort_all();
        ended
    }
}

async fn join(http: &reqwest::Client, base: &str, name: &str) -> String {
    let response = http
        .post(format!("{base}/api/v1/agents/join-tokens"))
        .body(json!({ "labels": { "pool": "load" } }).to_string())
        .send()
        .await
        .expect("POST join-tokens");
    assert_eq!(response.status(), 201, "join token");
    let token: Value = response.json().await.expect("JSON");
    let response = http
        .post(format!("{base}/api/v1/agents/join"))
        .body(json!({ "token": token["token"], "name": name }).to_string())
        .send()
        .await
        .expect("POST join");
    assert_eq!(response.status(), 201, "join");
    let credential: Value = response.json().await.expect("JSON");
    credential["credential"]
        .as_str()
        .expect("credential")
        .to_string()
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(base: &str, credential: &str) -> Socket {
    let url = format!("{}/api/v1/agents/connect", base.replacen("http", "ws", 1));
    let mut request = url.into_client_request().expect("request");
    request.headers_mut().insert(
        "Authorization",
        format!("Bearer {credential}").parse().expect("header"),
    );
    // tungstenite zero-fills its 128 KiB default read buffer: 125 MB across
    // the load for sockets that only ever read a welcome.
    let config = WebSocketConfig::default().read_buffer_size(4 << 10);
    tokio_tungstenite::connect_async_with_config(request, Some(config), true)
        .await
        .expect("WebSocket connects")
        .0
}

/// Says hello; the heartbeat period the welcome gives.
async fn hello(socket: &mut Socket) -> u64 {
    let hello = AgentMessage::Hello {
        protocol: PROTOCOL_VERSION,
        agent_version: env!("CARGO_PKG_VERSION").into(),
        labels: BTreeMap::new(),
        runtimes: vec!["shell".into()],
        capacity: 1,
        attempts: vec![],
    };
    send(socket, &hello).await;
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => {
                match serde_json::from_str::<ServerMessage>(&text).expect("a server message") {
                    ServerMessage::Welcome { heartbeat_ms, .. } => return heartbeat_ms,
                    other => panic!("expected welcome, got {other:?}"),
                }
            }
            Some(Ok(_)) => {}
            other => panic!("no welcome: {other:?}"),
        }
    }
}

/// Heartbeats until the connection ends; reading is what answers pings.
async fn keep_alive(mut socket: Socket, heartbeat_ms: u64) {
    let mut beat = tokio::time::interval(Duration::from_millis(heartbeat_ms));
    beat.tick().await;
    loop {
        tokio::select! {
            _ = beat.tick() => send(&mut socket, &AgentMessage::Heartbeat { attempts: vec![] }).await,
            frame = socket.next() => match frame {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

async fn send(socket: &mut Socket, message: &AgentMessage) {
    let text = serde_json::to_string(message).expect("serializes");
    socket
        .send(Message::Text(text.into()))
        .await
        .expect("WebSocket send");
}

/// The server on a free loopback port, with no built-in agent.
async fn start_xene(binary: &Path, dir: &Path) -> Xene {
    Xene::builder(binary, dir.join("data"))
        .log(dir.join("xene.log"))
        .args(["--no-local-agent"])
        // Every statement logged, so idle queries can be counted.
        .env("RUST_LOG", "warn,xene_server=info,sqlx::query=trace")
        .start()
        .await
}

/// Waits until `n` agents are online; `why` explains a timeout.
async fn wait_online(xene: &Xene, n: usize, timeout: Duration, why: impl Fn() -> String) {
    let started = Instant::now();
    loop {
        let stats: Value = xene.get("/api/v1/stats").await;
        if stats["agents_by_state"]["online"].as_u64().unwrap_or(0) >= n as u64 {
            return;
        }
        assert!(
            started.elapsed() < timeout,
            "{n} agents never came online: {stats}\n--- agent ---\n{}\n--- server ---\n{}",
            why(),
            xene.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts a run and polls it until it ends successfully.
async fn run_to_end(xene: &Xene) -> Value {
    let started_run: Value = xene.post(START, "{}").await;
    let id = started_run["id"].as_i64().expect("run id");
    let started = Instant::now();
    loop {
        let run: Value = xene.get(&format!("/api/v1/runs/{id}")).await;
        if run["finished_at"].is_i64() {
            assert_eq!(run["status"], "success", "{run}");
            return run;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "run {id} stuck: {run}\n{}",
            xene.log_text()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The release binaries, or a clear word on how to build them.
fn binaries() -> (PathBuf, PathBuf) {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let find = |variable: &str, name: &str| {
        std::env::var_os(variable)
            .map(PathBuf::from)
            .unwrap_or_else(|| target.join("release").join(name))
    };
    let (xene, agent) = (
        find("XENE_BIN", "xene"),
        find("XENE_AGENT_BIN", "xene-agent"),
    );
    let missing: Vec<String> = [&xene, &agent]
        .into_iter()
        .filter(|path| !path.is_file())
        .map(|path| path.display().to_string())
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "this benchmark runs the release binaries, and {} missing: build them first with\n\n    \
             cargo build --release -p xene-server -p xene-agent\n\n\
             (or point XENE_BIN and XENE_AGENT_BIN at them)",
            missing.join(" and ") + if missing.len() == 1 { " is" } else { " are" }
        );
        std::process::exit(2);
    }
    (xene, agent)
}

/// Two descriptors per load agent, here and in the server (which inherits
/// this limit): the usual soft limit of 1024 is not enough for 1,000.
#[allow(unsafe_code)]
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit for the call's duration.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit; failing leaves the old limit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    println!("open files limit: {}", limit.rlim_cur);
}

struct Memory {
    rss_kb: u64,
    hwm_kb: u64,
}

fn memory(pid: u32) -> Memory {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    Memory {
        rss_kb: field("VmRSS:"),
        hwm_kb: field("VmHWM:"),
    }
}

/// User plus system time of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    // The command name may hold spaces; the fields after it do not.
    let fields: Vec<&str> = stat[stat.rfind(')').expect("comm") + 2..]
        .split(' ')
        .collect();
    // utime and stime are fields 14 and 15, the 12th and 13th after comm.
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

#[allow(unsafe_code)]
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn env_number(variable: &str, default: usize) -> usize {
    std::env::var(variable)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
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
