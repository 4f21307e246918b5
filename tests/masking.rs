//! Run-wide masking and the life of workspace snapshots, end to end: a secret granted to one
//! stage and left in the workspace is masked in the output of the stages after it (through the
//! real coordinator and runner processes, and through `moat run`), and a run's snapshots are
//! readable only by the holder of a job of the same run and gone when the run ends.

mod cluster;
mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cluster::*;
use common::*;
use serde_json::{Value, json};

/// Long enough that `base64` wraps its encoding (76 columns) and `fold -w 64` too.
const TOKEN: &str = "mt-Zx9/Qw8+Er7Ty6Ui5Op4As3Df2Gh1Jk0L-zXcVbNm_7Hq2Wp4Rt6Yu8Io0Pa!9sDf";

/// Stage `write` is granted TOKEN and leaves it in the workspace; `print` is granted nothing
/// and prints it in several ways; `after` reads it again (so `print` uploads a snapshot too).
fn pipeline(image: &str) -> String {
    format!(
        r#"version: 1
secrets:
  TOKEN: {{}}
stages:
  - name: write
    kind: test
    image: {image}
    secrets: [TOKEN]
    commands:
      - printf '%s' "$TOKEN" > token.txt
  - name: print
    kind: test
    image: {image}
    needs: [write]
    commands:
      - echo "token is [${{TOKEN:-unset}}]"
      - cat token.txt; echo
      - base64 token.txt
      - base64 token.txt | tr -d '\n' | fold -w 64; echo
      - 'printf "ansi: %s\033[31m%s\033[0m\n" "$(head -c 9 token.txt)" "$(tail -c +10 token.txt)"'
      - 'printf "cr: %s\r%s\n" "$(head -c 20 token.txt)" "$(tail -c +21 token.txt)"'
      - echo print-done
  - name: after
    kind: test
    image: {image}
    needs: [print]
    commands:
      - sleep 3
      - cat token.txt; echo
"#
    )
}

/// What must appear nowhere: the value, and its base64 whole and as wrapped lines.
fn needles() -> Vec<String> {
    let b64 = STANDARD.encode(TOKEN);
    vec![
        TOKEN.to_string(),
        TOKEN[..20].to_string(),
        TOKEN[20..].to_string(),
        b64.clone(),
        b64[..76].to_string(),
        b64[76..].to_string(),
        b64[..64].to_string(),
        b64[64..].to_string(),
    ]
}

/// Checks the lines `print` must have written, masked.
fn assert_print_masked(out: &str, prefix: &str) {
    for line in [
        "token is [unset]",
        "***",
        "ansi: ***\x1b[0m",
        "cr: ***",
        "print-done",
    ] {
        assert!(
            out.contains(&format!("{prefix}{line}\n")),
            "{prefix}{line:?} not in:\n{out}"
        );
    }
}

fn cli(c: &Coordinator, args: &[&str]) -> std::process::Output {
    moat()
        .args(args)
        .env("MOAT_SERVER", &c.base)
        .env("MOAT_TOKEN", &c.token)
        .output()
        .expect("run moat")
}

async fn push(coordinator: &Coordinator, path: &str, secret: &str, commit: &str, delivery: &str) {
    let body = push_payload("main", commit, "x");
    let sig = github_signature(secret, &body);
    let (status, v) =
        send_webhook(&coordinator.base, path, "push", delivery, Some(&sig), body).await;
    assert_eq!(status, 202, "{v}");
}

