//! The one `git` helper outside the coordinator's mirrors (which run git asynchronously inside
//! the server, see `moat_coordinator::git`): `git -C DIR ARGS…` with prompts and the system
//! configuration off and stdin closed, failing with the operation, the directory and git's
//! message. Used by `moat run`'s workspace, `moat up --demo`, the end-to-end tests and the
//! benchmarks. Arguments are passed as a vector, never through a shell.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot run git: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("git {op} failed in {}: {stderr}", dir.display())]
    Failed {
        op: String,
        dir: PathBuf,
        stderr: String,
    },
}

/// Who commits, for the callers that make commits (demo, tests, benchmarks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub name: &'static str,
    pub email: &'static str,
}

/// `git -C dir args…`: its standard output.
pub fn git(dir: &Path, args: &[&str]) -> Result<Vec<u8>, GitError> {
    run(dir, args, None)
}

/// [`git`]'s output as one trimmed line of text.
pub fn git_line(dir: &Path, args: &[&str]) -> Result<String, GitError> {
    Ok(String::from_utf8_lossy(&git(dir, args)?).trim().to_string())
}

/// [`git_line`] as `who` (author and committer), for commits.
pub fn git_as(who: Identity, dir: &Path, args: &[&str]) -> Result<String, GitError> {
    Ok(String::from_utf8_lossy(&run(dir, args, Some(who))?)
        .trim()
        .to_string())
}

fn run(dir: &Path, args: &[&str], who: Option<Identity>) -> Result<Vec<u8>, GitError> {
    let mut cmd = Command::new("git");
    cmd.arg("-C")
        .arg(dir)
        .args(args)
        // Never wait for credentials on a terminal; never pick up the machine's git config.
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(Stdio::null());
    if let Some(who) = who {
        for var in ["GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"] {
            cmd.env(var, who.name);
        }
        for var in ["GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"] {
            cmd.env(var, who.email);
        }
    }
    let out = cmd.output().map_err(GitError::Spawn)?;
    if !out.status.success() {
        return Err(GitError::Failed {
            op: args.first().copied().unwrap_or("").to_string(),
            dir: dir.to_path_buf(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scratch::TempDir;

    #[test]
    fn commits_as_the_identity_and_fails_with_the_operation() {
        let dir = TempDir::new("git-helper").unwrap();
        let who = Identity {
            name: "Moat Unit",
            email: "unit@moat.invalid",
        };
        git(dir.path(), &["init", "-q", "-b", "main"]).unwrap();
        std::fs::write(dir.path().join("f"), "x").unwrap();
        git(dir.path(), &["add", "f"]).unwrap();
        git_as(who, dir.path(), &["commit", "-q", "-m", "one"]).unwrap();
        let author = git_line(dir.path(), &["log", "-1", "--format=%an <%ae>|%cn"]).unwrap();
        assert_eq!(author, "Moat Unit <unit@moat.invalid>|Moat Unit");
        match git(dir.path(), &["rev-parse", "--verify", "nope^{commit}"]) {
            Err(GitError::Failed { op, dir: d, stderr }) => {
                assert_eq!(op, "rev-parse");
                assert_eq!(d, dir.path());
                assert!(!stderr.is_empty());
            }
            other => panic!("expected a failure, got {other:?}"),
        }
    }
}
