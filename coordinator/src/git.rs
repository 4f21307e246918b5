//! Bare mirrors of the registered repositories in the data directory: fetched from the
//! registered clone URL (never one from a payload) when an event arrives, then read at the exact
//! commit of the event — the pipeline file and the source archive runners start from.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("git {op} failed: {detail}")]
    Failed { op: String, detail: String },
    #[error("commit {0} is not in the repository")]
    MissingCommit(String),
    #[error("no branch {0:?} in the repository")]
    MissingBranch(String),
    #[error("{path} is {size} bytes; the limit is {max}")]
    TooLarge {
        path: String,
        size: usize,
        max: usize,
    },
    #[error("cannot run git: {0}")]
    Spawn(#[from] std::io::Error),
    #[error("cannot create the mirror directory {}: {source}", path.display())]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl GitError {
    /// Whether the message is the user's to read: it names only what they sent (a commit, a
    /// branch, a file's size). The others carry git's stderr, the mirror's path or the clone
    /// URL: they are logged, never answered or stored where API clients read them.
    pub fn is_public(&self) -> bool {
        matches!(
            self,
            GitError::MissingCommit(_) | GitError::MissingBranch(_) | GitError::TooLarge { .. }
        )
    }
}

/// Creates a mirror's directory (and `repos/` above it), naming it when that fails.
async fn create_mirror_dir(dir: &Path) -> Result<(), GitError> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|source| GitError::Dir {
            path: dir.to_path_buf(),
            source,
        })
}

pub struct Mirrors {
    root: PathBuf,
    /// One fetch at a time per mirror: git's own locks would make concurrent fetches fail.
    locks: Mutex<HashMap<i64, Arc<tokio::sync::Mutex<()>>>>,
}

fn check_commit(commit: &str) -> Result<(), GitError> {
    if (7..=64).contains(&commit.len()) && commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(GitError::MissingCommit(commit.to_string()))
    }
}

