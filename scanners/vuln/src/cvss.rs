//! CVSS scores computed from vector strings: v3.0/v3.1 base scores (the specification's
//! formula and its `Roundup`), and v4.0 scores (the specification's MacroVector lookup table
//! with its severity-distance interpolation, as in FIRST's reference calculator).
//!
//! Owns arithmetic only; turning a score into a [`Severity`](moat_pipelines::Severity) is
//! [`crate::severity`]'s job.

use std::collections::HashMap;

/// A vector this module cannot score.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CvssError {
    #[error("not a CVSS v{0} vector (it must start with CVSS:{0}/)")]
    Prefix(&'static str),
    #[error("malformed CVSS metric \"{0}\"")]
    Malformed(String),
    #[error("unknown CVSS metric \"{0}\"")]
    UnknownMetric(String),
    #[error("invalid value for CVSS metric \"{0}\"")]
    InvalidValue(String),
    #[error("CVSS metric {0} appears twice")]
    Duplicate(String),
    #[error("CVSS vector lacks the mandatory metric {0}")]
    Missing(&'static str),
}

/// Scores a v3.x or v4.0 vector, whichever its prefix says.
pub fn score(vector: &str) -> Result<f64, CvssError> {
    let v = vector.trim();
    if v.starts_with("CVSS:4.0/") {
        v4_score(v)
    } else {
        v3_base_score(v)
    }
}

/// `metric:value` pairs after the prefix, each metric once, checked against `allowed`.
fn metrics<'a>(
    body: &'a str,
    allowed: &dyn Fn(&str, &str) -> Option<bool>,
) -> Result<HashMap<&'a str, &'a str>, CvssError> {
    let mut out = HashMap::new();
    for field in body.split('/') {
        let (k, v) = field
            .split_once(':')
            .ok_or_else(|| CvssError::Malformed(field.to_string()))?;
        match allowed(k, v) {
            None => return Err(CvssError::UnknownMetric(k.to_string())),
            Some(false) => return Err(CvssError::InvalidValue(k.to_string())),
            Some(true) => {}
        }
        if out.insert(k, v).is_some() {
            return Err(CvssError::Duplicate(k.to_string()));
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// CVSS v3.x

/// The base score of a CVSS v3.0 or v3.1 vector. Temporal and environmental metrics may be
/// present; the base score ignores them.
pub fn v3_base_score(vector: &str) -> Result<f64, CvssError> {
    let body = vector
        .trim()
        .strip_prefix("CVSS:3.1/")
        .or_else(|| vector.trim().strip_prefix("CVSS:3.0/"))
        .ok_or(CvssError::Prefix("3"))?;
    let allowed = |k: &str, v: &str| -> Option<bool> {
        let values: &[&str] = match k {
            "AV" | "MAV" => &["N", "A", "L", "P", "X"],
            "AC" | "MAC" => &["L", "H", "X"],
            "PR" | "MPR" => &["N", "L", "H", "X"],
            "UI" | "MUI" => &["N", "R", "X"],
            "S" | "MS" => &["U", "C", "X"],
            "C" | "I" | "A" | "MC" | "MI" | "MA" => &["H", "L", "N", "X"],
            "E" => &["X", "U", "P", "F", "H"],
            "RL" => &["X", "O", "T", "W", "U"],
            "RC" => &["X", "U", "R", "C"],
            "CR" | "IR" | "AR" => &["X", "L", "M", "H"],
            _ => return None,
        };
        // `X` (not defined) only exists for the non-base metrics.
        let base = matches!(k, "AV" | "AC" | "PR" | "UI" | "S" | "C" | "I" | "A");
        Some(values.contains(&v) && !(base && v == "X"))
    };
    let m = metrics(body, &allowed)?;
    let get = |k: &'static str| m.get(k).copied().ok_or(CvssError::Missing(k));
    let changed = get("S")? == "C";
    let av = match get("AV")? {
        "N" => 0.85,
        "A" => 0.62,
        "L" => 0.55,
        _ => 0.2,
    };
    let ac = if get("AC")? == "L" { 0.77 } else { 0.44 };
    let pr = match (get("PR")?, changed) {
        ("N", _) => 0.85,
        ("L", false) => 0.62,
        ("L", true) => 0.68,
        (_, false) => 0.27,
        (_, true) => 0.5,
    };
    let ui = if get("UI")? == "N" { 0.85 } else { 0.62 };
    let cia = |k| -> Result<f64, CvssError> {
        Ok(match get(k)? {
            "H" => 0.56,
            "L" => 0.22,
            _ => 0.0,
        })
    };
    let iss = 1.0 - (1.0 - cia("C")?) * (1.0 - cia("I")?) * (1.0 - cia("A")?);
    let impact = if changed {
        7.52 * (iss - 0.029) - 3.25 * (iss - 0.02).powi(15)
    } else {
        6.42 * iss
    };
    let exploitability = 8.22 * av * ac * pr * ui;
    if impact <= 0.0 {
        return Ok(0.0);
    }
    Ok(if changed {
        roundup((1.08 * (impact + exploitability)).min(10.0))
    } else {
        roundup((impact + exploitability).min(10.0))
    })
}

/// CVSS v3.1's `Roundup`: the smallest one-decimal number not below the input, computed on
/// integers so that floating-point noise (e.g. 4.000000000001) does not round up a whole step.
fn roundup(x: f64) -> f64 {
    let i = (x * 100_000.0).round() as i64;
    if i % 10_000 == 0 {
        i as f64 / 100_000.0
    } else {
        ((i / 10_000) + 1) as f64 / 10.0
    }
}

// ---------------------------------------------------------------------------------------
// CVSS v4.0
//
// The tables below are the CVSS v4.0 specification's reference data (MacroVector scores,
// highest-severity vectors per equivalence class, and class depths), as published by FIRST
// with its reference calculator: Copyright (c) 2023 FIRST.ORG, Inc., Red Hat, and
// contributors, BSD-2-Clause. The scoring procedure follows the specification's section 8.

/// A CVSS v4.0 score (CVSS-B, -BT, -BE or -BTE, according to the metrics present).
pub fn v4_score(vector: &str) -> Result<f64, CvssError> {
    let body = vector
        .trim()
        .strip_prefix("CVSS:4.0/")
        .ok_or(CvssError::Prefix("4.0"))?;
    let m = metrics(body, &v4_allowed)?;
    for k in [
        "AV", "AC", "AT", "PR", "UI", "VC", "VI", "VA", "SC", "SI", "SA",
    ] {
        if !m.contains_key(k) {
            return Err(CvssError::Missing(k));
        }
    }
    Ok(V4 { m }.score())
}

fn v4_allowed(k: &str, v: &str) -> Option<bool> {
    let values: &[&str] = match k {
        "AV" => &["N", "A", "L", "P"],
        "AC" => &["L", "H"],
        "AT" => &["N", "P"],
        "PR" => &["N", "L", "H"],
        "UI" => &["N", "P", "A"],
        "VC" | "VI" | "VA" | "SC" | "SI" | "SA" => &["H", "L", "N"],
        "E" => &["X", "A", "P", "U"],
        "CR" | "IR" | "AR" => &["X", "H", "M", "L"],
        "MAV" => &["X", "N", "A", "L", "P"],
        "MAC" => &["X", "L", "H"],
        "MAT" => &["X", "N", "P"],
        "MPR" => &["X", "N", "L", "H"],
        "MUI" => &["X", "N", "P", "A"],
        "MVC" | "MVI" | "MVA" | "MSC" => &["X", "H", "L", "N"],
        "MSI" | "MSA" => &["X", "S", "H", "L", "N"],
        "S" => &["X", "N", "P"],
        "AU" => &["X", "N", "Y"],
        "R" => &["X", "A", "U", "I"],
        "V" => &["X", "D", "C"],
        "RE" => &["X", "L", "M", "H"],
        "U" => &["X", "Clear", "Green", "Amber", "Red"],
        _ => return None,
    };
    Some(values.contains(&v))
}

struct V4<'a> {
    m: HashMap<&'a str, &'a str>,
}

impl V4<'_> {
    /// The effective value of a metric: its modified (environmental) value when given,
    /// with the specification's defaults for unset threat and requirement metrics.
    fn get(&self, metric: &str) -> &str {
        let selected = self.m.get(metric).copied().unwrap_or("X");
        match (metric, selected) {
            ("E", "X") => return "A",
            ("CR" | "IR" | "AR", "X") => return "H",
            _ => {}
        }
        let modified = self.m.get(format!("M{metric}").as_str());
        if let Some(modified) = modified.filter(|m| **m != "X") {
            return modified;
        }
        selected
    }

    fn is(&self, metric: &str, value: &str) -> bool {
        self.get(metric) == value
    }

    /// The six equivalence-class levels (EQ1..EQ6).
    fn macro_vector(&self) -> [u8; 6] {
        let (av_n, pr_n, ui_n) = (self.is("AV", "N"), self.is("PR", "N"), self.is("UI", "N"));
        let eq1 = if av_n && pr_n && ui_n {
            0
        } else if (av_n || pr_n || ui_n) && !self.is("AV", "P") {
            1
        } else {
            2
        };
        let eq2 = if self.is("AC", "L") && self.is("AT", "N") {
            0
        } else {
            1
        };
        let (vc_h, vi_h, va_h) = (self.is("VC", "H"), self.is("VI", "H"), self.is("VA", "H"));
        let eq3 = if vc_h && vi_h {
            0
        } else if vc_h || vi_h || va_h {
            1
        } else {
            2
        };
        let eq4 = if self.is("SI", "S") || self.is("SA", "S") {
            0
        } else if self.is("SC", "H") || self.is("SI", "H") || self.is("SA", "H") {
            1
        } else {
            2
        };
        let eq5 = match self.get("E") {
            "A" => 0,
            "P" => 1,
            _ => 2,
        };
        let eq6 = if (self.is("CR", "H") && vc_h)
            || (self.is("IR", "H") && vi_h)
            || (self.is("AR", "H") && va_h)
        {
            0
        } else {
            1
        };
        [eq1, eq2, eq3, eq4, eq5, eq6]
    }

    fn score(&self) -> f64 {
        if ["VC", "VI", "VA", "SC", "SI", "SA"]
            .iter()
            .all(|k| self.is(k, "N"))
        {
            return 0.0;
        }
        let mv = self.macro_vector();
        let value = lookup(mv).expect("every reachable MacroVector is in the table");
        let [eq1, eq2, eq3, eq4, eq5, eq6] = mv;
        let lower = |i: usize| {
            let mut next = mv;
            next[i] += 1;
            lookup(next)
        };
        let score_eq1 = lower(0);
        let score_eq2 = lower(1);
        let score_eq3eq6 = match (eq3, eq6) {
            (0, 0) => {
                let left = lower(5);
                let right = lower(2);
                // As the reference calculator's max(left, right) with NaN for a missing
                // side: a missing left side wins (NaN), a missing right side loses.
                match (left, right) {
                    (Some(l), Some(r)) => Some(if r > l { r } else { l }),
                    (l, None) => l,
                    (None, Some(_)) => None,
                }
            }
            (1, 0) => lower(5),
            (0, 1) | (1, 1) => lower(2),
            _ => {
                let mut next = mv;
                next[2] += 1;
                next[5] += 1;
                lookup(next)
            }
        };
        let score_eq4 = lower(3);
        let score_eq5 = lower(4);

        // The highest-severity vectors of this MacroVector; the first one that the vector does
        // not exceed in any metric is the reference for the distances.
        let mut dist = [0.0f64; 14];
        'search: for a in EQ1_MAX[eq1 as usize] {
            for b in EQ2_MAX[eq2 as usize] {
                for c in eq3_eq6_max(eq3, eq6) {
                    for d in EQ4_MAX[eq4 as usize] {
                        let e = EQ5_MAX[eq5 as usize];
                        let max = format!("{a}{b}{c}{d}{e}");
                        dist = self.distances(&max);
                        if dist.iter().all(|x| *x >= 0.0) {
                            break 'search;
                        }
                    }
                }
            }
        }
        let [av, pr, ui, ac, at, vc, vi, va, sc, si, sa, cr, ir, ar] = dist;
        let current_eq1 = av + pr + ui;
        let current_eq2 = ac + at;
        let current_eq3eq6 = vc + vi + va + cr + ir + ar;
        let current_eq4 = sc + si + sa;

        let step = 0.1;
        let max_severity_eq1 = f64::from([1, 4, 5][eq1 as usize]) * step;
        let max_severity_eq2 = f64::from([1, 2][eq2 as usize]) * step;
        let max_severity_eq3eq6 = f64::from(match (eq3, eq6) {
            (0, 0) => 7,
            (0, _) => 6,
            (1, _) => 8,
            _ => 10,
        }) * step;
        let max_severity_eq4 = f64::from([6, 5, 4][eq4 as usize]) * step;

        let mut n_lower = 0u32;
        let mut total = 0.0;
        let parts = [
            (score_eq1, current_eq1 / max_severity_eq1),
            (score_eq2, current_eq2 / max_severity_eq2),
            (score_eq3eq6, current_eq3eq6 / max_severity_eq3eq6),
            (score_eq4, current_eq4 / max_severity_eq4),
            // EQ5's distance is always 0: there is no gradation inside an exploit maturity.
            (score_eq5, 0.0),
        ];
        for (next, percent) in parts {
            if let Some(next) = next {
                let available = value - next;
                if available >= 0.0 {
                    n_lower += 1;
                    total += available * percent;
                }
            }
        }
        let mean = if n_lower == 0 {
            0.0
        } else {
            total / f64::from(n_lower)
        };
        round1((value - mean).clamp(0.0, 10.0))
    }

    /// Severity distances of this vector from a highest-severity vector, in the order
    /// AV PR UI AC AT VC VI VA SC SI SA CR IR AR.
    fn distances(&self, max: &str) -> [f64; 14] {
        let max: HashMap<&str, &str> = max.split('/').filter_map(|f| f.split_once(':')).collect();
        let level = |metric: &str, value: &str| -> f64 {
            match (metric, value) {
                ("AV", "N") | ("PR", "N") | ("UI", "N") | ("AC", "L") | ("AT", "N") => 0.0,
                ("AV", "A") | ("PR", "L") | ("UI", "P") | ("AC", "H") | ("AT", "P") => 0.1,
                ("AV", "L") | ("PR", "H") | ("UI", "A") => 0.2,
                ("AV", "P") => 0.3,
                ("VC" | "VI" | "VA", "H") => 0.0,
                ("VC" | "VI" | "VA", "L") => 0.1,
                ("VC" | "VI" | "VA", "N") => 0.2,
                ("SI" | "SA", "S") => 0.0,
                ("SC" | "SI" | "SA", "H") => 0.1,
                ("SC" | "SI" | "SA", "L") => 0.2,
                ("SC" | "SI" | "SA", "N") => 0.3,
                ("CR" | "IR" | "AR", "H") => 0.0,
                ("CR" | "IR" | "AR", "M") => 0.1,
                ("CR" | "IR" | "AR", "L") => 0.2,
                _ => 0.0,
            }
        };
        let names = [
            "AV", "PR", "UI", "AC", "AT", "VC", "VI", "VA", "SC", "SI", "SA", "CR", "IR", "AR",
        ];
        names.map(|k| level(k, self.get(k)) - level(k, max.get(k).copied().unwrap_or("")))
    }
}

