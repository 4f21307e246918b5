//! Python: installed distributions (`*.dist-info/METADATA`, `*.egg-info/PKG-INFO`) and lock
//! files of a source tree (`requirements*.txt` pins, `poetry.lock`).

use serde::Deserialize;

use super::ParseError;
use crate::{Ecosystem, Package};

/// PEP 503 normalisation: lower case, runs of `-`, `_` and `.` become one `-`.
pub fn normalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('-');
            }
            sep = false;
            out.extend(c.to_lowercase());
        }
    }
    out
}

fn pypi(name: &str, version: &str, location: &str) -> Package {
    Package::new(Ecosystem::PyPI, normalize_name(name), version, location)
}

/// Parses the core metadata of an installed distribution (`METADATA`, `PKG-INFO`, or a legacy
/// `*.egg-info` file): the `Name:` and `Version:` headers of the header block, which ends at the
/// first blank line (the long description may follow and is not read).
pub fn parse_metadata(text: &str, location: &str) -> Result<Package, ParseError> {
    let (mut name, mut version) = (None, None);
    for line in text.lines() {
        if line.trim().is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            continue;
        }
        if let Some((key, value)) = line.split_once(':') {
            if key.eq_ignore_ascii_case("Name") && name.is_none() {
                name = Some(value.trim());
            } else if key.eq_ignore_ascii_case("Version") && version.is_none() {
                version = Some(value.trim());
            }
        }
    }
    match (name, version) {
        (Some(n), Some(v)) if !n.is_empty() && !v.is_empty() => Ok(pypi(n, v, location)),
        _ => Err(ParseError::Invalid("no Name and Version headers".into())),
    }
}

/// The `==` (or `===`) pins of a pip requirements file. Unpinned and ranged requirements,
/// wildcard pins (`==1.*`), URL and editable requirements and option lines (`-r`, `-c`,
/// `--index-url`…) are ignored: only an exact pin says what gets installed. Comments,
/// extras (`name[extra]==1`), environment markers (`; python_version < "3"`), per-line options
/// (`--hash=…`) and `\` continuations are handled.
pub fn parse_requirements(text: &str, location: &str) -> Vec<Package> {
    let mut out = Vec::new();
    let mut logical = String::new();
    for raw in text.lines() {
        // pip strips comments before joining continuations.
        let line = strip_comment(raw);
        if let Some(head) = line.strip_suffix('\\') {
            logical.push_str(head);
            logical.push(' ');
            continue;
        }
        logical.push_str(line);
        if let Some((name, version)) = pinned(&logical) {
            out.push(pypi(name, version, location));
        }
        logical.clear();
    }
    if let Some((name, version)) = pinned(&logical) {
        out.push(pypi(name, version, location));
    }
    out
}

fn strip_comment(line: &str) -> &str {
    if line.trim_start().starts_with('#') {
        return "";
    }
    let bytes = line.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'#' && i > 0 && bytes[i - 1].is_ascii_whitespace() {
            return line[..i].trim_end();
        }
    }
    line.trim_end()
}

fn pinned(line: &str) -> Option<(&str, &str)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('-') {
        return None;
    }
    // Environment markers, then per-requirement options such as `--hash=sha256:…`.
    let line = line.split(';').next()?;
    let line = line.split(" -").next()?.trim();
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut rest = line[name_end..].trim_start();
    if rest.starts_with('[') {
        rest = rest[rest.find(']')? + 1..].trim_start();
    }
    if rest.starts_with('@') || rest.contains(',') {
        return None;
    }
    let version = rest
        .strip_prefix("===")
        .or_else(|| rest.strip_prefix("=="))?
        .trim();
    let valid = !version.is_empty()
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-' | '_' | '!'));
    valid.then_some((name, version))
}

#[derive(Deserialize)]
struct PoetryLock {
    #[serde(default)]
    package: Vec<PoetryPackage>,
}

#[derive(Deserialize)]
struct PoetryPackage {
    name: String,
    version: String,
    #[serde(default)]
    source: Option<PoetrySource>,
}

#[derive(Deserialize)]
struct PoetrySource {
    #[serde(rename = "type", default)]
    kind: String,
}

/// The `[[package]]` entries of a `poetry.lock`, except local path dependencies
/// (`source.type` `directory` or `file`), which are not PyPI releases.
pub fn parse_poetry_lock(text: &str, location: &str) -> Result<Vec<Package>, ParseError> {
    let lock: PoetryLock = toml::from_str(text)?;
    Ok(lock
        .package
        .iter()
        .filter(|p| {
            !matches!(
                p.source.as_ref().map(|s| s.kind.as_str()),
                Some("directory" | "file")
            )
        })
        .map(|p| pypi(&p.name, &p.version, location))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pep503() {
        assert_eq!(normalize_name("Jinja2"), "jinja2");
        assert_eq!(normalize_name("PyYAML"), "pyyaml");
        assert_eq!(normalize_name("zope.interface"), "zope-interface");
        assert_eq!(normalize_name("Foo__Bar-.baz"), "foo-bar-baz");
    }

    #[test]
    fn metadata_headers_only() {
        let text = "Metadata-Version: 2.1\nName: Jinja2\nVersion: 2.10\nSummary: x\n\nName: nope\n";
        let p = parse_metadata(text, "a/METADATA").unwrap();
        assert_eq!((p.name.as_str(), p.version.as_str()), ("jinja2", "2.10"));
        assert!(parse_metadata("Summary: x\n", "a").is_err());
    }

    #[test]
    fn requirements_pins() {
        let text = r#"
# comment
requests==2.19.1  # pinned
urllib3[secure,socks] == 1.24.1 ; python_version >= "3"
Jinja2===2.10
flask>=1.0
django
numpy==1.*
pyyaml==5.3 \
    --hash=sha256:0000
-r other.txt
-e git+https://example.invalid/x.git#egg=x
pkg @ https://example.invalid/pkg.whl
six==1.16.0,!=1.15
"#;
        let got: Vec<(String, String)> = parse_requirements(text, "requirements.txt")
            .into_iter()
            .map(|p| (p.name, p.version))
            .collect();
        let want: Vec<(String, String)> = [
            ("requests", "2.19.1"),
            ("urllib3", "1.24.1"),
            ("jinja2", "2.10"),
            ("pyyaml", "5.3"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn poetry() {
        let text = r#"
[[package]]
name = "Django"
version = "3.2.1"
description = "x"

[[package]]
name = "mylib"
version = "0.1.0"
[package.source]
type = "directory"
url = "../mylib"

[metadata]
lock-version = "2.0"
"#;
        let p = parse_poetry_lock(text, "poetry.lock").unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(
            (p[0].name.as_str(), p[0].version.as_str()),
            ("django", "3.2.1")
        );
    }
}
