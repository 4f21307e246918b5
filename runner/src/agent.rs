//! The runner agent: pulls jobs from a coordinator over HTTPS (it opens no port), executes each
//! with [`Engine::run_stage`] — the same path as `moat run` — and streams logs, heartbeats and
//! the result back. Used by `moat runner` on any host and by the embedded runner of `moat up`.
//!
//! Workspaces: each run has one volume on this runner. A job whose needs all ran here uses it as
//! it is; otherwise the coordinator's workspace archive (the source at the commit, or the
//! snapshots of the needs) is extracted into it first. After a passed job that others need, a
//! snapshot is uploaded so that any runner can continue the run.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moat_pipelines::PlannedStage;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::engine::{Engine, Observer, StageInput, StageResult, StageStatus};
use crate::logs::StreamKind;
use crate::protocol::*;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot reach the coordinator: {0}")]
    Http(#[from] reqwest::Error),
    #[error("the coordinator answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("the job's lease was lost")]
    LeaseLost,
}

/// An authenticated HTTP client for one coordinator.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    pub fn new(http: reqwest::Client, base: &str, token: &str) -> Self {
        Client {
            http,
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn check(resp: reqwest::Response) -> Result<reqwest::Response, AgentError> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        if status == reqwest::StatusCode::CONFLICT {
            return Err(AgentError::LeaseLost);
        }
        let text = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<ErrorBody>(&text)
            .map(|b| b.error.message)
            .unwrap_or(text);
        Err(AgentError::Status {
            status: status.as_u16(),
            message,
        })
    }

    pub async fn post<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<R, AgentError> {
        let resp = self
            .http
            .post(self.url(path))
            .bearer_auth(&self.token)
            .timeout(timeout)
            .json(body)
            .send()
            .await?;
        Ok(Self::check(resp).await?.json().await?)
    }

    pub async fn post_empty<B: Serialize>(&self, path: &str, body: &B) -> Result<(), AgentError> {
        let resp = self
            .http
            .post(self.url(path))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(30))
            .json(body)
            .send()
            .await?;
        Self::check(resp).await.map(|_| ())
    }

    pub async fn get_bytes(&self, path: &str) -> Result<Vec<u8>, AgentError> {
        let resp = self
            .http
            .get(self.url(path))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(600))
            .send()
            .await?;
        Ok(Self::check(resp).await?.bytes().await?.to_vec())
    }

    pub async fn put_bytes(&self, path: &str, body: Vec<u8>) -> Result<(), AgentError> {
        let resp = self
            .http
            .put(self.url(path))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(600))
            .header("content-type", "application/x-tar")
            .body(body)
            .send()
            .await?;
        Self::check(resp).await.map(|_| ())
    }
}

/// Exchanges a one-time registration token for this runner's own token.
pub async fn register(
    http: &reqwest::Client,
    base: &str,
    registration_token: &str,
    name: &str,
    slots: u32,
) -> Result<RegisterResponse, AgentError> {
    let client = Client::new(http.clone(), base, "");
    client
        .post(
            paths::REGISTER,
            &RegisterRequest {
                token: registration_token.to_string(),
                name: name.to_string(),
                slots,
            },
            Duration::from_secs(30),
        )
        .await
}

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub slots: usize,
    /// How long one claim request may wait on the coordinator for a job.
    pub claim_wait: Duration,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            slots: 1,
            claim_wait: Duration::from_secs(20),
        }
    }
}

struct RunState {
    /// Jobs of this run executed here: their outputs are in the local volume.
    done_here: HashSet<i64>,
    active: usize,
}

pub struct Agent {
    client: Client,
    engine: Arc<Engine>,
    config: AgentConfig,
    /// Distinguishes this process's Docker resources from those of other runners (or other
    /// coordinators' runners) on the same engine.
    instance: String,
    runs: Mutex<HashMap<i64, RunState>>,
}

impl Agent {
    pub fn new(client: Client, engine: Arc<Engine>, config: AgentConfig) -> Arc<Self> {
        Arc::new(Agent {
            client,
            engine,
            config,
            instance: crate::local::new_run_id()[..6].to_string(),
            runs: Mutex::new(HashMap::new()),
        })
    }

