//! Debian versions, ordered exactly as `dpkg --compare-versions` orders them:
//! `[epoch:]upstream[-revision]`, compared epoch first (numerically), then upstream, then
//! revision, each with dpkg's `verrevcmp`: alternating non-digit and digit runs, where in a
//! non-digit run `~` sorts before everything (even the end of the string), letters before
//! non-letters, and digit runs compare numerically.
//!
//! Parsing rejects what dpkg rejects with an error (empty version, embedded spaces, a bad
//! epoch, nothing after the colon, an empty revision or upstream) and, like dpkg, only warns
//! about — here: accepts — odd characters or an upstream that does not start with a digit.

use std::cmp::Ordering;
use std::fmt;

use super::{Scheme, VersionError};

/// dpkg keeps the epoch in an `int`.
const MAX_EPOCH: u64 = i32::MAX as u64;

#[derive(Debug, Clone)]
pub struct DpkgVersion {
    epoch: u32,
    upstream: Box<str>,
    /// Empty when the version has none, which dpkg treats exactly like `0`.
    revision: Box<str>,
}

impl DpkgVersion {
    pub fn parse(s: &str) -> Result<DpkgVersion, VersionError> {
        let err = |reason| VersionError::new(Scheme::Dpkg, s, reason);
        let v = s.trim_matches(|c: char| c.is_ascii_whitespace());
        if v.is_empty() {
            return Err(err("version string is empty"));
        }
        if v.contains(|c: char| c.is_ascii_whitespace()) {
            return Err(err("version string has embedded spaces"));
        }
        let (epoch, rest) = match v.split_once(':') {
            None => (0, v),
            Some((e, rest)) => {
                // dpkg reads the epoch with strtol: no leading digit at all is "empty".
                if !e.starts_with(|c: char| c.is_ascii_digit()) {
                    return Err(err("epoch in version is empty"));
                }
                if !e.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(err("epoch in version is not number"));
                }
                let n = e
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n <= MAX_EPOCH)
                    .ok_or_else(|| err("epoch in version is too big"))?;
                if rest.is_empty() {
                    return Err(err("nothing after colon in version number"));
                }
                (n as u32, rest)
            }
        };
        let (upstream, revision) = match rest.rsplit_once('-') {
            None => (rest, ""),
            Some((_, "")) => return Err(err("revision number is empty")),
            Some((u, r)) => (u, r),
        };
        if upstream.is_empty() {
            return Err(err("version number is empty"));
        }
        Ok(DpkgVersion {
            epoch,
            upstream: upstream.into(),
            revision: revision.into(),
        })
    }

    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    pub fn revision(&self) -> &str {
        &self.revision
    }
}

impl std::str::FromStr for DpkgVersion {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DpkgVersion::parse(s)
    }
}

impl fmt::Display for DpkgVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.epoch != 0 {
            write!(f, "{}:", self.epoch)?;
        }
        f.write_str(&self.upstream)?;
        if !self.revision.is_empty() {
            write!(f, "-{}", self.revision)?;
        }
        Ok(())
    }
}

impl Ord for DpkgVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| verrevcmp(self.upstream.as_bytes(), other.upstream.as_bytes()))
            .then_with(|| verrevcmp(self.revision.as_bytes(), other.revision.as_bytes()))
    }
}

impl PartialOrd for DpkgVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Equality is dpkg's: `1.0` equals `1.00` and `1.0-0`.
impl PartialEq for DpkgVersion {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for DpkgVersion {}

/// The weight of one character in a non-digit run; the end of the string weighs 0, like a
/// digit, so that `~` (negative) sorts before the end and everything else after it.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(b'~') => -1,
        Some(c) => i32::from(c) + 256,
    }
}

/// dpkg's `verrevcmp` (lib/dpkg/version.c), on byte strings.
fn verrevcmp(a: &[u8], b: &[u8]) -> Ordering {
    let (mut i, mut j) = (0, 0);
    let digit_at = |s: &[u8], k: usize| s.get(k).is_some_and(u8::is_ascii_digit);
    let non_digit_at = |s: &[u8], k: usize| s.get(k).is_some_and(|c| !c.is_ascii_digit());
    while i < a.len() || j < b.len() {
        while non_digit_at(a, i) || non_digit_at(b, j) {
            let (ac, bc) = (order(a.get(i).copied()), order(b.get(j).copied()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while digit_at(a, i) && digit_at(b, j) {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if digit_at(a, i) {
            return Ordering::Greater;
        }
        if digit_at(b, j) {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(a: &str, b: &str) -> Ordering {
        DpkgVersion::parse(a)
            .unwrap()
            .cmp(&DpkgVersion::parse(b).unwrap())
    }

    #[test]
    fn ordering() {
        assert_eq!(cmp("1.0~rc1", "1.0"), Ordering::Less);
        assert_eq!(cmp("1.0~~", "1.0~"), Ordering::Less);
        assert_eq!(cmp("1.0a", "1.0+"), Ordering::Less);
        assert_eq!(cmp("1.0", "1.0a"), Ordering::Less);
        assert_eq!(cmp("1.10", "1.9"), Ordering::Greater);
        assert_eq!(cmp("1:0.1", "9.9"), Ordering::Greater);
        assert_eq!(cmp("1.0-1", "1.0-0.1"), Ordering::Greater);
        assert_eq!(cmp("1.0", "1.0-0"), Ordering::Equal);
        assert_eq!(cmp("0:1.00", "1.0"), Ordering::Equal);
        assert_eq!(
            cmp("2.7.4+reloaded2-13", "2.7.4+reloaded2-13+deb9u1"),
            Ordering::Less
        );
        // The upstream part may itself contain hyphens: the revision is after the last one.
        assert_eq!(cmp("1.0-beta-2", "1.0-beta-10"), Ordering::Less);
    }

    #[test]
    fn parts() {
        let v = DpkgVersion::parse("2:1.20.11-1+deb11u6").unwrap();
        assert_eq!(
            (v.epoch(), v.upstream(), v.revision()),
            (2, "1.20.11", "1+deb11u6")
        );
        assert_eq!(v.to_string(), "2:1.20.11-1+deb11u6");
    }

    #[test]
    fn errors_are_dpkg_errors() {
        let e = |s: &str| DpkgVersion::parse(s).unwrap_err().reason;
        assert_eq!(e(""), "version string is empty");
        assert_eq!(e("1.0 2"), "version string has embedded spaces");
        assert_eq!(e("a:1.0"), "epoch in version is empty");
        assert_eq!(e("1a:1.0"), "epoch in version is not number");
        assert_eq!(e(":1.0"), "epoch in version is empty");
        assert_eq!(e("1:"), "nothing after colon in version number");
        assert_eq!(e("99999999999:1"), "epoch in version is too big");
        assert_eq!(e("1.0-"), "revision number is empty");
        assert_eq!(e("-1"), "version number is empty");
        // dpkg only warns about these.
        assert!(DpkgVersion::parse("abc").is_ok());
        assert!(DpkgVersion::parse("1.0_bad").is_ok());
    }
}
