//! Preparing a placed task attempt for its agent, built-in or remote: one
//! path, so that both send or fail the attempt in the same cases. What
//! differs is only what the link may carry (`Link`).

use std::collections::{BTreeMap, BTreeSet};

use xene_core::protocol::{AttemptRef, TaskDispatch};

use super::Context;
use crate::storage::attempts::{self, HeldAttempt};
use crate::storage::runs;
use crate::storage::{Db, StorageError, run_secrets};

/// The link a dispatch travels on, which decides which secrets may go.
#[derive(Debug, Clone, Copy)]
pub enum Link<'a> {
    /// The built-in agent: in process, its shell steps sandboxed.
    BuiltIn,
    /// A remote agent's session.
    Remote {
        agent: &'a str,
        /// TLS or loopback: only then are secrets sent.
        secure: bool,
        /// The agent runs shell steps. A remote agent's shell steps share
        /// its user with no sandbox, so one run's steps could read another
        /// run's environment or the agent's memory: protected secrets never
        /// go there.
        runs_shell: bool,
    },
}

/// What became of a task attempt on its way to the agent.
#[derive(Debug)]
pub enum PreparedAttempt {
    /// Ready to send (`traceparent` is left for the sender to fill in).
    Send(Box<TaskDispatch>),
    /// The attempt cannot execute here at all: its task ended `error` with
    /// this reason.
    Failed(String),
}

/// Reads what the agent needs to execute one task attempt: the task's spec
/// as of its run's version, the params, only the secrets the task names,
/// and the results of the tasks it reads, inline up to `inline` bytes (the
/// rest the agent fetches by `FetchOutputs`). Fails the attempt when it
/// cannot execute on this link.
pub async fn prepare_attempt(
    ctx: &Context,
    attempt: &HeldAttempt,
    link: Link<'_>,
    inline: usize,
) -> Result<PreparedAttempt, StorageError> {
    let db = &ctx.db;
    let Some(run) = runs::get_run(db, attempt.run_id).await? else {
        // Deleted meanwhile: the attempt went with it.
        return Ok(PreparedAttempt::Failed("its run is gone".into()));
    };
    let cached = ctx
        .specs
        .checked(db, &run.workflow, run.version, &run.pipeline)
        .await?;
    let Some(cached) = cached else {
        tracing::error!(
            run = run.id,
            "a placed task's pipeline is missing from its workflow version"
        );
        let reason = "its pipeline is missing from the stored workflow version";
        return fail_attempt(db, attempt, reason.into()).await;
    };
    // A run queued before an upgrade may hold a template now refused, and
    // an older agent would render it as it did then.
    if let Some(fault) = &cached.fault {
        let refused = runs::RunError::UnsafeScript {
            version: run.version,
            fault: fault.to_string(),
        };
        return fail_attempt(db, attempt, refused.to_string()).await;
    }
    let pipeline = &cached.pipeline;
    let Some(spec) = pipeline.tasks.get(&attempt.task) else {
        let reason = format!(
            "task {:?} is missing from its pipeline's stored version",
            attempt.task
        );
        return fail_attempt(db, attempt, reason).await;
    };
    let names: BTreeSet<String> = spec.secrets.iter().cloned().collect();
    let mut values = BTreeMap::new();
    if !names.is_empty() {
        if let Some(reason) = plain_link_refusal(link) {
            return fail_attempt(db, attempt, reason).await;
        }
        let resolved = run_secrets::resolve(db, &ctx.vault, &run, &names).await?;
        if let Some(reason) = resolved.failure() {
            return fail_attempt(db, attempt, reason).await;
        }
        if let Some(reason) = protected_refusal(link, &resolved.protected) {
            return fail_attempt(db, attempt, reason).await;
        }
        values = resolved.values;
    }
    let reads = xene_core::plan::reads(spec);
    let (outputs, more) = if reads.is_empty() {
        (BTreeMap::new(), None)
    } else {
        attempts::read_outputs(db, run.id, &reads, None, inline).await?
    };
    // Whether the agent may save the task's caches: the files service
    // decides again on each save, whatever the agent asks.
    let cache_save = pipeline.cache_save.allows(&run.trigger);
    let dispatch = TaskDispatch {
        cache_save,
        attempt: AttemptRef { id: attempt.id },
        run_id: run.id,
        task: attempt.task.clone(),
        number: u32::try_from(attempt.number).unwrap_or(u32::MAX),
        workflow: run.workflow.clone(),
        pipeline_name: run.pipeline.clone(),
        spec: spec.clone(),
        pipeline_env: pipeline.env.clone(),
        params: run.params.clone(),
        secrets: values,
        outputs,
        more_outputs: more.is_some(),
        traceparent: None,
    };
    if let Some(reason) = oversized(&dispatch) {
        return fail_attempt(db, attempt, reason).await;
    }
    Ok(PreparedAttempt::Send(Box::new(dispatch)))
}

