//! Draining an agent through the API: admins only, audited, 404 for an
//! unknown agent; and the agents of a run and of its tasks as the API
//! shows them. On both database backends.

use serde_json::{Value, json};
use xene_core::access::Role;

use crate::api::{HELLO, apply, start};
use crate::attempt_fixtures::model_2_run;
use crate::feed::{feed, next};
use crate::util::{BACKENDS, TestDb, TestServer, client_with_token};

/// The built-in agent's row, once it has registered (it does so as the
/// server starts, not before `start` returns). The timeout only keeps a
/// broken server from hanging the test.
async fn builtin(server: &TestServer) -> Value {
    let started = std::time::Instant::now();
    loop {
        let (status, list) = server.get("/api/v1/agents").await;
        assert_eq!(status, 200, "{list}");
        let found = list["agents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["builtin"] == true)
            .cloned();
        if let Some(agent) = found {
            return agent;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "no built-in agent in {list}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn token_with_role(server: &TestServer, role: Role) -> String {
    let (status, body) = server
        .post(
            "/api/v1/tokens",
            json!({"name": format!("as {role}"), "role": role}).to_string(),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn admins_drain_and_undrain_an_agent_and_the_audit_log_says_so() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start(&db).await;
        let agent = builtin(&server).await;
        let id = agent["id"].as_str().unwrap().to_string();
        assert_eq!(agent["draining"], false, "{agent}");
        assert_eq!(agent["held"], json!([]), "{agent}");
        let drain = server.url(&format!("/api/v1/agents/{id}/drain"));

        // Below admin: refused, and nothing changes.
        for role in [Role::Viewer, Role::Editor] {
            let client = client_with_token(&token_with_role(&server, role).await);
            for method in [reqwest::Method::POST, reqwest::Method::DELETE] {
                let r = client.request(method.clone(), &drain).send().await.unwrap();
                assert_eq!(r.status(), 403, "{method} as {role:?}");
            }
        }
        assert_eq!(builtin(&server).await["draining"], false);

        // Unknown agents: 404 both ways, with a JSON error.
        let (status, body) = server.post("/api/v1/agents/nobody/drain", "").await;
        assert_eq!(status, 404, "{body}");
        assert!(body["error"].as_str().unwrap().contains("nobody"), "{body}");
        assert_eq!(server.delete("/api/v1/agents/nobody/drain").await, 404);

        // Drained: the answer is the agent as it is now; holding nothing,
        // it is drained.
        let (status, body) = server.post(&format!("/api/v1/agents/{id}/drain"), "").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["id"], id.as_str());
        assert_eq!(body["draining"], true, "{body}");
        assert_eq!(body["held"], json!([]), "{body}");
        assert_eq!(builtin(&server).await["draining"], true);
        // Again: the same answer, not an error.
        let (status, _) = server.post(&format!("/api/v1/agents/{id}/drain"), "").await;
        assert_eq!(status, 200);

        let r = server.client.delete(&drain).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["draining"], false, "{body}");
        assert_eq!(builtin(&server).await["draining"], false);

        let (_, audit) = server.get("/api/v1/audit?limit=500").await;
        let entries: Vec<(&str, &str)> = audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["action"].as_str().unwrap(), e["target"].as_str().unwrap()))
            .filter(|(action, _)| action.starts_with("agent."))
            .collect();
        // Newest first: two drains and an undrain, of that agent only.
        assert_eq!(
            entries,
            [
                ("agent.undrain", id.as_str()),
                ("agent.drain", id.as_str()),
                ("agent.drain", id.as_str()),
            ],
            "{audit}"
        );
        server.stop().await;
    }
}

/// A run's agent is named on each task it ran, in the runs list and in the
/// runs list's feed.
#[tokio::test]
async fn a_runs_tasks_and_the_runs_list_name_their_agent() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start(&db).await;
        let agent_id = builtin(&server).await["id"].as_str().unwrap().to_string();
        let base = format!("http://{}", server.addr);
        let mut list_feed = feed(&base, &server.token, "/api/v1/runs/feed").await;
        apply(&server, HELLO).await;
        let (status, run) = start(&server, "hello", "greet", "{}").await;
        assert_eq!(status, 201, "{run}");
        let id = run["id"].as_i64().unwrap();
        // The runs list's feed names the agents too, once the run ends.
        loop {
            let message = next(&mut list_feed).await.expect("feed open");
            let run = &message["run"];
            if message["type"] == "run" && run["id"] == id && run["status"] == "success" {
                assert_eq!(run["agents"], json!([agent_id]), "{message}");
                break;
            }
        }
        let run = server.wait_for_run(id).await;
        assert_eq!(run["status"], "success", "{run}");
        assert_eq!(run["agents"], json!([agent_id]), "{run}");
        for task in run["tasks"].as_array().unwrap() {
            assert_eq!(task["agent_id"], agent_id.as_str(), "{task}");
            assert!(task["attempts"].is_array(), "{task}");
        }
        let (_, list) = server.get("/api/v1/runs").await;
        let listed = list["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap();
        assert_eq!(listed["agents"], json!([agent_id]), "{list}");
        server.stop().await;
    }
}

