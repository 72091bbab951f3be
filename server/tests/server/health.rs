use serde_json::{Value, json};

use crate::util::{BACKENDS, Backend, TestDb, TestServer};

#[tokio::test]
async fn healthz_checks_the_database_on_both_backends() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start(&db).await;
        let response = reqwest::get(server.url("/healthz")).await.unwrap();
        assert_eq!(response.status(), 200, "{backend:?}");
        let body: Value = response.json().await.unwrap();
        let name = match backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        };
        assert_eq!(body, json!({ "status": "ok", "database": name }));
        server.stop().await;
    }
}

#[tokio::test]
async fn unknown_api_paths_get_a_json_404() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start(&db).await;
        for path in ["/api/nope", "/api/v1/workflows/x/unknown", "/api"] {
            let response = reqwest::get(server.url(path)).await.unwrap();
            assert_eq!(response.status(), 404, "{path}");
            assert_eq!(
                response.headers()["content-type"],
                "application/json",
                "{path}"
            );
            let body: Value = response.json().await.unwrap();
            assert!(
                body["error"]
                    .as_str()
                    .unwrap()
                    .starts_with("no API route at /api"),
                "{path}: {body}"
            );
        }
        server.stop().await;
    }
}

/// A second start over the same database finds its migrations applied.
#[tokio::test]
async fn restarting_over_an_existing_database_works() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        TestServer::start(&db).await.stop().await;
        let server = TestServer::start(&db).await;
        let response = reqwest::get(server.url("/healthz")).await.unwrap();
        assert_eq!(response.status(), 200, "{backend:?}");
        server.stop().await;
    }
}

#[tokio::test]
async fn a_bad_database_url_is_a_clear_error() {
    let dir = crate::util::private_tempdir();
    let mut args = xene_server::config::Args::for_data_dir(dir.path().to_path_buf());
    args.database_url = Some("mysql://root:hunter2@localhost/xene".into());
    let err = xene_server::Server::bind(&args)
        .await
        .err()
        .expect("refused");
    // As `xene` prints it: the error with its causes.
    let message = format!("{:#}", anyhow::Error::from(err));
    assert!(message.contains("unsupported database URL"), "{message}");
    assert!(
        !message.contains("hunter2"),
        "the password leaked: {message}"
    );
}

/// Validation ran on the async workers: while one heavy body was validated,
/// a worker answered nothing else (two such requests stalled a 2-core
/// server). The server here runs on this test's single thread, so a
/// validation done there would hold back every `/healthz` until it ends.
#[tokio::test]
async fn healthz_answers_while_a_heavy_spec_validates() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let db = TestDb::new(Backend::Sqlite);
    let server = TestServer::start(&db).await;
    let addr = server.addr;
    let token = server.token.clone();
    let healthz = server.url("/healthz");
    // Just under the 1 MiB limit: one mapping of distinct keys, refused
    // (an unknown field) once the whole tree is built.
    let mut body = String::from("name: w\nx:\n");
    let mut i = 0;
    while body.len() < xene_core::parse::MAX_SPEC_BYTES - 32 {
        body.push_str(&format!("  k{i}: 1\n"));
        i += 1;
    }
    let client = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let head = format!(
                "POST /api/v1/workflows HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\ncontent-type: application/yaml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).await.unwrap();
            let (most, last) = body.as_bytes().split_at(body.len() - 1);
            stream.write_all(most).await.unwrap();
            // The server reads what was sent between answering these, so
            // that the last byte alone stands between it and validation.
            for _ in 0..20 {
                let health = reqwest::get(&healthz).await.unwrap();
                assert_eq!(health.status(), 200);
            }
            stream.write_all(last).await.unwrap();
            let apply = tokio::spawn(async move {
                let mut response = Vec::new();
                stream.read_to_end(&mut response).await.unwrap();
                String::from_utf8_lossy(&response).into_owned()
            });
            tokio::pin!(apply);
            // Health checks asked once the body is complete, and answered
            // before its refusal arrives.
            let mut answered = 0;
            let response = loop {
                tokio::select! {
                    biased;
                    response = &mut apply => break response.unwrap(),
                    health = reqwest::get(&healthz) => {
                        if health.is_ok_and(|r| r.status() == 200) {
                            answered += 1;
                        }
                    }
                }
            };
            (answered, response)
        })
    });
    let (answered, response) = tokio::task::spawn_blocking(move || client.join().unwrap())
        .await
        .unwrap();
    assert!(
        response.starts_with("HTTP/1.1 422"),
        "{}",
        &response[..response.len().min(300)]
    );
    assert!(
        answered > 0,
        "no health check was answered while the body was validated"
    );
    server.stop().await;
}
