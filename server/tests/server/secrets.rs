//! Secrets end to end: only admins manage them, values never come back,
//! they reach only the steps of tasks that name them, and every form of a
//! value is masked before it is stored or streamed, on both databases,
//! through the built-in agent and a remote one.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::process::{Agent, Xene};
use crate::util::{
    Backend, TestDb, TestServer, admin_token, client_with_token, files_under, response,
};

const MINUTE: Duration = Duration::from_secs(60);

/// Has a space, a slash, a plus and an equals sign: its URL encoding differs.
const TOKEN: &str = "s3cr3t/val+ue=42 ok-Xq9";
const PEM: &str = "-----BEGIN TEST KEY-----\nQUJDREVGR0hJSktMTU5PUA\nZmVkY2JhOTg3NjU0MzIx\n-----END TEST KEY-----";

const LEAKY: &str = r#"
name: leaky
pipelines:
  p:
    tasks:
      leak:
        secrets: [API_TOKEN, PEM_KEY]
        steps:
          - name: show
            run: |
              echo "plain: $API_TOKEN"
              printf '%s' "$API_TOKEN" | base64
              printf 'user:%s' "$API_TOKEN" | base64
              printf '%s' "$API_TOKEN" | sed 's|/|%2F|g; s|+|%2B|g; s|=|%3D|g; s| |%20|g'; echo
              printf 'split: %s' "$(printf '%s' "$API_TOKEN" | cut -c1-6)"
              sleep 0.3
              printf '%s\n' "$(printf '%s' "$API_TOKEN" | cut -c7-)"
              printf '%s\n' "$PEM_KEY"
              echo "$API_TOKEN" > "$XENE_OUTPUT"
              test "$(printf '%s' "$API_TOKEN" | sha256sum | cut -c1-64)" = TOKEN_SHA256 && echo value-intact
      other:
        steps:
          - test -z "$API_TOKEN" && echo not-here
"#;

/// What must never be seen: the value, its base64 and its lines.
fn forbidden() -> Vec<String> {
    let mut out = vec![
        TOKEN.to_string(),
        STANDARD.encode(TOKEN),
        "s3cr3t%2Fval%2Bue%3D42%20ok-Xq9".to_string(),
        "QUJDREVGR0hJSktMTU5PUA".to_string(),
        "ZmVkY2JhOTg3NjU0MzIx".to_string(),
    ];
    // The encoding of "user:VALUE" holds the value's own at an offset.
    let prefixed = STANDARD.encode(format!("user:{TOKEN}"));
    out.push(prefixed[8..prefixed.len() - 4].to_string());
    out
}

fn assert_clean(what: &str, text: &str) {
    for secret in forbidden() {
        assert!(!text.contains(&secret), "{what} holds {secret:?}:\n{text}");
    }
}

fn assert_files_clean(what: &str, files: &[std::path::PathBuf]) {
    assert!(!files.is_empty(), "{what}: no files to look at");
    for file in files {
        let Ok(bytes) = std::fs::read(file) else {
            continue;
        };
        for secret in forbidden() {
            let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(!found, "{what}: {} holds {secret:?}", file.display());
        }
    }
}

