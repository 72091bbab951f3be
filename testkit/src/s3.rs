//! A real S3 API for tests: moto's server (PyPI `moto[server]` 5.2.5, in
//! the venv `cargo xtask setup` makes under `target/moto`) on a free port,
//! with request authentication on, an IAM user with an access key and a
//! bucket; killed when dropped, its log printed when a test fails.
//!
//! moto 5.2.5 checks header-signed requests but cannot serve presigned
//! URLs with authentication on, so `s3_moto.py` adds the query-string
//! check S3 makes (signature, scope, expiry); see its docstring. Its log
//! has a line per request (werkzeug's, with the URL) and one per presigned
//! request checked (`presigned PUT /bucket/key: ok` or why it was refused):
//! what tests read to assert on the URLs Xene issues.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use serde::Deserialize;

/// The launcher, run with the venv's Python.
const LAUNCHER: &str = include_str!("s3_moto.py");

/// What starting and a command may take; only there to turn a hang into a
/// failure (a self-check sleeps 2 s to see a URL expire).
const TIMEOUT: Duration = Duration::from_secs(60);

/// The bucket every test store gets.
pub const BUCKET: &str = "xene-artifacts";

/// A moto S3 server. Dropping it kills it.
pub struct S3 {
    child: Child,
    stdin: Mutex<ChildStdin>,
    lines: Mutex<Receiver<String>>,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

#[derive(Deserialize)]
struct Started {
    endpoint: String,
    bucket: String,
    region: String,
    access_key_id: String,
    secret_access_key: String,
}

#[derive(Deserialize)]
struct Listed {
    objects: Vec<(String, u64)>,
}

/// The venv's Python, with moto installed.
pub fn moto_python() -> PathBuf {
    let python = crate::bins::target_dir().join("moto/bin/python");
    assert!(
        python.is_file(),
        "moto is not installed at {}: run `cargo xtask setup`",
        python.display()
    );
    python
}

impl S3 {
    /// Starts moto and waits until its bucket exists and authentication
    /// is on; panics with its log if it does not come up.
    pub fn start() -> S3 {
        let dir = crate::private_tempdir();
        let log = dir.path().join("moto.log");
        let mut child = Command::new(moto_python())
            .args(["-c", LAUNCHER, BUCKET])
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("moto log"))
            .spawn()
            .expect("moto starts");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let mut s3 = S3 {
            child,
            stdin: Mutex::new(stdin),
            lines: Mutex::new(lines),
            endpoint: String::new(),
            bucket: String::new(),
            region: String::new(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            log,
            _dir: dir,
        };
        let started: Started = s3.answer("moto to start");
        s3.endpoint = started.endpoint;
        s3.bucket = started.bucket;
        s3.region = started.region;
        s3.access_key_id = started.access_key_id;
        s3.secret_access_key = started.secret_access_key;
        s3
    }

    /// The flags that make a `xene` keep its artifacts in this store.
    pub fn xene_args(&self) -> Vec<String> {
        [
            ("--artifact-store", "s3"),
            ("--s3-endpoint", &self.endpoint),
            ("--s3-bucket", &self.bucket),
            ("--s3-region", &self.region),
            ("--s3-access-key-id", &self.access_key_id),
            ("--s3-secret-access-key", &self.secret_access_key),
        ]
        .iter()
        .flat_map(|(flag, value)| [flag.to_string(), value.to_string()])
        .collect()
    }

    /// Every object in the bucket with its size, listed through the
    /// signed S3 API.
    pub fn objects(&self) -> Vec<(String, u64)> {
        self.command("list");
        let listed: Listed = self.answer("moto to list the bucket");
        listed.objects
    }

    /// A URL presigned (by botocore, for an hour) to PUT object `key` of
    /// the bucket: what a plain HTTP client such as `curl -T` uploads with.
    pub fn presigned_put(&self, key: &str) -> String {
        #[derive(Deserialize)]
        struct Url {
            url: String,
        }
        self.command(&format!("presign-put {key}"));
        let url: Url = self.answer("moto to presign a PUT");
        url.url
    }

    /// Checks that authentication is on, with botocore's own presigned
    /// URLs: good ones accepted; another key, a tampered signature or
    /// expiry, a wrong secret, another method, anonymous requests and an
    /// expired URL refused. Panics with what was wrong.
    pub fn self_check(&self) {
        self.command("self-check");
        let _: serde_json::Value = self.answer("moto's self-check");
    }

    /// moto's log: a line per request, a line per presigned URL checked.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The presigned requests moto checked, as `(method, path, verdict)`:
    /// verdict `ok` or the reason it was refused.
    pub fn presigned_requests(&self) -> Vec<(String, String, String)> {
        self.log_text()
            .lines()
            .filter_map(|l| l.strip_prefix("presigned "))
            .filter_map(|l| {
                let (method, rest) = l.split_once(' ')?;
                let (path, verdict) = rest.split_once(": ")?;
                Some((method.into(), path.into(), verdict.into()))
            })
            .collect()
    }

    fn command(&self, command: &str) {
        let mut stdin = self.stdin.lock().unwrap();
        writeln!(stdin, "{command}").expect("moto reads its commands");
        stdin.flush().unwrap();
    }

    /// The next line moto prints, as JSON; panics with the log if none
    /// comes or it is an error.
    fn answer<T: serde::de::DeserializeOwned>(&self, what: &str) -> T {
        let line = match self.lines.lock().unwrap().recv_timeout(TIMEOUT) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => panic!("{what}: nothing within {TIMEOUT:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("{what}: moto exited"),
        };
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{what}: {e}: {line}"))
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- log of moto ---\n{}", self.log_text());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The store the artifact tests run against refuses what S3 refuses.
    #[test]
    fn moto_runs_with_authentication_on() {
        let s3 = S3::start();
        assert!(s3.access_key_id.starts_with("AKIA"), "{}", s3.access_key_id);
        s3.self_check();
        let checked = s3.presigned_requests();
        let verdict = |method: &str, key: &str| {
            checked
                .iter()
                .filter(|(m, p, _)| m == method && p == &format!("/{BUCKET}/{key}"))
                .map(|(_, _, v)| v.as_str())
                .collect::<Vec<_>>()
        };
        assert!(verdict("GET", "check/a").contains(&"ok"), "{checked:?}");
        assert!(
            verdict("GET", "check/a").contains(&"refused: expired"),
            "{checked:?}"
        );
        assert_eq!(verdict("PUT", "check/b"), ["ok"], "{checked:?}");
        assert!(s3.objects().is_empty(), "{:?}", s3.objects());
    }
}
