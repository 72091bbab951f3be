//! Defence-in-depth headers: no sniffing or framing anywhere, a
//! Content-Security-Policy with a fresh nonce on every page (the hydration
//! scripts carry it), and `/metrics` behind a token when asked.

use base64::Engine;
use sha2::Digest;

use crate::util::{Backend, TestDb, TestServer};

/// The nonce a page's policy allows, checked against every script tag.
fn page_nonce(policy: &str, body: &str) -> String {
    let nonce = policy
        .split_once("'nonce-")
        .and_then(|(_, rest)| rest.split_once('\''))
        .map(|(nonce, _)| nonce.to_string())
        .unwrap_or_else(|| panic!("no nonce in {policy}"));
    assert!(nonce.len() >= 16, "{nonce}");
    let scripts = body.matches("<script").count();
    assert!(scripts > 0, "{body}");
    assert_eq!(
        body.matches(&format!("<script nonce=\"{nonce}\"")).count()
            + body
                .matches(&format!("<script type=\"module\" nonce=\"{nonce}\""))
                .count(),
        scripts,
        "every script carries the nonce: {body}"
    );
    nonce
}

#[tokio::test]
async fn pages_carry_a_nonce_policy_and_nothing_is_sniffed_or_framed() {
    let db = TestDb::new(Backend::Sqlite);
    let server = TestServer::start(&db).await;
    let anonymous = reqwest::Client::new();

    let mut nonces = Vec::new();
    for _ in 0..2 {
        let page = anonymous.get(server.url("/signin")).send().await.unwrap();
        assert_eq!(page.status(), 200);
        let headers = page.headers().clone();
        let policy = headers["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        for part in [
            "default-src 'self'",
            "'wasm-unsafe-eval'",
            "frame-ancestors 'none'",
            "object-src 'none'",
            "base-uri 'none'",
        ] {
            assert!(policy.contains(part), "{part} in {policy}");
        }
        assert!(!policy.contains("'unsafe-eval'"), "{policy}");
        assert!(
            !policy.contains("script-src 'self' 'unsafe-inline'"),
            "{policy}"
        );
        // Style elements need the nonce (CodeMirror's carry it); only
        // style attributes may be inline.
        assert!(policy.contains("style-src 'self' 'nonce-"), "{policy}");
        assert_eq!(
            policy.matches("'unsafe-inline'").count(),
            policy.matches("style-src-attr 'unsafe-inline'").count(),
            "'unsafe-inline' only for style attributes: {policy}"
        );
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        let body = page.text().await.unwrap();
        nonces.push(page_nonce(&policy, &body));
    }
    assert_ne!(nonces[0], nonces[1], "a nonce is never used twice");

    // JSON, raw text and errors are never sniffed as HTML either.
    for path in ["/healthz", "/api/v1/me", "/install.sh", "/api/v1/nope"] {
        let response = anonymous.get(server.url(path)).send().await.unwrap();
        assert_eq!(
            response.headers()["x-content-type-options"],
            "nosniff",
            "{path}"
        );
        assert_eq!(response.headers()["x-frame-options"], "DENY", "{path}");
    }
    // The API reference's inline style is allowed by its hash, and nothing
    // else inline is.
    let docs = anonymous
        .get(server.url("/api/v1/docs"))
        .send()
        .await
        .unwrap();
    let policy = docs.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    let body = docs.text().await.unwrap();
    let style = body
        .split_once("<style>")
        .and_then(|(_, rest)| rest.split_once("</style>"))
        .map(|(style, _)| style)
        .expect("the docs page has a style");
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(style));
    assert!(
        policy.contains(&format!("style-src 'self' 'sha256-{hash}'")),
        "{policy}"
    );
    assert!(!policy.contains("'unsafe-inline'"), "{policy}");

    // Plain HTTP: no HSTS (browsers would ignore it; TLS is tested in tls.rs).
    let health = anonymous.get(server.url("/healthz")).send().await.unwrap();
    assert!(health.headers().get("strict-transport-security").is_none());
    server.stop().await;
}

#[tokio::test]
async fn metrics_can_be_put_behind_a_token() {
    let db = TestDb::new(Backend::Sqlite);
    let token = "metrics-scraper-token-0123456789";
    let file = db.dir.path().join("metrics-token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    let server = TestServer::start_with(&db, |args| args.metrics_token_file = Some(file)).await;
    let anonymous = reqwest::Client::new();

    let refused = anonymous.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    let text = refused.text().await.unwrap();
    assert!(!text.contains("xene_"), "{text}");
    let wrong = anonymous
        .get(server.url("/metrics"))
        .bearer_auth("metrics-scraper-token-012345678X")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    // The admin's API token is not the scraper's token either.
    let admin = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 401);

    let scraped = anonymous
        .get(server.url("/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(scraped.status(), 200);
    assert!(scraped.text().await.unwrap().contains("xene_"));
    server.stop().await;

    // A token too short to be a credential is refused at start.
    let db = TestDb::new(Backend::Sqlite);
    let file = db.dir.path().join("metrics-token");
    std::fs::write(&file, "short\n").unwrap();
    let mut args = xene_server::config::Args::for_data_dir(db.dir.path().to_path_buf());
    args.database_url = Some(db.url.clone());
    args.metrics_token_file = Some(file);
    let refused = xene_server::Server::bind(&args)
        .await
        .err()
        .expect("refused");
    assert!(refused.to_string().contains("16 to 4096"), "{refused}");
}
