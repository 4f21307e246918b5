//! Every query and the scheduling rules, shared by both backends. This file is compiled once
//! inside each backend module (`#[path]`), which supplies `Db`, `Conn`, `DbRow`, `Backend`,
//! `BACKEND_NAME`, `PICK_IN_OWN_STATEMENT`, the fragment macros `for_update!` and
//! `skip_locked!`, an [`Abandon`] implementation for its write connection, the functions
//! `begin_write`, `lock_repo`, `lock_repo_of_job`, `lock_run_logs`, `is_retryable`, and the
//! methods `reader` and `writer` (each giving a connection) on `Backend`.
//!
//! SQL is written once: `$N` placeholders (SQLite accepts them), `TRUE`/`FALSE`, `RETURNING`
//! and `ON CONFLICT … DO NOTHING` mean the same in both. Status words appear as literals, not
//! parameters, because the partial indexes are keyed on them.
//!
//! The invariant every write keeps: the repository row is locked (`lock_repo`,
//! `lock_repo_of_job`, or an UPDATE of it) before any of its jobs or runs change. On Postgres
//! that makes the repository row the per-repository mutex and fixes the lock order; on SQLite
//! the write transaction excludes everyone anyway. The per-repository counters the claim reads
//! (`repos.ready`, `repos.running`) are kept by triggers on `jobs` (see the migrations).

use std::collections::HashMap;

use moat_pipelines::schedule::{self, Conclusion, Decision, StageView, State};

use async_trait::async_trait;
use sqlx::{QueryBuilder, Row};

// The fragment macros (`for_update!` …) come from the backend module by textual scope.
use super::{
    BACKEND_NAME, Backend, Conn, Db, DbRow, PICK_IN_OWN_STATEMENT, begin_write, is_retryable,
    lock_repo, lock_repo_of_job, lock_run_logs,
};
use crate::store::{
    AuditEvent, Claimed, DELIVERY_GAVE_UP, Delivery, DeliveryInfo, DeliveryOutcome, Expired, Forge,
    HeartbeatReply, Job, JobCompletion, JobOutcome, JobStatus, LogLine, MAX_DELIVERY_ATTEMPTS,
    Millis, NewJob, NewLogLine, NewRepository, NewRun, Registration, Repository, Result, Run,
    RunFilter, RunStatus, Runner, SecretMeta, Store, StoreError, StoredSecret, Token, TokenKind,
};

/// Runs `$body` (an expression that may use `?`) in a write transaction bound to `$c`,
/// committing on `Ok` and rolling back on `Err`. Postgres deadlocks and serialisation
/// failures re-run the whole body, so it must only borrow its inputs.
///
/// Cancel safety: if the future is dropped before the transaction is settled (a client that
/// disconnects, a request timeout), the connection is closed instead of going back to the
/// pool, so that the server ends the transaction. sqlx 0.9 alone can return a connection whose
/// `BEGIN` was sent but not answered to the pool with the transaction still open (upstream
/// issue transact-rs/sqlx#4393), and the next borrower's writes would run inside it.
macro_rules! write_tx {
    ($store:expr, |$c:ident| $body:expr) => {{
        let mut retries = 0u32;
        loop {
            let mut guard = Unsettled::new($store.writer().await?);
            let mut tx = begin_write(&mut guard.conn).await?;
            let outcome: Result<_> = async {
                let $c: &mut Conn = &mut tx;
                $body
            }
            .await;
            let failure = match outcome {
                Ok(value) => match tx.commit().await {
                    Ok(()) => {
                        guard.settled = true;
                        break Ok(value);
                    }
                    Err(e) => e,
                },
                Err(StoreError::Database(e)) => {
                    guard.settled = tx.rollback().await.is_ok();
                    e
                }
                Err(other) => {
                    guard.settled = tx.rollback().await.is_ok();
                    break Err(other);
                }
            };
            if retries < 5 && is_retryable(&failure) {
                retries += 1;
                continue;
            }
            break Err(StoreError::Database(failure));
        }
    }};
}

/// A write connection in the middle of a transaction; abandoned (see [`Abandon`]) unless
/// `settled` (see `write_tx!`).
struct Unsettled<W: Abandon> {
    conn: W,
    settled: bool,
}

impl<W: Abandon> Unsettled<W> {
    fn new(conn: W) -> Self {
        Unsettled {
            conn,
            settled: false,
        }
    }
}

impl<W: Abandon> Drop for Unsettled<W> {
    fn drop(&mut self) {
        if !self.settled {
            self.conn.abandon();
        }
    }
}

/// What a backend does with a write connection whose transaction was left unsettled.
pub(super) trait Abandon {
    fn abandon(&mut self);
}

macro_rules! repo_cols {
    () => {
        "id, name, clone_url, forge, concurrency, cancel_superseded, protected_branches, created_at"
    };
}
macro_rules! run_cols {
    () => {
        "r.id, r.repo_id, p.name AS repo_name, r.number, r.status, r.event, r.branch, \
         r.target_branch, r.tag, r.commit_sha, r.trusted, r.trigger_kind, r.actor, r.reason, \
         r.created_at, r.started_at, r.finished_at"
    };
}
macro_rules! job_cols {
    () => {
        "id, run_id, repo_id, stage_index, name, status, needs, spec, attempt, max_retries, \
         runner_id, lease_expires_at, exit_code, reason, when_skipped, cancel_requested, \
         ready_at, started_at, finished_at, outputs, approval_required, approved_by"
    };
}
macro_rules! log_cols {
    () => {
        "id, job_id, attempt, seq, stream, line, at_ms"
    };
}
macro_rules! token_cols {
    () => {
        "id, kind, description, created_at, expires_at, last_used_at, runner_id"
    };
}
macro_rules! audit_cols {
    () => {
        "id, at_ms, actor, action, run_id, detail"
    };
}

/// `touch_runner` writes at most once per runner in this window (per store instance).
const TOUCH_GRAIN_MS: Millis = 1000;
/// `use_token` records a token's use at most once in this window (per store instance).
const TOKEN_USE_GRAIN_MS: Millis = 60_000;

/// What a coalesced "last seen" write is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Touch {
    Runner,
    Token,
}

/// When this store last wrote each runner's `last_seen_at` (see `touch_runner`) and each
/// token's `last_used_at` (see `use_token`).
#[derive(Default)]
pub(super) struct Touched(std::sync::Mutex<HashMap<(Touch, i64), Millis>>);

impl Backend {
    fn touched(&self) -> std::sync::MutexGuard<'_, HashMap<(Touch, i64), Millis>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.touched.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Default page size when a caller passes a non-positive limit.
const DEFAULT_LIMIT: i64 = 100;
/// Rows per multi-row INSERT of log lines (7 parameters each, well under SQLite's limit).
const LOG_BATCH: usize = 500;

fn limit_or_default(limit: i64) -> i64 {
    if limit > 0 { limit } else { DEFAULT_LIMIT }
}

fn token_kind_str(kind: TokenKind) -> &'static str {
    kind.as_str()
}

fn corrupt(what: &str, value: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {value}"))
}

/// Maps constraint violations to the store's own errors.
fn classify(e: sqlx::Error, conflict: impl FnOnce() -> String) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        if db.is_unique_violation() {
            return StoreError::Conflict(conflict());
        }
        if db.is_foreign_key_violation() {
            return StoreError::NotFound;
        }
    }
    StoreError::Database(e)
}

// ---------------------------------------------------------------------------------------------
// Row mapping.

