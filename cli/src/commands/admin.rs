//! The administration verbs (`moat repo`, `moat runs`, `moat logs`, `moat cancel`,
//! `moat rerun`, `moat trigger`, `moat runners`, `moat runner-token`, `moat token`): thin
//! clients of the coordinator's REST API. `--json` prints the API's JSON as it is.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use futures_util::StreamExt;
use serde_json::{Value, json};

use moat_coordinator::server;

#[derive(Debug, Args, Clone)]
pub struct ClientOpts {
    /// The coordinator's URL.
    #[arg(
        long,
        env = "MOAT_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub server: String,
    /// An admin token (default: ./moat-data/admin-token when it exists).
    #[arg(long, env = "MOAT_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// A CA certificate (PEM) to trust for the coordinator's HTTPS.
    #[arg(long, global = true)]
    pub ca_cert: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum RepoCommand {
    /// Register a repository; prints its webhook URL and secret.
    Add {
        name: String,
        #[arg(long)]
        clone_url: String,
        /// github, gitlab or gitea (also for Forgejo).
        #[arg(long, default_value = "github")]
        forge: String,
        /// The webhook secret (generated when omitted, and shown once).
        #[arg(long)]
        webhook_secret: Option<String>,
        /// Most jobs of this repository running at once.
        #[arg(long)]
        concurrency: Option<i64>,
        /// A new push cancels older unfinished runs of the same branch.
        #[arg(long)]
        cancel_superseded: bool,
    },
    List,
    Show {
        name: String,
    },
    /// Unregister a repository.
    Rm {
        name: String,
    },
}

struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    fn new(opts: &ClientOpts) -> anyhow::Result<Self> {
        let token = match &opts.token {
            Some(t) => t.clone(),
            None => std::fs::read_to_string("moat-data/admin-token")
                .map(|t| t.trim().to_string())
                .context("no token: pass --token or set MOAT_TOKEN (the admin token is in <data-dir>/admin-token)")?,
        };
        Ok(Api {
            http: server::http_client(opts.ca_cert.as_deref())?,
            base: opts.server.trim_end_matches('/').to_string(),
            token,
        })
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("cannot reach the coordinator at {}", self.base))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            let message = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(clean))
                .unwrap_or(text);
            bail!("{} ({})", message, status.as_u16());
        }
        if text.is_empty() {
            return Ok(Value::Null);
        }
        Ok(serde_json::from_str(&text)?)
    }

    async fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        self.send(self.http.get(format!("{}{path}", self.base)).query(query))
            .await
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(&body))
            .await
    }

    async fn put(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.send(self.http.put(format!("{}{path}", self.base)).json(&body))
            .await
    }

    async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.delete(format!("{}{path}", self.base)))
            .await
    }
}

fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

/// A stored value as a table cell or plain-text line shows it: strings pass through
/// [`clean`], since they may come from webhook payloads or other senders.
fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".to_string(),
        Value::String(s) => clean(s),
        other => other.to_string(),
    }
}

/// Text from the coordinator made safe for a terminal: control characters (escape sequences,
/// line breaks, C1 controls) and bidirectional overrides are shown escaped (`\u{1b}`), never
/// sent to the terminal. `--json` output needs none of this (JSON escapes them itself).
pub fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() || moat_coordinator::forge::is_bidi_control(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn block_on(f: impl std::future::Future<Output = anyhow::Result<()>>) -> u8 {
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("moat: {e}");
            return 1;
        }
    };
    match rt.block_on(f) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("moat: {e:#}");
            1
        }
    }
}

