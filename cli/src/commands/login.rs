//! `xenectl login` and `logout`.
//!
//! Login works as `gh auth login` does, with PKCE (RFC 8252, 7636): a
//! listener on a random loopback port, the browser sent to the server's
//! `/auth/cli?port=P&state=S&code_challenge=C&code_challenge_method=S256`,
//! where the signed-in person allows it; the server then redirects to
//! `http://127.0.0.1:P/callback?code=K&state=S`, and the one-time code is
//! spent at `POST /auth/cli/token` with the verifier whose SHA-256 is C.
//! The state, random per login, keeps another page from feeding us a code
//! of its choosing; the verifier, which never leaves this process before
//! the exchange, makes a code seen by anyone else useless.

use std::io::Read;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use xene_api::access::{CliTokenRequest, Me, NewToken, User};
use xene_api::paths;

use super::Ctx;
use crate::args::{Global, Login};
use crate::client::Client;
use crate::config::{self, Config, Context, Target};
use crate::error::{Exit, fail};

/// How long the browser has to come back.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(300);
/// The most of a callback request we read.
const MAX_REQUEST: usize = 8192;

pub async fn login(global: &Global, login: &Login) -> anyhow::Result<Exit> {
    let mut config = Config::load()?;
    let current = global
        .context
        .clone()
        .or_else(|| config.current_context.clone());
    let server = config::normalize(
        global
            .server
            .as_deref()
            .or_else(|| {
                current
                    .as_ref()
                    .and_then(|n| config.contexts.get(n))
                    .map(|c| c.server.as_str())
            })
            .unwrap_or(config::DEFAULT_SERVER),
    )?;
    let name = login
        .name
        .clone()
        .or_else(|| global.context.clone())
        .or_else(|| {
            // The current context only when it is this server's.
            current.filter(|n| config.contexts.get(n).is_some_and(|c| c.server == server))
        })
        .unwrap_or_else(|| context_name(&server));
    let token = if login.token {
        read_token_from_stdin()?
    } else {
        browser_login(&server, login.no_browser).await?
    };
    // Check it before keeping it.
    let client = Client::new(&Target {
        server: server.clone(),
        token: Some(token.clone()),
        context: None,
    })?;
    let me: Me = client.get(&paths::me()).await?;
    config.contexts.insert(
        name.clone(),
        Context {
            server: server.clone(),
            token: Some(token),
        },
    );
    config.current_context = Some(name.clone());
    config.save()?;
    eprintln!(
        "logged in to {server} as {} ({}); context {name:?} is current",
        who(&me.user),
        me.role
    );
    Ok(Exit::Ok)
}

/// The user by email, else name, else id.
fn who(user: &User) -> String {
    [&user.email, &user.name, &user.id]
        .into_iter()
        .find(|v| !v.is_empty())
        .map_or_else(|| "?".into(), |v| v.to_string())
}

/// A context name from a server's host: `xene.example.com`, `127.0.0.1`.
fn context_name(server: &str) -> String {
    let host = config::host_of(server);
    if host.is_empty() {
        "default".into()
    } else {
        host
    }
}

fn read_token_from_stdin() -> anyhow::Result<String> {
    let mut text = String::new();
    std::io::stdin()
        .take(16 * 1024)
        .read_to_string(&mut text)
        .context("cannot read the token from stdin")?;
    let token = text.trim().to_string();
    if token.is_empty() || token.contains(char::is_whitespace) {
        return Err(fail(
            Exit::Usage,
            "--token reads one API token from stdin, and got none",
        ));
    }
    Ok(token)
}

async fn browser_login(server: &str, no_browser: bool) -> anyhow::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot listen on a loopback port")?;
    let port = listener.local_addr()?.port();
    let state = random_state();
    let verifier = random_state();
    let challenge = s256(&verifier);
    let url = format!("{server}{}", paths::cli_sign_in(port, &state, &challenge));
    eprintln!("Open this address in a browser to sign in (it works once):\n\n    {url}\n");
    if !no_browser {
        open_browser(&url);
    }
    let code = tokio::time::timeout(LOGIN_TIMEOUT, wait_for_code(&listener, &state))
        .await
        .map_err(|_| {
            fail(
                Exit::Auth,
                "no sign-in came back within 5 minutes; run `xenectl login` again",
            )
        })??;
    let client = Client::new(&Target {
        server: server.to_string(),
        token: None,
        context: None,
    })?;
    let answer = client
        .post(
            &paths::cli_token(),
            &CliTokenRequest {
                code,
                code_verifier: Some(verifier),
                hostname: Some(hostname()),
            },
        )
        .await?;
    Ok(answer.read::<NewToken>()?.token)
}

