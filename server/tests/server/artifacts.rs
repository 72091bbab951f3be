//! Artifacts between tasks (issue 25) through real parts: a server in this
//! process without its built-in agent, two real `xene-agent connect`
//! processes running shell steps, chosen by selector, and the local store
//! or S3 (moto with request authentication on, `xene_testkit::S3`).
//!
//! - `build` publishes a directory on agent `a`, `use` needs it on agent
//!   `b`: the files arrive with their bytes and modes (its step checks),
//!   the listing names each file's digest, a download gives the same
//!   bytes, the task logs say what moved; with S3, every request moto saw
//!   for a blob was presigned for that blob's key (`blobs/sha256/..`), with
//!   the method the move needs and the server's expiry in minutes, and a
//!   file past `PART_SIZE` went up in parts;
//! - a second identical run uploads nothing: the upload metric and the
//!   store's objects stay as they were.
//!
//! The timeouts only turn a hang into a failure: nothing here is timed.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::json;
use sha2::Digest as _;
use xene_testkit::{Agent, S3};

use crate::util::{Backend, TestDb, TestServer};

pub const WAIT: Duration = Duration::from_secs(90);

/// The bytes `yes xene | head -c LEN` writes: what the steps publish, so
/// the test knows their digest without reading the agent's disk.
pub fn yes_xene(len: u64) -> Vec<u8> {
    b"xene\n"
        .iter()
        .copied()
        .cycle()
        .take(len as usize)
        .collect()
}

pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// `build` on agent `a` publishes `out/` (an executable, a file in a
/// subdirectory, and `big`, of `big` bytes); `use` on agent `b` needs it
/// under `got/` and checks every byte and mode.
fn workflow(big: u64) -> String {
    format!(
        r#"
name: art
pipelines:
  p:
    tasks:
      build:
        selector: {{role: a}}
        steps:
          - name: make
            run: |
              mkdir -p out/sub
              printf 'hello\n' > out/app && chmod 755 out/app
              printf two > out/sub/data && chmod 640 out/sub/data
              yes xene | head -c {big} > out/big
        publish:
          - name: binary
            path: out
      use:
        depends_on: [build]
        selector: {{role: b}}
        needs:
          - name: binary
            path: got
        steps:
          - name: check
            run: |
              test "$(cat got/app)" = hello
              test -x got/app
              test "$(cat got/sub/data)" = two
              test ! -x got/sub/data
              test "$(stat -c %a got/sub/data)" = 640
              yes xene | head -c {big} | cmp - got/big
              echo checked
"#
    )
}

/// A server without a built-in agent and the agents `names`, each joined
/// with the label `role: NAME` and allowed shell steps, all online.
pub struct Fleet {
    pub server: TestServer,
    pub agents: Vec<Agent>,
    pub db: TestDb,
}

impl Fleet {
    pub async fn start(
        names: &[&str],
        configure: impl FnOnce(&mut xene_server::config::Args),
    ) -> Self {
        let db = TestDb::new(Backend::Sqlite);
        let server = TestServer::start_with(&db, |args| {
            args.no_local_agent = true;
            configure(args);
        })
        .await;
        let mut fleet = Self {
            server,
            agents: Vec::new(),
            db,
        };
        for name in names {
            let agent = fleet.agent(name, &fleet.server.url("")).await;
            fleet.agents.push(agent);
        }
        fleet.wait_online(names.len()).await;
        fleet
    }

    /// A new agent `name` (label `role: NAME`) dialling `url`.
    pub async fn agent(&self, name: &str, url: &str) -> Agent {
        let (status, token) = self
            .server
            .post(
                "/api/v1/agents/join-tokens",
                json!({ "labels": { "role": name } }).to_string(),
            )
            .await;
        assert_eq!(status, 201, "{token}");
        Agent::start(
            url,
            token["token"].as_str().unwrap(),
            &self.db.dir.path().join(format!("agent-{name}")),
            name,
            &["--allow-shell"],
        )
    }

    pub async fn wait_online(&self, n: usize) {
        xene_testkit::wait_for("agents online", WAIT, async || {
            let (_, agents) = self.server.get("/api/v1/agents").await;
            let online = agents["agents"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["state"] == "online")
                .count();
            if online >= n {
                Ok(())
            } else {
                Err(agents.to_string())
            }
        })
        .await;
    }

