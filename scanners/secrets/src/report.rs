//! Output formats: a table for people, JSON for tools and baselines, SARIF 2.1.0 for code
//! scanning dashboards. All of them are built from [`Finding`]s, which hold no raw secret.

use std::fmt::Write as _;

use serde_json::{Value, json};

use moat_report::{Format, Location, fields, level, pretty, sarif_log, security_severity};

use super::{AllowSource, Finding, ScanReport, Suppression, builtin_rules};

/// The report in `format`, ending with a newline.
pub fn render(report: &ScanReport, format: Format) -> String {
    match format {
        Format::Table => table(report),
        Format::Json => pretty(&json_report(report)),
        Format::Sarif => pretty(&sarif(report)),
    }
}

/// One row per finding, then a summary line.
pub fn table(report: &ScanReport) -> String {
    let mut out = String::new();
    if !report.findings.is_empty() {
        let location = |f: &Finding| format!("{}:{}:{}", f.file, f.line, f.column);
        let rule_w = report
            .findings
            .iter()
            .map(|f| f.rule.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let loc_w = report
            .findings
            .iter()
            .map(|f| location(f).chars().count())
            .max()
            .unwrap_or(8)
            .clamp(8, 60);
        let _ = writeln!(
            out,
            "{:<8}  {:<rule_w$}  {:<loc_w$}  EXCERPT",
            "SEVERITY", "RULE", "LOCATION"
        );
        for f in &report.findings {
            let _ = writeln!(
                out,
                "{:<8}  {:<rule_w$}  {:<loc_w$}  {}",
                f.severity.as_str(),
                f.rule,
                location(f),
                f.excerpt
            );
        }
        out.push('\n');
    }
    let files: std::collections::BTreeSet<&str> =
        report.findings.iter().map(|f| f.file.as_str()).collect();
    let n = report.findings.len();
    if n == 0 {
        out.push_str("No secrets found");
    } else {
        let _ = write!(
            out,
            "{n} secret{} found in {} file{}",
            if n == 1 { "" } else { "s" },
            files.len(),
            if files.len() == 1 { "" } else { "s" }
        );
    }
    let stats = &report.stats;
    let _ = writeln!(
        out,
        " ({} suppressed; {} files, {} scanned).",
        report.suppressed.len(),
        stats.files_scanned,
        human_bytes(stats.bytes_scanned)
    );
    out
}

fn human_bytes(n: u64) -> String {
    if n >= 1_000_000 {
        format!("{:.1} MB", n as f64 / 1e6)
    } else {
        format!("{:.1} kB", n as f64 / 1e3)
    }
}

fn finding_json(f: &Finding) -> Value {
    json!({
        "rule": f.rule,
        "description": f.description,
        "severity": f.severity.as_str(),
        "file": f.file,
        "line": f.line,
        "column": f.column,
        "end_line": f.end_line,
        "fingerprint": f.fingerprint,
        "excerpt": f.excerpt,
    })
}

/// `{"findings": [...], "suppressed": [...], "stats": {...}}`; the object is also a valid
/// baseline.
pub fn json_report(report: &ScanReport) -> Value {
    let suppressed: Vec<Value> = report
        .suppressed
        .iter()
        .map(|s| {
            let mut v = finding_json(&s.finding);
            let map = v.as_object_mut().expect("object");
            match &s.by {
                Suppression::Inline => {
                    map.insert("suppressed_by".into(), "inline".into());
                }
                Suppression::Allowed(AllowSource::File { line, reason, .. }) => {
                    map.insert("suppressed_by".into(), "allow-file".into());
                    map.insert("allow_line".into(), (*line).into());
                    map.insert("reason".into(), reason.clone().into());
                }
                Suppression::Allowed(AllowSource::Baseline { .. }) => {
                    map.insert("suppressed_by".into(), "baseline".into());
                }
            }
            v
        })
        .collect();
    let stats = &report.stats;
    json!({
        "tool": "moat",
        "version": env!("CARGO_PKG_VERSION"),
        "findings": report.findings.iter().map(finding_json).collect::<Vec<_>>(),
        "suppressed": suppressed,
        "stats": {
            "files_scanned": stats.files_scanned,
            "bytes_scanned": stats.bytes_scanned,
            "skipped_binary": stats.skipped_binary,
            "skipped_large": stats.skipped_large,
            "skipped_lock": stats.skipped_lock,
            "skipped_dirs": stats.skipped_dirs,
            "skipped_symlinks": stats.skipped_symlinks,
        },
    })
}

/// A SARIF 2.1.0 log with one run; suppressed findings are included with their
/// suppression, as the format intends.
pub fn sarif(report: &ScanReport) -> Value {
    let rules = builtin_rules();
    let rule_index = |id: &str| rules.iter().position(|r| r.id == id).unwrap_or(0);
    let descriptors: Vec<Value> = rules
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "name": r.id,
                "shortDescription": { "text": r.description },
                "defaultConfiguration": { "level": level(r.severity) },
                "properties": {
                    "tags": ["security", "secret", r.family()],
                    "security-severity": security_severity(r.severity),
                },
            })
        })
        .collect();
    let result = |f: &Finding, suppression: Option<Value>| {
        let mut v = Value::Object(
            moat_report::Finding {
                rule_id: f.rule,
                severity: Some(f.severity),
                message: format!("{}: {}", f.description, f.excerpt),
                location: Location::Source {
                    path: &f.file,
                    line: f.line,
                    column: f.column,
                    end_line: Some(f.end_line),
                    snippet: Some(&f.excerpt),
                },
            }
            .sarif_result(),
        );
        v["ruleIndex"] = rule_index(f.rule).into();
        v["partialFingerprints"] = json!({ "moatSecret/v1": f.fingerprint });
        if let Some(s) = suppression {
            v["suppressions"] = json!([s]);
        }
        v
    };
    let mut results: Vec<Value> = report.findings.iter().map(|f| result(f, None)).collect();
    for s in &report.suppressed {
        let suppression = match &s.by {
            Suppression::Inline => json!({ "kind": "inSource", "justification": "moat:allow" }),
            Suppression::Allowed(AllowSource::File { reason, .. }) => {
                json!({ "kind": "external", "justification": reason })
            }
            Suppression::Allowed(AllowSource::Baseline { .. }) => {
                json!({ "kind": "external", "justification": "baseline" })
            }
        };
        results.push(result(&s.finding, Some(suppression)));
    }
    sarif_log(
        fields(json!({
            "version": env!("CARGO_PKG_VERSION"),
            "rules": descriptors,
        })),
        fields(json!({
            "columnKind": "unicodeCodePoints",
            "results": results,
        })),
    )
}
