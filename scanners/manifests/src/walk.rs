//! Which files of a tree are manifests, and reading them under the size cap.
//!
//! Read: `*.yaml`, `*.yml` and `*.json`, in path order. Not read: VCS metadata and directories
//! of other people's code (`node_modules/`, `vendor/`), lock files that happen to be YAML or
//! JSON, and symlinks: a link is never followed, so nothing outside the tree is read.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::ManifestError;

const SKIP_DIRS: &[&str] = &[
    ".git",
    ".hg",
    ".svn",
    "node_modules",
    "bower_components",
    "vendor",
    "third_party",
    ".venv",
    "__pycache__",
    ".terraform",
];

const LOCK_FILES: &[&str] = &[
    "package-lock.json",
    "npm-shrinkwrap.json",
    "pnpm-lock.yaml",
    "composer.lock",
    "packages.lock.json",
    "Pipfile.lock",
];

/// Deeper than this is a loop or a hostile tree, not a manifest repository.
const MAX_DEPTH: usize = 64;

pub(crate) struct FileEntry {
    /// What findings call the file: relative to the scanned directory, `/`-separated.
    pub rel: String,
    pub abs: PathBuf,
}

fn is_manifest(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    (lower.ends_with(".yaml") || lower.ends_with(".yml") || lower.ends_with(".json"))
        && !LOCK_FILES.contains(&name)
}

/// The manifest files under `root`, sorted by path.
pub(crate) fn walk(root: &Path, max_files: usize) -> Result<Vec<FileEntry>, ManifestError> {
    let mut out = Vec::new();
    let mut stack = vec![(root.to_path_buf(), String::new(), 0usize)];
    while let Some((dir, rel, depth)) = stack.pop() {
        let io = |source| ManifestError::Io {
            path: dir.clone(),
            source,
        };
        let mut entries = fs::read_dir(&dir)
            .map_err(io)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(io)?;
        // Sorted so that which files count towards `max_files` does not depend on the
        // file system's order.
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let Some(name) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let file_type = e.file_type().map_err(io)?;
            let child_rel = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            if file_type.is_dir() {
                if depth < MAX_DEPTH && !SKIP_DIRS.contains(&name.as_str()) {
                    stack.push((e.path(), child_rel, depth + 1));
                }
            } else if file_type.is_file() && is_manifest(&name) {
                if out.len() >= max_files {
                    return Err(ManifestError::TooManyFiles {
                        path: root.to_path_buf(),
                        limit: max_files,
                    });
                }
                out.push(FileEntry {
                    rel: child_rel,
                    abs: e.path(),
                });
            }
        }
    }
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

/// The text of a file, refusing more than `max` bytes (checked while reading, so a file that
/// grows after `stat` is still capped) and anything that is not UTF-8.
pub(crate) fn read(file: &FileEntry, max: u64) -> Result<String, ManifestError> {
    let io = |source| ManifestError::Io {
        path: file.abs.clone(),
        source,
    };
    let mut bytes = Vec::new();
    fs::File::open(&file.abs)
        .map_err(io)?
        .take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    let size = bytes.len() as u64;
    if size > max {
        let size = fs::metadata(&file.abs).map_or(size, |m| m.len());
        return Err(ManifestError::TooLarge {
            file: file.rel.clone(),
            size,
            limit: max,
        });
    }
    String::from_utf8(bytes).map_err(|_| ManifestError::NotUtf8 {
        file: file.rel.clone(),
    })
}
