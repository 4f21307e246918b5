//! Cargo: `Cargo.lock`.

use serde::Deserialize;

use super::ParseError;
use crate::{Ecosystem, Package};

#[derive(Deserialize)]
struct Lock {
    #[serde(default)]
    package: Vec<LockPackage>,
}

#[derive(Deserialize)]
struct LockPackage {
    name: String,
    version: String,
    #[serde(default)]
    source: Option<String>,
}

/// The `[[package]]` entries of a `Cargo.lock` (any lock format version) that come from a
/// registry or git (`source = …`). Path dependencies and workspace members have no `source`:
/// they are the project itself, not crates.io releases.
pub fn parse_cargo_lock(text: &str, location: &str) -> Result<Vec<Package>, ParseError> {
    let lock: Lock = toml::from_str(text)?;
    Ok(lock
        .package
        .into_iter()
        .filter(|p| p.source.is_some())
        .map(|p| Package::new(Ecosystem::CratesIo, p.name, p.version, location))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_members() {
        let text = r#"
version = 3

[[package]]
name = "app"
version = "0.1.0"
dependencies = ["smallvec"]

[[package]]
name = "smallvec"
version = "0.6.9"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "c4488ae950c49d403731982257768f48fada354a5203fe81f9bb6f43ca9002be"
"#;
        let p = parse_cargo_lock(text, "Cargo.lock").unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(
            (p[0].name.as_str(), p[0].version.as_str()),
            ("smallvec", "0.6.9")
        );
        assert!(parse_cargo_lock("[[package]]\nname = 1", "x").is_err());
    }
}
