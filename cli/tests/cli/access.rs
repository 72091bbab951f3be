//! Signing in: `login` through the loopback flow (a browser with a session
//! from the server's one-time link), `login --token` from stdin, contexts,
//! `logout`, `tokens create|list|revoke`; and no token ever in argv.

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use xene_testkit::{cookie_pair, no_redirects, set_cookie};

use crate::util::{Home, LONG, Out, Xene, argv_with, run, sqlite_url};

/// The hidden fields of the page's form, as a browser would post them.
fn form_fields(page: &str) -> Vec<(String, String)> {
    page.split("<input type=\"hidden\" name=\"")
        .skip(1)
        .filter_map(|rest| {
            let (name, rest) = rest.split_once('"')?;
            let value = rest.split_once("value=\"")?.1.split_once('"')?.0;
            Some((name.to_string(), value.to_string()))
        })
        .collect()
}

/// Plays the browser: signs in with the printed link, opens xenectl's
/// address, presses Allow on the question, follows the redirect to its
/// loopback listener.
async fn browse(xene: &Xene, url: &str) {
    answer(xene, url, "allow", "signed in").await;
}

/// As `browse`, pressing `decision`; xenectl's page says `said`.
async fn answer(xene: &Xene, url: &str, decision: &str, said: &str) {
    let browser = no_redirects();
    let signed_in = browser.get(xene.sign_in_link()).send().await.unwrap();
    let cookie = set_cookie(&signed_in, "xene_session").expect("a session cookie");
    let cookie = cookie_pair(&cookie);
    let question = browser
        .get(url)
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(question.status(), StatusCode::OK);
    let page = question.text().await.unwrap();
    assert!(page.contains("asks for an API token"), "{page}");
    let mut form = form_fields(&page);
    assert_eq!(form.len(), 3, "{page}");
    form.push(("decision".into(), decision.into()));
    let body: Vec<String> = form.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let answer = browser
        .post(format!("{}/auth/cli", xene.base))
        .header(COOKIE, cookie)
        .header("sec-fetch-site", "same-origin")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.join("&"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    let callback = answer.headers()[LOCATION].to_str().unwrap().to_string();
    assert!(callback.starts_with("http://127.0.0.1:"), "{callback}");
    let page = browser.get(&callback).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains(said));
}

fn config_token(home: &Home, context: &str) -> Option<String> {
    let text = std::fs::read_to_string(home.config_file()).unwrap();
    let config: toml::Table = toml::from_str(&text).unwrap();
    config["contexts"][context]
        .get("token")
        .and_then(|t| t.as_str())
        .map(str::to_string)
}

#[tokio::test]
async fn login_through_the_loopback_flow_contexts_and_logout() {
    let home = Home::new();
    login_flow(&home, &sqlite_url(&home)).await;
}

/// The server side of the flow (codes, challenges) on PostgreSQL.
#[tokio::test]
async fn login_through_the_loopback_flow_on_postgres() {
    let pg = crate::util::Postgres::start();
    login_flow(&Home::new(), &pg.url()).await;
}

