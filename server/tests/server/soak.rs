//! The chaos soak: many pipelines across several real `xene-agent`
//! processes while agents and servers are killed with SIGKILL and
//! restarted; afterwards every run must be finished or correctly failed,
//! every log complete, and nothing that must run once may have run twice.
//!
//! `chaos_soak` is the short form (SQLite, one server, two agents, about a
//! minute), part of the test suite. `chaos_soak_long` (ignored; `cargo
//! xtask soak`) runs on PostgreSQL with two replicas, three agent processes
//! and two agents in Docker containers (whose network is also cut) for
//! `XENE_SOAK_SECONDS` (default 600). Both print what they did and what
//! they found.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::process::{Agent, Xene};
use crate::util::{Backend, TestDb};

/// Lines each counting step prints: the log check wants all of them, once,
/// in order.
const LINES: usize = 8;

/// Three pipelines: `once` must never run a task twice (no retries, so one
/// attempt); `retried` may be tried again; `failing` must end in error.
/// Each counting step writes one line to the ledger when it ends, naming
/// its run, task attempt and task (`$XENE_RUN_ID` is
/// `{run}-{task attempt}-{incarnation}`; `$XENE_ATTEMPT` the attempt).
fn workflow(ledger: &Path) -> String {
    let ledger = ledger.display();
    let count = |task: &str| {
        format!(
            "for i in $(seq 1 {LINES}); do echo {task}-$i; sleep 0.2; done; echo \"$XENE_RUN_ID $XENE_ATTEMPT {task}\" >> {ledger}"
        )
    };
    format!(
        "name: soak
pipelines:
  once:
    tasks:
      a:
        steps:
          - name: s
            run: '{a}'
      b:
        depends_on: [a]
        steps:
          - name: s
            run: '{b}'
  retried:
    tasks:
      a:
        retries: 3
        steps:
          - name: s
            run: '{a}'
      b:
        depends_on: [a]
        retries: 3
        steps:
          - name: s
            run: '{b}'
  failing:
    tasks:
      a:
        steps:
          - name: s
            run: 'echo about to fail; exit 3'
",
        a = count("a"),
        b = count("b"),
    )
}

struct Plan {
    backend: Backend,
    replicas: usize,
    agents: usize,
    /// How long the chaos lasts; runs are started through it.
    seconds: u64,
    runs: usize,
    /// Seconds between two faults.
    fault_every: u64,
    /// More agents, in Docker containers on a network of their own: these
    /// are also cut off (`docker network disconnect`) and killed with
    /// `docker kill`.
    boxed: usize,
}

/// A tiny deterministic generator: the seed printed reproduces the plan.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn free_addr() -> String {
    xene_testkit::next_addr().to_string()
}

struct Cluster<'a> {
    db: &'a TestDb,
    addrs: Vec<String>,
    /// Where containers reach the servers: their network's gateway.
    gateway: Option<String>,
    network: String,
    image: String,
    boxes: Vec<String>,
    servers: Vec<Option<Xene>>,
    agents: Vec<Option<Agent>>,
    tokens: Vec<String>,
    started: Instant,
    did: std::cell::RefCell<Vec<String>>,
}

