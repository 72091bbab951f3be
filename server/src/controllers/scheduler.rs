//! The scheduler: puts queued runs on agents that fit (selector labels,
//! runtimes, free capacity), the least loaded first, and records why a run
//! waits when none fits.

use std::collections::{BTreeMap, HashMap};

use xene_core::spec::Pipeline;

pub mod choose;
mod tasks;

use super::Context;
use crate::storage::agents::{self, Agent};
use crate::storage::{StorageError, now_ms, placement, runs, workflows};

pub async fn run(ctx: Context) {
    let wake = ctx.db.news().scheduler();
    super::run_singleton(ctx, "scheduler", wake, |ctx| {
        Box::pin(async move { pass(ctx).await.map(|_| ()) })
    })
    .await;
}

/// Queued runs read at once.
const QUEUE_PAGE: i64 = 500;

/// One look at the queue: ready task attempts (runs of model 2), and
/// runs placed whole (model 1). Returns how many were placed.
pub async fn pass(ctx: &Context) -> Result<usize, StorageError> {
    Ok(tasks::pass(ctx).await? + runs_pass(ctx).await?)
}

/// Queued runs of model 1, each placed whole on one agent.
async fn runs_pass(ctx: &Context) -> Result<usize, StorageError> {
    let mut queued = placement::queued(&ctx.db, 0, QUEUE_PAGE).await?;
    if queued.is_empty() {
        return Ok(0);
    }
    // An agent silent for half a run lease is probably gone (a killed
    // replica's built-in agent, a cut-off remote one): placing runs on it
    // would only have them wait for the lease to end.
    let fresh_since = now_ms() - ctx.timings.run_lease.as_millis() as i64 / 2;
    let mut agents: Vec<Agent> = agents::list(&ctx.db)
        .await?
        .into_iter()
        .filter(|a| a.state == agents::AgentState::Online && a.last_seen_at >= fresh_since)
        .collect();
    let mut specs: HashMap<(String, i64, String), Option<std::sync::Arc<Pipeline>>> =
        HashMap::new();
    // The latest word on each pipeline, written once at the end: written
    // per run, a queue of thousands at full capacity cost two writes per
    // waiting run on every pass, which starved the agents' own writes.
    let mut verdicts: BTreeMap<(String, String), Option<String>> = BTreeMap::new();
    let mut placed = 0;
    let mut chosen: Vec<(runs::Run, usize)> = Vec::new();
    let mut waiting: Vec<(runs::Run, String)> = Vec::new();
    // The whole queue, a page at a time: runs at its head that nothing
    // fits must not keep newer runs from agents that would take them.
    while let Some(last) = queued.last().map(|r| r.id) {
        for run in std::mem::take(&mut queued) {
            let key = (run.workflow.clone(), run.version, run.pipeline.clone());
            if !specs.contains_key(&key) {
                let pipeline = ctx
                    .specs
                    .pipeline(&ctx.db, &run.workflow, run.version, &run.pipeline)
                    .await?;
                specs.insert(key.clone(), pipeline);
            }
            let Some(pipeline) = specs[&key].as_ref() else {
                wait(
                    ctx,
                    &run,
                    "its pipeline is missing from the stored workflow version",
                )
                .await?;
                continue;
            };
            match choose(&agents, pipeline) {
                Ok(index) => {
                    // Counted now, so the next choice sees it; written with
                    // a chunk of others.
                    agents[index].running += 1;
                    chosen.push((run, index));
                    if chosen.len() >= placement::ASSIGN_CHUNK {
                        placed +=
                            place(ctx, &mut agents, std::mem::take(&mut chosen), &mut verdicts)
                                .await?;
                    }
                }
                Err(reason) => {
                    waiting.push((run, reason));
                }
            }
        }
        placed += place(ctx, &mut agents, std::mem::take(&mut chosen), &mut verdicts).await?;
        // Then the reasons of those that wait (written only when they change).
        for (run, reason) in std::mem::take(&mut waiting) {
            wait(ctx, &run, &reason).await?;
            verdicts.insert((run.workflow.clone(), run.pipeline.clone()), Some(reason));
        }
        if agents.iter().all(|a| a.running >= a.capacity) {
            break;
        }
        queued = placement::queued(&ctx.db, last, QUEUE_PAGE).await?;
    }
    for ((workflow, pipeline), reason) in &verdicts {
        workflows::set_pipeline_schedule(
            &ctx.db,
            workflow,
            pipeline,
            reason.is_none(),
            reason.as_deref(),
        )
        .await?;
    }
    Ok(placed)
}

