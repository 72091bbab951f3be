//! `logs -f` across a server restart: the command reconnects and resumes
//! from its cursor, so every line shows exactly once, in order.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::util::{Home, LONG, Xene, sqlite_url, start_agent, write};

const SPEC: &str = "\
name: counting
pipelines:
  p:
    tasks:
      count:
        steps:
          - name: lines
            run: for i in $(seq 1 40); do echo line-$i; sleep 0.1; done
      after:
        depends_on: [count]
        steps:
          - name: end
            run: echo after
";

#[tokio::test]
async fn logs_follow_resumes_across_a_server_restart_without_gaps_or_repeats() {
    let home = Home::new();
    let addr = xene_testkit::next_addr().to_string();
    let db = sqlite_url(&home);
    // A remote agent keeps running the step while the server is down, and
    // resends what the server did not acknowledge.
    let flags = ["--no-local-agent"];
    let mut xene = Xene::start(&home, &db, Some(&addr), &flags).await;
    let server = xene.base.clone();
    let file = write(&home, "counting.yaml", SPEC);
    let out = home
        .run(&["--server", &server, "apply", "-f", file.to_str().unwrap()])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let join = xene.post("/api/v1/agents/join-tokens", json!({})).await;
    let _agent = start_agent(
        &server,
        join["token"].as_str().unwrap(),
        &home.path("agent"),
    );
    let started = Instant::now();
    loop {
        let agents = xene.get("/api/v1/agents").await;
        if agents["agents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["state"] == "online")
        {
            break;
        }
        assert!(
            started.elapsed() < LONG,
            "the agent never came online: {agents}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let run = xene
        .post("/api/v1/workflows/counting/pipelines/p/runs", json!({}))
        .await;
    let id = run["id"].as_i64().unwrap().to_string();

    let mut follow = home
        .xenectl(&["--server", &server, "logs", &id, "-f"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = {
        let lines = lines.clone();
        let stdout = follow.stdout.take().unwrap();
        tokio::spawn(async move {
            let mut stdout = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = stdout.next_line().await {
                lines.lock().unwrap().push(line);
            }
        })
    };
    // Some lines in, most still to come: the server goes away.
    let started = Instant::now();
    while lines.lock().unwrap().len() < 3 {
        assert!(started.elapsed() < LONG, "no lines came");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    xene.kill();
    let seen_before_restart = lines.lock().unwrap().len();
    assert!(seen_before_restart < 40, "the step was still printing");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let xene = Xene::start(&home, &db, Some(&addr), &flags).await;

    let status = tokio::time::timeout(LONG, follow.wait())
        .await
        .expect("logs -f ends with the run")
        .unwrap();
    reader.await.unwrap();
    let mut stderr = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut follow.stderr.take().unwrap(), &mut stderr)
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    let mut want: Vec<String> = (1..=40)
        .map(|i| format!("[count/lines] line-{i}"))
        .collect();
    want.push("[after/end] after".into());
    assert_eq!(
        *lines.lock().unwrap(),
        want,
        "every line once, in order; {stderr}"
    );
    let run = xene.get(&format!("/api/v1/runs/{id}")).await;
    assert_eq!(run["status"], "success", "{run}");
}
