//! Benchmark (not a test): the scheduler's throughput and claim latency through the real runner
//! protocol, on SQLite and on Postgres.
//!
//! For each backend, a fresh database (a new SQLite file in a temporary directory, or a new
//! Postgres database that is dropped afterwards) behind the real coordinator — `App` with its
//! background loops and the HTTP server on a `127.0.0.1` port, in this process. Fake runners
//! (registered runner rows, each with several slots; one task per slot) speak the runner
//! protocol over HTTP with `moat_runner::agent::Client`: `POST /api/v1/runner/claim`, then at
//! once `POST /api/v1/runner/jobs/{id}/complete` with `passed`. No containers.
//!
//! 1. **Drain**: 10 000 jobs are queued across 100 repositories (100 runs of one job each per
//!    repository; the job spec is a real planned stage), then the runners drain the queue.
//!    Prints jobs/s, the p50/p99 of queue-to-claim latency (`create_run` returned → the claim
//!    answer arrived at the runner; with a pre-filled queue this is mostly the time spent
//!    waiting behind the rest of the queue), the service time of one claim and one complete
//!    request, how fairly the first claims spread over the repositories, and the CPU time per
//!    job of the coordinator and of the fake runners (which run on their own threads, so the
//!    two can be told apart; CPU time is less disturbed than wall time by other load).
//! 2. **Idle runners**: every slot long-polls with nothing queued; then jobs are created one at
//!    a time at a fixed interval (as `App::start_run` does: `create_run`, then wake the
//!    claimers). Latency = `create_run` returned → the claim answer arrived at the runner.
//!
//! Targets (issue 3): ≥ 1 000 jobs/s on SQLite on a 2-core machine; p99 claim latency ≤ 50 ms
//! when runners are idle.
//!
//! Usage: `scripts/bench-scheduler [--backend sqlite|postgres|both] [--jobs 10000]
//! [--repos 100] [--runners 4] [--slots 4] [--idle-jobs 200] [--idle-interval-ms 20]
//! [--rounds 1] [--postgres URL] [--profile] [--direct]`. The Postgres server URL (a role that may
//! `CREATE DATABASE`) defaults to `$MOAT_BENCH_POSTGRES`, then to
//! `postgres://moat_test:moat_test@127.0.0.1:5432/postgres`. Diagnostics: `--profile` counts
//! the SQL statements the coordinator executes per drained job, by statement; `--direct`
//! drains through the store's `claim_job`/`complete_job` without HTTP (the store's ceiling).
//! `MOAT_LOG` sets the log filter (default `warn`, without sqlx's slow-acquire warnings:
//! queueing saturates the pool on purpose).

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use moat_coordinator::app::{App, Config, Keys, Topic};
use moat_coordinator::store::{
    self, Forge, JobCompletion, JobOutcome, NewJob, NewRepository, NewRun, Repository, Store,
};
use moat_coordinator::{server, tokens};
use moat_pipelines::{Event, EventKind};
use moat_protocol::{ClaimRequest, ClaimResponse, CompleteRequest, WireOutcome, paths};
use moat_runner::agent::Client;
use support::{flag, opt};
use tokio_util::sync::CancellationToken;

const DEFAULT_POSTGRES: &str = "postgres://moat_test:moat_test@127.0.0.1:5432/postgres";
const TARGET_JOBS_PER_SEC: f64 = 1000.0;
const TARGET_IDLE_P99: Duration = Duration::from_millis(50);

fn num(name: &str, default: usize) -> anyhow::Result<usize> {
    match opt(name) {
        Some(v) => v
            .parse()
            .with_context(|| format!("{name} expects a number, got {v:?}")),
        None => Ok(default),
    }
}

#[derive(Debug, Clone)]
struct Opts {
    backends: Vec<&'static str>,
    jobs: usize,
    repos: usize,
    runners: usize,
    slots: usize,
    idle_jobs: usize,
    idle_interval: Duration,
    rounds: usize,
    postgres: String,
    profile: bool,
    direct: bool,
}

