//! Allow-listing: which findings a repository has accepted.
//!
//! - `.moat/secrets.allow` in the scanned tree: one `FINGERPRINT  # reason` per line; the
//!   reason is required so that every exception is explained where it is reviewed. Blank lines
//!   and `#` comment lines are ignored; anything else is a located error.
//! - A baseline: a previous JSON report (`moat scan secrets --format json`); its findings'
//!   fingerprints are accepted.
//! - Inline: a `moat:allow` comment on the line of the secret. `pragma: allowlist secret`
//!   (detect-secrets) and `gitleaks:allow` are honoured too, so trees that already use those
//!   tools do not need a second marker.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use memchr::memmem;

use super::{ALLOW_FILE, ScanError};

/// The inline markers, matched anywhere on the line.
pub const INLINE_MARKERS: &[&str] = &["moat:allow", "pragma: allowlist secret", "gitleaks:allow"];

pub(crate) fn has_inline_marker(line: &[u8]) -> bool {
    INLINE_MARKERS
        .iter()
        .any(|m| memmem::find(line, m.as_bytes()).is_some())
}

/// Where an accepted fingerprint comes from (recorded with a suppressed finding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowSource {
    File {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    Baseline {
        path: PathBuf,
    },
}

/// Accepted fingerprints.
#[derive(Debug, Clone, Default)]
pub struct Allowlist {
    entries: HashMap<String, AllowSource>,
}

fn is_fingerprint(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Allowlist {
    pub fn new() -> Self {
        Allowlist::default()
    }

    /// Reads `DIR/.moat/secrets.allow`; a tree without one allows nothing.
    pub fn load_dir(dir: &Path) -> Result<Self, ScanError> {
        let path = dir.join(ALLOW_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => Allowlist::parse(&String::from_utf8_lossy(&bytes), &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Allowlist::new()),
            Err(source) => Err(ScanError::Io { path, source }),
        }
    }

    /// Parses the text of an allow file; `path` is used in error messages and sources.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ScanError> {
        let mut list = Allowlist::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let error = |message: &str| ScanError::AllowFile {
                path: path.to_path_buf(),
                line,
                message: message.to_string(),
            };
            // The offending text is not echoed: a mistaken paste could be the secret itself.
            let Some((fp, reason)) = trimmed.split_once('#') else {
                return Err(error(
                    "missing reason: write `FINGERPRINT  # why this is not a leak`",
                ));
            };
            let fp = fp.trim();
            if !is_fingerprint(fp) {
                return Err(error("expected a fingerprint (64 hex digits) before `#`"));
            }
            let reason = reason.trim();
            if reason.is_empty() {
                return Err(error("empty reason after `#`"));
            }
            list.entries.insert(
                fp.to_ascii_lowercase(),
                AllowSource::File {
                    path: path.to_path_buf(),
                    line,
                    reason: reason.to_string(),
                },
            );
        }
        Ok(list)
    }

    /// Accepts the fingerprints of a previous JSON report (an array of findings, or an object
    /// with a `findings` array).
    pub fn add_baseline(&mut self, path: &Path) -> Result<(), ScanError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScanError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        self.add_baseline_json(&text, path)
    }

    pub fn add_baseline_json(&mut self, text: &str, path: &Path) -> Result<(), ScanError> {
        let error = |message: String| ScanError::Baseline {
            path: path.to_path_buf(),
            message,
        };
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| error(format!("not JSON: {e}")))?;
        let findings = match &value {
            serde_json::Value::Array(items) => items,
            serde_json::Value::Object(map) => match map.get("findings") {
                Some(serde_json::Value::Array(items)) => items,
                _ => return Err(error("expected an array of findings or `findings`".into())),
            },
            _ => return Err(error("expected an array of findings or `findings`".into())),
        };
        for (index, item) in findings.iter().enumerate() {
            let fp = item
                .get("fingerprint")
                .and_then(|f| f.as_str())
                .filter(|f| is_fingerprint(f))
                .ok_or_else(|| error(format!("finding {index}: no valid `fingerprint`")))?;
            self.entries
                .entry(fp.to_ascii_lowercase())
                .or_insert_with(|| AllowSource::Baseline {
                    path: path.to_path_buf(),
                });
        }
        Ok(())
    }

    pub fn insert(&mut self, fingerprint: &str, source: AllowSource) {
        self.entries
            .insert(fingerprint.to_ascii_lowercase(), source);
    }

    pub fn check(&self, fingerprint: &str) -> Option<&AllowSource> {
        self.entries.get(fingerprint)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

    #[test]
    fn allow_file_needs_a_reason() {
        let path = Path::new(".moat/secrets.allow");
        let ok =
            Allowlist::parse(&format!("# header\n\n{FP}  # test key, revoked\n"), path).unwrap();
        assert_eq!(
            ok.check(FP),
            Some(&AllowSource::File {
                path: path.into(),
                line: 3,
                reason: "test key, revoked".into()
            })
        );
        for (text, line, needle) in [
            (format!("{FP}\n"), 1, "missing reason"),
            (format!("\n{FP}  #   \n"), 2, "empty reason"),
            ("abc # short\n".to_string(), 1, "64 hex digits"),
        ] {
            let err = Allowlist::parse(&text, path).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!(".moat/secrets.allow:{line}: ")),
                "{err}"
            );
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn baseline_accepts_arrays_and_reports() {
        let mut list = Allowlist::new();
        let path = Path::new("b.json");
        list.add_baseline_json(&format!("[{{\"fingerprint\": \"{FP}\"}}]"), path)
            .unwrap();
        assert!(list.check(FP).is_some());
        let mut list = Allowlist::new();
        list.add_baseline_json(
            &format!("{{\"findings\": [{{\"fingerprint\": \"{FP}\"}}]}}"),
            path,
        )
        .unwrap();
        assert_eq!(list.len(), 1);
        assert!(list.add_baseline_json("{", path).is_err());
        assert!(list.add_baseline_json("{\"x\": 1}", path).is_err());
        assert!(
            list.add_baseline_json("[{\"fingerprint\": 3}]", path)
                .is_err()
        );
    }

    #[test]
    fn inline_markers() {
        assert!(has_inline_marker(b"x = 1 // moat:allow"));
        assert!(has_inline_marker(b"x = 1  # pragma: allowlist secret"));
        assert!(!has_inline_marker(b"x = 1 // moat: allow"));
    }
}
