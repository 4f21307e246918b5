//! Branch and tag patterns (`main`, `release/*`, `v*`): shell-style globs where `*` stays within
//! one `/`-separated segment and `**` crosses segments, as in Woodpecker and GitLab rules.

use globset::{GlobBuilder, GlobMatcher};

#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    matcher: GlobMatcher,
}

impl Pattern {
    /// Compiles a pattern; the error says what is wrong with it.
    pub fn new(source: &str) -> Result<Self, String> {
        if source.is_empty() {
            return Err("empty pattern".to_string());
        }
        let glob = GlobBuilder::new(source)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| e.kind().to_string())?;
        Ok(Pattern {
            source: source.to_string(),
            matcher: glob.compile_matcher(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn matches(&self, value: &str) -> bool {
        self.matcher.is_match(value)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Pattern {}

impl serde::Serialize for Pattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> serde::Deserialize<'de> for Pattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Pattern::new(&s).map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.source)
    }
}

/// True when the list is empty (no restriction) or any pattern matches.
pub fn any_matches(patterns: &[Pattern], value: &str) -> bool {
    patterns.is_empty() || patterns.iter().any(|p| p.matches(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_stays_in_segment() {
        let p = Pattern::new("release/*").unwrap();
        assert!(p.matches("release/1.0"));
        assert!(!p.matches("release/1.0/hotfix"));
        assert!(!p.matches("main"));
        assert!(
            Pattern::new("release/**")
                .unwrap()
                .matches("release/1.0/hotfix")
        );
        assert!(Pattern::new("v*").unwrap().matches("v1.2.3"));
    }

    #[test]
    fn bad_patterns_are_errors() {
        assert!(Pattern::new("feature/[abc").is_err());
        assert!(Pattern::new("{a,b").is_err());
        assert!(Pattern::new("").is_err());
    }
}
