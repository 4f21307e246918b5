//! The runner protocol (see `docs/runner-protocol.md`): registration with a one-time token,
//! long-polled claims, heartbeats that carry cancellation, log batches, results, and the
//! workspace archives that let any runner continue a run. What a claim decides (a refused
//! deploy, the secrets granted and masked) is `claims.rs`'s; this module reads what those
//! decisions need, opens the secrets and records the outcome.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use futures_util::StreamExt;
use moat_pipelines::{EventKind, PlannedStage, SecretDecl, SecretSource, StageKind};
use moat_protocol::*;
use tokio::io::AsyncWriteExt;

use super::{ApiError, ApiResult, RunnerAuth};
use crate::app::{AppState, Topic};
use crate::claims::{self, ClaimedJob, RunFacts, RunJob};
use crate::store::{
    Claimed, Job, JobCompletion, JobOutcome, JobStatus, NewLogLine, Registration, Run, now_ms,
};
use crate::tokens;

/// Longest a claim may wait for a job.
const MAX_CLAIM_WAIT: Duration = Duration::from_secs(30);
/// Log lines are cut to this many bytes.
const MAX_LINE: usize = 64 << 10;
const MAX_LINES_PER_BATCH: usize = 5000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(paths::REGISTER, post(register))
        .route("/api/v1/runner/jobs/{id}/heartbeat", post(heartbeat))
        .route("/api/v1/runner/jobs/{id}/logs", post(logs))
        .route("/api/v1/runner/jobs/{id}/complete", post(complete))
}

/// Routes that may take long: claims wait for work, archives can be large.
pub fn streaming_routes(max_snapshot: u64) -> Router<AppState> {
    Router::new()
        .route(paths::CLAIM, post(claim))
        .route("/api/v1/runner/jobs/{id}/workspace", get(workspace))
        .route(
            "/api/v1/runner/jobs/{id}/snapshot",
            put(snapshot).layer(DefaultBodyLimit::max(max_snapshot as usize)),
        )
}

async fn register(
    State(state): State<AppState>,
    Json(req): Json<RegisterRequest>,
) -> ApiResult<Json<RegisterResponse>> {
    let outcome = if req.token.len() > tokens::MAX_TOKEN_LEN
        || !req.token.starts_with(tokens::REGISTRATION_PREFIX)
    {
        Registration::Unknown
    } else {
        state
            .store
            .consume_registration_token(&tokens::hash(&req.token), now_ms())
            .await?
    };
    match outcome {
        Registration::Accepted => {}
        Registration::Expired => {
            return Err(ApiError::unauthorized(
                "this registration token has expired; create a new one (moat runner-token)",
            ));
        }
        Registration::Unknown => {
            return Err(ApiError::unauthorized(
                "invalid, revoked or already used registration token",
            ));
        }
    }
    let name: String = req.name.chars().take(100).collect();
    let slots = i64::from(req.slots.clamp(1, 1024));
    let token = tokens::generate(tokens::RUNNER_PREFIX);
    let runner = state
        .store
        .create_runner(&name, &tokens::hash(&token), slots)
        .await?;
    state
        .store
        .audit(
            &format!("runner:{}", runner.id),
            "runner.registered",
            None,
            &serde_json::json!({ "name": name, "slots": slots }).to_string(),
            now_ms(),
        )
        .await?;
    tracing::info!(runner.id = runner.id, runner.name = %name, "runner registered");
    Ok(Json(RegisterResponse {
        runner_id: runner.id,
        token,
    }))
}

/// The run as the claim decisions see it ([`claims::RunFacts`]).
fn run_facts(run: &Run) -> ApiResult<RunFacts<'_>> {
    let event = EventKind::parse(&run.event)
        .ok_or_else(|| ApiError::internal(format!("run {} has event {:?}", run.id, run.event)))?;
    Ok(RunFacts {
        event,
        trusted: run.trusted,
        branch: run.branch.as_deref(),
        tag: run.tag.as_deref(),
    })
}

