//! Exit codes, as documented in docs/cli.md, and the error that carries one.

use std::process::ExitCode;

/// What the process tells its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    /// A run the command waited for did not succeed (or another failure).
    Failed = 1,
    /// Bad usage or an invalid workflow.
    Usage = 2,
    /// No credential, or one the server refuses.
    Auth = 3,
    NotFound = 4,
    /// The server could not be reached.
    Unreachable = 5,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

/// An error with its exit code; any other error exits with 1.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
}

pub fn fail(exit: Exit, message: impl Into<String>) -> anyhow::Error {
    Failure {
        exit,
        message: message.into(),
    }
    .into()
}

/// The exit code for an error: the first `Failure` in its chain decides.
pub fn exit_of(error: &anyhow::Error) -> Exit {
    error
        .chain()
        .find_map(|e| e.downcast_ref::<Failure>())
        .map_or(Exit::Failed, |f| f.exit)
}
