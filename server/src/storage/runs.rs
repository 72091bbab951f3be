//! Pipeline runs with their tasks and steps.

use std::collections::BTreeMap;

use serde::Deserialize;
use sqlx::Row;
use sqlx::any::AnyRow;
use xene_core::dag::Dag;
use xene_core::status::RunStatus;

use super::{Db, StorageError, now_ms};

/// Why a run could not be created or changed: each maps to a 4xx.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("no workflow named {0:?}")]
    UnknownWorkflow(String),
    #[error("workflow {workflow:?} has no pipeline named {pipeline:?}")]
    UnknownPipeline { workflow: String, pipeline: String },
    /// A version asked for by number that this workflow never had.
    #[error(
        "workflow {workflow:?} has no version {version} (the current one is {current}): \
         leaving the version out runs the current one"
    )]
    UnknownVersion {
        workflow: String,
        version: i64,
        current: i64,
    },
    /// A version asked for by number that lacks the pipeline.
    #[error("version {version} of workflow {workflow:?} has no pipeline named {pipeline:?}")]
    PipelineNotInVersion {
        workflow: String,
        pipeline: String,
        version: i64,
    },
    #[error("invalid params: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    InvalidParams(Vec<xene_core::params::ParamFault>),
    #[error("no run with id {0}")]
    UnknownRun(i64),
    #[error("the pipeline's tasks use secrets that do not exist: {}", .0.join(", "))]
    MissingSecrets(Vec<String>),
    /// A version stored before a template check was added, which it fails.
    #[error(
        "version {version} was stored before Xene refused what it holds, and does not run: {fault}; \
         apply a corrected version"
    )]
    UnsafeScript { version: i64, fault: String },
    /// Protected secrets this version or pipeline may not use (the message
    /// names the version, the secrets and what an admin must do).
    #[error("{0}")]
    ProtectedSecrets(String),
    #[error("run {id} already finished with status {status}; nothing to cancel")]
    AlreadyFinished { id: i64, status: RunStatus },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl RunError {
    /// The refusal of a stored version whose scripts hold a template that
    /// is refused now (a version stored before the check), if they do: at
    /// start, and again at dispatch for runs queued before an upgrade.
    pub fn unsafe_script(version: i64, pipeline: &xene_core::spec::Pipeline) -> Option<Self> {
        xene_core::template::pipeline_fault(pipeline)
            .map(|fault| Self::UnsafeScript { version, fault })
    }
}

impl From<sqlx::Error> for RunError {
    fn from(e: sqlx::Error) -> Self {
        Self::Storage(e.into())
    }
}

pub use xene_api::run::{Run, RunDetail, StepRun, TaskRun};

mod convert;
mod ends;
mod prepare;
pub use convert::{convert_queued, end_model_1_leases};
use ends::move_unfinished;
pub use ends::{expire_leases, fail_attempt};
pub use prepare::{Asked, Prepared, prepare, prepare_at};

/// Filters and page for listing runs, newest first.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunFilter {
    pub workflow: Option<String>,
    pub pipeline: Option<String>,
    pub status: Option<String>,
    /// `manual`, `webhook` or `cron`: what started the run.
    pub trigger: Option<String>,
    /// At most this many runs (1 to 500, default 50); fewer when their
    /// params are large (about 1 MiB of params a page): `next_cursor` goes on.
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

pub(super) const RUN_COLUMNS: &str = "id, workflow, version, pipeline, params, trigger, status, scheduler_status, \
    scheduler_reason, agent_id, attempt, max_attempts, cancel_requested, error, requested_at, \
    scheduled_at, started_at, finished_at, lease_expires_at, trigger_reason, fired_at, pinned_at";

pub(super) fn run_from_row(row: &AnyRow) -> Result<Run, StorageError> {
    let params: String = row.get(4);
    let status: String = row.get(6);
    let cancel: i64 = row.get(12);
    Ok(Run {
        id: row.get(0),
        workflow: row.get(1),
        version: row.get(2),
        pipeline: row.get(3),
        params: serde_json::from_str(&params).map_err(|e| StorageError::Corrupt(e.to_string()))?,
        trigger: row.get(5),
        status: status
            .parse()
            .map_err(|e: xene_core::status::UnknownStatus| StorageError::Corrupt(e.to_string()))?,
        scheduler_status: row.get(7),
        scheduler_reason: row.get(8),
        agent: row.get(9),
        // Filled by `attempt_views` where shown.
        agents: Vec::new(),
        attempt: row.get(10),
        max_attempts: row.get(11),
        cancel_requested: cancel != 0,
        error: row.get(13),
        requested_at: row.get(14),
        scheduled_at: row.get(15),
        started_at: row.get(16),
        finished_at: row.get(17),
        lease_expires_at: row.get(18),
        trigger_reason: row.get(19),
        fired_at: row.get(20),
        pinned: row.get::<Option<i64>, _>(21).is_some(),
    })
}

