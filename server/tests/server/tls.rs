//! HTTPS and mutual TLS, with certificates made for the test.

use std::path::Path;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::util::{Backend, TestDb, TestServer};

pub struct Pki {
    pub ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "xene test CA");
        let key = KeyPair::generate().unwrap();
        let ca = params.self_signed(&key).unwrap();
        Self {
            ca_pem: ca.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for `name` signed by this CA: (cert PEM, key PEM).
    pub fn issue(&self, name: &str) -> (String, String) {
        self.issue_for(&[name])
    }

    /// A certificate for these names (DNS names or IP addresses).
    pub fn issue_for(&self, names: &[&str]) -> (String, String) {
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

pub fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A raw HTTPS GET; the response text, or why it failed.
async fn get(
    addr: std::net::SocketAddr,
    ca_pem: &str,
    client: Option<(&str, &str)>,
    path: &str,
) -> Result<String, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    tls.read_to_string(&mut response)
        .await
        .map_err(|e| e.to_string())?;
    Ok(response)
}

#[tokio::test]
async fn the_server_speaks_https_with_its_certificate() {
    let pki = Pki::new();
    let db = TestDb::new(Backend::Sqlite);
    let (cert, key) = pki.issue("localhost");
    let cert = write(db.dir.path(), "server.pem", &cert);
    let key = write(db.dir.path(), "server.key", &key);
    let server = TestServer::start_with(&db, |args| {
        args.tls_cert = Some(cert);
        args.tls_key = Some(key);
    })
    .await;
    let response = get(server.addr, &pki.ca_pem, None, "/healthz")
        .await
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.ends_with(r#"{"database":"sqlite","status":"ok"}"#),
        "{response}"
    );
    // Browsers are told to come back over HTTPS only.
    assert!(
        response
            .to_ascii_lowercase()
            .contains("strict-transport-security: max-age=31536000"),
        "{response}"
    );
    // The install command points at the HTTPS address.
    let script = get(server.addr, &pki.ca_pem, None, "/install.sh")
        .await
        .unwrap();
    assert!(
        script.contains(&format!("SERVER='https://{}'", server.addr)),
        "{script}"
    );

    // A client that trusts another CA refuses the server.
    let stranger = Pki::new();
    let refused = get(server.addr, &stranger.ca_pem, None, "/healthz")
        .await
        .unwrap_err();
    assert!(refused.contains("invalid peer certificate"), "{refused}");
    server.stop().await;
}

#[tokio::test]
async fn with_a_client_ca_only_clients_it_signed_get_in() {
    let pki = Pki::new();
    let db = TestDb::new(Backend::Sqlite);
    let (cert, key) = pki.issue("localhost");
    let cert = write(db.dir.path(), "server.pem", &cert);
    let key = write(db.dir.path(), "server.key", &key);
    let client_ca = Pki::new();
    let ca_path = write(db.dir.path(), "clients.pem", &client_ca.ca_pem);
    let server = TestServer::start_with(&db, |args| {
        args.tls_cert = Some(cert);
        args.tls_key = Some(key);
        args.tls_client_ca = Some(ca_path);
    })
    .await;

    let (agent_cert, agent_key) = client_ca.issue("agent-1");
    let response = get(
        server.addr,
        &pki.ca_pem,
        Some((&agent_cert, &agent_key)),
        "/healthz",
    )
    .await
    .unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    // No certificate, or one from another CA: no answer.
    assert!(
        get(server.addr, &pki.ca_pem, None, "/healthz")
            .await
            .is_err()
    );
    let (other_cert, other_key) = pki.issue("intruder");
    assert!(
        get(
            server.addr,
            &pki.ca_pem,
            Some((&other_cert, &other_key)),
            "/healthz"
        )
        .await
        .is_err()
    );
    server.stop().await;
}

#[tokio::test]
async fn half_a_tls_set_up_is_refused_at_start() {
    let db = TestDb::new(Backend::Sqlite);
    let mut args = xene_server::config::Args::for_data_dir(db.dir.path().to_path_buf());
    args.tls_cert = Some(db.dir.path().join("missing.pem"));
    args.tls_key = Some(db.dir.path().join("missing.key"));
    let err = xene_server::Server::bind(&args).await.err().unwrap();
    assert!(
        format!("{err:#}").contains("cannot read certificates from"),
        "{err:#}"
    );

    args.tls_key = None;
    let err = xene_server::Server::bind(&args).await.err().unwrap();
    assert!(format!("{err:#}").contains("go together"), "{err:#}");
}
