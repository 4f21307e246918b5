//! OSV advisories: the record format as published (JSON or YAML), its compiled form with
//! versions parsed once, and the OSV rule for whether an installed version is affected.
//!
//! Owns the meaning of `affected[].ranges[]` (`ECOSYSTEM` and `SEMVER`; `GIT` ranges are
//! ignored) with `introduced` / `fixed` / `last_affected` / `limit` events, explicit
//! `affected[].versions`, `withdrawn`, and which severity a record carries. Loading files and
//! indexing records is [`crate::db`]'s job.

use std::cmp::Ordering;
use std::sync::OnceLock;

use moat_pipelines::yaml::{self, Node, NodeKind};
use serde::{Deserialize, Deserializer};

use super::Ecosystem;
use super::severity::Rating;
use super::version::{Scheme, Version};

// ---------------------------------------------------------------------------------------
// The record as written

/// One OSV record, with the fields matching needs (others are ignored).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct OsvRecord {
    pub id: String,
    #[serde(default, deserialize_with = "null_default")]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub summary: Option<String>,
    #[serde(default)]
    pub details: Option<String>,
    #[serde(default)]
    pub withdrawn: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub severity: Vec<OsvSeverity>,
    #[serde(default, deserialize_with = "null_default")]
    pub affected: Vec<OsvAffected>,
    #[serde(default)]
    pub database_specific: Specific,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OsvSeverity {
    #[serde(rename = "type")]
    pub kind: String,
    pub score: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct OsvAffected {
    #[serde(default)]
    pub package: Option<OsvPackage>,
    #[serde(default, deserialize_with = "null_default")]
    pub ranges: Vec<OsvRange>,
    #[serde(default, deserialize_with = "null_default")]
    pub versions: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub severity: Vec<OsvSeverity>,
    #[serde(default)]
    pub ecosystem_specific: Specific,
    #[serde(default)]
    pub database_specific: Specific,
}

/// The one thing read from a `database_specific` / `ecosystem_specific` object: a severity
/// label. Everything else in them (Go's symbol lists are large) is skipped without being
/// built, and so is a value that is not an object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Specific {
    pub severity: Option<String>,
}

