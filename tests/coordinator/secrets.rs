//! The secret gate on pushes and pull requests; sealed and stored secrets, forks, deploy
//! preconditions and the policy floor.

use super::*;

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
    let dir = TempDir::new("e2e-gate").expect("temp dir");
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
    let dir = TempDir::new("e2e-secrets").expect("temp dir");
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
    let dir = TempDir::new("e2e-store-secrets").expect("temp dir");
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
