//! What a rogue agent or a crowd of editors can make the server spend:
//! frames, validations, hashing, page bytes (connections: `guests.rs`).

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::process::Xene;
use crate::util::{BACKENDS, Backend, TestDb, TestServer};

async fn join_agent(xene: &Xene) -> String {
    let (status, token) = xene
        .post(
            "/api/v1/agents/join-tokens",
            json!({ "labels": {} }).to_string(),
        )
        .await;
    assert_eq!(status, 201, "{token}");
    let (status, joined) = xene
        .post(
            "/api/v1/agents/join",
            json!({ "token": token["token"], "name": "rogue" }).to_string(),
        )
        .await;
    assert_eq!(status, 201, "{joined}");
    joined["credential"].as_str().unwrap().to_string()
}

/// Sends one text frame as the agent's first message; true when the server
/// then closed the connection within 20 s.
async fn first_message_closes(xene: &Xene, credential: &str, text: String) -> bool {
    let url = xene.base.replace("http://", "ws://") + "/api/v1/agents/connect";
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "Authorization",
        format!("Bearer {credential}").parse().unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    // The server may close while the frame is still going out.
    let _ = socket.send(Message::text(text)).await;
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// M6: an agent's frame over the protocol's limit is refused from its
/// header, before it is read or parsed, and what the log quotes of an
/// agent's unexpected message is bounded.
#[tokio::test]
async fn an_agents_oversized_or_unexpected_message_costs_little() {
    let db = TestDb::new(Backend::Sqlite);
    let xene = Xene::start(&db, "bounds-m6", &["--no-local-agent"]).await;
    let credential = join_agent(&xene).await;
    let refs = |n: usize| -> String {
        let refs: Vec<String> = (0..n)
            .map(|i| format!("{{\"run_id\":{i},\"attempt\":1}}"))
            .collect();
        format!("[{}]", refs.join(","))
    };
    // 45 MB: a hello with far too many runs.
    let huge = format!(
        "{{\"type\":\"hello\",\"protocol\":1,\"agent_version\":\"x\",\"labels\":{{}},\"runtimes\":[],\"capacity\":1,\"running\":{}}}",
        refs(1_500_000)
    );
    assert!(huge.len() > 40_000_000, "{}", huge.len());
    assert!(first_message_closes(&xene, &credential, huge).await);
    // Under the limit, but not a hello: 2.5 MB the log must not copy.
    let heartbeat = format!("{{\"type\":\"heartbeat\",\"running\":{}}}", refs(90_000));
    assert!(heartbeat.len() > 2_000_000, "{}", heartbeat.len());
    assert!(first_message_closes(&xene, &credential, heartbeat).await);
    // Malformed, with the input in serde's message.
    let odd = json!({ "type": "x".repeat(2_000_000) }).to_string();
    assert!(first_message_closes(&xene, &credential, odd).await);

    let ended = |log: &str| log.matches("agent session ended").count();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while ended(&xene.log_text()) < 3 {
        assert!(std::time::Instant::now() < deadline, "{}", xene.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = xene.log_text();
    let too_long = log.lines().find(|l| l.contains("Message too long"));
    assert!(too_long.is_some(), "the size refusal is logged:\n{log}");
    for line in log.lines() {
        assert!(line.len() < 1_000, "a log line of {} bytes", line.len());
    }
}

/// A pipeline dense enough that validating it takes a while (and about
/// 85 MB): 1,000 tasks, each depending on the 180 before it.
fn dense_spec() -> String {
    let mut text = String::from("name: dense\npipelines:\n  p:\n    tasks:\n");
    for i in 0..1000usize {
        text.push_str(&format!("      t{i}:\n"));
        let deps: Vec<String> = (i.saturating_sub(180)..i)
            .map(|d| format!("t{d}"))
            .collect();
        if !deps.is_empty() {
            text.push_str(&format!("        depends_on: [{}]\n", deps.join(",")));
            text.push_str("        if: \"tasks.t0.status == 'success'\"\n");
        }
        text.push_str("        steps: [x]\n");
    }
    text
}

/// M5: validations beyond the machine's share wait their turn or are
/// answered 503 with Retry-After; nothing is stored by a dry run.
#[tokio::test]
async fn validations_beyond_the_limit_are_answered_busy() {
    let db = TestDb::new(Backend::Sqlite);
    let server = TestServer::start_with(&db, |a| a.no_local_agent = true).await;
    let spec = dense_spec();
    assert!(spec.len() > 800_000);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let asked = cores * 3 + 12;
    let answers = futures::future::join_all((0..asked).map(|_| {
        server
            .client
            .post(server.url("/api/v1/workflows?dry_run=true"))
            .body(spec.clone())
            .send()
    }))
    .await;
    let (mut applied, mut busy) = (0, 0);
    for answer in answers {
        let answer = answer.expect("answered");
        match answer.status().as_u16() {
            201 => applied += 1,
            503 => {
                let retry: u64 = answer.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!((1..=10).contains(&retry));
                busy += 1;
            }
            other => panic!("{other}: {}", answer.text().await.unwrap()),
        }
    }
    assert!(applied >= 1 && applied <= cores * 3, "{applied} applied");
    assert_eq!(applied + busy, asked);
    let (status, list) = server.get("/api/v1/workflows").await;
    assert_eq!(status, 200);
    assert_eq!(list["workflows"], json!([]), "a dry run stores nothing");
    // Once the crowd is gone, a validation is served again.
    let (status, body) = server.post("/api/v1/workflows?dry_run=true", spec).await;
    assert_eq!(status, 201, "{body}");
    server.stop().await;
}

/// L2: the agent binary's checksum is computed once per version of the file,
/// however many ask at once, and follows a changed binary.
#[tokio::test]
async fn the_agent_binary_is_hashed_once_per_version() {
    use sha2::{Digest, Sha256};
    let db = TestDb::new(Backend::Sqlite);
    let binary = db.dir.path().join("xene-agent");
    let first: Vec<u8> = (0..8_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&binary, &first).unwrap();
    let path = binary.clone();
    let server = TestServer::start_with(&db, move |a| {
        a.no_local_agent = true;
        a.agent_binary = Some(path);
    })
    .await;
    let url = server.url("/download/xene-agent.sha256");
    let anonymous = reqwest::Client::new();
    let before = xene_server::http::install::digests_computed();
    let answers = futures::future::join_all((0..20).map(|_| anonymous.get(&url).send())).await;
    let expected = format!("{}  xene-agent\n", hex::encode(Sha256::digest(&first)));
    for answer in answers {
        let answer = answer.unwrap();
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.text().await.unwrap(), expected);
    }
    assert_eq!(xene_server::http::install::digests_computed() - before, 1);
    // A new binary (another size, so another version) is hashed anew, once.
    let second = &first[..first.len() - 1000];
    std::fs::write(&binary, second).unwrap();
    let expected = format!("{}  xene-agent\n", hex::encode(Sha256::digest(second)));
    for _ in 0..3 {
        let text = anonymous
            .get(&url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(text, expected);
    }
    assert_eq!(xene_server::http::install::digests_computed() - before, 2);
    server.stop().await;
}

/// L1: a page of the runs list holds about 1 MiB of params at most, however
/// large `limit`; `next_cursor` goes on, and every run comes whole.
#[tokio::test]
async fn run_list_pages_are_bounded_in_bytes() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start_with(&db, |a| a.no_local_agent = true).await;
        let names: Vec<String> = (0..14).map(|i| format!("p{i}")).collect();
        let params: String = names.iter().map(|n| format!("      {n}: x\n")).collect();
        let spec = format!(
            "name: big\npipelines:\n  p:\n    params:\n{params}    tasks:\n      t:\n        steps: [x]\n"
        );
        let (status, body) = server.post("/api/v1/workflows", spec).await;
        assert_eq!(status, 201, "{body}");
        let value = "v".repeat(64_000);
        let big: serde_json::Map<String, Value> =
            names.iter().map(|n| (n.clone(), json!(value))).collect();
        let mut started = Vec::new();
        for i in 0..6 {
            let params = if i < 2 { json!({}) } else { json!(big) };
            let (status, run) = server
                .post(
                    "/api/v1/workflows/big/pipelines/p/runs",
                    json!({ "params": params }).to_string(),
                )
                .await;
            assert_eq!(status, 201, "{run}");
            started.push(run["id"].as_i64().unwrap());
        }
        let mut seen = Vec::new();
        let mut cursor = String::new();
        let mut pages = 0;
        loop {
            let answer = server
                .client
                .get(server.url(&format!("/api/v1/runs?limit=500{cursor}")))
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), 200);
            let text = answer.text().await.unwrap();
            assert!(
                text.len() < 2_500_000,
                "{backend:?}: a page of {} bytes",
                text.len()
            );
            let page: Value = serde_json::from_str(&text).unwrap();
            for run in page["runs"].as_array().unwrap() {
                let id = run["id"].as_i64().unwrap();
                if id >= started[2] {
                    assert_eq!(run["params"]["p13"], json!(value), "params come whole");
                }
                seen.push(id);
            }
            pages += 1;
            match page["next_cursor"].as_str() {
                Some(next) => cursor = format!("&cursor={next}"),
                None => break,
            }
        }
        started.reverse();
        assert_eq!(seen, started, "{backend:?}: every run once, newest first");
        assert!(pages >= 4, "{backend:?}: {pages} pages");
        server.stop().await;
    }
}

