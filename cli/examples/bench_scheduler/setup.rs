//! Setting up a round: a fresh database, the coordinator under test on a local port, the
//! repositories, the runner rows, and the job every run consists of.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use moat_coordinator::app::{App, Config, Keys};
use moat_coordinator::store::{self, Forge, NewJob, NewRepository, NewRun, Repository, Store};
use moat_coordinator::{server, tokens};
use moat_pipelines::{Event, EventKind};
use moat_runner::agent::Client;
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------------------------------------
// A fresh database per round.

pub(crate) struct BenchDb {
    pub(crate) url: String,
    /// Postgres: (server URL, database name) to drop afterwards.
    pg: Option<(String, String)>,
}

impl BenchDb {
    pub(crate) async fn create(
        backend: &str,
        dir: &Path,
        pg_server: &str,
    ) -> anyhow::Result<BenchDb> {
        if backend == "sqlite" {
            return Ok(BenchDb {
                url: format!("sqlite://{}", dir.join("moat.db").display()),
                pg: None,
            });
        }
        use sqlx::Connection;
        let name = format!("moat_bench_{:016x}", rand::random::<u64>());
        let mut conn = sqlx::PgConnection::connect(pg_server)
            .await
            .with_context(|| format!("cannot connect to {pg_server}"))?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .context("CREATE DATABASE")?;
        let _ = conn.close().await;
        // Replace the database part of the URL, keeping any query string.
        let (head, query) = match pg_server.find('?') {
            Some(q) => pg_server.split_at(q),
            None => (pg_server, ""),
        };
        let scheme_end = head.find("://").map(|i| i + 3).unwrap_or(0);
        let base = match head[scheme_end..].find('/') {
            Some(i) => &head[..scheme_end + i],
            None => head,
        };
        Ok(BenchDb {
            url: format!("{base}/{name}{query}"),
            pg: Some((pg_server.to_string(), name)),
        })
    }

    pub(crate) async fn drop_db(self) {
        if let Some((server, name)) = self.pg {
            use sqlx::Connection;
            match sqlx::PgConnection::connect(&server).await {
                Ok(mut c) => {
                    if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut c)
                    .await
                    {
                        eprintln!("warning: could not drop database {name}: {e}");
                    }
                }
                Err(e) => eprintln!("warning: could not drop database {name}: {e}"),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The coordinator under test.

pub(crate) struct Coordinator {
    pub(crate) app: Arc<App>,
    pub(crate) base: String,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Coordinator {
    /// As `moat server` does it (`cli/serve.rs`), on a free local port.
    pub(crate) async fn start(url: &str, data_dir: &Path) -> anyhow::Result<Coordinator> {
        let store = store::connect(url)
            .await
            .with_context(|| format!("cannot open {url}"))?;
        let listener = server::bind("127.0.0.1:0".parse()?)?;
        let base = format!("http://{}", listener.local_addr()?);
        let mut config = Config::new(data_dir.to_path_buf(), base.clone());
        if store.backend() == "postgres" {
            config.notify_url = Some(url.to_string());
        }
        let keys = Keys::load_or_create(data_dir)?;
        let app = App::new(store, config, keys);
        let shutdown = CancellationToken::new();
        app.start(shutdown.clone()).await?;
        let server = tokio::spawn(server::serve(app.clone(), listener, None, shutdown.clone()));
        Ok(Coordinator {
            app,
            base,
            shutdown,
            server,
        })
    }

    pub(crate) async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.server).await;
    }
}

/// The spec of every job: a real planned stage of a one-stage pipeline.
pub(crate) fn stage_spec() -> anyhow::Result<String> {
    let src = "version: 1\nstages:\n  - name: test\n    kind: test\n    image: moat-test/busybox:1\n    commands: [\"true\"]\n";
    let pipeline = moat_pipelines::parse(src).map_err(|d| anyhow::anyhow!(d.render("bench")))?;
    let event = Event {
        kind: EventKind::Push,
        branch: Some("main".into()),
        target_branch: None,
        tag: None,
        commit: "a".repeat(40),
        repo: "bench".into(),
        run_id: String::new(),
    };
    let plan = moat_pipelines::plan(&pipeline, &event)?;
    let stage = plan.stages.first().context("the plan has a stage")?;
    Ok(serde_json::to_string(stage)?)
}

pub(crate) fn new_run(repo_id: i64, spec: &str) -> NewRun {
    NewRun {
        repo_id,
        event: "push".into(),
        branch: Some("main".into()),
        target_branch: None,
        tag: None,
        commit: "a".repeat(40),
        trusted: true,
        trigger: "webhook".into(),
        actor: Some("bench".into()),
        max_retries: 1,
        jobs: vec![NewJob {
            stage_index: 0,
            name: "test".into(),
            needs: Vec::new(),
            spec: spec.to_string(),
            skip: None,
            approval_required: false,
        }],
        failed: None,
    }
}

/// Runner rows with their tokens, and an HTTP client for each.
pub(crate) async fn register_runners(
    store: &dyn Store,
    base: &str,
    n: usize,
    slots: usize,
) -> anyhow::Result<Vec<(i64, Client)>> {
    let mut runners = Vec::new();
    for i in 0..n {
        let token = tokens::generate(tokens::RUNNER_PREFIX);
        let runner = store
            .create_runner(&format!("bench-{i}"), &tokens::hash(&token), slots as i64)
            .await?;
        let http = server::http_client(None)?;
        runners.push((runner.id, Client::new(http, base, &token)));
    }
    Ok(runners)
}

pub(crate) async fn create_repos(store: &dyn Store, n: usize) -> anyhow::Result<Vec<Repository>> {
    let mut repos = Vec::new();
    for i in 0..n {
        repos.push(
            store
                .create_repo(NewRepository {
                    name: format!("bench-{i:03}"),
                    clone_url: format!("file:///nonexistent/bench-{i:03}.git"),
                    forge: Forge::Github,
                    webhook_secret: tokens::webhook_secret(),
                    concurrency: None,
                    cancel_superseded: false,
                    protected_branches: Vec::new(),
                })
                .await?,
        );
    }
    Ok(repos)
}
