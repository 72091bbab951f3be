//! An agent killed -9 in the middle of uploading an artifact (issue 25):
//! the retried attempt, on another agent, publishes exactly one complete
//! artifact, every blob of it verifies, and the store keeps nothing of
//! the broken upload.
//!
//! "In the middle" is made certain, not timed: the agent dials the server
//! through a valve, a TCP relay that counts the bytes the agent sends and
//! stops forwarding them (without closing anything) once they pass a
//! bound far below the file's size. The agent's upload is then stuck
//! half-way whatever the machine's speed; the test kills it there, then
//! opens the valve, which drops what it held.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::artifacts::{Fleet, WAIT, blob_key, digest_of, yes_xene};

/// The file's size: past the valve's bound many times over.
const BIG: u64 = 24_000_000;
/// What the valve lets through before it holds: the agent's session
/// (kilobytes) and the first part of the upload.
const LET_THROUGH: u64 = 4_000_000;

/// A relay that holds the client's bytes once `limit` passed.
struct Valve {
    url: String,
    passed: Arc<AtomicU64>,
    /// Bumped to open the valve again: held connections are dropped.
    opened: Arc<watch::Sender<u64>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Valve {
    async fn start(upstream: String, limit: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let passed = Arc::new(AtomicU64::new(0));
        let opened = Arc::new(watch::channel(0).0);
        let (count, open) = (passed.clone(), opened.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                tokio::spawn(forward(
                    client,
                    server,
                    count.clone(),
                    open.subscribe(),
                    limit,
                ));
            }
        });
        Self {
            url,
            passed,
            opened,
            accept,
        }
    }

    fn passed(&self) -> u64 {
        self.passed.load(Ordering::SeqCst)
    }

    /// Drops the connections it held; new ones pass freely.
    fn open(&self) {
        self.opened.send_modify(|n| *n += 1);
    }
}

impl Drop for Valve {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn forward(
    client: TcpStream,
    server: TcpStream,
    passed: Arc<AtomicU64>,
    mut opened: watch::Receiver<u64>,
    limit: u64,
) {
    let generation = *opened.borrow_and_update();
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upstream = async {
        let mut buf = vec![0; 64 * 1024];
        loop {
            if generation == 0 && passed.load(Ordering::SeqCst) >= limit {
                // Held: nothing more is read from the agent, nothing closed.
                std::future::pending::<()>().await;
            }
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            passed.fetch_add(n as u64, Ordering::SeqCst);
            if server_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let downstream = tokio::io::copy(&mut server_read, &mut client_write);
    tokio::select! {
        _ = upstream => {}
        _ = downstream => {}
        _ = opened.wait_for(|n| *n != generation) => {}
    }
}

const WORKFLOW: &str = "
name: big
pipelines:
  p:
    tasks:
      build:
        retries: {count: 1, backoff: 100ms}
        steps:
          - name: make
            run: yes xene | head -c 24000000 > big.bin
        publish:
          - name: big
            path: big.bin
";

#[tokio::test]
async fn a_retry_after_an_agent_killed_mid_upload_publishes_one_whole_artifact() {
    let mut fleet = Fleet::start(&[], |args| {
        args.task_lease = Duration::from_secs(2);
    })
    .await;
    let (status, body) = fleet.server.post("/api/v1/workflows", WORKFLOW).await;
    assert_eq!(status, 201, "{body}");
    let valve = Valve::start(fleet.server.addr.to_string(), LET_THROUGH).await;
    let mut a = fleet.agent("a", &valve.url).await;
    fleet.wait_online(1).await;
    let (status, run) = fleet
        .server
        .post("/api/v1/workflows/big/pipelines/p/runs", "")
        .await;
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_i64().unwrap();

    xene_testkit::wait_for("the upload to reach the valve's bound", WAIT, async || {
        let passed = valve.passed();
        if passed >= LET_THROUGH {
            Ok(())
        } else {
            Err(format!("{passed} bytes passed\n{}", a.log_text()))
        }
    })
    .await;
    let run = fleet.server.get(&format!("/api/v1/runs/{id}")).await.1;
    assert_eq!(run["status"], "running", "{run}");
    a.kill();
    valve.open();
    let b = fleet.agent("b", &fleet.server.url("")).await;
    fleet.agents.push(b);
    let run = fleet.server.wait_for_run(id).await;
    let log = fleet.log_text(id).await;
    assert_eq!(run["status"], "success", "{run}\n{log}\n{}", a.log_text());
    let attempts: Vec<&Value> = run["tasks"][0]["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(attempts.len(), 2, "{run}");
    assert_ne!(attempts[0]["agent_id"], attempts[1]["agent_id"], "{run}");

    // One artifact, whole: its one file's digest is the bytes the step
    // wrote, and the download gives them.
    let bytes = yes_xene(BIG);
    let digest = digest_of(&bytes);
    let (_, listing) = fleet
        .server
        .get(&format!("/api/v1/runs/{id}/artifacts"))
        .await;
    let artifacts = listing["artifacts"].as_array().unwrap();
    assert_eq!(artifacts.len(), 1, "{listing}");
    assert_eq!(artifacts[0]["files"], 1, "{listing}");
    assert_eq!(
        artifacts[0]["entries"][0]["digest"],
        digest.as_str(),
        "{listing}"
    );
    assert_eq!(artifacts[0]["entries"][0]["size"], BIG, "{listing}");
    let download = fleet
        .server
        .client
        .get(
            fleet
                .server
                .url(&xene_api::paths::artifact(id, "big", None)),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), 200);
    assert!(
        download.bytes().await.unwrap() == bytes,
        "the download is not the file"
    );

    // The store holds that blob once, verified, and nothing of the broken
    // upload: its temporary file went when the upload broke off.
    let blobs = fleet.local_blobs();
    assert_eq!(
        blobs.into_iter().collect::<Vec<_>>(),
        [(blob_key(&digest), BIG)]
    );
    let stored = std::fs::read(
        fleet
            .db
            .dir
            .path()
            .join("artifacts")
            .join(blob_key(&digest)),
    )
    .unwrap();
    assert_eq!(digest_of(&stored), digest);
    let temp = fleet.db.dir.path().join("artifacts/tmp");
    xene_testkit::wait_for(
        "the broken upload's temporary file removed",
        WAIT,
        async || {
            let left: Vec<_> = std::fs::read_dir(&temp)
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .collect();
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("{left:?}"))
            }
        },
    )
    .await;
}
