//! A real Moat cluster for end-to-end tests: `moat server` and `moat runner` as separate OS
//! processes, a fresh database per test (SQLite, or Postgres when `MOAT_TEST_POSTGRES` names a
//! server), local bare git repositories as forges' clone URLs, and GitHub-signed webhooks built
//! from the real payloads in tests/fixtures/webhooks.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::*;

/// A database for one test; Postgres databases are dropped at the end.
pub struct Db {
    pub url: String,
    pg: Option<(String, String)>,
}

impl Db {
    pub async fn fresh(dir: &Path) -> Db {
        match std::env::var("MOAT_TEST_POSTGRES") {
            Ok(server) if !server.is_empty() => {
                use sqlx::Connection;
                let name = format!("moat_e2e_{}", rand_suffix());
                let mut conn = sqlx::PgConnection::connect(&server)
                    .await
                    .expect("connect to MOAT_TEST_POSTGRES");
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .expect("create test database");
                let url = match server.rfind('/') {
                    Some(i)
                        if server[..i].contains("://") && i > server.find("://").unwrap() + 2 =>
                    {
                        let (base, rest) = server.split_at(i);
                        let query = rest.find('?').map(|q| &rest[q..]).unwrap_or("");
                        format!("{base}/{name}{query}")
                    }
                    _ => format!("{}/{name}", server.trim_end_matches('/')),
                };
                Db {
                    url,
                    pg: Some((server, name)),
                }
            }
            _ => Db {
                url: format!("sqlite://{}", dir.join("moat.db").display()),
                pg: None,
            },
        }
    }

    pub fn backend(&self) -> &'static str {
        if self.pg.is_some() {
            "postgres"
        } else {
            "sqlite"
        }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Some((server, name)) = self.pg.take() {
            // Drop runs outside any runtime: use a small one of our own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    use sqlx::Connection;
                    if let Ok(mut c) = sqlx::PgConnection::connect(&server).await {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .execute(&mut c)
                        .await;
                    }
                });
            })
            .join();
        }
    }
}

/// An HTTP client (the TLS provider must be chosen once per process).
pub fn http() -> reqwest::Client {
    moat_coordinator::server::install_tls_provider();
    reqwest::Client::new()
}

pub fn rand_suffix() -> String {
    use rand::Rng;
    let n: u64 = rand::rng().random();
    format!("{n:016x}")
}

/// Reads a child's stdout in the background, copying it to a log file, and reports the first
/// line containing `needle`.
fn watch_stdout(
    child: &mut Child,
    log: PathBuf,
    needle: &'static str,
) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .ok();
        let mut sent = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(f) = file.as_mut() {
                let _ = writeln!(f, "{line}");
            }
            if !sent && line.contains(needle) {
                let _ = tx.send(line);
                sent = true;
            }
        }
    });
    rx
}

fn stderr_file(path: &Path) -> Stdio {
    Stdio::from(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap(),
    )
}

pub struct Coordinator {
    child: Child,
    pub base: String,
    pub port: u16,
    pub token: String,
    pub data_dir: PathBuf,
    db_url: String,
    lease_secs: u64,
    extra: Vec<String>,
    /// A CA to trust when the coordinator serves HTTPS.
    pub ca: Option<PathBuf>,
}

impl Coordinator {
    pub fn start(data_dir: &Path, db: &Db, lease_secs: u64) -> Coordinator {
        Self::spawn(data_dir, &db.url, lease_secs, 0, Vec::new())
    }

    /// With an administrator's policy file (moat.toml content).
    pub fn start_with_policy(
        data_dir: &Path,
        db: &Db,
        lease_secs: u64,
        policy: &str,
    ) -> Coordinator {
        std::fs::create_dir_all(data_dir).unwrap();
        let path = data_dir.join("moat.toml");
        std::fs::write(&path, policy).unwrap();
        Self::spawn(
            data_dir,
            &db.url,
            lease_secs,
            0,
            vec!["--policy".to_string(), path.display().to_string()],
        )
    }

