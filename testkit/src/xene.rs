//! A real `xene` server process: started on port 0, its URL read from the
//! address it logs (no race for a free port between parallel tests),
//! killed when dropped, its log printed when a test fails.

use std::ffi::{OsStr, OsString};
use std::ops::Deref;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::client::{Client, admin_client, admin_token};
use crate::wait::wait_for;

/// What a server gets to start by default; only there to turn a hang into
/// a failure.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How to start a `xene` process; see [`Xene::builder`].
pub struct XeneBuilder {
    bin: PathBuf,
    data_dir: PathBuf,
    log: Option<PathBuf>,
    name: String,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    timeout: Duration,
}

impl XeneBuilder {
    /// Where its log goes (default: `xene-NONCE.log` in the data
    /// directory, so it goes with it).
    pub fn log(mut self, path: impl Into<PathBuf>) -> Self {
        self.log = Some(path.into());
        self
    }

    /// The name its log is printed under on a failure.
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.to_string();
        self
    }

    /// More flags; `--addr` among them replaces the default `127.0.0.1:0`.
    pub fn args<S: AsRef<OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    /// An environment variable; it wins over the defaults (`NO_COLOR=1`,
    /// `RUST_LOG=warn,xene_server=info`).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_os_string(), value.as_ref().to_os_string()));
        self
    }

    /// How long it may take to listen (default 60 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Starts it and waits until it listens; panics with its log if it
    /// exits or does not listen in time. Its client acts as the local
    /// admin, with the token the server wrote before it listened.
    pub async fn start(self) -> Xene {
        let log = self.log.unwrap_or_else(|| {
            // Made as xene would make it: it refuses a data directory
            // others can open.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.data_dir)
                .expect("data directory");
            self.data_dir.join(format!("xene-{}.log", crate::nonce()))
        });
        let mut cmd = Command::new(&self.bin);
        if !self.args.iter().any(|a| a == "--addr") {
            cmd.args(["--addr", "127.0.0.1:0"]);
        }
        let child = cmd
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.args)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "warn,xene_server=info")
            .envs(self.env)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("xene starts");
        let mut xene = Xene {
            child,
            client: Client::new("", reqwest::Client::new()),
            addr: String::new(),
            data_dir: self.data_dir,
            log,
            name: self.name,
        };
        let what = format!("xene {} to listen", xene.name);
        let base = wait_for(&what, self.timeout, async || {
            if let Some(status) = xene.child.try_wait().unwrap() {
                panic!(
                    "xene exited with {status} before listening:\n{}",
                    read(&xene.log)
                );
            }
            let log = read(&xene.log);
            listening_url(&log).map(str::to_string).ok_or(log)
        })
        .await;
        xene.addr = base
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .to_string();
        xene.client = Client::new(base, admin_client(&xene.data_dir));
        xene
    }
}

/// A `xene` process. Dropping it kills it, so a failing test leaves no
/// server behind; on a failure its log is printed to explain why. Its
/// [`Client`] (`base`, `http`, `get`, ...) acts as the local admin.
pub struct Xene {
    child: Child,
    client: Client,
    /// `host:port`, as it listens.
    pub addr: String,
    pub data_dir: PathBuf,
    log: PathBuf,
    pub name: String,
}

impl Xene {
    /// A `xene` from `bin` with its data in `data_dir`.
    pub fn builder(bin: impl Into<PathBuf>, data_dir: impl Into<PathBuf>) -> XeneBuilder {
        XeneBuilder {
            bin: bin.into(),
            data_dir: data_dir.into(),
            log: None,
            name: "xene".into(),
            args: Vec::new(),
            env: Vec::new(),
            timeout: START_TIMEOUT,
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no graceful shutdown, no lease released, nothing flushed.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    pub fn log_text(&self) -> String {
        read(&self.log)
    }

    /// The local admin token in the server's data directory.
    pub fn admin_token(&self) -> String {
        admin_token(&self.data_dir)
    }

    /// The one-time first-admin sign-in link the server printed.
    pub fn sign_in_link(&self) -> String {
        self.log_text()
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("http") && l.contains("/auth/link?token="))
            .expect("xene printed a sign-in link")
            .to_string()
    }
}

impl Deref for Xene {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Drop for Xene {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- log of xene {} ---\n{}", self.name, self.log_text());
        }
    }
}

/// The URL the server logs it listens on, `http://` or `https://`.
pub fn listening_url(log: &str) -> Option<&str> {
    let start = log.find("listening on http")? + "listening on ".len();
    let rest = &log[start..];
    let end = rest.find(|c: char| c.is_whitespace() || c == '"' || c == '\u{1b}')?;
    Some(&rest[..end])
}

fn read(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}
