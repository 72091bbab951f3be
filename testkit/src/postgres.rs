//! A throwaway PostgreSQL server from Debian's packages, for tests and
//! benchmarks.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A throwaway PostgreSQL server on a free port. The cluster is initialised
/// once into `target/` and copied per test, because initdb is the slow part.
pub struct Postgres {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Postgres {
    pub fn start() -> Self {
        let bin = postgres_bin_dir();
        let template = cluster_template(&bin);
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        copy_dir(&template, &data);
        // PostgreSQL refuses a data directory others can read.
        std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        let owner = postgres_user();
        chown_tree(dir.path(), owner);
        let port = crate::net::free_port();
        let mut cmd = Command::new(bin.join("postgres"));
        cmd.arg("-D")
            .arg(&data)
            .args([
                "-p",
                &port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
            ])
            .arg("-k")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("postgres.log")).unwrap());
        if let Some((uid, gid)) = owner {
            cmd.uid(uid).gid(gid);
        }
        let child = cmd
            .spawn()
            .expect("postgres starts (apt-get install postgresql)");
        let pg = Self {
            port,
            child,
            _dir: dir,
        };
        pg.wait_ready();
        pg
    }

    /// The cluster's files (tests grep them for what must not be stored).
    pub fn data_dir(&self) -> PathBuf {
        self._dir.path().join("data")
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn wait_ready(&self) {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                // Accepting TCP is not accepting queries: give start-up a beat.
                let ready = Command::new(postgres_bin_dir().join("pg_isready"))
                    .args([
                        "-h",
                        "127.0.0.1",
                        "-p",
                        &self.port.to_string(),
                        "-U",
                        "postgres",
                    ])
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                if ready {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("postgres did not start on port {}", self.port);
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn postgres_bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (apt-get install postgresql)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("postgres").is_file())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("a PostgreSQL server binary under /usr/lib/postgresql")
}

/// The uid/gid of the `postgres` user when running as root (PostgreSQL
/// refuses to run as root); `None` when running as anyone else.
fn postgres_user() -> Option<(u32, u32)> {
    let uid = String::from_utf8(Command::new("id").arg("-u").output().ok()?.stdout).ok()?;
    if uid.trim() != "0" {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.starts_with("postgres:"))?;
    let fields: Vec<&str> = line.split(':').collect();
    Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?))
}

fn cluster_template(bin: &Path) -> PathBuf {
    let target = crate::bins::target_dir();
    let version = bin
        .parent()
        .and_then(|p| p.file_name())
        .unwrap()
        .to_string_lossy()
        .to_string();
    let template = target.join(format!("pg-template-{version}"));
    if template.join("PG_VERSION").is_file() {
        return template;
    }
    // Tests run in parallel processes: build in a private dir, then rename.
    std::fs::create_dir_all(&target).unwrap();
    let building = tempfile::tempdir_in(&target).expect("temp dir");
    let owner = postgres_user();
    chown_tree(building.path(), owner);
    let data = building.path().join("data");
    let mut cmd = Command::new(bin.join("initdb"));
    cmd.arg("-D")
        .arg(&data)
        .args(["-A", "trust", "-U", "postgres", "--no-sync"])
        .stdout(Stdio::null());
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid);
    }
    let status = cmd.status().expect("initdb runs");
    assert!(status.success(), "initdb failed");
    if std::fs::rename(&data, &template).is_err() {
        assert!(
            template.join("PG_VERSION").is_file(),
            "cannot place the PostgreSQL template"
        );
    }
    template
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

fn chown_tree(path: &Path, owner: Option<(u32, u32)>) {
    let Some((uid, gid)) = owner else { return };
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            chown_tree(&entry.unwrap().path(), owner);
        }
    }
}
