//! apk's database: `lib/apk/db/installed`.

use super::ParseError;
use crate::{Ecosystem, Package};

/// Parses `lib/apk/db/installed`: blank-line separated records of `K:value` lines, of which
/// `P` (name), `V` (version) and `o` (origin, the aport that advisories name) matter. A record
/// without name or version is skipped; a line that is not `K:value` makes the file invalid.
/// `source_name` falls back to the package name when `o:` is absent.
pub fn parse_installed(text: &str, location: &str) -> Result<Vec<Package>, ParseError> {
    let mut out = Vec::new();
    let (mut name, mut version, mut origin) = (None::<&str>, None::<&str>, None::<&str>);
    let mut any = false;
    let mut flush =
        |name: &mut Option<&str>, version: &mut Option<&str>, origin: &mut Option<&str>| {
            if let (Some(n), Some(v)) = (name.take(), version.take())
                && !n.is_empty()
                && !v.is_empty()
            {
                out.push(Package {
                    ecosystem: Ecosystem::Alpine,
                    name: n.to_string(),
                    version: v.to_string(),
                    source_name: Some(origin.filter(|o| !o.is_empty()).unwrap_or(n).to_string()),
                    source_version: None,
                    distro_release: None,
                    location: location.to_string(),
                    layer: None,
                });
            }
            *name = None;
            *version = None;
            *origin = None;
        };
    for (n, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.is_empty() {
            if any {
                flush(&mut name, &mut version, &mut origin);
                any = false;
            }
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            return Err(ParseError::syntax(
                n + 1,
                format!("not a K:value line: {line:?}"),
            ));
        };
        any = true;
        match key {
            "P" => name = Some(value),
            "V" => version = Some(value),
            "o" => origin = Some(value),
            _ => {}
        }
    }
    if any {
        flush(&mut name, &mut version, &mut origin);
    }
    Ok(out)
}
