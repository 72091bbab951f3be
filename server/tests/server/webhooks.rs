//! Webhooks end to end: hooks and their secrets, signed deliveries of both
//! schemes, every refused case (starting nothing), replays, params from the
//! body as data, and the deliveries log.

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::util::{BACKENDS, TestDb, TestServer};

const SPEC: &str = "\
name: hooked
pipelines:
  push:
    trigger: webhook
    params:
      ref: {from: body.ref, required: true}
      sha: {from: body.head_commit.id, default: none}
    tasks:
      show:
        steps:
          - printf '%s|%s' {{ params.ref }} {{ params.sha }} > \"$XENE_OUTPUT\"
  plain:
    trigger: webhook
    tasks:
      t:
        steps: ['true']
  by-hand:
    tasks:
      t:
        steps: ['true']
";

fn github(secret: &str, body: &[u8]) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(body);
    format!("sha256={}", hex::encode(m.finalize().into_bytes()))
}

fn standard(secret: &str, id: &str, ts: i64, body: &[u8]) -> String {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut m = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    m.update(format!("{id}.{ts}.").as_bytes());
    m.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes())
    )
}

/// Posts a delivery without the admin's token: the signature is all.
async fn deliver(
    server: &TestServer,
    path: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new().post(server.url(path)).body(body);
    for (k, v) in headers {
        request = request.header(*k, v);
    }
    crate::util::response(request.send().await.unwrap()).await
}

fn now_s() -> i64 {
    xene_server::storage::now_ms() / 1000
}

