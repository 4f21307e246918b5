//! Inventory parsers against real package databases (`tests/fixtures/packagedb`, with
//! `dpkg-query` as a second oracle for the real Debian 12 status file), a real Go executable
//! from this machine, and lock files of a source tree.

use std::path::{Path, PathBuf};
use std::process::Command;

use moat_vuln::inventory::{
    ExecScratch, go_binary_packages, parse_apk_installed, parse_dpkg_status, read_buildinfo,
    scan_dependencies, sniff_executable,
};
use moat_vuln::{Ecosystem, Package};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/packagedb")
        .join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(fixture(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn dpkg(rel: &str) -> Vec<Package> {
    let status_d = rel.contains("status.d");
    parse_dpkg_status(&read(rel), rel, status_d).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn names(p: &[Package]) -> Vec<&str> {
    p.iter().map(|p| p.name.as_str()).collect()
}

#[test]
fn dpkg_fixtures() {
    assert!(dpkg("dpkg/empty").is_empty());
    assert!(parse_dpkg_status(&read("dpkg/invalid"), "invalid", false).is_err());

    let single = dpkg("dpkg/single");
    assert_eq!(names(&single), ["acl"]);
    assert_eq!(single[0].version, "2.3.1-3");
    assert_eq!(single[0].ecosystem, Ecosystem::Debian);
    // No Source: field: the source package is the binary package.
    assert_eq!(single[0].source_name.as_deref(), Some("acl"));
    assert_eq!(single[0].source_version, None);

    assert_eq!(names(&dpkg("dpkg/nopackage")), ["foo", "bar"]);
    assert_eq!(names(&dpkg("dpkg/noversion")), ["foo", "bar"]);
    assert_eq!(dpkg("dpkg/trailingnewlines").len(), 1);

    // Installed means the state word, whatever the wish: deinstall/purge-wanted packages whose
    // files are still there count; config-files, unpacked, half-installed and no-status do not.
    assert_eq!(
        names(&dpkg("dpkg/statusfield")),
        [
            "wantinstall_installed",
            "wantdeinstall_installed",
            "wantpurge_installed"
        ]
    );

    let t = dpkg("dpkg/transitional");
    assert_eq!(names(&t), ["iceweasel"]);
    assert_eq!(t[0].source_name.as_deref(), Some("firefox-esr"));
    assert_eq!(t[0].version, "78.13.0esr-1~deb10u1");

    let valid = dpkg("dpkg/valid");
    assert_eq!(valid.len(), 7);
    assert_eq!(&names(&valid)[..3], ["accountsservice", "acl", "adduser"]);
    let with_version: Vec<_> = valid
        .iter()
        .filter(|p| p.source_version.is_some())
        .collect();
    assert_eq!(with_version.len(), 1, "{with_version:?}");

    // Distroless status.d: no Status field means installed; the deinstalled entry is skipped.
    let d = dpkg("dpkg/status.d/foo");
    assert_eq!(names(&d), ["foo"]);
    assert_eq!(d[0].version, "1.2.3");
}

/// The real Debian 12 status file, checked package by package against `dpkg-query`.
#[test]
fn debian12_status_matches_dpkg_query() {
    let ours = dpkg("dpkg/debian12-real-status");
    assert!((700..800).contains(&ours.len()), "{} packages", ours.len());

    let admin = std::env::temp_dir().join(format!("moat-dpkg-admin-{}", std::process::id()));
    std::fs::create_dir_all(admin.join("info")).unwrap();
    std::fs::create_dir_all(admin.join("updates")).unwrap();
    std::fs::copy(fixture("dpkg/debian12-real-status"), admin.join("status")).unwrap();
    std::fs::write(admin.join("available"), "").unwrap();
    let out = Command::new("dpkg-query")
        .arg(format!("--admindir={}", admin.display()))
        .args([
            "-W",
            "-f=${db:Status-Status}\\t${Package}\\t${Version}\\t${source:Package}\\t${source:Version}\\n",
        ])
        .output()
        .expect("dpkg-query runs (this suite needs a Debian machine)");
    let _ = std::fs::remove_dir_all(&admin);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut oracle: Vec<(String, String, String, String)> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0] == "installed").then(|| (f[1].into(), f[2].into(), f[3].into(), f[4].into()))
        })
        .collect();
    let mut mine: Vec<(String, String, String, String)> = ours
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                p.version.clone(),
                p.source_name.clone().unwrap(),
                p.source_version
                    .clone()
                    .unwrap_or_else(|| p.version.clone()),
            )
        })
        .collect();
    oracle.sort();
    mine.sort();
    assert_eq!(mine.len(), oracle.len());
    for (a, b) in mine.iter().zip(&oracle) {
        assert_eq!(a, b);
    }
    let ssl = ours.iter().find(|p| p.name == "libssl3").unwrap();
    assert_eq!(ssl.source_name.as_deref(), Some("openssl"));
    let sourced = ours
        .iter()
        .filter(|p| p.source_name.as_deref() != Some(p.name.as_str()))
        .count();
    assert!(sourced > 300, "{sourced} packages with a distinct source");
}

