//! The fake runners: slots that claim and at once complete jobs through the runner protocol
//! over HTTP (or, `--direct`, through the store), on their own runtime.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use moat_coordinator::store::{self, JobCompletion, JobOutcome, Store};
use moat_protocol::{ClaimRequest, ClaimResponse, CompleteRequest, WireOutcome, paths};
use moat_runner::agent::Client;
use tokio_util::sync::CancellationToken;

/// Name prefix of the threads the fake runners run on (their own runtime), so that their CPU
/// can be told apart from the coordinator's.
pub(crate) const RUNNER_THREADS: &str = "bench-runner";

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

// ---------------------------------------------------------------------------------------------
// Fake runners.

/// One claim as the runner saw it.
pub(crate) struct Claim {
    pub(crate) run_id: i64,
    pub(crate) job_id: i64,
    pub(crate) repo: String,
    pub(crate) arrived: Instant,
    /// Request sent → answer received.
    pub(crate) round_trip: Duration,
}

#[derive(Default)]
pub(crate) struct SlotLog {
    pub(crate) claims: Vec<Claim>,
    pub(crate) completes: Vec<Duration>,
    pub(crate) empty_claims: usize,
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
pub(crate) fn spawn_slots(
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

pub(crate) async fn join_slots(
    mut set: tokio::task::JoinSet<anyhow::Result<SlotLog>>,
) -> anyhow::Result<Vec<SlotLog>> {
    let mut logs = Vec::new();
    while let Some(r) = set.join_next().await {
        logs.push(r??);
    }
    Ok(logs)
}

/// `--direct`: the store's own claim/complete calls, without HTTP, authentication or the
/// handlers' extra reads — the ceiling the store sets for the drain.
pub(crate) async fn direct_slot(
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
