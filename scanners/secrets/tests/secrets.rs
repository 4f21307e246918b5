//! The secret scanner end to end, through its library API: the labelled fixtures (recall and
//! false positives), allow-listing, baselines, diffs, output shapes, skipped files, and that no
//! output ever contains a raw secret.
//!
//! Test credentials are assembled at run time so that this file holds none itself.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use moat_secrets::{
    AllowSource, Format, ScanError, ScanOptions, Suppression, parse_unified_diff, report,
    scan_diff, scan_tree,
};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/secrets")
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "moat-secrets-test-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, rel: &str, content: &str) -> PathBuf {
        let path = self.0.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, content).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

// Credentials of several formats, built from parts.
fn aws_key() -> String {
    format!("AKIA{}", "UJZDE8GXD6NCF10E")
}
fn github_token() -> String {
    format!("ghp_{}", "fwA94hJ9WnywX0t0ZBfdTEmxI6CmuxV5EbOA")
}
fn slack_token() -> String {
    format!(
        "xoxb-{}-{}-{}",
        "987320008062", "3201098326389", "PGPPA0NlGtetOd4UYETIay2B"
    )
}
fn db_password() -> String {
    format!("{}{}", "7tkPl9UOVShX", "zz18YV1vzzFZ")
}
fn pem_body() -> String {
    format!(
        "{}{}",
        "5ef7o9CLRQDBAKdCwdI2ViJloZX0ChVQ", "Gj9r366yRyoZvKyjc4zzHzLcciTA1bHT"
    )
}
fn private_key() -> String {
    let armour = "PRIVATE KEY-----";
    format!(
        "-----BEGIN RSA {armour}\n{}\n-----END RSA {armour}\n",
        pem_body()
    )
}

fn scan(dir: &Path) -> moat_secrets::ScanReport {
    scan_tree(dir, &ScanOptions::default()).unwrap()
}

// ------------------------------------------------------------------------- fixtures

fn family_matches(rule: &str, family: &str) -> bool {
    rule == family || rule.starts_with(&format!("{family}-"))
}

#[test]
fn fixtures_are_all_labelled_and_every_label_holds() {
    let root = fixtures();
    let labels: Value =
        serde_json::from_str(&fs::read_to_string(root.join("labels.json")).unwrap()).unwrap();
    let files = labels["files"].as_object().unwrap();
    let report = scan(&root);
    // The upstream inline allow markers (`pragma: allowlist secret`) are honoured, on lines
    // labelled negative.
    for s in &report.suppressed {
        assert_eq!(s.by, Suppression::Inline);
        let negative = files[&s.finding.file]["negative"].as_array().unwrap();
        assert!(
            negative
                .iter()
                .any(|n| n["line"] == u64::from(s.finding.line)),
            "{}:{}",
            s.finding.file,
            s.finding.line
        );
    }

    // Every file of the tree has labels (so nothing escapes the false-positive count).
    let mut on_disk = BTreeSet::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(&root).unwrap().to_string_lossy();
                on_disk.insert(rel.replace('\\', "/"));
            }
        }
    }
    let labelled: BTreeSet<String> = files.keys().cloned().collect();
    assert_eq!(on_disk, labelled);

    let mut by_file: BTreeMap<&str, Vec<_>> = BTreeMap::new();
    for f in &report.findings {
        by_file.entry(f.file.as_str()).or_default().push(f);
    }
    let (mut expected, mut missed, mut false_positives) = (0, Vec::new(), Vec::new());
    for (file, label) in files {
        let got = by_file.get(file.as_str()).cloned().unwrap_or_default();
        let lines = |key: &str| -> BTreeSet<u64> {
            label[key]
                .as_array()
                .map(|a| a.iter().filter_map(|e| e["line"].as_u64()).collect())
                .unwrap_or_default()
        };
        let expect: Vec<(u64, &str)> = label["expect"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["line"].as_u64().unwrap(), e["family"].as_str().unwrap()))
            .collect();
        expected += expect.len();
        for (line, family) in &expect {
            if !got
                .iter()
                .any(|f| u64::from(f.line) == *line && family_matches(f.rule, family))
            {
                missed.push(format!("{file}:{line} {family}"));
            }
        }
        let (negative, unlabelled) = (lines("negative"), lines("unlabelled"));
        for f in &got {
            let line = u64::from(f.line);
            let is_expected = expect
                .iter()
                .any(|(l, family)| *l == line && family_matches(f.rule, family));
            if negative.contains(&line) || (!is_expected && !unlabelled.contains(&line)) {
                false_positives.push(format!("{file}:{line} {}", f.rule));
            }
        }
    }
    assert!(expected >= 60, "only {expected} labelled secrets");
    assert!(missed.is_empty(), "missed: {missed:#?}");
    assert!(
        false_positives.is_empty(),
        "false positives: {false_positives:#?}"
    );
}