/// Round half up to one decimal, after the reference calculator's epsilon (so that
/// 8.6 - 7.15 = 1.4499999999999993 rounds to 1.5).
fn round1(x: f64) -> f64 {
    ((x + 1e-6) * 10.0).round() / 10.0
}

const EQ1_MAX: [&[&str]; 3] = [
    &["AV:N/PR:N/UI:N/"],
    &["AV:A/PR:N/UI:N/", "AV:N/PR:L/UI:N/", "AV:N/PR:N/UI:P/"],
    &["AV:P/PR:N/UI:N/", "AV:A/PR:L/UI:P/"],
];
const EQ2_MAX: [&[&str]; 2] = [&["AC:L/AT:N/"], &["AC:H/AT:N/", "AC:L/AT:P/"]];
const EQ4_MAX: [&[&str]; 3] = [
    &["SC:H/SI:S/SA:S/"],
    &["SC:H/SI:H/SA:H/"],
    &["SC:L/SI:L/SA:L/"],
];
const EQ5_MAX: [&str; 3] = ["E:A/", "E:P/", "E:U/"];

fn eq3_eq6_max(eq3: u8, eq6: u8) -> &'static [&'static str] {
    match (eq3, eq6) {
        (0, 0) => &["VC:H/VI:H/VA:H/CR:H/IR:H/AR:H/"],
        (0, _) => &[
            "VC:H/VI:H/VA:L/CR:M/IR:M/AR:H/",
            "VC:H/VI:H/VA:H/CR:M/IR:M/AR:M/",
        ],
        (1, 0) => &[
            "VC:L/VI:H/VA:H/CR:H/IR:H/AR:H/",
            "VC:H/VI:L/VA:H/CR:H/IR:H/AR:H/",
        ],
        (1, _) => &[
            "VC:L/VI:H/VA:L/CR:H/IR:M/AR:H/",
            "VC:L/VI:H/VA:H/CR:H/IR:M/AR:M/",
            "VC:H/VI:L/VA:H/CR:M/IR:H/AR:M/",
            "VC:H/VI:L/VA:L/CR:M/IR:H/AR:H/",
            "VC:L/VI:L/VA:H/CR:H/IR:H/AR:M/",
        ],
        _ => &["VC:L/VI:L/VA:L/CR:H/IR:H/AR:H/"],
    }
}

