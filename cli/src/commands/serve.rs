//! `moat up` (coordinator + embedded runner on SQLite), `moat server` (coordinator alone) and
//! `moat runner` (a runner on any host with Docker).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use moat_runner::agent::{self, Agent, AgentConfig};
use moat_runner::{Engine, EngineConfig};
use tokio_util::sync::CancellationToken;

use moat_coordinator::app::{App, Config};
use moat_coordinator::server::{self, Tls};
use moat_coordinator::store;
use moat_coordinator::tokens;

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Where the database, mirrors, snapshots and tokens live.
    #[arg(long, default_value = "./moat-data", env = "MOAT_DATA_DIR")]
    pub data_dir: PathBuf,
    #[arg(long, default_value = "127.0.0.1:8080", env = "MOAT_LISTEN")]
    pub listen: SocketAddr,
    /// Jobs the embedded runner executes at once (default: number of CPUs).
    #[arg(long)]
    pub slots: Option<usize>,
    /// The URL forges use to reach this coordinator (default: http://LISTEN).
    #[arg(long)]
    pub public_url: Option<String>,
    /// Register an example repository and run its pipeline at once.
    #[arg(long)]
    pub demo: bool,
    /// The administrator's policy file (gate floors, protected refs, allowances).
    #[arg(long, env = "MOAT_POLICY")]
    pub policy: Option<PathBuf>,
    /// Seconds a runner may go without a heartbeat before its job is given to another.
    #[arg(long, default_value_t = 30)]
    pub lease_secs: u64,
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    #[arg(long, default_value = "./moat-data", env = "MOAT_DATA_DIR")]
    pub data_dir: PathBuf,
    /// `sqlite:PATH` or `postgres://…` (default: SQLite in the data directory).
    #[arg(long, env = "MOAT_DATABASE_URL")]
    pub database_url: Option<String>,
    #[arg(long, default_value = "127.0.0.1:8080", env = "MOAT_LISTEN")]
    pub listen: SocketAddr,
    #[arg(long)]
    pub public_url: Option<String>,
    /// PEM certificate chain: serve HTTPS.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Seconds a runner may go without a heartbeat before its job is given to another.
    #[arg(long, default_value_t = 30)]
    pub lease_secs: u64,
    /// The administrator's policy file (gate floors, protected refs, allowances).
    #[arg(long, env = "MOAT_POLICY")]
    pub policy: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunnerArgs {
    /// The coordinator's URL.
    #[arg(long, env = "MOAT_SERVER")]
    pub server: String,
    /// A one-time registration token (`moat_g_…`) or this runner's own token (`moat_r_…`).
    #[arg(long, env = "MOAT_RUNNER_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Jobs executed at once (default: number of CPUs).
    #[arg(long)]
    pub slots: Option<usize>,
    #[arg(long)]
    pub name: Option<String>,
    /// Where the runner keeps the token it got at registration.
    #[arg(long, default_value = "./moat-runner")]
    pub state_dir: PathBuf,
    /// A CA certificate (PEM) to trust for the coordinator's HTTPS.
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    /// The vulnerability database scan stages use (see `moat db update`).
    #[arg(long, env = "MOAT_VULN_DB", default_value = "./moat-runner/vulndb")]
    pub vuln_db: PathBuf,
}

fn cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Runtime::new()?)
}

/// Cancels `token` on Ctrl-C or SIGTERM.
pub(crate) fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async {
                match term.as_mut() {
                    Some(t) => { t.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => {}
        }
        eprintln!("moat: shutting down");
        token.cancel();
    });
}

/// Makes sure the data directory exists. One Moat creates is private (mode 0700); an existing
/// one keeps the mode its owner gave it.
fn prepare_data_dir(dir: &Path) -> anyhow::Result<()> {
    match data_dir_state(std::fs::metadata(dir)) {
        DataDir::Exists => Ok(()),
        DataDir::NotADirectory => anyhow::bail!(
            "the data directory {} exists but is not a directory",
            dir.display()
        ),
        DataDir::Unreadable(e) => {
            Err(e).with_context(|| format!("cannot use the data directory {}", dir.display()))
        }
        DataDir::Missing => create_private_dir(dir),
    }
}

/// What is at the data directory's path.
#[derive(Debug)]
enum DataDir {
    Exists,
    Missing,
    NotADirectory,
    Unreadable(std::io::Error),
}

fn data_dir_state(meta: std::io::Result<std::fs::Metadata>) -> DataDir {
    match meta {
        Ok(m) if m.is_dir() => DataDir::Exists,
        Ok(_) => DataDir::NotADirectory,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => DataDir::Missing,
        Err(e) => DataDir::Unreadable(e),
    }
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create the directory {}", parent.display()))?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {
            // The umask may have taken bits away; the directory is ours, so say exactly.
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).with_context(
                || {
                    format!(
                        "cannot set the mode of the data directory {}",
                        dir.display()
                    )
                },
            )
        }
        // Made by someone else meanwhile: theirs, as it is.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => {
            Err(e).with_context(|| format!("cannot create the data directory {}", dir.display()))
        }
    }
}

