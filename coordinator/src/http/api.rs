//! The REST API under `/api/v1`, for administrators (bearer admin tokens): repositories,
//! runs with their stages, logs (paged and live), cancel, re-run, manual runs, runners and the
//! audit trail. Tokens have their own module (`token_admin.rs`).

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::routing::{get, post};
use futures_util::Stream;
use moat_pipelines::EventKind;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Admin, ApiError, ApiResult};
use crate::app::{AppState, Topic};
use crate::forge::Trigger;
use crate::git::GitError;
use crate::store::{
    AuditEvent, Forge, Job, LogLine, NewRepository, Repository, Run, RunFilter, RunStatus, Runner,
    StoreError, now_ms,
};
use crate::tokens;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/repos", get(list_repos).post(create_repo))
        .route("/api/v1/repos/{repo}", get(get_repo).delete(delete_repo))
        .route("/api/v1/repos/{repo}/runs", post(manual_run))
        .route("/api/v1/runs", get(list_runs))
        .route("/api/v1/runs/{id}", get(get_run))
        .route("/api/v1/runs/{id}/logs", get(run_logs))
        .route("/api/v1/runs/{id}/cancel", post(cancel_run))
        .route("/api/v1/runs/{id}/rerun", post(rerun))
        .route("/api/v1/runs/{id}/approve", post(approve))
        .route("/api/v1/runners", get(list_runners))
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/deliveries", get(list_deliveries))
        .route("/api/v1/seal-key", get(seal_key))
        .route("/api/v1/repos/{repo}/secrets", get(list_secrets))
        .route(
            "/api/v1/repos/{repo}/secrets/{name}",
            axum::routing::put(set_secret).delete(delete_secret),
        )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretValue {
    value: String,
}

/// Sets a repository secret. The value is encrypted before it reaches the store and is never
/// sent back by any route.
async fn set_secret(
    State(state): State<AppState>,
    admin: Admin,
    Path((key, name)): Path<(String, String)>,
    Json(body): Json<SecretValue>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let repo = find_repo(&state, &key).await?;
    if !crate::secrets::valid_name(&name) {
        return Err(ApiError::bad_request(
            "secret names are environment variable names ([A-Za-z_][A-Za-z0-9_]*, not MOAT_*)",
        ));
    }
    let len = body.value.chars().count();
    if len < moat_secrets::mask::MIN_SECRET_LEN {
        return Err(ApiError::bad_request(format!(
            "secret values must be at least {} characters: shorter ones cannot be masked in logs",
            moat_secrets::mask::MIN_SECRET_LEN
        )));
    }
    if body.value.len() > crate::secrets::MAX_VALUE {
        return Err(ApiError::bad_request(format!(
            "secret values are limited to {} bytes",
            crate::secrets::MAX_VALUE
        )));
    }
    let created = crate::secrets::set(&state, repo.id, &name, &body.value, now_ms()).await?;
    state
        .store
        .audit(
            &admin.actor(),
            if created {
                "secret.created"
            } else {
                "secret.updated"
            },
            None,
            &json!({ "repo": repo.name, "name": name }).to_string(),
            now_ms(),
        )
        .await?;
    Ok((
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(json!({ "repo": repo.name, "name": name, "created": created })),
    ))
}

async fn list_secrets(
    State(state): State<AppState>,
    _: Admin,
    Path(key): Path<String>,
) -> ApiResult<Json<Vec<crate::store::SecretMeta>>> {
    let repo = find_repo(&state, &key).await?;
    Ok(Json(state.store.list_secrets(repo.id).await?))
}

