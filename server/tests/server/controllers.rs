//! The controllers across process deaths: the real `xene` binary killed with
//! SIGKILL in the middle of a run and started again over the same database,
//! and two replicas sharing one PostgreSQL.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::Row;

use crate::process::Xene;
use crate::util::{Backend, TestDb};

fn status_of(value: &Value) -> &str {
    value["status"].as_str().expect("a status")
}

fn task<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no task {name}"))
}

fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Each task appends to its own marker file, so the files count executions
/// whatever the server records; `b` sleeps so the server can die under it.
const CHAIN: &str = r#"
name: chain
pipelines:
  abc:
    params: {dir: ""}
    tasks:
      a:
        steps:
          - name: mark
            run: |
              echo ran >> "{{ params.dir }}/a"
              for i in 1 2 3; do echo "a says $i"; done
      b:
        depends_on: [a]
        # A run lost with its agent is retried only if a task allows retries.
        retries: 1
        steps:
          - name: mark
            run: |
              echo ran >> "{{ params.dir }}/b"
              echo "b begins"
              sleep 4
              echo "b ends"
      c:
        depends_on: [b]
        steps:
          - name: mark
            run: |
              echo ran >> "{{ params.dir }}/c"
              for i in 1 2 3; do echo "c says $i"; done
"#;

