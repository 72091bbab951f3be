//! Connections strangers may hold (H3): a budget per client address until
//! a request authenticates, deadlines for bodies, and what keeps agents,
//! signed-in clients, proxies and busy downloads out of its way.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::process::Xene;
use crate::util::{Backend, TestDb, TestServer, response};

/// A TCP connection to `server` from the loopback address `from`
/// (127.0.0.0/8 is all this machine's), so one test can play several clients.
async fn connect_from(from: [u8; 4], server: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((from, 0)))?;
    socket.connect(server).await
}

/// One keep-alive request on `stream`; the answer's status.
async fn get_on(stream: &mut TcpStream, path: &str, token: &str) -> u16 {
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    // Headers, then the body by its length.
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("answered within 10 s")
            .unwrap();
        assert!(n > 0, "closed before answering");
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_string())
                })
                .map_or(0, |v| v.parse().unwrap());
            if answer.len() >= end + 4 + length {
                return text[9..12].parse().unwrap();
            }
        }
    }
}

const SLOW_HEAD: &[u8] = b"POST /auth/cli/token HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n ";

/// Sends a body a byte every 300 ms until the server answers or closes;
/// true when it did so within `within`.
async fn trickle_until_cut(stream: &mut TcpStream, within: Duration) -> bool {
    if stream.write_all(SLOW_HEAD).await.is_err() {
        return true;
    }
    let mut buf = [0u8; 1024];
    tokio::time::timeout(within, async {
        loop {
            tokio::select! {
                _ = stream.read(&mut buf) => return,
                _ = tokio::time::sleep(Duration::from_millis(300)) => {
                    if stream.write_all(b" ").await.is_err() {
                        return;
                    }
                }
            }
        }
    })
    .await
    .is_ok()
}

/// H3: strangers trickling request bodies from one address hold no more
/// than that address's budget, and each of them only for a while; the
/// server goes on serving others, and signed-in clients on the same
/// address keep their connections.
#[tokio::test]
async fn strangers_trickling_bodies_leave_the_server_to_others() {
    let db = TestDb::new(Backend::Sqlite);
    let server = TestServer::start_with(&db, |a| {
        a.listen.max_connections = 48;
        a.listen.guest_connections_per_address = 16;
        a.listen.guest_body_timeout = Duration::from_secs(2);
    })
    .await;
    // More signed-in connections on one address than its strangers' budget.
    let mut signed_in = Vec::new();
    for _ in 0..20 {
        let mut stream = connect_from([127, 0, 0, 2], server.addr).await.unwrap();
        assert_eq!(
            get_on(&mut stream, "/api/v1/workflows", &server.token).await,
            200
        );
        signed_in.push(stream);
    }
    // Then 120 strangers on that address, each trickling a body and coming
    // back whenever it is cut off: far more than all connections together.
    let stop = Arc::new(AtomicBool::new(false));
    let mut attackers = Vec::new();
    for _ in 0..120 {
        let stop = stop.clone();
        let addr = server.addr;
        attackers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(mut stream) = connect_from([127, 0, 0, 2], addr).await {
                    trickle_until_cut(&mut stream, Duration::from_secs(60)).await;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }));
    }
    // Let them take what they can.
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Another client, a stranger too, is served...
    let fresh = || {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(0)
            .build()
            .unwrap()
    };
    let health = fresh().get(server.url("/healthz")).send().await;
    assert_eq!(health.expect("/healthz answers within 10 s").status(), 200);
    // ...and so is a signed-in one...
    let (status, body) = response(
        fresh()
            .get(server.url("/api/v1/workflows"))
            .bearer_auth(&server.token)
            .send()
            .await
            .expect("an authenticated request answers within 10 s"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // ...and the signed-in connections on the strangers' address still are.
    for stream in &mut signed_in {
        assert_eq!(
            get_on(stream, "/api/v1/workflows", &server.token).await,
            200
        );
    }
    // A body trickled from elsewhere is cut off after its deadline (2 s here).
    let mut slow = connect_from([127, 0, 0, 3], server.addr).await.unwrap();
    assert!(
        trickle_until_cut(&mut slow, Duration::from_secs(20)).await,
        "a trickled body held its connection for 20 s"
    );
    stop.store(true, Ordering::Relaxed);
    for attacker in attackers {
        attacker.abort();
    }
    server.stop().await;
}

/// A connection from `from` that has sent `GET /healthz` and got 200; `None`
/// when the server closed it instead.
async fn healthz_from(from: [u8; 4], server: SocketAddr) -> Option<TcpStream> {
    let mut stream = connect_from(from, server).await.ok()?;
    let request = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
        .await
        .expect("answered or closed within 10 s")
        .ok()?;
    (n > 0).then_some(())?;
    assert!(
        buf.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    Some(stream)
}

/// H3 behind a reverse proxy: every client of a proxy comes from its
/// address, so connections from `--trusted-proxies` are exempt from the
/// per-address budget of strangers (the proxy limits its clients), while
/// any other address keeps it.
#[tokio::test]
async fn a_trusted_proxy_is_not_held_to_one_addresss_budget() {
    let db = TestDb::new(Backend::Sqlite);
    let server = TestServer::start_with(&db, |a| {
        a.no_local_agent = true;
        a.listen.guest_connections_per_address = 4;
        a.listen.trusted_proxies = vec!["127.0.0.5".parse().unwrap()];
    })
    .await;
    let mut proxied = Vec::new();
    for i in 0..12 {
        let stream = healthz_from([127, 0, 0, 5], server.addr).await;
        proxied.push(stream.unwrap_or_else(|| panic!("proxy connection {i} was closed")));
    }
    let mut direct = Vec::new();
    for _ in 0..4 {
        direct.push(
            healthz_from([127, 0, 0, 6], server.addr)
                .await
                .expect("within budget"),
        );
    }
    assert!(
        healthz_from([127, 0, 0, 6], server.addr).await.is_none(),
        "a fifth stranger's connection from one address is refused"
    );
    server.stop().await;
}

/// H3: when an address's strangers are past their budget, the ones busy
/// with a request (here a download of the agent binary read slowly, as on
/// a slow link) are not closed for a newcomer; idle ones give way first.
#[tokio::test]
async fn guests_busy_with_a_request_are_not_evicted() {
    let db = TestDb::new(Backend::Sqlite);
    let binary = db.dir.path().join("xene-agent");
    let whole = 8 << 20;
    let content = vec![b'x'; whole];
    std::fs::write(&binary, &content).unwrap();
    let path = binary.clone();
    let server = TestServer::start_with(&db, move |a| {
        a.no_local_agent = true;
        a.agent_binary = Some(path);
        a.listen.guest_connections_per_address = 2;
    })
    .await;
    let from = [127, 0, 0, 7];
    // A download that stalls: a small receive window, nothing read yet.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(64 << 10).unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    let mut download = socket.connect(server.addr).await.unwrap();
    let request = "GET /download/xene-agent HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    download.write_all(request.as_bytes()).await.unwrap();
    // An idle stranger beside it.
    let mut idle = connect_from(from, server.addr).await.unwrap();
    tokio::time::sleep(xene_server::listen::guests::GRACE + Duration::from_millis(500)).await;
    // Newcomers past the budget: the idle one gives way, the download stays.
    let mut newcomers = Vec::new();
    for _ in 0..3 {
        newcomers.push(connect_from(from, server.addr).await.unwrap());
    }
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(10), idle.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the idle stranger was closed"
    );
    // Read until the whole body is here or the server closes (then the
    // body is short): the connection is kept open after the body.
    let mut received = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let read = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let body = received
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map_or(0, |end| received.len() - end - 4);
            if body >= whole {
                return body;
            }
            match download.read(&mut buf).await {
                Ok(0) | Err(_) => return body,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    });
    let body = read.await.expect("the download ends or stops within 30 s");
    assert_eq!(body, content.len(), "the download came whole");
    drop(newcomers);
    server.stop().await;
}

