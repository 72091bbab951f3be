//! Faults of runs spread over agents (issue 24), through real parts: `xene`
//! and `xene-agent connect` processes, the shell runtime, a 2 s task
//! lease. Every step appends to a ledger outside Xene when it starts and
//! when it ends (`start|end $XENE_RUN_ID $XENE_TASK $XENE_ATTEMPT`), so
//! what really ran is known whatever Xene says; who ran each attempt comes
//! from the API (`tasks[].attempts[].agent_id`).
//!
//! - an agent holding 5 of a run's tasks is killed (SQLite; and PostgreSQL
//!   with two replicas, the scheduler's replica killed and restarted too):
//!   only those 5 run again, elsewhere, and the run succeeds;
//! - an agent is cut off past the lease (`relay.rs`): its tasks run again
//!   elsewhere, and what it says once healed changes nothing;
//! - a task no agent matches waits with its reason while the rest runs;
//!   cancel then stops the tasks held on two agents;
//! - `placement: together`: the run stays on one agent, and moves whole to
//!   one other when that agent dies.
//!
//! The timeouts only turn a hang into a failure: nothing here is timed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::process::{Agent, Xene};
use crate::relay::Relay;
use crate::util::{Backend, TestDb};

const WAIT: Duration = Duration::from_secs(90);
const WIDE: usize = 15;
const CAPACITY: usize = 5;

/// A step that notes its start and end in the ledger around `sleep`.
fn noted(ledger: &Path, seconds: u32) -> String {
    let ledger = ledger.display();
    let line = "$XENE_RUN_ID $XENE_TASK $XENE_ATTEMPT";
    format!("echo \"start {line}\" >> {ledger}; sleep {seconds}; echo \"end {line}\" >> {ledger}")
}

fn workflow(ledger: &Path) -> String {
    let retried = "        retries: {count: 1, backoff: 100ms}\n";
    let task = |name: &str, extra: &str, seconds: u32| {
        format!(
            "      {name}:\n{extra}        steps:\n          - name: s\n            run: '{}'\n",
            noted(ledger, seconds)
        )
    };
    let mut wide = String::new();
    for i in 1..=WIDE {
        wide += &task(&format!("t{i:02}"), retried, 3);
    }
    let mut together = task("a", "", 0);
    for b in ["b1", "b2", "b3", "b4"] {
        together += &task(b, &format!("        depends_on: [a]\n{retried}"), 3);
    }
    together += &task("z", "        depends_on: [b1, b2, b3, b4]\n", 0);
    let held = [
        task("gpu", "        selector: {gpu: \"yes\"}\n", 0),
        task("a", "", 0),
        task("b", "        depends_on: [a]\n", 0),
        task("long_x", "        selector: {zone: x}\n", 60),
        task("long_y", "        selector: {zone: y}\n", 60),
    ]
    .concat();
    format!(
        "name: spread
pipelines:
  wide:
    tasks:
{wide}  together:
    placement: together
    tasks:
{together}  held:
    tasks:
{held}  probe:
    selector: {{relay: \"yes\"}}
    tasks:
      t:
        steps:
          - name: s
            run: 'true'
"
    )
}

/// One line of the ledger: a step of `task`'s attempt `attempt` of run
/// `run` started or ended.
#[derive(Debug, Clone)]
struct Noted {
    end: bool,
    run: i64,
    task: String,
    attempt: i64,
}

fn read_ledger(path: &Path) -> Vec<Noted> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let [phase, run_id, task, attempt] = fields[..] else {
                panic!("a ledger line is `start|end XENE_RUN_ID XENE_TASK XENE_ATTEMPT`: {line:?}")
            };
            // XENE_RUN_ID is `{run}-{task attempt}-{incarnation}`.
            let parts: Vec<&str> = run_id.split('-').collect();
            let number = |s: &str| -> i64 {
                s.parse()
                    .unwrap_or_else(|_| panic!("not a number in ledger line {line:?}"))
            };
            assert_eq!(parts.len(), 3, "XENE_RUN_ID's shape: {line:?}");
            assert_eq!(
                number(parts[1]),
                number(attempt),
                "XENE_RUN_ID's middle is XENE_ATTEMPT: {line:?}"
            );
            Noted {
                end: phase == "end",
                run: number(parts[0]),
                task: task.to_string(),
                attempt: number(attempt),
            }
        })
        .collect()
}

