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
        assert_eq!(
            names,
            ["extra", "dry_run", "replicas", "tag", "target"],
            "{answer}"
        );
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
          - printf '%s|' {{ params.a }} \"{{ params.b }}\" \"$XENE_PARAM_C\" {{ params.d }} > \"$XENE_OUTPUT\"
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

/// Moves a workflow's apply time back by `years`, so the cron controller
/// finds fires it missed "while no server ran".
async fn backdate(db: &TestDb, workflow: &str, years: i64) {
    let storage = xene_server::storage::Db::connect(&db.url).await.unwrap();
    sqlx::query("UPDATE workflows SET updated_at = updated_at - $1 WHERE name = $2")
        .bind(years * 366 * 24 * 3600 * 1000)
        .bind(workflow)
        .execute(storage.pool())
        .await
        .unwrap();
}

async fn fires(db: &TestDb, workflow: &str) -> Vec<(i64, String, String, Option<i64>)> {
    let storage = xene_server::storage::Db::connect(&db.url).await.unwrap();
    sqlx::query_as(
        "SELECT fire_at, outcome, reason, run_id FROM cron_fires WHERE workflow = $1 ORDER BY fire_at",
    )
    .bind(workflow)
    .fetch_all(storage.pool())
    .await
    .unwrap()
}

async fn runs_of(server: &TestServer, workflow: &str) -> Vec<Value> {
    let (status, list) = server
        .get(&format!("/api/v1/runs?workflow={workflow}"))
        .await;
    assert_eq!(status, 200, "{list}");
    list["runs"].as_array().unwrap().clone()
}