async fn delete_secret(
    State(state): State<AppState>,
    admin: Admin,
    Path((key, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let repo = find_repo(&state, &key).await?;
    if !state.store.delete_secret(repo.id, &name).await? {
        return Err(ApiError::not_found(format!(
            "no secret {name} in {}",
            repo.name
        )));
    }
    state
        .store
        .audit(
            &admin.actor(),
            "secret.deleted",
            None,
            &json!({ "repo": repo.name, "name": name }).to_string(),
            now_ms(),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The public age recipient that `moat seal` encrypts to (the identity never leaves the
/// coordinator).
async fn seal_key(State(state): State<AppState>, _: Admin) -> Json<serde_json::Value> {
    Json(json!({ "recipient": state.keys.seal.recipient() }))
}

pub fn streaming_routes() -> Router<AppState> {
    Router::new().route("/api/v1/runs/{id}/logs/stream", get(stream_logs))
}

#[derive(Serialize)]
pub struct RepoView {
    #[serde(flatten)]
    pub repo: Repository,
    pub webhook_url: String,
    /// Only in the answer that created the repository: the secret is shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
}

fn repo_view(state: &AppState, repo: Repository, secret: Option<String>) -> RepoView {
    RepoView {
        webhook_url: format!(
            "{}/hooks/{}/{}",
            state.config.public_url.trim_end_matches('/'),
            repo.forge.as_str(),
            repo.id
        ),
        repo,
        webhook_secret: secret,
    }
}

/// A repository by numeric id or by name.
async fn find_repo(state: &AppState, key: &str) -> ApiResult<Repository> {
    let found = match key.parse::<i64>() {
        Ok(id) => state.store.get_repo(id).await,
        Err(_) => state.store.get_repo_by_name(key).await,
    };
    found.map_err(|e| match e {
        StoreError::NotFound => ApiError::not_found(format!("no repository {key:?}")),
        other => other.into(),
    })
}

async fn list_repos(State(state): State<AppState>, _: Admin) -> ApiResult<Json<Vec<RepoView>>> {
    let repos = state.store.list_repos().await?;
    Ok(Json(
        repos
            .into_iter()
            .map(|r| repo_view(&state, r, None))
            .collect(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRepo {
    name: String,
    clone_url: String,
    #[serde(default)]
    forge: Option<String>,
    #[serde(default)]
    webhook_secret: Option<String>,
    #[serde(default)]
    concurrency: Option<i64>,
    #[serde(default)]
    cancel_superseded: bool,
    #[serde(default)]
    protected_branches: Option<Vec<String>>,
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    (1..=100).contains(&name.len())
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && name.parse::<i64>().is_err()
}

/// Clone URLs reach `git` as an argument after `--`; still, refuse what no forge hands out:
/// control characters, leading dashes, and transports that run commands (`ext::`).
fn valid_clone_url(url: &str) -> bool {
    let allowed_scheme = ["https://", "http://", "ssh://", "git://", "file://"]
        .iter()
        .any(|s| url.starts_with(s));
    let scp_like = !url.contains("://") && url.contains('@') && url.contains(':');
    let local_path = url.starts_with('/');
    (1..=2048).contains(&url.len())
        && !url.starts_with('-')
        && !url.chars().any(|c| c.is_control() || c.is_whitespace())
        && (allowed_scheme || scp_like || local_path)
}

async fn create_repo(
    State(state): State<AppState>,
    admin: Admin,
    Json(req): Json<CreateRepo>,
) -> ApiResult<(StatusCode, Json<RepoView>)> {
    if !valid_name(&req.name) {
        return Err(ApiError::bad_request(
            "name: 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit, not only digits",
        ));
    }
    if !valid_clone_url(&req.clone_url) {
        return Err(ApiError::bad_request(
            "clone_url: an https, http, ssh, git or file URL, user@host:path, or an absolute path",
        ));
    }
    let forge = match req.forge.as_deref() {
        None => Forge::Github,
        Some(f) => Forge::parse(f)
            .ok_or_else(|| ApiError::bad_request("forge: github, gitlab or gitea"))?,
    };
    if let Some(c) = req.concurrency
        && !(1..=10_000).contains(&c)
    {
        return Err(ApiError::bad_request("concurrency: 1 to 10000"));
    }
    let secret = match req.webhook_secret {
        Some(s) if (16..=256).contains(&s.len()) => s,
        Some(_) => {
            return Err(ApiError::bad_request(
                "webhook_secret: 16 to 256 characters (omit it to have one generated)",
            ));
        }
        None => tokens::webhook_secret(),
    };
    let protected = req
        .protected_branches
        .unwrap_or_else(|| vec!["main".to_string(), "master".to_string()]);
    for p in &protected {
        moat_pipelines::pattern::Pattern::new(p)
            .map_err(|e| ApiError::bad_request(format!("protected_branches: {p:?}: {e}")))?;
    }
    let repo = state
        .store
        .create_repo(NewRepository {
            name: req.name.clone(),
            clone_url: req.clone_url,
            forge,
            webhook_secret: secret.clone(),
            concurrency: req.concurrency,
            cancel_superseded: req.cancel_superseded,
            protected_branches: protected,
        })
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => {
                ApiError::conflict(format!("a repository named {:?} exists", req.name))
            }
            other => other.into(),
        })?;
    state
        .store
        .audit(
            &admin.actor(),
            "repo.created",
            None,
            &json!({ "repo": repo.name, "id": repo.id }).to_string(),
            now_ms(),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(repo_view(&state, repo, Some(secret))),
    ))
}

async fn get_repo(
    State(state): State<AppState>,
    _: Admin,
    Path(key): Path<String>,
) -> ApiResult<Json<RepoView>> {
    let repo = find_repo(&state, &key).await?;
    Ok(Json(repo_view(&state, repo, None)))
}

async fn delete_repo(
    State(state): State<AppState>,
    admin: Admin,
    Path(key): Path<String>,
) -> ApiResult<StatusCode> {
    let repo = find_repo(&state, &key).await?;
    state.store.delete_repo(repo.id).await?;
    state
        .store
        .audit(
            &admin.actor(),
            "repo.deleted",
            None,
            &json!({ "repo": repo.name, "id": repo.id }).to_string(),
            now_ms(),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ManualRun {
    branch: String,
    #[serde(default)]
    commit: Option<String>,
}

async fn manual_run(
    State(state): State<AppState>,
    admin: Admin,
    Path(key): Path<String>,
    Json(req): Json<ManualRun>,
) -> ApiResult<(StatusCode, Json<RunView>)> {
    let repo = find_repo(&state, &key).await?;
    if req.branch.starts_with('-') {
        return Err(ApiError::bad_request("branch: a branch name"));
    }
    crate::forge::check_ref_format(&req.branch, true)
        .map_err(|reason| ApiError::bad_request(format!("branch: {reason}")))?;
    let commit = match req.commit {
        Some(c) => {
            crate::forge::full_commit(&c).map_err(|e| ApiError::bad_request(e.to_string()))?
        }
        None => resolve_branch(&state, &repo, &req.branch).await?,
    };
    let trigger = Trigger {
        kind: EventKind::Manual,
        branch: Some(req.branch),
        target_branch: None,
        tag: None,
        commit,
        trusted: true,
        actor: Some(admin.actor()),
        fetch_ref: None,
        base_commit: None,
    };
    let run = state
        .start_run(&repo, &trigger, "manual")
        .await
        .map_err(|e| not_started(&repo, e))?
        .ok_or_else(|| ApiError::bad_request("the pipeline starts nothing for this event"))?;
    state
        .store
        .audit(
            &admin.actor(),
            "run.manual",
            Some(run.id),
            &json!({ "repo": repo.name }).to_string(),
            now_ms(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(run_view(&state, run).await?)))
}

/// The commit `branch` of `repo` points to. A branch the repository does not have is the
/// caller's error and says so; any other failure is logged, and answered without git's words
/// (they name the mirror's path and the clone URL).
async fn resolve_branch(state: &AppState, repo: &Repository, branch: &str) -> ApiResult<String> {
    state
        .mirrors
        .resolve_branch(repo.id, &repo.clone_url, branch)
        .await
        .map_err(|e| match e {
            GitError::MissingBranch(_) => {
                ApiError::bad_request(format!("no branch {branch:?} in {}", repo.name))
            }
            other => {
                tracing::warn!(repo.name = %repo.name, branch, error = %other, "could not resolve a branch");
                ApiError::bad_request(format!(
                    "could not resolve branch {branch:?} of {}; see the coordinator's log",
                    repo.name
                ))
            }
        })
}

/// What the caller learns when [`crate::app::App::start_run`] fails: a commit the repository
/// does not have is theirs to fix; a store failure is the store's answer; anything else (a
/// fetch that failed) is logged, and answered without git's words, paths or URLs.
fn not_started(repo: &Repository, e: anyhow::Error) -> ApiError {
    let e = match e.downcast::<GitError>() {
        Ok(GitError::MissingCommit(commit)) => {
            return ApiError::bad_request(format!("commit {commit} is not in {}", repo.name));
        }
        Ok(other) => anyhow::Error::from(other),
        Err(e) => e,
    };
    let e = match e.downcast::<StoreError>() {
        Ok(store) => return store.into(),
        Err(e) => e,
    };
    tracing::warn!(repo.name = %repo.name, error = %format_args!("{e:#}"), "could not start a run");
    ApiError::bad_request("could not start the run; see the coordinator's log")
}

#[derive(Serialize)]
pub struct RunView {
    #[serde(flatten)]
    pub run: Run,
    pub stages: Vec<Job>,
    /// Gate decisions and policy adjustments with their evidence (findings, policy).
    pub gates: Vec<serde_json::Value>,
}

async fn run_view(state: &AppState, run: Run) -> ApiResult<RunView> {
    let stages = state.store.jobs_of_run(run.id).await?;
    let gates = state
        .store
        .audit_events(Some(run.id), 1000)
        .await?
        .into_iter()
        .filter(|e| e.action.starts_with("gate.") || e.action.starts_with("policy."))
        .map(|e| {
            let detail: serde_json::Value =
                serde_json::from_str(&e.detail).unwrap_or(serde_json::Value::Null);
            json!({ "action": e.action, "at": e.at, "actor": e.actor, "detail": detail })
        })
        .collect();
    Ok(RunView { run, stages, gates })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunsQuery {
    repo: Option<String>,
    branch: Option<String>,
    status: Option<String>,
    before: Option<i64>,
    limit: Option<i64>,
}

async fn list_runs(
    State(state): State<AppState>,
    _: Admin,
    Query(q): Query<RunsQuery>,
) -> ApiResult<Json<Vec<Run>>> {
    let repo_id = match q.repo.as_deref() {
        Some(key) => Some(find_repo(&state, key).await?.id),
        None => None,
    };
    let status = match q.status.as_deref() {
        Some(s) => Some(RunStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request("status: queued, running, passed, failed or cancelled")
        })?),
        None => None,
    };
    let filter = RunFilter {
        repo_id,
        branch: q.branch,
        status,
        before: q.before,
        limit: q.limit.unwrap_or(50).clamp(1, 500),
    };
    Ok(Json(state.store.list_runs(&filter).await?))
}

async fn load_run(state: &AppState, id: i64) -> ApiResult<Run> {
    state.store.get_run(id).await.map_err(|e| match e {
        StoreError::NotFound => ApiError::not_found(format!("no run {id}")),
        other => other.into(),
    })
}

async fn get_run(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<i64>,
) -> ApiResult<Json<RunView>> {
    let run = load_run(&state, id).await?;
    Ok(Json(run_view(&state, run).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogsQuery {
    after: Option<i64>,
    limit: Option<i64>,
}

async fn run_logs(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<i64>,
    Query(q): Query<LogsQuery>,
) -> ApiResult<Json<Vec<LogLine>>> {
    load_run(&state, id).await?;
    let lines = state
        .store
        .run_logs(
            id,
            q.after.unwrap_or(0),
            q.limit.unwrap_or(1000).clamp(1, 10_000),
        )
        .await?;
    Ok(Json(lines))
}

/// Server-sent events: every stored line of the run (`event: log`, JSON `LogLine`), then
/// `event: end` with the run when it has finished and every line was sent.
async fn stream_logs(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<i64>,
    Query(q): Query<LogsQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    load_run(&state, id).await?;
    struct Cursor {
        state: AppState,
        after: i64,
        pending: std::collections::VecDeque<LogLine>,
        done: bool,
    }
    let cursor = Cursor {
        state,
        after: q.after.unwrap_or(0),
        pending: Default::default(),
        done: false,
    };
    let stream = futures_util::stream::unfold(cursor, move |mut c| async move {
        loop {
            if let Some(line) = c.pending.pop_front() {
                c.after = line.id;
                let event = SseEvent::default()
                    .event("log")
                    .id(line.id.to_string())
                    .json_data(&line)
                    .unwrap_or_default();
                return Some((Ok(event), c));
            }
            if c.done {
                return None;
            }
            let state = c.state.clone();
            let notified = state.logs_written.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // Read the status before the lines: a run seen finished here has all its lines
            // stored, so the next read is complete.
            let run = state.store.get_run(id).await.ok();
            match state.store.run_logs(id, c.after, 1000).await {
                Ok(lines) if !lines.is_empty() => {
                    c.pending.extend(lines);
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(run.id = id, error = %e, "log stream read failed");
                }
            }
            if let Some(run) = run
                && run.status.is_finished()
            {
                c.done = true;
                let event = SseEvent::default()
                    .event("end")
                    .json_data(&run)
                    .unwrap_or_default();
                return Some((Ok(event), c));
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    reason: Option<String>,
}

async fn cancel_run(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<i64>,
    body: Option<Json<CancelBody>>,
) -> ApiResult<Json<RunView>> {
    let run = load_run(&state, id).await?;
    if run.status.is_finished() {
        return Err(ApiError::conflict(format!(
            "run {id} already {}",
            run.status.as_str()
        )));
    }
    let reason = body
        .and_then(|b| b.0.reason)
        .map(|r| r.chars().take(500).collect::<String>())
        .unwrap_or_else(|| format!("cancelled by {}", admin.actor()));
    let run = state.store.cancel_run(id, &reason, now_ms()).await?;
    // A run with nothing running ends here; its workspace snapshots go with it.
    state.remove_snapshots_if_finished(id).await;
    state
        .store
        .audit(
            &admin.actor(),
            "run.cancelled",
            Some(id),
            &json!({ "reason": reason }).to_string(),
            now_ms(),
        )
        .await?;
    state.publish(Topic::Logs);
    Ok(Json(run_view(&state, run).await?))
}

async fn rerun(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<i64>,
) -> ApiResult<(StatusCode, Json<RunView>)> {
    let old = load_run(&state, id).await?;
    let repo = state.store.get_repo(old.repo_id).await?;
    let kind = EventKind::parse(&old.event)
        .ok_or_else(|| ApiError::internal(format!("run {id} has event {:?}", old.event)))?;
    let trigger = Trigger {
        kind,
        branch: old.branch.clone(),
        target_branch: old.target_branch.clone(),
        tag: old.tag.clone(),
        commit: old.commit.clone(),
        // A re-run keeps the trust of the original event: a fork's change stays untrusted.
        trusted: old.trusted,
        actor: Some(admin.actor()),
        fetch_ref: None,
        base_commit: None,
    };
    let run = state
        .start_run(&repo, &trigger, "rerun")
        .await
        .map_err(|e| not_started(&repo, e))?
        .ok_or_else(|| ApiError::bad_request("the pipeline starts nothing for this event"))?;
    state
        .store
        .audit(
            &admin.actor(),
            "run.rerun",
            Some(run.id),
            &json!({ "of": id }).to_string(),
            now_ms(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(run_view(&state, run).await?)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ApproveBody {
    /// Only this stage; by default every stage of the run that waits for an approval.
    stage: Option<String>,
}

/// Gives the approvals a run's `approval: required` stages wait for, recording who gave them.
async fn approve(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<i64>,
    body: Option<Json<ApproveBody>>,
) -> ApiResult<Json<RunView>> {
    let run = load_run(&state, id).await?;
    let only = body.and_then(|b| b.0.stage);
    let waiting: Vec<Job> = state
        .store
        .jobs_of_run(id)
        .await?
        .into_iter()
        .filter(|j| {
            j.approval_required
                && j.approved_by.is_none()
                && !j.status.is_finished()
                && only.as_ref().is_none_or(|s| s == &j.name)
        })
        .collect();
    if waiting.is_empty() {
        return Err(ApiError::conflict(match &only {
            Some(s) => format!("stage {s} of run {id} is not waiting for an approval"),
            None => format!("no stage of run {id} is waiting for an approval"),
        }));
    }
    let actor = admin.actor();
    for job in &waiting {
        // The approval and its audit record are written in one transaction.
        let record = crate::store::NewAuditEvent {
            actor: actor.clone(),
            action: "gate.approval".into(),
            run_id: Some(id),
            detail: json!({ "stage": job.name, "approved_by": actor, "environment": serde_json::from_str::<moat_pipelines::PlannedStage>(&job.spec).ok().and_then(|s| s.environment) }).to_string(),
        };
        state
            .store
            .approve_job(job.id, &actor, &record, now_ms())
            .await?;
    }
    state.publish(Topic::Jobs);
    let run = state.store.get_run(run.id).await?;
    Ok(Json(run_view(&state, run).await?))
}

async fn list_runners(State(state): State<AppState>, _: Admin) -> ApiResult<Json<Vec<Runner>>> {
    Ok(Json(state.store.list_runners().await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    run: Option<i64>,
    limit: Option<i64>,
}

async fn audit(
    State(state): State<AppState>,
    _: Admin,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Vec<AuditEvent>>> {
    Ok(Json(
        state
            .store
            .audit_events(q.run, q.limit.unwrap_or(100).clamp(1, 1000))
            .await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliveriesQuery {
    /// A repository name or id.
    repo: Option<String>,
    limit: Option<i64>,
}

/// Webhook deliveries, newest first, with what became of each (payloads are not sent).
async fn list_deliveries(
    State(state): State<AppState>,
    _: Admin,
    Query(q): Query<DeliveriesQuery>,
) -> ApiResult<Json<Vec<crate::store::DeliveryInfo>>> {
    let repo = match &q.repo {
        Some(key) => Some(find_repo(&state, key).await?.id),
        None => None,
    };
    Ok(Json(
        state
            .store
            .list_deliveries(repo, q.limit.unwrap_or(100).clamp(1, 1000))
            .await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_urls() {
        assert!(valid_name("web-app"));
        assert!(valid_name("a.b_c"));
        assert!(!valid_name("12"));
        assert!(!valid_name("-x"));
        assert!(!valid_name("a/b"));
        assert!(valid_clone_url("https://github.com/o/r.git"));
        assert!(valid_clone_url("file:///srv/git/r.git"));
        assert!(valid_clone_url("git@github.com:o/r.git"));
        assert!(valid_clone_url("/srv/git/r.git"));
        assert!(!valid_clone_url("ext::sh -c touch% /tmp/pwned"));
        assert!(!valid_clone_url("--upload-pack=evil"));
        assert!(!valid_clone_url("https://x/\n"));
    }
}
