//! What the artifact store must not let through (issue 25): a part upload
//! still in flight when its upload completes never writes into the blob;
//! a failed transfer of the built-in agent never shows the signed URL (its
//! query is the signature) in the error that task viewers read; answers
//! too large to reach an agent are refused before anything is signed or
//! published.

use std::sync::Arc;

use axum::body::Bytes;
use futures::StreamExt;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use xene_core::artifact::{Digest, ManifestEntry, PART_SIZE};
use xene_core::protocol::{
    AgentMessage, AttemptRef, CompletedUpload, FilesAnswer, FilesRequest, ServerMessage, Transfer,
};
use xene_server::config::artifacts::ArtifactArgs;
use xene_server::files::BlobStore;
use xene_server::files::channel::BuiltInFiles;
use xene_server::files::service::Service;

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

/// A part PUT whose headers came but whose body has not: the upload is
/// completed meanwhile, then the late body arrives. The blob keeps the
/// bytes of its digest.
#[tokio::test]
async fn files_service_a_late_part_never_writes_into_the_blob() {
    let dir = xene_testkit::private_tempdir();
    let store = Arc::new(BlobStore::open(&ArtifactArgs::default(), dir.path(), b"key").unwrap());
    let size = PART_SIZE + 3;
    let mut big = vec![1u8; size as usize];
    big[PART_SIZE as usize..].copy_from_slice(b"end");
    let digest = digest_of(&big);
    let upload = store.upload(&digest, size).await.unwrap();
    assert_eq!(upload.parts.len(), 2);
    let grant_of = |url: &str| {
        let (d, query) = xene_server::files::local_urls::parse_relative(url).unwrap();
        store.urls().verify("PUT", &d, &query, now_ms()).unwrap()
    };
    let mut etags = Vec::new();
    for (i, part) in upload.parts.iter().enumerate() {
        let grant = grant_of(&part.url);
        let from = i * PART_SIZE as usize;
        let bytes = Bytes::copy_from_slice(&big[from..from + grant.size as usize]);
        let body = futures::stream::iter([Ok::<_, std::io::Error>(bytes)]);
        etags.push(
            xene_server::files::local::receive(&store, &grant, body)
                .await
                .unwrap(),
        );
    }

    // The second part sent again: its file is open and its offset sought
    // once its body is first asked for; the body waits on `late`.
    let grant = grant_of(&upload.parts[1].url);
    let (opened, is_open) = futures::channel::oneshot::channel::<()>();
    let (mut late, body) = futures::channel::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    let body = futures::stream::once(async move {
        let _ = opened.send(());
    })
    .filter_map(|()| async { None })
    .chain(body)
    .boxed();
    let writer = {
        let store = store.clone();
        tokio::spawn(async move { xene_server::files::local::receive(&store, &grant, body).await })
    };
    is_open.await.unwrap();

    let done = CompletedUpload {
        digest: digest.clone(),
        upload_id: upload.upload_id.clone(),
        etags,
    };
    store.complete(&done, size).await.unwrap();
    futures::SinkExt::send(&mut late, Ok(Bytes::from_static(b"BAD")))
        .await
        .unwrap();
    drop(late);
    // Whether the late part is taken or refused, the blob is untouched.
    let _ = writer.await.unwrap();

    let mut stored = Vec::new();
    let mut bytes = store.read(&digest).await.unwrap();
    while let Some(chunk) = bytes.next().await {
        stored.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(stored.len() as u64, size);
    assert_eq!(digest_of(&stored), digest, "the late part reached the blob");
}

/// A presigned URL the built-in agent cannot reach: the error names what
/// failed, never the URL or its signature.
#[tokio::test]
async fn files_service_transfer_errors_never_show_the_signed_url() {
    let db = TestDb::new(Backend::Sqlite);
    let dir = xene_testkit::private_tempdir();
    let service = Service {
        db: xene_server::storage::Db::connect(&db.url).await.unwrap(),
        specs: Default::default(),
        blobs: Arc::new(BlobStore::open(&ArtifactArgs::default(), dir.path(), b"key").unwrap()),
        metrics: Default::default(),
    };
    let files = BuiltInFiles::new(
        service,
        "local".into(),
        AttemptRef { id: 1 },
        reqwest::Client::new(),
    );
    // Nothing listens on a port just freed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!(
        "http://127.0.0.1:{port}/bucket/blob?X-Amz-Credential=cred&X-Amz-Signature=f00dfeed&sig=s3cr3t"
    );
    let transfer = |method: &str| Transfer {
        method: method.into(),
        url: url.clone(),
        headers: Default::default(),
    };
    let file = dir.path().join("file");
    std::fs::write(&file, b"hello").unwrap();
    let put = xene_agent::executor::FileChannel::upload(&files, &transfer("PUT"), &file, 0, 5)
        .await
        .unwrap_err();
    let get = xene_agent::executor::FileChannel::download(
        &files,
        &transfer("GET"),
        &dir.path().join("got"),
    )
    .await
    .unwrap_err();
    for e in [put, get] {
        assert!(e.contains("artifact store"), "{e}");
        for secret in ["X-Amz-Signature", "f00dfeed", "sig=", "s3cr3t", "127.0.0.1"] {
            assert!(!e.contains(secret), "{secret} in {e}");
        }
    }
}

