//! Mutation fuzzing: thousands of damaged variants of the valid pipeline files must each give
//! `Ok` or `Err`, never a panic or a hang, and every accepted variant must plan cleanly.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::{Duration, Instant};

use moat_pipelines::{Event, EventKind, Policy, parse_with, plan};
use mutator::mutate;
use rand::SeedableRng;
use rand::rngs::StdRng;

mod mutator;

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
                    // Only an image reference made invalid by the event's names may fail.
                    let mut p = match plan(&pipeline, event) {
                        Ok(p) => p,
                        Err(e) => {
                            assert!(e.message().contains("after interpolation"), "{e}");
                            continue;
                        }
                    };
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
