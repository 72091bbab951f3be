//! `run --wait` (its exit code is the run's), `rerun`, `cancel`, `get runs`,
//! `describe run`; and the same path on PostgreSQL.

use serde_json::json;

use crate::util::{Home, Postgres, Xene, sqlite_url, write};

const SPEC: &str = "\
name: ci
pipelines:
  pass:
    params: {who: nobody}
    tasks:
      build:
        steps:
          - name: compile
            run: echo \"building for {{ params.who }}\"
      test:
        depends_on: [build]
        steps:
          - run: echo tested
  slow:
    tasks:
      wait:
        steps:
          - run: sleep 120
  fail:
    tasks:
      build:
        steps:
          - name: compile
            run: echo broken >&2; exit 3
      test:
        depends_on: [build]
        steps:
          - run: echo never
";

async fn check_runs(home: &Home, xene: &Xene) {
    let server = ["--server", xene.base.as_str()];
    let file = write(home, "ci.yaml", SPEC);
    let out = home
        .run(&[&server[..], &["apply", "-f", file.to_str().unwrap()]].concat())
        .await;
    assert_eq!(out.code, 0, "{out:?}");

    // Success: exit 0, a line per task change (not a terminal), the outcome last.
    let out = home
        .run(
            &[
                &server[..],
                &["run", "ci/pass", "-p", "who=world", "--wait"],
            ]
            .concat(),
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("build: success"), "{out:?}");
    assert!(out.stdout.contains("test: success"), "{out:?}");
    let last = out.stdout.lines().last().unwrap();
    assert!(last.starts_with("run/1 success"), "{out:?}");
    assert!(
        !out.stdout.contains('\x1b'),
        "no colours off a terminal: {out:?}"
    );

    // Failure: exit 1, with the failed and the skipped tasks.
    let out = home
        .run(&[&server[..], &["run", "ci/fail", "--wait"]].concat())
        .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("build: error"), "{out:?}");
    assert!(out.stdout.contains("test: not_executed"), "{out:?}");
    assert!(
        out.stdout
            .lines()
            .last()
            .unwrap()
            .starts_with("run/2 error"),
        "{out:?}"
    );

    // The params reached the step, and `logs` shows them.
    let out = home.run(&[&server[..], &["logs", "1"]].concat()).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout, "[build/compile] building for world\n[test/step-1] tested\n",
        "{out:?}"
    );
    let out = home
        .run(
            &[
                &server[..],
                &["logs", "2", "--task", "build", "--step", "compile"],
            ]
            .concat(),
        )
        .await;
    assert_eq!(out.stdout, "broken\n", "{out:?}");
    let out = home
        .run(&[&server[..], &["logs", "1", "--timestamps", "--since", "1h"]].concat())
        .await;
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{out:?}");
    // Lines from before the last millisecond: none, since the run ended
    // before the commands above ran.
    let out = home
        .run(&[&server[..], &["logs", "1", "--since", "1ms"]].concat())
        .await;
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{out:?}");
    for line in lines {
        let (time, rest) = line.split_once(' ').unwrap();
        assert!(
            time.len() == 24 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
            "{line}"
        );
        assert!(rest.starts_with('['), "{line}");
    }

    // rerun: the same pipeline with the same params, as a new run.
    let out = home
        .run(&[&server[..], &["rerun", "1", "--wait", "-o", "json"]].concat())
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let rerun = out.json();
    assert_eq!(rerun["id"], 3);
    assert_eq!(rerun["pipeline"], "pass");
    assert_eq!(rerun["params"]["who"], "world");

    let out = home
        .run(&[&server[..], &["get", "runs", "-o", "json"]].concat())
        .await;
    let ids: Vec<i64> = out.json()["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [3, 2, 1], "{out:?}");
    let out = home
        .run(&[&server[..], &["get", "runs", "--status", "error"]].concat())
        .await;
    assert_eq!(out.stdout.lines().count(), 2, "a header and run 2: {out:?}");
    assert!(
        out.stdout.lines().nth(1).unwrap().starts_with("2 "),
        "{out:?}"
    );

    let out = home
        .run(&[&server[..], &["describe", "run", "2"]].concat())
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("Pipeline:   ci/fail"), "{out:?}");
    assert!(out.stdout.contains("exit 3"), "{out:?}");

    // Cancelling a running run: its agent stops it.
    let out = home.run(&[&server[..], &["run", "ci/slow"]].concat()).await;
    assert_eq!(out.stdout, "run/4 queued (ci/slow)\n", "{out:?}");
    xene.wait_run(4, |run| run["status"] == "running").await;
    let out = home.run(&[&server[..], &["cancel", "4"]].concat()).await;
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "run/4 cancelling\n"),
        "{out:?}"
    );
    let out = home
        .run(&[&server[..], &["logs", "4", "-f"]].concat())
        .await;
    assert_eq!(out.code, 0, "logs -f ends with the run: {out:?}");
    let run = xene.wait_run(4, |run| run["status"] == "cancelled").await;
    assert_eq!(run["tasks"][0]["status"], "cancelled", "{run}");

    // Cancelling a finished run is refused (409: exit 2); an unknown run is 4.
    let out = home.run(&[&server[..], &["cancel", "2"]].concat()).await;
    assert_eq!(out.code, 2, "{out:?}");
    let out = home
        .run(&[&server[..], &["describe", "run", "99"]].concat())
        .await;
    assert_eq!(out.code, 4, "{out:?}");
    let out = home.run(&[&server[..], &["run", "ci/nope"]].concat()).await;
    assert_eq!(out.code, 4, "{out:?}");
    let out = home
        .run(&[&server[..], &["run", "ci-without-slash"]].concat())
        .await;
    assert_eq!(out.code, 2, "{out:?}");

    let out = home.run(&[&server[..], &["get", "agents"]].concat()).await;
    assert!(
        out.stdout.lines().nth(1).unwrap().starts_with("builtin "),
        "{out:?}"
    );
    let out = home
        .run(&[&server[..], &["describe", "agent", "builtin"]].concat())
        .await;
    assert!(out.stdout.contains("State:      online"), "{out:?}");

    check_agents_of_runs(home, xene).await;
    check_drain(home, xene).await;
    check_rerun_versions(home, xene).await;
}

