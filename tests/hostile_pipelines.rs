//! Hostile pipeline files through the real coordinator: an expansion bomb in a fork's pull
//! request, the invalid corpus and fuzz-mutated files pushed through signed webhooks. The
//! coordinator must stay up with bounded memory and answer each with a failed run that says
//! where the file is wrong. Runs on SQLite, and on Postgres when `MOAT_TEST_POSTGRES` is set.

mod cluster;
mod common;
#[path = "../pipelines/tests/mutator/mod.rs"]
mod mutator;

use std::time::Duration;

use cluster::*;
use common::*;
use serde_json::{Value, json};

const VALID: &str = "version: 1
on:
  push: true
  pull_request: true
stages:
  - name: t
    kind: test
    image: alpine
    commands: [\"true\"]
";

/// `V0: "ab"`, then each variable twice the previous one, 40 of them: about 1 KB of file
/// asking for a terabyte. V16 (line 19, column 8) is the first past the 64 KiB cap.
fn bomb() -> String {
    let mut s = String::from("version: 1\nenv:\n  V0: \"ab\"\n");
    for i in 1..40 {
        s.push_str(&format!("  V{i}: \"${{V{}}}${{V{}}}\"\n", i - 1, i - 1));
    }
    s.push_str(
        "on:\n  pull_request: true\nstages:\n  - name: t\n    kind: test\n    image: alpine\n    commands: [\"echo $V39\"]\n",
    );
    s
}

/// A pull request payload from GitHub's example, from a fork, pointed at local commits.
fn fork_pull_request(head_branch: &str, head: &str, base: &str) -> Vec<u8> {
    let path = tests_dir().join("fixtures/webhooks/github/pull_request/opened.payload.json");
    let mut v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    v["pull_request"]["head"]["ref"] = json!(head_branch);
    v["pull_request"]["head"]["sha"] = json!(head);
    v["pull_request"]["base"]["ref"] = json!("main");
    v["pull_request"]["base"]["sha"] = json!(base);
    v["pull_request"]["head"]["repo"]["id"] = json!(424242);
    v["pull_request"]["head"]["repo"]["full_name"] = json!("mallory/fork");
    serde_json::to_vec(&v).unwrap()
}

/// The coordinator's resident memory, from /proc; panics with its log when it has died.
fn rss_kib(coordinator: &mut Coordinator) -> u64 {
    assert!(
        coordinator.alive(),
        "the coordinator died:\n{}",
        coordinator.log()
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", coordinator.pid())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expansion_bomb_in_a_fork_pull_request_fails_its_run() {
    let dir = TempDir::new("hostile-bomb").expect("temp dir");
    let db = Db::fresh(dir.path()).await;
    let mut coordinator = Coordinator::start(&dir.path().join("server"), &db, 10);
    let api = coordinator.api();
    let origin = Origin::new("hostile-bomb-origin", &[(".moat.yml", VALID)]);
    let (_, path, secret) = api.add_repo("web", &origin.url()).await;

    // The fork's branch replaces the pipeline with the bomb.
    let work = origin.work.path();
    git(work, &["checkout", "-q", "-b", "bomb"]);
    std::fs::write(work.join(".moat.yml"), bomb()).unwrap();
    git(work, &["add", "-A"]);
    git(work, &["commit", "-q", "-m", "bomb"]);
    let head = git(work, &["rev-parse", "HEAD"]);
    git(work, &["push", "-q", origin.bare.to_str().unwrap(), "bomb"]);

    let body = fork_pull_request("bomb", &head, &origin.commit);
    let sig = github_signature(&secret, &body);
    let (status, _) = send_webhook(
        &coordinator.base,
        &path,
        "pull_request",
        "bomb-1",
        Some(&sig),
        body,
    )
    .await;
    assert_eq!(status, 202);
    let id = api.first_run("web", Duration::from_secs(60)).await;
    let run = api.wait_run(id, Duration::from_secs(60), finished).await;
    assert_eq!(run["status"], "failed", "{run:#}");
    let reason = run["reason"].as_str().unwrap_or_default();
    assert!(reason.contains(".moat.yml:19:8: "), "{run:#}");
    assert!(reason.contains("env value V16"), "{run:#}");
    assert!(reason.contains("64 KiB"), "{run:#}");
    assert!(
        coordinator.alive(),
        "the coordinator died:\n{}",
        coordinator.log()
    );
    // Still serving.
    assert!(api.get("/api/v1/runs?repo=web").await.is_array());

    // `moat validate` refuses the same file, with the place.
    let file = dir.path().join("bomb.moat.yml");
    std::fs::write(&file, bomb()).unwrap();
    let out = moat().arg("validate").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:19:8: ", file.display())),
        "{stderr}"
    );
}

/// Memory the coordinator may use while answering the whole corpus: generous (a debug build
/// idles at a few tens of MB); one bomb planned without caps asks for terabytes.
const RSS_BOUND_KIB: u64 = 256 * 1024;
const MUTANTS: usize = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coordinator_survives_the_invalid_and_mutated_corpus() {
    let dir = TempDir::new("hostile-corpus").expect("temp dir");
    let db = Db::fresh(dir.path()).await;
    let mut coordinator = Coordinator::start(&dir.path().join("server"), &db, 10);
    let api = coordinator.api();
    let origin = Origin::new("hostile-corpus-origin", &[(".moat.yml", VALID)]);
    let (_, path, secret) = api.add_repo("corpus", &origin.url()).await;

    let read_dir = |sub: &str| -> Vec<Vec<u8>> {
        let mut paths: Vec<_> = std::fs::read_dir(tests_dir().join("pipelines").join(sub))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yml"))
            .collect();
        paths.sort();
        paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
    };
    let mut invalid = read_dir("invalid");
    invalid.push(bomb().into_bytes());
    let mutants = mutator::mutants(0x686f_7374, &read_dir("valid"), MUTANTS);

    // One commit a file on main, pushed once; then one signed push delivery per commit.
    let work = origin.work.path();
    let mut commits = Vec::new();
    for (i, file) in invalid.iter().chain(&mutants).enumerate() {
        std::fs::write(work.join(".moat.yml"), file).unwrap();
        std::fs::write(work.join("n.txt"), i.to_string()).unwrap();
        git(work, &["add", "-A"]);
        git(work, &["commit", "-q", "-m", &format!("file {i}")]);
        commits.push(git(work, &["rev-parse", "HEAD"]));
    }
    std::fs::write(work.join(".moat.yml"), VALID).unwrap();
    git(work, &["add", "-A"]);
    git(work, &["commit", "-q", "-m", "last"]);
    let last = git(work, &["rev-parse", "HEAD"]);
    git(
        work,
        &["push", "-q", "-f", origin.bare.to_str().unwrap(), "main"],
    );

    let mut peak = rss_kib(&mut coordinator);
    for (i, commit) in commits.iter().chain([&last]).enumerate() {
        let body = push_payload("main", commit, &origin.url());
        let sig = github_signature(&secret, &body);
        // The webhook rate limit (burst 60, 10/s per address) answers 429 to a sender this
        // fast; like a forge's redelivery, wait and send again (bounded).
        let mut tries = 0;
        let (status, answer) = loop {
            let (status, answer) = send_webhook(
                &coordinator.base,
                &path,
                "push",
                &format!("corpus-{i}"),
                Some(&sig),
                body.clone(),
            )
            .await;
            tries += 1;
            if status != 429 || tries >= 100 {
                break (status, answer);
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        };
        assert_eq!(status, 202, "{answer}");
        peak = peak.max(rss_kib(&mut coordinator));
    }
    // Deliveries are processed in order: once the last one's run exists, all were answered.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let runs = loop {
        assert!(
            coordinator.alive(),
            "the coordinator died:\n{}",
            coordinator.log()
        );
        peak = peak.max(rss_kib(&mut coordinator));
        let runs = api.get("/api/v1/runs?repo=corpus&limit=500").await;
        let runs = runs.as_array().cloned().unwrap_or_default();
        if runs.iter().any(|r| r["commit"] == last.as_str()) {
            break runs;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the deliveries were not all answered:\n{}",
            coordinator.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(
        coordinator.alive(),
        "the coordinator died:\n{}",
        coordinator.log()
    );
    assert!(
        peak < RSS_BOUND_KIB,
        "the coordinator's RSS reached {peak} KiB"
    );
    // Every invalid file got a failed run that says where the file is wrong.
    for commit in &commits[..invalid.len()] {
        let run = runs
            .iter()
            .find(|r| r["commit"] == commit.as_str())
            .unwrap_or_else(|| panic!("no run for commit {commit}"));
        assert_eq!(run["status"], "failed", "{run:#}");
        let reason = run["reason"].as_str().unwrap_or_default();
        assert!(reason.contains(".moat.yml:"), "{run:#}");
    }
}