#[test]
fn apk_fixtures() {
    let apk =
        |rel: &str| parse_apk_installed(&read(rel), rel).unwrap_or_else(|e| panic!("{rel}: {e}"));
    assert!(apk("apk/empty").is_empty());
    assert!(parse_apk_installed(&read("apk/invalid"), "invalid").is_err());

    let single = apk("apk/single");
    assert_eq!(names(&single), ["alpine-baselayout-data"]);
    assert_eq!(single[0].version, "3.4.3-r1");
    assert_eq!(single[0].source_name.as_deref(), Some("alpine-baselayout"));
    assert_eq!(single[0].ecosystem, Ecosystem::Alpine);

    let no_origin = apk("apk/no-origin");
    assert_eq!(names(&no_origin), ["pkgname"]);
    assert_eq!(no_origin[0].source_name.as_deref(), Some("pkgname"));

    assert_eq!(
        names(&apk("apk/different-arch")),
        ["alpine-baselayout-data"]
    );

    let all = apk("apk/installed");
    assert_eq!(all.len(), 15);
    let ssl = all.iter().find(|p| p.name == "libssl3").unwrap();
    assert_eq!(
        (ssl.version.as_str(), ssl.source_name.as_deref()),
        ("3.1.0-r4", Some("openssl"))
    );
    let binsh = all.iter().find(|p| p.name == "busybox-binsh").unwrap();
    assert_eq!(binsh.source_name.as_deref(), Some("busybox"));
}