#[tokio::test]
async fn signed_deliveries_start_runs_and_every_other_one_is_refused_and_listed() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start(&db).await;
        let (status, answer) = server.post("/api/v1/workflows", SPEC.to_string()).await;
        assert_eq!(status, 201, "{answer}");

        // Hooks are for webhook pipelines; the secret is shown once.
        let (status, _) = server
            .post(
                "/api/v1/workflows/hooked/pipelines/by-hand/hook",
                String::new(),
            )
            .await;
        assert_eq!(status, 409);
        let (status, hook) = server
            .post(
                "/api/v1/workflows/hooked/pipelines/push/hook",
                String::new(),
            )
            .await;
        assert_eq!(status, 201, "{hook}");
        let secret = hook["secret"].as_str().unwrap().to_string();
        assert!(secret.starts_with("whsec_"));
        let path = hook["path"].as_str().unwrap().to_string();
        assert!(
            path.starts_with("/api/v1/hooks/xh_") && path.len() > 40,
            "{path}"
        );
        let (status, shown) = server
            .get("/api/v1/workflows/hooked/pipelines/push/hook")
            .await;
        assert_eq!(status, 200);
        assert_eq!(shown["path"], path.as_str());
        assert!(shown.get("secret").is_none() && !shown.to_string().contains(&secret));

        let body = json!({
            "ref": "refs/heads/$(touch /tmp/xene-pwned); rm -rf ~; #",
            "head_commit": {"id": "abc`id`"}
        })
        .to_string()
        .into_bytes();

        // Unknown hook: 404, nothing recorded anywhere.
        let (status, _) = deliver(
            &server,
            "/api/v1/hooks/xh_nope",
            &[("x-hub-signature-256", github(&secret, &body))],
            body.clone(),
        )
        .await;
        assert_eq!(status, 404);
        // Unsigned, badly signed, signed with another secret.
        let (status, a) = deliver(&server, &path, &[], body.clone()).await;
        assert_eq!(status, 401, "{a}");
        let (status, _) = deliver(
            &server,
            &path,
            &[("x-hub-signature-256", "sha256=00".into())],
            body.clone(),
        )
        .await;
        assert_eq!(status, 401);
        let (status, _) = deliver(
            &server,
            &path,
            &[("x-hub-signature-256", github("whsec_other", &body))],
            body.clone(),
        )
        .await;
        assert_eq!(status, 401);
        // A Standard Webhooks delivery from too long ago.
        let old = now_s() - 301;
        let (status, a) = deliver(
            &server,
            &path,
            &[
                ("webhook-id", "msg_old".into()),
                ("webhook-timestamp", old.to_string()),
                (
                    "webhook-signature",
                    standard(&secret, "msg_old", old, &body),
                ),
            ],
            body.clone(),
        )
        .await;
        assert_eq!(status, 401, "{a}");
        // Signed, but the params it gives are wrong: every fault named.
        let no_ref = br#"{"head_commit": {"id": "x"}}"#.to_vec();
        let (status, a) = deliver(
            &server,
            &path,
            &[("x-hub-signature-256", github(&secret, &no_ref))],
            no_ref,
        )
        .await;
        assert_eq!(status, 422, "{a}");
        assert_eq!(a["faults"][0]["param"], "ref");
        let not_json = b"ref=main".to_vec();
        let (status, _) = deliver(
            &server,
            &path,
            &[("x-hub-signature-256", github(&secret, &not_json))],
            not_json,
        )
        .await;
        assert_eq!(status, 400);
        // Too large.
        let huge = vec![b' '; xene_server::http::MAX_BODY_BYTES + 1];
        let (status, _) = deliver(
            &server,
            &path,
            &[("x-hub-signature-256", github(&secret, &huge))],
            huge,
        )
        .await;
        assert_eq!(status, 413);
        assert_eq!(
            server.get("/api/v1/runs?workflow=hooked").await.1["runs"],
            json!([])
        );

        // GitHub-signed: accepted, once.
        let (status, a) = deliver(
            &server,
            &path,
            &[("x-hub-signature-256", github(&secret, &body))],
            body.clone(),
        )
        .await;
        assert_eq!(status, 202, "{a}");
        let first = a["run_id"].as_i64().unwrap();
        let (status, a) = deliver(
            &server,
            &path,
            &[("x-hub-signature-256", github(&secret, &body))],
            body.clone(),
        )
        .await;
        assert_eq!(status, 409, "{a}");
        // Standard-signed: accepted, once per webhook-id.
        let ts = now_s();
        let std_headers = [
            ("webhook-id", "msg_1".to_string()),
            ("webhook-timestamp", ts.to_string()),
            ("webhook-signature", standard(&secret, "msg_1", ts, &body)),
        ];
        let (status, a) = deliver(&server, &path, &std_headers, body.clone()).await;
        assert_eq!(status, 202, "{a}");
        let second = a["run_id"].as_i64().unwrap();
        let (status, _) = deliver(&server, &path, &std_headers, body.clone()).await;
        assert_eq!(status, 409);

        // The payload's values reached the step as data.
        for id in [first, second] {
            let run = server.wait_for_run(id).await;
            assert_eq!(run["status"], "success", "{run}");
            assert_eq!(run["trigger"], "webhook");
            assert_eq!(
                run["tasks"][0]["output"],
                "refs/heads/$(touch /tmp/xene-pwned); rm -rf ~; #|abc`id`"
            );
        }
        assert!(!std::path::Path::new("/tmp/xene-pwned").exists());

        // Rotating: the URL stays, the old secret stops working.
        let (status, rotated) = server
            .post(
                "/api/v1/workflows/hooked/pipelines/push/hook",
                String::new(),
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(rotated["path"], path.as_str());
        let new_secret = rotated["secret"].as_str().unwrap().to_string();
        assert_ne!(new_secret, secret);
        let body2 = br#"{"ref": "main"}"#.to_vec();
        let (status, _) = deliver(
            &server,
            &path,
            &[("x-hub-signature-256", github(&secret, &body2))],
            body2.clone(),
        )
        .await;
        assert_eq!(status, 401);
        let (status, _) = deliver(
            &server,
            &path,
            &[("x-hub-signature-256", github(&new_secret, &body2))],
            body2.clone(),
        )
        .await;
        assert_eq!(status, 202);

        // The pipeline no longer takes webhooks; then the workflow is gone.
        let changed = "name: hooked\npipelines:\n  push:\n    trigger: manual\n    tasks:\n      t:\n        steps: ['true']\n";
        let (status, a) = server.post("/api/v1/workflows", changed.to_string()).await;
        assert_eq!(status, 201, "{a}");
        let body3 = br#"{"ref": "dev"}"#.to_vec();
        let (status, _) = deliver(
            &server,
            &path,
            &[("x-hub-signature-256", github(&new_secret, &body3))],
            body3.clone(),
        )
        .await;
        assert_eq!(status, 409);
        assert_eq!(server.delete("/api/v1/workflows/hooked").await, 204);
        let (status, _) = deliver(
            &server,
            &path,
            &[("x-hub-signature-256", github(&new_secret, &body3))],
            body3,
        )
        .await;
        assert_eq!(status, 410);

        // Every delivery to the hook is listed with its answer and reason;
        // only the accepted ones started runs.
        let id = path.rsplit('/').next().unwrap();
        let (status, list) = server.get(&format!("/api/v1/hooks/{id}/deliveries")).await;
        assert_eq!(status, 200, "{list}");
        let deliveries = list["deliveries"].as_array().unwrap();
        let answers: Vec<i64> = deliveries
            .iter()
            .rev()
            .map(|d| d["http_status"].as_i64().unwrap())
            .collect();
        assert_eq!(
            answers,
            [
                401, 401, 401, 401, 422, 400, 413, 202, 409, 202, 409, 401, 202, 409, 410
            ],
            "{list}"
        );
        let reasons: Vec<&str> = deliveries
            .iter()
            .rev()
            .map(|d| d["reason"].as_str().unwrap())
            .collect();
        assert!(reasons[0].starts_with("unsigned"), "{reasons:?}");
        assert!(reasons[3].contains("5 minutes"), "{reasons:?}");
        assert!(reasons[8].contains("replay"), "{reasons:?}");
        assert!(
            reasons[13].contains("no longer triggered by webhooks"),
            "{reasons:?}"
        );
        let started: Vec<i64> = deliveries
            .iter()
            .filter_map(|d| d["run_id"].as_i64())
            .collect();
        assert_eq!(started.len(), 3);
        assert!(
            deliveries
                .iter()
                .all(|d| d["accepted"] == (d["http_status"] == 202))
        );
        assert_eq!(
            server.get("/api/v1/runs?workflow=hooked").await.1["runs"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
        server.stop().await;
    }
}

/// GitHub's published example signature, verified through a real hook.
#[tokio::test]
async fn githubs_published_example_is_accepted() {
    let db = TestDb::new(crate::util::Backend::Sqlite);
    let server = TestServer::start(&db).await;
    let (status, _) = server.post("/api/v1/workflows", SPEC.to_string()).await;
    assert_eq!(status, 201);
    let (_, hook) = server
        .post(
            "/api/v1/workflows/hooked/pipelines/plain/hook",
            String::new(),
        )
        .await;
    let id = hook["id"].as_str().unwrap();
    let storage = xene_server::storage::Db::connect(&db.url).await.unwrap();
    // Sealed as the server seals hook secrets: under its master key, bound
    // to the workflow and pipeline.
    let vault = xene_server::vault::Vault::load(
        xene_server::vault::KeySource::File(db.dir.path().join("secrets.key")),
        false,
    )
    .unwrap();
    let (key_id, sealed) = vault.seal("\0hook:hooked", "plain", b"It's a Secret to Everybody");
    sqlx::query("UPDATE webhooks SET secret = $1 WHERE id = $2")
        .bind(format!("{key_id}:{sealed}"))
        .bind(id)
        .execute(storage.pool())
        .await
        .unwrap();
    let signature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    let (status, a) = deliver(
        &server,
        &format!("/api/v1/hooks/{id}"),
        &[("x-hub-signature-256", signature.to_string())],
        b"Hello, World!".to_vec(),
    )
    .await;
    assert_eq!(status, 202, "{a}");
    server.stop().await;
}

/// A hook's signing secret must be recoverable (to check signatures), so it
/// is sealed under the secrets' master key: never in the database in clear.
#[tokio::test]
async fn hook_secrets_are_sealed_at_rest() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start(&db).await;
        server.post("/api/v1/workflows", SPEC.to_string()).await;
        let (status, hook) = server
            .post(
                "/api/v1/workflows/hooked/pipelines/plain/hook",
                String::new(),
            )
            .await;
        assert_eq!(status, 201, "{hook}");
        let secret = hook["secret"].as_str().unwrap().to_string();
        let path = hook["path"].as_str().unwrap().to_string();
        let body = b"{}".to_vec();
        let (status, answer) = deliver(
            &server,
            &path,
            &[("x-hub-signature-256", github(&secret, &body))],
            body,
        )
        .await;
        assert!(status < 300, "{status} {answer}");
        server.stop().await;
        let key = secret.strip_prefix("whsec_").unwrap();
        for file in db.files() {
            let bytes = std::fs::read(&file).unwrap_or_default();
            assert!(
                !bytes.windows(key.len()).any(|w| w == key.as_bytes()),
                "{backend:?}: {} holds the hook's secret",
                file.display()
            );
        }
    }
}