impl Opts {
    fn parse() -> anyhow::Result<Opts> {
        let backends = match opt("--backend").as_deref().unwrap_or("both") {
            "sqlite" => vec!["sqlite"],
            "postgres" => vec!["postgres"],
            "both" => vec!["sqlite", "postgres"],
            other => anyhow::bail!("--backend: sqlite, postgres or both, not {other:?}"),
        };
        let postgres = opt("--postgres")
            .or_else(|| std::env::var("MOAT_BENCH_POSTGRES").ok())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| DEFAULT_POSTGRES.to_string());
        let opts = Opts {
            backends,
            jobs: num("--jobs", 10_000)?,
            repos: num("--repos", 100)?.max(1),
            runners: num("--runners", 4)?.max(1),
            slots: num("--slots", 4)?.max(1),
            idle_jobs: num("--idle-jobs", 200)?,
            idle_interval: Duration::from_millis(num("--idle-interval-ms", 20)? as u64),
            rounds: num("--rounds", 1)?.max(1),
            postgres,
            profile: flag("--profile"),
            direct: flag("--direct"),
        };
        Ok(opts)
    }
}

// ---------------------------------------------------------------------------------------------
// Statistics.

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// p50, p99 and max of a sample.
#[derive(Debug, Clone, Copy, Default)]
struct Dist {
    p50: Duration,
    p99: Duration,
    max: Duration,
}

impl Dist {
    fn of(mut v: Vec<Duration>) -> Dist {
        v.sort();
        Dist {
            p50: percentile(&v, 50.0),
            p99: percentile(&v, 99.0),
            max: v.last().copied().unwrap_or_default(),
        }
    }
}

/// CPU time (user + system, all threads) this process has used: the coordinator and the fake
/// runners together. Less sensitive than wall time to other load on the machine.
fn process_cpu() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the command name (which may contain spaces): utime and stime are the 12th
    // and 13th, in clock ticks (USER_HZ, 100 on Linux).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    Duration::from_millis(f.iter().sum::<u64>() * 10)
}

/// Bytes this process has handed to `write` so far (`wchar` of `/proc/self/io`): SQLite's WAL
/// and database writes, for `--profile`.
fn bytes_written() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|l| l.strip_prefix("wchar:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Name prefix of the threads the fake runners run on (their own runtime), so that their CPU
/// can be told apart from the coordinator's.
const RUNNER_THREADS: &str = "bench-runner";

/// The fake runners' runtime: two worker threads named [`RUNNER_THREADS`].
fn runner_runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(RUNNER_THREADS)
            .enable_all()
            .build()
            .expect("the fake runners' runtime")
    })
}

/// CPU time of this process's threads whose name starts with `prefix`.
fn threads_cpu(prefix: &str) -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    let mut ticks = 0u64;
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if !stat[open + 1..close].starts_with(prefix) {
            continue;
        }
        ticks += stat[close + 1..]
            .split_whitespace()
            .skip(11)
            .take(2)
            .filter_map(|v| v.parse::<u64>().ok())
            .sum::<u64>();
    }
    Duration::from_millis(ticks * 10)
}

fn ms(d: Duration) -> String {
    let m = d.as_secs_f64() * 1000.0;
    if m >= 100.0 {
        format!("{m:.0} ms")
    } else {
        format!("{m:.1} ms")
    }
}

// ---------------------------------------------------------------------------------------------
// Counting the coordinator's SQL statements (`--profile`): sqlx reports every statement as a
// tracing event with target `sqlx::query` and the first words of the SQL as `summary`.

#[derive(Default)]
struct QueryCounter {
    counts: Mutex<BTreeMap<String, u64>>,
}

impl QueryCounter {
    fn take(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut *self.counts.lock().expect("counts"))
    }
}

struct CountLayer(Arc<QueryCounter>);

struct Summary(String);

