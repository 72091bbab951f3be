//! The artifact collector's pass over the real local store, on SQLite and
//! PostgreSQL: blobs a manifest names or a publish touched within the
//! grace stay, with their objects; unreferenced old rows go with their
//! objects, rowless old objects and old temporary uploads go, young ones
//! stay.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use xene_core::status::TaskStatus;
use xene_server::config::artifacts::ArtifactArgs;
use xene_server::controllers::collector::{self, Cursor};
use xene_server::files::BlobStore;
use xene_server::metrics::Metrics;
use xene_server::storage::artifacts::{self, GRACE_MS};
use xene_server::storage::{Db, now_ms};

use crate::artifact_lifecycle::{digest, entry};
use crate::attempt_fixtures::{add_agent, model_2_db, start_run};
use crate::util::{BACKENDS, TestDb};

const SPEC: &str = "name: art\npipelines:\n  p:\n    tasks:\n      ok: {steps: ['true']}\n";

/// Writes the object of `seed` into the local store, last written `age` ago.
fn object(root: &std::path::Path, seed: u8, age: Duration) -> std::path::PathBuf {
    let hex = digest(seed).hex().to_string();
    let dir = root.join("blobs/sha256").join(&hex[..2]);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(&hex);
    std::fs::write(&path, [seed]).unwrap();
    aged(&path, age);
    path
}

fn aged(path: &std::path::Path, age: Duration) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - age).unwrap();
}

async fn touched(db: &Db, seed: u8, at: i64) {
    sqlx::query("UPDATE blobs SET touched_at = $1 WHERE digest = $2")
        .bind(at)
        .bind(digest(seed).as_str())
        .execute(db.pool())
        .await
        .unwrap();
}

async fn live_rows(db: &Db) -> Vec<String> {
    sqlx::query_scalar("SELECT digest FROM blobs WHERE touched_at >= 0 ORDER BY digest")
        .fetch_all(db.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn the_collector_sweeps_only_what_nothing_names() {
    let old = Duration::from_millis(GRACE_MS as u64) + Duration::from_secs(600);
    let young = Duration::from_secs(60);
    for backend in BACKENDS {
        let test_db = TestDb::new(backend);
        let db = model_2_db(&test_db, SPEC).await;
        add_agent(&db, "a", 8).await;
        let store =
            BlobStore::open(&ArtifactArgs::default(), test_db.dir.path(), &[7; 32]).unwrap();
        let root = store.local_root().unwrap().to_path_buf();

        // 1: named by a published manifest; 2: nobody's, but a publish
        // just counted on it; 3: nobody's for long; 4: an old upload never
        // committed; 5: an upload under way; 6: committed a moment ago,
        // its manifest not yet staged.
        let run = start_run(&db, "art", &[]).await;
        let ok = crate::artifact_lifecycle::start_task(&db, run, "ok").await;
        artifacts::insert_blobs(&db, &[(digest(1), 1), (digest(2), 1), (digest(3), 1)])
            .await
            .unwrap();
        let staged = artifacts::stage(&db, ok, run, "ok", "bin", false, &[entry("app", 1, 1)])
            .await
            .unwrap();
        assert_eq!(staged, artifacts::Staged::Stored);
        assert!(crate::artifact_lifecycle::finish(&db, ok, "ok", TaskStatus::Success).await);
        let long_ago = now_ms() - old.as_millis() as i64;
        for seed in [1, 2, 3] {
            touched(&db, seed, long_ago).await;
        }
        artifacts::insert_blobs(&db, &[(digest(6), 1)])
            .await
            .unwrap();
        let mut objects = Vec::new();
        for (seed, age) in [(1, old), (2, old), (3, old), (4, old), (5, young), (6, old)] {
            objects.push((seed, object(&root, seed, age)));
        }
        let stale_temp = root.join("tmp/dead.part");
        let live_temp = root.join("tmp/live.part");
        for (path, age) in [(&stale_temp, old), (&live_temp, young)] {
            std::fs::write(path, b"x").unwrap();
            aged(path, age);
        }
        assert_eq!(
            artifacts::missing_blobs(&db, &[digest(2)]).await.unwrap(),
            []
        );

        let metrics = Metrics::new();
        let cursor = Mutex::new(Cursor::default());
        let done = collector::pass(&db, &metrics, &store, Duration::ZERO, &cursor, now_ms())
            .await
            .unwrap();
        assert_eq!(
            (done.rows, done.objects, done.temp),
            (1, 2, 1),
            "{backend:?}"
        );
        for (seed, path) in &objects {
            let kept = ![3, 4].contains(seed);
            assert_eq!(path.exists(), kept, "blob {seed} on {backend:?}");
        }
        assert!(!stale_temp.exists() && live_temp.exists());
        let want: Vec<String> = [1, 2, 6].map(|s| digest(s).to_string()).into();
        let mut want = want;
        want.sort();
        assert_eq!(live_rows(&db).await, want, "{backend:?}");
        // No claim is left behind.
        let claims: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM blobs WHERE touched_at < 0")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(claims, 0);
        assert_eq!(
            artifacts::published(&db, run, "bin")
                .await
                .unwrap()
                .map(|f| f.len()),
            Some(1)
        );
        // The store holds blobs 1, 2 and 6, a byte each.
        metrics.refresh_from_db(&db, Duration::from_secs(300)).await;
        let text = metrics.render();
        assert!(text.contains("\nxene_artifact_bytes 3\n"), "{text}");
        assert!(
            text.contains("\nxene_artifact_blobs_deleted_total 2\n"),
            "{text}"
        );

        // Nothing more to do a second time round.
        let again = collector::pass(&db, &metrics, &store, Duration::ZERO, &cursor, now_ms())
            .await
            .unwrap();
        assert_eq!(again, collector::Collected::default(), "{backend:?}");
    }
}
