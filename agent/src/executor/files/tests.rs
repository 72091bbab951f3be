//! Collection and placement against real directories and real tar bytes.

use std::collections::BTreeSet;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use serde_json::json;
use xene_core::artifact::{Digest, MAX_FILES, ManifestEntry};
use xene_core::protocol::{BlobUpload, FilesAnswer, FilesRequest, Transfer};
use xene_core::spec::{Publish, PublishWhen, Task};

use super::archive::read_tar_for_test;
use super::collect::{Collected, Collector, collect_dir, hash_copy};
use super::fetch::{place_dir, set_mode_and_owner};
use super::local::{LocalChannel, LocalStore};
use super::publish::plan_parts;
use super::{FileChannel, Spool, fetch, publish, publish_all, size_text};
use crate::runtime::Workspace;

fn publish(paths: &[&str], optional: bool) -> Publish {
    Publish {
        name: "art".into(),
        paths: paths.iter().map(|p| p.to_string()).collect(),
        optional,
        when: PublishWhen::Success,
    }
}

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn stored(files: &[Collected]) -> Vec<&str> {
    files.iter().map(|f| f.entry.path.as_str()).collect()
}

/// A literal directory gives its contents, a literal file its name, a glob
/// what it matches relative to the directory before its first wildcard
/// (a matched directory with all it holds); modes are kept.
#[test]
fn paths_are_stored_relative_to_their_base() {
    let ws = tempfile::tempdir().unwrap();
    let root = ws.path();
    write(root, "target/release/app", "binary");
    std::fs::set_permissions(
        root.join("target/release/app"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    write(root, "dist/index.html", "<p>");
    write(root, "dist/js/app.js", "js");
    write(root, "reports/unit/a.xml", "<a/>");
    write(root, "reports/b.xml", "<b/>");
    write(root, "reports/b.txt", "no");
    write(root, "logs/run1/out.log", "1");

    let files = collect_dir(root, &publish(&["target/release/app"], false)).unwrap();
    assert_eq!(stored(&files), ["app"]);
    assert_eq!(files[0].entry.mode, 0o755);
    assert_eq!(files[0].entry.size, 6);
    let (digest, _) = hash_copy(&b"binary"[..], None).unwrap();
    assert_eq!(files[0].entry.digest, digest);

    let files = collect_dir(root, &publish(&["dist"], false)).unwrap();
    assert_eq!(stored(&files), ["index.html", "js/app.js"]);

    let files = collect_dir(root, &publish(&["reports/**/*.xml"], false)).unwrap();
    assert_eq!(stored(&files), ["b.xml", "unit/a.xml"]);

    let files = collect_dir(root, &publish(&["logs/*"], false)).unwrap();
    assert_eq!(stored(&files), ["run1/out.log"]);

    // Two entries that store the same path: an error, not a silent pick.
    let e = collect_dir(root, &publish(&["dist", "dist/*.html"], false)).unwrap_err();
    assert!(e.contains("two of its paths"), "{e}");
    let e = collect_dir(root, &publish(&["dist/index.html", "dist"], false)).unwrap_err();
    assert!(e.contains("two of its paths"), "{e}");
}

/// A glob matching nothing, or a missing path, fails unless optional.
#[test]
fn nothing_matched_fails_unless_optional() {
    let ws = tempfile::tempdir().unwrap();
    write(ws.path(), "a.txt", "a");
    let e = collect_dir(ws.path(), &publish(&["*.xml"], false)).unwrap_err();
    assert_eq!(e, "artifact art: *.xml matches no file");
    let e = collect_dir(ws.path(), &publish(&["missing/file"], false)).unwrap_err();
    assert_eq!(
        e,
        "artifact art: missing/file does not exist in the workspace"
    );
    assert!(
        collect_dir(ws.path(), &publish(&["*.xml", "missing"], true))
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        stored(&collect_dir(ws.path(), &publish(&["*.xml", "*.txt"], true)).unwrap()),
        ["a.txt"]
    );
}

/// A link inside the workspace is published as the file it names; one
/// leading out (directly, or as the base itself) is refused.
#[test]
fn links_leading_out_are_refused() {
    let ws = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let root = ws.path();
    write(outside.path(), "secret", "s3cr3t");
    write(root, "out/real.txt", "real");
    symlink("real.txt", root.join("out/alias.txt")).unwrap();
    let files = collect_dir(root, &publish(&["out"], false)).unwrap();
    assert_eq!(stored(&files), ["alias.txt", "real.txt"]);
    assert_eq!(files[0].entry.digest, files[1].entry.digest);

    symlink(outside.path().join("secret"), root.join("out/leak")).unwrap();
    let e = collect_dir(root, &publish(&["out"], false)).unwrap_err();
    assert_eq!(
        e,
        "artifact art: out/leak is a symbolic link leading out of the workspace"
    );
    symlink(outside.path(), root.join("away")).unwrap();
    let e = collect_dir(root, &publish(&["away/secret"], false)).unwrap_err();
    assert!(e.contains("leads out of the workspace"), "{e}");
    let e = collect_dir(root, &publish(&["away/*"], false)).unwrap_err();
    assert!(e.contains("leads out of the workspace"), "{e}");
}

/// The bounds: files per artifact, and the paths of a link loop.
#[test]
fn bounds_end_in_clear_errors() {
    let mut collector = Collector::new("art");
    let file = |i: usize| Collected {
        entry: ManifestEntry {
            path: format!("f{i}"),
            size: 0,
            mode: 0o644,
            digest: hash_copy(&b""[..], None).unwrap().0,
        },
        source: "/dev/null".into(),
    };
    for i in 0..MAX_FILES {
        collector.add(file(i)).unwrap();
    }
    let e = collector.add(file(MAX_FILES)).unwrap_err();
    assert_eq!(e, format!("artifact art: more than {MAX_FILES} files"));

    let ws = tempfile::tempdir().unwrap();
    std::fs::create_dir(ws.path().join("loop")).unwrap();
    symlink(".", ws.path().join("loop/again")).unwrap();
    write(ws.path(), "loop/f", "f");
    let e = collect_dir(ws.path(), &publish(&["loop"], false)).unwrap_err();
    assert!(e.contains("longer than 1024 bytes"), "{e}");
}

/// A tar header for `name` written byte by byte, as a hostile engine
/// could send it (the `tar` crate's builder refuses `..` itself).
fn raw_header(name: &str, kind: u8, size: usize, link: &str) -> Vec<u8> {
    let mut h = vec![0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

fn tar_of(entries: &[(&str, u8, &str, &str)]) -> Vec<u8> {
    let mut tar = Vec::new();
    for (name, kind, body, link) in entries {
        tar.extend(raw_header(name, *kind, body.len(), link));
        tar.extend(body.as_bytes());
        tar.resize(tar.len().div_ceil(512) * 512, 0);
    }
    tar.extend(vec![0u8; 1024]);
    tar
}

/// A container's archive: `..` in an entry and links leading out are
/// refused; the glob's base rule holds; links inside wait to be followed.
#[test]
fn container_archives_are_confined() {
    let spool_dir = tempfile::tempdir().unwrap();
    let spool = Spool::new(spool_dir.path().to_path_buf());
    let read = |tar: Vec<u8>, path: &str| read_tar_for_test(&tar[..], path, &spool);
    let e = read(
        tar_of(&[
            ("reports/", b'5', "", ""),
            ("reports/../../etc/x.xml", b'0', "x", ""),
        ]),
        "reports/*.xml",
    )
    .unwrap_err();
    assert!(e.contains("unsafe path"), "{e}");

    let e = read(
        tar_of(&[("out/", b'5', "", ""), ("out/pw", b'2', "", "/etc/passwd")]),
        "out",
    )
    .unwrap_err();
    assert_eq!(
        e,
        "artifact art: out/pw is a symbolic link leading out of the workspace"
    );
    let e = read(
        tar_of(&[("out/", b'5', "", ""), ("out/up", b'2', "", "../../x")]),
        "out",
    )
    .unwrap_err();
    assert!(e.contains("leading out"), "{e}");

    let (files, links) = read(
        tar_of(&[
            ("reports/", b'5', "", ""),
            ("reports/a.xml", b'0', "<a/>", ""),
            ("reports/a.txt", b'0', "no", ""),
            ("reports/unit/", b'5', "", ""),
            ("reports/unit/b.xml", b'0', "<b/>", ""),
            ("reports/unit/c.xml", b'2', "", "../a.xml"),
        ]),
        "reports/**/*.xml",
    )
    .unwrap();
    assert_eq!(stored(&files), ["a.xml", "unit/b.xml"]);
    assert_eq!(std::fs::read(&files[0].source).unwrap(), b"<a/>");
    assert_eq!(
        links,
        [("unit/c.xml".to_string(), "reports/a.xml".to_string())]
    );
}

/// Placement: modes applied, nothing written through a link already in
/// the workspace or over an existing file.
#[test]
fn placing_is_confined_to_the_workspace() {
    let ws = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let blobs = tempfile::tempdir().unwrap();
    let (digest, size) = hash_copy(&b"bin"[..], None).unwrap();
    // A fresh blob each time: placing moves it, and a blob that is still
    // there takes the move (`moved()`), not the copy, into what is in the way.
    let made = std::cell::Cell::new(0);
    let file = |path: &str| {
        made.set(made.get() + 1);
        let blob = blobs.path().join(format!("blob{}", made.get()));
        std::fs::write(&blob, "bin").unwrap();
        (
            ManifestEntry {
                path: path.into(),
                size,
                mode: 0o750,
                digest: digest.clone(),
            },
            blob,
        )
    };
    place_dir(ws.path(), None, "tools", &[file("bin/app")]).unwrap();
    let placed = ws.path().join("tools/bin/app");
    assert_eq!(std::fs::read(&placed).unwrap(), b"bin");
    let mode = std::fs::metadata(&placed).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o750);

    symlink(outside.path(), ws.path().join("link")).unwrap();
    let e = place_dir(ws.path(), None, "link", &[file("app")]).unwrap_err();
    assert!(e.contains("is in the way"), "{e}");
    let e = place_dir(ws.path(), None, "", &[file("link")]).unwrap_err();
    assert!(e.contains("already there"), "{e}");
    let e = place_dir(ws.path(), None, "tools", &[file("bin/app")]).unwrap_err();
    assert!(e.contains("already there"), "{e}");
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    // Refused, the blob stays where it was: nothing was moved.
    assert_eq!(std::fs::read_dir(blobs.path()).unwrap().count(), 3);
}

#[test]
fn parts_cover_the_file_in_order() {
    let digest = hash_copy(&b""[..], None).unwrap().0;
    let upload = |size, part_size, parts: usize| BlobUpload {
        digest: digest.clone(),
        size,
        part_size,
        parts: vec![
            Transfer {
                method: "PUT".into(),
                url: "/x".into(),
                headers: Default::default()
            };
            parts
        ],
        upload_id: None,
    };
    assert_eq!(plan_parts(&upload(10, 64, 1), 10).unwrap(), [(0, 10)]);
    assert_eq!(
        plan_parts(&upload(10, 4, 3), 10).unwrap(),
        [(0, 4), (4, 4), (8, 2)]
    );
    assert!(plan_parts(&upload(10, 4, 2), 10).is_err());
    assert!(plan_parts(&upload(11, 4, 3), 10).is_err());
    assert_eq!(size_text(512), "512 B");
    assert_eq!(size_text(12_897_485), "12.3 MiB");
}

/// The spool may sit in a shared temp dir: a link planted in its place is
/// refused, not written through.
#[tokio::test]
async fn a_planted_spool_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let planted = root.path().join("xene-ctx.files");
    symlink(elsewhere.path(), &planted).unwrap();
    let e = Spool::new(planted).make().await.unwrap_err();
    assert!(e.contains("is not a directory of this user"), "{e}");
    let fresh = root.path().join("xene-other.files");
    let spool = Spool::new(fresh.clone());
    spool.make().await.unwrap();
    let mode = std::fs::metadata(&fresh).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);

    // Emptied, it keeps its directory (made again, another user could
    // take its name in between): only what is inside goes.
    std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::write(spool.path(), "blob").unwrap();
    std::fs::create_dir(fresh.join("sub")).unwrap();
    std::fs::write(fresh.join("sub/f"), "f").unwrap();
    symlink(elsewhere.path(), fresh.join("link")).unwrap();
    std::fs::write(elsewhere.path().join("kept"), "kept").unwrap();
    spool.empty().await.unwrap();
    assert_eq!(std::fs::read_dir(&fresh).unwrap().count(), 0);
    let mode = std::fs::metadata(&fresh).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o711);
    assert!(elsewhere.path().join("kept").exists());
}

