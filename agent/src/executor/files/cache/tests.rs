//! Caches against real directories, real tar bytes and the directory
//! store of `xene-agent run`.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use serde_json::json;
use sha2::{Digest as _, Sha256};
use xene_core::cache::{CacheHit, MAX_CACHE_BYTES};
use xene_core::spec::Task;
use xene_core::tar::{END, file_header, padding};

use super::super::collect::{Rules, hash_copy};
use super::super::{LocalStore, Spool};
use super::pack::{pack, pack_sized};
use super::unpack::{Unpacked, Unpacker};
use super::{RenderedCache, Restored, collect, key, place, restore_all, save_all};
use crate::runtime::Workspace;

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn dir(root: &Path) -> Workspace<'_> {
    Workspace::Dir { root, owner: None }
}

async fn spool_in(dir: &Path) -> Spool {
    let spool = Spool::new(dir.join("spool"));
    spool.make().await.unwrap();
    spool
}

fn cache(key: &str, hash_files: &[&str], restore_keys: &[&str], paths: &[&str]) -> RenderedCache {
    let strings = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
    RenderedCache {
        name: "deps".into(),
        key: key.into(),
        hash_files: strings(hash_files),
        restore_keys: strings(restore_keys),
        paths: strings(paths),
        after: None,
    }
}

/// The full key appends the first 32 hex digits of the hash of the
/// matched files' `PATH\0DIGEST\n` lines: the same files give the same key
/// wherever the workspace is, another content another key, and no match
/// the hash of nothing.
#[tokio::test]
async fn a_key_hashes_what_its_hash_files_match() {
    let temp = tempfile::tempdir().unwrap();
    let spool = spool_in(temp.path()).await;
    let (one, two) = (temp.path().join("one"), temp.path().join("two"));
    for root in [&one, &two] {
        write(root, "Cargo.lock", "lock");
        write(root, "crates/a/Cargo.toml", "a");
        write(root, "crates/b/Cargo.toml", "b");
        write(root, "crates/b/src/lib.rs", "not hashed");
    }
    let hashed = cache("cargo", &["Cargo.lock", "crates/*/Cargo.toml"], &[], &["x"]);
    let first = key::full_key(dir(&one), &hashed, &spool).await.unwrap();
    assert_eq!(
        first,
        key::full_key(dir(&two), &hashed, &spool).await.unwrap()
    );

    let digest = |text: &str| hash_copy(text.as_bytes(), None).unwrap().0;
    let lines = format!(
        "Cargo.lock\0{}\ncrates/a/Cargo.toml\0{}\ncrates/b/Cargo.toml\0{}\n",
        digest("lock"),
        digest("a"),
        digest("b")
    );
    let hex = format!("{:x}", Sha256::digest(lines.as_bytes()));
    assert_eq!(first, format!("cargo-{}", &hex[..32]));

    write(&two, "crates/b/Cargo.toml", "b2");
    let changed = key::full_key(dir(&two), &hashed, &spool).await.unwrap();
    assert_ne!(first, changed);

    let nothing = cache("cargo", &["*.nothing", "missing/file"], &[], &["x"]);
    assert_eq!(
        key::full_key(dir(&one), &nothing, &spool).await.unwrap(),
        "cargo-e3b0c44298fc1c149afbf4c8996fb924"
    );
    let plain = cache("cargo", &[], &[], &["x"]);
    assert_eq!(
        key::full_key(dir(&one), &plain, &spool).await.unwrap(),
        "cargo"
    );
}

