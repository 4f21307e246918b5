//! Ecosystem-exact version ordering: one comparator per versioning scheme, and the dispatch from
//! an [`Ecosystem`] (or a name given on the command line) to its scheme.
//!
//! Owns parsing and comparing versions only; which versions an advisory affects is
//! [`crate::osv`]'s business. Every comparator agrees with the ordering test vectors in
//! `tests/fixtures/versions/`, and the dpkg one with `dpkg --compare-versions` itself.
//!
//! Versions are parsed once into a [`Version`] so that matching a package against many advisory
//! ranges compares parsed values instead of re-parsing strings in the hot loop.

pub mod apk;
pub mod dpkg;
pub mod go;
pub mod pep440;
pub mod semver;

use std::cmp::Ordering;
use std::fmt;

use super::Ecosystem;

pub use apk::ApkVersion;
pub use dpkg::DpkgVersion;
pub use pep440::Pep440Version;
pub use semver::SemVersion;

/// A versioning scheme: how the versions of one or more ecosystems are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Debian's `dpkg --compare-versions`.
    Dpkg,
    /// Alpine's apk.
    Apk,
    /// Python's PEP 440 (with `packaging`'s legacy fallback for non-PEP 440 strings).
    Pep440,
    /// Semantic Versioning 2.0 (npm, crates.io, and OSV `SEMVER` ranges).
    Semver,
    /// Go modules (SemVer with a `v`, pseudo-versions) and Go toolchain versions (`go1.21rc2`).
    Go,
}

impl Scheme {
    /// The scheme an ecosystem's own versions (and its OSV `ECOSYSTEM` ranges) use.
    pub fn for_ecosystem(ecosystem: Ecosystem) -> Scheme {
        match ecosystem {
            Ecosystem::Debian => Scheme::Dpkg,
            Ecosystem::Alpine => Scheme::Apk,
            Ecosystem::PyPI => Scheme::Pep440,
            Ecosystem::Npm | Ecosystem::CratesIo => Scheme::Semver,
            Ecosystem::Go => Scheme::Go,
        }
    }

    /// The scheme named on the command line (`moat version-compare ECOSYSTEM A B`): `debian`,
    /// `alpine`, `pypi`, `semver`, `go`, plus a few obvious synonyms (`dpkg`, `apk`, `pep440`,
    /// `npm`, `crates.io`, `cargo`, `golang`). Case-insensitive.
    pub fn from_name(name: &str) -> Option<Scheme> {
        Some(match name.to_ascii_lowercase().as_str() {
            "debian" | "dpkg" | "deb" => Scheme::Dpkg,
            "alpine" | "apk" => Scheme::Apk,
            "pypi" | "pep440" | "python" => Scheme::Pep440,
            "semver" | "npm" | "crates.io" | "crates" | "cargo" => Scheme::Semver,
            "go" | "golang" => Scheme::Go,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Scheme::Dpkg => "debian",
            Scheme::Apk => "alpine",
            Scheme::Pep440 => "pypi",
            Scheme::Semver => "semver",
            Scheme::Go => "go",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A version string that its scheme cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {scheme} version \"{version}\": {reason}")]
pub struct VersionError {
    pub scheme: Scheme,
    pub version: String,
    pub reason: &'static str,
}

impl VersionError {
    pub(crate) fn new(scheme: Scheme, version: &str, reason: &'static str) -> Self {
        VersionError {
            scheme,
            version: version.to_string(),
            reason,
        }
    }
}

/// A parsed version of any scheme. Go versions parse to [`Version::Semver`]: Go's ordering is
/// SemVer's once toolchain names (`go1.21rc2`) are translated.
#[derive(Debug, Clone)]
pub enum Version {
    Dpkg(DpkgVersion),
    Apk(ApkVersion),
    Pep440(Pep440Version),
    Semver(SemVersion),
}

impl Version {
    pub fn parse(scheme: Scheme, s: &str) -> Result<Version, VersionError> {
        Ok(match scheme {
            Scheme::Dpkg => Version::Dpkg(DpkgVersion::parse(s)?),
            Scheme::Apk => Version::Apk(ApkVersion::parse(s)?),
            Scheme::Pep440 => Version::Pep440(Pep440Version::parse(s)?),
            Scheme::Semver => Version::Semver(SemVersion::parse(s)?),
            Scheme::Go => Version::Semver(go::parse(s)?),
        })
    }

    /// The order of two versions of the same scheme; `None` when the schemes differ.
    pub fn compare(&self, other: &Version) -> Option<Ordering> {
        Some(match (self, other) {
            (Version::Dpkg(a), Version::Dpkg(b)) => a.cmp(b),
            (Version::Apk(a), Version::Apk(b)) => a.compare(b),
            (Version::Pep440(a), Version::Pep440(b)) => a.cmp(b),
            (Version::Semver(a), Version::Semver(b)) => a.cmp(b),
            _ => return None,
        })
    }
}

/// Compares two versions the way `ecosystem` orders them.
pub fn compare(ecosystem: Ecosystem, a: &str, b: &str) -> Result<Ordering, VersionError> {
    compare_in(Scheme::for_ecosystem(ecosystem), a, b)
}

/// Compares two versions under `scheme`.
pub fn compare_in(scheme: Scheme, a: &str, b: &str) -> Result<Ordering, VersionError> {
    let a = Version::parse(scheme, a)?;
    let b = Version::parse(scheme, b)?;
    Ok(a.compare(&b)
        .expect("both versions were parsed with one scheme"))
}

/// Compares two runs of ASCII digits by value, whatever their length (advisories contain
/// 14-digit timestamps and test vectors 30-digit numbers, beyond `u64` in places).
pub(crate) fn cmp_digits(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// The length of the run of ASCII digits at the start of `s`.
pub(crate) fn digit_run(s: &str) -> usize {
    s.bytes().take_while(u8::is_ascii_digit).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_compare_by_value() {
        assert_eq!(cmp_digits("010", "9"), Ordering::Greater);
        assert_eq!(cmp_digits("000", ""), Ordering::Equal);
        assert_eq!(
            cmp_digits(
                "999999999999999999999999999991",
                "999999999999999999999999999999"
            ),
            Ordering::Less
        );
    }

    #[test]
    fn schemes_by_name() {
        assert_eq!(Scheme::from_name("Debian"), Some(Scheme::Dpkg));
        assert_eq!(Scheme::from_name("crates.io"), Some(Scheme::Semver));
        assert_eq!(Scheme::from_name("maven"), None);
        for s in [
            Scheme::Dpkg,
            Scheme::Apk,
            Scheme::Pep440,
            Scheme::Semver,
            Scheme::Go,
        ] {
            assert_eq!(Scheme::from_name(s.name()), Some(s));
        }
    }

    #[test]
    fn dispatch() {
        assert_eq!(
            compare(Ecosystem::Debian, "1:1.0", "2.0"),
            Ok(Ordering::Greater)
        );
        assert_eq!(
            compare(Ecosystem::PyPI, "1.0RC1", "1.0rc1"),
            Ok(Ordering::Equal)
        );
        assert_eq!(
            compare(Ecosystem::Go, "go1.21rc2", "v1.21.0"),
            Ok(Ordering::Less)
        );
        let e = compare(Ecosystem::CratesIo, "1.0.0", "one").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid semver version \"one\": expected a number"
        );
        let a = Version::parse(Scheme::Dpkg, "1.0").unwrap();
        let b = Version::parse(Scheme::Semver, "1.0.0").unwrap();
        assert_eq!(a.compare(&b), None);
    }
}