async fn a_run_survives_kill_9_of_its_server(backend: Backend) {
    let db = TestDb::new(backend);
    let markers = tempfile::tempdir().unwrap();
    let dir = markers.path().display().to_string();
    // Built-in steps write only their workspace unless told (and run as
    // nobody under root).
    std::fs::set_permissions(
        markers.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let writable = ["--local-agent-shell-writable", dir.as_str()];
    let mut first = Xene::start(&db, "builtin-crash", &writable).await;
    first.apply(CHAIN).await;
    let id = first.start_run("chain", "abc", json!({ "dir": dir })).await;
    let before = first
        .wait_run(id, Duration::from_secs(60), |run| {
            assert!(
                !["success", "error", "cancelled", "unknown"].contains(&status_of(run)),
                "finished early: {run}"
            );
            // Its step began writing: steps start only once TaskStarted
            // is stored, and a step shown running may not have spawned yet.
            task(run, "b")["steps"][0]["status"] == "running"
                && !lines_of(&markers.path().join("b")).is_empty()
        })
        .await;
    assert_eq!(task(&before, "a")["status"], "success", "{before}");
    first.kill();

    // Same agent id: the new process knows the runs held under it died with the old one.
    let second = Xene::start(&db, "builtin-crash", &writable).await;
    let run = second.wait_finished(id, Duration::from_secs(120)).await;
    assert_eq!(status_of(&run), "success", "{run}");
    // Only the lost task attempt ran again: `b`'s second attempt, with
    // the first lost with its agent; `a` and `c` ran once.
    let attempts = |name: &str| task(&run, name)["attempts"].as_array().unwrap().clone();
    let b = attempts("b");
    assert_eq!(b.len(), 2, "the lost attempt was retried once: {run}");
    assert_eq!(b[0]["status"], "unknown", "{run}");
    assert_eq!(b[1]["status"], "success", "{run}");
    assert_eq!(attempts("a").len(), 1, "{run}");
    assert_eq!(attempts("c").len(), 1, "{run}");
    for name in ["a", "b", "c"] {
        assert_eq!(task(&run, name)["status"], "success", "{run}");
    }

    let marker = |name: &str| lines_of(&markers.path().join(name));
    assert_eq!(
        marker("a").len(),
        1,
        "a finished before the crash and is not run again"
    );
    assert_eq!(marker("b").len(), 2, "b was interrupted, then run again");
    assert_eq!(marker("c").len(), 1);

    // The logs of every finished step are whole, each under its task's
    // attempt: a's and c's first, b's second (its first was cut short).
    let logs = second.logs(id).await;
    let said = |task: &str, attempt: i64| -> Vec<String> {
        logs.iter()
            .filter(|l| l["task"] == task && l["attempt"] == attempt)
            .map(|l| l["data"].as_str().unwrap().trim_end().to_string())
            .collect()
    };
    assert_eq!(
        said("a", 1),
        ["a says 1", "a says 2", "a says 3"],
        "{logs:#?}"
    );
    assert!(said("a", 2).is_empty(), "{logs:#?}");
    assert_eq!(said("b", 2), ["b begins", "b ends"], "{logs:#?}");
    assert!(said("b", 1).iter().all(|l| l == "b begins"), "{logs:#?}");
    assert_eq!(
        said("c", 1),
        ["c says 1", "c says 2", "c says 3"],
        "{logs:#?}"
    );
    assert!(said("c", 2).is_empty(), "{logs:#?}");
}

#[tokio::test]
async fn a_run_survives_kill_9_of_its_server_on_sqlite() {
    a_run_survives_kill_9_of_its_server(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_run_survives_kill_9_of_its_server_on_postgres() {
    a_run_survives_kill_9_of_its_server(Backend::Postgres).await;
}

/// Every execution appends its run id and attempt (`$XENE_RUN_ID` is
/// `ID-ATTEMPT-INCARNATION`) to one shared file. The sleep keeps runs overlapping so
/// both replicas' agents get work.
const TALLY: &str = r#"
name: tally
pipelines:
  once:
    params: {file: ""}
    tasks:
      t:
        # Lets runs placed on a replica that dies be retried on the other.
        retries: 2
        steps:
          - run: |
              echo "$XENE_RUN_ID" >> "{{ params.file }}"
              sleep 1
"#;

/// Executions per run id, from the shared file.
fn executions(file: &Path) -> BTreeMap<i64, Vec<i64>> {
    let mut seen: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for line in lines_of(file) {
        let mut fields = line.split('-');
        let (Some(id), Some(attempt)) = (fields.next(), fields.next()) else {
            panic!("bad line {line:?}");
        };
        seen.entry(id.parse().unwrap())
            .or_default()
            .push(attempt.parse().unwrap());
    }
    seen
}

async fn leases(db: &xene_server::storage::Db) -> Vec<(String, String)> {
    sqlx::query("SELECT name, holder FROM leases ORDER BY name")
        .fetch_all(db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test]
async fn two_replicas_share_postgres_and_run_each_run_once() {
    let db = TestDb::new(Backend::Postgres);
    let shared = tempfile::tempdir().unwrap();
    let file = shared.path().join("tally");
    let file_param = file.display().to_string();
    // Built-in steps write only their workspace unless told (and run as
    // nobody under root).
    std::fs::set_permissions(
        shared.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let shared_dir = shared.path().display().to_string();
    let writable = ["--local-agent-shell-writable", shared_dir.as_str()];
    let mut replicas = [
        Xene::start(&db, "replica-1", &writable).await,
        Xene::start(&db, "replica-2", &writable).await,
    ];
    let store = xene_server::storage::Db::connect(&db.url).await.unwrap();

    // Both agents online before any run is queued, so both can take work.
    let started = Instant::now();
    loop {
        let (_, body) = replicas[0].get("/api/v1/agents").await;
        let online = body["agents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["state"] == "online")
            .count();
        if online == 2 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "agents: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    replicas[0].apply(TALLY).await;
    let mut ids = Vec::new();
    for i in 0..30 {
        // Half the requests through each replica: either may take them.
        ids.push(
            replicas[i % 2]
                .start_run("tally", "once", json!({ "file": file_param }))
                .await,
        );
    }
    let mut agents_used = BTreeSet::new();
    for &id in &ids {
        let run = replicas[1]
            .wait_finished(id, Duration::from_secs(120))
            .await;
        assert_eq!(status_of(&run), "success", "{run}");
        assert_eq!(run["attempt"], 1, "{run}");
        agents_used.insert(run["agents"][0].as_str().unwrap().to_string());
    }
    let seen = executions(&file);
    assert_eq!(
        seen.keys().copied().collect::<Vec<_>>(),
        ids,
        "every run ran"
    );
    for (id, attempts) in &seen {
        assert_eq!(attempts, &[1], "run {id} ran more than once: {attempts:?}");
    }
    assert_eq!(
        agents_used,
        BTreeSet::from(["replica-1".to_string(), "replica-2".to_string()])
    );

    let held = leases(&store).await;
    let names: Vec<&str> = held.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        ["collector", "cron", "readiness", "scheduler", "supervisor"],
        "one row, so one holder, per lease: {held:?}"
    );
    let holder_prefix = |r: &Xene| format!("{}#{}@", r.agent_id, r.pid());
    for (name, holder) in &held {
        assert!(
            replicas
                .iter()
                .any(|r| holder.starts_with(&holder_prefix(r))),
            "{name} held by {holder}"
        );
    }

    // Kill the scheduling replica; the survivor must take over its lease and
    // schedule new runs, placing on itself what went to the dead agent.
    let scheduler = &held.iter().find(|(name, _)| name == "scheduler").unwrap().1;
    let dead = replicas
        .iter()
        .position(|r| scheduler.starts_with(&holder_prefix(r)))
        .unwrap();
    let alive = 1 - dead;
    replicas[dead].kill();
    let survivor = &replicas[alive];
    let mut later = Vec::new();
    for _ in 0..5 {
        later.push(
            survivor
                .start_run("tally", "once", json!({ "file": file_param }))
                .await,
        );
    }
    for &id in &later {
        let run = survivor.wait_finished(id, Duration::from_secs(180)).await;
        assert_eq!(status_of(&run), "success", "{run}");
        assert_eq!(run["agents"], json!([survivor.agent_id]), "{run}");
    }
    let seen = executions(&file);
    for id in &later {
        assert_eq!(
            seen.get(id).map(Vec::len),
            Some(1),
            "run {id} ran exactly once: {seen:?}"
        );
    }
    let held = leases(&store).await;
    let scheduler = &held
        .iter()
        .find(|(name, _)| name == "scheduler")
        .expect("a scheduler lease")
        .1;
    assert!(
        scheduler.starts_with(&holder_prefix(survivor)),
        "the survivor schedules now: {held:?}"
    );
    store.close().await;
}