    fn docker_run_id(&self, run_id: i64) -> String {
        format!("{}-{run_id}", self.instance)
    }

    /// Claims and executes jobs on `slots` workers until `shutdown`. Jobs still running at
    /// shutdown are stopped and not reported: their leases expire and the coordinator retries
    /// them elsewhere.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        if let Err(e) = crate::docker::remove_leftovers(self.engine.docker()).await {
            tracing::warn!(error = %e, "could not look for leftovers of earlier runs");
        }
        let mut workers = tokio::task::JoinSet::new();
        for slot in 0..self.config.slots.max(1) {
            let agent = self.clone();
            let shutdown = shutdown.clone();
            workers.spawn(async move { agent.worker(slot, shutdown).await });
        }
        while workers.join_next().await.is_some() {}
        let held: Vec<i64> = self.runs.lock().expect("runs").keys().copied().collect();
        for run in held {
            let _ = self.engine.finish_run(&self.docker_run_id(run)).await;
        }
    }

    async fn worker(self: Arc<Self>, slot: usize, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(500);
        while !shutdown.is_cancelled() {
            let held: Vec<i64> = self.runs.lock().expect("runs").keys().copied().collect();
            let request = ClaimRequest {
                wait_ms: self.config.claim_wait.as_millis() as u64,
                held_runs: held,
            };
            let claim = tokio::select! {
                r = self.client.post::<_, ClaimResponse>(
                    paths::CLAIM,
                    &request,
                    self.config.claim_wait + Duration::from_secs(15),
                ) => r,
                _ = shutdown.cancelled() => break,
            };
            match claim {
                Ok(resp) => {
                    backoff = Duration::from_millis(500);
                    self.release(&resp.release).await;
                    if let Some(job) = resp.job {
                        tracing::info!(slot, job.id = job.job_id, run.id = job.run_id, stage.name = %job.stage.name, "claimed job");
                        self.execute(job, &shutdown).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(slot, error = %e, "claim failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.cancelled() => break,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// Drops the local workspaces of runs the coordinator says are over.
    async fn release(&self, runs: &[i64]) {
        for run in runs {
            let idle = {
                let mut map = self.runs.lock().expect("runs");
                match map.get(run) {
                    Some(state) if state.active == 0 => {
                        map.remove(run);
                        true
                    }
                    _ => false,
                }
            };
            if idle && let Err(e) = self.engine.finish_run(&self.docker_run_id(*run)).await {
                tracing::warn!(run.id = run, error = %e, "could not remove a finished run's resources");
            }
        }
    }

    async fn execute(self: &Arc<Self>, job: JobAssignment, shutdown: &CancellationToken) {
        let started = Instant::now();
        let cancel = shutdown.child_token();
        let lease_lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // The local volume holds what this job needs when every need ran here; a run's first
        // job here starts from an empty volume.
        let fetch = {
            let mut map = self.runs.lock().expect("runs");
            let state = map.entry(job.run_id).or_insert_with(|| RunState {
                done_here: HashSet::new(),
                active: 0,
            });
            state.active += 1;
            state.done_here.is_empty()
                || !job.needs_jobs.iter().all(|n| state.done_here.contains(n))
        };

        // Heartbeats keep the lease and carry cancellation requests.
        let heartbeat = {
            let client = self.client.clone();
            let cancel = cancel.clone();
            let lease_lost = lease_lost.clone();
            let every = Duration::from_millis(job.heartbeat_ms.max(200));
            let job_id = job.job_id;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    match client
                        .post::<_, HeartbeatResponse>(
                            &paths::heartbeat(job_id),
                            &serde_json::json!({}),
                            Duration::from_secs(10),
                        )
                        .await
                    {
                        Ok(r) if r.cancel => cancel.cancel(),
                        Ok(_) => {}
                        Err(AgentError::LeaseLost) => {
                            lease_lost.store(true, std::sync::atomic::Ordering::SeqCst);
                            cancel.cancel();
                            return;
                        }
                        // The coordinator may be restarting; the job goes on.
                        Err(e) => tracing::warn!(job.id = job_id, error = %e, "heartbeat failed"),
                    }
                }
            })
        };

        let (tx, rx) = mpsc::unbounded_channel();
        let shipper = tokio::spawn(ship_logs(self.client.clone(), job.job_id, job.attempt, rx));
        let observer = Arc::new(Shipper {
            tx,
            seq: std::sync::atomic::AtomicI64::new(0),
        });

        let result = self.run_job(&job, fetch, observer.clone(), &cancel).await;

        heartbeat.abort();
        drop(observer);
        let _ = shipper.await;
        {
            let mut map = self.runs.lock().expect("runs");
            if let Some(state) = map.get_mut(&job.run_id) {
                state.active -= 1;
                if result.status == StageStatus::Passed {
                    state.done_here.insert(job.job_id);
                }
            }
        }
        if lease_lost.load(std::sync::atomic::Ordering::SeqCst) || shutdown.is_cancelled() {
            tracing::warn!(
                job.id = job.job_id,
                "not reporting: the lease was lost or the runner is stopping"
            );
            return;
        }
        let outcome = match result.status {
            StageStatus::Passed => WireOutcome::Passed,
            StageStatus::Cancelled => WireOutcome::Cancelled,
            _ => WireOutcome::Failed,
        };
        let body = CompleteRequest {
            attempt: job.attempt,
            outcome,
            exit_code: result.exit_code,
            reason: result.reason.clone(),
            duration_ms: started.elapsed().as_millis() as u64,
            outputs: result.outputs.clone(),
        };
        // The coordinator may be down for a while (restart): keep the result until it is back,
        // for as long as the lease could still be honoured after a restart.
        let deadline = Instant::now() + Duration::from_secs(15 * 60);
        let mut backoff = Duration::from_millis(200);
        loop {
            match self
                .client
                .post_empty(&paths::complete(job.job_id), &body)
                .await
            {
                Ok(()) => break,
                Err(AgentError::LeaseLost) => {
                    tracing::warn!(job.id = job.job_id, "result refused: the lease was lost");
                    break;
                }
                Err(e) if Instant::now() < deadline => {
                    tracing::warn!(job.id = job.job_id, error = %e, "could not report the result; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    tracing::error!(job.id = job.job_id, error = %e, "giving up reporting the result");
                    break;
                }
            }
        }
    }

    async fn run_job(
        &self,
        job: &JobAssignment,
        fetch: bool,
        observer: Arc<Shipper>,
        cancel: &CancellationToken,
    ) -> StageResult {
        let stage = &job.stage;
        let fail = |msg: String| {
            observer.log_line(stage, StreamKind::System, &msg);
            StageResult {
                status: StageStatus::Failed,
                exit_code: None,
                reason: Some(msg),
                duration: Duration::ZERO,
                outputs: serde_json::Value::Null,
            }
        };
        if let Err(e) = self.clear_previous_attempts(job).await {
            return fail(e.to_string());
        }
        let docker_run = self.docker_run_id(job.run_id);
        let handle = match self.engine.ensure_run_resources(&docker_run).await {
            Ok(h) => h,
            Err(e) => return fail(e.to_string()),
        };
        if fetch {
            let archive = match self.client.get_bytes(&paths::workspace(job.job_id)).await {
                Ok(a) => a,
                Err(e) => return fail(format!("cannot fetch the workspace: {e}")),
            };
            if let Err(e) = self.engine.upload_workspace(&handle, archive).await {
                return fail(e.to_string());
            }
        }
        let result = self
            .engine
            .run_stage(
                &handle,
                stage,
                &StageInput {
                    secrets: job.secrets.0.clone(),
                    mask: job.mask.0.iter().map(|(_, v)| v.clone()).collect(),
                    upstream: job.upstream.clone(),
                    job: Some(job_ref(job)),
                },
                &*observer,
                cancel,
            )
            .await;
        if result.status == StageStatus::Passed && job.has_dependants {
            match self.engine.export_workspace(&handle).await {
                Ok(tar) => {
                    if let Err(e) = self
                        .client
                        .put_bytes(&paths::snapshot(job.job_id), tar)
                        .await
                    {
                        tracing::warn!(job.id = job.job_id, error = %e, "could not upload the workspace snapshot");
                    }
                }
                Err(e) => {
                    tracing::warn!(job.id = job.job_id, error = %e, "could not export the workspace")
                }
            }
        }
        result
    }
}

// ---------------------------------------------------------------------------------------------
// One stage, one copy: before attempt N of a job starts, nothing of an earlier attempt may still
// run on this engine.

/// How long the removal of an earlier attempt's containers may take to be confirmed.
const PREVIOUS_ATTEMPT_CONFIRM: Duration = Duration::from_secs(20);

fn job_ref(job: &JobAssignment) -> crate::docker::JobRef {
    crate::docker::JobRef {
        installation: job.installation.clone(),
        job_id: job.job_id,
        attempt: job.attempt,
    }
}

impl Agent {
    /// A job is retried after its lease was lost, but the runner that lost it may still be
    /// running it (it hangs, or it was `kill -9`ed and its containers outlived it). Before a
    /// retry starts, the containers of earlier attempts of the same job on this engine are
    /// removed and confirmed gone; when that cannot be confirmed the attempt fails with the
    /// reason instead of running the stage a second time beside the first.
    async fn clear_previous_attempts(
        &self,
        job: &JobAssignment,
    ) -> Result<(), crate::error::EngineError> {
        if job.attempt <= 1 {
            return Ok(());
        }
        let removed = crate::docker::remove_older_attempts(
            self.engine.docker(),
            &job_ref(job),
            PREVIOUS_ATTEMPT_CONFIRM,
        )
        .await?;
        if removed > 0 {
            tracing::warn!(
                job.id = job.job_id,
                job.attempt = job.attempt,
                removed,
                "removed containers of earlier attempts before retrying"
            );
        }
        Ok(())
    }
}

/// Numbers log lines and hands them to the shipping task.
struct Shipper {
    tx: mpsc::UnboundedSender<WireLogLine>,
    seq: std::sync::atomic::AtomicI64,
}

impl Observer for Shipper {
    fn log_line(&self, _stage: &PlannedStage, stream: StreamKind, line: &str) {
        let seq = self.seq.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let stream = match stream {
            StreamKind::Stdout => "stdout",
            StreamKind::Stderr => "stderr",
            StreamKind::System => "system",
        };
        let _ = self.tx.send(WireLogLine {
            seq,
            stream: stream.to_string(),
            line: line.to_string(),
        });
    }
}

/// Sends log lines in batches; keeps them (up to a bound) while the coordinator is unreachable.
async fn ship_logs(
    client: Client,
    job_id: i64,
    attempt: i64,
    mut rx: mpsc::UnboundedReceiver<WireLogLine>,
) {
    const BATCH: usize = 500;
    const MAX_PENDING: usize = 100_000;
    let mut pending: Vec<WireLogLine> = Vec::new();
    let mut dropped = 0u64;
    let mut open = true;
    let mut backoff = Duration::from_millis(200);
    loop {
        if open && pending.is_empty() {
            match rx.recv().await {
                Some(l) => pending.push(l),
                None => open = false,
            }
            // Let a burst accumulate into one request.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        while open {
            match rx.try_recv() {
                Ok(l) if pending.len() < MAX_PENDING => pending.push(l),
                Ok(_) => dropped += 1,
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => open = false,
            }
        }
        if pending.is_empty() {
            if open {
                continue;
            }
            if dropped > 0 {
                tracing::warn!(
                    job.id = job_id,
                    dropped,
                    "log lines dropped while the coordinator was unreachable"
                );
            }
            return;
        }
        let n = pending.len().min(BATCH);
        let batch = LogBatch {
            attempt,
            lines: pending[..n].to_vec(),
        };
        match client.post_empty(&paths::logs(job_id), &batch).await {
            Ok(()) => {
                pending.drain(..n);
                backoff = Duration::from_millis(200);
            }
            Err(AgentError::LeaseLost) => return,
            Err(e) => {
                tracing::warn!(job.id = job_id, error = %e, "could not ship logs; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                if !open && backoff >= Duration::from_secs(5) {
                    // The job is over and the coordinator has been gone for a while: give up
                    // on the logs rather than hold the result back.
                    return;
                }
            }
        }
    }
}
