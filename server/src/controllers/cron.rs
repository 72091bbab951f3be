//! The cron controller: fires cron pipelines in their time zones, once per
//! fire across replicas (the lease, and the key of `cron_fires` beneath it),
//! with the pipeline's `catchup` and `overlap` settings.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use xene_core::cron::{Schedule, parse_timezone};
use xene_core::spec::{Catchup, Overlap, Trigger};

use super::Context;
use crate::storage::cron::{self, Outcome};
use crate::storage::runs::RunError;
use crate::storage::{StorageError, runs, workflows};

/// A fire found this much after its time was missed (no server ran, or
/// the cron lease was changing hands), rather than fired on time.
const LATE_MS: i64 = 60_000;
/// Missed fires are counted one by one up to this many; past it the count
/// jumps to the last day, so a minutely schedule after a long outage costs
/// a bounded amount of work.
const MAX_COUNTED: u64 = 1000;
/// Fires handled are listed this long (a pipeline's latest always stays).
const KEEP_MS: i64 = 30 * 24 * 3600 * 1000;

/// Forgetting old fires is done this often.
const PRUNE_EVERY_MS: i64 = 3600 * 1000;

/// What a pass learnt that spares the next ones work: per pipeline, the
/// version (and its apply time) it looked at and the time before which
/// nothing is due. Only the clock and a new version change that; a fire
/// recorded by another replica meanwhile is found by its key.
#[derive(Default)]
pub struct Memo {
    due: HashMap<(String, String), ((i64, i64), i64)>,
    pruned_at: i64,
}

pub async fn run(ctx: Context) {
    // Fires are due by the clock, not by news: the resync wakes it.
    let wake = Arc::new(tokio::sync::Notify::new());
    let memo = Arc::new(Mutex::new(Memo::default()));
    super::run_singleton(ctx, "cron", wake, move |ctx| {
        let memo = memo.clone();
        Box::pin(async move { pass(ctx, &memo).await })
    })
    .await;
}

pub async fn pass(ctx: &Context, memo: &Mutex<Memo>) -> Result<(), StorageError> {
    let now = Utc::now();
    let now_ms = now.timestamp_millis();
    let pipelines = cron::pipelines(&ctx.db).await?;
    for p in &pipelines {
        let key = (p.workflow.clone(), p.pipeline.clone());
        let known = memo.lock().expect("memo").due.get(&key).copied();
        let seen = (p.version, p.applied_at);
        if known.is_some_and(|(looked_at, due)| looked_at == seen && now_ms < due) {
            continue;
        }
        match pipeline(ctx, p, now).await {
            Ok(due) => {
                let mut memo = memo.lock().expect("memo");
                match due {
                    Some(due) => memo.due.insert(key, (seen, due)),
                    None => memo.due.remove(&key),
                };
            }
            Err(RunError::Storage(e)) => return Err(e),
            Err(other) => {
                tracing::warn!(workflow = %p.workflow, pipeline = %p.pipeline, error = %other, "cron fire failed")
            }
        }
    }
    let prune = {
        let mut memo = memo.lock().expect("memo");
        memo.due.retain(|(w, n), _| {
            pipelines
                .iter()
                .any(|p| &p.workflow == w && &p.pipeline == n)
        });
        let due = now_ms - memo.pruned_at >= PRUNE_EVERY_MS;
        if due {
            memo.pruned_at = now_ms;
        }
        due
    };
    if prune {
        cron::prune(&ctx.db, KEEP_MS).await?;
    }
    Ok(())
}

/// The next `count` fire times of a cron trigger after `after` (UTC ms).
pub fn next_fires(trigger: &Trigger, after: i64, count: usize) -> Vec<i64> {
    let Trigger::Cron {
        schedule, timezone, ..
    } = trigger
    else {
        return Vec::new();
    };
    let (Ok(schedule), Ok(tz)) = (
        Schedule::parse(schedule),
        parse_timezone(timezone.as_deref().unwrap_or("UTC")),
    ) else {
        return Vec::new();
    };
    let mut at = DateTime::from_timestamp_millis(after).unwrap_or_default();
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let Some(next) = schedule.next_fire(tz, at) else {
            break;
        };
        out.push(next.timestamp_millis());
        at = next;
    }
    out
}

