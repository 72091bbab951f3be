//! Protected secrets: an editor can change any workflow, so only a version an
//! admin approved, in a workflow (or pipeline) the secret's allow-list names,
//! gets a protected value, checked when a run is asked for (by hand or by a
//! webhook) and again where values leave for an agent; on both databases.

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::util::{Backend, TestDb, TestServer, client_with_token, response};

const VALUE: &str = "prod-deploy-key-8812";

/// `prod` may use the secret; `dev` is not on its allow-list; `hooked`
/// runs from a webhook. Every step fails unless it sees the value.
fn deploy(step: &str) -> String {
    format!(
        r#"
name: deploy
pipelines:
  prod:
    tasks:
      ship:
        secrets: [DEPLOY_KEY]
        steps:
          - test "$DEPLOY_KEY" = {VALUE} && echo {step}
  dev:
    tasks:
      ship:
        secrets: [DEPLOY_KEY]
        steps: ['test -n "$DEPLOY_KEY"']
  hooked:
    trigger: webhook
    tasks:
      ship:
        secrets: [DEPLOY_KEY]
        steps: ['test -n "$DEPLOY_KEY"']
"#
    )
}

/// Fires once, on new year; backdated, it has a fire to catch up.
const NIGHTLY: &str = r#"
name: nightly
pipelines:
  p:
    trigger: {cron: "0 0 1 1 *", timezone: UTC}
    tasks:
      t:
        secrets: [DEPLOY_KEY]
        steps: ['test -n "$DEPLOY_KEY"']
"#;

