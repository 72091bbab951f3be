//! The artifact store's edges (issue 25), below the end-to-end tests of
//! `artifacts*.rs`: the local store's signed URLs as the blob route checks
//! them (a URL signed with the server's own key, but expired, is refused;
//! so are tampered ones and bytes that are not the URL's), an agent's
//! request about an attempt it does not hold, and the S3 store's presigned
//! single and multipart uploads against a real S3 API (moto).

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use xene_core::artifact::{Digest, PART_SIZE};
use xene_core::protocol::{AgentMessage, AttemptRef, FilesAnswer, FilesRequest, ServerMessage};
use xene_server::config::artifacts::{ArtifactArgs, StoreKind};
use xene_server::files::BlobStore;
use xene_server::files::local_urls::{BlobMethod, LocalUrls};

use crate::agent_socket::{connect, hello, join, receive, send};
use crate::util::{Backend, TestDb, TestServer};

fn digest_of(bytes: &[u8]) -> Digest {
    Digest::from_sha256(&Sha256::digest(bytes).into())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The URLs' key of the server on `db`, from its database and master key,
/// as every replica derives it.
async fn server_urls(db: &TestDb) -> LocalUrls {
    let store = xene_server::storage::Db::connect(&db.url).await.unwrap();
    let vault = xene_server::vault::Vault::load(
        xene_server::vault::KeySource::File(db.dir.path().join("secrets.key")),
        false,
    )
    .unwrap();
    let key = xene_server::storage::access::signing_key(&store, &vault)
        .await
        .unwrap();
    store.close().await;
    LocalUrls::new(&key)
}

/// Files under `dir`, recursively (none when it does not exist).
fn files_in(dir: &Path) -> Vec<std::path::PathBuf> {
    xene_testkit::files_under(dir)
}

async fn put(server: &TestServer, url: &str, body: &'static [u8]) -> (u16, Value) {
    let answer = reqwest::Client::new()
        .put(server.url(url))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn blob_urls_grant_one_method_on_one_blob_until_they_expire() {
    let db = TestDb::new(Backend::Sqlite);
    let server = TestServer::start_with(&db, |a| a.no_local_agent = true).await;
    let urls = server_urls(&db).await;
    let store = db.dir.path().join("artifacts");
    let bytes: &[u8] = b"hello";
    let digest = digest_of(bytes);
    let later = now_ms() + 60_000;

    // Signed with the server's own key, but expired.
    let expired = urls.sign(BlobMethod::Put, &digest, 5, now_ms() - 1000);
    let (status, body) = put(&server, &expired, b"hello").await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("expired"),
        "{body}"
    );

    // Tampered: another size, a signature not the server's.
    let url = urls.sign(BlobMethod::Put, &digest, 5, later);
    let (status, body) = put(&server, &url.replace("size=5", "size=6"), b"hello!").await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("signature"),
        "{body}"
    );
    let foreign = LocalUrls::new(b"another server").sign(BlobMethod::Put, &digest, 5, later);
    assert_eq!(put(&server, &foreign, b"hello").await.0, 403);

    // Bytes that are not the URL's, or more of them: refused, nothing kept.
    let (status, body) = put(&server, &url, b"hellO").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("hash to"),
        "{body}"
    );
    let (status, body) = put(&server, &url, b"hello, world").await;
    assert_eq!(status, 400, "{body}");
    assert!(files_in(&store).is_empty(), "{:?}", files_in(&store));

    // The right bytes are kept under the blob's key, and read back only
    // with a GET URL.
    assert_eq!(put(&server, &url, b"hello").await.0, 200);
    let hex = digest.hex();
    let kept = store.join(format!("blobs/sha256/{}/{hex}", &hex[..2]));
    assert_eq!(std::fs::read(&kept).unwrap(), bytes);
    // Private, as everything in the data directory.
    use std::os::unix::fs::PermissionsExt;
    for path in [&kept, kept.parent().unwrap()] {
        let mode = std::fs::metadata(path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{} is {mode:o}", path.display());
    }
    assert_eq!(files_in(&store), vec![kept]);
    let get = urls.sign(BlobMethod::Get, &digest, 5, later);
    let answer = reqwest::get(server.url(&get)).await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.bytes().await.unwrap().as_ref(), bytes);
    let answer = reqwest::get(server.url(&url)).await.unwrap();
    assert_eq!(answer.status(), 405);

    // An agent asking about an attempt it does not hold is refused, and
    // its session goes on.
    let (_, credential) = join(&server, json!({})).await;
    let mut socket = connect(&server, &credential, &hello(vec![])).await;
    let attempt = AttemptRef { id: 4242 };
    let request = FilesRequest::Fetch {
        name: "binary".into(),
    };
    send(
        &mut socket,
        &AgentMessage::Files {
            attempt,
            id: 7,
            request,
        },
    )
    .await;
    match receive(&mut socket).await {
        Ok(ServerMessage::Files {
            id: 7,
            answer: FilesAnswer::Refused { error },
            ..
        }) => assert!(error.contains("not held by this agent"), "{error}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    server.stop().await;
}

#[test]
fn answers_about_files_fit_what_an_agent_may_send() {
    assert_eq!(
        xene_server::gateway::limits::MAX_ANSWER_BYTES,
        xene_server::http::connect::MAX_MESSAGE_BYTES
    );
}

#[tokio::test]
async fn the_s3_store_presigns_single_and_multipart_uploads() {
    let s3 = xene_testkit::S3::start();
    let dir = xene_testkit::private_tempdir();
    let args = ArtifactArgs {
        artifact_store: StoreKind::S3,
        s3_endpoint: Some(s3.endpoint.clone()),
        s3_bucket: Some(s3.bucket.clone()),
        s3_region: s3.region.clone(),
        s3_access_key_id: Some(s3.access_key_id.clone()),
        s3_secret_access_key: Some(s3.secret_access_key.clone()),
        artifact_url_ttl: Duration::from_secs(300),
        ..Default::default()
    };
    let store = BlobStore::open(&args, dir.path(), b"key").unwrap();
    let http = reqwest::Client::new();
    let object = |digest: &Digest| {
        let hex = digest.hex();
        format!("/{}/blobs/sha256/{}/{hex}", s3.bucket, &hex[..2])
    };

    // A small file: one PUT of minutes, which S3 checks against the digest.
    let small = b"a small blob".to_vec();
    let digest = digest_of(&small);
    let upload = store.upload(&digest, small.len() as u64).await.unwrap();
    assert_eq!(upload.parts.len(), 1);
    assert_eq!(upload.upload_id, None);
    let part = &upload.parts[0];
    assert!(part.url.contains(&object(&digest)), "{}", part.url);
    assert!(part.url.contains("X-Amz-Expires=300"), "{}", part.url);
    assert!(part.headers.contains_key("x-amz-checksum-sha256"));
    let mut request = http.put(&part.url).body(small.clone());
    for (name, value) in &part.headers {
        request = request.header(name, value);
    }
    let answer = request.send().await.unwrap();
    assert!(answer.status().is_success(), "{}", s3.log_text());
    assert_eq!(
        store.size_of(&digest).await.unwrap(),
        Some(small.len() as u64)
    );
    let download = store.download(&digest, small.len() as u64).await.unwrap();
    let got = http.get(&download.url).send().await.unwrap();
    assert_eq!(got.bytes().await.unwrap().as_ref(), small.as_slice());

    // A file over one part: a multipart upload whose parts are presigned
    // with their number and the upload's id, completed with their ETags.
    let size = PART_SIZE + 3;
    let mut big = vec![2u8; size as usize];
    big[PART_SIZE as usize..].copy_from_slice(b"end");
    let digest = digest_of(&big);
    let upload = store.upload(&digest, size).await.unwrap();
    let upload_id = upload.upload_id.clone().expect("a multipart upload");
    assert_eq!(upload.part_size, PART_SIZE);
    assert_eq!(upload.parts.len(), 2);
    let mut etags = Vec::new();
    for (i, part) in upload.parts.iter().enumerate() {
        assert!(
            part.url.contains(&format!("partNumber={}", i + 1)),
            "{}",
            part.url
        );
        assert!(part.url.contains("uploadId="), "{}", part.url);
        let from = i as u64 * PART_SIZE;
        let to = (from + PART_SIZE).min(size);
        let answer = http
            .put(&part.url)
            .body(big[from as usize..to as usize].to_vec())
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success(), "{}", s3.log_text());
        etags.push(answer.headers()["etag"].to_str().unwrap().to_string());
    }
    // Not complete, not there.
    assert_eq!(store.size_of(&digest).await.unwrap(), None);
    let done = xene_core::protocol::CompletedUpload {
        digest: digest.clone(),
        upload_id: Some(upload_id),
        etags,
    };
    store.complete(&done, size).await.unwrap();
    assert_eq!(store.size_of(&digest).await.unwrap(), Some(size));
    // The Commit sent again after a reconnect: the blob is there, done.
    store.complete(&done, size).await.unwrap();

    // An upload begun while the blob was missing, completed once another
    // stored it: the stored object stays (S3 checks no part's digest).
    let upload = store.upload(&digest, size).await.unwrap();
    let mut etags = Vec::new();
    for (i, part) in upload.parts.iter().enumerate() {
        let len = if i == 0 { PART_SIZE } else { 3 };
        let answer = http
            .put(&part.url)
            .body(vec![9u8; len as usize])
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success(), "{}", s3.log_text());
        etags.push(answer.headers()["etag"].to_str().unwrap().to_string());
    }
    let late = xene_core::protocol::CompletedUpload {
        digest: digest.clone(),
        upload_id: upload.upload_id.clone(),
        etags,
    };
    store.complete(&late, size).await.unwrap();
    let download = store.download(&digest, size).await.unwrap();
    let got = http.get(&download.url).send().await.unwrap();
    assert!(got.bytes().await.unwrap().as_ref() == big.as_slice());
    let presigned = s3.presigned_requests();
    assert_eq!(presigned.len(), 7, "{presigned:?}");
    assert!(presigned.iter().all(|(_, _, v)| v == "ok"), "{presigned:?}");
}