impl<'de> Deserialize<'de> for Specific {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};

        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Specific;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Specific, A::Error> {
                let mut out = Specific::default();
                while let Some(key) = map.next_key::<String>()? {
                    if key == "severity" {
                        let v: serde_json::Value = map.next_value()?;
                        out.severity = v.as_str().map(str::to_string);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(out)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Specific, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Specific::default())
            }
            fn visit_unit<E>(self) -> Result<Specific, E> {
                Ok(Specific::default())
            }
            fn visit_none<E>(self) -> Result<Specific, E> {
                Ok(Specific::default())
            }
            fn visit_bool<E>(self, _: bool) -> Result<Specific, E> {
                Ok(Specific::default())
            }
            fn visit_i64<E>(self, _: i64) -> Result<Specific, E> {
                Ok(Specific::default())
            }
            fn visit_u64<E>(self, _: u64) -> Result<Specific, E> {
                Ok(Specific::default())
            }
            fn visit_f64<E>(self, _: f64) -> Result<Specific, E> {
                Ok(Specific::default())
            }
            fn visit_str<E>(self, _: &str) -> Result<Specific, E> {
                Ok(Specific::default())
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct OsvPackage {
    pub ecosystem: String,
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OsvRange {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, deserialize_with = "null_default")]
    pub events: Vec<OsvEvent>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct OsvEvent {
    #[serde(default)]
    pub introduced: Option<String>,
    #[serde(default)]
    pub fixed: Option<String>,
    #[serde(default)]
    pub last_affected: Option<String>,
    #[serde(default)]
    pub limit: Option<String>,
}

/// `null` reads as the empty default (some exporters write `"versions": null`).
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A record file that cannot be read as OSV.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OsvError {
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("invalid YAML at {line}:{column}: {message}")]
    Yaml {
        line: u32,
        column: u32,
        message: String,
    },
    #[error("not an OSV record: {0}")]
    Schema(String),
}

impl OsvRecord {
    pub fn from_json(text: &[u8]) -> Result<OsvRecord, OsvError> {
        serde_json::from_slice(text).map_err(|e| {
            if e.is_data() {
                OsvError::Schema(e.to_string())
            } else {
                OsvError::Json(e.to_string())
            }
        })
    }

    /// Reads a YAML record through Moat's YAML reader. Every scalar stays text: versions such
    /// as `1.10` must not become the number 1.1.
    pub fn from_yaml(text: &str) -> Result<OsvRecord, OsvError> {
        let limits = yaml::Limits {
            max_depth: 64,
            max_nodes: 2_000_000,
        };
        let node = yaml::parse_document(text, &limits).map_err(|d| OsvError::Yaml {
            line: d.pos.line,
            column: d.pos.col,
            message: d.message.to_string(),
        })?;
        serde_json::from_value(yaml_to_json(&node)).map_err(|e| OsvError::Schema(e.to_string()))
    }
}

/// A YAML tree as JSON, with every scalar as a string (OSV has no numeric or boolean field
/// that matching reads, and reading `1.10` as a number would corrupt a version).
fn yaml_to_json(node: &Node) -> serde_json::Value {
    use serde_json::Value;
    match &node.kind {
        NodeKind::Null => Value::Null,
        NodeKind::Scalar { value, .. } => Value::String(value.clone()),
        NodeKind::Seq(items) => Value::Array(items.iter().map(yaml_to_json).collect()),
        NodeKind::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    let key = k.as_str().unwrap_or("null").to_string();
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
    }
}

// ---------------------------------------------------------------------------------------
// Names and releases

/// A package name as the index keys it: PyPI names PEP 503-normalised (lowercase, runs of
/// `-`, `_`, `.` as one `-`); every other ecosystem's names as written.
pub fn normalize_name(ecosystem: Ecosystem, name: &str) -> String {
    match ecosystem {
        Ecosystem::PyPI => {
            let mut out = String::with_capacity(name.len());
            let mut sep = false;
            for c in name.trim().chars() {
                if matches!(c, '-' | '_' | '.') {
                    sep = true;
                    continue;
                }
                if sep && !out.is_empty() {
                    out.push('-');
                }
                sep = false;
                out.extend(c.to_lowercase());
            }
            out
        }
        _ => name.to_string(),
    }
}

const DEBIAN_RELEASES: [(&str, &str); 19] = [
    ("buzz", "1.1"),
    ("rex", "1.2"),
    ("bo", "1.3"),
    ("hamm", "2.0"),
    ("slink", "2.1"),
    ("potato", "2.2"),
    ("woody", "3.0"),
    ("sarge", "3.1"),
    ("etch", "4"),
    ("lenny", "5"),
    ("squeeze", "6"),
    ("wheezy", "7"),
    ("jessie", "8"),
    ("stretch", "9"),
    ("buster", "10"),
    ("bullseye", "11"),
    ("bookworm", "12"),
    ("trixie", "13"),
    ("forky", "14"),
];

/// A distribution release in one canonical spelling, so that an advisory's release and an
/// image's `etc/os-release` meet: Debian as its number (`bookworm`, `12`, `12.5` → `12`;
/// `sid` stays `sid`), Alpine as `major.minor` (`v3.18`, `3.18.4` → `3.18`).
pub fn canonical_release(ecosystem: Ecosystem, release: &str) -> Option<String> {
    let r = release.trim().to_ascii_lowercase();
    if r.is_empty() {
        return None;
    }
    match ecosystem {
        Ecosystem::Debian => {
            if let Some((_, n)) = DEBIAN_RELEASES.iter().find(|(name, _)| *name == r) {
                return Some((*n).to_string());
            }
            let major = r.split('.').next().unwrap_or(&r);
            // Before Debian 4 the minor number named the release (3.0 woody, 3.1 sarge).
            if major.parse::<u32>().is_ok_and(|m| m < 4) {
                return Some(r.split('.').take(2).collect::<Vec<_>>().join("."));
            }
            Some(major.to_string())
        }
        Ecosystem::Alpine => {
            let r = r.strip_prefix('v').unwrap_or(&r);
            Some(r.split('.').take(2).collect::<Vec<_>>().join("."))
        }
        _ => Some(r),
    }
}

// ---------------------------------------------------------------------------------------
// The compiled form

/// One advisory, ready for matching.
#[derive(Debug)]
pub struct Advisory {
    pub id: String,
    pub aliases: Vec<String>,
    /// The record's summary, or the first line of its details.
    pub summary: String,
    pub affected: Vec<Affected>,
}

/// One `affected[]` entry of a supported ecosystem.
#[derive(Debug)]
pub struct Affected {
    pub ecosystem: Ecosystem,
    /// Canonical release (see [`canonical_release`]) for `Debian:12`, `Alpine:v3.18`.
    pub release: Option<String>,
    /// Normalised (see [`normalize_name`]).
    pub name: String,
    pub ranges: Vec<Range>,
    pub versions: Vec<String>,
    /// `versions` parsed on first use: most entries are never consulted in a scan.
    parsed_versions: OnceLock<Vec<Option<Version>>>,
    pub rating: Rating,
}

/// An `ECOSYSTEM` or `SEMVER` range with its events parsed under the range's scheme.
#[derive(Debug)]
pub struct Range {
    pub scheme: Scheme,
    pub events: Vec<Event>,
}

#[derive(Debug)]
pub enum Event {
    /// `None` is `introduced: "0"`, before every version.
    Introduced(Option<Version>),
    Fixed(Version, String),
    LastAffected(Version),
    /// `None` is `limit: "*"`, after every version.
    Limit(Option<Version>),
}

/// What compiling a record dropped, for the load report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompileNotes {
    /// `affected[]` entries of ecosystems Moat does not scan.
    pub other_ecosystems: usize,
    /// Event versions that do not parse under their range's scheme (the event is dropped).
    pub bad_versions: usize,
}

