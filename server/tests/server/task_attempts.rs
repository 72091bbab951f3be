//! Runs of model 2 through storage: task attempts placed, leased, reported
//! and expired, readiness deciding what runs next, each against SQLite and
//! a throwaway PostgreSQL. Random DAGs are compared with `core::plan::Walk`,
//! the in-memory walk `xene-agent run` uses.

use std::collections::BTreeMap;

use xene_core::context::TaskResult;
use xene_core::event::RunEvent;
use xene_core::plan::{Decision, Walk};
use xene_core::protocol::AttemptRef;
use xene_core::status::TaskStatus;
use xene_server::storage::{Db, attempts, events, now_ms, readiness, runs};

use crate::attempt_fixtures::{add_agent, apply, model_2, model_2_db, model_2_run, start_run};
use crate::util::{BACKENDS, Backend, TestDb};

/// Far enough ahead that every backoff has run out.
const LATER: i64 = i64::MAX / 4;

/// The ready attempts of a run, by task.
pub(crate) async fn ready(db: &Db, run: i64) -> BTreeMap<String, attempts::ReadyAttempt> {
    attempts::ready_page(db, 0, LATER, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.run_id == run)
        .map(|a| (a.task.clone(), a))
        .collect()
}

pub(crate) async fn place(db: &Db, attempt: i64, agent: &str) {
    let placed = attempts::place_many(db, &[(attempt, agent)], 60_000)
        .await
        .unwrap();
    assert_eq!(placed, [true], "attempt {attempt} placed on {agent}");
}

pub(crate) fn started(task: &str, number: u32) -> RunEvent {
    RunEvent::TaskStarted {
        task: task.into(),
        attempt: number,
    }
}

pub(crate) fn finished(task: &str, status: TaskStatus, number: u32) -> RunEvent {
    RunEvent::TaskFinished {
        task: task.into(),
        status,
        output: Some(format!("{task} says {}", status.as_str())),
        duration_ms: 5,
        attempt: number,
        error: None,
        retry_in_ms: None,
    }
}

async fn report(db: &Db, attempt: i64, agent: &str, first_seq: u64, events: &[RunEvent]) -> usize {
    let applied = events::apply_attempt(db, AttemptRef { id: attempt }, agent, first_seq, events)
        .await
        .unwrap();
    assert!(!applied.stale, "attempt {attempt} is {agent}'s");
    applied.new
}

async fn task_status(db: &Db, run: i64, task: &str) -> String {
    sqlx::query_scalar("SELECT status FROM task_runs WHERE run_id = $1 AND task = $2")
        .bind(run)
        .bind(task)
        .fetch_one(db.pool())
        .await
        .unwrap()
}

/// (status, tasks_left, cancel_requested, pinned_agent) of a run.
async fn run_row(db: &Db, run: i64) -> (String, Option<i64>, i64, Option<String>) {
    sqlx::query_as(
        "SELECT status, tasks_left, cancel_requested, pinned_agent FROM runs WHERE id = $1",
    )
    .bind(run)
    .fetch_one(db.pool())
    .await
    .unwrap()
}

/// (task, status, attempt, output, waiting_on, retries_used)
type TaskRow = (String, String, i64, Option<String>, Option<i64>, i64);

/// Everything events could change, to compare before and after a resend.
async fn snapshot(db: &Db, run: i64) -> String {
    let tasks: Vec<TaskRow> = sqlx::query_as(
        "SELECT task, status, attempt, output, waiting_on, retries_used FROM task_runs \
         WHERE run_id = $1 ORDER BY task",
    )
    .bind(run)
    .fetch_all(db.pool())
    .await
    .unwrap();
    let steps: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT task, name, status FROM step_runs WHERE run_id = $1 ORDER BY task, name",
    )
    .bind(run)
    .fetch_all(db.pool())
    .await
    .unwrap();
    let attempts: Vec<(i64, String, String)> =
        sqlx::query_as("SELECT id, task, status FROM task_attempts WHERE run_id = $1 ORDER BY id")
            .bind(run)
            .fetch_all(db.pool())
            .await
            .unwrap();
    let logs: (i64, Option<i64>) = sqlx::query_as(
        "SELECT COUNT(*), CAST(SUM(octet_length(data)) AS BIGINT) FROM log_chunks WHERE run_id = $1",
    )
    .bind(run)
    .fetch_one(db.pool())
    .await
    .unwrap();
    format!(
        "{tasks:?}\n{steps:?}\n{attempts:?}\n{logs:?}\n{:?}",
        run_row(db, run).await
    )
}