/// The attempts of `task` in `run` the ledger saw start (`end` false) or
/// end, sorted.
fn noted_attempts(ledger: &[Noted], run: i64, task: &str, end: bool) -> Vec<i64> {
    let mut attempts: Vec<i64> = ledger
        .iter()
        .filter(|n| n.run == run && n.task == task && n.end == end)
        .map(|n| n.attempt)
        .collect();
    attempts.sort();
    attempts
}

fn task<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no task {name} in {run}"))
}

fn attempts<'a>(run: &'a Value, name: &str) -> &'a Vec<Value> {
    task(run, name)["attempts"]
        .as_array()
        .unwrap_or_else(|| panic!("task {name} has no attempts: {run}"))
}

/// The agent of `task`'s attempt `number` (from 1).
fn agent_of(run: &Value, name: &str, number: usize) -> String {
    let attempt = attempts(run, name)
        .get(number - 1)
        .unwrap_or_else(|| panic!("task {name} has no attempt {number}: {run}"));
    attempt["agent_id"]
        .as_str()
        .unwrap_or_else(|| panic!("attempt {number} of {name} has no agent: {run}"))
        .to_string()
}

/// Servers (replicas of one database, at fixed addresses so a restarted
/// one is found again), agents, and the ledger.
struct Fleet {
    db: TestDb,
    ledger: PathBuf,
    addrs: Vec<String>,
    servers: Vec<Option<Xene>>,
    agents: BTreeMap<String, Agent>,
}

impl Fleet {
    async fn start(backend: Backend, replicas: usize) -> Self {
        let db = TestDb::new(backend);
        let ledger = db.dir.path().join("ledger");
        std::fs::write(&ledger, "").unwrap();
        let mut fleet = Self {
            ledger,
            addrs: (0..replicas)
                .map(|_| xene_testkit::next_addr().to_string())
                .collect(),
            servers: (0..replicas).map(|_| None).collect(),
            agents: BTreeMap::new(),
            db,
        };
        for i in 0..replicas {
            fleet.start_server(i).await;
        }
        fleet.server(0).apply(&workflow(&fleet.ledger)).await;
        fleet
    }

    async fn start_server(&mut self, i: usize) {
        let flags = [
            "--no-local-agent",
            "--addr",
            &self.addrs[i],
            "--task-lease",
            "2s",
        ];
        self.servers[i] = Some(Xene::start(&self.db, &format!("replica-{i}"), &flags).await);
    }

    fn server(&self, i: usize) -> &Xene {
        self.servers[i].as_ref().expect("a live server")
    }

    /// Starts agent `name` dialling `url`, joined through server 0 with
    /// `labels`.
    async fn add_agent(&mut self, url: &str, name: &str, labels: Value) {
        let token = self.server(0).join_token(labels).await;
        let capacity = CAPACITY.to_string();
        let agent = Agent::start(
            url,
            &token,
            &self.db.dir.path().join(name),
            name,
            &["--allow-shell", "--capacity", &capacity],
        );
        self.agents.insert(name.to_string(), agent);
    }

    /// Agent ids by name, once `n` agents are online.
    async fn agent_ids(&self, i: usize, n: usize) -> BTreeMap<String, String> {
        self.server(i)
            .wait_agents_online(n)
            .await
            .iter()
            .map(|a| {
                let name = a["name"].as_str().unwrap().to_string();
                (name, a["id"].as_str().unwrap().to_string())
            })
            .collect()
    }

    fn ledger(&self) -> Vec<Noted> {
        read_ledger(&self.ledger)
    }

