//! The artifact collector's pass over the real local store, on SQLite and
//! PostgreSQL: blobs a manifest names or a publish touched within the
//! grace stay, with their objects; unreferenced old rows go with their
//! objects, rowless old objects and old temporary uploads go, young ones
//! stay.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use xene_core::status::TaskStatus;
use xene_server::config::artifacts::ArtifactArgs;
use xene_server::controllers::collector::{self, Cursor, Lease, StoredObjects};
use xene_server::files::BlobStore;
use xene_server::metrics::Metrics;
use xene_server::storage::artifacts::{self, GRACE_MS};
use xene_server::storage::{Db, leases, now_ms};

use crate::artifact_lifecycle::{digest, entry, touched};
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

/// The store's objects as the server hands them to its collector.
fn collected(store: &BlobStore) -> StoredObjects {
    let root = store.local_root().unwrap();
    StoredObjects {
        objects: store.objects().clone(),
        key: xene_server::files::store::key,
        prefix: "blobs/sha256".into(),
        ordered: false,
        temp_dir: Some(root.join(xene_server::files::store::LOCAL_TEMP_DIR)),
    }
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

        // 7: nobody's for long, and its object is gone already.
        artifacts::insert_blobs(&db, &[(digest(7), 1)])
            .await
            .unwrap();
        touched(&db, 7, long_ago).await;

        let metrics = Metrics::new();
        let cursor = Mutex::new(Cursor::default());
        let deleter = collected(&store);
        // While another server holds the lease, a pass does nothing.
        assert!(
            leases::acquire(&db, collector::LEASE, "other", 60_000)
                .await
                .unwrap()
        );
        let mut lease = Lease::new("me", Duration::from_secs(60));
        let done = collector::pass(
            &db,
            &metrics,
            &deleter,
            Duration::ZERO,
            &cursor,
            &mut lease,
            now_ms(),
        )
        .await
        .unwrap();
        assert_eq!(done, collector::Collected::default(), "{backend:?}");
        assert!(objects_exist(&root, &[3, 4]), "{backend:?}");
        leases::release(&db, collector::LEASE, "other")
            .await
            .unwrap();
        // The stored bytes cannot be read (their query names the table):
        // the pass sweeps all the same.
        rename_workflows(&db, "workflows", "workflows_away").await;
        let done = collector::pass(
            &db,
            &metrics,
            &deleter,
            Duration::ZERO,
            &cursor,
            &mut lease,
            now_ms(),
        )
        .await
        .unwrap();
        // Rows 3 and 7 go; objects 3 and 4 (7's was not there to count).
        assert_eq!(
            (done.rows, done.objects, done.temp),
            (2, 2, 1),
            "{backend:?}"
        );
        for (seed, path) in &objects {
            let kept = ![3, 4].contains(seed);
            assert_eq!(path.exists(), kept, "blob {seed} on {backend:?}");
        }
        assert!(!stale_temp.exists() && live_temp.exists());
        rename_workflows(&db, "workflows_away", "workflows").await;
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
        let again = collector::pass(
            &db,
            &metrics,
            &deleter,
            Duration::ZERO,
            &cursor,
            &mut lease,
            now_ms(),
        )
        .await
        .unwrap();
        assert_eq!(again, collector::Collected::default(), "{backend:?}");
        let series = "xene_workflow_stored_bytes{workflow=\"art\",kind=\"artifacts\"} 1\n";
        assert!(metrics.render().contains(series), "{}", metrics.render());
        metrics.expire_workflow_stored(Duration::from_secs(3600));
        assert!(metrics.render().contains(series), "{}", metrics.render());

        // Another server takes the lease: this one's series go.
        leases::release(&db, collector::LEASE, "me").await.unwrap();
        assert!(
            leases::acquire(&db, collector::LEASE, "other", 60_000)
                .await
                .unwrap()
        );
        let mut lost = Lease::new("me", Duration::from_secs(60));
        let done = collector::pass(
            &db,
            &metrics,
            &deleter,
            Duration::ZERO,
            &cursor,
            &mut lost,
            now_ms(),
        )
        .await
        .unwrap();
        assert_eq!(done, collector::Collected::default(), "{backend:?}");
        let text = metrics.render();
        assert!(!text.contains("xene_workflow_stored_bytes{"), "{text}");
    }
}

async fn rename_workflows(db: &Db, from: &str, to: &str) {
    sqlx::query(&format!("ALTER TABLE {from} RENAME TO {to}"))
        .execute(&mut *db.write_conn().await.unwrap())
        .await
        .unwrap();
}

fn objects_exist(root: &std::path::Path, seeds: &[u8]) -> bool {
    seeds.iter().all(|seed| {
        let hex = digest(*seed).hex().to_string();
        root.join("blobs/sha256")
            .join(&hex[..2])
            .join(&hex)
            .exists()
    })
}