/// The local store takes a large file in parts, written at their offsets
/// and checked whole when the upload completes; parts that do not make the
/// blob are refused and nothing is kept.
#[tokio::test]
async fn the_local_store_takes_large_files_in_parts_checked_whole() {
    let dir = xene_testkit::private_tempdir();
    let store = BlobStore::open(&ArtifactArgs::default(), dir.path(), b"key").unwrap();
    let size = PART_SIZE + 3;
    let mut big = vec![1u8; size as usize];
    big[PART_SIZE as usize..].copy_from_slice(b"end");
    let digest = digest_of(&big);
    let temp = dir.path().join("artifacts/tmp");
    for wrong in [true, false] {
        let upload = store.upload(&digest, size).await.unwrap();
        assert_eq!(upload.parts.len(), 2);
        let mut etags = Vec::new();
        for (i, part) in upload.parts.iter().enumerate() {
            assert!(
                part.url.starts_with("/api/v1/blobs/sha256:"),
                "{}",
                part.url
            );
            let (d, query) = xene_server::files::local_urls::parse_relative(&part.url).unwrap();
            let grant = store.urls().verify("PUT", &d, &query, now_ms()).unwrap();
            let from = i * PART_SIZE as usize;
            let mut bytes = big[from..from + grant.size as usize].to_vec();
            if wrong && i == 1 {
                bytes.copy_from_slice(b"END");
            }
            let body = futures::stream::iter([Ok::<_, std::io::Error>(bytes.into())]);
            let etag = xene_server::files::local::receive(&store, &grant, body).await;
            etags.push(etag.unwrap());
        }
        let done = xene_core::protocol::CompletedUpload {
            digest: digest.clone(),
            upload_id: upload.upload_id.clone(),
            etags,
        };
        let parts = files_in(&temp);
        assert_eq!(parts.len(), 1, "one file holds the parts: {parts:?}");
        let parts_inode =
            std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&parts[0]).unwrap());
        let completed = store.complete(&done, size).await;
        if wrong {
            let e = completed.unwrap_err().to_string();
            assert!(e.contains("hash to"), "{e}");
            assert_eq!(store.size_of(&digest).await.unwrap(), None);
        } else {
            completed.unwrap();
            assert_eq!(store.size_of(&digest).await.unwrap(), Some(size));
            // Checked where it lies and named, not copied: the blob is the
            // parts' file.
            let hex = digest.hex();
            let blob = dir
                .path()
                .join(format!("artifacts/blobs/sha256/{}/{hex}", &hex[..2]));
            let blob_inode =
                std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&blob).unwrap());
            assert_eq!(blob_inode, parts_inode, "the parts were copied");
            // The Commit sent again after a reconnect: the blob is there.
            store.complete(&done, size).await.unwrap();
            assert_eq!(store.size_of(&digest).await.unwrap(), Some(size));
        }
        assert!(files_in(&temp).is_empty(), "{:?}", files_in(&temp));
    }
}

