//! Shell steps under a supervisor (the sandbox of a server's built-in
//! agent): another user when root, Landlock around the workspace, and every
//! process of the step ended with it.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use xene_agent::runtime::sandbox::Sandbox;
use xene_core::status::{RunStatus, TaskStatus};

use crate::util::{self, run_cancelled_when_ready};

pub fn sandboxed(root: &std::path::Path) -> xene_agent::ExecutorConfig {
    let sandbox = Sandbox::new(
        env!("CARGO_BIN_EXE_xene-agent").into(),
        format!("agent-test-{}", std::process::id()),
        Vec::new(),
    )
    .expect("a sandbox");
    xene_agent::ExecutorConfig {
        shell: xene_agent::runtime::shell::ShellConfig {
            root: root.to_path_buf(),
            inherit_env: false,
            sandbox: Some(sandbox),
        },
        kill_grace: Duration::from_millis(300),
        ..util::config()
    }
}

/// Processes with `word` as one of their arguments.
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

fn tag() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{}", nanos % 1_000_000)
}

/// A sandboxed step writes its workspace and `$TMPDIR` only (a directory
/// open to all is still closed to it), runs as `nobody` under root, keeps
/// its exit code, and nothing it started outlives it, not even a process in
/// a session of its own.
#[tokio::test(flavor = "multi_thread")]
async fn a_sandboxed_step_writes_only_its_workspace_and_ends_whole() {
    let root = tempfile::tempdir().unwrap();
    let open = tempfile::tempdir().unwrap();
    std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let tag = tag();
    let yaml = format!(
        r#"name: boxed
pipelines:
  p:
    tasks:
      boxed:
        steps:
          - id -u
          - touch {open}/x 2>/dev/null || echo "denied outside"
          - echo kept > "$TMPDIR/f" && cat "$TMPDIR/f" && echo here > mine && cat mine
          - |
            (setsid sleep 300.{tag} > /dev/null 2>&1 &)
            sleep 301.{tag} > /dev/null 2>&1 &
            echo started
      fails:
        steps: [exit 3]
"#,
        open = open.path().display()
    );
    let run = util::run_on(&yaml, sandboxed(root.path())).await;
    assert_eq!(
        run.task("boxed").status,
        TaskStatus::Success,
        "{:?}",
        run.report
    );
    let uid = if rustix::process::geteuid().is_root() {
        "65534".to_string()
    } else {
        rustix::process::geteuid().as_raw().to_string()
    };
    assert_eq!(
        run.logs("boxed"),
        [uid.as_str(), "denied outside", "kept", "here", "started"]
    );
    assert!(!open.path().join("x").exists());
    assert_eq!(run.task("fails").steps[0].exit_code, Some(3));
    for word in [format!("300.{tag}"), format!("301.{tag}")] {
        assert!(processes_with(&word).is_empty(), "{word} outlived its step");
    }
}

/// A cancelled step that ignores SIGTERM is killed after the grace, with
/// what it set loose.
#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_sandboxed_step_ends_after_the_grace() {
    let root = tempfile::tempdir().unwrap();
    let tag = tag();
    let yaml = format!(
        r#"name: stubborn
pipelines:
  p:
    tasks:
      stubborn:
        steps:
          - |
            trap '' TERM
            (setsid sleep 302.{tag} > /dev/null 2>&1 &)
            echo ready
            sleep 100
"#
    );
    let run = run_cancelled_when_ready(&yaml, sandboxed(root.path())).await;
    assert_eq!(run.report.status, RunStatus::Cancelled, "{:?}", run.report);
    assert_eq!(run.task("stubborn").steps[0].exit_code, Some(128 + 9));
    assert!(processes_with(&format!("302.{tag}")).is_empty());
}

/// A step cannot connect to a Unix socket on a path (Landlock does not
/// check connect()): sockets of the server's user (systemd --user, D-Bus,
/// ssh-agent, docker) would run code outside the sandbox. Here a socket open
/// to all in a directory the step may pass through but not list.
#[tokio::test(flavor = "multi_thread")]
async fn a_sandboxed_step_cannot_connect_to_a_unix_socket() {
    let root = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let path = dir.path().join("s");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    listener.set_nonblocking(true).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
    let yaml = format!(
        r#"name: socket
pipelines:
  p:
    tasks:
      socket:
        steps:
          - |
            perl -MIO::Socket::UNIX -e '
              my $s = IO::Socket::UNIX->new(Peer => "{path}") or die "refused: $!\n";
              print "connected\n";' || true
"#,
        path = path.display()
    );
    let run = util::run_on(&yaml, sandboxed(root.path())).await;
    let logs = run.logs("socket");
    assert_eq!(
        logs,
        ["refused: Operation not permitted"],
        "{:?}",
        run.report
    );
    assert!(listener.accept().is_err(), "a connection came through");
}

/// Where each process of a chain leaves the step's session and environment
/// (`env -i setsid`), a cancel still ends all of it: 500 nested shells.
#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_sandboxed_step_ends_a_deep_chain() {
    let root = tempfile::tempdir().unwrap();
    let tag = format!("303.{}", tag());
    let yaml = format!(
        r#"name: chain
pipelines:
  p:
    tasks:
      chain:
        steps:
          - |
            trap '' TERM
            cat > chain.sh <<'END'
            trap '' TERM
            if [ "$1" -gt 0 ]; then
              /usr/bin/env -i /usr/bin/setsid /bin/sh "$PWD/chain.sh" $(($1 - 1)) "$2"
            else
              echo ready
              /bin/sleep 1000
            fi
            END
            sh "$PWD/chain.sh" 500 {tag}
"#
    );
    let run = run_cancelled_when_ready(&yaml, sandboxed(root.path())).await;
    assert_eq!(run.report.status, RunStatus::Cancelled, "{:?}", run.report);
    let left = processes_with(&tag);
    for &pid in &left {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(pid as i32).unwrap(),
            rustix::process::Signal::KILL,
        );
    }
    assert!(
        left.is_empty(),
        "{} processes of the chain outlived it",
        left.len()
    );
}