/// A small deterministic generator (splitmix64): the cases are the same
/// on every run, and a failure names its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A random pipeline `p` of workflow `name`: tasks depend on earlier ones,
/// some with retries, some with an `if` on a dependency or a param; and
/// whether each try of each task fails.
fn random_case(seed: u64, name: &str) -> (String, BTreeMap<(String, u32), bool>) {
    let mut rng = Rng(seed);
    let count = 2 + rng.below(7) as usize;
    let mut spec =
        format!("name: {name}\npipelines:\n  p:\n    params: {{flag: 'off'}}\n    tasks:\n");
    let mut fails = BTreeMap::new();
    for i in 0..count {
        let task = format!("t{i}");
        let deps: Vec<String> = (0..i)
            .filter(|_| rng.below(3) == 0)
            .map(|d| format!("t{d}"))
            .collect();
        spec.push_str(&format!("      {task}:\n        steps: ['true']\n"));
        if !deps.is_empty() {
            spec.push_str(&format!("        depends_on: [{}]\n", deps.join(", ")));
        }
        let retries = rng.below(3) as u32;
        if retries > 0 {
            spec.push_str(&format!("        retries: {retries}\n"));
        }
        match (rng.below(5), deps.first()) {
            (0, _) => spec.push_str("        if: \"params.flag == 'on'\"\n"),
            (1, Some(dep)) => {
                spec.push_str(&format!("        if: \"tasks.{dep}.status == 'error'\"\n"))
            }
            (2, Some(dep)) => spec.push_str(&format!(
                "        if: \"tasks.{dep}.status != 'skipped' && tasks.{dep}.output != ''\"\n"
            )),
            _ => {}
        }
        for number in 1..=retries + 1 {
            fails.insert((task.clone(), number), rng.below(3) == 0);
        }
    }
    (spec, fails)
}

/// How each task ends when its tries fail as `fails` says: the walk the
/// agent's `xene-agent run` does, retries included.
fn walked(
    spec: &str,
    params: BTreeMap<String, String>,
    fails: &BTreeMap<(String, u32), bool>,
) -> (BTreeMap<String, TaskStatus>, xene_core::status::RunStatus) {
    let workflow = xene_core::parse_workflow(spec).unwrap();
    let pipeline = &workflow.pipelines["p"];
    let mut walk = Walk::new(pipeline, params, BTreeMap::new()).unwrap();
    let mut queue: Vec<Decision> = walk.start(false);
    while let Some(decision) = queue.pop() {
        let Decision::Run(task) = decision else {
            continue;
        };
        let tries = pipeline.tasks[&task].retries.count + 1;
        let failed = (1..=tries).all(|n| fails[&(task.clone(), n)]);
        let status = if failed {
            TaskStatus::Error
        } else {
            TaskStatus::Success
        };
        let result = TaskResult {
            caches: Default::default(),
            status,
            output: Some(format!("{task} says {}", status.as_str())),
        };
        queue.extend(walk.finish(&task, result, false));
    }
    let statuses = walk
        .results()
        .iter()
        .map(|(k, v)| (k.clone(), v.status))
        .collect();
    (statuses, walk.run_status(false))
}

async fn random_dags_match_the_walk(backend: Backend) {
    let test_db = TestDb::new(backend);
    let db = model_2(&test_db).await;
    add_agent(&db, "a1", 8).await;
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..40u64 {
        let name = format!("w{seed}");
        let (spec, fails) = random_case(seed, &name);
        apply(&db, &spec).await;
        let flag = if seed % 2 == 0 { "on" } else { "off" };
        let run = start_run(&db, &name, &[("flag", flag)]).await;
        // Bounded: each round ends at least one attempt.
        for _ in 0..200 {
            let ready = ready(&db, run).await;
            if ready.is_empty() {
                break;
            }
            for (task, attempt) in ready {
                place(&db, attempt.id, "a1").await;
                let number = attempt.number as u32;
                let status = if fails[&(task.clone(), number)] {
                    TaskStatus::Error
                } else {
                    TaskStatus::Success
                };
                let events = [started(&task, number), finished(&task, status, number)];
                assert_eq!(report(&db, attempt.id, "a1", 0, &events).await, 2);
            }
        }
        let params = BTreeMap::from([("flag".to_string(), flag.to_string())]);
        let (expected, expected_run) = walked(&spec, params, &fails);
        let detail = runs::get(&db, run).await.unwrap().unwrap();
        let got: BTreeMap<String, TaskStatus> = detail
            .tasks
            .iter()
            .map(|t| (t.name.clone(), t.status))
            .collect();
        assert_eq!(got, expected, "{backend:?} seed {seed}:\n{spec}");
        assert_eq!(
            detail.run.status, expected_run,
            "{backend:?} seed {seed}:\n{spec}"
        );
        let (_, left, _, _) = run_row(&db, run).await;
        assert_eq!(left, Some(0), "{backend:?} seed {seed}");
        seen.extend(got.into_values().map(TaskStatus::as_str));
    }
    // The cases cover every way a task ends here.
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["error", "not_executed", "skipped", "success"]
    );
}