/// The local store reads a blob in chunks of 1 MiB (object_store's local
/// reads were 8 KiB each, a blocking call apiece); a verified read of a
/// blob whose bytes changed on disk ends with an error in place of its
/// last chunk.
#[tokio::test]
async fn the_local_store_reads_in_large_chunks_and_checks_them() {
    use futures::StreamExt;
    let dir = xene_testkit::private_tempdir();
    let store = BlobStore::open(&ArtifactArgs::default(), dir.path(), b"key").unwrap();
    let size = (5 << 20) / 2;
    let bytes: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let digest = digest_of(&bytes);
    let hex = digest.hex();
    let blob = dir
        .path()
        .join(format!("artifacts/blobs/sha256/{}/{hex}", &hex[..2]));
    std::fs::create_dir_all(blob.parent().unwrap()).unwrap();
    std::fs::write(&blob, &bytes).unwrap();
    for verified in [false, true] {
        let mut stream = if verified {
            store.read_verified(&digest).await.unwrap()
        } else {
            store.read(&digest).await.unwrap()
        };
        let mut sizes = Vec::new();
        let mut got = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.unwrap();
            sizes.push(chunk.len());
            got.extend_from_slice(&chunk);
        }
        assert_eq!(sizes, [1 << 20, 1 << 20, 1 << 19], "verified: {verified}");
        assert!(got == bytes);
    }

    let mut damaged = bytes.clone();
    damaged[size - 1] ^= 1;
    std::fs::write(&blob, &damaged).unwrap();
    let chunks: Vec<_> = store.read_verified(&digest).await.unwrap().collect().await;
    assert_eq!(chunks.len(), 3);
    assert!(chunks[..2].iter().all(|c| c.is_ok()));
    let e = chunks[2].as_ref().unwrap_err().to_string();
    assert!(e.contains("damaged"), "{e}");
    let missing = digest_of(b"nothing");
    let e = store.read(&missing).await.err().unwrap().to_string();
    assert!(e.contains("not in the artifact store"), "{e}");
}