/// Requests a run of the current version of a pipeline: the run row with
/// every task and step pending, for the scheduler to pick up.
pub async fn create(
    db: &Db,
    workflow: &str,
    pipeline: &str,
    params: BTreeMap<String, String>,
    trigger: &str,
) -> Result<Run, RunError> {
    create_at(db, workflow, pipeline, Asked::CURRENT, params, trigger).await
}

/// Requests a run of a pipeline at the version asked for, as `create` does.
pub async fn create_at(
    db: &Db,
    workflow: &str,
    pipeline: &str,
    asked: Asked,
    params: BTreeMap<String, String>,
    trigger: &str,
) -> Result<Run, RunError> {
    let prepared = prepare_at(db, workflow, pipeline, asked, params).await?;
    let mut tx = db.begin_write().await?;
    // Retention deletes a version no run was made from and that is not
    // current: one asked for by number may have gone since it was checked.
    // Touching its row in this transaction finds that out, and holds the
    // row (SQLite: the whole database) until the run refers to it.
    if asked.version.is_some() {
        let held = sqlx::query(
            "UPDATE workflow_versions SET version = version WHERE workflow = $1 AND version = $2",
        )
        .bind(&prepared.workflow)
        .bind(prepared.version)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if held == 0 {
            return Err(RunError::UnknownVersion {
                workflow: prepared.workflow.clone(),
                version: prepared.version,
                current: prepared.current,
            });
        }
    }
    let id = insert(&mut tx, &prepared, trigger, None, None).await?;
    tx.commit().await?;
    // Read before the news: told first, the scheduler could place it
    // before the answer shows it queued. Told whatever the read gave: the
    // run exists and must not wait unseen.
    let read = get_run(db, id).await;
    db.news().run_queued(id).await;
    read?.ok_or(RunError::UnknownRun(id))
}