/// A Go program built by Debian (runc, which the Docker engine needs): the toolchain version
/// from its build information, both from the whole file and from the streaming scan.
#[test]
fn real_go_executable() {
    let path = ["/usr/sbin/runc", "/usr/bin/runc"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
        .expect("runc is installed (the Docker engine depends on it)");
    let bin = std::fs::read(path).unwrap();
    let info = read_buildinfo(&bin).expect("runc carries Go build information");
    assert!(info.go_version.starts_with("go1."), "{info:?}");
    assert!(info.modinfo.starts_with("path\t"), "{info:?}");
    let pkgs = go_binary_packages(&info, "usr/sbin/runc");
    let stdlib = pkgs
        .iter()
        .find(|p| p.name == "stdlib")
        .expect("stdlib package");
    assert_eq!(stdlib.ecosystem, Ecosystem::Go);
    assert!(stdlib.version.starts_with("1."), "{stdlib:?}");

    let mut scratch = ExecScratch::default();
    let streamed = sniff_executable(&mut bin.as_slice(), bin.len() as u64, &mut scratch, 1 << 30)
        .unwrap()
        .expect("found while streaming");
    assert_eq!(streamed, info);
    // Read whole or not, the answer is the same: force the chunked scan.
    let streamed = sniff_executable(&mut bin.as_slice(), bin.len() as u64, &mut scratch, 0)
        .unwrap()
        .expect("found by the chunked scan");
    assert_eq!(streamed, info);
}

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("moat-vuln-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
    fn write(&self, rel: &str, content: &str) {
        let p = self.0.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Part 5: the lock files of a source tree, with old crates in `Cargo.lock`.
#[test]
fn source_tree_lock_files() {
    let d = Dir::new("deps");
    d.write(
        "Cargo.lock",
        r#"# This file is automatically @generated by Cargo.
version = 3

[[package]]
name = "app"
version = "0.1.0"
dependencies = ["smallvec", "time", "hyper"]

[[package]]
name = "helper"
version = "0.1.0"

[[package]]
name = "hyper"
version = "0.12.35"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "9dbe6ed1438e1f8ad955a4701e9a944938e9519f6888d12d8558b645e247d5f6"

[[package]]
name = "smallvec"
version = "0.6.9"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "c4488ae950c49d403731982257768f48fada354a5203fe81f9bb6f43ca9002be"

[[package]]
name = "time"
version = "0.1.43"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "ca8a50ef2360fbd1eeb0ecd46795a87a19024eb4b53c5dc916ca1fd95fe62438"
"#,
    );
    d.write(
        "web/package-lock.json",
        r#"{"name":"web","version":"1.0.0","lockfileVersion":3,"requires":true,"packages":{
            "":{"name":"web","version":"1.0.0","dependencies":{"lodash":"^4.17.4"}},
            "node_modules/lodash":{"version":"4.17.4","resolved":"https://registry.npmjs.org/lodash/-/lodash-4.17.4.tgz"},
            "node_modules/@babel/traverse":{"version":"7.22.5","dev":true}}}"#,
    );
    // Installed dependencies are not the project's lock files.
    d.write(
        "web/node_modules/x/package-lock.json",
        r#"{"lockfileVersion":1,"dependencies":{"y":{"version":"1.0.0"}}}"#,
    );
    d.write(
        "py/requirements.txt",
        "requests==2.19.1  # old\nurllib3[socks]==1.24.1 ; python_version >= \"3\"\nflask>=2\n",
    );
    d.write(
        "py/requirements-dev.txt",
        "-r requirements.txt\nPyYAML==5.3\n",
    );
    d.write(
        "py/poetry.lock",
        "[[package]]\nname = \"Jinja2\"\nversion = \"2.10\"\n\n[metadata]\nlock-version = \"2.0\"\n",
    );
    d.write(
        "svc/go.mod",
        "module example.com/svc\n\ngo 1.21\n\nrequire (\n\tgithub.com/gin-gonic/gin v1.6.2\n\tgolang.org/x/text v0.3.5 // indirect\n)\n",
    );
    d.write("svc/broken/go.mod", "require\n");
    d.write("notes.txt", "requests==1.0\n");

    let inv = scan_dependencies(&d.0).unwrap();
    let got: Vec<String> = inv
        .packages
        .iter()
        .map(|p| {
            format!(
                "{} {} {} {}",
                p.ecosystem.osv_name(),
                p.name,
                p.version,
                p.location
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            "PyPI jinja2 2.10 py/poetry.lock",
            "PyPI pyyaml 5.3 py/requirements-dev.txt",
            "PyPI requests 2.19.1 py/requirements.txt",
            "PyPI urllib3 1.24.1 py/requirements.txt",
            "npm @babel/traverse 7.22.5 web/package-lock.json",
            "npm lodash 4.17.4 web/package-lock.json",
            "crates.io hyper 0.12.35 Cargo.lock",
            "crates.io smallvec 0.6.9 Cargo.lock",
            "crates.io time 0.1.43 Cargo.lock",
            "Go github.com/gin-gonic/gin 1.6.2 svc/go.mod",
            "Go golang.org/x/text 0.3.5 svc/go.mod",
        ]
    );
    assert_eq!(inv.warnings.len(), 1, "{:?}", inv.warnings);
    assert!(
        inv.warnings[0].starts_with("svc/broken/go.mod:"),
        "{:?}",
        inv.warnings
    );
    assert!(
        inv.packages
            .iter()
            .all(|p| p.layer.is_none() && p.distro_release.is_none())
    );

    let missing = scan_dependencies(&d.0.join("nope")).unwrap_err();
    assert!(missing.to_string().contains("nope"), "{missing}");
}
