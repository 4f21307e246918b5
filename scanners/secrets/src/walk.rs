//! Which files of a tree are read, and the worker threads that scan them.
//!
//! Not read: directories of other people's code (`vendor/`, `node_modules/`, `third_party/`,
//! VCS metadata, virtualenvs), lock files (hashes and URLs by the thousand, no credentials of
//! the project's own), files above the size limit, binaries (a NUL byte in the first 8 KiB),
//! and symlinks: a link is never followed, so nothing outside the tree is read, and a link to
//! a file inside the tree adds nothing that the target itself does not.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::engine::{Scanned, Scanner, Scratch};
use super::{ScanError, ScanStats};

const SKIP_DIRS: &[&str] = &[
    ".git",
    ".hg",
    ".svn",
    ".bzr",
    "node_modules",
    "bower_components",
    "jspm_packages",
    "vendor",
    "third_party",
    "third-party",
    "thirdparty",
    ".venv",
    "site-packages",
    "__pycache__",
    ".tox",
    ".terraform",
];

const LOCK_FILES: &[&str] = &[
    "Cargo.lock",
    "package-lock.json",
    "npm-shrinkwrap.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "bun.lock",
    "bun.lockb",
    "deno.lock",
    "go.sum",
    "go.work.sum",
    "poetry.lock",
    "Pipfile.lock",
    "pdm.lock",
    "uv.lock",
    "composer.lock",
    "Gemfile.lock",
    "mix.lock",
    "pubspec.lock",
    "packages.lock.json",
    "paket.lock",
    "Podfile.lock",
    "Package.resolved",
    "flake.lock",
    "gradle.lockfile",
    "conan.lock",
    ".terraform.lock.hcl",
];

/// How much of a file is looked at for NUL bytes.
const BINARY_PROBE: usize = 8192;

pub(crate) struct FileEntry {
    pub rel: String,
    pub abs: PathBuf,
}

pub(crate) struct Walked {
    pub files: Vec<FileEntry>,
    pub stats: ScanStats,
}

pub(crate) fn is_lock_file(name: &str) -> bool {
    LOCK_FILES.contains(&name)
}

pub(crate) fn is_skipped_dir(name: &str) -> bool {
    SKIP_DIRS.contains(&name)
}

/// Every file of the tree that is to be read, sorted by path.
pub(crate) fn walk(root: &Path, max_size: u64) -> Result<Walked, ScanError> {
    let mut walked = Walked {
        files: Vec::new(),
        stats: ScanStats::default(),
    };
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let io = |source| ScanError::Io {
            path: dir.clone(),
            source,
        };
        for entry in fs::read_dir(&dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let child = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            // `file_type` does not follow symlinks.
            let kind = entry.file_type().map_err(io)?;
            if kind.is_symlink() {
                walked.stats.skipped_symlinks += 1;
            } else if kind.is_dir() {
                if is_skipped_dir(&name) {
                    walked.stats.skipped_dirs += 1;
                } else {
                    stack.push((entry.path(), child));
                }
            } else if kind.is_file() {
                let size = entry.metadata().map_err(io)?.len();
                push_file(&mut walked, entry.path(), child, &name, size, max_size);
            }
        }
    }
    walked.files.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(walked)
}

