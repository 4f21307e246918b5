//! Errors of the manifest scanner. Each one means "the input is unusable" (the CLI's exit code
//! 2); findings are results, not errors.

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ManifestError {
    #[error("{}: no such file or directory", path.display())]
    NotFound { path: PathBuf },
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Above [`ScanOptions::max_file_size`](super::ScanOptions::max_file_size). An error, not a
    /// skip: padding a manifest must not be a way around the policy.
    #[error("{file}: {size} bytes, more than the limit of {limit} bytes for a manifest file")]
    TooLarge { file: String, size: u64, limit: u64 },
    #[error("{file}: not UTF-8 text")]
    NotUtf8 { file: String },
    /// A file that is not YAML (or JSON), located at the first problem.
    #[error("{file}:{line}:{column}: {message}")]
    Parse {
        file: String,
        line: u32,
        column: u32,
        message: String,
    },
    #[error("{}: more than {limit} manifest files", path.display())]
    TooManyFiles { path: PathBuf, limit: usize },
}
