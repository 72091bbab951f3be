//! The scheduler's pass over ready task attempts (runs of model 2): each
//! goes to the agent `choose` names, written in chunks, and each that waits
//! has its reason recorded (only when it changed).

use std::collections::{BTreeMap, HashMap};

use super::choose::{Need, Slot, choose};
use crate::controllers::Context;
use crate::storage::attempts::{self, PLACE_CHUNK, ReadyAttempt};
use crate::storage::{StorageError, agents, now_ms, workflows};

/// Ready attempts read at once.
const READY_PAGE: i64 = 500;

/// Pages of the queue one pass reads at most: the head, then pages from
/// where the last pass stopped. A free slot that fits nothing (a label no
/// task asks for) must not cost a scan of the whole queue at every wake.
const PAGES_PER_PASS: usize = 4;

/// How often a pass reads the whole of its pages and records why each
/// attempt there waits. Between those, a pass only fills free slots: it
/// reads a page sized to them and stops once no slot is left, so a queue
/// of a thousand attempts does not cost a thousand choices every time
/// one slot frees.
const THOROUGH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Attempts a filling pass reads per free slot: a few more than the slots,
/// since some at the head may fit none of the agents with room.
const READ_PER_FREE_SLOT: i64 = 4;

/// How long a pipeline's verdict as written is trusted: another replica
/// may have held the lease (and written) meanwhile.
const VERDICT_TRUST: std::time::Duration = std::time::Duration::from_secs(10);

/// What the scheduler keeps between its passes on this replica.
#[derive(Default)]
pub struct Memory {
    /// Each pipeline's verdict as last written here, and when: written
    /// again only when it changes (or is old), not at every pass.
    verdicts: HashMap<(String, String), (Option<String>, std::time::Instant)>,
    /// The attempt id after which the next pass goes on reading, past the
    /// head page, when the last one stopped at `PAGES_PER_PASS`.
    cursor: i64,
    /// When a timer set by the scheduler wakes it for a backoff's end.
    pub wake_at: Option<i64>,
    /// When the last thorough pass (see `THOROUGH_EVERY`) began.
    thorough_at: Option<std::time::Instant>,
}

/// What one pass knows, updated by its own placements so that the next
/// choice sees them.
struct Pass {
    slots: Vec<Slot>,
    /// Attempts placed or running per run, for runs with a `concurrency`.
    active: HashMap<i64, i64>,
    /// Runs under `together` pinned by this pass (not yet in the page read).
    pinned: HashMap<i64, String>,
    chosen: Vec<(ReadyAttempt, usize)>,
    /// The latest word on each pipeline, written once at the end.
    verdicts: BTreeMap<(String, String), Option<String>>,
    placed: usize,
}

/// One look at the ready attempts. Returns how many were placed.
pub async fn pass(ctx: &Context, memory: &mut Memory) -> Result<usize, StorageError> {
    let now = now_ms();
    let slots = slots(ctx, now).await?;
    let thorough = memory
        .thorough_at
        .is_none_or(|at| at.elapsed() >= THOROUGH_EVERY);
    let page_size = if thorough {
        READY_PAGE
    } else {
        let free: i64 = slots
            .iter()
            .filter(|s| s.has_room())
            .map(|s| s.capacity - s.held)
            .sum();
        if free == 0 {
            return Ok(0);
        }
        free.saturating_mul(READ_PER_FREE_SLOT)
            .clamp(16, READY_PAGE)
    };
    if thorough {
        memory.thorough_at = Some(std::time::Instant::now());
    }
    let mut page = attempts::ready_page(&ctx.db, 0, now, page_size).await?;
    if page.is_empty() {
        return Ok(0);
    }
    let mut pass = Pass {
        slots,
        active: HashMap::new(),
        pinned: HashMap::new(),
        chosen: Vec::new(),
        verdicts: BTreeMap::new(),
        placed: 0,
    };
    // The queue a page at a time: attempts at its head that nothing fits
    // must not keep later ones from agents that would take them. Past the
    // head page, a pass goes on where the last one stopped.
    let mut pages = 0;
    while let Some(last) = page.last().map(|a| a.id) {
        pages += 1;
        let short = page.len() < page_size as usize;
        let limited: Vec<i64> = page
            .iter()
            .filter(|a| a.concurrency.is_some() && !pass.active.contains_key(&a.run_id))
            .map(|a| a.run_id)
            .collect();
        if !limited.is_empty() {
            let counts = attempts::running_per_run(&ctx.db, &limited).await?;
            for run in limited {
                pass.active
                    .insert(run, counts.get(&run).copied().unwrap_or(0));
            }
        }
        // Only when two agents could take a task may their tie be broken
        // by where its dependencies ran.
        let open = pass.slots.iter().filter(|s| s.open()).count();
        let warm = if open > 1 {
            let tasks: Vec<(i64, String)> =
                page.iter().map(|a| (a.run_id, a.task.clone())).collect();
            agents::warm(&ctx.db, &tasks).await?
        } else {
            HashMap::new()
        };
        let none = Vec::new();
        let mut waiting = Vec::new();
        for attempt in page {
            if !thorough && !pass.slots.iter().any(Slot::has_room) {
                break;
            }
            let warm = warm
                .get(&(attempt.run_id, attempt.task.clone()))
                .unwrap_or(&none);
            let pinned = pass
                .pinned
                .get(&attempt.run_id)
                .cloned()
                .or_else(|| attempt.pinned_agent.clone());
            let need = Need {
                task: &attempt.task,
                selector: &attempt.selector,
                runtime: &attempt.runtime,
                pinned: pinned.as_deref(),
                together: attempt.placement == "together",
                run_runtimes: &attempt.run_runtimes,
                concurrency: attempt.concurrency,
                run_active: pass.active.get(&attempt.run_id).copied().unwrap_or(0),
                avoid: attempt.avoid_agent.as_deref(),
                warm,
            };
            match choose(&pass.slots, &need) {
                Ok(index) => {
                    pass.slots[index].held += 1;
                    if let Some(n) = pass.active.get_mut(&attempt.run_id) {
                        *n += 1;
                    }
                    if need.together && pinned.is_none() {
                        pass.pinned
                            .insert(attempt.run_id, pass.slots[index].id.clone());
                    }
                    pass.chosen.push((attempt, index));
                    if pass.chosen.len() >= PLACE_CHUNK {
                        place(ctx, &mut pass).await?;
                    }
                }
                Err(reason) => waiting.push((attempt, reason)),
            }
        }
        place(ctx, &mut pass).await?;
        let mut changed = Vec::new();
        for (attempt, reason) in waiting {
            if let Some(said) = waiting_reason(ctx, &attempt, &reason) {
                changed.push((attempt.id, said));
            }
            pass.verdicts
                .insert((attempt.workflow, attempt.pipeline), Some(reason));
        }
        attempts::set_waiting_reasons(&ctx.db, &changed).await?;
        if short {
            memory.cursor = 0;
            break;
        }
        if !pass.slots.iter().any(Slot::has_room) {
            break;
        }
        if pages >= PAGES_PER_PASS {
            memory.cursor = last;
            break;
        }
        let after = if pages == 1 {
            last.max(memory.cursor)
        } else {
            last
        };
        page = attempts::ready_page(&ctx.db, after, now, page_size).await?;
        if page.is_empty() {
            memory.cursor = 0;
        }
    }
    let written = std::time::Instant::now();
    for ((workflow, pipeline), reason) in pass.verdicts {
        let key = (workflow, pipeline);
        let known = memory.verdicts.get(&key).is_some_and(|(said, at)| {
            *said == reason && written.duration_since(*at) < VERDICT_TRUST
        });
        if known {
            continue;
        }
        workflows::set_pipeline_schedule(
            &ctx.db,
            &key.0,
            &key.1,
            reason.is_none(),
            reason.as_deref(),
        )
        .await?;
        // Bounded: pipelines that come and go are forgotten when too many.
        if memory.verdicts.len() >= 10_000 {
            memory.verdicts.clear();
        }
        memory.verdicts.insert(key, (reason, written));
    }
    Ok(pass.placed)
}

