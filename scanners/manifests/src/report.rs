//! Output formats, in the style of the secret scanner's: a table for people, JSON (an array of
//! findings) for tools, SARIF 2.1.0 for code-scanning dashboards. Unusable files are not in the
//! table or the JSON (the CLI prints them to standard error); SARIF carries them as tool
//! notifications.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde_json::{Value, json};

use moat_report::{Location, fields, level, pretty, sarif_log, security_severity};
use sha2::{Digest, Sha256};

use super::rules::{self, Profile};
use super::{Finding, Format, ManifestReport};

const PSS_DOC: &str = "https://kubernetes.io/docs/concepts/security/pod-security-standards/";

/// The report in `format`, ending with a newline.
pub fn render(report: &ManifestReport, format: Format) -> String {
    match format {
        Format::Table => table(report),
        Format::Json => pretty(&json_findings(report)),
        Format::Sarif => pretty(&sarif(report)),
    }
}

/// `Kind/name`, the way kubectl names objects.
fn object(f: &Finding) -> String {
    format!("{}/{}", f.kind, f.name)
}

/// One row per finding, the remediation of each check found, then a summary line.
pub fn table(report: &ManifestReport) -> String {
    let mut out = String::new();
    let findings = &report.findings;
    if !findings.is_empty() {
        let location = |f: &Finding| format!("{}:{}", f.file, f.line);
        let width = |get: &dyn Fn(&Finding) -> String, min: usize, max: usize| {
            findings
                .iter()
                .map(|f| get(f).chars().count())
                .max()
                .unwrap_or(min)
                .clamp(min, max)
        };
        let id_w = width(&|f| f.id.to_string(), 2, 40);
        let loc_w = width(&location, 8, 60);
        let obj_w = width(&object, 6, 50);
        let ns_w = width(&|f| f.namespace.clone().unwrap_or_default(), 9, 30);
        let ctr_w = width(&|f| f.container.clone().unwrap_or_default(), 9, 30);
        let _ = writeln!(
            out,
            "{:<8}  {:<id_w$}  {:<loc_w$}  {:<ns_w$}  {:<obj_w$}  {:<ctr_w$}  MESSAGE",
            "SEVERITY", "ID", "LOCATION", "NAMESPACE", "OBJECT", "CONTAINER"
        );
        for f in findings {
            let _ = writeln!(
                out,
                "{:<8}  {:<id_w$}  {:<loc_w$}  {:<ns_w$}  {:<obj_w$}  {:<ctr_w$}  {}",
                f.severity.as_str(),
                f.id,
                location(f),
                f.namespace.as_deref().unwrap_or("-"),
                object(f),
                f.container.as_deref().unwrap_or("-"),
                f.message
            );
        }
        out.push_str("\nRemediation:\n");
        let mut seen = BTreeSet::new();
        for f in findings {
            if seen.insert(f.id) {
                let _ = writeln!(out, "  {:<id_w$}  {}", f.id, f.remediation);
            }
        }
        out.push('\n');
    }
    let n = findings.len();
    let objects: BTreeSet<(&str, &str, Option<&str>, &str)> = findings
        .iter()
        .map(|f| {
            (
                f.file.as_str(),
                f.kind.as_str(),
                f.namespace.as_deref(),
                f.name.as_str(),
            )
        })
        .collect();
    if n == 0 {
        out.push_str("No findings");
    } else {
        let _ = write!(
            out,
            "{n} finding{} in {} object{}",
            plural(n),
            objects.len(),
            plural(objects.len())
        );
    }
    let stats = &report.stats;
    let _ = write!(
        out,
        " ({} suppressed; {} workload{} in {} file{}",
        report.suppressed.len(),
        stats.workloads,
        plural(stats.workloads),
        stats.files_scanned,
        plural(stats.files_scanned)
    );
    if !report.errors.is_empty() {
        let _ = write!(out, "; {} unusable", report.errors.len());
    }
    out.push_str(").\n");
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn finding_json(f: &Finding) -> Value {
    json!({
        "id": f.id,
        "severity": f.severity.as_str(),
        "kind": f.kind,
        "namespace": f.namespace,
        "name": f.name,
        "container": f.container,
        "file": f.file,
        "line": f.line,
        "message": f.message,
        "remediation": f.remediation,
    })
}

/// The findings that block, as a JSON array (suppressed ones are left out).
pub fn json_findings(report: &ManifestReport) -> Value {
    Value::Array(report.findings.iter().map(finding_json).collect())
}

/// Stable across unrelated edits that move lines: the check, the file and the object, not the
/// position.
fn fingerprint(f: &Finding) -> String {
    let mut h = Sha256::new();
    for part in [
        f.id,
        &f.file,
        &f.kind,
        f.namespace.as_deref().unwrap_or(""),
        &f.name,
        f.container.as_deref().unwrap_or(""),
        &f.message,
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

/// A SARIF 2.1.0 log with one run; suppressed findings are included with their suppression,
/// as the format intends, and unusable files as error notifications.
pub fn sarif(report: &ManifestReport) -> Value {
    let rule_index = |id: &str| rules::ALL.iter().position(|r| r.id == id).unwrap_or(0);
    let descriptors: Vec<Value> = rules::ALL
        .iter()
        .map(|r| {
            let mut d = json!({
                "id": r.id,
                "name": r.id,
                "shortDescription": { "text": r.title },
                "help": { "text": r.remediation },
                "defaultConfiguration": { "level": level(r.severity) },
                "properties": {
                    "tags": ["security", "kubernetes", r.profile.as_str()],
                    "security-severity": security_severity(r.severity),
                },
            });
            if r.profile != Profile::Hygiene {
                d["helpUri"] = PSS_DOC.into();
            }
            d
        })
        .collect();
    let result = |f: &Finding, suppression: Option<Value>| {
        let mut qualified = match &f.namespace {
            Some(ns) => format!("{ns}/{}/{}", f.kind, f.name),
            None => format!("{}/{}", f.kind, f.name),
        };
        if let Some(c) = &f.container {
            let _ = write!(qualified, "/{c}");
        }
        let mut v = Value::Object(
            moat_report::Finding {
                rule_id: f.id,
                severity: Some(f.severity),
                message: f.message.clone(),
                location: Location::Source {
                    path: &f.file,
                    line: f.line,
                    column: f.column,
                    end_line: None,
                    snippet: None,
                },
            }
            .sarif_result(),
        );
        v["ruleIndex"] = rule_index(f.id).into();
        v["locations"][0]["logicalLocations"] = json!([{
            "name": f.container.as_deref().unwrap_or(&f.name),
            "fullyQualifiedName": qualified,
            "kind": if f.container.is_some() { "member" } else { "object" },
        }]);
        v["partialFingerprints"] = json!({ "moatManifest/v1": fingerprint(f) });
        v["properties"] = json!({
            "kind": f.kind,
            "namespace": f.namespace,
            "name": f.name,
            "container": f.container,
            "remediation": f.remediation,
        });
        if let Some(s) = suppression {
            v["suppressions"] = json!([s]);
        }
        v
    };
    let mut results: Vec<Value> = report.findings.iter().map(|f| result(f, None)).collect();
    for s in &report.suppressed {
        let suppression = json!({ "kind": "inSource", "justification": s.reason });
        results.push(result(&s.finding, Some(suppression)));
    }
    let notifications: Vec<Value> = report
        .errors
        .iter()
        .map(|e| json!({ "level": "error", "message": { "text": e.to_string() } }))
        .collect();
    sarif_log(
        fields(json!({
            "version": env!("CARGO_PKG_VERSION"),
            "informationUri": PSS_DOC,
            "rules": descriptors,
        })),
        fields(json!({
            "invocations": [{
                "executionSuccessful": report.errors.is_empty(),
                "toolExecutionNotifications": notifications,
            }],
            "columnKind": "unicodeCodePoints",
            "results": results,
        })),
    )
}
