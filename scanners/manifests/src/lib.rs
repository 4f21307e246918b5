//! The Kubernetes manifest scanner: judges the workloads of a tree of manifests against the
//! Pod Security Standards (baseline and restricted) and Moat's hygiene checks, for
//! `moat scan manifests` and the `scan.manifests` stage.
//!
//! - [`rules`]: the checks, as data (ID, severity, one-line remediation).
//! - `walk`: which files are manifests (`*.yaml`, `*.yml`, `*.json`), read under a size cap.
//! - `objects`: from multi-document YAML (and `List` kinds) to workloads: Pod, Deployment,
//!   StatefulSet, DaemonSet, Job, CronJob, ReplicaSet, ReplicationController, each with its pod
//!   spec and containers.
//! - `shape`: the YAML shape of every field the checks read; a workload Moat cannot read is a
//!   finding (`MOAT-K8S-MALFORMED-WORKLOAD`), never a silent pass.
//! - `pss`: the Pod Security Standards controls.
//! - `hygiene`: resources, probes, image tags and digests, secrets in env, service-account
//!   token, default namespace.
//! - `ignore`: the `moat.dev/ignore` annotation.
//! - [`report`]: table, JSON and SARIF 2.1.0 output.
//!
//! YAML is read by [`moat_pipelines::yaml`], the project's one YAML reader (JSON files too, as
//! JSON is YAML), so every finding carries the file and line of the field it is about. Input is
//! untrusted: files are size-capped, the YAML reader bounds nodes and depth, and a file that
//! cannot be read is a located [`ManifestError`] in the report, never a panic.

mod error;
mod hygiene;
mod ignore;
mod objects;
mod pss;
pub mod report;
pub mod rules;
mod shape;
mod walk;

use std::ops::RangeInclusive;
use std::path::Path;

use moat_pipelines::Pos;
use moat_pipelines::yaml::{self, Limits};

// Shared with the secret scanner, so that `--format` and severities mean the same for every
// scanner.
pub use error::ManifestError;
pub use ignore::IGNORE_ANNOTATION;
pub use moat_report::{Format, Severity};
pub use objects::WORKLOAD_KINDS;
pub use rules::{Check, Profile};

/// Files larger than this are refused (an error, so that padding is no way around the policy).
pub const DEFAULT_MAX_FILE_SIZE: u64 = 8 * 1024 * 1024;

/// Most manifest files in one scan.
pub const DEFAULT_MAX_FILES: usize = 10_000;

/// Bounds for one file's YAML stream: CRD schemas nest deeper than pipeline files, and a
/// bundle of manifests has more nodes, but an alias bomb still stops early.
pub const YAML_LIMITS: Limits = Limits {
    max_depth: 128,
    max_nodes: 500_000,
};

/// How to scan.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    pub max_file_size: u64,
    pub max_files: usize,
    /// Host ports allowed besides 0: the standard's "known list", empty by default (as in the
    /// built-in admission controller).
    pub allowed_host_ports: Vec<RangeInclusive<u16>>,
    /// Accept the SELinux type `container_engine_t`, which the standard allows since
    /// Kubernetes 1.31. Off by default, like policies written for earlier versions.
    pub allow_selinux_container_engine_t: bool,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            max_files: DEFAULT_MAX_FILES,
            allowed_host_ports: Vec::new(),
            allow_selinux_container_engine_t: false,
        }
    }
}

/// One check failed by one object (and container).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The check ID, e.g. `PSS-BASELINE-PRIVILEGED`.
    pub id: &'static str,
    pub severity: Severity,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    /// The container the finding is about; `None` for pod-level fields.
    pub container: Option<String>,
    /// Relative to the scanned directory, `/`-separated.
    pub file: String,
    /// 1-based position of the offending field (or of what lacks it).
    pub line: u32,
    pub column: u32,
    /// One line, never containing a secret value.
    pub message: String,
    pub remediation: &'static str,
}

impl Finding {
    /// The check that produced this finding.
    pub fn check(&self) -> Option<&'static Check> {
        rules::by_id(self.id)
    }
}

/// A finding that a `moat.dev/ignore` annotation suppressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppressed {
    pub finding: Finding,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanStats {
    pub files_scanned: usize,
    /// Non-empty YAML documents.
    pub documents: usize,
    /// Kubernetes objects (anything with a `kind`), list items included.
    pub objects: usize,
    /// Objects with a pod spec, which the checks ran on.
    pub workloads: usize,
}

/// The result of a scan: findings, suppressed findings, and the files that could not be used.
#[derive(Debug, Default)]
pub struct ManifestReport {
    /// Sorted by file, line, column, check ID.
    pub findings: Vec<Finding>,
    pub suppressed: Vec<Suppressed>,
    /// Files that could not be read or parsed. Any of them makes the input unusable.
    pub errors: Vec<ManifestError>,
    pub stats: ScanStats,
}

impl ManifestReport {
    /// True when nothing blocks.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }

