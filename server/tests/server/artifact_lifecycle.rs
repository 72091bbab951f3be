//! Artifacts as records, through storage on SQLite and PostgreSQL: a
//! manifest staged by an attempt shows only once the attempt ends as it
//! should (success, or any end for `when: always`), a later attempt's
//! replaces an earlier one's, a lost attempt's never shows; blobs being
//! collected are missing to publishes; pinned runs keep their artifacts.

use xene_core::artifact::{Digest, ManifestEntry};
use xene_core::event::{LogStream, RunEvent};
use xene_core::protocol::AttemptRef;
use xene_core::status::TaskStatus;
use xene_server::storage::artifacts::{self, GRACE_MS, Staged, sweep};
use xene_server::storage::{Db, attempts, events, logs, now_ms, retention};

use crate::attempt_fixtures::{add_agent, model_2_db, start_run};
use crate::util::{BACKENDS, TestDb};

const SPEC: &str = "name: art
pipelines:
  p:
    tasks:
      ok: {steps: ['true']}
      bad: {steps: ['true']}
      always: {steps: ['true']}
      flaky: {steps: ['true'], retries: 1}
";

pub fn digest(seed: u8) -> Digest {
    Digest::from_sha256(&[seed; 32])
}

pub fn entry(path: &str, seed: u8, size: u64) -> ManifestEntry {
    ManifestEntry {
        path: path.into(),
        size,
        mode: 0o755,
        digest: digest(seed),
    }
}

/// Places the ready attempt of `task` in `run` on agent `a` and starts it.
pub async fn start_task(db: &Db, run: i64, task: &str) -> i64 {
    let ready = attempts::ready_page(db, 0, i64::MAX / 4, 1000)
        .await
        .unwrap()
        .into_iter()
        .find(|a| a.run_id == run && a.task == task)
        .unwrap_or_else(|| panic!("{task} is ready"));
    let placed = attempts::place_many(db, &[(ready.id, "a")], 60_000)
        .await
        .unwrap();
    assert_eq!(placed, [true]);
    report(
        db,
        ready.id,
        0,
        RunEvent::TaskStarted {
            task: task.into(),
            attempt: 1,
        },
    )
    .await;
    ready.id
}

async fn report(db: &Db, attempt: i64, seq: u64, event: RunEvent) -> bool {
    let applied = events::apply_attempt(db, AttemptRef { id: attempt }, "a", seq, &[event])
        .await
        .unwrap();
    !applied.stale
}

pub async fn finish(db: &Db, attempt: i64, task: &str, status: TaskStatus) -> bool {
    report(
        db,
        attempt,
        1,
        RunEvent::TaskFinished {
            task: task.into(),
            status,
            output: None,
            duration_ms: 1,
            attempt: 1,
            error: None,
            retry_in_ms: None,
        },
    )
    .await
}

/// Records the blobs of `files` and stages them as `name` for `attempt`.
async fn stage(
    db: &Db,
    run: i64,
    attempt: i64,
    task: &str,
    name: &str,
    always: bool,
    files: &[ManifestEntry],
) -> Staged {
    let blobs: Vec<(Digest, u64)> = files.iter().map(|f| (f.digest.clone(), f.size)).collect();
    artifacts::insert_blobs(db, &blobs).await.unwrap();
    artifacts::stage(db, attempt, run, task, name, always, files)
        .await
        .unwrap()
}

async fn names(db: &Db, run: i64) -> Vec<(String, String, i64)> {
    artifacts::list_run(db, run)
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.task, a.name, a.attempt_id))
        .collect()
}

async fn rows(db: &Db, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(db.pool()).await.unwrap()
}

