//! Inventory: what is installed in an image, or locked in a source tree, as [`Package`]s.
//!
//! Owns the package-database and lock-file parsers (one submodule per ecosystem), the choice
//! of which image paths are worth keeping ([`wanted`]), the OS release, and the two entry
//! points: [`inventory`] over an image's [`FileTree`] and [`scan_dependencies`] over a source
//! directory. A file that does not parse becomes a warning, never a failed scan. `tree` owns
//! the file tree an image is read into (the image reader fills it, the analyzers read it).

mod apk;
mod cargo;
mod dpkg;
mod golang;
mod npm;
mod osrelease;
mod python;
mod tree;

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use apk::parse_installed as parse_apk_installed;
pub use cargo::parse_cargo_lock;
pub use dpkg::parse_status as parse_dpkg_status;
pub use golang::{
    ExecScratch, GoBuildInfo, Skip, packages as go_binary_packages, parse_go_mod, read_buildinfo,
    sniff_executable, stdlib_version, synthetic_executable,
};
pub use npm::{parse_package_json, parse_package_lock};
pub use osrelease::OsRelease;
pub use python::{
    normalize_name as pep503_name, parse_metadata as parse_python_metadata, parse_poetry_lock,
    parse_requirements,
};

use super::{Ecosystem, Package};

pub use tree::{FileTree, ImageMeta, ImageTree, LayerMeta, Node, TreeEntry};
pub(crate) use tree::{join_link, normalize};

/// A file that is not what its name promises.
#[derive(Debug, Error)]
pub enum ParseError {
    #[error("line {line}: {message}")]
    Syntax { line: usize, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("invalid TOML: {0}")]
    Toml(#[from] toml::de::Error),
}

impl ParseError {
    fn syntax(line: usize, message: impl Into<String>) -> Self {
        ParseError::Syntax {
            line,
            message: message.into(),
        }
    }
}

/// A source tree could not be walked.
#[derive(Debug, Error)]
pub enum InventoryError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What was found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// The image's `os-release` (none for source trees).
    pub os: Option<OsRelease>,
    /// Sorted by ecosystem, name, version, location.
    pub packages: Vec<Package>,
    /// Files that were skipped, and why (`path: reason`).
    pub warnings: Vec<String>,
}

/// The kinds of file the image analyzers read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    OsRelease,
    DpkgStatus,
    DpkgStatusD,
    ApkInstalled,
    PythonMetadata,
    NpmPackageJson,
    NpmLock,
    CargoLock,
}