/// The cron fires of `workflow` once there is one: (outcome, reason).
async fn cron_fire(db: &TestDb, workflow: &str) -> (String, String) {
    let storage = xene_server::storage::Db::connect(&db.url).await.unwrap();
    // As if applied a year ago: the controller catches up the latest fire.
    sqlx::query("UPDATE workflows SET updated_at = updated_at - $1 WHERE name = $2")
        .bind(366_i64 * 24 * 3600 * 1000)
        .bind(workflow)
        .execute(storage.pool())
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let fires: Vec<(String, String)> =
            sqlx::query_as("SELECT outcome, reason FROM cron_fires WHERE workflow = $1")
                .bind(workflow)
                .fetch_all(storage.pool())
                .await
                .unwrap();
        if let Some(fire) = fires.into_iter().next() {
            return fire;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no fire of {workflow}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

const OTHER: &str = r#"
name: other
pipelines:
  prod:
    tasks:
      steal:
        secrets: [DEPLOY_KEY]
        steps: ['printf %s "$DEPLOY_KEY" | rev']
"#;

async fn editor(server: &TestServer) -> reqwest::Client {
    let (status, body) = server
        .post(
            "/api/v1/tokens",
            json!({ "name": "ed", "role": "editor" }).to_string(),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    client_with_token(body["token"].as_str().unwrap())
}

async fn post(
    client: &reqwest::Client,
    server: &TestServer,
    path: &str,
    body: String,
) -> (u16, Value) {
    response(
        client
            .post(server.url(path))
            .body(body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn put_secret(server: &TestServer, body: Value) -> (u16, Value) {
    response(
        server
            .client
            .put(server.url("/api/v1/secrets/DEPLOY_KEY"))
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

fn error_of(body: &Value) -> &str {
    body["error"].as_str().unwrap_or_default()
}

async fn run_count(server: &TestServer) -> usize {
    server.get("/api/v1/runs").await.1["runs"]
        .as_array()
        .unwrap()
        .len()
}

async fn only_approved_versions_get_protected_secrets(backend: Backend) {
    let db = TestDb::new(backend);
    let server = TestServer::start(&db).await;
    let editor = editor(&server).await;
    let (status, body) = put_secret(&server, json!({ "value": VALUE })).await;
    assert_eq!(status, 201, "{body}");
    // Stored by an editor before the secret was protected.
    let (status, applied) = post(&editor, &server, "/api/v1/workflows", deploy("v1")).await;
    assert_eq!(status, 201, "{applied}");

    // Bad protections change nothing.
    for (body, expected) in [
        (json!({ "protected": true }), 422),
        (json!({ "allow": ["deploy"] }), 422),
        (json!({ "protected": true, "allow": ["a/b/c"] }), 422),
        (json!({ "protected": "yes" }), 400),
    ] {
        let (status, answer) = put_secret(&server, body.clone()).await;
        assert_eq!(status, expected, "{body}: {answer}");
    }
    let (status, body) = response(
        editor
            .put(server.url("/api/v1/secrets/DEPLOY_KEY"))
            .json(&json!({ "protected": false }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403, "an editor cannot unprotect: {body}");
    let (status, body) = put_secret(
        &server,
        json!({ "protected": true, "allow": ["deploy/prod", "deploy/hooked", "nightly"] }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["protected"], true, "{body}");
    assert_eq!(
        body["allow"],
        json!(["deploy/prod", "deploy/hooked", "nightly"]),
        "{body}"
    );

    // The version stored before protection needs an approval too.
    let start = "/api/v1/workflows/deploy/pipelines/prod/runs";
    let (status, refused) = post(&editor, &server, start, String::new()).await;
    assert_eq!(status, 403, "{refused}");
    let error = error_of(&refused);
    assert!(
        error.contains("version 1")
            && error.contains("DEPLOY_KEY")
            && error.contains("admin must approve"),
        "{refused}"
    );

    // A new version by an editor: a changed step is enough.
    let (status, applied) = post(&editor, &server, "/api/v1/workflows", deploy("v2")).await;
    assert_eq!(status, 201, "{applied}");
    assert_eq!(applied["version"], 2);
    assert!(
        applied["warnings"].to_string().contains("approves it"),
        "{applied}"
    );
    let (status, refused) = post(&editor, &server, start, String::new()).await;
    assert_eq!(status, 403, "{refused}");
    assert!(error_of(&refused).contains("version 2"), "{refused}");
    let (_, shown) = server.get("/api/v1/workflows/deploy").await;
    assert_eq!(shown["approved_by"], Value::Null, "{shown}");
    assert_eq!(shown["protected_secrets"], json!(["DEPLOY_KEY"]), "{shown}");

    // A webhook delivery is refused and logged with the reason.
    let (status, hook) = server
        .post(
            "/api/v1/workflows/deploy/pipelines/hooked/hook",
            String::new(),
        )
        .await;
    assert_eq!(status, 201, "{hook}");
    let body = b"{}".to_vec();
    let mut mac =
        Hmac::<Sha256>::new_from_slice(hook["secret"].as_str().unwrap().as_bytes()).unwrap();
    mac.update(&body);
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let path = hook["path"].as_str().unwrap();
    let (status, answer) = response(
        reqwest::Client::new()
            .post(server.url(path))
            .header("x-hub-signature-256", signature)
            .body(body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403, "{answer}");
    let id = path.rsplit('/').next().unwrap();
    let (_, deliveries) = server.get(&format!("/api/v1/hooks/{id}/deliveries")).await;
    assert!(
        deliveries["deliveries"][0]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("not approved"),
        "{deliveries}"
    );
    // A cron fire is recorded as skipped, with the reason.
    let (status, applied) = post(&editor, &server, "/api/v1/workflows", NIGHTLY.into()).await;
    assert_eq!(status, 201, "{applied}");
    let (outcome, reason) = cron_fire(&db, "nightly").await;
    assert_eq!(outcome, "skipped", "{reason}");
    assert!(reason.contains("not approved"), "{reason}");
    assert_eq!(run_count(&server).await, 0, "nothing was queued");

    // Only an admin approves.
    let approve = "/api/v1/workflows/deploy/versions/2/approve";
    let (status, body) = post(&editor, &server, approve, String::new()).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = server
        .post("/api/v1/workflows/deploy/versions/9/approve", String::new())
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, approved) = server.post(approve, String::new()).await;
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["changed"], true, "{approved}");
    assert!(
        approved["approved_by"].is_string() && approved["approved_at"].is_i64(),
        "{approved}"
    );
    let (_, version) = server.get("/api/v1/workflows/deploy/versions/2").await;
    assert_eq!(version["approved_by"], approved["approved_by"], "{version}");
    let (_, again) = server.post(approve, String::new()).await;
    assert_eq!(
        again["changed"], false,
        "the first approval stands: {again}"
    );
    assert_eq!(again["approved_at"], approved["approved_at"], "{again}");

    // Approved: the step sees the value.
    let (status, run) = post(&editor, &server, start, String::new()).await;
    assert_eq!(status, 201, "{run}");
    let run = server.wait_for_run(run["id"].as_i64().unwrap()).await;
    assert_eq!(run["status"], "success", "{run}");

    // A pipeline outside the allow-list is refused, approved or not.
    let (status, refused) = post(
        &editor,
        &server,
        "/api/v1/workflows/deploy/pipelines/dev/runs",
        String::new(),
    )
    .await;
    assert_eq!(status, 403, "{refused}");
    assert!(error_of(&refused).contains("allow-list"), "{refused}");
    // Another workflow: the apply warns; stored by an admin it is approved,
    // and still refused.
    let (status, applied) = server.post("/api/v1/workflows", OTHER).await;
    assert_eq!(status, 201, "{applied}");
    assert!(
        applied["warnings"].to_string().contains("allow-list"),
        "{applied}"
    );
    let (_, shown) = server.get("/api/v1/workflows/other").await;
    assert!(
        shown["approved_by"].is_string(),
        "stored by an admin: {shown}"
    );
    let (status, refused) = post(
        &editor,
        &server,
        "/api/v1/workflows/other/pipelines/prod/runs",
        String::new(),
    )
    .await;
    assert_eq!(status, 403, "{refused}");
    assert!(error_of(&refused).contains("other/prod"), "{refused}");

    // Approving says what a run's starter still chooses.
    let imaged = "name: imaged\npipelines:\n  p:\n    params: {tag: \"3\"}\n    tasks:\n      t:\n        image: \"alpine:{{ params.tag }}\"\n        secrets: [DEPLOY_KEY]\n        steps: ['true']\n";
    let (status, applied) = post(&editor, &server, "/api/v1/workflows", imaged.into()).await;
    assert_eq!(status, 201, "{applied}");
    let (status, approved) = server
        .post("/api/v1/workflows/imaged/versions/1/approve", String::new())
        .await;
    assert_eq!(status, 200, "{approved}");
    assert!(
        approved["warnings"][0]
            .as_str()
            .unwrap_or_default()
            .contains("takes its image from a template"),
        "{approved}"
    );

    let (_, audit) = server.get("/api/v1/audit").await;
    let audit = audit.to_string();
    assert!(
        audit.contains("workflow.approve") && audit.contains("secret.protect"),
        "{audit}"
    );
    assert!(!audit.contains(VALUE), "{audit}");
}

#[tokio::test]
async fn only_approved_versions_get_protected_secrets_on_sqlite() {
    only_approved_versions_get_protected_secrets(Backend::Sqlite).await;
}

#[tokio::test]
async fn only_approved_versions_get_protected_secrets_on_postgres() {
    only_approved_versions_get_protected_secrets(Backend::Postgres).await;
}

/// A run queued before its secret was protected reaches an agent only
/// through the check where values are resolved: it must fail there, and
/// its step must never run.
async fn the_value_is_not_dispatched_to_an_unapproved_version(backend: Backend) {
    let db = TestDb::new(backend);
    let server = TestServer::start_with(&db, |args| args.no_local_agent = true).await;
    let editor = editor(&server).await;
    put_secret(&server, json!({ "value": VALUE })).await;
    let (status, applied) = post(&editor, &server, "/api/v1/workflows", deploy("early")).await;
    assert_eq!(status, 201, "{applied}");
    let (status, run) = post(
        &editor,
        &server,
        "/api/v1/workflows/deploy/pipelines/prod/runs",
        String::new(),
    )
    .await;
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_i64().unwrap();
    let (status, body) =
        put_secret(&server, json!({ "protected": true, "allow": ["deploy"] })).await;
    assert_eq!(status, 200, "{body}");
    server.stop().await;

    // Now with the built-in agent, which picks up the queued run.
    let server = TestServer::start(&db).await;
    let run = server.wait_for_run(id).await;
    assert_eq!(run["status"], "error", "{run}");
    assert!(
        run["error"]
            .as_str()
            .unwrap_or_default()
            .contains("not approved"),
        "{run}"
    );
    let ship = &run["tasks"][0];
    assert_eq!(ship["status"], "not_executed", "the step never ran: {run}");
    let (_, logs) = server.get(&format!("/api/v1/runs/{id}/logs")).await;
    assert!(!logs.to_string().contains("early"), "{logs}");
}

#[tokio::test]
async fn the_value_is_not_dispatched_to_an_unapproved_version_on_sqlite() {
    the_value_is_not_dispatched_to_an_unapproved_version(Backend::Sqlite).await;
}

#[tokio::test]
async fn the_value_is_not_dispatched_to_an_unapproved_version_on_postgres() {
    the_value_is_not_dispatched_to_an_unapproved_version(Backend::Postgres).await;
}

/// The same through a remote agent's session: the run waits for an agent
/// while its secret becomes protected; the agent that comes is refused it.
#[tokio::test]
async fn a_remote_agent_is_not_sent_the_value_for_an_unapproved_version() {
    use crate::process::{Agent, Xene};
    let db = TestDb::new(Backend::Sqlite);
    let xene = Xene::start(&db, "srv", &["--no-local-agent"]).await;
    let put = |body: Value| {
        xene.http
            .put(format!("{}/api/v1/secrets/DEPLOY_KEY", xene.base))
            .json(&body)
            .send()
    };
    assert_eq!(put(json!({ "value": VALUE })).await.unwrap().status(), 201);
    xene.apply(&deploy("remote-early")).await;
    let id = xene.start_run("deploy", "prod", json!({})).await;
    let protect = put(json!({ "protected": true, "allow": ["deploy"] }));
    assert_eq!(protect.await.unwrap().status(), 200);

    let join = xene.join_token(json!({})).await;
    let state = db.dir.path().join("agent");
    let mut agent = Agent::start(&xene.base, &join, &state, "remote", &["--allow-shell"]);
    let run = xene
        .wait_finished(id, std::time::Duration::from_secs(60))
        .await;
    assert_eq!(run["status"], "error", "{run}");
    assert!(
        run["error"]
            .as_str()
            .unwrap_or_default()
            .contains("not approved"),
        "{run}"
    );
    assert_eq!(run["tasks"][0]["status"], "not_executed", "{run}");
    agent.kill();
    for file in crate::util::files_under(&state) {
        let bytes = std::fs::read(&file).unwrap_or_default();
        let found = bytes.windows(VALUE.len()).any(|w| w == VALUE.as_bytes());
        assert!(!found, "{} holds the value", file.display());
    }
}