/// Packed, the same files give the same chunks (so an unchanged entry
/// uploads nothing); unpacked, they come back with their paths in the
/// workspace, modes and bytes.
#[tokio::test]
async fn packing_is_deterministic_and_unpacks_the_same_files() {
    let temp = tempfile::tempdir().unwrap();
    let ws = temp.path().join("ws");
    write(&ws, "target/a.bin", &"a".repeat(3000));
    std::fs::set_permissions(
        ws.join("target/a.bin"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    write(&ws, "target/d/b", "bb");
    write(&ws, ".cargo/registry/empty", "");
    write(&ws, ".cargo/other", "not taken");
    write(&ws, "top", "top");
    let paths = ["target".to_string(), ".cargo/registry".into(), "t?p".into()];
    let spool = spool_in(temp.path()).await;
    let files = collect(dir(&ws), "deps", &paths, &spool, Rules::CACHE_PATHS)
        .await
        .unwrap();
    let stored: Vec<&str> = files.iter().map(|f| f.entry.path.as_str()).collect();
    assert_eq!(
        stored,
        [".cargo/registry/empty", "target/a.bin", "target/d/b", "top"]
    );

    let packed = pack_sized(&files, &spool, false, 1024).unwrap();
    assert_eq!(packed.files, 4);
    assert_eq!(packed.bytes, 3005);
    let names: Vec<&str> = packed
        .chunks
        .iter()
        .map(|c| c.entry.path.as_str())
        .collect();
    // A chunk closes once it holds 1 KiB: after the 3000-byte file, and
    // after `target/d/b` (a header and a padded block).
    assert_eq!(names, ["00000.tar", "00001.tar", "00002.tar"]);
    let again = pack_sized(&files, &spool, false, 1024).unwrap();
    let digests = |p: &super::pack::Packed| -> Vec<String> {
        p.chunks
            .iter()
            .map(|c| c.entry.digest.to_string())
            .collect()
    };
    assert_eq!(digests(&packed), digests(&again));
    assert_eq!(pack(&files, &spool, false).unwrap().chunks.len(), 1);

    let mut unpacker = Unpacker::default();
    for chunk in &packed.chunks {
        let file = std::fs::File::open(&chunk.source).unwrap();
        unpacker.chunk(file, &spool).unwrap();
    }
    let got: Vec<(String, u64, u32, String)> = unpacker
        .files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f.file).unwrap();
            (f.path.clone(), f.size, f.mode, text)
        })
        .collect();
    let want: Vec<(String, u64, u32, String)> = files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f.source).unwrap();
            (f.entry.path.clone(), f.entry.size, f.entry.mode, text)
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(want[1].2, 0o755);

    // Placed in another workspace, where they were.
    let other = temp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let kept = place::place(dir(&other), unpacker.files, &live())
        .await
        .unwrap();
    assert_eq!(kept.files, 0);
    assert_eq!(
        std::fs::read_to_string(other.join("target/d/b")).unwrap(),
        "bb"
    );
    let mode = std::fs::metadata(other.join("target/a.bin"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
}

/// A raw tar header of `kind` named `name` (any bytes), `size` bytes of
/// `x` after it.
fn raw(kind: tar::EntryType, name: &[u8], size: usize, link: Option<&str>) -> Vec<u8> {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_size(size as u64);
    header.set_mode(0o644);
    header.as_ustar_mut().unwrap().name[..name.len()].copy_from_slice(name);
    if let Some(link) = link {
        header.set_link_name(link).unwrap();
    }
    header.set_cksum();
    let mut out = header.as_bytes().to_vec();
    out.extend(std::iter::repeat_n(b'x', size));
    out.resize(out.len() + padding(size as u64), 0);
    out
}

/// A GNU long name header carrying `name`.
fn long_name(name: &str) -> Vec<u8> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::GNULongName);
    header.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
    header.set_size(name.len() as u64 + 1);
    header.set_mode(0o644);
    header.set_cksum();
    let mut out = header.as_bytes().to_vec();
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    out.resize(512 + 512, 0);
    out
}

fn archive(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut out = entries.concat();
    out.extend_from_slice(&END);
    out
}

