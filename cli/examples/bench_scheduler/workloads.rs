//! The workloads of one round: the drain of a pre-filled queue, then jobs arriving one at a time
//! while every runner slot long-polls; what was measured.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use moat_coordinator::app::Topic;
use moat_coordinator::store;
use moat_runner::agent::Client;
use tokio_util::sync::CancellationToken;

use crate::Opts;
use crate::runners::{Claim, RUNNER_THREADS, direct_slot, join_slots, spawn_slots};
use crate::setup::{Coordinator, create_repos, new_run, register_runners, stage_spec};
use crate::stats::{Dist, QueryCounter, bytes_written, process_cpu, threads_cpu};

// ---------------------------------------------------------------------------------------------
// One round on one backend.

#[derive(Debug, Clone)]
pub(crate) struct RoundResult {
    pub(crate) queue_secs: f64,
    pub(crate) drain_secs: f64,
    pub(crate) jobs_per_sec: f64,
    /// CPU of the coordinator (everything but the fake runners' threads) per drained job.
    pub(crate) cpu_per_job: Duration,
    /// CPU of the fake runners per drained job.
    pub(crate) runner_cpu_per_job: Duration,
    /// Bytes this process wrote (`wchar`: files, WAL, and sockets written with `write`) per job.
    pub(crate) written_per_job: u64,
    pub(crate) queue_to_claim: Dist,
    pub(crate) claim_rtt: Dist,
    pub(crate) complete_rtt: Dist,
    pub(crate) first_round_repos: usize,
    pub(crate) idle: Dist,
    pub(crate) idle_empty_claims: usize,
    pub(crate) statements: Option<BTreeMap<String, u64>>,
    /// `--profile`: the same during the idle-runner phase.
    pub(crate) idle_statements: Option<BTreeMap<String, u64>>,
}

pub(crate) async fn measure(
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
