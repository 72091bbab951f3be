//! The REST API over real HTTP, on both database backends.

use serde_json::{Value, json};

use crate::util::{BACKENDS, TestDb, TestServer};

pub const HELLO: &str = "\
name: hello
description: a first workflow
pipelines:
  greet:
    params:
      who: world
    tasks:
      hello:
        steps:
          - name: say
            run: echo \"hello {{ params.who }}\" && echo \"hi {{ params.who }}\" > $XENE_OUTPUT
      after:
        depends_on: [hello]
        steps:
          - name: echo
            run: echo \"got {{ tasks.hello.output }}\"
";

pub async fn apply(server: &TestServer, spec: &str) -> (u16, Value) {
    server.post("/api/v1/workflows", spec.to_string()).await
}

pub async fn start(
    server: &TestServer,
    workflow: &str,
    pipeline: &str,
    body: &str,
) -> (u16, Value) {
    server
        .post(
            &format!("/api/v1/workflows/{workflow}/pipelines/{pipeline}/runs"),
            body.to_string(),
        )
        .await
}

#[tokio::test]
async fn a_run_goes_from_request_to_success_with_outputs_and_logs() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start(&db).await;
        apply(&server, HELLO).await;
        let (status, run) =
            start(&server, "hello", "greet", r#"{"params": {"who": "xene"}}"#).await;
        assert_eq!(status, 201, "{run}");
        assert_eq!(run["status"], "queued");
        assert_eq!(run["params"], json!({ "who": "xene" }));
        let id = run["id"].as_i64().unwrap();

        let run = server.wait_for_run(id).await;
        assert_eq!(run["status"], "success", "{run}");
        assert_eq!(run["scheduler_status"], "scheduled");
        assert!(
            run["agents"][0].as_str().unwrap().starts_with("builtin@"),
            "{run}"
        );
        for field in ["requested_at", "scheduled_at", "started_at", "finished_at"] {
            assert!(run[field].is_i64(), "{field} missing: {run}");
        }
        let tasks = run["tasks"].as_array().unwrap();
        assert_eq!(tasks.len(), 2);
        assert_eq!(tasks[0]["name"], "hello");
        assert_eq!(tasks[0]["status"], "success");
        assert_eq!(tasks[0]["output"], "hi xene");
        assert_eq!(tasks[0]["steps"][0]["name"], "say");
        assert_eq!(tasks[0]["steps"][0]["exit_code"], 0);
        assert_eq!(tasks[1]["status"], "success");

        let (status, logs) = server.get(&format!("/api/v1/runs/{id}/logs")).await;
        assert_eq!(status, 200);
        let lines: Vec<(String, String)> = logs["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l["task"].as_str().unwrap().to_string(),
                    l["data"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            lines,
            [
                ("hello".into(), "hello xene".into()),
                ("after".into(), "got hi xene".into())
            ]
        );
        let after = logs["lines"][0]["offset"].as_i64().unwrap();
        let (_, rest) = server
            .get(&format!("/api/v1/runs/{id}/logs?after={after}"))
            .await;
        assert_eq!(rest["lines"].as_array().unwrap().len(), 1);
        let (_, only) = server
            .get(&format!("/api/v1/runs/{id}/logs?task=hello"))
            .await;
        assert_eq!(only["lines"].as_array().unwrap().len(), 1);
        server.stop().await;
    }
}

#[tokio::test]
async fn a_failing_step_fails_the_run_and_its_dependants_are_not_executed() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start(&db).await;
        let spec = "\
name: failing
pipelines:
  p:
    tasks:
      broken:
        steps:
          - name: boom
            run: echo about to fail; exit 3
          - name: never
            run: echo unreachable
      downstream:
        depends_on: [broken]
        steps: [\"echo nope\"]
";
        apply(&server, spec).await;
        let (_, run) = start(&server, "failing", "p", "").await;
        let run = server.wait_for_run(run["id"].as_i64().unwrap()).await;
        assert_eq!(run["status"], "error", "{run}");
        let broken = &run["tasks"][0];
        assert_eq!(broken["status"], "error");
        assert_eq!(broken["steps"][0]["status"], "error");
        assert_eq!(broken["steps"][0]["exit_code"], 3);
        assert_eq!(broken["steps"][1]["status"], "not_executed");
        assert_eq!(run["tasks"][1]["status"], "not_executed");
        assert_eq!(run["tasks"][1]["steps"][0]["status"], "not_executed");
        server.stop().await;
    }
}

