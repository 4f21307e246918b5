//! How severe an advisory is: a computed CVSS score mapped to Moat's [`Severity`] scale
//! (Critical ≥ 9.0, High ≥ 7.0, Medium ≥ 4.0, Low > 0), or a label written by the database.
//!
//! Preference, most trusted first: a CVSS v3.x vector, a CVSS v4.0 vector (v3 first because it
//! is what most `fail_on` thresholds were calibrated with, and most records carry it), then a
//! label (`database_specific.severity`, `ecosystem_specific.severity`, Debian urgencies).

use moat_pipelines::Severity;
use serde::Serialize;

use super::cvss;

/// The severity of an advisory and, when it came from a vector, the score and vector.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Rating {
    pub severity: Option<Severity>,
    pub score: Option<f64>,
    pub vector: Option<String>,
}

impl Rating {
    /// From OSV `severity[]` entries (`type`, `score`): the first scorable CVSS_V3 vector, else
    /// the first scorable CVSS_V4 one. `None` when there is none.
    pub fn from_vectors<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<Self> {
        let entries: Vec<(&str, &str)> = entries.into_iter().collect();
        for wanted in ["CVSS_V3", "CVSS_V4"] {
            for (kind, vector) in &entries {
                if *kind != wanted {
                    continue;
                }
                let scored = if wanted == "CVSS_V3" {
                    cvss::v3_base_score(vector)
                } else {
                    cvss::v4_score(vector)
                };
                if let Ok(score) = scored {
                    return Some(Rating {
                        severity: from_score(score),
                        score: Some(score),
                        vector: Some(vector.trim().to_string()),
                    });
                }
            }
        }
        None
    }

    /// From a label such as GitHub's `HIGH` or `MODERATE`.
    pub fn from_label(label: &str) -> Option<Self> {
        from_label(label).map(|s| Rating {
            severity: Some(s),
            score: None,
            vector: None,
        })
    }
}

/// CVSS's qualitative scale on Moat's four levels; a score of 0 has no severity.
pub fn from_score(score: f64) -> Option<Severity> {
    if score >= 9.0 {
        Some(Severity::Critical)
    } else if score >= 7.0 {
        Some(Severity::High)
    } else if score >= 4.0 {
        Some(Severity::Medium)
    } else if score > 0.0 {
        Some(Severity::Low)
    } else {
        None
    }
}

/// Severity labels used by advisory databases (GitHub, Debian urgencies, Ubuntu priorities).
pub fn from_label(label: &str) -> Option<Severity> {
    Some(match label.trim().to_ascii_lowercase().as_str() {
        "critical" => Severity::Critical,
        "high" | "important" => Severity::High,
        "medium" | "moderate" => Severity::Medium,
        "low" | "negligible" | "unimportant" => Severity::Low,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds() {
        assert_eq!(from_score(9.0), Some(Severity::Critical));
        assert_eq!(from_score(8.9), Some(Severity::High));
        assert_eq!(from_score(7.0), Some(Severity::High));
        assert_eq!(from_score(6.9), Some(Severity::Medium));
        assert_eq!(from_score(4.0), Some(Severity::Medium));
        assert_eq!(from_score(3.9), Some(Severity::Low));
        assert_eq!(from_score(0.1), Some(Severity::Low));
        assert_eq!(from_score(0.0), None);
    }

    #[test]
    fn labels() {
        assert_eq!(from_label("MODERATE"), Some(Severity::Medium));
        assert_eq!(from_label("HIGH"), Some(Severity::High));
        assert_eq!(from_label("unknown"), None);
    }

    #[test]
    fn v3_preferred_over_v4() {
        let r = Rating::from_vectors([
            (
                "CVSS_V4",
                "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
            ),
            ("CVSS_V3", "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N"),
        ])
        .unwrap();
        assert_eq!(r.score, Some(5.5));
        assert_eq!(r.severity, Some(Severity::Medium));
        let r = Rating::from_vectors([(
            "CVSS_V4",
            "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
        )])
        .unwrap();
        assert_eq!(r.severity, Some(Severity::Critical));
        assert_eq!(Rating::from_vectors([("CVSS_V3", "garbage")]), None);
    }
}
