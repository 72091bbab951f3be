//! A real `xene-agent connect` process, killed when dropped, its log
//! printed when a test fails.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How to start a `xene-agent connect`; see [`Agent::builder`].
pub struct AgentBuilder {
    bin: PathBuf,
    server: String,
    token: String,
    state_dir: PathBuf,
    name: String,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
}

impl AgentBuilder {
    /// The name it joins under (default `agent`).
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.to_string();
        self
    }

    /// More flags for `connect`.
    pub fn args<S: AsRef<OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    /// An environment variable; it wins over the defaults (`NO_COLOR=1`,
    /// `RUST_LOG=info`).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_os_string(), value.as_ref().to_os_string()));
        self
    }

    /// Starts it; its log goes to `agent-NONCE.log` in its state directory.
    pub fn start(self) -> Agent {
        std::fs::create_dir_all(&self.state_dir).unwrap();
        let log = self.state_dir.join(format!("agent-{}.log", crate::nonce()));
        let child = Command::new(&self.bin)
            .args(["connect", "--server", &self.server])
            .args(["--join-token", &self.token, "--name", &self.name])
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(&self.args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(self.env)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("xene-agent starts");
        Agent {
            child,
            log,
            name: self.name,
        }
    }
}

/// A `xene-agent connect` process; killed when dropped.
pub struct Agent {
    child: Child,
    pub log: PathBuf,
    pub name: String,
}

impl Agent {
    /// A `xene-agent` from `bin` joining `server` (its base URL) with a
    /// join `token`, keeping its state in `state_dir`.
    pub fn builder(
        bin: impl Into<PathBuf>,
        server: &str,
        token: &str,
        state_dir: &Path,
    ) -> AgentBuilder {
        AgentBuilder {
            bin: bin.into(),
            server: server.to_string(),
            token: token.to_string(),
            state_dir: state_dir.to_path_buf(),
            name: "agent".into(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// The workspace's debug agent ([`crate::bins::agent_binary`]) named
    /// `name`, with `extra` flags.
    pub fn start(server: &str, token: &str, state_dir: &Path, name: &str, extra: &[&str]) -> Self {
        Self::start_with_env(server, token, state_dir, name, extra, &[])
    }

    /// [`Agent::start`] with extra environment variables (they win over the
    /// defaults).
    pub fn start_with_env(
        server: &str,
        token: &str,
        state_dir: &Path,
        name: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let mut builder = Self::builder(crate::bins::agent_binary(), server, token, state_dir)
            .name(name)
            .args(extra);
        for (key, value) in env {
            builder = builder.env(key, value);
        }
        builder.start()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: the agent gets no chance to report or clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the agent to exit by itself; its exit code, or `None` if
    /// it still runs after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- log of agent {} ---\n{}", self.name, self.log_text());
        }
    }
}
