//! `moat run` end to end against the real Docker engine, with images built by the tests.

mod common;

use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn spawn_run(dir: &std::path::Path, extra: &[&str]) -> Child {
    moat()
        .arg("run")
        .arg(dir)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn moat run")
}

/// Runs `moat run` to its end and checks it left nothing behind.
fn run(dir: &std::path::Path, extra: &[&str]) -> Output {
    let child = spawn_run(dir, extra);
    let pid = child.id();
    let out = child.wait_with_output().expect("wait");
    assert_no_leftovers(pid);
    out
}

/// The summary row of `stage`: its status and detail columns.
fn summary_row(stdout: &str, stage: &str) -> (String, String) {
    let table = stdout
        .rsplit_once("\nSTAGE ")
        .map(|(_, t)| t)
        .unwrap_or_else(|| panic!("no summary table in:\n{stdout}"));
    for line in table.lines().skip(1) {
        let mut cols = line.split_whitespace();
        if cols.next() == Some(stage) {
            let status = cols.next().unwrap_or_default().to_string();
            let _duration = cols.next();
            let detail = cols.collect::<Vec<_>>().join(" ");
            return (status, detail);
        }
    }
    panic!("stage {stage} not in summary:\n{stdout}");
}

fn dag_pipeline(image: &str) -> String {
    format!(
        r#"version: 1
stages:
  - name: prepare
    kind: test
    image: {image}
    commands:
      - echo "built at $MOAT_COMMIT" > artifact.txt

  # Two branches that can only finish when they run at the same time: each waits for a file
  # the other one writes into the shared workspace.
  - name: left
    kind: test
    image: {image}
    needs: [prepare]
    commands:
      - grep -q "built at" artifact.txt
      - touch left-started
      - for i in $(seq 1 100); do [ -f right-started ] && break; sleep 0.1; done; [ -f right-started ]
      - echo left > left.txt

  - name: right
    kind: test
    image: {image}
    needs: [prepare]
    services:
      - name: web
        image: {image}
        command: ["sh", "-c", "mkdir -p /tmp/www && echo hello-from-service > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www"]
    commands:
      - touch right-started
      - for i in $(seq 1 100); do [ -f left-started ] && break; sleep 0.1; done; [ -f left-started ]
      - for i in $(seq 1 50); do wget -q -O - http://web:8080/ && exit 0; sleep 0.2; done; exit 1

  - name: join
    kind: test
    image: {image}
    needs: [left, right]
    commands:
      - test "$(cat left.txt)" = left

  - name: broken
    kind: test
    image: {image}
    needs: [prepare]
    commands:
      - echo about to fail
      - exit 3

  - name: after-broken
    kind: test
    image: {image}
    needs: [broken]
    commands: [echo never]

  - name: after-after
    kind: test
    image: {image}
    commands: [echo never either]

  - name: slow
    kind: test
    image: {image}
    needs: []
    timeout: 2s
    commands: [echo sleeping, sleep 60]

  - name: hog
    kind: test
    image: {image}
    needs: []
    resources: {{ memory: 16m }}
    commands: ["dd if=/dev/zero of=/dev/null bs=64M count=1"]
"#
    )
}

#[test]
fn dag_with_parallel_branches_service_failure_timeout_and_oom() {
    let image = busybox_image();
    let repo = repo("dag", &[(".moat.yml", &dag_pipeline(image))]);
    let out = run(repo.path(), &["--parallel", "4"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));

    for ok in ["prepare", "left", "right", "join"] {
        assert_eq!(
            summary_row(&stdout, ok).0,
            "passed",
            "{ok}: {}",
            describe(&out)
        );
    }
    assert!(
        stdout.contains("hello-from-service"),
        "service reached by name: {}",
        describe(&out)
    );
    assert_eq!(
        summary_row(&stdout, "broken"),
        ("failed".into(), "exit code 3".into())
    );
    assert_eq!(
        summary_row(&stdout, "after-broken"),
        ("skipped".into(), "needs broken, which failed".into())
    );
    assert_eq!(
        summary_row(&stdout, "after-after"),
        (
            "skipped".into(),
            "needs after-broken, which was skipped".into()
        )
    );
    let (status, detail) = summary_row(&stdout, "slow");
    assert_eq!(status, "failed");
    assert!(detail.starts_with("timed out after 2"), "{detail}");
    assert_eq!(
        summary_row(&stdout, "hog"),
        (
            "failed".into(),
            "killed: out of memory (limit 16 MiB)".into()
        )
    );
    // Live output is prefixed by the stage name.
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("broken ") && l.ends_with("| about to fail"))
    );
    assert!(stdout.contains("run ") && stdout.contains(": failed (4 passed, 3 failed, 2 skipped"));
}

