//! Starting a run on the workflow version asked for (`StartRun.version`,
//! what "Run again" and `xenectl rerun` send), and required params that an
//! empty value does not satisfy.

use serde_json::{Value, json};

use crate::util::{BACKENDS, TestDb, TestServer, run_count};

/// Version 1; version 2 says `v2` and adds the pipeline `later`.
fn spec(version: u32) -> String {
    let later = if version == 2 {
        "  later:\n    tasks:\n      t:\n        steps:\n          - echo later\n"
    } else {
        ""
    };
    format!(
        "name: again
pipelines:
  p:
    params:
      who: {{type: string, required: true}}
    tasks:
      say:
        steps:
          - printf 'v{version} %s' {{{{ params.who }}}} > \"$XENE_OUTPUT\"
{later}"
    )
}

async fn start(server: &TestServer, pipeline: &str, body: Value) -> (u16, Value) {
    let path = format!("/api/v1/workflows/again/pipelines/{pipeline}/runs");
    server.post(&path, body.to_string()).await
}

#[tokio::test]
async fn a_run_starts_on_the_version_asked_for_and_required_means_not_empty() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start(&db).await;
        for version in [1, 2] {
            let (status, answer) = server.post("/api/v1/workflows", spec(version)).await;
            assert_eq!(
                (status, &answer["version"]),
                (201, &json!(version)),
                "{answer}"
            );
        }

        // Walk bug 3: an empty or blank value was taken for a required param.
        for blank in ["", "   "] {
            let (status, answer) = start(&server, "p", json!({"params": {"who": blank}})).await;
            assert_eq!(status, 422, "{blank:?}: {answer}");
            assert_eq!(
                answer["faults"],
                json!([{"param": "who", "message": "required string param without a value"}]),
                "{answer}"
            );
        }

        // Walk bug 19: a run again runs the version asked for, not the newest.
        let (status, old) = start(
            &server,
            "p",
            json!({"params": {"who": "ann"}, "version": 1}),
        )
        .await;
        assert_eq!((status, &old["version"]), (201, &json!(1)), "{old}");
        let (status, new) = start(&server, "p", json!({"params": {"who": "bob"}})).await;
        assert_eq!((status, &new["version"]), (201, &json!(2)), "{new}");
        let old = server.wait_for_run(old["id"].as_i64().unwrap()).await;
        assert_eq!(old["tasks"][0]["output"], "v1 ann", "{old}");
        let new = server.wait_for_run(new["id"].as_i64().unwrap()).await;
        assert_eq!(new["tasks"][0]["output"], "v2 bob", "{new}");

        // A version the workflow never had, or one without the pipeline:
        // refused, saying why, and nothing starts.
        for version in [3, 0, -1] {
            let (status, answer) = start(
                &server,
                "p",
                json!({"params": {"who": "x"}, "version": version}),
            )
            .await;
            assert_eq!(status, 422, "{answer}");
            assert_eq!(
                answer["error"],
                format!(
                    "workflow \"again\" has no version {version}: its versions are 1 to 2, \
                     and leaving the version out runs the current one"
                ),
            );
        }
        let (status, answer) = start(&server, "later", json!({"version": 1})).await;
        assert_eq!(status, 422, "{answer}");
        assert_eq!(
            answer["error"],
            "version 1 of workflow \"again\" has no pipeline named \"later\""
        );
        let (status, answer) = start(&server, "p", json!({"version": "1"})).await;
        assert_eq!(status, 400, "a version is a number: {answer}");
        assert_eq!(run_count(&server).await, 2);

        // A deleted workflow takes no runs, whichever version is asked for.
        assert_eq!(server.delete("/api/v1/workflows/again").await, 204);
        let (status, answer) =
            start(&server, "p", json!({"params": {"who": "x"}, "version": 1})).await;
        assert_eq!(status, 404, "{answer}");
        server.stop().await;
    }
}