#[tokio::test]
async fn random_dags_through_storage_match_the_walk_on_sqlite() {
    random_dags_match_the_walk(Backend::Sqlite).await;
}

#[tokio::test]
async fn random_dags_through_storage_match_the_walk_on_postgres() {
    random_dags_match_the_walk(Backend::Postgres).await;
}

const CHAIN: &str = r#"
name: chain
pipelines:
  p:
    tasks:
      a:
        steps:
          - name: one
            run: echo one
          - name: two
            run: echo two
      b:
        depends_on: [a]
        steps: ['true']
"#;

#[tokio::test]
async fn resent_events_change_nothing() {
    for backend in BACKENDS {
        let test_db = TestDb::new(backend);
        let (db, run) = model_2_run(&test_db, CHAIN, "chain", &["a1", "other"]).await;
        let a = ready(&db, run).await.remove("a").expect("a is ready");
        place(&db, a.id, "a1").await;
        let log = |step: &str| RunEvent::Log {
            task: "a".into(),
            step: step.into(),
            stream: xene_core::event::LogStream::Stdout,
            data: format!("{step} says hello"),
        };
        let step_finished = |step: &str| RunEvent::StepFinished {
            task: "a".into(),
            step: step.into(),
            status: xene_core::status::StepStatus::Success,
            exit_code: Some(0),
            duration_ms: 1,
        };
        let events = vec![
            started("a", 1),
            RunEvent::StepStarted {
                task: "a".into(),
                step: "one".into(),
            },
            log("one"),
            step_finished("one"),
            RunEvent::StepStarted {
                task: "a".into(),
                step: "two".into(),
            },
            log("two"),
            step_finished("two"),
            finished("a", TaskStatus::Success, 1),
        ];
        assert_eq!(report(&db, a.id, "a1", 0, &events[..4]).await, 4);
        assert_eq!(report(&db, a.id, "a1", 4, &events[4..]).await, 4);
        let before = snapshot(&db, run).await;
        assert_eq!(task_status(&db, run, "a").await, "success");
        assert!(
            ready(&db, run).await.contains_key("b"),
            "{backend:?}: b is ready"
        );
        // The whole batch again, and a part of it overlapping: nothing new.
        assert_eq!(report(&db, a.id, "a1", 0, &events).await, 0);
        assert_eq!(report(&db, a.id, "a1", 2, &events[2..6]).await, 0);
        assert_eq!(snapshot(&db, run).await, before, "{backend:?}");
        // Another agent's report of the attempt is stale and changes nothing.
        let other = events::apply_attempt(&db, AttemptRef { id: a.id }, "other", 8, &events)
            .await
            .unwrap();
        assert!(other.stale, "{backend:?}");
        assert_eq!(snapshot(&db, run).await, before, "{backend:?}");
        // An event of another task is refused and changes nothing either.
        let b_event = [started("b", 1)];
        let refused = events::apply_attempt(&db, AttemptRef { id: a.id }, "a1", 8, &b_event).await;
        assert!(
            matches!(refused, Err(events::ApplyError::OtherTask { .. })),
            "{backend:?}: {refused:?}"
        );
        assert_eq!(snapshot(&db, run).await, before, "{backend:?}");
        let (_, left, _, _) = run_row(&db, run).await;
        assert_eq!(left, Some(1), "{backend:?}: only b is left");
    }
}

const FOUR: &str = r#"
name: four
pipelines:
  p:
    tasks:
      t1: {steps: ['true'], retries: 1}
      t2: {steps: ['true'], retries: 1}
      t3: {steps: ['true'], retries: 1}
      t4: {steps: ['true'], retries: 1}
"#;