impl Cluster<'_> {
    fn flags(&self, i: usize) -> Vec<String> {
        // Containers reach a server through their network's gateway: then
        // it listens on every address.
        let addr = match self.gateway {
            Some(_) => self.addrs[i].replace("127.0.0.1", "0.0.0.0"),
            None => self.addrs[i].clone(),
        };
        ["--no-local-agent", "--addr", &addr, "--task-lease", "5s"]
            .map(String::from)
            .to_vec()
    }

    async fn start_server(&mut self, i: usize) {
        let flags = self.flags(i);
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        self.servers[i] = Some(Xene::start(self.db, &format!("replica-{i}"), &flags).await);
    }

    fn agent_dir(&self, i: usize) -> PathBuf {
        self.db.dir.path().join(format!("agent-{i}"))
    }

    fn start_agent(&mut self, i: usize) {
        let server = format!("http://{}", self.addrs[i % self.addrs.len()]);
        self.agents[i] = Some(Agent::start(
            &server,
            &self.tokens[i],
            &self.agent_dir(i),
            &format!("soak-{i}"),
            &["--allow-shell", "--capacity", "4"],
        ));
    }

    /// Starts container agent `i` (created on first use, started again
    /// after a kill: its state directory is in the container).
    fn start_box(&mut self, i: usize, token: &str) {
        use crate::network::docker;
        if let Some(name) = self.boxes.get(i) {
            docker(&["start", name]);
            return;
        }
        let gateway = self.gateway.clone().unwrap();
        let port = self.addrs[i % self.addrs.len()]
            .rsplit(':')
            .next()
            .unwrap()
            .to_string();
        let name = format!("soak-box-{i}-{}", crate::process::nonce());
        // The ledger's directory at the same path inside, so steps write
        // to the one ledger.
        let dir = self.db.dir.path().display().to_string();
        docker(&[
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            &self.network,
            "-v",
            &format!("{dir}:{dir}"),
            &self.image,
            "connect",
            "--server",
            &format!("http://{gateway}:{port}"),
            "--join-token",
            token,
            "--name",
            &name,
            "--allow-shell",
            "--allow-insecure",
            "--capacity",
            "4",
            "--state-dir",
            "/state",
        ]);
        self.boxes.push(name);
    }

    fn live(&self) -> Option<&Xene> {
        self.servers.iter().flatten().next()
    }

    fn note(&self, what: String) {
        let line = format!("{:>6.1}s  {what}", self.started.elapsed().as_secs_f64());
        eprintln!("soak: {line}");
        self.did.borrow_mut().push(line);
    }
}