#[tokio::test]
async fn bad_run_requests_get_a_4xx_and_create_nothing() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start(&db).await;
        apply(&server, HELLO).await;
        let cases = [
            ("hello", "greet", "{not json", 400, "malformed JSON body"),
            (
                "hello",
                "greet",
                r#"{"params": {"nobody": "x"}}"#,
                422,
                "params are invalid",
            ),
            (
                "hello",
                "greet",
                r#"{"parameters": {}}"#,
                400,
                "unknown field",
            ),
            (
                "hello",
                "greet",
                r#"{"params": {"who": [3]}}"#,
                422,
                "params are invalid",
            ),
            ("nope", "greet", "", 404, "no workflow named \"nope\""),
            ("hello", "nope", "", 404, "has no pipeline named \"nope\""),
        ];
        for (workflow, pipeline, body, want_status, want_error) in cases {
            let (status, answer) = start(&server, workflow, pipeline, body).await;
            assert_eq!(
                status, want_status,
                "{workflow}/{pipeline} {body}: {answer}"
            );
            let error = answer["error"].as_str().unwrap();
            assert!(error.contains(want_error), "{body}: {error}");
        }
        assert_eq!(server.get("/api/v1/runs").await.1["runs"], json!([]));

        for (path, want) in [
            ("/api/v1/runs/abc", 400),
            ("/api/v1/runs/999", 404),
            ("/api/v1/runs/999/logs", 404),
            ("/api/v1/runs?status=bogus", 400),
            ("/api/v1/runs?trigger=bogus", 400),
            ("/api/v1/runs?limit=0", 400),
            ("/api/v1/runs?limit=many", 400),
            ("/api/v1/runs?cursor=abc", 400),
            ("/api/v1/workflows/nope", 404),
            ("/api/v1/workflows/nope/versions", 404),
        ] {
            let (status, body) = server.get(path).await;
            assert_eq!(status, want, "{path}: {body}");
            assert!(body["error"].is_string(), "{path}: {body}");
        }
        let (status, body) = server.post("/api/v1/runs/999/cancel", "").await;
        assert_eq!(
            (status, body["error"].as_str().unwrap()),
            (404, "no run with id 999")
        );
        let client = server.client.clone();
        let response = client
            .put(server.url("/api/v1/workflows"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405);
        server.stop().await;
    }
}

#[tokio::test]
async fn runs_list_with_filters_and_cursor_pagination() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        // No agent: the runs stay queued, which is all this test needs.
        let server = TestServer::start_with(&db, |args| args.no_local_agent = true).await;
        apply(&server, HELLO).await;
        apply(&server, &HELLO.replace("name: hello", "name: other")).await;
        let mut ids = Vec::new();
        for workflow in ["hello", "hello", "other", "hello", "hello"] {
            let (status, run) = start(&server, workflow, "greet", "").await;
            assert_eq!(status, 201);
            ids.push((workflow, run["id"].as_i64().unwrap()));
        }
        let hello_ids: Vec<i64> = ids
            .iter()
            .rev()
            .filter(|(w, _)| *w == "hello")
            .map(|(_, id)| *id)
            .collect();

        let mut seen = Vec::new();
        let mut path = "/api/v1/runs?workflow=hello&limit=3".to_string();
        loop {
            let (status, page) = server.get(&path).await;
            assert_eq!(status, 200, "{page}");
            seen.extend(
                page["runs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["id"].as_i64().unwrap()),
            );
            match page["next_cursor"].as_str() {
                Some(cursor) => {
                    path = format!("/api/v1/runs?workflow=hello&limit=3&cursor={cursor}")
                }
                None => break,
            }
        }
        assert_eq!(seen, hello_ids, "newest first, each once");

        let (_, queued) = server
            .get("/api/v1/runs?status=queued&pipeline=greet")
            .await;
        assert_eq!(queued["runs"].as_array().unwrap().len(), 5);
        let (_, none) = server.get("/api/v1/runs?status=success").await;
        assert_eq!(none["runs"], json!([]));
        let (_, manual) = server.get("/api/v1/runs?trigger=manual&limit=500").await;
        let (_, all) = server.get("/api/v1/runs?limit=500").await;
        assert_eq!(manual["runs"], all["runs"]);
        let (_, cron) = server.get("/api/v1/runs?trigger=cron").await;
        assert_eq!(cron["runs"], json!([]));
        server.stop().await;
    }
}

