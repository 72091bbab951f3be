//! The requests about files on their own: ids, answers routed back, a
//! reconnect, the bounds. The session's part is in `session/tests.rs`.

use super::*;

const A: AttemptRef = AttemptRef { id: 7 };
const B: AttemptRef = AttemptRef { id: 8 };

fn fetch(name: &str) -> FilesRequest {
    FilesRequest::Fetch { name: name.into() }
}

/// The id and request of the next message to send.
fn sent(hub: &FilesHub) -> (AttemptRef, u64, FilesRequest) {
    match hub.next_message() {
        Some(AgentMessage::Files {
            attempt,
            id,
            request,
        }) => (attempt, id, request),
        other => panic!("expected a files request, got {other:?}"),
    }
}

/// Lets spawned askers run until `open` requests wait.
async fn until_open(hub: &FilesHub, open: usize) {
    while hub.open() != open {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn each_answer_goes_to_its_request() {
    let hub = Arc::new(FilesHub::default());
    let first = tokio::spawn({
        let hub = hub.clone();
        async move { hub.ask(A, fetch("binary")).await }
    });
    until_open(&hub, 1).await;
    let second = tokio::spawn({
        let hub = hub.clone();
        async move { hub.ask(B, fetch("report")).await }
    });
    until_open(&hub, 2).await;

    let (attempt, one, request) = sent(&hub);
    assert_eq!((attempt, request), (A, fetch("binary")));
    let (attempt, two, request) = sent(&hub);
    assert_eq!((attempt, request), (B, fetch("report")));
    assert_ne!(one, two, "ids are fresh");
    assert!(hub.next_message().is_none());

    // An answer naming another attempt than the request's is not taken.
    hub.answer(B, one, FilesAnswer::Committed);
    hub.answer(B, two, FilesAnswer::Uploads { uploads: vec![] });
    assert_eq!(
        second.await.unwrap(),
        Ok(FilesAnswer::Uploads { uploads: vec![] })
    );
    assert_eq!(hub.open(), 1);
    let refused = FilesAnswer::Refused {
        error: "no such artifact".into(),
    };
    hub.answer(A, one, refused.clone());
    assert_eq!(first.await.unwrap(), Ok(refused));
    assert_eq!(hub.open(), 0);
}

#[tokio::test]
async fn a_request_is_asked_again_once_after_a_reconnect() {
    let hub = Arc::new(FilesHub::default());
    let asker = tokio::spawn({
        let hub = hub.clone();
        async move { hub.ask(A, fetch("binary")).await }
    });
    until_open(&hub, 1).await;
    // Queued while disconnected: a reconnect sends it once, not twice.
    hub.reconnected();
    let (_, id, _) = sent(&hub);
    assert!(hub.next_message().is_none());

    hub.reconnected();
    let (attempt, again, request) = sent(&hub);
    assert_eq!((attempt, again, request), (A, id, fetch("binary")));
    assert!(hub.next_message().is_none());

    hub.reconnected();
    let error = asker.await.unwrap().unwrap_err();
    assert!(error.contains("dropped twice"), "{error}");
    assert_eq!(hub.open(), 0);
    assert!(hub.next_message().is_none());
}

#[tokio::test]
async fn an_asker_that_stops_waiting_is_forgotten() {
    let hub = Arc::new(FilesHub::default());
    let asker = tokio::spawn({
        let hub = hub.clone();
        async move { hub.ask(A, fetch("binary")).await }
    });
    until_open(&hub, 1).await;
    asker.abort();
    let _ = asker.await;
    assert_eq!(hub.open(), 0);
    assert!(hub.next_message().is_none(), "not sent once nobody waits");
}

#[tokio::test]
async fn no_answer_in_time_is_an_error() {
    let hub = FilesHub::new(Duration::from_millis(50));
    let error = hub.ask(A, fetch("binary")).await.unwrap_err();
    assert!(error.contains("did not answer"), "{error}");
    assert_eq!(hub.open(), 0);
}

#[tokio::test]
async fn the_waiting_requests_are_bounded() {
    let hub = Arc::new(FilesHub::default());
    let askers: Vec<_> = (0..MAX_OPEN)
        .map(|_| {
            let hub = hub.clone();
            tokio::spawn(async move { hub.ask(A, fetch("binary")).await })
        })
        .collect();
    until_open(&hub, MAX_OPEN).await;
    let error = hub.ask(B, fetch("report")).await.unwrap_err();
    assert!(error.contains("already wait"), "{error}");
    for asker in &askers {
        asker.abort();
    }
    for asker in askers {
        let _ = asker.await;
    }
    assert_eq!(hub.open(), 0);
}

#[tokio::test]
async fn a_request_too_large_to_send_is_refused_at_once() {
    let hub = FilesHub::default();
    let digest = xene_core::artifact::Digest::parse(&format!("sha256:{}", "0".repeat(64))).unwrap();
    let files: Vec<_> = (0..8000)
        .map(|i| xene_core::artifact::ManifestEntry {
            path: format!("{i:05}/{}", "p".repeat(1000)),
            size: 1,
            mode: 0o644,
            digest: digest.clone(),
        })
        .collect();
    let publish = FilesRequest::Publish {
        name: "binary".into(),
        files,
    };
    let error = hub.ask(A, publish).await.unwrap_err();
    assert!(error.contains("more than the 7 MiB"), "{error}");
    assert_eq!(hub.open(), 0);
    assert!(hub.next_message().is_none(), "nothing is sent");
}

fn completed_commit(size: u64, multipart: bool) -> FilesRequest {
    let digest = xene_core::artifact::Digest::parse(&format!("sha256:{}", "a".repeat(64))).unwrap();
    FilesRequest::Commit {
        name: "binary".into(),
        files: vec![xene_core::artifact::ManifestEntry {
            path: "big".into(),
            size,
            mode: 0o644,
            digest: digest.clone(),
        }],
        completed: vec![xene_core::protocol::CompletedUpload {
            digest,
            upload_id: multipart.then(|| "u1".into()),
            etags: vec![],
        }],
    }
}

/// A Commit whose multipart uploads the server must assemble (read and
/// hash whole) waits for its answer longer, by their size: 50 GB is
/// 1,000 s more than the base wait.
#[tokio::test]
async fn a_commit_waits_longer_by_the_bytes_to_assemble() {
    assert_eq!(
        assembling(&completed_commit(50_000_000_000, true)),
        Duration::from_secs(1000)
    );
    // Single PUTs are checked as they arrive: nothing to assemble.
    assert_eq!(
        assembling(&completed_commit(50_000_000_000, false)),
        Duration::ZERO
    );
    assert_eq!(assembling(&fetch("binary")), Duration::ZERO);

    let hub = Arc::new(FilesHub::new(Duration::from_millis(50)));
    let asker = tokio::spawn({
        let hub = hub.clone();
        async move { hub.ask(A, completed_commit(50_000_000_000, true)).await }
    });
    until_open(&hub, 1).await;
    let (_, id, _) = sent(&hub);
    // Well past the base wait: still waiting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    hub.answer(A, id, FilesAnswer::Committed);
    assert_eq!(asker.await.unwrap(), Ok(FilesAnswer::Committed));
}
