//! The source a run works on: the tracked files of a git checkout as a tar archive (at HEAD,
//! or as they are in the working tree), plus what git says about the checkout. The archive is
//! copied into the run's volume; the user's directory is never mounted.

use std::path::{Path, PathBuf};

use crate::error::EngineError;

/// Facts about the checkout that become `MOAT_*` variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    /// The top of the git checkout.
    pub root: PathBuf,
    /// The project inside it, relative to `root` with a trailing `/`, or empty for the root
    /// itself. A monorepo's sub-project with its own `.moat.yml` gets only its own subtree.
    pub prefix: String,
    pub commit: String,
    pub branch: Option<String>,
    pub repo: String,
}

fn git(dir: &Path, args: &[&str]) -> Result<Vec<u8>, EngineError> {
    crate::git::git(dir, args).map_err(|e| EngineError::Workspace(e.to_string()))
}

fn git_line(dir: &Path, args: &[&str]) -> Result<String, EngineError> {
    crate::git::git_line(dir, args).map_err(|e| EngineError::Workspace(e.to_string()))
}

/// Reads the checkout's root, HEAD commit and branch. Fails clearly outside a git repository
/// or in one without commits.
pub fn inspect(dir: &Path) -> Result<Checkout, EngineError> {
    let root = git_line(dir, &["rev-parse", "--show-toplevel"]).map_err(|_| {
        EngineError::Workspace(format!(
            "{} is not inside a git repository (moat run copies the tracked files of a checkout)",
            dir.display()
        ))
    })?;
    let root = PathBuf::from(root);
    let prefix = git_line(dir, &["rev-parse", "--show-prefix"])?;
    let commit = git_line(&root, &["rev-parse", "--verify", "HEAD^{commit}"]).map_err(|_| {
        EngineError::Workspace(format!(
            "the repository at {} has no commit yet",
            root.display()
        ))
    })?;
    let branch = git_line(&root, &["symbolic-ref", "--quiet", "--short", "HEAD"]).ok();
    let project = if prefix.is_empty() {
        root.clone()
    } else {
        root.join(&prefix)
    };
    let repo = project
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "repository".to_string());
    Ok(Checkout {
        root,
        prefix,
        commit,
        branch,
        repo,
    })
}

impl Checkout {
    /// The directory whose content becomes the workspace.
    pub fn project_dir(&self) -> PathBuf {
        self.root.join(&self.prefix)
    }
}

/// A tar of the tracked files at `commit` (`git archive`), or, with `working_tree`, of the
/// tracked and untracked-but-not-ignored files as they are on disk now.
pub fn archive(checkout: &Checkout, working_tree: bool) -> Result<Vec<u8>, EngineError> {
    if !working_tree {
        let tree = format!("{}:{}", checkout.commit, checkout.prefix);
        return git(&checkout.root, &["archive", "--format=tar", &tree]);
    }
    let project = checkout.project_dir();
    let list = git(
        &project,
        &[
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ],
    )?;
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    builder.mode(tar::HeaderMode::Deterministic);
    for rel in list.split(|&b| b == 0).filter(|p| !p.is_empty()) {
        let rel = String::from_utf8_lossy(rel).into_owned();
        let path = project.join(&rel);
        // Tracked files deleted in the working tree are simply absent.
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            // A submodule: its content is not part of this repository's tree.
            continue;
        }
        builder
            .append_path_with_name(&path, &rel)
            .map_err(|e| EngineError::Workspace(format!("cannot read {rel}: {e}")))?;
    }
    builder
        .into_inner()
        .map_err(|e| EngineError::Workspace(format!("cannot build the workspace archive: {e}")))
}
