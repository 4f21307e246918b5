//! The coordinator end to end: `moat server` and two `moat runner` processes, signed GitHub
//! webhooks for three local repositories, jobs executed in real containers, results and logs
//! through the API — and what happens when a runner or the coordinator is killed. Runs on
//! SQLite, and on Postgres when `MOAT_TEST_POSTGRES` is set.

mod cluster;
mod common;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_repositories_two_runners_signed_pushes() {
    let image = busybox_image();
    let dir = TempDir::new("e2e-three");
    let db = Db::fresh(dir.path()).await;
    let coordinator = Coordinator::start(&dir.path().join("server"), &db, 10);
    let api = coordinator.api();
    let mut runners = Vec::new();
    for i in 0..2 {
        let token = api.registration_token().await;
        runners.push(RunnerProc::start(
            &coordinator,
            &token,
            &dir.path().join(format!("runner{i}")),
            &format!("runner{i}"),
            1,
        ));
    }

    let mut repos = Vec::new();
    for name in ["alpha", "beta", "gamma"] {
        let origin = Origin::new(name, &[(".moat.yml", &two_stage_pipeline(image, name))]);
        let (_, path, secret) = api.add_repo(name, &origin.url()).await;
        repos.push((name, origin, path, secret));
    }
    for (i, (_, origin, path, secret)) in repos.iter().enumerate() {
        let body = push_payload(
            "main",
            &origin.commit,
            "https://github.com/evil/elsewhere.git",
        );
        let sig = github_signature(secret, &body);
        let (status, v) = send_webhook(
            &coordinator.base,
            path,
            "push",
            &format!("delivery-{i}"),
            Some(&sig),
            body,
        )
        .await;
        assert_eq!(status, 202, "{v}");
    }

    let mut runner_ids = std::collections::HashSet::new();
    for (name, origin, _, _) in &repos {
        let id = api.first_run(name, Duration::from_secs(30)).await;
        let run = api.wait_run(id, Duration::from_secs(120), finished).await;
        assert_eq!(run["status"], "passed", "{run:#}\n{}", coordinator.log());
        assert_eq!(run["commit"], origin.commit.as_str());
        assert_eq!(run["event"], "push");
        assert_eq!(run["branch"], "main");
        for s in ["build", "check"] {
            assert_eq!(stage(&run, s)["status"], "passed", "{run:#}");
            runner_ids.insert(stage(&run, s)["runner_id"].as_i64().unwrap());
        }
        let logs = api.logs(id).await;
        assert!(logs.contains(&format!("marker-{name}")), "{logs}");
        assert!(
            logs.contains(&format!("built {name} at {}", origin.commit)),
            "{logs}"
        );
        assert!(
            logs.contains(&format!("run {id}")),
            "MOAT_RUN_ID is the run's id: {logs}"
        );
    }
    assert_eq!(runner_ids.len(), 2, "both runner processes executed jobs");

    // Runners stopped with SIGTERM remove what they created on the engine.
    for mut r in runners.drain(..) {
        r.stop();
        assert_no_leftovers(r.pid);
    }

    // Filters of the run list.
    let alpha = api.get("/api/v1/runs?repo=alpha").await;
    assert_eq!(alpha.as_array().unwrap().len(), 1);
    let passed = api.get("/api/v1/runs?status=passed&branch=main").await;
    assert_eq!(passed.as_array().unwrap().len(), 3);
    let runners_view = api.get("/api/v1/runners").await;
    assert_eq!(runners_view.as_array().unwrap().len(), 2);
    assert_eq!(db.backend(), coordinator_backend(&coordinator).await);

    // A replayed delivery is not run twice.
    let (_, origin, path, secret) = &repos[0];
    let body = push_payload("main", &origin.commit, "x");
    let sig = github_signature(secret, &body);
    let (status, v) = send_webhook(
        &coordinator.base,
        path,
        "push",
        "delivery-0",
        Some(&sig),
        body,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "duplicate");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(api.runs_of("alpha").await.len(), 1);
}