/// Fires what is due of one pipeline; then the time before which nothing
/// more will be (`None`: look again next pass, a queued fire waits).
async fn pipeline(
    ctx: &Context,
    p: &cron::CronPipeline,
    now: DateTime<Utc>,
) -> Result<Option<i64>, RunError> {
    const NEVER: Option<i64> = Some(i64::MAX);
    let Some(spec) = workflows::spec_of_version(&ctx.db, &p.workflow, p.version).await? else {
        return Ok(NEVER);
    };
    let Some(Trigger::Cron {
        schedule: line,
        timezone,
        catchup,
        overlap,
    }) = spec.pipelines.get(&p.pipeline).map(|s| s.trigger.clone())
    else {
        return Ok(NEVER);
    };
    let zone = timezone.unwrap_or_else(|| "UTC".into());
    let (Ok(schedule), Ok(tz)) = (Schedule::parse(&line), parse_timezone(&zone)) else {
        return Ok(NEVER);
    };
    let cron = Cron {
        line: &line,
        zone: &zone,
        schedule,
        tz,
        catchup,
        overlap,
    };
    fire_due(ctx, p, now, &cron).await?;
    if overlap == Overlap::Queue
        && cron::queued_fire(&ctx.db, &p.workflow, &p.pipeline)
            .await?
            .is_some()
    {
        return Ok(None);
    }
    Ok(Some(
        schedule
            .next_fire(tz, now)
            .map_or(i64::MAX, |t| t.timestamp_millis()),
    ))
}

/// A pipeline's cron trigger, parsed.
struct Cron<'a> {
    line: &'a str,
    zone: &'a str,
    schedule: Schedule,
    tz: chrono_tz::Tz,
    catchup: Catchup,
    overlap: Overlap,
}

