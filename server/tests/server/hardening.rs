//! What a step on the built-in agent can see of the server.

use crate::util::{Backend, TestDb, TestServer};

/// Steps of the built-in agent inherited the server's environment (its
/// database URL with the password, TLS paths) and worked in a directory
/// beside `xene.db`.
#[tokio::test]
async fn built_in_agent_steps_see_nothing_of_the_server() {
    let db = TestDb::new(Backend::Sqlite);
    let server = TestServer::start(&db).await;
    let spec = "name: peek
pipelines:
  p:
    tasks:
      peek:
        env: {MINE: here}
        steps:
          - env
          - pwd
";
    let (status, body) = server.post("/api/v1/workflows", spec).await;
    assert_eq!(status, 201, "{body}");
    let (status, run) = server
        .post("/api/v1/workflows/peek/pipelines/p/runs", "")
        .await;
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_i64().unwrap();
    let run = server.wait_for_run(id).await;
    assert_eq!(run["status"], "success", "{run}");
    let (_, logs) = server.get(&format!("/api/v1/runs/{id}/logs")).await;
    let lines: Vec<&str> = logs["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["data"].as_str().unwrap())
        .collect();
    assert!(lines.contains(&"MINE=here"), "{lines:?}");
    // The test process's own variables (cargo's, nextest's) would be there
    // if the server's environment reached the step.
    let leaked: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("CARGO") || l.starts_with("NEXTEST") || l.starts_with("RUST"))
        .collect();
    assert!(leaked.is_empty(), "{leaked:?}");
    let pwd = lines.last().unwrap();
    let data_dir = db.dir.path().canonicalize().unwrap();
    assert!(
        !std::path::Path::new(pwd).starts_with(&data_dir),
        "{pwd} is inside the data dir {}",
        data_dir.display()
    );
    assert!(lines.contains(&format!("HOME={pwd}").as_str()), "{lines:?}");
    server.stop().await;
}

/// A client that sends its headers a byte at a time (slowloris) is cut off,
/// and other clients are served meanwhile.
#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let db = crate::util::TestDb::new(crate::util::Backend::Sqlite);
    let server = crate::util::TestServer::start(&db).await;
    let mut slow = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let (status, _) = server.get("/healthz").await;
    assert_eq!(status, 200, "others are served");
    // Keep trickling; the server closes the connection anyway.
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            if slow.write_all(b"X").await.is_err() {
                return;
            }
            match tokio::time::timeout(std::time::Duration::from_secs(1), slow.read(&mut buf)).await
            {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                _ => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the slow client is still connected");
    let waited = started.elapsed();
    assert!(
        waited >= xene_server::listen::HEADER_READ_TIMEOUT - std::time::Duration::from_secs(1),
        "cut off after {waited:?}"
    );
    server.stop().await;
}

/// Input that used to reach the database as a 500: a NUL in a path or a
/// query (PostgreSQL refuses it in text), and concurrent applies of one
/// workflow (both took the same next version number).
#[tokio::test]
async fn nuls_and_concurrent_applies_are_not_server_errors() {
    for backend in crate::util::BACKENDS {
        let db = crate::util::TestDb::new(backend);
        let server = crate::util::TestServer::start(&db).await;
        for path in [
            "/api/v1/workflows/a%00b",
            "/api/v1/runs?workflow=a%00b",
            "/api/v1/secrets?workflow=x%00",
        ] {
            let (status, body) = server.get(path).await;
            assert_eq!(status, 400, "{backend:?} {path}: {body}");
        }
        let applies = (0..8).map(|i| {
            let client = server.client.clone();
            let url = server.url("/api/v1/workflows");
            async move {
                let spec = format!(
                    "name: racy\npipelines:\n  p:\n    tasks:\n      t:\n        steps: [\"echo {i}\"]\n"
                );
                crate::util::response(client.post(url).body(spec).send().await.unwrap()).await
            }
        });
        let mut versions = Vec::new();
        for (status, body) in futures::future::join_all(applies).await {
            assert_eq!(status, 201, "{backend:?}: {body}");
            versions.push(body["version"].as_i64().unwrap());
        }
        versions.sort();
        assert_eq!(versions, (1..=8).collect::<Vec<i64>>(), "{backend:?}");
        server.stop().await;
    }
}