/// Links, devices, `..`, absolute paths, a path twice, more bytes than an
/// entry may hold and a chunk cut short are each refused; nothing is
/// written anywhere but the spool.
#[tokio::test]
async fn hostile_chunks_are_refused() {
    use tar::EntryType;
    let temp = tempfile::tempdir().unwrap();
    let spool = spool_in(temp.path()).await;
    let file = |name: &str| raw(EntryType::Regular, name.as_bytes(), 3, None);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            archive(&[raw(EntryType::Symlink, b"evil", 0, Some("/etc"))]),
            "a symbolic link",
        ),
        (
            archive(&[file("a"), raw(EntryType::Link, b"b", 0, Some("a"))]),
            "a hard link",
        ),
        (archive(&[file("../escape")]), "\"..\""),
        (archive(&[file("ok/../../escape")]), "\"..\""),
        (archive(&[file("/etc/passwd")]), "absolute"),
        (
            archive(&[raw(EntryType::Char, b"tty", 0, None)]),
            "a device",
        ),
        (archive(&[raw(EntryType::Fifo, b"pipe", 0, None)]), "a FIFO"),
        (archive(&[file("twice"), file("twice")]), "twice"),
        (
            archive(&[file_header("big", MAX_CACHE_BYTES + 1, 0o644, None)]),
            "more than",
        ),
        (file("cut")[..512 + 1].to_vec(), "ends"),
        (file("no-end"), "ends before"),
        // `..` in a PAX `path` record and in a GNU long name.
        (
            archive(&[file_header(
                &format!("../{}", "p".repeat(120)),
                0,
                0o644,
                None,
            )]),
            "\"..\"",
        ),
        (archive(&[long_name("../escape"), file("short")]), "\"..\""),
        // A directory, then a file of the same path.
        (
            archive(&[raw(EntryType::Directory, b"d/", 0, None), file("d")]),
            "twice",
        ),
    ];
    for (bytes, want) in cases {
        let e = Unpacker::default().chunk(&bytes[..], &spool).unwrap_err();
        assert!(e.contains(want), "{want:?} not in {e:?}");
    }
    // Only the spool's own files were written, all in the spool.
    for item in std::fs::read_dir(temp.path()).unwrap() {
        assert_eq!(item.unwrap().file_name(), "spool");
    }
    for item in std::fs::read_dir(temp.path().join("spool")).unwrap() {
        let item = item.unwrap();
        assert!(item.file_type().unwrap().is_file());
        let name = item.file_name().into_string().unwrap();
        assert!(
            name.strip_prefix('f').unwrap().parse::<u64>().is_ok(),
            "{name}"
        );
    }

    // A path seen in one chunk is refused in the next.
    let mut unpacker = Unpacker::default();
    unpacker.chunk(&archive(&[file("a")])[..], &spool).unwrap();
    let e = unpacker
        .chunk(&archive(&[file("a")])[..], &spool)
        .unwrap_err();
    assert!(e.contains("twice"), "{e}");
}

/// Placing keeps what is in the workspace: a file already there, a link
/// or a file where a directory would be; nothing is written through the
/// link.
#[tokio::test]
async fn placing_keeps_what_is_there() {
    let temp = tempfile::tempdir().unwrap();
    let ws = temp.path().join("ws");
    let outside = temp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    write(&ws, "target/keep", "mine");
    write(&ws, "file", "a file");
    symlink(&outside, ws.join("link")).unwrap();
    let spool = spool_in(temp.path()).await;
    let unpacked = |path: &str| {
        let file = spool.path();
        std::fs::write(&file, "cached").unwrap();
        Unpacked {
            path: path.into(),
            size: 6,
            mode: 0o644,
            file,
        }
    };
    let files = ["target/keep", "target/new", "link/x", "file/y"].map(unpacked);
    let kept = place::place(dir(&ws), files.to_vec(), &live())
        .await
        .unwrap();
    assert_eq!((kept.files, kept.bytes), (3, 18));
    assert_eq!(
        std::fs::read_to_string(ws.join("target/keep")).unwrap(),
        "mine"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("target/new")).unwrap(),
        "cached"
    );
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
}