/// A flood of refused deliveries (anyone with the URL can send them) does
/// not push out what refuses the replay of an accepted one.
#[tokio::test]
async fn a_flood_of_refused_deliveries_does_not_open_a_replay() {
    let db = TestDb::new(crate::util::Backend::Sqlite);
    let server = TestServer::start(&db).await;
    server.post("/api/v1/workflows", SPEC.to_string()).await;
    let (_, hook) = server
        .post(
            "/api/v1/workflows/hooked/pipelines/plain/hook",
            String::new(),
        )
        .await;
    let secret = hook["secret"].as_str().unwrap().to_string();
    let path = hook["path"].as_str().unwrap().to_string();
    let body = br#"{"zen": "replay me"}"#.to_vec();
    let signed = [("x-hub-signature-256", github(&secret, &body))];
    let (status, answer) = deliver(&server, &path, &signed, body.clone()).await;
    assert_eq!(status, 202, "{answer}");
    for _ in 0..(xene_server::storage::hooks::KEEP_DELIVERIES + 10) {
        let (status, _) = deliver(&server, &path, &[], b"{}".to_vec()).await;
        assert_eq!(status, 401);
    }
    let (status, answer) = deliver(&server, &path, &signed, body).await;
    assert_eq!(status, 409, "the replay was accepted: {answer}");
    server.stop().await;
}
