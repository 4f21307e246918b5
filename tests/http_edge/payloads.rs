//! Payload fields: signed pushes whose fields git would refuse.

use super::*;

/// Signed pushes whose branch git would refuse (a line break, `..`, an escape sequence, 5 000
/// characters) or whose commit is abbreviated are refused with 400 and a message naming the
/// field, and nothing is stored: `moat runs` stays empty and prints no control character.
/// Before the fix they were accepted (202) and the branch later printed raw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_payloads_with_bad_fields_are_refused() {
    let dir = TempDir::new("edge-fields").expect("temp dir");
    let db = Db::fresh(dir.path()).await;
    let coordinator = Coordinator::start(&dir.path().join("server"), &db, 10);
    let api = coordinator.api();
    let pipeline = "version: 1\non:\n  push: { branches: [main] }\nstages:\n  - name: t\n    kind: test\n    image: moat-edge-none\n    commands: [\"true\"]\n";
    let origin = Origin::new("edge-fields", &[(".moat.yml", pipeline)]);
    let (_, path, secret) = api.add_repo("edge-fields", &origin.url()).await;
    let long = "b".repeat(5000);
    let cases: Vec<(String, String, &str)> = vec![
        ("a\nb".into(), origin.commit.clone(), "ref"),
        ("a..b".into(), origin.commit.clone(), "ref"),
        (
            "\u{1b}[2J\u{1b}]0;owned\u{7}".into(),
            origin.commit.clone(),
            "ref",
        ),
        (long, origin.commit.clone(), "ref"),
        ("main".into(), origin.commit[..7].to_string(), "commit"),
    ];
    for (i, (branch, commit, field)) in cases.iter().enumerate() {
        let body = push_payload(branch, commit, &origin.url());
        let sig = github_signature(&secret, &body);
        let (status, v) = send_webhook(
            &coordinator.base,
            &path,
            "push",
            &format!("bad-field-{i}"),
            Some(&sig),
            body,
        )
        .await;
        assert_eq!(status, 400, "{branch:?} {commit}: {v}");
        assert_eq!(v["error"]["code"], "invalid_payload", "{v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("invalid {field} in the payload")),
            "{message}"
        );
        assert!(!message.chars().any(char::is_control), "{message}");
        assert!(message.len() < 400, "{message}");
    }
    // A good push is still accepted.
    let body = push_payload("main", &origin.commit, &origin.url());
    let sig = github_signature(&secret, &body);
    let (status, v) =
        send_webhook(&coordinator.base, &path, "push", "good", Some(&sig), body).await;
    assert_eq!(status, 202, "{v}");
    api.first_run("edge-fields", Duration::from_secs(60)).await;

    let out = cli(&coordinator, &["runs", "--repo", "edge-fields"]);
    assert!(out.status.success(), "{}", describe(&out));
    let table = text(&out.stdout);
    assert!(
        !table.chars().any(|c| c.is_control() && c != '\n'),
        "{table:?}"
    );
    assert_eq!(table.lines().count(), 2, "{table}");
    let (status, runs) = api
        .call(reqwest::Method::GET, "/api/v1/runs?repo=edge-fields", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
}
