//! The pipeline files under `tests/pipelines`: every valid one parses, every invalid one
//! produces exactly the diagnostics its `# expect:` header lists, in order.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use moat_pipelines::{Policy, parse_with};

fn dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/pipelines")
        .join(name)
}

fn yaml_files(name: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir(name))
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir(name).display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    files.sort();
    files
}

/// The `# expect: LINE:COL: message` lines of the file's leading comment block.
fn expectations(src: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(src)
        .lines()
        .take_while(|l| l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("# expect: "))
        .map(str::to_string)
        .collect()
}

#[test]
fn valid_files_parse() {
    let files = yaml_files("valid");
    assert!(files.len() >= 6, "only {} valid files", files.len());
    let mut failures = String::new();
    for path in &files {
        let src = std::fs::read(path).unwrap();
        if let Err(diags) = parse_with(&src, &Policy::default()) {
            failures.push_str(&diags.render(&path.display().to_string()));
        }
    }
    assert!(
        failures.is_empty(),
        "valid files were rejected:\n{failures}"
    );
}

#[test]
fn invalid_files_report_exactly_what_they_expect() {
    let files = yaml_files("invalid");
    assert!(files.len() >= 25, "only {} invalid files", files.len());
    let mut failures = String::new();
    for path in &files {
        let src = std::fs::read(path).unwrap();
        let want = expectations(&src);
        let name = path.file_name().unwrap().to_string_lossy();
        if want.is_empty() {
            failures.push_str(&format!("{name}: no `# expect:` lines\n"));
            continue;
        }
        let start = Instant::now();
        let result = parse_with(&src, &Policy::default());
        // A hang guard for the hostile files (billion laughs, deep nesting), not a benchmark.
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{name} took {:?}",
            start.elapsed()
        );
        let got: Vec<String> = match result {
            Ok(_) => Vec::new(),
            Err(diags) => diags
                .iter()
                .map(|d| format!("{}: {}", d.pos, d.message))
                .collect(),
        };
        if got != want {
            failures.push_str(&format!(
                "{name}:\n  want:\n{}\n  got:\n{}\n",
                want.iter()
                    .map(|l| format!("    # expect: {l}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
                got.iter()
                    .map(|l| format!("    # expect: {l}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            ));
        }
    }
    assert!(failures.is_empty(), "\n{failures}");
}

#[test]
fn valid_files_give_the_model_they_describe() {
    let src = std::fs::read(dir("valid").join("01-product-example.yml")).unwrap();
    let p = parse_with(&src, &Policy::default()).unwrap();
    assert_eq!(p.version, 1);
    let names: Vec<&str> = p.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["test", "image", "scan", "deploy"]);
    assert_eq!(p.on.push.as_ref().unwrap().len(), 2);
    assert!(p.on.manual);
    assert_eq!(
        p.env,
        [("CARGO_TERM_COLOR".to_string(), "always".to_string())]
    );
    assert_eq!(p.secrets.len(), 2);
    let test = p.stage("test").unwrap();
    assert_eq!(test.timeout, Some(Duration::from_secs(20 * 60)));
    assert_eq!(test.resources.memory, Some(4 << 30));
    assert_eq!(test.services[0].env[0].1, "test");
    let deploy = p.stage("deploy").unwrap().deploy.as_ref().unwrap();
    assert_eq!(deploy.port, 8080);
    assert_eq!(deploy.health.path, "/healthz");
    assert_eq!(deploy.health.interval, Duration::from_secs(2));

    let src = std::fs::read(dir("valid").join("04-anchors-merge.yml")).unwrap();
    let p = parse_with(&src, &Policy::default()).unwrap();
    let test = p.stage("test").unwrap();
    assert_eq!(test.image.as_deref(), Some("rust:1.83-slim"));
    assert_eq!(test.timeout, Some(Duration::from_secs(30 * 60)));
    assert_eq!(test.env.len(), 3);
    let bench = p.stage("bench").unwrap();
    assert_eq!(bench.resources.pids, Some(256));
    assert_eq!(bench.needs, None);

    let src = std::fs::read(dir("valid").join("03-services.yml")).unwrap();
    let p = parse_with(&src, &Policy::default()).unwrap();
    let svc = &p.stages[0].services;
    assert_eq!(
        svc[0].command,
        ["postgres", "-c", "fsync=off", "-c", "shared_buffers=64MB"]
    );
    assert_eq!(svc[1].command, ["redis-server", "--save", ""]);
}