fn task(caches: serde_json::Value) -> Task {
    serde_json::from_value(json!({"steps": [], "caches": caches})).unwrap()
}

/// One attempt against the run's store: restores `caches` into `ws`,
/// then, when `files` are given, writes them and saves; the lines and what
/// the restores found.
async fn attempt(
    store: &std::sync::Arc<LocalStore>,
    ws: &Path,
    caches: &[RenderedCache],
    files: &[(&str, &str)],
) -> (Vec<String>, Vec<Restored>) {
    let declared: Vec<_> = caches
        .iter()
        .map(|c| json!({"name": c.name, "key": c.key, "paths": c.paths}))
        .collect();
    let channel = store.channel(&task(json!(declared)));
    std::fs::create_dir_all(ws).unwrap();
    let spool = Spool::new(ws.with_extension("spool"));
    let mut log = Vec::new();
    let restored = restore_all(&*channel, dir(ws), caches, None, &spool, &mut log, &live()).await;
    for (path, text) in files {
        write(ws, path, text);
    }
    save_all(
        &*channel,
        dir(ws),
        caches,
        true,
        &restored,
        &spool,
        &mut log,
    )
    .await;
    channel.finish(true);
    (log, restored)
}

/// The store of `xene-agent run` keeps saved entries: a miss saves, the
/// same key hits, a restore key finds the newest entry it starts, an
/// unknown key misses; the first save of a key wins; a hit is not saved
/// again; a save not allowed says so.
#[tokio::test]
async fn the_run_store_hits_by_key_and_by_prefix_newest_first() {
    let temp = tempfile::tempdir().unwrap();
    let store = LocalStore::for_run(temp.path().join("store")).unwrap();
    let ws = |n: &str| temp.path().join(n);

    let v1 = cache("deps-1", &[], &[], &["deps"]);
    let (log, found) = attempt(
        &store,
        &ws("a"),
        std::slice::from_ref(&v1),
        &[("deps/one", "1")],
    )
    .await;
    assert_eq!(found[0].hit, CacheHit::Miss);
    assert_eq!(
        log,
        [
            "cache deps: miss deps-1",
            "cache deps: saved deps-1 (1 file, 1 B, 2.0 KiB uploaded)"
        ]
    );

    // The same key again: a hit, its file kept where one is already.
    std::fs::create_dir_all(ws("b").join("deps")).unwrap();
    let (log, found) = attempt(&store, &ws("b"), std::slice::from_ref(&v1), &[]).await;
    assert_eq!(found[0].hit, CacheHit::Hit);
    assert_eq!(log, ["cache deps: hit deps-1 (1 file, 1 B restored)"]);
    assert_eq!(
        std::fs::read_to_string(ws("b").join("deps/one")).unwrap(),
        "1"
    );

    // Where files are already, they are kept as they are.
    let fresh = ws("c");
    write(&fresh, "deps/one", "mine");
    let (log, _) = attempt(&store, &fresh, std::slice::from_ref(&v1), &[]).await;
    assert_eq!(
        log,
        ["cache deps: hit deps-1 (0 files, 0 B restored, 1 already in the workspace kept)"]
    );
    assert_eq!(
        std::fs::read_to_string(fresh.join("deps/one")).unwrap(),
        "mine"
    );

    // Two attempts miss deps-2 at once: the first to end saves it.
    let v2 = cache("deps-2", &[], &[], &["deps"]);
    let declared = task(json!([{"name": "deps", "key": "deps-2", "paths": ["deps"]}]));
    let (first, second) = (store.channel(&declared), store.channel(&declared));
    let mut log = Vec::new();
    for (channel, name, text) in [(&first, "x", "22"), (&second, "y", "333")] {
        let root = ws(name);
        std::fs::create_dir_all(&root).unwrap();
        let spool = Spool::new(root.with_extension("spool"));
        let found = restore_all(
            &**channel,
            dir(&root),
            std::slice::from_ref(&v2),
            None,
            &spool,
            &mut log,
            &live(),
        )
        .await;
        write(&root, "deps/two", text);
        save_all(
            &**channel,
            dir(&root),
            std::slice::from_ref(&v2),
            true,
            &found,
            &spool,
            &mut log,
        )
        .await;
    }
    first.finish(true);
    second.finish(true);
    assert_eq!(log.len(), 4, "{log:?}");

    // deps-3 misses; its restore key finds deps-2, the newest "deps-".
    let v3 = cache("deps-3", &[], &["nothing-", "deps-"], &["deps"]);
    let (log, found) = attempt(&store, &ws("e"), &[v3], &[]).await;
    assert_eq!(found[0].hit, CacheHit::Partial);
    assert_eq!(found[0].matched.as_deref(), Some("deps-2"));
    assert_eq!(
        log[0],
        "cache deps: restored deps-2 for deps-3 (partial): 1 file, 2 B restored"
    );
    assert!(
        log[1].starts_with("cache deps: saved deps-3 (1 file, 2 B, 0 B uploaded)"),
        "{log:?}"
    );
    assert_eq!(
        std::fs::read_to_string(ws("e").join("deps/two")).unwrap(),
        "22"
    );

    // No entry and no restore key: a miss; not allowed to save: said so.
    let other = cache("other", &[], &["deps-0"], &["deps"]);
    let channel = store.channel(&task(
        json!([{"name": "deps", "key": "x", "paths": ["deps"]}]),
    ));
    let spool = Spool::new(temp.path().join("f.spool"));
    let mut log = Vec::new();
    let found = restore_all(
        &*channel,
        dir(&ws("e")),
        std::slice::from_ref(&other),
        None,
        &spool,
        &mut log,
        &live(),
    )
    .await;
    assert_eq!(found[0].hit, CacheHit::Miss);
    save_all(
        &*channel,
        dir(&ws("e")),
        &[other],
        false,
        &found,
        &spool,
        &mut log,
    )
    .await;
    assert_eq!(
        log,
        [
            "cache deps: miss other",
            "cache deps: not saved: its pipeline's cache_save says never for this run's trigger"
        ]
    );

    // A cache the task does not declare is refused: a line, and a miss.
    let undeclared = store.channel(&task(json!([])));
    let mut log = Vec::new();
    let found = restore_all(
        &*undeclared,
        dir(&ws("e")),
        &[v1],
        None,
        &spool,
        &mut log,
        &live(),
    )
    .await;
    assert_eq!(found[0].hit, CacheHit::Miss);
    assert!(
        log[0].contains("not restored") && log[0].contains("no cache deps"),
        "{log:?}"
    );
}