/// Inserts a prepared run, queued, with every task and step pending; a run
/// of model 2 also gets `ready` attempts for the tasks without dependencies
/// (or ends those whose `if` is false).
pub async fn insert(
    tx: &mut super::WriteTx,
    prepared: &Prepared,
    trigger: &str,
    reason: Option<&str>,
    fired_at: Option<i64>,
) -> Result<i64, RunError> {
    let Prepared {
        workflow,
        pipeline,
        version,
        spec: spec_pipeline,
        resolved,
        model,
        current: _,
    } = prepared;
    // A run lost with its agent is tried again as often as its most patient task would be.
    let max_attempts = 1 + spec_pipeline
        .tasks
        .values()
        .map(|t| t.retries.count)
        .max()
        .unwrap_or(0) as i64;
    let dag = Dag::new(spec_pipeline).map_err(|e| StorageError::Corrupt(e.to_string()))?;
    let now = now_ms();

    let id: i64 = sqlx::query_scalar(
        "INSERT INTO runs (workflow, version, pipeline, params, trigger, status, scheduler_status, \
         attempt, max_attempts, cancel_requested, requested_at, trigger_reason, fired_at, \
         placement, concurrency, tasks_left, model) \
         VALUES ($1, $2, $3, $4, $5, 'queued', 'not_scheduled', 1, $6, 0, $7, $8, $9, $10, $11, $12, $13) \
         RETURNING id",
    )
    .bind(workflow)
    .bind(version)
    .bind(pipeline)
    .bind(serde_json::to_string(&resolved).expect("maps serialize"))
    .bind(trigger)
    .bind(max_attempts)
    .bind(now)
    .bind(reason)
    .bind(fired_at)
    .bind(spec_pipeline.placement.as_str())
    .bind(spec_pipeline.concurrency.map(i64::from))
    .bind(spec_pipeline.tasks.len() as i64)
    .bind(*model)
    .fetch_one(&mut **tx)
    .await?;
    for (position, name) in dag.order().iter().enumerate() {
        let task = &spec_pipeline.tasks[name];
        let rules = super::readiness::TaskRules::of(spec_pipeline, &dag, name, task);
        sqlx::query(
            "INSERT INTO task_runs (run_id, task, position, status, attempt, depends_on, selector, \
             runtime, condition, dependants, waiting_on, retries, backoff_ms) \
             VALUES ($1, $2, $3, 'pending', 0, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(id)
        .bind(name)
        .bind(position as i64)
        .bind(serde_json::to_string(&task.depends_on).expect("names serialize"))
        .bind(rules.selector)
        .bind(rules.runtime)
        .bind(rules.condition)
        .bind(rules.dependants)
        .bind(rules.waiting_on)
        .bind(rules.retries)
        .bind(rules.backoff_ms)
        .execute(&mut **tx)
        .await?;
        let steps = task
            .steps
            .iter()
            .map(|s| (s, false))
            .chain(task.post.iter().map(|s| (s, true)));
        for (position, (step, post)) in steps.enumerate() {
            sqlx::query(
                "INSERT INTO step_runs (run_id, task, position, name, post, status) VALUES ($1, $2, $3, $4, $5, 'pending')",
            )
            .bind(id)
            .bind(name)
            .bind(position as i64)
            .bind(&step.name)
            .bind(post as i64)
            .execute(&mut **tx)
            .await?;
        }
    }
    if *model == 2 {
        super::readiness::start_run(tx, id).await?;
    }
    Ok(id)
}

/// A run alone, without its tasks and steps: for who only needs the run
/// (the runs feed, a check that it exists).
pub async fn get_run(db: &Db, id: i64) -> Result<Option<Run>, StorageError> {
    let row = sqlx::query(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(run_from_row).transpose()
}

/// A run with its tasks and steps.
pub async fn get(db: &Db, id: i64) -> Result<Option<RunDetail>, StorageError> {
    let Some(run) = get_run(db, id).await? else {
        return Ok(None);
    };
    let task_rows = sqlx::query(
        "SELECT task, status, attempt, output, error, started_at, finished_at, duration_ms, \
         depends_on FROM task_runs WHERE run_id = $1 ORDER BY position",
    )
    .bind(id)
    .fetch_all(db.pool())
    .await?;
    // Runs created before `depends_on` was stored read it from their
    // version's spec, once.
    let mut from_spec = if task_rows
        .iter()
        .any(|r| r.get::<Option<String>, _>(8).is_none())
    {
        spec_dependencies(db, &run).await?
    } else {
        BTreeMap::new()
    };
    let step_rows = sqlx::query(
        "SELECT task, name, post, status, exit_code, started_at, finished_at, duration_ms \
         FROM step_runs WHERE run_id = $1 ORDER BY task, position",
    )
    .bind(id)
    .fetch_all(db.pool())
    .await?;
    let mut steps: BTreeMap<String, Vec<StepRun>> = BTreeMap::new();
    for r in &step_rows {
        let status: String = r.get(3);
        let post: i64 = r.get(2);
        steps.entry(r.get(0)).or_default().push(StepRun {
            name: r.get(1),
            post: post != 0,
            status: status
                .parse()
                .map_err(|e: xene_core::status::UnknownStatus| {
                    StorageError::Corrupt(e.to_string())
                })?,
            exit_code: r.get(4),
            started_at: r.get(5),
            finished_at: r.get(6),
            duration_ms: r.get(7),
        });
    }
    let mut tasks = Vec::with_capacity(task_rows.len());
    for r in &task_rows {
        let name: String = r.get(0);
        let status: String = r.get(1);
        let depends_on = match r.get::<Option<String>, _>(8) {
            Some(stored) => serde_json::from_str(&stored).unwrap_or_else(|e| {
                tracing::warn!(run_id = id, task = %name, error = %e, "a task's stored depends_on does not read: shown empty");
                Vec::new()
            }),
            None => from_spec.remove(&name).unwrap_or_default(),
        };
        tasks.push(TaskRun {
            steps: steps.remove(&name).unwrap_or_default(),
            depends_on,
            name,
            status: status
                .parse()
                .map_err(|e: xene_core::status::UnknownStatus| {
                    StorageError::Corrupt(e.to_string())
                })?,
            attempt: r.get(2),
            output: r.get(3),
            error: r.get(4),
            started_at: r.get(5),
            finished_at: r.get(6),
            duration_ms: r.get(7),
            agent_id: None,
            attempts: Vec::new(),
        });
    }
    let mut run = run;
    super::attempt_views::fill_tasks(db, &mut run, &mut tasks).await?;
    Ok(Some(RunDetail { run, tasks }))
}

/// Each task's `depends_on` from the run's version's spec, for runs created
/// before it was stored with their tasks. A spec that does not read gives
/// none, with a warning: the run still reads, only its graph is flat.
async fn spec_dependencies(
    db: &Db,
    run: &Run,
) -> Result<BTreeMap<String, Vec<String>>, StorageError> {
    let spec: Option<String> = sqlx::query_scalar(
        "SELECT spec FROM workflow_versions WHERE workflow = $1 AND version = $2",
    )
    .bind(&run.workflow)
    .bind(run.version)
    .fetch_optional(db.pool())
    .await?;
    let Some(spec) = spec else {
        return Ok(BTreeMap::new());
    };
    Ok(dependencies(&spec, &run.pipeline).unwrap_or_else(|e| {
        tracing::warn!(run_id = run.id, error = %e, "the run's version spec does not read: its tasks show no depends_on");
        BTreeMap::new()
    }))
}

/// Each task's `depends_on` in a stored spec's pipeline, read without the
/// rest of the spec.
fn dependencies(spec: &str, pipeline: &str) -> Result<BTreeMap<String, Vec<String>>, StorageError> {
    #[derive(Deserialize)]
    struct Spec {
        pipelines: BTreeMap<String, Pipeline>,
    }
    #[derive(Deserialize)]
    struct Pipeline {
        tasks: BTreeMap<String, Task>,
    }
    #[derive(Deserialize)]
    struct Task {
        #[serde(default)]
        depends_on: Vec<String>,
    }
    let mut spec: Spec =
        serde_json::from_str(spec).map_err(|e| StorageError::Corrupt(e.to_string()))?;
    Ok(spec
        .pipelines
        .remove(pipeline)
        .map(|p| {
            p.tasks
                .into_iter()
                .map(|(name, task)| (name, task.depends_on))
                .collect()
        })
        .unwrap_or_default())
}

/// A page of runs, newest first, and the cursor of the next page if any.
pub async fn list(db: &Db, filter: &RunFilter) -> Result<(Vec<Run>, Option<String>), StorageError> {
    let (ids, next) = list_ids(db, filter).await?;
    Ok((listed(db, &ids).await?, next))
}

/// The ids of a page of runs, newest first, and the cursor of the next page
/// if any. Chosen from the runs' ids and the size of their params, without
/// the params themselves (a run may carry about 1 MiB of them).
pub async fn list_ids(
    db: &Db,
    filter: &RunFilter,
) -> Result<(Vec<i64>, Option<String>), StorageError> {
    let limit = filter.limit.unwrap_or(50).clamp(1, 500);
    let before: i64 = filter
        .cursor
        .as_deref()
        .and_then(|c| c.parse().ok())
        .unwrap_or(i64::MAX);
    let sizes: Vec<(i64, i64)> = sqlx::query_as(&format!(
        "SELECT id, CAST(octet_length(params) AS BIGINT) FROM runs WHERE id < $1 {LIST_FILTERS} \
         ORDER BY id DESC LIMIT $6"
    ))
    .bind(before)
    .bind(filter.workflow.as_deref())
    .bind(filter.pipeline.as_deref())
    .bind(filter.status.as_deref())
    .bind(filter.trigger.as_deref())
    .bind(limit + 1)
    .fetch_all(db.pool())
    .await?;
    let mut ids = Vec::new();
    let mut bytes = 0i64;
    for &(id, size) in sizes.iter().take(limit as usize) {
        if !ids.is_empty() && bytes + size > LIST_PAGE_PARAMS_BYTES {
            break;
        }
        bytes += size;
        ids.push(id);
    }
    let next = (sizes.len() > ids.len())
        .then(|| ids.last().map(ToString::to_string))
        .flatten();
    Ok((ids, next))
}

/// The runs `ids` (a page `list_ids` chose), in that order. Read by id, not
/// by the filters again: a run that entered the filter since (a new one, on
/// the first page) would shift the page, and its cursor would skip a run.
pub async fn listed(db: &Db, ids: &[i64]) -> Result<Vec<Run>, StorageError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // At most 500 ids (a page's limit): as many placeholders.
    let placeholders: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE id IN ({}) ORDER BY id DESC",
        placeholders.join(", ")
    );
    let mut query = sqlx::query(&sql);
    for id in ids {
        query = query.bind(*id);
    }
    let rows = query.fetch_all(db.pool()).await?;
    rows.iter().map(run_from_row).collect()
}

