//! The per-step supervisor of a sandboxed shell step: the agent's (or the
//! server's) own binary, re-executed with [`ARG`] first, which runs one
//! step's `sh` and answers for every process the step starts.
//!
//! It is a separate, freshly executed process, so the step can inherit
//! nothing of the server (memory, open files, environment). Before it starts
//! `sh` it
//! - becomes a child subreaper: whatever the step starts stays below it,
//!   even through `setsid`, a double fork or `env -i`;
//! - drops to the sandbox's user (`nobody` when the server is root),
//!   becomes non-dumpable, and asks for a signal when its parent dies (after
//!   the user change, which would clear that request);
//! - clears its capabilities (ambient, inheritable, and the bounding set
//!   where it may);
//! - starts `sh` under a seccomp filter that refuses Unix sockets (see
//!   [`confine`]) and inside a Landlock domain (system directories
//!   read-only, the step's workspace and tmp dir writable, no signals or
//!   abstract sockets out of the domain), every right of which the kernel
//!   must enforce, so the step cannot read the server's data directory,
//!   reach its user's services or signal the supervisor.
//!
//! When `sh` ends, or the parent dies, or a cancel outlives its grace, it
//! kills every process left below it (however deep, never giving up while
//! one is left) and exits with `sh`'s status (128+N for a signal).

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};
use serde::{Deserialize, Serialize};

mod confine;

/// The hidden first argument that makes the binary a step supervisor.
pub const ARG: &str = "__xene-step-supervisor";

/// Directories every step may read and execute from.
pub const READ_PATHS: [&str; 11] = [
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt", "/proc", "/sys",
];

/// Files in [`READ_PATHS`] that are often links to elsewhere: their
/// targets are readable too.
const LINKED_FILES: [&str; 3] = ["/etc/resolv.conf", "/etc/hosts", "/etc/localtime"];

/// Device files a step may read and write (`/dev` itself may be listed).
/// No terminal: steps have none, and /dev/pts holds the server user's.
const DEVICE_FILES: [&str; 5] = [
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
];

/// Exit status of a supervisor that could not set the sandbox up (the
/// reason is on the step's stderr).
pub const SETUP_FAILED: i32 = 125;

/// How long the supervisor kills what is below it before it says so (it
/// goes on: nothing limits the number of a step's processes, and one left
/// alive would outlive the step).
const KILL_PATIENCE: Duration = Duration::from_secs(5);

/// The longest pause between two passes of killing.
const KILL_PAUSE_MAX: Duration = Duration::from_millis(100);

/// How often the supervisor checks that its parent is still there (the
/// parent-death signal follows the thread that forked, not the process).
const PARENT_POLL: Duration = Duration::from_millis(200);

/// What one supervisor runs, as its last argument (JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spec {
    /// The step's working directory, writable.
    pub workspace: PathBuf,
    /// The step's `TMPDIR`, writable.
    pub tmp: PathBuf,
    /// Further directories the step may write.
    #[serde(default)]
    pub writable: Vec<PathBuf>,
    /// Uid and gid to run as (the supervisor starts as root then).
    pub user: Option<(u32, u32)>,
    /// How long `sh` has after a cancel before everything is killed.
    pub grace_ms: u64,
    /// The pid of the process that starts the supervisor: a supervisor
    /// whose parent is another one (its server died, even before the
    /// supervisor could look) runs nothing and ends.
    pub parent: u32,
    pub script: String,
}

/// Runs the supervisor when the process was started as one: call it first
/// thing in `main`, before any thread starts. `None` otherwise.
pub fn run_if_asked() -> Option<i32> {
    let mut args = std::env::args_os().skip(1);
    if args.next()? != ARG {
        return None;
    }
    // The owner (who started it, for leftovers) is only read from outside.
    let _owner = args.next();
    let spec: Option<Spec> = args
        .next()
        .and_then(|spec| serde_json::from_slice(spec.as_bytes()).ok());
    Some(match spec {
        Some(spec) => supervise(&spec),
        None => {
            eprintln!("xene: the step supervisor was started without a valid step");
            SETUP_FAILED
        }
    })
}

/// The command line of a supervisor: `exe ARG OWNER SPEC`.
pub fn args(owner: &str, spec: &Spec) -> Vec<OsString> {
    vec![
        ARG.into(),
        owner.into(),
        serde_json::to_string(spec)
            .expect("a spec serialises")
            .into(),
    ]
}

/// Whether the process that started the supervisor is still its parent.
fn parent_alive(spec: &Spec) -> bool {
    rustix::process::getppid().is_some_and(|p| p.as_raw_nonzero().get() as u32 == spec.parent)
}