fn repo_from_row(r: &DbRow) -> Result<Repository> {
    let forge: String = r.try_get("forge")?;
    let branches: String = r.try_get("protected_branches")?;
    Ok(Repository {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        clone_url: r.try_get("clone_url")?,
        forge: Forge::parse(&forge).ok_or_else(|| corrupt("forge", &forge))?,
        concurrency: r.try_get("concurrency")?,
        cancel_superseded: r.try_get("cancel_superseded")?,
        protected_branches: serde_json::from_str(&branches)
            .map_err(|e| corrupt("protected branches", e))?,
        created_at: r.try_get("created_at")?,
    })
}

fn run_from_row(r: &DbRow) -> Result<Run> {
    let status: String = r.try_get("status")?;
    Ok(Run {
        id: r.try_get("id")?,
        repo_id: r.try_get("repo_id")?,
        repo_name: r.try_get("repo_name")?,
        number: r.try_get("number")?,
        status: RunStatus::parse(&status).ok_or_else(|| corrupt("run status", &status))?,
        event: r.try_get("event")?,
        branch: r.try_get("branch")?,
        target_branch: r.try_get("target_branch")?,
        tag: r.try_get("tag")?,
        commit: r.try_get("commit_sha")?,
        trusted: r.try_get("trusted")?,
        trigger: r.try_get("trigger_kind")?,
        actor: r.try_get("actor")?,
        reason: r.try_get("reason")?,
        created_at: r.try_get("created_at")?,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
    })
}

fn job_from_row(r: &DbRow) -> Result<Job> {
    let status: String = r.try_get("status")?;
    let needs: String = r.try_get("needs")?;
    Ok(Job {
        id: r.try_get("id")?,
        run_id: r.try_get("run_id")?,
        repo_id: r.try_get("repo_id")?,
        stage_index: r.try_get("stage_index")?,
        name: r.try_get("name")?,
        status: JobStatus::parse(&status).ok_or_else(|| corrupt("job status", &status))?,
        needs: serde_json::from_str(&needs).map_err(|e| corrupt("job needs", e))?,
        spec: r.try_get("spec")?,
        attempt: r.try_get("attempt")?,
        max_retries: r.try_get("max_retries")?,
        runner_id: r.try_get("runner_id")?,
        lease_expires_at: r.try_get("lease_expires_at")?,
        exit_code: r.try_get("exit_code")?,
        reason: r.try_get("reason")?,
        when_skipped: r.try_get("when_skipped")?,
        cancel_requested: r.try_get("cancel_requested")?,
        ready_at: r.try_get("ready_at")?,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
        approval_required: r.try_get("approval_required")?,
        approved_by: r.try_get("approved_by")?,
        outputs: r
            .try_get::<Option<String>, _>("outputs")?
            .map(|o| serde_json::from_str(&o).map_err(|e| corrupt("job outputs", e)))
            .transpose()?,
    })
}

fn token_from_row(r: &DbRow) -> Result<Token> {
    let kind: String = r.try_get("kind")?;
    Ok(Token {
        id: r.try_get("id")?,
        kind: match kind.as_str() {
            "admin" => TokenKind::Admin,
            "registration" => TokenKind::Registration,
            "runner" => TokenKind::Runner,
            _ => return Err(corrupt("token kind", &kind)),
        },
        description: r.try_get("description")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        last_used_at: r.try_get("last_used_at")?,
        runner_id: r.try_get("runner_id")?,
    })
}

fn runner_from_row(r: &DbRow) -> Result<Runner> {
    Ok(Runner {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        slots: r.try_get("slots")?,
        created_at: r.try_get("created_at")?,
        last_seen_at: r.try_get("last_seen_at")?,
    })
}

fn log_from_row(r: &DbRow) -> Result<LogLine> {
    Ok(LogLine {
        id: r.try_get("id")?,
        job_id: r.try_get("job_id")?,
        attempt: r.try_get("attempt")?,
        seq: r.try_get("seq")?,
        stream: r.try_get("stream")?,
        line: r.try_get("line")?,
        at: r.try_get("at_ms")?,
    })
}

fn audit_from_row(r: &DbRow) -> Result<AuditEvent> {
    Ok(AuditEvent {
        id: r.try_get("id")?,
        at: r.try_get("at_ms")?,
        actor: r.try_get("actor")?,
        action: r.try_get("action")?,
        run_id: r.try_get("run_id")?,
        detail: r.try_get("detail")?,
    })
}

// ---------------------------------------------------------------------------------------------
// Reads usable inside and outside transactions.

