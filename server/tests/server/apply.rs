//! Applying workflows over the API, on both database backends: versions,
//! YAML and JSON, every fault at once, size limits, dry runs, the editor's
//! saves against a base version, and cron previews.

use serde_json::{Value, json};

use crate::api::{HELLO, apply};
use crate::util::{BACKENDS, TestDb, TestServer};

#[tokio::test]
async fn apply_keeps_versions_and_skips_unchanged_specs() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start(&db).await;

        assert_eq!(
            apply(&server, HELLO).await,
            (
                201,
                json!({ "name": "hello", "version": 1, "changed": true, "warnings": [] })
            )
        );
        assert_eq!(
            apply(&server, HELLO).await,
            (
                200,
                json!({ "name": "hello", "version": 1, "changed": false, "warnings": [] })
            )
        );
        let changed = HELLO.replace("a first workflow", "a second look");
        assert_eq!(
            apply(&server, &changed).await,
            (
                201,
                json!({ "name": "hello", "version": 2, "changed": true, "warnings": [] })
            )
        );

        let (status, listed) = server.get("/api/v1/workflows").await;
        assert_eq!(status, 200);
        assert_eq!(listed["workflows"][0]["name"], "hello");
        assert_eq!(listed["workflows"][0]["version"], 2);
        assert_eq!(listed["workflows"][0]["pipelines"], json!(["greet"]));

        let (status, current) = server.get("/api/v1/workflows/hello").await;
        assert_eq!(status, 200);
        assert_eq!(current["version"], 2);
        assert_eq!(current["spec"]["description"], "a second look");
        assert_eq!(current["source"], changed);
        assert_eq!(current["pipelines"][0]["name"], "greet");
        assert_eq!(current["pipelines"][0]["trigger"], "manual");

        let (status, versions) = server.get("/api/v1/workflows/hello/versions").await;
        assert_eq!(status, 200);
        let numbers: Vec<i64> = versions["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["version"].as_i64().unwrap())
            .collect();
        assert_eq!(numbers, [2, 1]);
        let (status, first) = server.get("/api/v1/workflows/hello/versions/1").await;
        assert_eq!(status, 200);
        assert_eq!(first["spec"]["description"], "a first workflow");
        assert_eq!(
            server.get("/api/v1/workflows/hello/versions/9").await.0,
            404
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn json_bodies_apply_like_yaml() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start(&db).await;
        let spec = json!({
            "name": "from-json",
            "pipelines": { "p": { "tasks": { "t": { "steps": [{ "name": "s", "run": "true" }] } } } }
        });
        let (status, body) = apply(&server, &spec.to_string()).await;
        assert_eq!(status, 201, "{body}");
        let (_, current) = server.get("/api/v1/workflows/from-json").await;
        assert_eq!(
            current["spec"]["pipelines"]["p"]["tasks"]["t"]["steps"][0]["run"],
            "true"
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn invalid_workflows_get_every_fault_and_change_nothing() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start(&db).await;
        let broken = "\
name: broken
pipelines:
  build:
    tasks:
      test:
        depends_on: [tset]
        steps: [\"make test\"]
      lint:
        stpes: []
";
        let (status, body) = apply(&server, broken).await;
        assert_eq!(status, 422, "{body}");
        let diagnostics = body["diagnostics"].as_array().unwrap();
        assert!(diagnostics.len() >= 2, "{body}");
        let messages = body["message"].as_str().unwrap();
        assert!(
            messages.contains("pipelines.build.tasks.test.depends_on[0]: unknown task \"tset\"; did you mean \"test\"? (line 6)"),
            "{messages}"
        );
        assert!(messages.contains("stpes"), "{messages}");

        let (status, body) = apply(&server, "name: [unclosed").await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(server.get("/api/v1/workflows/broken").await.0, 404);
        assert_eq!(
            server.get("/api/v1/workflows").await.1,
            json!({ "workflows": [] })
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn oversized_and_non_text_bodies_are_refused() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start(&db).await;
        let huge = format!("{HELLO}\n# {}\n", "x".repeat(2 << 20));
        let (status, body) = apply(&server, &huge).await;
        assert_eq!(status, 413, "{body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("larger than the limit"),
            "{body}"
        );

        let client = server.client.clone();
        let response = client
            .post(server.url("/api/v1/workflows"))
            .body(vec![0xff, 0xfe, 0x00])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        assert_eq!(
            server.get("/api/v1/workflows").await.1,
            json!({ "workflows": [] })
        );
        server.stop().await;
    }
}

/// `?dry_run=true` validates on the server and says what applying would do,
/// storing nothing; faults are the same 422.
#[tokio::test]
async fn a_dry_run_apply_validates_and_stores_nothing() {
    let db = TestDb::new(crate::util::Backend::Sqlite);
    let server = TestServer::start(&db).await;
    let spec = "name: dry\npipelines:\n  p:\n    tasks:\n      t:\n        steps: [\"true\"]\n";
    let (status, body) = server.post("/api/v1/workflows?dry_run=true", spec).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["version"], 1);
    assert_eq!(body["changed"], true);
    let (status, _) = server.get("/api/v1/workflows/dry").await;
    assert_eq!(status, 404, "a dry run stored the workflow");
    let (status, _) = server.post("/api/v1/workflows", spec).await;
    assert_eq!(status, 201);
    let (status, body) = server.post("/api/v1/workflows?dry_run=true", spec).await;
    assert_eq!(
        (status, body["changed"].clone()),
        (200, serde_json::json!(false)),
        "{body}"
    );
    let (status, body) = server
        .post(
            "/api/v1/workflows?dry_run=true",
            "name: dry\npipelines: {}\n",
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body["diagnostics"].is_array(), "{body}");
    server.stop().await;
}

/// The editor saves against the version it started from: a save over a
/// version it has not seen is refused with 409 and stores nothing; a text
/// that differs only in comments is a new version (the text is the
/// user's); the layout of dragged nodes is kept with a version and carried
/// to the next.
#[tokio::test]
async fn editor_saves_against_a_base_and_keeps_its_layout() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start(&db).await;
        let save = |base: i64, text: String| {
            let server = &server;
            async move {
                server
                    .post(&format!("/api/v1/workflows?base={base}"), text)
                    .await
            }
        };
        assert_eq!(save(0, HELLO.to_string()).await.0, 201);
        let (status, body) = save(0, HELLO.to_string()).await;
        assert_eq!(status, 409, "{body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("started from version 0, the current one is 1"),
            "{body}"
        );
        let commented = format!("# Greets.\n{HELLO}");
        let (status, body) = save(1, commented.clone()).await;
        assert_eq!((status, body["version"].clone()), (201, json!(2)));
        let (status, _) = save(1, format!("# Another.\n{HELLO}")).await;
        assert_eq!(status, 409);
        let (_, current) = server.get("/api/v1/workflows/hello").await;
        assert_eq!(current["source"], commented.as_str());
        assert_eq!(current["layout"], Value::Null);

        let layout = json!({
            "direction": "top-down",
            "positions": { "greet": { "hello": [10, 20], "after": [300, -40] } }
        });
        let put = |version: i64, body: Value| {
            let server = &server;
            async move {
                server
                    .client
                    .put(server.url(&format!(
                        "/api/v1/workflows/hello/versions/{version}/layout"
                    )))
                    .json(&body)
                    .send()
                    .await
                    .expect("PUT")
                    .status()
                    .as_u16()
            }
        };
        assert_eq!(put(2, layout.clone()).await, 204);
        assert_eq!(put(9, layout.clone()).await, 404);
        for bad in [
            json!({ "positions": { "greet": { "../x": [0, 0] } } }),
            json!({ "positions": { "greet": { "hello": [2_000_000, 0] } } }),
            json!({ "direction": "sideways" }),
            json!({ "positions": {}, "extra": 1 }),
        ] {
            assert!(
                [400, 422].contains(&put(2, bad.clone()).await),
                "{bad} was taken"
            );
        }
        let (_, v2) = server.get("/api/v1/workflows/hello/versions/2").await;
        assert_eq!(v2["layout"], layout);
        // The next version, applied by anyone, keeps the drawing.
        let (status, _) = apply(&server, &HELLO.replace("a first", "a third")).await;
        assert_eq!(status, 201);
        let (_, v3) = server.get("/api/v1/workflows/hello/versions/3").await;
        assert_eq!(v3["layout"], layout);
        server.stop().await;
    }
}