const BUILT_IN: &str = "\
name: handoff
pipelines:
  p:
    tasks:
      build:
        steps:
          - mkdir -p out && printf 'built' > out/app && chmod 755 out/app
        publish:
          - name: app
            path: out
      use:
        depends_on: [build]
        needs:
          - name: app
            path: got
        steps:
          - test -x got/app && printf 'used %s' \"$(cat got/app)\"
";

/// The run's log as `task: data` lines.
async fn log_of(server: &TestServer, id: i64) -> String {
    let (_, page) = server
        .get(&format!("/api/v1/runs/{id}/logs?limit=1000"))
        .await;
    page["lines"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            format!(
                "{}: {}\n",
                l["task"].as_str().unwrap_or(""),
                l["data"].as_str().unwrap_or("")
            )
        })
        .collect()
}

/// The built-in agent stages artifacts through the same service: with the
/// local store, its transfers are served in process (URL checks included);
/// with S3, they go to the store's presigned URLs over HTTP.
#[tokio::test]
async fn the_built_in_agent_publishes_and_fetches_with_either_store() {
    let s3 = xene_testkit::S3::start();
    for use_s3 in [false, true] {
        let db = TestDb::new(Backend::Sqlite);
        let server = TestServer::start_with(&db, |a| {
            if use_s3 {
                a.artifacts = ArtifactArgs {
                    artifact_store: StoreKind::S3,
                    s3_endpoint: Some(s3.endpoint.clone()),
                    s3_bucket: Some(s3.bucket.clone()),
                    s3_region: s3.region.clone(),
                    s3_access_key_id: Some(s3.access_key_id.clone()),
                    s3_secret_access_key: Some(s3.secret_access_key.clone()),
                    ..Default::default()
                };
            }
        })
        .await;
        let (status, body) = server.post("/api/v1/workflows", BUILT_IN).await;
        assert_eq!(status, 201, "{body}");
        let (status, run) = server
            .post("/api/v1/workflows/handoff/pipelines/p/runs", "")
            .await;
        assert_eq!(status, 201, "{run}");
        let id = run["id"].as_i64().unwrap();
        let run = server.wait_for_run(id).await;
        let log = log_of(&server, id).await;
        assert_eq!(run["status"], "success", "{run}\n{log}");
        assert!(log.contains("use: used built"), "{log}");
        let digest = digest_of(b"built");
        let hex = digest.hex();
        let key = format!("blobs/sha256/{}/{hex}", &hex[..2]);
        if use_s3 {
            assert!(s3.objects().contains(&(key, 5)), "{:?}", s3.objects());
            let presigned = s3.presigned_requests();
            assert!(
                presigned.iter().any(|(m, _, v)| m == "PUT" && v == "ok")
                    && presigned.iter().any(|(m, _, v)| m == "GET" && v == "ok"),
                "{presigned:?}"
            );
        } else {
            let kept = db.dir.path().join("artifacts").join(key);
            assert_eq!(std::fs::read(&kept).unwrap(), b"built");
        }
        server.stop().await;
    }
}

