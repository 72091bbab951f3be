//! The data directory as `xene` makes it: private (0700, files 0600) so
//! that no other local user reads the database or the keys, an open one
//! refused with the `chmod` to run, an empty `XDG_DATA_HOME` ignored, and
//! the token signing key never in the database in clear (an older plain
//! one sealed at start), on both backends.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{BACKENDS, Backend, TestDb, TestServer};

/// `xene` on a free loopback port with nothing of the test's environment
/// that could pick its data directory, its output in `log`.
fn xene(home: &Path, log: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xene"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("XENE_") {
            command.env_remove(name);
        }
    }
    command
        .args(["--addr", "127.0.0.1:0"])
        .args(args)
        .env_remove("XDG_DATA_HOME")
        .env("HOME", home)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "warn,xene_server=info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    command
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until the log says `xene` listens (it has written everything it
/// writes at start by then).
fn wait_listening(child: &mut Child, log: &Path) {
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains("xene is listening") {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("xene exited with {status} before listening:\n{text}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "xene did not start:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// What `forge.py` of the review looked for: the key's name followed by 64
/// hex characters, anywhere in the database's bytes.
fn plain_key_in(bytes: &[u8]) -> bool {
    let name = b"api_token_key";
    bytes.windows(name.len()).enumerate().any(|(i, w)| {
        w == name
            && bytes
                .get(i + name.len()..i + name.len() + 64)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    })
}

async fn stored_signing_key(url: &str) -> String {
    let db = xene_server::storage::Db::connect(url).await.unwrap();
    let value: String =
        sqlx::query_scalar("SELECT value FROM server_meta WHERE key = 'api_token_key'")
            .fetch_one(db.pool())
            .await
            .unwrap();
    db.close().await;
    value
}

#[tokio::test]
async fn a_missing_data_dir_is_made_private_and_other_users_read_nothing() {
    let root = tempfile::tempdir().unwrap();
    // A home others may enter, as on many systems: only the data directory
    // itself keeps them out.
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let log = root.path().join("xene.log");
    let mut child = xene(root.path(), &log, &[]).spawn().unwrap();
    wait_listening(&mut child, &log);
    let running = Running(child);

    let data = root.path().join(".local/share/xene");
    assert_eq!(mode(&data), 0o700, "{}", data.display());
    for name in [
        "xene.db",
        "xene.db-wal",
        "xene.db-shm",
        "admin-token",
        "secrets.key",
    ] {
        assert_eq!(mode(&data.join(name)), 0o600, "{name}");
    }
    // Whatever else the server made in it is private as well.
    let mut everything = vec![data.clone()];
    let mut i = 0;
    while i < everything.len() {
        if everything[i].is_dir() {
            for entry in std::fs::read_dir(&everything[i]).unwrap() {
                everything.push(entry.unwrap().path());
            }
        }
        i += 1;
    }
    for path in &everything {
        let meta = std::fs::symlink_metadata(path).unwrap();
        assert_eq!(
            meta.permissions().mode() & 0o077,
            0,
            "{} is open to others: {:o}",
            path.display(),
            meta.permissions().mode()
        );
    }

    // Another user cannot open the database, as #91 did. Only root can be
    // someone else; the suite runs as root.
    if std::fs::metadata(&log).unwrap().uid() == 0 {
        for name in ["xene.db", "xene.db-wal", "admin-token", "secrets.key"] {
            let out = Command::new("runuser")
                .args(["-u", "nobody", "--", "cat"])
                .arg(data.join(name))
                .output()
                .unwrap();
            assert!(
                !out.status.success(),
                "user nobody read {name}: {} bytes",
                out.stdout.len()
            );
        }
    }
    drop(running);

    // The signing key is not in the database in clear.
    let db_file = data.join("xene.db");
    let mut bytes = std::fs::read(&db_file).unwrap();
    bytes.extend(std::fs::read(data.join("xene.db-wal")).unwrap_or_default());
    assert!(
        !plain_key_in(&bytes),
        "the signing key is in xene.db in hex"
    );
    let stored = stored_signing_key(&format!("sqlite://{}", db_file.display())).await;
    assert!(stored.contains(':'), "not sealed: {stored:.12}...");
}

#[test]
fn a_data_dir_others_can_enter_is_refused_with_the_chmod_to_run() {
    let root = tempfile::tempdir().unwrap();
    for open in [0o755, 0o711] {
        let data = root.path().join(format!("data-{open:o}"));
        std::fs::create_dir(&data).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(open)).unwrap();
        let log = root.path().join("refused.log");
        let mut command = xene(root.path(), &log, &["--data-dir", data.to_str().unwrap()]);
        let mut child = command.spawn().unwrap();
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                panic!("xene started with a data dir of mode {open:o}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(!status.success(), "{text}");
        assert!(
            text.contains(&format!("run `chmod 700 {}`", data.display())),
            "{text}"
        );
        assert_eq!(
            std::fs::read_dir(&data).unwrap().count(),
            0,
            "nothing is written in a refused directory"
        );
    }
}

/// #92: `XDG_DATA_HOME=` put the keys in `./xene`.
#[test]
fn an_empty_xdg_data_home_means_the_default() {
    let root = tempfile::tempdir().unwrap();
    let work = root.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let log = root.path().join("xene.log");
    let mut command = xene(root.path(), &log, &["--no-local-agent"]);
    command.env("XDG_DATA_HOME", "").current_dir(&work);
    let mut child = command.spawn().unwrap();
    wait_listening(&mut child, &log);
    drop(Running(child));
    assert!(
        root.path().join(".local/share/xene/admin-token").is_file(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let strays: Vec<PathBuf> = std::fs::read_dir(&work)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(
        strays.is_empty(),
        "written in the working directory: {strays:?}"
    );
}

/// A database from before sealing holds the key in hex: the server seals
/// it at start and keeps it (the tokens it signed still work), and makes
/// an older world-readable SQLite file private.
#[tokio::test]
async fn a_plain_signing_key_is_sealed_at_start_and_kept() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let key = [7u8; 32];
        let hex = hex::encode(key);
        {
            let storage = xene_server::storage::Db::connect(&db.url).await.unwrap();
            sqlx::query(
                "INSERT INTO server_meta (key, value, updated_at) VALUES ('api_token_key', $1, 0)",
            )
            .bind(&hex)
            .execute(storage.pool())
            .await
            .unwrap();
            storage.close().await;
        }
        let sqlite_files = if backend == Backend::Sqlite {
            db.files()
        } else {
            Vec::new()
        };
        for file in &sqlite_files {
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let server = TestServer::start(&db).await;
        xene_server::access::tokens::TokenKeys::new(&key)
            .verify(&server.token)
            .expect("the admin token is signed with the key the database had");
        let (status, me) = server.get("/api/v1/me").await;
        assert_eq!(status, 200, "{me}");
        let stored = stored_signing_key(&db.url).await;
        assert!(
            stored.contains(':') && !stored.contains(&hex),
            "{backend:?}: not sealed"
        );
        for file in &sqlite_files {
            assert_eq!(mode(file), 0o600, "{}", file.display());
        }
        server.stop().await;
        if backend == Backend::Sqlite {
            // Not even in the page's free space (secure_delete on the update).
            let bytes: Vec<u8> = db
                .files()
                .iter()
                .flat_map(|f| std::fs::read(f).unwrap())
                .collect();
            assert!(
                !bytes.windows(hex.len()).any(|w| w == hex.as_bytes()),
                "the plain key is still in the database's files"
            );
        }
    }
}
