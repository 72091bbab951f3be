//! Caches at the server (issue 25), on SQLite and PostgreSQL: the files
//! service answers an agent's cache requests (as the gateway hands them
//! over) about attempts placed through storage, with the real local store.
//!
//! - a restore misses until an entry is saved, and a save shows only once
//!   its attempt succeeded; then the key hits exactly, and restore keys
//!   find the newest entry starting with them (by prefix, `_` no wildcard);
//! - the first save of a key wins, also when two attempts stage it at once;
//! - a cache its task does not declare is refused; so are chunks not named
//!   as agents name them, and a save from a pipeline that may save when
//!   another declaring the cache never saves for the run's trigger;
//! - a saved entry with a blob gone, or with no chunks, is a miss.
//!
//! Quotas and the collector: `cache_quota.rs`.

use std::collections::BTreeSet;
use std::sync::Arc;

use sha2::{Digest as _, Sha256};
use xene_core::artifact::{Digest, ManifestEntry};
use xene_core::protocol::{AttemptRef, FilesAnswer, FilesRequest};
use xene_core::status::TaskStatus;
use xene_server::config::artifacts::ArtifactArgs;
use xene_server::files::BlobStore;
use xene_server::files::service::{self, Service};
use xene_server::storage::caches::{self, Quotas};
use xene_server::storage::{Db, runs};

use crate::artifact_lifecycle::{finish, start_task};
use crate::attempt_fixtures::{add_agent, model_2_db};
use crate::util::{BACKENDS, Backend, TestDb};

pub const SPEC: &str = "name: cw
pipelines:
  p:
    cache_save: {webhook: never}
    tasks:
      build:
        steps: ['true']
        caches:
          - name: cargo
            key: cargo
            paths: [target]
        publish:
          - name: binary
            path: out
  q:
    tasks:
      build:
        steps: ['true']
        caches:
          - name: cargo
            key: cargo
            paths: [target]
";

/// A database with `SPEC` and agent `a`, and the files service over a
/// local store.
pub struct Setup {
    pub db: Db,
    pub service: Service,
    pub store: Arc<BlobStore>,
    _test_db: TestDb,
}

pub async fn setup(backend: Backend, quotas: Quotas) -> Setup {
    let test_db = TestDb::new(backend);
    let db = model_2_db(&test_db, SPEC).await.with_quotas(quotas);
    add_agent(&db, "a", 8).await;
    let store =
        Arc::new(BlobStore::open(&ArtifactArgs::default(), test_db.dir.path(), &[7; 32]).unwrap());
    let service = Service {
        db: db.clone(),
        specs: Default::default(),
        blobs: store.clone(),
        metrics: Default::default(),
    };
    Setup {
        db,
        service,
        store,
        _test_db: test_db,
    }
}

impl Setup {
    /// A run of `p` started by `trigger`, its `build` attempt started.
    pub async fn attempt(&self, trigger: &str) -> (i64, i64) {
        self.attempt_in("p", trigger).await
    }

    /// A run of `pipeline` started by `trigger`, its `build` attempt started.
    pub async fn attempt_in(&self, pipeline: &str, trigger: &str) -> (i64, i64) {
        let run = runs::create(&self.db, "cw", pipeline, Default::default(), trigger)
            .await
            .unwrap()
            .id;
        (run, start_task(&self.db, run, "build").await)
    }

    pub async fn ask(&self, attempt: i64, request: FilesRequest) -> FilesAnswer {
        service::answer(&self.service, "a", AttemptRef { id: attempt }, request).await
    }

