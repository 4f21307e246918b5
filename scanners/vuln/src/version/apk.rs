//! Alpine (apk) versions: `number{.number}...{letter}{_suffix{number}}...{~hash}{-r#}`.
//!
//! Compared part by part: the dot-separated numbers (numerically, except that a later number
//! with a leading zero compares as a string, apk's "fractional" rule), then the single letter
//! (none sorts first), then the suffixes (`_alpha` < `_beta` < `_pre` < `_rc` < no suffix <
//! `_cvs` < `_svn` < `_git` < `_hg` < `_p`, then their numbers), then the `-rN` revision. A
//! commit hash is ignored. Text that does not fit the grammar makes the version "invalid"; apk
//! still orders it: a valid version sorts after an equal-looking one with trailing junk, and two
//! invalid versions compare as plain strings — the behaviour the osv-scalibr test vectors
//! (`tests/fixtures/versions/alpine-versions.txt`) pin down.
//!
//! Because of that string fallback the order is not transitive across valid and invalid
//! versions, so [`ApkVersion`] deliberately has no `Ord`: use [`ApkVersion::compare`], which
//! needs no sorting.

use std::cmp::Ordering;

use super::{Scheme, VersionError, cmp_digits, digit_run};

/// Suffix names in the order apk sorts them; "no suffix" sits between `rc` and `cvs`.
/// `pre` precedes `p` so that the longer name wins, as in apk's own matching.
const SUFFIXES: [(&str, u8); 9] = [
    ("alpha", 0),
    ("beta", 1),
    ("pre", 2),
    ("rc", 3),
    ("cvs", 5),
    ("svn", 6),
    ("git", 7),
    ("hg", 8),
    ("p", 9),
];
const NO_SUFFIX: u8 = 4;

#[derive(Debug, Clone)]
pub struct ApkVersion {
    original: Box<str>,
    numbers: Vec<Box<str>>,
    letter: Option<u8>,
    /// (weight, number) per suffix.
    suffixes: Vec<(u8, Box<str>)>,
    revision: Box<str>,
    /// Text left over after the `-rN` revision (e.g. `1-r0-1`).
    trailing: bool,
    /// Text that fits no part of the grammar.
    invalid: bool,
}