#[tokio::test]
async fn lease_expiry_retries_only_the_lost_attempts() {
    for backend in BACKENDS {
        let test_db = TestDb::new(backend);
        let (db, run) = model_2_run(&test_db, FOUR, "four", &["a", "b"]).await;
        let first = ready(&db, run).await;
        for (task, agent) in [("t1", "a"), ("t2", "a"), ("t3", "b"), ("t4", "b")] {
            place(&db, first[task].id, agent).await;
            report(&db, first[task].id, agent, 0, &[started(task, 1)]).await;
        }
        report(
            &db,
            first["t1"].id,
            "a",
            1,
            &[finished("t1", TaskStatus::Success, 1)],
        )
        .await;
        let held: Vec<String> = attempts::held_by(&db, "a")
            .await
            .unwrap()
            .into_iter()
            .map(|h| h.task)
            .collect();
        assert_eq!(held, ["t2"], "{backend:?}");

        // Agent a goes; b renews.
        attempts::end_leases_of(&db, "a").await.unwrap();
        let now = now_ms();
        let expired = attempts::expire_leases(&db, now).await.unwrap();
        assert_eq!((expired.lost, expired.again), (1, 1), "{backend:?}");
        let all = attempts::of_run(&db, run).await.unwrap();
        let states: Vec<(String, i64, String)> = all
            .iter()
            .map(|a| (a.task.clone(), a.number, a.status.clone()))
            .collect();
        assert_eq!(
            states,
            [
                ("t1".into(), 1, "success".into()),
                ("t2".into(), 1, "unknown".into()),
                ("t2".into(), 2, "ready".into()),
                ("t3".into(), 1, "running".into()),
                ("t4".into(), 1, "running".into()),
            ],
            "{backend:?}"
        );
        let retry = all.iter().find(|a| a.status == "ready").unwrap();
        assert!(
            retry.counts_retry,
            "{backend:?}: a started attempt's loss uses a retry"
        );
        assert_eq!(retry.avoid_agent.as_deref(), Some("a"));
        assert!(
            retry.not_before.is_some_and(|t| t > now),
            "{backend:?}: backoff"
        );
        assert!(
            attempts::ready_page(&db, 0, now, 100)
                .await
                .unwrap()
                .is_empty(),
            "{backend:?}: not placed before its backoff"
        );
        assert_eq!(task_status(&db, run, "t1").await, "success");
        assert_eq!(task_status(&db, run, "t2").await, "running");
        let used: i64 = sqlx::query_scalar(
            "SELECT retries_used FROM task_runs WHERE run_id = $1 AND task = 't2'",
        )
        .bind(run)
        .fetch_one(db.pool())
        .await
        .unwrap();
        assert_eq!(used, 1, "{backend:?}");
        // a's late report of its lost attempt is stale.
        let late = events::apply_attempt(
            &db,
            AttemptRef { id: first["t2"].id },
            "a",
            1,
            &[finished("t2", TaskStatus::Success, 1)],
        )
        .await
        .unwrap();
        assert!(late.stale, "{backend:?}");
        assert_eq!(task_status(&db, run, "t2").await, "running");

        // The retry runs on b, and the run succeeds with each task once.
        place(&db, retry.id, "b").await;
        report(
            &db,
            retry.id,
            "b",
            0,
            &[started("t2", 2), finished("t2", TaskStatus::Success, 2)],
        )
        .await;
        for task in ["t3", "t4"] {
            report(
                &db,
                first[task].id,
                "b",
                1,
                &[finished(task, TaskStatus::Success, 1)],
            )
            .await;
        }
        let (status, left, _, _) = run_row(&db, run).await;
        assert_eq!((status.as_str(), left), ("success", Some(0)), "{backend:?}");
    }
}

const ONCE: &str = r#"
name: once
pipelines:
  p:
    tasks:
      t: {steps: ['true']}
"#;