/// The listed files (relative paths, e.g. from a diff) that exist as regular files in the tree,
/// with the same skipping rules as [`walk`].
pub(crate) fn files_in<'a>(
    root: &Path,
    rels: impl Iterator<Item = &'a str>,
    max_size: u64,
) -> Result<Walked, ScanError> {
    let mut walked = Walked {
        files: Vec::new(),
        stats: ScanStats::default(),
    };
    'files: for rel in rels {
        let mut abs = root.to_path_buf();
        let parts: Vec<&str> = rel.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            if part.is_empty() || *part == "." || *part == ".." {
                continue 'files;
            }
            if i + 1 < parts.len() && is_skipped_dir(part) {
                walked.stats.skipped_dirs += 1;
                continue 'files;
            }
            abs.push(part);
            // No component may be a symlink: a diff must not lead the scanner outside the tree.
            match fs::symlink_metadata(&abs) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    walked.stats.skipped_symlinks += 1;
                    continue 'files;
                }
                Ok(_) => {}
                Err(_) => continue 'files,
            }
        }
        let meta = fs::symlink_metadata(&abs).map_err(|source| ScanError::Io {
            path: abs.clone(),
            source,
        })?;
        if meta.is_file() {
            let name = parts.last().copied().unwrap_or_default();
            push_file(
                &mut walked,
                abs,
                rel.to_string(),
                name,
                meta.len(),
                max_size,
            );
        }
    }
    walked.files.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(walked)
}

fn push_file(walked: &mut Walked, abs: PathBuf, rel: String, name: &str, size: u64, max: u64) {
    if is_lock_file(name) {
        walked.stats.skipped_lock += 1;
    } else if size > max {
        walked.stats.skipped_large += 1;
    } else {
        walked.files.push(FileEntry { rel, abs });
    }
}

/// Scans the files on `threads` workers (0: one per core). Results are sorted by file, line,
/// column and rule, whatever the scheduling.
pub(crate) fn scan_files(
    scanner: &Scanner,
    walked: &Walked,
    threads: usize,
    max_size: u64,
) -> Result<(Vec<Scanned>, ScanStats), ScanError> {
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    }
    .clamp(1, walked.files.len().max(1));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Vec<Scanned>)>> = Mutex::new(Vec::new());
    let totals: Mutex<ScanStats> = Mutex::new(walked.stats.clone());
    let failure: Mutex<Option<ScanError>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut scratch = Scratch::new(scanner);
                let mut buf = Vec::new();
                let mut mine = Vec::new();
                let mut stats = ScanStats::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(file) = walked.files.get(i) else {
                        break;
                    };
                    buf.clear();
                    let read = fs::File::open(&file.abs)
                        .and_then(|f| f.take(max_size + 1).read_to_end(&mut buf));
                    if let Err(source) = read {
                        let mut slot = failure.lock().unwrap_or_else(|e| e.into_inner());
                        slot.get_or_insert(ScanError::Io {
                            path: file.abs.clone(),
                            source,
                        });
                        break;
                    }
                    if buf.len() as u64 > max_size {
                        stats.skipped_large += 1;
                        continue;
                    }
                    if memchr::memchr(0, &buf[..buf.len().min(BINARY_PROBE)]).is_some() {
                        stats.skipped_binary += 1;
                        continue;
                    }
                    stats.files_scanned += 1;
                    stats.bytes_scanned += buf.len() as u64;
                    let found = scanner.scan_file(&file.rel, &buf, &mut scratch);
                    if !found.is_empty() {
                        mine.push((i, found));
                    }
                }
                results
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(mine);
                let mut total = totals.lock().unwrap_or_else(|e| e.into_inner());
                total.files_scanned += stats.files_scanned;
                total.bytes_scanned += stats.bytes_scanned;
                total.skipped_binary += stats.skipped_binary;
                total.skipped_large += stats.skipped_large;
            });
        }
    });
    if let Some(error) = failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(error);
    }
    let mut per_file = results.into_inner().unwrap_or_else(|e| e.into_inner());
    per_file.sort_by_key(|(i, _)| *i);
    let mut all: Vec<Scanned> = per_file.into_iter().flat_map(|(_, f)| f).collect();
    // Files are in path order already; within a file, order by position then rule.
    all.sort_by(|a, b| {
        let (a, b) = (&a.finding, &b.finding);
        (&a.file, a.line, a.column, a.rule).cmp(&(&b.file, b.line, b.column, b.rule))
    });
    let stats = totals.into_inner().unwrap_or_else(|e| e.into_inner());
    Ok((all, stats))
}
