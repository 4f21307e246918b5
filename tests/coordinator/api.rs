//! The REST API's tokens and errors; cancel, rerun and manual runs; the admin verbs of the `moat`
//! command line.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_requires_tokens_and_answers_json_errors() {
    let dir = TempDir::new("e2e-api").expect("temp dir");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_rerun_and_manual_runs() {
    let image = busybox_image();
    let dir = TempDir::new("e2e-cancel").expect("temp dir");
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
async fn admin_cli_verbs() {
    let image = busybox_image();
    let dir = TempDir::new("e2e-cli").expect("temp dir");
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

/// A manual run that cannot start is refused in the coordinator's own words: whatever git
/// printed, and the paths of the mirror and of the clone URL, stay in the coordinator's log.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn manual_run_errors_carry_no_git_output() {
    let dir = TempDir::new("e2e-manual-errors").expect("temp dir");
    let db = Db::fresh(dir.path()).await;
    let coordinator = Coordinator::start(&dir.path().join("server"), &db, 10);
    let api = coordinator.api();
    let origin = Origin::new("mx", &[(".moat.yml", &two_stage_pipeline("x", "mx"))]);
    api.add_repo("mx", &origin.url()).await;
    let lost = dir.path().join("nowhere").join("lost.git");
    api.add_repo("lost", &lost.display().to_string()).await;

    let internals = [
        "fatal".to_string(),
        "git".to_string(),
        dir.path().display().to_string(),
        origin.bare.display().to_string(),
        lost.display().to_string(),
    ];
    let refused = |what: &str, status: u16, v: &Value| {
        assert_eq!(status, 400, "{what}: {v}");
        assert_eq!(v["error"]["code"], "bad_request", "{what}: {v}");
        let message = v["error"]["message"].as_str().unwrap().to_lowercase();
        for needle in &internals {
            let needle = needle.to_lowercase();
            assert!(!message.contains(&needle), "{what}: {needle:?} in {v}");
        }
        message
    };

    // A clone URL that leads nowhere: the branch cannot be resolved…
    let (status, v) = api
        .call(
            reqwest::Method::POST,
            "/api/v1/repos/lost/runs",
            Some(json!({ "branch": "main" })),
        )
        .await;
    let message = refused("unreachable, branch", status, &v);
    assert!(message.contains("main"), "{v}");
    // …nor the commit fetched.
    let (status, v) = api
        .call(
            reqwest::Method::POST,
            "/api/v1/repos/lost/runs",
            Some(json!({ "branch": "main", "commit": "a".repeat(40) })),
        )
        .await;
    refused("unreachable, commit", status, &v);
    // A branch the repository does not have is a clear error of the caller's.
    let (status, v) = api
        .call(
            reqwest::Method::POST,
            "/api/v1/repos/mx/runs",
            Some(json!({ "branch": "nope" })),
        )
        .await;
    let message = refused("missing branch", status, &v);
    assert!(message.contains("nope"), "{v}");
    // So is a commit it does not have.
    let (status, v) = api
        .call(
            reqwest::Method::POST,
            "/api/v1/repos/mx/runs",
            Some(json!({ "branch": "main", "commit": "b".repeat(40) })),
        )
        .await;
    let message = refused("missing commit", status, &v);
    assert!(message.contains(&"b".repeat(40)), "{v}");
    // What went wrong is in the coordinator's log.
    assert!(
        coordinator.log().contains(&lost.display().to_string()),
        "the log names the unreachable clone URL"
    );
}
