//! Errors of the secret scanner. Every one of them means "the input is unusable" (the CLI's
//! exit code 2); findings are results, not errors.

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ScanError {
    #[error("{}: not a directory", path.display())]
    NotADirectory { path: PathBuf },
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A malformed line of `.moat/secrets.allow`, located.
    #[error("{}:{line}: {message}", path.display())]
    AllowFile {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("baseline {}: {message}", path.display())]
    Baseline { path: PathBuf, message: String },
    /// A unified diff that cannot be followed, located by its line.
    #[error("diff:{line}: {message}")]
    Diff { line: usize, message: String },
    /// A built-in rule that does not compile: a bug in the rule table.
    #[error("rule {id}: {message}")]
    Rule { id: &'static str, message: String },
}
