//! Semantic Versioning 2.0 (npm, crates.io, OSV `SEMVER` ranges):
//! `MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD]`.
//!
//! Precedence is SemVer's: numeric parts numerically (any length), a pre-release before its
//! release, pre-release identifiers numerically when all digits and in ASCII order otherwise,
//! digits before letters, more identifiers after fewer; build metadata is ignored.
//!
//! Tolerated beyond the strict grammar, because real advisories and lock files contain them: a
//! leading `v` (`v1.2.3`), leading zeros, fewer than three numbers (`1.2` = `1.2.0`) and more
//! than three (`1.2.3.4`, compared after the patch, missing ones counting as 0).

use std::cmp::Ordering;
use std::fmt;

use super::{Scheme, VersionError, cmp_digits, digit_run};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ident {
    Num(Box<str>),
    Alnum(Box<str>),
}

impl Ident {
    fn new(s: &str) -> Ident {
        if s.bytes().all(|b| b.is_ascii_digit()) {
            Ident::Num(s.into())
        } else {
            Ident::Alnum(s.into())
        }
    }

    fn cmp(&self, other: &Ident) -> Ordering {
        match (self, other) {
            (Ident::Num(a), Ident::Num(b)) => cmp_digits(a, b),
            (Ident::Alnum(a), Ident::Alnum(b)) => a.cmp(b),
            (Ident::Num(_), Ident::Alnum(_)) => Ordering::Less,
            (Ident::Alnum(_), Ident::Num(_)) => Ordering::Greater,
        }
    }

    fn as_str(&self) -> &str {
        match self {
            Ident::Num(s) | Ident::Alnum(s) => s,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SemVersion {
    /// At least one number; `[1, 2, 3]` for `1.2.3`.
    release: Vec<Box<str>>,
    pre: Vec<Ident>,
    build: Option<Box<str>>,
}

impl SemVersion {
    pub fn parse(s: &str) -> Result<SemVersion, VersionError> {
        let err = |reason| VersionError::new(Scheme::Semver, s, reason);
        let t = s.trim();
        let t = t.strip_prefix(['v', 'V']).unwrap_or(t);
        let (t, build) = match t.split_once('+') {
            Some((_, "")) => return Err(err("empty build metadata")),
            Some((t, b)) => (t, Some(b.into())),
            None => (t, None),
        };
        let mut rest = t;
        let mut release = Vec::new();
        loop {
            let n = digit_run(rest);
            if n == 0 {
                return Err(err("expected a number"));
            }
            release.push(rest[..n].into());
            rest = &rest[n..];
            match rest.strip_prefix('.') {
                Some(after) => rest = after,
                None => break,
            }
        }
        let pre = match rest.strip_prefix('-') {
            Some(p) => {
                let idents: Vec<Ident> = p.split('.').map(Ident::new).collect();
                if idents.iter().any(|i| i.as_str().is_empty()) {
                    return Err(err("empty pre-release identifier"));
                }
                idents
            }
            None if rest.is_empty() => Vec::new(),
            None => return Err(err("unexpected text after the version numbers")),
        };
        Ok(SemVersion {
            release,
            pre,
            build,
        })
    }

    /// Builds a version from its parts (used for Go toolchain names).
    pub(crate) fn from_parts(release: Vec<Box<str>>, pre: Vec<Ident>) -> SemVersion {
        SemVersion {
            release,
            pre,
            build: None,
        }
    }

    pub(crate) fn ident(s: &str) -> Ident {
        Ident::new(s)
    }

    pub fn is_prerelease(&self) -> bool {
        !self.pre.is_empty()
    }

    pub fn build(&self) -> Option<&str> {
        self.build.as_deref()
    }
}

impl fmt::Display for SemVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let release: Vec<&str> = self.release.iter().map(|s| &**s).collect();
        f.write_str(&release.join("."))?;
        if !self.pre.is_empty() {
            let pre: Vec<&str> = self.pre.iter().map(Ident::as_str).collect();
            write!(f, "-{}", pre.join("."))?;
        }
        if let Some(b) = &self.build {
            write!(f, "+{b}")?;
        }
        Ok(())
    }
}

impl Ord for SemVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        let len = self.release.len().max(other.release.len());
        for i in 0..len {
            let a = self.release.get(i).map_or("0", |s| s);
            let b = other.release.get(i).map_or("0", |s| s);
            let ord = cmp_digits(a, b);
            if ord != Ordering::Equal {
                return ord;
            }
        }
        match (self.pre.is_empty(), other.pre.is_empty()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Greater,
            (false, true) => return Ordering::Less,
            (false, false) => {}
        }
        for (a, b) in self.pre.iter().zip(&other.pre) {
            let ord = a.cmp(b);
            if ord != Ordering::Equal {
                return ord;
            }
        }
        self.pre.len().cmp(&other.pre.len())
    }
}

impl PartialOrd for SemVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Equality is precedence equality: build metadata does not count.
impl PartialEq for SemVersion {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for SemVersion {}

impl std::str::FromStr for SemVersion {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SemVersion::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> SemVersion {
        SemVersion::parse(s).unwrap()
    }

    #[test]
    fn spec_ordering() {
        let ordered = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "1.1.0",
            "2.0.0",
        ];
        for pair in ordered.windows(2) {
            assert!(v(pair[0]) < v(pair[1]), "{} < {}", pair[0], pair[1]);
        }
    }

    #[test]
    fn tolerance() {
        assert_eq!(v("v1.2.3"), v("1.2.3"));
        assert_eq!(v("1.2.3+build.5"), v("1.2.3"));
        assert_eq!(v("1.2"), v("1.2.0"));
        assert!(v("1.2.3.1") > v("1.2.3"));
        assert_eq!(v("1.2.3-rc.1+x").to_string(), "1.2.3-rc.1+x");
        assert_eq!(v("1.2.3+x").build(), Some("x"));
    }

    #[test]
    fn errors() {
        for bad in [
            "",
            "v",
            "x1.0",
            "1.0.0rc1",
            "1.0.0-",
            "1.0.0-a..b",
            "1.0.0+",
            "1..2",
        ] {
            assert!(SemVersion::parse(bad).is_err(), "{bad}");
        }
    }
}
