//! Coordinator and runner processes: a killed runner or coordinator loses no run; HTTPS between
//! them; two coordinators on one database.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_runner_loses_its_lease_and_the_job_is_retried_on_the_other() {
    let image = busybox_image();
    let dir = TempDir::new("e2e-runner-kill").expect("temp dir");
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
    let dir = TempDir::new("e2e-coord-kill").expect("temp dir");
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
async fn https_coordinator_with_a_runner_trusting_its_ca() {
    let image = busybox_image();
    let dir = TempDir::new("e2e-tls").expect("temp dir");
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
    let dir = TempDir::new("e2e-peers").expect("temp dir");
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
