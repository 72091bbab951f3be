//! A busy server (503 with `Retry-After`) is asked again, as it says: here a
//! real HTTP server on a real socket that is busy once, then applies.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::util::{Home, write};

/// Answers one HTTP/1.1 request per connection: GETs 404, the first
/// `busy` POSTs 503 with `Retry-After: 1`, the others 201.
async fn busy_server(busy: usize) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let posts = Arc::new(AtomicUsize::new(0));
    let counted = posts.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let posts = counted.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                // Headers, then as much body as Content-Length says.
                let body_start = loop {
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        break end + 4;
                    }
                };
                let head = String::from_utf8_lossy(&request[..body_start]).to_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                while request.len() < body_start + length {
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                }
                let (status, extra, body) = if head.starts_with("get ") {
                    ("404 Not Found", "", r#"{"error":"no such workflow"}"#)
                } else if posts.fetch_add(1, Ordering::SeqCst) < busy {
                    (
                        "503 Service Unavailable",
                        "Retry-After: 1\r\n",
                        r#"{"error":"busy: try again in 1 s"}"#,
                    )
                } else {
                    (
                        "201 Created",
                        "",
                        r#"{"name":"hello","version":1,"changed":true,"warnings":[]}"#,
                    )
                };
                let answer = format!(
                    "HTTP/1.1 {status}\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    (base, posts)
}

const SPEC: &str = "\
name: hello
pipelines:
  greet:
    tasks:
      say:
        steps:
          - run: echo hello
";

#[tokio::test]
async fn apply_waits_and_asks_again_when_the_server_is_busy() {
    let home = Home::new();
    let file = write(&home, "hello.yaml", SPEC);
    let (base, posts) = busy_server(2).await;
    let out = home
        .run(&["apply", "--server", &base, "-f", file.to_str().unwrap()])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("workflow/hello applied: version 1"),
        "{out:?}"
    );
    assert_eq!(
        out.stderr.matches("the server is busy").count(),
        2,
        "{out:?}"
    );
    assert_eq!(posts.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn apply_gives_up_on_a_server_that_stays_busy() {
    let home = Home::new();
    let file = write(&home, "hello.yaml", SPEC);
    let (base, posts) = busy_server(usize::MAX).await;
    let out = home
        .run(&["apply", "--server", &base, "-f", file.to_str().unwrap()])
        .await;
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("try again"), "{out:?}");
    // The first try and five more: bounded.
    assert_eq!(posts.load(Ordering::SeqCst), 6);
}