async fn git(dir: &Path, args: &[&str]) -> Result<Vec<u8>, GitError> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        // Never ask for credentials on a terminal, never read the user's config for hooks.
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(Stdio::null())
        .output()
        .await?;
    if !out.status.success() {
        return Err(GitError::Failed {
            op: args.first().copied().unwrap_or("").to_string(),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out.stdout)
}

impl Mirrors {
    pub fn new(root: PathBuf) -> Self {
        Mirrors {
            root,
            locks: Mutex::new(HashMap::new()),
        }
    }

    fn path(&self, repo_id: i64) -> PathBuf {
        self.root.join(format!("{repo_id}.git"))
    }

    fn lock(&self, repo_id: i64) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .expect("mirror locks")
            .entry(repo_id)
            .or_default()
            .clone()
    }

    async fn has_commit(&self, dir: &Path, commit: &str) -> bool {
        git(dir, &["cat-file", "-e", &format!("{commit}^{{commit}}")])
            .await
            .is_ok()
    }

    /// Makes sure the mirror of `repo_id` has `commit`: fetches branches and tags from
    /// `clone_url`, then the commit itself, then `extra_ref` (a pull request's head ref).
    pub async fn fetch(
        &self,
        repo_id: i64,
        clone_url: &str,
        commit: &str,
        extra_ref: Option<&str>,
    ) -> Result<(), GitError> {
        check_commit(commit)?;
        let lock = self.lock(repo_id);
        let _guard = lock.lock().await;
        let dir = self.path(repo_id);
        if !dir.join("HEAD").exists() {
            create_mirror_dir(&dir).await?;
            git(&dir, &["init", "--quiet", "--bare"]).await?;
        }
        if self.has_commit(&dir, commit).await {
            return Ok(());
        }
        // `--` keeps a URL that starts with a dash from being read as an option.
        git(
            &dir,
            &[
                "fetch",
                "--quiet",
                "--force",
                "--",
                clone_url,
                "+refs/heads/*:refs/heads/*",
                "+refs/tags/*:refs/tags/*",
            ],
        )
        .await?;
        if self.has_commit(&dir, commit).await {
            return Ok(());
        }
        let _ = git(&dir, &["fetch", "--quiet", "--", clone_url, commit]).await;
        if let Some(r) = extra_ref
            && !self.has_commit(&dir, commit).await
        {
            let spec = format!("+{r}:refs/moat/fetched");
            let _ = git(&dir, &["fetch", "--quiet", "--", clone_url, &spec]).await;
        }
        if self.has_commit(&dir, commit).await {
            Ok(())
        } else {
            Err(GitError::MissingCommit(commit.to_string()))
        }
    }

    /// The commit a branch of the mirror points to, after fetching it.
    pub async fn resolve_branch(
        &self,
        repo_id: i64,
        clone_url: &str,
        branch: &str,
    ) -> Result<String, GitError> {
        let lock = self.lock(repo_id);
        let _guard = lock.lock().await;
        let dir = self.path(repo_id);
        if !dir.join("HEAD").exists() {
            create_mirror_dir(&dir).await?;
            git(&dir, &["init", "--quiet", "--bare"]).await?;
        }
        git(
            &dir,
            &[
                "fetch",
                "--quiet",
                "--force",
                "--",
                clone_url,
                "+refs/heads/*:refs/heads/*",
                "+refs/tags/*:refs/tags/*",
            ],
        )
        .await?;
        let refname = format!("refs/heads/{branch}^{{commit}}");
        let out = git(&dir, &["rev-parse", "--verify", "--quiet", &refname])
            .await
            .map_err(|_| GitError::MissingBranch(branch.to_string()))?;
        Ok(String::from_utf8_lossy(&out).trim().to_string())
    }

    /// A file at `commit`, if it exists and is at most `max` bytes (`Err` when larger).
    pub async fn read_file(
        &self,
        repo_id: i64,
        commit: &str,
        path: &str,
        max: usize,
    ) -> Result<Option<Vec<u8>>, GitError> {
        check_commit(commit)?;
        let dir = self.path(repo_id);
        let object = format!("{commit}:{path}");
        let size = match git(&dir, &["cat-file", "-s", &object]).await {
            Ok(out) => String::from_utf8_lossy(&out)
                .trim()
                .parse::<usize>()
                .unwrap_or(usize::MAX),
            Err(_) => return Ok(None),
        };
        if size > max {
            return Err(GitError::TooLarge {
                path: path.to_string(),
                size,
                max,
            });
        }
        Ok(Some(git(&dir, &["cat-file", "blob", &object]).await?))
    }

    /// The change a pull request makes: `git diff base...head` (from their merge base), as a
    /// unified diff, so the secret gate judges only the lines it adds.
    pub async fn diff(&self, repo_id: i64, base: &str, head: &str) -> Result<String, GitError> {
        check_commit(base)?;
        check_commit(head)?;
        let range = format!("{base}...{head}");
        let out = git(
            &self.path(repo_id),
            &[
                "diff",
                "--no-color",
                "--no-ext-diff",
                "--no-textconv",
                &range,
                "--",
            ],
        )
        .await?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// The tracked files at `commit` as a tar archive.
    pub async fn archive(&self, repo_id: i64, commit: &str) -> Result<Vec<u8>, GitError> {
        check_commit(commit)?;
        git(&self.path(repo_id), &["archive", "--format=tar", commit]).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run(dir: &Path, args: &[&str]) {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
            .output()
            .await
            .expect("git runs");
        assert!(out.status.success(), "git {args:?}: {out:?}");
    }

    #[tokio::test]
    async fn oversized_files_are_public_errors_and_git_failures_are_not() {
        let root = std::env::temp_dir().join(format!("moat-mirror-{:016x}", rand::random::<u64>()));
        let mirrors = Mirrors::new(root.clone());
        let dir = mirrors.path(1);
        std::fs::create_dir_all(&dir).unwrap();
        run(&dir, &["init", "-q"]).await;
        std::fs::write(dir.join(".moat.yml"), "x".repeat(100)).unwrap();
        run(&dir, &["add", ".moat.yml"]).await;
        run(&dir, &["commit", "-qm", "c"]).await;
        let head = String::from_utf8(git(&dir, &["rev-parse", "HEAD"]).await.unwrap()).unwrap();
        let head = head.trim();

        let big = mirrors
            .read_file(1, head, ".moat.yml", 10)
            .await
            .unwrap_err();
        assert!(
            matches!(
                big,
                GitError::TooLarge {
                    size: 100,
                    max: 10,
                    ..
                }
            ),
            "{big:?}"
        );
        assert!(big.is_public());
        assert_eq!(
            mirrors.read_file(1, head, ".moat.yml", 1000).await.unwrap(),
            Some("x".repeat(100).into_bytes())
        );
        assert_eq!(
            mirrors.read_file(1, head, "absent", 10).await.unwrap(),
            None
        );

        // A git failure carries git's stderr and the mirror's path: never public.
        let failed = mirrors.archive(2, head).await.unwrap_err();
        assert!(matches!(failed, GitError::Failed { .. }), "{failed:?}");
        assert!(!failed.is_public());
        assert!(GitError::MissingCommit("abc".into()).is_public());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