    /// Waits until the ledger has noted `n` starts of `run`'s tasks whose
    /// name passes `which`.
    async fn wait_started(&self, run: i64, n: usize, which: impl Fn(&str) -> bool) {
        xene_testkit::wait_for("steps started", WAIT, async || {
            let ledger = self.ledger();
            let started = ledger
                .iter()
                .filter(|l| l.run == run && !l.end && which(&l.task))
                .count();
            if started >= n {
                Ok(())
            } else {
                Err(format!("{started} of {n} started: {ledger:?}"))
            }
        })
        .await;
    }

    /// The replica that holds the scheduler's lease.
    async fn scheduler_replica(&self) -> usize {
        let storage = xene_server::storage::Db::connect(&self.db.url)
            .await
            .unwrap();
        xene_testkit::wait_for("a scheduler lease", WAIT, async || {
            let holder: Option<(String,)> =
                sqlx::query_as("SELECT holder FROM leases WHERE name = 'scheduler'")
                    .fetch_optional(storage.pool())
                    .await
                    .unwrap();
            let holder = holder.map(|h| h.0).unwrap_or_default();
            (0..self.servers.len())
                .find(|i| holder.starts_with(&format!("replica-{i}#")))
                .ok_or(holder)
        })
        .await
    }
}

/// Checks a finished run against the ledger: every task succeeded once,
/// its successful attempt ran to its end exactly once, and nothing else
/// ended; the tasks in `moved` started twice (attempt 1, lost, and 2) and
/// the others once. The tasks in `fenced` were held by an agent cut off
/// from the server: its steps ran on unaware, so their lost attempt may
/// also have ended.
fn check_ledger(fleet: &Fleet, run: &Value, moved: &BTreeSet<String>, fenced: &BTreeSet<String>) {
    let id = run["id"].as_i64().unwrap();
    let ledger = fleet.ledger();
    let mut problems = Vec::new();
    for t in run["tasks"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        let won: Vec<i64> = t["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["status"] == "success")
            .map(|a| a["number"].as_i64().unwrap())
            .collect();
        let [won] = won[..] else {
            problems.push(format!("{name}: successful attempts {won:?}"));
            continue;
        };
        let started = noted_attempts(&ledger, id, name, false);
        let ended = noted_attempts(&ledger, id, name, true);
        let want_started = if moved.contains(name) {
            vec![1, 2]
        } else {
            vec![1]
        };
        if started != want_started {
            problems.push(format!(
                "{name}: attempts {started:?} started, not {want_started:?}"
            ));
        }
        let ok = ended == [won] || (fenced.contains(name) && ended == [1, won]);
        if !ok {
            problems.push(format!(
                "{name}: attempts {ended:?} ran to their end; attempt {won} succeeded \
                 (did a step outlive its killed agent?)"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "the ledger disagrees:\n{}\nledger: {ledger:?}\nrun: {run}",
        problems.join("\n")
    );
}

/// Checks that the tasks first held by `lost` ran again on other agents
/// and that the others ran once where they were placed; gives the agents
/// of the second attempts.
fn check_moved(run: &Value, lost: &str, moved: &BTreeSet<String>) -> BTreeSet<String> {
    assert_eq!(run["status"], "success", "{run}");
    let mut second = BTreeSet::new();
    for t in run["tasks"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        let tries = t["attempts"].as_array().unwrap();
        if moved.contains(name) {
            assert_eq!(tries.len(), 2, "{name} runs again once: {run}");
            assert_ne!(tries[0]["status"], "success", "{name}: {run}");
            assert_eq!(tries[1]["status"], "success", "{name}: {run}");
            let agent = agent_of(run, name, 2);
            assert_ne!(agent, lost, "{name} ran again on its lost agent: {run}");
            second.insert(agent);
        } else {
            assert_eq!(tries.len(), 1, "{name} ran once: {run}");
            assert_eq!(tries[0]["status"], "success", "{name}: {run}");
        }
    }
    second
}

/// 3 agents of capacity 5 hold 5 of `wide`'s 15 tasks each; one is killed.
/// With `replicas` 2 (PostgreSQL) the agents talk to the replica without
/// the scheduler's lease, and the one with it is killed too and restarted.
async fn agent_killed(backend: Backend, replicas: usize) {
    let mut fleet = Fleet::start(backend, replicas).await;
    let (live, restarted) = if replicas > 1 {
        let holder = fleet.scheduler_replica().await;
        (1 - holder, Some(holder))
    } else {
        (0, None)
    };
    let url = fleet.server(live).base.clone();
    for i in 0..3 {
        fleet
            .add_agent(&url, &format!("spread-{i}"), json!({}))
            .await;
    }
    let ids = fleet.agent_ids(live, 3).await;
    let id = fleet
        .server(live)
        .start_run("spread", "wide", json!({}))
        .await;
    fleet.wait_started(id, WIDE, |_| true).await;

    let placed = fleet.server(live).run(id).await;
    let mut held = BTreeMap::<String, BTreeSet<String>>::new();
    for i in 1..=WIDE {
        let name = format!("t{i:02}");
        held.entry(agent_of(&placed, &name, 1))
            .or_default()
            .insert(name);
    }
    let sizes: Vec<usize> = held.values().map(BTreeSet::len).collect();
    assert_eq!(sizes, [CAPACITY; 3], "each agent holds 5: {held:?}");
    let (victim, moved) = held.iter().next().unwrap();
    let name = ids.iter().find(|(_, v)| *v == victim).unwrap().0.clone();
    fleet.agents.get_mut(&name).unwrap().kill();
    if let Some(holder) = restarted {
        fleet.servers[holder].take().unwrap().kill();
        fleet.start_server(holder).await;
    }

    let run = fleet.server(live).wait_finished(id, WAIT).await;
    let second = check_moved(&run, victim, moved);
    eprintln!("killed {name} ({victim}) holding {moved:?}; they ran again on {second:?}");
    check_ledger(&fleet, &run, moved, &BTreeSet::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_agent_s_tasks_alone_run_again_elsewhere() {
    agent_killed(Backend::Sqlite, 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_agent_and_a_restarted_replica_on_postgres() {
    agent_killed(Backend::Postgres, 2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_cut_off_past_its_lease_changes_nothing_once_healed() {
    let mut fleet = Fleet::start(Backend::Sqlite, 1).await;
    let relay = Relay::start(&fleet.addrs[0]).await;
    let url = fleet.server(0).base.clone();
    fleet.add_agent(&url, "spread-0", json!({})).await;
    fleet.add_agent(&url, "spread-1", json!({})).await;
    fleet
        .add_agent(&relay.url, "cut", json!({ "relay": "yes" }))
        .await;
    let ids = fleet.agent_ids(0, 3).await;
    let cut = ids["cut"].clone();
    let xene = fleet.server(0);
    let id = xene.start_run("spread", "wide", json!({})).await;
    fleet.wait_started(id, WIDE, |_| true).await;
    let placed = xene.run(id).await;
    let held: BTreeSet<String> = (1..=WIDE)
        .map(|i| format!("t{i:02}"))
        .filter(|t| agent_of(&placed, t, 1) == cut)
        .collect();
    assert_eq!(held.len(), CAPACITY, "the cut agent holds 5: {placed}");

    relay.cut();
    // Past the lease: its tasks run again on the others, and the run ends
    // while it is still cut off.
    let run = xene.wait_finished(id, WAIT).await;
    check_moved(&run, &cut, &held);

    relay.heal();
    // It is back once it runs what only it may run; what it had to say
    // about the old attempts was said before, on the same connection.
    let probe = xene.start_run("spread", "probe", json!({})).await;
    let probed = xene.wait_finished(probe, WAIT).await;
    assert_eq!(probed["status"], "success", "{probed}");
    assert_eq!(agent_of(&probed, "t", 1), cut, "{probed}");
    let after = xene.run(id).await;
    assert_eq!(after["status"], run["status"], "{after}");
    assert_eq!(
        after["tasks"], run["tasks"],
        "the healed agent's late events changed the run"
    );
    check_ledger(&fleet, &after, &held, &held);
    // What it said late was heard, and answered: not yours any more.
    let log = fleet.agents["cut"].log_text();
    let stopped = log.matches("stopping attempt=").count();
    assert!(
        stopped >= CAPACITY,
        "told to stop {stopped} attempts:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_no_agent_matches_waits_with_its_reason_until_cancelled() {
    let mut fleet = Fleet::start(Backend::Sqlite, 1).await;
    let url = fleet.server(0).base.clone();
    fleet.add_agent(&url, "x", json!({ "zone": "x" })).await;
    fleet.add_agent(&url, "y", json!({ "zone": "y" })).await;
    let ids = fleet.agent_ids(0, 2).await;
    let xene = fleet.server(0);
    let id = xene.start_run("spread", "held", json!({})).await;
    fleet.wait_started(id, 2, |t| t.starts_with("long_")).await;
    let run = xene
        .wait_run(id, WAIT, |run| {
            task(run, "b")["status"] == "success"
                && run["scheduler_reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("gpu=yes"))
        })
        .await;
    assert_eq!(run["status"], "running", "{run}");
    assert_eq!(task(&run, "a")["status"], "success", "{run}");
    assert_eq!(task(&run, "gpu")["status"], "pending", "{run}");
    assert_eq!(agent_of(&run, "long_x", 1), ids["x"], "{run}");
    assert_eq!(agent_of(&run, "long_y", 1), ids["y"], "{run}");
    eprintln!("the run waits: {}", run["scheduler_reason"]);

    let (status, body) = xene.post(&format!("/api/v1/runs/{id}/cancel"), "").await;
    assert_eq!(status, 202, "{body}");
    let run = xene.wait_finished(id, WAIT).await;
    assert_eq!(run["status"], "cancelled", "{run}");
    for long in ["long_x", "long_y"] {
        assert_eq!(task(&run, long)["status"], "cancelled", "{run}");
    }
    assert_ne!(task(&run, "gpu")["status"], "success", "{run}");
    // Both agents let their task go.
    xene_testkit::wait_for("the agents free", WAIT, async || {
        let (_, agents) = xene.get("/api/v1/agents").await;
        let busy: Vec<&Value> = agents["agents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["running"] != 0 || a["held"].as_array().is_none_or(|h| !h.is_empty()))
            .collect();
        if busy.is_empty() {
            Ok(())
        } else {
            Err(format!("{busy:?}"))
        }
    })
    .await;
    let ledger = fleet.ledger();
    for long in ["long_x", "long_y"] {
        assert!(
            noted_attempts(&ledger, id, long, true).is_empty(),
            "{ledger:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn together_keeps_a_run_on_one_agent_and_moves_it_whole() {
    let mut fleet = Fleet::start(Backend::Sqlite, 1).await;
    let url = fleet.server(0).base.clone();
    for i in 0..3 {
        fleet
            .add_agent(&url, &format!("spread-{i}"), json!({}))
            .await;
    }
    let ids = fleet.agent_ids(0, 3).await;
    let id = fleet
        .server(0)
        .start_run("spread", "together", json!({}))
        .await;
    fleet.wait_started(id, 4, |t| t.starts_with('b')).await;
    let placed = fleet.server(0).run(id).await;
    let first = agent_of(&placed, "a", 1);
    for b in ["b1", "b2", "b3", "b4"] {
        assert_eq!(agent_of(&placed, b, 1), first, "{placed}");
    }
    let name = ids.iter().find(|(_, v)| **v == first).unwrap().0.clone();
    fleet.agents.get_mut(&name).unwrap().kill();

    let run = fleet.server(0).wait_finished(id, WAIT).await;
    let moved: BTreeSet<String> = ["b1", "b2", "b3", "b4"].map(String::from).into();
    let second = check_moved(&run, &first, &moved);
    assert_eq!(second.len(), 1, "the run moved whole to one agent: {run}");
    assert_eq!(agent_of(&run, "a", 1), first, "{run}");
    assert_eq!(
        Some(&agent_of(&run, "z", 1)),
        second.first(),
        "z followed: {run}"
    );
    check_ledger(&fleet, &run, &moved, &BTreeSet::new());
}