/// Why the claimed job is refused, if it is a deploy the gate refuses
/// ([`claims::deploy_refusal`]).
fn deploy_refusal(
    state: &AppState,
    c: &Claimed,
    stage: &PlannedStage,
    jobs: &[Job],
) -> ApiResult<Option<String>> {
    if stage.kind != StageKind::Deploy {
        return Ok(None);
    }
    let run = run_facts(&c.run)?;
    let run_jobs: Vec<RunJob> = jobs
        .iter()
        .map(|j| RunJob {
            stage_index: j.stage_index,
            name: &j.name,
            needs: &j.needs,
            kind: serde_json::from_str::<PlannedStage>(&j.spec)
                .map(|s| s.kind)
                .ok(),
            passed: j.status == JobStatus::Passed,
        })
        .collect();
    let job = ClaimedJob {
        stage,
        needs: &c.job.needs,
        approved: c.job.approved_by.is_some(),
    };
    Ok(claims::deploy_refusal(&state.config.policy, &run, &job, &run_jobs).map(|r| r.to_string()))
}

/// Opens one secret's value.
async fn open_secret(state: &AppState, c: &Claimed, decl: &SecretDecl) -> Result<String, String> {
    match &decl.source {
        SecretSource::Sealed(sealed) => state
            .keys
            .seal
            .open(sealed, &c.repo.name)
            .map_err(|e| e.to_string()),
        SecretSource::Store => crate::secrets::open(state, c.repo.id, &decl.name).await,
    }
}

/// The secrets a stage may have, opened, and the values of the run's other granted secrets
/// to mask in its output (decided by [`claims::grants`]). Every grant is recorded in the
/// audit trail (names only).
async fn grant_secrets(
    state: &AppState,
    c: &Claimed,
    stage: &PlannedStage,
    run_stages: &[PlannedStage],
) -> ApiResult<(SecretValues, SecretValues)> {
    let protected = claims::protected_ref(&state.config.policy, &run_facts(&c.run)?);
    let grants = claims::grants(stage, run_stages, c.run.trusted, protected);
    if grants.is_empty() {
        return Ok((SecretValues::default(), SecretValues::default()));
    }
    let mut granted = Vec::new();
    let mut withheld_list = Vec::new();
    for grant in &grants.own {
        let decl = grant.decl;
        if let Some(why) = grant.withheld {
            withheld_list.push((decl.name.clone(), why));
            continue;
        }
        match open_secret(state, c, decl).await {
            Ok(v) => granted.push((decl.name.clone(), v)),
            Err(why) => {
                tracing::warn!(run.id = c.run.id, secret = %decl.name, reason = %why, "secret not available");
                withheld_list.push((decl.name.clone(), "not available"));
            }
        }
    }
    let mut mask = Vec::new();
    for decl in grants.mask {
        match open_secret(state, c, decl).await {
            Ok(v) => mask.push((decl.name.clone(), v)),
            // The stage it is granted to will say so; nothing to mask.
            Err(why) => {
                tracing::debug!(run.id = c.run.id, secret = %decl.name, reason = %why, "secret to mask not available")
            }
        }
    }
    let names: Vec<&str> = granted.iter().map(|(n, _)| n.as_str()).collect();
    let masked: Vec<&str> = mask.iter().map(|(n, _)| n.as_str()).collect();
    let withheld_view: Vec<serde_json::Value> = withheld_list
        .iter()
        .map(|(n, why)| serde_json::json!({ "name": n, "reason": why }))
        .collect();
    state
        .store
        .audit(
            &format!("runner:{}", c.job.runner_id.unwrap_or_default()),
            "secret.used",
            Some(c.run.id),
            &serde_json::json!({
                "job": c.job.id,
                "stage": stage.name,
                "granted": names,
                "withheld": withheld_view,
                "masked": masked,
            })
            .to_string(),
            now_ms(),
        )
        .await?;
    Ok((SecretValues(granted), SecretValues(mask)))
}

