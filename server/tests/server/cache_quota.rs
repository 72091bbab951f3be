//! What a workflow may keep (issue 25), on SQLite and PostgreSQL, through
//! the files service and storage (set-up of `caches_service.rs`):
//!
//! - past `--cache-quota` the least recently used entries are evicted as
//!   another is saved, never the one just saved; an entry larger than the
//!   quota is refused with a message; a webhook's run never saves when its
//!   pipeline says so, whatever the agent asks;
//! - past `--artifact-quota` a publish is refused with a message, decided
//!   as it is staged;
//! - a workflow keeps at most `MAX_ENTRIES` entries; attempts failed or
//!   lost drop what they staged; a deleted workflow's entries go;
//! - two attempts ending at once, both evicting, both end (PostgreSQL);
//! - the collector never deletes a blob a cache entry names, drops the
//!   staged entries of attempts that ended without saving them, and
//!   reports each workflow's stored bytes.

use std::sync::Mutex;
use std::time::Duration;

use xene_core::artifact::ManifestEntry;
use xene_core::protocol::{FilesAnswer, FilesRequest};
use xene_core::status::TaskStatus;
use xene_server::controllers::collector::{self, Cursor, Lease, StoredObjects};
use xene_server::metrics::Metrics;
use xene_server::storage::artifacts::{self, GRACE_MS, Staged};
use xene_server::storage::caches::{self, Quotas};
use xene_server::storage::{attempts, now_ms, workflows};

use crate::artifact_lifecycle::finish;
use crate::caches_service::{Setup, chunk, fill, refused, setup};
use crate::util::{BACKENDS, Backend};

async fn keys(s: &Setup) -> Vec<String> {
    let list = caches::list(&s.db, "cw").await.unwrap();
    let mut keys: Vec<String> = list.entries.into_iter().map(|e| e.key).collect();
    keys.sort();
    keys
}

/// Publishes artifact `binary` of `bytes` for `attempt`: the answers to
/// its `Publish` and `Commit`.
async fn publish(s: &Setup, attempt: i64, bytes: &[u8]) -> (FilesAnswer, FilesAnswer) {
    let files: Vec<ManifestEntry> = vec![ManifestEntry {
        path: "app".into(),
        ..chunk(0, bytes)
    }];
    let asked = FilesRequest::Publish {
        name: "binary".into(),
        files: files.clone(),
    };
    let uploads = s.ask(attempt, asked).await;
    s.put(bytes);
    let commit = FilesRequest::Commit {
        name: "binary".into(),
        files,
        completed: vec![],
    };
    (uploads, s.ask(attempt, commit).await)
}

#[tokio::test]
async fn cache_quota_evicts_the_least_recently_used_and_refuses_what_cannot_be_kept() {
    let quotas = Quotas {
        cache_bytes: 100,
        artifact_bytes: Some(50),
    };
    for backend in BACKENDS {
        let s = setup(backend, quotas).await;
        for key in ["k1", "k2"] {
            let (_, attempt) = s.attempt("manual").await;
            let seed = if key == "k1" { 1 } else { 2 };
            let saved = s.save(attempt, key, &[fill(seed, 40)]).await;
            assert_eq!(saved, FilesAnswer::Committed, "{backend:?}");
            assert!(finish(&s.db, attempt, "build", TaskStatus::Success).await);
        }
        // k1 is used after k2 was saved (a later millisecond).
        tokio::time::sleep(Duration::from_millis(5)).await;
        let (_, third) = s.attempt("manual").await;
        assert!(s.restore(third, "k1", &[]).await.is_some());
        // 120 bytes with k3: the least recently used, k2, goes.
        let saved = s.save(third, "k3", &[fill(3, 40)]).await;
        assert_eq!(saved, FilesAnswer::Committed);
        assert!(finish(&s.db, third, "build", TaskStatus::Success).await);
        assert_eq!(keys(&s).await, ["k1", "k3"], "{backend:?}");
        // An entry of the whole quota: all the others go, never it.
        let (_, fourth) = s.attempt("manual").await;
        let saved = s.save(fourth, "k4", &[fill(4, 60), fill(4, 40)]).await;
        assert_eq!(saved, FilesAnswer::Committed);
        assert!(finish(&s.db, fourth, "build", TaskStatus::Success).await);
        assert_eq!(keys(&s).await, ["k4"], "{backend:?}");
        assert_eq!(caches::usage(&s.db, "cw").await.unwrap(), 100);

        // Larger than the quota: refused at upload and at save.
        let (_, fifth) = s.attempt("manual").await;
        let error = refused(s.save(fifth, "k5", &[fill(5, 101)]).await);
        assert_eq!(
            error,
            "cache \"cargo\" is 101 B, more than the workflow's cache quota 100 B (--cache-quota)"
        );
        let save = FilesRequest::CacheSave {
            name: "cargo".into(),
            key: "k5".into(),
            chunks: vec![chunk(0, fill(5, 101))],
            completed: vec![],
            files: 1,
        };
        let error = refused(s.ask(fifth, save).await);
        assert!(
            error.contains("more than the workflow's cache quota"),
            "{error}"
        );

        // A webhook's run saves nothing (`cache_save: {webhook: never}`),
        // though it fits; it still restores.
        let (_, hook) = s.attempt("webhook").await;
        let error = refused(s.save(hook, "k6", &[fill(6, 10)]).await);
        assert!(
            error.contains("cache_save says never for runs started by webhook"),
            "{error}"
        );
        assert!(s.restore(hook, "k4", &[]).await.is_some());
        assert_eq!(keys(&s).await, ["k4"]);

        // Artifacts: 30 bytes kept, 30 more would pass the quota of 50;
        // 10 more would not.
        let (_, first) = s.attempt("manual").await;
        let (asked, committed) = publish(&s, first, fill(1, 30)).await;
        assert!(matches!(asked, FilesAnswer::Uploads { .. }), "{asked:?}");
        assert_eq!(committed, FilesAnswer::Committed);
        assert!(finish(&s.db, first, "build", TaskStatus::Success).await);
        let (_, next) = s.attempt("manual").await;
        let (asked, committed) = publish(&s, next, fill(2, 30)).await;
        let want = "workflow cw keeps 30 B of artifacts; \"binary\"'s 30 B would pass its \
                    quota 50 B (--artifact-quota); unpin or let retention remove old runs";
        assert_eq!(refused(asked), want, "{backend:?}");
        assert_eq!(refused(committed), want);
        let (_, committed) = publish(&s, next, fill(2, 10)).await;
        assert_eq!(committed, FilesAnswer::Committed);
        // The stage decides, whatever a commit's early check saw: 40 B
        // kept (30 published, 10 staged), 30 more pass the quota.
        let (run, last) = s.attempt("manual").await;
        let files = [ManifestEntry {
            path: "app".into(),
            ..chunk(0, fill(3, 30))
        }];
        let staged = artifacts::stage(&s.db, last, run, "build", "binary", false, &files)
            .await
            .unwrap();
        let want = Staged::OverQuota {
            workflow: "cw".into(),
            kept: 40,
            quota: 50,
        };
        assert_eq!(staged, want, "{backend:?}");
    }
}