fn classify(path: &str) -> Option<Kind> {
    let (parent, name) = match path.rfind('/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    };
    let kind = match name {
        "os-release" if path == "etc/os-release" || path == "usr/lib/os-release" => Kind::OsRelease,
        "status" if path == "var/lib/dpkg/status" => Kind::DpkgStatus,
        "installed" if path == "lib/apk/db/installed" => Kind::ApkInstalled,
        "METADATA" if parent.ends_with(".dist-info") => Kind::PythonMetadata,
        "PKG-INFO" if parent.ends_with(".egg-info") || parent.ends_with("/EGG-INFO") => {
            Kind::PythonMetadata
        }
        "package.json" if is_node_module_root(parent) => Kind::NpmPackageJson,
        "package-lock.json" | "npm-shrinkwrap.json" => Kind::NpmLock,
        "Cargo.lock" => Kind::CargoLock,
        _ if parent == "var/lib/dpkg/status.d" && !name.ends_with(".md5sums") => Kind::DpkgStatusD,
        // distutils' single-file egg-info (`foo-1.0-py3.9.egg-info`).
        _ if name.ends_with(".egg-info") => Kind::PythonMetadata,
        _ => return None,
    };
    Some(kind)
}

/// `…/node_modules/<name>` or `…/node_modules/@scope/<name>`: a package's own directory, not
/// one of its subdirectories (whose `package.json` files only set module options).
fn is_node_module_root(dir: &str) -> bool {
    let mut parts = dir.rsplit('/');
    let (Some(name), Some(up)) = (parts.next(), parts.next()) else {
        return false;
    };
    if name.starts_with('@') || name.is_empty() {
        return false;
    }
    if up == "node_modules" {
        return true;
    }
    up.starts_with('@') && parts.next() == Some("node_modules")
}

/// Whether the image reader should keep the file at `path` (root-relative, no leading `/`).
/// Executables are looked at separately for Go build information.
pub fn wanted(path: &str) -> bool {
    classify(path).is_some()
}

/// The packages of an image.
pub fn inventory_image(image: &ImageTree) -> Inventory {
    inventory(&image.files)
}

/// The packages installed in a file tree, each with the path that declared it and the layer
/// that wrote that file. Debian and Alpine packages get the release from `os-release` (see
/// [`OsRelease::advisory_release`]).
pub fn inventory(tree: &FileTree) -> Inventory {
    let mut inv = Inventory {
        os: tree
            .read("etc/os-release")
            .or_else(|| tree.read("usr/lib/os-release"))
            .map(|b| OsRelease::parse(&String::from_utf8_lossy(b))),
        ..Inventory::default()
    };
    let release = inv.os.as_ref().and_then(OsRelease::advisory_release);
    for (path, entry) in tree.iter() {
        let found: Result<Vec<Package>, ParseError> = match &entry.node {
            Node::GoBinary(info) => Ok(golang::packages(info, path)),
            Node::Symlink(_) => continue,
            Node::File(bytes) => {
                let Some(kind) = classify(path) else { continue };
                let text = String::from_utf8_lossy(bytes);
                parse(kind, &text, path)
            }
        };
        match found {
            Ok(mut packages) => {
                for p in &mut packages {
                    p.layer = entry.layer.as_deref().map(str::to_string);
                    if matches!(p.ecosystem, Ecosystem::Debian | Ecosystem::Alpine) {
                        p.distro_release = release.clone();
                    }
                }
                inv.packages.extend(packages);
            }
            Err(e) => inv.warnings.push(format!("{path}: {e}")),
        }
    }
    finish(&mut inv);
    inv
}

fn parse(kind: Kind, text: &str, path: &str) -> Result<Vec<Package>, ParseError> {
    match kind {
        Kind::OsRelease => Ok(Vec::new()),
        Kind::DpkgStatus => dpkg::parse_status(text, path, false),
        Kind::DpkgStatusD => dpkg::parse_status(text, path, true),
        Kind::ApkInstalled => apk::parse_installed(text, path),
        Kind::PythonMetadata => python::parse_metadata(text, path).map(|p| vec![p]),
        Kind::NpmPackageJson => Ok(npm::parse_package_json(text, path)?.into_iter().collect()),
        Kind::NpmLock => npm::parse_package_lock(text, path),
        Kind::CargoLock => cargo::parse_cargo_lock(text, path),
    }
}

fn finish(inv: &mut Inventory) {
    inv.packages.sort_by(|a, b| {
        (a.ecosystem, &a.name, &a.version, &a.location).cmp(&(
            b.ecosystem,
            &b.name,
            &b.version,
            &b.location,
        ))
    });
    inv.packages.dedup();
}

/// The lock files of a source tree that [`scan_dependencies`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LockKind {
    Cargo,
    Npm,
    Requirements,
    Poetry,
    GoMod,
}

fn lock_kind(rel: &str) -> Option<LockKind> {
    let (parent, name) = match rel.rfind('/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => ("", rel),
    };
    Some(match name {
        "Cargo.lock" => LockKind::Cargo,
        "package-lock.json" | "npm-shrinkwrap.json" => LockKind::Npm,
        "poetry.lock" => LockKind::Poetry,
        "go.mod" => LockKind::GoMod,
        // `requirements.txt`, `requirements-dev.txt`, and the `requirements/*.txt` convention.
        _ if name.ends_with(".txt")
            && (name.starts_with("requirements")
                || parent == "requirements"
                || parent.ends_with("/requirements")) =>
        {
            LockKind::Requirements
        }
        _ => return None,
    })
}

/// Directories never descended into: VCS data and installed dependencies (whose own lock
/// files describe their development, not what this project installs).
const SKIP_DIRS: &[&str] = &[".git", ".hg", ".svn", "node_modules"];