fn snapshot_files(data_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data_dir.join("snapshots"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_secret_left_in_the_workspace_is_masked_in_later_stages_and_snapshots_go_with_the_run() {
    let image = busybox_image();
    let dir = TempDir::new("e2e-runwide-mask").expect("temp dir");
    let db = Db::fresh(dir.path()).await;
    let server_dir = dir.path().join("server");
    let coordinator = Coordinator::start(&server_dir, &db, 10);
    let api = coordinator.api();
    let origin = Origin::new("leaky", &[(".moat.yml", &pipeline(image))]);
    let (_, path, secret) = api.add_repo("leaky", &origin.url()).await;
    let (status, v) = api
        .call(
            reqwest::Method::PUT,
            "/api/v1/repos/leaky/secrets/TOKEN",
            Some(json!({ "value": TOKEN })),
        )
        .await;
    assert!((200..300).contains(&status), "{status} {v}");
    let _runner = RunnerProc::start(
        &coordinator,
        &api.registration_token().await,
        &dir.path().join("r"),
        "r",
        1,
    );
    push(&coordinator, &path, &secret, &origin.commit, "leaky-1").await;
    let id = api.first_run("leaky", Duration::from_secs(30)).await;

    // While the last stage runs, the snapshots of the first two are on disk.
    api.wait_run(id, Duration::from_secs(90), |r| {
        stage(r, "after")["status"] == "running" || finished(r)
    })
    .await;
    let during = snapshot_files(&server_dir);
    let run = api.wait_run(id, Duration::from_secs(90), finished).await;
    assert_eq!(run["status"], "passed", "{run:#}\n{}", coordinator.log());
    assert_eq!(during.len(), 2, "snapshots of write and print: {during:?}");

    // Gone when the run ends (the periodic collection runs only every minute).
    let deadline = Instant::now() + Duration::from_secs(5);
    while !snapshot_files(&server_dir).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(snapshot_files(&server_dir), Vec::<String>::new());

    let stored = api.logs(id).await;
    assert_print_masked(&stored, "");
    let logs_cli = cli(&coordinator, &["logs", &id.to_string()]);
    assert!(logs_cli.status.success(), "{}", describe(&logs_cli));
    let logs_cli = text(&logs_cli.stdout);
    let view = api.get(&format!("/api/v1/runs/{id}")).await.to_string();
    let audit = api.get("/api/v1/audit").await.to_string();
    for n in needles() {
        assert!(!stored.contains(&n), "{n} in the API's logs:\n{stored}");
        assert!(!logs_cli.contains(&n), "{n} in `moat logs`:\n{logs_cli}");
        assert!(!view.contains(&n), "{n} in the run's view");
        assert!(!audit.contains(&n), "{n} in the audit trail");
        assert!(
            !db.contains(&server_dir, &n).await,
            "{n} is in the database or the data directory"
        );
        assert!(
            !coordinator.log().contains(&n),
            "{n} in the coordinator's log"
        );
    }
    // The grant of `print` records what it masks, by name.
    assert!(audit.contains(r#"\"masked\":[\"TOKEN\"]"#), "{audit}");
}

#[test]
fn moat_run_masks_every_secret_of_the_run_in_every_stage() {
    let image = busybox_image();
    let repo = repo("runwide-mask", &[(".moat.yml", &pipeline(image))]);
    let logs = TempDir::new("runwide-mask-logs").expect("temp dir");
    let child = moat()
        .arg("run")
        .arg(repo.path())
        .args(["--secret", "TOKEN", "--log-dir"])
        .arg(logs.path())
        .env("TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert_no_leftovers(pid);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let stdout = text(&out.stdout);
    let printed = std::fs::read_to_string(logs.path().join("print.log")).unwrap();
    assert_print_masked(&printed, "");
    assert_print_masked(&stdout, "print | ");
    let mut everything = stdout + &text(&out.stderr);
    for f in std::fs::read_dir(logs.path()).unwrap() {
        everything.push_str(&std::fs::read_to_string(f.unwrap().path()).unwrap());
    }
    for n in needles() {
        assert!(!everything.contains(&n), "{n} leaked:\n{everything}");
    }
}

/// A runner registered by hand, speaking the runner protocol itself.
struct ProtocolRunner {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl ProtocolRunner {
    async fn register(c: &Coordinator, name: &str) -> ProtocolRunner {
        let http = http();
        let registration = c.api().registration_token().await;
        let v: Value = http
            .post(format!("{}/api/v1/runners/register", c.base))
            .json(&json!({ "token": registration, "name": name, "slots": 1 }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ProtocolRunner {
            http,
            base: c.base.clone(),
            token: v["token"].as_str().unwrap().to_string(),
        }
    }

    async fn claim(&self) -> Value {
        let v: Value = self
            .http
            .post(format!("{}/api/v1/runner/claim", self.base))
            .bearer_auth(&self.token)
            .json(&json!({ "wait_ms": 10000 }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(v["job"].is_object(), "no job claimed: {v}");
        v["job"].clone()
    }

    async fn workspace(&self, job: i64) -> (u16, Vec<u8>) {
        let resp = self
            .http
            .get(format!("{}/api/v1/runner/jobs/{job}/workspace", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.bytes().await.unwrap().to_vec())
    }

    async fn upload(&self, job: i64, tar: Vec<u8>) -> u16 {
        self.http
            .put(format!("{}/api/v1/runner/jobs/{job}/snapshot", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/x-tar")
            .body(tar)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    async fn pass(&self, job: &Value) {
        let status = self
            .http
            .post(format!(
                "{}/api/v1/runner/jobs/{}/complete",
                self.base, job["job_id"]
            ))
            .bearer_auth(&self.token)
            .json(&json!({
                "attempt": job["attempt"],
                "outcome": "passed",
                "exit_code": 0,
                "reason": null,
                "duration_ms": 1,
            }))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status.as_u16(), 204);
    }
}

/// A tar holding `name` with `content`.
fn tar_with(name: &str, content: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(content.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, name, content).unwrap();
    b.into_inner().unwrap()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snapshots_are_read_only_by_a_job_of_their_run_and_removed_when_it_ends() {
    let dir = TempDir::new("e2e-snapshots").expect("temp dir");
    let db = Db::fresh(dir.path()).await;
    let server_dir = dir.path().join("server");
    let coordinator = Coordinator::start(&server_dir, &db, 30);
    let api = coordinator.api();
    let file = "version: 1\nstages:\n  - name: a\n    kind: test\n    image: x\n    commands: [true]\n  - name: b\n    kind: test\n    image: x\n    commands: [true]\n";
    let origin = Origin::new("snap", &[(".moat.yml", file)]);
    let (_, path, secret) = api.add_repo("snap", &origin.url()).await;
    let r1 = ProtocolRunner::register(&coordinator, "one").await;
    let r2 = ProtocolRunner::register(&coordinator, "two").await;
    const MARKER: &[u8] = b"left-by-run-one-7f3k9q";

    push(&coordinator, &path, &secret, &origin.commit, "snap-1").await;
    let a1 = r1.claim().await;
    let (a1_id, run1) = (
        a1["job_id"].as_i64().unwrap(),
        a1["run_id"].as_i64().unwrap(),
    );
    assert_eq!(a1["stage"]["name"], "a");
    assert_eq!(r1.upload(a1_id, tar_with("token.txt", MARKER)).await, 204);
    r1.pass(&a1).await;
    assert_eq!(snapshot_files(&server_dir), [format!("job-{a1_id}.tar")]);

    // A second run of the same repository; each runner holds one job.
    push(&coordinator, &path, &secret, &origin.commit, "snap-2").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while api.runs_of("snap").await.len() < 2 {
        assert!(Instant::now() < deadline, "no second run");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (x, y) = (r1.claim().await, r2.claim().await);
    let ((h1, b1), (h2, a2)) = if x["run_id"] == run1 {
        ((&r1, x), (&r2, y))
    } else {
        ((&r2, y), (&r1, x))
    };
    let b1_id = b1["job_id"].as_i64().unwrap();
    let a2_id = a2["job_id"].as_i64().unwrap();
    assert_eq!(b1["stage"]["name"], "b");
    assert_ne!(a2["run_id"].as_i64().unwrap(), run1, "{a2}");

    // The holder of run one's job gets run one's snapshot.
    let (status, tar) = h1.workspace(b1_id).await;
    assert_eq!(status, 200);
    assert!(contains(&tar, MARKER));
    // The other runner gets nothing of run one: not through a job it does not hold, not
    // through a finished one, and cannot overwrite it either.
    for job in [b1_id, a1_id] {
        let (status, body) = h2.workspace(job).await;
        assert_eq!(status, 409, "{}", String::from_utf8_lossy(&body));
        assert!(!contains(&body, MARKER));
    }
    assert_eq!(h2.upload(a1_id, tar_with("x", b"overwritten")).await, 409);
    // Its own job starts from the source at the commit.
    let (status, tar) = h2.workspace(a2_id).await;
    assert_eq!(status, 200);
    assert!(!contains(&tar, MARKER));
    assert!(contains(&tar, b".moat.yml"));

    // Run one ends with b's result: its snapshot goes at once.
    h1.pass(&b1).await;
    assert_eq!(
        api.get(&format!("/api/v1/runs/{run1}")).await["status"],
        "passed"
    );
    assert!(!grep_dir(&server_dir, MARKER), "run one's files are gone");

    // Run two is cancelled with a snapshot stored and nothing running: it goes too.
    assert_eq!(
        h2.upload(a2_id, tar_with("two.txt", b"run-two-files"))
            .await,
        204
    );
    h2.pass(&a2).await;
    assert_eq!(snapshot_files(&server_dir), [format!("job-{a2_id}.tar")]);
    let run2 = a2["run_id"].as_i64().unwrap();
    let cancelled = api
        .post(&format!("/api/v1/runs/{run2}/cancel"), json!({}))
        .await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled:#}");
    assert_eq!(snapshot_files(&server_dir), Vec::<String>::new());
}