#[test]
fn fixture_outputs_carry_no_labelled_line_in_clear() {
    // For single-line secrets in the trivy samples, the whole original line must not appear in
    // any output format: the excerpt always masks the secret on it.
    let root = fixtures();
    let report = scan(&root);
    let outputs: Vec<String> = [Format::Table, Format::Json, Format::Sarif]
        .into_iter()
        .map(|f| report::render(&report, f))
        .collect();
    // (A multi-line key shows its armour line, which is not secret.)
    for f in report.findings.iter().filter(|f| f.line == f.end_line) {
        let text = fs::read_to_string(root.join(&f.file)).unwrap_or_default();
        let Some(line) = text.lines().nth(f.line as usize - 1) else {
            continue;
        };
        let line = line.trim();
        if line.len() < 12 {
            continue;
        }
        for out in &outputs {
            assert!(
                !out.contains(line),
                "{}:{} appears in clear",
                f.file,
                f.line
            );
        }
    }
}

// ------------------------------------------------------------------------- fingerprints

#[test]
fn fingerprints_are_stable_when_lines_are_inserted_above() {
    let tmp = TempDir::new();
    let body = format!(
        "key = \"{}\"\ntoken: {}\npassword = \"{}\"\n",
        aws_key(),
        github_token(),
        db_password()
    );
    tmp.write("app/config.yaml", &body);
    let before = scan(&tmp.0);
    assert_eq!(before.findings.len(), 3);
    tmp.write(
        "app/config.yaml",
        &format!("# a comment\n\nname: demo\n{body}"),
    );
    let after = scan(&tmp.0);
    assert_eq!(after.findings.len(), 3);
    for (a, b) in before.findings.iter().zip(&after.findings) {
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_eq!(a.rule, b.rule);
        assert_eq!(b.line, a.line + 3);
    }
    // Same secret, another file: another fingerprint.
    tmp.write("other.yaml", &format!("key = \"{}\"\n", aws_key()));
    let both = scan(&tmp.0);
    let aws: BTreeSet<&str> = both
        .findings
        .iter()
        .filter(|f| f.rule == "aws-access-key-id")
        .map(|f| f.fingerprint.as_str())
        .collect();
    assert_eq!(aws.len(), 2);
}

// ------------------------------------------------------------------------- allow-listing

#[test]
fn allow_file_accepts_fingerprints_with_a_reason() {
    let tmp = TempDir::new();
    tmp.write("a.env", &format!("AWS_ACCESS_KEY_ID={}\n", aws_key()));
    tmp.write("b.txt", &format!("token {}\n", github_token()));
    let first = scan(&tmp.0);
    assert_eq!(first.findings.len(), 2);
    let aws = first
        .findings
        .iter()
        .find(|f| f.rule == "aws-access-key-id")
        .unwrap();
    tmp.write(
        ".moat/secrets.allow",
        &format!(
            "# accepted exceptions\n{}  # revoked test key\n",
            aws.fingerprint
        ),
    );
    let second = scan(&tmp.0);
    assert_eq!(second.findings.len(), 1);
    assert_eq!(second.findings[0].rule, "github-pat");
    assert_eq!(second.suppressed.len(), 1);
    match &second.suppressed[0].by {
        Suppression::Allowed(AllowSource::File { line, reason, .. }) => {
            assert_eq!((*line, reason.as_str()), (2, "revoked test key"));
        }
        other => panic!("unexpected suppression {other:?}"),
    }
    let json: Value = serde_json::from_str(&report::render(&second, Format::Json)).unwrap();
    assert_eq!(json["suppressed"][0]["suppressed_by"], "allow-file");
    assert_eq!(json["suppressed"][0]["reason"], "revoked test key");
}

