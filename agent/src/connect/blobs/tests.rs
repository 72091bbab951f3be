//! Transfers against a real HTTP server on loopback (hyper), plain and TLS.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response as HttpResponse, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::*;
use crate::connect::transport::{cert_sha256, tls_config};

/// A request as the server saw it.
#[derive(Debug)]
struct Seen {
    method: String,
    /// Path and query.
    target: String,
    headers: hyper::HeaderMap,
    body: Vec<u8>,
}

/// What the test server serves at `/data`.
fn data() -> Vec<u8> {
    (0..3 * 1024 * 1024 + 7).map(|i| (i % 251) as u8).collect()
}

type Body = BoxBody<Bytes, Infallible>;

/// A stored blob's answers by path: the bytes at `/data` (any query), an
/// S3-like refusal at `/expired`, a Xene-like one at `/wrong`, a plain 404
/// elsewhere; a PUT to `/put` answers with an ETag, to `/slow-put` too but
/// 0.6 s later; a GET of `/stall` sends a few bytes, then nothing.
async fn answer(
    request: Request<Incoming>,
    seen: mpsc::UnboundedSender<Seen>,
) -> HttpResponse<Body> {
    let method = request.method().to_string();
    let target = request
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let path = request.uri().path().to_string();
    let headers = request.headers().clone();
    let body = request
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    let _ = seen.send(Seen {
        method: method.clone(),
        target,
        headers,
        body,
    });
    let reply = |status: StatusCode, body: Vec<u8>| {
        HttpResponse::builder()
            .status(status)
            .body(Full::new(Bytes::from(body)).boxed())
            .unwrap()
    };
    match (method.as_str(), path.as_str()) {
        ("GET", p) if p.ends_with("/data") => reply(StatusCode::OK, data()),
        ("PUT", p) if p.ends_with("put") => {
            if p.ends_with("/slow-put") {
                tokio::time::sleep(Duration::from_millis(600)).await;
            }
            HttpResponse::builder()
                .header("etag", "\"part-etag\"")
                .body(Full::new(Bytes::new()).boxed())
                .unwrap()
        }
        ("GET", "/stall") => {
            let first = futures::stream::once(async {
                Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"the start")))
            });
            let body = StreamBody::new(first.chain(futures::stream::pending()));
            HttpResponse::new(BodyExt::boxed(body))
        }
        (_, "/expired") => reply(
            StatusCode::FORBIDDEN,
            b"<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code><Message>Request has expired</Message>\
              <StringToSign>AWS4-HMAC-SHA256 SIGNED-PARTS</StringToSign></Error>"
                .to_vec(),
        ),
        (_, "/wrong") => reply(
            StatusCode::BAD_REQUEST,
            br#"{"error":"the body does not match its digest"}"#.to_vec(),
        ),
        _ => reply(StatusCode::NOT_FOUND, b"no such blob\nmore".to_vec()),
    }
}

/// Serves `answer` on loopback, over TLS with `cert` when given; returns
/// its port and what it sees.
async fn server(
    cert: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
) -> (u16, mpsc::UnboundedReceiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (seen_tx, seen) = mpsc::unbounded_channel();
    let acceptor = cert.map(|(der, key)| {
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der], key)
        .unwrap();
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    });
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let seen = seen_tx.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let seen = seen.clone();
                    async move { Ok::<_, Infallible>(answer(request, seen).await) }
                });
                let builder = http1::Builder::new();
                match acceptor {
                    Some(acceptor) => {
                        if let Ok(tls) = acceptor.accept(tcp).await {
                            let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                        }
                    }
                    None => {
                        let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
                    }
                }
            });
        }
    });
    (port, seen)
}

fn plain(port: u16, prefix: &str) -> BlobHttp {
    let endpoint = Endpoint::parse(&format!("http://127.0.0.1:{port}{prefix}"), false).unwrap();
    BlobHttp::new(&endpoint, None, &TlsOptions::default(), false).unwrap()
}

fn transfer(method: &str, url: &str) -> Transfer {
    Transfer {
        method: method.into(),
        url: url.into(),
        headers: Default::default(),
    }
}

fn sha256(bytes: &[u8]) -> Digest {
    Digest::from_sha256(&Sha256::digest(bytes).into())
}

