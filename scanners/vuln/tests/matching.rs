//! Matching proven against an independent oracle: the real advisories in
//! `tests/fixtures/advisories/` (PyPA, RustSec, Go, Debian Security Tracker), packages with
//! known old versions, and expected findings computed by `scripts/vuln-expected` (Python's
//! `packaging`, a separate SemVer implementation, `dpkg --compare-versions`, the `cvss`
//! package). The expected lists below are that script's output; rerun it to regenerate them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Instant;

use moat_pipelines::Severity;
use moat_vuln::db::Database;
use moat_vuln::matcher::{VulnFinding, match_package, match_packages};
use moat_vuln::{Ecosystem, Package, cvss};

type Expected = (
    &'static str,
    &'static str,
    &'static [(&'static str, Option<&'static str>)],
);

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

static DB: LazyLock<Database> = LazyLock::new(|| {
    let start = Instant::now();
    let db = Database::load(&fixtures().join("advisories")).expect("fixture database loads");
    eprintln!("loaded {} advisories in {:?}", db.len(), start.elapsed());
    db
});

fn package(ecosystem: Ecosystem, name: &str, version: &str) -> Package {
    Package {
        ecosystem,
        name: name.to_string(),
        version: version.to_string(),
        source_name: None,
        source_version: None,
        distro_release: None,
        location: format!("fixture/{name}"),
        layer: Some("sha256:layer".to_string()),
    }
}

