//! Starting a run on the workflow version asked for (`StartRun.version`,
//! what "Run again" and `xenectl rerun` send), and required params that an
//! empty value does not satisfy.

use serde_json::{Value, json};

use crate::util::{BACKENDS, TestDb, TestServer, client_with_token, response, run_count};

/// Version 1; version 2 says `v2` and adds the pipeline `later`.
fn spec(version: u32) -> String {
    let later = if version == 2 {
        "  later:\n    tasks:\n      t:\n        steps:\n          - echo later\n"
    } else {
        ""
    };
    format!(
        "name: again
pipelines:
  p:
    params:
      who: {{type: string, required: true}}
    tasks:
      say:
        steps:
          - printf 'v{version} %s' {{{{ params.who }}}} > \"$XENE_OUTPUT\"
{later}"
    )
}

async fn start(server: &TestServer, pipeline: &str, body: Value) -> (u16, Value) {
    let path = format!("/api/v1/workflows/again/pipelines/{pipeline}/runs");
    server.post(&path, body.to_string()).await
}

#[tokio::test]
async fn a_run_starts_on_the_version_asked_for_and_required_means_not_empty() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start(&db).await;
        for version in [1, 2] {
            let (status, answer) = server.post("/api/v1/workflows", spec(version)).await;
            assert_eq!(
                (status, &answer["version"]),
                (201, &json!(version)),
                "{answer}"
            );
        }

        // Walk bug 3: an empty or blank value was taken for a required param.
        for blank in ["", "   "] {
            let (status, answer) = start(&server, "p", json!({"params": {"who": blank}})).await;
            assert_eq!(status, 422, "{blank:?}: {answer}");
            assert_eq!(
                answer["faults"],
                json!([{"param": "who", "message": "required string param without a value"}]),
                "{answer}"
            );
        }

        // Walk bug 19: a run again runs the version asked for, not the newest.
        let (status, old) = start(
            &server,
            "p",
            json!({"params": {"who": "ann"}, "version": 1}),
        )
        .await;
        assert_eq!((status, &old["version"]), (201, &json!(1)), "{old}");
        let (status, new) = start(&server, "p", json!({"params": {"who": "bob"}})).await;
        assert_eq!((status, &new["version"]), (201, &json!(2)), "{new}");
        let old = server.wait_for_run(old["id"].as_i64().unwrap()).await;
        assert_eq!(old["tasks"][0]["output"], "v1 ann", "{old}");
        let new = server.wait_for_run(new["id"].as_i64().unwrap()).await;
        assert_eq!(new["tasks"][0]["output"], "v2 bob", "{new}");

        // A version the workflow never had, or one without the pipeline:
        // refused, saying why, and nothing starts.
        for version in [3, 0, -1] {
            let (status, answer) = start(
                &server,
                "p",
                json!({"params": {"who": "x"}, "version": version}),
            )
            .await;
            assert_eq!(status, 422, "{answer}");
            assert_eq!(
                answer["error"],
                format!(
                    "workflow \"again\" has no version {version} (the current one is 2): \
                     leaving the version out runs the current one"
                ),
            );
        }
        let (status, answer) = start(&server, "later", json!({"version": 1})).await;
        assert_eq!(status, 422, "{answer}");
        assert_eq!(
            answer["error"],
            "version 1 of workflow \"again\" has no pipeline named \"later\""
        );
        let (status, answer) = start(&server, "p", json!({"version": "1"})).await;
        assert_eq!(status, 400, "a version is a number: {answer}");
        assert_eq!(run_count(&server).await, 2);

        guarded_versions(&server).await;

        // A deleted workflow takes no runs, whichever version is asked for.
        assert_eq!(server.delete("/api/v1/workflows/again").await, 204);
        let (status, answer) =
            start(&server, "p", json!({"params": {"who": "x"}, "version": 1})).await;
        assert_eq!(status, 404, "{answer}");
        server.stop().await;
    }
}

/// Version 1 of `guarded`: `p` uses the protected secret `KEY`, `q` a
/// secret that does not exist. Version 2: `q` uses no secret.
fn guarded(version: u32) -> String {
    let q_secrets = if version == 1 { "[NOPE]" } else { "[]" };
    format!(
        "name: guarded
pipelines:
  p:
    params:
      image: {{type: string, default: safe}}
    tasks:
      t:
        secrets: [KEY]
        steps: ['echo v{version}']
  q:
    tasks:
      t:
        secrets: {q_secrets}
        steps: ['echo q']
"
    )
}

