//! Secrets: the credential scanner behind `moat scan secrets`, the secret gate that runs it
//! before any stage, and the masker every line a stage prints goes through. Pure: no engine,
//! no network, no database; the caller hands in a directory, an archive or a byte stream.
//!
//! - [`rules`]: the built-in rules, as data.
//! - `engine`: one pass over a file's bytes (Aho-Corasick keyword prefilter, then the regexes
//!   of the rules whose keywords occur, around the hits), filters, fingerprints, redaction.
//! - `walk`: which files of a tree are read (no binaries, lock files, vendored trees or
//!   symlinks), and the worker threads.
//! - [`allow`]: `.moat/secrets.allow`, baselines and inline `moat:allow` comments.
//! - [`diff`]: the lines a unified diff adds, so a pull request is judged on its change only.
//! - [`report`]: table, JSON and SARIF 2.1.0 output.
//! - [`gate`]: the secret gate over a run's source archive, and its modes.
//! - [`mask`]: secret values (and their encodings) to `***` in a stream of output.
//!
//! The raw value of a secret never leaves the engine: a [`Finding`] carries a fingerprint
//! (SHA-256 of rule, file and secret) and an excerpt in which every secret found on the line
//! is masked.

pub mod allow;
pub mod diff;
mod engine;
mod error;
pub mod gate;
pub mod mask;
pub mod report;
pub mod rules;
mod walk;

use std::path::{Path, PathBuf};

pub use allow::{AllowSource, Allowlist};
pub use diff::{AddedLines, parse_unified_diff};
pub use engine::{MAX_FINDINGS_PER_FILE, Scanner};
pub use error::ScanError;
pub use moat_report::{Format, Severity};
pub use rules::{RuleSpec, Span, builtin_rules};

/// Where a tree keeps its allow file, relative to the scanned directory.
pub const ALLOW_FILE: &str = ".moat/secrets.allow";

/// Files larger than this are not read (generated data, archives, dumps).
pub const DEFAULT_MAX_FILE_SIZE: u64 = 10 * 1024 * 1024;

/// One credential found in one file. Holds no raw secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The rule id, e.g. `aws-access-key-id`.
    pub rule: &'static str,
    pub description: &'static str,
    pub severity: Severity,
    /// Relative to the scanned directory, `/`-separated.
    pub file: String,
    /// 1-based line of the first byte of the secret.
    pub line: u32,
    /// 1-based column (Unicode scalar values) of the first byte of the secret.
    pub column: u32,
    /// Last line of the secret (differs from `line` for multi-line keys).
    pub end_line: u32,
    /// Hex SHA-256 of rule id, file and secret: stable when unrelated lines move.
    pub fingerprint: String,
    /// The line with every secret on it masked (first/last characters and `***`).
    pub excerpt: String,
}

/// Why a finding was not reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Suppression {
    /// A `moat:allow` (or compatible) comment on the line.
    Inline,
    /// Allowed by fingerprint, in the allow file or a baseline.
    Allowed(AllowSource),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppressed {
    pub finding: Finding,
    pub by: Suppression,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanStats {
    pub files_scanned: usize,
    pub bytes_scanned: u64,
    pub skipped_binary: usize,
    pub skipped_large: usize,
    pub skipped_lock: usize,
    pub skipped_dirs: usize,
    pub skipped_symlinks: usize,
}

/// The result of scanning a tree: findings that block, and those that were allowed.
#[derive(Debug, Clone, Default)]
pub struct ScanReport {
    /// Sorted by file, line, column, rule.
    pub findings: Vec<Finding>,
    pub suppressed: Vec<Suppressed>,
    pub stats: ScanStats,
}

impl ScanReport {
    /// True when nothing blocks.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// How to scan a tree.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// A previous JSON report whose fingerprints are accepted.
    pub baseline: Option<PathBuf>,
    /// Judge only these lines (a pull request's change); `None` judges every line.
    pub added_lines: Option<AddedLines>,
    pub max_file_size: u64,
    /// Worker threads; 0 means one per available core.
    pub threads: usize,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            baseline: None,
            added_lines: None,
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            threads: 0,
        }
    }
}

/// Scans a directory the way the secret gate does: loads `.moat/secrets.allow` (and the
/// baseline, if any), walks the tree, and splits findings into blocking and suppressed.
pub fn scan_tree(dir: &Path, options: &ScanOptions) -> Result<ScanReport, ScanError> {
    if !dir.is_dir() {
        return Err(ScanError::NotADirectory {
            path: dir.to_path_buf(),
        });
    }
    let mut allowlist = Allowlist::load_dir(dir)?;
    if let Some(baseline) = &options.baseline {
        allowlist.add_baseline(baseline)?;
    }
    let scanner = Scanner::builtin()?;
    let walked = match &options.added_lines {
        Some(added) => walk::files_in(dir, added.files(), options.max_file_size)?,
        None => walk::walk(dir, options.max_file_size)?,
    };
    let (scanned, stats) =
        walk::scan_files(scanner, &walked, options.threads, options.max_file_size)?;
    let mut report = ScanReport {
        stats,
        ..ScanReport::default()
    };
    for scanned in scanned {
        let finding = scanned.finding;
        if let Some(added) = &options.added_lines
            && !added.touches(&finding.file, finding.line, finding.end_line)
        {
            continue;
        }
        if scanned.inline_allowed {
            report.suppressed.push(Suppressed {
                finding,
                by: Suppression::Inline,
            });
        } else if let Some(source) = allowlist.check(&finding.fingerprint) {
            report.suppressed.push(Suppressed {
                finding,
                by: Suppression::Allowed(source.clone()),
            });
        } else {
            report.findings.push(finding);
        }
    }
    Ok(report)
}

/// Scans only what a unified diff adds (a pull request): the files it touches, and findings
/// on its added lines.
pub fn scan_diff(dir: &Path, diff: &str, options: &ScanOptions) -> Result<ScanReport, ScanError> {
    let mut options = options.clone();
    options.added_lines = Some(parse_unified_diff(diff)?);
    scan_tree(dir, &options)
}
