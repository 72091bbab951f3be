//! A fresh database per test: a SQLite file in a private directory, or a
//! throwaway PostgreSQL server.

use std::path::{Path, PathBuf};

use crate::postgres::Postgres;
use crate::tempdir::private_tempdir;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Every backend: storage tests run on each.
pub const BACKENDS: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

/// The URL of a SQLite database `xene.db` in `dir`, created on first use.
pub fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}?mode=rwc", dir.join("xene.db").display())
}

/// A database for one test, with a private directory for the server's data
/// beside it; a PostgreSQL server stops when this is dropped.
pub struct TestDb {
    pub url: String,
    pub dir: tempfile::TempDir,
    postgres: Option<Postgres>,
}

impl TestDb {
    pub fn new(backend: Backend) -> Self {
        // Private, as the server asks of a data directory (tempfile's are
        // not).
        let dir = private_tempdir();
        match backend {
            Backend::Sqlite => Self {
                url: sqlite_url(dir.path()),
                dir,
                postgres: None,
            },
            Backend::Postgres => {
                let pg = Postgres::start();
                Self {
                    url: pg.url(),
                    dir,
                    postgres: Some(pg),
                }
            }
        }
    }

    /// Every file the database keeps its data in: the SQLite file with its
    /// journal, or the PostgreSQL cluster's files (WAL included).
    pub fn files(&self) -> Vec<PathBuf> {
        match &self.postgres {
            Some(pg) => files_under(&pg.data_dir()),
            None => ["xene.db", "xene.db-wal", "xene.db-shm"]
                .iter()
                .map(|f| self.dir.path().join(f))
                .filter(|p| p.exists())
                .collect(),
        }
    }
}

/// Every file below `dir`, at any depth (tests grep them for what must not
/// be stored).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}
