//! Hostile inputs near the size limits: each must be answered quickly, with bounded output.
//! The time bounds are hang guards for debug builds, not benchmarks; the quadratic versions
//! of these checks took minutes.

use std::time::{Duration, Instant};

use moat_pipelines::{Diagnostics, Policy, parse_with};

const HANG_GUARD: Duration = Duration::from_secs(10);

fn check(name: &str, src: &str) -> Diagnostics {
    let start = Instant::now();
    let result = parse_with(src.as_bytes(), &Policy::default());
    let took = start.elapsed();
    assert!(took < HANG_GUARD, "{name} took {took:?}");
    result.err().unwrap_or_default()
}

fn stage_list(n: usize) -> String {
    let mut s = String::from("version: 1\nstages:\n");
    for i in 0..n {
        s.push_str(&format!("  - {{name: s{i:05}, kind: test, image: x}}\n"));
    }
    s
}

#[test]
fn many_unknown_needs_close_to_real_names() {
    let mut src = stage_list(5000);
    let needs: Vec<String> = (0..60_000).map(|i| format!("t{:04}", i % 9999)).collect();
    src.push_str(&format!(
        "  - name: last\n    kind: test\n    image: x\n    needs: [{}]\n",
        needs.join(", ")
    ));
    let d = check("unknown needs", &src);
    assert_eq!(d.len(), 60_000);
    assert!(d.iter().all(|d| d.message.contains("which is not defined")));
}

#[test]
fn many_unknown_secrets() {
    let mut src = String::from("version: 1\nsecrets:\n");
    for i in 0..20_000 {
        src.push_str(&format!("  S{i:05}:\n"));
    }
    let grants: Vec<String> = (0..40_000).map(|i| format!("T{i:05}")).collect();
    src.push_str(&format!(
        "stages:\n  - name: a\n    kind: test\n    image: x\n    secrets: [{}]\n",
        grants.join(", ")
    ));
    let d = check("unknown secrets", &src);
    assert_eq!(d.len(), 40_000);
    // The list of declared names is shortened, or 40,000 messages would each carry 20,000.
    assert!(
        d.0[0].message.ends_with("and 19990 more"),
        "{}",
        d.0[0].message
    );
}

#[test]
fn many_services_and_a_long_cycle() {
    let mut src = String::from("version: 1\nstages:\n  - name: a\n    kind: test\n    image: x\n");
    src.push_str("    services:\n");
    for i in 0..15_000 {
        src.push_str(&format!("      - {{name: db{i}, image: x}}\n"));
    }
    assert!(check("services", &src).is_empty());

    let n = 8_000;
    let mut src = String::from("version: 1\nstages:\n");
    for i in 0..n {
        src.push_str(&format!(
            "  - {{name: s{i:05}, kind: test, image: x, needs: [s{:05}]}}\n",
            (i + 1) % n
        ));
    }
    let d = check("cycle", &src);
    assert_eq!(d.len(), 1);
    assert_eq!(
        d.0[0].message,
        "dependency cycle: s00000 -> s00001 -> s00002 -> s00003 -> s00004 -> s00005 -> s00006 \
         -> s00007 -> s00008 -> s00009 -> ... (8000 stages) -> s07999 -> s00000"
    );
}

#[test]
fn many_misspelt_keys() {
    let mut src = String::from("version: 1\nstages:\n  - name: a\n    kind: test\n    image: x\n");
    for i in 0..40_000 {
        src.push_str(&format!("    imgae{i}: x\n"));
    }
    let d = check("keys", &src);
    assert_eq!(d.len(), 40_000);
}

#[test]
fn node_and_depth_limits() {
    let items = vec!["1"; 100_001].join(", ");
    let d = check("nodes", &format!("version: 1\nstages: [{items}]\n"));
    assert_eq!(d.len(), 1);
    assert!(d.0[0].message.contains("more than 100000 nodes"));

    // Block mappings nest too, not only flow collections.
    let mut deep = String::from("version: 1\nstages:\n");
    for level in 0..80 {
        deep.push_str(&format!("{}k{level}:\n", "  ".repeat(level + 1)));
    }
    let d = check("depth", &deep);
    assert_eq!(d.len(), 1);
    assert_eq!(d.0[0].message, "nesting deeper than 64 levels");
}