/// `rerun` runs the run's own workflow version (walk bug 19: it ran the
/// newest); `rerun --latest` the current one.
async fn check_rerun_versions(home: &Home, xene: &Xene) {
    let server = ["--server", xene.base.as_str()];
    let file = write(
        home,
        "ci-2.yaml",
        &SPEC.replace("echo tested", "echo tested again"),
    );
    let out = home
        .run(&[&server[..], &["apply", "-f", file.to_str().unwrap()]].concat())
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let out = home
        .run(&[&server[..], &["rerun", "1", "-o", "json"]].concat())
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let same = out.json();
    assert_eq!(
        (&same["version"], &same["params"]["who"]),
        (&json!(1), &json!("world")),
        "{out:?}"
    );
    let out = home
        .run(&[&server[..], &["rerun", "1", "--latest", "-o", "json"]].concat())
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let latest = out.json();
    assert_eq!(
        (&latest["version"], &latest["params"]["who"]),
        (&json!(2), &json!("world")),
        "{out:?}"
    );
    let out = home.run(&[&server[..], &["rerun", "1"]].concat()).await;
    let id = latest["id"].as_i64().unwrap() + 1;
    assert_eq!(
        out.stdout,
        format!("run/{id} queued (ci/pass, version 1)\n"),
        "{out:?}"
    );
}