#[tokio::test]
async fn cancelling_a_queued_run_and_then_a_finished_one() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start_with(&db, |args| args.no_local_agent = true).await;
        apply(&server, HELLO).await;
        let (_, run) = start(&server, "hello", "greet", "").await;
        let id = run["id"].as_i64().unwrap();
        let (status, body) = server.post(&format!("/api/v1/runs/{id}/cancel"), "").await;
        assert_eq!(
            (status, body),
            (200, json!({ "id": id, "status": "cancelled" }))
        );
        let (_, run) = server.get(&format!("/api/v1/runs/{id}")).await;
        assert_eq!(run["status"], "cancelled");
        assert_eq!(run["tasks"][0]["status"], "not_executed");

        let (status, body) = server.post(&format!("/api/v1/runs/{id}/cancel"), "").await;
        assert_eq!(status, 409, "{body}");
        assert_eq!(
            body["error"],
            format!("run {id} already finished with status cancelled; nothing to cancel")
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn cancelling_a_running_run_stops_its_steps() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start(&db).await;
        let spec = "\
name: slow
pipelines:
  p:
    tasks:
      wait:
        steps:
          - name: sleep
            run: echo started; sleep 60
";
        apply(&server, spec).await;
        let (_, run) = start(&server, "slow", "p", "").await;
        let id = run["id"].as_i64().unwrap();
        // Wait for the step to be running before cancelling it.
        server
            .wait_run_until(id, |run| run["tasks"][0]["steps"][0]["status"] == "running")
            .await;
        let (status, body) = server.post(&format!("/api/v1/runs/{id}/cancel"), "").await;
        assert_eq!(
            (status, body),
            (202, json!({ "id": id, "status": "cancelling" }))
        );
        let run = server.wait_for_run(id).await;
        assert_eq!(run["status"], "cancelled", "{run}");
        assert_eq!(run["tasks"][0]["steps"][0]["status"], "cancelled", "{run}");
        server.stop().await;
    }
}

