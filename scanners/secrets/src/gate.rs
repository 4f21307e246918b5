//! The secret gate: before any stage runs, the source a run checks out (for a pull request:
//! only the lines its change adds) is scanned for credentials. A finding that is not
//! allow-listed blocks the run in `block` mode, is reported in `warn` mode, and the gate is
//! skipped in `off` mode. The administrator's mode is a floor that a repository cannot lower.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate as secrets;
use crate::{ScanOptions, ScanReport};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum GateMode {
    Off,
    Warn,
    #[default]
    Block,
}

impl GateMode {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "off" => GateMode::Off,
            "warn" => GateMode::Warn,
            "block" => GateMode::Block,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            GateMode::Off => "off",
            GateMode::Warn => "warn",
            GateMode::Block => "block",
        }
    }

    /// The stricter of the repository's wish and the administrator's floor.
    pub fn with_floor(self, floor: GateMode) -> GateMode {
        self.max(floor)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("cannot unpack the source for the secret gate: {0}")]
    Unpack(std::io::Error),
    #[error("secret scan failed: {0}")]
    Scan(#[from] secrets::ScanError),
}

/// What the gate decided.
#[derive(Debug, Clone)]
pub struct GateOutcome {
    pub mode: GateMode,
    /// `None` when the gate is off.
    pub report: Option<ScanReport>,
    pub blocked: bool,
}

impl GateOutcome {
    /// A one-line verdict: `passed`, `blocked by gate: secrets (2 findings)`, …
    pub fn summary(&self) -> String {
        match &self.report {
            None => "secret gate off".to_string(),
            Some(r) if r.findings.is_empty() => "secret gate passed".to_string(),
            Some(r) => {
                let n = r.findings.len();
                let what = format!("{n} finding{}", if n == 1 { "" } else { "s" });
                if self.blocked {
                    format!("blocked by gate: secrets ({what})")
                } else {
                    format!("secret gate warned ({what})")
                }
            }
        }
    }

    /// The gate's evidence for the audit trail and the API: mode, verdict and findings (which
    /// hold fingerprints and masked excerpts, never a secret).
    pub fn evidence(&self) -> serde_json::Value {
        serde_json::json!({
            "gate": "secrets",
            "mode": self.mode.as_str(),
            "blocked": self.blocked,
            "summary": self.summary(),
            "findings": self
                .report
                .as_ref()
                .map(secrets::report::json_report)
                .unwrap_or(serde_json::Value::Null),
        })
    }
}

/// A directory removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the gate over a workspace archive (a tar of the checked-out tree), unpacked into a
/// scratch directory under `tmp`. With `diff` (a unified diff of a pull request), only the lines
/// it adds are judged.
fn random_suffix() -> String {
    let n: u64 = rand::random();
    format!("{n:016x}")
}

pub fn check_archive(
    archive: &[u8],
    mode: GateMode,
    diff: Option<&str>,
    tmp: &Path,
) -> Result<GateOutcome, GateError> {
    if mode == GateMode::Off {
        return Ok(GateOutcome {
            mode,
            report: None,
            blocked: false,
        });
    }
    let dir = tmp.join(format!("moat-gate-{}", random_suffix()));
    std::fs::create_dir_all(&dir).map_err(GateError::Unpack)?;
    let scratch = Scratch(dir);
    // `unpack` refuses entries that would land outside the directory.
    tar::Archive::new(archive)
        .unpack(&scratch.0)
        .map_err(GateError::Unpack)?;
    let options = ScanOptions::default();
    let report = match diff {
        Some(d) => secrets::scan_diff(&scratch.0, d, &options)?,
        None => secrets::scan_tree(&scratch.0, &options)?,
    };
    let blocked = mode == GateMode::Block && !report.findings.is_empty();
    Ok(GateOutcome {
        mode,
        report: Some(report),
        blocked,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(files: &[(&str, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, content) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(content.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, content.as_bytes()).unwrap();
        }
        b.into_inner().unwrap()
    }

    // An AWS example key id assembled at run time, so this file does not trip the gate itself.
    fn leaked() -> String {
        format!("aws_access_key_id = {}{}\n", "AKIA", "ZQ3DRXWJ5OBVEH4P")
    }

    #[test]
    fn modes_and_floors() {
        assert_eq!(GateMode::Warn.with_floor(GateMode::Block), GateMode::Block);
        assert_eq!(GateMode::Block.with_floor(GateMode::Warn), GateMode::Block);
        assert_eq!(GateMode::Off.with_floor(GateMode::Warn), GateMode::Warn);
        assert_eq!(GateMode::parse("warn"), Some(GateMode::Warn));
        assert_eq!(GateMode::parse("nope"), None);
    }

    #[test]
    fn leaked_key_blocks_warns_or_is_ignored() {
        let tmp = std::env::temp_dir();
        let tar = archive(&[("README.md", "hello\n"), ("config/aws.ini", &leaked())]);
        let out = check_archive(&tar, GateMode::Block, None, &tmp).unwrap();
        assert!(out.blocked);
        assert_eq!(out.summary(), "blocked by gate: secrets (1 finding)");
        let evidence = out.evidence().to_string();
        assert!(evidence.contains("config/aws.ini"), "{evidence}");
        assert!(!evidence.contains("ZQ3DRXWJ5OBVEH4P"), "{evidence}");
        let out = check_archive(&tar, GateMode::Warn, None, &tmp).unwrap();
        assert!(!out.blocked);
        assert_eq!(out.summary(), "secret gate warned (1 finding)");
        let out = check_archive(&tar, GateMode::Off, None, &tmp).unwrap();
        assert!(!out.blocked && out.report.is_none());
        let clean = archive(&[("README.md", "hello\n")]);
        let out = check_archive(&clean, GateMode::Block, None, &tmp).unwrap();
        assert!(!out.blocked);
        assert_eq!(out.summary(), "secret gate passed");
    }

    #[test]
    fn allow_listed_fingerprints_pass() {
        let tmp = std::env::temp_dir();
        let tar = archive(&[("config/aws.ini", &leaked())]);
        let out = check_archive(&tar, GateMode::Block, None, &tmp).unwrap();
        let fp = out.report.unwrap().findings[0].fingerprint.clone();
        let allow = format!("{fp}  # rotated, kept as a test fixture\n");
        let tar = archive(&[
            ("config/aws.ini", &leaked()),
            (".moat/secrets.allow", &allow),
        ]);
        let out = check_archive(&tar, GateMode::Block, None, &tmp).unwrap();
        assert!(!out.blocked, "{}", out.summary());
    }
}