    /// Starts a run of `art`'s `p` and waits for its end; panics with its
    /// logs unless it succeeded.
    pub async fn run_to_success(&self, workflow: &str) -> i64 {
        let (status, run) = self
            .server
            .post(
                &format!("/api/v1/workflows/{workflow}/pipelines/p/runs"),
                "",
            )
            .await;
        assert_eq!(status, 201, "{run}");
        let id = run["id"].as_i64().unwrap();
        let run = self.server.wait_for_run(id).await;
        assert_eq!(
            run["status"],
            "success",
            "{run}\n{}",
            self.log_text(id).await
        );
        id
    }

    /// Run `id`'s log, one line per log line, as `task: data`.
    pub async fn log_text(&self, id: i64) -> String {
        let (_, page) = self
            .server
            .get(&format!("/api/v1/runs/{id}/logs?limit=10000"))
            .await;
        page["lines"]
            .as_array()
            .map(|lines| {
                lines
                    .iter()
                    .map(|l| {
                        format!(
                            "{}: {}",
                            l["task"].as_str().unwrap_or(""),
                            l["data"].as_str().unwrap_or("")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_else(|| page.to_string())
    }

    /// The server's count of artifact bytes uploaded.
    pub async fn uploaded_bytes(&self) -> u64 {
        let text = reqwest::get(self.server.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("xene_artifact_uploaded_bytes_total "))
            .unwrap_or_else(|| panic!("no upload metric in:\n{text}"))
            .trim()
            .parse()
            .unwrap()
    }

    /// The files of the local store's blobs, as (key under the store, size).
    pub fn local_blobs(&self) -> BTreeSet<(String, u64)> {
        let root = self.db.dir.path().join("artifacts");
        let mut found = BTreeSet::new();
        walk(&root, &root, &mut found);
        found.retain(|(key, _)| key.starts_with("blobs/"));
        found
    }
}

fn walk(root: &Path, dir: &Path, found: &mut BTreeSet<(String, u64)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            walk(root, &path, found);
        } else {
            let key = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            found.insert((key, meta.len()));
        }
    }
}

/// The object key of a blob.
pub fn blob_key(digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap();
    format!("blobs/sha256/{}/{hex}", &hex[..2])
}

/// What a run's `build` published, checked against what its step wrote
/// (`big_digest`: its big file's); the digests of its files, by path.
async fn check_listing(
    fleet: &Fleet,
    run: i64,
    big: u64,
    big_digest: &str,
) -> Vec<(String, String)> {
    let (status, listing) = fleet
        .server
        .get(&format!("/api/v1/runs/{run}/artifacts"))
        .await;
    assert_eq!(status, 200, "{listing}");
    let artifacts = listing["artifacts"].as_array().unwrap();
    assert_eq!(artifacts.len(), 1, "{listing}");
    let binary = &artifacts[0];
    assert_eq!(
        (&binary["task"], &binary["name"]),
        (&json!("build"), &json!("binary"))
    );
    assert_eq!(binary["files"], 3, "{binary}");
    assert_eq!(binary["bytes"], big + 6 + 3, "{binary}");
    let entries: Vec<(String, u64, u64, String)> = binary["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["path"].as_str().unwrap().to_string(),
                e["size"].as_u64().unwrap(),
                e["mode"].as_u64().unwrap(),
                e["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want = [
        ("app", 6, 0o755, digest_of(b"hello\n")),
        ("big", big, 0o644, big_digest.to_string()),
        ("sub/data", 3, 0o640, digest_of(b"two")),
    ];
    let want: Vec<(String, u64, u64, String)> = want
        .into_iter()
        .map(|(p, s, m, d)| (p.to_string(), s, m, d))
        .collect();
    assert_eq!(entries, want, "{binary}");
    entries.into_iter().map(|(p, _, _, d)| (p, d)).collect()
}

/// One file of the artifact, downloaded as a person would.
async fn download(fleet: &Fleet, run: i64, path: &str) -> Vec<u8> {
    let response = fleet
        .server
        .client
        .get(
            fleet
                .server
                .url(&xene_api::paths::artifact(run, "binary", Some(path))),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{response:?}");
    response.bytes().await.unwrap().to_vec()
}

/// Both runs of the pipeline and what every store shows alike; the
/// digests of the first run's files.
async fn publish_fetch_and_again(
    fleet: &Fleet,
    big: u64,
    stored: impl Fn() -> BTreeSet<(String, u64)>,
) -> (Vec<(String, String)>, Metric) {
    let (status, body) = fleet.server.post("/api/v1/workflows", workflow(big)).await;
    assert_eq!(status, 201, "{body}");
    let big_bytes = yes_xene(big);
    let big_digest = digest_of(&big_bytes);
    let first = fleet.run_to_success("art").await;
    let digests = check_listing(fleet, first, big, &big_digest).await;
    let log = fleet.log_text(first).await;
    assert!(log.contains("build: staged binary: 3 files"), "{log}");
    assert!(log.contains("use: fetched binary: 3 files"), "{log}");
    assert!(log.contains("use: checked"), "{log}");
    assert!(
        download(fleet, first, "big").await == big_bytes,
        "the download is not the file"
    );
    assert_eq!(download(fleet, first, "app").await, b"hello\n");
    let keys: BTreeSet<(String, u64)> = digests
        .iter()
        .map(|(path, d)| {
            let size = match path.as_str() {
                "app" => 6,
                "big" => big,
                _ => 3,
            };
            (blob_key(d), size)
        })
        .collect();
    assert_eq!(stored(), keys, "the store holds each blob once, whole");

    // The same files again: nothing is uploaded (the agent is told of no
    // upload, the server counts none, the store's blobs are not written).
    let uploaded = fleet.uploaded_bytes().await;
    let second = fleet.run_to_success("art").await;
    assert_eq!(
        check_listing(fleet, second, big, &big_digest).await,
        digests
    );
    let log = fleet.log_text(second).await;
    assert!(log.contains("(0 B uploaded)"), "{log}");
    assert_eq!(stored(), keys);
    let metric = Metric {
        first: uploaded,
        second: fleet.uploaded_bytes().await - uploaded,
    };
    (digests, metric)
}

/// Bytes the server counted as uploaded in each run; checked last, as the
/// least telling of the signs.
#[derive(Debug)]
struct Metric {
    first: u64,
    second: u64,
}

impl Metric {
    fn check(&self, big: u64) {
        assert!(
            self.first >= big,
            "the first run's uploads counted: {self:?}"
        );
        assert_eq!(self.second, 0, "the second run uploaded bytes: {self:?}");
    }
}

#[tokio::test]
async fn artifacts_move_between_agents_through_the_local_store() {
    let fleet = Fleet::start(&["a", "b"], |_| {}).await;
    let big = 3_000_000;
    let (_, metric) = publish_fetch_and_again(&fleet, big, || fleet.local_blobs()).await;
    metric.check(big);
}

/// Flags that keep the server's artifacts in `s3`.
pub fn use_s3(args: &mut xene_server::config::Args, s3: &S3) {
    use xene_server::config::artifacts::StoreKind;
    let a = &mut args.artifacts;
    a.artifact_store = StoreKind::S3;
    a.s3_endpoint = Some(s3.endpoint.clone());
    a.s3_bucket = Some(s3.bucket.clone());
    a.s3_region = s3.region.clone();
    a.s3_access_key_id = Some(s3.access_key_id.clone());
    a.s3_secret_access_key = Some(s3.secret_access_key.clone());
}

/// One of moto's request lines: `"METHOD /bucket/key?query HTTP/1.1" STATUS`.
struct Request {
    method: String,
    key: String,
    query: String,
    status: u16,
}

fn moto_requests(s3: &S3) -> Vec<Request> {
    s3.log_text()
        .lines()
        .filter_map(|line| {
            let quoted = line.split('"').nth(1)?;
            let status = line
                .split('"')
                .nth(2)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()?;
            let mut words = quoted.split(' ');
            let method = words.next()?.to_string();
            let target = words.next()?;
            let (path, query) = target.split_once('?').unwrap_or((target, ""));
            let key = path.strip_prefix(&format!("/{}/", s3.bucket))?.to_string();
            Some(Request {
                method,
                key,
                query: query.to_string(),
                status,
            })
        })
        .collect()
}

/// The value of `name` in a URL's query (the signer's values need no
/// decoding for what is compared here).
fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

#[tokio::test]
async fn artifacts_move_between_agents_through_s3() {
    let s3 = S3::start();
    let fleet = Fleet::start(&["a", "b"], |args| {
        use_s3(args, &s3);
        args.artifacts.artifact_url_ttl = Duration::from_secs(300);
    })
    .await;
    // Past one part: a multipart upload of two parts.
    let big = xene_core::artifact::PART_SIZE + 1_000_000;
    let objects = || s3.objects().into_iter().collect::<BTreeSet<_>>();
    let (digests, metric) = publish_fetch_and_again(&fleet, big, objects).await;

    // Every request for a blob was presigned, minutes long, and moto
    // found its signature good; none came with the server's own key.
    let requests = moto_requests(&s3);
    let checked = s3.presigned_requests();
    assert!(
        checked.iter().all(|(_, _, verdict)| verdict == "ok"),
        "moto refused a presigned URL: {checked:?}"
    );
    for (path, digest) in &digests {
        let key = blob_key(digest);
        let of_blob: Vec<&Request> = requests.iter().filter(|r| r.key == key).collect();
        let presigned = |method: &str| {
            of_blob
                .iter()
                .filter(|r| r.method == method && r.query.contains("X-Amz-Signature="))
                .collect::<Vec<_>>()
        };
        let puts = presigned("PUT");
        let gets = presigned("GET");
        let parts = if path == "big" { 2 } else { 1 };
        assert_eq!(
            puts.len(),
            parts,
            "{path}: uploads {:?}",
            puts.iter().map(|r| &r.query).collect::<Vec<_>>()
        );
        if parts > 1 {
            let numbers: BTreeSet<&str> = puts
                .iter()
                .filter_map(|r| param(&r.query, "partNumber"))
                .collect();
            assert_eq!(numbers, BTreeSet::from(["1", "2"]));
            assert!(puts.iter().all(|r| param(&r.query, "uploadId").is_some()));
        }
        // Fetched by `use` in each of the two runs; never uploaded again.
        assert_eq!(gets.len(), 2, "{path}: downloads");
        for r in puts.iter().chain(&gets) {
            assert_eq!(r.status, 200, "{} {}?{}", r.method, r.key, r.query);
            assert_eq!(
                param(&r.query, "X-Amz-Expires"),
                Some("300"),
                "not 5 minutes: {}",
                r.query
            );
            assert_eq!(
                param(&r.query, "X-Amz-Algorithm"),
                Some("AWS4-HMAC-SHA256"),
                "{}",
                r.query
            );
        }
    }
    metric.check(big);
}

/// Publishing what must not leave the workspace, or too much, fails the
/// task with a clear error on a real agent: a symbolic link leading out
/// (its target is never read), more files than an artifact may hold.
/// And paths leading out are refused when the workflow is applied.
const HOSTILE: &str = r#"
name: hostile
pipelines:
  p:
    tasks:
      leak:
        steps:
          - name: link
            run: mkdir out && printf mine > out/ok && ln -s /etc/passwd out/leak
        publish:
          - name: leaked
            path: out
      many:
        steps:
          - name: files
            run: mkdir many && cd many && seq 10001 | xargs touch
        publish:
          - name: crowd
            path: many
"#;

#[tokio::test]
async fn hostile_publishes_fail_their_task_and_paths_out_are_refused_at_apply() {
    let fleet = Fleet::start(&["a"], |_| {}).await;
    for (path, said) in [("../out", ".."), ("/etc", "absolute"), ("a/../../b", "..")] {
        let spec = HOSTILE.replacen("path: out", &format!("path: {path}"), 1);
        let (status, body) = fleet.server.post("/api/v1/workflows", spec).await;
        assert_eq!(status, 422, "{path}: {body}");
        assert!(body.to_string().contains(said), "{path}: {body}");
    }
    let (status, body) = fleet.server.post("/api/v1/workflows", HOSTILE).await;
    assert_eq!(status, 201, "{body}");
    let (_, run) = fleet
        .server
        .post("/api/v1/workflows/hostile/pipelines/p/runs", "")
        .await;
    let run = fleet.server.wait_for_run(run["id"].as_i64().unwrap()).await;
    assert_eq!(run["status"], "error", "{run}");
    let error = |task: &str| {
        run["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == task)
            .and_then(|t| t["error"].as_str())
            .unwrap_or_else(|| panic!("{task} has no error: {run}"))
            .to_string()
    };
    let leak = error("leak");
    assert!(
        leak.contains("out/leak") && leak.contains("leading out"),
        "{leak}"
    );
    let many = error("many");
    assert!(many.contains("more than 10000 files"), "{many}");
    let (_, listing) = fleet
        .server
        .get(&format!("/api/v1/runs/{}/artifacts", run["id"]))
        .await;
    assert_eq!(listing["artifacts"], json!([]), "{listing}");
    assert!(fleet.local_blobs().is_empty(), "{:?}", fleet.local_blobs());
}