/// The most bytes of params one page of the runs list carries: past it the
/// page ends early, with a `next_cursor` to go on (a page holds at least
/// one run, so at most about 2 MiB of params).
pub const LIST_PAGE_PARAMS_BYTES: i64 = 1 << 20;

const LIST_FILTERS: &str = "AND ($2 IS NULL OR workflow = $2) AND ($3 IS NULL OR pipeline = $3) \
    AND ($4 IS NULL OR status = $4) AND ($5 IS NULL OR trigger = $5)";

/// What cancelling did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    /// It had not started: it is cancelled now.
    Now,
    /// It is running: its agent was asked to stop it.
    Requested,
}

pub async fn cancel(db: &Db, id: i64) -> Result<Cancelled, RunError> {
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    let row: Option<(String, i64)> = sqlx::query_as("SELECT status, model FROM runs WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    let (status, model) = row.ok_or(RunError::UnknownRun(id))?;
    let status: RunStatus = status
        .parse()
        .map_err(|e: xene_core::status::UnknownStatus| StorageError::Corrupt(e.to_string()))?;
    if is_final(status) {
        return Err(RunError::AlreadyFinished { id, status });
    }
    if model == 2 {
        let cancelling = ends::cancel_tasks(&mut tx, id).await?;
        tx.commit().await?;
        db.news().run_changed(id).await;
        for agent in &cancelling.agents {
            db.news().agent_has_work(Some(agent));
        }
        return Ok(if cancelling.ended {
            Cancelled::Now
        } else {
            Cancelled::Requested
        });
    }
    // Guarded by its status: the scheduler may have placed the run since it
    // was read, and then its agent has to be asked to stop it.
    let cancelled_now = status == RunStatus::Queued
        && sqlx::query(
            "UPDATE runs SET status = 'cancelled', cancel_requested = 1, finished_at = $1 \
             WHERE id = $2 AND status = 'queued'",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
    let outcome = if cancelled_now {
        move_unfinished(&mut tx, id, "pending", "not_executed").await?;
        Cancelled::Now
    } else {
        sqlx::query("UPDATE runs SET cancel_requested = 1 WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        Cancelled::Requested
    };
    tx.commit().await?;
    db.news().run_changed(id).await;
    // Its agent stops it, or forgets it if it had not started it.
    db.news().agent_has_work(None);
    Ok(outcome)
}

/// A run's task names, each with its steps' names: what its events may name.
pub async fn task_steps(
    db: &Db,
    id: i64,
) -> Result<BTreeMap<String, std::collections::BTreeSet<String>>, StorageError> {
    let mut known: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    let tasks: Vec<String> = sqlx::query_scalar("SELECT task FROM task_runs WHERE run_id = $1")
        .bind(id)
        .fetch_all(db.pool())
        .await?;
    for task in tasks {
        known.entry(task).or_default();
    }
    let steps = sqlx::query("SELECT task, name FROM step_runs WHERE run_id = $1")
        .bind(id)
        .fetch_all(db.pool())
        .await?;
    for row in steps {
        known.entry(row.get(0)).or_default().insert(row.get(1));
    }
    Ok(known)
}

/// Statuses a run never leaves. `unknown` counts once no attempt is left:
/// the supervisor requeues the others right away.
pub fn is_final(status: RunStatus) -> bool {
    status.is_finished() || status == RunStatus::Unknown
}

/// Counts of runs by status, for stats and metrics.
pub async fn count_by_status(db: &Db) -> Result<BTreeMap<String, i64>, StorageError> {
    let rows = sqlx::query("SELECT status, COUNT(*) FROM runs GROUP BY status")
        .fetch_all(db.pool())
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
        .collect())
}

/// Runs nobody picked up in time: queued runs requested before
/// `before_ms`, and runs with a task attempt ready (past any backoff) since
/// before then, say a running run whose next task no agent matches. Each
/// side reads an index (`runs_by_status`, `task_attempts_ready`); the count
/// stops at [`STUCK_COUNTED`].
pub async fn count_waiting_since(db: &Db, before_ms: i64) -> Result<i64, StorageError> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM ( \
           SELECT id FROM runs WHERE status = 'queued' AND requested_at < $1 \
           UNION \
           SELECT run_id FROM task_attempts WHERE status = 'ready' AND ready_at < $1 \
             AND (not_before IS NULL OR not_before < $1) \
           LIMIT $2 \
         ) AS stuck",
    )
    .bind(before_ms)
    .bind(STUCK_COUNTED)
    .fetch_one(db.pool())
    .await?)
}

/// The most stuck runs stats and metrics count.
pub const STUCK_COUNTED: i64 = 100_000;

/// The pipeline a run runs, from the workflow version it was started with.
pub async fn pipeline_of(
    db: &Db,
    run: &Run,
) -> Result<Option<xene_core::spec::Pipeline>, StorageError> {
    Ok(
        super::workflows::spec_of_version(db, &run.workflow, run.version)
            .await?
            .and_then(|mut w| w.pipelines.remove(&run.pipeline)),
    )
}
