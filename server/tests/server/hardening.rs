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
