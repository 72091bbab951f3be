//! Protected secrets: an editor can change any workflow, so only a version an
//! admin approved, in a workflow (or pipeline) the secret's allow-list names,
//! gets a protected value, checked when a run is asked for (by hand or by a
//! webhook) and again where values leave for an agent; on both databases.

use serde_json::{Value, json};

use crate::util::{
    Backend, TestDb, TestServer, backdated_cron_fire, client_with_token, cron_fire_where,
    deliver_to_new_hook, response, run_count,
};

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

async fn delete(client: &reqwest::Client, server: &TestServer, path: &str) -> (u16, Value) {
    response(client.delete(server.url(path)).send().await.unwrap()).await
}

/// Stores `text` as `editor`, which must be taken as a new workflow or version.
async fn applied_by(
    editor: &reqwest::Client,
    server: &TestServer,
    text: impl Into<String>,
) -> Value {
    let (status, applied) = post(editor, server, "/api/v1/workflows", text.into()).await;
    assert_eq!(status, 201, "{applied}");
    applied
}

/// A server without a built-in agent over a fresh database, an editor's
/// client, and the secret with its value (not protected yet).
async fn agentless(backend: Backend) -> (TestDb, TestServer, reqwest::Client) {
    let db = TestDb::new(backend);
    let server = TestServer::start_with(&db, |args| args.no_local_agent = true).await;
    let editor = editor(&server).await;
    put_secret(&server, json!({ "value": VALUE })).await;
    (db, server, editor)
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

async fn only_approved_versions_get_protected_secrets(backend: Backend) {
    let db = TestDb::new(backend);
    let server = TestServer::start(&db).await;
    let editor = editor(&server).await;
    let (status, body) = put_secret(&server, json!({ "value": VALUE })).await;
    assert_eq!(status, 201, "{body}");
    // Stored by an editor before the secret was protected.
    applied_by(&editor, &server, deploy("v1")).await;

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
    let applied = applied_by(&editor, &server, deploy("v2")).await;
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
    let (status, answer, reason) = deliver_to_new_hook(&server, "deploy", "hooked").await;
    assert_eq!(status, 403, "{answer}");
    assert!(reason.contains("not approved"), "{reason}");
    // A cron fire is recorded as skipped, with the reason.
    applied_by(&editor, &server, NIGHTLY).await;
    let (outcome, reason) = backdated_cron_fire(&db, "nightly").await;
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
    // Another workflow: the apply warns; approved on apply, it is still
    // refused.
    let (status, applied) = server.post("/api/v1/workflows?approve=true", OTHER).await;
    assert_eq!(status, 201, "{applied}");
    assert!(
        applied["warnings"].to_string().contains("allow-list"),
        "{applied}"
    );
    let (_, shown) = server.get("/api/v1/workflows/other").await;
    assert!(shown["approved_by"].is_string(), "approved: {shown}");
    let (status, refused) = post(
        &editor,
        &server,
        "/api/v1/workflows/other/pipelines/prod/runs",
        String::new(),
    )
    .await;
    assert_eq!(status, 403, "{refused}");
    assert!(error_of(&refused).contains("other/prod"), "{refused}");

    // Approving says what a run's starter still chooses, once accepted.
    let imaged = "name: imaged\npipelines:\n  p:\n    params: {tag: \"3\"}\n    tasks:\n      t:\n        image: \"alpine:{{ params.tag }}\"\n        secrets: [DEPLOY_KEY]\n        steps: ['true']\n";
    applied_by(&editor, &server, imaged).await;
    let (status, approved) = server
        .post(
            "/api/v1/workflows/imaged/versions/1/approve?accept_run_time_choices=true",
            String::new(),
        )
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
    let (db, server, editor) = agentless(backend).await;
    applied_by(&editor, &server, deploy("early")).await;
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
    assert!(error_of(&run).contains("not approved"), "{run}");
    // The task ended at dispatch: its step never ran.
    let ship = &run["tasks"][0];
    assert_eq!(ship["status"], "error", "{run}");
    assert_eq!(
        ship["steps"][0]["status"], "not_executed",
        "the step never ran: {run}"
    );
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
    assert!(error_of(&run).contains("not approved"), "{run}");
    assert_eq!(
        run["tasks"][0]["steps"][0]["status"], "not_executed",
        "{run}"
    );

    // Approved, the value still never goes to an agent that runs shell
    // steps: there they share its user, unsandboxed, with other runs' steps.
    let (status, approved) = xene
        .post("/api/v1/workflows/deploy/versions/1/approve", String::new())
        .await;
    assert_eq!(status, 200, "{approved}");
    let id = xene.start_run("deploy", "prod", json!({})).await;
    let run = xene
        .wait_finished(id, std::time::Duration::from_secs(60))
        .await;
    assert_eq!(run["status"], "error", "{run}");
    assert!(error_of(&run).contains("runs shell steps"), "{run}");
    agent.kill();
    for file in crate::util::files_under(&state) {
        let bytes = std::fs::read(&file).unwrap_or_default();
        let found = bytes.windows(VALUE.len()).any(|w| w == VALUE.as_bytes());
        assert!(!found, "{} holds the value", file.display());
    }
}

async fn versions_of(server: &TestServer, workflow: &str) -> usize {
    let (_, versions) = server
        .get(&format!("/api/v1/workflows/{workflow}/versions"))
        .await;
    versions["versions"].as_array().unwrap().len()
}

/// F1: an admin who stores a version (a typo fixed in the editor, a
/// merge, `get | edit | apply`) approves nothing unless asked to:
/// `?approve=true`, which only an admin may ask for.
async fn an_admin_apply_approves_only_when_asked(backend: Backend) {
    let (_db, server, editor) = agentless(backend).await;
    let (status, body) =
        put_secret(&server, json!({ "protected": true, "allow": ["deploy"] })).await;
    assert_eq!(status, 200, "{body}");
    applied_by(&editor, &server, deploy("ed")).await;

    // The admin saves the editor's text with a change of their own.
    let (status, applied) = server.post("/api/v1/workflows", deploy("admin")).await;
    assert_eq!(status, 201, "{applied}");
    assert_eq!(applied["version"], 2, "{applied}");
    assert!(
        applied["warnings"].to_string().contains("approves it"),
        "told that it needs approval: {applied}"
    );
    let (_, shown) = server.get("/api/v1/workflows/deploy").await;
    assert_eq!(shown["approved_by"], Value::Null, "{shown}");
    let start = "/api/v1/workflows/deploy/pipelines/prod/runs";
    let (status, refused) = server.post(start, String::new()).await;
    assert_eq!(status, 403, "{refused}");

    // An editor asking for approval is refused, and nothing is stored.
    let (status, refused) = post(
        &editor,
        &server,
        "/api/v1/workflows?approve=true",
        deploy("sneaky"),
    )
    .await;
    assert_eq!(status, 403, "{refused}");
    assert_eq!(versions_of(&server, "deploy").await, 2);

    // Asked explicitly, the admin's apply approves (the same text: the
    // current version).
    let (status, applied) = server
        .post("/api/v1/workflows?approve=true", deploy("admin"))
        .await;
    assert_eq!(status, 200, "{applied}");
    assert!(
        !applied["warnings"].to_string().contains("approves it"),
        "{applied}"
    );
    let (_, shown) = server.get("/api/v1/workflows/deploy").await;
    assert!(shown["approved_by"].is_string(), "{shown}");
    let (status, run) = server.post(start, String::new()).await;
    assert_eq!(status, 201, "{run}");
    let (_, audit) = server.get("/api/v1/audit").await;
    assert!(audit.to_string().contains("approved on apply"), "{audit}");
}

#[tokio::test]
async fn an_admin_apply_approves_only_when_asked_on_sqlite() {
    an_admin_apply_approves_only_when_asked(Backend::Sqlite).await;
}

#[tokio::test]
async fn an_admin_apply_approves_only_when_asked_on_postgres() {
    an_admin_apply_approves_only_when_asked(Backend::Postgres).await;
}

/// Env from a param is code chosen by whoever starts a run (`BASH_ENV`
/// runs a file before every step's script), as is a templated image.
const CHOSEN: &str = r#"
name: chosen
pipelines:
  p:
    params: {rc: "/dev/null", tag: "3", v: "1"}
    env: {BASH_ENV: "{{ params.rc }}"}
    tasks:
      t:
        image: "alpine:{{ params.tag }}"
        env: {LD_PRELOAD: "{{ params.v }}"}
        secrets: [DEPLOY_KEY]
        steps:
          - name: s
            run: 'true'
            env: {GIT_SSH_COMMAND: "{{ params.v }}"}
"#;

/// F3: what a run's starter chooses is named before approving (409 unless
/// accepted, on approve and on apply), and an approval can be revoked.
async fn run_time_choices_are_told_first_and_approvals_revoked(backend: Backend) {
    let (_db, server, editor) = agentless(backend).await;
    put_secret(&server, json!({ "protected": true, "allow": ["chosen"] })).await;
    applied_by(&editor, &server, CHOSEN).await;

    let approve = "/api/v1/workflows/chosen/versions/1/approve";
    let (status, refused) = server.post(approve, String::new()).await;
    assert_eq!(status, 409, "{refused}");
    let error = error_of(&refused);
    for place in [
        "image",
        "env BASH_ENV (of pipeline p)",
        "env LD_PRELOAD (of the task)",
        "env GIT_SSH_COMMAND (of step s)",
        "accept_run_time_choices",
    ] {
        assert!(error.contains(place), "{place}: {refused}");
    }
    let (_, shown) = server.get("/api/v1/workflows/chosen").await;
    assert_eq!(shown["approved_by"], Value::Null, "not approved: {shown}");
    // The same on apply: nothing stored, nothing approved.
    let changed = CHOSEN.replace("'true'", "'true '");
    let (status, refused) = server
        .post("/api/v1/workflows?approve=true", changed.clone())
        .await;
    assert_eq!(status, 409, "{refused}");
    assert!(error_of(&refused).contains("BASH_ENV"), "{refused}");
    assert_eq!(versions_of(&server, "chosen").await, 1);

    let (status, approved) = server
        .post(
            &format!("{approve}?accept_run_time_choices=true"),
            String::new(),
        )
        .await;
    assert_eq!(status, 200, "{approved}");
    assert_eq!(
        approved["warnings"].as_array().unwrap().len(),
        4,
        "{approved}"
    );
    let start = "/api/v1/workflows/chosen/pipelines/p/runs";
    let (status, run) = server.post(start, String::new()).await;
    assert_eq!(status, 201, "{run}");

    // Revoked: refused again. Only admins revoke.
    let (status, body) = delete(&editor, &server, approve).await;
    assert_eq!(status, 403, "{body}");
    let (status, revoked) = delete(&server.client, &server, approve).await;
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(revoked["changed"], true, "{revoked}");
    let (_, shown) = server.get("/api/v1/workflows/chosen").await;
    assert_eq!(shown["approved_by"], Value::Null, "{shown}");
    let (status, refused) = server.post(start, String::new()).await;
    assert_eq!(status, 403, "{refused}");
    assert!(error_of(&refused).contains("not approved"), "{refused}");
    let (status, again) = delete(&server.client, &server, approve).await;
    assert_eq!((status, &again["changed"]), (200, &json!(false)), "{again}");
    let missing = "/api/v1/workflows/chosen/versions/9/approve";
    let (status, body) = delete(&server.client, &server, missing).await;
    assert_eq!(status, 404, "{body}");
    // Approved on apply once accepted.
    let (status, applied) = server
        .post(
            "/api/v1/workflows?approve=true&accept_run_time_choices=true",
            changed,
        )
        .await;
    assert_eq!(status, 201, "{applied}");
    assert!(
        applied["warnings"].to_string().contains("BASH_ENV"),
        "{applied}"
    );
    let (_, shown) = server.get("/api/v1/workflows/chosen").await;
    assert!(shown["approved_by"].is_string(), "{shown}");
    let (_, audit) = server.get("/api/v1/audit").await;
    assert!(
        audit.to_string().contains("workflow.revoke_approval"),
        "{audit}"
    );
}

#[tokio::test]
async fn run_time_choices_are_told_first_and_approvals_revoked_on_sqlite() {
    run_time_choices_are_told_first_and_approvals_revoked(Backend::Sqlite).await;
}

#[tokio::test]
async fn run_time_choices_are_told_first_and_approvals_revoked_on_postgres() {
    run_time_choices_are_told_first_and_approvals_revoked(Backend::Postgres).await;
}

/// Queues its fire behind an unfinished run.
const QUEUED: &str = r#"
name: queued
pipelines:
  p:
    trigger: {cron: "0 0 1 1 *", timezone: UTC, overlap: queue}
    tasks:
      t:
        secrets: [DEPLOY_KEY]
        steps: ['test -n "$DEPLOY_KEY"']
"#;

/// F5: a fire queued behind a run, refused when its turn comes (here its
/// secret became protected meanwhile), is recorded as skipped with the
/// reason instead of blocking the pipeline's fires.
async fn a_queued_fire_refused_is_recorded_skipped(backend: Backend) {
    // No agent: the manual run stays queued, unfinished.
    let (db, server, editor) = agentless(backend).await;
    applied_by(&editor, &server, QUEUED).await;
    let (status, run) = post(
        &editor,
        &server,
        "/api/v1/workflows/queued/pipelines/p/runs",
        String::new(),
    )
    .await;
    assert_eq!(status, 201, "{run}");
    let (outcome, reason) = backdated_cron_fire(&db, "queued").await;
    assert_eq!(outcome, "queued", "{reason}");

    put_secret(&server, json!({ "protected": true, "allow": ["queued"] })).await;
    let id = run["id"].as_i64().unwrap();
    let (status, body) = server
        .post(&format!("/api/v1/runs/{id}/cancel"), String::new())
        .await;
    assert!(status < 300, "{body}");
    let (outcome, reason) = cron_fire_where(&db, "queued", |o| o != "queued").await;
    assert_eq!(outcome, "skipped", "{reason}");
    assert!(reason.contains("not approved"), "{reason}");
    assert_eq!(run_count(&server).await, 1, "nothing more was queued");
}

#[tokio::test]
async fn a_queued_fire_refused_is_recorded_skipped_on_sqlite() {
    a_queued_fire_refused_is_recorded_skipped(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_queued_fire_refused_is_recorded_skipped_on_postgres() {
    a_queued_fire_refused_is_recorded_skipped(Backend::Postgres).await;
}
