//! `artifacts ls|get` and `runs pin|unpin` against a real server whose
//! built-in agent published the files; and `get` against a hostile server
//! (a real socket) whose tar leads out of the destination, holds a link or
//! a path twice, or whose download fails or stops short: refused, nothing
//! written outside, no file left partial, an existing file left as it was.

use std::os::unix::fs::PermissionsExt;

use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::util::{Home, Xene, sqlite_url, write};

const SPEC: &str = r#"name: art
pipelines:
  p:
    tasks:
      build:
        steps:
          - run: |
              mkdir -p out/sub
              printf 'hello\n' > out/app && chmod 755 out/app
              printf two > out/sub/data
              printf solo > one.txt
        publish:
          - name: bundle
            path: out
          - name: single
            path: one.txt
"#;

fn digest(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

#[tokio::test]
async fn artifacts_are_listed_fetched_under_dest_and_runs_pinned() {
    let home = Home::new();
    let xene = Xene::start(&home, &sqlite_url(&home), None, &[]).await;
    let server = ["--server", xene.base.as_str()];
    let file = write(&home, "art.yaml", SPEC);
    let out = home
        .run(&[&server[..], &["apply", "-f", file.to_str().unwrap()]].concat())
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let out = home
        .run(&[&server[..], &["run", "art/p", "--wait"]].concat())
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let id = out
        .stderr
        .split_whitespace()
        .find_map(|w| w.strip_prefix("run/"))
        .expect("the run's id")
        .to_string();

    let out = home
        .run(&[&server[..], &["artifacts", "ls", &id]].concat())
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let rows: Vec<Vec<&str>> = out
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let solo = digest(b"solo");
    assert_eq!(
        rows,
        [
            vec!["TASK", "NAME", "FILES", "SIZE", "DIGEST"],
            vec!["build", "bundle", "2", "9B", "-"],
            vec!["build", "single", "1", "4B", &solo[..19]],
        ],
        "{out:?}"
    );

    // A tar of two files, a single file, one file of several.
    let dest = home.path("got");
    let get = |name: &'static str, extra: &'static [&'static str]| {
        let dest = dest.to_str().unwrap().to_string();
        let id = id.clone();
        let server = server.map(str::to_string);
        let home = &home;
        async move {
            let mut args: Vec<String> = server.to_vec();
            args.extend(["artifacts", "get", &id, name, "--dest", &dest].map(String::from));
            args.extend(extra.iter().map(|s| s.to_string()));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            home.run(&args).await
        }
    };
    let out = get("bundle", &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("2 files, 9 B"), "{out:?}");
    assert_eq!(std::fs::read(dest.join("app")).unwrap(), b"hello\n");
    assert_eq!(std::fs::read(dest.join("sub/data")).unwrap(), b"two");
    let mode = std::fs::metadata(dest.join("app"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    let out = get("single", &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(std::fs::read(dest.join("one.txt")).unwrap(), b"solo");
    std::fs::remove_dir_all(&dest).unwrap();
    let out = get("bundle", &["--path", "sub/data"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(std::fs::read(dest.join("sub/data")).unwrap(), b"two");
    assert!(!dest.join("app").exists());
    let out = get("nope", &[]).await;
    assert_eq!(out.code, 4, "{out:?}");
    assert!(
        out.stderr.contains("has no artifact named \"nope\""),
        "{out:?}"
    );

    // A link already in the destination is never followed.
    let outside = home.path("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::remove_dir_all(&dest).unwrap();
    std::fs::create_dir(&dest).unwrap();
    std::os::unix::fs::symlink(&outside, dest.join("sub")).unwrap();
    let out = get("bundle", &[]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("is a link"), "{out:?}");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);

    let out = home
        .run(&[&server[..], &["runs", "pin", &id]].concat())
        .await;
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, format!("run/{id} pinned\n").as_str()),
        "{out:?}"
    );
    let run = xene.get(&format!("/api/v1/runs/{id}")).await;
    assert_eq!(run["pinned"], true, "{run}");
    let out = home
        .run(&[&server[..], &["runs", "unpin", &id, "-o", "json"]].concat())
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["pinned"], false, "{out:?}");
}

/// A ustar header made by hand (a link, or a name the server would never
/// send).
fn header(name: &str, kind: u8, size: usize, link: &str) -> Vec<u8> {
    let mut h = vec![0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..107].copy_from_slice(b"0000644");
    h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
    h[136..147].copy_from_slice(b"00000000000");
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

/// Serves run 1's listing (artifacts `evil` and `link`, two files each)
/// and their tars: `evil`'s second file is `../escape`, `link`'s a link;
/// `twice` (listing its first file only) gives `a` twice; `gone` (one file,
/// `keep.txt`) answers 404; `short` (the same) sends 2 of its 4 bytes.
async fn hostile_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let file = |path: &str, data: &[u8]| serde_json::json!({"path": path, "size": data.len(), "mode": 420, "digest": digest(data)});
    let artifact = |name: &str, second: &str| {
        serde_json::json!({"task": "t", "name": name, "files": 2, "bytes": 2, "created_at": 0,
            "when": "success", "entries": [file("ok", b"k"), file(second, b"x")]})
    };
    let one = |name: &str, files: u64, entry: serde_json::Value| {
        serde_json::json!({"task": "t", "name": name, "files": files, "bytes": 4, "created_at": 0,
            "when": "success", "entries": [entry]})
    };
    let listing = serde_json::json!({"artifacts": [
        artifact("evil", "../escape"),
        artifact("link", "l"),
        one("twice", 2, file("a", b"a")),
        one("gone", 1, file("keep.txt", b"new!")),
        one("short", 1, file("keep.txt", b"new!")),
    ]})
    .to_string();
    let mut twice = Vec::new();
    for data in [b"a", b"z"] {
        let digest = digest(data);
        twice.extend(xene_api::tar::file_header("a", 1, 0o644, Some(&digest)));
        twice.extend_from_slice(data);
        twice.resize(twice.len().next_multiple_of(512), 0);
    }
    twice.extend_from_slice(&[0u8; 1024]);
    let mut evil = header("ok", b'0', 1, "");
    evil.extend_from_slice(b"k");
    evil.resize(1024, 0);
    evil.extend(header("../escape", b'0', 1, ""));
    evil.extend_from_slice(b"x");
    evil.resize(2048, 0);
    evil.extend_from_slice(&[0u8; 1024]);
    let mut link = header("l", b'2', 0, "/etc/passwd");
    link.extend_from_slice(&[0u8; 1024]);
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let (listing, evil, link, twice) =
                (listing.clone(), evil.clone(), link.clone(), twice.clone());
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                }
                let line = String::from_utf8_lossy(&request);
                let path = line.split_whitespace().nth(1).unwrap_or_default();
                let (status, body) = match path {
                    "/api/v1/runs/1/artifacts" => ("200 OK", listing.into_bytes()),
                    "/api/v1/runs/1/artifacts/evil" => ("200 OK", evil),
                    "/api/v1/runs/1/artifacts/link" => ("200 OK", link),
                    "/api/v1/runs/1/artifacts/twice" => ("200 OK", twice),
                    "/api/v1/runs/1/artifacts/short" => ("200 OK", b"ne".to_vec()),
                    _ => ("404 Not Found", b"{\"error\":\"no\"}".to_vec()),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(&body).await;
            });
        }
    });
    base
}