/// The scheme a range's versions use: an `ECOSYSTEM` range uses its ecosystem's; a `SEMVER`
/// range SemVer, except that Go's SemVer ranges use Go's reading (same order, but it also
/// understands `go1.21rc2`-style installed versions).
pub fn range_scheme(ecosystem: Ecosystem, range_type: &str) -> Option<Scheme> {
    match range_type {
        "ECOSYSTEM" => Some(Scheme::for_ecosystem(ecosystem)),
        "SEMVER" if ecosystem == Ecosystem::Go => Some(Scheme::Go),
        "SEMVER" => Some(Scheme::Semver),
        _ => None,
    }
}

impl Advisory {
    /// Compiles a record; `None` when it is withdrawn. Affected entries of unknown
    /// ecosystems are dropped and counted in `notes`.
    pub fn compile(record: OsvRecord, notes: &mut CompileNotes) -> Option<Advisory> {
        if record
            .withdrawn
            .as_deref()
            .is_some_and(|w| !w.trim().is_empty())
        {
            return None;
        }
        let record_rating = Rating::from_vectors(
            record
                .severity
                .iter()
                .map(|s| (s.kind.as_str(), s.score.as_str())),
        );
        let record_label = record.database_specific.severity.clone();
        let mut affected = Vec::new();
        for a in record.affected {
            let Some(pkg) = &a.package else { continue };
            let Some(ecosystem) = Ecosystem::from_osv(&pkg.ecosystem) else {
                notes.other_ecosystems += 1;
                continue;
            };
            let release = pkg
                .ecosystem
                .split_once(':')
                .and_then(|(_, r)| canonical_release(ecosystem, r));
            let ranges = a
                .ranges
                .iter()
                .filter_map(|r| {
                    let scheme = range_scheme(ecosystem, &r.kind)?;
                    Some(Range {
                        scheme,
                        events: compile_events(scheme, &r.events, notes),
                    })
                })
                .collect();
            let rating = record_rating
                .clone()
                .or_else(|| {
                    Rating::from_vectors(
                        a.severity
                            .iter()
                            .map(|s| (s.kind.as_str(), s.score.as_str())),
                    )
                })
                .or_else(|| record_label.as_deref().and_then(Rating::from_label))
                .or_else(|| {
                    a.ecosystem_specific
                        .severity
                        .as_deref()
                        .or(a.database_specific.severity.as_deref())
                        .and_then(Rating::from_label)
                })
                .unwrap_or_default();
            affected.push(Affected::new(
                ecosystem, release, &pkg.name, ranges, a.versions, rating,
            ));
        }
        let summary = record
            .summary
            .filter(|s| !s.trim().is_empty())
            .or_else(|| {
                record
                    .details
                    .as_deref()
                    .and_then(|d| d.lines().find(|l| !l.trim().is_empty()))
                    .map(str::to_string)
            })
            .unwrap_or_default();
        Some(Advisory {
            id: record.id,
            aliases: record.aliases,
            summary: summary.trim().to_string(),
            affected,
        })
    }
}

