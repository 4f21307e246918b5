//! Python package versions (PEP 440), ordered as Python's `packaging.version` orders them.
//!
//! `[N!]N(.N)*[{a|b|rc}N][.postN][.devN][+local]`, read case-insensitively with the spec's
//! normalisations (`1.0RC1` = `1.0rc1`, `alpha`/`beta`/`c`/`pre`/`preview` spellings, `-`/`_`/`.`
//! separators, implicit numbers, `1.0-1` as a post release, a leading `v`). The release
//! ignores trailing zeros (`1.0` = `1.0.0`); dev releases sort before pre-releases, which sort
//! before the release, which sorts before its post releases; a local version sorts after the
//! same public version.
//!
//! Strings that are not PEP 440 (`0.1-bulbasaur`) are ordered like `packaging`'s former
//! `LegacyVersion` (setuptools' old rules), always before every PEP 440 version — PyPI still
//! holds such releases and advisories still name them.

use std::cmp::Ordering;
use std::sync::LazyLock;

use regex::Regex;

use super::{Scheme, VersionError, cmp_digits};

/// PEP 440, appendix B, with leading/trailing whitespace allowed.
static PEP440: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?ix)^\s*
        v?
        (?:(?P<epoch>[0-9]+)!)?
        (?P<release>[0-9]+(?:\.[0-9]+)*)
        (?P<pre>
            [-_.]?
            (?P<pre_l>alpha|a|beta|b|preview|pre|c|rc)
            [-_.]?
            (?P<pre_n>[0-9]+)?
        )?
        (?P<post>
            (?:-(?P<post_n1>[0-9]+))
            |
            (?:[-_.]?(?P<post_l>post|rev|r)[-_.]?(?P<post_n2>[0-9]+)?)
        )?
        (?P<dev>[-_.]?(?P<dev_l>dev)[-_.]?(?P<dev_n>[0-9]+)?)?
        (?:\+(?P<local>[a-z0-9]+(?:[-_.][a-z0-9]+)*))?
        \s*$",
    )
    .expect("PEP 440 pattern compiles")
});

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum PreKind {
    Alpha,
    Beta,
    Rc,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum LocalPart {
    Num(Box<str>),
    Str(Box<str>),
}

impl LocalPart {
    /// `packaging`: a numeric segment sorts after any alphanumeric one.
    fn cmp(&self, other: &LocalPart) -> Ordering {
        match (self, other) {
            (LocalPart::Num(a), LocalPart::Num(b)) => cmp_digits(a, b),
            (LocalPart::Str(a), LocalPart::Str(b)) => a.cmp(b),
            (LocalPart::Num(_), LocalPart::Str(_)) => Ordering::Greater,
            (LocalPart::Str(_), LocalPart::Num(_)) => Ordering::Less,
        }
    }
}

#[derive(Debug, Clone)]
struct Standard {
    epoch: Box<str>,
    /// Without trailing zero components: `1.0.0` and `1` compare equal.
    release: Vec<Box<str>>,
    pre: Option<(PreKind, Box<str>)>,
    post: Option<Box<str>>,
    dev: Option<Box<str>>,
    local: Option<Vec<LocalPart>>,
}

#[derive(Debug, Clone)]
enum Repr {
    /// `packaging`'s legacy key: normalised parts compared as a tuple of strings.
    Legacy(Vec<String>),
    Standard(Standard),
}

#[derive(Debug, Clone)]
pub struct Pep440Version {
    repr: Repr,
}

impl Pep440Version {
    /// Reads a PEP 440 version, or failing that a legacy one; only an empty string is refused.
    pub fn parse(s: &str) -> Result<Pep440Version, VersionError> {
        if s.trim().is_empty() {
            return Err(VersionError::new(
                Scheme::Pep440,
                s,
                "version string is empty",
            ));
        }
        let repr = match PEP440.captures(s) {
            Some(c) => Repr::Standard(standard(&c)),
            None => Repr::Legacy(legacy_key(s)),
        };
        Ok(Pep440Version { repr })
    }

    /// Whether the version is not PEP 440 and ordered by the legacy rules.
    pub fn is_legacy(&self) -> bool {
        matches!(self.repr, Repr::Legacy(_))
    }

    /// Whether this is a pre-release or development release.
    pub fn is_prerelease(&self) -> bool {
        match &self.repr {
            Repr::Standard(s) => s.pre.is_some() || s.dev.is_some(),
            Repr::Legacy(_) => false,
        }
    }
}

fn standard(c: &regex::Captures<'_>) -> Standard {
    let text = |name: &str| c.name(name).map(|m| m.as_str());
    let number = |name: &str| -> Box<str> { text(name).unwrap_or("0").into() };
    let mut release: Vec<Box<str>> = text("release")
        .unwrap_or("0")
        .split('.')
        .map(Box::from)
        .collect();
    while release.len() > 1 && release.last().is_some_and(|p| cmp_digits(p, "0").is_eq()) {
        release.pop();
    }
    if release.len() == 1 && cmp_digits(&release[0], "0").is_eq() {
        release.clear();
    }
    let pre = text("pre_l").map(|l| {
        let kind = match l.to_ascii_lowercase().as_str() {
            "a" | "alpha" => PreKind::Alpha,
            "b" | "beta" => PreKind::Beta,
            _ => PreKind::Rc,
        };
        (kind, number("pre_n"))
    });
    let post = match (text("post_n1"), text("post_l")) {
        (Some(n), _) => Some(n.into()),
        (None, Some(_)) => Some(number("post_n2")),
        (None, None) => None,
    };
    let dev = text("dev_l").map(|_| number("dev_n"));
    let local = text("local").map(|l| {
        l.split(['-', '_', '.'])
            .map(|p| {
                if p.bytes().all(|b| b.is_ascii_digit()) {
                    LocalPart::Num(p.into())
                } else {
                    LocalPart::Str(p.to_ascii_lowercase().into())
                }
            })
            .collect()
    });
    Standard {
        epoch: number("epoch"),
        release,
        pre,
        post,
        dev,
        local,
    }
}

/// `packaging` (before 22)'s `_legacy_cmpkey`: split into digit runs, letter runs, `.`, `-`
/// and whatever lies between; rename `pre`/`preview`/`rc` to `c`, `dev` to `@`, `-` to
/// `final-`; zero-pad numbers to 8 characters and prefix words with `*`; drop trailing zeros
/// of each numeric series and `final-` markers before a pre-release word; end with `*final`.
fn legacy_key(s: &str) -> Vec<String> {
    let lower = s.to_lowercase();
    let mut tokens: Vec<&str> = Vec::new();
    let bytes = lower.as_bytes();
    let mut i = 0;
    let mut gap_start = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let len = if b.is_ascii_digit() {
            bytes[i..].iter().take_while(|b| b.is_ascii_digit()).count()
        } else if b.is_ascii_lowercase() {
            bytes[i..]
                .iter()
                .take_while(|b| b.is_ascii_lowercase())
                .count()
        } else if b == b'.' || b == b'-' {
            1
        } else {
            0
        };
        if len == 0 {
            i += 1;
            continue;
        }
        // Text between two matches is a part of its own, as in Python's `re.split`.
        if gap_start < i {
            tokens.push(&lower[gap_start..i]);
        }
        tokens.push(&lower[i..i + len]);
        i += len;
        gap_start = i;
    }
    if gap_start < bytes.len() {
        tokens.push(&lower[gap_start..]);
    }

    let mut parts: Vec<String> = Vec::new();
    let normalised = tokens
        .into_iter()
        .map(|t| match t {
            "pre" | "preview" | "rc" => "c",
            "-" => "final-",
            "dev" => "@",
            other => other,
        })
        .filter(|t| !t.is_empty() && *t != ".")
        .map(|t| {
            if t.starts_with(|c: char| c.is_ascii_digit()) {
                format!("{t:0>8}")
            } else {
                format!("*{t}")
            }
        })
        .chain(std::iter::once("*final".to_string()));
    for part in normalised {
        if part.starts_with('*') {
            if part.as_str() < "*final" {
                while parts.last().is_some_and(|p| p == "*final-") {
                    parts.pop();
                }
            }
            while parts.last().is_some_and(|p| p == "00000000") {
                parts.pop();
            }
        }
        parts.push(part);
    }
    parts
}