/// Starts `xenectl login` with a "browser" that writes down the address it
/// was asked to open; returns the process and that address.
async fn start_login(home: &Home, xene: &Xene) -> (tokio::process::Child, String) {
    // The "browser" xenectl opens: it writes down what it was asked to open.
    let opened = home.path("opened");
    let opener = home.path("bin/xdg-open");
    std::fs::write(
        &opener,
        format!(
            "#!/bin/sh\necho \"$@\" > {}.tmp && mv {0}.tmp {0}\n",
            opened.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&opener, std::fs::Permissions::from_mode(0o755)).unwrap();

    let login = home
        .xenectl(&["login", "--server", &xene.base])
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let url = loop {
        if let Ok(text) = std::fs::read_to_string(&opened) {
            break text.trim().to_string();
        }
        assert!(started.elapsed() < LONG, "xenectl never opened a browser");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    (login, url)
}

async fn login_flow(home: &Home, db_url: &str) {
    let xene = Xene::start(home, db_url, None, &[]).await;
    let (login, url) = start_login(home, &xene).await;
    assert!(
        url.starts_with(&format!("{}/auth/cli?port=", xene.base)),
        "{url}"
    );
    // PKCE: the challenge goes with the browser, the verifier stays here.
    assert!(
        url.contains("&code_challenge=") && url.ends_with("&code_challenge_method=S256"),
        "{url}"
    );
    // A request that is not the sign-in (another state) is turned away, and
    // the login keeps waiting for the real one.
    let port = url
        .split("port=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let stray = reqwest::get(format!(
        "http://127.0.0.1:{port}/callback?code=xcc_forged&state=not-the-state"
    ))
    .await
    .unwrap();
    assert_eq!(stray.status(), StatusCode::BAD_REQUEST);
    browse(&xene, &url).await;
    let output = tokio::time::timeout(LONG, login.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&url),
        "the address is printed too: {stderr}"
    );
    assert!(stderr.contains("logged in to"), "{stderr}");

    // The token is kept in a file only its owner reads, under the server's host.
    let mode = std::fs::metadata(home.config_file())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let token = config_token(home, "127.0.0.1").expect("a token in the context");

    // The context's token is the one used: with no local admin token to
    // fall back on, it still works.
    let mut cmd = home.xenectl(&["get", "tokens", "-o", "json"]);
    cmd.env("XDG_DATA_HOME", home.path("elsewhere"));
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{out:?}");
    let names: Vec<String> = out.json()["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert!(names.iter().any(|n| n.starts_with("xenectl")), "{names:?}");

    // While a long command runs with it, the token is in no process's argv.
    let mut watch = home
        .xenectl(&["get", "runs", "-w"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = BufReader::new(watch.stdout.take().unwrap()).lines();
    let header = tokio::time::timeout(LONG, first.next_line())
        .await
        .unwrap()
        .unwrap();
    assert!(header.unwrap().starts_with("ID"), "get runs -w is watching");
    assert_eq!(argv_with(&token), Vec::<String>::new());
    watch.kill().await.unwrap();

    // `login --token` reads it from stdin, into another context.
    let out = home.run(&["tokens", "create", "scripted"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let scripted = out.stdout.trim().to_string();
    assert_eq!(
        out.stdout,
        format!("{scripted}\n"),
        "only the token on stdout"
    );
    let mut cmd = home.xenectl(&["login", "--server", &xene.base, "--token", "--name", "ci"]);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(format!("{scripted}\n").as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let output = child.wait_with_output().await.unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(config_token(home, "ci").as_deref(), Some(scripted.as_str()));

    let out = home.run(&["config", "get-contexts"]).await;
    let rows: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(rows.len(), 3, "{out:?}");
    assert!(
        rows[1].starts_with("      127.0.0.1 ") || rows[1].contains(" 127.0.0.1 "),
        "{out:?}"
    );
    assert!(
        rows.iter()
            .any(|r| r.starts_with("*") && r.contains(" ci ")),
        "{out:?}"
    );
    // set-context adds a server without a token, and keeps the current one.
    let out = home
        .run(&[
            "config",
            "set-context",
            "staging",
            "--server",
            "xene.example.com:8080",
        ])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let out = home.run(&["config", "get-contexts"]).await;
    let staging = out
        .stdout
        .lines()
        .find(|l| l.contains(" staging "))
        .unwrap_or_default();
    assert!(
        staging.contains("http://xene.example.com:8080") && staging.ends_with(" no"),
        "{out:?}"
    );
    let out = home.run(&["config", "delete-context", "staging"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let out = home.run(&["config", "use-context", "127.0.0.1"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let out = home.run(&["config", "current-context"]).await;
    assert_eq!(out.stdout, "127.0.0.1\n");
    let out = home.run(&["--context", "nope", "get", "runs"]).await;
    assert_eq!(out.code, 2, "{out:?}");

    // logout revokes the token on the server and forgets it.
    let out = home.run(&["logout"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(config_token(home, "127.0.0.1"), None);
    let out = run({
        let mut cmd = home.xenectl(&["--server", &xene.base, "get", "runs"]);
        cmd.env("XENE_TOKEN", &token);
        cmd
    })
    .await;
    assert_eq!(out.code, 3, "a revoked token is refused: {out:?}");
}

/// Deny in the browser: xenectl says so and fails as unauthorized,
/// keeping no token.
#[tokio::test]
async fn login_denied_in_the_browser_fails_and_keeps_no_token() {
    let home = Home::new();
    let xene = Xene::start(&home, &sqlite_url(&home), None, &[]).await;
    let (login, url) = start_login(&home, &xene).await;
    answer(&xene, &url, "deny", "denied").await;
    let output = tokio::time::timeout(LONG, login.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("denied in the browser"), "{stderr}");
    let config = std::fs::read_to_string(home.config_file()).unwrap_or_default();
    assert!(!config.contains("token"), "{config}");
}

async fn with_token(home: &Home, token: &str, args: &[&str]) -> Out {
    let mut cmd = home.xenectl(args);
    cmd.env("XENE_TOKEN", token);
    run(cmd).await
}

#[tokio::test]
async fn tokens_create_use_and_revoke() {
    let home = Home::new();
    let xene = Xene::start(&home, &sqlite_url(&home), None, &[]).await;
    let server = ["--server", xene.base.as_str()];
    let out = home
        .run(
            &[
                &server[..],
                &[
                    "tokens",
                    "create",
                    "reader",
                    "--role",
                    "viewer",
                    "--expires-in",
                    "1d",
                ],
            ]
            .concat(),
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let reader = out.stdout.trim().to_string();
    assert!(out.stderr.contains("shown only now"), "{out:?}");

    // A viewer reads, and may not apply (exit 3).
    let out = with_token(
        &home,
        &reader,
        &[&server[..], &["get", "workflows"]].concat(),
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    let spec = crate::util::write(
        &home,
        "x.yaml",
        "name: x\npipelines:\n  p:\n    tasks:\n      t:\n        steps:\n          - run: echo\n",
    );
    let out = with_token(
        &home,
        &reader,
        &[&server[..], &["apply", "-f", spec.to_str().unwrap()]].concat(),
    )
    .await;
    assert_eq!(out.code, 3, "{out:?}");

    let out = home
        .run(&[&server[..], &["tokens", "list", "-o", "json"]].concat())
        .await;
    let id = out.json()["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "reader")
        .expect("the new token is listed")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = home.run(&[&server[..], &["tokens", "list"]].concat()).await;
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with(&id) && l.contains(" viewer ")),
        "{out:?}"
    );
    let out = home
        .run(&[&server[..], &["tokens", "revoke", &id]].concat())
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let out = with_token(
        &home,
        &reader,
        &[&server[..], &["get", "workflows"]].concat(),
    )
    .await;
    assert_eq!(out.code, 3, "{out:?}");

    // Without any token (no context, another data directory): exit 3 too.
    let mut cmd = home.xenectl(&[&server[..], &["get", "runs"]].concat());
    cmd.env("XDG_DATA_HOME", home.path("elsewhere"));
    let out = run(cmd).await;
    assert_eq!(out.code, 3, "{out:?}");
    assert!(out.stderr.contains("xenectl login"), "{out:?}");

    // Join tokens print the install command; revoking an unknown agent is 4.
    let out = home
        .run(
            &[
                &server[..],
                &["agents", "join-token", "--label", "gpu=true"],
            ]
            .concat(),
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("install.sh"), "{out:?}");
    // What the token fixes for its agent goes to the server and back.
    let out = home
        .run(
            &[
                &server[..],
                &[
                    "agents",
                    "join-token",
                    "--label",
                    "pool=a",
                    "--capacity",
                    "2",
                    "-o",
                    "json",
                ],
            ]
            .concat(),
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let token: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        token["labels"],
        serde_json::json!({ "pool": "a" }),
        "{out:?}"
    );
    assert_eq!(token["capacity"], 2, "{out:?}");
    let out = home
        .run(&[&server[..], &["agents", "join-token", "--capacity", "0"]].concat())
        .await;
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("capacity"), "{out:?}");
    let out = home
        .run(&[&server[..], &["agents", "revoke", "nope"]].concat())
        .await;
    assert_eq!(out.code, 4, "{out:?}");
    let out = home
        .run(&[&server[..], &["agents", "join-token", "--label", "nolabel"]].concat())
        .await;
    assert_eq!(out.code, 2, "{out:?}");
}

#[tokio::test]
async fn completions_and_help() {
    let home = Home::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = home.run(&["completion", shell]).await;
        assert_eq!(out.code, 0, "{out:?}");
        assert!(
            out.stdout.contains("xenectl") && out.stdout.contains("join-token"),
            "{shell}: {out:?}"
        );
    }
    for command in [
        vec!["login"],
        vec!["apply"],
        vec!["get"],
        vec!["run"],
        vec!["logs"],
        vec!["rerun"],
        vec!["cancel"],
        vec!["tokens", "create"],
        vec!["agents", "join-token"],
        vec!["config", "use-context"],
        vec!["completion"],
        vec!["validate"],
        vec!["logout"],
        vec!["describe"],
        vec!["delete"],
        vec!["config"],
        vec!["config", "get-contexts"],
        vec!["config", "set-context"],
        vec!["config", "delete-context"],
        vec!["config", "current-context"],
        vec!["get", "workflows"],
        vec!["get", "pipelines"],
        vec!["get", "runs"],
        vec!["get", "agents"],
        vec!["get", "tokens"],
        vec!["describe", "workflow"],
        vec!["describe", "run"],
        vec!["describe", "agent"],
        vec!["delete", "workflow"],
        vec!["agents"],
        vec!["agents", "revoke"],
        vec!["agents", "list"],
        vec!["tokens"],
        vec!["tokens", "list"],
        vec!["tokens", "revoke"],
    ] {
        let mut args = command.clone();
        args.push("--help");
        let out = home.run(&args).await;
        assert_eq!(out.code, 0, "{command:?}: {out:?}");
        assert!(out.stdout.contains("Examples:"), "{command:?}: {out:?}");
    }
    let out = home.run(&["run"]).await;
    assert_eq!(out.code, 2, "usage errors exit 2: {out:?}");
}