#[tokio::test]
async fn cache_quota_collector_keeps_every_blob_a_cache_names() {
    for backend in BACKENDS {
        let s = setup(backend, Quotas::default()).await;
        let (_, first) = s.attempt("manual").await;
        let saved = s.save(first, "k1", &[fill(1, 10)]).await;
        assert_eq!(saved, FilesAnswer::Committed);
        assert!(finish(&s.db, first, "build", TaskStatus::Success).await);
        // Staged by an attempt lost with its agent: never saved.
        let (_, lost) = s.attempt("manual").await;
        let staged = s.save(lost, "k2", &[fill(2, 10)]).await;
        assert_eq!(staged, FilesAnswer::Committed);
        sqlx::query("UPDATE task_attempts SET status = 'unknown' WHERE id = $1")
            .bind(lost)
            .execute(s.db.pool())
            .await
            .unwrap();
        // Every blob untouched for longer than the grace.
        sqlx::query("UPDATE blobs SET touched_at = $1")
            .bind(now_ms() - GRACE_MS - 60_000)
            .execute(s.db.pool())
            .await
            .unwrap();

        let root = s.store.local_root().unwrap().to_path_buf();
        let object = |seed: u8| {
            let hex = chunk(0, fill(seed, 10)).digest.hex().to_string();
            root.join("blobs/sha256").join(&hex[..2]).join(hex)
        };
        let deleter = StoredObjects {
            objects: s.store.objects().clone(),
            key: xene_server::files::store::key,
            prefix: "blobs/sha256".into(),
            ordered: false,
            temp_dir: None,
        };
        let metrics = Metrics::new();
        let cursor = Mutex::new(Cursor::default());
        let mut lease = Lease::new("me", Duration::from_secs(60));
        let mut pass = async || {
            collector::pass(
                &s.db,
                &metrics,
                &deleter,
                Duration::ZERO,
                &cursor,
                &mut lease,
                // Later than every stage above, whatever the clock's grain.
                now_ms() + 1000,
            )
            .await
            .unwrap()
        };
        let done = pass().await;
        assert_eq!((done.caches, done.rows), (1, 1), "{backend:?}: {done:?}");
        assert!(object(1).exists(), "{backend:?}: a saved entry's blob went");
        assert!(!object(2).exists(), "{backend:?}: an orphan's blob stayed");
        let text = metrics.render();
        for series in [
            "xene_workflow_stored_bytes{workflow=\"cw\",kind=\"caches\"} 10\n",
            "xene_workflow_stored_bytes{workflow=\"cw\",kind=\"artifacts\"} 0\n",
        ] {
            assert!(text.contains(series), "{series} in {text}");
        }

        // Deleted, its blob goes with the next pass.
        let id = caches::list(&s.db, "cw").await.unwrap().entries[0].id;
        assert_eq!(caches::delete(&s.db, "other", id).await.unwrap(), None);
        let deleted = caches::delete(&s.db, "cw", id).await.unwrap();
        assert_eq!(deleted, Some(("cargo".into(), "k1".into())));
        assert_eq!(pass().await.rows, 1);
        assert!(!object(1).exists(), "{backend:?}");
        assert!(
            metrics
                .render()
                .contains("xene_workflow_stored_bytes{workflow=\"cw\",kind=\"caches\"} 0\n")
        );
        bounds_entries_and_drops_what_ended_attempts_and_workflows_leave(&s, backend).await;
    }
}

