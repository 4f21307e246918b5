//! Crashes and hostile state around the coordinator's life: a `kill -9`ed `moat up` left as a
//! zombie, a runner that hangs while its job is retried, damaged databases, odd data
//! directories, and tokens that are listed, expire and are revoked. Everything through the real
//! `moat` binary, the real Docker engine and real SQLite (or Postgres with
//! `MOAT_TEST_POSTGRES` where a cluster is used).

mod cluster;
mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cluster::*;
use common::*;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Helpers.

/// A pipeline with one long stage of a name no other test uses (containers are found by it).
fn long_stage_pipeline(image: &str, stage: &str) -> String {
    format!(
        r#"version: 1
on:
  push: {{ branches: [main] }}
  manual: true
stages:
  - name: {stage}
    kind: test
    image: {image}
    commands:
      - echo started-long
      - sleep 20
      - echo done-long
"#
    )
}

fn unique_stage(tag: &str) -> String {
    format!("{tag}-{}", &rand_suffix()[..10])
}

/// Running containers of a stage (by its `moat.stage` label).
fn running_stage_containers(stage: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "-q", "--no-trunc", "--filter"])
        .arg(format!("label=moat.stage={stage}"))
        .output()
        .expect("docker ps");
    assert!(out.status.success(), "{}", describe(&out));
    text(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

fn container_exists(id: &str) -> bool {
    Command::new("docker")
        .args(["inspect", "--format", "{{.Id}}", id])
        .output()
        .expect("docker inspect")
        .status
        .success()
}

/// The state letter of `/proc/PID/stat` (`Z` for a zombie), or `None` once reaped.
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success(), "kill -{sig} {pid}");
}

