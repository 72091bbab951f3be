//! Hostile input about artifacts (issue 25) at the server's edges, on
//! SQLite and PostgreSQL: a bare WebSocket client plays the agent
//! (`agent_socket.rs`) and sends what a real agent never would, and a
//! plain HTTP client uses the URLs it is given as a thief would.
//!
//! - an agent asks about files only for a task attempt it holds, and only
//!   for an artifact that attempt's task publishes; a manifest with a path
//!   leading out is refused;
//! - the local store's upload URL an agent is given names its blob, size,
//!   method and an expiry of minutes, signed: a longer life, another
//!   method, and bytes of another digest are refused and nothing is kept; the right bytes are kept, the commit stages them and
//!   the task's success publishes them;
//! - once the attempt ended, its files are no longer taken.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;
use sha2::Digest as _;
use xene_core::artifact::{Digest, ManifestEntry};
use xene_core::event::RunEvent;
use xene_core::protocol::{AgentMessage, AttemptRef, FilesAnswer, FilesRequest, ServerMessage};
use xene_core::status::TaskStatus;

use crate::agent_socket::{Socket, connect, hello_with, join, next_task, receive, send};
use crate::gateway::task_events;
use crate::util::{BACKENDS, TestDb, TestServer};

const SPEC: &str = "
name: hostile
pipelines:
  p:
    selector: {pool: raw}
    tasks:
      build:
        steps: ['true']
        publish:
          - name: binary
            path: out
";

/// Asks the server about files and reads its answer, passing over what
/// else it says.
async fn ask(
    socket: &mut Socket,
    attempt: AttemptRef,
    id: u64,
    request: FilesRequest,
) -> FilesAnswer {
    send(
        socket,
        &AgentMessage::Files {
            attempt,
            id,
            request,
        },
    )
    .await;
    loop {
        match receive(socket).await {
            Ok(ServerMessage::Files {
                id: answered,
                answer,
                ..
            }) if answered == id => return answer,
            Ok(_) => continue,
            Err(closed) => panic!("the server closed the socket: {closed:?}"),
        }
    }
}

fn refused(answer: FilesAnswer) -> String {
    match answer {
        FilesAnswer::Refused { error } => error,
        other => panic!("not refused: {other:?}"),
    }
}