#[test]
fn malformed_allow_file_is_a_located_error() {
    let tmp = TempDir::new();
    tmp.write("a.txt", "nothing here\n");
    tmp.write(".moat/secrets.allow", &format!("\n{}\n", "ab".repeat(32)));
    let err = scan_tree(&tmp.0, &ScanOptions::default()).unwrap_err();
    assert!(matches!(err, ScanError::AllowFile { line: 2, .. }), "{err}");
    assert!(
        err.to_string().contains("secrets.allow:2: missing reason"),
        "{err}"
    );
}

#[test]
fn inline_marker_allows_its_line_only() {
    let tmp = TempDir::new();
    tmp.write(
        "src/main.py",
        &format!(
            "A = \"{}\"  # moat:allow: documented sample\nB = \"{}\"\n",
            aws_key(),
            github_token()
        ),
    );
    let report = scan(&tmp.0);
    assert_eq!(report.findings.len(), 1);
    assert_eq!(report.findings[0].line, 2);
    assert_eq!(report.suppressed.len(), 1);
    assert_eq!(report.suppressed[0].by, Suppression::Inline);
}

#[test]
fn baseline_accepts_a_previous_report() {
    let tmp = TempDir::new();
    let repo = tmp.0.join("repo");
    tmp.write(
        "repo/settings.py",
        &format!("SLACK = '{}'\n", slack_token()),
    );
    let old = scan(&repo);
    assert_eq!(old.findings.len(), 1);
    let baseline = tmp.write("baseline.json", &report::render(&old, Format::Json));
    let options = ScanOptions {
        baseline: Some(baseline.clone()),
        ..ScanOptions::default()
    };
    assert!(scan_tree(&repo, &options).unwrap().is_clean());
    // A new secret is still reported.
    tmp.write("repo/deploy.sh", &format!("export GH={}\n", github_token()));
    let report = scan_tree(&repo, &options).unwrap();
    assert_eq!(report.findings.len(), 1);
    assert_eq!(report.findings[0].file, "deploy.sh");
    // A bare array of findings is a baseline too; anything else is an error.
    let array = serde_json::to_string(
        &serde_json::from_str::<Value>(&report::render(&old, Format::Json)).unwrap()["findings"],
    )
    .unwrap();
    tmp.write("array.json", &array);
    let options = ScanOptions {
        baseline: Some(tmp.0.join("array.json")),
        ..ScanOptions::default()
    };
    assert_eq!(scan_tree(&repo, &options).unwrap().findings.len(), 1);
    tmp.write("bad.json", "{\"findings\": 3}");
    let options = ScanOptions {
        baseline: Some(tmp.0.join("bad.json")),
        ..ScanOptions::default()
    };
    assert!(matches!(
        scan_tree(&repo, &options),
        Err(ScanError::Baseline { .. })
    ));
}

// ------------------------------------------------------------------------- diffs

#[test]
fn diff_mode_judges_only_added_lines() {
    let tmp = TempDir::new();
    tmp.write(
        "config/app.yaml",
        &format!(
            "name: app\nold_token: {}\nregion: eu\nnew_key: {}\n",
            github_token(),
            aws_key()
        ),
    );
    tmp.write("untouched.txt", &format!("k = {}\n", aws_key()));
    let diff = "diff --git a/config/app.yaml b/config/app.yaml\n\
                --- a/config/app.yaml\n+++ b/config/app.yaml\n\
                @@ -1,3 +1,4 @@\n name: app\n old_token: x\n region: eu\n+new_key: y\n";
    let report = scan_diff(&tmp.0, diff, &ScanOptions::default()).unwrap();
    assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
    assert_eq!(
        (report.findings[0].file.as_str(), report.findings[0].line),
        ("config/app.yaml", 4)
    );
    assert_eq!(report.stats.files_scanned, 1);
    // A diff that only deletes adds nothing to judge.
    let deletion = "--- a/untouched.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-k = x\n";
    assert!(
        scan_diff(&tmp.0, deletion, &ScanOptions::default())
            .unwrap()
            .is_clean()
    );
}

