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
    let dir = tempfile::tempdir().unwrap();
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
