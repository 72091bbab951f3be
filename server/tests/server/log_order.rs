//! A step's stdout and stderr lines stored in the order they were written,
//! each with its stream, whichever kind of agent ran it: the built-in one
//! (events applied in process) and a remote `xene-agent` (events batched
//! over its WebSocket). Real processes, real `sh`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::process::{Agent, Xene};
use crate::util::{BACKENDS, TestDb};

const MINUTE: Duration = Duration::from_secs(60);

/// Steps that each write a line to stdout, then one to stderr at once:
/// whether the agent reads them apart or together, stdout's comes first
/// (one reader for both pipes; see `agent/src/runtime/streams.rs`).
fn workflow() -> String {
    let steps: String = (1..=8)
        .map(|i| format!("          - echo out-{i}; echo err-{i} >&2\n"))
        .collect();
    let pipeline = |name: &str, selector: &str| {
        format!(
            "  {name}:\n    selector: {selector}\n    tasks:\n      t:\n        steps:\n{steps}"
        )
    };
    format!(
        "name: streams\npipelines:\n{}{}",
        pipeline("builtin", "{builtin: \"true\"}"),
        pipeline("remote", "{pool: remote}")
    )
}

fn lines(logs: &[Value]) -> Vec<(String, String)> {
    logs.iter()
        .map(|l| {
            (
                l["stream"].as_str().unwrap_or_default().to_string(),
                l["data"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn stdout_and_stderr_keep_their_order_on_both_kinds_of_agent() {
    let want: Vec<(String, String)> = (1..=8)
        .flat_map(|i| {
            [
                ("stdout".to_string(), format!("out-{i}")),
                ("stderr".to_string(), format!("err-{i}")),
            ]
        })
        .collect();
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let xene = Xene::start(&db, "srv", &[]).await;
        xene.apply(&workflow()).await;
        let token = xene.join_token(json!({ "pool": "remote" })).await;
        let _agent = Agent::start(
            &xene.base,
            &token,
            &db.dir.path().join("agent"),
            "remote",
            &["--allow-shell"],
        );
        xene.wait_agents_online(1).await;
        let builtin = xene.start_run("streams", "builtin", json!({})).await;
        let remote = xene.start_run("streams", "remote", json!({})).await;
        for (id, agent) in [(builtin, "srv"), (remote, "remote")] {
            let run = xene.wait_finished(id, MINUTE).await;
            assert_eq!(run["status"], "success", "{run}");
            let ran_on = run["tasks"][0]["agent_id"].as_str().unwrap_or_default();
            assert!(
                (agent == "srv") == (ran_on == "srv"),
                "{backend:?}: run {id} ran on {ran_on}"
            );
            assert_eq!(
                lines(&xene.logs(id).await),
                want,
                "{backend:?}: run {id} on {ran_on}"
            );
        }
    }
}