#[test]
fn passing_pipeline_exits_zero_and_stage_selection_runs_needs() {
    let image = busybox_image();
    let pipeline = format!(
        r#"version: 1
env:
  GREETING: hello
stages:
  - name: one
    kind: test
    image: {image}
    commands: ["echo $GREETING from $MOAT_STAGE on $MOAT_BRANCH > one.txt"]
  - name: two
    kind: test
    image: {image}
    commands: ["cat one.txt", "test \"$(cat one.txt)\" = \"hello from one on main\""]
  - name: other
    kind: test
    image: {image}
    needs: []
    commands: ["exit 1"]
  - name: pr-only
    kind: test
    image: {image}
    needs: []
    when: {{ event: pull_request }}
    commands: ["exit 1"]
"#
    );
    let repo = repo("select", &[(".moat.yml", &pipeline)]);
    let out = run(repo.path(), &["--stage", "two", "--parallel", "1"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(summary_row(&stdout, "one").0, "passed");
    assert_eq!(summary_row(&stdout, "two").0, "passed");
    assert_eq!(
        summary_row(&stdout, "other"),
        ("skipped".into(), "not selected".into())
    );
    assert!(stdout.contains("hello from one on main"));

    // Without selection, `other` fails the run, and `pr-only` is excluded on a push.
    let out = run(repo.path(), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stdout = text(&out.stdout);
    assert_eq!(summary_row(&stdout, "other").0, "failed");
    assert_eq!(
        summary_row(&stdout, "pr-only"),
        ("skipped".into(), "when: event is push".into())
    );

    let out = run(repo.path(), &["--stage", "nope"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(text(&out.stderr).contains("no stage named nope"));
}

#[test]
fn workspace_is_head_unless_working_tree_is_asked_for() {
    let image = busybox_image();
    let pipeline = format!(
        "version: 1\nstages:\n  - name: show\n    kind: test\n    image: {image}\n    commands: [\"cat data.txt\", \"ls -a\"]\n"
    );
    let repo = repo(
        "ws",
        &[(".moat.yml", &pipeline), ("data.txt", "committed\n")],
    );
    std::fs::write(repo.path().join("data.txt"), "edited\n").unwrap();
    std::fs::write(repo.path().join("untracked.txt"), "new\n").unwrap();
    let out = run(repo.path(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("| committed"), "{stdout}");
    assert!(!stdout.contains("untracked.txt"), "{stdout}");
    assert!(
        !stdout.contains("| .git"),
        "the .git directory is not copied: {stdout}"
    );

    let out = run(repo.path(), &["--working-tree"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("| edited"), "{stdout}");
    assert!(stdout.contains("untracked.txt"), "{stdout}");
}

#[test]
fn containers_are_hardened() {
    let image = busybox_image();
    let pipeline = format!(
        r#"version: 1
stages:
  - name: inspect
    kind: test
    image: {image}
    resources: {{ pids: 64 }}
    commands:
      - grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status
      - "[ ! -e /var/run/docker.sock ] && echo no-docker-socket"
      - cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max
      - cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max
"#
    );
    let repo = repo("harden", &[(".moat.yml", &pipeline)]);
    let out = run(repo.path(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let stdout = text(&out.stdout);
    // CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID NET_BIND_SERVICE = bits 0,1,3-7,10.
    assert!(stdout.contains("CapEff:\t00000000000004fb"), "{stdout}");
    assert!(stdout.contains("CapBnd:\t00000000000004fb"), "{stdout}");
    assert!(stdout.contains("NoNewPrivs:\t1"), "{stdout}");
    assert!(stdout.contains("no-docker-socket"), "{stdout}");
    assert!(stdout.contains("| 64\n"), "pids limit: {stdout}");
    assert!(
        stdout.contains(&format!("| {}\n", 2u64 << 30)),
        "memory: {stdout}"
    );
}

#[test]
fn missing_image_fails_with_a_clear_pull_error() {
    let image = busybox_image();
    let pipeline = format!(
        r#"version: 1
stages:
  - name: first
    kind: test
    image: {image}
    commands: [true]
  - name: ghost
    kind: test
    image: moat-test/does-not-exist:1
    commands: [true]
"#
    );
    let repo = repo("pull", &[(".moat.yml", &pipeline)]);
    let out = run(repo.path(), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let (status, detail) = summary_row(&text(&out.stdout), "ghost");
    assert_eq!(status, "failed");
    assert!(
        detail.starts_with(
            "image \"moat-test/does-not-exist:1\" is not available locally and the engine could not pull it"
        ),
        "{detail}"
    );
}

#[test]
fn unsupported_kinds_fail_loudly_and_invalid_files_do_not_run() {
    let image = busybox_image();
    let pipeline = format!(
        r#"version: 1
stages:
  - name: test
    kind: test
    image: {image}
    commands: [true]
  - name: ship
    kind: deploy
    deploy: {{ target: docker, image: "app:1", port: 8080 }}
"#
    );
    let repo = repo(
        "kinds",
        &[(".moat.yml", &pipeline), ("Dockerfile", "FROM scratch\n")],
    );
    let out = run(repo.path(), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let (status, detail) = summary_row(&text(&out.stdout), "ship");
    assert_eq!(status, "failed");
    assert!(detail.contains("not supported yet"), "{detail}");

    let repo = common::repo(
        "invalid",
        &[(
            ".moat.yml",
            "version: 1\nstages:\n  - name: x\n    kind: test\n    imgae: busybox\n",
        )],
    );
    let out = run(repo.path(), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains(".moat.yml:5:5: unknown key \"imgae\""),
        "{}",
        describe(&out)
    );
}

/// Waits until the sleeper stage's container runs beside its service container.
fn wait_for_container(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let containers = labelled_resources(&format!("moat.pid={pid}"))
            .into_iter()
            .filter(|r| r.starts_with("container "))
            .count();
        if containers >= 2 {
            std::thread::sleep(Duration::from_millis(300));
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no container appeared for moat pid {pid}");
}

fn sleeper_pipeline(image: &str) -> String {
    format!(
        r#"version: 1
stages:
  - name: sleeper
    kind: test
    image: {image}
    services:
      - name: side
        image: {image}
        command: ["sleep", "600"]
    commands: ["echo going to sleep", "sleep 600"]
  - name: never
    kind: test
    image: {image}
    commands: [true]
"#
    )
}

#[test]
fn interrupt_cancels_and_removes_everything() {
    let image = busybox_image();
    let repo = repo("sigint", &[(".moat.yml", &sleeper_pipeline(image))]);
    let child = spawn_run(repo.path(), &[]);
    let pid = child.id();
    wait_for_container(pid);
    let kill = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", describe(&out));
    let stdout = text(&out.stdout);
    assert_eq!(summary_row(&stdout, "sleeper").0, "cancelled", "{stdout}");
    assert_eq!(summary_row(&stdout, "never").0, "cancelled", "{stdout}");
    assert_no_leftovers(pid);
}

#[test]
fn leftovers_of_a_killed_run_are_removed_by_the_next_run() {
    let image = busybox_image();
    let repo = repo("kill9", &[(".moat.yml", &sleeper_pipeline(image))]);
    let mut child = spawn_run(repo.path(), &[]);
    let pid = child.id();
    wait_for_container(pid);
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    assert!(
        !labelled_resources(&format!("moat.pid={pid}")).is_empty(),
        "a killed run leaves its resources"
    );
    let ok = repo_with_true(image);
    let out = run(ok.path(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_no_leftovers(pid);
}

fn repo_with_true(image: &str) -> TempDir {
    repo(
        "true",
        &[(
            ".moat.yml",
            &format!(
                "version: 1\nstages:\n  - name: ok\n    kind: test\n    image: {image}\n    commands: [true]\n"
            ),
        )],
    )
}

#[test]
fn no_output_timeout_kills_a_silent_stage() {
    let image = busybox_image();
    let repo = repo(
        "silent",
        &[(
            ".moat.yml",
            &format!(
                "version: 1\nstages:\n  - name: quiet\n    kind: test\n    image: {image}\n    commands: [\"echo one line\", \"sleep 60\"]\n"
            ),
        )],
    );
    let out = run(repo.path(), &["--no-output-timeout", "2s"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let (status, detail) = summary_row(&text(&out.stdout), "quiet");
    assert_eq!(status, "failed");
    assert_eq!(detail, "no output for 2.0s; killed");
}

/// An AWS access key id as GitHub's secret scanning examples write it, assembled at run time so
/// that this file does not trip the gate itself.
fn leaked_aws_key() -> String {
    format!("{}{}", "AKIA", "ZQ3DRXWJ5OBVEH4P")
}

#[test]
fn a_leaked_key_blocks_the_run_before_any_stage_until_allow_listed() {
    let image = busybox_image();
    let pipeline = format!(
        "version: 1\nstages:\n  - name: build\n    kind: test\n    image: {image}\n    commands: [\"echo built\"]\n"
    );
    let config = format!("[default]\naws_access_key_id = {}\n", leaked_aws_key());
    let repo = repo(
        "gate",
        &[(".moat.yml", &pipeline), ("deploy/aws.ini", &config)],
    );
    let out = run(repo.path(), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("blocked by gate: secrets (1 finding)"),
        "{stderr}"
    );
    assert!(stderr.contains("deploy/aws.ini"), "{stderr}");
    assert!(
        !stderr.contains(&leaked_aws_key()),
        "the finding is masked: {stderr}"
    );
    assert!(!text(&out.stdout).contains("starting"), "no stage started");

    // The fingerprint from `moat scan secrets`, allow-listed with a reason, lets it through.
    let scan = moat()
        .args(["scan", "secrets", "--format", "json"])
        .arg(repo.path())
        .output()
        .unwrap();
    assert_eq!(scan.status.code(), Some(1), "{}", describe(&scan));
    let findings: serde_json::Value = serde_json::from_slice(&scan.stdout).unwrap();
    let findings = findings
        .get("findings")
        .cloned()
        .unwrap_or(findings.clone());
    let fp = findings[0]["fingerprint"].as_str().unwrap().to_string();
    std::fs::create_dir_all(repo.path().join(".moat")).unwrap();
    std::fs::write(
        repo.path().join(".moat/secrets.allow"),
        format!("{fp}  # revoked key kept as a parser fixture\n"),
    )
    .unwrap();
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "allow"]);
    let out = run(repo.path(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(text(&out.stdout).contains("secret gate passed"));

    // `warn` reports without blocking; `off` skips the scan.
    std::fs::remove_file(repo.path().join(".moat/secrets.allow")).unwrap();
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "unallow"]);
    let out = run(repo.path(), &["--secret-gate", "warn"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(text(&out.stdout).contains("secret gate warned (1 finding)"));
}

#[test]
fn granted_secrets_are_masked_in_every_form() {
    let image = busybox_image();
    let secret = "p@ss w0rd/+Zx9";
    let url_encoded = "p%40ss%20w0rd%2F%2BZx9";
    let key = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n-----END PRIVATE KEY-----";
    let pipeline = format!(
        r#"version: 1
secrets:
  TOKEN: {{}}
  KEY: {{}}
stages:
  - name: leak
    kind: test
    image: {image}
    secrets: [TOKEN, KEY]
    commands:
      - echo "plain $TOKEN"
      - printf '%s' "$TOKEN" | base64
      - printf 'x%s' "$TOKEN" | base64
      - printf 'xy%s' "$TOKEN" | base64
      - echo "url {url_encoded}"
      - printf '%s' "$TOKEN" | od -An -tx1 | tr -d ' \n'; echo
      - cat /run/secrets/TOKEN; echo
      - stat -c '%a' /run/secrets/TOKEN
      - printf '%s\n' "$KEY"
      - 'printf "split: p@ss w0"; sleep 0.5; printf "rd/+Zx9 done\n"'
  - name: ungranted
    kind: test
    image: {image}
    commands:
      - echo "token is [${{TOKEN:-unset}}]"
      - test ! -e /run/secrets/TOKEN
"#
    );
    let repo = repo("mask", &[(".moat.yml", &pipeline)]);
    let logs = TempDir::new("mask-logs").expect("temp dir");
    let child = moat()
        .arg("run")
        .arg(repo.path())
        .args(["--secret", "TOKEN", "--secret", "KEY", "--log-dir"])
        .arg(logs.path())
        .env("TOKEN", secret)
        .env("KEY", key)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert_no_leftovers(pid);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let stdout = text(&out.stdout);
    let mut everything = stdout.clone();
    for f in std::fs::read_dir(logs.path()).unwrap() {
        everything.push_str(&std::fs::read_to_string(f.unwrap().path()).unwrap());
    }
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
    for needle in [
        secret,
        url_encoded,
        &b64[..b64.len() - 4],
        &hex_lower(secret),
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
        "BKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj",
    ] {
        assert!(
            !everything.contains(needle),
            "{needle:?} leaked:\n{everything}"
        );
    }
    assert!(stdout.contains("| plain ***"), "{stdout}");
    assert!(stdout.contains("| url ***"), "{stdout}");
    assert!(stdout.contains("| split: *** done"), "{stdout}");
    assert!(
        stdout.contains("| 400\n"),
        "secret files are 0400: {stdout}"
    );
    assert!(stdout.contains("ungranted | token is [unset]"), "{stdout}");
}

fn hex_lower(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}