    /// Writes `bytes` into the store as the blob of their digest.
    pub fn put(&self, bytes: &[u8]) {
        let hex = Digest::from_sha256(&Sha256::digest(bytes).into())
            .hex()
            .to_string();
        let dir = self
            .store
            .local_root()
            .unwrap()
            .join("blobs/sha256")
            .join(&hex[..2]);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(hex), bytes).unwrap();
    }

    /// Uploads `chunks` (`CacheUpload`, then the bytes) and saves them as
    /// entry `key` of cache `cargo`: the save's answer.
    pub async fn save(&self, attempt: i64, key: &str, chunks: &[&[u8]]) -> FilesAnswer {
        let chunks: Vec<ManifestEntry> = chunks
            .iter()
            .enumerate()
            .map(|(i, bytes)| chunk(i, bytes))
            .collect();
        let upload = FilesRequest::CacheUpload {
            name: "cargo".into(),
            key: key.into(),
            chunks: chunks.clone(),
        };
        match self.ask(attempt, upload).await {
            FilesAnswer::Uploads { .. } => {}
            refused => return refused,
        }
        for bytes in chunk_bytes(&chunks) {
            self.put(bytes);
        }
        let save = FilesRequest::CacheSave {
            name: "cargo".into(),
            key: key.into(),
            chunks,
            completed: vec![],
            files: 3,
        };
        self.ask(attempt, save).await
    }

    /// The entry `restore` finds: its key and its chunks' sizes.
    pub async fn restore(
        &self,
        attempt: i64,
        key: &str,
        restore_keys: &[&str],
    ) -> Option<(String, Vec<u64>)> {
        let request = FilesRequest::CacheRestore {
            name: "cargo".into(),
            key: key.into(),
            restore_keys: restore_keys.iter().map(|k| k.to_string()).collect(),
        };
        match self.ask(attempt, request).await {
            FilesAnswer::CacheEntry {
                key: None,
                files,
                chunks,
                downloads,
            } => {
                assert_eq!((files, chunks.len(), downloads.len()), (0, 0, 0));
                None
            }
            FilesAnswer::CacheEntry {
                key: Some(key),
                files,
                chunks,
                downloads,
            } => {
                assert_eq!(files, 3);
                // One download per distinct digest.
                let named: BTreeSet<&Digest> = chunks.iter().map(|c| &c.digest).collect();
                let given: BTreeSet<&Digest> = downloads.iter().map(|d| &d.digest).collect();
                assert_eq!((named, downloads.len()), (given, chunks.len()));
                Some((key, chunks.iter().map(|c| c.size).collect()))
            }
            other => panic!("not an entry: {other:?}"),
        }
    }
}

/// Chunk `i` of an entry, holding `bytes`.
pub fn chunk(i: usize, bytes: &[u8]) -> ManifestEntry {
    ManifestEntry {
        path: xene_core::cache::chunk_name(i),
        size: bytes.len() as u64,
        mode: 0o644,
        digest: Digest::from_sha256(&Sha256::digest(bytes).into()),
    }
}

/// The bytes of chunks made by `fill`, for `put`.
fn chunk_bytes(chunks: &[ManifestEntry]) -> Vec<&'static [u8]> {
    chunks
        .iter()
        .map(|c| {
            let found = FILLS.iter().find(|b| chunk(0, b).digest == c.digest);
            found.expect("a chunk made by fill").as_slice()
        })
        .collect()
}

/// The chunks tests save: each `vec![i; size]`, known by digest.
static FILLS: std::sync::LazyLock<Vec<Vec<u8>>> = std::sync::LazyLock::new(|| {
    let mut all = Vec::new();
    for seed in 0..8u8 {
        for size in [10usize, 30, 40, 60, 100, 101] {
            all.push(vec![seed; size]);
        }
    }
    all
});

/// `size` bytes of `seed` (sizes 10, 30, 40, 60, 100, 101; seeds below 8).
pub fn fill(seed: u8, size: usize) -> &'static [u8] {
    FILLS
        .iter()
        .find(|b| b.len() == size && b[0] == seed)
        .expect("a known fill")
}

pub fn refused(answer: FilesAnswer) -> String {
    match answer {
        FilesAnswer::Refused { error } => error,
        other => panic!("not refused: {other:?}"),
    }
}