/// Writes the object of `seed` as an upload does: whole, then renamed in.
fn upload(root: &std::path::Path, seed: u8) {
    let hex = digest(seed).hex().to_string();
    let dir = root.join("blobs/sha256").join(&hex[..2]);
    std::fs::create_dir_all(&dir).unwrap();
    let temp = root.join(format!("tmp/{hex}.{}.part", rand_suffix()));
    std::fs::write(&temp, [seed]).unwrap();
    std::fs::rename(&temp, dir.join(&hex)).unwrap();
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// One publish as the files service makes it: ask what is missing, upload
/// it, insert the rows, check the objects, stage. True when staged; then,
/// while its manifest is live, its objects must all be there.
async fn publish(
    db: &Db,
    store: &BlobStore,
    run: i64,
    attempt: i64,
    name: &str,
    seeds: [u8; 2],
) -> bool {
    let digests: Vec<_> = seeds.iter().map(|s| digest(*s)).collect();
    let missing = artifacts::missing_blobs(db, &digests).await.unwrap();
    for seed in seeds {
        // Missing, or its row outlived its object (a publish whose check
        // failed made it): sent again, as an agent told so does.
        let d = digest(seed);
        if missing.contains(&d) || store.size_of(&d).await.unwrap().is_none() {
            upload(store.local_root().unwrap(), seed);
        }
    }
    let rows: Vec<_> = digests.iter().map(|d| (d.clone(), 1)).collect();
    if artifacts::insert_blobs(db, &rows).await.is_err() {
        return false;
    }
    for d in &digests {
        if store.size_of(d).await.unwrap() != Some(1) {
            return false;
        }
    }
    let files = [entry("a", seeds[0], 1), entry("b", seeds[1], 1)];
    let staged = artifacts::stage(db, attempt, run, "ok", name, false, &files)
        .await
        .unwrap();
    if staged != artifacts::Staged::Stored {
        return false;
    }
    tokio::task::yield_now().await;
    for d in &digests {
        assert_eq!(
            store.size_of(d).await.unwrap(),
            Some(1),
            "{name} names {d}, whose object is gone"
        );
    }
    true
}

/// Publishes race a collector with the real grace. Each publisher has its
/// own blobs (no other publish is ever under way on them when it ages
/// them): once it has deleted an artifact (as retention does), it ages
/// that artifact's live rows past the grace, so the collector may take
/// them while its next publishes count on the same blobs. Every fourth
/// artifact stays, naming two of the four blobs: their rows are aged too
/// but named. Some publishes are refused; none is left naming a deleted
/// object, and what a live manifest names stays. Uploads go through the
/// store's tmp/, so the collector gets no temporary directory to sweep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_racing_the_collector_never_name_a_deleted_blob() {
    for backend in BACKENDS {
        let test_db = TestDb::new(backend);
        let db = model_2_db(&test_db, SPEC).await;
        add_agent(&db, "a", 8).await;
        let store = std::sync::Arc::new(
            BlobStore::open(&ArtifactArgs::default(), test_db.dir.path(), &[7; 32]).unwrap(),
        );
        let run = start_run(&db, "art", &[]).await;
        let ok = crate::artifact_lifecycle::start_task(&db, run, "ok").await;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let deleter = std::sync::Arc::new(StoredObjects {
            temp_dir: None,
            ..collected(&store)
        });
        let (metrics, cursor) = (Metrics::new(), Mutex::new(Cursor::default()));
        let cursor = std::sync::Arc::new(cursor);
        let collecting = {
            let (db, deleter, cursor, stop) =
                (db.clone(), deleter.clone(), cursor.clone(), stop.clone());
            tokio::spawn(async move {
                let metrics = Metrics::new();
                let mut lease = Lease::new("me", Duration::from_secs(60));
                let mut deleted = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let done = collector::pass(
                        &db,
                        &metrics,
                        deleter.as_ref(),
                        Duration::ZERO,
                        &cursor,
                        &mut lease,
                        now_ms(),
                    )
                    .await
                    .unwrap();
                    deleted += done.objects;
                }
                deleted
            })
        };
        let publishers: Vec<_> = (0..3u8)
            .map(|p| {
                let (db, store) = (db.clone(), store.clone());
                tokio::spawn(async move {
                    let base = 1 + 4 * p;
                    let mut stored = 0;
                    for round in 0..30u8 {
                        let seeds = [base + round % 4, base + (round + 1) % 4];
                        let name = format!("p{p}-{round}");
                        if !publish(&db, &store, run, ok, &name, seeds).await {
                            continue;
                        }
                        stored += 1;
                        if round % 4 == 0 {
                            continue;
                        }
                        // Gone again, long ago: its blobs are the
                        // collector's to take, unless a kept artifact or
                        // the next publish names them.
                        let mut conn = db.write_conn().await.unwrap();
                        sqlx::query("DELETE FROM artifacts WHERE name = $1")
                            .bind(&name)
                            .execute(&mut *conn)
                            .await
                            .unwrap();
                        sqlx::query(
                            "UPDATE blobs SET touched_at = $1 \
                             WHERE touched_at >= 0 AND digest IN ($2, $3)",
                        )
                        .bind(now_ms() - GRACE_MS - 1000)
                        .bind(digest(seeds[0]).as_str())
                        .bind(digest(seeds[1]).as_str())
                        .execute(&mut *conn)
                        .await
                        .unwrap();
                    }
                    stored
                })
            })
            .collect();
        let mut stored = 0;
        for p in publishers {
            stored += p.await.unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut deleted = collecting.await.unwrap();
        assert!(stored > 0, "{backend:?}: no publish got through");

        // Once more, alone: the aged rows nothing names go with their
        // objects; every blob a manifest names is still there.
        let mut lease = Lease::new("me", Duration::from_secs(60));
        let last = collector::pass(
            &db,
            &metrics,
            deleter.as_ref(),
            Duration::ZERO,
            &cursor,
            &mut lease,
            now_ms(),
        )
        .await
        .unwrap();
        deleted += last.objects;
        let aged: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM blobs b WHERE b.touched_at >= 0 AND b.touched_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM artifact_files f WHERE f.digest = b.digest)",
        )
        .bind(now_ms() - GRACE_MS)
        .fetch_one(db.pool())
        .await
        .unwrap();
        assert_eq!(aged, 0, "{backend:?}: the collector left aged rows");
        let named: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT digest FROM artifact_files ORDER BY digest")
                .fetch_all(db.pool())
                .await
                .unwrap();
        assert!(!named.is_empty(), "{backend:?}: no artifact was kept");
        for d in &named {
            let d = xene_core::artifact::Digest::parse(d).unwrap();
            assert_eq!(
                store.size_of(&d).await.unwrap(),
                Some(1),
                "{backend:?}: a kept manifest names {d}, whose object is gone"
            );
        }
        eprintln!("{backend:?}: {stored} publishes staged, {deleted} objects collected");
    }
}