/// A task of `xene-agent run`'s store from its JSON.
fn task(json: serde_json::Value) -> Task {
    serde_json::from_value(json).unwrap()
}

/// The store's channel with signed URLs that expired, refused with the
/// answer a server (or S3) gives: the upload URLs of its first answer, and
/// each download URL the first time it is used (the store gives the same
/// ones again). Or, with `broken`, every upload fails for good.
struct Expiring {
    inner: Arc<LocalChannel>,
    broken: bool,
    expired: Mutex<BTreeSet<String>>,
    asked: AtomicUsize,
    used: Mutex<BTreeSet<String>>,
    uploads: AtomicUsize,
}

impl Expiring {
    fn new(inner: Arc<LocalChannel>, broken: bool) -> Self {
        Self {
            inner,
            broken,
            expired: Mutex::new(BTreeSet::new()),
            asked: AtomicUsize::new(0),
            used: Mutex::new(BTreeSet::new()),
            uploads: AtomicUsize::new(0),
        }
    }

    fn first_use(&self, transfer: &Transfer) -> bool {
        self.used.lock().unwrap().insert(transfer.url.clone())
    }
}

const EXPIRED: &str = "HTTP 403 Forbidden: this blob URL expired";

impl FileChannel for Expiring {
    fn ask(&self, request: FilesRequest) -> BoxFuture<'_, Result<FilesAnswer, String>> {
        Box::pin(async move {
            let answer = self.inner.ask(request).await?;
            if let FilesAnswer::Uploads { uploads } = &answer
                && self.asked.fetch_add(1, Ordering::SeqCst) == 0
            {
                let urls = uploads.iter().flat_map(|u| &u.parts).map(|t| t.url.clone());
                self.expired.lock().unwrap().extend(urls);
            }
            Ok(answer)
        })
    }

    fn upload<'a>(
        &'a self,
        transfer: &'a Transfer,
        file: &'a Path,
        offset: u64,
        len: u64,
    ) -> BoxFuture<'a, Result<Option<String>, String>> {
        self.uploads.fetch_add(1, Ordering::SeqCst);
        if self.broken {
            return Box::pin(async { Err("HTTP 500 Internal Server Error".to_string()) });
        }
        if self.expired.lock().unwrap().contains(&transfer.url) {
            return Box::pin(async { Err(EXPIRED.to_string()) });
        }
        self.inner.upload(transfer, file, offset, len)
    }

    fn download<'a>(
        &'a self,
        transfer: &'a Transfer,
        dest: &'a Path,
    ) -> BoxFuture<'a, Result<Digest, String>> {
        if self.first_use(transfer) {
            return Box::pin(async { Err(EXPIRED.to_string()) });
        }
        self.inner.download(transfer, dest)
    }
}