/// The agents as this pass sees them: their rows and what they hold, read
/// once.
async fn slots(ctx: &Context, now: i64) -> Result<Vec<Slot>, StorageError> {
    // An agent silent for half a lease is probably gone (a killed replica's
    // built-in agent, a cut-off remote one): a task placed on it would only
    // wait for the lease to end.
    let fresh_since = now - ctx.timings.run_lease.as_millis() as i64 / 2;
    let load = attempts::load(&ctx.db).await?;
    Ok(agents::rows(&ctx.db)
        .await?
        .into_iter()
        .filter(|a| a.state == agents::AgentState::Online)
        .map(|a| Slot {
            held: load.get(&a.id).copied().unwrap_or(0),
            fresh: a.last_seen_at >= fresh_since,
            id: a.id,
            labels: a.labels,
            runtimes: a.runtimes,
            capacity: a.capacity,
            draining: a.draining,
        })
        .collect())
}

/// Writes the placements chosen; one someone else got first (or whose
/// agent was revoked or drained meanwhile) frees its slot again.
async fn place(ctx: &Context, pass: &mut Pass) -> Result<(), StorageError> {
    let chosen = std::mem::take(&mut pass.chosen);
    if chosen.is_empty() {
        return Ok(());
    }
    let pairs: Vec<(i64, &str)> = chosen
        .iter()
        .map(|(a, index)| (a.id, pass.slots[*index].id.as_str()))
        .collect();
    let lease_ms = ctx.timings.run_lease.as_millis() as i64;
    let outcomes = attempts::place_many(&ctx.db, &pairs, lease_ms).await?;
    let now = now_ms();
    for ((attempt, index), placed) in chosen.into_iter().zip(outcomes) {
        if placed {
            pass.placed += 1;
            ctx.metrics.observe_queue_wait(now - attempt.ready_at);
            tracing::debug!(
                run = attempt.run_id,
                task = %attempt.task,
                agent = %pass.slots[index].id,
                "task placed"
            );
            pass.verdicts
                .insert((attempt.workflow, attempt.pipeline), None);
        } else {
            pass.slots[index].held -= 1;
            if let Some(n) = pass.active.get_mut(&attempt.run_id) {
                *n -= 1;
            }
        }
    }
    Ok(())
}

/// Why `attempt` waits, as it should read now, when that is not what it
/// says already.
fn waiting_reason(ctx: &Context, attempt: &ReadyAttempt, reason: &str) -> Option<String> {
    // Waiting past the pick-up timeout is flagged: somebody has to add or
    // fix an agent.
    let timeout = ctx.timings.pickup_timeout;
    let stuck = now_ms() - attempt.ready_at > timeout.as_millis() as i64;
    let reason = if stuck {
        format!(
            "stuck: nobody picked it up within {}; {reason}",
            xene_core::duration::format(timeout)
        )
    } else {
        reason.to_string()
    };
    if attempt.scheduler_reason.as_deref() == Some(reason.as_str()) {
        return None;
    }
    if stuck {
        tracing::warn!(run = attempt.run_id, task = %attempt.task, reason, "a task is stuck in the queue");
    }
    Some(reason)
}
