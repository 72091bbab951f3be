//! The data directory as `xene` makes it: private (0700, files 0600) so
//! that no other local user reads the database or the keys, an open one
//! refused with the `chmod` to run, an empty `XDG_DATA_HOME` ignored, and
//! the token signing key never in the database in clear (an older plain
//! one sealed at start), on both backends.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use xene_core::access::Role;
use xene_server::access::tokens::TokenKeys;

use crate::util::{BACKENDS, Backend, TestDb, TestServer};

/// `xene` on a free loopback port with nothing of the test's environment
/// that could pick its data directory, its output in `log`.
fn xene(home: &Path, log: &Path, args: &[&str]) -> Command {
    with_env(Command::new(env!("CARGO_BIN_EXE_xene")), home, log, args)
}

/// `xene` as `xene()` makes it, started with a umask of 000.
fn xene_umask_000(home: &Path, log: &Path, args: &[&str]) -> Command {
    let mut sh = Command::new("sh");
    sh.args(["-c", "umask 000 && exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_xene"));
    with_env(sh, home, log, args)
}

fn with_env(mut command: Command, home: &Path, log: &Path, args: &[&str]) -> Command {
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

/// Starts `command` and waits until it listens; ended when dropped.
fn listening(command: &mut Command, log: &Path) -> Running {
    let mut running = Running(command.spawn().unwrap());
    wait_listening(&mut running.0, log);
    running
}

/// A new directory only its owner may enter.
fn private_dir(path: PathBuf) -> PathBuf {
    std::fs::create_dir(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
    path
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
    let running = listening(&mut xene(root.path(), &log, &[]), &log);

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
        let text = refused(&mut command, &log);
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
    drop(listening(&mut command, &log));
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

/// Not even in a page's free space (secure_delete on the update), once the
/// WAL is written back: until then the main file holds the page as it was
/// (which of the server's connections closes last, and so writes it back,
/// is not for the test to wait on).
async fn assert_no_plain_key(db: &TestDb, hex: &str) {
    let storage = xene_server::storage::Db::connect(&db.url).await.unwrap();
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(storage.pool())
        .await
        .unwrap();
    storage.close().await;
    // The server's last connection may be removing the WAL meanwhile.
    let bytes: Vec<u8> = db
        .files()
        .iter()
        .flat_map(|f| std::fs::read(f).unwrap_or_default())
        .collect();
    assert!(
        !bytes.windows(hex.len()).any(|w| w == hex.as_bytes()),
        "the plain key is still in the database's files"
    );
}

/// A database from before sealing: the signing key in hex, and a token
/// row signed with it. Returns the key and that token.
async fn plain_key_db(url: &str) -> ([u8; 32], String) {
    use xene_server::storage::access as store;
    let key = [7u8; 32];
    let storage = xene_server::storage::Db::connect(url).await.unwrap();
    sqlx::query("INSERT INTO server_meta (key, value, updated_at) VALUES ('api_token_key', $1, 0)")
        .bind(hex::encode(key))
        .execute(storage.pool())
        .await
        .unwrap();
    let user = store::sign_in(
        &storage,
        &store::Identity {
            issuer: "xene:local".into(),
            subject: "someone".into(),
            email: "someone@example.com".into(),
            name: "someone".into(),
        },
        Role::Admin,
    )
    .await
    .unwrap();
    let now = xene_server::storage::now_ms();
    let info = store::create_token(
        &storage,
        &user.id,
        "old",
        Role::Admin,
        Some(now + 3_600_000),
        None,
    )
    .await
    .unwrap();
    storage.close().await;
    let token = TokenKeys::new(&key).sign(&info.id, &user.id, Role::Admin, now, now + 3_600_000);
    (key, token)
}

async fn me_with(server: &TestServer, token: &str) -> u16 {
    crate::util::client_with_token(token)
        .get(server.url("/api/v1/me"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A database from before sealing whose files were private (and any on
/// PostgreSQL): the key is sealed at start and kept, so the tokens it
/// signed still work (a warning says how to rotate it).
#[tokio::test]
async fn a_plain_signing_key_is_sealed_at_start_and_kept() {
    for backend in BACKENDS {
        let db = TestDb::new(backend);
        let (key, old_token) = plain_key_db(&db.url).await;
        let hex = hex::encode(key);
        let server = TestServer::start(&db).await;
        TokenKeys::new(&key)
            .verify(&server.token)
            .expect("the admin token is signed with the key the database had");
        assert_eq!(me_with(&server, &server.token).await, 200);
        assert_eq!(me_with(&server, &old_token).await, 200, "{backend:?}");
        let stored = stored_signing_key(&db.url).await;
        assert!(
            stored.contains(':') && !stored.contains(&hex),
            "{backend:?}: not sealed"
        );
        server.stop().await;
        if backend == Backend::Sqlite {
            assert_no_plain_key(&db, &hex).await;
        }
    }
}

/// H2's upgrade: a SQLite database others could read (0644, as older
/// releases made it) gave its plain signing key away, so it is replaced,
/// not sealed: the tokens it signed stop working (forged ones too) and the
/// local admin token is written again with the new key.
#[tokio::test]
async fn a_plain_signing_key_others_could_read_is_replaced() {
    let db = TestDb::new(Backend::Sqlite);
    let (key, old_token) = plain_key_db(&db.url).await;
    let admin_file = db.dir.path().join("admin-token");
    std::fs::write(&admin_file, format!("{old_token}\n")).unwrap();
    std::fs::set_permissions(&admin_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let files = db.files();
    assert!(!files.is_empty());
    for file in &files {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let server = TestServer::start(&db).await;
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    assert!(
        TokenKeys::new(&key).verify(&server.token).is_err(),
        "the admin token is still signed with the key others could read"
    );
    assert_ne!(server.token, old_token);
    assert_eq!(me_with(&server, &server.token).await, 200);
    assert_eq!(
        me_with(&server, &old_token).await,
        401,
        "a token of the old key still works"
    );
    let stored = stored_signing_key(&db.url).await;
    assert!(stored.contains(':'), "not sealed: {stored:.12}...");
    server.stop().await;
    assert_no_plain_key(&db, &hex::encode(key)).await;
}

/// Waits for `xene` to exit (it must) and returns its log.
fn refused(command: &mut Command, log: &Path) -> String {
    let mut child = command.spawn().unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "xene started:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = std::fs::read_to_string(log).unwrap();
    assert!(!status.success(), "{text}");
    text
}

/// Whether this test runs as root (the suite does): only root can give a
/// file to another user.
fn root() -> bool {
    rustix::process::geteuid().is_root()
}

const NOBODY: u32 = 65534;

/// Review of H2: a data directory, or a file of Xene's in it, that belongs
/// to another user is refused (like OpenSSH's StrictModes), the file a
/// symlinked database points to is made private too (its -wal and -shm
/// take its mode) unless it belongs to another user, and missing parents
/// of the data directory are made 0755 whatever the umask.
#[test]
fn owners_symlinks_and_parents_of_the_data_dir() {
    let root_dir = crate::util::private_tempdir();
    let base = root_dir.path();

    // Missing parents under umask 000: 0755, not 0777.
    let data = base.join("p1/p2/xene");
    let log = base.join("parents.log");
    let args = ["--no-local-agent", "--data-dir", data.to_str().unwrap()];
    drop(listening(&mut xene_umask_000(base, &log, &args), &log));
    assert_eq!(mode(&base.join("p1")), 0o755);
    assert_eq!(mode(&base.join("p1/p2")), 0o755);
    assert_eq!(mode(&data), 0o700);

    // A database linked to a file of this user's, elsewhere, left 0644.
    let linked = private_dir(base.join("linked"));
    let elsewhere = base.join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let target = elsewhere.join("xene.db");
    std::fs::write(&target, "").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::os::unix::fs::symlink(&target, linked.join("xene.db")).unwrap();
    let log = base.join("linked.log");
    let args = ["--no-local-agent", "--data-dir", linked.to_str().unwrap()];
    let running = listening(&mut xene(base, &log, &args), &log);
    for name in ["xene.db", "xene.db-wal", "xene.db-shm"] {
        assert_eq!(mode(&elsewhere.join(name)), 0o600, "{name}");
    }
    drop(running);

    if !root() {
        eprintln!("not root: the owner checks need a file of another user's, skipped");
        return;
    }
    let give = |path: &Path| std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY)).unwrap();
    // The directory itself.
    let theirs = private_dir(base.join("theirs"));
    give(&theirs);
    // A file in a directory of ours, and a link to a file of theirs.
    let file_theirs = private_dir(base.join("file-theirs"));
    std::fs::write(file_theirs.join("secrets.key"), "").unwrap();
    give(&file_theirs.join("secrets.key"));
    let link_theirs = private_dir(base.join("link-theirs"));
    let their_db = elsewhere.join("their.db");
    std::fs::write(&their_db, "").unwrap();
    std::fs::set_permissions(&their_db, std::fs::Permissions::from_mode(0o644)).unwrap();
    give(&their_db);
    std::os::unix::fs::symlink(&their_db, link_theirs.join("xene.db")).unwrap();
    for (dir, named) in [
        (&theirs, theirs.clone()),
        (&file_theirs, file_theirs.join("secrets.key")),
        (&link_theirs, link_theirs.join("xene.db")),
    ] {
        let log = base.join("owner.log");
        let text = refused(
            &mut xene(
                base,
                &log,
                &["--no-local-agent", "--data-dir", dir.to_str().unwrap()],
            ),
            &log,
        );
        assert!(
            text.contains(&named.display().to_string()) && text.contains("belongs to uid 65534"),
            "{text}"
        );
    }
    assert_eq!(mode(&their_db), 0o644, "another user's file was changed");
}

/// Review of H2: a key file given with --secrets-key-file that other users
/// can read gives away the master key (which also seals the token signing
/// key): refused, naming the chmod.
#[test]
fn a_secrets_key_file_others_can_read_is_refused() {
    let root_dir = crate::util::private_tempdir();
    let base = root_dir.path();
    let key = base.join("key");
    std::fs::write(&key, "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=\n").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let data = base.join("data");
    let log = base.join("key.log");
    let args = [
        "--no-local-agent",
        "--data-dir",
        data.to_str().unwrap(),
        "--secrets-key-file",
        key.to_str().unwrap(),
    ];
    let text = refused(&mut xene(base, &log, &args), &log);
    assert!(
        text.contains(&format!("chmod 600 {}", key.display())),
        "{text}"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    drop(listening(&mut xene(base, &log, &args), &log));
}