async fn fire_due(
    ctx: &Context,
    p: &cron::CronPipeline,
    now: DateTime<Utc>,
    cron: &Cron<'_>,
) -> Result<(), RunError> {
    let Cron {
        line,
        zone,
        schedule,
        tz,
        catchup,
        overlap,
    } = *cron;
    let now_ms = now.timestamp_millis();

    if overlap == Overlap::Queue
        && let Some(fire_at) = cron::queued_fire(&ctx.db, &p.workflow, &p.pipeline).await?
        && cron::unfinished_run(&ctx.db, &p.workflow, &p.pipeline)
            .await?
            .is_none()
    {
        let what = describe(line, zone, fire_at, tz);
        let prepared = runs::prepare(&ctx.db, &p.workflow, &p.pipeline, Default::default()).await;
        let prepared = match prepared {
            Ok(prepared) => Some(prepared),
            // Refused now (its secrets, its scripts, its params): the fire
            // is recorded as skipped, or it would block every later fire.
            Err(e) => match refusal(&what, &e) {
                Some(reason) => {
                    cron::skip_queued(&ctx.db, &p.workflow, &p.pipeline, fire_at, &reason).await?;
                    None
                }
                None => return Err(e),
            },
        };
        let reason = format!("{what}, queued behind an earlier run");
        if let Some(prepared) = prepared
            && let Some(id) = cron::start_queued(
                &ctx.db,
                &p.workflow,
                &p.pipeline,
                fire_at,
                &prepared,
                &reason,
            )
            .await?
        {
            started(ctx, p, id);
        }
    }

    // Fires before the version in force was applied belong to an older
    // schedule: they are not caught up.
    let from = cron::last_fire(&ctx.db, &p.workflow, &p.pipeline)
        .await?
        .map_or(p.applied_at, |last| last.max(p.applied_at));
    let mut at = DateTime::from_timestamp_millis(from).unwrap_or(now);
    let (mut latest, mut missed) = (None, 0u64);
    while let Some(next) = schedule.next_fire(tz, at) {
        if next > now {
            break;
        }
        if latest.is_some() {
            missed += 1;
        }
        latest = Some(next);
        at = next;
        if missed == MAX_COUNTED {
            at = at.max(now - chrono::Duration::days(1));
        }
    }
    let Some(fire) = latest else { return Ok(()) };
    let fire_at = fire.timestamp_millis();
    let late = now_ms - fire_at > LATE_MS;
    let what = describe(line, zone, fire_at, tz);
    if late && catchup == Catchup::Skip {
        let reason = format!("{what}: missed while no server ran (catchup: skip)");
        cron::fire(
            &ctx.db,
            &p.workflow,
            &p.pipeline,
            fire_at,
            Outcome::Skipped(&reason),
        )
        .await?;
        return Ok(());
    }
    let mut reason = what.clone();
    if late || missed > 0 {
        let more = if missed >= MAX_COUNTED {
            " or more"
        } else {
            ""
        };
        reason.push_str(&format!(
            ", caught up ({}{more} earlier fire(s) missed)",
            missed
        ));
    }
    let unfinished = cron::unfinished_run(&ctx.db, &p.workflow, &p.pipeline).await?;
    let outcome_reason;
    let prepared;
    let outcome = match (unfinished, overlap) {
        (None, _) | (Some(_), Overlap::Allow) => {
            prepared = runs::prepare(&ctx.db, &p.workflow, &p.pipeline, Default::default()).await;
            match &prepared {
                Ok(prepared) => Outcome::Start(prepared, &reason),
                Err(e) => match refusal(&what, e) {
                    Some(reason) => {
                        outcome_reason = reason;
                        Outcome::Skipped(&outcome_reason)
                    }
                    None => return prepared.map(|_| ()),
                },
            }
        }
        (Some(id), Overlap::Skip) => {
            outcome_reason = format!("{what}: run {id} has not finished (overlap: skip)");
            Outcome::Skipped(&outcome_reason)
        }
        (Some(id), Overlap::Queue) => {
            if cron::queued_fire(&ctx.db, &p.workflow, &p.pipeline)
                .await?
                .is_some()
            {
                outcome_reason =
                    format!("{what}: a fire already waits for run {id} (overlap: queue)");
                Outcome::Skipped(&outcome_reason)
            } else {
                outcome_reason = format!("{what}: waits for run {id} to finish (overlap: queue)");
                Outcome::Queued(&outcome_reason)
            }
        }
    };
    if let Some(Some(id)) = cron::fire(&ctx.db, &p.workflow, &p.pipeline, fire_at, outcome).await? {
        started(ctx, p, id);
    }
    Ok(())
}

/// Why a fire's run was refused, as the fire's reason (nobody is there to
/// read a 4xx); `None` for failures that are not a refusal.
fn refusal(what: &str, error: &RunError) -> Option<String> {
    match error {
        RunError::InvalidParams(faults) => Some(format!(
            "{what}: invalid params: {}",
            faults
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        )),
        RunError::ProtectedSecrets(_)
        | RunError::MissingSecrets(_)
        | RunError::UnsafeScript { .. } => Some(format!("{what}: refused: {error}")),
        _ => None,
    }
}

fn started(ctx: &Context, p: &cron::CronPipeline, id: i64) {
    ctx.metrics.run_started("cron", &p.workflow, &p.pipeline);
    tracing::info!(run_id = id, workflow = %p.workflow, pipeline = %p.pipeline, "cron run queued");
}

fn describe(line: &str, zone: &str, fire_at: i64, tz: chrono_tz::Tz) -> String {
    let local = DateTime::from_timestamp_millis(fire_at)
        .map(|t| t.with_timezone(&tz).to_rfc3339())
        .unwrap_or_default();
    format!("cron \"{line}\" ({zone}) fire at {local}")
}
