//! Errors of the execution engine.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum EngineError {
    #[error("cannot reach the Docker engine: {detail}")]
    Unreachable { detail: String },
    #[error(
        "image \"{image}\" is not available locally and the engine could not pull it: {detail}"
    )]
    Pull { image: String, detail: String },
    #[error("Docker engine error: {0}")]
    Docker(#[from] bollard::errors::Error),
    #[error("workspace: {0}")]
    Workspace(String),
    /// An earlier attempt of a job may still be running on this engine.
    #[error("not started, to avoid running the stage twice: {0}")]
    PreviousAttempt(String),
}