/// `get runs` names a run's agent; `-o wide` every agent, under AGENTS;
/// `describe run` each task's.
async fn check_agents_of_runs(home: &Home, xene: &Xene) {
    let server = ["--server", xene.base.as_str()];
    let out = home
        .run(&[&server[..], &["get", "runs", "--status", "success"]].concat())
        .await;
    let header: Vec<&str> = out
        .stdout
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert!(header.contains(&"AGENT"), "{out:?}");
    let out = home
        .run(&[&server[..], &["get", "runs", "-o", "wide"]].concat())
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let mut lines = out.stdout.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    let column = header.iter().position(|h| *h == "AGENTS");
    let column = column.unwrap_or_else(|| panic!("no AGENTS column: {out:?}"));
    let run_1 = lines
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells[0] == "1")
        .unwrap_or_else(|| panic!("no run 1: {out:?}"));
    assert_eq!(run_1[column], "builtin", "{out:?}");
    let out = home
        .run(&[&server[..], &["get", "runs", "-o", "json"]].concat())
        .await;
    let runs = out.json();
    let run_1 = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == 1);
    assert_eq!(run_1.unwrap()["agents"], serde_json::json!(["builtin"]));
    let out = home
        .run(&[&server[..], &["describe", "run", "1"]].concat())
        .await;
    assert!(out.stdout.contains("Agents:     builtin"), "{out:?}");
    let build = out
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("build "));
    let build: Vec<&str> = build.unwrap().split_whitespace().collect();
    assert_eq!(build[..3], ["build", "success", "builtin"], "{out:?}");
}

/// `agents drain` and `--undo`: the agent says `draining`, or `drained`
/// when it holds nothing; an unknown agent is exit 4.
async fn check_drain(home: &Home, xene: &Xene) {
    let server = ["--server", xene.base.as_str()];
    let out = home
        .run(&[&server[..], &["agents", "drain", "builtin"]].concat())
        .await;
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "agent/builtin drained: it holds no tasks\n"),
        "{out:?}"
    );
    let out = home.run(&[&server[..], &["get", "agents"]].concat()).await;
    let row: Vec<&str> = out
        .stdout
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(row[..2], ["builtin", "drained"], "{out:?}");
    let out = home
        .run(&[&server[..], &["describe", "agent", "builtin", "-o", "json"]].concat())
        .await;
    assert_eq!(out.json()["draining"], true, "{out:?}");
    let out = home
        .run(&[&server[..], &["agents", "drain", "builtin", "--undo"]].concat())
        .await;
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "agent/builtin takes tasks again\n"),
        "{out:?}"
    );
    let out = home
        .run(&[&server[..], &["describe", "agent", "builtin"]].concat())
        .await;
    assert!(out.stdout.contains("State:      online"), "{out:?}");
    let out = home
        .run(&[&server[..], &["agents", "drain", "nobody"]].concat())
        .await;
    assert_eq!(out.code, 4, "{out:?}");
    // By its name, as people know it.
    let out = home
        .run(&[&server[..], &["describe", "agent", "builtin", "-o", "json"]].concat())
        .await;
    let name = out.json()["name"].as_str().unwrap().to_string();
    for undo in [&[][..], &["--undo"][..]] {
        let out = home
            .run(&[&server[..], &["agents", "drain", &name], undo].concat())
            .await;
        assert_eq!(out.code, 0, "{out:?}");
        assert!(out.stdout.starts_with("agent/builtin "), "{out:?}");
    }
    // Undrained, it takes runs again.
    let out = home
        .run(&[&server[..], &["run", "ci/pass", "--wait"]].concat())
        .await;
    assert_eq!(out.code, 0, "{out:?}");

    // A name two agents share is refused with both ids, and drains none.
    let mut ids = Vec::new();
    for _ in 0..2 {
        let join = xene
            .post("/api/v1/agents/join-tokens", serde_json::json!({}))
            .await;
        let joined = xene
            .post(
                "/api/v1/agents/join",
                serde_json::json!({"token": join["token"], "name": "twin"}),
            )
            .await;
        ids.push(joined["agent_id"].as_str().unwrap().to_string());
    }
    let out = home
        .run(&[&server[..], &["agents", "drain", "twin"]].concat())
        .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("ambiguous"), "{out:?}");
    let list = xene.get("/api/v1/agents").await;
    for id in &ids {
        assert!(out.stderr.contains(id.as_str()), "{out:?}");
        let agent = list["agents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == **id);
        assert_eq!(agent.unwrap()["draining"], false, "{list}");
    }
    // By id, each is its own.
    let out = home
        .run(&[&server[..], &["agents", "drain", &ids[0]]].concat())
        .await;
    assert_eq!(out.code, 0, "{out:?}");
}

#[tokio::test]
async fn run_wait_exits_with_the_runs_outcome_on_sqlite() {
    let home = Home::new();
    let xene = Xene::start(&home, &sqlite_url(&home), None, &[]).await;
    check_runs(&home, &xene).await;
}