fn lookup(mv: [u8; 6]) -> Option<f64> {
    let key = mv.iter().fold(0u32, |acc, d| acc * 10 + u32::from(*d));
    MACRO_VECTOR_SCORES
        .binary_search_by_key(&key, |(k, _)| *k)
        .ok()
        .map(|i| MACRO_VECTOR_SCORES[i].1)
}

/// MacroVector (EQ1..EQ6 as decimal digits) → score, sorted by MacroVector.
#[rustfmt::skip]
const MACRO_VECTOR_SCORES: [(u32, f64); 270] = [
    (0, 10.0), (1, 9.9), (10, 9.8), (11, 9.5), (20, 9.5), (21, 9.2),
    (100, 10.0), (101, 9.6), (110, 9.3), (111, 8.7), (120, 9.1), (121, 8.1),
    (200, 9.3), (201, 9.0), (210, 8.9), (211, 8.0), (220, 8.1), (221, 6.8),
    (1000, 9.8), (1001, 9.5), (1010, 9.5), (1011, 9.2), (1020, 9.0), (1021, 8.4),
    (1100, 9.3), (1101, 9.2), (1110, 8.9), (1111, 8.1), (1120, 8.1), (1121, 6.5),
    (1200, 8.8), (1201, 8.0), (1210, 7.8), (1211, 7.0), (1220, 6.9), (1221, 4.8),
    (2001, 9.2), (2011, 8.2), (2021, 7.2), (2101, 7.9), (2111, 6.9), (2121, 5.0),
    (2201, 6.9), (2211, 5.5), (2221, 2.7),
    (10000, 9.9), (10001, 9.7), (10010, 9.5), (10011, 9.2), (10020, 9.2), (10021, 8.5),
    (10100, 9.5), (10101, 9.1), (10110, 9.0), (10111, 8.3), (10120, 8.4), (10121, 7.1),
    (10200, 9.2), (10201, 8.1), (10210, 8.2), (10211, 7.1), (10220, 7.2), (10221, 5.3),
    (11000, 9.5), (11001, 9.3), (11010, 9.2), (11011, 8.5), (11020, 8.5), (11021, 7.3),
    (11100, 9.2), (11101, 8.2), (11110, 8.0), (11111, 7.2), (11120, 7.0), (11121, 5.9),
    (11200, 8.4), (11201, 7.0), (11210, 7.1), (11211, 5.2), (11220, 5.0), (11221, 3.0),
    (12001, 8.6), (12011, 7.5), (12021, 5.2), (12101, 7.1), (12111, 5.2), (12121, 2.9),
    (12201, 6.3), (12211, 2.9), (12221, 1.7),
    (100000, 9.8), (100001, 9.5), (100010, 9.4), (100011, 8.7), (100020, 9.1), (100021, 8.1),
    (100100, 9.4), (100101, 8.9), (100110, 8.6), (100111, 7.4), (100120, 7.7), (100121, 6.4),
    (100200, 8.7), (100201, 7.5), (100210, 7.4), (100211, 6.3), (100220, 6.3), (100221, 4.9),
    (101000, 9.4), (101001, 8.9), (101010, 8.8), (101011, 7.7), (101020, 7.6), (101021, 6.7),
    (101100, 8.6), (101101, 7.6), (101110, 7.4), (101111, 5.8), (101120, 5.9), (101121, 5.0),
    (101200, 7.2), (101201, 5.7), (101210, 5.7), (101211, 5.2), (101220, 5.2), (101221, 2.5),
    (102001, 8.3), (102011, 7.0), (102021, 5.4), (102101, 6.5), (102111, 5.8), (102121, 2.6),
    (102201, 5.3), (102211, 2.1), (102221, 1.3),
    (110000, 9.5), (110001, 9.0), (110010, 8.8), (110011, 7.6), (110020, 7.6), (110021, 7.0),
    (110100, 9.0), (110101, 7.7), (110110, 7.5), (110111, 6.2), (110120, 6.1), (110121, 5.3),
    (110200, 7.7), (110201, 6.6), (110210, 6.8), (110211, 5.9), (110220, 5.2), (110221, 3.0),
    (111000, 8.9), (111001, 7.8), (111010, 7.6), (111011, 6.7), (111020, 6.2), (111021, 5.8),
    (111100, 7.4), (111101, 5.9), (111110, 5.7), (111111, 5.7), (111120, 4.7), (111121, 2.3),
    (111200, 6.1), (111201, 5.2), (111210, 5.7), (111211, 2.9), (111220, 2.4), (111221, 1.6),
    (112001, 7.1), (112011, 5.9), (112021, 3.0), (112101, 5.8), (112111, 2.6), (112121, 1.5),
    (112201, 2.3), (112211, 1.3), (112221, 0.6),
    (200000, 9.3), (200001, 8.7), (200010, 8.6), (200011, 7.2), (200020, 7.5), (200021, 5.8),
    (200100, 8.6), (200101, 7.4), (200110, 7.4), (200111, 6.1), (200120, 5.6), (200121, 3.4),
    (200200, 7.0), (200201, 5.4), (200210, 5.2), (200211, 4.0), (200220, 4.0), (200221, 2.2),
    (201000, 8.5), (201001, 7.5), (201010, 7.4), (201011, 5.5), (201020, 6.2), (201021, 5.1),
    (201100, 7.2), (201101, 5.7), (201110, 5.5), (201111, 4.1), (201120, 4.6), (201121, 1.9),
    (201200, 5.3), (201201, 3.6), (201210, 3.4), (201211, 1.9), (201220, 1.9), (201221, 0.8),
    (202001, 6.4), (202011, 5.1), (202021, 2.0), (202101, 4.7), (202111, 2.1), (202121, 1.1),
    (202201, 2.4), (202211, 0.9), (202221, 0.4),
    (210000, 8.8), (210001, 7.5), (210010, 7.3), (210011, 5.3), (210020, 6.0), (210021, 5.0),
    (210100, 7.3), (210101, 5.5), (210110, 5.9), (210111, 4.0), (210120, 4.1), (210121, 2.0),
    (210200, 5.4), (210201, 4.3), (210210, 4.5), (210211, 2.2), (210220, 2.0), (210221, 1.1),
    (211000, 7.5), (211001, 5.5), (211010, 5.8), (211011, 4.5), (211020, 4.0), (211021, 2.1),
    (211100, 6.1), (211101, 5.1), (211110, 4.8), (211111, 1.8), (211120, 2.0), (211121, 0.9),
    (211200, 4.6), (211201, 1.8), (211210, 1.7), (211211, 0.7), (211220, 0.8), (211221, 0.2),
    (212001, 5.3), (212011, 2.4), (212021, 1.4), (212101, 2.4), (212111, 1.2), (212121, 0.5),
    (212201, 1.0), (212211, 0.3), (212221, 0.1),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v3_examples_from_the_specification() {
        let cases = [
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10.0),
            ("CVSS:3.0/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1),
            ("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N", 5.5),
            ("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0),
            ("CVSS:3.1/AV:P/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N", 1.6),
            (
                "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/E:P/RL:O/RC:C",
                9.8,
            ),
        ];
        for (v, want) in cases {
            assert_eq!(v3_base_score(v), Ok(want), "{v}");
        }
    }

    #[test]
    fn roundup_ignores_float_noise() {
        assert_eq!(roundup(4.000_000_000_01), 4.0);
        assert_eq!(roundup(4.02), 4.1);
    }

    #[test]
    fn v4_examples() {
        let cases = [
            (
                "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
                9.3,
            ),
            (
                "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:N/VI:N/VA:N/SC:N/SI:N/SA:N",
                0.0,
            ),
            (
                "CVSS:4.0/AV:N/AC:H/AT:P/PR:H/UI:P/VC:N/VI:L/VA:L/SC:N/SI:N/SA:N",
                2.0,
            ),
        ];
        for (v, want) in cases {
            assert_eq!(v4_score(v), Ok(want), "{v}");
        }
    }

    #[test]
    fn bad_vectors() {
        assert_eq!(v3_base_score("AV:N/AC:L"), Err(CvssError::Prefix("3")));
        assert_eq!(
            v3_base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H"),
            Err(CvssError::Missing("A"))
        );
        assert_eq!(
            v3_base_score("CVSS:3.1/AV:Q/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"),
            Err(CvssError::InvalidValue("AV".into()))
        );
        assert_eq!(
            v4_score("CVSS:4.0/AV:N/AV:N"),
            Err(CvssError::Duplicate("AV".into()))
        );
        assert_eq!(
            score("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N"),
            Err(CvssError::Missing("SA"))
        );
    }
}