/// H3: agents leave the strangers' budget once their credential is
/// accepted, so many agents behind one address all connect and stay,
/// though they far outnumber that address's budget: sixty connect at once
/// from 127.0.0.1 against a budget of eight (the ones refused while the
/// first are still strangers retry, as a real agent does), and strangers
/// arriving later close none of them.
#[tokio::test]
async fn many_agents_on_one_address_connect_past_the_strangers_budget() {
    use crate::load::{Measured, agent, join};
    const AGENTS: usize = 60;
    let db = TestDb::new(Backend::Sqlite);
    let xene = Xene::start(
        &db,
        "crowd",
        &["--no-local-agent", "--guest-connections-per-address", "8"],
    )
    .await;
    let mut credentials = Vec::new();
    for _ in 0..AGENTS {
        credentials.push(join(&xene).await);
    }
    // All at once: every permit is taken up front, so none waits for another.
    let permits = Arc::new(tokio::sync::Semaphore::new(AGENTS));
    let measured = Arc::new(Measured::default());
    let mut agents = Vec::new();
    for credential in credentials {
        let permit = permits.clone().try_acquire_owned().unwrap();
        let (base, measured) = (xene.base.clone(), measured.clone());
        agents.push(tokio::spawn(agent(base, credential, measured, permit)));
    }
    xene.wait_agents_online(AGENTS).await;
    // Past the strangers' grace, strangers from the same address fill its
    // budget: had the agents stayed strangers, the oldest would give way.
    tokio::time::sleep(xene_server::listen::guests::GRACE + Duration::from_millis(500)).await;
    let addr: SocketAddr = xene.base.trim_start_matches("http://").parse().unwrap();
    let mut strangers = Vec::new();
    for _ in 0..16 {
        if let Some(stranger) = healthz_from([127, 0, 0, 1], addr).await {
            strangers.push(stranger);
        }
    }
    assert!(
        strangers.len() >= 8,
        "the address's budget is full of strangers"
    );
    drop(strangers);
    let (status, listed) = xene.get("/api/v1/agents").await;
    assert_eq!(status, 200, "{listed}");
    let online = listed["agents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["builtin"] == false && a["state"] == "online")
        .count();
    assert_eq!(online, AGENTS, "every agent stayed connected: {listed}");
    assert!(
        agents.iter().all(|a| !a.is_finished()),
        "no agent's session ended"
    );
    eprintln!(
        "{AGENTS} agents on one address, budget 8: {} connection attempts refused and retried",
        measured.refused.load(Ordering::Relaxed)
    );
    for agent in agents {
        agent.abort();
    }
}