#[tokio::test]
async fn a_file_range_is_put_to_a_url_joined_to_the_servers_base() {
    let (port, mut seen) = server(None).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big");
    let bytes = data();
    std::fs::write(&file, &bytes).unwrap();
    let http = plain(port, "/xene/");
    let mut put = transfer("PUT", "/api/v1/blobs/put?size=9&sig=abc");
    put.headers.insert("x-amz-meta-part".into(), "2".into());
    put.headers.insert("content-length".into(), "1".into());

    let (offset, len) = (1_000_003, 1_500_017);
    let etag = http.upload(&put, &file, offset, len).await.unwrap();
    assert_eq!(etag.as_deref(), Some("\"part-etag\""));
    let request = seen.recv().await.unwrap();
    assert_eq!(request.method, "PUT");
    assert_eq!(request.target, "/xene/api/v1/blobs/put?size=9&sig=abc");
    assert_eq!(
        request.body,
        bytes[offset as usize..(offset + len) as usize]
    );
    assert_eq!(request.headers["content-length"], len.to_string().as_str());
    assert_eq!(request.headers["x-amz-meta-part"], "2");
    assert!(request.headers.get("authorization").is_none());

    // The whole file, and nothing of it: a range past its end is refused
    // before anything is sent.
    http.upload(&put, &file, 0, bytes.len() as u64)
        .await
        .unwrap();
    assert_eq!(seen.recv().await.unwrap().body, bytes);
    http.upload(&put, &file, 0, 0).await.unwrap();
    assert!(seen.recv().await.unwrap().body.is_empty());
    let error = http
        .upload(&put, &file, 5, bytes.len() as u64)
        .await
        .unwrap_err();
    assert!(error.contains("shorter than"), "{error}");
    assert!(seen.try_recv().is_err());
}

#[tokio::test]
async fn a_download_is_written_and_hashed() {
    let (port, mut seen) = server(None).await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("blob");
    std::fs::write(&dest, b"an older, longer file that is replaced entirely").unwrap();
    let http = plain(port, "");
    // An absolute URL (a presigned one) to a loopback store.
    let url = format!("http://127.0.0.1:{port}/bucket/data?X-Amz-Signature=secret");
    let digest = http.download(&transfer("GET", &url), &dest).await.unwrap();
    let bytes = data();
    assert_eq!(digest, sha256(&bytes));
    assert_eq!(std::fs::read(&dest).unwrap(), bytes);
    let request = seen.recv().await.unwrap();
    assert_eq!(request.target, "/bucket/data?X-Amz-Signature=secret");
    assert!(request.headers.get("authorization").is_none());
}

#[tokio::test]
async fn refusals_say_why_without_the_signature() {
    let (port, _seen) = server(None).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"bytes").unwrap();
    let dest = dir.path().join("dest");
    let http = plain(port, "");

    let wrong = transfer("PUT", "/wrong?sig=0123secret");
    let error = http.upload(&wrong, &file, 0, 5).await.unwrap_err();
    assert_eq!(
        error,
        format!(
            "PUT http://127.0.0.1:{port}/wrong: HTTP 400 Bad Request: the body does not match its digest"
        )
    );

    let expired = format!("http://127.0.0.1:{port}/expired?X-Amz-Signature=0123secret");
    let error = http
        .download(&transfer("GET", &expired), &dest)
        .await
        .unwrap_err();
    assert!(error.contains("HTTP 403"), "{error}");
    assert!(
        error.contains("AccessDenied: Request has expired"),
        "{error}"
    );
    assert!(
        !error.contains("secret") && !error.contains("SIGNED"),
        "{error}"
    );
    assert!(!dest.exists(), "nothing is left of a failed download");

    let missing = transfer("GET", "/nothing?sig=0123secret");
    let error = http.download(&missing, &dest).await.unwrap_err();
    assert!(
        error.ends_with("HTTP 404 Not Found: no such blob"),
        "{error}"
    );
    assert!(!dest.exists());

    // Nobody listens: the error names the host, not the query.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let url = format!("http://127.0.0.1:{closed_port}/x?X-Amz-Signature=0123secret");
    let error = http
        .download(&transfer("GET", &url), &dest)
        .await
        .unwrap_err();
    assert!(error.contains("cannot connect"), "{error}");
    assert!(!error.contains("secret"), "{error}");
}