/// On S3 (moto, authenticated): the collector lists the bucket in key
/// order from where it stopped, and deletes what nothing names.
#[tokio::test]
async fn the_collector_sweeps_an_s3_bucket() {
    use sha2::Digest as _;
    use xene_server::config::artifacts::StoreKind;
    let s3 = xene_testkit::S3::start();
    let test_db = TestDb::new(crate::util::Backend::Sqlite);
    let db = model_2_db(&test_db, SPEC).await;
    add_agent(&db, "a", 8).await;
    let args = ArtifactArgs {
        artifact_store: StoreKind::S3,
        s3_endpoint: Some(s3.endpoint.clone()),
        s3_bucket: Some(s3.bucket.clone()),
        s3_region: s3.region.clone(),
        s3_access_key_id: Some(s3.access_key_id.clone()),
        s3_secret_access_key: Some(s3.secret_access_key.clone()),
        ..Default::default()
    };
    let store = BlobStore::open(&args, test_db.dir.path(), &[7; 32]).unwrap();
    let http = reqwest::Client::new();
    // Uploaded as agents do, through the presigned URL.
    let mut digests = Vec::new();
    for content in [&b"named"[..], b"nobody's row", b"never committed"] {
        let digest =
            xene_core::artifact::Digest::from_sha256(&sha2::Sha256::digest(content).into());
        let upload = store.upload(&digest, content.len() as u64).await.unwrap();
        let part = &upload.parts[0];
        let mut request = http.put(&part.url).body(content.to_vec());
        for (name, value) in &part.headers {
            request = request.header(name, value);
        }
        let answer = request.send().await.unwrap();
        assert!(answer.status().is_success(), "{}", s3.log_text());
        digests.push((digest, content.len() as u64));
    }
    let run = start_run(&db, "art", &[]).await;
    let ok = crate::artifact_lifecycle::start_task(&db, run, "ok").await;
    artifacts::insert_blobs(&db, &digests[..2]).await.unwrap();
    let named = xene_core::artifact::ManifestEntry {
        path: "named".into(),
        size: digests[0].1,
        mode: 0o644,
        digest: digests[0].0.clone(),
    };
    let staged = artifacts::stage(&db, ok, run, "ok", "bin", false, &[named])
        .await
        .unwrap();
    assert_eq!(staged, artifacts::Staged::Stored);

    let deleter = StoredObjects {
        objects: store.objects().clone(),
        key: xene_server::files::store::key,
        prefix: "blobs/sha256".into(),
        ordered: true,
        temp_dir: None,
    };
    let (metrics, cursor) = (Metrics::new(), Mutex::new(Cursor::default()));
    // As if the grace had passed for every blob.
    let later = now_ms() + GRACE_MS + 1;
    let mut lease = Lease::new("me", Duration::from_secs(60));
    let done = collector::pass(
        &db,
        &metrics,
        &deleter,
        Duration::ZERO,
        &cursor,
        &mut lease,
        later,
    )
    .await
    .unwrap();
    assert_eq!((done.rows, done.objects), (1, 2), "{}", s3.log_text());
    let left: Vec<String> = s3.objects().into_iter().map(|(key, _)| key).collect();
    let hex = digests[0].0.hex();
    assert_eq!(left, [format!("blobs/sha256/{}/{hex}", &hex[..2])]);
}
