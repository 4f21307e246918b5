//! The comparators against outside oracles: every line of the ordering vectors in
//! `tests/fixtures/versions/` (both ways round), and `dpkg --compare-versions` itself on 10 000
//! random pairs of versions from a real Debian 12 status file.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use moat_vuln::Ecosystem;
use moat_vuln::version::{Scheme, compare, compare_in};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// `(line number, a, expected, b)` for every vector of a file; `#` and `//` start comments.
fn vectors(file: &str) -> Vec<(usize, String, Ordering, String)> {
    let path = fixtures().join("versions").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with("//") {
            continue;
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [a, op, b] = parts[..] else {
            panic!("{file}:{}: not `A op B`: {line}", i + 1);
        };
        let ord = match op {
            "<" => Ordering::Less,
            "=" => Ordering::Equal,
            ">" => Ordering::Greater,
            _ => panic!("{file}:{}: unknown operator {op}", i + 1),
        };
        out.push((i + 1, a.to_string(), ord, b.to_string()));
    }
    assert!(!out.is_empty(), "{file} has no vectors");
    out
}

fn symbol(o: Ordering) -> &'static str {
    match o {
        Ordering::Less => "<",
        Ordering::Equal => "=",
        Ordering::Greater => ">",
    }
}

/// Checks every vector of `file` under `ecosystem`, and the swapped pair, collecting all
/// failures so that one run shows them all.
fn check_file(file: &str, ecosystem: Ecosystem) -> usize {
    let mut failures = Vec::new();
    let all = vectors(file);
    for (line, a, want, b) in &all {
        for (x, y, w) in [(a, b, *want), (b, a, want.reverse())] {
            match compare(ecosystem, x, y) {
                Ok(got) if got == w => {}
                Ok(got) => failures.push(format!(
                    "{file}:{line}: {x} {} {y}, want {}",
                    symbol(got),
                    symbol(w)
                )),
                Err(e) => failures.push(format!("{file}:{line}: {e}")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} checks failed under {ecosystem:?}:\n{}",
        failures.len(),
        all.len() * 2,
        failures.join("\n")
    );
    all.len()
}

#[test]
fn debian_vectors() {
    assert!(check_file("debian-versions.txt", Ecosystem::Debian) >= 30);
}

#[test]
fn alpine_vectors() {
    assert!(check_file("alpine-versions.txt", Ecosystem::Alpine) >= 700);
}

#[test]
fn pypi_vectors() {
    assert!(check_file("pypi-versions.txt", Ecosystem::PyPI) >= 35);
}

#[test]
fn semver_vectors_for_npm_and_crates() {
    assert!(check_file("semver-versions.txt", Ecosystem::Npm) >= 80);
    check_file("semver-versions.txt", Ecosystem::CratesIo);
}

#[test]
fn go_vectors() {
    assert!(check_file("go-versions.txt", Ecosystem::Go) >= 20);
    // Go module versions are SemVer: the SemVer vectors hold for Go too.
    check_file("semver-versions.txt", Ecosystem::Go);
}

#[test]
fn unparsable_versions_are_errors() {
    assert!(compare_in(Scheme::Dpkg, "1:", "1").is_err());
    assert!(compare_in(Scheme::Semver, "latest", "1.0.0").is_err());
    assert!(compare_in(Scheme::Go, "devel", "v1.0.0").is_err());
    assert!(compare_in(Scheme::Pep440, "", "1.0").is_err());
    assert!(compare_in(Scheme::Apk, "", "1.0").is_err());
}

/// Every version (and `Source:` version) in a dpkg status file.
fn status_versions(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let mut set = BTreeSet::new();
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("Version:") {
            set.insert(v.trim().to_string());
        } else if let Some(src) = line.strip_prefix("Source:")
            && let Some((_, v)) = src.split_once('(')
        {
            set.insert(v.trim_end_matches(')').trim().to_string());
        }
    }
    set.into_iter().collect()
}

/// Asks dpkg for the order of each pair: `lt`, then `gt`, else equal. The pairs are split
/// between two shell loops running side by side, each spawning dpkg per question.
fn dpkg_orders(pairs: &[(String, String)], dir: &Path) -> Vec<Ordering> {
    const SCRIPT: &str = r#"while read -r a b; do
  if dpkg --compare-versions "$a" lt "$b"; then echo '<'
  elif dpkg --compare-versions "$a" gt "$b"; then echo '>'
  else echo '='; fi
done < "$1""#;
    let workers = 2;
    let chunk = pairs.len().div_ceil(workers);
    let children: Vec<_> = pairs
        .chunks(chunk)
        .enumerate()
        .map(|(i, part)| {
            let file = dir.join(format!("pairs-{i}.txt"));
            let body: String = part.iter().map(|(a, b)| format!("{a} {b}\n")).collect();
            std::fs::write(&file, body).unwrap();
            Command::new("sh")
                .args(["-c", SCRIPT, "sh"])
                .arg(&file)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("sh runs")
        })
        .collect();
    let mut out = Vec::with_capacity(pairs.len());
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "dpkg loop failed");
        for line in String::from_utf8(output.stdout).unwrap().lines() {
            out.push(match line {
                "<" => Ordering::Less,
                ">" => Ordering::Greater,
                _ => Ordering::Equal,
            });
        }
    }
    assert_eq!(out.len(), pairs.len(), "dpkg answered every pair");
    out
}

#[test]
fn dpkg_agrees_on_random_pairs_from_a_real_status_file() {
    let found = Command::new("dpkg").arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "this test needs the dpkg tool (Debian machines have it)"
    );
    let versions = status_versions(&fixtures().join("packagedb/dpkg/debian12-real-status"));
    assert!(versions.len() > 400, "{} versions", versions.len());
    let mut rng = StdRng::seed_from_u64(0x6d6f6174);
    let pairs: Vec<(String, String)> = (0..10_000)
        .map(|i| {
            let a = &versions[rng.random_range(0..versions.len())];
            // Every tenth pair shares an upstream prefix, where the interesting cases are.
            let b = if i % 10 == 0 {
                let prefix = &a[..a.len().min(3)];
                versions
                    .iter()
                    .filter(|v| v.starts_with(prefix))
                    .nth(rng.random_range(0..4))
                    .unwrap_or(a)
            } else {
                &versions[rng.random_range(0..versions.len())]
            };
            (a.clone(), b.clone())
        })
        .collect();
    let dir = std::env::temp_dir().join(format!("moat-dpkg-pairs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let start = std::time::Instant::now();
    let expected = dpkg_orders(&pairs, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "dpkg answered {} pairs in {:?}",
        pairs.len(),
        start.elapsed()
    );
    let mut failures = Vec::new();
    for ((a, b), want) in pairs.iter().zip(&expected) {
        let got = compare(Ecosystem::Debian, a, b).unwrap();
        if got != *want {
            failures.push(format!(
                "{a} {} {b}, dpkg says {}",
                symbol(got),
                symbol(*want)
            ));
        }
    }
    let kinds: BTreeSet<_> = expected.iter().map(|o| symbol(*o)).collect();
    assert_eq!(kinds.len(), 3, "the sample has <, = and > pairs");
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