fn entry(path: &str, bytes: &[u8]) -> ManifestEntry {
    let hex = hex::encode(sha2::Sha256::digest(bytes));
    ManifestEntry {
        path: path.into(),
        size: bytes.len() as u64,
        mode: 0o644,
        digest: Digest::parse(&format!("sha256:{hex}")).unwrap(),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// `url` with its query parameter `name` set to `value`.
fn with_param(url: &str, name: &str, value: &str) -> String {
    let (path, query) = url.split_once('?').unwrap();
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((n, _)) if n == name => format!("{n}={value}"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

fn param<'a>(url: &'a str, name: &str) -> &'a str {
    url.split_once('?')
        .unwrap()
        .1
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {name} in {url}"))
}

#[tokio::test]
async fn agents_publish_only_what_they_hold_and_only_whole_blobs() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start_with(&db, |a| a.no_local_agent = true).await;
        let (status, body) = server.post("/api/v1/workflows", SPEC).await;
        assert_eq!(status, 201, "{body}");
        let (_, holder) = join(&server, json!({ "pool": "raw" })).await;
        let (_, other) = join(&server, json!({ "pool": "elsewhere" })).await;
        let (status, run) = server
            .post("/api/v1/workflows/hostile/pipelines/p/runs", "")
            .await;
        assert_eq!(status, 201, "{run}");
        let run_id = run["id"].as_i64().unwrap();
        let mut a = connect(&server, &holder, &hello_with(1, vec![])).await;
        let dispatch = next_task(&mut a).await;
        let attempt = dispatch.attempt;
        let started = RunEvent::TaskStarted {
            task: "build".into(),
            attempt: 1,
        };
        send(&mut a, &task_events(attempt, 0, &[started])).await;
        let hello = entry("app", b"hello\n");
        let publish = |name: &str, files: Vec<ManifestEntry>| FilesRequest::Publish {
            name: name.into(),
            files,
        };

        // Another agent, or an attempt nobody holds: refused.
        let mut b = connect(&server, &other, &hello_with(1, vec![])).await;
        let error = refused(ask(&mut b, attempt, 1, publish("binary", vec![hello.clone()])).await);
        assert!(error.contains("not held by this agent"), "{error}");
        let nobody = AttemptRef {
            id: attempt.id + 100,
        };
        let error = refused(ask(&mut a, nobody, 2, publish("binary", vec![hello.clone()])).await);
        assert!(error.contains("not held by this agent"), "{error}");
        // An artifact its task does not publish, a path leading out.
        let error = refused(ask(&mut a, attempt, 3, publish("other", vec![hello.clone()])).await);
        assert!(error.contains("publishes no artifact"), "{error}");
        let error = refused(
            ask(
                &mut a,
                attempt,
                4,
                publish("binary", vec![entry("../app", b"x")]),
            )
            .await,
        );
        assert!(error.contains(".."), "{error}");

        // The upload URL: this blob, this size, PUT, minutes.
        let FilesAnswer::Uploads { uploads } =
            ask(&mut a, attempt, 5, publish("binary", vec![hello.clone()])).await
        else {
            panic!("no uploads")
        };
        assert_eq!(uploads.len(), 1, "{uploads:?}");
        let upload = &uploads[0];
        assert_eq!((&upload.digest, upload.size), (&hello.digest, 6));
        assert_eq!(upload.parts.len(), 1, "{upload:?}");
        assert_eq!(upload.upload_id, None);
        let url = upload.parts[0].url.clone();
        assert_eq!(upload.parts[0].method, "PUT");
        assert!(
            url.starts_with(&format!("/api/v1/blobs/{}?", hello.digest)),
            "{url}"
        );
        assert_eq!(param(&url, "method"), "PUT");
        assert_eq!(param(&url, "size"), "6");
        let expires: i64 = param(&url, "expires").parse().unwrap();
        let ttl = expires - now_ms();
        assert!(
            (9 * 60_000..=10 * 60_000).contains(&ttl),
            "valid for {ttl} ms: {url}"
        );

        let blob = db
            .dir
            .path()
            .join("artifacts")
            .join(crate::artifacts::blob_key(hello.digest.as_str()));
        let http = reqwest::Client::new();
        let put = async |url: &str, body: &'static [u8]| {
            http.put(server.url(url))
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        };
        // (Tampered and expired URLs: files_service.rs.) A longer life or
        // another method than signed: refused.
        for (what, bad) in [
            (
                "later expiry",
                with_param(&url, "expires", &(expires + 3_600_000).to_string()),
            ),
            ("another method", with_param(&url, "method", "GET")),
        ] {
            let status = put(&bad, b"hello\n").await;
            assert!((400..500).contains(&status), "{what}: {status}");
        }
        let status = http
            .get(server.url(&url))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        assert!(
            (400..500).contains(&status),
            "a PUT's URL used to GET: {status}"
        );
        // Bytes of another digest, then too few: refused, nothing kept.
        assert!(
            (400..500).contains(&put(&url, b"hellO\n").await),
            "another digest"
        );
        assert!((400..500).contains(&put(&url, b"hello").await), "too short");
        assert!(!blob.exists(), "a refused upload was kept");
        let temp = db.dir.path().join("artifacts/tmp");
        assert_eq!(
            std::fs::read_dir(&temp).unwrap().count(),
            0,
            "a refused upload's temp file"
        );
        assert_eq!(put(&url, b"hello\n").await, 200);
        assert_eq!(std::fs::read(&blob).unwrap(), b"hello\n");

        let commit = FilesRequest::Commit {
            name: "binary".into(),
            files: vec![hello.clone()],
            // One PUT: nothing to complete (only multipart uploads are).
            completed: vec![],
        };
        assert_eq!(
            ask(&mut a, attempt, 6, commit.clone()).await,
            FilesAnswer::Committed
        );
        // Staged, not published, while the attempt runs.
        let (_, listing) = server
            .get(&format!("/api/v1/runs/{run_id}/artifacts"))
            .await;
        assert_eq!(listing["artifacts"], json!([]), "{listing}");
        let finished = RunEvent::TaskFinished {
            task: "build".into(),
            status: TaskStatus::Success,
            output: None,
            duration_ms: 1,
            attempt: 1,
            error: None,
            retry_in_ms: None,
        };
        send(&mut a, &task_events(attempt, 1, &[finished])).await;
        let run = server.wait_for_run(run_id).await;
        assert_eq!(run["status"], "success", "{run}");
        let (_, listing) = server
            .get(&format!("/api/v1/runs/{run_id}/artifacts"))
            .await;
        assert_eq!(
            listing["artifacts"][0]["entries"][0]["digest"],
            hello.digest.as_str(),
            "{listing}"
        );

        // Ended: its files are no longer taken.
        let error = refused(ask(&mut a, attempt, 7, commit).await);
        assert!(error.contains("not running"), "{error}");
        server.stop().await;
    }
}
