//! Process exit codes and the error type that carries one.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | internal error (a bug, or the environment failed: disk full, ...) |
//! | 2 | invalid input: unreadable or malformed model, pipeline or data file |
//! | 3 | the verification gate failed (nothing was written at the output path) |
//! | 4 | `diff --exit-code`: the models differ |
//! | 64 | usage error: unknown command or flag |

use whittle_graph::ModelError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitCode {
    Success = 0,
    Internal = 1,
    InvalidInput = 2,
    GateFailed = 3,
    Differs = 4,
    Usage = 64,
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(c: ExitCode) -> Self {
        std::process::ExitCode::from(c as u8)
    }
}

/// An error with the exit code it maps to.
pub struct CliError {
    pub code: ExitCode,
    pub error: anyhow::Error,
}

impl CliError {
    pub fn invalid(error: impl Into<anyhow::Error>) -> CliError {
        CliError { code: ExitCode::InvalidInput, error: error.into() }
    }
    pub fn internal(error: impl Into<anyhow::Error>) -> CliError {
        CliError { code: ExitCode::Internal, error: error.into() }
    }
}

impl From<ModelError> for CliError {
    fn from(e: ModelError) -> Self {
        match e {
            ModelError::Write { .. } => CliError::internal(e),
            _ => CliError::invalid(e),
        }
    }
}

pub type CliResult = Result<ExitCode, CliError>;
