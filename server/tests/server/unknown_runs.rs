//! A run that ends `unknown` (its server died under it with no attempt
//! left) leaves nothing `running` or `pending`: what ran is `unknown`, what
//! never started is `not_executed`, on both databases.

use std::time::Duration;

use serde_json::{Value, json};

use crate::process::Xene;
use crate::util::{Backend, TestDb};

/// `a` runs when the server dies; `b` waits for it; no retries.
const ONCE: &str = r#"
name: once
pipelines:
  p:
    tasks:
      a:
        steps:
          - name: first
            run: echo started
          - name: wait
            run: sleep 20
          - name: never
            run: echo never
      b:
        depends_on: [a]
        steps: ['echo b']
"#;

fn task<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no task {name}: {run}"))
}

fn step_statuses(task: &Value) -> Vec<&str> {
    task["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect()
}

async fn an_unknown_run_leaves_nothing_running(backend: Backend) {
    let db = TestDb::new(backend);
    let mut first = Xene::start(&db, "builtin-lost", &[]).await;
    first.apply(ONCE).await;
    let id = first.start_run("once", "p", json!({})).await;
    first
        .wait_run(id, Duration::from_secs(60), |run| {
            task(run, "a")["steps"][1]["status"] == "running"
        })
        .await;
    first.kill();

    // The same agent id: the new server knows the old one's runs are lost.
    let second = Xene::start(&db, "builtin-lost", &[]).await;
    let run = second.wait_finished(id, Duration::from_secs(60)).await;
    assert_eq!(run["status"], "unknown", "{run}");
    let a = task(&run, "a");
    assert_eq!(a["status"], "unknown", "{run}");
    assert_eq!(
        step_statuses(a),
        ["success", "unknown", "not_executed"],
        "{run}"
    );
    let b = task(&run, "b");
    assert_eq!(b["status"], "not_executed", "{run}");
    assert_eq!(step_statuses(b), ["not_executed"], "{run}");
}

#[tokio::test]
async fn an_unknown_run_leaves_nothing_running_on_sqlite() {
    an_unknown_run_leaves_nothing_running(Backend::Sqlite).await;
}

#[tokio::test]
async fn an_unknown_run_leaves_nothing_running_on_postgres() {
    an_unknown_run_leaves_nothing_running(Backend::Postgres).await;
}
