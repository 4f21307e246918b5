//! Benchmark of the secret scanner (run through `scripts/bench-secrets`).
//!
//! 1. Quality: scans the labelled fixtures (`tests/fixtures/secrets`, labels in
//!    `labels.json`) and prints, per file, the expected secrets found and the false positives.
//! 2. Speed: generates a mixed source tree (code-like text in files of varied size, a few
//!    embedded secrets), times `cat` over it (the I/O floor, warm cache) and the scanner over
//!    the same files, and prints MB/s for both and their ratio.
//!
//! Exit code 1 when recall is below 100%, a false positive remains, an embedded secret is
//! missed, or the scanner is slower than the target.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use moat_secrets::{Finding, ScanOptions, scan_tree};
use serde_json::Value;

const TARGET_MB_S: f64 = 100.0;

struct Args {
    fixtures: PathBuf,
    labels: Option<PathBuf>,
    size_mb: u64,
    speed: bool,
    quality: bool,
    list: bool,
    keep: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        fixtures: PathBuf::from("tests/fixtures/secrets"),
        labels: None,
        size_mb: 200,
        speed: true,
        quality: true,
        list: false,
        keep: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--fixtures" => args.fixtures = value("--fixtures")?.into(),
            "--labels" => args.labels = Some(value("--labels")?.into()),
            "--size-mb" => {
                args.size_mb = value("--size-mb")?
                    .parse()
                    .map_err(|_| "--size-mb takes a number")?
            }
            "--quality-only" => args.speed = false,
            "--speed-only" => args.quality = false,
            "--list" => args.list = true,
            "--keep" => args.keep = true,
            "-h" | "--help" => {
                return Err(
                    "usage: bench_secrets [--fixtures DIR] [--labels FILE] [--size-mb N] \
                            [--quality-only | --speed-only] [--list] [--keep]"
                        .into(),
                );
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mut ok = true;
    if args.quality {
        match quality(&args) {
            Ok(passed) => ok &= passed,
            Err(e) => {
                eprintln!("quality: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if args.speed {
        match speed(&args) {
            Ok(passed) => ok &= passed,
            Err(e) => {
                eprintln!("speed: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

// ------------------------------------------------------------------------------ quality

/// The outcome of comparing a scan of the fixtures with the labels.
struct Scored {
    rows: Vec<(String, usize, usize, Vec<String>)>,
    expected: usize,
    found: usize,
    false_positives: usize,
    negatives: usize,
    missing: Vec<String>,
}

fn family_matches(rule: &str, family: &str) -> bool {
    rule == family || rule.starts_with(&format!("{family}-"))
}

fn score(findings: &[Finding], labels: &Value) -> Result<Scored, String> {
    let files = labels
        .get("files")
        .and_then(Value::as_object)
        .ok_or("labels: no `files` object")?;
    let mut by_file: BTreeMap<&str, Vec<&Finding>> = BTreeMap::new();
    for f in findings {
        by_file.entry(f.file.as_str()).or_default().push(f);
    }
    let mut scored = Scored {
        rows: Vec::new(),
        expected: 0,
        found: 0,
        false_positives: 0,
        negatives: 0,
        missing: Vec::new(),
    };
    let lines_of = |label: &Value, key: &str| -> BTreeSet<u64> {
        label
            .get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|e| e.get("line").and_then(Value::as_u64))
                    .collect()
            })
            .unwrap_or_default()
    };
    for (file, label) in files {
        let got = by_file.remove(file.as_str()).unwrap_or_default();
        let expect: Vec<(u64, String)> = label
            .get("expect")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|e| {
                        Some((
                            e.get("line")?.as_u64()?,
                            e.get("family")?.as_str()?.to_string(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let unlabelled = lines_of(label, "unlabelled");
        let negative = lines_of(label, "negative");
        let mut found = 0;
        for (line, family) in &expect {
            if got
                .iter()
                .any(|f| u64::from(f.line) == *line && family_matches(f.rule, family))
            {
                found += 1;
            } else {
                scored.missing.push(format!("{file}:{line} ({family})"));
            }
        }
        let mut fps = Vec::new();
        for f in &got {
            let expected = expect
                .iter()
                .any(|(line, family)| u64::from(f.line) == *line && family_matches(f.rule, family));
            if !expected && !unlabelled.contains(&u64::from(f.line)) {
                fps.push(format!("{}:{} {}", f.line, f.column, f.rule));
            }
        }
        scored.negatives += negative
            .iter()
            .filter(|l| !got.iter().any(|f| u64::from(f.line) == **l))
            .count();
        scored.expected += expect.len();
        scored.found += found;
        scored.false_positives += fps.len();
        scored.rows.push((file.clone(), expect.len(), found, fps));
    }
    // Files without labels: everything found there is a false positive.
    for (file, got) in by_file {
        let fps: Vec<String> = got
            .iter()
            .map(|f| format!("{}:{} {} (file not labelled)", f.line, f.column, f.rule))
            .collect();
        scored.false_positives += fps.len();
        scored.rows.push((file.to_string(), 0, 0, fps));
    }
    Ok(scored)
}

fn quality(args: &Args) -> Result<bool, String> {
    let labels_path = args
        .labels
        .clone()
        .unwrap_or_else(|| args.fixtures.join("labels.json"));
    let labels: Value = serde_json::from_str(
        &fs::read_to_string(&labels_path).map_err(|e| format!("{}: {e}", labels_path.display()))?,
    )
    .map_err(|e| format!("{}: {e}", labels_path.display()))?;
    let report = scan_tree(&args.fixtures, &ScanOptions::default()).map_err(|e| e.to_string())?;
    if args.list {
        for f in &report.findings {
            println!(
                "{}:{}:{} {} {}",
                f.file, f.line, f.column, f.rule, f.excerpt
            );
        }
        println!();
    }
    let s = score(&report.findings, &labels)?;
    println!("== quality: {} ==", args.fixtures.display());
    println!(
        "{:<58} {:>8} {:>6} {:>4}",
        "file", "expected", "found", "FP"
    );
    for (file, expected, found, fps) in &s.rows {
        println!("{file:<58} {expected:>8} {found:>6} {:>4}", fps.len());
        for fp in fps {
            println!("    false positive: {fp}");
        }
    }
    for m in &s.missing {
        println!("    missed: {m}");
    }
    let recall = if s.expected == 0 {
        100.0
    } else {
        100.0 * s.found as f64 / s.expected as f64
    };
    println!(
        "TOTAL: recall {}/{} = {recall:.1}%, false positives {}, negative cases held {}, files {}",
        s.found,
        s.expected,
        s.false_positives,
        s.negatives,
        s.rows.len()
    );
    Ok(s.found == s.expected && s.false_positives == 0)
}

// ------------------------------------------------------------------------------ speed

/// xorshift64*: deterministic, so every run scans the same tree.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const WORDS: &[&str] = &[
    "request",
    "response",
    "buffer",
    "index",
    "count",
    "value",
    "result",
    "error",
    "config",
    "client",
    "server",
    "handler",
    "stream",
    "reader",
    "writer",
    "context",
    "state",
    "cache",
    "user",
    "session",
    "message",
    "payload",
    "record",
    "entry",
    "node",
    "graph",
    "queue",
    "worker",
    "task",
    "job",
    "event",
    "listener",
    "status",
    "timeout",
    "retry",
    "limit",
    "offset",
    "length",
    "path",
    "file",
    "dir",
    "name",
    "id",
    "item",
    "list",
    "map",
    "set",
    "key",
    "token",
    "parser",
    "lexer",
    "builder",
    "factory",
    "service",
    "repository",
    "model",
    "schema",
    "field",
    "column",
    "table",
    "query",
    "filter",
    "sort",
    "page",
    "cursor",
    "batch",
    "chunk",
    "frame",
    "packet",
    "socket",
    "address",
    "port",
    "host",
    "route",
    "router",
    "middleware",
    "auth",
    "permission",
    "role",
    "policy",
    "secret",
    "password",
    "hash",
    "digest",
    "signature",
    "certificate",
    "metrics",
    "logger",
    "trace",
    "span",
    "debug",
    "format",
    "encode",
    "decode",
    "serialize",
    "validate",
    "normalize",
    "merge",
    "split",
    "join",
    "update",
    "delete",
    "create",
    "insert",
    "select",
    "fetch",
    "load",
    "store",
    "save",
    "open",
    "close",
    "start",
    "stop",
    "run",
    "spawn",
    "wait",
    "notify",
    "lock",
    "unlock",
    "read",
    "write",
    "flush",
];
const PROSE: &[&str] = &[
    "the", "a", "of", "to", "and", "is", "in", "that", "for", "it", "with", "as", "on", "be",
    "this", "when", "returns", "if", "not", "or", "we", "must", "before", "after", "each", "every",
    "only", "because", "so", "then", "value", "caller", "input", "output", "here",
];

fn ident(rng: &mut Rng, camel: bool) -> String {
    let n = 1 + rng.below(3);
    let mut s = String::new();
    for i in 0..n {
        let w = rng.pick(WORDS);
        if camel && i > 0 {
            let mut c = w.chars();
            if let Some(f) = c.next() {
                s.push(f.to_ascii_uppercase());
                s.push_str(c.as_str());
            }
        } else {
            if i > 0 {
                s.push('_');
            }
            s.push_str(w);
        }
    }
    s
}

fn comment(rng: &mut Rng) -> String {
    let n = 4 + rng.below(12);
    (0..n)
        .map(|_| rng.pick(PROSE).to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// One line of code-like text in the style of `lang`.
fn line(rng: &mut Rng, lang: usize, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let a = ident(rng, lang == 2);
    let b = ident(rng, lang == 2);
    let c = ident(rng, lang == 2);
    let n = rng.below(10_000);
    match (lang, rng.below(10)) {
        (_, 0) => String::new(),
        (0, 1) => format!("{pad}// {}", comment(rng)),
        (0, 2) => format!("{pad}let {a} = {b}.{c}(&{}, {n})?;", ident(rng, false)),
        (0, 3) => format!(
            "{pad}if {a}.len() > {n} {{ return Err(Error::{}); }}",
            "Overflow"
        ),
        (0, 4) => format!(
            "{pad}pub fn {a}(&self, {b}: &str) -> Result<{}, Error> {{",
            "Value"
        ),
        (0, 5) => format!("{pad}self.{a}.insert({b}.clone(), {c});"),
        (0, 6) => format!("{pad}tracing::debug!(\"{}\", {a});", comment(rng)),
        (0, _) => format!("{pad}{a}.{b}({c}, \"{}\").await?;", ident(rng, false)),
        (1, 1) => format!("{pad}# {}", comment(rng)),
        (1, 2) => format!("{pad}def {a}(self, {b}, {c}={n}):"),
        (1, 3) => format!("{pad}{a} = {b}.get(\"{c}\", {n})"),
        (1, 4) => format!("{pad}for {a} in self.{b}:"),
        (1, 5) => format!("{pad}raise ValueError(f\"{} {{{a}}}\")", comment(rng)),
        (1, _) => format!("{pad}return {a}({b}, {c}=True)"),
        (2, 1) => format!("{pad}/* {} */", comment(rng)),
        (2, 2) => format!("{pad}const {a} = await {b}.{c}({n});"),
        (2, 3) => format!("{pad}export function {a}({b}, {c}) {{"),
        (2, 4) => format!(
            "{pad}if (!{a}) {{ throw new Error(\"{}\"); }}",
            comment(rng)
        ),
        (2, 5) => format!("{pad}{a}.{b} = {{ {c}: {n}, url: \"https://{c}.local/{a}\" }};"),
        (2, _) => format!("{pad}return {a}.map(({b}) => {b}.{c});"),
        (3, 1) => format!("{pad}# {}", comment(rng)),
        (3, 2) => format!("{pad}{a}: {n}"),
        (3, 3) => format!("{pad}{a}: \"{}\"", ident(rng, false)),
        (3, 4) => format!("{pad}- name: {a}"),
        (3, _) => format!("{pad}{a}:"),
        (_, 1) => format!("{pad}{}.", comment(rng)),
        (_, 2) => format!("{pad}- `{a}`: {}", comment(rng)),
        (_, 3) => format!("{pad}## {a}"),
        (_, _) => format!("{pad}{} `{a}()` {}", comment(rng), comment(rng)),
    }
}

/// Secrets planted in the generated tree (built at run time, so this file carries none).
fn planted(rng: &mut Rng, i: usize) -> (String, &'static str) {
    let alnum = |rng: &mut Rng, n: usize| -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        (0..n).map(|_| A[rng.below(A.len())] as char).collect()
    };
    let upper = |rng: &mut Rng, n: usize| -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        (0..n).map(|_| A[rng.below(A.len())] as char).collect()
    };
    match i % 4 {
        0 => (
            format!("aws_access_key_id = \"{}{}\"", "AKIA", upper(rng, 16)),
            "aws-access-key-id",
        ),
        1 => (
            format!("GITHUB_TOKEN={}{}", "ghp_", alnum(rng, 36)),
            "github-pat",
        ),
        2 => (
            format!(
                "SLACK={}-{}-{}-{}",
                "xoxb",
                100_000_000 + rng.below(800_000_000),
                1_000_000_000 + rng.below(8_000_000_000),
                alnum(rng, 24)
            ),
            "slack-token",
        ),
        _ => (
            format!("db_password = \"{}\"", alnum(rng, 20)),
            "generic-secret-assignment",
        ),
    }
}

struct Tree {
    root: PathBuf,
    bytes: u64,
    files: usize,
    planted: Vec<(String, u32, &'static str)>,
}

fn generate(root: &Path, total: u64) -> std::io::Result<Tree> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let exts = ["rs", "py", "ts", "yaml", "md"];
    let mut tree = Tree {
        root: root.to_path_buf(),
        bytes: 0,
        files: 0,
        planted: Vec::new(),
    };
    let mut text = String::new();
    while tree.bytes < total {
        let i = tree.files;
        let lang = rng.below(exts.len());
        let size = match rng.below(100) {
            0..=69 => 1_000 + rng.below(15_000),
            70..=94 => 16_000 + rng.below(112_000),
            _ => 128_000 + rng.below(1_900_000),
        };
        let dir = root
            .join(format!("pkg{:02}", i % 23))
            .join(format!("mod{:02}", (i / 23) % 17));
        fs::create_dir_all(&dir)?;
        let rel_dir = format!("pkg{:02}/mod{:02}", i % 23, (i / 23) % 17);
        let name = format!("{}_{i}.{}", ident(&mut rng, false), exts[lang]);
        text.clear();
        let mut lines = 0u32;
        let plant_at = i.is_multiple_of(97).then_some(size / 2);
        let mut planted_done = false;
        while text.len() < size {
            if let Some(at) = plant_at
                && !planted_done
                && text.len() >= at
            {
                let (secret, rule) = planted(&mut rng, i / 97);
                text.push_str(&secret);
                text.push('\n');
                lines += 1;
                tree.planted
                    .push((format!("{rel_dir}/{name}"), lines, rule));
                planted_done = true;
                continue;
            }
            let indent = 4 * rng.below(4);
            text.push_str(&line(&mut rng, lang, indent));
            text.push('\n');
            lines += 1;
        }
        let mut f = fs::File::create(dir.join(&name))?;
        f.write_all(text.as_bytes())?;
        tree.bytes += text.len() as u64;
        tree.files += 1;
    }
    Ok(tree)
}

fn time_cat(root: &Path) -> Result<f64, String> {
    let run = || -> Result<f64, String> {
        let start = Instant::now();
        let status = Command::new("sh")
            .arg("-c")
            .arg("find \"$1\" -type f -print0 | xargs -0 cat > /dev/null")
            .arg("sh")
            .arg(root)
            .status()
            .map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("cat pipeline failed: {status}"));
        }
        Ok(start.elapsed().as_secs_f64())
    };
    run()?;
    run()
}

fn speed(args: &Args) -> Result<bool, String> {
    let root = std::env::temp_dir().join(format!("moat-bench-secrets-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    let started = Instant::now();
    let tree = generate(&root, args.size_mb * 1_000_000).map_err(|e| e.to_string())?;
    println!(
        "== speed: {} files, {:.1} MB generated in {:.1}s under {} ==",
        tree.files,
        tree.bytes as f64 / 1e6,
        started.elapsed().as_secs_f64(),
        tree.root.display()
    );
    let result = (|| -> Result<bool, String> {
        let cat = time_cat(&root)?;
        let options = ScanOptions::default();
        let _ = scan_tree(&root, &options).map_err(|e| e.to_string())?;
        let start = Instant::now();
        let report = scan_tree(&root, &options).map_err(|e| e.to_string())?;
        let scan = start.elapsed().as_secs_f64();
        let mb = report.stats.bytes_scanned as f64 / 1e6;
        let found: BTreeSet<(&str, u32, &str)> = report
            .findings
            .iter()
            .map(|f| (f.file.as_str(), f.line, f.rule))
            .collect();
        let missed: Vec<_> = tree
            .planted
            .iter()
            .filter(|(file, line, rule)| !found.contains(&(file.as_str(), *line, *rule)))
            .collect();
        let planted: BTreeSet<(&str, u32, &str)> = tree
            .planted
            .iter()
            .map(|(file, line, rule)| (file.as_str(), *line, *rule))
            .collect();
        let others: Vec<&Finding> = report
            .findings
            .iter()
            .filter(|f| !planted.contains(&(f.file.as_str(), f.line, f.rule)))
            .collect();
        let extra = others.len();
        println!(
            "cat      {:>7.2}s  {:>8.1} MB/s   (find | xargs cat, second run)",
            cat,
            tree.bytes as f64 / 1e6 / cat
        );
        println!(
            "scanner  {:>7.2}s  {:>8.1} MB/s   ({} files, {} threads, second run)",
            scan,
            mb / scan,
            report.stats.files_scanned,
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
        println!(
            "ratio    scanner/cat time = {:.2}x; target >= {TARGET_MB_S} MB/s: {}",
            scan / cat,
            if mb / scan >= TARGET_MB_S {
                "PASS"
            } else {
                "FAIL"
            }
        );
        println!(
            "planted secrets found {}/{}, other findings {}",
            tree.planted.len() - missed.len(),
            tree.planted.len(),
            extra
        );
        for m in &missed {
            println!("    missed: {}:{} {}", m.0, m.1, m.2);
        }
        for f in others.iter().take(20) {
            println!("    other: {}:{} {} {}", f.file, f.line, f.rule, f.excerpt);
        }
        Ok(mb / scan >= TARGET_MB_S && missed.is_empty() && extra == 0)
    })();
    if args.keep {
        println!("kept {}", root.display());
    } else {
        let _ = fs::remove_dir_all(&root);
    }
    result
}