#[tokio::test]
async fn manifests_show_with_their_attempts_end_as_it_should() {
    for backend in BACKENDS {
        let test_db = TestDb::new(backend);
        let db = model_2_db(&test_db, SPEC).await;
        add_agent(&db, "a", 8).await;
        let run = start_run(&db, "art", &[]).await;
        let bin = [entry("bin/app", 1, 10), entry("README", 2, 3)];

        // Staged: invisible until its attempt succeeds.
        let ok = start_task(&db, run, "ok").await;
        assert_eq!(
            stage(&db, run, ok, "ok", "binary", false, &bin).await,
            Staged::Stored
        );
        assert_eq!(names(&db, run).await, [], "{backend:?}");
        assert_eq!(
            artifacts::published(&db, run, "binary").await.unwrap(),
            None
        );
        assert!(finish(&db, ok, "ok", TaskStatus::Success).await);
        assert_eq!(names(&db, run).await, [("ok".into(), "binary".into(), ok)]);
        let mut want = bin.to_vec();
        want.sort_by(|a, b| a.path.cmp(&b.path));
        assert_eq!(
            artifacts::published(&db, run, "binary").await.unwrap(),
            Some(want),
            "{backend:?}"
        );
        let view = &artifacts::list_run(&db, run).await.unwrap()[0];
        assert_eq!((view.files, view.bytes, view.when_always), (2, 13, false));

        // A failed attempt publishes only what is `when: always`.
        let bad = start_task(&db, run, "bad").await;
        stage(&db, run, bad, "bad", "out", false, &[entry("o", 3, 1)]).await;
        assert!(finish(&db, bad, "bad", TaskStatus::Error).await);
        let always = start_task(&db, run, "always").await;
        stage(
            &db,
            run,
            always,
            "always",
            "report",
            true,
            &[entry("r.xml", 4, 1)],
        )
        .await;
        assert!(finish(&db, always, "always", TaskStatus::Error).await);
        assert_eq!(
            names(&db, run).await,
            [
                ("always".into(), "report".into(), always),
                ("ok".into(), "binary".into(), ok),
            ],
            "{backend:?}"
        );
        // What was not published is gone, not left staged.
        assert_eq!(
            rows(&db, "SELECT COUNT(*) FROM artifacts WHERE state = 'staged'").await,
            0
        );

        // A retried task: the second attempt's manifest replaces the first's.
        let first = start_task(&db, run, "flaky").await;
        stage(
            &db,
            run,
            first,
            "flaky",
            "log",
            true,
            &[entry("1.log", 5, 1)],
        )
        .await;
        assert!(finish(&db, first, "flaky", TaskStatus::Error).await);
        assert_eq!(
            artifacts::published(&db, run, "log").await.unwrap(),
            Some(vec![entry("1.log", 5, 1)])
        );
        let second = start_task(&db, run, "flaky").await;
        assert_ne!(first, second);
        // Committed twice by the same attempt: the last one stands.
        stage(
            &db,
            run,
            second,
            "flaky",
            "log",
            true,
            &[entry("x.log", 7, 1)],
        )
        .await;
        stage(
            &db,
            run,
            second,
            "flaky",
            "log",
            true,
            &[entry("2.log", 6, 2)],
        )
        .await;
        assert!(finish(&db, second, "flaky", TaskStatus::Success).await);
        assert_eq!(
            artifacts::published(&db, run, "log").await.unwrap(),
            Some(vec![entry("2.log", 6, 2)]),
            "{backend:?}"
        );
        assert_eq!(
            rows(&db, "SELECT COUNT(*) FROM artifacts WHERE name = 'log'").await,
            1
        );
        // The run ended: a manifest for an ended attempt is refused.
        assert_eq!(
            stage(&db, run, ok, "ok", "binary", false, &bin).await,
            Staged::NotRunning
        );
        assert_eq!(artifacts::usage(&db, "art").await.unwrap(), 13 + 1 + 2);
    }
}

#[tokio::test]
async fn a_lost_attempts_manifest_never_shows() {
    for backend in BACKENDS {
        let test_db = TestDb::new(backend);
        let db = model_2_db(&test_db, SPEC).await;
        add_agent(&db, "a", 8).await;
        let run = start_run(&db, "art", &[]).await;
        let ok = start_task(&db, run, "ok").await;
        stage(&db, run, ok, "ok", "binary", false, &[entry("app", 1, 1)]).await;
        sqlx::query("UPDATE task_attempts SET lease_expires_at = 0 WHERE id = $1")
            .bind(ok)
            .execute(db.pool())
            .await
            .unwrap();
        let expired = attempts::expire_leases(&db, now_ms()).await.unwrap();
        assert_eq!(expired.lost, 1, "{backend:?}");
        assert_eq!(
            rows(&db, "SELECT COUNT(*) FROM artifacts").await,
            0,
            "{backend:?}"
        );
        // Its agent comes back and says it succeeded: too late, and its
        // publish is refused.
        assert!(!finish(&db, ok, "ok", TaskStatus::Success).await);
        assert_eq!(
            stage(&db, run, ok, "ok", "binary", false, &[entry("app", 1, 1)]).await,
            Staged::NotRunning
        );
        assert_eq!(names(&db, run).await, [], "{backend:?}");
    }
}