#[test]
fn diff_mode_counts_a_multi_line_key_when_any_line_is_added() {
    let tmp = TempDir::new();
    tmp.write("k.pem", &format!("header\n{}", private_key()));
    let diff =
        "--- a/k.pem\n+++ b/k.pem\n@@ -1,4 +1,4 @@\n header\n-----BEGIN\n-old\n+new\n ----END\n";
    let report = scan_diff(&tmp.0, diff, &ScanOptions::default()).unwrap();
    assert_eq!(report.findings.len(), 1);
    assert_eq!(report.findings[0].rule, "private-key");
}

#[test]
fn upstream_sample_diff_is_read_hunk_by_hunk() {
    let text = fs::read_to_string(fixtures().join("detect-secrets/sample.diff")).unwrap();
    let added = parse_unified_diff(&text).unwrap();
    let lines = |f: &str| -> Vec<u32> {
        added
            .lines(f)
            .map(|l| l.iter().copied().collect())
            .unwrap_or_default()
    };
    assert_eq!(lines("detect_secrets/core/baseline.py"), [82, 89, 92]);
    assert_eq!(lines("tests/core/secrets_collection_test.py"), [83]);
    assert_eq!(lines("setup.py"), [13]);
    assert_eq!(lines(".secrets.baseline"), [13]);
}

// ------------------------------------------------------------------------- outputs

fn sample_tree() -> TempDir {
    let tmp = TempDir::new();
    tmp.write("infra/.env", &format!("AWS_ACCESS_KEY_ID={}\n", aws_key()));
    tmp.write(
        "ci/deploy.sh",
        &format!("curl -H 'Authorization: token {}'\n", github_token()),
    );
    tmp.write("keys/id_rsa", &private_key());
    tmp.write(
        "app/db.ts",
        &format!(
            "const url = \"postgres://app:{}@db.internal:5432/app\";\nconst pw = {{ password: \"{}\" }};\n",
            db_password(),
            db_password()
        ),
    );
    tmp.write("chat.yaml", &format!("slack:\n  bot: {}\n", slack_token()));
    tmp
}

#[test]
fn json_output_has_the_documented_keys() {
    let tmp = sample_tree();
    let report = scan(&tmp.0);
    assert_eq!(report.findings.len(), 6, "{:#?}", report.findings);
    let json: Value = serde_json::from_str(&report::render(&report, Format::Json)).unwrap();
    let findings = json["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 6);
    for f in findings {
        for key in ["rule", "file", "line", "column", "fingerprint"] {
            assert!(f.get(key).is_some(), "missing {key} in {f}");
        }
        assert!(f["line"].as_u64().unwrap() >= 1 && f["column"].as_u64().unwrap() >= 1);
        assert_eq!(f["fingerprint"].as_str().unwrap().len(), 64);
        assert!(!f["file"].as_str().unwrap().contains('\\'));
    }
    let files: BTreeSet<&str> = findings
        .iter()
        .map(|f| f["file"].as_str().unwrap())
        .collect();
    assert!(files.contains("infra/.env") && files.contains("keys/id_rsa"));
}

#[test]
fn sarif_output_is_sarif_2_1_0() {
    let tmp = sample_tree();
    let report = scan(&tmp.0);
    let sarif: Value = serde_json::from_str(&report::render(&report, Format::Sarif)).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    let run = &sarif["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "moat");
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    assert!(rules.len() >= 60);
    let results = run["results"].as_array().unwrap();
    assert_eq!(results.len(), report.findings.len());
    for r in results {
        let index = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[index]["id"], r["ruleId"]);
        let region = &r["locations"][0]["physicalLocation"]["region"];
        assert!(region["startLine"].as_u64().unwrap() >= 1);
        assert!(region["startColumn"].as_u64().unwrap() >= 1);
        assert!(r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].is_string());
        assert_eq!(
            r["partialFingerprints"]["moatSecret/v1"]
                .as_str()
                .unwrap()
                .len(),
            64
        );
        assert!(["error", "warning", "note"].contains(&r["level"].as_str().unwrap()));
    }
}