fn supervise(spec: &Spec) -> i32 {
    let mut sh = match start(spec) {
        Ok(Some(sh)) => sh,
        // The parent died before the step started: nothing to do.
        Ok(None) => return 128 + libc::SIGKILL,
        Err(e) => {
            eprintln!("xene: cannot sandbox this step: {e}");
            return SETUP_FAILED;
        }
    };
    let sh_pid = sh.id() as i32;
    let mut cancelled: Option<Instant> = None;
    let grace = Duration::from_millis(spec.grace_ms);
    let code = loop {
        let signal = wait_signal(PARENT_POLL);
        if signal == Some(libc::SIGTERM) || signal == Some(libc::SIGINT) {
            cancelled.get_or_insert_with(Instant::now);
        }
        if let Some(status) = reap(sh_pid) {
            break status;
        }
        if !parent_alive(spec) {
            // The server is gone: nobody reads the step's output or takes
            // its result, and a restarted server would run it again.
            kill_descendants();
            return 128 + libc::SIGKILL;
        }
        if cancelled.is_some_and(|at| at.elapsed() >= grace) {
            kill_descendants();
            let _ = sh.wait();
            break 128 + libc::SIGKILL;
        }
    };
    // The step's background processes end with it.
    kill_descendants();
    code
}

/// Sets the process up and starts `sh`; `None` when the parent is gone.
fn start(spec: &Spec) -> std::io::Result<Option<std::process::Child>> {
    close_inherited_fds()?;
    let me = rustix::process::getpid();
    rustix::process::set_child_subreaper(Some(me))?;
    // Before the user change: dropping the bounding set takes root.
    confine::drop_capabilities()?;
    if let Some((uid, gid)) = spec.user {
        become_user(uid, gid)?;
    }
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)?;
    block_signals()?;
    // After the user change, which clears it.
    rustix::process::set_parent_process_death_signal(Some(Signal::USR1))?;
    if !parent_alive(spec) {
        return Ok(None);
    }
    let mut writable = vec![spec.workspace.clone(), spec.tmp.clone()];
    writable.extend(spec.writable.iter().cloned());
    let mut ruleset = Some(ruleset(&writable)?);
    let filter = confine::filter();
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-e")
        .arg("-c")
        .arg(&spec.script)
        .env("TMPDIR", &spec.tmp);
    // SAFETY: the supervisor has one thread, so the forked child may do
    // anything the parent could; the signal mask is reset by `Command`.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(move || {
            let ruleset = ruleset
                .take()
                .ok_or_else(|| std::io::Error::other("spawned twice"))?;
            filter.install()?;
            enforce(ruleset)
        });
    }
    cmd.spawn().map(Some)
}

/// The step's Landlock rules, opened before the fork.
fn ruleset(writable: &[PathBuf]) -> std::io::Result<landlock::RulesetCreated> {
    use landlock::{
        ABI, Access, AccessFs, CompatLevel, Compatible, Ruleset, RulesetAttr, RulesetCreatedAttr,
        Scope, path_beneath_rules,
    };
    let abi = ABI::V6;
    let all = AccessFs::from_all(abi);
    let read = AccessFs::from_read(abi);
    let file_rw =
        AccessFs::from_read(abi) | AccessFs::WriteFile | AccessFs::Truncate | AccessFs::IoctlDev;
    for dir in writable {
        // A missing writable directory would silently be left out.
        if !dir.is_dir() {
            return Err(std::io::Error::other(format!(
                "{} is not a directory this user (uid {}) can reach",
                dir.display(),
                rustix::process::geteuid().as_raw()
            )));
        }
    }
    let error = |e: landlock::RulesetError| {
        std::io::Error::other(format!(
            "this kernel's Landlock cannot enforce every rule of the sandbox ({e}); Linux 6.12 or later is needed"
        ))
    };
    // Landlock checks the file a link leads to: /etc/resolv.conf often
    // leads into /run (systemd-resolved), and without it no name resolves.
    let linked: Vec<PathBuf> = LINKED_FILES
        .iter()
        .filter_map(|link| std::fs::canonicalize(link).ok())
        .filter(|target| target.is_file())
        .collect();
    // Every right, or none: the crate's best effort would silently leave
    // out what an older kernel lacks (signal and abstract-socket scoping,
    // truncate, ioctl).
    Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(all)
        .map_err(error)?
        .scope(Scope::from_all(abi))
        .map_err(error)?
        .create()
        .map_err(error)?
        .add_rules(path_beneath_rules(READ_PATHS, read))
        .map_err(error)?
        .add_rules(path_beneath_rules(["/dev"], AccessFs::ReadDir))
        .map_err(error)?
        .add_rules(path_beneath_rules(&linked, read))
        .map_err(error)?
        .add_rules(path_beneath_rules(DEVICE_FILES, file_rw))
        .map_err(error)?
        // Shared by every step (and process) of this user: not a place
        // for anything private.
        .add_rules(path_beneath_rules(["/dev/shm"], all))
        .map_err(error)?
        .add_rules(path_beneath_rules(writable, all))
        .map_err(error)
}