/// Sets when the blob of `seed` was last touched.
pub async fn touched(db: &Db, seed: u8, at: i64) {
    sqlx::query("UPDATE blobs SET touched_at = $1 WHERE digest = $2")
        .bind(at)
        .bind(digest(seed).as_str())
        .execute(db.pool())
        .await
        .unwrap();
}

#[tokio::test]
async fn blobs_being_collected_are_missing_to_publishes() {
    for backend in BACKENDS {
        let test_db = TestDb::new(backend);
        let db = model_2_db(&test_db, SPEC).await;
        add_agent(&db, "a", 8).await;
        let run = start_run(&db, "art", &[]).await;
        let ok = start_task(&db, run, "ok").await;
        let now = now_ms();
        let old = now - GRACE_MS - 1000;
        let cutoff = now - GRACE_MS;
        // 1: named by a staged manifest; 2: touched by a publish within the
        // grace; 3 and 4: nobody's, untouched for longer.
        stage(&db, run, ok, "ok", "binary", false, &[entry("app", 1, 1)]).await;
        artifacts::insert_blobs(&db, &[(digest(2), 1), (digest(3), 1), (digest(4), 1)])
            .await
            .unwrap();
        for seed in [1, 2, 3, 4] {
            touched(&db, seed, old).await;
        }
        // A publish asks which it must upload: 2 is present, and touched.
        let missing = artifacts::missing_blobs(&db, &[digest(2), digest(9)])
            .await
            .unwrap();
        assert_eq!(missing, [digest(9)]);
        let mut unreferenced = sweep::unreferenced(&db, cutoff, 100).await.unwrap();
        unreferenced.sort();
        assert_eq!(unreferenced, [digest(3), digest(4)], "{backend:?}");
        for seed in [1, 2] {
            assert_eq!(
                sweep::claim_row(&db, &digest(seed), cutoff).await.unwrap(),
                None
            );
        }

        // The collector claims 3, stamped with the time it claims it (not
        // its pass's start): a publish counting on it is told it is
        // missing, and staging a manifest naming it is refused.
        let claiming = now_ms();
        let claim = sweep::claim_row(&db, &digest(3), cutoff)
            .await
            .unwrap()
            .expect("3 is claimed");
        assert!(-claim >= claiming, "{backend:?}");
        // Another collector's `release_stale` keeps a claim in use.
        assert_eq!(
            sweep::release_stale(&db, now_ms() - sweep::STALE_CLAIM_MS)
                .await
                .unwrap(),
            0,
            "{backend:?}"
        );
        let missing = artifacts::missing_blobs(&db, &[digest(3)]).await.unwrap();
        assert_eq!(missing, [digest(3)], "{backend:?}");
        assert_eq!(
            artifacts::stage(&db, ok, run, "ok", "more", false, &[entry("x", 3, 1)])
                .await
                .unwrap(),
            Staged::MissingBlob(digest(3))
        );
        // Its upload's commit waits for the claim to be given up: still
        // waiting a while later, the claim untouched.
        let inserting = {
            let db = db.clone();
            tokio::spawn(async move { artifacts::insert_blobs(&db, &[(digest(3), 1)]).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(!inserting.is_finished(), "{backend:?}");
        let held: i64 = sqlx::query_scalar("SELECT touched_at FROM blobs WHERE digest = $1")
            .bind(digest(3).as_str())
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(held, claim, "{backend:?}");
        sweep::release(&db, &digest(3), claim).await.unwrap();
        inserting.await.unwrap().unwrap();
        assert_eq!(
            artifacts::missing_blobs(&db, &[digest(3)]).await.unwrap(),
            []
        );
        assert_eq!(
            artifacts::stage(&db, ok, run, "ok", "more", false, &[entry("x", 3, 1)])
                .await
                .unwrap(),
            Staged::Stored,
            "{backend:?}"
        );
        // An object without a row is claimed only while it has none.
        assert_eq!(sweep::claim_absent(&db, &digest(4)).await.unwrap(), None);
        assert!(
            sweep::claim_absent(&db, &digest(8))
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(sweep::release_stale(&db, now_ms() + 1).await.unwrap(), 1);
        assert_eq!(
            rows(&db, "SELECT COUNT(*) FROM blobs WHERE touched_at < 0").await,
            0
        );
    }
}

#[tokio::test]
async fn pinned_runs_keep_their_artifacts_past_retention() {
    let spec = "name: art\npipelines:\n  p:\n    tasks:\n      ok: {steps: ['true']}\n";
    for backend in BACKENDS {
        let test_db = TestDb::new(backend);
        let db = model_2_db(&test_db, spec).await;
        add_agent(&db, "a", 8).await;
        let mut runs = Vec::new();
        for seed in [1, 2] {
            let run = start_run(&db, "art", &[]).await;
            let ok = start_task(&db, run, "ok").await;
            stage(
                &db,
                run,
                ok,
                "ok",
                "binary",
                false,
                &[entry("app", seed, 5)],
            )
            .await;
            let line = RunEvent::Log {
                task: "ok".into(),
                step: "s".into(),
                stream: LogStream::Stdout,
                data: "built".into(),
            };
            assert!(report(&db, ok, 2, line).await);
            assert!(finish(&db, ok, "ok", TaskStatus::Success).await);
            runs.push(run);
        }
        let (pinned, other) = (runs[0], runs[1]);
        assert!(artifacts::pin(&db, pinned, true).await.unwrap());
        let at = artifacts::pinned_at(&db, pinned).await.unwrap();
        assert!(at.is_some());
        // Pinning again keeps the first time.
        assert!(artifacts::pin(&db, pinned, true).await.unwrap());
        assert_eq!(artifacts::pinned_at(&db, pinned).await.unwrap(), at);
        assert!(!artifacts::pin(&db, 999_999, true).await.unwrap());
        assert_eq!(artifacts::usage(&db, "art").await.unwrap(), 10);

        // A retention that keeps runs ended since before now.
        let after_both = now_ms() + 1000;
        assert_eq!(retention::prune_artifacts(&db, 0).await.unwrap(), 0);
        assert_eq!(
            retention::prune_artifacts(&db, after_both).await.unwrap(),
            1,
            "{backend:?}"
        );
        assert_eq!(names(&db, other).await, []);
        // Record retention keeps a pinned run's logs too.
        while logs::prune(&db, after_both).await.unwrap() > 0 {}
        let logged = |run: i64| {
            let db = db.clone();
            async move {
                let n: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM log_chunks WHERE run_id = $1")
                        .bind(run)
                        .fetch_one(db.pool())
                        .await
                        .unwrap();
                n
            }
        };
        assert_eq!(
            (logged(pinned).await, logged(other).await),
            (1, 0),
            "{backend:?}"
        );
        assert_eq!(names(&db, pinned).await.len(), 1, "{backend:?}");
        assert_eq!(artifacts::usage(&db, "art").await.unwrap(), 5);
        // Its blob is nobody's now: the collector may take it.
        let unreferenced = sweep::unreferenced(&db, now_ms() + 1, 10).await.unwrap();
        assert_eq!(unreferenced, [digest(2)], "{backend:?}");

        assert!(artifacts::pin(&db, pinned, false).await.unwrap());
        assert_eq!(artifacts::pinned_at(&db, pinned).await.unwrap(), None);
        assert_eq!(
            retention::prune_artifacts(&db, after_both).await.unwrap(),
            1
        );
        assert_eq!(names(&db, pinned).await, []);
    }
}

/// The grace outlives any upload URL an agent holds, with room to spare:
/// the first objects of a long publish stay rowless until its commit.
#[test]
fn the_grace_outlives_upload_urls() {
    let url_ttl = xene_server::config::artifacts::MAX_URL_TTL.as_millis() as i64;
    assert!(GRACE_MS >= url_ttl + 3600 * 1000);
}

async fn staged_rows(db: &Db) -> i64 {
    rows(db, "SELECT COUNT(*) FROM artifacts WHERE state = 'staged'").await
}

#[tokio::test]
async fn attempts_ended_otherwise_publish_nothing() {
    for backend in BACKENDS {
        let test_db = TestDb::new(backend);
        let db = model_2_db(&test_db, SPEC).await;
        add_agent(&db, "a", 8).await;
        let run = start_run(&db, "art", &[]).await;
        let report_xml = [entry("r.xml", 4, 1)];

        // Cancelled: not even `when: always` is published.
        let always = start_task(&db, run, "always").await;
        stage(&db, run, always, "always", "report", true, &report_xml).await;
        finish(&db, always, "always", TaskStatus::Cancelled).await;
        assert_eq!(names(&db, run).await, [], "{backend:?}");
        assert_eq!(staged_rows(&db).await, 0, "{backend:?}");

        // Its task already final: its end publishes nothing.
        let bad = start_task(&db, run, "bad").await;
        stage(&db, run, bad, "bad", "late", true, &report_xml).await;
        sqlx::query("UPDATE task_runs SET status = 'success' WHERE run_id = $1 AND task = 'bad'")
            .bind(run)
            .execute(db.pool())
            .await
            .unwrap();
        finish(&db, bad, "bad", TaskStatus::Error).await;
        assert_eq!(names(&db, run).await, [], "{backend:?}");
        assert_eq!(staged_rows(&db).await, 0, "{backend:?}");

        // Failed by the server: what it staged goes.
        let ok = start_task(&db, run, "ok").await;
        stage(&db, run, ok, "ok", "binary", true, &report_xml).await;
        attempts::fail(&db, ok, "its pipeline is gone")
            .await
            .unwrap();
        assert_eq!(staged_rows(&db).await, 0, "{backend:?}");

        // Staged by an attempt that ended without a word about it: dropped
        // once older than asked, and only that one.
        let flaky = start_task(&db, run, "flaky").await;
        stage(&db, run, flaky, "flaky", "log", true, &report_xml).await;
        let run2 = start_run(&db, "art", &[]).await;
        let live = start_task(&db, run2, "ok").await;
        stage(&db, run2, live, "ok", "binary", false, &report_xml).await;
        sqlx::query("UPDATE task_attempts SET status = 'error' WHERE id = $1")
            .bind(flaky)
            .execute(db.pool())
            .await
            .unwrap();
        assert_eq!(sweep::drop_orphan_staged(&db, 0).await.unwrap(), 0);
        assert_eq!(
            sweep::drop_orphan_staged(&db, now_ms() + 1).await.unwrap(),
            1,
            "{backend:?}"
        );
        let left: Vec<i64> =
            sqlx::query_scalar("SELECT attempt_id FROM artifacts WHERE state = 'staged'")
                .fetch_all(db.pool())
                .await
                .unwrap();
        assert_eq!(left, [live], "{backend:?}");
    }
}

#[tokio::test]
async fn a_runs_listing_shows_a_bounded_number_of_entries() {
    for backend in BACKENDS {
        let test_db = TestDb::new(backend);
        let db = model_2_db(&test_db, SPEC).await;
        add_agent(&db, "a", 8).await;
        let many = |n: usize| -> Vec<ManifestEntry> {
            (0..n).map(|i| entry(&format!("f{i:04}"), 1, 1)).collect()
        };
        // (name, files, entries shown) of each artifact of a run.
        let layouts: [&[(&str, usize, usize)]; 2] = [
            // The bound cuts b; a one-file artifact still has its entry.
            &[("a", 600, 600), ("b", 600, 400), ("c", 1, 1), ("d", 3, 0)],
            // One entry left: b, of several, shows none rather than one.
            &[("a", 999, 999), ("b", 5, 0), ("c", 1, 1)],
        ];
        for layout in layouts {
            let run = start_run(&db, "art", &[]).await;
            let ok = start_task(&db, run, "ok").await;
            for (name, files, _) in layout {
                assert_eq!(
                    stage(&db, run, ok, "ok", name, false, &many(*files)).await,
                    Staged::Stored
                );
            }
            assert!(finish(&db, ok, "ok", TaskStatus::Success).await);
            let listed = artifacts::list_run(&db, run).await.unwrap();
            let shown: Vec<(&str, usize, usize)> = listed
                .iter()
                .map(|a| (a.name.as_str(), a.files as usize, a.entries.len()))
                .collect();
            assert_eq!(shown, layout, "{backend:?}");
            for a in &listed {
                assert_eq!(a.entries, many(a.files as usize)[..a.entries.len()]);
            }
        }
    }
}

#[tokio::test]
async fn a_blobs_size_is_the_one_its_object_was_found_with() {
    for backend in BACKENDS {
        let test_db = TestDb::new(backend);
        let db = model_2_db(&test_db, SPEC).await;
        // A publish said 99 bytes, and its check found otherwise.
        artifacts::insert_blobs(&db, &[(digest(5), 99)])
            .await
            .unwrap();
        artifacts::insert_blobs(&db, &[(digest(5), 1)])
            .await
            .unwrap();
        assert_eq!(artifacts::stored_bytes(&db).await.unwrap(), 99);
        artifacts::verified_sizes(&db, &[(digest(5), 1), (digest(6), 7)])
            .await
            .unwrap();
        assert_eq!(
            artifacts::stored_bytes(&db).await.unwrap(),
            1,
            "{backend:?}"
        );
    }
}
