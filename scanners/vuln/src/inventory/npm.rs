//! npm: installed packages (`node_modules/**/package.json`) and `package-lock.json`
//! (lockfile versions 1, 2 and 3).

use serde_json::Value;

use super::ParseError;
use crate::{Ecosystem, Package};

/// Whether a lock entry's version names a registry release (`1.2.3`, `1.2.3-beta.1`), not a
/// `file:`, `link:`, git or tarball URL, which advisories cannot be matched against.
fn registry_version(v: &str) -> bool {
    v.as_bytes().first().is_some_and(u8::is_ascii_digit) && !v.contains(':') && !v.contains('/')
}

/// The `package.json` of an installed package: `name` and `version`. A `package.json` without
/// both (nested ones that only set `"type": "module"`, say) is not a package.
pub fn parse_package_json(text: &str, location: &str) -> Result<Option<Package>, ParseError> {
    let v: Value = serde_json::from_str(text)?;
    let name = v.get("name").and_then(Value::as_str).unwrap_or("");
    let version = v.get("version").and_then(Value::as_str).unwrap_or("");
    if name.is_empty() || version.is_empty() {
        return Ok(None);
    }
    Ok(Some(Package::new(Ecosystem::Npm, name, version, location)))
}

/// The packages a `package-lock.json` (or `npm-shrinkwrap.json`) installs. Lockfile v2 and v3
/// list them under `packages` keyed by install path (`node_modules/a/node_modules/@s/b`); v1
/// nests them under `dependencies`. The root project, workspace members and linked or
/// non-registry packages are skipped; aliases (`"npm:real@1.0.0"`, or a `name` field) report
/// the real package.
pub fn parse_package_lock(text: &str, location: &str) -> Result<Vec<Package>, ParseError> {
    let v: Value = serde_json::from_str(text)?;
    let mut out = Vec::new();
    if let Some(packages) = v.get("packages").and_then(Value::as_object) {
        for (path, entry) in packages {
            let Some(idx) = path.rfind("node_modules/") else {
                continue; // the root ("") or a workspace member
            };
            if entry.get("link").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            let Some(version) = entry.get("version").and_then(Value::as_str) else {
                continue;
            };
            let name = entry
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or(&path[idx + "node_modules/".len()..]);
            if registry_version(version) && !name.is_empty() {
                out.push(Package::new(Ecosystem::Npm, name, version, location));
            }
        }
    } else if let Some(deps) = v.get("dependencies").and_then(Value::as_object) {
        walk_v1(deps, location, &mut out);
    }
    Ok(out)
}

fn walk_v1(deps: &serde_json::Map<String, Value>, location: &str, out: &mut Vec<Package>) {
    for (name, entry) in deps {
        if let Some(version) = entry.get("version").and_then(Value::as_str) {
            if let Some(alias) = version.strip_prefix("npm:") {
                // "npm:real-name@1.2.3"; the name may be scoped (`@s/n@1`).
                if let Some(at) = alias.rfind('@').filter(|&i| i > 0) {
                    let (real, ver) = (&alias[..at], &alias[at + 1..]);
                    if registry_version(ver) {
                        out.push(Package::new(Ecosystem::Npm, real, ver, location));
                    }
                }
            } else if registry_version(version) {
                out.push(Package::new(Ecosystem::Npm, name, version, location));
            }
        }
        if let Some(nested) = entry.get("dependencies").and_then(Value::as_object) {
            walk_v1(nested, location, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(p: &[Package]) -> Vec<String> {
        let mut v: Vec<String> = p
            .iter()
            .map(|p| format!("{}@{}", p.name, p.version))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn lock_v1() {
        let text = r#"{"name":"app","version":"1.0.0","lockfileVersion":1,"dependencies":{
            "lodash":{"version":"4.17.4"},
            "minimist":{"version":"0.0.8","dependencies":{"a":{"version":"1.0.0"}}},
            "local":{"version":"file:../local"},
            "alias":{"version":"npm:@scope/real@2.0.0"}}}"#;
        let p = parse_package_lock(text, "package-lock.json").unwrap();
        assert_eq!(
            names(&p),
            [
                "@scope/real@2.0.0",
                "a@1.0.0",
                "lodash@4.17.4",
                "minimist@0.0.8"
            ]
        );
    }

    #[test]
    fn lock_v3() {
        let text = r#"{"name":"app","lockfileVersion":3,"packages":{
            "":{"name":"app","version":"1.0.0"},
            "node_modules/lodash":{"version":"4.17.4"},
            "node_modules/a/node_modules/@s/b":{"version":"1.2.3-beta.1","dev":true},
            "node_modules/ws":{"resolved":"packages/ws","link":true},
            "packages/ws":{"version":"0.0.1"},
            "node_modules/al":{"name":"real","version":"2.0.0"},
            "node_modules/g":{"version":"git+ssh://git@example.invalid/g.git#abc"}}}"#;
        let p = parse_package_lock(text, "package-lock.json").unwrap();
        assert_eq!(
            names(&p),
            ["@s/b@1.2.3-beta.1", "lodash@4.17.4", "real@2.0.0"]
        );
    }

    #[test]
    fn package_json() {
        let p = parse_package_json(r#"{"name":"@s/x","version":"1.0.0"}"#, "l").unwrap();
        assert_eq!(p.unwrap().name, "@s/x");
        assert!(
            parse_package_json(r#"{"type":"module"}"#, "l")
                .unwrap()
                .is_none()
        );
        assert!(parse_package_json("{", "l").is_err());
    }
}