/// 48 hex characters: a state, or a PKCE verifier (43 to 128 characters).
fn random_state() -> String {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).expect("the OS provides randomness");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// RFC 7636's S256 challenge of a verifier.
fn s256(verifier: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// Best effort: the address is printed anyway.
fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let _ = std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}

/// Answers requests on the listener until one brings our state and a code
/// (or says the person denied it).
async fn wait_for_code(listener: &TcpListener, state: &str) -> anyhow::Result<String> {
    loop {
        let (mut socket, _) = listener.accept().await?;
        let request =
            match tokio::time::timeout(Duration::from_secs(10), read_head(&mut socket)).await {
                Ok(Ok(head)) => head,
                _ => continue,
            };
        let query = request
            .lines()
            .next()
            .and_then(|line| line.strip_prefix("GET /callback?"))
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or_default();
        let (mut code, mut got_state, mut error) = (None, None, None);
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some(("code", v)) => code = Some(v.to_string()),
                Some(("state", v)) => got_state = Some(v.to_string()),
                Some(("error", v)) => error = Some(v.to_string()),
                _ => {}
            }
        }
        if error.is_some() && got_state.as_deref() == Some(state) {
            respond(
                &mut socket,
                "200 OK",
                "xenectl was denied. You can close this tab.",
            )
            .await;
            return Err(fail(
                Exit::Auth,
                "the sign-in was denied in the browser; run `xenectl login` again to allow it",
            ));
        }
        match (code, got_state) {
            (Some(code), Some(s)) if s == state && !code.is_empty() => {
                respond(
                    &mut socket,
                    "200 OK",
                    "xenectl is signed in. You can close this tab.",
                )
                .await;
                return Ok(code);
            }
            _ => {
                respond(
                    &mut socket,
                    "400 Bad Request",
                    "This is not the sign-in xenectl is waiting for.",
                )
                .await;
            }
        }
    }
}

async fn read_head(socket: &mut tokio::net::TcpStream) -> anyhow::Result<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = socket.read(&mut chunk).await?;
        if n == 0 || buf.len() + n > MAX_REQUEST {
            anyhow::bail!("a bad request on the callback port");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

async fn respond(socket: &mut tokio::net::TcpStream, status: &str, text: &str) {
    let body = format!(
        "<!doctype html><meta charset=utf-8><title>xenectl</title><p style=\"font-family:sans-serif\">{text}</p>"
    );
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n{body}",
        body.len()
    );
    let _ = socket.write_all(response.as_bytes()).await;
    let _ = socket.shutdown().await;
}

/// Revokes the context's token on the server, then forgets it.
pub async fn logout(ctx: &Ctx, mut config: Config) -> anyhow::Result<Exit> {
    let stored = ctx
        .target
        .context
        .as_ref()
        .and_then(|n| config.contexts.get(n))
        .and_then(|c| c.token.clone());
    let Some(name) = ctx
        .target
        .context
        .clone()
        .filter(|_| stored.is_some() && stored == ctx.target.token)
    else {
        return Err(fail(
            Exit::Usage,
            "no token of a context is in use (a token from XENE_TOKEN or a local admin token is not xenectl's to revoke)",
        ));
    };
    match ctx.client.get::<Me>(&paths::me()).await {
        Ok(me) => {
            if let Some(id) = &me.token {
                ctx.client.delete(&paths::token(id)).await?;
            }
        }
        // Already refused: nothing left to revoke.
        Err(e) if crate::error::exit_of(&e) == Exit::Auth => {}
        Err(e) => return Err(e),
    }
    if let Some(context) = config.contexts.get_mut(&name) {
        context.token = None;
    }
    config.save()?;
    eprintln!("logged out of {} (context {name:?})", ctx.target.server);
    Ok(Exit::Ok)
}