fn cmp_release(a: &[Box<str>], b: &[Box<str>]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let ord = cmp_digits(x, y);
        if ord != Ordering::Equal {
            return ord;
        }
    }
    a.len().cmp(&b.len())
}

fn cmp_standard(a: &Standard, b: &Standard) -> Ordering {
    // `packaging`'s key: a dev release of a final version sorts before its pre-releases.
    fn pre_key(s: &Standard) -> (u8, Option<(PreKind, &str)>) {
        match &s.pre {
            None if s.post.is_none() && s.dev.is_some() => (0, None),
            Some((kind, n)) => (1, Some((*kind, n))),
            None => (2, None),
        }
    }
    let (pa, pb) = (pre_key(a), pre_key(b));
    cmp_digits(&a.epoch, &b.epoch)
        .then_with(|| cmp_release(&a.release, &b.release))
        .then_with(|| {
            pa.0.cmp(&pb.0).then_with(|| match (pa.1, pb.1) {
                (Some((ka, na)), Some((kb, nb))) => ka.cmp(&kb).then_with(|| cmp_digits(na, nb)),
                _ => Ordering::Equal,
            })
        })
        .then_with(|| match (&a.post, &b.post) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (Some(x), Some(y)) => cmp_digits(x, y),
        })
        .then_with(|| match (&a.dev, &b.dev) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(x), Some(y)) => cmp_digits(x, y),
        })
        .then_with(|| match (&a.local, &b.local) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (Some(x), Some(y)) => {
                for (p, q) in x.iter().zip(y) {
                    let ord = p.cmp(q);
                    if ord != Ordering::Equal {
                        return ord;
                    }
                }
                x.len().cmp(&y.len())
            }
        })
}

