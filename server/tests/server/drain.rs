//! Draining an agent through the API: admins only, audited, 404 for an
//! unknown agent; and the agents of a run and of its tasks as the API
//! shows them. On both database backends.

use serde_json::{Value, json};
use xene_core::access::Role;

use crate::api::{HELLO, apply, start};
use crate::util::{BACKENDS, TestDb, TestServer, client_with_token};

async fn builtin(server: &TestServer) -> Value {
    let (status, list) = server.get("/api/v1/agents").await;
    assert_eq!(status, 200, "{list}");
    list["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["builtin"] == true)
        .cloned()
        .unwrap_or_else(|| panic!("no built-in agent in {list}"))
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

/// A run placed whole on one agent (no attempt rows) shows that agent on
/// each task it ran and in the runs list.
#[tokio::test]
async fn a_runs_tasks_and_the_runs_list_name_their_agent() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start(&db).await;
        let agent_id = builtin(&server).await["id"].as_str().unwrap().to_string();
        apply(&server, HELLO).await;
        let (status, run) = start(&server, "hello", "greet", "{}").await;
        assert_eq!(status, 201, "{run}");
        let id = run["id"].as_i64().unwrap();
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