    /// A second coordinator on the same database (it uses the first one's admin token).
    pub fn start_peer(
        data_dir: &Path,
        db: &Db,
        lease_secs: u64,
        first: &Coordinator,
    ) -> Coordinator {
        let mut c = Self::spawn(data_dir, &db.url, lease_secs, 0, Vec::new());
        c.token = first.token.clone();
        c
    }

    /// Serves HTTPS with a certificate signed by `ca` (see [`make_tls`]).
    pub fn start_tls(data_dir: &Path, db: &Db, lease_secs: u64, tls: &TlsFiles) -> Coordinator {
        let extra = vec![
            "--tls-cert".to_string(),
            tls.cert.display().to_string(),
            "--tls-key".to_string(),
            tls.key.display().to_string(),
        ];
        let mut c = Self::spawn(data_dir, &db.url, lease_secs, 0, extra);
        c.ca = Some(tls.ca.clone());
        c
    }

    fn spawn(
        data_dir: &Path,
        db_url: &str,
        lease_secs: u64,
        port: u16,
        extra: Vec<String>,
    ) -> Coordinator {
        std::fs::create_dir_all(data_dir).unwrap();
        let mut child = moat()
            .args(["server", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--database-url", db_url])
            .args(["--lease-secs", &lease_secs.to_string()])
            .args(&extra)
            .env("MOAT_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(stderr_file(&data_dir.join("coordinator.log")))
            .spawn()
            .expect("spawn moat server");
        let rx = watch_stdout(&mut child, data_dir.join("coordinator.out"), "listening on");
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "moat server did not start:\n{}",
                    std::fs::read_to_string(data_dir.join("coordinator.log")).unwrap_or_default()
                );
            }
        };
        let base = line
            .split_whitespace()
            .find(|w| w.starts_with("http://") || w.starts_with("https://"))
            .expect("URL in the listening line")
            .to_string();
        let port = base.rsplit(':').next().unwrap().parse().unwrap();
        // Only the first coordinator of a database writes an admin token.
        let token = std::fs::read_to_string(data_dir.join("admin-token"))
            .map(|t| t.trim().to_string())
            .unwrap_or_default();
        Coordinator {
            child,
            base,
            port,
            token,
            data_dir: data_dir.to_path_buf(),
            db_url: db_url.to_string(),
            lease_secs,
            extra,
            ca: None,
        }
    }

    /// The coordinator process's id (for /proc/PID/status).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running (it has not crashed or exited).
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// `kill -9`: no chance to clean up or finish anything.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts again on the same port, data directory and database.
    pub fn restart(&mut self) {
        let mut fresh = Self::spawn(
            &self.data_dir,
            &self.db_url,
            self.lease_secs,
            self.port,
            self.extra.clone(),
        );
        fresh.ca = self.ca.clone();
        // The old process is already dead; dropping it only reaps it.
        drop(std::mem::replace(self, fresh));
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("coordinator.log")).unwrap_or_default()
    }

    pub fn api(&self) -> Api {
        let http = match &self.ca {
            None => http(),
            Some(ca) => {
                moat_coordinator::server::install_tls_provider();
                reqwest::Client::builder()
                    .tls_certs_only(
                        reqwest::Certificate::from_pem_bundle(&std::fs::read(ca).unwrap()).unwrap(),
                    )
                    .build()
                    .unwrap()
            }
        };
        Api {
            http,
            base: self.base.clone(),
            token: self.token.clone(),
        }
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct RunnerProc {
    child: Child,
    pub id: i64,
    pub pid: u32,
}

impl RunnerProc {
    pub fn start(
        c: &Coordinator,
        registration: &str,
        state_dir: &Path,
        name: &str,
        slots: u32,
    ) -> RunnerProc {
        std::fs::create_dir_all(state_dir).unwrap();
        let mut cmd = moat();
        cmd.arg("runner");
        if let Some(ca) = &c.ca {
            cmd.arg("--ca-cert").arg(ca);
        }
        let mut child = cmd
            .args(["--server", &c.base, "--token", registration])
            .args(["--name", name, "--slots", &slots.to_string()])
            .arg("--state-dir")
            .arg(state_dir)
            .env("MOAT_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(stderr_file(&state_dir.join("runner.log")))
            .spawn()
            .expect("spawn moat runner");
        let rx = watch_stdout(
            &mut child,
            state_dir.join("runner.out"),
            "registered as runner",
        );
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                panic!(
                    "runner did not register:\n{}",
                    std::fs::read_to_string(state_dir.join("runner.log")).unwrap_or_default()
                )
            });
        let id = line
            .split_whitespace()
            .nth(4)
            .and_then(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("no runner id in {line:?}"));
        RunnerProc {
            pid: child.id(),
            child,
            id,
        }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for the process to end.
    pub fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.kill9();
    }
}