#[tokio::test]
async fn caches_service_restores_exact_then_newest_by_prefix_and_the_first_save_wins() {
    for backend in BACKENDS {
        let s = setup(backend, Quotas::default()).await;
        let (_, first) = s.attempt("manual").await;

        // Nothing saved: a miss, by key or prefix.
        assert_eq!(s.restore(first, "cargo-1", &["cargo-"]).await, None);
        // A cache the task does not declare: refused, whatever the request.
        for request in [
            FilesRequest::CacheRestore {
                name: "npm".into(),
                key: "k".into(),
                restore_keys: vec![],
            },
            FilesRequest::CacheUpload {
                name: "npm".into(),
                key: "k".into(),
                chunks: vec![chunk(0, fill(0, 10))],
            },
            FilesRequest::CacheSave {
                name: "npm".into(),
                key: "k".into(),
                chunks: vec![chunk(0, fill(0, 10))],
                completed: vec![],
                files: 1,
            },
        ] {
            let error = refused(s.ask(first, request).await);
            assert!(error.contains("declares no cache \"npm\""), "{error}");
        }

        // Saved with its attempt's success, not before.
        let saved = s.save(first, "cargo-1", &[fill(1, 10), fill(1, 30)]).await;
        assert_eq!(saved, FilesAnswer::Committed, "{backend:?}");
        assert_eq!(s.restore(first, "cargo-1", &[]).await, None);
        assert!(finish(&s.db, first, "build", TaskStatus::Success).await);
        let (_, second) = s.attempt("manual").await;
        assert_eq!(
            s.restore(second, "cargo-1", &[]).await,
            Some(("cargo-1".into(), vec![10, 30]))
        );

        // The first save of a key wins: a second one is answered, and
        // changes nothing. Another key is saved.
        let again = s.save(second, "cargo-1", &[fill(2, 40)]).await;
        assert_eq!(again, FilesAnswer::Committed);
        assert_eq!(
            s.save(second, "cargo-2", &[fill(2, 60)]).await,
            FilesAnswer::Committed
        );
        assert!(finish(&s.db, second, "build", TaskStatus::Success).await);
        let (_, third) = s.attempt("manual").await;
        assert_eq!(
            s.restore(third, "cargo-1", &[]).await,
            Some(("cargo-1".into(), vec![10, 30]))
        );
        // Restore keys in order, each the newest entry starting with it;
        // `_` is a plain character, not a wildcard.
        let newest = s
            .restore(third, "cargo-9", &["none-", "cargo_", "cargo-"])
            .await;
        assert_eq!(newest, Some(("cargo-2".into(), vec![60])), "{backend:?}");
        let by_first = s.restore(third, "cargo-9", &["cargo-1"]).await;
        assert_eq!(by_first, Some(("cargo-1".into(), vec![10, 30])));
        assert_eq!(s.restore(third, "cargo-9", &["cargo_"]).await, None);

        // Two attempts staging one key at once: the first to succeed wins,
        // the other's end still succeeds; a failed attempt saves nothing.
        let (_, fourth) = s.attempt("manual").await;
        for (attempt, seed) in [(third, 3), (fourth, 4)] {
            let answer = s.save(attempt, "cargo-3", &[fill(seed, 10)]).await;
            assert_eq!(answer, FilesAnswer::Committed);
        }
        let (_, fifth) = s.attempt("manual").await;
        assert_eq!(
            s.save(fifth, "cargo-5", &[fill(5, 10)]).await,
            FilesAnswer::Committed
        );
        assert!(finish(&s.db, fourth, "build", TaskStatus::Success).await);
        assert!(finish(&s.db, third, "build", TaskStatus::Success).await);
        assert!(finish(&s.db, fifth, "build", TaskStatus::Error).await);
        let list = caches::list(&s.db, "cw").await.unwrap();
        let mut keys: Vec<&str> = list.entries.iter().map(|e| e.key.as_str()).collect();
        keys.sort();
        assert_eq!(keys, ["cargo-1", "cargo-2", "cargo-3"], "{backend:?}");
        let (_, sixth) = s.attempt("manual").await;
        let winner = s.restore(sixth, "cargo-3", &[]).await.unwrap();
        let chunks = caches::lookup(&s.db, "cw", "cargo", "cargo-3", &[])
            .await
            .unwrap()
            .unwrap()
            .chunks;
        assert_eq!(winner.1, [10]);
        assert_eq!(
            chunks[0].digest,
            chunk(0, fill(4, 10)).digest,
            "{backend:?}"
        );
        // No staged row is left behind.
        let staged: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM caches WHERE state = 'staged'")
            .fetch_one(s.db.pool())
            .await
            .unwrap();
        assert_eq!(staged, 0);
        refuses_bad_chunks_and_saves_other_pipelines_forbid(&s, backend).await;
    }
}