/// Sends `GET path` on a fresh connection and returns it unread.
async fn ask(server: SocketAddr, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(server).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// L2: clients that hang up while the digest is being made do not waste it
/// (it is kept, and those asking meanwhile wait for it): one stranger asking
/// and hanging up over and over costs one hash per version, not one each.
#[tokio::test]
async fn the_agent_binary_is_hashed_once_when_askers_hang_up() {
    use sha2::{Digest, Sha256};
    let db = TestDb::new(Backend::Sqlite);
    let binary = db.dir.path().join("xene-agent");
    let content: Vec<u8> = (0..16_000_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(&binary, &content).unwrap();
    let path = binary.clone();
    let server = TestServer::start_with(&db, move |a| {
        a.no_local_agent = true;
        a.agent_binary = Some(path);
    })
    .await;
    let computed = xene_server::http::install::digests_computed;
    let before = computed();
    let first = ask(server.addr, "/download/xene-agent.sha256").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while computed() == before {
        assert!(std::time::Instant::now() < deadline, "no hashing began");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Hangs up while its digest is being made; others come and do the same.
    drop(first);
    for _ in 0..3 {
        let again = ask(server.addr, "/download/xene-agent.sha256").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(again);
    }
    let text = reqwest::get(server.url("/download/xene-agent.sha256"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let expected = format!("{}  xene-agent\n", hex::encode(Sha256::digest(&content)));
    assert_eq!(text, expected);
    assert_eq!(computed() - before, 1, "digests computed");
    server.stop().await;
}

/// M6: an agent of an older version measured its batch of events before
/// JSON escaping (about 1 MiB); output full of control characters makes
/// that about 6 MiB as sent, which the server must take, not refuse (the
/// agent would send it again forever).
#[tokio::test]
async fn an_older_agents_escaped_batch_is_taken() {
    use xene_core::event::{LogStream, RunEvent};
    use xene_core::protocol::{AgentMessage, PROTOCOL_VERSION, ServerMessage};
    let db = TestDb::new(Backend::Sqlite);
    let server = TestServer::start_with(&db, |a| a.no_local_agent = true).await;
    let spec = "name: old\npipelines:\n  p:\n    selector: {pool: old}\n    tasks:\n      t:\n        steps:\n          - name: s\n            run: echo hi\n";
    let (status, body) = server.post("/api/v1/workflows", spec).await;
    assert_eq!(status, 201, "{body}");
    let (status, token) = server
        .post(
            "/api/v1/agents/join-tokens",
            json!({ "labels": { "pool": "old" } }).to_string(),
        )
        .await;
    assert_eq!(status, 201, "{token}");
    let (status, joined) = server
        .post(
            "/api/v1/agents/join",
            json!({ "token": token["token"], "name": "old" }).to_string(),
        )
        .await;
    assert_eq!(status, 201, "{joined}");
    let credential = joined["credential"].as_str().unwrap();
    let (status, run) = server
        .post("/api/v1/workflows/old/pipelines/p/runs", "")
        .await;
    assert_eq!(status, 201, "{run}");

    let mut request = format!("ws://{}/api/v1/agents/connect", server.addr)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "Authorization",
        format!("Bearer {credential}").parse().unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let send = |message: AgentMessage| Message::text(serde_json::to_string(&message).unwrap());
    socket
        .send(send(AgentMessage::Hello {
            protocol: PROTOCOL_VERSION,
            agent_version: "0.old".into(),
            labels: Default::default(),
            runtimes: vec!["shell".into()],
            capacity: 1,
            attempts: vec![],
        }))
        .await
        .unwrap();
    let dispatch = loop {
        if let ServerMessage::TaskDispatch(dispatch) = next_message(&mut socket).await {
            break dispatch;
        }
    };
    assert_eq!(dispatch.run_id, run["id"].as_i64().unwrap());
    let attempt = dispatch.attempt;
    // 1 MiB of output before escaping: 16 lines of 64 KiB control characters.
    let line = "\u{1}".repeat(64 * 1024);
    let mut events = vec![
        RunEvent::TaskStarted {
            task: "t".into(),
            attempt: 1,
        },
        RunEvent::StepStarted {
            task: "t".into(),
            step: "s".into(),
        },
    ];
    events.extend((0..16).map(|_| RunEvent::Log {
        task: "t".into(),
        step: "s".into(),
        stream: LogStream::Stdout,
        data: line.clone(),
    }));
    let batch = serde_json::to_string(&AgentMessage::TaskEvents {
        attempt,
        first_seq: 0,
        events,
    })
    .unwrap();
    assert!(batch.len() > 6_000_000, "{} bytes", batch.len());
    socket.send(Message::text(batch)).await.unwrap();
    let acked = loop {
        if let ServerMessage::TaskAck { attempt, seq } = next_message(&mut socket).await {
            break (attempt, seq);
        }
    };
    assert_eq!(acked, (attempt, 17));
    server.stop().await;
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The server's next protocol message; panics, with why, if the session ends.
async fn next_message(socket: &mut Socket) -> xene_core::protocol::ServerMessage {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(20), socket.next())
            .await
            .expect("the server answers within 20 s");
        match frame {
            Some(Ok(Message::Text(text))) => return serde_json::from_str(text.as_str()).unwrap(),
            Some(Ok(Message::Close(close))) => panic!("the session ended: {close:?}"),
            Some(Err(e)) => panic!("the session ended: {e}"),
            None => panic!("the session ended"),
            Some(Ok(_)) => {}
        }
    }
}

/// L1: a run that enters the list's filter after a page's runs were chosen
/// and before they are read (here a new run, on the first page) does not
/// shift the page: the page holds the runs chosen, and its cursor skips none.
#[tokio::test]
async fn a_run_arriving_while_a_page_is_read_shifts_nothing() {
    use xene_server::storage::runs::{self, RunFilter};
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start_with(&db, |a| a.no_local_agent = true).await;
        let spec = "name: w\npipelines:\n  p:\n    tasks:\n      t:\n        steps: [x]\n";
        let (status, body) = server.post("/api/v1/workflows", spec).await;
        assert_eq!(status, 201, "{body}");
        let start = async || {
            let (status, run) = server
                .post("/api/v1/workflows/w/pipelines/p/runs", "")
                .await;
            assert_eq!(status, 201, "{run}");
            run["id"].as_i64().unwrap()
        };
        let mut started = Vec::new();
        for _ in 0..3 {
            started.push(start().await);
        }
        let storage = xene_server::storage::Db::connect(&db.url).await.unwrap();
        let filter = RunFilter {
            limit: Some(2),
            ..Default::default()
        };
        let (ids, next) = runs::list_ids(&storage, &filter).await.unwrap();
        assert_eq!(ids, [started[2], started[1]], "{backend:?}");
        start().await;
        let page = runs::listed(&storage, &ids).await.unwrap();
        let read: Vec<i64> = page.iter().map(|r| r.id).collect();
        assert_eq!(read, ids, "{backend:?}: the page read is the page chosen");
        let filter = RunFilter {
            limit: Some(2),
            cursor: next,
            ..Default::default()
        };
        let (rest, _) = runs::list_ids(&storage, &filter).await.unwrap();
        assert_eq!(rest, [started[0]], "{backend:?}: the next page goes on");
        server.stop().await;
    }
}
