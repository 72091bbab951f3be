//! Where collection looks, what it refuses, and how far it reads: on a
//! real directory (the shell runtime) and on real tar bytes (Docker's).

use std::os::unix::fs::symlink;
use std::path::Path;

use xene_core::artifact::MAX_ARTIFACT_BYTES;
use xene_core::spec::{Publish, PublishWhen};

use super::{Collected, collect_dir};
use crate::executor::files::Spool;
use crate::executor::files::archive::{TestLinks, read_tar_for_test};

fn publish(path: &str) -> Publish {
    Publish {
        name: "art".into(),
        paths: vec![path.to_string()],
        optional: false,
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

/// A glob looks only where a match can be: a link leading out, a link to
/// nothing and an odd name beside what it takes are no error.
#[test]
fn a_glob_looks_only_where_it_can_match() {
    let ws = tempfile::tempdir().unwrap();
    let root = ws.path();
    write(root, "a.tgz", "t");
    write(root, "node_modules/pkg/index.js", "js");
    symlink("/etc", root.join("node_modules/out")).unwrap();
    symlink("gone", root.join("node_modules/gone")).unwrap();
    write(root, "reports/x.xml", "<x/>");
    write(root, "reports/a\\b.txt", "odd");
    symlink("../gone", root.join("reports/gone.txt")).unwrap();
    let files = collect_dir(root, &publish("*.tgz")).unwrap();
    assert_eq!(stored(&files), ["a.tgz"]);
    let files = collect_dir(root, &publish("reports/*.xml")).unwrap();
    assert_eq!(stored(&files), ["x.xml"]);
    // Taken, the odd name is refused.
    let e = collect_dir(root, &publish("reports/*.txt")).unwrap_err();
    assert!(e.contains("backslash"), "{e}");
}

/// A file past the artifact's byte bound is refused before it is read (a
/// sparse file is no reason to hash 17 GiB of zeros).
#[test]
fn an_artifact_past_its_byte_bound_is_refused_unread() {
    let ws = tempfile::tempdir().unwrap();
    let big = std::fs::File::create(ws.path().join("big")).unwrap();
    big.set_len(MAX_ARTIFACT_BYTES + 1).unwrap();
    let e = collect_dir(ws.path(), &publish("big")).unwrap_err();
    assert!(
        e.contains(&format!("more than {MAX_ARTIFACT_BYTES} bytes")),
        "{e}"
    );
}

enum Item<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8]),
    Link(&'a str, &'a str),
    Hard(&'a str, &'a str),
}

fn tar_of(items: &[Item]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for item in items {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        let (path, kind, data, link): (&str, _, &[u8], _) = match item {
            Item::Dir(p) => (p, tar::EntryType::Directory, b"", None),
            Item::File(p, data) => (p, tar::EntryType::Regular, data, None),
            Item::Link(p, to) => (p, tar::EntryType::Symlink, b"", Some(to)),
            Item::Hard(p, to) => (p, tar::EntryType::Link, b"", Some(to)),
        };
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        if let Some(link) = link {
            header.set_link_name(link).unwrap();
        }
        builder.append_data(&mut header, path, data).unwrap();
    }
    builder.into_inner().unwrap()
}

fn read(tar: &[u8], path: &str) -> Result<(Vec<String>, TestLinks), String> {
    let spool_dir = tempfile::tempdir().unwrap();
    let spool = Spool::new(spool_dir.path().to_path_buf());
    let (files, links) = read_tar_for_test(tar, path, &spool)?;
    Ok((files.into_iter().map(|f| f.entry.path).collect(), links))
}