fn dir(root: &Path) -> Workspace<'_> {
    Workspace::Dir { root, owner: None }
}

/// URLs that expired before their turn came are asked for again, once
/// per blob, on publish (multipart too) and on fetch.
#[tokio::test]
async fn expired_urls_are_asked_for_again() {
    let ws = tempfile::tempdir().unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    let spool = Spool::new(ws.path().join("spool"));
    spool.make().await.unwrap();
    write(ws.path(), "out/big", "0123456789");
    write(ws.path(), "out/small", "s");
    let store = LocalStore::new(store_dir.path().join("store"), 4).unwrap();
    let producer = task(json!({"steps": [], "publish": [{"name": "art", "paths": ["out"]}]}));
    let consumer = task(json!({"steps": [], "needs": [{"name": "art", "path": "in"}]}));

    let channel = store.channel(&producer);
    let expiring = Expiring::new(channel.clone(), false);
    let line = publish::publish(&expiring, dir(ws.path()), &producer.publish[0], &spool)
        .await
        .unwrap();
    assert_eq!(line, "staged art: 2 files, 11 B (11 B uploaded)");
    channel.finish(true);

    let expiring = Expiring::new(store.channel(&consumer), false);
    fetch::fetch_all(
        &expiring,
        dir(ws.path()),
        &consumer.needs,
        &spool,
        &mut vec![],
    )
    .await
    .unwrap();
    assert_eq!(
        std::fs::read(ws.path().join("in/big")).unwrap(),
        b"0123456789"
    );
    assert_eq!(std::fs::read(ws.path().join("in/small")).unwrap(), b"s");
}

