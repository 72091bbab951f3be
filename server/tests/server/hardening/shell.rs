//! Shell steps of the built-in agent against a real `xene` process: what they
//! can see of the server (as root and as an unprivileged user), when they
//! are on at all, and that they die with the server.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{Backend, TestDb, TestServer};

const CANARY: &str = "canary-aws-5f3e";
const NOBODY: (u32, u32) = (65534, 65534);
const DEADLINE: Duration = Duration::from_secs(60);

/// A `xene` process with its own data directory (the default SQLite database
/// and master key in it) and its own `TMPDIR`, as root or as another user.
struct Server {
    child: Child,
    base: String,
    http: reqwest::Client,
    data: PathBuf,
    tmp: PathBuf,
    log: PathBuf,
}

impl Server {
    async fn start(dir: &Path, user: Option<(u32, u32)>, extra: &[&str]) -> Self {
        let data = dir.join("data");
        let tmp = dir.join("tmp");
        for d in [&data, &tmp] {
            if !d.exists() {
                std::fs::create_dir(d).unwrap();
                std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
                match user {
                    Some((uid, gid)) => std::os::unix::fs::chown(d, Some(uid), Some(gid)).unwrap(),
                    // Root's steps run as nobody, who must pass through (as through /tmp).
                    None if d == &tmp => {
                        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o711)).unwrap()
                    }
                    None => {}
                }
            }
        }
        let log = dir.join(format!("xene-{}.log", crate::process::nonce()));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_xene"));
        cmd.args(["--addr", "127.0.0.1:0", "--local-agent-id", "builtin-test"])
            .args(extra)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("AWS_SECRET_ACCESS_KEY", CANARY)
            .env("XENE_DATA_DIR", &data)
            .env("TMPDIR", &tmp)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "warn,xene_server=info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        if let Some((uid, gid)) = user {
            cmd.uid(uid).gid(gid);
        }
        let child = cmd.spawn().expect("xene starts");
        let mut server = Self {
            child,
            base: String::new(),
            http: reqwest::Client::new(),
            data,
            tmp,
            log,
        };
        let started = Instant::now();
        loop {
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("xene exited with {status}:\n{}", server.log_text());
            }
            if let Some(url) = crate::process::listening_url(&server.log_text()) {
                server.base = url.to_string();
                break;
            }
            assert!(started.elapsed() < DEADLINE, "{}", server.log_text());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server.http = crate::util::client_with_token(&crate::util::admin_token(&server.data));
        server
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    async fn post(&self, path: &str, body: String) -> Value {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        assert!(status == 200 || status == 201, "{path}: {status} {body}");
        body
    }

    async fn get(&self, path: &str) -> Value {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        response.json().await.unwrap()
    }

    async fn run(&self, spec: &str, workflow: &str) -> i64 {
        self.post("/api/v1/workflows", spec.to_string()).await;
        let path = format!("/api/v1/workflows/{workflow}/pipelines/p/runs");
        self.post(&path, String::new()).await["id"]
            .as_i64()
            .unwrap()
    }

    async fn wait(&self, id: i64, done: impl Fn(&Value) -> bool) -> Value {
        let started = Instant::now();
        loop {
            let run = self.get(&format!("/api/v1/runs/{id}")).await;
            if done(&run) {
                return run;
            }
            assert!(started.elapsed() < DEADLINE, "{run}\n{}", self.log_text());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn log_lines(&self, id: i64) -> Vec<String> {
        let page = self
            .get(&format!("/api/v1/runs/{id}/logs?limit=10000"))
            .await;
        page["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["data"].as_str().unwrap().to_string())
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- xene's log ---\n{}", self.log_text());
        }
    }
}

fn finished(run: &Value) -> bool {
    ["success", "error", "cancelled", "unknown"].contains(&run["status"].as_str().unwrap_or(""))
}

/// A directory the steps' user can reach (tempdirs are 0700).
fn open_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Reproduction of H1: a step read `/proc/$PPID/environ` (a cloud key given
/// to the server), and from `/proc/<server>/fd` the data directory's admin
/// token, master key and database.
async fn steps_see_nothing_of_the_server(user: Option<(u32, u32)>) {
    let dir = open_dir();
    let server = Server::start(dir.path(), user, &[]).await;
    let data = server.data.display().to_string();
    let pid = server.pid();
    let spec = format!(
        r#"name: peek
pipelines:
  p:
    tasks:
      peek:
        steps:
          - |
            echo "as $(id -u)"
            try() {{ if ( exec 3< "$2" ) 2>/dev/null; then echo "read: $1"; cat "$2" | tr '\0' '\n' | head -c 4000; echo; else echo "denied: $1"; fi; }}
            up=$(awk '/^PPid/ {{print $2}}' /proc/$PPID/status)
            try parent-environ /proc/$PPID/environ
            try server-environ /proc/{pid}/environ
            try server-environ-by-ppid /proc/$up/environ
            try server-mem /proc/{pid}/mem
            try admin-token {data}/admin-token
            try secrets-key {data}/secrets.key
            try database {data}/xene.db
            if kill -0 {pid} 2>/dev/null; then echo "read: signal"; else echo "denied: signal"; fi
            for p in /proc/[0-9]*; do
              tr '\0' '\n' 2>/dev/null < $p/environ | grep -a -e AWS_SECRET -e XENE_DATA_DIR || true
              ls -l $p/fd 2>/dev/null | grep -a -o "{data}[^ ]*" || true
            done
            echo "scanned"
"#
    );
    let id = server.run(&spec, "peek").await;
    let run = server.wait(id, finished).await;
    assert_eq!(run["status"], "success", "{run}\n{}", server.log_text());
    let lines = server.log_lines(id).await;
    let text = lines.join("\n");
    for target in [
        "parent-environ",
        "server-environ",
        "server-environ-by-ppid",
        "server-mem",
        "admin-token",
        "secrets-key",
        "database",
        "signal",
    ] {
        assert!(
            lines.iter().any(|l| l == &format!("denied: {target}")),
            "{target} was not denied:\n{text}"
        );
    }
    assert!(lines.iter().any(|l| l == "scanned"), "{text}");
    let token = std::fs::read_to_string(server.data.join("admin-token")).unwrap();
    let key = std::fs::read_to_string(server.data.join("secrets.key")).unwrap();
    let key = key
        .lines()
        .find(|l| !l.starts_with('#') && !l.is_empty())
        .unwrap();
    for secret in [
        CANARY,
        token.trim(),
        key,
        "XENE_DATA_DIR",
        "api_token_key",
        &data,
    ] {
        assert!(!text.contains(secret), "the step saw {secret:?}:\n{text}");
    }
    // Steps run as `nobody` when the server is root, else as its user.
    let uid = user.map_or(NOBODY.0, |(uid, _)| uid);
    assert!(lines.contains(&format!("as {uid}")), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn built_in_steps_see_nothing_of_a_root_server() {
    steps_see_nothing_of_the_server(None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn built_in_steps_see_nothing_of_an_unprivileged_server() {
    steps_see_nothing_of_the_server(Some(NOBODY)).await;
}

/// The runtimes the built-in agent registered with.
async fn built_in_runtimes(configure: impl FnOnce(&mut xene_server::config::Args)) -> Vec<String> {
    let db = TestDb::new(Backend::Sqlite);
    let server = TestServer::start_with(&db, configure).await;
    let started = Instant::now();
    let runtimes = loop {
        let (_, agents) = server.get("/api/v1/agents").await;
        if let Some(agent) = agents["agents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["state"] == "online")
        {
            break agent["runtimes"].clone();
        }
        assert!(started.elapsed() < DEADLINE, "{agents}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    server.stop().await;
    serde_json::from_value(runtimes).unwrap()
}

/// Shell on the built-in agent was on behind a reverse proxy
/// (`--public-url https://…`), which is every editor running code on the
/// server: on for the one-person loopback default only, else when asked.
#[tokio::test(flavor = "multi_thread")]
async fn built_in_shell_is_on_only_for_one_person_unless_asked() {
    let public = |args: &mut xene_server::config::Args| {
        args.public_url = Some("https://xene.example.com".into())
    };
    assert!(built_in_runtimes(|_| {}).await.contains(&"shell".into()));
    assert!(!built_in_runtimes(public).await.contains(&"shell".into()));
    let oidc =
        |args: &mut xene_server::config::Args| args.access.oidc_client_id = Some("client".into());
    assert!(!built_in_runtimes(oidc).await.contains(&"shell".into()));
    let asked = |args: &mut xene_server::config::Args| {
        public(args);
        args.local_agent_shell = Some(true);
    };
    assert!(built_in_runtimes(asked).await.contains(&"shell".into()));
    // Behind a reverse proxy, every client comes from loopback.
    let proxied = |args: &mut xene_server::config::Args| {
        args.listen.trusted_proxies = vec!["127.0.0.1".parse().unwrap()]
    };
    assert!(!built_in_runtimes(proxied).await.contains(&"shell".into()));
}

/// A secret given as a flag is in /proc/<server>/cmdline, which every
/// process (a step too) may read: with shell on, the server refuses to
/// start and names the variable or file to use instead; the same key from
/// the environment starts.
#[tokio::test(flavor = "multi_thread")]
async fn a_built_in_shell_refuses_secrets_given_as_flags() {
    const KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let dir = open_dir();
    let data = dir.path().join("data");
    // Its stderr up to "listening on", or all of it when it exits.
    let start = |flags: &[&str], env: &[(&str, &str)]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_xene"))
            .args(["--addr", "127.0.0.1:0", "--local-agent-shell", "yes"])
            .args(flags)
            .envs(env.iter().copied())
            .env("XENE_DATA_DIR", &data)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let started = Instant::now();
        let mut log = String::new();
        while !log.contains("listening on") {
            let mut chunk = [0u8; 4096];
            let n = std::io::Read::read(&mut stderr, &mut chunk).unwrap();
            if n == 0 {
                break;
            }
            assert!(started.elapsed() < DEADLINE, "{log}");
            log.push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
        let _ = child.kill();
        let _ = child.wait();
        log
    };
    let refused = start(&["--secrets-key", KEY], &[]);
    assert!(
        !refused.contains("listening on")
            && refused.contains("--secrets-key")
            && refused.contains("XENE_SECRETS_KEY"),
        "{refused}"
    );
    assert!(!refused.contains(KEY), "{refused}");
    let from_env = start(&[], &[("XENE_SECRETS_KEY", KEY)]);
    assert!(from_env.contains("listening on"), "{from_env}");
}

/// Processes with `word` as one of their arguments (a `sleep`, not the
/// shell or supervisor whose script mentions it).
fn processes_with(word: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|&b| b == 0).any(|arg| arg == word.as_bytes()))
        })
        .collect()
}

/// Every file named `name` under `dir`.
fn files_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = crate::util::files_under(dir);
    found.retain(|path| path.file_name().is_some_and(|n| n == name));
    found
}

async fn wait_gone(word: &str) {
    let started = Instant::now();
    while !processes_with(word).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still alive: {word} {:?}",
            processes_with(word)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reproduction of M4: after kill -9 of the server, its built-in steps (and
/// what they started in a session of their own) kept running, and the
/// retried attempt ran beside them. Now they die with the server, and the
/// restarted server's attempt 2 runs alone.
#[tokio::test(flavor = "multi_thread")]
async fn built_in_steps_die_with_a_killed_server() {
    let dir = open_dir();
    let tag = format!("{}", crate::process::nonce() % 1_000_000);
    let (long, escapee) = (format!("20.{tag}"), format!("300.{tag}"));
    let lease = ["--task-lease", "2s"];
    let mut first = Server::start(dir.path(), None, &lease).await;
    let spec = format!(
        r#"name: slow
pipelines:
  p:
    tasks:
      t:
        retries: 1
        steps:
          - |
            attempt=$(echo "$XENE_RUN_ID" | cut -d- -f2)
            echo "start $attempt" >> ledger
            (setsid sleep {escapee} > /dev/null 2>&1 &)
            if [ "$attempt" = 1 ]; then sleep {long}; fi
            echo "end $attempt" >> ledger
"#
    );
    let id = first.run(&spec, "slow").await;
    let started = Instant::now();
    while processes_with(&escapee).is_empty() || processes_with(&long).is_empty() {
        assert!(started.elapsed() < DEADLINE, "{}", first.log_text());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ledgers = files_named(&first.tmp, "ledger");
    assert_eq!(ledgers.len(), 1, "{ledgers:?}");
    first.kill();
    // The step and the process it set loose are gone, not at the next write.
    wait_gone(&long).await;
    wait_gone(&escapee).await;
    assert_eq!(std::fs::read_to_string(&ledgers[0]).unwrap(), "start 1\n");

    let second = Server::start(dir.path(), None, &lease).await;
    let run = second.wait(id, finished).await;
    assert_eq!(run["status"], "success", "{run}");
    // The task's attempt 2 ran after attempt 1 was lost with its server.
    assert_eq!(run["tasks"][0]["attempt"], 2, "{run}");
    // Attempt 1 never went on: its ledger stops at its start.
    assert_eq!(std::fs::read_to_string(&ledgers[0]).unwrap(), "start 1\n");
    wait_gone(&escapee).await;
}

/// A start ends the step supervisors a previous server on its data
/// directory left (here one whose parent is still alive, as a stuck one
/// would be) before any run is retried.
#[tokio::test(flavor = "multi_thread")]
async fn a_restart_ends_the_steps_a_previous_server_left() {
    let dir = open_dir();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    let work = dir.path().join("left");
    let tmp = dir.path().join("left.tmp");
    for d in [&work, &tmp] {
        std::fs::create_dir(d).unwrap();
        std::os::unix::fs::chown(d, Some(NOBODY.0), Some(NOBODY.1)).unwrap();
    }
    let tag = format!("{}", crate::process::nonce() % 1_000_000);
    let sleeper = format!("30.{tag}");
    let spec = xene_agent::runtime::supervisor::Spec {
        workspace: work.clone(),
        tmp,
        writable: Vec::new(),
        user: Some(NOBODY),
        grace_ms: 300,
        parent: std::process::id(),
        script: format!("(setsid sleep {sleeper} &) ; sleep {sleeper}"),
    };
    let owner = format!("builtin-test@{}", data.display());
    let mut left = Command::new(env!("CARGO_BIN_EXE_xene"))
        .args(xene_agent::runtime::supervisor::args(&owner, &spec))
        .current_dir(&work)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while processes_with(&sleeper).len() < 2 {
        assert!(started.elapsed() < DEADLINE, "the leftover never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let server = Server::start(dir.path(), None, &[]).await;
    // Gone by the time the server listens.
    assert!(
        processes_with(&sleeper).is_empty(),
        "{:?}",
        processes_with(&sleeper)
    );
    assert!(left.try_wait().unwrap().is_some());
    assert!(
        server
            .log_text()
            .contains("ended the steps a previous server"),
        "{}",
        server.log_text()
    );
}

/// Where the sandbox cannot be set up (here: a supervisor that fails, as
/// on a kernel without Landlock), the built-in shell refuses to start and
/// says what to do; with shell turned off the server starts.
#[tokio::test(flavor = "multi_thread")]
async fn a_built_in_shell_that_cannot_be_sandboxed_refuses_to_start() {
    let dir = open_dir();
    let data = dir.path().join("data");
    let xene = |shell: &str| {
        Command::new(env!("CARGO_BIN_EXE_xene"))
            .args(["--addr", "127.0.0.1:0", "--local-agent-shell", shell])
            .env("XENE_DATA_DIR", &data)
            .env("XENE_LOCAL_AGENT_SUPERVISOR", "/bin/false")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let refused = xene("yes").wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{said}");
    assert!(
        said.contains("their sandbox cannot be set up") && said.contains("--local-agent-shell no"),
        "{said}"
    );
    let mut off = xene("no");
    let mut stderr = off.stderr.take().unwrap();
    let started = Instant::now();
    let mut log = String::new();
    while !log.contains("listening on") {
        let mut chunk = [0u8; 4096];
        let n = std::io::Read::read(&mut stderr, &mut chunk).unwrap();
        assert!(n > 0 && started.elapsed() < DEADLINE, "{log}");
        log.push_str(&String::from_utf8_lossy(&chunk[..n]));
    }
    let _ = off.kill();
    let _ = off.wait();
}
