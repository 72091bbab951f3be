//! Remote agents end to end: real `xene` and `xene-agent` processes over
//! real sockets, joined with join tokens, running shell tasks; killed,
//! restarted and revoked.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use crate::process::{Agent, Xene};
use crate::util::{Backend, TestDb};

const MINUTE: Duration = Duration::from_secs(60);

/// A pipeline per pool, each a short sleep so runs overlap.
fn pools_workflow() -> String {
    let pipeline = |pool: &str| {
        format!(
            "  {pool}:\n    selector: {{pool: {pool}}}\n    tasks:\n      work:\n        steps: [\"sleep 0.3\"]\n"
        )
    };
    format!(
        "name: pools\npipelines:\n{}{}",
        pipeline("a"),
        pipeline("b")
    )
}

#[tokio::test]
async fn several_agents_share_the_work_by_label() {
    let db = TestDb::new(Backend::Sqlite);
    let xene = Xene::start(&db, "srv", &["--no-local-agent"]).await;
    let mut agents = Vec::new();
    for (name, pool, capacity) in [("a1", "a", "1"), ("a2", "a", "2"), ("b1", "b", "2")] {
        let token = xene.join_token(json!({ "pool": pool })).await;
        let state = db.dir.path().join(name);
        agents.push(Agent::start(
            &xene.base,
            &token,
            &state,
            name,
            &["--allow-shell", "--capacity", capacity],
        ));
    }
    xene.wait_agents_online(3).await;
    xene.apply(&pools_workflow()).await;
    let mut ids = Vec::new();
    for pool in ["a", "a", "a", "a", "a", "a", "b", "b"] {
        ids.push((pool, xene.start_run("pools", pool, json!({})).await));
    }
    let mut ran_on: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (pool, id) in &ids {
        let run = xene.wait_finished(*id, MINUTE).await;
        assert_eq!(run["status"], "success", "{run}");
        ran_on
            .entry(pool)
            .or_default()
            .push(run["agents"][0].as_str().unwrap().to_string());
    }
    let (_, listed) = xene.get("/api/v1/agents").await;
    let name_of: BTreeMap<String, String> = listed["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["id"].as_str().unwrap().to_string(),
                a["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let names = |pool: &str| -> Vec<String> {
        let mut names: Vec<String> = ran_on[pool].iter().map(|id| name_of[id].clone()).collect();
        names.sort();
        names.dedup();
        names
    };
    // Pool a's runs went to both a-agents and nowhere else; pool b's to b1.
    assert_eq!(names("a"), ["a1", "a2"]);
    assert_eq!(names("b"), ["b1"]);
    for agent in &mut agents {
        agent.kill();
    }
}

#[tokio::test]
async fn a_killed_agents_run_is_retried_on_another_agent() {
    let db = TestDb::new(Backend::Sqlite);
    let xene = Xene::start(&db, "srv", &["--no-local-agent"]).await;
    let spec = "\
name: slow
pipelines:
  p:
    selector: {pool: a}
    tasks:
      wait:
        retries: 1
        steps:
          - name: sleep
            run: echo started; sleep 5; echo done
";
    xene.apply(spec).await;
    let token = xene.join_token(json!({ "pool": "a" })).await;
    let mut first = Agent::start(
        &xene.base,
        &token,
        &db.dir.path().join("first"),
        "first",
        &["--allow-shell"],
    );
    xene.wait_agents_online(1).await;
    let id = xene.start_run("slow", "p", json!({})).await;
    let run = xene
        .wait_run(id, MINUTE, |run| {
            run["tasks"][0]["steps"][0]["status"] == "running"
        })
        .await;
    let first_agent = run["tasks"][0]["agent_id"].as_str().unwrap().to_string();

    let token = xene.join_token(json!({ "pool": "a" })).await;
    let _second = Agent::start(
        &xene.base,
        &token,
        &db.dir.path().join("second"),
        "second",
        &["--allow-shell"],
    );
    xene.wait_agents_online(2).await;
    first.kill();

    let run = xene.wait_finished(id, MINUTE).await;
    assert_eq!(run["status"], "success", "{run}");
    // The task's attempt 2 ran on the other agent.
    let task = &run["tasks"][0];
    assert_eq!(task["attempt"], 2, "{run}");
    assert_ne!(task["agent_id"].as_str().unwrap(), first_agent, "{run}");
    assert_eq!(task["attempts"][0]["agent_id"], first_agent, "{run}");
    let logs: Vec<String> = xene
        .logs(id)
        .await
        .iter()
        .filter(|l| l["attempt"] == 2)
        .map(|l| l["data"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(logs, ["started", "done"]);
}

#[tokio::test]
async fn a_server_restart_mid_run_loses_no_event() {
    let db = TestDb::new(Backend::Sqlite);
    let port = xene_testkit::free_port();
    let addr = format!("127.0.0.1:{port}");
    let flags = ["--no-local-agent", "--addr", addr.as_str()];
    let mut xene = Xene::start(&db, "srv", &flags).await;
    let spec = "\
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
    xene.apply(spec).await;
    let token = xene.join_token(json!({})).await;
    let mut agent = Agent::start(
        &xene.base,
        &token,
        &db.dir.path().join("agent"),
        "agent",
        &["--allow-shell"],
    );
    xene.wait_agents_online(1).await;
    let id = xene.start_run("counting", "p", json!({})).await;
    xene.wait_run(id, MINUTE, |run| {
        run["tasks"][0]["steps"][0]["status"] == "running"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;

    // Down for a while, with the step still printing.
    xene.kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let xene = Xene::start(&db, "srv", &flags).await;

    let run = xene.wait_finished(id, MINUTE).await;
    assert_eq!(run["status"], "success", "{run}\n{}", agent.log_text());
    assert_eq!(run["attempt"], 1, "the agent kept the run: {run}");
    let lines: Vec<String> = xene
        .logs(id)
        .await
        .iter()
        .map(|l| l["data"].as_str().unwrap().to_string())
        .collect();
    let mut want: Vec<String> = (1..=40).map(|i| format!("line-{i}")).collect();
    want.push("after".into());
    assert_eq!(lines, want, "every line once, in order");
    agent.kill();
}

#[tokio::test]
async fn a_revoked_agent_is_cut_off_and_stops() {
    let db = TestDb::new(Backend::Sqlite);
    let xene = Xene::start(&db, "srv", &["--no-local-agent"]).await;
    let token = xene.join_token(json!({})).await;
    let state = db.dir.path().join("agent");
    let mut agent = Agent::start(&xene.base, &token, &state, "doomed", &["--allow-shell"]);
    let online = xene.wait_agents_online(1).await;
    let id = online[0]["id"].as_str().unwrap();

    // The credential is on disk, private; the token is spent.
    let credential = state.join("credential.json");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&credential).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let (status, _) = xene
        .post("/api/v1/agents/join", json!({ "token": token }).to_string())
        .await;
    assert_eq!(status, 401);

    let client = xene.http.clone();
    let revoked = client
        .delete(format!("{}/api/v1/agents/{id}", xene.base))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    assert_eq!(
        agent.wait_exit(Duration::from_secs(20)),
        Some(3),
        "{}",
        agent.log_text()
    );

    // Started again with its revoked credential, it is refused at once.
    let mut again = Agent::start(&xene.base, "unused", &state, "doomed", &["--allow-shell"]);
    assert_eq!(
        again.wait_exit(Duration::from_secs(20)),
        Some(3),
        "{}",
        again.log_text()
    );
}

#[tokio::test]
async fn the_install_script_installs_and_starts_an_agent() {
    let db = TestDb::new(Backend::Sqlite);
    let binary = crate::process::agent_binary();
    let binary_flag = binary.to_str().unwrap().to_string();
    let xene = Xene::start(
        &db,
        "srv",
        &["--no-local-agent", "--agent-binary", &binary_flag],
    )
    .await;
    let script = reqwest::get(format!("{}/install.sh", xene.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(script.starts_with("#!/bin/sh"), "{script}");
    let script_path = db.dir.path().join("install.sh");
    std::fs::write(&script_path, &script).unwrap();

    let prefix = db.dir.path().join("prefix");
    let state = db.dir.path().join("state");
    let token = xene.join_token(json!({ "via": "script" })).await;
    // The token travels in the environment, as the install command has it.
    let output = std::process::Command::new("sh")
        .arg(&script_path)
        .env("XENE_JOIN_TOKEN", &token)
        .args(["--allow-shell", "--name", "scripted"])
        .arg("--prefix")
        .arg(&prefix)
        .arg("--state-dir")
        .arg(&state)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{said}");
    assert!(said.contains("started in the background"), "{said}");
    let installed = prefix.join("bin/xene-agent");
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(&binary).unwrap()
    );

    // It joined and is online, with the token's label.
    let online = xene.wait_agents_online(1).await;
    assert_eq!(online[0]["name"], "scripted");
    assert_eq!(online[0]["labels"]["via"], "script");
    let pid: i32 = std::fs::read_to_string(state.join("agent.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let argv = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(
        !String::from_utf8_lossy(&argv).contains(&token),
        "the token is in the agent's arguments"
    );
    kill(pid);

    // The API offers the command with the token in the environment.
    let (status, answer) = xene
        .post("/api/v1/agents/join-tokens", json!({}).to_string())
        .await;
    assert_eq!(status, 201, "{answer}");
    let command = answer["install_command"].as_str().unwrap();
    assert!(
        command.ends_with(&format!(
            "| XENE_JOIN_TOKEN={} sh",
            answer["token"].as_str().unwrap()
        )),
        "{command}"
    );
}

#[tokio::test]
async fn the_install_script_fails_clearly_when_something_is_missing() {
    let db = TestDb::new(Backend::Sqlite);
    let xene = Xene::start(
        &db,
        "srv",
        &[
            "--no-local-agent",
            "--agent-binary",
            "/nonexistent/xene-agent",
        ],
    )
    .await;
    let script = reqwest::get(format!("{}/install.sh", xene.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let script_path = db.dir.path().join("install.sh");
    std::fs::write(&script_path, &script).unwrap();
    let run = |args: &[&str], path: Option<&str>| {
        let mut cmd = std::process::Command::new("sh");
        cmd.arg(&script_path).args(args);
        if let Some(path) = path {
            cmd.env("PATH", path);
        }
        let output = cmd.output().unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).to_string(),
        )
    };
    let prefix = db.dir.path().join("prefix");
    let prefix = prefix.to_str().unwrap();

    let (code, said) = run(&[], None);
    assert_eq!(code, Some(1));
    assert!(said.contains("a join token is required"), "{said}");

    // No Docker on the PATH: refused unless shell-only is asked for.
    let no_docker = no_docker_path(db.dir.path());
    let (code, said) = run(&["--join-token", "t", "--prefix", prefix], Some(&no_docker));
    assert_eq!(code, Some(1));
    assert!(said.contains("Docker is not available"), "{said}");

    // The server has no agent binary to give.
    let (code, said) = run(
        &["--join-token", "t", "--allow-shell", "--prefix", prefix],
        None,
    );
    assert_eq!(code, Some(1));
    assert!(said.contains("cannot download the agent"), "{said}");

    let (code, said) = run(
        &[
            "--join-token",
            "t",
            "--allow-shell",
            "--prefix",
            "/proc/xene",
        ],
        None,
    );
    assert_eq!(code, Some(1));
    assert!(said.contains("no permission"), "{said}");
}

/// A PATH with the tools the script needs but no `docker`.
fn no_docker_path(dir: &std::path::Path) -> String {
    let bin = dir.join("bin-without-docker");
    std::fs::create_dir_all(&bin).unwrap();
    for tool in [
        "sh",
        "curl",
        "sha256sum",
        "cut",
        "mkdir",
        "chmod",
        "mktemp",
        "rm",
        "mv",
        "uname",
        "id",
        "cat",
    ] {
        if let Some(found) = which(tool) {
            let _ = std::os::unix::fs::symlink(found, bin.join(tool));
        }
    }
    bin.display().to_string()
}

fn which(tool: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

fn kill(pid: i32) {
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status();
}

#[tokio::test]
async fn cancelling_a_remote_run_stops_its_step() {
    let db = TestDb::new(Backend::Sqlite);
    let xene = Xene::start(&db, "srv", &["--no-local-agent"]).await;
    let marker = db.dir.path().join("finished");
    let spec = format!(
        "name: long\npipelines:\n  p:\n    tasks:\n      t:\n        steps:\n          - name: wait\n            run: echo started; sleep 30; touch {}\n",
        marker.display()
    );
    xene.apply(&spec).await;
    let token = xene.join_token(json!({})).await;
    let _agent = Agent::start(
        &xene.base,
        &token,
        &db.dir.path().join("agent"),
        "agent",
        &["--allow-shell"],
    );
    xene.wait_agents_online(1).await;
    let id = xene.start_run("long", "p", json!({})).await;
    xene.wait_run(id, MINUTE, |run| {
        run["tasks"][0]["steps"][0]["status"] == "running"
    })
    .await;

    let (status, body) = xene.post(&format!("/api/v1/runs/{id}/cancel"), "").await;
    assert_eq!(status, 202, "{body}");
    let run = xene.wait_finished(id, MINUTE).await;
    assert_eq!(run["status"], "cancelled", "{run}");
    assert_eq!(run["tasks"][0]["steps"][0]["status"], "cancelled", "{run}");
    assert!(!marker.exists(), "the step ran to its end");
}