async fn soak(plan: Plan, seed: u64) {
    let db = TestDb::new(plan.backend);
    let ledger = db.dir.path().join("ledger");
    std::fs::write(&ledger, "").unwrap();
    // Containers' steps run as root: the ledger must be theirs to append to.
    std::fs::set_permissions(&ledger, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let mut cleanup = crate::network::Cleanup {
        containers: Vec::new(),
        network: None,
        image: None,
    };
    let (mut gateway, mut network, mut image) = (None, String::new(), String::new());
    if plan.boxed > 0 {
        use crate::network::{agent_image, docker};
        image = agent_image(db.dir.path());
        cleanup.image = Some(image.clone());
        network = format!("xene-soak-{}", crate::process::nonce());
        docker(&["network", "create", &network]);
        cleanup.network = Some(network.clone());
        gateway = Some(docker(&[
            "network",
            "inspect",
            "-f",
            "{{(index .IPAM.Config 0).Gateway}}",
            &network,
        ]));
    }
    let mut cluster = Cluster {
        db: &db,
        gateway,
        network,
        image,
        boxes: Vec::new(),
        addrs: (0..plan.replicas).map(|_| free_addr()).collect(),
        servers: (0..plan.replicas).map(|_| None).collect(),
        agents: (0..plan.agents).map(|_| None).collect(),
        tokens: Vec::new(),
        started: Instant::now(),
        did: Default::default(),
    };
    for i in 0..plan.replicas {
        cluster.start_server(i).await;
    }
    let first = cluster.live().unwrap();
    first.apply(&workflow(&ledger)).await;
    let mut tokens = Vec::new();
    for _ in 0..plan.agents + plan.boxed {
        tokens.push(first.join_token(json!({})).await);
    }
    cluster.tokens = tokens;
    for i in 0..plan.agents {
        cluster.start_agent(i);
    }
    for i in 0..plan.boxed {
        let token = cluster.tokens[plan.agents + i].clone();
        cluster.start_box(i, &token);
        cleanup.containers.push(cluster.boxes[i].clone());
    }
    cluster
        .live()
        .unwrap()
        .wait_agents_online(plan.agents + plan.boxed)
        .await;
    cluster.note(format!(
        "{} replica(s) on {:?}, {} agents online ({} in containers), seed {seed}",
        plan.replicas,
        plan.backend,
        plan.agents + plan.boxed,
        plan.boxed
    ));

    let mut rng = Rng(seed | 1);
    let mut runs: Vec<(i64, &str)> = Vec::new();
    // What is down, and when it comes back.
    let mut down_servers: BTreeMap<usize, Instant> = BTreeMap::new();
    let mut down_agents: BTreeMap<usize, Instant> = BTreeMap::new();
    // Containers cut off (true) or killed (false), and when they come back.
    let mut down_boxes: BTreeMap<usize, (Instant, bool)> = BTreeMap::new();
    let mut faults = BTreeMap::<&str, usize>::new();
    let chaos = Duration::from_secs(plan.seconds);
    let mut next_fault = Instant::now() + Duration::from_secs(plan.fault_every);
    let tick = Duration::from_millis(500);
    let ticks = (plan.seconds * 2).max(1) as usize;
    let per_tick = plan.runs.div_ceil(ticks);
    while cluster.started.elapsed() < chaos || runs.len() < plan.runs {
        let now = Instant::now();
        for (i, _) in down_servers.clone().iter().filter(|(_, at)| **at <= now) {
            cluster.start_server(*i).await;
            down_servers.remove(i);
            cluster.note(format!("restarted server {i}"));
        }
        for (i, _) in down_agents.clone().iter().filter(|(_, at)| **at <= now) {
            cluster.start_agent(*i);
            down_agents.remove(i);
            cluster.note(format!("restarted agent {i}"));
        }
        for (i, (_, cut)) in down_boxes.clone().iter().filter(|(_, (at, _))| *at <= now) {
            bring_back_box(&cluster, *i, *cut);
            down_boxes.remove(i);
        }
        if let Some(server) = cluster.live() {
            let mut started = Vec::new();
            for _ in 0..per_tick.min(plan.runs - runs.len()) {
                let pipeline =
                    ["once", "once", "retried", "retried", "failing"][rng.below(5) as usize];
                let path = format!("/api/v1/workflows/soak/pipelines/{pipeline}/runs");
                // A server may be killed under the request: then it is not a run.
                let answer = server
                    .http
                    .post(format!("{}{path}", server.base))
                    .body("{}")
                    .send()
                    .await;
                if let Ok(answer) = answer
                    && answer.status() == 201
                {
                    let body: Value = answer.json().await.unwrap();
                    started.push((body["id"].as_i64().unwrap(), pipeline));
                }
            }
            runs.extend(started);
        }
        if now >= next_fault && cluster.started.elapsed() < chaos {
            next_fault = now + Duration::from_secs(plan.fault_every);
            let choice = rng.below(10);
            if plan.boxed > 0 && choice >= 8 {
                let i = rng.below(plan.boxed as u64) as usize;
                if let std::collections::btree_map::Entry::Vacant(entry) = down_boxes.entry(i) {
                    let name = &cluster.boxes[i];
                    let cut = choice == 8;
                    if cut {
                        crate::network::docker(&["network", "disconnect", &cluster.network, name]);
                    } else {
                        crate::network::docker(&["kill", name]);
                    }
                    let back = 2000 + rng.below(6000);
                    entry.insert((now + Duration::from_millis(back), cut));
                    let what = if cut {
                        "network cut of"
                    } else {
                        "docker kill of"
                    };
                    *faults.entry(what).or_default() += 1;
                    cluster.note(format!("{what} container agent {i}, back in {back} ms"));
                }
            } else if choice < 3 && down_servers.len() + 1 < plan.replicas.max(2) {
                // A server (never the last two at once with replicas).
                let i = rng.below(plan.replicas as u64) as usize;
                if let Some(mut server) = cluster.servers[i].take() {
                    server.kill();
                    let back = 1000 + rng.below(2000);
                    down_servers.insert(i, now + Duration::from_millis(back));
                    *faults.entry("server kill -9").or_default() += 1;
                    cluster.note(format!("kill -9 server {i}, back in {back} ms"));
                }
            } else if choice < 5 {
                // Every agent at once.
                for i in 0..plan.agents {
                    if let Some(mut agent) = cluster.agents[i].take() {
                        agent.kill();
                        down_agents.insert(i, now + Duration::from_millis(1500));
                    }
                }
                *faults.entry("all agents kill -9").or_default() += 1;
                cluster.note("kill -9 every agent, back in 1500 ms".into());
            } else {
                let i = rng.below(plan.agents as u64) as usize;
                if let Some(mut agent) = cluster.agents[i].take() {
                    agent.kill();
                    let back = 500 + rng.below(3000);
                    down_agents.insert(i, now + Duration::from_millis(back));
                    *faults.entry("agent kill -9").or_default() += 1;
                    cluster.note(format!("kill -9 agent {i}, back in {back} ms"));
                }
            }
        }
        tokio::time::sleep(tick).await;
    }
    // Everything comes back; then the runs must all end.
    for (i, _) in std::mem::take(&mut down_servers) {
        cluster.start_server(i).await;
        cluster.note(format!("restarted server {i}"));
    }
    for (i, _) in std::mem::take(&mut down_agents) {
        cluster.start_agent(i);
        cluster.note(format!("restarted agent {i}"));
    }
    for (i, (_, cut)) in std::mem::take(&mut down_boxes) {
        bring_back_box(&cluster, i, cut);
    }
    cluster.note(format!(
        "{} runs started; waiting for them to end",
        runs.len()
    ));
    let xene = cluster.live().unwrap();
    let mut finished = BTreeMap::new();
    for (id, pipeline) in &runs {
        let run = xene.wait_finished(*id, Duration::from_secs(180)).await;
        finished.insert(*id, (*pipeline, run));
    }
    cluster.note("every run ended".into());

    // What it found.
    let mut problems = Vec::new();
    let mut statuses = BTreeMap::<String, usize>::new();
    // How many attempts the tasks took: attempts -> tasks.
    let mut attempts = BTreeMap::<usize, usize>::new();
    for (id, (pipeline, run)) in &finished {
        let status = run["status"].as_str().unwrap().to_string();
        *statuses.entry(format!("{pipeline}: {status}")).or_default() += 1;
        for task in run["tasks"].as_array().unwrap() {
            let name = task["name"].as_str().unwrap();
            *attempts.entry(task_attempts(run, name)).or_default() += 1;
        }
        let ok = match *pipeline {
            // Lost with its agent, no attempt left: `unknown` is the right end.
            "once" => status == "success" || status == "unknown",
            "retried" => status == "success" || status == "unknown",
            _ => status == "error" || status == "unknown",
        };
        if !ok {
            problems.push(format!("run {id} ({pipeline}) ended {status}: {run}"));
        }
        if status == "unknown" && !lost_with_agent(run) {
            problems.push(format!("run {id} is unknown without its agent lost: {run}"));
        }
        if status == "success" {
            let logs = xene.logs(*id).await;
            for task in ["a", "b"] {
                let mut by_attempt = BTreeMap::<i64, Vec<String>>::new();
                for line in logs.iter().filter(|l| l["task"] == task) {
                    by_attempt
                        .entry(line["attempt"].as_i64().unwrap())
                        .or_default()
                        .push(line["data"].as_str().unwrap().to_string());
                }
                let want: Vec<String> = (1..=LINES).map(|i| format!("{task}-{i}")).collect();
                match by_attempt.values().last() {
                    Some(last) if *last == want => {}
                    last => problems.push(format!(
                        "run {id} task {task}: its last log is {last:?}, not {LINES} lines once"
                    )),
                }
                for (attempt, lines) in &by_attempt {
                    if !want.starts_with(lines) {
                        problems.push(format!(
                            "run {id} task {task} attempt {attempt}: lines repeated or out of order: {lines:?}"
                        ));
                    }
                }
            }
        }
    }
    // The ledger: one line per execution of a counting task that ran to its end.
    let mut executions = BTreeMap::<(i64, String), BTreeSet<String>>::new();
    let mut per_attempt = BTreeMap::<(i64, i64, String), usize>::new();
    for line in std::fs::read_to_string(&ledger).unwrap().lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let [run_id, number, task] = fields[..] else {
            panic!("a ledger line is `XENE_RUN_ID XENE_ATTEMPT task`: {line:?}");
        };
        let mut parts = run_id.split('-');
        let id: i64 = parts.next().unwrap().parse().unwrap();
        let attempt: i64 = parts.next().unwrap().parse().unwrap();
        if number.parse() != Ok(attempt) {
            problems.push(format!(
                "XENE_ATTEMPT is not XENE_RUN_ID's middle: {line:?}"
            ));
        }
        executions
            .entry((id, task.to_string()))
            .or_default()
            .insert(run_id.to_string());
        *per_attempt
            .entry((id, attempt, task.to_string()))
            .or_default() += 1;
    }
    for ((id, attempt, task), n) in &per_attempt {
        if *n > 1 {
            problems.push(format!(
                "run {id} task {task}: its attempt {attempt} ran {n} times"
            ));
        }
    }
    let mut reexecuted = 0;
    for ((id, task), runs_of) in &executions {
        let Some((pipeline, run)) = finished.get(id) else {
            continue;
        };
        if runs_of.len() > 1 {
            reexecuted += 1;
        }
        if *pipeline == "once" && runs_of.len() > 1 {
            problems.push(format!(
                "run {id} (once) ran task {task} {} times: {runs_of:?}",
                runs_of.len()
            ));
        }
        let tried = task_attempts(run, task);
        if runs_of.len() > tried {
            problems.push(format!(
                "run {id} ran task {task} {} times in {tried} attempt(s)",
                runs_of.len(),
            ));
        }
    }
    for (id, (pipeline, run)) in &finished {
        if run["status"] == "success" {
            for task in ["a", "b"] {
                if !executions.contains_key(&(*id, task.to_string())) {
                    problems.push(format!(
                        "run {id} ({pipeline}) succeeded but task {task} never ran"
                    ));
                }
            }
        }
    }
    eprintln!("soak: did\n  {}", cluster.did.borrow().join("\n  "));
    eprintln!(
        "soak: found: {} runs in {:.0} s; faults {faults:?}; ends {statuses:?}; attempts {attempts:?}; \
         {reexecuted} task(s) of retried runs ran again after a loss; {} problem(s)",
        finished.len(),
        cluster.started.elapsed().as_secs_f64(),
        problems.len()
    );
    assert!(
        problems.is_empty(),
        "soak problems:\n{}",
        problems.join("\n")
    );
    for agent in cluster.agents.iter_mut().flatten() {
        agent.kill();
    }
}

