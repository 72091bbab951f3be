//! Live logs and status over the feed WebSocket, and logs as stored: seen
//! before the step ends, resumed without gaps or repeats, a huge log capped
//! with its head and tail and streamed with bounded memory, and a run's
//! feed served by a replica that does not run it.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::process::Xene;
use crate::util::{Backend, TestDb, TestServer};

pub(crate) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub(crate) async fn feed(base: &str, token: &str, path: &str) -> Socket {
    let url = format!("{}{path}", base.replacen("http://", "ws://", 1));
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    tokio_tungstenite::connect_async(request)
        .await
        .expect("feed connects")
        .0
}

/// The next JSON message, skipping pings.
pub(crate) async fn next(socket: &mut Socket) -> Option<Value> {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(60), socket.next())
            .await
            .expect("the feed went quiet")?;
        match message.ok()? {
            Message::Text(text) => return Some(serde_json::from_str(&text).unwrap()),
            Message::Close(_) => return None,
            _ => {}
        }
    }
}

const TICKER: &str = r#"
name: ticker
pipelines:
  tick:
    tasks:
      count:
        steps:
          - name: ticks
            run: |
              for i in $(seq 1 40); do echo "tick $i"; sleep 0.05; done
"#;

fn step_status(run: &Value) -> &str {
    run["tasks"][0]["steps"][0]["status"].as_str().unwrap_or("")
}