async fn fetch_repo(c: &mut Conn, id: i64) -> Result<Repository> {
    let row = sqlx::query(concat!(
        "SELECT ",
        repo_cols!(),
        " FROM repos WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *c)
    .await?
    .ok_or(StoreError::NotFound)?;
    repo_from_row(&row)
}

async fn fetch_run(c: &mut Conn, id: i64) -> Result<Run> {
    let row = sqlx::query(concat!(
        "SELECT ",
        run_cols!(),
        " FROM runs r JOIN repos p ON p.id = r.repo_id WHERE r.id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *c)
    .await?
    .ok_or(StoreError::NotFound)?;
    run_from_row(&row)
}

async fn fetch_job(c: &mut Conn, id: i64) -> Result<Job> {
    let row = sqlx::query(concat!("SELECT ", job_cols!(), " FROM jobs WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut *c)
        .await?
        .ok_or(StoreError::NotFound)?;
    job_from_row(&row)
}

// ---------------------------------------------------------------------------------------------
// Scheduling rules. Callers hold the repository lock.

/// What `settle_run` needs to know about a job.
struct JobState {
    id: i64,
    name: String,
    status: JobStatus,
    /// Positions in the run's job list (not stage indices).
    needs: Vec<usize>,
    when_skipped: bool,
    /// Needs an approval that has not been given yet.
    awaits_approval: bool,
}

impl JobState {
    fn view(&self) -> StageView<'_> {
        StageView {
            name: &self.name,
            needs: &self.needs,
            state: match self.status {
                JobStatus::Pending => State::Pending,
                JobStatus::Ready | JobStatus::Running => State::Running,
                JobStatus::Passed => State::Passed,
                JobStatus::Failed => State::Failed,
                JobStatus::Cancelled => State::Cancelled,
                JobStatus::Skipped if self.when_skipped => State::Excluded,
                JobStatus::Skipped => State::Skipped,
            },
            awaits_approval: self.awaits_approval,
        }
    }
}

/// Brings a run up to date after any of its jobs changed: asks the scheduling rule
/// ([`moat_pipelines::schedule`]) what becomes of its pending jobs and stores the answers;
/// when every job is decided, the run gets its final status from the same rule.
async fn settle_run(c: &mut Conn, run_id: i64, now: Millis) -> Result<()> {
    // The run's flags ride along on every job row, saving a query per completion.
    let rows = sqlx::query(
        "SELECT j.id, j.stage_index, j.name, j.status, j.needs, j.when_skipped, \
         j.approval_required, j.approved_by, \
         r.status AS run_status, r.cancel_requested AS run_cancel \
         FROM jobs j JOIN runs r ON r.id = j.run_id WHERE j.run_id = $1 ORDER BY j.stage_index",
    )
    .bind(run_id)
    .fetch_all(&mut *c)
    .await?;
    let mut by_stage = HashMap::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        by_stage.insert(row.try_get::<i64, _>("stage_index")?, i);
    }
    let mut jobs = Vec::with_capacity(rows.len());
    for row in &rows {
        let status: String = row.try_get("status")?;
        let needs: String = row.try_get("needs")?;
        let needs: Vec<i64> = serde_json::from_str(&needs).map_err(|e| corrupt("job needs", e))?;
        let needs = needs
            .iter()
            // create_run refuses unknown needs, so a miss means the rows were tampered with.
            .map(|n| {
                by_stage
                    .get(n)
                    .copied()
                    .ok_or_else(|| corrupt("job needs an unknown stage", n))
            })
            .collect::<Result<Vec<usize>>>()?;
        jobs.push(JobState {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            status: JobStatus::parse(&status).ok_or_else(|| corrupt("job status", &status))?,
            needs,
            when_skipped: row.try_get("when_skipped")?,
            awaits_approval: row.try_get::<bool, _>("approval_required")?
                && row.try_get::<Option<String>, _>("approved_by")?.is_none(),
        });
    }

    // Skip reasons are rendered here: a decision borrows the names in `jobs`, which the loop
    // below updates.
    let decisions: Vec<(usize, Option<String>, bool)> = {
        let views: Vec<StageView<'_>> = jobs.iter().map(JobState::view).collect();
        schedule::settle(&views)
            .map_err(|e| corrupt("job needs", e))?
            .into_iter()
            .map(|(i, d)| match d {
                Decision::Run => (i, None, false),
                Decision::AwaitApproval => (i, None, true),
                Decision::Skip(b) => (i, Some(b.to_string()), false),
            })
            .collect()
    };
    for (i, skip, awaits) in decisions {
        let id = jobs[i].id;
        match skip {
            None if awaits => {
                // Noted once; an approver's later reason is not overwritten.
                sqlx::query("UPDATE jobs SET reason = $2 WHERE id = $1 AND reason IS NULL")
                    .bind(id)
                    .bind(schedule::AWAITING_APPROVAL)
                    .execute(&mut *c)
                    .await?;
            }
            None => {
                jobs[i].status = JobStatus::Ready;
                sqlx::query("UPDATE jobs SET status = 'ready', ready_at = $2 WHERE id = $1")
                    .bind(id)
                    .bind(now)
                    .execute(&mut *c)
                    .await?;
            }
            Some(reason) => {
                jobs[i].status = JobStatus::Skipped;
                sqlx::query(
                    "UPDATE jobs SET status = 'skipped', reason = $2, finished_at = $3 \
                     WHERE id = $1",
                )
                .bind(id)
                .bind(reason)
                .bind(now)
                .execute(&mut *c)
                .await?;
            }
        }
    }

    if !jobs.iter().all(|j| j.status.is_finished()) {
        return Ok(());
    }
    let (run_status, run_cancel): (String, bool) = match rows.first() {
        Some(row) => (row.try_get("run_status")?, row.try_get("run_cancel")?),
        // A run without jobs (nothing in its plan): read the run itself.
        None => {
            let row = sqlx::query("SELECT status, cancel_requested FROM runs WHERE id = $1")
                .bind(run_id)
                .fetch_one(&mut *c)
                .await?;
            (row.try_get("status")?, row.try_get("cancel_requested")?)
        }
    };
    let finished = RunStatus::parse(&run_status)
        .ok_or_else(|| corrupt("run status", &run_status))?
        .is_finished();
    if !finished {
        finish_run(c, run_id, run_cancel, &jobs, now).await?;
    }
    Ok(())
}

/// Gives a run whose jobs are all decided its final status.
async fn finish_run(
    c: &mut Conn,
    run_id: i64,
    cancelled: bool,
    jobs: &[JobState],
    now: Millis,
) -> Result<()> {
    let views: Vec<StageView<'_>> = jobs.iter().map(JobState::view).collect();
    let Some(conclusion) = schedule::conclude(&views, cancelled) else {
        return Ok(());
    };
    let status = match conclusion {
        Conclusion::Passed => RunStatus::Passed,
        Conclusion::Failed { .. } => RunStatus::Failed,
        Conclusion::Cancelled => RunStatus::Cancelled,
    };
    // A cancelled run keeps the reason given when the cancel was asked for.
    let reason = conclusion.reason();
    sqlx::query(
        "UPDATE runs SET status = $2, reason = COALESCE($3, reason), finished_at = $4 \
         WHERE id = $1 AND status IN ('queued', 'running')",
    )
    .bind(run_id)
    .bind(status.as_str())
    .bind(reason)
    .bind(now)
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Cancels a run's unclaimed jobs, flags its running ones, and settles it.
async fn cancel_run_locked(c: &mut Conn, run_id: i64, reason: &str, now: Millis) -> Result<()> {
    sqlx::query(
        "UPDATE jobs SET status = 'cancelled', reason = $2, finished_at = $3 \
         WHERE run_id = $1 AND status IN ('pending', 'ready')",
    )
    .bind(run_id)
    .bind(reason)
    .bind(now)
    .execute(&mut *c)
    .await?;
    sqlx::query(
        "UPDATE jobs SET cancel_requested = TRUE, reason = $2 \
         WHERE run_id = $1 AND status = 'running'",
    )
    .bind(run_id)
    .bind(reason)
    .execute(&mut *c)
    .await?;
    sqlx::query(
        "UPDATE runs SET cancel_requested = TRUE, reason = $2 \
         WHERE id = $1 AND status IN ('queued', 'running')",
    )
    .bind(run_id)
    .bind(reason)
    .execute(&mut *c)
    .await?;
    settle_run(c, run_id, now).await
}

/// Checks a plan before anything is written: unique stage indices, needs that exist, and no
/// cycle (whose jobs would wait for each other forever and keep the run open).
fn check_jobs(jobs: &[NewJob]) -> Result<()> {
    let mut seen = HashMap::new();
    for job in jobs {
        if seen.insert(job.stage_index, &job.name).is_some() {
            return Err(StoreError::Conflict(format!(
                "two jobs have stage index {}",
                job.stage_index
            )));
        }
    }
    for job in jobs {
        if let Some(need) = job.needs.iter().find(|n| !seen.contains_key(n)) {
            return Err(StoreError::Conflict(format!(
                "job {} needs stage index {need}, which the run does not have",
                job.name
            )));
        }
    }
    // Kahn: repeatedly decide jobs whose needs are all decided; whatever is left is a cycle.
    let mut decided = std::collections::HashSet::new();
    loop {
        let before = decided.len();
        for job in jobs {
            if !decided.contains(&job.stage_index) && job.needs.iter().all(|n| decided.contains(n))
            {
                decided.insert(job.stage_index);
            }
        }
        if decided.len() == jobs.len() {
            return Ok(());
        }
        if decided.len() == before {
            let stuck = jobs.iter().find(|j| !decided.contains(&j.stage_index));
            return Err(StoreError::Conflict(format!(
                "job {} is part of a cycle of needs",
                stuck.map_or("?", |j| j.name.as_str())
            )));
        }
    }
}

async fn create_run_tx(c: &mut Conn, run: &NewRun, now: Millis) -> Result<i64> {
    if run.failed.is_none() {
        check_jobs(&run.jobs)?;
    }
    // Numbering through the repository row is atomic and takes the repository lock first.
    let row = sqlx::query(
        "UPDATE repos SET run_counter = run_counter + 1 WHERE id = $1 \
         RETURNING run_counter, cancel_superseded",
    )
    .bind(run.repo_id)
    .fetch_optional(&mut *c)
    .await?
    .ok_or(StoreError::NotFound)?;
    let number: i64 = row.try_get("run_counter")?;
    let cancel_superseded: bool = row.try_get("cancel_superseded")?;

    let (status, finished_at) = match run.failed {
        Some(_) => (RunStatus::Failed, Some(now)),
        None => (RunStatus::Queued, None),
    };
    let run_id: i64 = sqlx::query_scalar(
        "INSERT INTO runs (repo_id, number, status, event, branch, target_branch, tag, \
         commit_sha, trusted, trigger_kind, actor, reason, created_at, finished_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING id",
    )
    .bind(run.repo_id)
    .bind(number)
    .bind(status.as_str())
    .bind(&run.event)
    .bind(&run.branch)
    .bind(&run.target_branch)
    .bind(&run.tag)
    .bind(&run.commit)
    .bind(run.trusted)
    .bind(&run.trigger)
    .bind(&run.actor)
    .bind(&run.failed)
    .bind(now)
    .bind(finished_at)
    .fetch_one(&mut *c)
    .await?;

    if run.failed.is_none() {
        for job in &run.jobs {
            let (status, ready_at, finished_at) = if job.skip.is_some() {
                (JobStatus::Skipped, None, Some(now))
            } else if job.needs.is_empty() && !job.approval_required {
                (JobStatus::Ready, Some(now), None)
            } else {
                // Needs, or an approval, decide later (settle_run).
                (JobStatus::Pending, None, None)
            };
            let needs = serde_json::to_string(&job.needs).expect("a list of integers serialises");
            sqlx::query(
                "INSERT INTO jobs (run_id, repo_id, stage_index, name, status, needs, spec, \
                 max_retries, reason, when_skipped, ready_at, finished_at, approval_required) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            )
            .bind(run_id)
            .bind(run.repo_id)
            .bind(job.stage_index)
            .bind(&job.name)
            .bind(status.as_str())
            .bind(needs)
            .bind(&job.spec)
            .bind(run.max_retries)
            .bind(&job.skip)
            .bind(job.skip.is_some())
            .bind(ready_at)
            .bind(finished_at)
            .bind(job.approval_required)
            .execute(&mut *c)
            .await?;
        }
        // Decides dependants of `when:` skips, and finishes a run with nothing to do.
        settle_run(c, run_id, now).await?;
    }

    if cancel_superseded
        && run.event == "push"
        && let Some(branch) = &run.branch
    {
        let older: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM runs WHERE repo_id = $1 AND event = $2 AND branch = $3 \
                 AND status IN ('queued', 'running') AND id < $4 ORDER BY id",
        )
        .bind(run.repo_id)
        .bind(&run.event)
        .bind(branch)
        .bind(run_id)
        .fetch_all(&mut *c)
        .await?;
        let reason = format!("superseded by run #{number}");
        for old in older {
            cancel_run_locked(c, old, &reason, now).await?;
        }
    }
    Ok(run_id)
}

/// The claim's UPDATE (the `jobs_claimed` trigger does the bookkeeping), given `pick`: the
/// repository whose turn it is. Within it, a ready job of a run this runner already works on
/// (bounded by the repository's started, unfinished runs, not by its queue), else the head of
/// its queue (index `jobs_ready`).
macro_rules! claim_sql {
    ($pick:expr) => {
        concat!(
            "WITH pick AS (",
            $pick,
            ") UPDATE jobs SET status = 'running', runner_id = $1, attempt = attempt + 1, \
               lease_expires_at = $2, started_at = $3, finished_at = NULL \
             WHERE status = 'ready' AND id = COALESCE(\
               (SELECT j.id FROM runs r JOIN jobs j ON j.run_id = r.id \
                WHERE r.repo_id = (SELECT id FROM pick) AND r.status = 'running' \
                AND j.status = 'ready' \
                AND EXISTS (SELECT 1 FROM jobs k WHERE k.run_id = r.id AND k.runner_id = $1) \
                ORDER BY j.ready_at, j.id LIMIT 1), \
               (SELECT id FROM jobs WHERE repo_id = (SELECT id FROM pick) AND status = 'ready' \
                ORDER BY ready_at, id LIMIT 1)) \
             RETURNING ",
            job_cols!()
        )
    };
}

/// The repository whose turn it is: has ready jobs, is under its concurrency limit, and was
/// served longest ago (partial index `repos_claimable`).
macro_rules! pick_sql {
    () => {
        "SELECT id FROM repos WHERE ready > 0 AND (concurrency IS NULL OR running < concurrency) \
         ORDER BY claim_seq, id LIMIT 1"
    };
}

/// Postgres: locks the repository whose turn it is, in a statement of its own so that the
/// claim's next statement sees everything committed before the lock was granted. Repositories
/// locked by another claim or a completion are skipped; only if every eligible one is locked
/// do we wait for the first, rather than report "no work" while work exists.
async fn lock_next_repo(c: &mut Conn) -> Result<Option<i64>> {
    let free: Option<i64> = sqlx::query_scalar(concat!(pick_sql!(), skip_locked!()))
        .fetch_optional(&mut *c)
        .await?;
    if free.is_some() {
        return Ok(free);
    }
    Ok(sqlx::query_scalar(concat!(pick_sql!(), for_update!()))
        .fetch_optional(&mut *c)
        .await?)
}

/// A run and its repository in one round trip (for a claim).
async fn fetch_run_and_repo(c: &mut Conn, run_id: i64) -> Result<(Run, Repository)> {
    let row = sqlx::query(concat!(
        "SELECT ",
        run_cols!(),
        ", p.clone_url AS repo_clone_url, p.forge AS repo_forge, \
         p.concurrency AS repo_concurrency, p.cancel_superseded AS repo_cancel_superseded, \
         p.protected_branches AS repo_protected_branches, p.created_at AS repo_created_at \
         FROM runs r JOIN repos p ON p.id = r.repo_id WHERE r.id = $1"
    ))
    .bind(run_id)
    .fetch_optional(&mut *c)
    .await?
    .ok_or(StoreError::NotFound)?;
    let run = run_from_row(&row)?;
    let forge: String = row.try_get("repo_forge")?;
    let branches: String = row.try_get("repo_protected_branches")?;
    let repo = Repository {
        id: run.repo_id,
        name: run.repo_name.clone(),
        clone_url: row.try_get("repo_clone_url")?,
        forge: Forge::parse(&forge).ok_or_else(|| corrupt("forge", &forge))?,
        concurrency: row.try_get("repo_concurrency")?,
        cancel_superseded: row.try_get("repo_cancel_superseded")?,
        protected_branches: serde_json::from_str(&branches)
            .map_err(|e| corrupt("protected branches", e))?,
        created_at: row.try_get("repo_created_at")?,
    };
    Ok((run, repo))
}

async fn complete_tx(
    c: &mut Conn,
    job_id: i64,
    runner_id: i64,
    done: &JobCompletion,
    now: Millis,
) -> Result<()> {
    lock_repo_of_job(c, job_id).await?;
    let status = match done.outcome {
        JobOutcome::Passed => JobStatus::Passed,
        JobOutcome::Failed => JobStatus::Failed,
        JobOutcome::Cancelled => JobStatus::Cancelled,
    };
    // Check and write in one statement. A job whose cancel was requested is recorded as
    // cancelled whatever the container did: the user asked for it to stop.
    let row = sqlx::query(
        "UPDATE jobs SET \
           status = CASE WHEN cancel_requested THEN 'cancelled' ELSE $3 END, \
           reason = CASE WHEN cancel_requested THEN COALESCE($4, reason) ELSE $4 END, \
           exit_code = $5, finished_at = $6, lease_expires_at = NULL, outputs = $7 \
         WHERE id = $1 AND runner_id = $2 AND status = 'running' \
         RETURNING run_id",
    )
    .bind(job_id)
    .bind(runner_id)
    .bind(status.as_str())
    .bind(&done.reason)
    .bind(done.exit_code)
    .bind(now)
    .bind(&done.outputs)
    .fetch_optional(&mut *c)
    .await?;
    let Some(row) = row else {
        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM jobs WHERE id = $1")
            .bind(job_id)
            .fetch_optional(&mut *c)
            .await?;
        return Err(match exists {
            Some(_) => StoreError::LeaseLost,
            None => StoreError::NotFound,
        });
    };
    let run_id: i64 = row.try_get("run_id")?;
    settle_run(c, run_id, now).await
}

async fn approve_tx(c: &mut Conn, job_id: i64, approver: &str, now: Millis) -> Result<Job> {
    lock_repo_of_job(c, job_id).await?;
    let done = sqlx::query(
        "UPDATE jobs SET approved_by = $2, approved_at = $3, \
           reason = CASE WHEN reason = 'waiting for approval' THEN NULL ELSE reason END \
         WHERE id = $1 AND approval_required AND approved_by IS NULL \
           AND status IN ('pending', 'ready') \
         RETURNING run_id",
    )
    .bind(job_id)
    .bind(approver)
    .bind(now)
    .fetch_optional(&mut *c)
    .await?;
    let Some(row) = done else {
        return match fetch_job(c, job_id).await {
            Ok(_) => Err(StoreError::Conflict(
                "the job is not waiting for an approval".into(),
            )),
            Err(e) => Err(e),
        };
    };
    let run_id: i64 = row.try_get("run_id")?;
    settle_run(c, run_id, now).await?;
    fetch_job(c, job_id).await
}

async fn expire_one_tx(c: &mut Conn, job_id: i64, now: Millis) -> Result<Option<Expired>> {
    lock_repo_of_job(c, job_id).await?;
    let row = sqlx::query(concat!(
        "SELECT run_id, status, lease_expires_at, attempt, max_retries, cancel_requested \
         FROM jobs WHERE id = $1",
        for_update!()
    ))
    .bind(job_id)
    .fetch_optional(&mut *c)
    .await?
    .ok_or(StoreError::NotFound)?;
    let status: String = row.try_get("status")?;
    let lease: Option<Millis> = row.try_get("lease_expires_at")?;
    // Re-checked under the lock: the runner may have reported or heartbeated meanwhile.
    if status != JobStatus::Running.as_str() || lease.is_none_or(|l| l >= now) {
        return Ok(None);
    }
    let run_id: i64 = row.try_get("run_id")?;
    let attempt: i64 = row.try_get("attempt")?;
    let max_retries: i64 = row.try_get("max_retries")?;
    let cancel_requested: bool = row.try_get("cancel_requested")?;
    let requeued = !cancel_requested && attempt <= max_retries;
    if requeued {
        sqlx::query(
            "UPDATE jobs SET status = 'ready', runner_id = NULL, lease_expires_at = NULL, \
             started_at = NULL, ready_at = $2, \
             reason = 'runner lost (lease expired); retrying' WHERE id = $1",
        )
        .bind(job_id)
        .bind(now)
        .execute(&mut *c)
        .await?;
    } else {
        let (status, reason) = if cancel_requested {
            (JobStatus::Cancelled, None)
        } else {
            let reason = format!("runner lost: lease expired after {attempt} attempts");
            (JobStatus::Failed, Some(reason))
        };
        sqlx::query(
            "UPDATE jobs SET status = $2, reason = COALESCE($3, reason), finished_at = $4, \
             lease_expires_at = NULL WHERE id = $1",
        )
        .bind(job_id)
        .bind(status.as_str())
        .bind(reason)
        .bind(now)
        .execute(&mut *c)
        .await?;
        settle_run(c, run_id, now).await?;
    }
    Ok(Some(Expired {
        job_id,
        run_id,
        requeued,
    }))
}

async fn append_logs_tx(
    c: &mut Conn,
    job_id: i64,
    attempt: i64,
    lines: &[NewLogLine],
    now: Millis,
) -> Result<()> {
    let run_id: i64 = sqlx::query_scalar("SELECT run_id FROM jobs WHERE id = $1")
        .bind(job_id)
        .fetch_optional(&mut *c)
        .await?
        .ok_or(StoreError::NotFound)?;
    lock_run_logs(c, run_id).await?;
    for chunk in lines.chunks(LOG_BATCH) {
        let mut q = QueryBuilder::<Db>::new(
            "INSERT INTO logs (job_id, run_id, attempt, seq, stream, line, at_ms) ",
        );
        q.push_values(chunk, |mut b, l| {
            b.push_bind(job_id)
                .push_bind(run_id)
                .push_bind(attempt)
                .push_bind(l.seq)
                .push_bind(l.stream.clone())
                .push_bind(l.line.clone())
                .push_bind(now);
        });
        q.push(" ON CONFLICT (job_id, attempt, seq) DO NOTHING");
        q.build().execute(&mut *c).await?;
    }
    Ok(())
}

/// The runner row and its token row, together.
async fn create_runner_tx(
    c: &mut Conn,
    name: &str,
    token_hash: &[u8],
    slots: i64,
) -> Result<Runner> {
    let now = crate::store::now_ms();
    let conflict = || "a runner with this token already exists".to_string();
    let row = sqlx::query(
        "INSERT INTO runners (name, token_hash, slots, created_at) VALUES ($1, $2, $3, $4) \
         RETURNING id, name, slots, created_at, last_seen_at",
    )
    .bind(name)
    .bind(token_hash)
    .bind(slots)
    .bind(now)
    .fetch_one(&mut *c)
    .await
    .map_err(|e| classify(e, conflict))?;
    let runner = runner_from_row(&row)?;
    sqlx::query(
        "INSERT INTO tokens (kind, hash, description, created_at, runner_id) \
         VALUES ('runner', $1, $2, $3, $4)",
    )
    .bind(token_hash)
    .bind(name)
    .bind(now)
    .bind(runner.id)
    .execute(&mut *c)
    .await
    .map_err(|e| classify(e, conflict))?;
    Ok(runner)
}

/// Deletes a token; an admin token only while another remains. The admin rows are locked in id
/// order first, so two coordinators revoking the last two admin tokens at once cannot both
/// succeed (one sees the other's deletion) and cannot deadlock.
async fn revoke_token_tx(c: &mut Conn, id: i64) -> Result<Token> {
    let kind: String = sqlx::query_scalar("SELECT kind FROM tokens WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *c)
        .await?
        .ok_or(StoreError::NotFound)?;
    if kind == token_kind_str(TokenKind::Admin) {
        let admins: Vec<i64> = sqlx::query_scalar(concat!(
            "SELECT id FROM tokens WHERE kind = 'admin' ORDER BY id",
            for_update!()
        ))
        .fetch_all(&mut *c)
        .await?;
        if !admins.contains(&id) {
            return Err(StoreError::NotFound);
        }
        if admins.len() < 2 {
            return Err(StoreError::Conflict(
                "this is the last admin token: create another one first (moat token create), \
                 then revoke this one"
                    .into(),
            ));
        }
    }
    let row = sqlx::query(concat!(
        "DELETE FROM tokens WHERE id = $1 RETURNING ",
        token_cols!()
    ))
    .bind(id)
    .fetch_optional(&mut *c)
    .await?
    .ok_or(StoreError::NotFound)?;
    token_from_row(&row)
}

// ---------------------------------------------------------------------------------------------

#[async_trait]
impl Store for Backend {
    fn backend(&self) -> &'static str {
        BACKEND_NAME
    }

    async fn create_token(
        &self,
        kind: TokenKind,
        hash: &[u8],
        description: &str,
        expires_at: Option<Millis>,
    ) -> Result<Token> {
        if kind == TokenKind::Runner {
            return Err(StoreError::Conflict(
                "runner tokens are made when a runner registers".into(),
            ));
        }
        let row = sqlx::query(concat!(
            "INSERT INTO tokens (kind, hash, description, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING ",
            token_cols!()
        ))
        .bind(token_kind_str(kind))
        .bind(hash)
        .bind(description)
        .bind(crate::store::now_ms())
        .bind(expires_at)
        .fetch_one(&mut *self.writer().await?)
        .await
        .map_err(|e| classify(e, || "a token with this hash already exists".into()))?;
        token_from_row(&row)
    }

    async fn find_token(&self, hash: &[u8]) -> Result<Option<Token>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            token_cols!(),
            " FROM tokens WHERE hash = $1"
        ))
        .bind(hash)
        .fetch_optional(&mut *self.reader().await?)
        .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn use_token(&self, hash: &[u8], now: Millis) -> Result<Option<Token>> {
        let Some(mut token) = self.find_token(hash).await? else {
            return Ok(None);
        };
        if token.expired(now) {
            return Ok(None);
        }
        // Admins call in bursts (a dashboard, a script); "last used" needs no finer grain than
        // a minute, and a write per request would queue behind the scheduler's.
        let key = (Touch::Token, token.id);
        let recent = |last: Millis| last <= now && now - last < TOKEN_USE_GRAIN_MS;
        if !self.touched().get(&key).is_some_and(|&last| recent(last)) {
            sqlx::query("UPDATE tokens SET last_used_at = $2 WHERE id = $1")
                .bind(token.id)
                .bind(now)
                .execute(&mut *self.writer().await?)
                .await?;
            self.touched().insert(key, now);
            token.last_used_at = Some(now);
        }
        Ok(Some(token))
    }

    async fn consume_registration_token(&self, hash: &[u8], now: Millis) -> Result<Registration> {
        let done = sqlx::query(
            "DELETE FROM tokens WHERE hash = $1 AND kind = 'registration' \
             AND (expires_at IS NULL OR expires_at > $2)",
        )
        .bind(hash)
        .bind(now)
        .execute(&mut *self.writer().await?)
        .await?;
        if done.rows_affected() == 1 {
            return Ok(Registration::Accepted);
        }
        Ok(match self.find_token(hash).await? {
            Some(t) if t.kind == TokenKind::Registration => Registration::Expired,
            _ => Registration::Unknown,
        })
    }

    async fn count_tokens(&self, kind: TokenKind) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM tokens WHERE kind = $1")
                .bind(token_kind_str(kind))
                .fetch_one(&mut *self.reader().await?)
                .await?,
        )
    }

    async fn list_tokens(&self) -> Result<Vec<Token>> {
        let rows = sqlx::query(
            "SELECT t.id, t.kind, t.description, t.created_at, t.expires_at, \
             COALESCE(r.last_seen_at, t.last_used_at) AS last_used_at, t.runner_id \
             FROM tokens t LEFT JOIN runners r ON r.id = t.runner_id ORDER BY t.id",
        )
        .fetch_all(&mut *self.reader().await?)
        .await?;
        rows.iter().map(token_from_row).collect()
    }

    async fn revoke_token(&self, id: i64) -> Result<Token> {
        write_tx!(self, |c| revoke_token_tx(c, id).await)
    }

    async fn installation_id(&self) -> Result<String> {
        sqlx::query_scalar("SELECT id FROM installation WHERE singleton = 1")
            .fetch_optional(&mut *self.reader().await?)
            .await?
            .ok_or_else(|| corrupt("installation", "no installation id"))
    }

    async fn create_runner(&self, name: &str, token_hash: &[u8], slots: i64) -> Result<Runner> {
        write_tx!(self, |c| create_runner_tx(c, name, token_hash, slots).await)
    }

    async fn runner_by_token(&self, hash: &[u8]) -> Result<Option<Runner>> {
        let row = sqlx::query(
            "SELECT r.id, r.name, r.slots, r.created_at, r.last_seen_at \
             FROM tokens t JOIN runners r ON r.id = t.runner_id \
             WHERE t.hash = $1 AND t.kind = 'runner'",
        )
        .bind(hash)
        .fetch_optional(&mut *self.reader().await?)
        .await?;
        row.as_ref().map(runner_from_row).transpose()
    }

    async fn touch_runner(&self, runner_id: i64, now: Millis) -> Result<()> {
        // Runners touch on every request; "last seen" needs no finer grain than a second, and
        // a write per request would queue behind the claims for nothing.
        let recent = |last: Millis| last <= now && now - last < TOUCH_GRAIN_MS;
        if self
            .touched()
            .get(&(Touch::Runner, runner_id))
            .is_some_and(|&last| recent(last))
        {
            return Ok(());
        }
        let done = sqlx::query("UPDATE runners SET last_seen_at = $2 WHERE id = $1")
            .bind(runner_id)
            .bind(now)
            .execute(&mut *self.writer().await?)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.touched().insert((Touch::Runner, runner_id), now);
        Ok(())
    }

    async fn list_runners(&self) -> Result<Vec<Runner>> {
        let rows = sqlx::query(
            "SELECT id, name, slots, created_at, last_seen_at FROM runners ORDER BY id",
        )
        .fetch_all(&mut *self.reader().await?)
        .await?;
        rows.iter().map(runner_from_row).collect()
    }

    async fn create_repo(&self, repo: NewRepository) -> Result<Repository> {
        let branches = serde_json::to_string(&repo.protected_branches).expect("strings serialise");
        let row = sqlx::query(concat!(
            "INSERT INTO repos (name, clone_url, forge, webhook_secret, concurrency, \
             cancel_superseded, protected_branches, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING ",
            repo_cols!()
        ))
        .bind(&repo.name)
        .bind(&repo.clone_url)
        .bind(repo.forge.as_str())
        .bind(&repo.webhook_secret)
        .bind(repo.concurrency)
        .bind(repo.cancel_superseded)
        .bind(branches)
        .bind(crate::store::now_ms())
        .fetch_one(&mut *self.writer().await?)
        .await
        .map_err(|e| classify(e, || format!("repository {} already exists", repo.name)))?;
        repo_from_row(&row)
    }

    async fn list_repos(&self) -> Result<Vec<Repository>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            repo_cols!(),
            " FROM repos ORDER BY name"
        ))
        .fetch_all(&mut *self.reader().await?)
        .await?;
        rows.iter().map(repo_from_row).collect()
    }

    async fn get_repo(&self, id: i64) -> Result<Repository> {
        fetch_repo(&mut *self.reader().await?, id).await
    }

    async fn get_repo_by_name(&self, name: &str) -> Result<Repository> {
        let row = sqlx::query(concat!(
            "SELECT ",
            repo_cols!(),
            " FROM repos WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(&mut *self.reader().await?)
        .await?
        .ok_or(StoreError::NotFound)?;
        repo_from_row(&row)
    }

    async fn delete_repo(&self, id: i64) -> Result<()> {
        // Runs, jobs, logs and deliveries go with it (ON DELETE CASCADE).
        let done = sqlx::query("DELETE FROM repos WHERE id = $1")
            .bind(id)
            .execute(&mut *self.writer().await?)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn webhook_secret(&self, repo_id: i64) -> Result<String> {
        sqlx::query_scalar("SELECT webhook_secret FROM repos WHERE id = $1")
            .bind(repo_id)
            .fetch_optional(&mut *self.reader().await?)
            .await?
            .ok_or(StoreError::NotFound)
    }

    async fn approve_job(&self, job_id: i64, approver: &str, now: Millis) -> Result<Job> {
        write_tx!(self, |c| approve_tx(c, job_id, approver, now).await)
    }

    async fn set_secret(
        &self,
        repo_id: i64,
        name: &str,
        secret: &StoredSecret,
        now: Millis,
    ) -> Result<bool> {
        let created: Millis = sqlx::query_scalar(
            "INSERT INTO secrets (repo_id, name, key_id, nonce, ciphertext, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) \
             ON CONFLICT (repo_id, name) DO UPDATE SET key_id = excluded.key_id, \
               nonce = excluded.nonce, ciphertext = excluded.ciphertext, updated_at = excluded.updated_at \
             RETURNING created_at",
        )
        .bind(repo_id)
        .bind(name)
        .bind(&secret.key_id)
        .bind(&secret.nonce)
        .bind(&secret.ciphertext)
        .bind(now)
        .fetch_one(&mut *self.writer().await?)
        .await
        .map_err(|e| classify(e, || "no such repository".into()))?;
        Ok(created == now)
    }

    async fn get_secret(&self, repo_id: i64, name: &str) -> Result<Option<StoredSecret>> {
        let row = sqlx::query(
            "SELECT key_id, nonce, ciphertext FROM secrets WHERE repo_id = $1 AND name = $2",
        )
        .bind(repo_id)
        .bind(name)
        .fetch_optional(&mut *self.reader().await?)
        .await?;
        row.map(|r| {
            Ok(StoredSecret {
                key_id: r.try_get("key_id")?,
                nonce: r.try_get("nonce")?,
                ciphertext: r.try_get("ciphertext")?,
            })
        })
        .transpose()
    }

    async fn list_secrets(&self, repo_id: i64) -> Result<Vec<SecretMeta>> {
        let rows = sqlx::query(
            "SELECT name, key_id, created_at, updated_at FROM secrets WHERE repo_id = $1 \
             ORDER BY name",
        )
        .bind(repo_id)
        .fetch_all(&mut *self.reader().await?)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SecretMeta {
                    name: r.try_get("name")?,
                    key_id: r.try_get("key_id")?,
                    created_at: r.try_get("created_at")?,
                    updated_at: r.try_get("updated_at")?,
                })
            })
            .collect()
    }

    async fn delete_secret(&self, repo_id: i64, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM secrets WHERE repo_id = $1 AND name = $2")
            .bind(repo_id)
            .bind(name)
            .execute(&mut *self.writer().await?)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn insert_delivery(
        &self,
        repo_id: i64,
        delivery_id: &str,
        event: &str,
        payload: &[u8],
        now: Millis,
    ) -> Result<Option<i64>> {
        sqlx::query_scalar(
            "INSERT INTO deliveries (repo_id, delivery_id, event, payload, received_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (repo_id, delivery_id) DO NOTHING RETURNING id",
        )
        .bind(repo_id)
        .bind(delivery_id)
        .bind(event)
        .bind(payload)
        .bind(now)
        .fetch_optional(&mut *self.writer().await?)
        .await
        .map_err(|e| classify(e, String::new))
    }

    async fn claim_delivery(&self, now: Millis, lease_ms: i64) -> Result<Option<Delivery>> {
        // A lease that ran out means the processor crashed or hung; after the last allowed
        // attempt the delivery is finished with the reason instead of crashing it again.
        sqlx::query(
            "UPDATE deliveries SET processed_at = $1, lease_until = NULL, error = $3 \
             WHERE processed_at IS NULL AND lease_until IS NOT NULL AND lease_until <= $1 \
             AND attempts >= $2",
        )
        .bind(now)
        .bind(MAX_DELIVERY_ATTEMPTS)
        .bind(DELIVERY_GAVE_UP)
        .execute(&mut *self.writer().await?)
        .await?;
        let row = sqlx::query(concat!(
            "UPDATE deliveries SET lease_until = $2, attempts = attempts + 1 \
             WHERE id = (SELECT id FROM deliveries WHERE processed_at IS NULL \
             AND (lease_until IS NULL OR lease_until <= $1) ORDER BY id LIMIT 1",
            skip_locked!(),
            ") RETURNING id, repo_id, delivery_id, event, payload, attempts"
        ))
        .bind(now)
        .bind(now + lease_ms)
        .fetch_optional(&mut *self.writer().await?)
        .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(Delivery {
            id: r.try_get("id")?,
            repo_id: r.try_get("repo_id")?,
            delivery_id: r.try_get("delivery_id")?,
            event: r.try_get("event")?,
            payload: r.try_get("payload")?,
            attempts: r.try_get("attempts")?,
        }))
    }

    async fn delivery_error(&self, id: i64) -> Result<Option<String>> {
        let row = sqlx::query("SELECT error FROM deliveries WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *self.reader().await?)
            .await?
            .ok_or(StoreError::NotFound)?;
        Ok(row.try_get("error")?)
    }

    async fn finish_delivery(&self, id: i64, error: Option<&str>, now: Millis) -> Result<()> {
        let done = sqlx::query(
            "UPDATE deliveries SET processed_at = $2, error = $3, lease_until = NULL WHERE id = $1",
        )
        .bind(id)
        .bind(now)
        .bind(error)
        .execute(&mut *self.writer().await?)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn set_delivery_run(&self, id: i64, run_id: i64) -> Result<()> {
        let done = sqlx::query("UPDATE deliveries SET run_id = $2 WHERE id = $1")
            .bind(id)
            .bind(run_id)
            .execute(&mut *self.writer().await?)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn list_deliveries(&self, repo_id: Option<i64>, limit: i64) -> Result<Vec<DeliveryInfo>> {
        let rows = sqlx::query(
            "SELECT d.id, d.repo_id, r.name AS repo_name, d.delivery_id, d.event, \
             d.received_at, d.processed_at, d.run_id, u.number AS run_number, d.error \
             FROM deliveries d JOIN repos r ON r.id = d.repo_id \
             LEFT JOIN runs u ON u.id = d.run_id \
             WHERE ($1 IS NULL OR d.repo_id = $1) ORDER BY d.id DESC LIMIT $2",
        )
        .bind(repo_id)
        .bind(limit_or_default(limit))
        .fetch_all(&mut *self.reader().await?)
        .await?;
        rows.iter()
            .map(|r| {
                let processed_at: Option<Millis> = r.try_get("processed_at")?;
                let run_id: Option<i64> = r.try_get("run_id")?;
                let error: Option<String> = r.try_get("error")?;
                Ok(DeliveryInfo {
                    id: r.try_get("id")?,
                    repo_id: r.try_get("repo_id")?,
                    repo_name: r.try_get("repo_name")?,
                    delivery_id: r.try_get("delivery_id")?,
                    event: r.try_get("event")?,
                    received_at: r.try_get("received_at")?,
                    processed_at,
                    outcome: DeliveryOutcome::of(processed_at.is_some(), run_id, error.as_deref()),
                    run_id,
                    run_number: r.try_get("run_number")?,
                    error,
                })
            })
            .collect()
    }

    async fn prune_deliveries(&self, older_than: Millis, keep: i64) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM deliveries WHERE processed_at IS NOT NULL AND received_at < $1 \
             AND id NOT IN (SELECT id FROM deliveries ORDER BY id DESC LIMIT $2)",
        )
        .bind(older_than)
        .bind(keep.max(0))
        .execute(&mut *self.writer().await?)
        .await?;
        Ok(done.rows_affected())
    }

    async fn create_run(&self, run: NewRun, now: Millis) -> Result<Run> {
        write_tx!(self, |c| {
            let id = create_run_tx(c, &run, now).await?;
            fetch_run(c, id).await
        })
    }

    async fn get_run(&self, id: i64) -> Result<Run> {
        fetch_run(&mut *self.reader().await?, id).await
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<Run>> {
        let mut q = QueryBuilder::<Db>::new(concat!(
            "SELECT ",
            run_cols!(),
            " FROM runs r JOIN repos p ON p.id = r.repo_id WHERE TRUE"
        ));
        if let Some(repo_id) = filter.repo_id {
            q.push(" AND r.repo_id = ").push_bind(repo_id);
        }
        if let Some(branch) = &filter.branch {
            q.push(" AND r.branch = ").push_bind(branch.clone());
        }
        if let Some(status) = filter.status {
            q.push(" AND r.status = ").push_bind(status.as_str());
        }
        if let Some(before) = filter.before {
            q.push(" AND r.id < ").push_bind(before);
        }
        q.push(" ORDER BY r.id DESC LIMIT ")
            .push_bind(limit_or_default(filter.limit));
        let rows = q.build().fetch_all(&mut *self.reader().await?).await?;
        rows.iter().map(run_from_row).collect()
    }

    async fn jobs_of_run(&self, run_id: i64) -> Result<Vec<Job>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            job_cols!(),
            " FROM jobs WHERE run_id = $1 ORDER BY stage_index"
        ))
        .bind(run_id)
        .fetch_all(&mut *self.reader().await?)
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    async fn get_job(&self, id: i64) -> Result<Job> {
        fetch_job(&mut *self.reader().await?, id).await
    }

    async fn cancel_run(&self, run_id: i64, reason: &str, now: Millis) -> Result<Run> {
        write_tx!(self, |c| {
            let run = fetch_run(c, run_id).await?;
            if run.status.is_finished() {
                return Ok(run);
            }
            lock_repo(c, run.repo_id).await?;
            cancel_run_locked(c, run_id, reason, now).await?;
            fetch_run(c, run_id).await
        })
    }

    async fn claim_job(
        &self,
        runner_id: i64,
        now: Millis,
        lease_ms: i64,
    ) -> Result<Option<Claimed>> {
        if !PICK_IN_OWN_STATEMENT {
            // SQLite: one statement is atomic, and with every write of this process on this
            // one connection its snapshot is current. Two round trips in all, no transaction.
            let mut c = self.writer().await?;
            let mut retries = 0;
            let row = loop {
                let result = sqlx::query(claim_sql!(pick_sql!()))
                    .bind(runner_id)
                    .bind(now + lease_ms)
                    .bind(now)
                    .fetch_optional(&mut *c)
                    .await;
                match result {
                    // Another process wrote between our read and our write.
                    Err(e) if retries < 5 && is_retryable(&e) => retries += 1,
                    other => break other?,
                }
            };
            let Some(row) = row else { return Ok(None) };
            let job = job_from_row(&row)?;
            let (run, repo) = fetch_run_and_repo(&mut c, job.run_id).await?;
            return Ok(Some(Claimed { job, run, repo }));
        }
        // Postgres: a statement's snapshot predates the row locks it waits for, so the pick
        // (which locks) and the claim (which must see the state after the lock) are two
        // statements of one transaction.
        write_tx!(self, |c| {
            let Some(repo_id) = lock_next_repo(c).await? else {
                return Ok(None);
            };
            let row = sqlx::query(claim_sql!("SELECT CAST($4 AS BIGINT) AS id"))
                .bind(runner_id)
                .bind(now + lease_ms)
                .bind(now)
                .bind(repo_id)
                .fetch_optional(&mut *c)
                .await?;
            // With the repository locked and its counter saying it has ready jobs, a miss
            // cannot happen; treat it as "nothing right now" rather than an error.
            let Some(row) = row else { return Ok(None) };
            let job = job_from_row(&row)?;
            let (run, repo) = fetch_run_and_repo(c, job.run_id).await?;
            Ok(Some(Claimed { job, run, repo }))
        })
    }

    async fn heartbeat(
        &self,
        job_id: i64,
        runner_id: i64,
        now: Millis,
        lease_ms: i64,
    ) -> Result<HeartbeatReply> {
        let cancel_requested: Option<bool> = sqlx::query_scalar(
            "UPDATE jobs SET lease_expires_at = $3 \
             WHERE id = $1 AND runner_id = $2 AND status = 'running' \
             RETURNING cancel_requested",
        )
        .bind(job_id)
        .bind(runner_id)
        .bind(now + lease_ms)
        .fetch_optional(&mut *self.writer().await?)
        .await?;
        match cancel_requested {
            Some(cancel_requested) => Ok(HeartbeatReply { cancel_requested }),
            None => Err(StoreError::LeaseLost),
        }
    }

    async fn complete_job(
        &self,
        job_id: i64,
        runner_id: i64,
        done: JobCompletion,
        now: Millis,
    ) -> Result<()> {
        write_tx!(self, |c| complete_tx(c, job_id, runner_id, &done, now)
            .await)
    }

    async fn expire_leases(&self, now: Millis) -> Result<Vec<Expired>> {
        let candidates: Vec<i64> = sqlx::query_scalar(
            // Ordered by the `jobs_lease` index: ORDER BY id would tempt SQLite into a table scan.
            "SELECT id FROM jobs WHERE status = 'running' AND lease_expires_at < $1 \
             ORDER BY lease_expires_at, id",
        )
        .bind(now)
        .fetch_all(&mut *self.reader().await?)
        .await?;
        // One transaction per job: each locks only its own repository.
        let mut expired = Vec::new();
        for job_id in candidates {
            let outcome = write_tx!(self, |c| expire_one_tx(c, job_id, now).await);
            match outcome {
                Ok(Some(e)) => expired.push(e),
                // Reported meanwhile, or its repository was deleted.
                Ok(None) | Err(StoreError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(expired)
    }

    async fn extend_leases(&self, until: Millis) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE jobs SET lease_expires_at = $1 \
             WHERE status = 'running' AND lease_expires_at < $1",
        )
        .bind(until)
        .execute(&mut *self.writer().await?)
        .await?;
        Ok(done.rows_affected())
    }

    async fn append_logs(
        &self,
        job_id: i64,
        attempt: i64,
        lines: &[NewLogLine],
        now: Millis,
    ) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        write_tx!(self, |c| append_logs_tx(c, job_id, attempt, lines, now)
            .await)
    }

    async fn run_logs(&self, run_id: i64, after: i64, limit: i64) -> Result<Vec<LogLine>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            log_cols!(),
            " FROM logs WHERE run_id = $1 AND id > $2 ORDER BY id LIMIT $3"
        ))
        .bind(run_id)
        .bind(after)
        .bind(limit_or_default(limit))
        .fetch_all(&mut *self.reader().await?)
        .await?;
        rows.iter().map(log_from_row).collect()
    }

    async fn job_logs(&self, job_id: i64, after: i64, limit: i64) -> Result<Vec<LogLine>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            log_cols!(),
            " FROM logs WHERE job_id = $1 AND id > $2 ORDER BY id LIMIT $3"
        ))
        .bind(job_id)
        .bind(after)
        .bind(limit_or_default(limit))
        .fetch_all(&mut *self.reader().await?)
        .await?;
        rows.iter().map(log_from_row).collect()
    }

    async fn audit(
        &self,
        actor: &str,
        action: &str,
        run_id: Option<i64>,
        detail: &str,
        now: Millis,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_events (at_ms, actor, action, run_id, detail) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(now)
        .bind(actor)
        .bind(action)
        .bind(run_id)
        .bind(detail)
        .execute(&mut *self.writer().await?)
        .await?;
        Ok(())
    }

    /// The latest `limit` events (of one run, or of all), oldest first.
    async fn audit_events(&self, run_id: Option<i64>, limit: i64) -> Result<Vec<AuditEvent>> {
        let limit = limit_or_default(limit);
        let rows = match run_id {
            Some(run_id) => {
                sqlx::query(concat!(
                    "SELECT ",
                    audit_cols!(),
                    " FROM audit_events WHERE run_id = $1 ORDER BY id DESC LIMIT $2"
                ))
                .bind(run_id)
                .bind(limit)
                .fetch_all(&mut *self.reader().await?)
                .await?
            }
            None => {
                sqlx::query(concat!(
                    "SELECT ",
                    audit_cols!(),
                    " FROM audit_events ORDER BY id DESC LIMIT $1"
                ))
                .bind(limit)
                .fetch_all(&mut *self.reader().await?)
                .await?
            }
        };
        let mut events = rows
            .iter()
            .map(audit_from_row)
            .collect::<Result<Vec<_>>>()?;
        events.reverse();
        Ok(events)
    }
}