/// The most bytes a task dispatch may take encoded, its inline outputs
/// aside (they have their own bound, `INLINE_OUTPUTS`, and page past it):
/// with them and the message's envelope it stays well under the 8 MiB a
/// WebSocket message may hold, so a dispatch never breaks its session.
pub const MAX_DISPATCH_BYTES: usize = 4 << 20;

/// Why `dispatch` is too big to send, if it is: secrets (up to 256 of
/// 64 KiB each), params, env and the spec add up. The built-in agent is
/// held to the same bound, so a task fails the same way wherever it goes.
fn oversized(dispatch: &TaskDispatch) -> Option<String> {
    #[derive(serde::Serialize)]
    struct Measured<'a> {
        spec: &'a xene_core::spec::Task,
        pipeline_env: &'a BTreeMap<String, String>,
        params: &'a BTreeMap<String, String>,
        secrets: &'a BTreeMap<String, xene_core::protocol::SecretValue>,
    }
    let size = serde_json::to_vec(&Measured {
        spec: &dispatch.spec,
        pipeline_env: &dispatch.pipeline_env,
        params: &dispatch.params,
        secrets: &dispatch.secrets,
    })
    .map_or(usize::MAX, |encoded| encoded.len());
    (size > MAX_DISPATCH_BYTES).then(|| {
        format!(
            "the task's dispatch would take {} KiB (its secrets, params, env and spec), past the \
             {} KiB an agent is sent: use fewer or smaller secrets and params",
            size.div_ceil(1024),
            MAX_DISPATCH_BYTES / 1024
        )
    })
}

/// Secrets never travel over plain HTTP off this machine.
fn plain_link_refusal(link: Link<'_>) -> Option<String> {
    match link {
        Link::Remote {
            agent,
            secure: false,
            ..
        } => Some(format!(
            "the task uses secrets, and agent {agent} is connected over plain HTTP from another \
             machine: secrets are sent only over TLS or loopback"
        )),
        _ => None,
    }
}

/// Protected secrets never go to a remote agent that runs shell steps.
fn protected_refusal(link: Link<'_>, protected: &[String]) -> Option<String> {
    match link {
        Link::Remote {
            agent,
            runs_shell: true,
            ..
        } if !protected.is_empty() => Some(format!(
            "the task uses protected secrets ({}), and agent {agent} runs shell steps, which no \
             sandbox keeps from other tasks' steps there: protected secrets go only to the \
             built-in agent and to agents without the shell runtime",
            protected.join(", "),
        )),
        _ => None,
    }
}

/// Ends a task attempt that cannot execute.
async fn fail_attempt(
    db: &Db,
    attempt: &HeldAttempt,
    reason: String,
) -> Result<PreparedAttempt, StorageError> {
    attempts::fail(db, attempt.id, &reason).await?;
    Ok(PreparedAttempt::Failed(reason))
}
