//! What every scanner's report shares, so that `--format` and severities mean the same for
//! all of them: the [`Severity`] of a finding, the output [`Format`], pretty JSON, and the
//! SARIF 2.1.0 level, `security-severity` score and artifact URI of a finding. Pure: no I/O.

use std::fmt::{self, Write as _};
use std::str::FromStr;

use serde_json::Value;

/// How bad a finding is, the one scale of every scanner and of `fail_on` gates. Ordered least
/// severe first (`Low < Critical`), so a threshold reads `severity >= fail_on`; a report that
/// lists the worst first sorts by [`std::cmp::Reverse`] of it.
///
/// Serialised as the variant name (`"Critical"`), as the pipeline model and the runner protocol
/// always have; the lowercase names of `.moat.yml` (`"critical"`) are accepted when reading.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Severity {
    #[serde(alias = "low")]
    Low,
    #[serde(alias = "medium")]
    Medium,
    #[serde(alias = "high")]
    High,
    #[serde(alias = "critical")]
    Critical,
}

impl Severity {
    /// Every severity, least severe first.
    pub const ALL: [Severity; 4] = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    /// The lowercase name used in `.moat.yml`, tables and JSON reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Reads a lowercase name (`critical`, `high`, `medium`, `low`).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A report's output: a table for people, JSON for tools and baselines, SARIF 2.1.0 for
/// code-scanning dashboards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Sarif,
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "table" => Ok(Format::Table),
            "json" => Ok(Format::Json),
            "sarif" => Ok(Format::Sarif),
            other => Err(format!(
                "unknown format `{other}` (expected table, json or sarif)"
            )),
        }
    }
}

/// Pretty JSON with a final newline.
pub fn pretty(value: &Value) -> String {
    let mut s = serde_json::to_string_pretty(value).unwrap_or_default();
    s.push('\n');
    s
}

/// The SARIF result level of a severity.
pub fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low => "note",
    }
}

/// The score code-scanning dashboards sort by (CVSS-like, 0-10).
pub fn security_severity(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "3.0",
    }
}

/// Percent-encodes what may not stand in a URI path.
pub fn uri_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}