/// How many attempts the API shows for `task` of `run`.
fn task_attempts(run: &Value, task: &str) -> usize {
    run["tasks"]
        .as_array()
        .and_then(|tasks| tasks.iter().find(|t| t["name"] == task))
        .and_then(|t| t["attempts"].as_array())
        .map_or(0, Vec::len)
}

/// An `unknown` run must be one whose agent was lost: the run, a task or
/// an attempt says so.
fn lost_with_agent(run: &Value) -> bool {
    let says = |v: &Value| v["error"].as_str().is_some_and(|e| e.contains("agent"));
    says(run)
        || run["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| says(t) || t["attempts"].as_array().into_iter().flatten().any(says))
}

fn bring_back_box(cluster: &Cluster, i: usize, cut: bool) {
    let name = &cluster.boxes[i];
    if cut {
        crate::network::docker(&["network", "connect", &cluster.network, name]);
        cluster.note(format!("reconnected container agent {i}"));
    } else {
        crate::network::docker(&["start", name]);
        cluster.note(format!("restarted container agent {i}"));
    }
}

fn seed() -> u64 {
    std::env::var("XENE_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| crate::process::nonce() as u64)
}

/// The short form: about a minute on SQLite, in every test run.
#[tokio::test(flavor = "multi_thread")]
async fn chaos_soak() {
    soak(
        Plan {
            backend: Backend::Sqlite,
            replicas: 1,
            agents: 2,
            seconds: 30,
            runs: 30,
            fault_every: 3,
            boxed: 0,
        },
        seed(),
    )
    .await;
}

/// The long form (`cargo xtask soak`): PostgreSQL, two replicas, three
/// agent processes and two in containers, `XENE_SOAK_SECONDS` of chaos
/// (default 600).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "long: run by cargo xtask soak"]
async fn chaos_soak_long() {
    let seconds = std::env::var("XENE_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    soak(
        Plan {
            backend: Backend::Postgres,
            replicas: 2,
            agents: 3,
            seconds,
            runs: (seconds as usize) * 2,
            fault_every: 4,
            boxed: 2,
        },
        seed(),
    )
    .await;
}
