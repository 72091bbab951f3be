//! Preparing a placed run for its agent, built-in or remote: one path, so
//! that both send or fail the run in the same cases. What differs is
//! only what the link may carry (`Link`).

use std::collections::BTreeMap;

use xene_core::protocol::{Dispatch, RunRef};

use super::Context;
use crate::storage::runs::{self, Run};
use crate::storage::{Db, StorageError, run_secrets, secrets};

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

/// What became of a run on its way to the agent.
#[derive(Debug)]
pub enum Prepared {
    /// Ready to send (`traceparent` is left for the sender to fill in).
    Send(Box<Dispatch>),
    /// The run cannot execute here at all: its attempt was ended with this
    /// reason.
    Failed(String),
}

/// Reads what the agent needs to execute `run` (its pipeline as of its
/// version, its secrets, the tasks earlier attempts finished), or ends the
/// attempt when it cannot execute.
pub async fn prepare(ctx: &Context, run: &Run, link: Link<'_>) -> Result<Prepared, StorageError> {
    let db = &ctx.db;
    let pipeline = ctx
        .specs
        .pipeline(db, &run.workflow, run.version, &run.pipeline)
        .await?;
    let Some(pipeline) = pipeline.map(|p| (*p).clone()) else {
        tracing::error!(
            run = run.id,
            "a scheduled run's pipeline is missing from its workflow version"
        );
        return fail(
            db,
            run,
            "its pipeline is missing from the stored workflow version".into(),
        )
        .await;
    };
    // A run queued before an upgrade may hold a template now refused, and
    // an older agent would render it as it did then.
    if let Some(refused) = runs::RunError::unsafe_script(run.version, &pipeline) {
        return fail(db, run, refused.to_string()).await;
    }
    let names = secrets::names_used(&pipeline);
    let mut values = BTreeMap::new();
    if !names.is_empty() {
        if let Link::Remote {
            agent,
            secure: false,
            ..
        } = link
        {
            let reason = format!(
                "its tasks use secrets, and agent {agent} is connected over plain HTTP from another machine: \
                 secrets are sent only over TLS or loopback"
            );
            return fail(db, run, reason).await;
        }
        let resolved = run_secrets::resolve(db, &ctx.vault, run, &names).await?;
        if let Some(reason) = resolved.failure() {
            return fail(db, run, reason).await;
        }
        if let Link::Remote {
            agent,
            runs_shell: true,
            ..
        } = link
            && !resolved.protected.is_empty()
        {
            let reason = format!(
                "its tasks use protected secrets ({}), and agent {agent} runs shell steps, which no \
                 sandbox keeps from other runs' steps there: protected secrets go only to the \
                 built-in agent and to agents without the shell runtime",
                resolved.protected.join(", "),
            );
            return fail(db, run, reason).await;
        }
        values = resolved.values;
    }
    let completed = runs::completed_tasks(db, run.id).await?;
    Ok(Prepared::Send(Box::new(Dispatch {
        run: RunRef {
            run_id: run.id,
            attempt: run.attempt,
        },
        workflow: run.workflow.clone(),
        pipeline_name: run.pipeline.clone(),
        pipeline,
        params: run.params.clone(),
        secrets: values,
        completed,
        traceparent: None,
    })))
}

/// Ends a run's attempt that cannot execute.
async fn fail(db: &Db, run: &Run, reason: String) -> Result<Prepared, StorageError> {
    runs::fail_attempt(db, run.id, run.attempt, &reason).await?;
    Ok(Prepared::Failed(reason))
}