/// A step has no terminal (nothing in /dev/pts, where the server user's
/// terminals are) and no capabilities left to pass on.
#[tokio::test(flavor = "multi_thread")]
async fn a_sandboxed_step_has_no_terminal_and_no_capabilities() {
    let root = tempfile::tempdir().unwrap();
    let pts = Terminal::open();
    let yaml = format!(
        r#"name: caps
pipelines:
  p:
    tasks:
      caps:
        steps:
          - |
            (: <> /dev/ptmx) 2> /dev/null && echo "ptmx open" || echo "ptmx closed"
            (: < {pts}) 2> /dev/null && echo "pts open" || echo "pts closed"
          - grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/self/status
"#,
        pts = pts.path
    );
    let run = util::run_on(&yaml, sandboxed(root.path())).await;
    let logs = run.logs("caps");
    assert_eq!(logs[..2], ["ptmx closed", "pts closed"], "{:?}", run.report);
    for line in &logs[2..] {
        let (name, value) = line.split_once(':').unwrap();
        // Without CAP_SETPCAP the bounding set cannot be dropped.
        if name == "CapBnd" && !rustix::process::geteuid().is_root() {
            continue;
        }
        assert_eq!(u64::from_str_radix(value.trim(), 16).unwrap(), 0, "{line}");
    }
}

/// The supervisor compares its parent with the pid the server gave it: one
/// whose parent is not that process (it died between the fork and the
/// check) runs nothing.
#[test]
fn a_supervisor_whose_server_is_gone_runs_nothing() {
    use xene_agent::runtime::supervisor;
    let root = tempfile::tempdir().unwrap();
    let work = root.path().join("w");
    let tmp = root.path().join("t");
    for dir in [&work, &tmp] {
        std::fs::create_dir(dir).unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let nobody = rustix::process::geteuid()
        .is_root()
        .then_some((65534u32, 65534u32));
    // Pid 1 is never this test's pid: the server the supervisor was told
    // about is not its parent.
    let spec = serde_json::json!({
        "workspace": work,
        "tmp": tmp,
        "user": nobody,
        "grace_ms": 100,
        "parent": 1,
        "script": "echo ran > ran",
    });
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_xene-agent"))
        .args([supervisor::ARG, "test-parent", &spec.to_string()])
        .current_dir(&work)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .status()
        .unwrap();
    assert!(!work.join("ran").exists(), "the step ran ({status})");
    assert_eq!(status.code(), Some(128 + 9));
}

/// Another user's process with a supervisor's command line (which anyone
/// can read in /proc) is not taken for a leftover: it neither keeps a
/// non-root server from starting nor gets signalled. Root only (the test
/// runs it as another uid).
#[test]
fn another_users_lookalike_is_no_leftover() {
    use std::os::unix::process::CommandExt;
    use xene_agent::runtime::{sandbox, supervisor};
    if !rustix::process::geteuid().is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // `sh ARG OWNER` runs the file named ARG: its argv is a supervisor's.
    // Started in the background, so that it is not this test's child.
    std::fs::write(dir.path().join(supervisor::ARG), "sleep 30\nexit 0\n").unwrap();
    let owner = format!("lookalike-{}@/data", tag());
    let status = std::process::Command::new("/bin/sh")
        .args(["-c", "/bin/sh \"$0\" \"$1\" &", supervisor::ARG, &owner])
        .current_dir(dir.path())
        .uid(4242)
        .gid(4242)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let started = std::time::Instant::now();
    let pid = loop {
        if let Some(&pid) = supervisor::leftovers(&owner, &[4242]).first() {
            break pid;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "never started");
        std::thread::sleep(Duration::from_millis(10));
    };
    let ended = supervisor::end_leftovers(
        &owner,
        &sandbox::supervisor_uids(),
        Duration::from_millis(200),
    );
    let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| !stat.contains(") Z"));
    let sleep =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    for pid in sleep.split_whitespace().chain([pid.to_string().as_str()]) {
        let pid = rustix::process::Pid::from_raw(pid.parse().unwrap()).unwrap();
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
    assert_eq!(ended, Ok(0));
    assert!(alive, "another user's process was signalled");
}

/// A terminal of this process's, open to all by its mode (only the sandbox
/// keeps a step out of it).
struct Terminal {
    master: i32,
    path: String,
}

impl Terminal {
    fn open() -> Self {
        // SAFETY: plain libc calls on a descriptor this owns; the name is
        // read into a buffer of the given size.
        #[allow(unsafe_code)]
        unsafe {
            let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
            assert!(master >= 0, "{}", std::io::Error::last_os_error());
            assert_eq!(libc::grantpt(master), 0);
            assert_eq!(libc::unlockpt(master), 0);
            let mut name = [0 as libc::c_char; 128];
            assert_eq!(libc::ptsname_r(master, name.as_mut_ptr(), name.len()), 0);
            let path = std::ffi::CStr::from_ptr(name.as_ptr())
                .to_string_lossy()
                .into_owned();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
            Self { master, path }
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        // SAFETY: closes the descriptor this owns.
        #[allow(unsafe_code)]
        unsafe {
            libc::close(self.master);
        }
    }
}
