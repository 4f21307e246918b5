//! `moat version-compare ECOSYSTEM A B`: the scanner's version comparators on their own, for
//! users writing ignores. Prints `<`, `=` or `>` (like `dpkg --compare-versions`, but as one
//! answer) and exits 0; exits 2 with a message on an unknown ecosystem or a version the
//! ecosystem cannot read.

use std::cmp::Ordering;

use moat_vuln::version::{Scheme, compare_in};

/// The ecosystems the command accepts, as shown in its error message.
pub const ECOSYSTEMS: &str = "debian, alpine, pypi, semver, go";

/// Runs the command; returns the process exit code.
pub fn version_compare(ecosystem: &str, a: &str, b: &str) -> u8 {
    match version_compare_text(ecosystem, a, b) {
        Ok(symbol) => {
            println!("{symbol}");
            0
        }
        Err(message) => {
            eprintln!("moat version-compare: {message}");
            2
        }
    }
}

/// The answer (`<`, `=`, `>`) or the message for standard error.
pub fn version_compare_text(ecosystem: &str, a: &str, b: &str) -> Result<&'static str, String> {
    let scheme = Scheme::from_name(ecosystem)
        .ok_or_else(|| format!("unknown ecosystem \"{ecosystem}\" (one of: {ECOSYSTEMS})"))?;
    let order = compare_in(scheme, a, b).map_err(|e| e.to_string())?;
    Ok(match order {
        Ordering::Less => "<",
        Ordering::Equal => "=",
        Ordering::Greater => ">",
    })
}

/// `moat db update [--db DIR] [ECOSYSTEM…]`: downloads OSV's per-ecosystem exports into the
/// vulnerability database directory. Fails clearly when the network does not allow it.
pub fn db_update(dir: &std::path::Path, names: &[String]) -> u8 {
    use moat_vuln::Ecosystem;
    let ecosystems: Vec<Ecosystem> = if names.is_empty() {
        vec![
            Ecosystem::Debian,
            Ecosystem::Alpine,
            Ecosystem::PyPI,
            Ecosystem::Npm,
            Ecosystem::CratesIo,
            Ecosystem::Go,
        ]
    } else {
        let mut out = Vec::new();
        for n in names {
            match Ecosystem::from_osv(n) {
                Some(e) => out.push(e),
                None => {
                    eprintln!(
                        "moat db update: unknown ecosystem \"{n}\" (one of: Debian, Alpine, PyPI, npm, crates.io, Go)"
                    );
                    return 2;
                }
            }
        }
        out
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("moat db update: {e}");
            return 1;
        }
    };
    match rt.block_on(moat_vuln::db::update(dir, &ecosystems)) {
        Ok(report) => {
            for (eco, path, bytes) in report.downloaded {
                println!("{}: {} bytes in {}", eco.osv_name(), bytes, path.display());
            }
            0
        }
        Err(e) => {
            eprintln!("moat db update: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        assert_eq!(version_compare_text("debian", "1.0~rc1", "1.0"), Ok("<"));
        assert_eq!(version_compare_text("alpine", "1.2_p1", "1.2"), Ok(">"));
        assert_eq!(version_compare_text("pypi", "1.0RC1", "1.0rc1"), Ok("="));
        assert_eq!(
            version_compare_text("semver", "1.0.0-beta.11", "1.0.0-beta.2"),
            Ok(">")
        );
        assert_eq!(version_compare_text("go", "go1.21rc2", "v1.21.0"), Ok("<"));
    }

    #[test]
    fn errors() {
        assert_eq!(
            version_compare_text("maven", "1", "2"),
            Err("unknown ecosystem \"maven\" (one of: debian, alpine, pypi, semver, go)".into())
        );
        assert_eq!(
            version_compare_text("debian", "1:", "2"),
            Err("invalid debian version \"1:\": nothing after colon in version number".into())
        );
        assert_eq!(version_compare("semver", "x", "1.0.0"), 2);
        assert_eq!(version_compare("semver", "1.0.0", "1.0.0"), 0);
    }
}