pub(crate) fn report(result: anyhow::Result<()>) -> u8 {
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("moat: {e:#}");
            1
        }
    }
}

pub fn up(args: UpArgs) -> u8 {
    report(runtime().and_then(|rt| rt.block_on(up_async(args))))
}

pub fn server(args: ServerArgs) -> u8 {
    report(runtime().and_then(|rt| rt.block_on(server_async(args))))
}

pub fn runner(args: RunnerArgs) -> u8 {
    report(runtime().and_then(|rt| rt.block_on(runner_async(args))))
}

async fn start_coordinator(
    data_dir: &Path,
    database_url: &str,
    public_url: String,
    lease: Duration,
    policy: Option<&Path>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Arc<App>> {
    let policy = match policy {
        Some(p) => moat_coordinator::policy::AdminPolicy::load(p)?,
        None => moat_coordinator::policy::AdminPolicy::default(),
    };
    let store = match store::connect(database_url).await {
        Ok(s) => s,
        // Says which file and why on its own.
        Err(e @ store::StoreError::Damaged { .. }) => return Err(e.into()),
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!(
                "cannot open the database {}",
                redact_url(database_url)
            )));
        }
    };
    if let Some(token) = server::ensure_admin_token(&*store, data_dir).await? {
        println!(
            "moat: admin token (shown once; also in {}): {token}",
            data_dir.join("admin-token").display()
        );
    }
    let mut config = Config::new(data_dir.to_path_buf(), public_url);
    if store.backend() == "postgres" {
        config.notify_url = Some(database_url.to_string());
    }
    config.lease = lease;
    config.policy = policy;
    config.heartbeat = (lease / 6).max(Duration::from_millis(200));
    config.installation = store.installation_id().await?;
    let keys = moat_coordinator::app::Keys::load_or_create(data_dir)?;
    let app = App::new(store, config, keys);
    app.start(shutdown.clone()).await?;
    Ok(app)
}

/// A database URL fit for a message: the password of `scheme://user:password@host/…` hidden.
fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let authority_end = url[scheme_end..]
        .find('/')
        .map_or(url.len(), |i| scheme_end + i);
    match url[scheme_end..authority_end].rfind('@') {
        Some(at) => {
            let userinfo = &url[scheme_end..scheme_end + at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end],
                    &userinfo[..colon],
                    &url[scheme_end + at..]
                ),
                None => url.to_string(),
            }
        }
        None => url.to_string(),
    }
}

fn sqlite_url(data_dir: &Path) -> String {
    format!("sqlite://{}", data_dir.join("moat.db").display())
}

async fn server_async(args: ServerArgs) -> anyhow::Result<()> {
    prepare_data_dir(&args.data_dir)?;
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let tls = args
        .tls_cert
        .clone()
        .zip(args.tls_key.clone())
        .map(|(cert, key)| Tls { cert, key });
    let listener = server::bind(args.listen)?;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let public = args
        .public_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{addr}"));
    let url = args
        .database_url
        .clone()
        .unwrap_or_else(|| sqlite_url(&args.data_dir));
    let app = start_coordinator(
        &args.data_dir,
        &url,
        public,
        Duration::from_secs(args.lease_secs.max(1)),
        args.policy.as_deref(),
        &shutdown,
    )
    .await?;
    println!(
        "moat: coordinator listening on {scheme}://{addr} ({} store)",
        app.store.backend()
    );
    server::serve(app, listener, tls, shutdown).await
}

/// The token of the embedded runner, created on first start and kept in the data directory.
async fn embedded_runner_token(app: &App, data_dir: &Path, slots: usize) -> anyhow::Result<String> {
    let path = data_dir.join("embedded-runner-token");
    if let Ok(token) = std::fs::read_to_string(&path) {
        let token = token.trim().to_string();
        if app
            .store
            .runner_by_token(&tokens::hash(&token))
            .await?
            .is_some()
        {
            return Ok(token);
        }
    }
    let token = tokens::generate(tokens::RUNNER_PREFIX);
    app.store
        .create_runner("embedded", &tokens::hash(&token), slots as i64)
        .await?;
    server::write_secret_file(&path, &token)?;
    Ok(token)
}

