//! A whole vulnerability scan and its verdict: an image (from the engine or a `docker save`
//! file) or a source tree's lock files is inventoried and matched, then judged against a policy
//! — the `fail_on` threshold, ignores that need a reason and expire, `only_fixed`. Shared by
//! `moat scan image` and the `scan` stage, so both judge alike.

use std::path::Path;

use moat_pipelines::{Date, IgnoreRule, Severity};
use moat_report::{Location, fields, sarif_log};
use serde::Serialize;
use serde_json::{Value, json};

use super::db::Database;
use super::image::{self, ImageMeta, ImageTree};
use super::inventory::{self, OsRelease};
use super::matcher::{self, VulnFinding};
use super::{Package, sbom};

#[derive(Debug, thiserror::Error)]
pub enum VulnScanError {
    #[error(transparent)]
    Image(#[from] image::ImageError),
    #[error(transparent)]
    Inventory(#[from] inventory::InventoryError),
    #[error("the scan task failed: {0}")]
    Task(String),
}

/// What an image contains and what is known about it.
#[derive(Debug, Clone)]
pub struct ImageScan {
    pub meta: ImageMeta,
    pub os: Option<OsRelease>,
    pub packages: Vec<Package>,
    pub findings: Vec<VulnFinding>,
    pub warnings: Vec<String>,
}

impl ImageScan {
    pub fn from_tree(tree: ImageTree, db: &Database) -> Self {
        let inv = inventory::inventory_image(&tree);
        let findings = matcher::match_packages(db, &inv.packages);
        ImageScan {
            meta: tree.meta,
            os: inv.os,
            packages: inv.packages,
            findings,
            warnings: inv.warnings,
        }
    }

    /// The CycloneDX 1.5 SBOM of the image.
    pub fn sbom(&self) -> Value {
        sbom::cyclonedx(&self.meta, self.os.as_ref(), &self.packages)
    }

    /// The digest that identifies exactly what was scanned: the pushed manifest digest when
    /// there is one, else the image ID.
    pub fn digest(&self) -> String {
        self.meta
            .repo_digests
            .iter()
            .find_map(|d| d.split_once('@').map(|(_, dg)| dg.to_string()))
            .unwrap_or_else(|| self.meta.id.clone())
    }
}

/// Scans an image known to the engine (tag, ID or digest).
#[cfg(feature = "docker")]
pub async fn scan_image(
    docker: &bollard::Docker,
    reference: &str,
    db: &Database,
) -> Result<ImageScan, VulnScanError> {
    let tree = image::read_image(docker, reference).await?;
    Ok(ImageScan::from_tree(tree, db))
}

/// Scans a `docker save` tarball.
pub fn scan_saved(
    path: &Path,
    select: Option<&str>,
    db: &Database,
) -> Result<ImageScan, VulnScanError> {
    let tree = image::read_saved(path, select)?;
    Ok(ImageScan::from_tree(tree, db))
}

/// Scans a source tree's lock files.
pub fn scan_source(
    dir: &Path,
    db: &Database,
) -> Result<(Vec<Package>, Vec<VulnFinding>), VulnScanError> {
    let inv = inventory::scan_dependencies(dir)?;
    let findings = matcher::match_packages(db, &inv.packages);
    Ok((inv.packages, findings))
}

/// How findings are judged.
#[derive(Debug, Clone)]
pub struct ScanPolicy {
    /// Findings at this severity or above fail.
    pub fail_on: Severity,
    pub ignores: Vec<IgnoreRule>,
    /// Only findings with a fixed version count.
    pub only_fixed: bool,
    pub today: Date,
}

/// Today's date (UTC).
pub fn today() -> Date {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0) as i64;
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as u16;
    Date { year, month, day }
}

/// A finding and what the policy made of it.
#[derive(Debug, Clone, Serialize)]
pub struct Judged {
    #[serde(flatten)]
    pub finding: VulnFinding,
    /// `fail`, `ignored`, `below-threshold`, `no-fix`.
    pub verdict: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub passed: bool,
    pub fail_on: &'static str,
    pub findings: Vec<Judged>,
    /// Ignores that would have applied but expired: they say so.
    pub expired_ignores: Vec<String>,
}

impl Verdict {
    pub fn failing(&self) -> impl Iterator<Item = &Judged> {
        self.findings.iter().filter(|j| j.verdict == "fail")
    }