/// A container's workspace as the engine's archive API shows it, over a
/// directory: exports name entries from the path's last component and
/// never follow links; an import extracts over whatever is there, as the
/// engine does, so only what placing leaves out is kept.
struct Engine {
    root: std::path::PathBuf,
}

impl crate::runtime::WorkspaceArchive for Engine {
    fn export<'a>(
        &'a self,
        path: &'a str,
    ) -> futures::stream::BoxStream<'a, Result<bytes::Bytes, crate::runtime::RuntimeError>> {
        use futures::StreamExt;
        let full = self.root.join(path);
        let chunk = match std::fs::symlink_metadata(&full) {
            Err(_) => Err(crate::runtime::RuntimeError::NotInWorkspace(path.into())),
            Ok(meta) => {
                let name = path.rsplit('/').next().filter(|n| !n.is_empty());
                let name = name.unwrap_or("workspace");
                let mut builder = tar::Builder::new(Vec::new());
                builder.follow_symlinks(false);
                if meta.is_dir() {
                    builder.append_dir_all(name, &full).unwrap();
                } else {
                    builder.append_path_with_name(&full, name).unwrap();
                }
                Ok(bytes::Bytes::from(builder.into_inner().unwrap()))
            }
        };
        futures::stream::iter([chunk]).boxed()
    }

    fn import(
        &self,
        archive: futures::stream::BoxStream<'static, Result<bytes::Bytes, std::io::Error>>,
    ) -> futures::future::BoxFuture<'_, Result<(), crate::runtime::RuntimeError>> {
        use futures::{FutureExt, TryStreamExt};
        async move {
            let chunks: Vec<bytes::Bytes> = archive.try_collect().await.unwrap();
            tar::Archive::new(&chunks.concat()[..])
                .unpack(&self.root)
                .unwrap();
            Ok(())
        }
        .boxed()
    }
}