#[test]
fn no_output_format_contains_a_raw_secret() {
    let tmp = sample_tree();
    // A line with an allowed secret and a second, unrelated credential on it.
    tmp.write(
        "notes.md",
        &format!("a {} b {} # moat:allow\n", aws_key(), github_token()),
    );
    let report = scan(&tmp.0);
    assert!(!report.suppressed.is_empty());
    let secrets = [
        aws_key(),
        github_token(),
        slack_token(),
        db_password(),
        pem_body(),
    ];
    for format in [Format::Table, Format::Json, Format::Sarif] {
        let out = report::render(&report, format);
        for secret in &secrets {
            // Not the whole secret, and not any 12-character piece of it either.
            for piece in secret.as_bytes().windows(12) {
                let piece = std::str::from_utf8(piece).unwrap();
                assert!(!out.contains(piece), "{format:?} output shows `{piece}`");
            }
        }
    }
}

#[test]
fn table_output_lists_findings_and_a_summary() {
    let tmp = sample_tree();
    let out = report::render(&scan(&tmp.0), Format::Table);
    assert!(out.starts_with("SEVERITY"));
    assert!(out.contains("ci/deploy.sh:1:"));
    assert!(out.contains("-----BEGIN RSA PRIVATE KEY-----***"));
    assert!(out.trim_end().ends_with("scanned)."), "{out}");
    assert!(out.contains("6 secrets found in 5 files"), "{out}");
}

// ------------------------------------------------------------------------- what is read

#[test]
fn binaries_lock_files_vendored_trees_and_symlinks_are_skipped() {
    let tmp = TempDir::new();
    let secret = format!("key={}\n", aws_key());
    tmp.write("src/real.txt", &secret);
    tmp.write("Cargo.lock", &secret);
    tmp.write("web/package-lock.json", &secret);
    tmp.write("go.sum", &secret);
    tmp.write("vendor/lib/x.go", &secret);
    tmp.write("web/node_modules/pkg/index.js", &secret);
    tmp.write("third_party/a/b.c", &secret);
    tmp.write(".git/config", &secret);
    let mut binary = b"\x7fELF\x00\x01".to_vec();
    binary.extend_from_slice(secret.as_bytes());
    fs::write(tmp.0.join("src/tool.bin"), binary).unwrap();
    // A link to a file outside the tree must not be followed.
    let outside = TempDir::new();
    let target = outside.write("leak.txt", &secret);
    #[cfg(unix)]
    std::os::unix::fs::symlink(&target, tmp.0.join("src/link.txt")).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(&outside.0, tmp.0.join("linked-dir")).unwrap();

    let report = scan(&tmp.0);
    let files: Vec<&str> = report.findings.iter().map(|f| f.file.as_str()).collect();
    assert_eq!(files, ["src/real.txt"]);
    let stats = &report.stats;
    assert_eq!(stats.files_scanned, 1);
    assert_eq!(stats.skipped_lock, 3);
    assert_eq!(stats.skipped_binary, 1);
    assert_eq!(stats.skipped_dirs, 4);
    #[cfg(unix)]
    assert_eq!(stats.skipped_symlinks, 2);
}

#[test]
fn large_files_are_skipped() {
    let tmp = TempDir::new();
    let mut big = "x".repeat(2048);
    big.push_str(&format!("\nkey={}\n", aws_key()));
    tmp.write("big.txt", &big);
    tmp.write("small.txt", &format!("key={}\n", aws_key()));
    let options = ScanOptions {
        max_file_size: 1024,
        ..ScanOptions::default()
    };
    let report = scan_tree(&tmp.0, &options).unwrap();
    assert_eq!(report.findings.len(), 1);
    assert_eq!(report.stats.skipped_large, 1);
}

#[test]
fn a_missing_directory_is_unusable_input() {
    let err = scan_tree(Path::new("/nonexistent/moat"), &ScanOptions::default()).unwrap_err();
    assert!(matches!(err, ScanError::NotADirectory { .. }));
}

#[test]
fn results_do_not_depend_on_the_number_of_threads() {
    let root = fixtures();
    let one = scan_tree(
        &root,
        &ScanOptions {
            threads: 1,
            ..ScanOptions::default()
        },
    )
    .unwrap();
    let four = scan_tree(
        &root,
        &ScanOptions {
            threads: 4,
            ..ScanOptions::default()
        },
    )
    .unwrap();
    assert_eq!(one.findings, four.findings);
}
