//! The Xene agent as a library: the pipeline executor and its runtimes, so
//! that the `xene-agent` binary and the server's built-in local agent run
//! pipelines the same way.

pub mod connect;
pub mod executor;
pub mod mask;
pub mod metrics;
pub mod runtime;
pub mod telemetry;

pub use executor::{
    AttemptIds, AttemptRequest, Executor, ExecutorConfig, ExecutorError, RunReport, RunRequest,
    StepReport, TaskReport, default_concurrency, new_run_id,
};
