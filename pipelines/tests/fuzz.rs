//! Mutation fuzzing: thousands of damaged variants of the valid pipeline files must each give
//! `Ok` or `Err`, never a panic or a hang, and every accepted variant must plan cleanly.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::{Duration, Instant};

use moat_pipelines::{Event, EventKind, Policy, parse_with, plan};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Enough to run in a few seconds in a debug build; `MOAT_FUZZ_MUTANTS` and `MOAT_FUZZ_SEED`
/// make deeper or different runs without editing the test.
const MUTANTS_PER_FILE: usize = 2500;
const SEED: u64 = 0x6d6f_6174;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const ALPHABET: &[u8] = b":-[]{}&*!|>'\"#%@\t\n ,?~$.<0aZ\\";

const TOKENS: &[&str] = &[
    "*a",
    "&a",
    "<<",
    "<<: *a",
    "[",
    "]",
    "{",
    "}",
    "null",
    "~",
    "true",
    "false",
    "-1",
    "0",
    "99999999999999999999",
    "1.5e300",
    "${X}",
    "${",
    "${MOAT_COMMIT}",
    "..",
    "/",
    "\"",
    "'",
    "|",
    ">",
    "!!str",
    "!!binary",
    "!tag",
    "? ",
    "---",
    "...",
    "\t",
    "- ",
    ": ",
    "kind: deploy",
    "kind: build",
    "needs: [test]",
    "needs: []",
    "when: {}",
    "é",
    "\u{feff}",
    "0x1F",
    "%YAML 1.2",
];

fn events() -> Vec<Event> {
    let base = Event {
        kind: EventKind::Push,
        branch: Some("main".into()),
        target_branch: None,
        tag: None,
        commit: "abc123".into(),
        repo: "acme/app".into(),
        run_id: "1".into(),
    };
    vec![
        base.clone(),
        Event {
            kind: EventKind::PullRequest,
            branch: Some("feature/x".into()),
            target_branch: Some("main".into()),
            ..base.clone()
        },
        Event {
            kind: EventKind::Tag,
            branch: None,
            tag: Some("v1.2.3".into()),
            ..base.clone()
        },
        Event {
            kind: EventKind::Manual,
            ..base
        },
    ]
}

fn lines(src: &[u8]) -> Vec<Vec<u8>> {
    src.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect()
}

fn join(lines: &[Vec<u8>]) -> Vec<u8> {
    lines.join(&b'\n')
}

fn mutate(rng: &mut StdRng, src: &[u8], donors: &[Vec<u8>]) -> Vec<u8> {
    let mut out = src.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let mut ls = lines(&out);
        let n = ls.len();
        match rng.random_range(0..10) {
            0 if n > 1 => {
                ls.remove(rng.random_range(0..n));
                out = join(&ls);
            }
            1 => {
                let i = rng.random_range(0..n);
                let copy = ls[i].clone();
                ls.insert(i, copy);
                out = join(&ls);
            }
            2 => {
                let (i, j) = (rng.random_range(0..n), rng.random_range(0..n));
                ls.swap(i, j);
                out = join(&ls);
            }
            3 => {
                let at = rng.random_range(0..=out.len());
                let bytes: Vec<u8> = (0..rng.random_range(1..6))
                    .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())])
                    .collect();
                out.splice(at..at, bytes);
            }
            4 if !out.is_empty() => out.truncate(rng.random_range(0..out.len())),
            5 => {
                let i = rng.random_range(0..n);
                if rng.random_bool(0.5) {
                    let spaces = rng.random_range(1..5);
                    ls[i].splice(0..0, std::iter::repeat_n(b' ', spaces));
                } else {
                    let strip = ls[i].iter().take_while(|&&b| b == b' ').count();
                    let k = rng.random_range(0..=strip);
                    ls[i].drain(..k);
                }
                out = join(&ls);
            }
            6 => {
                // Replace one whitespace-separated word with a YAML-significant token.
                let i = rng.random_range(0..n);
                let text = String::from_utf8_lossy(&ls[i]).into_owned();
                let mut words: Vec<&str> = text.split(' ').collect();
                let w = rng.random_range(0..words.len());
                words[w] = TOKENS[rng.random_range(0..TOKENS.len())];
                ls[i] = words.join(" ").into_bytes();
                out = join(&ls);
            }
            7 if !out.is_empty() => {
                let at = rng.random_range(0..out.len());
                out[at] = rng.random();
            }
            8 => {
                let donor = lines(&donors[rng.random_range(0..donors.len())]);
                let from = rng.random_range(0..donor.len());
                let len = rng.random_range(1..=(donor.len() - from).min(8));
                let at = rng.random_range(0..=n);
                ls.splice(at..at, donor[from..from + len].iter().cloned());
                out = join(&ls);
            }
            _ => {
                let at = rng.random_range(0..=out.len());
                let token = TOKENS[rng.random_range(0..TOKENS.len())];
                out.splice(at..at, token.bytes());
            }
        }
    }
    out
}

#[test]
fn mutated_files_never_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/pipelines/valid");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    paths.sort();
    let sources: Vec<Vec<u8>> = paths.iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert!(!sources.is_empty());
    let events = events();
    let policies = [
        Policy::default(),
        Policy {
            allow_privileged: true,
            allow_host_mounts: true,
            allow_docker_socket: true,
        },
    ];
    let mutants = env_or("MOAT_FUZZ_MUTANTS", MUTANTS_PER_FILE);
    let mut rng = StdRng::seed_from_u64(env_or("MOAT_FUZZ_SEED", SEED));
    let (mut accepted, mut rejected) = (0usize, 0usize);
    let start = Instant::now();
    for src in &sources {
        for i in 0..mutants {
            let mutant = mutate(&mut rng, src, &sources);
            let policy = &policies[i % 2];
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                let Ok(pipeline) = parse_with(&mutant, policy) else {
                    return false;
                };
                for event in &events {
                    let _ = pipeline.triggered_by(event);
                    // What validates, plans: validation ran the same expansion checks.
                    let mut p = plan(&pipeline, event).expect("a valid pipeline plans");
                    // A valid pipeline is acyclic: every stage gets an order.
                    assert_eq!(p.topological_order().len(), p.stages.len());
                    for s in &p.stages {
                        assert!(s.needs.iter().all(|&n| n < p.stages.len() && n != s.index));
                    }
                    let first = p.stages[0].name.clone();
                    assert!(p.select(&[first]).is_ok());
                }
                true
            }));
            match outcome {
                Ok(true) => accepted += 1,
                Ok(false) => rejected += 1,
                Err(_) => panic!(
                    "panicked on this input:\n{}",
                    String::from_utf8_lossy(&mutant)
                ),
            }
        }
    }
    eprintln!("fuzz: {accepted} accepted, {rejected} rejected");
    // Both outcomes must be exercised, or the mutations are too gentle or too harsh.
    assert!(
        accepted > mutants / 50,
        "only {accepted} mutants were accepted"
    );
    assert!(rejected > mutants, "only {rejected} mutants were rejected");
    assert!(
        start.elapsed() < Duration::from_secs(60) || mutants > MUTANTS_PER_FILE,
        "fuzzing took {:?}",
        start.elapsed()
    );
}
