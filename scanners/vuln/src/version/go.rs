//! Go versions. Module versions are SemVer with a `v` (`v1.2.3`, `v2.0.0+incompatible`), and
//! pseudo-versions (`v0.0.0-20191109021931-daa7c04131f5`, `v1.2.4-0.20191109021931-…`) are
//! SemVer pre-releases built so that SemVer precedence orders them correctly — so Go ordering
//! is SemVer ordering.
//!
//! The standard library and toolchain are versioned `go1.20.3`, `go1.21rc2`, `go1.20beta1`
//! (or without `go`). These are translated the way the Go vulnerability database writes them:
//! `go1.21rc2` → `1.21.0-rc.2`, `go1.20` → `1.20.0` (before Go 1.21 the first release of 1.N
//! was named `go1.N`).

use super::semver::SemVersion;
use super::{Scheme, VersionError, digit_run};

/// Reads a Go module version or a Go toolchain version.
pub fn parse(s: &str) -> Result<SemVersion, VersionError> {
    let t = s.trim();
    if let Some(toolchain) = t.strip_prefix("go") {
        return toolchain_version(toolchain)
            .ok_or_else(|| VersionError::new(Scheme::Go, s, "not a Go toolchain version"));
    }
    match SemVersion::parse(t) {
        Ok(v) => Ok(v),
        Err(e) => toolchain_version(t).ok_or(VersionError {
            scheme: Scheme::Go,
            ..e
        }),
    }
}

/// `1`, `1.21`, `1.21.3`, `1.21rc2`, `1.9.2rc2`, `1.20beta1`.
fn toolchain_version(s: &str) -> Option<SemVersion> {
    let mut rest = s;
    let mut release: Vec<Box<str>> = Vec::new();
    loop {
        let n = digit_run(rest);
        if n == 0 {
            return None;
        }
        release.push(rest[..n].into());
        rest = &rest[n..];
        match rest.strip_prefix('.') {
            Some(after) if release.len() < 3 => rest = after,
            _ => break,
        }
    }
    while release.len() < 3 {
        release.push("0".into());
    }
    let mut pre = Vec::new();
    if !rest.is_empty() {
        let kind = ["alpha", "beta", "rc"]
            .into_iter()
            .find(|k| rest.starts_with(k))?;
        let number = &rest[kind.len()..];
        if number.is_empty() || digit_run(number) != number.len() {
            return None;
        }
        pre.push(SemVersion::ident(kind));
        pre.push(SemVersion::ident(number));
    }
    Some(SemVersion::from_parts(release, pre))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> SemVersion {
        parse(s).unwrap()
    }

    #[test]
    fn toolchain_names() {
        assert_eq!(v("go1.21rc2").to_string(), "1.21.0-rc.2");
        assert_eq!(v("go1.20"), v("1.20.0"));
        assert_eq!(v("go1.20.3"), v("v1.20.3"));
        assert_eq!(v("go1.9.2rc2").to_string(), "1.9.2-rc.2");
        assert!(v("go1.20beta1") < v("go1.20rc1"));
        assert!(v("go1.21rc4") < v("1.21.0"));
        assert!(v("1.21.0-0") < v("go1.21rc1"));
        assert!(v("1.21rc1") < v("1.21.0"));
        assert!(parse("go1.21x").is_err());
        assert!(parse("devel").is_err());
    }

    #[test]
    fn module_versions() {
        assert!(v("v0.0.0-20191109021931-daa7c04131f5") < v("v0.0.0-20200101000000-aaaaaaaaaaaa"));
        assert!(v("v1.2.3") < v("v1.2.4-0.20191109021931-daa7c04131f5"));
        assert!(v("v1.2.4-0.20191109021931-daa7c04131f5") < v("v1.2.4"));
        assert!(v("v1.2.4-pre.0.20191109021931-daa7c04131f5") > v("v1.2.4-pre"));
        assert_eq!(v("v2.0.0+incompatible"), v("2.0.0"));
    }
}
