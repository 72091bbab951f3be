//! What people get of a run's artifacts over the API: the listing, one
//! file as an attachment, several as a tar stream that the system's `tar`
//! extracts with the files' contents and modes, one file of those by
//! `path`, the workflow's usage, and pins (audited, shown on the run); a
//! blob substituted in the store is a broken download, not a wrong file.
//! Published by the built-in agent's shell steps, as a run would; on
//! SQLite and PostgreSQL.

use std::os::unix::fs::PermissionsExt;

use serde_json::json;

use crate::util::{BACKENDS, Backend, TestDb, TestServer};

const WORKFLOW: &str = r#"name: dl
pipelines:
  p:
    tasks:
      build:
        steps:
          - run: |
              mkdir -p out/sub
              printf 'hello\n' > out/app && chmod 755 out/app
              printf two > out/sub/data && chmod 640 out/sub/data
              printf solo > 'one file.txt'
        publish:
          - name: bundle
            path: out
          - name: single
            path: one file.txt
"#;

async fn fetch(server: &TestServer, path: &str) -> reqwest::Response {
    server.client.get(server.url(path)).send().await.unwrap()
}

#[tokio::test]
async fn artifacts_list_download_as_file_or_tar_and_pin() {
    for backend in BACKENDS {
        check(backend).await;
    }
}

async fn check(backend: Backend) {
    let db = TestDb::new(backend);
    let server = TestServer::start(&db).await;
    let (status, body) = server.post("/api/v1/workflows", WORKFLOW).await;
    assert_eq!(status, 201, "{body}");
    let (status, run) = server
        .post("/api/v1/workflows/dl/pipelines/p/runs", "{}")
        .await;
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_i64().unwrap();
    let run = server.wait_for_run(id).await;
    assert_eq!(run["status"], "success", "{run}");
    assert_eq!(run["pinned"], false, "{run}");

    let (status, listing) = server.get(&format!("/api/v1/runs/{id}/artifacts")).await;
    assert_eq!(status, 200, "{listing}");
    let names: Vec<(&str, &str, u64, u64)> = listing["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["task"].as_str().unwrap(),
                a["name"].as_str().unwrap(),
                a["files"].as_u64().unwrap(),
                a["bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [("build", "bundle", 2, 9), ("build", "single", 1, 4)],
        "{listing}"
    );
    assert_eq!(listing["artifacts"][0]["when"], "success");

    // One file: as it is, named for a browser.
    let response = fetch(&server, &format!("/api/v1/runs/{id}/artifacts/single")).await;
    assert_eq!(response.status(), 200);
    let disposition = response.headers()["content-disposition"].to_str().unwrap();
    assert_eq!(
        disposition,
        "attachment; filename=\"one_file.txt\"; filename*=UTF-8''one%20file.txt"
    );
    assert_eq!(
        response.headers()["content-type"],
        "application/octet-stream"
    );
    assert_eq!(response.bytes().await.unwrap().as_ref(), b"solo");

    // Several: a tar that the system's tar reads, contents and modes.
    let response = fetch(&server, &format!("/api/v1/runs/{id}/artifacts/bundle")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-tar");
    let length: usize = response.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let tar = response.bytes().await.unwrap();
    assert_eq!(tar.len(), length, "Content-Length is what was sent");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bundle.tar"), &tar).unwrap();
    let out = dir.path().join("x");
    std::fs::create_dir(&out).unwrap();
    let status = std::process::Command::new("tar")
        .arg("-xf")
        .arg(dir.path().join("bundle.tar"))
        .arg("-C")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "tar cannot read the stream");
    assert_eq!(std::fs::read(out.join("app")).unwrap(), b"hello\n");
    assert_eq!(std::fs::read(out.join("sub/data")).unwrap(), b"two");
    let mode = |p: &str| std::fs::metadata(out.join(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!((mode("app"), mode("sub/data")), (0o755, 0o640));

    // One file of several; what is not there is a 404.
    let response = fetch(
        &server,
        &xene_api::paths::artifact(id, "bundle", Some("sub/data")),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap().as_ref(), b"two");
    for path in [
        xene_api::paths::artifact(id, "bundle", Some("nope")),
        xene_api::paths::artifact(id, "nope", None),
        xene_api::paths::artifact(id + 1000, "bundle", None),
        xene_api::paths::run_artifacts(id + 1000),
    ] {
        let (status, body) = server.get(&path).await;
        assert_eq!(status, 404, "{path}: {body}");
    }

    let (status, usage) = server.get("/api/v1/workflows/dl/artifacts").await;
    assert_eq!(status, 200, "{usage}");
    assert_eq!(usage, json!({"workflow": "dl", "bytes": 13, "quota": null}));
    let (status, _) = server.get("/api/v1/workflows/nope/artifacts").await;
    assert_eq!(status, 404);

    // Pinned, shown on the run, audited; unpinned again.
    let pin = server.url(&format!("/api/v1/runs/{id}/pin"));
    let response = server.client.put(&pin).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(answer, json!({"id": id, "pinned": true}));
    let (_, run) = server.get(&format!("/api/v1/runs/{id}")).await;
    assert_eq!(run["pinned"], true, "{run}");
    let response = server.client.delete(&pin).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let (_, run) = server.get(&format!("/api/v1/runs/{id}")).await;
    assert_eq!(run["pinned"], false, "{run}");
    let (_, audit) = server.get("/api/v1/audit").await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["target"] == format!("run {id}"))
        .take(2)
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["run.unpin", "run.pin"], "{audit}");
    let response = server
        .client
        .put(server.url("/api/v1/runs/999999/pin"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);

    // A blob whose object was replaced by other bytes of its size: the
    // download breaks off, one file or a tar; it never ends as if whole.
    for (bytes, other) in [(&b"solo"[..], &b"SOLO"[..]), (b"two", b"TWO")] {
        let hex = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes));
        let object = db
            .dir
            .path()
            .join("artifacts/blobs/sha256")
            .join(&hex[..2])
            .join(&hex);
        std::fs::write(&object, other).unwrap();
    }
    // The break may come before the answer's head is out (the whole file
    // is one held-back chunk), so the request itself may fail.
    for name in ["single", "bundle"] {
        let url = server.url(&format!("/api/v1/runs/{id}/artifacts/{name}"));
        let got = match server.client.get(url).send().await {
            Ok(response) => response.bytes().await.map(|b| b.to_vec()),
            Err(e) => Err(e),
        };
        assert!(
            got.is_err(),
            "{name}: a substituted blob came whole: {got:?}"
        );
    }
    server.stop().await;
}
