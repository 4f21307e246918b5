//! Matching installed packages against the database: which advisories affect which package,
//! with the fix to upgrade to and the severity to gate on.
//!
//! Debian and Alpine packages are matched by their source package (dpkg `Source:`, apk
//! origin) and source version, against advisories for the image's release only; a package
//! whose release is unknown meets only advisories that name no release. Other ecosystems match
//! by (normalised) package name.

use moat_pipelines::Severity;
use serde::Serialize;

use super::db::Database;
use super::osv::{Installed, canonical_release};
use super::{Ecosystem, Package};

/// One advisory affecting one installed package.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VulnFinding {
    /// The advisory id as in OSV (`PYSEC-2021-108`, `RUSTSEC-2020-0071`, `DSA-5380-1`).
    pub id: String,
    pub aliases: Vec<String>,
    /// The installed (binary) package name.
    pub package: String,
    pub ecosystem: Ecosystem,
    /// The source package the advisory named, for Debian and Alpine.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_package: Option<String>,
    pub installed_version: String,
    /// The smallest fixed version above the installed one, if the advisory gives one.
    pub fixed_version: Option<String>,
    pub severity: Option<Severity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cvss_score: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cvss_vector: Option<String>,
    pub summary: String,
    /// The file that declared the package.
    pub location: String,
    /// The image layer that added it.
    pub layer: Option<String>,
}

/// Every finding for every package, in package order, then by advisory id.
pub fn match_packages(db: &Database, packages: &[Package]) -> Vec<VulnFinding> {
    let mut out = Vec::new();
    for p in packages {
        out.extend(match_package(db, p));
    }
    out
}

