//! Agents in Docker containers on a private network, cut off with
//! `docker network disconnect` in the middle of a run and connected again:
//! the run finishes on the same attempt with every log line, once.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::process::{Xene, build_agent, nonce, target_dir};
use crate::util::{Backend, TestDb};

/// The agent built for musl: static, so it runs in a `FROM scratch` image.
/// `cargo xtask test` installs the target and musl-tools.
fn static_agent() -> PathBuf {
    // Always asked for: cargo does nothing when it is fresh, and a stale
    // agent in the image would test old code.
    build_agent(Some("x86_64-unknown-linux-musl"));
    target_dir().join("x86_64-unknown-linux-musl/debug/xene-agent")
}

pub fn docker(args: &[&str]) -> String {
    let output = Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs");
    assert!(
        output.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// An image with busybox (for shell steps) and the static agent.
pub fn agent_image(dir: &Path) -> String {
    let context = dir.join("image");
    std::fs::create_dir_all(&context).unwrap();
    let busybox = ["/usr/bin/busybox", "/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("a static busybox (apt-get install busybox-static)");
    std::fs::copy(busybox, context.join("busybox")).unwrap();
    std::fs::copy(static_agent(), context.join("xene-agent")).unwrap();
    std::fs::write(
        context.join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
         COPY xene-agent /bin/xene-agent\nENTRYPOINT [\"/bin/xene-agent\"]\n",
    )
    .unwrap();
    let tag = format!("xene-test/agent:{}", nonce());
    docker(&["build", "-q", "-t", &tag, context.to_str().unwrap()]);
    tag
}

/// Removes what the test made in Docker, whatever happened.
pub struct Cleanup {
    pub containers: Vec<String>,
    pub network: Option<String>,
    pub image: Option<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for container in &self.containers {
            if std::thread::panicking() {
                let logs = Command::new("docker").args(["logs", container]).output();
                if let Ok(logs) = logs {
                    eprintln!(
                        "--- {container} ---\n{}",
                        String::from_utf8_lossy(&logs.stderr)
                    );
                }
            }
            let _ = Command::new("docker")
                .args(["rm", "-f", container])
                .output();
        }
        if let Some(network) = &self.network {
            let _ = Command::new("docker")
                .args(["network", "rm", network])
                .output();
        }
        if let Some(image) = &self.image {
            let _ = Command::new("docker").args(["rmi", "-f", image]).output();
        }
    }
}

#[tokio::test]
async fn agents_cut_off_from_the_network_lose_nothing() {
    let db = TestDb::new(Backend::Sqlite);
    let mut cleanup = Cleanup {
        containers: Vec::new(),
        network: None,
        image: None,
    };
    let image = agent_image(db.dir.path());
    cleanup.image = Some(image.clone());
    let network = format!("xene-test-{}", nonce());
    docker(&["network", "create", &network]);
    cleanup.network = Some(network.clone());
    let gateway = docker(&[
        "network",
        "inspect",
        "-f",
        "{{(index .IPAM.Config 0).Gateway}}",
        &network,
    ]);

    // Listening on every address so the containers reach it through their
    // network's gateway.
    // A lease long enough to outlast the cut: the point is that the agents
    // come back and resend, not that the runs are retried elsewhere.
    let xene = Xene::start(
        &db,
        "srv",
        &[
            "--no-local-agent",
            "--addr",
            "0.0.0.0:0",
            "--task-lease",
            "40s",
        ],
    )
    .await;
    let port = xene.base.rsplit(':').next().unwrap().to_string();
    let server = format!("http://{gateway}:{port}");
    let spec = "\
name: chatty
pipelines:
  p:
    tasks:
      talk:
        steps:
          - name: count
            run: for i in $(seq 1 60); do echo line-$i; sleep 0.1; done
";
    xene.apply(spec).await;
    let mut containers = Vec::new();
    for name in ["boxed-1", "boxed-2"] {
        let token = xene.join_token(json!({})).await;
        let container = format!("{name}-{}", nonce());
        docker(&[
            "run",
            "-d",
            "--name",
            &container,
            "--network",
            &network,
            &image,
            "connect",
            "--server",
            &server,
            "--join-token",
            &token,
            "--name",
            name,
            "--allow-shell",
            "--allow-insecure",
            "--state-dir",
            "/state",
        ]);
        cleanup.containers.push(container.clone());
        containers.push(container);
    }
    xene.wait_agents_online(2).await;

    let mut ids = Vec::new();
    for _ in 0..2 {
        ids.push(xene.start_run("chatty", "p", json!({})).await);
    }
    for id in &ids {
        xene.wait_run(*id, Duration::from_secs(60), |run| {
            run["tasks"][0]["steps"][0]["status"] == "running"
        })
        .await;
    }
    // Both cut off mid-step for longer than three heartbeats, so they give
    // the connection up and dial again once the network is back.
    for container in &containers {
        docker(&["network", "disconnect", &network, container]);
    }
    let cut = Instant::now();
    tokio::time::sleep(Duration::from_secs(9)).await;
    for container in &containers {
        docker(&["network", "connect", &network, container]);
    }

    for id in &ids {
        let run = xene.wait_finished(*id, Duration::from_secs(120)).await;
        assert_eq!(run["status"], "success", "{run}");
        assert_eq!(run["attempt"], 1, "the agent kept its run: {run}");
        let lines: Vec<String> = xene
            .logs(*id)
            .await
            .iter()
            .map(|l| l["data"].as_str().unwrap().to_string())
            .collect();
        let want: Vec<String> = (1..=60).map(|i| format!("line-{i}")).collect();
        assert_eq!(lines, want, "every line once, in order");
    }
    assert!(cut.elapsed() >= Duration::from_secs(9));
    for container in &containers {
        let output = Command::new("docker")
            .args(["logs", container])
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&output.stderr).to_string();
        let connects = log.matches("connected").count();
        assert!(
            log.contains("silent"),
            "{container} never noticed the cut:\n{log}"
        );
        assert!(connects >= 2, "{container} did not reconnect:\n{log}");
    }
}
