//! Image and dependency vulnerability scanning (pure, but for two features: `docker` reads
//! images from an engine, `fetch` downloads advisories): what is installed (inventory), what is known
//! to be vulnerable (OSV advisories and the Debian tracker), and the ecosystem-exact version
//! ordering that decides whether one affects the other.
//!
//! Shared vocabulary of the submodules lives here; the submodules own:
//! - `version`: comparators per ecosystem (`moat version-compare`).
//! - `osv`, `db`, `matcher`, `severity`, `cvss`: advisories, the database directory, matching
//!   and severity.
//! - `image`, `inventory`, `sbom`: reading images layer by layer, package databases and lock
//!   files, CycloneDX output.
//! - `fetch`: `moat db update`.

pub mod cvss;
pub mod db;
#[cfg(feature = "fetch")]
pub mod fetch;
pub mod image;
pub mod inventory;
pub mod matcher;
pub mod osv;
pub mod sbom;
pub mod scan;
pub mod severity;
pub mod version;

use serde::{Deserialize, Serialize};

/// Where a package comes from, in OSV's naming.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Ecosystem {
    Debian,
    Alpine,
    PyPI,
    Npm,
    CratesIo,
    Go,
}

impl Ecosystem {
    /// The ecosystem name OSV records use (`Debian`, `Alpine`, `PyPI`, `npm`, `crates.io`, `Go`).
    pub fn osv_name(self) -> &'static str {
        match self {
            Ecosystem::Debian => "Debian",
            Ecosystem::Alpine => "Alpine",
            Ecosystem::PyPI => "PyPI",
            Ecosystem::Npm => "npm",
            Ecosystem::CratesIo => "crates.io",
            Ecosystem::Go => "Go",
        }
    }

    /// Parses OSV's ecosystem field; a release suffix (`Debian:12`, `Alpine:v3.18`) is ignored
    /// here (see [`Package::distro_release`]).
    pub fn from_osv(s: &str) -> Option<Self> {
        let base = s.split(':').next().unwrap_or(s);
        Some(match base {
            "Debian" => Ecosystem::Debian,
            "Alpine" => Ecosystem::Alpine,
            "PyPI" => Ecosystem::PyPI,
            "npm" => Ecosystem::Npm,
            "crates.io" => Ecosystem::CratesIo,
            "Go" => Ecosystem::Go,
            _ => return None,
        })
    }
}

/// One installed package (or locked dependency).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Package {
    pub ecosystem: Ecosystem,
    /// The binary package name (dpkg `Package:`, apk `P:`, the distribution name for PyPI in
    /// its normalised form, the crate, the module path).
    pub name: String,
    pub version: String,
    /// Debian/Alpine: the source package (dpkg `Source:`, apk `o:`), which advisories name.
    pub source_name: Option<String>,
    /// Debian: the source version when `Source: name (version)` gives one.
    pub source_version: Option<String>,
    /// Debian/Alpine: the release (`12` or `bookworm`, `3.18`) from `etc/os-release`.
    pub distro_release: Option<String>,
    /// The file that declared it, relative to the image root or the scanned directory.
    pub location: String,
    /// The image layer (diff id or digest) that added it, when scanning an image.
    pub layer: Option<String>,
}

impl Package {
    /// A package of a language ecosystem: no source package, no distribution release, no layer
    /// (yet).
    pub fn new(
        ecosystem: Ecosystem,
        name: impl Into<String>,
        version: impl Into<String>,
        location: &str,
    ) -> Package {
        Package {
            ecosystem,
            name: name.into(),
            version: version.into(),
            source_name: None,
            source_version: None,
            distro_release: None,
            location: location.to_string(),
            layer: None,
        }
    }
}

/// Reads until `buf` is full or the stream ends; returns how many bytes were read.
pub(crate) fn read_full<R: std::io::Read>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(k) => filled += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
