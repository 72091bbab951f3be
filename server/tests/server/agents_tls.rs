//! Remote agents over HTTPS: trusting the server through a CA file, through
//! a pinned certificate, and with mutual TLS. The API is reached through the
//! database here, because this test's HTTP client speaks no TLS.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use sha2::{Digest, Sha256};
use xene_server::storage::{Db, agents, auth, runs, workflows};

use crate::process::{Agent, Xene};
use crate::tls::{Pki, write};
use crate::util::{Backend, TestDb};

const WORK: &str = "\
name: secure
pipelines:
  p:
    tasks:
      t:
        steps:
          - name: s
            run: echo over tls > $XENE_OUTPUT
";

async fn token(db: &Db) -> String {
    auth::create_join_token(db, &auth::Fixed::default(), 60_000)
        .await
        .unwrap()
        .0
}

/// Waits until `n` remote agents are online, reading the database.
async fn wait_online(db: &Db, n: usize, agents: &[&Agent]) {
    let started = Instant::now();
    loop {
        let online = xene_server::storage::agents::list(db)
            .await
            .unwrap()
            .into_iter()
            .filter(|a| !a.builtin && a.state == agents::AgentState::Online)
            .count();
        if online >= n {
            return;
        }
        let logs: Vec<String> = agents.iter().map(|a| a.log_text()).collect();
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "agents never came online:\n{}",
            logs.join("\n---\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn run_once(db: &Db) {
    let workflow = xene_core::parse_workflow(WORK).unwrap();
    workflows::apply(db, &workflow, WORK, None)
        .await
        .unwrap()
        .unwrap();
    let run = runs::create(db, "secure", "p", BTreeMap::new(), "manual")
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        let detail = runs::get(db, run.id).await.unwrap().unwrap();
        if xene_server::storage::runs::is_final(detail.run.status) {
            assert_eq!(
                detail.tasks[0].output.as_deref(),
                Some("over tls"),
                "{detail:?}"
            );
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the run never finished: {detail:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn agents_join_over_https_by_ca_file_or_pinned_certificate() {
    let test_db = TestDb::new(Backend::Sqlite);
    let dir = test_db.dir.path();
    let pki = Pki::new();
    let (cert_pem, key_pem) = pki.issue_for(&["localhost", "127.0.0.1"]);
    let cert = write(dir, "server.pem", &cert_pem);
    let key = write(dir, "server.key", &key_pem);
    let ca = write(dir, "ca.pem", &pki.ca_pem);
    let xene = Xene::start(
        &test_db,
        "srv",
        &[
            "--no-local-agent",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    )
    .await;
    assert!(xene.base.starts_with("https://127.0.0.1:"), "{}", xene.base);
    let db = Db::connect(&test_db.url).await.unwrap();

    let by_ca = Agent::start(
        &xene.base,
        &token(&db).await,
        &dir.join("by-ca"),
        "by-ca",
        &["--allow-shell", "--ca-file", ca.to_str().unwrap()],
    );
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
    let pin: String = Sha256::digest(der.as_ref())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let by_pin = Agent::start(
        &xene.base,
        &token(&db).await,
        &dir.join("by-pin"),
        "by-pin",
        &["--allow-shell", "--server-cert-sha256", &pin],
    );
    wait_online(&db, 2, &[&by_ca, &by_pin]).await;
    run_once(&db).await;

    // An agent that trusts neither the CA nor the pin never sends its token:
    // it says why and keeps trying, and never joins.
    let doubtful_token = token(&db).await;
    let doubtful = Agent::start(
        &xene.base,
        &doubtful_token,
        &dir.join("doubtful"),
        "doubtful",
        &["--allow-shell"],
    );
    let started = Instant::now();
    while !doubtful.log_text().contains("certificate") {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no word of the certificate:\n{}",
            doubtful.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let joined = auth::join(&db, &doubtful_token, "probe").await;
    assert!(
        joined.is_ok(),
        "the token was spent by an agent that did not trust the server"
    );
    db.close().await;
}

#[tokio::test]
async fn with_mutual_tls_an_agent_needs_its_client_certificate() {
    let test_db = TestDb::new(Backend::Sqlite);
    let dir = test_db.dir.path();
    let pki = Pki::new();
    let (cert_pem, key_pem) = pki.issue_for(&["localhost", "127.0.0.1"]);
    let cert = write(dir, "server.pem", &cert_pem);
    let key = write(dir, "server.key", &key_pem);
    let ca = write(dir, "ca.pem", &pki.ca_pem);
    let clients = Pki::new();
    let client_ca = write(dir, "clients.pem", &clients.ca_pem);
    let (agent_cert, agent_key) = clients.issue("agent");
    let agent_cert = write(dir, "agent.pem", &agent_cert);
    let agent_key = write(dir, "agent.key", &agent_key);
    let xene = Xene::start(
        &test_db,
        "srv",
        &[
            "--no-local-agent",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--tls-client-ca",
            client_ca.to_str().unwrap(),
        ],
    )
    .await;
    let db = Db::connect(&test_db.url).await.unwrap();
    let with_cert = Agent::start(
        &xene.base,
        &token(&db).await,
        &dir.join("with-cert"),
        "with-cert",
        &[
            "--allow-shell",
            "--ca-file",
            ca.to_str().unwrap(),
            "--client-cert",
            agent_cert.to_str().unwrap(),
            "--client-key",
            agent_key.to_str().unwrap(),
        ],
    );
    wait_online(&db, 1, &[&with_cert]).await;
    run_once(&db).await;
    db.close().await;
}