/// The first failed upload stops the others: no more than one batch goes.
#[tokio::test]
async fn the_first_failed_transfer_stops_the_rest() {
    let ws = tempfile::tempdir().unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    let spool = Spool::new(ws.path().join("spool"));
    for i in 0..12 {
        write(ws.path(), &format!("out/f{i}"), &format!("file {i}"));
    }
    let store = LocalStore::for_run(store_dir.path().join("store")).unwrap();
    let producer = task(json!({"steps": [], "publish": [{"name": "art", "paths": ["out"]}]}));
    let broken = Expiring::new(store.channel(&producer), true);
    let e = publish::publish(&broken, dir(ws.path()), &producer.publish[0], &spool)
        .await
        .unwrap_err();
    assert!(e.contains("HTTP 500"), "{e}");
    let tried = broken.uploads.load(Ordering::SeqCst);
    assert!(
        tried <= 4,
        "{tried} uploads were tried after the first failed"
    );
}

/// After a failure, the `when: always` artifacts still go (that is what
/// they are for); the first error is the one told.
#[tokio::test]
async fn always_artifacts_outlive_an_earlier_failure() {
    let ws = tempfile::tempdir().unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    let spool = Spool::new(ws.path().join("spool"));
    write(ws.path(), "report.xml", "<r/>");
    write(ws.path(), "app", "bin");
    let producer = task(json!({"steps": [], "publish": [
        {"name": "app", "paths": ["app"]},
        {"name": "binary", "paths": ["missing"]},
        {"name": "lib", "paths": ["app"]},
        {"name": "report", "paths": ["report.xml"], "when": "always"},
    ]}));
    let store = LocalStore::for_run(store_dir.path().join("store")).unwrap();
    let channel = store.channel(&producer);
    let (mut log, mut staged) = (Vec::new(), Vec::new());
    let e = publish_all(
        &*channel,
        dir(ws.path()),
        &producer.publish,
        true,
        &spool,
        &mut log,
        &mut staged,
    )
    .await
    .unwrap_err();
    assert_eq!(
        e,
        "artifact binary: missing does not exist in the workspace"
    );
    assert_eq!(
        log,
        [
            "staged app: 1 file, 3 B (3 B uploaded)",
            "staged report: 1 file, 4 B (4 B uploaded)"
        ]
    );
    // What the failure drops.
    assert_eq!(staged, ["app"]);
}

