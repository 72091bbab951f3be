//! The data directory holds the admin token, the master key of secrets and
//! (by default) the SQLite database: whoever reads it can act as admin. So
//! it is made 0700 and every file Xene keeps in it 0600, older files are
//! made private at start, and a directory others can enter is refused.
//!
//! Modes are set on each file as it is made rather than with a process-wide
//! `umask 077`: the umask would be inherited by the built-in agent's steps
//! and change the modes of everything they build.

use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

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
    #[error("cannot make {path} private (mode 0600)")]
    Private {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Makes the data directory if it is missing (0700; missing parents get the
/// usual modes), refuses one that other users can enter, and makes the
/// files Xene keeps in it private.
///
/// Any group or world bit is refused, execute-only (0711) too: it lets
/// others open any file in it by name whose own mode allows, such as a
/// database left 0644 by an older Xene or a copy a person made with `cp`.
pub fn prepare(dir: &Path) -> Result<(), DataDirError> {
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
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(DataDirError::OpenToOthers {
            path: dir.to_path_buf(),
            mode,
            quoted: shell_quote(&dir.display().to_string()),
        });
    }
    for name in OWN_FILES {
        make_private(&dir.join(name))?;
    }
    Ok(())
}

/// Makes `dir` with mode 0700, and its missing parents with the usual modes.
fn create_private_dir(dir: &Path) -> Result<(), DataDirError> {
    let create = |source| DataDirError::Create {
        path: dir.to_path_buf(),
        source,
    };
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(create)?;
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
    make_private(path)?;
    for suffix in SQLITE_COMPANIONS {
        let mut companion = path.as_os_str().to_owned();
        companion.push(suffix);
        make_private(Path::new(&companion))?;
    }
    Ok(())
}

/// Takes group and world bits off a regular file, if it exists.
fn make_private(path: &Path) -> Result<(), DataDirError> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    let mode = meta.permissions().mode() & 0o7777;
    if !meta.is_file() || mode & 0o077 == 0 {
        return Ok(());
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
        DataDirError::Private {
            path: path.to_path_buf(),
            source,
        }
    })?;
    tracing::info!(path = %path.display(), was = %format!("{mode:04o}"), "made a file of Xene's private (0600)");
    Ok(())
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
    fn a_missing_dir_is_made_private_and_an_open_one_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b/xene");
        prepare(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        for open in [0o755, 0o711, 0o750, 0o701] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(open)).unwrap();
            let err = prepare(&dir).unwrap_err().to_string();
            assert!(
                err.contains(&format!("chmod 700 {}", dir.display())),
                "{err}"
            );
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let db = dir.join("xene.db");
        std::fs::write(&db, "").unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        prepare(&dir).unwrap();
        assert_eq!(mode(&db), 0o600);
    }
}
