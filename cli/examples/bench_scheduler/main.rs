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

#[path = "../support/mod.rs"]
mod support;

mod report;
mod runners;
mod setup;
mod stats;
mod workloads;

use std::time::Duration;

use anyhow::Context;
use moat_coordinator::server;
use report::{print_round, range};
use setup::{BenchDb, Coordinator};
use stats::{QueryCounter, init_tracing};
use support::{flag, opt};
use workloads::{RoundResult, measure};

const DEFAULT_POSTGRES: &str = "postgres://moat_test:moat_test@127.0.0.1:5432/postgres";

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
