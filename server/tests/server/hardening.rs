//! What a step on the built-in agent can see of the server.

use xene_testkit::docker::busybox_image;

use crate::util::{Backend, TestDb, TestServer};

mod shell;

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

/// A client that sends its headers a byte at a time (slowloris) is cut off,
/// and other clients are served meanwhile.
#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let db = crate::util::TestDb::new(crate::util::Backend::Sqlite);
    let server = crate::util::TestServer::start(&db).await;
    let mut slow = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let (status, _) = server.get("/healthz").await;
    assert_eq!(status, 200, "others are served");
    // Keep trickling; the server closes the connection anyway.
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            if slow.write_all(b"X").await.is_err() {
                return;
            }
            match tokio::time::timeout(std::time::Duration::from_secs(1), slow.read(&mut buf)).await
            {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                _ => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the slow client is still connected");
    let waited = started.elapsed();
    assert!(
        waited >= xene_server::listen::HEADER_READ_TIMEOUT - std::time::Duration::from_secs(1),
        "cut off after {waited:?}"
    );
    server.stop().await;
}

/// Input that used to reach the database as a 500: a NUL in a path or a
/// query (PostgreSQL refuses it in text), and concurrent applies of one
/// workflow (both took the same next version number).
#[tokio::test]
async fn nuls_and_concurrent_applies_are_not_server_errors() {
    for backend in crate::util::BACKENDS {
        let db = crate::util::TestDb::new(backend);
        let server = crate::util::TestServer::start(&db).await;
        for path in [
            "/api/v1/workflows/a%00b",
            "/api/v1/runs?workflow=a%00b",
            "/api/v1/secrets?workflow=x%00",
        ] {
            let (status, body) = server.get(path).await;
            assert_eq!(status, 400, "{backend:?} {path}: {body}");
        }
        let applies = (0..8).map(|i| {
            let client = server.client.clone();
            let url = server.url("/api/v1/workflows");
            async move {
                let spec = format!(
                    "name: racy\npipelines:\n  p:\n    tasks:\n      t:\n        steps: [\"echo {i}\"]\n"
                );
                crate::util::response(client.post(url).body(spec).send().await.unwrap()).await
            }
        });
        let mut versions = Vec::new();
        for (status, body) in futures::future::join_all(applies).await {
            assert_eq!(status, 201, "{backend:?}: {body}");
            versions.push(body["version"].as_i64().unwrap());
        }
        versions.sort();
        assert_eq!(versions, (1..=8).collect::<Vec<i64>>(), "{backend:?}");
        server.stop().await;
    }
}

