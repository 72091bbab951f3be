//! The harness: a Xene server on a free port with its own data directory,
//! and a fresh headless Chromium per test.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;
use tokio::process::{Child, Command};
use xene_testkit::bins::{target_dir, xene_binary};
pub use xene_testkit::free_port;

/// How long a page may take to reach the state a test waits for.
pub const WAIT: Duration = Duration::from_secs(30);

/// A running Xene server; stopped when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The one-time link that signs in the first admin.
    pub sign_in_link: Option<String>,
    // Stopped before its data directory goes (fields drop in order).
    _server: xene_server::Spawned,
    _data: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts with flags adjusted by `configure`.
    pub async fn start_with(configure: impl FnOnce(&mut xene_server::config::Args)) -> Self {
        // 0700: xene refuses a data directory others can enter.
        let data = xene_testkit::private_tempdir();
        let mut args = xene_server::config::Args::for_data_dir(data.path().to_path_buf());
        args.site_dir = Some(site_dir());
        // The `xene` binary supervises the built-in agent's shell steps (this
        // test binary cannot); `XENE_BIN` overrides.
        args.local_agent_supervisor = Some(xene_binary());
        configure(&mut args);
        let server = xene_server::Server::bind(&args)
            .await
            .expect("server starts")
            .spawn();
        Self {
            addr: server.addr,
            sign_in_link: server.sign_in_link.clone(),
            _server: server,
            _data: data,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// The bundle `cargo xtask site` builds; the test command builds it first.
fn site_dir() -> PathBuf {
    let site = target_dir().join("site");
    assert!(
        site.join("pkg/xene_bg.wasm").is_file(),
        "no web bundle in {}: run `cargo xtask site` first (`cargo xtask test` does)",
        site.display()
    );
    site
}

/// A real OpenID provider (the npm package `oidc-provider`, installed by the
/// test command into `end2end/oidc`), issuing Google-shaped ID tokens; see
/// `end2end/oidc/provider.mjs` for the accounts it knows. Killed when dropped.
pub struct OidcProvider {
    pub issuer: String,
    _process: Child,
}

impl OidcProvider {
    pub const CLIENT_ID: &str = "xene-test";
    pub const CLIENT_SECRET: &str = "xene-test-secret";

    pub async fn start(redirect_uri: &str) -> Self {
        use tokio::io::AsyncBufReadExt;
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("oidc");
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "oidc-provider is not installed: run `npm ci` in {} (`cargo xtask test` does)",
            dir.display()
        );
        let mut process = Command::new("node")
            .arg(dir.join("provider.mjs"))
            // Port 0: it binds a free port itself and says which, so no other
            // test can take the port between a lookup and node's start.
            .args(["0", Self::CLIENT_ID, Self::CLIENT_SECRET, redirect_uri])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs the OpenID provider");
        let mut lines = tokio::io::BufReader::new(process.stdout.take().unwrap()).lines();
        let issuer = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = line.strip_prefix("listening on ") {
                    return Some(url.to_string());
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .expect("the OpenID provider did not start");
        // Keep reading: a closed pipe would kill node at its next line.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            issuer,
            _process: process,
        }
    }
}

/// A headless Chromium behind its own chromedriver; both end when dropped.
pub struct Browser {
    pub client: Client,
    _driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// With more Chromium flags (`--force-dark-mode` for the dark theme).
    pub async fn start_with(extra: &[&str]) -> Self {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts (apt-get install chromium-driver)");
        let profile = tempfile::tempdir().expect("temp dir");
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        });
        let mut capabilities = capabilities;
        if let Some(args) = capabilities["goog:chromeOptions"]["args"].as_array_mut() {
            args.extend(extra.iter().map(|a| serde_json::Value::from(*a)));
        }
        let capabilities = match capabilities {
            serde_json::Value::Object(map) => map,
            _ => unreachable!(),
        };
        // chromedriver takes a moment to listen: retry the session for a while.
        let started = Instant::now();
        let client = loop {
            let attempt = ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await;
            match attempt {
                Ok(client) => break client,
                Err(e) if started.elapsed() < Duration::from_secs(20) => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot start a WebDriver session: {e}"),
            }
        };
        Self {
            client,
            _driver: driver,
            _profile: profile,
        }
    }

    /// Waits until the element's text satisfies `check`; returns the last text seen.
    pub async fn wait_for_text(
        &self,
        css: &str,
        check: impl Fn(&str) -> bool,
    ) -> Result<String, String> {
        let started = Instant::now();
        let mut last = String::new();
        while started.elapsed() < WAIT {
            if let Ok(el) = self.client.find(Locator::Css(css)).await
                && let Ok(text) = el.text().await
            {
                if check(&text) {
                    return Ok(text);
                }
                last = text;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!("{css} never matched; last text {last:?}"))
    }

    pub async fn wait_for_attr(&self, css: &str, attr: &str, want: &str) -> Result<(), String> {
        let started = Instant::now();
        let mut last = None;
        while started.elapsed() < WAIT {
            if let Ok(el) = self.client.find(Locator::Css(css)).await {
                last = el.attr(attr).await.ok().flatten();
                if last.as_deref() == Some(want) {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!(
            "{css}[{attr}] never became {want:?}; last {last:?}"
        ))
    }

    /// Signs in as the first admin with the server's one-time link.
    pub async fn sign_in_as_admin(&self, server: &TestServer) -> Result<(), String> {
        let link = server
            .sign_in_link
            .as_deref()
            .ok_or("the server printed no link")?;
        self.client.goto(link).await.map_err(|e| e.to_string())?;
        let url = self.client.current_url().await.map_err(|e| e.to_string())?;
        if url.path() != "/" {
            return Err(format!("the sign-in link led to {url}"));
        }
        Ok(())
    }

    /// Saves a screenshot of the page as `target/screenshots/NAME.png`, for
    /// people to look at after the run.
    pub async fn screenshot(&self, name: &str) -> Result<(), String> {
        let png = self.client.screenshot().await.map_err(|e| e.to_string())?;
        let dir = target_dir().join("screenshots");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        std::fs::write(dir.join(format!("{name}.png")), png).map_err(|e| e.to_string())
    }

    /// Ends the session. Always call it before asserting: a test that panics
    /// with a live session leaves Chromium holding the test's output open.
    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}

impl Browser {
    /// Replaces the text of the code editor (`ui::code`) whose text has id
    /// `id`, as one change, and applies it as leaving the field would: its
    /// `<textarea>` (hidden once CodeMirror shows) takes the value and says
    /// so, and CodeMirror follows. For typing key by key, send keys to
    /// `.cm-content` inside the editor instead.
    pub async fn set_code(&self, id: &str, text: &str) -> Result<(), String> {
        self.client
            .execute(
                "const t = document.getElementById(arguments[0]); \
                 if (!t) throw new Error('no code editor ' + arguments[0]); \
                 t.value = arguments[1]; \
                 t.dispatchEvent(new Event('input', {bubbles: true})); \
                 t.dispatchEvent(new Event('change', {bubbles: true}));",
                vec![id.into(), text.into()],
            )
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