#[tokio::test]
async fn a_feed_shows_lines_before_the_step_ends_and_resumes_exactly() {
    let db = TestDb::new(Backend::Sqlite);
    let server = TestServer::start(&db).await;
    assert_eq!(server.post("/api/v1/workflows", TICKER).await.0, 201);
    let (_, run) = server
        .post("/api/v1/workflows/ticker/pipelines/tick/runs", "")
        .await;
    let id = run["id"].as_i64().unwrap();
    let base = format!("http://{}", server.addr);

    // First connection: read until a few lines came, while the step runs.
    let mut socket = feed(&base, &server.token, &format!("/api/v1/runs/{id}/events")).await;
    let mut text = String::new();
    let mut cursor = 0;
    let mut running_when_seen = false;
    let mut last_state = Value::Null;
    while text.lines().count() < 5 {
        let message = next(&mut socket).await.expect("the feed ended early");
        match message["type"].as_str().unwrap() {
            "run" => last_state = message["run"].clone(),
            "log" => {
                text.push_str(message["data"].as_str().unwrap());
                cursor = message["cursor"].as_i64().unwrap();
                running_when_seen = step_status(&last_state) == "running";
            }
            other => panic!("unexpected {other}: {message}"),
        }
    }
    assert!(
        running_when_seen,
        "lines came only after the step: {last_state}"
    );
    drop(socket);

    // Second connection resumes after the last cursor seen, to the end.
    let mut socket = feed(
        &base,
        &server.token,
        &format!("/api/v1/runs/{id}/events?after={cursor}"),
    )
    .await;
    let mut ended = false;
    while let Some(message) = next(&mut socket).await {
        match message["type"].as_str().unwrap() {
            "log" => text.push_str(message["data"].as_str().unwrap()),
            "end" => ended = true,
            _ => {}
        }
    }
    assert!(ended, "the feed said the run was over");
    let expected: String = (1..=40).map(|i| format!("tick {i}\n")).collect();
    assert_eq!(text, expected, "every line once, in order");

    // The raw download says the same.
    let raw = server
        .client
        .get(server.url(&format!("/api/v1/runs/{id}/logs/count/ticks")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(raw, expected);
    server.stop().await;
}

#[tokio::test]
async fn the_runs_feed_reports_status_changes() {
    let db = TestDb::new(Backend::Sqlite);
    let server = TestServer::start(&db).await;
    let base = format!("http://{}", server.addr);
    let mut socket = feed(&base, &server.token, "/api/v1/runs/feed").await;
    assert_eq!(server.post("/api/v1/workflows", TICKER).await.0, 201);
    let (_, run) = server
        .post("/api/v1/workflows/ticker/pipelines/tick/runs", "")
        .await;
    let id = run["id"].as_i64().unwrap();
    let mut statuses = Vec::new();
    while statuses.last().map(String::as_str) != Some("success") {
        let message = next(&mut socket).await.expect("feed open");
        if message["type"] == "run" && message["run"]["id"] == id {
            let status = message["run"]["status"].as_str().unwrap().to_string();
            if statuses.last() != Some(&status) {
                statuses.push(status);
            }
        }
    }
    assert_eq!(
        statuses.first().map(String::as_str),
        Some("queued"),
        "{statuses:?}"
    );
    assert!(statuses.contains(&"running".to_string()), "{statuses:?}");
    server.stop().await;
}

/// Feeds need a viewer; a foreign page's WebSocket with a cookie is refused.
#[tokio::test]
async fn feeds_need_a_credential() {
    let db = TestDb::new(Backend::Sqlite);
    let server = TestServer::start(&db).await;
    let url = format!("ws://{}/api/v1/runs/feed", server.addr);
    let refused = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("401"), "{refused}");
    server.stop().await;
}

/// The peak resident memory of a process, from /proc.
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A step writes 100 MB; the step keeps its first and last 4 MiB with the
/// cut marked between, the raw log streams back, and the server's memory
/// stays bounded throughout.
#[tokio::test]
async fn a_100_mb_log_is_capped_keeping_head_and_tail_with_bounded_memory() {
    let db = TestDb::new(Backend::Sqlite);
    let xene = Xene::start(&db, "big-log", &["--log-cap-per-step", "8MiB"]).await;
    xene.apply(
        r#"
name: big
pipelines:
  p:
    tasks:
      t:
        steps:
          - name: flood
            run: |
              echo FIRST-LINE
              i=0
              line=$(head -c 999 /dev/zero | tr '\0' 'x')
              while [ $i -lt 100000 ]; do echo "$line"; i=$((i+1)); done
              echo LAST-LINE
"#,
    )
    .await;
    let started = Instant::now();
    let id = xene.start_run("big", "p", json!({})).await;
    let run = xene.wait_finished(id, Duration::from_secs(300)).await;
    let took = started.elapsed();
    assert_eq!(run["status"], "success", "{run}");
    let response = xene
        .http
        .get(format!("{}/api/v1/runs/{id}/logs/t/flood", xene.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut stream = response.bytes_stream();
    let (mut bytes, mut head, mut tail) = (0usize, Vec::new(), Vec::new());
    while let Some(piece) = stream.next().await {
        let piece = piece.unwrap();
        if head.len() < 64 {
            head.extend_from_slice(&piece[..piece.len().min(64)]);
        }
        tail.extend_from_slice(&piece);
        if tail.len() > 4096 {
            tail.drain(..tail.len() - 4096);
        }
        bytes += piece.len();
    }
    let head = String::from_utf8_lossy(&head);
    let tail = String::from_utf8_lossy(&tail);
    assert!(head.starts_with("FIRST-LINE\n"), "{head}");
    assert!(tail.ends_with("LAST-LINE\n"), "{tail}");
    let cap = 8 * 1024 * 1024;
    assert!(
        bytes > cap / 2 && bytes < cap + 4 * 1024 * 1024,
        "{bytes} bytes kept"
    );
    let page = xene
        .http
        .get(format!("{}/api/v1/runs/{id}/logs/t/flood", xene.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(page.matches("bytes cut by the per-step log cap").count(), 1);
    let peak = peak_rss_kib(xene.pid());
    eprintln!("100 MB log: {took:?} end to end, server peak RSS {peak} KiB");
    assert!(peak < 300 * 1024, "server peak RSS {peak} KiB");
}

/// With two replicas on one PostgreSQL, a feed on the replica that does
/// not run the run sees its lines and its end.
#[tokio::test]
async fn a_feed_on_one_replica_follows_a_run_on_another() {
    let db = TestDb::new(Backend::Postgres);
    let runner =
        TestServer::start_with(&db, |args| args.local_agent_id = Some("runner".into())).await;
    let viewer = TestServer::start_with(&db, |args| args.no_local_agent = true).await;
    assert_eq!(viewer.post("/api/v1/workflows", TICKER).await.0, 201);
    let (_, run) = viewer
        .post("/api/v1/workflows/ticker/pipelines/tick/runs", "")
        .await;
    let id = run["id"].as_i64().unwrap();
    let mut socket = feed(
        &format!("http://{}", viewer.addr),
        &viewer.token,
        &format!("/api/v1/runs/{id}/events"),
    )
    .await;
    let mut text = String::new();
    let mut ended = false;
    while let Some(message) = next(&mut socket).await {
        match message["type"].as_str().unwrap() {
            "log" => text.push_str(message["data"].as_str().unwrap()),
            "end" => ended = true,
            _ => {}
        }
    }
    assert!(ended);
    assert_eq!(text.lines().count(), 40, "{text}");
    let (_, run) = runner.get(&format!("/api/v1/runs/{id}")).await;
    assert_eq!(run["agents"], json!(["runner"]), "{run}");
    viewer.stop().await;
    runner.stop().await;
}
