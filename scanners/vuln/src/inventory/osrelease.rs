//! `etc/os-release` (or `usr/lib/os-release`): which distribution and release an image is.

use serde::{Deserialize, Serialize};

/// The identifying fields of `os-release`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsRelease {
    /// `ID`, e.g. `debian`, `alpine`, `ubuntu`.
    pub id: String,
    /// `ID_LIKE`, split on whitespace.
    pub id_like: Vec<String>,
    /// `VERSION_ID`, e.g. `12`, `3.18.4`; absent on Debian testing/unstable.
    pub version_id: Option<String>,
    /// `VERSION_CODENAME`, e.g. `bookworm`.
    pub version_codename: Option<String>,
    /// `PRETTY_NAME`, for display.
    pub pretty_name: Option<String>,
}

impl OsRelease {
    /// Parses `KEY=value` lines; values may be quoted with `"` or `'` and use `\` escapes.
    pub fn parse(text: &str) -> OsRelease {
        let mut os = OsRelease::default();
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('#') {
                continue;
            }
            let Some((key, raw)) = line.split_once('=') else {
                continue;
            };
            let value = unquote(raw.trim());
            match key.trim() {
                "ID" => os.id = value.to_ascii_lowercase(),
                "ID_LIKE" => os.id_like = value.split_whitespace().map(str::to_string).collect(),
                "VERSION_ID" => os.version_id = Some(value).filter(|v| !v.is_empty()),
                "VERSION_CODENAME" => os.version_codename = Some(value).filter(|v| !v.is_empty()),
                "PRETTY_NAME" => os.pretty_name = Some(value).filter(|v| !v.is_empty()),
                _ => {}
            }
        }
        os
    }

    /// The release that advisories of this distribution name, for `Package::distro_release`:
    /// Debian's `VERSION_ID` (`12`) or, on testing/unstable, the codename; Alpine's
    /// `major.minor` (`3.18` from `3.18.4`). Other distributions: `None`, since their packages
    /// must not be matched against Debian's or Alpine's advisories by release.
    pub fn advisory_release(&self) -> Option<String> {
        match self.id.as_str() {
            "debian" => self
                .version_id
                .clone()
                .or_else(|| self.version_codename.clone()),
            "alpine" => {
                let v = self.version_id.as_deref()?;
                let mut parts = v.split(['.', '_']);
                match (parts.next(), parts.next()) {
                    (Some(a), Some(b)) => Some(format!("{a}.{b}")),
                    _ => Some(v.to_string()),
                }
            }
            _ => None,
        }
    }
}

fn unquote(v: &str) -> String {
    let inner = if v.len() >= 2
        && ((v.starts_with('"') && v.ends_with('"')) || (v.starts_with('\'') && v.ends_with('\'')))
    {
        &v[1..v.len() - 1]
    } else {
        v
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_and_alpine() {
        let deb = OsRelease::parse(
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n",
        );
        assert_eq!(deb.id, "debian");
        assert_eq!(deb.advisory_release().as_deref(), Some("12"));
        assert_eq!(deb.version_codename.as_deref(), Some("bookworm"));
        let sid = OsRelease::parse("ID=debian\nVERSION_CODENAME=trixie\n");
        assert_eq!(sid.advisory_release().as_deref(), Some("trixie"));
        let alpine = OsRelease::parse("NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.18.4\n");
        assert_eq!(alpine.advisory_release().as_deref(), Some("3.18"));
        let ubuntu = OsRelease::parse("ID=ubuntu\nID_LIKE=debian\nVERSION_ID=\"22.04\"\n");
        assert_eq!(ubuntu.advisory_release(), None);
        assert_eq!(ubuntu.id_like, ["debian"]);
    }
}