impl ApkVersion {
    /// Reads any non-empty string: apk orders even malformed versions (see the module docs).
    pub fn parse(s: &str) -> Result<ApkVersion, VersionError> {
        let original = s.trim();
        if original.is_empty() {
            return Err(VersionError::new(Scheme::Apk, s, "version string is empty"));
        }
        let mut rest = original;

        let mut numbers = Vec::new();
        loop {
            let n = digit_run(rest);
            if n == 0 {
                break;
            }
            numbers.push(rest[..n].into());
            rest = &rest[n..];
            // A dot continues the numbers only when a digit follows it.
            match rest.strip_prefix('.') {
                Some(after) if digit_run(after) > 0 => rest = after,
                _ => break,
            }
        }

        let letter = rest.bytes().next().filter(u8::is_ascii_lowercase);
        if letter.is_some() {
            rest = &rest[1..];
        }

        let mut suffixes = Vec::new();
        while let Some(after) = rest.strip_prefix('_') {
            let Some((name, weight)) = SUFFIXES.iter().find(|(name, _)| after.starts_with(name))
            else {
                break;
            };
            let after = &after[name.len()..];
            let n = digit_run(after);
            suffixes.push((*weight, after[..n].into()));
            rest = &after[n..];
        }

        if let Some(after) = rest.strip_prefix('~') {
            let n = after
                .bytes()
                .take_while(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
                .count();
            if n > 0 {
                rest = &after[n..];
            }
        }

        let mut revision: Box<str> = "".into();
        let mut invalid = false;
        if !rest.is_empty() {
            match rest.strip_prefix("-r") {
                Some(after) => {
                    let n = digit_run(after);
                    revision = after[..n].into();
                    rest = &after[n..];
                }
                None => invalid = true,
            }
        }

        Ok(ApkVersion {
            original: original.into(),
            numbers,
            letter,
            suffixes,
            revision,
            trailing: !rest.is_empty(),
            invalid,
        })
    }

    /// Whether the string follows apk's version grammar.
    pub fn is_valid(&self) -> bool {
        !self.invalid && !self.trailing
    }

    pub fn as_str(&self) -> &str {
        &self.original
    }

    /// The order of two versions under apk's rules (see the module docs).
    pub fn compare(&self, other: &ApkVersion) -> Ordering {
        if self.invalid && other.invalid {
            return self.original.cmp(&other.original);
        }
        self.compare_numbers(other)
            .then_with(|| self.letter.cmp(&other.letter))
            .then_with(|| self.compare_suffixes(other))
            .then_with(|| cmp_digits(&self.revision, &other.revision))
            // Nothing left over beats something left over.
            .then_with(|| other.trailing.cmp(&self.trailing))
    }

    fn compare_numbers(&self, other: &ApkVersion) -> Ordering {
        let len = self.numbers.len().max(other.numbers.len());
        for i in 0..len {
            let ord = match (self.numbers.get(i), other.numbers.get(i)) {
                // apk: after the first number, a leading zero makes the part a decimal
                // fraction, compared digit by digit (1.01 < 1.1, 1.010 > 1.01).
                (Some(a), Some(b)) if i > 0 && (a.starts_with('0') || b.starts_with('0')) => {
                    a.cmp(b)
                }
                (a, b) => cmp_digits(a.map_or("0", |s| s), b.map_or("0", |s| s)),
            };
            if ord != Ordering::Equal {
                return ord;
            }
        }
        Ordering::Equal
    }

    fn compare_suffixes(&self, other: &ApkVersion) -> Ordering {
        let none = (NO_SUFFIX, Box::<str>::from(""));
        let len = self.suffixes.len().max(other.suffixes.len());
        for i in 0..len {
            let (wa, na) = self.suffixes.get(i).unwrap_or(&none);
            let (wb, nb) = other.suffixes.get(i).unwrap_or(&none);
            let ord = wa.cmp(wb).then_with(|| cmp_digits(na, nb));
            if ord != Ordering::Equal {
                return ord;
            }
        }
        Ordering::Equal
    }
}

impl std::str::FromStr for ApkVersion {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ApkVersion::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(a: &str, b: &str) -> Ordering {
        ApkVersion::parse(a)
            .unwrap()
            .compare(&ApkVersion::parse(b).unwrap())
    }

    #[test]
    fn ordering() {
        assert_eq!(cmp("1.2.3-r0", "1.2.3-r1"), Ordering::Less);
        assert_eq!(cmp("1.2_rc1", "1.2"), Ordering::Less);
        assert_eq!(cmp("1.2", "1.2_p1"), Ordering::Less);
        assert_eq!(cmp("1.2_alpha", "1.2_beta"), Ordering::Less);
        assert_eq!(cmp("1.2_git3", "1.2_hg1"), Ordering::Less);
        assert_eq!(cmp("1.2a", "1.2b"), Ordering::Less);
        assert_eq!(cmp("1.2", "1.2a"), Ordering::Less);
        assert_eq!(cmp("1.01", "1.1"), Ordering::Less);
        assert_eq!(cmp("1.10", "1.9"), Ordering::Greater);
        assert_eq!(cmp("1.0", "1"), Ordering::Equal);
        assert_eq!(cmp("1.2.3~abc123-r1", "1.2.3-r1"), Ordering::Equal);
        assert_eq!(cmp("3.1.4-r5", "3.1.4-r10"), Ordering::Less);
    }

    #[test]
    fn validity() {
        assert!(ApkVersion::parse("1.2.3_rc2-r1").unwrap().is_valid());
        assert!(!ApkVersion::parse("1.2.3-foo").unwrap().is_valid());
        assert!(!ApkVersion::parse("1-r0-1").unwrap().is_valid());
        assert!(ApkVersion::parse(" ").is_err());
    }
}
