//! The coordinator end to end: `moat server` and two `moat runner` processes, signed GitHub
//! webhooks for three local repositories, jobs executed in real containers, results and logs
//! through the API — and what happens when a runner or the coordinator is killed. Runs on
//! SQLite, and on Postgres when `MOAT_TEST_POSTGRES` is set. One test target; its modules hold the
//! tests by feature, this file the helpers they share.

#[path = "../cluster/mod.rs"]
mod cluster;
#[path = "../common/mod.rs"]
mod common;

mod api;
mod deploys;
mod processes;
mod secrets;
mod webhooks;

use std::time::Duration;

use cluster::*;
use common::*;
use serde_json::{Value, json};

fn two_stage_pipeline(image: &str, repo: &str) -> String {
    format!(
        r#"version: 1
on:
  push: {{ branches: [main] }}
stages:
  - name: build
    kind: test
    image: {image}
    commands:
      - echo "built {repo} at $MOAT_COMMIT" > out.txt
      - echo "run $MOAT_RUN_ID"
  - name: check
    kind: test
    image: {image}
    commands:
      - cat out.txt
      - grep -q "built {repo}" out.txt
      - echo "marker-{repo}"
"#
    )
}

/// A pipeline whose second stage runs long enough to kill whoever is involved.
fn slow_pipeline(image: &str) -> String {
    format!(
        r#"version: 1
stages:
  - name: first
    kind: test
    image: {image}
    commands: ["echo from-first > marker.txt"]
  - name: slow
    kind: test
    image: {image}
    commands:
      - cat marker.txt
      - echo started-slow
      - sleep 6
      - echo done-slow
  - name: last
    kind: test
    image: {image}
    commands: ["cat marker.txt", "echo last-ran"]
"#
    )
}

async fn push(
    coordinator: &Coordinator,
    path: &str,
    secret: &str,
    origin: &Origin,
    delivery: &str,
) {
    let body = push_payload("main", &origin.commit, "x");
    let sig = github_signature(secret, &body);
    let (status, v) =
        send_webhook(&coordinator.base, path, "push", delivery, Some(&sig), body).await;
    assert_eq!(status, 202, "{v}");
}

fn cli(c: &Coordinator, args: &[&str]) -> std::process::Output {
    moat()
        .args(args)
        .env("MOAT_SERVER", &c.base)
        .env("MOAT_TOKEN", &c.token)
        .output()
        .expect("run moat")
}