/// The dependencies a source tree pins in its lock files: `Cargo.lock`, `package-lock.json`
/// (and `npm-shrinkwrap.json`), `requirements*.txt` with `==` pins, `poetry.lock`, `go.mod`.
/// Locations are relative to `dir`. Symlinks are not followed.
pub fn scan_dependencies(dir: &Path) -> Result<Inventory, InventoryError> {
    let mut inv = Inventory::default();
    let mut stack = vec![dir.to_path_buf()];
    let mut files = Vec::new();
    while let Some(d) = stack.pop() {
        let io_err = |source| InventoryError::Io {
            path: d.clone(),
            source,
        };
        for entry in std::fs::read_dir(&d).map_err(io_err)? {
            let entry = entry.map_err(io_err)?;
            let kind = entry.file_type().map_err(io_err)?;
            let path = entry.path();
            if kind.is_dir() {
                if !SKIP_DIRS.iter().any(|s| entry.file_name() == *s) {
                    stack.push(path);
                }
            } else if kind.is_file() {
                let rel = path.strip_prefix(dir).unwrap_or(&path);
                let rel: Cow<'_, str> = rel.to_string_lossy();
                let rel = rel.replace(std::path::MAIN_SEPARATOR, "/");
                if let Some(k) = lock_kind(&rel) {
                    files.push((rel, path, k));
                }
            }
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    for (rel, path, kind) in files {
        let bytes = std::fs::read(&path).map_err(|source| InventoryError::Io {
            path: path.clone(),
            source,
        })?;
        let text = String::from_utf8_lossy(&bytes);
        let found = match kind {
            LockKind::Cargo => cargo::parse_cargo_lock(&text, &rel),
            LockKind::Npm => npm::parse_package_lock(&text, &rel),
            LockKind::Requirements => Ok(python::parse_requirements(&text, &rel)),
            LockKind::Poetry => python::parse_poetry_lock(&text, &rel),
            LockKind::GoMod => golang::parse_go_mod(&text, &rel),
        };
        match found {
            Ok(p) => inv.packages.extend(p),
            Err(e) => inv.warnings.push(format!("{rel}: {e}")),
        }
    }
    finish(&mut inv);
    Ok(inv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wanted_paths() {
        for p in [
            "var/lib/dpkg/status",
            "var/lib/dpkg/status.d/foo",
            "lib/apk/db/installed",
            "etc/os-release",
            "usr/lib/os-release",
            "usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA",
            "usr/lib/python3.11/site-packages/foo-1.0-py3.11.egg-info/PKG-INFO",
            "usr/lib/python2.7/dist-packages/bar-1.0.egg-info",
            "x/foo.egg/EGG-INFO/PKG-INFO",
            "app/node_modules/lodash/package.json",
            "app/node_modules/@types/node/package.json",
            "app/node_modules/a/node_modules/b/package.json",
            "app/package-lock.json",
            "src/Cargo.lock",
        ] {
            assert!(wanted(p), "{p}");
        }
        for p in [
            "var/lib/dpkg/status-old",
            "var/lib/dpkg/status.d/foo.md5sums",
            "var/lib/dpkg/status.d/sub/foo",
            "usr/share/doc/os-release",
            "app/package.json",
            "app/node_modules/lodash/fp/package.json",
            "app/node_modules/@types/package.json",
            "app/node_modules/.package-lock.json",
            "x/METADATA",
            "usr/bin/python3",
        ] {
            assert!(!wanted(p), "{p}");
        }
    }

    #[test]
    fn lock_files() {
        assert_eq!(lock_kind("requirements.txt"), Some(LockKind::Requirements));
        assert_eq!(
            lock_kind("a/requirements-dev.txt"),
            Some(LockKind::Requirements)
        );
        assert_eq!(
            lock_kind("requirements/base.txt"),
            Some(LockKind::Requirements)
        );
        assert_eq!(lock_kind("notes.txt"), None);
        assert_eq!(lock_kind("svc/go.mod"), Some(LockKind::GoMod));
        assert_eq!(lock_kind("go.sum"), None);
    }

    #[test]
    fn tree_inventory_sets_release_and_layer() {
        let mut t = FileTree::new();
        let layer: std::sync::Arc<str> = "sha256:l1".into();
        t.insert(
            "usr/lib/os-release",
            None,
            Node::File(b"ID=debian\nVERSION_ID=\"12\"\n".to_vec()),
        );
        t.insert(
            "etc/os-release",
            None,
            Node::Symlink("../usr/lib/os-release".into()),
        );
        t.insert(
            "var/lib/dpkg/status",
            Some(layer.clone()),
            Node::File(b"Package: zlib1g\nStatus: install ok installed\nSource: zlib\nVersion: 1:1.2.13.dfsg-1\n".to_vec()),
        );
        t.insert(
            "site/x-1.dist-info/METADATA",
            None,
            Node::File(b"garbage".to_vec()),
        );
        let inv = inventory(&t);
        assert_eq!(inv.os.as_ref().unwrap().id, "debian");
        assert_eq!(inv.packages.len(), 1);
        let p = &inv.packages[0];
        assert_eq!(p.distro_release.as_deref(), Some("12"));
        assert_eq!(p.layer.as_deref(), Some("sha256:l1"));
        assert_eq!(p.source_name.as_deref(), Some("zlib"));
        assert_eq!(inv.warnings.len(), 1, "{:?}", inv.warnings);
    }
}