/// Waits until `done` holds for the cron fires of `workflow`.
async fn wait_fires(
    db: &TestDb,
    workflow: &str,
    done: impl Fn(&[(i64, String, String, Option<i64>)]) -> bool,
) -> Vec<(i64, String, String, Option<i64>)> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let f = fires(db, workflow).await;
        if done(&f) {
            return f;
        }
        assert!(std::time::Instant::now() < deadline, "no such fires: {f:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The start of this year in UTC, in ms: the latest fire of `0 0 1 1 *`.
fn new_year_ms() -> i64 {
    use chrono::{Datelike, TimeZone};
    let now = chrono::Utc::now();
    chrono::Utc
        .with_ymd_and_hms(now.year(), 1, 1, 0, 0, 0)
        .unwrap()
        .timestamp_millis()
}

fn yearly(name: &str, extra: &str, step: &str) -> String {
    format!(
        "name: {name}
pipelines:
  p:
    trigger: {{cron: \"0 0 1 1 *\", timezone: UTC{extra}}}
    params:
      mode: {{type: choice, options: [full, quick], default: quick}}
      note: \"$(touch /tmp/xene-cron-pwned)'; #\"
    tasks:
      t:
        steps: [\"{step}\"]
"
    )
}

#[tokio::test]
async fn missed_cron_fires_catch_up_once_or_are_skipped() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start(&db).await;
        for (name, extra) in [("latest", ""), ("skipping", ", catchup: skip")] {
            let (status, answer) = server
                .post(
                    "/api/v1/workflows",
                    yearly(
                        name,
                        extra,
                        "printf '%s %s' {{ params.mode }} {{ params.note }} > $XENE_OUTPUT",
                    ),
                )
                .await;
            assert_eq!(status, 201, "{answer}");
            // The next fires are in the API, soonest first.
            let (_, detail) = server.get(&format!("/api/v1/workflows/{name}")).await;
            let next: Vec<i64> = detail["pipelines"][0]["next_fires"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect();
            assert_eq!(next.len(), 5, "{detail}");
            assert!(next[0] > new_year_ms() && next.windows(2).all(|w| w[0] < w[1]));
            backdate(&db, name, 3).await;
        }

        let latest = wait_fires(&db, "latest", |f| !f.is_empty()).await;
        let skipping = wait_fires(&db, "skipping", |f| !f.is_empty()).await;
        // Three years of yearly fires missed: the latest runs once.
        assert_eq!(latest.len(), 1, "{latest:?}");
        assert_eq!(latest[0].0, new_year_ms());
        assert_eq!(latest[0].1, "started");
        let run = server.wait_for_run(latest[0].3.unwrap()).await;
        assert_eq!(run["status"], "success", "{run}");
        assert_eq!(run["trigger"], "cron");
        assert_eq!(run["fired_at"], new_year_ms());
        assert_eq!(run["params"]["mode"], "quick");
        // A value reaches the step as data, whatever it spells.
        assert_eq!(
            run["tasks"][0]["output"],
            "quick $(touch /tmp/xene-cron-pwned)'; #"
        );
        assert!(!std::path::Path::new("/tmp/xene-cron-pwned").exists());
        let reason = run["trigger_reason"].as_str().unwrap();
        assert!(
            reason.contains("caught up") && reason.contains("0 0 1 1 *"),
            "{reason}"
        );

        assert_eq!(skipping.len(), 1, "{skipping:?}");
        assert_eq!(skipping[0].1, "skipped");
        assert!(skipping[0].2.contains("catchup: skip"), "{skipping:?}");
        assert_eq!(skipping[0].3, None);

        // Passes later find nothing new to fire.
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        assert_eq!(runs_of(&server, "latest").await.len(), 1);
        assert_eq!(runs_of(&server, "skipping").await.len(), 0);
        assert_eq!(fires(&db, "latest").await.len(), 1);
        server.stop().await;
    }
}

#[tokio::test]
async fn a_fire_while_a_run_is_unfinished_is_skipped_or_queued() {
    let db = TestDb::new(Backend::Sqlite);
    let server = TestServer::start(&db).await;
    for (name, extra) in [
        ("skips", ""),
        ("queues", ", overlap: queue"),
        ("allows", ", overlap: allow"),
    ] {
        let (status, answer) = server
            .post("/api/v1/workflows", yearly(name, extra, "sleep 60"))
            .await;
        assert_eq!(status, 201, "{answer}");
        let (status, run) = server
            .post(
                &format!("/api/v1/workflows/{name}/pipelines/p/runs"),
                String::new(),
            )
            .await;
        assert_eq!(status, 201, "{run}");
        backdate(&db, name, 1).await;
    }
    let skips = wait_fires(&db, "skips", |f| !f.is_empty()).await;
    assert_eq!(skips[0].1, "skipped", "{skips:?}");
    assert!(
        skips[0].2.contains("has not finished (overlap: skip)"),
        "{skips:?}"
    );
    let allows = wait_fires(&db, "allows", |f| !f.is_empty()).await;
    assert_eq!(allows[0].1, "started", "{allows:?}");
    assert_eq!(runs_of(&server, "allows").await.len(), 2);

    let queued = wait_fires(&db, "queues", |f| !f.is_empty()).await;
    assert_eq!(queued[0].1, "queued", "{queued:?}");
    assert_eq!(runs_of(&server, "queues").await.len(), 1);
    // The run it waits for ends: the queued fire starts.
    let first = runs_of(&server, "queues").await[0]["id"].as_i64().unwrap();
    let (status, _) = server
        .post(&format!("/api/v1/runs/{first}/cancel"), String::new())
        .await;
    assert_eq!(status, 202);
    let started = wait_fires(&db, "queues", |f| f[0].1 == "started").await;
    let run = server
        .wait_run_until(started[0].3.unwrap(), |r| r["trigger"] == "cron")
        .await;
    assert!(
        run["trigger_reason"]
            .as_str()
            .unwrap()
            .contains("queued behind an earlier run"),
        "{run}"
    );
    assert_eq!(runs_of(&server, "queues").await.len(), 2);
    assert_eq!(runs_of(&server, "skips").await.len(), 1);
    server.stop().await;
}

/// The key under the lease: two replicas that both believe they may fire
/// (a lease that changed hands mid-pass) record a fire once and start one run.
#[tokio::test]
async fn one_fire_starts_one_run_whatever_races_for_it() {
    let db = TestDb::new(Backend::Postgres);
    let server = TestServer::start(&db).await;
    let (status, _) = server
        .post("/api/v1/workflows", yearly("race", "", "true"))
        .await;
    assert_eq!(status, 201);
    let a = xene_server::storage::Db::connect(&db.url).await.unwrap();
    let b = xene_server::storage::Db::connect(&db.url).await.unwrap();
    use xene_server::storage::{cron, runs};
    let fire_at = 1_000;
    let mut started = 0;
    for _ in 0..5 {
        let pa = runs::prepare(&a, "race", "p", Default::default())
            .await
            .unwrap();
        let pb = runs::prepare(&b, "race", "p", Default::default())
            .await
            .unwrap();
        let (ra, rb) = tokio::join!(
            cron::fire(&a, "race", "p", fire_at, cron::Outcome::Start(&pa, "a")),
            cron::fire(&b, "race", "p", fire_at, cron::Outcome::Start(&pb, "b")),
        );
        started += [ra.unwrap(), rb.unwrap()].iter().flatten().count();
    }
    assert_eq!(started, 1);
    let runs: Vec<Value> = runs_of(&server, "race")
        .await
        .into_iter()
        .filter(|r| r["fired_at"] == fire_at)
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    server.stop().await;
}

/// Two real `xene` processes on one PostgreSQL; the one holding the cron
/// lease is killed (SIGKILL) at a different moment of its pass each round,
/// before, while or after it fires. The other takes over, and every fire
/// still starts exactly one run.
#[tokio::test]
async fn each_fire_happens_once_across_replicas_when_the_firing_one_is_killed() {
    use crate::process::Xene;
    let db = TestDb::new(Backend::Postgres);
    let store = xene_server::storage::Db::connect(&db.url).await.unwrap();
    let flags = ["--no-local-agent"];
    let mut replicas = vec![
        Xene::start(&db, "cron-a", &flags).await,
        Xene::start(&db, "cron-b", &flags).await,
    ];
    for (round, delay_ms) in [0u64, 400, 900, 1500].into_iter().enumerate() {
        let name = format!("yearly-{round}");
        replicas[0].apply(&yearly(&name, "", "true")).await;
        // Who fires: the holder of the cron lease.
        let holder_pid = loop {
            let holder: Option<String> = sqlx::query_scalar(
                "SELECT holder FROM leases WHERE name = 'cron' AND expires_at > $1",
            )
            .bind(xene_server::storage::now_ms())
            .fetch_optional(store.pool())
            .await
            .unwrap();
            if let Some(pid) = holder
                .and_then(|h| h.split(['#', '@']).nth(1).map(str::to_string))
                .and_then(|p| p.parse::<u32>().ok())
                .filter(|p| replicas.iter().any(|r| r.pid() == *p))
            {
                break pid;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        backdate(&db, &name, 1).await;
        tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
        let index = replicas.iter().position(|r| r.pid() == holder_pid).unwrap();
        let mut killed = replicas.remove(index);
        killed.kill();

        // The survivor takes the lease once it expires, and fires if the
        // killed one had not.
        let f = wait_fires(&db, &name, |f| !f.is_empty()).await;
        let survivor = replicas[0].pid().to_string();
        loop {
            let holder: Option<String> = sqlx::query_scalar(
                "SELECT holder FROM leases WHERE name = 'cron' AND expires_at > $1",
            )
            .bind(xene_server::storage::now_ms())
            .fetch_optional(store.pool())
            .await
            .unwrap();
            if holder.is_some_and(|h| h.contains(&format!("#{survivor}@"))) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        // A few passes of the survivor.
        tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
        let f2 = fires(&db, &name).await;
        assert_eq!(f2, f, "round {round}: a fire was recorded twice");
        assert_eq!(f.len(), 1, "round {round}: {f:?}");
        assert_eq!(f[0].0, new_year_ms());
        let (_, list) = replicas[0]
            .get(&format!("/api/v1/runs?workflow={name}"))
            .await;
        let runs = list["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 1, "round {round}: {list}");
        assert_eq!(runs[0]["fired_at"], new_year_ms());
        assert_eq!(Some(runs[0]["id"].as_i64().unwrap()), f[0].3);
        // A fresh replica for the next round.
        replicas.push(Xene::start(&db, &format!("cron-{round}"), &flags).await);
    }
}