#[tokio::test]
async fn a_slow_answer_to_an_upload_is_waited_for_and_a_stalled_download_is_not() {
    let (port, _seen) = server(None).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, data()).unwrap();
    let dest = dir.path().join("dest");
    let http = plain(port, "").with_stall(Duration::from_millis(200));

    // Sending and waiting for the answer take longer than a download may
    // go without a byte: an upload is bounded by its size instead.
    let slow = transfer("PUT", "/slow-put");
    let etag = http.upload(&slow, &file, 0, data().len() as u64).await;
    assert_eq!(etag.unwrap().as_deref(), Some("\"part-etag\""));

    let error = http
        .download(&transfer("GET", "/stall"), &dest)
        .await
        .unwrap_err();
    assert!(
        error.ends_with("/stall: nothing received for 0.2 s"),
        "{error}"
    );
    assert!(!dest.exists());
}

#[tokio::test]
async fn urls_that_leave_the_rules_are_refused() {
    let http = plain(1, "");
    let dest = std::env::temp_dir().join("never-written");
    for (transfer, expected) in [
        (
            transfer("GET", "//elsewhere.example/x"),
            "invalid relative url",
        ),
        (transfer("GET", "http://ci.example.com/x"), "without TLS"),
        (transfer("GET", "ftp://ci.example.com/x"), "scheme"),
        (
            transfer("GET", "https://user:pw@ci.example.com/x"),
            "invalid url",
        ),
        (transfer("GET", "blobs/x"), "invalid url"),
        (transfer("PUT", "/api/v1/blobs/x"), "where GET was expected"),
    ] {
        let error = http.download(&transfer, &dest).await.unwrap_err();
        assert!(error.contains(expected), "{}: {error}", transfer.url);
        assert!(!error.contains("pw"), "{error}");
    }
    assert!(!dest.exists());
    let mut bad_header = transfer("GET", "/x");
    bad_header
        .headers
        .insert("x-sig".into(), "line\nbreak".into());
    let error = http.download(&bad_header, &dest).await.unwrap_err();
    assert_eq!(error, "the server sent an invalid value for header x-sig");

    // A store's trust is read when a store is first reached: a CA file
    // that is not there fails that transfer, saying which file.
    let endpoint = Endpoint::parse("http://127.0.0.1:1", false).unwrap();
    let missing_ca = TlsOptions {
        ca_file: Some("/nonexistent/ca.pem".into()),
        ..TlsOptions::default()
    };
    let http = BlobHttp::new(&endpoint, None, &missing_ca, false).unwrap();
    let store = transfer("GET", "https://store.example/bucket/x?X-Amz-Signature=s");
    let error = http.download(&store, &dest).await.unwrap_err();
    assert!(error.starts_with("/nonexistent/ca.pem: "), "{error}");
}

#[tokio::test]
async fn the_server_is_trusted_as_the_websocket_and_a_store_by_its_roots() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let der = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let (port, _seen) = server(Some((der.clone(), key))).await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("blob");
    let endpoint = Endpoint::parse(&format!("https://localhost:{port}"), false).unwrap();

    // Pinned: the server's relative URLs get through, and only them (a
    // pin is no trust for another host's certificate).
    let pinned = TlsOptions {
        server_cert_sha256: Some(cert_sha256(&der)),
        ..TlsOptions::default()
    };
    let http = BlobHttp::new(
        &endpoint,
        Some(&tls_config(&pinned).unwrap()),
        &pinned,
        false,
    )
    .unwrap();
    let digest = http
        .download(&transfer("GET", "/data"), &dest)
        .await
        .unwrap();
    assert_eq!(digest, sha256(&data()));
    let absolute = format!("https://localhost:{port}/data?X-Amz-Signature=0123secret");
    let error = http
        .download(&transfer("GET", &absolute), &dest)
        .await
        .unwrap_err();
    assert!(error.contains("certificate"), "{error}");
    assert!(!error.contains("secret"), "{error}");

    // A CA file is trusted for the server and for a store.
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, certified.cert.pem()).unwrap();
    let with_ca = TlsOptions {
        ca_file: Some(ca),
        ..TlsOptions::default()
    };
    let http = BlobHttp::new(
        &endpoint,
        Some(&tls_config(&with_ca).unwrap()),
        &with_ca,
        false,
    )
    .unwrap();
    http.download(&transfer("GET", "/data"), &dest)
        .await
        .unwrap();
    let digest = http
        .download(&transfer("GET", &absolute), &dest)
        .await
        .unwrap();
    assert_eq!(digest, sha256(&data()));
}