/// Every file of a digest is checked against its blob's size, not only
/// the first.
#[tokio::test]
async fn every_file_of_a_blob_is_checked() {
    let ws = tempfile::tempdir().unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    let spool = Spool::new(ws.path().join("spool"));
    spool.make().await.unwrap();
    write(ws.path(), "a", "abc");
    let store = LocalStore::for_run(store_dir.path().join("store")).unwrap();
    let producer = task(json!({"steps": [], "publish": [{"name": "art", "paths": ["a"]}]}));
    let consumer = task(json!({"steps": [], "needs": [{"name": "art", "path": "in"}]}));
    let channel = store.channel(&producer);
    publish::publish(&*channel, dir(ws.path()), &producer.publish[0], &spool)
        .await
        .unwrap();
    // A manifest naming the stored blob a second time with another size.
    let (digest, _) = hash_copy(&b"abc"[..], None).unwrap();
    let entry = |path: &str, size| ManifestEntry {
        path: path.into(),
        size,
        mode: 0o644,
        digest: digest.clone(),
    };
    let answer = channel
        .ask(FilesRequest::Commit {
            name: "art".into(),
            files: vec![entry("a", 3), entry("b", 5)],
            completed: vec![],
        })
        .await
        .unwrap();
    assert_eq!(answer, FilesAnswer::Committed);
    channel.finish(true);
    let e = fetch::fetch_all(
        &*store.channel(&consumer),
        dir(ws.path()),
        &consumer.needs,
        &spool,
        &mut vec![],
    )
    .await
    .unwrap_err();
    assert_eq!(
        e,
        "artifact art: files a and b have the same digest but different sizes"
    );
    assert!(!ws.path().join("in").exists());
}