#[tokio::test]
async fn a_loss_before_the_start_uses_no_retry_at_most_five_times() {
    for backend in BACKENDS {
        let test_db = TestDb::new(backend);
        let (db, run) = model_2_run(&test_db, ONCE, "once", &["a"]).await;
        for lost in 1..=attempts::MAX_LOST_UNSTARTED + 1 {
            let attempt = ready(&db, run).await.remove("t").expect("t is ready");
            assert_eq!(attempt.number, lost, "{backend:?}");
            place(&db, attempt.id, "a").await;
            attempts::end_leases_of(&db, "a").await.unwrap();
            let expired = attempts::expire_leases(&db, now_ms()).await.unwrap();
            let again = u64::from(lost <= attempts::MAX_LOST_UNSTARTED);
            assert_eq!(
                (expired.lost, expired.again),
                (1, again),
                "{backend:?} loss {lost}"
            );
        }
        let all = attempts::of_run(&db, run).await.unwrap();
        assert!(
            all.iter().skip(1).all(|a| !a.counts_retry),
            "{backend:?}: re-placements use no retry"
        );
        assert_eq!(task_status(&db, run, "t").await, "unknown", "{backend:?}");
        let (status, left, _, _) = run_row(&db, run).await;
        assert_eq!((status.as_str(), left), ("unknown", Some(0)), "{backend:?}");
    }
}

#[tokio::test]
async fn a_started_loss_without_retries_ends_the_task_unknown() {
    for backend in BACKENDS {
        let test_db = TestDb::new(backend);
        let (db, run) = model_2_run(&test_db, ONCE, "once", &["a"]).await;
        let attempt = ready(&db, run).await.remove("t").unwrap();
        place(&db, attempt.id, "a").await;
        report(&db, attempt.id, "a", 0, &[started("t", 1)]).await;
        attempts::end_leases_of(&db, "a").await.unwrap();
        let expired = attempts::expire_leases(&db, now_ms()).await.unwrap();
        assert_eq!((expired.lost, expired.again), (1, 0), "{backend:?}");
        assert_eq!(task_status(&db, run, "t").await, "unknown", "{backend:?}");
        assert_eq!(run_row(&db, run).await.0, "unknown", "{backend:?}");
    }
}

const TOGETHER: &str = r#"
name: together
pipelines:
  p:
    placement: together
    tasks:
      a: {steps: ['true']}
      b: {steps: ['true']}
      c: {steps: ['true'], depends_on: [a, b]}
"#;

#[tokio::test]
async fn together_unpins_when_its_agent_is_lost() {
    for backend in BACKENDS {
        let test_db = TestDb::new(backend);
        let (db, run) = model_2_run(&test_db, TOGETHER, "together", &["first", "second"]).await;
        let roots = ready(&db, run).await;
        assert_eq!(roots["a"].placement, "together");
        place(&db, roots["a"].id, "first").await;
        assert_eq!(
            run_row(&db, run).await.3.as_deref(),
            Some("first"),
            "{backend:?}"
        );
        let b = &ready(&db, run).await["b"];
        assert_eq!(b.pinned_agent.as_deref(), Some("first"), "{backend:?}");
        // A draining agent still takes the tasks of the run it holds.
        sqlx::query("UPDATE agents SET draining = 1 WHERE id = 'first'")
            .execute(db.pool())
            .await
            .unwrap();
        place(&db, b.id, "first").await;
        report(&db, roots["a"].id, "first", 0, &[started("a", 1)]).await;
        attempts::end_leases_of(&db, "first").await.unwrap();
        let expired = attempts::expire_leases(&db, now_ms()).await.unwrap();
        // a started and has no retry (ends unknown); b never started: placed again.
        assert_eq!((expired.lost, expired.again), (2, 1), "{backend:?}");
        assert_eq!(run_row(&db, run).await.3, None, "{backend:?}: unpinned");
        let b = &ready(&db, run).await["b"];
        assert_eq!(b.pinned_agent, None);
        assert_eq!(b.avoid_agent.as_deref(), Some("first"));
        // A draining agent takes nothing of a run it does not hold.
        let placed = attempts::place_many(&db, &[(b.id, "first")], 60_000)
            .await
            .unwrap();
        assert_eq!(placed, [false], "{backend:?}: draining");
        place(&db, b.id, "second").await;
        assert_eq!(
            run_row(&db, run).await.3.as_deref(),
            Some("second"),
            "{backend:?}: re-pinned"
        );
    }
}

const CANCEL: &str = r#"
name: cancel
pipelines:
  p:
    tasks:
      a: {steps: ['true']}
      b: {steps: ['true'], depends_on: [a]}
      c: {steps: ['true']}
      d: {steps: ['true'], retries: 2}
"#;