/// Matches each package and compares (advisory id, fixed version) with the oracle's list,
/// reporting every difference at once.
fn check(ecosystem: Ecosystem, expected: &[Expected]) {
    let mut problems = Vec::new();
    for (name, version, want) in expected {
        let found = match_package(&DB, &package(ecosystem, name, version));
        let got: BTreeSet<(String, Option<String>)> = found
            .iter()
            .map(|f| (f.id.clone(), f.fixed_version.clone()))
            .collect();
        let want: BTreeSet<(String, Option<String>)> = want
            .iter()
            .map(|(id, fix)| (id.to_string(), fix.map(str::to_string)))
            .collect();
        for missing in want.difference(&got) {
            problems.push(format!("{name} {version}: missing {missing:?}"));
        }
        for extra in got.difference(&want) {
            problems.push(format!("{name} {version}: unexpected {extra:?}"));
        }
        assert_eq!(found.len(), got.len(), "one finding per advisory");
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// `scripts/vuln-expected pypi`
#[rustfmt::skip]
const PYPI: &[Expected] = &[
// PyPI urllib3 1.24.1: 7 advisories
("urllib3", "1.24.1", &[
    ("PYSEC-2019-132", Some("1.24.3")),
    ("PYSEC-2019-133", Some("1.24.2")),
    ("PYSEC-2020-148", Some("1.25.9")),
    ("PYSEC-2021-108", Some("1.26.5")),
    ("PYSEC-2023-192", Some("1.26.17")),
    ("PYSEC-2023-207", Some("1.24.2")),
    ("PYSEC-2023-212", Some("1.26.18")),
]),
// PyPI Jinja2 2.10: 2 advisories
("Jinja2", "2.10", &[
    ("PYSEC-2019-217", Some("2.10.1")),
    ("PYSEC-2021-66", Some("2.11.3")),
]),
// PyPI PyYAML 5.3: 2 advisories
("PyYAML", "5.3", &[
    ("PYSEC-2020-96", Some("5.3.1")),
    ("PYSEC-2021-142", Some("5.4")),
]),
// PyPI requests 2.19.1: 2 advisories
("requests", "2.19.1", &[
    ("PYSEC-2018-28", Some("2.20.0")),
    ("PYSEC-2023-74", Some("2.31.0")),
]),
// PyPI Django 3.0.0: 10 advisories
("Django", "3.0.0", &[
    ("PYSEC-2020-31", Some("3.0.7")),
    ("PYSEC-2020-32", Some("3.0.7")),
    ("PYSEC-2020-33", Some("3.0.10")),
    ("PYSEC-2020-34", Some("3.0.10")),
    ("PYSEC-2020-35", Some("3.0.3")),
    ("PYSEC-2020-36", Some("3.0.4")),
    ("PYSEC-2021-6", Some("3.0.14")),
    ("PYSEC-2021-9", Some("3.0.12")),
    ("PYSEC-2021-98", Some("3.1.12")),
    ("PYSEC-2021-99", Some("3.1.12")),
]),
// PyPI Pillow 8.0.0: 26 advisories
("Pillow", "8.0.0", &[
    ("PYSEC-2021-137", Some("8.2.0")),
    ("PYSEC-2021-138", Some("8.2.0")),
    ("PYSEC-2021-139", Some("8.2.0")),
    ("PYSEC-2021-317", Some("8.3.2")),
    ("PYSEC-2021-331", Some("8.3.0")),
    ("PYSEC-2021-35", Some("8.1.1")),
    ("PYSEC-2021-36", Some("8.1.1")),
    ("PYSEC-2021-37", Some("8.1.1")),
    ("PYSEC-2021-38", Some("8.1.1")),
    ("PYSEC-2021-39", Some("8.1.1")),
    ("PYSEC-2021-40", Some("8.1.1")),
    ("PYSEC-2021-41", Some("8.1.1")),
    ("PYSEC-2021-42", Some("8.1.1")),
    ("PYSEC-2021-69", Some("8.1.0")),
    ("PYSEC-2021-70", Some("8.1.0")),
    ("PYSEC-2021-71", Some("8.1.0")),
    ("PYSEC-2021-92", Some("8.2.0")),
    ("PYSEC-2021-93", Some("8.2.0")),
    ("PYSEC-2021-94", Some("8.2.0")),
    ("PYSEC-2022-10", Some("9.0.0")),
    ("PYSEC-2022-168", Some("9.0.1")),
    ("PYSEC-2022-42979", Some("9.2.0")),
    ("PYSEC-2022-8", Some("9.0.0")),
    ("PYSEC-2022-9", Some("9.0.0")),
    ("PYSEC-2023-175", Some("10.0.1")),
    ("PYSEC-2023-227", Some("10.0.0")),
]),
// PyPI cryptography 3.2: 4 advisories
("cryptography", "3.2", &[
    ("PYSEC-2021-62", Some("3.2.1")),
    ("PYSEC-2021-63", Some("3.3.2")),
    ("PYSEC-2023-11", Some("39.0.1")),
    ("PYSEC-2023-254", Some("41.0.6")),
]),
];

/// `scripts/vuln-expected crates`
#[rustfmt::skip]
const CRATES: &[Expected] = &[
// crates.io smallvec 0.6.9: 4 advisories
("smallvec", "0.6.9", &[
    ("RUSTSEC-2018-0018", Some("0.6.13")),
    ("RUSTSEC-2019-0009", Some("0.6.10")),
    ("RUSTSEC-2019-0012", Some("0.6.10")),
    ("RUSTSEC-2021-0003", Some("0.6.14")),
]),
// crates.io smallvec 1.6.0: 1 advisories
("smallvec", "1.6.0", &[
    ("RUSTSEC-2021-0003", Some("1.6.1")),
]),
// crates.io hyper 0.14.9: 3 advisories
("hyper", "0.14.9", &[
    ("RUSTSEC-2021-0078", Some("0.14.10")),
    ("RUSTSEC-2021-0079", Some("0.14.10")),
    ("RUSTSEC-2022-0022", Some("0.14.12")),
]),
// crates.io tokio 1.8.0: 5 advisories
("tokio", "1.8.0", &[
    ("RUSTSEC-2021-0072", Some("1.8.1")),
    ("RUSTSEC-2021-0124", Some("1.8.4")),
    ("RUSTSEC-2023-0001", Some("1.18.4")),
    ("RUSTSEC-2023-0005", Some("1.18.5")),
    ("RUSTSEC-2025-0023", Some("1.38.2")),
]),
// crates.io regex 1.5.4: 1 advisories
("regex", "1.5.4", &[
    ("RUSTSEC-2022-0013", Some("1.5.5")),
]),
// crates.io time 0.1.43: 1 advisories
("time", "0.1.43", &[
    ("RUSTSEC-2020-0071", Some("0.2.0")),
]),
// crates.io chrono 0.4.19: 1 advisories
("chrono", "0.4.19", &[
    ("RUSTSEC-2020-0159", Some("0.4.20")),
]),
];

/// `scripts/vuln-expected go` (the script compares stdlib as 1.20.3; Moat reads go1.20.3).
#[rustfmt::skip]
const GO: &[Expected] = &[
// Go github.com/gin-gonic/gin v1.5.0: 3 advisories
("github.com/gin-gonic/gin", "v1.5.0", &[
    ("GO-2020-0001", Some("1.6.0")),
    ("GO-2021-0052", Some("1.7.7")),
    ("GO-2023-1737", Some("1.9.1")),
]),
// Go golang.org/x/net v0.0.0-20200301022130-244492dfa37a: 22 advisories
("golang.org/x/net", "v0.0.0-20200301022130-244492dfa37a", &[
    ("GO-2021-0238", Some("0.0.0-20210520170846-37e1c6afe023")),
    ("GO-2022-0236", Some("0.0.0-20210428140749-89ef3d95e781")),
    ("GO-2022-0288", Some("0.0.0-20211209124913-491a49abca63")),
    ("GO-2022-0969", Some("0.0.0-20220906165146-f3363e06e74c")),
    ("GO-2022-1144", Some("0.4.0")),
    ("GO-2023-1571", Some("0.7.0")),
    ("GO-2023-1988", Some("0.13.0")),
    ("GO-2023-2102", Some("0.17.0")),
    ("GO-2024-2687", Some("0.23.0")),
    ("GO-2024-3333", Some("0.33.0")),
    ("GO-2025-3503", Some("0.36.0")),
    ("GO-2025-3595", Some("0.38.0")),
    ("GO-2026-4440", Some("0.45.0")),
    ("GO-2026-4441", Some("0.45.0")),
    ("GO-2026-4918", Some("0.53.0")),
    ("GO-2026-5025", Some("0.55.0")),
    ("GO-2026-5026", Some("0.55.0")),
    ("GO-2026-5027", Some("0.55.0")),
    ("GO-2026-5028", Some("0.55.0")),
    ("GO-2026-5029", Some("0.55.0")),
    ("GO-2026-5030", Some("0.55.0")),
    ("GO-2026-5942", Some("0.56.0")),
]),
// Go golang.org/x/crypto v0.0.0-20200622213623-75b288015ac9: 24 advisories
("golang.org/x/crypto", "v0.0.0-20200622213623-75b288015ac9", &[
    ("GO-2021-0227", Some("0.0.0-20201216223049-8b5274cf687f")),
    ("GO-2021-0356", Some("0.0.0-20220314234659-1baeb1ce4c0b")),
    ("GO-2022-0968", Some("0.0.0-20211202192323-5770296d904e")),
    ("GO-2023-2402", Some("0.17.0")),
    ("GO-2024-2961", Some("0.0.0-20220525230936-793ad666bf5e")),
    ("GO-2024-3321", Some("0.31.0")),
    ("GO-2025-3487", Some("0.35.0")),
    ("GO-2025-4116", Some("0.43.0")),
    ("GO-2025-4134", Some("0.45.0")),
    ("GO-2025-4135", Some("0.45.0")),
    ("GO-2026-5005", Some("0.52.0")),
    ("GO-2026-5006", Some("0.52.0")),
    ("GO-2026-5013", Some("0.52.0")),
    ("GO-2026-5014", Some("0.52.0")),
    ("GO-2026-5015", Some("0.52.0")),
    ("GO-2026-5016", Some("0.52.0")),
    ("GO-2026-5017", Some("0.52.0")),
    ("GO-2026-5018", Some("0.52.0")),
    ("GO-2026-5019", Some("0.52.0")),
    ("GO-2026-5020", Some("0.52.0")),
    ("GO-2026-5021", Some("0.52.0")),
    ("GO-2026-5023", Some("0.52.0")),
    ("GO-2026-5033", Some("0.52.0")),
    ("GO-2026-5932", None),
]),
// Go stdlib 1.20.3: 79 advisories
("stdlib", "go1.20.3", &[
    ("GO-2023-1751", Some("1.20.4")),
    ("GO-2023-1752", Some("1.20.4")),
    ("GO-2023-1753", Some("1.20.4")),
    ("GO-2023-1840", Some("1.20.5")),
    ("GO-2023-1878", Some("1.20.6")),
    ("GO-2023-1987", Some("1.20.7")),
    ("GO-2023-2041", Some("1.20.8")),
    ("GO-2023-2043", Some("1.20.8")),
    ("GO-2023-2102", Some("1.20.10")),
    ("GO-2023-2185", Some("1.20.11")),
    ("GO-2023-2186", Some("1.20.11")),
    ("GO-2023-2382", Some("1.20.12")),
    ("GO-2024-2598", Some("1.21.8")),
    ("GO-2024-2599", Some("1.21.8")),
    ("GO-2024-2600", Some("1.21.8")),
    ("GO-2024-2609", Some("1.21.8")),
    ("GO-2024-2610", Some("1.21.8")),
    ("GO-2024-2687", Some("1.21.9")),
    ("GO-2024-2887", Some("1.21.11")),
    ("GO-2024-2888", Some("1.21.11")),
    ("GO-2024-2963", Some("1.21.12")),
    ("GO-2024-3105", Some("1.22.7")),
    ("GO-2024-3106", Some("1.22.7")),
    ("GO-2024-3107", Some("1.22.7")),
    ("GO-2025-3373", Some("1.22.11")),
    ("GO-2025-3420", Some("1.22.11")),
    ("GO-2025-3447", Some("1.22.12")),
    ("GO-2025-3503", Some("1.23.7")),
    ("GO-2025-3563", Some("1.23.8")),
    ("GO-2025-3750", Some("1.23.10")),
    ("GO-2025-3751", Some("1.23.10")),
    ("GO-2025-3849", Some("1.23.12")),
    ("GO-2025-3956", Some("1.23.12")),
    ("GO-2025-4006", Some("1.24.8")),
    ("GO-2025-4007", Some("1.24.9")),
    ("GO-2025-4008", Some("1.24.8")),
    ("GO-2025-4009", Some("1.24.8")),
    ("GO-2025-4010", Some("1.24.8")),
    ("GO-2025-4011", Some("1.24.8")),
    ("GO-2025-4012", Some("1.24.8")),
    ("GO-2025-4013", Some("1.24.8")),
    ("GO-2025-4014", Some("1.24.8")),
    ("GO-2025-4015", Some("1.24.8")),
    ("GO-2025-4155", Some("1.24.11")),
    ("GO-2025-4175", Some("1.24.11")),
    ("GO-2026-4337", Some("1.24.13")),
    ("GO-2026-4340", Some("1.24.12")),
    ("GO-2026-4341", Some("1.24.12")),
    ("GO-2026-4342", Some("1.24.12")),
    ("GO-2026-4403", Some("1.23.9")),
    ("GO-2026-4601", Some("1.25.8")),
    ("GO-2026-4602", Some("1.25.8")),
    ("GO-2026-4603", Some("1.25.8")),
    ("GO-2026-4864", Some("1.25.9")),
    ("GO-2026-4865", Some("1.25.9")),
    ("GO-2026-4869", Some("1.25.9")),
    ("GO-2026-4870", Some("1.25.9")),
    ("GO-2026-4918", Some("1.25.10")),
    ("GO-2026-4946", Some("1.25.9")),
    ("GO-2026-4947", Some("1.25.9")),
    ("GO-2026-4970", Some("1.25.12")),
    ("GO-2026-4971", Some("1.25.10")),
    ("GO-2026-4976", Some("1.25.10")),
    ("GO-2026-4977", Some("1.25.10")),
    ("GO-2026-4980", Some("1.25.10")),
    ("GO-2026-4981", Some("1.25.10")),
    ("GO-2026-4982", Some("1.25.10")),
    ("GO-2026-4986", Some("1.25.10")),
    ("GO-2026-5026", Some("1.25.13")),
    ("GO-2026-5037", Some("1.25.11")),
    ("GO-2026-5038", Some("1.25.11")),
    ("GO-2026-5039", Some("1.25.11")),
    ("GO-2026-5856", Some("1.25.12")),
    ("GO-2026-5972", Some("1.25.13")),
    ("GO-2026-6088", Some("1.25.13")),
    ("GO-2026-6089", Some("1.25.13")),
    ("GO-2026-6090", Some("1.25.13")),
    ("GO-2026-6091", Some("1.25.13")),
    ("GO-2026-6218", Some("1.25.13")),
]),
];

/// `scripts/vuln-expected debian`, the `DEBIAN_PACKAGES` part: (release, binary, source,
/// source version) and the expected (binary, advisory, fix).
const DEBIAN_PACKAGES: &[(&str, &str, &str, &str)] = &[
    ("11", "openssl", "openssl", "1.1.1k-1"),
    ("11", "libssl1.1", "openssl", "1.1.1k-1"),
    ("11", "curl", "curl", "7.74.0-1.3+deb11u3"),
    ("11", "libcurl4", "curl", "7.74.0-1.3+deb11u3"),
    ("11", "sudo", "sudo", "1.9.5p2-3"),
    ("11", "apache2-bin", "apache2", "2.4.54-1~deb11u1"),
    (
        "11",
        "xserver-xorg-core",
        "xorg-server",
        "2:1.20.11-1+deb11u6",
    ),
    ("11", "git", "git", "1:2.30.2-1"),
    ("11", "libexpat1", "expat", "2.2.10-2+deb11u4"),
    ("11", "zlib1g", "zlib", "1:1.2.11.dfsg-2"),
    ("11", "libc6", "glibc", "2.31-13"),
    ("10", "libcurl4", "curl", "7.64.0-4+deb10u2"),
    ("10", "sudo", "sudo", "1.8.27-1+deb10u3"),
];

#[rustfmt::skip]
const DEBIAN_EXPECTED: &[(&str, &str, Option<&str>)] = &[
    // Debian 11 (bullseye)
    ("apache2-bin", "DSA-5376-1", Some("2.4.56-1~deb11u1")),
    ("curl", "DSA-5330-1", Some("7.74.0-1.3+deb11u5")),
    ("curl", "DSA-5365-1", Some("7.74.0-1.3+deb11u7")),
    ("git", "DSA-5332-1", Some("1:2.30.2-1+deb11u1")),
    ("git", "DSA-5357-1", Some("1:2.30.2-1+deb11u2")),
    ("libcurl4", "DSA-5330-1", Some("7.74.0-1.3+deb11u5")),
    ("libcurl4", "DSA-5365-1", Some("7.74.0-1.3+deb11u7")),
    ("libexpat1", "DSA-5266-1", Some("2.2.10-2+deb11u5")),
    ("libssl1.1", "DSA-4963-1", Some("1.1.1k-1+deb11u1")),
    ("libssl1.1", "DSA-5103-1", Some("1.1.1k-1+deb11u2")),
    ("libssl1.1", "DSA-5139-1", Some("1.1.1n-0+deb11u2")),
    ("libssl1.1", "DSA-5169-1", Some("1.1.1n-0+deb11u3")),
    ("libssl1.1", "DSA-5343-1", Some("1.1.1n-0+deb11u4")),
    ("openssl", "DSA-4963-1", Some("1.1.1k-1+deb11u1")),
    ("openssl", "DSA-5103-1", Some("1.1.1k-1+deb11u2")),
    ("openssl", "DSA-5139-1", Some("1.1.1n-0+deb11u2")),
    ("openssl", "DSA-5169-1", Some("1.1.1n-0+deb11u3")),
    ("openssl", "DSA-5343-1", Some("1.1.1n-0+deb11u4")),
    ("sudo", "DSA-5321-1", Some("1.9.5p2-3+deb11u1")),
    ("zlib1g", "DSA-5111-1", Some("1:1.2.11.dfsg-2+deb11u1")),
    ("zlib1g", "DSA-5218-1", Some("1:1.2.11.dfsg-2+deb11u2")),
    // Debian 10 (buster): the LTS list
    ("libcurl4", "DLA-3085-1", Some("7.64.0-4+deb10u3")),
    ("libcurl4", "DLA-3288-1", Some("7.64.0-4+deb10u4")),
    ("libcurl4", "DLA-3341-1", Some("7.64.0-4+deb10u5")),
    ("sudo", "DLA-3181-1", Some("1.8.27-1+deb10u4")),
    ("sudo", "DLA-3272-1", Some("1.8.27-1+deb10u5")),
];

#[test]
fn fixture_database_loads_without_errors() {
    let stats = DB.stats();
    assert!(
        stats.errors.is_empty(),
        "{:#?}",
        &stats.errors[..stats.errors.len().min(10)]
    );
    assert!(stats.files > 8000, "{stats:?}");
    // PyPI 2 662 + RustSec 1 206 + Go 4 291 records, and the tracker's DSAs and DLAs.
    assert!(DB.len() > 8000 + 5000, "{} advisories", DB.len());
    assert!(
        stats.withdrawn > 0,
        "withdrawn records are skipped, not loaded"
    );
    assert_eq!(stats.notes.bad_versions, 0, "{stats:?}");
    assert!(DB.get("PYSEC-2021-108").is_some());
    assert!(DB.get("DSA-5380-1").is_some());
    assert!(DB.get("DLA-3380-1").is_some());
}

#[test]
fn pypi_packages_match_the_oracle() {
    check(Ecosystem::PyPI, PYPI);
}

#[test]
fn crates_match_the_oracle() {
    check(Ecosystem::CratesIo, CRATES);
}

#[test]
fn go_modules_match_the_oracle() {
    check(Ecosystem::Go, GO);
}

fn debian_package(release: &str, binary: &str, source: &str, version: &str) -> Package {
    Package {
        source_name: Some(source.to_string()),
        source_version: Some(version.to_string()),
        distro_release: Some(release.to_string()),
        ..package(Ecosystem::Debian, binary, version)
    }
}

#[test]
fn debian_packages_match_the_tracker_by_source_and_release() {
    let packages: Vec<Package> = DEBIAN_PACKAGES
        .iter()
        .map(|(r, b, s, v)| debian_package(r, b, s, v))
        .collect();
    let found = match_packages(&DB, &packages);
    let got: BTreeSet<(String, String, Option<String>)> = found
        .iter()
        .map(|f| (f.package.clone(), f.id.clone(), f.fixed_version.clone()))
        .collect();
    let want: BTreeSet<(String, String, Option<String>)> = DEBIAN_EXPECTED
        .iter()
        .map(|(p, id, fix)| (p.to_string(), id.to_string(), fix.map(str::to_string)))
        .collect();
    assert_eq!(got, want);
    assert_eq!(found.len(), want.len());

    // Checked by hand against DSA-list: DSA-5376-1 fixes apache2 in bullseye at
    // 2.4.56-1~deb11u1, above the installed 2.4.54-1~deb11u1; the finding names the binary
    // package, its source, and carries the CVEs as aliases.
    let apache = found.iter().find(|f| f.id == "DSA-5376-1").unwrap();
    assert_eq!(apache.package, "apache2-bin");
    assert_eq!(apache.source_package.as_deref(), Some("apache2"));
    assert!(apache.aliases.iter().any(|a| a == "CVE-2023-25690"));
    assert_eq!(apache.summary, "apache2 - security update");
    // DSA-5380-1 fixes xorg-server at exactly the installed 2:1.20.11-1+deb11u6.
    assert!(!found.iter().any(|f| f.id == "DSA-5380-1"));
    // The same curl version is judged against its own release's advisories only: the buster
    // package is not reported for bullseye's DSA-5330-1, nor the bullseye one for DLAs.
    assert!(
        !found
            .iter()
            .any(|f| f.id.starts_with("DSA-") && f.installed_version.contains("deb10"))
    );
    assert!(
        !found
            .iter()
            .any(|f| f.id.starts_with("DLA-") && f.installed_version.contains("deb11"))
    );
    // The codename is as good as the number.
    let by_name = match_package(
        &DB,
        &debian_package("bullseye", "sudo", "sudo", "1.9.5p2-3"),
    );
    assert_eq!(by_name.len(), 1);
    assert_eq!(by_name[0].id, "DSA-5321-1");
    // A binNMU: the binary version differs, the source version decides.
    let binnmu = Package {
        version: "1.9.5p2-3+b1".to_string(),
        ..debian_package("11", "sudo", "sudo", "1.9.5p2-3+deb11u1")
    };
    assert!(match_package(&DB, &binnmu).is_empty());
    // Without a known release, release-specific advisories do not apply.
    let mut unknown = debian_package("11", "sudo", "sudo", "1.9.5p2-3");
    unknown.distro_release = None;
    assert!(match_package(&DB, &unknown).is_empty());
}

/// The `Package:`/`Source:`/`Version:` of every installed package of a dpkg status file
/// (a minimal reader; the inventory module owns the real one).
fn status_packages(path: &Path, release: &str) -> Vec<Package> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        let (Some(name), Some(version)) = (field("Package"), field("Version")) else {
            continue;
        };
        if !field("Status").is_some_and(|s| s.ends_with(" installed")) {
            continue;
        }
        let (source, source_version) = match field("Source") {
            Some(s) => match s.split_once(" (") {
                Some((n, v)) => (n, v.trim_end_matches(')')),
                None => (s, version),
            },
            None => (name, version),
        };
        out.push(debian_package(release, name, source, source_version));
        out.last_mut().unwrap().version = version.to_string();
    }
    out
}