const RETRIED: &str = "\
name: spread
pipelines:
  p:
    selector: {os: linux}
    tasks:
      a:
        selector: {gpu: \"yes\"}
        retries: {count: 1, backoff: 1ms}
        steps: [\"true\"]
      b:
        depends_on: [a]
        steps: [\"true\"]
";

/// A run whose tasks are placed one by one: each task names the agent of
/// its latest attempt and lists every attempt; the run names every agent;
/// an agent lists the attempts it holds now. Through storage, as the API
/// reads it.
#[tokio::test]
async fn each_task_names_its_attempts_and_each_agent_what_it_holds() {
    use xene_core::event::RunEvent;
    use xene_core::protocol::AttemptRef;
    use xene_core::status::TaskStatus;
    use xene_server::storage::{Db, agents, attempt_views, attempts, events, runs};

    for backend in BACKENDS {
        let test_db = TestDb::new(backend);
        let (db, run) = model_2_run(&test_db, RETRIED, "spread", &["x", "y"]).await;
        let ready = |db: Db| async move {
            attempts::ready_page(&db, 0, i64::MAX / 4, 100)
                .await
                .unwrap()
                .into_iter()
                .filter(|a| a.run_id == run)
                .collect::<Vec<_>>()
        };
        let first = ready(db.clone()).await;
        assert_eq!(first.len(), 1, "{first:?}");
        // The task's selector is the pipeline's merged with its own.
        assert_eq!(
            first[0].selector,
            [("gpu", "yes"), ("os", "linux")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .into()
        );
        let detail = runs::get(&db, run).await.unwrap().unwrap();
        let a = &detail.tasks.iter().find(|t| t.name == "a").unwrap();
        assert_eq!(a.agent_id, None);
        assert_eq!(a.attempts.len(), 1);
        assert_eq!(a.attempts[0].status, "ready");

        // The first attempt fails on x; its retry goes to y.
        attempts::place_many(&db, &[(first[0].id, "x")], 60_000)
            .await
            .unwrap();
        let failed = [
            RunEvent::TaskStarted {
                task: "a".into(),
                attempt: 1,
            },
            RunEvent::TaskFinished {
                task: "a".into(),
                status: TaskStatus::Error,
                output: None,
                duration_ms: 5,
                attempt: 1,
                error: Some("exit 1".into()),
                retry_in_ms: None,
            },
        ];
        let applied = events::apply_attempt(&db, AttemptRef { id: first[0].id }, "x", 0, &failed)
            .await
            .unwrap();
        assert!(!applied.stale);
        let retry = ready(db.clone()).await;
        assert_eq!(retry.len(), 1, "{retry:?}");
        assert_eq!(retry[0].number, 2);
        attempts::place_many(&db, &[(retry[0].id, "y")], 60_000)
            .await
            .unwrap();

        let detail = runs::get(&db, run).await.unwrap().unwrap();
        let a = detail.tasks.iter().find(|t| t.name == "a").unwrap();
        assert_eq!(a.agent_id.as_deref(), Some("y"), "{a:?}");
        let seen: Vec<(i64, Option<&str>, &str)> = a
            .attempts
            .iter()
            .map(|t| (t.number, t.agent_id.as_deref(), t.status.as_str()))
            .collect();
        assert_eq!(seen, [(1, Some("x"), "error"), (2, Some("y"), "placed")]);
        assert_eq!(a.attempts[0].error.as_deref(), Some("exit 1"));
        assert!(a.attempts[0].started_at.is_some());
        let b = detail.tasks.iter().find(|t| t.name == "b").unwrap();
        assert_eq!((b.agent_id.as_deref(), b.attempts.len()), (None, 0));
        assert_eq!(detail.run.agents, ["x", "y"]);
        assert_eq!(detail.run.agent, None);

        let mut listed = vec![runs::get_run(&db, run).await.unwrap().unwrap()];
        attempt_views::fill_runs(&db, &mut listed).await.unwrap();
        assert_eq!(listed[0].agents, ["x", "y"]);

        let agents = agents::list(&db).await.unwrap();
        let holds = |id: &str| {
            let agent = agents.iter().find(|a| a.id == id).unwrap();
            agent
                .held
                .iter()
                .map(|h| (h.run_id, h.task.clone(), h.number))
                .collect::<Vec<_>>()
        };
        assert_eq!(holds("y"), [(run, "a".to_string(), 2)]);
        assert_eq!(holds("x"), []);
    }
}

const FLAKY: &str = "\
name: flaky
pipelines:
  p:
    tasks:
      flaky:
        retries: {count: 1, backoff: 1ms}
        steps:
          - test \"$XENE_ATTEMPT\" = 2
      after:
        depends_on: [flaky]
        steps: [\"true\"]
";

/// Through the server and its built-in agent: a run started while the only
/// agent drains waits, saying why, and runs once it is undrained; a task
/// that failed once lists both attempts with their agent.
#[tokio::test]
async fn a_drained_fleet_places_nothing_and_a_retry_is_a_second_attempt() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start(&db).await;
        let agent = builtin(&server).await["id"].as_str().unwrap().to_string();
        let (status, body) = server
            .post(&format!("/api/v1/agents/{agent}/drain"), "")
            .await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = apply(&server, FLAKY).await;
        assert_eq!(status, 201, "{body}");
        let (status, run) = start(&server, "flaky", "p", "{}").await;
        assert_eq!(status, 201, "{run}");
        let id = run["id"].as_i64().unwrap();
        let waiting = server
            .wait_run_until(id, |run| {
                run["scheduler_reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("draining"))
            })
            .await;
        assert_eq!(waiting["status"], "queued", "{waiting}");
        let flaky = &waiting["tasks"][0];
        assert_eq!(flaky["attempts"][0]["status"], "ready", "{waiting}");
        assert!(
            flaky["attempts"][0]["error"]
                .as_str()
                .is_some_and(|e| e.contains("draining")),
            "why the attempt waits: {waiting}"
        );

        assert_eq!(
            server
                .client
                .delete(server.url(&format!("/api/v1/agents/{agent}/drain")))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        let run = server.wait_for_run(id).await;
        assert_eq!(run["status"], "success", "{run}");
        let flaky = run["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "flaky")
            .unwrap();
        let attempts: Vec<(i64, &str, &str)> = flaky["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["number"].as_i64().unwrap(),
                    a["status"].as_str().unwrap(),
                    a["agent_id"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            attempts,
            [(1, "error", agent.as_str()), (2, "success", agent.as_str())],
            "{run}"
        );
        assert_eq!(flaky["agent_id"], agent.as_str());
        assert_eq!(run["agents"], json!([agent]));
        server.stop().await;
    }
}

/// Each agent lists the attempts it holds, up to a bound of its own: an
/// agent holding more than two agents' worth does not crowd out the other.
#[tokio::test]
async fn a_busy_agent_does_not_crowd_others_out_of_their_held_lists() {
    use xene_api::agents::MAX_HELD_SHOWN;
    use xene_server::storage::agents;

    for backend in BACKENDS {
        let test_db = TestDb::new(backend);
        let (db, run) = model_2_run(&test_db, RETRIED, "spread", &["x", "y"]).await;
        // x's attempts, all older than y's one: more than the bound for two
        // agents together.
        let on_x = 2 * MAX_HELD_SHOWN + 10;
        let rows: Vec<String> = (0..on_x)
            .map(|i| format!("({run}, 'x{i}', 1, 'placed', 'x', 0)"))
            .chain([format!("({run}, 'y0', 1, 'running', 'y', 0)")])
            .collect();
        sqlx::query(&format!(
            "INSERT INTO task_attempts (run_id, task, number, status, agent_id, ready_at) VALUES {}",
            rows.join(", ")
        ))
        .execute(db.pool())
        .await
        .unwrap();

        let listed = agents::list(&db).await.unwrap();
        let of = |id: &str| listed.iter().find(|a| a.id == id).unwrap();
        let x = of("x");
        assert_eq!(x.held.len(), MAX_HELD_SHOWN, "{backend:?}");
        assert_eq!(x.held[0].task, "x0", "{backend:?}: oldest first");
        assert_eq!(x.running, on_x as i64, "{backend:?}: the count says all");
        let y = of("y");
        let held: Vec<(i64, &str, i64)> = y
            .held
            .iter()
            .map(|h| (h.run_id, h.task.as_str(), h.number))
            .collect();
        assert_eq!(held, [(run, "y0", 1)], "{backend:?}");
    }
}
