//! An agent killed -9 in the middle of uploading an artifact (issue 25),
//! with the local store and with S3 (moto; a multipart upload): the
//! retried attempt, on another agent, publishes exactly one complete
//! artifact, every blob of it verifies, and the store keeps nothing of
//! the broken upload.
//!
//! "In the middle" is made certain, not timed: the agent's uploads go
//! through a valve (the agent dials the server through it; with S3, the
//! server's endpoint is the valve in front of moto), a TCP relay that
//! counts the bytes sent to it and stops forwarding them (without closing
//! anything) once they pass a bound far below the file's size. The agent's upload is then stuck
//! half-way whatever the machine's speed; the test kills it there, then
//! opens the valve, which drops what it held.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use xene_testkit::S3;

use crate::artifacts::{Fleet, WAIT, blob_key, digest_of, yes_xene};

/// The file's size: past the valve's bound many times over. With the
/// local store one PUT, whose broken upload leaves nothing; with S3 a
/// multipart upload of two parts (a part a killed agent sent stays in an
/// upload never completed, which is no object; the collector's to sweep).
fn big(s3: bool) -> u64 {
    if s3 {
        xene_core::artifact::PART_SIZE + 4_000_000
    } else {
        24_000_000
    }
}
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

fn workflow(big: u64) -> String {
    format!(
        "
name: big
pipelines:
  p:
    tasks:
      build:
        retries: {{count: 1, backoff: 100ms}}
        steps:
          - name: make
            run: yes xene | head -c {big} > big.bin
        publish:
          - name: big
            path: big.bin
"
    )
}

#[tokio::test]
async fn a_retry_after_an_agent_killed_mid_upload_publishes_one_whole_artifact() {
    for s3 in [None, Some(S3::start())] {
        let store = if s3.is_some() { "s3" } else { "local" };
        let big = big(s3.is_some());
        let bytes = yes_xene(big);
        let digest = digest_of(&bytes);
        // With S3 the valve stands before moto, else before the server.
        let valve = match &s3 {
            Some(s3) => Some(
                Valve::start(
                    s3.endpoint.trim_start_matches("http://").into(),
                    LET_THROUGH,
                )
                .await,
            ),
            None => None,
        };
        let mut fleet = Fleet::start(&[], |args| {
            args.task_lease = Duration::from_secs(2);
            if let (Some(s3), Some(valve)) = (&s3, &valve) {
                crate::artifacts::use_s3(args, s3);
                args.artifacts.s3_endpoint = Some(valve.url.clone());
            }
        })
        .await;
        let valve = match valve {
            Some(valve) => valve,
            None => Valve::start(fleet.server.addr.to_string(), LET_THROUGH).await,
        };
        let (status, body) = fleet.server.post("/api/v1/workflows", workflow(big)).await;
        assert_eq!(status, 201, "{body}");
        let dial = if s3.is_some() {
            fleet.server.url("")
        } else {
            valve.url.clone()
        };
        let mut a = fleet.agent("a", &dial).await;
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
                Err(format!("{store}: {passed} bytes passed\n{}", a.log_text()))
            }
        })
        .await;
        let run = fleet.server.get(&format!("/api/v1/runs/{id}")).await.1;
        assert_eq!(run["status"], "running", "{store}: {run}");
        a.kill();
        valve.open();
        let b = fleet.agent("b", &fleet.server.url("")).await;
        fleet.agents.push(b);
        let run = fleet.server.wait_for_run(id).await;
        let log = fleet.log_text(id).await;
        assert_eq!(
            run["status"],
            "success",
            "{store}: {run}\n{log}\n{}",
            a.log_text()
        );
        let attempts: Vec<&Value> = run["tasks"][0]["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(attempts.len(), 2, "{store}: {run}");
        assert_ne!(
            attempts[0]["agent_id"], attempts[1]["agent_id"],
            "{store}: {run}"
        );

        // One artifact, whole: its one file's digest is the bytes the step
        // wrote, and the download gives them.
        let (_, listing) = fleet
            .server
            .get(&format!("/api/v1/runs/{id}/artifacts"))
            .await;
        let artifacts = listing["artifacts"].as_array().unwrap();
        assert_eq!(artifacts.len(), 1, "{store}: {listing}");
        assert_eq!(artifacts[0]["files"], 1, "{store}: {listing}");
        assert_eq!(
            artifacts[0]["entries"][0]["digest"],
            digest.as_str(),
            "{store}: {listing}"
        );
        assert_eq!(
            artifacts[0]["entries"][0]["size"], big,
            "{store}: {listing}"
        );
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
        assert_eq!(download.status(), 200, "{store}");
        assert!(
            download.bytes().await.unwrap() == bytes,
            "{store}: the download is not the file"
        );

        // The store holds that blob once, and nothing of the broken upload:
        // the local store's temporary file went when the upload broke off;
        // moto has no object of a multipart upload never completed.
        let key = blob_key(&digest);
        match &s3 {
            None => {
                assert_eq!(
                    fleet.local_blobs().into_iter().collect::<Vec<_>>(),
                    [(key.clone(), big)]
                );
                let stored =
                    std::fs::read(fleet.db.dir.path().join("artifacts").join(&key)).unwrap();
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
            Some(s3) => {
                assert_eq!(s3.objects(), [(key, big)]);
                let checked = s3.presigned_requests();
                assert!(checked.iter().all(|(_, _, v)| v == "ok"), "{checked:?}");
            }
        }
    }
}