async fn coordinator_backend(c: &Coordinator) -> &'static str {
    if c.log().contains("postgres")
        || std::env::var("MOAT_TEST_POSTGRES").is_ok_and(|v| !v.is_empty())
    {
        "postgres"
    } else {
        "sqlite"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhook_status_codes() {
    let dir = TempDir::new("e2e-hooks");
    let db = Db::fresh(dir.path()).await;
    let coordinator = Coordinator::start(&dir.path().join("server"), &db, 10);
    let api = coordinator.api();
    let origin = Origin::new(
        "hooks",
        &[(
            ".moat.yml",
            "version: 1\nstages:\n  - name: t\n    kind: test\n    image: x\n",
        )],
    );
    let (_, path, secret) = api.add_repo("hooks", &origin.url()).await;
    let base = &coordinator.base;
    let body = push_payload("main", &origin.commit, "x");

    // Bad, missing and malformed signatures.
    let (status, v) =
        send_webhook(base, &path, "push", "d1", Some("sha256=00"), body.clone()).await;
    assert_eq!(status, 401, "{v}");
    assert_eq!(v["error"]["code"], "unauthorized");
    let wrong = github_signature("not-the-secret", &body);
    assert_eq!(
        send_webhook(base, &path, "push", "d1", Some(&wrong), body.clone())
            .await
            .0,
        401
    );
    assert_eq!(
        send_webhook(base, &path, "push", "d1", None, body.clone())
            .await
            .0,
        401
    );
    // A body changed after signing.
    let sig = github_signature(&secret, &body);
    let mut tampered = body.clone();
    tampered.push(b' ');
    assert_eq!(
        send_webhook(base, &path, "push", "d1", Some(&sig), tampered)
            .await
            .0,
        401
    );

    // Oversized: refused before anything else.
    let big = vec![b' '; 11 << 20];
    let (status, v) = send_webhook(
        base,
        &path,
        "push",
        "d2",
        Some(&github_signature(&secret, &big)),
        big,
    )
    .await;
    assert_eq!(status, 413, "{v}");

    // Malformed JSON, correctly signed.
    let junk = b"{not json".to_vec();
    let (status, v) = send_webhook(
        base,
        &path,
        "push",
        "d3",
        Some(&github_signature(&secret, &junk)),
        junk,
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["code"], "bad_request");

    // Ping, branch deletion and other events start nothing.
    let ping =
        std::fs::read(tests_dir().join("fixtures/webhooks/github/ping/payload.json")).unwrap();
    let (status, v) = send_webhook(
        base,
        &path,
        "ping",
        "d4",
        Some(&github_signature(&secret, &ping)),
        ping,
    )
    .await;
    assert_eq!((status, v["status"].clone()), (200, json!("pong")));
    let deleted =
        std::fs::read(tests_dir().join("fixtures/webhooks/github/push/payload.json")).unwrap();
    let (status, v) = send_webhook(
        base,
        &path,
        "push",
        "d5",
        Some(&github_signature(&secret, &deleted)),
        deleted,
    )
    .await;
    assert_eq!((status, v["status"].clone()), (200, json!("ignored")));
    let create =
        std::fs::read(tests_dir().join("fixtures/webhooks/github/create/payload.json")).unwrap();
    let (status, _) = send_webhook(
        base,
        &path,
        "create",
        "d6",
        Some(&github_signature(&secret, &create)),
        create,
    )
    .await;
    assert_eq!(status, 200);

    // Unknown repository, or the wrong forge in the URL.
    let (status, _) = send_webhook(
        base,
        "/hooks/github/99999",
        "push",
        "d7",
        Some(&sig),
        body.clone(),
    )
    .await;
    assert_eq!(status, 404);
    let gitlab_path = path.replace("/github/", "/gitlab/");
    assert_eq!(
        send_webhook(base, &gitlab_path, "push", "d8", Some(&sig), body.clone())
            .await
            .0,
        404
    );

    // Accepted once; the replay is a 200 without a second run.
    let (status, v) = send_webhook(base, &path, "push", "d9", Some(&sig), body.clone()).await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(
        send_webhook(base, &path, "push", "d9", Some(&sig), body.clone())
            .await
            .0,
        200
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(api.runs_of("hooks").await.len(), 1, "{}", coordinator.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_requires_tokens_and_answers_json_errors() {
    let dir = TempDir::new("e2e-api");
    let db = Db::fresh(dir.path()).await;
    let coordinator = Coordinator::start(&dir.path().join("server"), &db, 10);
    let api = coordinator.api();
    let anonymous = Api {
        token: String::new(),
        ..api.clone()
    };
    let wrong = Api {
        token: "moat_a_0000".into(),
        ..api.clone()
    };
    for path in [
        "/api/v1/runs",
        "/api/v1/repos",
        "/api/v1/runners",
        "/api/v1/runs/1",
        "/api/v1/audit",
    ] {
        for client in [&anonymous, &wrong] {
            let (status, v) = client.call(reqwest::Method::GET, path, None).await;
            assert_eq!(status, 401, "{path}: {v}");
            assert_eq!(v["error"]["code"], "unauthorized", "{path}: {v}");
        }
    }
    // A runner's token is not an admin token, and vice versa.
    let reg = api.registration_token().await;
    let http = http();
    let registered: Value = http
        .post(format!("{}/api/v1/runners/register", coordinator.base))
        .json(&json!({ "token": reg, "name": "r", "slots": 1 }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let runner_token = registered["token"].as_str().unwrap().to_string();
    let as_runner = Api {
        token: runner_token.clone(),
        ..api.clone()
    };
    assert_eq!(
        as_runner
            .call(reqwest::Method::GET, "/api/v1/runs", None)
            .await
            .0,
        401
    );
    let (status, _) = api
        .call(
            reqwest::Method::POST,
            "/api/v1/runner/claim",
            Some(json!({"wait_ms": 0})),
        )
        .await;
    assert_eq!(status, 401);
    // Registration tokens work once.
    let again = http
        .post(format!("{}/api/v1/runners/register", coordinator.base))
        .json(&json!({ "token": reg, "name": "r2", "slots": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status().as_u16(), 401);

    let (status, v) = api
        .call(reqwest::Method::GET, "/api/v1/runs/424242", None)
        .await;
    assert_eq!(
        (status, v["error"]["code"].clone()),
        (404, json!("not_found"))
    );
    let (status, v) = api
        .call(reqwest::Method::GET, "/api/v1/nothing-here", None)
        .await;
    assert_eq!(
        (status, v["error"]["code"].clone()),
        (404, json!("not_found"))
    );
    let (status, v) = api
        .call(
            reqwest::Method::POST,
            "/api/v1/repos",
            Some(json!({ "name": "x", "clone_url": "ext::sh -c id" })),
        )
        .await;
    assert_eq!(
        (status, v["error"]["code"].clone()),
        (400, json!("bad_request"))
    );
    let (status, _) = api
        .call(
            reqwest::Method::POST,
            "/api/v1/repos",
            Some(json!({ "name": "x", "clone_url": "/srv/x.git", "surprise": 1 })),
        )
        .await;
    assert!((400..500).contains(&status), "unknown fields are refused");
    api.add_repo("dup", "/srv/dup.git").await;
    let (status, v) = api
        .call(
            reqwest::Method::POST,
            "/api/v1/repos",
            Some(json!({ "name": "dup", "clone_url": "/srv/dup.git" })),
        )
        .await;
    assert_eq!(
        (status, v["error"]["code"].clone()),
        (409, json!("conflict"))
    );
    let (status, _) = api
        .call(reqwest::Method::GET, "/api/v1/runs?status=bogus", None)
        .await;
    assert_eq!(status, 400);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_runner_loses_its_lease_and_the_job_is_retried_on_the_other() {
    let image = busybox_image();
    let dir = TempDir::new("e2e-runner-kill");
    let db = Db::fresh(dir.path()).await;
    let coordinator = Coordinator::start(&dir.path().join("server"), &db, 3);
    let api = coordinator.api();
    let origin = Origin::new("rk", &[(".moat.yml", &slow_pipeline(image))]);
    let (_, path, secret) = api.add_repo("rk", &origin.url()).await;
    let mut first = RunnerProc::start(
        &coordinator,
        &api.registration_token().await,
        &dir.path().join("r1"),
        "r1",
        1,
    );
    push(&coordinator, &path, &secret, &origin, "rk-1").await;
    let id = api.first_run("rk", Duration::from_secs(30)).await;
    let run = api
        .wait_run(id, Duration::from_secs(60), |r| {
            stage(r, "slow")["status"] == "running"
        })
        .await;
    assert_eq!(stage(&run, "slow")["runner_id"], first.id);
    // Let the stage print and start sleeping, then kill the runner without warning.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    first.kill9();

    let second = RunnerProc::start(
        &coordinator,
        &api.registration_token().await,
        &dir.path().join("r2"),
        "r2",
        1,
    );
    let run = api.wait_run(id, Duration::from_secs(90), finished).await;
    assert_eq!(run["status"], "passed", "{run:#}\n{}", coordinator.log());
    let slow = stage(&run, "slow");
    assert_eq!(slow["runner_id"], second.id, "{run:#}");
    assert_eq!(slow["attempt"], 2, "{run:#}");
    assert_eq!(stage(&run, "last")["status"], "passed");
    let logs = api.logs(id).await;
    assert!(logs.contains("done-slow"), "{logs}");
    // The retry on the other runner started from the first stage's workspace.
    // `cat marker.txt` printed it three times: slow's first attempt, its retry, and last.
    assert_eq!(
        logs.lines().filter(|l| *l == "from-first").count(),
        3,
        "{logs}"
    );
    // The new runner removed what the killed one left behind on this engine.
    assert_no_leftovers(first.pid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_coordinator_restarts_and_the_run_completes() {
    let image = busybox_image();
    let dir = TempDir::new("e2e-coord-kill");
    let db = Db::fresh(dir.path()).await;
    let mut coordinator = Coordinator::start(&dir.path().join("server"), &db, 10);
    let api = coordinator.api();
    let origin = Origin::new("ck", &[(".moat.yml", &slow_pipeline(image))]);
    let (_, path, secret) = api.add_repo("ck", &origin.url()).await;
    let _runner = RunnerProc::start(
        &coordinator,
        &api.registration_token().await,
        &dir.path().join("r1"),
        "r1",
        1,
    );
    push(&coordinator, &path, &secret, &origin, "ck-1").await;
    let id = api.first_run("ck", Duration::from_secs(30)).await;
    api.wait_run(id, Duration::from_secs(60), |r| {
        stage(r, "slow")["status"] == "running"
    })
    .await;
    coordinator.kill9();
    tokio::time::sleep(Duration::from_secs(2)).await;
    coordinator.restart();
    let api = coordinator.api();
    let run = api.wait_run(id, Duration::from_secs(120), finished).await;
    assert_eq!(run["status"], "passed", "{run:#}\n{}", coordinator.log());
    let logs = api.logs(id).await;
    assert!(logs.contains("done-slow"), "{logs}");
    assert!(logs.contains("last-ran"), "{logs}");
    assert_eq!(
        stage(&run, "slow")["attempt"],
        1,
        "the job was not lost and not repeated: {run:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_rerun_and_manual_runs() {
    let image = busybox_image();
    let dir = TempDir::new("e2e-cancel");
    let db = Db::fresh(dir.path()).await;
    let coordinator = Coordinator::start(&dir.path().join("server"), &db, 10);
    let api = coordinator.api();
    let origin = Origin::new("cx", &[(".moat.yml", &slow_pipeline(image))]);
    api.add_repo("cx", &origin.url()).await;
    let runner = RunnerProc::start(
        &coordinator,
        &api.registration_token().await,
        &dir.path().join("r1"),
        "r1",
        1,
    );

    let run = api
        .post("/api/v1/repos/cx/runs", json!({ "branch": "main" }))
        .await;
    let id = run["id"].as_i64().unwrap();
    assert_eq!(run["event"], "manual");
    assert_eq!(run["commit"], origin.commit.as_str());
    api.wait_run(id, Duration::from_secs(60), |r| {
        stage(r, "slow")["status"] == "running"
    })
    .await;
    let cancelled = api
        .post(&format!("/api/v1/runs/{id}/cancel"), json!({}))
        .await;
    assert_eq!(cancelled["id"], id);
    let run = api.wait_run(id, Duration::from_secs(30), finished).await;
    assert_eq!(run["status"], "cancelled", "{run:#}");
    assert_eq!(stage(&run, "slow")["status"], "cancelled");
    assert_eq!(stage(&run, "last")["status"], "cancelled", "{run:#}");
    let (status, _) = api
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/runs/{id}/cancel"),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 409, "a finished run cannot be cancelled");

    let again = api
        .post(&format!("/api/v1/runs/{id}/rerun"), json!({}))
        .await;
    let again_id = again["id"].as_i64().unwrap();
    assert_eq!(again["number"], 2);
    assert_eq!(again["trigger"], "rerun");
    let run = api
        .wait_run(again_id, Duration::from_secs(90), finished)
        .await;
    assert_eq!(run["status"], "passed", "{run:#}");
    // The runner stopped the cancelled stage's containers.
    drop(runner);
    let audit = api.get(&format!("/api/v1/audit?run={id}")).await;
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "run.cancelled"),
        "{audit}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn https_coordinator_with_a_runner_trusting_its_ca() {
    let image = busybox_image();
    let dir = TempDir::new("e2e-tls");
    let db = Db::fresh(dir.path()).await;
    let tls = make_tls(&dir.path().join("tls"));
    let coordinator = Coordinator::start_tls(&dir.path().join("server"), &db, 10, &tls);
    assert!(
        coordinator.base.starts_with("https://"),
        "{}",
        coordinator.base
    );
    let api = coordinator.api();
    let origin = Origin::new("tls", &[(".moat.yml", &two_stage_pipeline(image, "tls"))]);
    let (_, path, secret) = api.add_repo("tls", &origin.url()).await;
    let _runner = RunnerProc::start(
        &coordinator,
        &api.registration_token().await,
        &dir.path().join("r1"),
        "r1",
        2,
    );
    let body = push_payload("main", &origin.commit, "x");
    let sig = github_signature(&secret, &body);
    let resp = api
        .http
        .post(format!("{}{path}", coordinator.base))
        .header("x-github-event", "push")
        .header("x-github-delivery", "tls-1")
        .header("x-hub-signature-256", sig)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let id = api.first_run("tls", Duration::from_secs(30)).await;
    let run = api.wait_run(id, Duration::from_secs(90), finished).await;
    assert_eq!(run["status"], "passed", "{run:#}");
    // Plain HTTP to the TLS port is not served.
    let plain = http()
        .get(coordinator.base.replace("https://", "http://") + "/api/v1/runs")
        .send()
        .await;
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_coordinators_share_one_database() {
    let image = busybox_image();
    let dir = TempDir::new("e2e-peers");
    let db = Db::fresh(dir.path()).await;
    let a = Coordinator::start(&dir.path().join("a"), &db, 10);
    let b = Coordinator::start_peer(&dir.path().join("b"), &db, 10, &a);
    let api_a = a.api();
    let api_b = b.api();
    let origin = Origin::new(
        "peers",
        &[(".moat.yml", &two_stage_pipeline(image, "peers"))],
    );
    let (_, path, secret) = api_a.add_repo("peers", &origin.url()).await;
    // The runner talks to B; the webhook goes to A.
    let _runner = RunnerProc::start(
        &b,
        &api_b.registration_token().await,
        &dir.path().join("r"),
        "r",
        1,
    );
    push(&a, &path, &secret, &origin, "peers-1").await;
    let id = api_b.first_run("peers", Duration::from_secs(30)).await;
    let run = api_b.wait_run(id, Duration::from_secs(90), finished).await;
    assert_eq!(run["status"], "passed", "{run:#}\n{}\n{}", a.log(), b.log());
    let logs = api_a.logs(id).await;
    assert!(logs.contains("marker-peers"), "{logs}");
}

fn cli(c: &Coordinator, args: &[&str]) -> std::process::Output {
    moat()
        .args(args)
        .env("MOAT_SERVER", &c.base)
        .env("MOAT_TOKEN", &c.token)
        .output()
        .expect("run moat")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_cli_verbs() {
    let image = busybox_image();
    let dir = TempDir::new("e2e-cli");
    let db = Db::fresh(dir.path()).await;
    let coordinator = Coordinator::start(&dir.path().join("server"), &db, 10);
    let origin = Origin::new("cli", &[(".moat.yml", &two_stage_pipeline(image, "cli"))]);

    let out = cli(
        &coordinator,
        &["repo", "add", "cli", "--clone-url", &origin.url(), "--json"],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let repo: Value = serde_json::from_slice(&out.stdout).unwrap();
    let hook = repo["webhook_url"].as_str().unwrap();
    assert!(
        hook.starts_with(&format!("{}/hooks/github/", coordinator.base)),
        "{repo}"
    );
    assert_eq!(repo["webhook_secret"].as_str().unwrap().len(), 64);
    let out = cli(
        &coordinator,
        &["repo", "add", "cli", "--clone-url", &origin.url()],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("exists"), "{}", describe(&out));
    let out = cli(&coordinator, &["repo", "list", "--json"]);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(
        list[0].get("webhook_secret").is_none(),
        "the secret is shown once: {list}"
    );

    let out = cli(&coordinator, &["runner-token"]);
    assert!(out.status.success(), "{}", describe(&out));
    let token = text(&out.stdout).trim().to_string();
    assert!(token.starts_with("moat_g_"));
    let _runner = RunnerProc::start(&coordinator, &token, &dir.path().join("r"), "r", 1);

    let out = cli(
        &coordinator,
        &["trigger", "cli", "--branch", "main", "--json"],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let run: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = run["id"].as_i64().unwrap().to_string();

    // Live logs until the end of the run.
    let out = cli(&coordinator, &["logs", &id, "--follow"]);
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("check | marker-cli"), "{stdout}");
    assert!(
        stdout.trim_end().ends_with(&format!("run {id}: passed")),
        "{stdout}"
    );
    let out = cli(&coordinator, &["logs", &id]);
    assert!(
        text(&out.stdout).contains("build | + echo"),
        "{}",
        describe(&out)
    );

    let out = cli(&coordinator, &["runs", "--repo", "cli", "--json"]);
    let runs: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 1);
    let out = cli(&coordinator, &["runs", &id]);
    assert!(text(&out.stdout).contains("check"), "{}", describe(&out));

    let out = cli(&coordinator, &["cancel", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("already passed"),
        "{}",
        describe(&out)
    );
    let out = cli(&coordinator, &["rerun", &id, "--json"]);
    assert!(out.status.success(), "{}", describe(&out));
    let rerun: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rerun["number"], 2);

    let out = cli(&coordinator, &["runners", "--json"]);
    let runners: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(runners[0]["name"], "r");

    // Without a token, nothing.
    let out = moat()
        .args([
            "runs",
            "--server",
            &coordinator.base,
            "--token",
            "moat_a_nope",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("401"), "{}", describe(&out));
}

/// A pull request payload from GitHub's example, pointed at local commits.
fn pull_request_payload(head_branch: &str, head: &str, base: &str, fork: bool) -> Vec<u8> {
    let path = tests_dir().join("fixtures/webhooks/github/pull_request/opened.payload.json");
    let mut v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    v["pull_request"]["head"]["ref"] = json!(head_branch);
    v["pull_request"]["head"]["sha"] = json!(head);
    v["pull_request"]["base"]["ref"] = json!("main");
    v["pull_request"]["base"]["sha"] = json!(base);
    if fork {
        v["pull_request"]["head"]["repo"]["id"] = json!(424242);
        v["pull_request"]["head"]["repo"]["full_name"] = json!("mallory/fork");
    }
    serde_json::to_vec(&v).unwrap()
}

fn leaked_aws_key() -> String {
    format!("{}{}", "AKIA", "ZQ3DRXWJ5OBVEH4P")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn secret_gate_blocks_pushes_and_judges_only_what_a_pull_request_adds() {
    let image = busybox_image();
    let dir = TempDir::new("e2e-gate");
    let db = Db::fresh(dir.path()).await;
    let coordinator = Coordinator::start(&dir.path().join("server"), &db, 10);
    let api = coordinator.api();
    let pipeline = format!(
        "version: 1\non:\n  push: {{ branches: [main] }}\n  pull_request: {{ branches: [main] }}\nstages:\n  - name: t\n    kind: test\n    image: {image}\n    commands: [\"echo ran\"]\n"
    );
    let leaked = format!("aws_access_key_id = {}\n", leaked_aws_key());
    let origin = Origin::new(
        "gate",
        &[(".moat.yml", &pipeline), ("conf/aws.ini", &leaked)],
    );
    let (_, path, secret) = api.add_repo("gate", &origin.url()).await;
    let _runner = RunnerProc::start(
        &coordinator,
        &api.registration_token().await,
        &dir.path().join("r"),
        "r",
        1,
    );

    // A push of a tree with a leaked key: blocked before any stage, with the evidence.
    push(&coordinator, &path, &secret, &origin, "gate-1").await;
    let id = api.first_run("gate", Duration::from_secs(30)).await;
    let run = api.wait_run(id, Duration::from_secs(30), finished).await;
    assert_eq!(run["status"], "failed", "{run:#}");
    assert_eq!(
        run["reason"], "blocked by gate: secrets (1 finding)",
        "{run:#}"
    );
    assert_eq!(
        run["stages"].as_array().unwrap().len(),
        0,
        "no stage was created"
    );
    let gate = &run["gates"][0]["detail"];
    assert_eq!(gate["blocked"], true, "{run:#}");
    let evidence = gate["findings"].to_string();
    assert!(evidence.contains("conf/aws.ini"), "{evidence}");
    assert!(!evidence.contains(&leaked_aws_key()), "{evidence}");

    // A pull request that adds an unrelated file is judged on its change only: it passes.
    let work = origin.work.path();
    git(work, &["checkout", "-q", "-b", "feature"]);
    std::fs::write(work.join("notes.txt"), "nothing secret\n").unwrap();
    git(work, &["add", "-A"]);
    git(work, &["commit", "-q", "-m", "notes"]);
    let head = git(work, &["rev-parse", "HEAD"]);
    git(
        work,
        &["push", "-q", origin.bare.to_str().unwrap(), "feature"],
    );
    let body = pull_request_payload("feature", &head, &origin.commit, false);
    let sig = github_signature(&secret, &body);
    let (status, v) = send_webhook(
        &coordinator.base,
        &path,
        "pull_request",
        "gate-pr-1",
        Some(&sig),
        body,
    )
    .await;
    assert_eq!(status, 202, "{v}");
    let pr_run = loop {
        let runs = api.runs_of("gate").await;
        if let Some(r) = runs.iter().find(|r| r["event"] == "pull_request") {
            break r["id"].as_i64().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let run = api
        .wait_run(pr_run, Duration::from_secs(60), finished)
        .await;
    assert_eq!(run["status"], "passed", "{run:#}\n{}", coordinator.log());

    // A pull request that adds a key is blocked.
    let key2 = format!(
        "token = {}{}\n",
        "ghp_", "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dE3fG5"
    );
    std::fs::write(work.join("deploy.env"), key2).unwrap();
    git(work, &["add", "-A"]);
    git(work, &["commit", "-q", "-m", "oops"]);
    let head2 = git(work, &["rev-parse", "HEAD"]);
    git(
        work,
        &["push", "-q", origin.bare.to_str().unwrap(), "feature"],
    );
    let body = pull_request_payload("feature", &head2, &origin.commit, false);
    let sig = github_signature(&secret, &body);
    assert_eq!(
        send_webhook(
            &coordinator.base,
            &path,
            "pull_request",
            "gate-pr-2",
            Some(&sig),
            body
        )
        .await
        .0,
        202
    );
    let blocked = loop {
        let runs = api.runs_of("gate").await;
        if let Some(r) = runs.iter().find(|r| r["commit"] == head2.as_str()) {
            break r["id"].as_i64().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let run = api
        .wait_run(blocked, Duration::from_secs(30), finished)
        .await;
    assert_eq!(run["status"], "failed", "{run:#}");
    let evidence = run["gates"][0]["detail"]["findings"].to_string();
    assert!(evidence.contains("deploy.env"), "{evidence}");
    assert!(
        !evidence.contains("conf/aws.ini"),
        "only the change is judged: {evidence}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sealed_secrets_forks_deploy_preconditions_and_the_policy_floor() {
    let image = busybox_image();
    let dir = TempDir::new("e2e-secrets");
    let db = Db::fresh(dir.path()).await;
    let server_dir = dir.path().join("server");
    let coordinator = Coordinator::start_with_policy(
        &server_dir,
        &db,
        10,
        "[gates]\nmin_fail_on = \"high\"\nprotected_refs = [\"main\"]\nscan_before_deploy = true\n",
    );
    let api = coordinator.api();
    let secret = "sealed-v@lue-7f3k";

    // `moat seal` fetches the seal key and prints a value bound to the repository.
    let mut child = moat()
        .args(["seal", "--repo", "web"])
        .env("MOAT_SERVER", &coordinator.base)
        .env("MOAT_TOKEN", &coordinator.token)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{secret}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let sealed = text(&out.stdout).trim().to_string();
    assert!(sealed.starts_with("moat:v1:"), "{sealed}");

    let pipeline = format!(
        r#"version: 1
on:
  push: {{ branches: [main] }}
  pull_request: {{ branches: [main] }}
secrets:
  TOKEN: {{ sealed: "{sealed}" }}
stages:
  - name: use
    kind: test
    image: {image}
    secrets: [TOKEN]
    commands:
      - echo "token=[${{TOKEN:-unset}}]"
      - printf '%s' "$TOKEN" | base64
  - name: scan
    kind: scan
    needs: []
    scan: {{ image: "app:1", fail_on: critical }}
  - name: ship
    kind: deploy
    needs: []
    deploy: {{ target: docker, image: "app:1", port: 8080 }}
"#
    );
    let web = Origin::new("web", &[(".moat.yml", &pipeline)]);
    let (_, web_path, web_secret) = api.add_repo("web", &web.url()).await;
    // The same sealed value copied into another repository does not open there.
    let api_origin = Origin::new("api", &[(".moat.yml", &pipeline)]);
    let (_, api_path, api_secret) = api.add_repo("api", &api_origin.url()).await;
    let _runner = RunnerProc::start(
        &coordinator,
        &api.registration_token().await,
        &dir.path().join("r"),
        "r",
        2,
    );

    push(&coordinator, &web_path, &web_secret, &web, "web-1").await;
    let id = api.first_run("web", Duration::from_secs(30)).await;
    let run = api.wait_run(id, Duration::from_secs(90), finished).await;
    assert_eq!(stage(&run, "use")["status"], "passed", "{run:#}");
    let logs = api.logs(id).await;
    assert!(logs.contains("token=[***]"), "{logs}");
    // The deploy is refused by the coordinator: there is no scan stage among its needs.
    let ship = stage(&run, "ship");
    assert_eq!(ship["status"], "failed", "{run:#}");
    assert!(
        ship["reason"]
            .as_str()
            .unwrap()
            .contains("no scan stage before this deploy"),
        "{run:#}"
    );
    // The repository asked for `fail_on: critical`; the floor ran it with `high`.
    let raised = run["gates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["action"] == "policy.fail_on_raised")
        .unwrap_or_else(|| panic!("{run:#}"));
    assert_eq!(raised["detail"]["asked"], "critical");
    assert_eq!(raised["detail"]["applied"], "high");

    push(&coordinator, &api_path, &api_secret, &api_origin, "api-1").await;
    let id = api.first_run("api", Duration::from_secs(30)).await;
    api.wait_run(id, Duration::from_secs(90), finished).await;
    assert!(
        api.logs(id).await.contains("token=[unset]"),
        "a sealed value opens only in its repository"
    );

    // A pull request from a fork gets no secrets, and can never deploy.
    let work = web.work.path();
    git(work, &["checkout", "-q", "-b", "fork-change"]);
    std::fs::write(work.join("x.txt"), "x\n").unwrap();
    git(work, &["add", "-A"]);
    git(work, &["commit", "-q", "-m", "x"]);
    let head = git(work, &["rev-parse", "HEAD"]);
    git(
        work,
        &["push", "-q", web.bare.to_str().unwrap(), "fork-change"],
    );
    let body = pull_request_payload("fork-change", &head, &web.commit, true);
    let sig = github_signature(&web_secret, &body);
    assert_eq!(
        send_webhook(
            &coordinator.base,
            &web_path,
            "pull_request",
            "web-pr",
            Some(&sig),
            body
        )
        .await
        .0,
        202
    );
    let pr = loop {
        if let Some(r) = api
            .runs_of("web")
            .await
            .iter()
            .find(|r| r["event"] == "pull_request")
        {
            break r["id"].as_i64().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let run = api.wait_run(pr, Duration::from_secs(90), finished).await;
    assert_eq!(run["trusted"], false);
    assert!(api.logs(pr).await.contains("token=[unset]"));
    let ship = stage(&run, "ship");
    assert_eq!(ship["status"], "failed");
    assert!(
        ship["reason"]
            .as_str()
            .unwrap()
            .contains("never run for pull_request"),
        "{run:#}"
    );
    let audit = api
        .get(&format!("/api/v1/audit?run={pr}"))
        .await
        .to_string();
    assert!(audit.contains("gate.deploy"), "{audit}");

    // The value is nowhere at rest: not in the database, not in the coordinator's log.
    use base64::Engine;
    for needle in [
        secret.to_string(),
        base64::engine::general_purpose::STANDARD.encode(secret),
    ] {
        assert!(
            !db.contains(&server_dir, &needle).await,
            "{needle} is in the database"
        );
        assert!(
            !coordinator.log().contains(&needle),
            "{needle} is in the log"
        );
    }
}

fn set_secret(c: &Coordinator, repo: &str, name: &str, value: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = moat()
        .args(["secret", "set", "--repo", repo, name])
        .env("MOAT_SERVER", &c.base)
        .env("MOAT_TOKEN", &c.token)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(value.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stored_secrets_are_encrypted_granted_masked_and_audited() {
    let image = busybox_image();
    let dir = TempDir::new("e2e-store-secrets");
    let db = Db::fresh(dir.path()).await;
    let server_dir = dir.path().join("server");
    let coordinator = Coordinator::start(&server_dir, &db, 10);
    let api = coordinator.api();
    let password = "Pa55 w0rd/+Q=x";
    let key = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIOaJ3kqZ9sLwGvQk1s2U5yOeV7PqRtZx\noAoGCCqGSM49AwEHoUQDQgAEx9Yp0bB1nT3w\n-----END EC PRIVATE KEY-----";
    let pipeline = format!(
        r#"version: 1
secrets:
  DB_PASSWORD: {{}}
  SIGNING_KEY: {{}}
stages:
  - name: leak
    kind: test
    image: {image}
    secrets: [DB_PASSWORD, SIGNING_KEY]
    commands:
      - echo "pw=$DB_PASSWORD"
      - printf '%s' "$DB_PASSWORD" | base64
      - echo "url $(printf '%s' "$DB_PASSWORD" | sed -e 's/ /%20/g' -e 's|/|%2F|g' -e 's/+/%2B/g' -e 's/=/%3D/g')"
      - printf '%s\n' "$SIGNING_KEY" | while read -r l; do printf '%s' "$l" | head -c 10; sleep 0.2; printf '%s\n' "$(printf '%s' "$l" | tail -c +11)"; done
      - cat /run/secrets/DB_PASSWORD; echo
"#
    );
    let origin = Origin::new("web", &[(".moat.yml", &pipeline)]);
    let (_, path, secret) = api.add_repo("web", &origin.url()).await;

    // Values come from stdin; short ones are refused.
    let out = set_secret(&coordinator, "web", "DB_PASSWORD", "abc");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("at least 4"),
        "{}",
        describe(&out)
    );
    let out = set_secret(&coordinator, "web", "DB_PASSWORD", &format!("{password}\n"));
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        set_secret(&coordinator, "web", "SIGNING_KEY", key)
            .status
            .success()
    );
    let listed = api.get("/api/v1/repos/web/secrets").await;
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert!(!listed.to_string().contains("Pa55"), "{listed}");

    let _runner = RunnerProc::start(
        &coordinator,
        &api.registration_token().await,
        &dir.path().join("r"),
        "r",
        1,
    );
    push(&coordinator, &path, &secret, &origin, "store-1").await;
    let id = api.first_run("web", Duration::from_secs(30)).await;

    // The live stream, while the run goes on.
    let stream = cli(&coordinator, &["logs", &id.to_string(), "--follow"]);
    let live = text(&stream.stdout);
    let run = api.wait_run(id, Duration::from_secs(90), finished).await;
    assert_eq!(run["status"], "passed", "{run:#}");
    let stored = api.logs(id).await;
    assert!(stored.contains("pw=***"), "{stored}");
    assert!(stored.contains("url ***"), "{stored}");

    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(password);
    let needles = [
        password.to_string(),
        b64[..b64.len() - 4].to_string(),
        "Pa55%20w0rd%2F%2BQ%3Dx".to_string(),
        "MHcCAQEEIOaJ3kqZ9sLwGvQk1s2U5yOeV7PqRtZx".to_string(),
        "oAoGCCqGSM49AwEHoUQDQgAEx9Yp0bB1nT3w".to_string(),
    ];
    for n in &needles {
        assert!(
            !stored.contains(n.as_str()),
            "{n} in stored logs:\n{stored}"
        );
        assert!(
            !live.contains(n.as_str()),
            "{n} in the live stream:\n{live}"
        );
        assert!(!db.contains(&server_dir, n).await, "{n} is in the database");
        assert!(
            !coordinator.log().contains(n.as_str()),
            "{n} is in the coordinator's log"
        );
        assert!(
            !api.get(&format!("/api/v1/runs/{id}"))
                .await
                .to_string()
                .contains(n.as_str())
        );
    }
    // Writes and uses are audited, by name only.
    let audit = api.get("/api/v1/audit").await.to_string();
    assert!(audit.contains("secret.created"), "{audit}");
    assert!(
        audit.contains("secret.used") && audit.contains("DB_PASSWORD"),
        "{audit}"
    );
    assert!(!audit.contains("Pa55"), "{audit}");

    let out = cli(
        &coordinator,
        &["secret", "rm", "--repo", "web", "SIGNING_KEY"],
    );
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        api.get("/api/v1/repos/web/secrets")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deploys_requiring_approval_wait_for_moat_approve() {
    let image = busybox_image();
    let dir = TempDir::new("e2e-approve");
    let db = Db::fresh(dir.path()).await;
    let coordinator = Coordinator::start_with_policy(
        &dir.path().join("server"),
        &db,
        10,
        "[gates]\nscan_before_deploy = false\nprotected_refs = [\"main\"]\n",
    );
    let api = coordinator.api();
    let pipeline = format!(
        r#"version: 1
stages:
  - name: test
    kind: test
    image: {image}
    commands: [true]
  - name: ship
    kind: deploy
    environment: production
    approval: required
    deploy: {{ target: docker, image: "app:1", port: 8080 }}
"#
    );
    let origin = Origin::new("appr", &[(".moat.yml", &pipeline)]);
    let (_, path, secret) = api.add_repo("appr", &origin.url()).await;
    let _runner = RunnerProc::start(
        &coordinator,
        &api.registration_token().await,
        &dir.path().join("r"),
        "r",
        1,
    );
    push(&coordinator, &path, &secret, &origin, "appr-1").await;
    let id = api.first_run("appr", Duration::from_secs(30)).await;
    let run = api
        .wait_run(id, Duration::from_secs(60), |r| {
            stage(r, "test")["status"] == "passed"
        })
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let run_now = api.get(&format!("/api/v1/runs/{id}")).await;
    assert_eq!(stage(&run_now, "ship")["status"], "pending", "{run:#}");
    assert_eq!(stage(&run_now, "ship")["reason"], "waiting for approval");
    assert_eq!(run_now["status"], "running");

    let out = cli(&coordinator, &["approve", &id.to_string()]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        text(&out.stdout).contains("ship: approved by admin-token:"),
        "{}",
        describe(&out)
    );
    let run = api.wait_run(id, Duration::from_secs(60), finished).await;
    let ship = stage(&run, "ship");
    // The deploy was let through the gates; this Moat cannot execute deploys yet.
    assert!(
        ship["reason"]
            .as_str()
            .unwrap()
            .contains("not supported yet"),
        "{run:#}"
    );
    assert!(
        ship["approved_by"]
            .as_str()
            .unwrap()
            .starts_with("admin-token:")
    );
    let approval = run["gates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["action"] == "gate.approval")
        .unwrap_or_else(|| panic!("{run:#}"));
    assert_eq!(approval["detail"]["environment"], "production");
    let out = cli(&coordinator, &["approve", &id.to_string()]);
    assert_eq!(out.status.code(), Some(1), "nothing left to approve");
}