/// Needs whose files would meet in the workspace are refused, naming both
/// artifacts, before any need is placed: a file where another places a
/// directory, or one path placed twice.
#[tokio::test]
async fn needs_that_collide_are_refused_before_any_is_placed() {
    let ws = tempfile::tempdir().unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    let spool = Spool::new(ws.path().join("spool"));
    spool.make().await.unwrap();
    write(ws.path(), "one/x", "1");
    write(ws.path(), "lib", "2");
    let store = LocalStore::for_run(store_dir.path().join("store")).unwrap();
    let producer = task(json!({"steps": [], "publish": [
        {"name": "a", "paths": ["one"]},
        {"name": "b", "paths": ["lib"]},
        {"name": "c", "paths": ["one"]},
    ]}));
    let channel = store.channel(&producer);
    for publish in &producer.publish {
        publish::publish(&*channel, dir(ws.path()), publish, &spool)
            .await
            .unwrap();
    }
    channel.finish(true);

    let cases = [
        (
            json!([{"name": "a", "path": "out/lib"}, {"name": "b", "path": "out"}]),
            "artifact b places the file out/lib, and artifact a places out/lib/x in it",
        ),
        (
            json!([{"name": "b", "path": "keep"}, {"name": "a", "path": "out/lib/"}, {"name": "c", "path": "./out/lib"}]),
            "artifacts a and c both place out/lib/x",
        ),
    ];
    for (needs, error) in cases {
        let consumer = task(json!({"steps": [], "needs": needs}));
        let mut log = vec![];
        let e = fetch::fetch_all(
            &*store.channel(&consumer),
            dir(ws.path()),
            &consumer.needs,
            &spool,
            &mut log,
        )
        .await
        .unwrap_err();
        assert_eq!(e, error);
        assert_eq!(log, Vec::<String>::new());
        assert!(!ws.path().join("out").exists());
        assert!(!ws.path().join("keep").exists());
        assert_eq!(std::fs::read_to_string(ws.path().join("lib")).unwrap(), "2");
    }
    // Apart, they are all placed.
    let consumer = task(json!({"steps": [], "needs": [
        {"name": "a", "path": "out/lib"},
        {"name": "b", "path": "out/bin"},
        {"name": "c", "path": "out/lib2"},
    ]}));
    let mut log = vec![];
    fetch::fetch_all(
        &*store.channel(&consumer),
        dir(ws.path()),
        &consumer.needs,
        &spool,
        &mut log,
    )
    .await
    .unwrap();
    assert_eq!(log.len(), 3, "{log:?}");
    assert_eq!(
        std::fs::read_to_string(ws.path().join("out/bin/lib")).unwrap(),
        "2"
    );
}

/// Two attempts uploading the same content at once each write parts of
/// their own, and both commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_uploads_of_one_blob_do_not_meet() {
    let ws = tempfile::tempdir().unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    write(ws.path(), "empty", "");
    let store = LocalStore::for_run(store_dir.path().join("store")).unwrap();
    let producer = task(json!({"steps": [], "publish": [{"name": "art", "paths": ["empty"]}]}));
    let (a, b) = (store.channel(&producer), store.channel(&producer));
    let (digest, _) = hash_copy(&b""[..], None).unwrap();
    let files = vec![ManifestEntry {
        path: "empty".into(),
        size: 0,
        mode: 0o644,
        digest,
    }];
    let request = || FilesRequest::Publish {
        name: "art".into(),
        files: files.clone(),
    };
    let (Ok(FilesAnswer::Uploads { uploads: first }), Ok(FilesAnswer::Uploads { uploads: second })) =
        (a.ask(request()).await, b.ask(request()).await)
    else {
        panic!("no uploads");
    };
    assert_ne!(first[0].parts[0].url, second[0].parts[0].url);

    // And through the whole publish, at once, a few times over.
    for round in 0..8 {
        let dir_of = store_dir.path().join(format!("round{round}"));
        let store = LocalStore::for_run(dir_of).unwrap();
        let (a, b) = (store.channel(&producer), store.channel(&producer));
        let spool_a = Spool::new(ws.path().join(format!("spool-a{round}")));
        let spool_b = Spool::new(ws.path().join(format!("spool-b{round}")));
        let (ra, rb) = tokio::join!(
            publish::publish(&*a, dir(ws.path()), &producer.publish[0], &spool_a),
            publish::publish(&*b, dir(ws.path()), &producer.publish[0], &spool_b),
        );
        ra.unwrap();
        rb.unwrap();
    }
}

/// A placed file's mode is set on the file itself: a link put in its
/// place meanwhile is refused, and what it points at keeps its mode.
#[test]
fn a_placed_files_mode_is_not_set_through_a_link() {
    let ws = tempfile::tempdir().unwrap();
    let target = ws.path().join("target");
    std::fs::write(&target, "t").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
    symlink(&target, ws.path().join("placed")).unwrap();
    let e = set_mode_and_owner(&ws.path().join("placed"), 0o777, None).unwrap_err();
    assert_eq!(
        e.raw_os_error(),
        Some(rustix::io::Errno::LOOP.raw_os_error())
    );
    let mode = std::fs::metadata(&target).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    set_mode_and_owner(&target, 0o640, None).unwrap();
    let mode = std::fs::metadata(&target).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o640);
}