#[test]
fn real_debian_12_status_file() {
    let path = fixtures().join("packagedb/dpkg/debian12-real-status");
    // The tracker snapshot (2023-04) predates any bookworm advisory: a Debian 12 image has no
    // finding from it.
    let bookworm = status_packages(&path, "12");
    assert!(bookworm.len() > 700);
    assert_eq!(match_packages(&DB, &bookworm), Vec::<VulnFinding>::new());
    // Read as bullseye, the same packages meet many bullseye advisories by source name, and
    // none applies because bookworm's versions are newer than every bullseye fix — what
    // `scripts/vuln-expected debian` also finds with dpkg. (Checked by hand, e.g. openssl
    // 3.0.x against DSA-5343-1's 1.1.1n-0+deb11u4, curl 7.88.1 against DSA-5365-1's
    // 7.74.0-1.3+deb11u7.)
    let as_bullseye = status_packages(&path, "11");
    let with_advisories = as_bullseye
        .iter()
        .filter(|p| {
            DB.lookup(Ecosystem::Debian, p.source_name.as_deref().unwrap())
                .any(|(_, a)| a.release.as_deref() == Some("11"))
        })
        .count();
    assert!(with_advisories > 90, "{with_advisories}");
    assert_eq!(match_packages(&DB, &as_bullseye), Vec::<VulnFinding>::new());
    // Pretend the image still had bullseye's openssl: now it is found, through the binary
    // packages' source name.
    let old: Vec<Package> = as_bullseye
        .into_iter()
        .filter(|p| p.source_name.as_deref() == Some("openssl"))
        .map(|mut p| {
            p.source_version = Some("1.1.1n-0+deb11u3".to_string());
            p
        })
        .collect();
    assert!(old.len() >= 2, "openssl and libssl3 are installed");
    let found = match_packages(&DB, &old);
    assert_eq!(found.len(), old.len());
    assert!(found.iter().all(|f| f.id == "DSA-5343-1"));
}