/// Turns a claimed job into what the runner executes.
async fn assignment(
    state: &AppState,
    c: Claimed,
    mut stage: PlannedStage,
    jobs: &[crate::store::Job],
) -> ApiResult<JobAssignment> {
    // Every stage of the run, as planned (a corrupt spec is caught when its job is claimed).
    let run_stages: Vec<PlannedStage> = jobs
        .iter()
        .filter_map(|j| serde_json::from_str(&j.spec).ok())
        .collect();
    let (secrets, mask) = grant_secrets(state, &c, &stage, &run_stages).await?;
    for (k, v) in stage.env.iter_mut() {
        if k == "MOAT_RUN_ID" {
            *v = c.run.id.to_string();
        }
    }
    let needs_jobs = c
        .job
        .needs
        .iter()
        .filter_map(|i| jobs.iter().find(|j| j.stage_index == *i).map(|j| j.id))
        .collect();
    let has_dependants = jobs.iter().any(|j| j.needs.contains(&c.job.stage_index));
    // The outputs of everything this job needs, transitively, nearest first.
    let mut upstream = Vec::new();
    let mut queue: std::collections::VecDeque<i64> = c.job.needs.iter().copied().collect();
    let mut seen = std::collections::HashSet::new();
    while let Some(i) = queue.pop_front() {
        if !seen.insert(i) {
            continue;
        }
        if let Some(need) = jobs.iter().find(|j| j.stage_index == i) {
            if let Some(out) = &need.outputs {
                upstream.push((need.name.clone(), out.clone()));
            }
            queue.extend(need.needs.iter().copied());
        }
    }
    Ok(JobAssignment {
        job_id: c.job.id,
        attempt: c.job.attempt,
        installation: state.config.installation.clone(),
        run_id: c.run.id,
        run_number: c.run.number,
        repo: c.repo.name,
        stage,
        needs_jobs,
        has_dependants,
        lease_ms: state.config.lease.as_millis() as u64,
        heartbeat_ms: state.config.heartbeat.as_millis() as u64,
        secrets,
        mask,
        upstream,
    })
}

async fn claim(
    State(state): State<AppState>,
    RunnerAuth(runner): RunnerAuth,
    Json(req): Json<ClaimRequest>,
) -> ApiResult<Json<ClaimResponse>> {
    let now = now_ms();
    state.store.touch_runner(runner.id, now).await?;
    let mut release = Vec::new();
    for run in req.held_runs.iter().take(1000) {
        match state.store.get_run(*run).await {
            Ok(r) if r.status.is_finished() => release.push(*run),
            Ok(_) => {}
            Err(crate::store::StoreError::NotFound) => release.push(*run),
            Err(e) => return Err(e.into()),
        }
    }
    let wait = Duration::from_millis(req.wait_ms).min(MAX_CLAIM_WAIT);
    let deadline = tokio::time::Instant::now() + wait;
    let lease = state.config.lease.as_millis() as i64;
    loop {
        // Register for wake-ups before looking, so a job stored in between is not missed.
        let notified = state.jobs_ready.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(c) = state.store.claim_job(runner.id, now_ms(), lease).await? {
            tracing::info!(
                job.id = c.job.id,
                run.id = c.run.id,
                runner.id = runner.id,
                "job claimed"
            );
            let stage: PlannedStage = serde_json::from_str(&c.job.spec).map_err(|e| {
                ApiError::internal(format!("job {} has a corrupt spec: {e}", c.job.id))
            })?;
            let jobs = state.store.jobs_of_run(c.run.id).await?;
            {
                if let Some(reason) = deploy_refusal(&state, &c, &stage, &jobs)? {
                    tracing::warn!(job.id = c.job.id, run.id = c.run.id, %reason, "deploy refused");
                    state
                        .store
                        .audit(
                            "coordinator",
                            "gate.deploy",
                            Some(c.run.id),
                            &serde_json::json!({
                                "stage": stage.name,
                                "allowed": false,
                                "reason": reason,
                                "event": c.run.event,
                                "trusted": c.run.trusted,
                            })
                            .to_string(),
                            now_ms(),
                        )
                        .await?;
                    state
                        .store
                        .complete_job(
                            c.job.id,
                            runner.id,
                            JobCompletion {
                                outcome: JobOutcome::Failed,
                                exit_code: None,
                                reason: Some(reason),
                                outputs: None,
                            },
                            now_ms(),
                        )
                        .await?;
                    state.remove_snapshots_if_finished(c.run.id).await;
                    state.publish(Topic::Jobs);
                    state.publish(Topic::Logs);
                    continue;
                }
            }
            let job = assignment(&state, c, stage, &jobs).await?;
            return Ok(Json(ClaimResponse {
                job: Some(job),
                release,
            }));
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep_until(deadline) => {
                return Ok(Json(ClaimResponse { job: None, release }));
            }
        }
    }
}