fn compile_events(scheme: Scheme, events: &[OsvEvent], notes: &mut CompileNotes) -> Vec<Event> {
    let mut out = Vec::with_capacity(events.len());
    let mut parse = |s: &str| match Version::parse(scheme, s) {
        Ok(v) => Some(v),
        Err(_) => {
            notes.bad_versions += 1;
            None
        }
    };
    for e in events {
        if let Some(v) = &e.introduced {
            if v.trim() == "0" {
                out.push(Event::Introduced(None));
            } else if let Some(p) = parse(v) {
                out.push(Event::Introduced(Some(p)));
            }
        }
        if let Some((v, p)) = e.fixed.as_deref().and_then(|v| Some((v, parse(v)?))) {
            out.push(Event::Fixed(p, v.trim().to_string()));
        }
        if let Some(p) = e.last_affected.as_deref().and_then(&mut parse) {
            out.push(Event::LastAffected(p));
        }
        if let Some(v) = &e.limit {
            if v.trim() == "*" {
                out.push(Event::Limit(None));
            } else if let Some(p) = parse(v) {
                out.push(Event::Limit(Some(p)));
            }
        }
    }
    out
}

/// An installed version, parsed under each scheme at most once, on demand.
#[derive(Debug)]
pub struct Installed<'a> {
    pub raw: &'a str,
    parsed: [OnceLock<Option<Version>>; 5],
}

impl<'a> Installed<'a> {
    pub fn new(raw: &'a str) -> Self {
        Installed {
            raw,
            parsed: Default::default(),
        }
    }

    pub fn get(&self, scheme: Scheme) -> Option<&Version> {
        let slot = match scheme {
            Scheme::Dpkg => 0,
            Scheme::Apk => 1,
            Scheme::Pep440 => 2,
            Scheme::Semver => 3,
            Scheme::Go => 4,
        };
        self.parsed[slot]
            .get_or_init(|| Version::parse(scheme, self.raw).ok())
            .as_ref()
    }
}

fn lt(a: &Version, b: &Version) -> bool {
    a.compare(b) == Some(Ordering::Less)
}

fn le(a: &Version, b: &Version) -> bool {
    matches!(a.compare(b), Some(Ordering::Less | Ordering::Equal))
}

impl Range {
    /// OSV's rule: walking the events in version order, the version is affected after an
    /// `introduced` it has reached, until a `fixed` it has reached or a `last_affected` it has
    /// passed; and it must be below some `limit` when there are any.
    ///
    /// Computed without sorting (apk's order is not total): the nearest event at or below the
    /// version decides, and on a tie a closing event wins (`introduced: X` with `fixed: X` is
    /// an empty range).
    pub fn affects(&self, v: &Version) -> bool {
        let mut limited = false;
        let mut below_a_limit = false;
        // `None` inside: introduced "0".
        let mut introduced: Option<Option<&Version>> = None;
        let mut closed: Option<&Version> = None;
        for e in &self.events {
            match e {
                Event::Introduced(None) => {
                    introduced.get_or_insert(None);
                }
                Event::Introduced(Some(i)) if le(i, v) => match introduced {
                    Some(Some(cur)) if !lt(cur, i) => {}
                    _ => introduced = Some(Some(i)),
                },
                Event::Fixed(f, _) if le(f, v) && closed.is_none_or(|c| lt(c, f)) => {
                    closed = Some(f);
                }
                Event::LastAffected(l) if lt(l, v) && closed.is_none_or(|c| lt(c, l)) => {
                    closed = Some(l);
                }
                Event::Limit(l) => {
                    limited = true;
                    if l.as_ref().is_none_or(|l| lt(v, l)) {
                        below_a_limit = true;
                    }
                }
                _ => {}
            }
        }
        if limited && !below_a_limit {
            return false;
        }
        match (introduced, closed) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(None), Some(_)) => false,
            (Some(Some(i)), Some(c)) => lt(c, i),
        }
    }

    /// The fixed versions of this range above `v`.
    pub fn fixes_above<'r>(
        &'r self,
        v: &'r Version,
    ) -> impl Iterator<Item = (&'r Version, &'r str)> {
        self.events.iter().filter_map(move |e| match e {
            Event::Fixed(f, raw) if lt(v, f) => Some((f, raw.as_str())),
            _ => None,
        })
    }
}