#[test]
fn findings_carry_severity_location_and_layer() {
    // RUSTSEC-2021-0003 (smallvec) has a CVSS v3.1 vector: 9.8, critical.
    let f = match_package(&DB, &package(Ecosystem::CratesIo, "smallvec", "1.6.0"));
    assert_eq!(f.len(), 1);
    let f = &f[0];
    assert_eq!(f.id, "RUSTSEC-2021-0003");
    assert_eq!(f.aliases, ["CVE-2021-25900", "GHSA-43w2-9j62-hq99"]);
    assert_eq!(f.cvss_score, Some(9.8));
    assert_eq!(f.severity, Some(Severity::Critical));
    assert_eq!(f.location, "fixture/smallvec");
    assert_eq!(f.layer.as_deref(), Some("sha256:layer"));
    assert_eq!(f.installed_version, "1.6.0");
    let json = serde_json::to_value(f).unwrap();
    assert_eq!(json["id"], "RUSTSEC-2021-0003");
    assert_eq!(json["aliases"][0], "CVE-2021-25900");
    assert_eq!(json["fixed_version"], "1.6.1");
    assert_eq!(json["severity"], "Critical");
    // A CVSS v4 record (wasmtime, RUSTSEC-2026-0223) is scored from its vector.
    let w = match_package(&DB, &package(Ecosystem::CratesIo, "wasmtime", "46.0.1"));
    let w = w.iter().find(|f| f.id == "RUSTSEC-2026-0223").unwrap();
    assert_eq!(w.cvss_score, Some(2.0));
    assert_eq!(w.severity, Some(Severity::Low));
}

