//! The data directory holds the admin token, the master key of secrets and
//! (by default) the SQLite database: whoever reads it can act as admin. So
//! it is made 0700 and every file Xene keeps in it 0600, older files are
//! made private at start, and a directory others can enter, or that belongs
//! to another user (as OpenSSH's StrictModes), is refused.
//!
//! Modes are set on each file as it is made rather than with a process-wide
//! `umask 077`: the umask would be inherited by the built-in agent's steps
//! and change the modes of everything they build.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

/// Files Xene writes in the data directory; each is made private at start.
const OWN_FILES: &[&str] = &[
    "xene.db",
    "xene.db-wal",
    "xene.db-shm",
    "xene.db-journal",
    "admin-token",
    "admin-token.tmp",
    "secrets.key",
];

/// What SQLite writes beside a database file (it gives them the database
/// file's mode, so a private database keeps private companions).
const SQLITE_COMPANIONS: &[&str] = &["-wal", "-shm", "-journal"];

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("cannot create the data directory {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read the data directory {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the data directory {0} is not a directory")]
    NotADirectory(PathBuf),
    #[error(
        "the data directory {path} is open to other users (mode {mode:04o}), and it holds the admin token \
         and the keys: run `chmod 700 {quoted}` and start again"
    )]
    OpenToOthers {
        path: PathBuf,
        mode: u32,
        quoted: String,
    },
    #[error(
        "{path} belongs to uid {owner}, not to uid {me} that runs xene: its owner can read or replace \
         the admin token and the keys. Run xene as its owner, or give it to this user (`chown -R {me} {quoted}`)"
    )]
    NotOwner {
        path: PathBuf,
        owner: u32,
        me: u32,
        quoted: String,
    },
    #[error("{0} should be a regular file of Xene's and is not: move it away and start again")]
    NotAFile(PathBuf),
    #[error("cannot make {path} private (mode 0600)")]
    Private {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What `prepare` found.
#[derive(Debug, Clone, Copy, Default)]
pub struct Prepared {
    /// The SQLite database (or a file SQLite keeps beside it) was open to
    /// other users and has just been made private: whatever it holds may
    /// have been read, the token signing key an older Xene kept in it in
    /// clear too.
    pub database_was_open: bool,
}

/// Makes the data directory if it is missing (0700; missing parents at most
/// 0755), refuses one that other users can enter or that belongs to another
/// user, and makes the files Xene keeps in it private, and the SQLite
/// database of `database_url` wherever it is. Each of those files must
/// belong to the user running Xene too.
///
/// Any group or world bit is refused, execute-only (0711) too: it lets
/// others open any file in it by name whose own mode allows, such as a
/// database left 0644 by an older Xene or a copy a person made with `cp`.
pub fn prepare(dir: &Path, database_url: &str) -> Result<Prepared, DataDirError> {
    if !dir.exists() {
        create_private_dir(dir)?;
    }
    let meta = std::fs::metadata(dir).map_err(|source| DataDirError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(DataDirError::NotADirectory(dir.to_path_buf()));
    }
    check_owner(dir, &meta)?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(DataDirError::OpenToOthers {
            path: dir.to_path_buf(),
            mode,
            quoted: shell_quote(&dir.display().to_string()),
        });
    }
    // The database first: a leftover xene.db made private below says
    // nothing about a database elsewhere (PostgreSQL, say).
    let database_was_open = match sqlite_file(database_url) {
        Some(db) => sqlite_files_private(&db)?,
        None => false,
    };
    for name in OWN_FILES {
        make_private(&dir.join(name))?;
    }
    Ok(Prepared { database_was_open })
}

/// The file of a `sqlite:` URL, if it names one.
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let path = url
        .strip_prefix("sqlite:")?
        .trim_start_matches("//")
        .split('?')
        .next()
        .unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

/// Makes `dir` with mode 0700, and its missing parents with at most 0755
/// (`create_dir_all` asks for 0777: a umask of 000 left them writable by
/// everyone).
fn create_private_dir(dir: &Path) -> Result<(), DataDirError> {
    let create = |source| DataDirError::Create {
        path: dir.to_path_buf(),
        source,
    };
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        let mut missing = Vec::new();
        let mut at = parent;
        while !at.exists() {
            missing.push(at);
            match at.parent() {
                Some(up) if !up.as_os_str().is_empty() => at = up,
                _ => break,
            }
        }
        // 0755 masked by the umask: never more, so a umask of 077 still
        // gives 0700.
        for made in missing.into_iter().rev() {
            match std::fs::DirBuilder::new().mode(0o755).create(made) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(create(e)),
                _ => {}
            }
        }
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(create(e)),
        _ => Ok(()),
    }
}