/// Polls until `done` says the run is over, asserting on every round that no two containers of
/// `stage` run at once. Returns the last run view.
async fn watch_single_copy(api: &Api, run: i64, stage: &str, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let running = running_stage_containers(stage);
        assert!(
            running.len() <= 1,
            "two copies of stage {stage} run at once: {running:?}"
        );
        let v = api.get(&format!("/api/v1/runs/{run}")).await;
        if finished(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "run {run} did not finish in {timeout:?}: {v:#}"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// Waits until exactly one container of `stage` runs; returns its id.
async fn wait_stage_container(stage: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let running = running_stage_containers(stage);
        if running.len() == 1 {
            return running[0].clone();
        }
        assert!(running.len() < 2, "{running:?}");
        assert!(
            Instant::now() < deadline,
            "no container of {stage} started in {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `moat up` as a child process the test reaps only when it says so: killed with `kill -9`, it
/// stays a zombie (as it would under a supervisor that is slow to reap).
struct Up {
    child: Child,
    base: String,
    data_dir: PathBuf,
}

impl Up {
    fn start(data_dir: &Path, lease_secs: u64) -> Up {
        let mut child = moat()
            .args(["up", "--listen", "127.0.0.1:0", "--slots", "1"])
            .args(["--lease-secs", &lease_secs.to_string()])
            .arg("--data-dir")
            .arg(data_dir)
            .env("MOAT_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(data_dir.with_extension("log"))
                    .unwrap(),
            ))
            .spawn()
            .expect("spawn moat up");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut base = None;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("moat: up at ") {
                    base = rest.split_whitespace().next().map(str::to_string);
                }
                if line.contains("embedded runner with")
                    && let Some(b) = base.take()
                {
                    let _ = tx.send(b);
                }
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                panic!(
                    "moat up did not start:\n{}",
                    std::fs::read_to_string(data_dir.with_extension("log")).unwrap_or_default()
                )
            });
        Up {
            child,
            base,
            data_dir: data_dir.to_path_buf(),
        }
    }

    fn api(&self) -> Api {
        Api {
            http: http(),
            base: self.base.clone(),
            token: std::fs::read_to_string(self.data_dir.join("admin-token"))
                .unwrap()
                .trim()
                .to_string(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.with_extension("log")).unwrap_or_default()
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        kill_proxies(&self.data_dir);
    }
}

// ---------------------------------------------------------------------------------------------
// Item: a killed owner's stage is never run twice.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_moat_up_left_a_zombie_and_its_stage_never_runs_twice() {
    let image = busybox_image();
    let dir = TempDir::new("zombie-up").expect("temp dir");
    let data = dir.path().join("data");
    let stage_name = unique_stage("zombie");
    let origin = Origin::new(
        "zombie",
        &[(".moat.yml", &long_stage_pipeline(image, &stage_name))],
    );

    let mut first = Up::start(&data, 3);
    let api = first.api();
    api.add_repo("zombie", &origin.url()).await;
    let run = api
        .post("/api/v1/repos/zombie/runs", json!({ "branch": "main" }))
        .await;
    let run_id = run["id"].as_i64().unwrap();
    let old = wait_stage_container(&stage_name, Duration::from_secs(60)).await;
    // Let the stage get going, then kill -9 without reaping: the process stays a zombie.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let old_pid = first.child.id();
    first.child.kill().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while proc_state(old_pid) != Some('Z') {
        assert!(
            Instant::now() < deadline,
            "moat up {old_pid} did not become a zombie: {:?}",
            proc_state(old_pid)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        container_exists(&old),
        "the killed owner's stage keeps running"
    );

    let second = Up::start(&data, 3);
    let api = second.api();
    let v = watch_single_copy(&api, run_id, &stage_name, Duration::from_secs(120)).await;
    assert_eq!(v["status"], "passed", "{v:#}\n{}", second.log());
    let job = stage(&v, &stage_name);
    assert_eq!(
        job["attempt"], 2,
        "the job was retried after its lease: {v:#}"
    );
    assert!(
        !container_exists(&old),
        "the old attempt's container is gone"
    );
    assert_eq!(
        proc_state(old_pid),
        Some('Z'),
        "still a zombie throughout the test"
    );
    // The zombie's network and volume went at start-up too (not only its container).
    assert_no_leftovers(old_pid);
    let logs = api.logs(run_id).await;
    assert!(logs.contains("done-long"), "{logs}");
    drop(second);
    let _ = first.child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hung_runner_s_attempt_is_removed_before_the_retry_starts() {
    let image = busybox_image();
    let dir = TempDir::new("hung-runner").expect("temp dir");
    let db = Db::fresh(dir.path()).await;
    let coordinator = Coordinator::start(&dir.path().join("server"), &db, 3);
    let api = coordinator.api();
    let stage_name = unique_stage("hung");
    let origin = Origin::new(
        "hung",
        &[(".moat.yml", &long_stage_pipeline(image, &stage_name))],
    );
    api.add_repo("hung", &origin.url()).await;
    let first = RunnerProc::start(
        &coordinator,
        &api.registration_token().await,
        &dir.path().join("r1"),
        "r1",
        1,
    );
    let run = api
        .post("/api/v1/repos/hung/runs", json!({ "branch": "main" }))
        .await;
    let run_id = run["id"].as_i64().unwrap();
    let old = wait_stage_container(&stage_name, Duration::from_secs(60)).await;
    // The runner hangs (alive, but silent): its lease runs out while its container runs on.
    signal(first.pid, "STOP");
    let second = RunnerProc::start(
        &coordinator,
        &api.registration_token().await,
        &dir.path().join("r2"),
        "r2",
        1,
    );
    let v = watch_single_copy(&api, run_id, &stage_name, Duration::from_secs(120)).await;
    signal(first.pid, "CONT");
    assert_eq!(v["status"], "passed", "{v:#}\n{}", coordinator.log());
    let job = stage(&v, &stage_name);
    assert_eq!(job["attempt"], 2, "{v:#}");
    assert_eq!(job["runner_id"], second.id, "{v:#}");
    assert!(
        !container_exists(&old),
        "the hung runner's container was removed"
    );
    let logs = api.logs(run_id).await;
    assert!(logs.contains("done-long"), "{logs}");
    // The hung runner, woken up, cannot change the result.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = api.get(&format!("/api/v1/runs/{run_id}")).await;
    assert_eq!(after["status"], "passed", "{after:#}");
    assert_eq!(stage(&after, &stage_name)["attempt"], 2);
}

// ---------------------------------------------------------------------------------------------
// Item: a damaged database is refused, and nothing is changed.

/// Runs `moat server` on `data` and expects it to refuse to start; returns its stderr.
fn refused_start(data: &Path) -> String {
    let mut child = moat()
        .args(["server", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            assert!(!status.success(), "{}", describe(&out));
            assert_eq!(status.code(), Some(1), "{}", describe(&out));
            return text(&out.stderr);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "moat server started on a damaged database:\n{}",
                describe(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts `moat server` on `data` until it listens; returns the process.
fn server(data: &Path) -> (Child, String) {
    let mut child = moat()
        .args(["server", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.contains("listening on") {
                let base = line
                    .split_whitespace()
                    .find(|w| w.starts_with("http://"))
                    .map(str::to_string);
                let _ = tx.send(base);
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Some(base)) => (child, base),
        _ => {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("moat server did not start: {}", describe(&out));
        }
    }
}

fn stop_gracefully(mut child: Child) {
    signal(child.id(), "TERM");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "moat server did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops the server as [`stop_gracefully`] does and returns what it logged (its stderr).
fn stop_and_read_log(mut child: Child) -> String {
    let mut stderr = child.stderr.take().expect("stderr is piped");
    stop_gracefully(child);
    let mut log = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut log).expect("the server's log");
    log
}

/// Registers `n` repositories (writes to the database) through the API.
async fn write_some(base: &str, token: &str, prefix: &str, n: usize) {
    let api = Api {
        http: http(),
        base: base.to_string(),
        token: token.to_string(),
    };
    for i in 0..n {
        api.post(
            "/api/v1/repos",
            json!({ "name": format!("{prefix}-{i}"), "clone_url": "/srv/none.git" }),
        )
        .await;
    }
}

struct Snapshot(Vec<(PathBuf, Option<Vec<u8>>)>);

impl Snapshot {
    fn of(paths: &[PathBuf]) -> Snapshot {
        Snapshot(
            paths
                .iter()
                .map(|p| (p.clone(), std::fs::read(p).ok()))
                .collect(),
        )
    }

    fn assert_unchanged(&self) {
        for (p, before) in &self.0 {
            let now = std::fs::read(p).ok();
            assert!(
                &now == before,
                "{} changed ({:?} bytes before, {:?} after)",
                p.display(),
                before.as_ref().map(Vec::len),
                now.as_ref().map(Vec::len)
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn damaged_databases_are_refused_and_left_as_they_are() {
    let dir = TempDir::new("damaged-db").expect("temp dir");

    // One installation, written to, stopped, written to again and killed: its write-ahead log
    // holds the newest pages.
    let data = dir.path().join("data");
    let (child, base) = server(&data);
    let token = std::fs::read_to_string(data.join("admin-token"))
        .unwrap()
        .trim()
        .to_string();
    write_some(&base, &token, "before", 30).await;
    stop_gracefully(child);
    let (mut child, base) = server(&data);
    write_some(&base, &token, "after", 30).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let db = data.join("moat.db");
    let wal = data.join("moat.db-wal");
    let admin = data.join("admin-token");
    assert!(
        std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) > 0,
        "the killed server left its write-ahead log"
    );
    let full = std::fs::read(&db).unwrap();
    let pristine = dir.path().join("pristine");
    copy_dir(&data, &pristine);

    // Truncated, with its WAL.
    std::fs::write(&db, &full[..full.len() / 2]).unwrap();
    let files = [db.clone(), wal.clone(), admin.clone()];
    let snap = Snapshot::of(&files);
    let err = refused_start(&data);
    assert!(err.contains(&db.display().to_string()), "{err}");
    assert!(err.contains("truncated"), "{err}");
    snap.assert_unchanged();

    // Empty (zero-length), with the WAL beside it: not a new installation.
    std::fs::write(&db, b"").unwrap();
    let snap = Snapshot::of(&files);
    let err = refused_start(&data);
    assert!(err.contains(&db.display().to_string()), "{err}");
    assert!(err.contains("empty"), "{err}");
    snap.assert_unchanged();
    assert_eq!(std::fs::read_to_string(&admin).unwrap().trim(), token);

    // Garbage.
    let garbage: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&db, &garbage).unwrap();
    let snap = Snapshot::of(&files);
    let err = refused_start(&data);
    assert!(err.contains(&db.display().to_string()), "{err}");
    assert!(err.contains("not an SQLite database"), "{err}");
    snap.assert_unchanged();

    // The untouched copy still starts, with everything written before the kill.
    let (child, base) = server(&pristine);
    let api = Api {
        http: http(),
        base,
        token: token.clone(),
    };
    let repos = api.get("/api/v1/repos").await;
    assert_eq!(repos.as_array().unwrap().len(), 60, "{repos}");
    stop_gracefully(child);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Item: the data directory keeps its owner's mode; every file error names its path.

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn data_directories_keep_their_mode_and_errors_name_paths() {
    let dir = TempDir::new("data-dir").expect("temp dir");

    // An existing directory keeps its mode; one Moat creates is private.
    let existing = dir.path().join("existing");
    std::fs::create_dir(&existing).unwrap();
    std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o750)).unwrap();
    let (child, _) = server(&existing);
    stop_gracefully(child);
    assert_eq!(mode(&existing), 0o750);
    let created = dir.path().join("new/nested/data");
    let (child, _) = server(&created);
    stop_gracefully(child);
    assert_eq!(mode(&created), 0o700);

    // A file where the directory should be.
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let err = refused_start(&file);
    assert!(
        err.contains(&format!("{} exists but is not a directory", file.display())),
        "{err}"
    );

    // Files and directories inside it that are in the way.
    let blocked = dir.path().join("blocked-admin-token");
    std::fs::create_dir_all(blocked.join("admin-token")).unwrap();
    let err = refused_start(&blocked);
    assert!(
        err.contains(&blocked.join("admin-token").display().to_string()),
        "{err}"
    );
    let blocked = dir.path().join("blocked-snapshots");
    std::fs::create_dir_all(&blocked).unwrap();
    std::fs::write(blocked.join("snapshots"), b"x").unwrap();
    let err = refused_start(&blocked);
    assert!(
        err.contains(&blocked.join("snapshots").display().to_string()),
        "{err}"
    );

    // A directory this user may not write: the error names what could not be created.
    let foreign = dir.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::set_permissions(&foreign, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_moat"))
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&foreign)
        .stdin(Stdio::null())
        .output()
        .expect("setpriv (util-linux) runs moat as nobody");
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = text(&out.stderr);
    assert!(
        err.contains(&foreign.join("moat.db").display().to_string()),
        "{err}"
    );
    assert_eq!(mode(&foreign), 0o755, "not changed");

    // Directories made later (mirrors, the secret gate's scratch space) name themselves in the
    // log; API answers carry no paths.
    let image = busybox_image();
    for (name, what) in [
        ("repos", "mirror directory"),
        ("tmp", "temporary directory"),
    ] {
        let data = dir.path().join(format!("blocked-{name}"));
        let (child, base) = server(&data);
        std::fs::write(data.join(name), b"x").unwrap();
        let api = Api {
            http: http(),
            base,
            token: std::fs::read_to_string(data.join("admin-token"))
                .unwrap()
                .trim()
                .to_string(),
        };
        let origin = Origin::new(
            name,
            &[(".moat.yml", &long_stage_pipeline(image, "irrelevant"))],
        );
        api.add_repo(name, &origin.url()).await;
        let (status, v) = api
            .call(
                reqwest::Method::POST,
                &format!("/api/v1/repos/{name}/runs"),
                Some(json!({ "branch": "main" })),
            )
            .await;
        // A mirror that cannot be made refuses the request; a gate that cannot run fails the
        // run, with the reason.
        let message = match name {
            "repos" => {
                assert_eq!(status, 400, "{v}");
                v["error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            }
            _ => {
                assert_eq!((status, &v["status"]), (201, &json!("failed")), "{v}");
                v["reason"].as_str().unwrap_or_default().to_string()
            }
        };
        // Paths are the coordinator's internals: the answer says where to look, the log names
        // what could not be created and where.
        let path = data.join(name).display().to_string();
        assert!(
            message.contains("see the coordinator's log") && !message.contains(&path),
            "{message}"
        );
        let log = stop_and_read_log(child);
        assert!(log.contains(what) && log.contains(&path), "{log}");
    }
}

// ---------------------------------------------------------------------------------------------
// Item: tokens are listed, expire and are revoked, with effect on the next request.

fn cli_with(c: &Coordinator, token: &str, args: &[&str]) -> std::process::Output {
    moat()
        .args(args)
        .env("MOAT_SERVER", &c.base)
        .env("MOAT_TOKEN", token)
        .output()
        .expect("run moat")
}

fn json_out(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "{}", describe(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe(out)))
}

async fn claim_status(base: &str, runner_token: &str) -> u16 {
    http()
        .post(format!("{base}/api/v1/runner/claim"))
        .bearer_auth(runner_token)
        .json(&json!({ "wait_ms": 0 }))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn register(base: &str, registration: &str) -> (u16, Value) {
    let resp = http()
        .post(format!("{base}/api/v1/runners/register"))
        .json(&json!({ "token": registration, "name": "probe", "slots": 1 }))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_are_listed_expire_and_are_revoked_at_once() {
    let dir = TempDir::new("tokens").expect("temp dir");
    let db = Db::fresh(dir.path()).await;
    let a = Coordinator::start(&dir.path().join("a"), &db, 10);
    let b = Coordinator::start_peer(&dir.path().join("b"), &db, 10, &a);
    let first = a.token.clone();

    // The list: the first admin token, never a token or a hash.
    let list = json_out(&cli_with(&a, &first, &["token", "list", "--json"]));
    let rows = list.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{list}");
    assert_eq!(rows[0]["kind"], "admin");
    assert_eq!(rows[0]["label"], "first start");
    assert!(rows[0]["last_used_at"].is_i64(), "{list}");
    assert_eq!(rows[0]["expires_at"], Value::Null);
    let first_id = rows[0]["id"].as_i64().unwrap();
    let listed = list.to_string();
    assert!(
        !listed.contains(&first) && !listed.contains("hash"),
        "{listed}"
    );

    // The last admin token cannot be revoked.
    let out = cli_with(&a, &first, &["token", "revoke", &first_id.to_string()]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("last admin token"),
        "{}",
        describe(&out)
    );

    // Rotation: a new admin token, then the old one revoked; the old one fails at once.
    let created = json_out(&cli_with(
        &a,
        &first,
        &["token", "create", "--label", "rotated", "--json"],
    ));
    let second = created["token"].as_str().unwrap().to_string();
    assert!(second.starts_with("moat_a_"));
    let out = cli_with(&a, &second, &["token", "revoke", &first_id.to_string()]);
    assert!(out.status.success(), "{}", describe(&out));
    for c in [&a, &b] {
        let out = cli_with(c, &first, &["runs"]);
        assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
        assert!(text(&out.stderr).contains("401"), "{}", describe(&out));
        assert!(cli_with(c, &second, &["runs"]).status.success());
    }

    // Registration tokens expire.
    let out = cli_with(&a, &second, &["runner-token", "--expires", "1ms"]);
    assert!(out.status.success(), "{}", describe(&out));
    let short = text(&out.stdout).trim().to_string();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (status, v) = register(&a.base, &short).await;
    assert_eq!(status, 401, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("expired"),
        "{v}"
    );
    let out = cli_with(&a, &second, &["runner-token", "--expires", "forever"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(text(&out.stderr).contains("expires"), "{}", describe(&out));

    // A runner token, revoked: its next request fails, on this coordinator at once.
    let reg = json_out(&cli_with(&a, &second, &["runner-token", "--json"]));
    let expires = reg["expires_at"].as_i64().unwrap();
    let hour = 3_600_000;
    assert!(
        (expires - moat_coordinator::store::now_ms() - hour).abs() < 60_000,
        "default lifetime 1h: {reg}"
    );
    let (status, v) = register(&a.base, reg["token"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{v}");
    let runner_token = v["token"].as_str().unwrap().to_string();
    let runner_id = v["runner_id"].as_i64().unwrap();
    // Both coordinators have it cached now.
    assert_eq!(claim_status(&a.base, &runner_token).await, 200);
    assert_eq!(claim_status(&b.base, &runner_token).await, 200);
    let list = json_out(&cli_with(&a, &second, &["token", "list", "--json"]));
    let rows = list.as_array().unwrap();
    let kinds: Vec<&str> = rows.iter().map(|t| t["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["admin", "registration", "runner"], "{list}");
    assert_eq!(rows[1]["expired"], true, "{list}");
    let runner_row = &rows[2];
    assert_eq!(runner_row["runner_id"], runner_id);
    assert_eq!(runner_row["label"], "probe");
    assert!(runner_row["last_used_at"].is_i64(), "{list}");
    let listed = list.to_string();
    assert!(!listed.contains(&runner_token) && !listed.contains(&second));
    let table = cli_with(&a, &second, &["token", "list"]);
    assert!(
        text(&table.stdout).contains("(expired)"),
        "{}",
        describe(&table)
    );

    let out = cli_with(
        &a,
        &second,
        &["token", "revoke", &runner_row["id"].to_string()],
    );
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(claim_status(&a.base, &runner_token).await, 401);
    // The other coordinator drops it on the NOTIFY (Postgres) or when its cache entry ends
    // (SQLite, no notifications): bounded either way.
    let deadline = Instant::now() + Duration::from_secs(30);
    while claim_status(&b.base, &runner_token).await != 401 {
        assert!(
            Instant::now() < deadline,
            "the peer still accepts a revoked token"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = cli_with(&a, &second, &["token", "revoke", "999999"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(text(&out.stderr).contains("404"), "{}", describe(&out));
}