/// A verified read hands out every byte of a sound blob, and never all of
/// a damaged one: the stream ends with an error in its last chunk's place.
#[tokio::test]
async fn a_verified_read_never_hands_out_all_of_a_damaged_blob() {
    use futures::StreamExt;
    let dir = xene_testkit::private_tempdir();
    let store = BlobStore::open(&ArtifactArgs::default(), dir.path(), b"key").unwrap();
    let bytes = vec![5u8; 3 << 20];
    let digest = digest_of(&bytes);
    let hex = digest.hex();
    let file = dir
        .path()
        .join(format!("artifacts/blobs/sha256/{}/{hex}", &hex[..2]));
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    for damaged in [false, true] {
        let mut stored = bytes.clone();
        if damaged {
            stored[1 << 20] = 6;
        }
        std::fs::write(&file, &stored).unwrap();
        let mut read = store.read_verified(&digest).await.unwrap();
        let mut got = Vec::new();
        let mut failed = None;
        while let Some(chunk) = read.next().await {
            match chunk {
                Ok(chunk) => got.extend_from_slice(&chunk),
                Err(e) => failed = Some(e.to_string()),
            }
        }
        if damaged {
            let e = failed.expect("a damaged blob fails");
            assert!(e.contains("is damaged"), "{e}");
            assert!(got.len() < stored.len(), "{}", got.len());
        } else {
            assert_eq!(failed, None);
            assert!(got == bytes);
        }
    }
}

const RAW: &str = "
name: sizes
pipelines:
  p:
    selector: {pool: raw}
    tasks:
      build:
        steps: ['true']
        publish:
          - name: binary
            path: out
";

/// Asks about files for `attempt` and reads the answer, passing over what
/// else the server says.
async fn ask(
    socket: &mut crate::agent_socket::Socket,
    attempt: AttemptRef,
    id: u64,
    request: FilesRequest,
) -> FilesAnswer {
    send(
        socket,
        &AgentMessage::Files {
            attempt,
            id,
            request,
        },
    )
    .await;
    loop {
        match receive(socket).await {
            Ok(ServerMessage::Files {
                id: answered,
                answer,
                ..
            }) if answered == id => return answer,
            Ok(_) => continue,
            Err(closed) => panic!("the server closed the socket: {closed:?}"),
        }
    }
}