/// In a container, a cache's files are collected by their workspace paths
/// as on this machine, and placing keeps what is there (files, and what
/// a link or a file stands in the way of) whether it exports each top
/// directory or, past a bound, the whole workspace.
#[tokio::test]
async fn container_workspaces_are_collected_and_placed_alike() {
    let temp = tempfile::tempdir().unwrap();
    let ws = temp.path().join("ws");
    let outside = temp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    write(&ws, "target/a", "A");
    write(&ws, "target/sub/b", "B");
    write(&ws, ".cargo/registry/c", "C");
    write(&ws, ".cargo/other", "not taken");
    write(&ws, "keep/x", "mine");
    write(&ws, "file", "a file");
    symlink(&outside, ws.join("lnk")).unwrap();
    let spool = spool_in(temp.path()).await;
    let engine = Engine { root: ws.clone() };
    let paths = ["target".to_string(), ".cargo/registry".into(), "c?".into()];
    let in_container = collect(
        Workspace::Archive(&engine),
        "deps",
        &paths,
        &spool,
        Rules::CACHE,
    )
    .await
    .unwrap();
    let on_disk = collect(dir(&ws), "deps", &paths, &spool, Rules::CACHE)
        .await
        .unwrap();
    let entries = |files: &[super::super::collect::Collected]| -> Vec<_> {
        files.iter().map(|f| f.entry.clone()).collect()
    };
    assert_eq!(entries(&in_container), entries(&on_disk));
    assert_eq!(in_container.len(), 3);

    let unpacked = |path: &str| {
        let file = spool.path();
        std::fs::write(&file, "cached").unwrap();
        Unpacked {
            path: path.into(),
            size: 6,
            mode: 0o640,
            file,
        }
    };
    let files = ["keep/x", "keep/new", "lnk/y", "file/z", "target/deep/n"].map(unpacked);
    let kept = place::place(Workspace::Archive(&engine), files.to_vec(), &live())
        .await
        .unwrap();
    assert_eq!(kept.files, 3);
    assert_eq!(std::fs::read_to_string(ws.join("keep/x")).unwrap(), "mine");
    assert_eq!(
        std::fs::read_to_string(ws.join("keep/new")).unwrap(),
        "cached"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("target/deep/n")).unwrap(),
        "cached"
    );
    assert_eq!(std::fs::read_to_string(ws.join("file")).unwrap(), "a file");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);

    // Many top paths: the whole workspace is exported once instead.
    let names: Vec<String> = (0..20).map(|i| format!("t{i}")).collect();
    write(&ws, "t3", "mine");
    let files: Vec<Unpacked> = names.iter().map(|n| unpacked(n)).collect();
    let kept = place::place(Workspace::Archive(&engine), files, &live())
        .await
        .unwrap();
    assert_eq!(kept.files, 1);
    assert_eq!(std::fs::read_to_string(ws.join("t3")).unwrap(), "mine");
    assert_eq!(std::fs::read_to_string(ws.join("t19")).unwrap(), "cached");
}