async fn put(
    http: &reqwest::Client,
    base: &str,
    name: &str,
    query: &str,
    value: &str,
) -> (u16, Value) {
    response(
        http.put(format!("{base}/api/v1/secrets/{name}{query}"))
            .json(&json!({ "value": value }))
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// Everything a run's feed sends, from the start, until it goes quiet.
async fn feed_text(base: &str, token: &str, run: i64) -> String {
    let url = format!(
        "{}/api/v1/runs/{run}/events",
        base.replacen("http://", "ws://", 1)
    );
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let mut text = String::new();
    while let Ok(Some(Ok(message))) =
        tokio::time::timeout(Duration::from_secs(2), socket.next()).await
    {
        match message {
            Message::Text(t) => text.push_str(&t),
            Message::Close(_) => break,
            _ => {}
        }
    }
    text
}

async fn check_masked_run(xene: &Xene, token: &str) {
    for (name, value) in [("API_TOKEN", TOKEN), ("PEM_KEY", PEM)] {
        let (status, body) = put(&xene.http, &xene.base, name, "", value).await;
        assert_eq!(status, 201, "{body}");
        assert_clean("the PUT answer", &body.to_string());
    }
    // The spec checks the value by its digest: it must not hold the value.
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(TOKEN));
    xene.apply(&LEAKY.replace("TOKEN_SHA256", &digest)).await;
    let id = xene.start_run("leaky", "p", json!({})).await;
    let run = xene.wait_finished(id, MINUTE).await;
    assert_eq!(run["status"], "success", "{run}");
    assert_clean("the run", &run.to_string());
    let leak = run["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "leak")
        .unwrap();
    assert_eq!(leak["output"], "***", "{run}");

    let lines: Vec<String> = xene
        .logs(id)
        .await
        .iter()
        .map(|l| l["data"].as_str().unwrap().to_string())
        .collect();
    let all = lines.join("\n");
    assert_clean("the stored log", &all);
    for expected in [
        "plain: ***",
        "***",
        "split: ***",
        "value-intact",
        "not-here",
    ] {
        assert!(
            lines.iter().any(|l| l == expected),
            "no line {expected:?} in:\n{all}"
        );
    }
    // The encodings are masked too, not printed as they are.
    // The base64, the URL encoding, and the key's four lines.
    let masked = lines.iter().filter(|l| l.as_str() == "***").count();
    assert!(masked >= 6, "{masked} lines masked whole:\n{all}");
    let prefixed = lines
        .iter()
        .find(|l| l.starts_with("dXNlcj"))
        .expect("user: line");
    assert!(prefixed.contains("***"), "{prefixed}");

    let raw = xene
        .http
        .get(format!("{}/api/v1/runs/{id}/logs/leak/show", xene.base))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 200);
    let raw = raw.text().await.unwrap();
    assert!(raw.contains("plain: ***"), "{raw}");
    assert_clean("the raw log", &raw);
    let feed = feed_text(&xene.base, token, id).await;
    assert!(feed.contains("plain: ***"), "{feed}");
    assert_clean("the feed", &feed);
    let (_, listed) = xene.get("/api/v1/secrets").await;
    assert_clean("the list", &listed.to_string());
    let metrics = xene
        .http
        .get(format!("{}/metrics", xene.base))
        .send()
        .await
        .unwrap();
    assert_clean("the metrics", &metrics.text().await.unwrap());
}

/// One run of `LEAKY` on `backend`, through the built-in agent or a remote
/// one, then a look at every file the database and the agent keep.
async fn masked_everywhere(backend: Backend, remote: bool) {
    let db = TestDb::new(backend);
    let flags: &[&str] = if remote { &["--no-local-agent"] } else { &[] };
    let xene = Xene::start(&db, "srv", flags).await;
    let token = admin_token(&db.dir.path().join("data-srv"));
    let state = db.dir.path().join("agent");
    let mut agent = None;
    if remote {
        let join = xene.join_token(json!({})).await;
        agent = Some(Agent::start(
            &xene.base,
            &join,
            &state,
            "remote",
            &["--allow-shell"],
        ));
        xene.wait_agents_online(1).await;
    }
    check_masked_run(&xene, &token).await;
    if let Some(agent) = &mut agent {
        agent.kill();
        assert_files_clean("the agent's state directory", &files_under(&state));
    }
    drop(xene);
    // SQLite's file and journal; PostgreSQL's cluster with its WAL, which
    // holds every committed change.
    assert_files_clean("the database", &db.files());
    // The server's log and whatever else it keeps in its data directory.
    assert_files_clean("the data directory", &files_under(db.dir.path()));
}

#[tokio::test]
async fn secrets_are_masked_everywhere_on_sqlite_with_the_built_in_agent() {
    masked_everywhere(Backend::Sqlite, false).await;
}

#[tokio::test]
async fn secrets_are_masked_everywhere_on_sqlite_with_a_remote_agent() {
    masked_everywhere(Backend::Sqlite, true).await;
}

#[tokio::test]
async fn secrets_are_masked_everywhere_on_postgres_with_the_built_in_agent() {
    masked_everywhere(Backend::Postgres, false).await;
}

#[tokio::test]
async fn secrets_are_masked_everywhere_on_postgres_with_a_remote_agent() {
    masked_everywhere(Backend::Postgres, true).await;
}

async fn token_with_role(server: &TestServer, role: &str) -> reqwest::Client {
    let (status, body) = server
        .post(
            "/api/v1/tokens",
            json!({ "name": role, "role": role }).to_string(),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    client_with_token(body["token"].as_str().unwrap())
}

#[tokio::test]
async fn only_admins_manage_secrets_and_bad_input_changes_nothing() {
    let db = TestDb::new(Backend::Sqlite);
    let server = TestServer::start(&db).await;
    let base = format!("http://{}", server.addr);
    let viewer = token_with_role(&server, "viewer").await;
    let editor = token_with_role(&server, "editor").await;
    for (who, client) in [("viewer", &viewer), ("editor", &editor)] {
        let (status, body) = put(client, &base, "DEPLOY_KEY", "", "value-1234").await;
        assert_eq!(status, 403, "{who}: {body}");
        let status = client
            .delete(format!("{base}/api/v1/secrets/DEPLOY_KEY"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 403, "{who}");
        let (status, body) = response(
            client
                .post(format!("{base}/api/v1/secrets/rotate-key"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 403, "{who}: {body}");
        // Names are for everyone signed in.
        let (status, _) = response(
            client
                .get(format!("{base}/api/v1/secrets"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200, "{who}");
    }
    let admin = &server.client;
    let big = "x".repeat(64 * 1024 + 1);
    for (name, query, value, expected) in [
        ("1BAD", "", "value-1234", 400),
        ("HAS-DASH", "", "value-1234", 400),
        ("XENE_MINE", "", "value-1234", 400),
        ("OK_NAME", "?workflow=Bad%20Name", "value-1234", 400),
        ("OK_NAME", "?workflow=nosuch", "value-1234", 404),
        ("OK_NAME", "", "", 422),
        ("OK_NAME", "", "   ", 422),
        ("OK_NAME", "", "abc", 422),
        ("OK_NAME", "", "nul\0inside", 422),
        ("OK_NAME", "", big.as_str(), 413),
    ] {
        let (status, body) = put(admin, &base, name, query, value).await;
        assert_eq!(status, expected, "{name}{query}: {body}");
        assert!(body["error"].is_string(), "{body}");
        if value.len() >= 4 && value.len() < 100 {
            assert!(!body.to_string().contains(value), "{body}");
        }
    }
    // A malformed body's error does not echo it.
    let (status, body) = response(
        admin
            .put(format!("{base}/api/v1/secrets/OK_NAME"))
            .body(r#"{"value": 918273645546}"#)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    // Serde's own message would quote the number.
    assert!(!body.to_string().contains("918273645546"), "{body}");
    let (_, listed) = server.get("/api/v1/secrets").await;
    assert_eq!(listed["secrets"], json!([]), "nothing was stored");

    let (status, created) = put(admin, &base, "DEPLOY_KEY", "", "first-value").await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["name"], "DEPLOY_KEY");
    assert_eq!(created["workflow"], Value::Null);
    let (status, replaced) = put(admin, &base, "DEPLOY_KEY", "", "second-value").await;
    assert_eq!(status, 200, "{replaced}");
    let (_, listed) = server.get("/api/v1/secrets").await;
    let text = listed.to_string();
    assert!(
        !text.contains("first-value") && !text.contains("second-value"),
        "{text}"
    );
    assert_eq!(listed["secrets"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(server.delete("/api/v1/secrets/DEPLOY_KEY").await, 204);
    assert_eq!(server.delete("/api/v1/secrets/DEPLOY_KEY").await, 404);
    let (_, audit) = server.get("/api/v1/audit").await;
    let audit = audit.to_string();
    assert!(
        audit.contains("secret.create") && audit.contains("secret.delete"),
        "{audit}"
    );
    assert!(!audit.contains("first-value"), "{audit}");
}

const NEEDY: &str = r#"
name: needy
pipelines:
  p:
    tasks:
      use:
        secrets: [SCOPED_ONE]
        steps:
          - test "$SCOPED_ONE" = workflow-value && echo scoped-wins
"#;

#[tokio::test]
async fn missing_secrets_warn_at_apply_refuse_runs_and_fail_waiting_ones() {
    let db = TestDb::new(Backend::Sqlite);
    let server = TestServer::start_with(&db, |args| args.no_local_agent = true).await;
    let base = format!("http://{}", server.addr);
    let (status, applied) = server.post("/api/v1/workflows", NEEDY).await;
    assert_eq!(status, 201, "{applied}");
    let warning = applied["warnings"][0].as_str().unwrap_or_default();
    assert!(warning.contains("SCOPED_ONE"), "{applied}");

    let path = "/api/v1/workflows/needy/pipelines/p/runs";
    let (status, refused) = server.post(path, "").await;
    assert_eq!(status, 422, "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains("SCOPED_ONE"),
        "{refused}"
    );
    let (_, runs) = server.get("/api/v1/runs").await;
    assert_eq!(runs["runs"], json!([]), "no run was made");

    // With no agent, the run waits; deleting its secret fails it.
    let (status, _) = put(&server.client, &base, "SCOPED_ONE", "", "global-value").await;
    assert_eq!(status, 201);
    let (status, run) = server.post(path, "").await;
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_i64().unwrap();
    assert_eq!(server.delete("/api/v1/secrets/SCOPED_ONE").await, 204);
    let run = server.wait_for_run(id).await;
    assert_eq!(run["status"], "error", "{run}");
    let error = run["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("SCOPED_ONE") && error.contains("deleted"),
        "{run}"
    );
}

#[tokio::test]
async fn a_workflows_own_secret_wins_over_a_global_one() {
    let db = TestDb::new(Backend::Sqlite);
    let server = TestServer::start(&db).await;
    let base = format!("http://{}", server.addr);
    server.post("/api/v1/workflows", NEEDY).await;
    put(&server.client, &base, "SCOPED_ONE", "", "global-value").await;
    let (status, body) = put(
        &server.client,
        &base,
        "SCOPED_ONE",
        "?workflow=needy",
        "workflow-value",
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["workflow"], "needy");
    let (_, listed) = server.get("/api/v1/secrets?workflow=needy").await;
    assert_eq!(listed["secrets"].as_array().unwrap().len(), 2, "{listed}");
    let (status, run) = server
        .post("/api/v1/workflows/needy/pipelines/p/runs", "")
        .await;
    assert_eq!(status, 201, "{run}");
    let run = server.wait_for_run(run["id"].as_i64().unwrap()).await;
    assert_eq!(run["status"], "success", "{run}");
}

fn key() -> String {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).unwrap();
    STANDARD.encode(key)
}

#[tokio::test]
async fn a_wrong_or_lost_master_key_is_refused_at_start() {
    let db = TestDb::new(Backend::Sqlite);
    let server = TestServer::start(&db).await;
    let base = format!("http://{}", server.addr);
    put(&server.client, &base, "KEPT", "", "kept-value").await;
    server.stop().await;
    let default_file = db.dir.path().join("secrets.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&default_file)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the key file is private");
    }

    let mut args = xene_server::config::Args::for_data_dir(db.dir.path().to_path_buf());
    args.database_url = Some(db.url.clone());
    args.secrets_key = Some(key());
    let err = xene_server::Server::bind(&args)
        .await
        .err()
        .expect("a wrong key is refused");
    let chain = format!("{:#}", anyhow::Error::new(err));
    assert!(chain.contains("master key"), "{chain}");

    // A lost default key file is reported, not silently replaced.
    std::fs::rename(&default_file, db.dir.path().join("moved.key")).unwrap();
    args.secrets_key = None;
    let err = xene_server::Server::bind(&args)
        .await
        .err()
        .expect("a lost key is refused");
    let chain = format!("{:#}", anyhow::Error::new(err));
    assert!(
        chain.contains("secrets key file") && chain.contains("missing"),
        "{chain}"
    );
    assert!(!default_file.exists(), "no new key was made");
}

#[tokio::test]
async fn rotation_under_load_loses_nothing() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let db = TestDb::new(backend);
        let key_file = db.dir.path().join("keys");
        let (old, new) = (key(), key());
        std::fs::write(&key_file, format!("{old}\n")).unwrap();
        // Xene refuses a key file others can read.
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let file = key_file.clone();
        let server = TestServer::start_with(&db, |args| args.secrets_key_file = Some(file)).await;
        let base = format!("http://{}", server.addr);
        for i in 0..40 {
            let (status, _) = put(
                &server.client,
                &base,
                &format!("S{i}"),
                "",
                &format!("value-{i}"),
            )
            .await;
            assert_eq!(status, 201);
        }
        // The new key goes first; the old one stays to read what it sealed.
        std::fs::write(&key_file, format!("{new}\n{old}\n")).unwrap();
        let writer = {
            let client = server.client.clone();
            let base = base.clone();
            tokio::spawn(async move {
                for round in 0..3 {
                    for i in 0..60 {
                        let (status, body) = put(
                            &client,
                            &base,
                            &format!("S{i}"),
                            "",
                            &format!("value-{i}-{round}"),
                        )
                        .await;
                        assert!(status == 200 || status == 201, "{body}");
                    }
                }
            })
        };
        let mut rotated = 0;
        for _ in 0..3 {
            let (status, body) = server.post("/api/v1/secrets/rotate-key", "").await;
            assert_eq!(status, 200, "{body}");
            rotated += body["reencrypted"].as_u64().unwrap();
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        writer.await.unwrap();
        assert!(rotated > 0, "something was re-encrypted");
        server.stop().await;

        // Only the new key now: every value must still open, so the server
        // starts, and runs get the last value written.
        std::fs::write(&key_file, format!("{new}\n")).unwrap();
        let file = key_file.clone();
        let server = TestServer::start_with(&db, |args| args.secrets_key_file = Some(file)).await;
        let mut checks = String::new();
        let mut names = Vec::new();
        for i in 0..60 {
            names.push(format!("S{i}"));
            checks.push_str(&format!("              test \"$S{i}\" = value-{i}-2\n"));
        }
        let spec = format!(
            "name: rotated\npipelines:\n  p:\n    tasks:\n      check:\n        secrets: [{}]\n        steps:\n          - run: |\n{checks}              echo all-good\n",
            names.join(", ")
        );
        let (status, body) = server.post("/api/v1/workflows", spec).await;
        assert_eq!(status, 201, "{body}");
        let (status, run) = server
            .post("/api/v1/workflows/rotated/pipelines/p/runs", "")
            .await;
        assert_eq!(status, 201, "{run}");
        let run = server.wait_for_run(run["id"].as_i64().unwrap()).await;
        assert_eq!(run["status"], "success", "{backend:?}: {run}");
        server.stop().await;
    }
}

#[tokio::test]
async fn a_rotation_on_one_replica_is_followed_by_the_others() {
    let db = TestDb::new(Backend::Postgres);
    let key_file = db.dir.path().join("keys");
    let (old, new) = (key(), key());
    std::fs::write(&key_file, format!("{old}\n")).unwrap();
    // Xene refuses a key file others can read.
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let file = key_file.clone();
    // This replica read the file when it held only the old key.
    let stale = TestServer::start_with(&db, |args| {
        args.secrets_key_file = Some(file);
        args.local_agent_id = Some("stale".into());
    })
    .await;
    let stale_base = format!("http://{}", stale.addr);
    let (status, _) = put(
        &stale.client,
        &stale_base,
        "SCOPED_ONE",
        "",
        "before-rotation",
    )
    .await;
    assert_eq!(status, 201);

    std::fs::write(&key_file, format!("{new}\n{old}\n")).unwrap();
    let file = key_file.clone();
    let rotating = TestServer::start_with(&db, |args| {
        args.secrets_key_file = Some(file);
        args.local_agent_id = Some("rotating".into());
        args.no_local_agent = true;
    })
    .await;
    let (status, body) = rotating.post("/api/v1/secrets/rotate-key", "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reencrypted"], 1, "{body}");

    // The stale replica seals with the key the database names, after
    // reading its file again, and opens what the other one sealed.
    let (status, body) = put(
        &stale.client,
        &stale_base,
        "SCOPED_ONE",
        "",
        "workflow-value",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    stale.post("/api/v1/workflows", NEEDY).await;
    let (status, run) = stale
        .post("/api/v1/workflows/needy/pipelines/p/runs", "")
        .await;
    assert_eq!(status, 201, "{run}");
    let run = stale.wait_for_run(run["id"].as_i64().unwrap()).await;
    assert_eq!(run["status"], "success", "{run}");
    rotating.stop().await;
    stale.stop().await;

    // Every value is under the new key: a server with only it starts.
    std::fs::write(&key_file, format!("{new}\n")).unwrap();
    let file = key_file.clone();
    let fresh = TestServer::start_with(&db, |args| args.secrets_key_file = Some(file)).await;
    fresh.stop().await;
}