impl Ord for Pep440Version {
    fn cmp(&self, other: &Self) -> Ordering {
        match (&self.repr, &other.repr) {
            (Repr::Legacy(a), Repr::Legacy(b)) => a.cmp(b),
            (Repr::Legacy(_), Repr::Standard(_)) => Ordering::Less,
            (Repr::Standard(_), Repr::Legacy(_)) => Ordering::Greater,
            (Repr::Standard(a), Repr::Standard(b)) => cmp_standard(a, b),
        }
    }
}

impl PartialOrd for Pep440Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Equality is PEP 440's: `1.0` equals `1.0.0` and `1.0RC1` equals `1.0rc1`.
impl PartialEq for Pep440Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Pep440Version {}

impl std::str::FromStr for Pep440Version {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Pep440Version::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Pep440Version {
        Pep440Version::parse(s).unwrap()
    }

    #[test]
    fn normalisation() {
        assert_eq!(v("1.0RC1"), v("1.0rc1"));
        assert_eq!(v("1.0c1"), v("1.0rc1"));
        assert_eq!(v("1.0-preview.1"), v("1.0rc1"));
        assert_eq!(v("1.0alpha"), v("1.0a0"));
        assert_eq!(v("1.0.post"), v("1.0.post0"));
        assert_eq!(v("1.0-1"), v("1.0.post1"));
        assert_eq!(v("1.0.r1"), v("1.0.post1"));
        assert_eq!(v("v1.0"), v("1.0.0"));
        assert_eq!(v("0!1.0"), v("1.0"));
        assert_eq!(v(" 1.0 "), v("1.0"));
        assert_eq!(v("1.0+Ubuntu-1"), v("1.0+ubuntu.1"));
        assert!(!v("1.0").is_legacy());
        assert!(v("1.0-foo").is_legacy());
    }

    #[test]
    fn ordering() {
        let ordered = [
            "1.0.dev0",
            "1.0a1.dev1",
            "1.0a1",
            "1.0a2",
            "1.0b1",
            "1.0rc1",
            "1.0",
            "1.0+abc",
            "1.0+1",
            "1.0.post1.dev1",
            "1.0.post1",
            "1.1",
            "1!0.1",
        ];
        for pair in ordered.windows(2) {
            assert!(v(pair[0]) < v(pair[1]), "{} < {}", pair[0], pair[1]);
        }
        assert!(v("2.0-legacy-thing") < v("0.0.1"));
    }

    #[test]
    fn legacy_keys_match_packaging() {
        assert_eq!(legacy_key("1.0_foo"), ["00000001", "*_", "*foo", "*final"]);
        assert_eq!(
            legacy_key("0.1-charmander"),
            ["00000000", "00000001", "*charmander", "*final"]
        );
        assert_eq!(
            legacy_key("-class.-jw.util.version.version-pre"),
            [
                "*class", "*final-", "*jw", "*util", "*version", "*version", "*c", "*final"
            ]
        );
        assert_eq!(legacy_key("1.0-dev"), ["00000001", "*@", "*final"]);
    }
}