/// The editor shows when a cron line being typed would fire.
#[tokio::test]
async fn cron_next_lists_fire_times_or_the_fault() {
    let db = TestDb::new(crate::util::Backend::Sqlite);
    let server = TestServer::start(&db).await;
    let (status, body) = server
        .get("/api/v1/cron/next?schedule=0%203%20*%20*%20*&timezone=Europe/Paris&count=3")
        .await;
    assert_eq!(status, 200, "{body}");
    let fires: Vec<i64> = serde_json::from_value(body["fires"].clone()).unwrap();
    assert_eq!(fires.len(), 3);
    assert!(
        fires.windows(2).all(|w| w[1] - w[0] >= 23 * 3_600_000),
        "{fires:?}"
    );
    for (query, fault) in [
        ("schedule=61%20*%20*%20*%20*", "bad minute"),
        ("schedule=*%20*%20*%20*", "expected 5 fields"),
        ("schedule=@daily&timezone=Mars/Olympus", "unknown time zone"),
    ] {
        let (status, body) = server.get(&format!("/api/v1/cron/next?{query}")).await;
        assert_eq!(status, 422, "{query}: {body}");
        assert!(body["error"].as_str().unwrap().contains(fault), "{body}");
    }
    let (status, body) = server
        .get("/api/v1/cron/next?schedule=@hourly&count=500")
        .await;
    assert_eq!((status, body["fires"].as_array().unwrap().len()), (200, 20));
    server.stop().await;
}