    /// The CLI's exit code: 2 when some input was unusable, 1 when findings exist, else 0.
    pub fn exit_code(&self) -> u8 {
        if !self.errors.is_empty() {
            2
        } else if !self.findings.is_empty() {
            1
        } else {
            0
        }
    }

    fn finish(&mut self) {
        let key = |f: &Finding| {
            (
                f.file.clone(),
                f.line,
                f.column,
                f.id,
                f.container.clone(),
                f.message.clone(),
            )
        };
        self.findings.sort_by_cached_key(key);
        self.suppressed.sort_by_cached_key(|s| key(&s.finding));
    }
}

/// Scans a directory (every manifest file under it) or a single file.
pub fn scan_path(path: &Path, options: &ScanOptions) -> Result<ManifestReport, ManifestError> {
    let meta = std::fs::metadata(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => ManifestError::NotFound {
            path: path.to_path_buf(),
        },
        _ => ManifestError::Io {
            path: path.to_path_buf(),
            source,
        },
    })?;
    let files = if meta.is_dir() {
        walk::walk(path, options.max_files)?
    } else {
        vec![walk::FileEntry {
            rel: path.to_string_lossy().replace('\\', "/"),
            abs: path.to_path_buf(),
        }]
    };
    let mut report = ManifestReport::default();
    for file in &files {
        match walk::read(file, options.max_file_size) {
            Ok(text) => scan_into(&file.rel, &text, options, &mut report),
            Err(e) => report.errors.push(e),
        }
    }
    report.finish();
    Ok(report)
}

/// Scans the text of one file, named `file` in findings.
pub fn scan_source(file: &str, src: &str, options: &ScanOptions) -> ManifestReport {
    let mut report = ManifestReport::default();
    scan_into(file, src, options, &mut report);
    report.finish();
    report
}

fn scan_into(file: &str, src: &str, options: &ScanOptions, report: &mut ManifestReport) {
    report.stats.files_scanned += 1;
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    let docs = match yaml::parse_documents(src, &YAML_LIMITS) {
        Ok(docs) => docs,
        Err(d) => {
            let mut message = d.message;
            if src.contains("{{") {
                message.push_str(
                    " (this looks like a template: render it first, e.g. with `helm template`)",
                );
            }
            report.errors.push(ManifestError::Parse {
                file: file.to_string(),
                line: d.pos.line,
                column: d.pos.col,
                message,
            });
            return;
        }
    };
    for doc in docs.iter().filter(|d| !d.is_null()) {
        report.stats.documents += 1;
        let mut found = objects::Objects::default();
        objects::collect(doc, &mut found);
        report.stats.objects += found.objects;
        for m in &found.malformed {
            // Never suppressed: the annotation of an object that cannot be read is no more
            // trustworthy than the rest of it.
            for (pos, message) in &m.problems {
                let check = rules::MALFORMED_WORKLOAD;
                report.findings.push(Finding {
                    id: check.id,
                    severity: check.severity,
                    kind: m.kind.to_string(),
                    namespace: m.namespace.map(str::to_string),
                    name: m.name.to_string(),
                    container: None,
                    file: file.to_string(),
                    line: pos.line,
                    column: pos.col,
                    message: message.clone(),
                    remediation: check.remediation,
                });
            }
        }
        for w in &found.workloads {
            report.stats.workloads += 1;
            check_workload(file, w, options, report);
        }
    }
}

fn check_workload(
    file: &str,
    w: &objects::Workload<'_>,
    options: &ScanOptions,
    report: &mut ManifestReport,
) {
    let mut sink = Sink {
        file,
        workload: w,
        findings: Vec::new(),
    };
    pss::check(w, options, &mut sink);
    hygiene::check(w, &mut sink);
    let ignores = ignore::read(w);
    let found = std::mem::take(&mut sink.findings);
    for (pos, message) in &ignores.problems {
        sink.push(rules::IGNORE_INVALID, *pos, None, message.clone());
    }
    for (pos, message) in &w.problems {
        sink.push(rules::MALFORMED_WORKLOAD, *pos, None, message.clone());
    }
    // Problems with the annotation itself and with the object's shape are never suppressed.
    report.findings.append(&mut sink.findings);
    for finding in found {
        match ignores.reason(finding.id) {
            Some(reason) => report.suppressed.push(Suppressed {
                finding,
                reason: reason.to_string(),
            }),
            None => report.findings.push(finding),
        }
    }
}

/// Where the checks put what they find about one workload.
pub(crate) struct Sink<'a> {
    file: &'a str,
    workload: &'a objects::Workload<'a>,
    findings: Vec<Finding>,
}

impl Sink<'_> {
    pub(crate) fn push(
        &mut self,
        check: &'static Check,
        at: Pos,
        container: Option<&str>,
        message: impl Into<String>,
    ) {
        let w = self.workload;
        self.findings.push(Finding {
            id: check.id,
            severity: check.severity,
            kind: w.kind.to_string(),
            namespace: w.namespace.map(str::to_string),
            name: w.name.to_string(),
            container: container.map(str::to_string),
            file: self.file.to_string(),
            line: at.line,
            column: at.col,
            message: message.into(),
            remediation: check.remediation,
        });
    }
}