#[tokio::test]
async fn deleted_workflows_take_no_runs_but_keep_their_history() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start(&db).await;
        apply(&server, HELLO).await;
        let (_, run) = start(&server, "hello", "greet", "").await;
        let id = run["id"].as_i64().unwrap();
        server.wait_for_run(id).await;

        assert_eq!(server.delete("/api/v1/workflows/hello").await, 204);
        assert_eq!(server.delete("/api/v1/workflows/hello").await, 404);
        assert_eq!(server.get("/api/v1/workflows/hello").await.0, 404);
        assert_eq!(start(&server, "hello", "greet", "").await.0, 404);
        assert_eq!(
            server.get(&format!("/api/v1/runs/{id}")).await.1["status"],
            "success"
        );

        // Applying it again brings it back as a new version.
        assert_eq!(
            apply(&server, HELLO).await,
            (
                201,
                json!({ "name": "hello", "version": 2, "changed": true, "warnings": [] })
            )
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn a_run_no_agent_fits_waits_with_a_reason() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start(&db).await;
        let spec = "\
name: picky
pipelines:
  gpu:
    selector: {gpu: \"yes\"}
    tasks:
      train:
        steps: [\"true\"]
";
        apply(&server, spec).await;
        let (_, run) = start(&server, "picky", "gpu", "").await;
        let id = run["id"].as_i64().unwrap();
        let run = server
            .wait_run_until(id, |run| !run["scheduler_reason"].is_null())
            .await;
        assert_eq!(run["status"], "queued");
        assert_eq!(run["scheduler_status"], "not_scheduled");
        assert_eq!(
            run["scheduler_reason"],
            "no online agent has labels gpu=yes and the shell runtime (task `train`)"
        );
        // The pipeline's verdict is written at the end of the scheduling
        // pass, just after the run's reason: wait for the pass to finish.
        let started = std::time::Instant::now();
        let workflow = loop {
            let (_, workflow) = server.get("/api/v1/workflows/picky").await;
            if !workflow["pipelines"][0]["scheduler_reason"].is_null() {
                break workflow;
            }
            assert!(
                started.elapsed().as_secs() < 30,
                "no pipeline verdict: {workflow}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        assert_eq!(
            workflow["pipelines"][0]["scheduler_status"],
            "not_scheduled"
        );
        assert_eq!(
            workflow["pipelines"][0]["scheduler_reason"],
            run["scheduler_reason"]
        );

        let (_, stats) = server.get("/api/v1/stats").await;
        assert_eq!(stats["waiting_runs"], 1, "{stats}");
        assert_eq!(stats["running_runs"], 0, "{stats}");
        assert_eq!(stats["agents_by_state"]["online"], 1, "{stats}");
        server.stop().await;
    }
}

#[tokio::test]
async fn agents_stats_and_metrics_report_the_built_in_agent_and_runs() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start(&db).await;
        apply(&server, HELLO).await;
        let (_, run) = start(&server, "hello", "greet", "").await;
        server.wait_for_run(run["id"].as_i64().unwrap()).await;

        let (status, agents) = server.get("/api/v1/agents").await;
        assert_eq!(status, 200);
        let agent = &agents["agents"][0];
        assert_eq!(agent["builtin"], true);
        assert_eq!(agent["state"], "online");
        assert_eq!(agent["capacity"], 4);
        assert_eq!(agent["labels"]["builtin"], "true");
        assert_eq!(agent["runtimes"], json!(["docker", "shell"]));

        let (_, stats) = server.get("/api/v1/stats").await;
        assert_eq!(stats["runs_by_status"], json!({ "success": 1 }), "{stats}");

        let metrics = reqwest::get(server.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for line in [
            "xene_runs_finished_total{status=\"success\",trigger=\"manual\",pipeline=\"hello/greet\"} 1",
            "xene_runs{status=\"queued\"} 0",
            "xene_agents_connected{kind=\"builtin\"} 1",
            // Each task attempt's wait to be placed.
            "xene_run_queue_wait_seconds_count 2",
            "xene_run_start_latency_seconds_count 1",
            "xene_task_duration_seconds_count 2",
        ] {
            assert!(
                metrics.lines().any(|l| l == line),
                "missing {line:?} in\n{metrics}"
            );
        }
        // SQLite's writers take turns; the run above took some.
        let turns = metrics
            .lines()
            .find_map(|l| l.strip_prefix("xene_sqlite_write_turns_total "))
            .map(|n| n.parse::<f64>().unwrap());
        match backend {
            crate::util::Backend::Sqlite => {
                assert!(turns.is_some_and(|n| n >= 1.0), "{metrics}")
            }
            crate::util::Backend::Postgres => assert_eq!(turns, None, "{metrics}"),
        }
        server.stop().await;
    }
}

/// The OpenAPI document is generated from the routes: every API route is in
/// it, and nothing else.
#[tokio::test]
async fn the_openapi_document_matches_the_routes() {
    let db = TestDb::new(crate::util::Backend::Sqlite);
    let server = TestServer::start(&db).await;
    let (status, doc) = server.get("/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let mut paths: Vec<String> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| format!("{} {path}", m.to_uppercase()))
        })
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "DELETE /api/v1/agents/{id}",
            "DELETE /api/v1/agents/{id}/drain",
            "DELETE /api/v1/invites/{id}",
            "DELETE /api/v1/runs/{id}/pin",
            "DELETE /api/v1/secrets/{name}",
            "DELETE /api/v1/tokens/{id}",
            "DELETE /api/v1/workflows/{name}",
            "DELETE /api/v1/workflows/{name}/caches/{id}",
            "DELETE /api/v1/workflows/{name}/versions/{version}/approve",
            "GET /api/v1/agents",
            "GET /api/v1/audit",
            "GET /api/v1/cron/next",
            "GET /api/v1/dashboard",
            "GET /api/v1/hooks/{id}/deliveries",
            "GET /api/v1/invites",
            "GET /api/v1/me",
            "GET /api/v1/runs",
            "GET /api/v1/runs/feed",
            "GET /api/v1/runs/{id}",
            "GET /api/v1/runs/{id}/artifacts",
            "GET /api/v1/runs/{id}/artifacts/{name}",
            "GET /api/v1/runs/{id}/events",
            "GET /api/v1/runs/{id}/logs",
            "GET /api/v1/runs/{id}/logs/{task}/{step}",
            "GET /api/v1/secrets",
            "GET /api/v1/sign-in-methods",
            "GET /api/v1/stats",
            "GET /api/v1/tokens",
            "GET /api/v1/users",
            "GET /api/v1/workflows",
            "GET /api/v1/workflows/{name}",
            "GET /api/v1/workflows/{name}/artifacts",
            "GET /api/v1/workflows/{name}/caches",
            "GET /api/v1/workflows/{name}/pipelines/{pipeline}/hook",
            "GET /api/v1/workflows/{name}/versions",
            "GET /api/v1/workflows/{name}/versions/{version}",
            "PATCH /api/v1/users/{id}",
            "POST /api/v1/agents/join",
            "POST /api/v1/agents/join-tokens",
            "POST /api/v1/agents/{id}/drain",
            "POST /api/v1/hooks/{id}",
            "POST /api/v1/invites",
            "POST /api/v1/runs/{id}/cancel",
            "POST /api/v1/secrets/rotate-key",
            "POST /api/v1/tokens",
            "POST /api/v1/workflows",
            "POST /api/v1/workflows/{name}/pipelines/{pipeline}/hook",
            "POST /api/v1/workflows/{name}/pipelines/{pipeline}/runs",
            "POST /api/v1/workflows/{name}/versions/{version}/approve",
            "PUT /api/v1/runs/{id}/pin",
            "PUT /api/v1/secrets/{name}",
            "PUT /api/v1/workflows/{name}/versions/{version}/layout",
        ]
    );
    // Each documented GET without path parameters answers.
    for path in [
        "/api/v1/agents",
        "/api/v1/dashboard",
        "/api/v1/runs",
        "/api/v1/sign-in-methods",
        "/api/v1/stats",
        "/api/v1/workflows",
    ] {
        assert_eq!(server.get(path).await.0, 200, "{path}");
    }
    server.stop().await;
}