/// Makes a missing SQLite database file 0600 before SQLite opens it (with
/// `create`), and the file and its companions private if they are not.
pub fn private_sqlite_file(path: &Path, create: bool) -> Result<(), DataDirError> {
    if create && !path.exists() {
        let made = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path);
        match made {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                return Err(DataDirError::Private {
                    path: path.to_path_buf(),
                    source: e,
                });
            }
            _ => {}
        }
    }
    sqlite_files_private(path).map(|_| ())
}

/// Makes a SQLite file and its companions private; true if one was not.
fn sqlite_files_private(path: &Path) -> Result<bool, DataDirError> {
    let mut tightened = make_private(path)?;
    for suffix in SQLITE_COMPANIONS {
        let mut companion = path.as_os_str().to_owned();
        companion.push(suffix);
        tightened |= make_private(Path::new(&companion))?;
    }
    Ok(tightened)
}

fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

fn check_owner(path: &Path, meta: &std::fs::Metadata) -> Result<(), DataDirError> {
    let me = euid();
    if meta.uid() == me {
        return Ok(());
    }
    Err(DataDirError::NotOwner {
        path: path.to_path_buf(),
        owner: meta.uid(),
        me,
        quoted: shell_quote(&path.display().to_string()),
    })
}

/// Takes group and world bits off a file of Xene's, if it exists; true if
/// it had some. It must be a regular file of this user's. A symbolic link
/// (Xene makes none: a person did) stands for the file it points to.
///
/// The mode is changed through a descriptor opened without following links
/// and checked with `fstat`, so a file swapped for a link meanwhile is not
/// followed to another file.
fn make_private(path: &Path) -> Result<bool, DataDirError> {
    let private = |source| DataDirError::Private {
        path: path.to_path_buf(),
        source,
    };
    let meta = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        other => other.map_err(private)?,
    };
    let link = meta.file_type().is_symlink();
    let meta = if link {
        match std::fs::metadata(path) {
            // A link to nothing: there is nothing to read.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            other => other.map_err(private)?,
        }
    } else {
        meta
    };
    if !meta.is_file() {
        return Err(DataDirError::NotAFile(path.to_path_buf()));
    }
    check_owner(path, &meta)?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(false);
    }
    // Opened only now: closing a descriptor of a database drops the
    // process's SQLite locks on it, and in the usual case nothing changes.
    let mut flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    if !link {
        flags |= OFlags::NOFOLLOW;
    }
    let file = std::fs::File::from(
        rustix::fs::open(path, flags, Mode::empty()).map_err(|e| private(e.into()))?,
    );
    let opened = file.metadata().map_err(private)?;
    if !opened.is_file() || opened.dev() != meta.dev() || opened.ino() != meta.ino() {
        return Err(DataDirError::NotAFile(path.to_path_buf()));
    }
    check_owner(path, &opened)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(private)?;
    tracing::warn!(path = %path.display(), was = %format!("{mode:04o}"), "a file of Xene's was open to other users: made it private (0600)");
    Ok(true)
}

/// A path as one shell word, for a command people copy.
fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+:@%,=".contains(&b));
    if plain {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn quotes_paths_for_the_shell() {
        assert_eq!(shell_quote("/var/lib/xene"), "/var/lib/xene");
        assert_eq!(shell_quote("/tmp/a b"), "'/tmp/a b'");
        assert_eq!(shell_quote("/tmp/it's"), r"'/tmp/it'\''s'");
    }

    #[test]
    fn sqlite_files_of_urls() {
        assert_eq!(
            sqlite_file("sqlite:///var/lib/x.db?mode=rwc"),
            Some(PathBuf::from("/var/lib/x.db"))
        );
        assert_eq!(sqlite_file("sqlite:x.db"), Some(PathBuf::from("x.db")));
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://h/db"), None);
    }

    #[test]
    fn a_missing_dir_is_made_private_and_an_open_one_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b/xene");
        prepare(&dir, "").unwrap();
        assert_eq!(mode(&dir), 0o700);
        for open in [0o755, 0o711, 0o750, 0o701] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(open)).unwrap();
            let err = prepare(&dir, "").unwrap_err().to_string();
            assert!(
                err.contains(&format!("chmod 700 {}", dir.display())),
                "{err}"
            );
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let db = dir.join("xene.db");
        std::fs::write(&db, "").unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        let url = format!("sqlite://{}?mode=rwc", db.display());
        assert!(prepare(&dir, &url).unwrap().database_was_open);
        assert_eq!(mode(&db), 0o600);
        assert!(!prepare(&dir, &url).unwrap().database_was_open);
        // A leftover SQLite file says nothing of a database elsewhere.
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(!prepare(&dir, "postgres://h/db").unwrap().database_was_open);
        assert_eq!(mode(&db), 0o600);
    }
}