async fn up_async(args: UpArgs) -> anyhow::Result<()> {
    prepare_data_dir(&args.data_dir)?;
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let listener = server::bind(args.listen)?;
    let addr = listener.local_addr()?;
    let base = format!("http://{addr}");
    let public = args.public_url.clone().unwrap_or_else(|| base.clone());
    let app = start_coordinator(
        &args.data_dir,
        &sqlite_url(&args.data_dir),
        public,
        Duration::from_secs(args.lease_secs.max(1)),
        args.policy.as_deref(),
        &shutdown,
    )
    .await?;
    let slots = args.slots.unwrap_or_else(cpus).max(1);
    let serve = tokio::spawn(server::serve(app.clone(), listener, None, shutdown.clone()));
    let proxy_dir = super::proxy::dir_of(&args.data_dir);
    let exe = std::env::current_exe().context("cannot find the moat executable")?;
    let proxy_task = match super::proxy::supervise(exe, proxy_dir, shutdown.clone()).await {
        Ok(task) => Some(task),
        Err(e) => {
            eprintln!("moat: warning: no edge proxy ({e:#}); deploys to docker environments fail");
            None
        }
    };
    println!("moat: up at {base} (data in {})", args.data_dir.display());

    let mut agent_task = None;
    match moat_runner::docker::connect().await {
        Ok(docker) => {
            let token = embedded_runner_token(&app, &args.data_dir, slots).await?;
            let client = agent::Client::new(server::http_client(None)?, &base, &token);
            let engine = Arc::new(Engine::new(
                docker,
                EngineConfig {
                    vuln_db: Some(args.data_dir.join("vulndb")),
                    ..EngineConfig::default()
                },
            ));
            let agent = Agent::new(
                client,
                engine,
                AgentConfig {
                    slots,
                    ..AgentConfig::default()
                },
            );
            println!("moat: embedded runner with {slots} slot(s)");
            let stop = shutdown.clone();
            agent_task = Some(tokio::spawn(agent.run(stop)));
        }
        Err(e) => eprintln!(
            "moat: warning: no embedded runner ({e}); jobs wait for a remote `moat runner`"
        ),
    }

    if args.demo {
        match crate::demo::start(&app, &args.data_dir).await {
            Ok(run) => crate::demo::follow(&app, run, &base, &shutdown).await,
            Err(e) => eprintln!("moat: the demo could not start: {e:#}"),
        }
    }

    let served = serve.await;
    if let Some(t) = agent_task {
        let _ = t.await;
    }
    if let Some(t) = proxy_task {
        let _ = t.await;
    }
    served??;
    Ok(())
}

async fn runner_async(args: RunnerArgs) -> anyhow::Result<()> {
    let http = server::http_client(args.ca_cert.as_deref())?;
    let slots = args.slots.unwrap_or_else(cpus).max(1);
    let name = args.name.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "runner".to_string())
    });
    let saved = args.state_dir.join("runner-token");
    let token = if args.token.starts_with(tokens::REGISTRATION_PREFIX) {
        match std::fs::read_to_string(&saved) {
            Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
            _ => {
                let reg = agent::register(&http, &args.server, &args.token, &name, slots as u32)
                    .await
                    .context("registration failed")?;
                server::write_secret_file(&saved, &reg.token)?;
                println!(
                    "moat: registered as runner {} (token saved in {})",
                    reg.runner_id,
                    saved.display()
                );
                reg.token
            }
        }
    } else {
        args.token.clone()
    };
    let docker = moat_runner::docker::connect().await?;
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let engine = Arc::new(Engine::new(
        docker,
        EngineConfig {
            vuln_db: Some(args.vuln_db.clone()),
            ..EngineConfig::default()
        },
    ));
    let agent = Agent::new(
        agent::Client::new(http, &args.server, &token),
        engine,
        AgentConfig {
            slots,
            ..AgentConfig::default()
        },
    );
    println!(
        "moat: runner {name} with {slots} slot(s) polling {}",
        args.server
    );
    agent.run(shutdown).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_lose_their_password() {
        assert_eq!(
            redact_url("postgres://moat:s3cret@db.local:5432/moat?sslmode=require"),
            "postgres://moat:***@db.local:5432/moat?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://moat@db.local/moat"),
            "postgres://moat@db.local/moat"
        );
        assert_eq!(
            redact_url("sqlite:///var/lib/moat/moat.db"),
            "sqlite:///var/lib/moat/moat.db"
        );
        assert_eq!(redact_url("moat.db"), "moat.db");
        // An @ in the path is not userinfo.
        assert_eq!(redact_url("sqlite:///a@b/moat.db"), "sqlite:///a@b/moat.db");
    }

    #[test]
    fn data_dir_states() {
        let dir = std::env::temp_dir().join(format!("moat-dd-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(matches!(
            data_dir_state(std::fs::metadata(&dir)),
            DataDir::Missing
        ));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(matches!(
            data_dir_state(std::fs::metadata(&dir)),
            DataDir::Exists
        ));
        let file = dir.join("f");
        std::fs::write(&file, b"").unwrap();
        assert!(matches!(
            data_dir_state(std::fs::metadata(&file)),
            DataDir::NotADirectory
        ));
        assert!(matches!(
            data_dir_state(std::fs::metadata(file.join("below"))),
            DataDir::Unreadable(_)
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
