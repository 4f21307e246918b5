//! Deploy stages that require an approval wait for `moat approve`.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deploys_requiring_approval_wait_for_moat_approve() {
    let image = busybox_image();
    let dir = TempDir::new("e2e-approve").expect("temp dir");
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