/// The job, if `runner` holds it now.
async fn held_job(state: &AppState, runner_id: i64, job_id: i64) -> ApiResult<Job> {
    let job = state.store.get_job(job_id).await?;
    if job.runner_id != Some(runner_id) || job.status != JobStatus::Running {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "lease_lost",
            "this runner does not hold the job",
        ));
    }
    Ok(job)
}

async fn heartbeat(
    State(state): State<AppState>,
    RunnerAuth(runner): RunnerAuth,
    Path(job_id): Path<i64>,
) -> ApiResult<Json<HeartbeatResponse>> {
    let now = now_ms();
    state.store.touch_runner(runner.id, now).await?;
    let reply = state
        .store
        .heartbeat(
            job_id,
            runner.id,
            now,
            state.config.lease.as_millis() as i64,
        )
        .await?;
    Ok(Json(HeartbeatResponse {
        cancel: reply.cancel_requested,
    }))
}

async fn logs(
    State(state): State<AppState>,
    RunnerAuth(runner): RunnerAuth,
    Path(job_id): Path<i64>,
    Json(batch): Json<LogBatch>,
) -> ApiResult<StatusCode> {
    let job = held_job(&state, runner.id, job_id).await?;
    if batch.attempt != job.attempt {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "lease_lost",
            "logs of an earlier attempt",
        ));
    }
    if batch.lines.len() > MAX_LINES_PER_BATCH {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_LINES_PER_BATCH} lines per batch"
        )));
    }
    let lines: Vec<NewLogLine> = batch
        .lines
        .into_iter()
        .map(|l| {
            let mut line = l.line;
            if line.len() > MAX_LINE {
                let mut cut = MAX_LINE;
                while !line.is_char_boundary(cut) {
                    cut -= 1;
                }
                line.truncate(cut);
            }
            let stream = match l.stream.as_str() {
                "stdout" | "stderr" | "system" => l.stream,
                _ => "stdout".to_string(),
            };
            NewLogLine {
                seq: l.seq,
                stream,
                line,
            }
        })
        .collect();
    state
        .store
        .append_logs(job_id, job.attempt, &lines, now_ms())
        .await?;
    state.publish(Topic::Logs);
    Ok(StatusCode::NO_CONTENT)
}

async fn complete(
    State(state): State<AppState>,
    RunnerAuth(runner): RunnerAuth,
    Path(job_id): Path<i64>,
    Json(req): Json<CompleteRequest>,
) -> ApiResult<StatusCode> {
    let job = held_job(&state, runner.id, job_id).await?;
    if req.attempt != job.attempt {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "lease_lost",
            "result of an earlier attempt",
        ));
    }
    let outcome = match req.outcome {
        WireOutcome::Passed => JobOutcome::Passed,
        WireOutcome::Failed => JobOutcome::Failed,
        WireOutcome::Cancelled => JobOutcome::Cancelled,
    };
    let reason = req.reason.map(|r| r.chars().take(2000).collect());
    let req_outputs = (!req.outputs.is_null()).then(|| req.outputs.to_string());
    state
        .store
        .complete_job(
            job_id,
            runner.id,
            JobCompletion {
                outcome,
                exit_code: req.exit_code,
                reason,
                outputs: req_outputs,
            },
            now_ms(),
        )
        .await?;
    tracing::info!(job.id = job_id, run.id = job.run_id, outcome = ?req.outcome, duration_ms = req.duration_ms, "job completed");
    state.remove_snapshots_if_finished(job.run_id).await;
    state.publish(Topic::Jobs);
    state.publish(Topic::Logs);
    Ok(StatusCode::NO_CONTENT)
}