/// Every due cache's key is computed before any is restored (what `lib`
/// restores does not change `b`'s key), and a restore places only what the
/// cache's paths take of an entry saved with other paths.
#[tokio::test]
async fn keys_come_first_and_only_paths_are_placed() {
    let temp = tempfile::tempdir().unwrap();
    let store = LocalStore::for_run(temp.path().join("store")).unwrap();
    let ws = |n: &str| temp.path().join(n);
    let named = |name: &str, c: RenderedCache| RenderedCache {
        name: name.into(),
        ..c
    };
    let wide = named("a", cache("a-1", &[], &[], &["lib", "extra"]));
    let (log, _) = attempt(
        &store,
        &ws("one"),
        &[wide],
        &[("lib/x", "x"), ("extra/y", "y")],
    )
    .await;
    assert_eq!(
        log[1],
        "cache a: saved a-1 (2 files, 2 B, 3.0 KiB uploaded)"
    );

    let narrow = named("a", cache("a-2", &[], &["a-"], &["lib"]));
    let hashing = named("b", cache("b", &["lib/*"], &[], &["out"]));
    let (log, found) = attempt(&store, &ws("two"), &[narrow, hashing], &[]).await;
    assert_eq!(found[0].hit, CacheHit::Partial);
    assert_eq!(
        log[0],
        "cache a: restored a-1 for a-2 (partial): 1 file, 1 B restored, 1 outside its paths left out"
    );
    assert_eq!(
        std::fs::read_to_string(ws("two").join("lib/x")).unwrap(),
        "x"
    );
    assert!(!ws("two").join("extra").exists());
    // `lib/x` was not there when b's key was computed: the hash of nothing.
    assert_eq!(found[1].key, "b-e3b0c44298fc1c149afbf4c8996fb924");
}

/// A token never cancelled.
fn live() -> tokio_util::sync::CancellationToken {
    tokio_util::sync::CancellationToken::new()
}

/// A cancelled task's restore stops before it unpacks or places a file:
/// nothing of it is left to write into the workspace.
#[tokio::test]
async fn a_cancelled_restore_places_nothing() {
    let temp = tempfile::tempdir().unwrap();
    let store = LocalStore::for_run(temp.path().join("store")).unwrap();
    let ws = |n: &str| temp.path().join(n);
    let v1 = cache("deps-1", &[], &[], &["deps"]);
    attempt(
        &store,
        &ws("a"),
        std::slice::from_ref(&v1),
        &[("deps/one", "1")],
    )
    .await;

    let spool = spool_in(temp.path()).await;
    let cancelled = live();
    cancelled.cancel();
    let mut unpacker = Unpacker::default();
    unpacker.cancel = Some(cancelled.clone());
    let e = unpacker
        .chunk(
            &archive(&[raw(tar::EntryType::Regular, b"a", 1, None)])[..],
            &spool,
        )
        .unwrap_err();
    assert!(e.contains("cancelled"), "{e}");
    assert!(unpacker.files.is_empty());

    let file = spool.path();
    std::fs::write(&file, "x").unwrap();
    let files = vec![Unpacked {
        path: "deps/one".into(),
        size: 1,
        mode: 0o644,
        file,
    }];
    std::fs::create_dir_all(ws("b")).unwrap();
    let e = place::place(dir(&ws("b")), files, &cancelled)
        .await
        .unwrap_err();
    assert!(e.contains("cancelled"), "{e}");

    let declared = task(json!([{"name": "deps", "key": "deps-1", "paths": ["deps"]}]));
    let channel = store.channel(&declared);
    let mut log = Vec::new();
    let found = restore_all(
        &*channel,
        dir(&ws("b")),
        &[v1],
        None,
        &Spool::new(temp.path().join("b.spool")),
        &mut log,
        &cancelled,
    )
    .await;
    channel.finish(true);
    assert!(found.is_empty(), "{found:?}");
    assert_eq!(std::fs::read_dir(ws("b")).unwrap().count(), 0);
}