/// The findings for one package, sorted by advisory id, one per advisory.
pub fn match_package(db: &Database, pkg: &Package) -> Vec<VulnFinding> {
    let distro = matches!(pkg.ecosystem, Ecosystem::Debian | Ecosystem::Alpine);
    let (name, version) = if distro {
        (
            pkg.source_name.as_deref().unwrap_or(&pkg.name),
            pkg.source_version.as_deref().unwrap_or(&pkg.version),
        )
    } else {
        (pkg.name.as_str(), pkg.version.as_str())
    };
    let release = pkg
        .distro_release
        .as_deref()
        .and_then(|r| canonical_release(pkg.ecosystem, r));
    let installed = Installed::new(version);
    let mut found: Vec<VulnFinding> = Vec::new();
    for (adv, affected) in db.lookup(pkg.ecosystem, name) {
        if distro && affected.release.is_some() && affected.release != release {
            continue;
        }
        let Some(fixed) = affected.check(&installed) else {
            continue;
        };
        // One advisory may list the package in several entries (per release, per range
        // kind): one finding, keeping the nearest fix.
        if let Some(prev) = found.iter_mut().find(|f| f.id == adv.id) {
            if let Some(fixed) = fixed {
                let nearer = prev.fixed_version.as_deref().is_none_or(|p| {
                    super::version::compare(pkg.ecosystem, &fixed, p).is_ok_and(|o| o.is_lt())
                });
                if nearer {
                    prev.fixed_version = Some(fixed);
                }
            }
            continue;
        }
        found.push(VulnFinding {
            id: adv.id.clone(),
            aliases: adv.aliases.clone(),
            package: pkg.name.clone(),
            ecosystem: pkg.ecosystem,
            source_package: distro.then(|| name.to_string()),
            installed_version: pkg.version.clone(),
            fixed_version: fixed,
            severity: affected.rating.severity,
            cvss_score: affected.rating.score,
            cvss_vector: affected.rating.vector.clone(),
            summary: adv.summary.clone(),
            location: pkg.location.clone(),
            layer: pkg.layer.clone(),
        });
    }
    found.sort_by(|a, b| a.id.cmp(&b.id));
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(eco: Ecosystem, name: &str, version: &str) -> Package {
        Package {
            ecosystem: eco,
            name: name.into(),
            version: version.into(),
            source_name: None,
            source_version: None,
            distro_release: None,
            location: "lib/apk/db/installed".into(),
            layer: Some("sha256:abc".into()),
        }
    }

    fn db(records: &[&str]) -> Database {
        let mut db = Database::new();
        for r in records {
            db.add_json(r.as_bytes(), "test");
        }
        assert!(db.stats().errors.is_empty(), "{:?}", db.stats().errors);
        db
    }

    const ALPINE: &str = r#"{"id": "ALPINE-CVE-2023-5678", "aliases": ["CVE-2023-5678"],
        "details": "Generating excessively long X9.42 DH keys...\nmore",
        "affected": [
          {"package": {"ecosystem": "Alpine:v3.18", "name": "openssl"},
           "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.1.4-r1"}]}]},
          {"package": {"ecosystem": "Alpine:v3.17", "name": "openssl"},
           "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.12-r1"}]}]}
        ]}"#;

    #[test]
    fn alpine_by_origin_and_release() {
        let db = db(&[ALPINE]);
        let mut p = pkg(Ecosystem::Alpine, "libcrypto3", "3.1.4-r0");
        p.source_name = Some("openssl".into());
        p.distro_release = Some("3.18.4".into());
        let found = match_package(&db, &p);
        assert_eq!(found.len(), 1);
        let f = &found[0];
        assert_eq!(f.id, "ALPINE-CVE-2023-5678");
        assert_eq!(f.package, "libcrypto3");
        assert_eq!(f.source_package.as_deref(), Some("openssl"));
        assert_eq!(f.fixed_version.as_deref(), Some("3.1.4-r1"));
        assert_eq!(f.summary, "Generating excessively long X9.42 DH keys...");
        assert_eq!(f.layer.as_deref(), Some("sha256:abc"));
        assert_eq!(f.severity, None);
        // The 3.17 entry is another release's: 3.1.4-r0 would be "fixed" there.
        p.distro_release = Some("3.17.1".into());
        assert!(match_package(&db, &p).is_empty());
        p.version = "3.1.4-r1".into();
        p.distro_release = Some("v3.18".into());
        assert!(match_package(&db, &p).is_empty());
    }

    #[test]
    fn debian_osv_records_with_release_suffix() {
        let db = db(&[
            r#"{"id": "DSA-5532-1", "summary": "openssl - security update",
            "affected": [{"package": {"ecosystem": "Debian:12", "name": "openssl"},
              "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.11-1~deb12u2"}]}]}]}"#,
        ]);
        let mut p = pkg(Ecosystem::Debian, "libssl3", "3.0.11-1~deb12u1");
        p.source_name = Some("openssl".into());
        p.distro_release = Some("bookworm".into());
        let found = match_package(&db, &p);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].fixed_version.as_deref(), Some("3.0.11-1~deb12u2"));
        // dpkg ordering, not string ordering: ~deb12u2 < the release it backports to.
        p.source_version = Some("3.0.11-1".into());
        assert!(match_package(&db, &p).is_empty());
    }

    #[test]
    fn one_finding_per_advisory_with_the_nearest_fix() {
        let db = db(&[r#"{"id": "GHSA-x", "severity": [{"type": "CVSS_V3",
              "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N"}],
            "affected": [
              {"package": {"ecosystem": "npm", "name": "lodash"},
               "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "4.17.21"}]}]},
              {"package": {"ecosystem": "npm", "name": "lodash"},
               "ranges": [{"type": "SEMVER", "events": [{"introduced": "4.0.0"}, {"fixed": "4.17.12"}]}]}
            ]}"#]);
        let found = match_package(&db, &pkg(Ecosystem::Npm, "lodash", "4.17.11"));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].fixed_version.as_deref(), Some("4.17.12"));
        assert_eq!(found[0].cvss_score, Some(7.5));
        assert_eq!(found[0].severity, Some(Severity::High));
        assert!(match_package(&db, &pkg(Ecosystem::Npm, "lodash", "4.17.21")).is_empty());
        // Another ecosystem's package of the same name is not matched.
        assert!(match_package(&db, &pkg(Ecosystem::PyPI, "lodash", "1.0")).is_empty());
    }

    #[test]
    fn pypi_names_are_normalised_on_both_sides() {
        let db = db(&[
            r#"{"id": "PYSEC-1", "affected": [{"package": {"ecosystem": "PyPI",
            "name": "Zope.Interface"}, "versions": ["4.0.0"]}]}"#,
        ]);
        let found = match_package(&db, &pkg(Ecosystem::PyPI, "zope-interface", "4.0"));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].fixed_version, None);
    }
}
