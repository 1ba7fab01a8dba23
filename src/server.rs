//! The server: executors, listeners and the protocol drivers.

use crate::config::{Config, Source};

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Anything, worded.
    #[error("{0}")]
    Other(String),
}

/// Runs the server until SIGTERM/SIGINT; returns the exit code.
pub fn serve(_cfg: Config, _source: Source) -> Result<i32, ServerError> {
    Err(ServerError::Other("not yet".into()))
}