fn enforce(ruleset: landlock::RulesetCreated) -> std::io::Result<()> {
    let status = ruleset
        .restrict_self()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    match status.ruleset {
        landlock::RulesetStatus::FullyEnforced => {}
        landlock::RulesetStatus::NotEnforced => {
            return Err(std::io::Error::other(
                "Landlock is not available in this kernel (Linux 6.12 or later with Landlock enabled is needed)",
            ));
        }
        landlock::RulesetStatus::PartiallyEnforced => {
            return Err(std::io::Error::other(
                "this kernel's Landlock enforces only part of the sandbox (Linux 6.12 or later is needed)",
            ));
        }
    }
    Ok(())
}

/// Kills every process below this one until none is left. Each pass stops
/// the whole tree, so nothing in it forks or moves while it is killed, then
/// kills all of it; what was forked in between is handed to this process
/// (a subreaper) and found by the next pass. It never gives up while a
/// process is left: it would outlive the step.
fn kill_descendants() {
    let me = std::process::id();
    let started = Instant::now();
    let mut pause = Duration::from_millis(1);
    let mut said = false;
    loop {
        while reap_any() {}
        let tree = descendants(me);
        if tree.is_empty() {
            return;
        }
        for &pid in &tree {
            signal(pid, Signal::STOP);
        }
        for &pid in &tree {
            signal(pid, Signal::KILL);
        }
        if !said && started.elapsed() > KILL_PATIENCE {
            said = true;
            eprintln!(
                "xene: processes of this step are still alive after {KILL_PATIENCE:?}; still killing them"
            );
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(KILL_PAUSE_MAX);
    }
}

/// The pids whose parent is `parent`: from the kernel's lists (one per
/// thread: a child belongs to the thread that forked it) when it keeps
/// them, else from every process's `stat`.
pub(crate) fn children_of(parent: u32) -> Vec<u32> {
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{parent}/task"))
        && std::fs::metadata(format!("/proc/{parent}/task/{parent}/children")).is_ok()
    {
        return tasks
            .flatten()
            .take(100_000)
            .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
            .flat_map(|text| {
                text.split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect::<Vec<u32>>()
            })
            .collect();
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| parent_of(pid) == Some(parent))
        .collect()
}

/// The parent pid in `/proc/PID/stat`.
pub(crate) fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name in parentheses: state, ppid.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Reaps `sh` if it ended: its exit code, or 128+N for signal N.
fn reap(sh: i32) -> Option<i32> {
    let mut status = 0;
    // SAFETY: waitpid writes only to `status`.
    #[allow(unsafe_code)]
    let pid = unsafe { libc::waitpid(sh, &mut status, libc::WNOHANG) };
    if pid != sh {
        reap_orphans(sh);
        return None;
    }
    let status = std::process::ExitStatus::from_raw(status);
    status.code().or_else(|| status.signal().map(|s| 128 + s))
}

/// Reaps the ended processes handed to the supervisor (not `sh`, whose
/// status is wanted), so a long step leaves no pile of zombies.
fn reap_orphans(sh: i32) {
    let me = std::process::id();
    for pid in children_of(me) {
        let Ok(pid) = i32::try_from(pid) else {
            continue;
        };
        if pid != sh && state_of(pid as u32) == Some('Z') {
            let mut status = 0;
            // SAFETY: waitpid writes only to `status`.
            #[allow(unsafe_code)]
            unsafe {
                libc::waitpid(pid, &mut status, libc::WNOHANG)
            };
        }
    }
}

fn state_of(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().next()?.chars().next()
}

/// Reaps one ended child; false when there is none.
fn reap_any() -> bool {
    let mut status = 0;
    // SAFETY: waitpid writes only to `status`.
    #[allow(unsafe_code)]
    let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    pid > 0
}

const WATCHED: [i32; 5] = [
    libc::SIGCHLD,
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGUSR1,
];

fn watched_set() -> libc::sigset_t {
    // SAFETY: the set is initialised by sigemptyset before use.
    #[allow(unsafe_code)]
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in WATCHED {
            libc::sigaddset(&mut set, signal);
        }
        set
    }
}