/// In a container's archive: untaken names are not checked, a glob
/// follows a linked directory it can match in and a base that is a link,
/// and a hard link to a file it did not take is read again by its path.
#[test]
fn container_archives_are_read_as_the_shell_walks() {
    let tar = tar_of(&[
        Item::Dir("reports/"),
        Item::File("reports/x.xml", b"<x/>"),
        Item::File("reports/a\\b.txt", b"odd"),
        Item::Link("reports/sub", "../other"),
        Item::Link("reports/skip.txt", "../gone"),
    ]);
    let (files, links) = read(&tar, "reports/**/*.xml").unwrap();
    assert_eq!(files, ["x.xml"]);
    // Both may be directories to look in; a link to nothing is passed
    // over when followed.
    assert_eq!(
        links,
        [
            ("sub".to_string(), "other".to_string()),
            ("skip.txt".to_string(), "gone".to_string())
        ]
    );

    let tar = tar_of(&[Item::Link("reports", "out/reports")]);
    let (files, links) = read(&tar, "reports/*.xml").unwrap();
    assert!(files.is_empty());
    assert_eq!(links, [("reports".to_string(), "out/reports".to_string())]);

    let tar = tar_of(&[
        Item::Dir("h/"),
        Item::File("h/a.bin", b"hard"),
        Item::Hard("h/b.txt", "h/a.bin"),
    ]);
    let (files, links) = read(&tar, "h/*.txt").unwrap();
    assert!(files.is_empty());
    assert_eq!(links, [("b.txt".to_string(), "h/b.txt".to_string())]);
}

/// Links that loop, point nowhere, and files past the byte bound (on
/// their header, before a byte is spooled) are refused.
#[test]
fn container_archives_refuse_loops_empty_links_and_huge_files() {
    let tar = tar_of(&[
        Item::Dir("workspace/"),
        Item::File("workspace/f.txt", b"f"),
        Item::Link("workspace/a", "."),
    ]);
    let e = read(&tar, "**/*.txt").unwrap_err();
    assert!(
        e.contains("a is a symbolic link to a directory holding it"),
        "{e}"
    );
    let tar = tar_of(&[Item::Dir("d/"), Item::Link("d/up", "../d")]);
    let e = read(&tar, "d").unwrap_err();
    assert!(e.contains("(a loop)"), "{e}");

    let mut header = tar::Header::new_gnu();
    header.set_path("out/empty").unwrap();
    header.set_entry_type(tar::EntryType::Symlink);
    header.set_size(0);
    header.set_cksum();
    let mut tar = tar_of(&[Item::Dir("out/")]);
    tar.truncate(tar.len() - 1024);
    tar.extend(header.as_bytes());
    tar.extend([0u8; 1024]);
    let e = read(&tar, "out").unwrap_err();
    assert_eq!(
        e,
        "artifact art: out/empty is a symbolic link with no target"
    );

    // A header that claims more than the bound, with no bytes behind it.
    let mut header = tar::Header::new_gnu();
    header.set_path("out/big").unwrap();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(MAX_ARTIFACT_BYTES + 1);
    header.set_cksum();
    let mut tar = tar_of(&[Item::Dir("out/")]);
    tar.truncate(tar.len() - 1024);
    tar.extend(header.as_bytes());
    let e = read(&tar, "out").unwrap_err();
    assert!(
        e.contains(&format!("more than {MAX_ARTIFACT_BYTES} bytes")),
        "{e}"
    );
}

/// A `**` glob passes over a link leading out of the workspace that it
/// does not take (a virtualenv's `python`), on a directory and in a
/// container's archive; a link out that it takes is still refused.
#[test]
fn a_glob_passes_over_links_out_it_does_not_take() {
    let ws = tempfile::tempdir().unwrap();
    let root = ws.path();
    write(root, "requirements.txt", "flask");
    write(root, "sub/requirements.txt", "pytest");
    std::fs::create_dir_all(root.join(".venv/bin")).unwrap();
    symlink("/usr/bin/env", root.join(".venv/bin/python")).unwrap();
    symlink("/etc", root.join(".venv/etc")).unwrap();
    let files = collect_dir(root, &publish("**/requirements.txt")).unwrap();
    assert_eq!(stored(&files), ["requirements.txt", "sub/requirements.txt"]);
    let e = collect_dir(root, &publish("**/python")).unwrap_err();
    assert!(e.contains("leading out of the workspace"), "{e}");

    let tar = tar_of(&[
        Item::Dir("workspace/"),
        Item::File("workspace/requirements.txt", b"flask"),
        Item::Dir("workspace/.venv/bin/"),
        Item::Link("workspace/.venv/bin/python", "/usr/bin/python3"),
        Item::Link("workspace/.venv/etc", "../../etc"),
    ]);
    let (files, links) = read(&tar, "**/requirements.txt").unwrap();
    assert_eq!(files, ["requirements.txt"]);
    assert!(links.is_empty(), "{links:?}");
    let e = read(&tar, "**/python").unwrap_err();
    assert!(e.contains("leading out of the workspace"), "{e}");
}
