//! `xene-agent connect` through the built binary: the exit codes of the
//! failures that need no server. The agent's conversation with a real
//! server is tested in the server's end-to-end tests.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Output;

use crate::util::agent;

fn connect(args: &[&str], state: &std::path::Path) -> Output {
    agent()
        .arg("connect")
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .env_remove("XENE_JOIN_TOKEN")
        .env_remove("XENE_SERVER")
        .output()
        .expect("running xene-agent")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn plain_http_to_another_machine_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let output = connect(
        &["--server", "http://192.0.2.1:8080", "--join-token", "t"],
        dir.path(),
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("without TLS"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn without_a_credential_a_join_token_is_needed() {
    let dir = tempfile::tempdir().unwrap();
    let output = connect(&["--server", "http://127.0.0.1:9"], dir.path());
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("join token"),
        "{}",
        stderr(&output)
    );
}

/// A one-shot HTTP server on loopback answering `response`.
fn answer_once(response: String) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().unwrap();
        let mut buffer = [0u8; 4096];
        let _ = socket.read(&mut buffer);
        let _ = socket.write_all(response.as_bytes());
    });
    port
}

#[test]
fn a_refused_join_token_exits_2_with_the_servers_reason() {
    let dir = tempfile::tempdir().unwrap();
    let body = r#"{"error":"join token already used"}"#;
    let port = answer_once(format!(
        "HTTP/1.1 401 Unauthorized\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    ));
    let server = format!("http://127.0.0.1:{port}");
    let output = connect(&["--server", &server, "--join-token", "xjt_x"], dir.path());
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("join token already used"),
        "{}",
        stderr(&output)
    );
    assert!(!dir.path().join("credential.json").exists());
}

#[test]
fn a_refused_credential_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let port = answer_once("HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n".into());
    let server = format!("http://127.0.0.1:{port}");
    std::fs::write(
        dir.path().join("credential.json"),
        format!(r#"{{"server":"{server}","agent_id":"a1","credential":"revoked"}}"#),
    )
    .unwrap();
    let output = connect(&["--server", &server], dir.path());
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(stderr(&output).contains("revoked"), "{}", stderr(&output));
}

/// A server of another protocol version closes with code 4000 and says why:
/// the agent prints that and exits 2 instead of reconnecting forever.
#[test]
fn a_server_of_another_protocol_makes_the_agent_exit_with_its_reason() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    let reason =
        "this server speaks agent protocol 3 (xene-agent 9.0 or later); install the matching agent";
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let hello = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            let Some(Ok(Message::Text(hello))) = ws.next().await else {
                panic!("a hello first");
            };
            ws.send(Message::Close(Some(CloseFrame {
                code: CloseCode::from(xene_core::protocol::CLOSE_UNSUPPORTED_PROTOCOL),
                reason: reason.into(),
            })))
            .await
            .unwrap();
            // Only one connection: a second would hang here, not reconnect.
            hello.to_string()
        })
    });
    let dir = tempfile::tempdir().unwrap();
    let server = format!("http://127.0.0.1:{port}");
    std::fs::write(
        dir.path().join("credential.json"),
        format!(r#"{{"server":"{server}","agent_id":"a1","credential":"c1"}}"#),
    )
    .unwrap();
    let output = connect(&["--server", &server], dir.path());
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains(reason), "{}", stderr(&output));
    let hello = hello.join().unwrap();
    let version = xene_core::protocol::PROTOCOL_VERSION;
    assert!(
        hello.contains(&format!(r#""protocol":{version}"#)),
        "{hello}"
    );
}