/// PostgreSQL refuses NUL in text; step output may hold any byte.
#[tokio::test]
async fn output_with_nul_bytes_is_stored_on_both_backends() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start(&db).await;
        let spec = "\
name: binary
pipelines:
  p:
    tasks:
      t:
        steps:
          - name: s
            run: printf 'a\\000b\\n'; printf 'x\\000y' > $XENE_OUTPUT
";
        assert_eq!(apply(&server, spec).await.0, 201);
        let (_, run) = start(&server, "binary", "p", "").await;
        let id = run["id"].as_i64().unwrap();
        let run = server.wait_for_run(id).await;
        assert_eq!(run["status"], "success", "{backend:?}: {run}");
        assert_eq!(run["tasks"][0]["output"], "x\u{fffd}y", "{run}");
        let (_, logs) = server.get(&format!("/api/v1/runs/{id}/logs")).await;
        assert_eq!(logs["lines"][0]["data"], "a\u{fffd}b", "{logs}");
        server.stop().await;
    }
}

/// Runs nothing can take at the head of the queue, more than one page of
/// them, do not keep a newer run from an agent that fits it.
#[tokio::test]
async fn a_blocked_head_of_the_queue_does_not_starve_newer_runs() {
    let db = TestDb::new(crate::util::Backend::Sqlite);
    let server = TestServer::start(&db).await;
    let spec = "\
name: mixed
pipelines:
  gpu:
    selector: {gpu: \"yes\"}
    tasks:
      t:
        steps: [\"true\"]
  cpu:
    tasks:
      t:
        steps: [\"true\"]
";
    assert_eq!(apply(&server, spec).await.0, 201);
    for _ in 0..510 {
        assert_eq!(start(&server, "mixed", "gpu", "").await.0, 201);
    }
    let (_, run) = start(&server, "mixed", "cpu", "").await;
    let run = server.wait_for_run(run["id"].as_i64().unwrap()).await;
    assert_eq!(run["status"], "success", "{run}");
    server.stop().await;
}

#[tokio::test]
async fn runs_nobody_picks_up_in_time_are_flagged_stuck() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start_with(&db, |args| {
            args.pickup_timeout = std::time::Duration::from_millis(300)
        })
        .await;
        let spec = "\
name: picky
pipelines:
  gpu:
    selector: {gpu: \"yes\"}
    tasks:
      train:
        steps: [\"true\"]
";
        apply(&server, spec).await;
        let (_, run) = start(&server, "picky", "gpu", "").await;
        let id = run["id"].as_i64().unwrap();
        let run = server
            .wait_run_until(id, |run| {
                run["scheduler_reason"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("stuck:"))
            })
            .await;
        assert_eq!(
            run["scheduler_reason"],
            "stuck: nobody picked it up within 300ms; no online agent has labels gpu=yes and the shell runtime (task `train`)"
        );
        let (_, stats) = server.get("/api/v1/stats").await;
        assert_eq!(stats["stuck_runs"], 1, "{stats}");
        let metrics = reqwest::get(server.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.lines().any(|l| l == "xene_runs_stuck 1"),
            "{metrics}"
        );
        server.stop().await;
    }
}

/// A running run whose next task no agent matches is stuck too: its task
/// waits, ready, past the pick-up timeout while the run is not queued.
#[tokio::test]
async fn a_running_run_whose_task_nobody_takes_is_flagged_stuck() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start_with(&db, |args| {
            args.pickup_timeout = std::time::Duration::from_millis(300)
        })
        .await;
        let spec = "\
name: halfway
pipelines:
  p:
    tasks:
      build:
        steps: [\"true\"]
      train:
        depends_on: [build]
        selector: {gpu: \"yes\"}
        steps: [\"true\"]
";
        apply(&server, spec).await;
        let (_, run) = start(&server, "halfway", "p", "").await;
        let id = run["id"].as_i64().unwrap();
        let run = server
            .wait_run_until(id, |run| {
                run["tasks"].as_array().unwrap().iter().any(|t| {
                    t["name"] == "train"
                        && t["attempts"].as_array().is_some_and(|a| {
                            a.iter().any(|a| {
                                a["status"] == "ready"
                                    && a["error"].as_str().is_some_and(|e| e.starts_with("stuck:"))
                            })
                        })
                })
            })
            .await;
        assert_eq!(run["status"], "running", "{backend:?}: {run}");
        let (_, stats) = server.get("/api/v1/stats").await;
        assert_eq!(stats["stuck_runs"], 1, "{backend:?}: {stats}");
        assert_eq!(stats["waiting_runs"], 0, "{backend:?}: {stats}");
        let metrics = reqwest::get(server.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.lines().any(|l| l == "xene_runs_stuck 1"),
            "{metrics}"
        );
        server.stop().await;
    }
}
