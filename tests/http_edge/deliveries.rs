//! Deliveries: `moat deliveries` and what became of each stored delivery.

use super::*;

/// `moat deliveries` shows every stored delivery with what became of it: one that fails after
/// its 202 (the commit is not in the repository) is `failed` with its error, a push the
/// pipeline does not react to is `ignored`, a good push is `processed` with its run number.
/// Before the fix, there was no such view (and the failure appeared nowhere).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_show_their_outcome() {
    let dir = TempDir::new("edge-deliveries").expect("temp dir");
    let db = Db::fresh(dir.path()).await;
    let coordinator = Coordinator::start(&dir.path().join("server"), &db, 10);
    let api = coordinator.api();
    let pipeline = "version: 1\non:\n  push: { branches: [main] }\nstages:\n  - name: t\n    kind: test\n    image: moat-edge-none\n    commands: [\"true\"]\n";
    let origin = Origin::new("edge-deliveries", &[(".moat.yml", pipeline)]);
    let (_, path, secret) = api.add_repo("edge-deliveries", &origin.url()).await;
    let other = Origin::new("edge-deliveries-other", &[(".moat.yml", pipeline)]);
    api.add_repo("edge-deliveries-other", &other.url()).await;
    let missing = "0123456789abcdef0123456789abcdef01234567";
    for (id, branch, commit) in [
        ("d-missing", "main", missing),
        ("d-ignored", "docs", origin.commit.as_str()),
        ("d-good", "main", origin.commit.as_str()),
    ] {
        let body = push_payload(branch, commit, &origin.url());
        let sig = github_signature(&secret, &body);
        let (status, v) =
            send_webhook(&coordinator.base, &path, "push", id, Some(&sig), body).await;
        assert_eq!(status, 202, "{id}: {v}");
    }

    // Wait (bounded) until all three are processed.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let list = loop {
        let out = cli(
            &coordinator,
            &["deliveries", "--repo", "edge-deliveries", "--json"],
        );
        assert!(out.status.success(), "{}", describe(&out));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let list = v.as_array().unwrap().clone();
        assert_eq!(list.len(), 3, "{v}");
        if list.iter().all(|d| d["outcome"] != "pending") {
            break list;
        }
        assert!(std::time::Instant::now() < deadline, "still pending: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let by_id = |id: &str| {
        list.iter()
            .find(|d| d["delivery_id"] == id)
            .unwrap()
            .clone()
    };
    let failed = by_id("d-missing");
    assert_eq!(failed["outcome"], "failed", "{failed}");
    assert!(
        failed["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{failed}"
    );
    assert_eq!(failed["run_number"], Value::Null);
    let ignored = by_id("d-ignored");
    assert_eq!(ignored["outcome"], "ignored", "{ignored}");
    assert_eq!(ignored["error"], Value::Null);
    let good = by_id("d-good");
    assert_eq!(good["outcome"], "processed", "{good}");
    assert_eq!(good["run_number"], 1, "{good}");
    assert_eq!(good["event"], "push");
    assert!(
        good.get("payload").is_none(),
        "payloads stay in the store: {good}"
    );
    // Newest first.
    assert_eq!(list[0]["delivery_id"], "d-good");

    // The table: one line per delivery, outcome and run number shown.
    let out = cli(&coordinator, &["deliveries", "--repo", "edge-deliveries"]);
    assert!(out.status.success(), "{}", describe(&out));
    let table = text(&out.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(lines[0].contains("OUTCOME"), "{table}");
    let line = |id: &str| *lines.iter().find(|l| l.contains(id)).unwrap();
    assert!(
        line("d-good").contains("processed") && line("d-good").contains("#1"),
        "{table}"
    );
    assert!(line("d-ignored").contains("ignored"), "{table}");
    assert!(line("d-missing").contains("failed"), "{table}");
    // Without --repo: every repository's (the other one has none); an unknown one: an error.
    let out = cli(&coordinator, &["deliveries", "--json"]);
    let all: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(all.as_array().unwrap().len(), 3, "{all}");
    let out = cli(&coordinator, &["deliveries", "--repo", "no-such-repo"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no repository"),
        "{}",
        describe(&out)
    );
    // The API route is for administrators only.
    let resp = http()
        .get(format!("{}/api/v1/deliveries", coordinator.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
}
