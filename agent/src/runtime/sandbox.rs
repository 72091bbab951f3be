//! The sandbox of shell steps that run beside a server: which binary
//! supervises them (see [`super::supervisor`]), as whom they run, and the
//! check, made once at start, that the whole setup works on this machine.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::supervisor;

#[derive(Debug, Clone)]
pub struct Sandbox {
    /// The binary that becomes each step's supervisor (`xene`, `xene-agent`).
    pub exe: PathBuf,
    /// Names the process that starts the supervisors (on their command
    /// line), so that its next start finds those it left behind.
    pub owner: String,
    /// The uid and gid steps run as; `None` keeps this process's own.
    pub user: Option<(u32, u32)>,
    /// Directories steps may write besides their workspace.
    pub writable: Vec<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "this process runs as root, and steps would run as root too: there is no user `nobody` in /etc/passwd to run them as"
    )]
    NoNobody,
    #[error("{path} is inside {dir}, which every step may read", path = path.display())]
    Readable { path: PathBuf, dir: String },
    #[error("cannot prepare the sandbox check in {}: {source}", dir.display())]
    Io {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("the step supervisor {} cannot start: {source}", exe.display())]
    Start {
        exe: PathBuf,
        source: std::io::Error,
    },
    #[error("a sandboxed step cannot run here: {0}")]
    Broken(String),
}

impl Sandbox {
    /// Steps run as `nobody` when this process is root, else as this user.
    pub fn new(exe: PathBuf, owner: String, writable: Vec<PathBuf>) -> Result<Self, SandboxError> {
        let user = if rustix::process::geteuid().is_root() {
            Some(nobody().ok_or(SandboxError::NoNobody)?)
        } else {
            None
        };
        Ok(Self {
            exe,
            owner,
            user,
            writable,
        })
    }

    /// Refuses a path steps could read: one inside the directories every
    /// step may read (by Landlock), unless the steps' user is kept out of
    /// it by its mode (steps run as another user, and it is not readable
    /// by others).
    pub fn refuse_readable(&self, path: &Path) -> Result<(), SandboxError> {
        let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        // A directory steps may write is theirs whatever the modes.
        if let Some(dir) = self
            .writable
            .iter()
            .find(|dir| path.starts_with(dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf())))
        {
            return Err(SandboxError::Readable {
                path,
                dir: dir.display().to_string(),
            });
        }
        let Some(dir) = supervisor::READ_PATHS
            .iter()
            .find(|dir| path.starts_with(dir))
        else {
            return Ok(());
        };
        let closed = || {
            use std::os::unix::fs::MetadataExt;
            let mode = std::fs::metadata(&path).map(|m| m.mode()).unwrap_or(0o777);
            self.user.is_some() && mode & 0o044 == 0
        };
        if closed() {
            return Ok(());
        }
        Err(SandboxError::Readable {
            path,
            dir: dir.to_string(),
        })
    }

    /// Runs one empty step end to end under a supervisor in `root` (the
    /// work directory): the user change, the parent-death signal, Landlock.
    pub fn probe(&self, root: &Path) -> Result<(), SandboxError> {
        let io = |source| SandboxError::Io {
            dir: root.to_path_buf(),
            source,
        };
        // Unique: servers in one process (tests) share the work directory.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = root.join(format!("probe-{}-{n}", std::process::id()));
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp).map_err(io)?;
        let result = (|| {
            self.give_to_steps(&dir).map_err(io)?;
            self.give_to_steps(&tmp).map_err(io)?;
            let spec = supervisor::Spec {
                workspace: dir.clone(),
                tmp: tmp.clone(),
                writable: self.writable.clone(),
                user: self.user,
                grace_ms: 1000,
                parent: std::process::id(),
                script: "exit 0".into(),
            };
            let output = std::process::Command::new(&self.exe)
                .args(supervisor::args(&self.owner, &spec))
                .current_dir(&dir)
                .env_clear()
                .env("PATH", super::CLEAN_PATH)
                .stdin(std::process::Stdio::null())
                .output()
                .map_err(|source| SandboxError::Start {
                    exe: self.exe.clone(),
                    source,
                })?;
            if output.status.success() {
                return Ok(());
            }
            let said = String::from_utf8_lossy(&output.stderr);
            let said = said.trim();
            Err(SandboxError::Broken(if said.is_empty() {
                format!("the step supervisor ended with {}", output.status)
            } else {
                said.trim_start_matches("xene: ").to_string()
            }))
        })();
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    /// Makes `dir` the steps' own when they run as another user.
    pub fn give_to_steps(&self, dir: &Path) -> std::io::Result<()> {
        if let Some((uid, gid)) = self.user {
            std::os::unix::fs::chown(dir, Some(uid), Some(gid))?;
        }
        Ok(())
    }

    /// Lets the steps' user pass through `dir` (but not list it) when they
    /// run as another user.
    pub fn open_to_steps(&self, dir: &Path) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        if self.user.is_some() {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))?;
        }
        Ok(())
    }
}

/// How long a start waits for the supervisors of a previous process.
pub const LEFTOVER_DEADLINE: Duration = Duration::from_secs(10);

/// The real uids a supervisor of this process's steps has: this process's,
/// and `nobody`'s when it is root (a supervisor becomes the steps' user).
/// Another user's process is never taken for one.
pub fn supervisor_uids() -> Vec<u32> {
    let me = rustix::process::getuid().as_raw();
    let mut uids = vec![me];
    if rustix::process::geteuid().is_root()
        && let Some((uid, _)) = nobody()
    {
        uids.push(uid);
    }
    uids
}

/// `nobody`'s uid and gid, from /etc/passwd.
fn nobody() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.first() != Some(&"nobody") || fields.len() < 4 {
            return None;
        }
        let uid: u32 = fields[2].parse().ok()?;
        let gid: u32 = fields[3].parse().ok()?;
        // Never root again by a strange passwd.
        (uid != 0 && gid != 0).then_some((uid, gid))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox(user: Option<(u32, u32)>) -> Sandbox {
        Sandbox {
            exe: "/proc/self/exe".into(),
            owner: "test".into(),
            user,
            writable: Vec::new(),
        }
    }

    #[test]
    fn secrets_where_steps_may_read_are_refused() {
        let nobody = Some((65534, 65534));
        // Outside every readable directory: fine.
        let private = tempfile::tempdir().unwrap();
        assert!(sandbox(None).refuse_readable(private.path()).is_ok());
        // Readable by others inside one: refused, whoever steps run as.
        for user in [None, nobody] {
            let e = sandbox(user).refuse_readable(Path::new("/etc/passwd"));
            assert!(
                e.unwrap_err().to_string().contains("inside /etc"),
                "{user:?}"
            );
        }
        // Steps of the same user pass any mode.
        assert!(
            sandbox(None)
                .refuse_readable(Path::new("/proc/self"))
                .is_err()
        );
        // Nor is a secret inside a directory steps may write.
        let mut open = sandbox(nobody);
        open.writable = vec![private.path().to_path_buf()];
        assert!(open.refuse_readable(&private.path().join("data")).is_err());
    }
}