/// A commit sets right the size of a blob row an earlier, failed commit
/// made up; a commit sent again is answered alike; a publish of a digest
/// the collector has claimed is refused (its fresh upload would be
/// deleted with the old object) until the claim is gone.
#[tokio::test]
async fn commits_keep_true_sizes_and_publishes_wait_out_the_collector() {
    use xene_core::artifact::ManifestEntry;
    use xene_core::event::RunEvent;
    for backend in crate::util::BACKENDS {
        let db = TestDb::new(backend);
        let server = TestServer::start_with(&db, |a| a.no_local_agent = true).await;
        let (status, body) = server.post("/api/v1/workflows", RAW).await;
        assert_eq!(status, 201, "{body}");
        let (_, holder) = join(&server, json!({ "pool": "raw" })).await;
        let (status, run) = server
            .post("/api/v1/workflows/sizes/pipelines/p/runs", "")
            .await;
        assert_eq!(status, 201, "{run}");
        let mut a = connect(
            &server,
            &holder,
            &crate::agent_socket::hello_with(1, vec![]),
        )
        .await;
        let attempt = crate::agent_socket::next_task(&mut a).await.attempt;
        let started = RunEvent::TaskStarted {
            task: "build".into(),
            attempt: 1,
        };
        send(&mut a, &crate::gateway::task_events(attempt, 0, &[started])).await;
        let bytes: &'static [u8] = b"hello\n";
        let entry = |size: u64| ManifestEntry {
            path: "app".into(),
            size,
            mode: 0o644,
            digest: digest_of(bytes),
        };
        let publish = |size| FilesRequest::Publish {
            name: "binary".into(),
            files: vec![entry(size)],
        };
        let commit = |size| FilesRequest::Commit {
            name: "binary".into(),
            files: vec![entry(size)],
            completed: vec![],
        };
        let store = xene_server::storage::Db::connect(&db.url).await.unwrap();
        let size_row = async || -> i64 {
            sqlx::query_scalar("SELECT size FROM blobs")
                .fetch_one(store.pool())
                .await
                .unwrap()
        };

        // A made-up size: no upload fits it, the commit fails, its row stays.
        let FilesAnswer::Uploads { .. } = ask(&mut a, attempt, 1, publish(7)).await else {
            panic!("no uploads")
        };
        let answer = ask(&mut a, attempt, 2, commit(7)).await;
        assert!(
            matches!(&answer, FilesAnswer::Refused { error } if error.contains("did not finish")),
            "{answer:?}"
        );
        assert_eq!(size_row().await, 7);

        // The true size: uploaded, committed (twice), and the row says so.
        let FilesAnswer::Uploads { uploads } = ask(&mut a, attempt, 3, publish(6)).await else {
            panic!("no uploads")
        };
        assert_eq!(uploads.len(), 1, "{uploads:?}");
        assert_eq!(put(&server, &uploads[0].parts[0].url, bytes).await.0, 200);
        for id in [4, 5] {
            let answer = ask(&mut a, attempt, id, commit(6)).await;
            assert!(matches!(answer, FilesAnswer::Committed), "{answer:?}");
        }
        assert_eq!(size_row().await, 6, "{backend:?}");

        // The collector's claim on the digest: no upload of it is handed
        // out while it lasts.
        sqlx::query("UPDATE blobs SET touched_at = $1")
            .bind(-now_ms())
            .execute(store.pool())
            .await
            .unwrap();
        let answer = ask(&mut a, attempt, 6, publish(6)).await;
        assert!(
            matches!(&answer, FilesAnswer::Refused { error } if error.contains("being removed by the artifact collector")),
            "{answer:?}"
        );
        // Once it is gone (the row with it), the digest is uploaded again.
        sqlx::query("DELETE FROM blobs")
            .execute(store.pool())
            .await
            .unwrap();
        let FilesAnswer::Uploads { uploads } = ask(&mut a, attempt, 7, publish(6)).await else {
            panic!("no uploads")
        };
        assert_eq!(uploads.len(), 1, "{uploads:?}");
        store.close().await;
        server.stop().await;
    }
}