/// Approvals and secrets are checked on the version asked for, and only an
/// admin may start a version other than the current one when it uses
/// protected secrets: else an approval of a superseded version (one an
/// admin replaced with a fixed one) would still hand its secrets out.
async fn guarded_versions(server: &TestServer) {
    for body in [
        json!({"value": "k-value"}),
        json!({"protected": true, "allow": ["guarded"]}),
    ] {
        let answer = server
            .client
            .put(server.url("/api/v1/secrets/KEY"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, answer) = response(answer).await;
        assert!((200..300).contains(&status), "{body}: {answer}");
    }
    let (status, answer) = server.post("/api/v1/workflows", guarded(1)).await;
    assert_eq!(status, 201, "{answer}");
    let (status, answer) = server
        .post("/api/v1/workflows?approve=true", guarded(2))
        .await;
    assert_eq!((status, &answer["version"]), (201, &json!(2)), "{answer}");
    let (status, token) = server
        .post(
            "/api/v1/tokens",
            json!({"name": "ed", "role": "editor"}).to_string(),
        )
        .await;
    assert_eq!(status, 201, "{token}");
    let editor = client_with_token(token["token"].as_str().unwrap());
    let start_as = async |client: &reqwest::Client, pipeline: &str, body: Value| {
        let path = format!("/api/v1/workflows/guarded/pipelines/{pipeline}/runs");
        let answer = client
            .post(server.url(&path))
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        response(answer).await
    };
    let admin = server.client.clone();
    let before = run_count(server).await;

    // The approval asked about is version 1's, not the current one's.
    let (status, answer) = start_as(&admin, "p", json!({"version": 1})).await;
    assert_eq!(status, 403, "{answer}");
    assert_eq!(
        answer["error"],
        "version 1 of workflow guarded uses the protected secret(s) KEY and is not approved: \
         an admin must approve it (`xenectl approve guarded --version 1`)"
    );
    // So are the secrets: version 1's `q` names one that does not exist.
    let (status, answer) = start_as(&admin, "q", json!({"version": 1})).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(
        answer["error"],
        "the pipeline's tasks use secrets that do not exist: NOPE"
    );

    // Version 1 approved, then superseded by version 2: an editor may no
    // longer start it with the secret, whatever its params.
    let (status, answer) = server
        .post("/api/v1/workflows/guarded/versions/1/approve", "")
        .await;
    assert_eq!(status, 200, "{answer}");
    let pinned = json!({"version": 1, "params": {"image": "evil"}});
    let (status, answer) = start_as(&editor, "p", pinned.clone()).await;
    assert_eq!(status, 403, "{answer}");
    assert_eq!(
        answer["error"],
        "version 1 of workflow guarded is not the current one (2), and pipeline p uses the \
         protected secret(s) KEY: only an admin may start an earlier version of it; leave the \
         version out to run the current one (`xenectl rerun RUN --latest`)"
    );
    assert_eq!(run_count(server).await, before, "refused, nothing started");

    // The current version, asked for by number or not, and without
    // protected secrets any version, are the editor's to start; an earlier
    // one with them is an admin's.
    for (client, pipeline, body) in [
        (&editor, "p", json!({})),
        (&editor, "p", json!({"version": 2})),
        (&editor, "q", json!({"version": 2})),
        (&admin, "p", pinned),
    ] {
        let (status, answer) = start_as(client, pipeline, body.clone()).await;
        assert_eq!(status, 201, "{pipeline} {body}: {answer}");
    }
    assert_eq!(run_count(server).await, before + 4);
}

/// A hook's whole URL comes from the server's public URL, the one senders
/// reach it by; with none set (a loopback default), the API gives only the
/// path and whoever shows it joins it to the address they used.
#[tokio::test]
async fn a_hook_has_its_whole_url_from_the_public_url() {
    let spec = "name: hooked\npipelines:\n  p:\n    trigger: webhook\n    tasks:\n      t:\n        steps: ['echo hi']\n";
    let path = "/api/v1/workflows/hooked/pipelines/p/hook";
    for public_url in [Some("https://ci.example.com/"), None] {
        let db = TestDb::new(BACKENDS[0]);
        let server = TestServer::start_with(&db, |args| {
            args.public_url = public_url.map(String::from);
        })
        .await;
        let (status, answer) = server.post("/api/v1/workflows", spec).await;
        assert_eq!(status, 201, "{answer}");
        let (status, made) = server.post(path, "").await;
        assert_eq!(status, 201, "{made}");
        let (status, shown) = server.get(path).await;
        assert_eq!(status, 200, "{shown}");
        let hook_path = format!("/api/v1/hooks/{}", shown["id"].as_str().unwrap());
        assert_eq!(shown["path"], hook_path, "{shown}");
        let want = match public_url {
            Some(_) => json!(format!("https://ci.example.com{hook_path}")),
            None => Value::Null,
        };
        assert_eq!(
            (&made["url"], &shown["url"]),
            (&want, &want),
            "{made} {shown}"
        );
        server.stop().await;
    }
}