    /// `passed`, or `failed: 3 findings at high or above (…)`.
    pub fn summary(&self) -> String {
        let n = self.failing().count();
        if self.passed {
            format!(
                "passed ({} finding{}, none failing at {})",
                self.findings.len(),
                if self.findings.len() == 1 { "" } else { "s" },
                self.fail_on
            )
        } else {
            let mut s = format!(
                "failed: {n} finding{} at {} or above",
                if n == 1 { "" } else { "s" },
                self.fail_on
            );
            if !self.expired_ignores.is_empty() {
                s.push_str(&format!(" ({})", self.expired_ignores.join("; ")));
            }
            s
        }
    }
}

/// Applies the policy to the findings.
pub fn judge(findings: &[VulnFinding], policy: &ScanPolicy) -> Verdict {
    let mut out = Vec::new();
    let mut expired = Vec::new();
    for f in findings {
        let rule = policy
            .ignores
            .iter()
            .find(|r| r.id == f.id || f.aliases.iter().any(|a| a == &r.id));
        let (verdict, note) = match rule {
            Some(r) if r.expires >= policy.today => ("ignored", Some(r.reason.clone())),
            other => {
                let expired_note = other.map(|r| {
                    let msg = format!("the ignore for {} expired on {}", r.id, r.expires);
                    if !expired.contains(&msg) {
                        expired.push(msg.clone());
                    }
                    msg
                });
                let severe = f.severity.is_some_and(|s| s >= policy.fail_on);
                if policy.only_fixed && f.fixed_version.is_none() {
                    ("no-fix", expired_note)
                } else if severe {
                    ("fail", expired_note)
                } else {
                    ("below-threshold", expired_note)
                }
            }
        };
        out.push(Judged {
            finding: f.clone(),
            verdict,
            note,
        });
    }
    Verdict {
        passed: !out.iter().any(|j| j.verdict == "fail"),
        fail_on: policy.fail_on.as_str(),
        findings: out,
        expired_ignores: expired,
    }
}

/// The table `moat scan image` and scan stages print.
pub fn table(scan_target: &str, digest: &str, verdict: &Verdict) -> String {
    let mut out = format!("{scan_target} ({digest})\n");
    if verdict.findings.is_empty() {
        out.push_str("no known vulnerabilities\n");
        return out;
    }
    out.push_str(&format!(
        "{:<22} {:<9} {:<28} {:<18} {:<18} {}\n",
        "ID", "SEVERITY", "PACKAGE", "INSTALLED", "FIXED", "VERDICT"
    ));
    for j in &verdict.findings {
        let f = &j.finding;
        out.push_str(&format!(
            "{:<22} {:<9} {:<28} {:<18} {:<18} {}{}\n",
            f.id,
            f.severity.map(|s| s.as_str()).unwrap_or("unknown"),
            f.package,
            f.installed_version,
            f.fixed_version.as_deref().unwrap_or("-"),
            j.verdict,
            j.note
                .as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        ));
    }
    out.push_str(&format!("{}\n", verdict.summary()));
    out
}

/// JSON: the image, its digest, the verdict and every finding (OSV `id` and `aliases`, package,
/// installed and fixed versions, severity, layer).
pub fn json_report(meta: Option<&ImageMeta>, digest: &str, verdict: &Verdict) -> Value {
    json!({
        "image": meta.map(|m| json!({
            "reference": m.reference,
            "id": m.id,
            "repo_digests": m.repo_digests,
            "layers": m.layers,
        })),
        "digest": digest,
        "passed": verdict.passed,
        "fail_on": verdict.fail_on,
        "summary": verdict.summary(),
        "expired_ignores": verdict.expired_ignores,
        "findings": verdict.findings,
    })
}

/// SARIF 2.1.0, one result per finding, located at the file that declared the package.
pub fn sarif(verdict: &Verdict) -> Value {
    let mut rules: Vec<Value> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut results = Vec::new();
    for j in &verdict.findings {
        let f = &j.finding;
        if seen.insert(f.id.clone()) {
            rules.push(json!({
                "id": f.id,
                "shortDescription": { "text": if f.summary.is_empty() { f.id.clone() } else { f.summary.clone() } },
                "properties": { "aliases": f.aliases, "security-severity": f.cvss_score.map(|s| format!("{s:.1}")) },
            }));
        }
        let mut result = Value::Object(
            moat_report::Finding {
                rule_id: &f.id,
                severity: f.severity,
                message: format!(
                    "{} {} {} is affected by {}{}",
                    f.ecosystem.osv_name(),
                    f.package,
                    f.installed_version,
                    f.id,
                    f.fixed_version
                        .as_deref()
                        .map(|v| format!("; fixed in {v}"))
                        .unwrap_or_default()
                ),
                location: Location::Artifact { uri: &f.location },
            }
            .sarif_result(),
        );
        result["partialFingerprints"] =
            json!({ "moat/v1": format!("{}/{}/{}", f.id, f.package, f.installed_version) });
        if j.verdict == "ignored" {
            result["suppressions"] = json!([{ "kind": "external", "justification": j.note }]);
        }
        results.push(result);
    }
    sarif_log(
        fields(json!({ "informationUri": "https://moat.invalid", "rules": rules })),
        fields(json!({ "results": results })),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Ecosystem;

    fn finding(id: &str, sev: Severity, fixed: Option<&str>) -> VulnFinding {
        VulnFinding {
            id: id.into(),
            aliases: vec![format!("CVE-{id}")],
            package: "urllib3".into(),
            ecosystem: Ecosystem::PyPI,
            source_package: None,
            installed_version: "1.24.1".into(),
            fixed_version: fixed.map(str::to_string),
            severity: Some(sev),
            cvss_score: None,
            cvss_vector: None,
            summary: String::new(),
            location: "x/METADATA".into(),
            layer: None,
        }
    }

    fn ignore(id: &str, y: u16) -> IgnoreRule {
        IgnoreRule {
            id: id.into(),
            reason: "not reachable".into(),
            expires: Date {
                year: y,
                month: 1,
                day: 1,
            },
            pos: Default::default(),
        }
    }

    #[test]
    fn thresholds_ignores_and_expiry() {
        let today = Date {
            year: 2026,
            month: 11,
            day: 27,
        };
        let findings = vec![
            finding("A", Severity::High, Some("2")),
            finding("B", Severity::Medium, None),
        ];
        let policy = ScanPolicy {
            fail_on: Severity::High,
            ignores: vec![],
            only_fixed: false,
            today,
        };
        let v = judge(&findings, &policy);
        assert!(!v.passed);
        assert_eq!(v.failing().count(), 1);
        // An ignore by alias with a future expiry lets it pass.
        let v = judge(
            &findings,
            &ScanPolicy {
                ignores: vec![ignore("CVE-A", 2027)],
                ..policy.clone()
            },
        );
        assert!(v.passed, "{}", v.summary());
        // An expired ignore stops applying and says so.
        let v = judge(
            &findings,
            &ScanPolicy {
                ignores: vec![ignore("A", 2026)],
                ..policy.clone()
            },
        );
        assert!(!v.passed);
        assert!(
            v.summary()
                .contains("the ignore for A expired on 2026-01-01"),
            "{}",
            v.summary()
        );
        // only_fixed: B has no fix; a medium floor would fail it otherwise.
        let v = judge(
            &findings,
            &ScanPolicy {
                fail_on: Severity::Medium,
                only_fixed: true,
                ignores: vec![ignore("A", 2030)],
                ..policy
            },
        );
        assert!(v.passed, "{}", v.summary());
    }

    #[test]
    fn today_is_a_real_date() {
        let d = today();
        assert!(d.year >= 2024 && (1..=12).contains(&d.month) && (1..=31).contains(&d.day));
    }
}
