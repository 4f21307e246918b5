//! dpkg's database: `var/lib/dpkg/status` and distroless `var/lib/dpkg/status.d/*`.

use super::ParseError;
use crate::{Ecosystem, Package};

/// The fields of one paragraph that the inventory needs; values borrow from the file.
#[derive(Default)]
struct Paragraph<'a> {
    package: Option<&'a str>,
    version: Option<&'a str>,
    status: Option<&'a str>,
    source: Option<&'a str>,
    /// Whether the paragraph had any field at all (blank runs are not paragraphs).
    any: bool,
}

/// Parses a dpkg status file (or one `status.d/` file, `status_d = true`).
///
/// Installed means the third word of `Status:` is `installed` (dpkg's current state; the first
/// word is only the wish, so `deinstall ok installed` still has its files on disk and is kept,
/// while `config-files`, `unpacked`, `half-installed`… are skipped). Paragraphs without `Status:`
/// are skipped in `status` but kept in `status.d/`, where distroless images omit the field.
/// Paragraphs without `Package:` or `Version:` are skipped. A line that is neither `Key: value`,
/// a continuation nor blank makes the whole file invalid.
///
/// `source_name` is the `Source:` name, or the binary name when there is none (dpkg's default,
/// and what Debian's advisories name); `source_version` is set only when `Source:` gives one.
pub fn parse_status(
    text: &str,
    location: &str,
    status_d: bool,
) -> Result<Vec<Package>, ParseError> {
    let mut out = Vec::new();
    let mut para = Paragraph::default();
    for (n, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() {
            if para.any
                && let Some(p) = finish(&para, location, status_d)?
            {
                out.push(p);
            }
            para = Paragraph::default();
            continue;
        }
        if line.starts_with([' ', '\t']) {
            // Continuation of a multi-line field (Description, Conffiles…): none that we keep.
            if !para.any {
                return Err(ParseError::syntax(
                    n + 1,
                    "continuation line outside a paragraph",
                ));
            }
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            return Err(ParseError::syntax(n + 1, format!("not a field: {line:?}")));
        };
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(ParseError::syntax(n + 1, format!("not a field: {line:?}")));
        }
        para.any = true;
        let value = value.trim();
        // Field names are case-insensitive in deb822.
        if key.eq_ignore_ascii_case("Package") {
            para.package = Some(value);
        } else if key.eq_ignore_ascii_case("Version") {
            para.version = Some(value);
        } else if key.eq_ignore_ascii_case("Status") {
            para.status = Some(value);
        } else if key.eq_ignore_ascii_case("Source") {
            para.source = Some(value);
        }
    }
    if para.any
        && let Some(p) = finish(&para, location, status_d)?
    {
        out.push(p);
    }
    Ok(out)
}

fn finish(
    p: &Paragraph<'_>,
    location: &str,
    status_d: bool,
) -> Result<Option<Package>, ParseError> {
    match p.status {
        Some(status) => {
            let words: Vec<&str> = status.split_whitespace().collect();
            if words.len() != 3 {
                return Err(ParseError::Invalid(format!(
                    "invalid Status field {status:?}"
                )));
            }
            if words[2] != "installed" {
                return Ok(None);
            }
        }
        None if status_d => {}
        None => return Ok(None),
    }
    let (Some(name), Some(version)) = (p.package, p.version) else {
        return Ok(None);
    };
    if name.is_empty() || version.is_empty() {
        return Ok(None);
    }
    let (source_name, source_version) = match p.source.filter(|s| !s.is_empty()) {
        None => (name.to_string(), None),
        Some(source) => match source.split_once('(') {
            Some((n, v)) => {
                let v = v.trim().strip_suffix(')').ok_or_else(|| {
                    ParseError::Invalid(format!("invalid Source field {source:?}"))
                })?;
                (n.trim().to_string(), Some(v.trim().to_string()))
            }
            None => (source.to_string(), None),
        },
    };
    Ok(Some(Package {
        ecosystem: Ecosystem::Debian,
        name: name.to_string(),
        version: version.to_string(),
        source_name: Some(source_name),
        source_version,
        distro_release: None,
        location: location.to_string(),
        layer: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_with_version_and_continuations() {
        let text = "Package: libssl3\nStatus: install ok installed\nSource: openssl (3.0.11-1~deb12u2)\nVersion: 3.0.11-1~deb12u2+b1\nDescription: x\n more\n .\n end\n\n\n";
        let p = parse_status(text, "var/lib/dpkg/status", false).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].source_name.as_deref(), Some("openssl"));
        assert_eq!(p[0].source_version.as_deref(), Some("3.0.11-1~deb12u2"));
        assert_eq!(p[0].version, "3.0.11-1~deb12u2+b1");
    }

    #[test]
    fn crlf_and_no_trailing_newline() {
        let text = "Package: a\r\nStatus: install ok installed\r\nVersion: 1\r\n\r\nPackage: b\r\nStatus: install ok installed\r\nVersion: 2";
        let p = parse_status(text, "s", false).unwrap();
        assert_eq!(
            p.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(p[1].source_name.as_deref(), Some("b"));
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse_status("asdf\n\nyolo\n", "s", false).is_err());
        assert!(parse_status("Package: a\nStatus: installed\nVersion: 1\n", "s", false).is_err());
    }
}