/// Retention reaches what used to be kept forever: join tokens, revoked
/// agents and versions no run refers to; never a current version or one a
/// run was made from.
#[tokio::test]
async fn old_tokens_agents_and_unused_versions_are_pruned() {
    for backend in crate::util::BACKENDS {
        let db = crate::util::TestDb::new(backend);
        let server =
            crate::util::TestServer::start_with(&db, |args| args.no_local_agent = true).await;
        for i in 1..=3 {
            let spec = format!(
                "name: kept\npipelines:\n  p:\n    tasks:\n      t:\n        steps: [\"echo {i}\"]\n"
            );
            let (status, body) = server.post("/api/v1/workflows", spec).await;
            assert_eq!(status, 201, "{body}");
            if i == 2 {
                let (status, run) = server
                    .post("/api/v1/workflows/kept/pipelines/p/runs", "")
                    .await;
                assert_eq!(status, 201, "{run}");
            }
        }
        let (_, token) = server
            .post(
                "/api/v1/agents/join-tokens",
                serde_json::json!({}).to_string(),
            )
            .await;
        let (_, joined) = server
            .post(
                "/api/v1/agents/join",
                serde_json::json!({ "token": token["token"], "name": "gone" }).to_string(),
            )
            .await;
        let agent = joined["agent_id"].as_str().unwrap().to_string();
        assert_eq!(server.delete(&format!("/api/v1/agents/{agent}")).await, 204);
        let (_, unused) = server
            .post(
                "/api/v1/agents/join-tokens",
                serde_json::json!({}).to_string(),
            )
            .await;

        let store = xene_server::storage::Db::connect(&db.url).await.unwrap();
        let later = xene_server::storage::now_ms() + 40 * 24 * 3600 * 1000;
        let pruned = xene_server::storage::retention::prune_records(&store, later)
            .await
            .unwrap();
        assert!(pruned >= 3, "{backend:?}: {pruned}");
        let (_, versions) = server.get("/api/v1/workflows/kept/versions").await;
        let kept: Vec<i64> = versions["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["version"].as_i64().unwrap())
            .collect();
        assert_eq!(kept.len(), 2, "{backend:?}: {versions}");
        assert!(kept.contains(&2) && kept.contains(&3), "{versions}");
        let (_, agents) = server.get("/api/v1/agents").await;
        assert!(!agents.to_string().contains(&agent), "{agents}");
        // The unused token is gone: joining with it fails.
        let (status, _) = server
            .post(
                "/api/v1/agents/join",
                serde_json::json!({ "token": unused["token"], "name": "late" }).to_string(),
            )
            .await;
        assert_eq!(status, 401, "{backend:?}");
        store.close().await;
        server.stop().await;
    }
}

/// The built-in agent's containers had only the built-in defaults: `xene`
/// had no flags for them. A real `xene` with `--docker-memory`,
/// `--docker-pids` and `--docker-cpus` runs a step in Docker that reads
/// its own cgroup.
#[tokio::test(flavor = "multi_thread")]
async fn built_in_agent_containers_get_the_configured_limits() {
    let image = busybox_image();
    let db = TestDb::new(Backend::Sqlite);
    let xene = crate::process::Xene::start(
        &db,
        "limits",
        &[
            "--docker-memory",
            "300m",
            "--docker-pids",
            "77",
            "--docker-cpus",
            "0.5",
        ],
    )
    .await;
    xene.apply(&format!(
        r#"name: limits
pipelines:
  p:
    tasks:
      show:
        image: {image}
        steps:
          - |
            cg=/sys/fs/cgroup
            if [ -f $cg/memory/memory.limit_in_bytes ]; then
              echo "$(cat $cg/memory/memory.limit_in_bytes) $(cat $cg/pids/pids.max) $(cat $cg/cpu/cpu.cfs_quota_us)/$(cat $cg/cpu/cpu.cfs_period_us)" > "$XENE_OUTPUT"
            else
              echo "$(cat $cg/memory.max) $(cat $cg/pids.max) $(cat $cg/cpu.max | tr ' ' /)" > "$XENE_OUTPUT"
            fi
"#
    ))
    .await;
    let id = xene.start_run("limits", "p", serde_json::json!({})).await;
    let run = xene
        .wait_finished(id, std::time::Duration::from_secs(120))
        .await;
    assert_eq!(run["status"], "success", "{run}");
    assert_eq!(
        run["tasks"][0]["output"],
        format!("{} 77 50000/100000", 300u64 << 20),
        "{run}"
    );
}

/// Found by review: the scheduler read the agents, then wrote its
/// placements up to 64 at a time; an agent revoked in between still got
/// work, which then waited out its lease. The write checks the agent.
#[tokio::test]
async fn a_task_is_never_placed_on_a_revoked_agent() {
    use std::collections::BTreeMap;
    use xene_server::storage::{Db, attempts, auth, runs, workflows};
    const SPEC: &str = "name: w\npipelines:\n  p:\n    tasks:\n      t:\n        steps: ['true']\n";
    for backend in crate::util::BACKENDS {
        let test_db = TestDb::new(backend);
        let db = Db::connect(&test_db.url).await.unwrap();
        let workflow = xene_core::parse_workflow(SPEC).unwrap();
        workflows::apply(&db, &workflow, SPEC, None)
            .await
            .unwrap()
            .unwrap();
        let run = runs::create(&db, "w", "p", BTreeMap::new(), "manual")
            .await
            .unwrap();
        let ready = attempts::ready_page(&db, 0, i64::MAX / 4, 100)
            .await
            .unwrap();
        let [attempt] = ready.as_slice() else {
            panic!("{backend:?}: one ready attempt expected: {ready:?}");
        };
        assert_eq!(attempt.run_id, run.id);
        let mut agents = Vec::new();
        for name in ["gone", "here"] {
            let (token, _) = auth::create_join_token(&db, &auth::Fixed::default(), 60_000)
                .await
                .unwrap();
            agents.push(auth::join(&db, &token, name).await.unwrap().agent_id);
        }
        assert!(auth::revoke(&db, &agents[0]).await.unwrap());
        let placed = attempts::place_many(&db, &[(attempt.id, agents[0].as_str())], 15_000)
            .await
            .unwrap();
        assert_eq!(placed, [false], "{backend:?}: placed on a revoked agent");
        let placed = attempts::place_many(&db, &[(attempt.id, agents[1].as_str())], 15_000)
            .await
            .unwrap();
        assert_eq!(placed, [true], "{backend:?}");
    }
}

/// Retention takes a finished run's logs and its task attempts' events;
/// the run and its tasks stay.
#[tokio::test]
async fn old_logs_and_attempt_events_are_pruned() {
    for backend in crate::util::BACKENDS {
        let db = crate::util::TestDb::new(backend);
        let server = crate::util::TestServer::start(&db).await;
        let spec = "name: old\npipelines:\n  p:\n    tasks:\n      a:\n        steps: [\"echo a\"]\n      b:\n        depends_on: [a]\n        steps: [\"echo b\"]\n";
        let (status, body) = server.post("/api/v1/workflows", spec).await;
        assert_eq!(status, 201, "{body}");
        let (status, run) = server
            .post("/api/v1/workflows/old/pipelines/p/runs", "")
            .await;
        assert_eq!(status, 201, "{run}");
        let id = run["id"].as_i64().unwrap();
        let done = server.wait_for_run(id).await;
        assert_eq!(done["status"], "success", "{backend:?}: {done}");

        let store = xene_server::storage::Db::connect(&db.url).await.unwrap();
        let count = |table: &'static str| {
            let store = store.clone();
            async move {
                let sql = match table {
                    "attempt_events" => {
                        "SELECT COUNT(*) FROM attempt_events e JOIN task_attempts a \
                                         ON a.id = e.attempt_id WHERE a.run_id = $1"
                            .to_string()
                    }
                    _ => format!("SELECT COUNT(*) FROM {table} WHERE run_id = $1"),
                };
                let n: i64 = sqlx::query_scalar(&sql)
                    .bind(id)
                    .fetch_one(&mut *store.write_conn().await.unwrap())
                    .await
                    .unwrap();
                n
            }
        };
        assert!(count("attempt_events").await > 0, "{backend:?}");
        assert!(count("log_chunks").await > 0, "{backend:?}");
        let later = xene_server::storage::now_ms() + 40 * 24 * 3600 * 1000;
        while xene_server::storage::logs::prune(&store, later)
            .await
            .unwrap()
            > 0
        {}
        assert_eq!(count("attempt_events").await, 0, "{backend:?}");
        assert_eq!(count("log_chunks").await, 0, "{backend:?}");
        let (status, kept) = server.get(&format!("/api/v1/runs/{id}")).await;
        assert_eq!(status, 200, "{kept}");
        assert_eq!(kept["status"], "success", "{backend:?}: {kept}");
        server.stop().await;
    }
}
