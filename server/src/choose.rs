//! Where a ready task attempt goes: a pure function of the agents as the
//! scheduler sees them and what the attempt needs, so that every rule and
//! every reason is tested without a database. The scheduler uses it, and
//! so does the transaction that hands a freed slot on
//! (`storage::attempts::hand_off`).

use std::collections::BTreeMap;

/// An agent as one scheduler pass sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    pub id: String,
    pub labels: BTreeMap<String, String>,
    pub runtimes: Vec<String>,
    /// Most task attempts at once.
    pub capacity: i64,
    /// Task attempts placed on it or running there, this pass's placements
    /// included.
    pub held: i64,
    /// It takes no new tasks (except those of a run pinned to it).
    pub draining: bool,
    /// Online and heard from within half a lease: placing a task on an
    /// agent silent for longer would only have it wait for the lease.
    pub fresh: bool,
}

impl Slot {
    /// It takes new tasks now.
    pub fn open(&self) -> bool {
        self.has_room() && !self.draining
    }

    /// It could take a task now: an open agent, or a draining one for a
    /// run pinned to it.
    pub fn has_room(&self) -> bool {
        self.fresh && self.held < self.capacity
    }
}

/// What a ready attempt needs, and what the pass knows of its run.
#[derive(Debug, Clone, Copy)]
pub struct Need<'a> {
    pub task: &'a str,
    /// The pipeline's selector merged with the task's.
    pub selector: &'a BTreeMap<String, String>,
    /// `docker` or `shell`.
    pub runtime: &'a str,
    /// `placement: together` and the agent that took the run's first task.
    pub pinned: Option<&'a str>,
    pub together: bool,
    /// Under `together`, every runtime the run's tasks use: the agent its
    /// first task lands on runs them all, so it must have them all.
    pub run_runtimes: &'a [String],
    /// The pipeline's `concurrency`, and how many of the run's tasks are
    /// placed or running now.
    pub concurrency: Option<i64>,
    pub run_active: i64,
    /// The agent a lost earlier attempt died on (a soft preference).
    pub avoid: Option<&'a str>,
    /// Agents that ran one of the task's dependencies (a soft preference:
    /// a chain stays on one machine, an image pulled there is warm).
    pub warm: &'a [String],
}

