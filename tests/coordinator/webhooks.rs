//! Signed pushes from three repositories run on two runners; every status code of the webhook
//! endpoint.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_repositories_two_runners_signed_pushes() {
    let image = busybox_image();
    let dir = TempDir::new("e2e-three").expect("temp dir");
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
    let dir = TempDir::new("e2e-hooks").expect("temp dir");
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