#[tokio::test]
async fn run_wait_exits_with_the_runs_outcome_on_postgres() {
    let home = Home::new();
    let pg = Postgres::start();
    let xene = Xene::start(&home, &pg.url(), None, &[]).await;
    check_runs(&home, &xene).await;
}

#[tokio::test]
async fn an_unreachable_server_exits_5() {
    let home = Home::new();
    let port = xene_testkit::free_port();
    let server = format!("http://127.0.0.1:{port}");
    let out = home.run(&["--server", &server, "get", "runs"]).await;
    assert_eq!(out.code, 5, "{out:?}");
    assert!(out.stderr.contains("cannot reach"), "{out:?}");
}

#[tokio::test]
async fn get_runs_watch_prints_a_line_per_change() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let home = Home::new();
    let xene = Xene::start(&home, &sqlite_url(&home), None, &[]).await;
    let file = write(&home, "ci.yaml", SPEC);
    let out = home
        .run(&[
            "--server",
            &xene.base,
            "apply",
            "-f",
            file.to_str().unwrap(),
        ])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let mut watch = home
        .xenectl(&[
            "--server",
            &xene.base,
            "get",
            "runs",
            "-w",
            "--pipeline",
            "pass",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    assert!(
        next_line(&mut lines).await.starts_with("ID "),
        "the header first"
    );
    // A run of another pipeline is filtered out; this one's changes show.
    xene.post(
        "/api/v1/workflows/ci/pipelines/fail/runs",
        serde_json::json!({}),
    )
    .await;
    xene.post(
        "/api/v1/workflows/ci/pipelines/pass/runs",
        serde_json::json!({}),
    )
    .await;
    loop {
        let line = next_line(&mut lines).await;
        assert!(line.starts_with("2 ") && line.contains(" pass "), "{line}");
        if line.contains(" success ") {
            break;
        }
    }
    watch.kill().await.unwrap();
}

async fn next_line(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
) -> String {
    tokio::time::timeout(crate::util::LONG, lines.next_line())
        .await
        .expect("a line")
        .unwrap()
        .expect("still watching")
}

/// `xenectl ARGS` on a terminal (a pty from util-linux's `script`); what
/// the terminal showed.
async fn on_a_terminal(home: &Home, args: &[&str], no_color: bool) -> (i32, String) {
    let line = std::iter::once(env!("CARGO_BIN_EXE_xenectl"))
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let mut cmd = home.xenectl(&[]);
    let cmd = cmd.as_std_mut();
    let mut script = tokio::process::Command::new("script");
    script.args(["-qefc", &line, "/dev/null"]).env_clear();
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            script.env(key, value);
        }
    }
    if no_color {
        script.env("NO_COLOR", "1");
    }
    let output = tokio::time::timeout(crate::util::LONG, script.output())
        .await
        .unwrap()
        .expect("script runs (util-linux)");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[tokio::test]
async fn on_a_terminal_the_view_is_a_table_in_colour_unless_no_color() {
    let home = Home::new();
    let xene = Xene::start(&home, &sqlite_url(&home), None, &[]).await;
    let file = write(&home, "ci.yaml", SPEC);
    let out = home
        .run(&[
            "--server",
            &xene.base,
            "apply",
            "-f",
            file.to_str().unwrap(),
        ])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let args = ["--server", &xene.base, "run", "ci/fail", "--wait"];

    let (code, shown) = on_a_terminal(&home, &args, false).await;
    assert_eq!(code, 1, "{shown}");
    assert!(
        shown.contains("STATUS") && shown.contains("DURATION"),
        "a table: {shown:?}"
    );
    assert!(
        shown.contains("\x1b[31merror\x1b[0m"),
        "in colour: {shown:?}"
    );

    let (code, shown) = on_a_terminal(&home, &args, true).await;
    assert_eq!(code, 1, "{shown}");
    assert!(shown.contains("STATUS"), "{shown:?}");
    assert!(
        !shown.contains("\x1b[31m") && !shown.contains("\x1b[32m"),
        "no colours: {shown:?}"
    );
}