/// Writes the placements chosen, and tells their agents. Returns how many
/// were placed; a run someone else got first frees its agent's slot again.
async fn place(
    ctx: &Context,
    agents: &mut [Agent],
    chosen: Vec<(runs::Run, usize)>,
    verdicts: &mut BTreeMap<(String, String), Option<String>>,
) -> Result<usize, StorageError> {
    let pairs: Vec<(i64, &str)> = chosen
        .iter()
        .map(|(run, index)| (run.id, agents[*index].id.as_str()))
        .collect();
    let outcomes =
        placement::assign_many(&ctx.db, &pairs, ctx.timings.run_lease.as_millis() as i64).await?;
    let mut placed = 0;
    for ((run, index), assigned) in chosen.into_iter().zip(outcomes) {
        let agent = &mut agents[index];
        if assigned {
            placed += 1;
            ctx.metrics.observe_queue_wait(now_ms() - run.requested_at);
            verdicts.insert((run.workflow.clone(), run.pipeline.clone()), None);
            tracing::debug!(run = run.id, agent = %agent.id, "run scheduled");
        } else {
            agent.running -= 1;
        }
    }
    Ok(placed)
}

/// Records why `run` waits, unless it says so already: most passes find
/// most of a long queue waiting for the same reason as before.
async fn wait(ctx: &Context, run: &runs::Run, reason: &str) -> Result<(), StorageError> {
    // Waiting past the pick-up timeout is flagged, in the run's reason as in
    // `/api/v1/stats` and `/metrics`: somebody has to add or fix an agent.
    let timeout = ctx.timings.pickup_timeout;
    let stuck = now_ms() - run.requested_at > timeout.as_millis() as i64;
    let reason = if stuck {
        format!(
            "stuck: nobody picked it up within {}; {reason}",
            xene_core::duration::format(timeout)
        )
    } else {
        reason.to_string()
    };
    if run.scheduler_reason.as_deref() != Some(reason.as_str()) {
        if stuck {
            tracing::warn!(run = run.id, reason, "a run is stuck in the queue");
        }
        placement::set_waiting_reason(&ctx.db, run.id, &reason).await?;
    }
    Ok(())
}

/// The least loaded agent that fits, or why none does.
fn choose(agents: &[Agent], pipeline: &Pipeline) -> Result<usize, String> {
    let needs_docker = pipeline.tasks.values().any(|t| t.image.is_some());
    let needs_shell = pipeline.tasks.values().any(|t| t.image.is_none());
    let fits = |a: &Agent| {
        labels_match(&pipeline.selector, &a.labels)
            && (!needs_docker || a.runtimes.iter().any(|r| r == "docker"))
            && (!needs_shell || a.runtimes.iter().any(|r| r == "shell"))
    };
    let fitting: Vec<usize> = (0..agents.len()).filter(|&i| fits(&agents[i])).collect();
    if fitting.is_empty() {
        let mut needs = Vec::new();
        if !pipeline.selector.is_empty() {
            let labels: Vec<String> = pipeline
                .selector
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            needs.push(format!("labels {}", labels.join(",")));
        }
        if needs_docker {
            needs.push("the docker runtime".into());
        }
        if needs_shell {
            needs.push("the shell runtime".into());
        }
        return Err(format!("no online agent has {}", needs.join(" and ")));
    }
    fitting
        .into_iter()
        .filter(|&i| agents[i].running < agents[i].capacity)
        .min_by(|&a, &b| {
            let load = |i: usize| agents[i].running as f64 / agents[i].capacity.max(1) as f64;
            load(a).total_cmp(&load(b))
        })
        .ok_or_else(|| "every fitting agent is at capacity".to_string())
}

fn labels_match(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(
        id: &str,
        labels: &[(&str, &str)],
        runtimes: &[&str],
        capacity: i64,
        running: i64,
    ) -> Agent {
        Agent {
            id: id.into(),
            name: id.into(),
            builtin: false,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            runtimes: runtimes.iter().map(|r| r.to_string()).collect(),
            capacity,
            running,
            version: String::new(),
            state: agents::AgentState::Online,
            last_seen_at: 0,
            draining: false,
            held: Vec::new(),
        }
    }

    fn pipeline(yaml: &str) -> Pipeline {
        let workflow = xene_core::parse_workflow(yaml).unwrap();
        workflow.pipelines.into_values().next().unwrap()
    }

    #[test]
    fn picks_the_least_loaded_fitting_agent() {
        let p = pipeline(
            "name: w\npipelines:\n  p:\n    selector: {os: linux}\n    tasks:\n      t:\n        steps: [\"true\"]\n",
        );
        let agents = [
            agent("mac", &[("os", "mac")], &["shell"], 4, 0),
            agent("busy", &[("os", "linux")], &["shell"], 2, 1),
            agent("idle", &[("os", "linux")], &["shell"], 4, 1),
            agent("full", &[("os", "linux")], &["shell"], 1, 1),
        ];
        assert_eq!(choose(&agents, &p), Ok(2));
    }

    #[test]
    fn explains_why_nothing_fits() {
        let p = pipeline(
            "name: w\npipelines:\n  p:\n    selector: {gpu: \"yes\"}\n    tasks:\n      t:\n        image: busybox\n        steps: [\"true\"]\n",
        );
        let agents = [agent("a", &[("gpu", "yes")], &["shell"], 1, 0)];
        assert_eq!(
            choose(&agents, &p),
            Err("no online agent has labels gpu=yes and the docker runtime".into())
        );
        let agents = [agent("a", &[("gpu", "yes")], &["docker"], 1, 1)];
        assert_eq!(
            choose(&agents, &p),
            Err("every fitting agent is at capacity".into())
        );
    }
}