impl Affected {
    pub fn new(
        ecosystem: Ecosystem,
        release: Option<String>,
        name: &str,
        ranges: Vec<Range>,
        versions: Vec<String>,
        rating: Rating,
    ) -> Affected {
        Affected {
            ecosystem,
            release,
            name: normalize_name(ecosystem, name),
            ranges,
            versions,
            parsed_versions: OnceLock::new(),
            rating,
        }
    }

    /// Whether `installed` is affected: listed in `versions` (textually, or equal under the
    /// ecosystem's ordering, so `1.0` matches `1.0.0` on PyPI) or inside any range. When it is,
    /// the smallest fixed version above it, if any.
    pub fn check(&self, installed: &Installed<'_>) -> Option<Option<String>> {
        let listed = !self.versions.is_empty() && {
            self.versions.iter().any(|s| s == installed.raw)
                || installed
                    .get(Scheme::for_ecosystem(self.ecosystem))
                    .is_some_and(|v| {
                        self.parsed_versions()
                            .iter()
                            .flatten()
                            .any(|p| p.compare(v) == Some(Ordering::Equal))
                    })
        };
        let in_range = self
            .ranges
            .iter()
            .any(|r| installed.get(r.scheme).is_some_and(|v| r.affects(v)));
        if !listed && !in_range {
            return None;
        }
        let mut best: Option<(&Version, &str)> = None;
        for r in &self.ranges {
            let Some(v) = installed.get(r.scheme) else {
                continue;
            };
            for (f, raw) in r.fixes_above(v) {
                if best.is_none_or(|(b, _)| f.compare(b) == Some(Ordering::Less)) {
                    best = Some((f, raw));
                }
            }
        }
        Some(best.map(|(_, raw)| raw.to_string()))
    }