/// The index in `agents` of the agent to place the attempt on, or why it
/// waits, naming the task.
pub fn choose(agents: &[Slot], need: &Need<'_>) -> Result<usize, String> {
    let task = need.task;
    if let Some(limit) = need.concurrency
        && need.run_active >= limit
    {
        return Err(format!(
            "the run has {} tasks running (concurrency {limit}); task `{task}` waits",
            need.run_active
        ));
    }
    let fits = |a: &Slot| {
        a.fresh
            && need
                .selector
                .iter()
                .all(|(k, v)| a.labels.get(k) == Some(v))
            && a.runtimes.iter().any(|r| r == need.runtime)
            && (!need.together
                || need
                    .run_runtimes
                    .iter()
                    .all(|n| a.runtimes.iter().any(|r| r == n)))
    };
    let free = |a: &Slot| a.held < a.capacity;
    if need.together
        && let Some(pinned) = need.pinned
    {
        // The run's tasks share its host. A draining agent finishes the runs
        // it holds, so it still takes this run's tasks.
        let index = agents.iter().position(|a| a.id == pinned);
        return match index {
            Some(i) if fits(&agents[i]) && free(&agents[i]) => Ok(i),
            Some(i) if fits(&agents[i]) => Err(format!(
                "agent {pinned} holds this run (placement: together) and is full; task `{task}` waits"
            )),
            _ => Err(format!(
                "agent {pinned} holds this run (placement: together) and is offline or no longer fits; \
                 task `{task}` waits"
            )),
        };
    }
    let fitting: Vec<usize> = (0..agents.len()).filter(|&i| fits(&agents[i])).collect();
    if fitting.is_empty() {
        let mut needs = Vec::new();
        if !need.selector.is_empty() {
            let labels: Vec<String> = need
                .selector
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            needs.push(format!("labels {}", labels.join(",")));
        }
        if need.together && need.run_runtimes.len() > 1 {
            // A `together` run's first agent runs every task of it.
            needs.push(format!("the {} runtimes", need.run_runtimes.join(" and ")));
        } else {
            needs.push(format!("the {} runtime", need.runtime));
        }
        return Err(format!(
            "no online agent has {} (task `{task}`)",
            needs.join(" and ")
        ));
    }
    let open: Vec<usize> = fitting
        .iter()
        .copied()
        .filter(|&i| !agents[i].draining)
        .collect();
    if open.is_empty() {
        return Err(format!("every agent that fits is draining (task `{task}`)"));
    }
    open.into_iter()
        .filter(|&i| free(&agents[i]))
        .min_by(|&a, &b| {
            let (x, y) = (&agents[a], &agents[b]);
            // held/capacity compared without division: exact, so that ties
            // are ties.
            let load = (i128::from(x.held) * i128::from(y.capacity.max(1)))
                .cmp(&(i128::from(y.held) * i128::from(x.capacity.max(1))));
            let warm = |s: &Slot| !need.warm.contains(&s.id);
            let avoided = |s: &Slot| need.avoid == Some(s.id.as_str());
            load.then(warm(x).cmp(&warm(y)))
                .then(avoided(x).cmp(&avoided(y)))
                .then(x.id.cmp(&y.id))
        })
        .ok_or_else(|| format!("every agent that fits is at capacity (task `{task}`)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(
        id: &str,
        labels: &[(&str, &str)],
        runtimes: &[&str],
        capacity: i64,
        held: i64,
    ) -> Slot {
        Slot {
            id: id.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            runtimes: runtimes.iter().map(|r| r.to_string()).collect(),
            capacity,
            held,
            draining: false,
            fresh: true,
        }
    }

    fn selector(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn need<'a>(selector: &'a BTreeMap<String, String>, runtime: &'a str) -> Need<'a> {
        Need {
            task: "t",
            selector,
            runtime,
            pinned: None,
            together: false,
            run_runtimes: &[],
            concurrency: None,
            run_active: 0,
            avoid: None,
            warm: &[],
        }
    }

    #[test]
    fn the_least_loaded_agent_whose_labels_and_runtime_fit() {
        let linux = selector(&[("os", "linux")]);
        let agents = [
            slot("mac", &[("os", "mac")], &["shell"], 4, 0),
            slot("busy", &[("os", "linux")], &["shell"], 2, 1),
            slot("idle", &[("os", "linux"), ("gpu", "yes")], &["shell"], 4, 1),
            slot("full", &[("os", "linux")], &["shell"], 1, 1),
            slot("docker", &[("os", "linux")], &["docker"], 8, 0),
        ];
        assert_eq!(choose(&agents, &need(&linux, "shell")), Ok(2));
        assert_eq!(choose(&agents, &need(&linux, "docker")), Ok(4));
        // The merged selector (the pipeline's with the task's) must all match.
        let gpu = selector(&[("os", "linux"), ("gpu", "yes")]);
        assert_eq!(choose(&agents, &need(&gpu, "shell")), Ok(2));
    }

    #[test]
    fn reasons_name_the_task_and_what_is_missing() {
        let gpu = selector(&[("gpu", "yes")]);
        let agents = [slot("a", &[("gpu", "yes")], &["shell"], 1, 0)];
        let mut train = need(&gpu, "docker");
        train.task = "train";
        assert_eq!(
            choose(&agents, &train),
            Err("no online agent has labels gpu=yes and the docker runtime (task `train`)".into())
        );
        let none = BTreeMap::new();
        let mut lint = need(&none, "docker");
        lint.task = "lint";
        assert_eq!(
            choose(&agents, &lint),
            Err("no online agent has the docker runtime (task `lint`)".into())
        );
        let agents = [slot("a", &[("gpu", "yes")], &["docker"], 1, 1)];
        assert_eq!(
            choose(&agents, &train),
            Err("every agent that fits is at capacity (task `train`)".into())
        );
    }

    #[test]
    fn capacity_counts_task_attempts() {
        let none = BTreeMap::new();
        let mut agents = [slot("a", &[], &["shell"], 2, 0)];
        assert_eq!(choose(&agents, &need(&none, "shell")), Ok(0));
        agents[0].held = 2;
        assert!(choose(&agents, &need(&none, "shell")).is_err());
    }

    #[test]
    fn stale_and_draining_agents_take_nothing() {
        let none = BTreeMap::new();
        let mut agents = [
            slot("a", &[], &["shell"], 2, 0),
            slot("b", &[], &["shell"], 2, 0),
        ];
        agents[0].fresh = false;
        assert_eq!(choose(&agents, &need(&none, "shell")), Ok(1));
        agents[1].draining = true;
        assert_eq!(
            choose(&agents, &need(&none, "shell")),
            Err("every agent that fits is draining (task `t`)".into())
        );
        agents[1].fresh = false;
        assert_eq!(
            choose(&agents, &need(&none, "shell")),
            Err("no online agent has the shell runtime (task `t`)".into())
        );
    }

    #[test]
    fn a_run_at_its_concurrency_waits_whatever_the_room() {
        let none = BTreeMap::new();
        let agents = [
            slot("a", &[], &["shell"], 8, 0),
            slot("b", &[], &["shell"], 8, 0),
        ];
        let mut n = need(&none, "shell");
        n.concurrency = Some(2);
        n.run_active = 1;
        assert_eq!(choose(&agents, &n), Ok(0));
        n.run_active = 2;
        assert_eq!(
            choose(&agents, &n),
            Err("the run has 2 tasks running (concurrency 2); task `t` waits".into())
        );
    }

    #[test]
    fn together_keeps_a_run_on_its_agent_even_when_it_drains() {
        let none = BTreeMap::new();
        let mut agents = [
            slot("a", &[], &["shell"], 2, 1),
            slot("b", &[], &["shell"], 2, 0),
        ];
        let mut n = need(&none, "shell");
        n.together = true;
        // Not pinned yet: the first task goes anywhere (and pins the run).
        assert_eq!(choose(&agents, &n), Ok(1));
        n.pinned = Some("a");
        assert_eq!(choose(&agents, &n), Ok(0));
        agents[0].draining = true;
        assert_eq!(choose(&agents, &n), Ok(0));
        agents[0].held = 2;
        assert_eq!(
            choose(&agents, &n),
            Err("agent a holds this run (placement: together) and is full; task `t` waits".into())
        );
        agents[0].fresh = false;
        assert!(choose(&agents, &n).unwrap_err().contains("is offline"));
    }

    #[test]
    fn a_together_runs_first_agent_has_every_runtime_it_uses() {
        let none = BTreeMap::new();
        let agents = [
            slot("a", &[], &["shell"], 8, 0),
            slot("b", &[], &["docker", "shell"], 8, 4),
        ];
        let both = vec!["docker".to_string(), "shell".to_string()];
        let mut n = need(&none, "shell");
        n.together = true;
        n.run_runtimes = &both;
        // a is less loaded, but cannot run the run's docker task.
        assert_eq!(choose(&agents, &n), Ok(1));
        assert_eq!(
            choose(&agents[..1], &n),
            Err("no online agent has the docker and shell runtimes (task `t`)".into())
        );
    }

    #[test]
    fn ties_go_to_the_warm_agent_then_away_from_the_lost_one_then_by_id() {
        let none = BTreeMap::new();
        let agents = [
            slot("a", &[], &["shell"], 4, 1),
            slot("b", &[], &["shell"], 4, 1),
            slot("c", &[], &["shell"], 8, 2),
        ];
        let mut n = need(&none, "shell");
        assert_eq!(choose(&agents, &n), Ok(0));
        n.avoid = Some("a");
        assert_eq!(choose(&agents, &n), Ok(1));
        let warm = vec!["c".to_string()];
        n.warm = &warm;
        assert_eq!(choose(&agents, &n), Ok(2));
        // Warmth never beats load.
        let agents = [
            slot("a", &[], &["shell"], 4, 0),
            slot("c", &[], &["shell"], 4, 1),
        ];
        assert_eq!(choose(&agents, &n), Ok(0));
    }
}
