//! Triggers end to end: typed params checked when a run is requested, and
//! hostile values reaching steps as data through the real server and its
//! built-in agent.

use serde_json::{Value, json};

use crate::util::{BACKENDS, Backend, TestDb, TestServer};

const TYPED: &str = "\
name: typed
pipelines:
  deploy:
    params:
      tag: {type: string, required: true}
      replicas: {type: number, default: 1}
      dry_run: {type: boolean, default: true}
      target: {type: choice, options: [staging, production], default: staging}
    tasks:
      show:
        steps:
          - printf '%s|' {{ params.tag }} {{ params.replicas }} {{ params.dry_run }} {{ params.target }} > \"$XENE_OUTPUT\"
";

async fn start(server: &TestServer, workflow: &str, pipeline: &str, body: Value) -> (u16, Value) {
    server
        .post(
            &format!("/api/v1/workflows/{workflow}/pipelines/{pipeline}/runs"),
            body.to_string(),
        )
        .await
}

#[tokio::test]
async fn typed_params_are_checked_with_every_fault_at_once() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start(&db).await;
        let (status, answer) = server.post("/api/v1/workflows", TYPED.to_string()).await;
        assert_eq!(status, 201, "{answer}");

        let (status, answer) = start(
            &server,
            "typed",
            "deploy",
            json!({"params": {"replicas": "lots", "dry_run": "maybe", "target": "moon", "extra": 1}}),
        )
        .await;
        assert_eq!(status, 422, "{answer}");
        let faults: Vec<(String, String)> = answer["faults"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["param"].as_str().unwrap().to_string(),
                    f["message"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let names: Vec<&str> = faults.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(names, ["extra", "dry_run", "replicas", "tag", "target"], "{answer}");
        assert!(faults[3].1.contains("required"), "{faults:?}");
        assert!(faults[4].1.contains("not one of the options"), "{faults:?}");
        assert_eq!(server.get("/api/v1/runs").await.1["runs"], json!([]));

        // JSON numbers and booleans are accepted for typed params.
        let (status, run) = start(
            &server,
            "typed",
            "deploy",
            json!({"params": {"tag": "v2", "replicas": 3, "dry_run": false, "target": "production"}}),
        )
        .await;
        assert_eq!(status, 201, "{run}");
        assert_eq!(
            run["params"],
            json!({"tag": "v2", "replicas": "3", "dry_run": "false", "target": "production"})
        );
        let run = server.wait_for_run(run["id"].as_i64().unwrap()).await;
        assert_eq!(run["status"], "success", "{run}");
        assert_eq!(run["tasks"][0]["output"], "v2|3|false|production|");
        server.stop().await;
    }
}

/// A manual run's hostile params reach the steps of the built-in agent as
/// data: printed as they are, nothing they spell runs.
#[tokio::test]
async fn hostile_params_of_a_manual_run_do_not_run() {
    let db = TestDb::new(Backend::Sqlite);
    let server = TestServer::start(&db).await;
    let spot = tempfile::tempdir().unwrap();
    let dir = spot.path().display().to_string();
    let spec = "\
name: hostile
pipelines:
  p:
    params: {a: x, b: x, c: x, d: x}
    tasks:
      echo:
        steps:
          - printf '%s|' {{ params.a }} \"{{ params.b }}\" '{{ params.c }}' {{ params.d }} > \"$XENE_OUTPUT\"
      after:
        depends_on: [echo]
        steps:
          - printf '%s' {{ tasks.echo.output }} > \"$XENE_OUTPUT\"
";
    let (status, answer) = server.post("/api/v1/workflows", spec.to_string()).await;
    assert_eq!(status, 201, "{answer}");
    let values = [
        format!("$(touch {dir}/pwned-1)"),
        format!("'; touch {dir}/pwned-2; #"),
        format!("`touch {dir}/pwned-3`"),
        format!("x\ntouch {dir}/pwned-4"),
    ];
    let (status, run) = start(
        &server,
        "hostile",
        "p",
        json!({"params": {"a": values[0], "b": values[1], "c": values[2], "d": values[3]}}),
    )
    .await;
    assert_eq!(status, 201, "{run}");
    let run = server.wait_for_run(run["id"].as_i64().unwrap()).await;
    assert_eq!(run["status"], "success", "{run}");
    let all: String = values.iter().map(|v| format!("{v}|")).collect();
    assert_eq!(run["tasks"][1]["output"], all.as_str(), "{run}");
    assert_eq!(run["tasks"][0]["output"], all.as_str(), "{run}");
    let left: Vec<_> = std::fs::read_dir(spot.path()).unwrap().collect();
    assert!(left.is_empty(), "a hostile value ran: {left:?}");
    server.stop().await;
}