    fn parsed_versions(&self) -> &[Option<Version>] {
        self.parsed_versions.get_or_init(|| {
            let scheme = Scheme::for_ecosystem(self.ecosystem);
            self.versions
                .iter()
                .map(|s| Version::parse(scheme, s).ok())
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(scheme: Scheme, events: &[(&str, &str)]) -> Range {
        let events: Vec<OsvEvent> = events
            .iter()
            .map(|(k, v)| {
                let mut e = OsvEvent::default();
                let v = Some(v.to_string());
                match *k {
                    "introduced" => e.introduced = v,
                    "fixed" => e.fixed = v,
                    "last_affected" => e.last_affected = v,
                    _ => e.limit = v,
                }
                e
            })
            .collect();
        let mut notes = CompileNotes::default();
        let r = Range {
            scheme,
            events: compile_events(scheme, &events, &mut notes),
        };
        assert_eq!(notes.bad_versions, 0);
        r
    }

    fn affects(r: &Range, v: &str) -> bool {
        r.affects(&Version::parse(r.scheme, v).unwrap())
    }

    #[test]
    fn events_in_any_order() {
        let r = range(
            Scheme::Semver,
            &[
                ("fixed", "2.5.0"),
                ("introduced", "2.0.0"),
                ("introduced", "0"),
                ("fixed", "1.5.0"),
            ],
        );
        for (v, want) in [
            ("0.1.0", true),
            ("1.4.9", true),
            ("1.5.0", false),
            ("1.9.0", false),
            ("2.0.0", true),
            ("2.4.0", true),
            ("2.5.0", false),
            ("3.0.0", false),
        ] {
            assert_eq!(affects(&r, v), want, "{v}");
        }
    }

    #[test]
    fn last_affected_and_limit() {
        let r = range(
            Scheme::Semver,
            &[("introduced", "1.0.0"), ("last_affected", "1.2.0")],
        );
        assert!(affects(&r, "1.2.0"));
        assert!(!affects(&r, "1.2.1"));
        assert!(!affects(&r, "0.9.0"));
        let r = range(Scheme::Semver, &[("introduced", "0"), ("limit", "2.0.0")]);
        assert!(affects(&r, "1.9.9"));
        assert!(!affects(&r, "2.0.0"));
        let r = range(Scheme::Semver, &[("introduced", "1.0.0"), ("limit", "*")]);
        assert!(affects(&r, "9.0.0"));
        let r = range(
            Scheme::Semver,
            &[("introduced", "1.0.0"), ("fixed", "1.0.0")],
        );
        assert!(!affects(&r, "1.0.0"));
    }

    #[test]
    fn fixed_version_is_the_nearest_above() {
        let a = Affected::new(
            Ecosystem::PyPI,
            None,
            "Foo_Bar",
            vec![
                range(Scheme::Pep440, &[("introduced", "0"), ("fixed", "1.5")]),
                range(
                    Scheme::Pep440,
                    &[("introduced", "1.0"), ("fixed", "1.2.post1")],
                ),
            ],
            vec!["0.9".into()],
            Rating::default(),
        );
        assert_eq!(a.name, "foo-bar");
        assert_eq!(
            a.check(&Installed::new("1.1")),
            Some(Some("1.2.post1".into()))
        );
        assert_eq!(a.check(&Installed::new("1.3")), Some(Some("1.5".into())));
        assert_eq!(a.check(&Installed::new("1.5")), None);
        // Listed as 0.9, installed as 0.9.0: the same PEP 440 version.
        assert_eq!(
            a.check(&Installed::new("0.9.0")),
            Some(Some("1.2.post1".into()))
        );
    }

    #[test]
    fn yaml_scalars_stay_text() {
        let r = OsvRecord::from_yaml(
            "id: X-1\naffected:\n- package: {name: a, ecosystem: PyPI}\n  versions: [1.10, 2.0]\n",
        )
        .unwrap();
        assert_eq!(r.affected[0].versions, ["1.10", "2.0"]);
    }

    #[test]
    fn severity_labels_in_specific_objects() {
        let r = OsvRecord::from_json(
            br#"{"id": "X", "database_specific": {"severity": "HIGH", "cwe_ids": ["CWE-1"]},
                 "affected": [{"package": {"name": "a", "ecosystem": "npm"},
                               "ecosystem_specific": "unexpected", "versions": null}]}"#,
        )
        .unwrap();
        assert_eq!(r.database_specific.severity.as_deref(), Some("HIGH"));
        assert_eq!(r.affected[0].ecosystem_specific, Specific::default());
        let mut notes = CompileNotes::default();
        let a = Advisory::compile(r, &mut notes).unwrap();
        assert_eq!(
            a.affected[0].rating.severity,
            Some(moat_pipelines::Severity::High)
        );
        assert!(matches!(
            OsvRecord::from_json(b"{\"id\": 1}"),
            Err(OsvError::Schema(_))
        ));
        assert!(matches!(OsvRecord::from_json(b"{"), Err(OsvError::Json(_))));
    }

    #[test]
    fn names_and_releases() {
        assert_eq!(
            normalize_name(Ecosystem::PyPI, "Zope.Interface__x"),
            "zope-interface-x"
        );
        assert_eq!(normalize_name(Ecosystem::CratesIo, "Foo_bar"), "Foo_bar");
        let d = |s| canonical_release(Ecosystem::Debian, s);
        assert_eq!(d("bookworm").as_deref(), Some("12"));
        assert_eq!(d("12.5").as_deref(), Some("12"));
        assert_eq!(d("3.1").as_deref(), Some("3.1"));
        assert_eq!(d("sarge").as_deref(), Some("3.1"));
        assert_eq!(d("sid").as_deref(), Some("sid"));
        let a = |s| canonical_release(Ecosystem::Alpine, s);
        assert_eq!(a("v3.18").as_deref(), Some("3.18"));
        assert_eq!(a("3.18.4").as_deref(), Some("3.18"));
    }

    #[test]
    fn withdrawn_records_compile_to_nothing() {
        let mut notes = CompileNotes::default();
        let rec = OsvRecord {
            id: "X".into(),
            withdrawn: Some("2024-01-01T00:00:00Z".into()),
            ..Default::default()
        };
        assert!(Advisory::compile(rec, &mut notes).is_none());
    }
}