#[test]
fn cvss_scores_match_the_reference_calculators() {
    let text = std::fs::read_to_string(fixtures().join("advisories/cvss-scores.txt")).unwrap();
    let mut failures = Vec::new();
    let mut n = 0;
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (vector, want) = line.rsplit_once(' ').unwrap();
        let want: f64 = want.parse().unwrap();
        n += 1;
        match cvss::score(vector) {
            Ok(got) if got == want => {}
            got => failures.push(format!("{vector}: {got:?}, want {want}")),
        }
    }
    assert!(n > 2900, "{n} vectors");
    assert!(
        failures.is_empty(),
        "{} of {n}:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn a_scan_is_fast_once_loaded() {
    let mut packages = Vec::new();
    for _ in 0..50 {
        for (name, version, _) in PYPI {
            packages.push(package(Ecosystem::PyPI, name, version));
        }
        for (name, version, _) in GO {
            packages.push(package(Ecosystem::Go, name, version));
        }
    }
    let _ = DB.len();
    let start = Instant::now();
    let found = match_packages(&DB, &packages);
    let took = start.elapsed();
    eprintln!(
        "matched {} packages ({} findings) in {took:?}",
        packages.len(),
        found.len()
    );
    assert!(found.len() > 1000);
    assert!(took.as_secs_f64() < 5.0, "{took:?}");
}

#[test]
fn a_missing_database_directory_is_an_error() {
    let err = Database::load(Path::new("/nonexistent/moat-db")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "vulnerability database directory /nonexistent/moat-db does not exist"
    );
}