#[tokio::test]
async fn hostile_downloads_are_refused_and_leave_dest_as_it_was() {
    let home = Home::new();
    let base = hostile_server().await;
    let dest = home.path("in/dest");
    let dest_arg = dest.to_str().unwrap();
    let out = home
        .run(&[
            "--server",
            &base,
            "artifacts",
            "get",
            "1",
            "evil",
            "--dest",
            dest_arg,
        ])
        .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("leads out of the destination"),
        "{out:?}"
    );
    assert!(!home.path("in/escape").exists());
    let out = home
        .run(&[
            "--server",
            &base,
            "artifacts",
            "get",
            "1",
            "link",
            "--dest",
            dest_arg,
        ])
        .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("links and devices are refused"),
        "{out:?}"
    );
    assert!(!dest.join("l").exists());

    let get = |name: &'static str| {
        let args = [
            "--server".to_string(),
            base.clone(),
            "artifacts".into(),
            "get".into(),
            "1".into(),
            name.into(),
            "--dest".into(),
            dest_arg.into(),
        ];
        let home = &home;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            home.run(&args).await
        }
    };
    // A failed or short download leaves the file there as it was.
    std::fs::write(dest.join("keep.txt"), b"old").unwrap();
    let out = get("gone").await;
    assert_eq!(out.code, 4, "{out:?}");
    assert_eq!(std::fs::read(dest.join("keep.txt")).unwrap(), b"old");
    let out = get("short").await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("2 bytes short"), "{out:?}");
    assert_eq!(std::fs::read(dest.join("keep.txt")).unwrap(), b"old");
    // A path twice never overwrites the file checked the first time.
    let out = get("twice").await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("\"a\" comes twice"), "{out:?}");
    assert_eq!(std::fs::read(dest.join("a")).unwrap(), b"a");
    let mut names: Vec<_> = std::fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["a", "keep.txt", "ok"], "no temporary file is left");
}