/// The watched signals wait in a queue instead of acting, so the loop sees
/// each of them (a TERM from a cancel does not kill the supervisor).
fn block_signals() -> std::io::Result<()> {
    let set = watched_set();
    // SAFETY: a valid set; the old mask is not wanted.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The next watched signal within `timeout`, if any.
fn wait_signal(timeout: Duration) -> Option<i32> {
    let set = watched_set();
    let timeout = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: valid set and timeout; the info is not wanted.
    #[allow(unsafe_code)]
    let signal = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &timeout) };
    (signal > 0).then_some(signal)
}

/// Drops every group and becomes `uid`:`gid`, for good.
fn become_user(uid: u32, gid: u32) -> std::io::Result<()> {
    // SAFETY: plain system calls; the supervisor has one thread, so the
    // credentials change for all of it.
    #[allow(unsafe_code)]
    let failed = unsafe {
        libc::setgroups(0, std::ptr::null()) != 0
            || libc::setresgid(gid, gid, gid) != 0
            || libc::setresuid(uid, uid, uid) != 0
    };
    if failed {
        return Err(std::io::Error::last_os_error());
    }
    if rustix::process::geteuid().as_raw() != uid || rustix::process::getegid().as_raw() != gid {
        return Err(std::io::Error::other("the user change did not hold"));
    }
    Ok(())
}

/// Whatever the parent left open without close-on-exec stays out of the
/// step: by close_range, else one by one as /proc/self/fd lists them.
fn close_inherited_fds() -> std::io::Result<()> {
    // SAFETY: closes descriptors this fresh process does not use (it has
    // opened nothing of its own yet).
    #[allow(unsafe_code)]
    let rc = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if rc == 0 {
        return Ok(());
    }
    let cannot = |e: std::io::Error| {
        std::io::Error::other(format!("cannot close the descriptors it inherited: {e}"))
    };
    // Read all first: the listing's own descriptor is among them.
    let open: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map_err(cannot)?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in open {
        // SAFETY: as above; EBADF (the listing's own, now closed) is fine.
        #[allow(unsafe_code)]
        unsafe {
            libc::close(fd)
        };
    }
    Ok(())
}

/// Supervisors started for `owner` by an earlier process, run by one of
/// `uids` (another user's process with the same command line is not one):
/// their pids.
pub fn leftovers(owner: &str, uids: &[u32]) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me && parent_of(pid) != Some(me))
        .filter(|&pid| real_uid(pid).is_some_and(|uid| uids.contains(&uid)))
        .filter(|&pid| {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let mut args = cmdline.split(|&b| b == 0).skip(1);
            args.next() == Some(ARG.as_bytes()) && args.next() == Some(owner.as_bytes())
        })
        .collect()
}

/// The real uid in `/proc/PID/status`.
fn real_uid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Ends the supervisors a previous process left for `owner` under one of
/// `uids` (each kills its step's processes on TERM); SIGKILL, with the
/// processes below them, for those still there at half of `deadline`. The
/// pids still alive at the deadline, which is an error: their steps may
/// still run.
pub fn end_leftovers(owner: &str, uids: &[u32], deadline: Duration) -> Result<usize, Vec<u32>> {
    let found = leftovers(owner, uids);
    if found.is_empty() {
        return Ok(0);
    }
    for &pid in &found {
        signal(pid, Signal::TERM);
    }
    let started = Instant::now();
    let mut forced = false;
    loop {
        let alive = leftovers(owner, uids);
        if alive.is_empty() {
            return Ok(found.len());
        }
        if started.elapsed() >= deadline {
            return Err(alive);
        }
        if !forced && started.elapsed() >= deadline / 2 {
            forced = true;
            for pid in alive {
                for below in descendants(pid) {
                    signal(below, Signal::KILL);
                }
                signal(pid, Signal::KILL);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every process below `pid`, bounded.
fn descendants(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut next = vec![pid];
    while let Some(parent) = next.pop() {
        for child in children_of(parent) {
            if found.len() >= 100_000 {
                return found;
            }
            found.push(child);
            next.push(child);
        }
    }
    found
}

fn signal(pid: u32, signal: Signal) {
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .filter(|&p| p > 1)
        .and_then(Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// Closes `/proc/<self>/environ`, `fd` and `mem` to other processes of the
/// same user, and ptrace by them.
pub fn make_undumpable() -> std::io::Result<()> {
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)?;
    Ok(())
}
