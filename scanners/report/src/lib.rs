//! What every scanner's report shares, so that `--format` and severities mean the same for
//! all of them: the one [`Severity`] scale (also `fail_on`'s, re-exported by
//! `moat-pipelines`), the output [`Format`], pretty JSON, and the SARIF 2.1.0 pieces: the log
//! envelope ([`sarif_log`]), a result's level, `security-severity` score and artifact
//! location. Pure: no I/O. Each scanner keeps its own table and JSON shapes (users and
//! baselines read them) and its own rule descriptors; it must not write its own SARIF
//! envelope or severity mapping.

use std::fmt::{self, Write as _};
use std::str::FromStr;

use serde_json::{Map, Value, json};

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

/// The SARIF level of a finding whose severity may be unknown (an advisory without a score):
/// unknown is a note, like low.
pub fn level_of(severity: Option<Severity>) -> &'static str {
    severity.map_or("note", level)
}

/// `$schema` of every SARIF log Moat writes.
pub const SARIF_SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

/// A SARIF 2.1.0 log with one run of the `moat` tool. `driver` adds to the tool's driver
/// (`version`, `informationUri`, `rules`), `run` to the run (`results`, `columnKind`,
/// `invocations`).
pub fn sarif_log(driver: Map<String, Value>, run: Map<String, Value>) -> Value {
    let mut d = Map::new();
    d.insert("name".into(), "moat".into());
    d.extend(driver);
    let mut r = Map::new();
    r.insert("tool".into(), json!({ "driver": d }));
    r.extend(run);
    json!({
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [r],
    })
}

/// What every scanner's finding has in common, as SARIF reads it: the rule, how bad, one
/// line of message, and where. Each scanner maps its own finding to this for the SARIF result
/// and adds what is its own (rule index, fingerprints, properties) to the returned object.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding<'a> {
    pub rule_id: &'a str,
    /// `None` when the advisory carries no usable score.
    pub severity: Option<Severity>,
    pub message: String,
    pub location: Location<'a>,
}

/// Where a finding is.
#[derive(Debug, Clone, PartialEq)]
pub enum Location<'a> {
    /// A file of the scanned tree (`%SRCROOT%`-relative, `/`-separated), 1-based position.
    Source {
        path: &'a str,
        line: u32,
        column: u32,
        end_line: Option<u32>,
        /// The (masked) line, when the scanner shows one.
        snippet: Option<&'a str>,
    },
    /// An artifact named as is: the file inside an image that declared a package.
    Artifact { uri: &'a str },
}

impl Finding<'_> {
    /// The SARIF result: `ruleId`, `level`, `message` and one location.
    pub fn sarif_result(&self) -> Map<String, Value> {
        let physical = match &self.location {
            Location::Source {
                path,
                line,
                column,
                end_line,
                snippet,
            } => {
                let mut region = Map::new();
                region.insert("startLine".into(), (*line).into());
                region.insert("startColumn".into(), (*column).into());
                if let Some(end) = end_line {
                    region.insert("endLine".into(), (*end).into());
                }
                if let Some(text) = snippet {
                    region.insert("snippet".into(), json!({ "text": text }));
                }
                json!({
                    "artifactLocation": { "uri": uri_path(path), "uriBaseId": "%SRCROOT%" },
                    "region": region,
                })
            }
            Location::Artifact { uri } => json!({ "artifactLocation": { "uri": uri } }),
        };
        fields(json!({
            "ruleId": self.rule_id,
            "level": level_of(self.severity),
            "message": { "text": self.message },
            "locations": [{ "physicalLocation": physical }],
        }))
    }
}

/// The entries of a JSON object literal, for [`sarif_log`]'s arguments.
pub fn fields(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordering_is_least_severe_first() {
        assert!(Severity::Low < Severity::Medium);
        assert!(Severity::High < Severity::Critical);
        assert_eq!(Severity::ALL.iter().max(), Some(&Severity::Critical));
        let mut worst_first = Severity::ALL.to_vec();
        worst_first.sort_by_key(|s| std::cmp::Reverse(*s));
        assert_eq!(worst_first[0], Severity::Critical);
    }

    #[test]
    fn names_round_trip_and_serde_stays_compatible() {
        for s in Severity::ALL {
            assert_eq!(Severity::parse(s.as_str()), Some(s));
        }
        assert_eq!(Severity::parse("High"), None);
        // The pipeline model and the runner protocol have always carried the variant name.
        assert_eq!(
            serde_json::to_value(Severity::Critical).unwrap(),
            "Critical"
        );
        let read: Severity = serde_json::from_value("High".into()).unwrap();
        assert_eq!(read, Severity::High);
        let read: Severity = serde_json::from_value("medium".into()).unwrap();
        assert_eq!(read, Severity::Medium);
    }

    #[test]
    fn sarif_envelope() {
        let log = sarif_log(
            fields(json!({ "version": "1" })),
            fields(json!({ "results": [] })),
        );
        assert_eq!(log["version"], "2.1.0");
        assert_eq!(log["$schema"], SARIF_SCHEMA);
        assert_eq!(log["runs"][0]["tool"]["driver"]["name"], "moat");
        assert_eq!(log["runs"][0]["tool"]["driver"]["version"], "1");
        assert_eq!(log["runs"][0]["results"], json!([]));
        assert_eq!(level_of(None), "note");
        assert_eq!(level_of(Some(Severity::High)), "error");
    }
}