const RAW: &str = "
name: bounds
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
    let message = AgentMessage::Files {
        attempt,
        id,
        request,
    };
    crate::agent_socket::send(socket, &message).await;
    loop {
        match crate::agent_socket::receive(socket).await {
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

/// An artifact whose answers could not reach the agent is refused before
/// anything is signed (a publish needing more upload URLs than an answer
/// carries) or published (a commit whose fetch would not fit an answer).
#[tokio::test]
async fn files_service_refuses_artifacts_no_answer_can_carry() {
    let db = TestDb::new(Backend::Sqlite);
    let server = TestServer::start_with(&db, |a| a.no_local_agent = true).await;
    let (status, body) = server.post("/api/v1/workflows", RAW).await;
    assert_eq!(status, 201, "{body}");
    let (_, holder) = crate::agent_socket::join(&server, json!({ "pool": "raw" })).await;
    let (status, run) = server
        .post("/api/v1/workflows/bounds/pipelines/p/runs", "")
        .await;
    assert_eq!(status, 201, "{run}");
    let hello = crate::agent_socket::hello_with(1, vec![]);
    let mut a = crate::agent_socket::connect(&server, &holder, &hello).await;
    let attempt = crate::agent_socket::next_task(&mut a).await.attempt;
    let started = xene_core::event::RunEvent::TaskStarted {
        task: "build".into(),
        attempt: 1,
    };
    crate::agent_socket::send(&mut a, &crate::gateway::task_events(attempt, 0, &[started])).await;

    // 600 blobs of 100 parts each: 60,000 URLs.
    let files: Vec<ManifestEntry> = (0..600)
        .map(|i| ManifestEntry {
            path: format!("f{i}"),
            size: 100 * PART_SIZE,
            mode: 0o644,
            digest: digest_of(format!("{i}").as_bytes()),
        })
        .collect();
    let publish = FilesRequest::Publish {
        name: "binary".into(),
        files,
    };
    let answer = ask(&mut a, attempt, 1, publish).await;
    assert!(
        matches!(&answer, FilesAnswer::Refused { error } if error.contains("60000 upload URLs")),
        "{answer:?}"
    );

    // 10,000 files of long paths: the request fits, its fetch would not.
    let long = format!("{}/{}/", "a".repeat(200), "b".repeat(200));
    let files: Vec<ManifestEntry> = (0..10_000)
        .map(|i| ManifestEntry {
            path: format!("{long}{i:05}"),
            size: 1,
            mode: 0o644,
            digest: digest_of(format!("{i}").as_bytes()),
        })
        .collect();
    let commit = FilesRequest::Commit {
        name: "binary".into(),
        files,
        completed: vec![],
    };
    let answer = ask(&mut a, attempt, 2, commit).await;
    assert!(
        matches!(&answer, FilesAnswer::Refused { error } if error.contains("manifest and download URLs")),
        "{answer:?}"
    );
    server.stop().await;
}

#[test]
fn files_service_answers_are_counted_against_the_gateways_bound() {
    assert_eq!(
        xene_server::files::service::ANSWER_BYTES,
        xene_server::gateway::limits::MAX_ANSWER_BYTES as u64
    );
}

/// A signed upload URL lets its own body take the longer deadline, but
/// does not make its connection trusted: anyone holding a leaked URL
/// could sign in a connection for the URL's hour. The connection stays a
/// guest, and gives way to a newcomer once idle past the grace.
#[tokio::test]
async fn files_service_a_signed_upload_does_not_trust_its_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let db = TestDb::new(Backend::Sqlite);
    let server = TestServer::start_with(&db, |a| {
        a.no_local_agent = true;
        a.listen.guest_connections_per_address = 1;
    })
    .await;
    let urls = {
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
        xene_server::files::local_urls::LocalUrls::new(&key)
    };
    let url = urls.sign(
        xene_server::files::local_urls::BlobMethod::Put,
        &digest_of(b"hello"),
        5,
        now_ms() + 60_000,
    );
    let connect = || async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind(std::net::SocketAddr::from(([127, 0, 0, 13], 0)))
            .unwrap();
        socket.connect(server.addr).await.unwrap()
    };
    let mut signed = connect().await;
    let request =
        format!("PUT {url} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nhello");
    signed.write_all(request.as_bytes()).await.unwrap();
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), signed.read(&mut buf))
        .await
        .expect("answered within 10 s")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    tokio::time::sleep(xene_server::listen::guests::GRACE + std::time::Duration::from_millis(500))
        .await;
    let _newcomer = connect().await;
    // Closed as the newcomer is admitted; a trusted connection stays open
    // until the server's idle timeout, which is longer.
    let closed =
        tokio::time::timeout(std::time::Duration::from_secs(3), signed.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the signed upload's connection was trusted: {closed:?}"
    );
    server.stop().await;
}