/// Strips the two zero blocks that end a tar archive, so archives can be concatenated into one
/// that extracts them in order (later files overwrite earlier ones).
fn strip_tar_end(mut tar: Vec<u8>) -> Vec<u8> {
    while tar.len() >= 512 && tar[tar.len() - 512..].iter().all(|&b| b == 0) {
        tar.truncate(tar.len() - 512);
    }
    tar
}

/// The archive a job starts from: the source at the run's commit when it needs nothing,
/// otherwise the snapshots its needs uploaded (a need without one contributes what it started
/// from, recursively).
async fn workspace(
    State(state): State<AppState>,
    RunnerAuth(runner): RunnerAuth,
    Path(job_id): Path<i64>,
) -> ApiResult<Response> {
    let job = held_job(&state, runner.id, job_id).await?;
    let run = state.store.get_run(job.run_id).await?;
    let jobs = state.store.jobs_of_run(run.id).await?;
    let mut parts: Vec<i64> = Vec::new();
    let mut source = false;
    let mut todo: Vec<i64> = job.needs.clone();
    let mut seen = std::collections::HashSet::new();
    if todo.is_empty() {
        source = true;
    }
    while let Some(stage) = todo.pop() {
        if !seen.insert(stage) {
            continue;
        }
        let Some(need) = jobs.iter().find(|j| j.stage_index == stage) else {
            continue;
        };
        if tokio::fs::try_exists(state.snapshot_path(need.id))
            .await
            .unwrap_or(false)
        {
            parts.push(need.stage_index);
        } else if need.needs.is_empty() {
            source = true;
        } else {
            todo.extend(need.needs.iter().copied());
        }
    }
    parts.sort_unstable();
    let mut archive = Vec::new();
    if source {
        // Another coordinator may have processed the event: make sure this one's mirror has
        // the commit (a no-op when it has).
        let repo = state.store.get_repo(run.repo_id).await?;
        state
            .mirrors
            .fetch(repo.id, &repo.clone_url, &run.commit, None)
            .await
            .map_err(ApiError::internal)?;
        let tar = state
            .mirrors
            .archive(run.repo_id, &run.commit)
            .await
            .map_err(ApiError::internal)?;
        archive.extend(strip_tar_end(tar));
    }
    for stage in parts {
        let need = jobs
            .iter()
            .find(|j| j.stage_index == stage)
            .expect("collected above");
        let snapshot = state.snapshot_path(need.id);
        let tar = tokio::fs::read(&snapshot)
            .await
            .map_err(|e| ApiError::internal(format!("cannot read {}: {e}", snapshot.display())))?;
        archive.extend(strip_tar_end(tar));
    }
    archive.extend_from_slice(&[0u8; 1024]);
    Ok(([(header::CONTENT_TYPE, "application/x-tar")], archive).into_response())
}

async fn snapshot(
    State(state): State<AppState>,
    RunnerAuth(runner): RunnerAuth,
    Path(job_id): Path<i64>,
    body: Body,
) -> ApiResult<StatusCode> {
    held_job(&state, runner.id, job_id).await?;
    let path = state.snapshot_path(job_id);
    let tmp = state.snapshot_part_path(job_id);
    let file_error =
        |e: std::io::Error| ApiError::internal(format!("cannot write {}: {e}", tmp.display()));
    let mut file = tokio::fs::File::create(&tmp).await.map_err(file_error)?;
    let mut stream = body.into_data_stream();
    let mut size: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                tracing::debug!(job.id = job_id, error = %e, "snapshot upload cut short");
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    format!(
                        "snapshot refused: the upload broke off or exceeds the limit of {} bytes",
                        state.config.max_snapshot
                    ),
                ));
            }
        };
        size += chunk.len() as u64;
        if let Err(e) = file.write_all(&chunk).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(file_error(e));
        }
    }
    file.sync_all().await.map_err(file_error)?;
    tokio::fs::rename(&tmp, &path).await.map_err(|e| {
        ApiError::internal(format!(
            "cannot rename {} to {}: {e}",
            tmp.display(),
            path.display()
        ))
    })?;
    tracing::debug!(job.id = job_id, size, "workspace snapshot stored");
    Ok(StatusCode::NO_CONTENT)
}