#[tokio::test]
async fn cancel_stops_every_task_and_leaves_no_task_left() {
    for backend in BACKENDS {
        let test_db = TestDb::new(backend);
        let db = model_2_db(&test_db, CANCEL).await;
        add_agent(&db, "x", 8).await;
        add_agent(&db, "y", 8).await;

        // Nothing placed yet: cancelled at once.
        let idle = start_run(&db, "cancel", &[]).await;
        assert_eq!(runs::cancel(&db, idle).await.unwrap(), runs::Cancelled::Now);
        let (status, left, _, _) = run_row(&db, idle).await;
        assert_eq!(
            (status.as_str(), left),
            ("cancelled", Some(0)),
            "{backend:?}"
        );
        assert!(ready(&db, idle).await.is_empty());

        // a runs on x, d failed once on y and waits for its retry, c waits.
        let run = start_run(&db, "cancel", &[]).await;
        let roots = ready(&db, run).await;
        place(&db, roots["a"].id, "x").await;
        report(&db, roots["a"].id, "x", 0, &[started("a", 1)]).await;
        place(&db, roots["d"].id, "y").await;
        report(
            &db,
            roots["d"].id,
            "y",
            0,
            &[started("d", 1), finished("d", TaskStatus::Error, 1)],
        )
        .await;
        assert_eq!(
            ready(&db, run).await["d"].number,
            2,
            "{backend:?}: d's retry"
        );

        assert_eq!(
            runs::cancel(&db, run).await.unwrap(),
            runs::Cancelled::Requested
        );
        assert!(
            ready(&db, run).await.is_empty(),
            "{backend:?}: nothing left to place"
        );
        assert_eq!(task_status(&db, run, "c").await, "not_executed");
        assert_eq!(task_status(&db, run, "d").await, "cancelled");
        assert_eq!(task_status(&db, run, "b").await, "not_executed");
        let held = attempts::held_by(&db, "x").await.unwrap();
        assert!(
            held.len() == 1 && held[0].cancel_requested,
            "{backend:?}: {held:?}"
        );
        let (status, left, cancel, _) = run_row(&db, run).await;
        assert_eq!(
            (status.as_str(), left, cancel),
            ("running", Some(1), 1),
            "{backend:?}"
        );

        // a stops: the run is cancelled with nothing left.
        report(
            &db,
            roots["a"].id,
            "x",
            1,
            &[finished("a", TaskStatus::Cancelled, 1)],
        )
        .await;
        let (status, left, _, _) = run_row(&db, run).await;
        assert_eq!(
            (status.as_str(), left),
            ("cancelled", Some(0)),
            "{backend:?}"
        );
    }
}

#[tokio::test]
async fn the_backstop_recomputes_a_dirty_run() {
    for backend in BACKENDS {
        let test_db = TestDb::new(backend);
        let (db, run) = model_2_run(&test_db, CHAIN, "chain", &["a1"]).await;
        let a = ready(&db, run).await.remove("a").unwrap();
        place(&db, a.id, "a1").await;
        report(
            &db,
            a.id,
            "a1",
            0,
            &[started("a", 1), finished("a", TaskStatus::Success, 1)],
        )
        .await;
        // As if the inline path had been lost: b's attempt gone, counters wrong.
        sqlx::query("DELETE FROM task_attempts WHERE run_id = $1 AND task = 'b'")
            .bind(run)
            .execute(db.pool())
            .await
            .unwrap();
        sqlx::query("UPDATE task_runs SET waiting_on = 1 WHERE run_id = $1 AND task = 'b'")
            .bind(run)
            .execute(db.pool())
            .await
            .unwrap();
        sqlx::query("UPDATE runs SET tasks_left = 7 WHERE id = $1")
            .bind(run)
            .execute(db.pool())
            .await
            .unwrap();
        assert_eq!(readiness::mark_active_dirty(&db).await.unwrap(), 1);
        assert_eq!(readiness::resync_dirty(&db).await.unwrap(), 1);
        let b = ready(&db, run).await.remove("b").expect("b is ready again");
        assert_eq!(run_row(&db, run).await.1, Some(1), "{backend:?}");
        let dirty: i64 = sqlx::query_scalar("SELECT dirty FROM runs WHERE id = $1")
            .bind(run)
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(dirty, 0, "{backend:?}");
        // A second pass finds nothing to do and makes no second attempt.
        assert_eq!(readiness::resync_dirty(&db).await.unwrap(), 0);
        place(&db, b.id, "a1").await;
        report(
            &db,
            b.id,
            "a1",
            0,
            &[started("b", 1), finished("b", TaskStatus::Success, 1)],
        )
        .await;
        assert_eq!(run_row(&db, run).await.0, "success", "{backend:?}");
    }
}
