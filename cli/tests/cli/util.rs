//! Real `xene` servers and a real `xenectl` for the tests: a temporary home
//! per test (config and data directories), the server's data directory
//! inside it, so `xenectl` finds the local admin token as a user's would.

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub use xene_testkit::Postgres;

/// What a server may take to start or a run to finish; only there to turn a
/// hang into a failure.
pub const LONG: Duration = Duration::from_secs(120);

/// The target directory cargo builds into.
fn target_dir() -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_xenectl"));
    exe.parent()
        .and_then(Path::parent)
        .expect("xenectl lives in TARGET/PROFILE")
        .to_path_buf()
}

/// `xene` and `xene-agent` belong to other packages, so cargo does not hand
/// their paths to these tests: `cargo nextest run --workspace` builds them
/// beside these tests, and a run of this package alone builds them here
/// when they are missing or older than their sources. `XENE_BIN_DIR` names
/// a directory holding both instead.
fn bin_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("XENE_BIN_DIR") {
            return PathBuf::from(dir);
        }
        let dir = PathBuf::from(env!("CARGO_BIN_EXE_xenectl"))
            .parent()
            .unwrap()
            .to_path_buf();
        if fresh(&[dir.join("xene"), dir.join("xene-agent")]) {
            return dir;
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        // What cargo set for this test package would make build scripts that
        // watch it (ring's watches CARGO_MANIFEST_DIR) build everything again.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key == "CARGO_MANIFEST_DIR"
                || key == "CARGO_MANIFEST_PATH"
                || key == "CARGO_CRATE_NAME"
                || key == "CARGO_PRIMARY_PACKAGE"
                || key == "CARGO_TARGET_TMPDIR"
                || key == "CARGO_RUSTC_CURRENT_DIR"
                || key.starts_with("CARGO_PKG_")
                || key.starts_with("CARGO_BIN_")
            {
                cmd.env_remove(&*key);
            }
        }
        let status = cmd
            .args([
                "build",
                "--quiet",
                "-p",
                "xene-server",
                "--bin",
                "xene",
                "-p",
                "xene-agent",
                "--bin",
                "xene-agent",
            ])
            .arg("--target-dir")
            .arg(target_dir())
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building xene and xene-agent failed");
        dir
    })
    .clone()
}

/// Whether every binary exists and is newer than every source it is built
/// from. Building anyway would be right too, but a workspace build's
/// binaries have other features unified in, and cargo would rebuild them.
fn fresh(binaries: &[PathBuf]) -> bool {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut newest = std::time::SystemTime::UNIX_EPOCH;
    for dir in [
        "core",
        "app",
        "server/src",
        "agent/src",
        "migrations",
        "Cargo.lock",
    ] {
        newest = newest.max(newest_in(&root.join(dir)));
    }
    binaries.iter().all(|b| {
        std::fs::metadata(b)
            .and_then(|m| m.modified())
            .is_ok_and(|built| built > newest)
    })
}

fn newest_in(path: &Path) -> std::time::SystemTime {
    let Ok(meta) = std::fs::metadata(path) else {
        return std::time::SystemTime::UNIX_EPOCH;
    };
    let mut newest = meta.modified().unwrap_or(std::time::SystemTime::UNIX_EPOCH);
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
            newest = newest.max(newest_in(&entry.path()));
        }
    }
    newest
}

/// A temporary home: `HOME`, `XDG_CONFIG_HOME`, `XDG_DATA_HOME`.
pub struct Home {
    pub dir: tempfile::TempDir,
}

impl Home {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        for sub in ["config", "data", "bin"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        Self { dir }
    }

    pub fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    /// Where a server started for this home keeps its data (the default
    /// data directory of this home's user).
    pub fn server_data(&self) -> PathBuf {
        self.path("data/xene")
    }

    pub fn config_file(&self) -> PathBuf {
        self.path("config/xene/config.toml")
    }

    /// `xenectl ARGS` for this home, with nothing from the test's own
    /// environment that could change what it does.
    pub fn xenectl(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_xenectl"));
        cmd.args(args)
            .env_clear()
            .env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.path("config"))
            .env("XDG_DATA_HOME", self.path("data"))
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    self.path("bin").display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// Runs `xenectl ARGS` to its end.
    pub async fn run(&self, args: &[&str]) -> Out {
        run(self.xenectl(args)).await
    }
}

/// What a finished `xenectl` said.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

pub async fn run(mut cmd: tokio::process::Command) -> Out {
    let output = tokio::time::timeout(LONG, cmd.output())
        .await
        .expect("xenectl finished")
        .expect("xenectl runs");
    Out {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A `xene` process on loopback (the testkit's, from the `xene` of
/// [`bin_dir`]), acting as the local admin. Dropping it kills it; on a
/// failure its log is printed.
pub struct Xene(xene_testkit::Xene);

impl Deref for Xene {
    type Target = xene_testkit::Xene;

    fn deref(&self) -> &xene_testkit::Xene {
        &self.0
    }
}

impl DerefMut for Xene {
    fn deref_mut(&mut self) -> &mut xene_testkit::Xene {
        &mut self.0
    }
}

impl Xene {
    /// Starts on a free port (`addr` None) or on `addr`, over `db_url`,
    /// with its data directory in `home`.
    pub async fn start(home: &Home, db_url: &str, addr: Option<&str>, extra: &[&str]) -> Self {
        let process = xene_testkit::Xene::builder(bin_dir().join("xene"), home.server_data())
            .log(home.path(&format!("xene-{}.log", xene_testkit::nonce())))
            .args(["--addr", addr.unwrap_or("127.0.0.1:0")])
            .args(["--database-url", db_url, "--local-agent-id", "builtin"])
            .args(extra)
            .timeout(LONG)
            .start()
            .await;
        Self(process)
    }

    /// GETs `path`, which must succeed.
    pub async fn get(&self, path: &str) -> Value {
        self.client().get(path).await
    }

    /// POSTs `body` as JSON to `path`, which must succeed.
    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.client().post_json(path, &body).await
    }

    /// Polls run `id` until `done` holds.
    pub async fn wait_run(&self, id: i64, done: impl Fn(&Value) -> bool) -> Value {
        let started = Instant::now();
        loop {
            let run = self.get(&format!("/api/v1/runs/{id}")).await;
            if done(&run) {
                return run;
            }
            assert!(started.elapsed() < LONG, "run {id} stuck: {run}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A `xene-agent connect` of [`bin_dir`] named `remote`, with shell steps
/// allowed; killed when dropped.
pub fn start_agent(server: &str, join_token: &str, state_dir: &Path) -> xene_testkit::Agent {
    xene_testkit::Agent::builder(bin_dir().join("xene-agent"), server, join_token, state_dir)
        .name("remote")
        .args(["--allow-shell"])
        .start()
}

/// A SQLite database in `home`.
pub fn sqlite_url(home: &Home) -> String {
    xene_testkit::sqlite_url(home.dir.path())
}

/// Writes `text` to `home/NAME`; its path.
pub fn write(home: &Home, name: &str, text: &str) -> PathBuf {
    let path = home.path(name);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// Every process's command line that mentions `secret`.
pub fn argv_with(secret: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(secret) {
                found.push(cmdline);
            }
        }
    }
    found
}