async fn count(s: &Setup, filter: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM caches WHERE {filter}"))
        .fetch_one(s.db.pool())
        .await
        .unwrap()
}

/// At most `MAX_ENTRIES` entries; attempts failed or lost drop what they
/// staged; a deleted workflow's entries go (on the set-up of the test
/// above, to spare one).
async fn bounds_entries_and_drops_what_ended_attempts_and_workflows_leave(
    s: &Setup,
    backend: Backend,
) {
    // MAX_ENTRIES tiny entries, each used before any saved below.
    sqlx::query(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {}) \
         INSERT INTO caches (workflow, name, key, attempt_id, state, files, bytes, \
         created_at, used_at) SELECT 'cw', 'cargo', 'old-' || CAST(i AS TEXT), 0, 'saved', \
         1, 1, i, i FROM n",
        caches::MAX_ENTRIES
    ))
    .execute(s.db.pool())
    .await
    .unwrap();
    let (_, attempt) = s.attempt("manual").await;
    assert_eq!(
        s.save(attempt, "new", &[fill(1, 10)]).await,
        FilesAnswer::Committed
    );
    assert!(finish(&s.db, attempt, "build", TaskStatus::Success).await);
    let saved = "workflow = 'cw' AND state = 'saved'";
    assert_eq!(count(s, saved).await, caches::MAX_ENTRIES, "{backend:?}");
    assert_eq!(count(s, "key IN ('old-1', 'old-2', 'new')").await, 2);
    assert_eq!(count(s, "key = 'old-1'").await, 0, "{backend:?}");

    // Failed by the server, or lost with its agent: nothing staged stays.
    let (_, failed) = s.attempt("manual").await;
    assert_eq!(
        s.save(failed, "f", &[fill(2, 10)]).await,
        FilesAnswer::Committed
    );
    attempts::fail(&s.db, failed, "no").await.unwrap();
    assert_eq!(count(s, &format!("attempt_id = {failed}")).await, 0);
    let (_, lost) = s.attempt("manual").await;
    assert_eq!(
        s.save(lost, "l", &[fill(3, 10)]).await,
        FilesAnswer::Committed
    );
    sqlx::query("UPDATE task_attempts SET lease_expires_at = 0 WHERE id = $1")
        .bind(lost)
        .execute(s.db.pool())
        .await
        .unwrap();
    let expired = attempts::expire_leases(&s.db, now_ms()).await.unwrap();
    assert_eq!(expired.lost, 1, "{backend:?}");
    assert_eq!(count(s, &format!("attempt_id = {lost}")).await, 0);

    // A deleted workflow's entries go (its blobs to the collector).
    assert!(workflows::delete(&s.db, "cw").await.unwrap());
    assert_eq!(count(s, "workflow = 'cw'").await, 0, "{backend:?}");
    let chunks: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM cache_chunks")
        .fetch_one(s.db.pool())
        .await
        .unwrap();
    assert_eq!(chunks, 0);
}

/// Two attempts ending at once, each saving an entry past the quota and
/// so evicting the same older entries of one workflow:
/// both end, every time, and the workflow stays within its quota.
#[tokio::test]
async fn cache_quota_two_ends_evicting_at_once_both_end_on_postgres() {
    let quotas = Quotas {
        cache_bytes: 100,
        artifact_bytes: None,
    };
    let s = setup(Backend::Postgres, quotas).await;
    for round in 0..10u8 {
        let seed = round % 8;
        let (_, a) = s.attempt("manual").await;
        let (_, b) = s.attempt("manual").await;
        // One entry per cache name and attempt: 100 bytes new in all.
        for (attempt, key, size) in [(a, "k1", 60), (b, "k2", 40)] {
            let key = format!("{key}-{round}");
            let saved = s.save(attempt, &key, &[fill(seed, size)]).await;
            assert_eq!(saved, FilesAnswer::Committed);
        }
        let (ended_a, ended_b) = tokio::join!(
            finish(&s.db, a, "build", TaskStatus::Success),
            finish(&s.db, b, "build", TaskStatus::Success),
        );
        assert!(ended_a && ended_b, "round {round}");
        let usage = caches::usage(&s.db, "cw").await.unwrap();
        assert_eq!(usage, 100, "round {round}");
    }
}