impl Drop for RunnerProc {
    fn drop(&mut self) {
        self.stop();
    }
}

#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
}

impl Api {
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str) -> Value {
        let (status, v) = self.call(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {v}");
        v
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        let (status, v) = self.call(reqwest::Method::POST, path, Some(body)).await;
        assert!((200..300).contains(&status), "POST {path}: {status} {v}");
        v
    }

    pub async fn registration_token(&self) -> String {
        self.post("/api/v1/runner-tokens", json!({ "description": "test" }))
            .await["token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Registers a repository; returns (id, webhook path, secret).
    pub async fn add_repo(&self, name: &str, clone_url: &str) -> (i64, String, String) {
        let v = self
            .post(
                "/api/v1/repos",
                json!({ "name": name, "clone_url": clone_url }),
            )
            .await;
        let url = v["webhook_url"].as_str().unwrap();
        let path = url[url.find("/hooks/").unwrap()..].to_string();
        (
            v["id"].as_i64().unwrap(),
            path,
            v["webhook_secret"].as_str().unwrap().to_string(),
        )
    }

    pub async fn runs_of(&self, repo: &str) -> Vec<Value> {
        self.get(&format!("/api/v1/runs?repo={repo}"))
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until `pred` holds for the run (polling its view), or panics with the last view.
    pub async fn wait_run(
        &self,
        id: i64,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.get(&format!("/api/v1/runs/{id}")).await;
            if pred(&v) {
                return v;
            }
            if Instant::now() > deadline {
                panic!("run {id} did not reach the expected state in {timeout:?}: {v:#}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits for the first run of `repo` to exist and returns its id.
    pub async fn first_run(&self, repo: &str, timeout: Duration) -> i64 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(r) = self.runs_of(repo).await.last() {
                return r["id"].as_i64().unwrap();
            }
            if Instant::now() > deadline {
                panic!("no run of {repo} appeared in {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn logs(&self, run: i64) -> String {
        let v = self
            .get(&format!("/api/v1/runs/{run}/logs?limit=10000"))
            .await;
        v.as_array()
            .into_iter()
            .flatten()
            .map(|l| format!("{}\n", l["line"].as_str().unwrap_or("")))
            .collect()
    }
}

pub fn finished(v: &Value) -> bool {
    matches!(
        v["status"].as_str(),
        Some("passed" | "failed" | "cancelled")
    )
}

pub fn stage<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["stages"]
        .as_array()
        .and_then(|s| s.iter().find(|j| j["name"] == name))
        .unwrap_or_else(|| panic!("no stage {name} in {run:#}"))
}

/// A bare "origin" repository with the files committed on `main`, and the commit's id.
pub struct Origin {
    pub work: TempDir,
    pub bare: PathBuf,
    pub commit: String,
}

impl Origin {
    pub fn new(tag: &str, files: &[(&str, &str)]) -> Origin {
        let work = repo(tag, files);
        let bare = work.path().join("origin.git");
        git(
            work.path(),
            &["clone", "-q", "--bare", ".", &bare.display().to_string()],
        );
        let commit = git(work.path(), &["rev-parse", "HEAD"]);
        Origin { work, bare, commit }
    }

    pub fn url(&self) -> String {
        format!("file://{}", self.bare.display())
    }
}

/// GitHub's example push payload (a push creating a branch), pointed at `branch` and `commit`
/// of a local repository.
pub fn push_payload(branch: &str, commit: &str, clone_url: &str) -> Vec<u8> {
    let path = tests_dir().join("fixtures/webhooks/github/push/with-new-branch.payload.json");
    let mut v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    v["ref"] = json!(format!("refs/heads/{branch}"));
    v["after"] = json!(commit);
    v["deleted"] = json!(commit.chars().all(|c| c == '0'));
    v["head_commit"]["id"] = json!(commit);
    v["repository"]["clone_url"] = json!(clone_url);
    serde_json::to_vec(&v).unwrap()
}

pub fn github_signature(secret: &str, body: &[u8]) -> String {
    moat_coordinator::forge::github_signature(secret, body)
}

/// Sends a delivery as GitHub does; returns the status and JSON answer.
pub async fn send_webhook(
    base: &str,
    path: &str,
    event: &str,
    delivery: &str,
    signature: Option<&str>,
    body: Vec<u8>,
) -> (u16, Value) {
    let mut req = http()
        .post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .header("x-github-event", event)
        .header("x-github-delivery", delivery);
    if let Some(sig) = signature {
        req = req.header("x-hub-signature-256", sig);
    }
    let resp = req.body(body).send().await.expect("send webhook");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A CA and a server certificate for 127.0.0.1 signed by it (made with the openssl tool).
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn make_tls(dir: &Path) -> TlsFiles {
    std::fs::create_dir_all(dir).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is installed");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            text(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=moat test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    TlsFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    }
}

impl Db {
    /// Whether `needle` occurs anywhere in the database: the SQLite files byte for byte, or
    /// every text column of Postgres.
    pub async fn contains(&self, data_dir: &Path, needle: &str) -> bool {
        match &self.pg {
            None => {
                let file = self
                    .url
                    .trim_start_matches("sqlite://")
                    .trim_start_matches("sqlite:");
                let db_dir = Path::new(file).parent().unwrap_or(data_dir);
                grep_dir(db_dir, needle.as_bytes()) || grep_dir(data_dir, needle.as_bytes())
            }
            Some((server, name)) => {
                use sqlx::Connection;
                let url = self.url.clone();
                let _ = (server, name);
                let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
                let columns: Vec<(String, String)> = sqlx::query_as(
                    "SELECT table_name::text, column_name::text FROM information_schema.columns \
                     WHERE table_schema = 'public' AND data_type IN ('text', 'character varying', 'bytea', 'jsonb', 'json')",
                )
                .fetch_all(&mut c)
                .await
                .unwrap();
                for (table, column) in columns {
                    let q = format!(
                        "SELECT count(*) FROM \"{table}\" WHERE position($1::bytea in convert_to(\"{column}\"::text, 'UTF8')) > 0"
                    );
                    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(q))
                        .bind(needle.as_bytes())
                        .fetch_one(&mut c)
                        .await
                        .unwrap_or(0);
                    if n > 0 {
                        return true;
                    }
                }
                false
            }
        }
    }
}

/// Whether any file under `dir` contains `needle`.
pub fn grep_dir(dir: &Path, needle: &[u8]) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if grep_dir(&p, needle) {
                return true;
            }
        } else if let Ok(bytes) = std::fs::read(&p)
            && bytes.windows(needle.len()).any(|w| w == needle)
        {
            return true;
        }
    }
    false
}