fn seg(s: &str) -> String {
    // Repository names are restricted to URL-safe characters; encode anything else anyway.
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub fn repo(opts: ClientOpts, cmd: RepoCommand) -> u8 {
    block_on(async move {
        let api = Api::new(&opts)?;
        match cmd {
            RepoCommand::Add {
                name,
                clone_url,
                forge,
                webhook_secret,
                concurrency,
                cancel_superseded,
            } => {
                let v = api
                    .post(
                        "/api/v1/repos",
                        json!({
                            "name": name,
                            "clone_url": clone_url,
                            "forge": forge,
                            "webhook_secret": webhook_secret,
                            "concurrency": concurrency,
                            "cancel_superseded": cancel_superseded,
                        }),
                    )
                    .await?;
                if opts.json {
                    print_json(&v);
                } else {
                    println!("repository {} (id {})", s(&v["name"]), s(&v["id"]));
                    println!("webhook URL:    {}", s(&v["webhook_url"]));
                    println!("webhook secret: {} (shown once)", s(&v["webhook_secret"]));
                }
            }
            RepoCommand::List => {
                let v = api.get("/api/v1/repos", &[]).await?;
                if opts.json {
                    print_json(&v);
                } else {
                    println!("{:<6} {:<24} {:<8} CLONE URL", "ID", "NAME", "FORGE");
                    for r in v.as_array().into_iter().flatten() {
                        println!(
                            "{:<6} {:<24} {:<8} {}",
                            s(&r["id"]),
                            s(&r["name"]),
                            s(&r["forge"]),
                            s(&r["clone_url"])
                        );
                    }
                }
            }
            RepoCommand::Show { name } => {
                let v = api
                    .get(&format!("/api/v1/repos/{}", seg(&name)), &[])
                    .await?;
                print_json(&v);
            }
            RepoCommand::Rm { name } => {
                api.delete(&format!("/api/v1/repos/{}", seg(&name))).await?;
                if !opts.json {
                    println!("repository {name} removed");
                }
            }
        }
        Ok(())
    })
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    /// Show one run with its stages.
    pub run: Option<i64>,
    #[arg(long)]
    pub repo: Option<String>,
    #[arg(long)]
    pub branch: Option<String>,
    /// queued, running, passed, failed or cancelled.
    #[arg(long)]
    pub status: Option<String>,
    #[arg(long, default_value_t = 20)]
    pub limit: i64,
}

pub fn runs(opts: ClientOpts, args: RunsArgs) -> u8 {
    block_on(async move {
        let api = Api::new(&opts)?;
        if let Some(id) = args.run {
            let v = api.get(&format!("/api/v1/runs/{id}"), &[]).await?;
            if opts.json {
                print_json(&v);
            } else {
                println!(
                    "run {} — {} #{} — {} ({} {} at {})",
                    s(&v["id"]),
                    s(&v["repo_name"]),
                    s(&v["number"]),
                    s(&v["status"]),
                    s(&v["event"]),
                    s(&v["branch"]),
                    s(&v["commit"])
                );
                if let Some(r) = v["reason"].as_str() {
                    println!("reason: {}", clean(r));
                }
                for j in v["stages"].as_array().into_iter().flatten() {
                    println!(
                        "  {:<20} {:<10} {}",
                        s(&j["name"]),
                        s(&j["status"]),
                        clean(j["reason"].as_str().unwrap_or(""))
                    );
                }
            }
            return Ok(());
        }
        let mut q = vec![("limit", args.limit.to_string())];
        if let Some(r) = args.repo {
            q.push(("repo", r));
        }
        if let Some(b) = args.branch {
            q.push(("branch", b));
        }
        if let Some(st) = args.status {
            q.push(("status", st));
        }
        let v = api.get("/api/v1/runs", &q).await?;
        if opts.json {
            print_json(&v);
        } else {
            println!(
                "{:<6} {:<20} {:<5} {:<10} {:<13} {:<16} COMMIT",
                "ID", "REPO", "#", "STATUS", "EVENT", "BRANCH"
            );
            for r in v.as_array().into_iter().flatten() {
                println!(
                    "{:<6} {:<20} {:<5} {:<10} {:<13} {:<16} {}",
                    s(&r["id"]),
                    s(&r["repo_name"]),
                    s(&r["number"]),
                    s(&r["status"]),
                    s(&r["event"]),
                    s(&r["branch"]),
                    s(&r["commit"]).chars().take(12).collect::<String>()
                );
            }
        }
        Ok(())
    })
}

/// `moat deliveries`: webhook deliveries with their outcome (pending, processed → run number,
/// ignored, failed) and error.
pub fn deliveries(opts: ClientOpts, repo: Option<String>, limit: i64) -> u8 {
    block_on(async move {
        let api = Api::new(&opts)?;
        let mut q = vec![("limit", limit.to_string())];
        if let Some(r) = repo {
            q.push(("repo", r));
        }
        let v = api.get("/api/v1/deliveries", &q).await?;
        if opts.json {
            print_json(&v);
            return Ok(());
        }
        println!(
            "{:<19} {:<20} {:<14} {:<10} {:<6} {:<38} ERROR",
            "RECEIVED (UTC)", "REPO", "EVENT", "OUTCOME", "RUN", "DELIVERY"
        );
        for d in v.as_array().into_iter().flatten() {
            let run = match d["run_number"].as_i64() {
                Some(n) => format!("#{n}"),
                None => "-".to_string(),
            };
            println!(
                "{:<19} {:<20} {:<14} {:<10} {:<6} {:<38} {}",
                d["received_at"].as_i64().map(utc).unwrap_or_default(),
                s(&d["repo_name"]),
                s(&d["event"]),
                s(&d["outcome"]),
                run,
                s(&d["delivery_id"]),
                d["error"].as_str().map(clean).unwrap_or_default()
            );
        }
        Ok(())
    })
}

pub fn logs(opts: ClientOpts, run: i64, follow: bool) -> u8 {
    block_on(async move {
        let api = Api::new(&opts)?;
        let run_view = api.get(&format!("/api/v1/runs/{run}"), &[]).await?;
        let names: std::collections::HashMap<i64, String> = run_view["stages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|j| Some((j["id"].as_i64()?, clean(j["name"].as_str()?))))
            .collect();
        let width = names.values().map(String::len).max().unwrap_or(5);
        let show = |l: &Value| {
            if opts.json {
                println!("{l}");
            } else {
                let name = l["job_id"]
                    .as_i64()
                    .and_then(|id| names.get(&id))
                    .map(String::as_str)
                    .unwrap_or("?");
                println!("{name:<width$} | {}", l["line"].as_str().unwrap_or(""));
            }
        };
        if !follow {
            let mut after = 0;
            loop {
                let v = api
                    .get(
                        &format!("/api/v1/runs/{run}/logs"),
                        &[("after", after.to_string()), ("limit", "5000".into())],
                    )
                    .await?;
                let lines = v.as_array().cloned().unwrap_or_default();
                if lines.is_empty() {
                    break;
                }
                for l in &lines {
                    after = l["id"].as_i64().unwrap_or(after);
                    show(l);
                }
            }
            return Ok(());
        }
        let resp = api
            .http
            .get(format!("{}/api/v1/runs/{run}/logs/stream", api.base))
            .bearer_auth(&api.token)
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("the coordinator answered {}", resp.status());
        }
        let mut stream = resp.bytes_stream();
        let mut buf = String::new();
        let mut event = String::new();
        while let Some(chunk) = stream.next().await {
            buf.push_str(&String::from_utf8_lossy(&chunk?));
            while let Some(nl) = buf.find('\n') {
                let line: String = buf.drain(..=nl).collect();
                let line = line.trim_end_matches(['\r', '\n']);
                if let Some(e) = line.strip_prefix("event:") {
                    event = e.trim().to_string();
                } else if let Some(data) = line.strip_prefix("data:") {
                    let v: Value = serde_json::from_str(data.trim()).unwrap_or(Value::Null);
                    if event == "end" {
                        if !opts.json {
                            println!("run {run}: {}", s(&v["status"]));
                        }
                        return Ok(());
                    }
                    show(&v);
                }
            }
        }
        Ok(())
    })
}

pub fn cancel(opts: ClientOpts, run: i64) -> u8 {
    block_on(async move {
        let api = Api::new(&opts)?;
        let v = api
            .post(&format!("/api/v1/runs/{run}/cancel"), json!({}))
            .await?;
        if opts.json {
            print_json(&v);
        } else {
            println!("run {run}: {}", s(&v["status"]));
        }
        Ok(())
    })
}

pub fn rerun(opts: ClientOpts, run: i64) -> u8 {
    block_on(async move {
        let api = Api::new(&opts)?;
        let v = api
            .post(&format!("/api/v1/runs/{run}/rerun"), json!({}))
            .await?;
        if opts.json {
            print_json(&v);
        } else {
            println!(
                "run {} started (#{} of {})",
                s(&v["id"]),
                s(&v["number"]),
                s(&v["repo_name"])
            );
        }
        Ok(())
    })
}

pub fn trigger(opts: ClientOpts, repo: String, branch: String, commit: Option<String>) -> u8 {
    block_on(async move {
        let api = Api::new(&opts)?;
        let v = api
            .post(
                &format!("/api/v1/repos/{}/runs", seg(&repo)),
                json!({ "branch": branch, "commit": commit }),
            )
            .await?;
        if opts.json {
            print_json(&v);
        } else {
            println!(
                "run {} started (#{} of {})",
                s(&v["id"]),
                s(&v["number"]),
                s(&v["repo_name"])
            );
        }
        Ok(())
    })
}

pub fn runners(opts: ClientOpts) -> u8 {
    block_on(async move {
        let api = Api::new(&opts)?;
        let v = api.get("/api/v1/runners", &[]).await?;
        if opts.json {
            print_json(&v);
        } else {
            println!("{:<6} {:<24} {:<6} LAST SEEN (ms)", "ID", "NAME", "SLOTS");
            for r in v.as_array().into_iter().flatten() {
                println!(
                    "{:<6} {:<24} {:<6} {}",
                    s(&r["id"]),
                    s(&r["name"]),
                    s(&r["slots"]),
                    s(&r["last_seen_at"])
                );
            }
        }
        Ok(())
    })
}

pub fn runner_token(opts: ClientOpts, description: Option<String>, expires: String) -> u8 {
    block_on(async move {
        let api = Api::new(&opts)?;
        let v = api
            .post(
                "/api/v1/runner-tokens",
                json!({ "description": description, "expires": expires }),
            )
            .await?;
        if opts.json {
            print_json(&v);
        } else {
            println!("{}", s(&v["token"]));
            eprintln!(
                "moat: one-time runner registration token {} (valid until {})",
                s(&v["id"]),
                v["expires_at"]
                    .as_i64()
                    .map(utc)
                    .unwrap_or_else(|| "-".into())
            );
        }
        Ok(())
    })
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Every token (admin, registration, runner): id, kind, label, dates. Never the tokens.
    List,
    /// Create an admin token (shown once). To rotate: create one, use it, revoke the old one.
    Create {
        #[arg(long)]
        label: Option<String>,
    },
    /// Revoke a token by id: it is refused from the next request on. The last admin token
    /// cannot be revoked.
    Revoke { id: i64 },
}

pub fn token(opts: ClientOpts, cmd: TokenCommand) -> u8 {
    block_on(async move {
        let api = Api::new(&opts)?;
        match cmd {
            TokenCommand::List => {
                let v = api.get("/api/v1/tokens", &[]).await?;
                if opts.json {
                    print_json(&v);
                    return Ok(());
                }
                println!(
                    "{:<6} {:<13} {:<24} {:<20} {:<20} EXPIRES",
                    "ID", "KIND", "LABEL", "CREATED", "LAST USED"
                );
                let when = |v: &Value| v.as_i64().map(utc).unwrap_or_else(|| "-".into());
                for t in v.as_array().into_iter().flatten() {
                    let expires = match (t["expires_at"].as_i64(), t["expired"] == true) {
                        (None, _) => "never".to_string(),
                        (Some(at), false) => utc(at),
                        (Some(at), true) => format!("{} (expired)", utc(at)),
                    };
                    let label = s(&t["label"]);
                    println!(
                        "{:<6} {:<13} {:<24} {:<20} {:<20} {}",
                        s(&t["id"]),
                        s(&t["kind"]),
                        if label.is_empty() { "-".into() } else { label },
                        when(&t["created_at"]),
                        when(&t["last_used_at"]),
                        expires
                    );
                }
            }
            TokenCommand::Create { label } => {
                let v = api
                    .post("/api/v1/tokens", json!({ "label": label }))
                    .await?;
                if opts.json {
                    print_json(&v);
                } else {
                    println!("{}", s(&v["token"]));
                    eprintln!(
                        "moat: admin token {} created (shown once); revoke an old one with `moat token revoke ID`",
                        s(&v["id"])
                    );
                }
            }
            TokenCommand::Revoke { id } => {
                let v = api.delete(&format!("/api/v1/tokens/{id}")).await?;
                if opts.json {
                    print_json(&v);
                } else {
                    println!("token {id} ({}) revoked", s(&v["kind"]));
                }
            }
        }
        Ok(())
    })
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS` (UTC).
fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// `moat seal --repo NAME`: reads a value from stdin and prints the string to put under
/// `secrets: NAME: { sealed: … }`. Needs only the coordinator's public key: from
/// `--recipient`, or fetched from the coordinator.
pub fn seal(opts: ClientOpts, repo: String, recipient: Option<String>) -> u8 {
    block_on(async move {
        let recipient = match recipient {
            Some(r) => r,
            None => {
                let api = Api::new(&opts)?;
                let v = api.get("/api/v1/seal-key", &[]).await?;
                v["recipient"]
                    .as_str()
                    .context("the coordinator sent no recipient")?
                    .to_string()
            }
        };
        let mut value = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut value)
            .context("cannot read the value from stdin")?;
        // A trailing newline from `echo` or a terminal is not part of the secret.
        let value = value.strip_suffix('\n').unwrap_or(&value);
        let value = value.strip_suffix('\r').unwrap_or(value);
        if value.chars().count() < moat_secrets::mask::MIN_SECRET_LEN {
            bail!(
                "secret values must be at least {} characters (shorter ones cannot be masked in logs)",
                moat_secrets::mask::MIN_SECRET_LEN
            );
        }
        let sealed = moat_coordinator::crypto::seal(&recipient, &repo, value)?;
        if opts.json {
            print_json(&json!({ "repo": repo, "sealed": sealed }));
        } else {
            println!("{sealed}");
        }
        Ok(())
    })
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Set a secret; the value is read from stdin (never from the command line).
    Set {
        #[arg(long)]
        repo: String,
        name: String,
    },
    /// List a repository's secrets (names and dates, never values).
    List {
        #[arg(long)]
        repo: String,
    },
    /// Remove a secret.
    Rm {
        #[arg(long)]
        repo: String,
        name: String,
    },
}

pub fn secret(opts: ClientOpts, cmd: SecretCommand) -> u8 {
    block_on(async move {
        let api = Api::new(&opts)?;
        match cmd {
            SecretCommand::Set { repo, name } => {
                let mut value = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut value)
                    .context("cannot read the value from stdin")?;
                let value = value.strip_suffix('\n').unwrap_or(&value);
                let value = value.strip_suffix('\r').unwrap_or(value);
                let v = api
                    .put(
                        &format!("/api/v1/repos/{}/secrets/{}", seg(&repo), seg(&name)),
                        json!({ "value": value }),
                    )
                    .await?;
                if opts.json {
                    print_json(&v);
                } else if v["created"] == true {
                    println!("secret {name} of {repo} created");
                } else {
                    println!("secret {name} of {repo} updated");
                }
            }
            SecretCommand::List { repo } => {
                let v = api
                    .get(&format!("/api/v1/repos/{}/secrets", seg(&repo)), &[])
                    .await?;
                if opts.json {
                    print_json(&v);
                } else {
                    println!("{:<32} {:<14} UPDATED (ms)", "NAME", "KEY");
                    for s in v.as_array().into_iter().flatten() {
                        println!(
                            "{:<32} {:<14} {}",
                            self::s(&s["name"]),
                            self::s(&s["key_id"]),
                            self::s(&s["updated_at"])
                        );
                    }
                }
            }
            SecretCommand::Rm { repo, name } => {
                api.delete(&format!(
                    "/api/v1/repos/{}/secrets/{}",
                    seg(&repo),
                    seg(&name)
                ))
                .await?;
                if !opts.json {
                    println!("secret {name} of {repo} removed");
                }
            }
        }
        Ok(())
    })
}

pub fn approve(opts: ClientOpts, run: i64, stage: Option<String>) -> u8 {
    block_on(async move {
        let api = Api::new(&opts)?;
        let v = api
            .post(
                &format!("/api/v1/runs/{run}/approve"),
                json!({ "stage": stage }),
            )
            .await?;
        if opts.json {
            print_json(&v);
        } else {
            for j in v["stages"].as_array().into_iter().flatten() {
                if let Some(by) = j["approved_by"].as_str().map(clean) {
                    println!("{}: approved by {by}", s(&j["name"]));
                }
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::{clean, utc};

    #[test]
    fn stored_text_cannot_drive_the_terminal() {
        assert_eq!(clean("main"), "main");
        assert_eq!(clean("ünï/feature"), "ünï/feature");
        assert_eq!(clean("a\nb\tc\r"), "a\\nb\\tc\\r");
        assert_eq!(clean("\u{1b}[2Jx\u{7}"), "\\u{1b}[2Jx\\u{7}");
        assert_eq!(clean("a\u{9b}b\u{202e}c"), "a\\u{9b}b\\u{202e}c");
        assert!(!clean("\u{1b}]0;t\u{7}\u{7f}").chars().any(char::is_control));
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(utc(1_767_225_599_999), "2025-12-31 23:59:59");
        assert_eq!(utc(-1000), "1969-12-31 23:59:59");
    }
}