impl tracing::field::Visit for Summary {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "summary" {
            self.0 = value.to_string();
        }
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "summary" {
            self.0 = format!("{value:?}").trim_matches('"').to_string();
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountLayer {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut s = Summary(String::new());
        event.record(&mut s);
        let key = s.0.trim_end_matches(" …").to_string();
        *self
            .0
            .counts
            .lock()
            .expect("counts")
            .entry(key)
            .or_default() += 1;
    }
}

fn init_tracing(profile: bool) -> Option<Arc<QueryCounter>> {
    use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(
            EnvFilter::try_from_env("MOAT_LOG")
                .unwrap_or_else(|_| EnvFilter::new("warn,sqlx::pool::acquire=error")),
        );
    if profile {
        let counter = Arc::new(QueryCounter::default());
        let layer = CountLayer(counter.clone())
            .with_filter(Targets::new().with_target("sqlx::query", LevelFilter::TRACE));
        tracing_subscriber::registry().with(fmt).with(layer).init();
        Some(counter)
    } else {
        tracing_subscriber::registry().with(fmt).init();
        None
    }
}

// ---------------------------------------------------------------------------------------------
// A fresh database per round.

struct BenchDb {
    url: String,
    /// Postgres: (server URL, database name) to drop afterwards.
    pg: Option<(String, String)>,
}

impl BenchDb {
    async fn create(backend: &str, dir: &Path, pg_server: &str) -> anyhow::Result<BenchDb> {
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

    async fn drop_db(self) {
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

struct Coordinator {
    app: Arc<App>,
    base: String,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Coordinator {
    /// As `moat server` does it (`cli/serve.rs`), on a free local port.
    async fn start(url: &str, data_dir: &Path) -> anyhow::Result<Coordinator> {
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

    async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.server).await;
    }
}

/// The spec of every job: a real planned stage of a one-stage pipeline.
fn stage_spec() -> anyhow::Result<String> {
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

fn new_run(repo_id: i64, spec: &str) -> NewRun {
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

// ---------------------------------------------------------------------------------------------
// Fake runners.

/// One claim as the runner saw it.
struct Claim {
    run_id: i64,
    job_id: i64,
    repo: String,
    arrived: Instant,
    /// Request sent → answer received.
    round_trip: Duration,
}

#[derive(Default)]
struct SlotLog {
    claims: Vec<Claim>,
    completes: Vec<Duration>,
    empty_claims: usize,
}

/// Claims and completes at once until `target` jobs are done in total (or `stop`).
async fn slot(
    client: Client,
    wait_ms: u64,
    done: Arc<AtomicUsize>,
    target: usize,
    stop: CancellationToken,
) -> anyhow::Result<SlotLog> {
    let mut log = SlotLog::default();
    let request = ClaimRequest {
        wait_ms,
        held_runs: Vec::new(),
    };
    loop {
        let sent = Instant::now();
        let resp = tokio::select! {
            r = client.post::<_, ClaimResponse>(
                paths::CLAIM,
                &request,
                Duration::from_millis(wait_ms) + Duration::from_secs(30),
            ) => r.context("claim")?,
            _ = stop.cancelled() => return Ok(log),
        };
        let arrived = Instant::now();
        let Some(job) = resp.job else {
            log.empty_claims += 1;
            continue;
        };
        log.claims.push(Claim {
            run_id: job.run_id,
            job_id: job.job_id,
            repo: job.repo.clone(),
            arrived,
            round_trip: arrived - sent,
        });
        let sent = Instant::now();
        client
            .post_empty(
                &paths::complete(job.job_id),
                &CompleteRequest {
                    attempt: job.attempt,
                    outcome: WireOutcome::Passed,
                    exit_code: Some(0),
                    reason: None,
                    duration_ms: 0,
                    outputs: serde_json::Value::Null,
                },
            )
            .await
            .context("complete")?;
        log.completes.push(sent.elapsed());
        if done.fetch_add(1, Ordering::SeqCst) + 1 >= target {
            stop.cancel();
            return Ok(log);
        }
    }
}

/// `runners × slots` slot tasks draining until `target` jobs are done.
fn spawn_slots(
    clients: &[Client],
    slots: usize,
    wait_ms: u64,
    target: usize,
    stop: &CancellationToken,
) -> tokio::task::JoinSet<anyhow::Result<SlotLog>> {
    let done = Arc::new(AtomicUsize::new(0));
    let mut set = tokio::task::JoinSet::new();
    for c in clients {
        for _ in 0..slots {
            set.spawn_on(
                slot(c.clone(), wait_ms, done.clone(), target, stop.clone()),
                runner_runtime().handle(),
            );
        }
    }
    set
}

async fn join_slots(
    mut set: tokio::task::JoinSet<anyhow::Result<SlotLog>>,
) -> anyhow::Result<Vec<SlotLog>> {
    let mut logs = Vec::new();
    while let Some(r) = set.join_next().await {
        logs.push(r??);
    }
    Ok(logs)
}

// ---------------------------------------------------------------------------------------------
// One round on one backend.

#[derive(Debug, Clone)]
struct RoundResult {
    queue_secs: f64,
    drain_secs: f64,
    jobs_per_sec: f64,
    /// CPU of the coordinator (everything but the fake runners' threads) per drained job.
    cpu_per_job: Duration,
    /// CPU of the fake runners per drained job.
    runner_cpu_per_job: Duration,
    /// Bytes this process wrote (`wchar`: files, WAL, and sockets written with `write`) per job.
    written_per_job: u64,
    queue_to_claim: Dist,
    claim_rtt: Dist,
    complete_rtt: Dist,
    first_round_repos: usize,
    idle: Dist,
    idle_empty_claims: usize,
    statements: Option<BTreeMap<String, u64>>,
    /// `--profile`: the same during the idle-runner phase.
    idle_statements: Option<BTreeMap<String, u64>>,
}

async fn round(
    backend: &str,
    opts: &Opts,
    counter: Option<&QueryCounter>,
) -> anyhow::Result<RoundResult> {
    let dir = std::env::temp_dir().join(format!(
        "moat-bench-scheduler-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir)?;
    let db = BenchDb::create(backend, &dir, &opts.postgres).await?;
    let result = async {
        let c = Coordinator::start(&db.url, &dir).await?;
        let r = measure(&c, opts, counter).await;
        c.stop().await;
        r
    }
    .await;
    db.drop_db().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Runner rows with their tokens, and an HTTP client for each.
async fn register_runners(
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

/// `--direct`: the store's own claim/complete calls, without HTTP, authentication or the
/// handlers' extra reads — the ceiling the store sets for the drain.
async fn direct_slot(
    store: Arc<dyn Store>,
    runner_id: i64,
    done: Arc<AtomicUsize>,
    target: usize,
) -> anyhow::Result<SlotLog> {
    let mut log = SlotLog::default();
    while done.load(Ordering::SeqCst) < target {
        let sent = Instant::now();
        let Some(c) = store.claim_job(runner_id, store::now_ms(), 30_000).await? else {
            log.empty_claims += 1;
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        };
        let arrived = Instant::now();
        log.claims.push(Claim {
            run_id: c.run.id,
            job_id: c.job.id,
            repo: c.repo.name.clone(),
            arrived,
            round_trip: arrived - sent,
        });
        let sent = Instant::now();
        store
            .complete_job(
                c.job.id,
                runner_id,
                JobCompletion {
                    outcome: JobOutcome::Passed,
                    exit_code: Some(0),
                    reason: None,
                    outputs: None,
                },
                store::now_ms(),
            )
            .await?;
        log.completes.push(sent.elapsed());
        done.fetch_add(1, Ordering::SeqCst);
    }
    Ok(log)
}

async fn create_repos(store: &dyn Store, n: usize) -> anyhow::Result<Vec<Repository>> {
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

async fn measure(
    c: &Coordinator,
    opts: &Opts,
    counter: Option<&QueryCounter>,
) -> anyhow::Result<RoundResult> {
    let store = c.app.store.clone();
    let spec = stage_spec()?;
    let repos = create_repos(&*store, opts.repos).await?;
    let runners = register_runners(&*store, &c.base, opts.runners, opts.slots).await?;
    let clients: Vec<Client> = runners.iter().map(|(_, c)| c.clone()).collect();

    // Queue: run k of every repository before run k+1 of any; a few creators at once (Postgres
    // commits are group-committed; SQLite serialises them anyway).
    let t = Instant::now();
    let order: Vec<i64> = (0..opts.jobs).map(|i| repos[i % repos.len()].id).collect();
    let created: Vec<(i64, Instant)> = futures_util::stream::iter(order)
        .map(|repo_id| {
            let store = store.clone();
            let run = new_run(repo_id, &spec);
            async move {
                let r = store.create_run(run, store::now_ms()).await?;
                Ok::<_, anyhow::Error>((r.id, Instant::now()))
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let queue_secs = t.elapsed().as_secs_f64();
    let created: HashMap<i64, Instant> = created.into_iter().collect();

    // Drain.
    if let Some(counter) = counter {
        counter.take();
    }
    let stop = CancellationToken::new();
    let t = Instant::now();
    let cpu = process_cpu();
    let runners_cpu = threads_cpu(RUNNER_THREADS);
    let written = bytes_written();
    let set = if opts.direct {
        let done = Arc::new(AtomicUsize::new(0));
        let mut set = tokio::task::JoinSet::new();
        for (id, _) in &runners {
            for _ in 0..opts.slots {
                set.spawn(direct_slot(store.clone(), *id, done.clone(), opts.jobs));
            }
        }
        set
    } else {
        spawn_slots(&clients, opts.slots, 1000, opts.jobs, &stop)
    };
    let logs = join_slots(set).await?;
    let drain = t.elapsed();
    let runners_cpu = threads_cpu(RUNNER_THREADS).saturating_sub(runners_cpu);
    let coordinator_cpu = (process_cpu() - cpu).saturating_sub(runners_cpu);
    let cpu_per_job = coordinator_cpu / opts.jobs.max(1) as u32;
    let runner_cpu_per_job = runners_cpu / opts.jobs.max(1) as u32;
    let statements = counter.map(|c| c.take());
    let written_per_job = (bytes_written() - written) / opts.jobs.max(1) as u64;

    let mut claims: Vec<&Claim> = logs.iter().flat_map(|l| &l.claims).collect();
    anyhow::ensure!(
        claims.len() == opts.jobs,
        "{} claims for {} jobs",
        claims.len(),
        opts.jobs
    );
    let unique: HashSet<i64> = claims.iter().map(|c| c.job_id).collect();
    anyhow::ensure!(
        unique.len() == opts.jobs,
        "a job was handed out twice ({} distinct of {})",
        unique.len(),
        opts.jobs
    );
    claims.sort_by_key(|c| c.arrived);
    let first_round_repos = claims
        .iter()
        .take(repos.len())
        .map(|c| c.repo.as_str())
        .collect::<HashSet<_>>()
        .len();
    let queue_to_claim = Dist::of(
        claims
            .iter()
            .map(|c| c.arrived.saturating_duration_since(created[&c.run_id]))
            .collect(),
    );
    let claim_rtt = Dist::of(claims.iter().map(|c| c.round_trip).collect());
    let complete_rtt = Dist::of(logs.iter().flat_map(|l| l.completes.clone()).collect());

    // Idle runners: every slot long-polls, then jobs arrive one at a time.
    let (idle, idle_empty_claims, idle_statements) = if opts.idle_jobs > 0 {
        let stop = CancellationToken::new();
        let set = spawn_slots(&clients, opts.slots, 20_000, opts.idle_jobs, &stop);
        // Let every slot park in its long poll.
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Some(counter) = counter {
            counter.take();
        }
        let mut created = HashMap::new();
        let mut tick = tokio::time::interval(opts.idle_interval.max(Duration::from_millis(1)));
        for i in 0..opts.idle_jobs {
            tick.tick().await;
            let run = store
                .create_run(new_run(repos[i % repos.len()].id, &spec), store::now_ms())
                .await?;
            created.insert(run.id, Instant::now());
            // What `App::start_run` does after storing a run.
            c.app.publish(Topic::Jobs);
        }
        let logs = tokio::time::timeout(Duration::from_secs(120), join_slots(set))
            .await
            .context("idle-runner jobs were not all claimed within 120 s")??;
        let claims: Vec<&Claim> = logs.iter().flat_map(|l| &l.claims).collect();
        anyhow::ensure!(claims.len() == opts.idle_jobs, "idle phase: claims lost");
        let lat = Dist::of(
            claims
                .iter()
                .map(|c| c.arrived.saturating_duration_since(created[&c.run_id]))
                .collect(),
        );
        let empty = logs.iter().map(|l| l.empty_claims).sum();
        let statements = counter.map(|c| c.take());
        (lat, empty, statements)
    } else {
        Default::default()
    };

    Ok(RoundResult {
        queue_secs,
        drain_secs: drain.as_secs_f64(),
        jobs_per_sec: opts.jobs as f64 / drain.as_secs_f64(),
        cpu_per_job,
        runner_cpu_per_job,
        written_per_job,
        queue_to_claim,
        claim_rtt,
        complete_rtt,
        first_round_repos,
        idle,
        idle_empty_claims,
        idle_statements,
        statements,
    })
}

fn print_round(backend: &str, opts: &Opts, r: &RoundResult) {
    let target = if backend == "sqlite" {
        format!(
            "(target ≥ {TARGET_JOBS_PER_SEC:.0} jobs/s on SQLite: {})",
            if r.jobs_per_sec >= TARGET_JOBS_PER_SEC {
                "met"
            } else {
                "MISSED"
            }
        )
    } else {
        "(no target for Postgres)".to_string()
    };
    println!(
        "  queued {} jobs ({} repositories × {} runs of 1 job) in {:.2} s",
        opts.jobs,
        opts.repos,
        opts.jobs.div_ceil(opts.repos),
        r.queue_secs
    );
    let how = if opts.direct {
        " — DIRECT store calls, no HTTP (diagnostic)"
    } else {
        ""
    };
    println!(
        "  drain{how}: {} jobs by {} slots ({} runners × {}) in {:.2} s = {:.0} jobs/s {target}",
        opts.jobs,
        opts.runners * opts.slots,
        opts.runners,
        opts.slots,
        r.drain_secs,
        r.jobs_per_sec
    );
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "    CPU per job: coordinator {:.0} µs ({cores} cores at this cost ≈ {:.0} jobs/s), fake runners {:.0} µs",
        r.cpu_per_job.as_secs_f64() * 1e6,
        cores as f64 / r.cpu_per_job.as_secs_f64().max(1e-9),
        r.runner_cpu_per_job.as_secs_f64() * 1e6
    );
    println!(
        "    queue-to-claim latency: p50 {}, p99 {}, max {} (pre-filled queue: mostly waiting behind other jobs)",
        ms(r.queue_to_claim.p50),
        ms(r.queue_to_claim.p99),
        ms(r.queue_to_claim.max)
    );
    println!(
        "    claim request: p50 {}, p99 {}; complete request: p50 {}, p99 {}",
        ms(r.claim_rtt.p50),
        ms(r.claim_rtt.p99),
        ms(r.complete_rtt.p50),
        ms(r.complete_rtt.p99)
    );
    println!(
        "    fairness: the first {} claims went to {} distinct repositories",
        opts.repos.min(opts.jobs),
        r.first_round_repos
    );
    if opts.idle_jobs > 0 {
        let ok = if r.idle.p99 <= TARGET_IDLE_P99 {
            "met"
        } else {
            "MISSED"
        };
        println!(
            "  idle runners: {} jobs created one every {} ms while {} slots long-poll",
            opts.idle_jobs,
            opts.idle_interval.as_millis(),
            opts.runners * opts.slots
        );
        println!(
            "    claim latency (create_run returned → claim answer at the runner): p50 {}, p99 {}, max {} (target p99 ≤ {}: {ok}); {} empty long-poll answers",
            ms(r.idle.p50),
            ms(r.idle.p99),
            ms(r.idle.max),
            ms(TARGET_IDLE_P99),
            r.idle_empty_claims
        );
    }
    if let Some(st) = &r.statements {
        let total: u64 = st.values().sum();
        println!(
            "  SQL statements during the drain: {total} = {:.1} per job; {:.1} KiB written per job (write(2) of the whole process: database, WAL and sockets)",
            total as f64 / opts.jobs as f64,
            r.written_per_job as f64 / 1024.0
        );
        print_statements(st, opts.jobs);
    }
    if let Some(st) = &r.idle_statements {
        let total: u64 = st.values().sum();
        println!(
            "  SQL statements during the idle-runner phase: {total} = {:.1} per job",
            total as f64 / opts.idle_jobs.max(1) as f64
        );
        print_statements(st, opts.idle_jobs);
    }
}

fn print_statements(st: &BTreeMap<String, u64>, jobs: usize) {
    let mut by: Vec<(&String, &u64)> = st.iter().collect();
    by.sort_by(|a, b| b.1.cmp(a.1));
    for (summary, n) in by.into_iter().filter(|(_, n)| **n > 0) {
        println!("    {:>6.2}/job  {summary}", *n as f64 / jobs.max(1) as f64);
    }
}

fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let opts = Opts::parse()?;
    let counter = init_tracing(opts.profile);
    server::install_tls_provider();
    println!(
        "bench-scheduler: {} jobs across {} repositories, {} runners × {} slots, {} round(s); {} CPUs",
        opts.jobs,
        opts.repos,
        opts.runners,
        opts.slots,
        opts.rounds,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    let mut all: Vec<(&str, Vec<RoundResult>)> = Vec::new();
    for &backend in &opts.backends {
        let mut results = Vec::new();
        for i in 1..=opts.rounds {
            println!("\n== {backend}, round {i} ==");
            let r = round(backend, &opts, counter.as_deref())
                .await
                .with_context(|| format!("{backend} round {i}"))?;
            print_round(backend, &opts, &r);
            results.push(r);
        }
        all.push((backend, results));
    }

    println!("\n== summary (ranges over {} round(s)) ==", opts.rounds);
    for (backend, rs) in &all {
        let (lo, hi) = range(rs.iter().map(|r| r.jobs_per_sec));
        let (clo, chi) = range(rs.iter().map(|r| r.cpu_per_job.as_secs_f64() * 1e6));
        let (q50lo, q50hi) = range(rs.iter().map(|r| r.queue_to_claim.p50.as_secs_f64() * 1e3));
        let (q99lo, q99hi) = range(rs.iter().map(|r| r.queue_to_claim.p99.as_secs_f64() * 1e3));
        let (i50lo, i50hi) = range(rs.iter().map(|r| r.idle.p50.as_secs_f64() * 1e3));
        let (i99lo, i99hi) = range(rs.iter().map(|r| r.idle.p99.as_secs_f64() * 1e3));
        let target = if *backend == "sqlite" {
            " (target ≥ 1000)"
        } else {
            ""
        };
        let idle = if opts.idle_jobs > 0 {
            format!(
                "; idle claim latency p50 {i50lo:.1}–{i50hi:.1} ms, p99 {i99lo:.1}–{i99hi:.1} ms (target p99 ≤ 50)"
            )
        } else {
            String::new()
        };
        println!(
            "{backend:<8} drain {lo:.0}–{hi:.0} jobs/s{target}, coordinator CPU {clo:.0}–{chi:.0} µs/job; queue-to-claim p50 {q50lo:.0}–{q50hi:.0} ms, p99 {q99lo:.0}–{q99hi:.0} ms{idle}"
        );
    }
    Ok(())
}