/// Chunks misnamed and saves another pipeline forbids are refused; an
/// entry with a blob gone or no chunks misses (on the set-up of the test
/// above, to spare one).
async fn refuses_bad_chunks_and_saves_other_pipelines_forbid(s: &Setup, backend: Backend) {
    let (_, first) = s.attempt("manual").await;
    // Chunks as agents name them, at least one: else refused.
    let misnamed = ManifestEntry {
        path: "x.tar".into(),
        ..chunk(0, fill(0, 10))
    };
    let cases = [
        (vec![], "cache \"cargo\" has no chunks"),
        (
            vec![misnamed],
            "chunk 0 of cache \"cargo\" is named \"x.tar\", not 00000.tar",
        ),
        (
            vec![chunk(1, fill(0, 10))],
            "chunk 0 of cache \"cargo\" is named \"00001.tar\", not 00000.tar",
        ),
    ];
    for (chunks, want) in cases {
        let upload = FilesRequest::CacheUpload {
            name: "cargo".into(),
            key: "k".into(),
            chunks: chunks.clone(),
        };
        assert_eq!(refused(s.ask(first, upload).await), want, "{backend:?}");
        let save = FilesRequest::CacheSave {
            name: "cargo".into(),
            key: "k".into(),
            chunks,
            completed: vec![],
            files: 1,
        };
        assert_eq!(refused(s.ask(first, save).await), want, "{backend:?}");
    }

    // Pipeline q saves for webhooks, but p, which declares cargo too,
    // never does: q's webhook runs must not fill p's restores.
    let (_, hook) = s.attempt_in("q", "webhook").await;
    let error = refused(s.save(hook, "k", &[fill(6, 10)]).await);
    assert_eq!(
        error,
        "pipeline p also declares cache \"cargo\" and its cache_save says never for runs \
         started by webhook: entries are shared by the workflow's pipelines, so cache \
         \"cargo\" is not saved",
        "{backend:?}"
    );
    let (_, manual) = s.attempt_in("q", "manual").await;
    let saved = s.save(manual, "k", &[fill(6, 10)]).await;
    assert_eq!(saved, FilesAnswer::Committed, "{backend:?}");
    assert!(finish(&s.db, manual, "build", TaskStatus::Success).await);
    assert!(s.restore(first, "k", &[]).await.is_some());

    // A blob gone from the store: the entry cannot be restored whole.
    let digest = chunk(0, fill(6, 10)).digest;
    sqlx::query("DELETE FROM blobs WHERE digest = $1")
        .bind(digest.as_str())
        .execute(s.db.pool())
        .await
        .unwrap();
    assert_eq!(s.restore(first, "k", &[]).await, None, "{backend:?}");
    // An entry without chunks is never a hit.
    sqlx::query(
        "INSERT INTO caches (workflow, name, key, attempt_id, state, files, bytes, \
         created_at, used_at) VALUES ('cw', 'cargo', 'empty', 0, 'saved', 0, 0, 1, 1)",
    )
    .execute(s.db.pool())
    .await
    .unwrap();
    assert_eq!(s.restore(first, "empty", &[]).await, None, "{backend:?}");
}
