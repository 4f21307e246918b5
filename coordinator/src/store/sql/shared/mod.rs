//! Every query and the scheduling rules, shared by both backends. This directory is compiled
//! once inside each backend module (`#[path = "shared/mod.rs"]`), which supplies `Db`, `Conn`, `DbRow`, `Backend`,
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
//!
//! This module owns the backend-neutral machinery (`write_tx!`, the column macros, the small
//! error helpers, the coalescing state) and the one `impl Store`, which only forwards to the
//! entity modules declared below (`rows`, `settle`, `runs`, `jobs`, `approvals`, `logs`,
//! `tokens`, `repos`, `secrets`, `deliveries`, `audit`); it must not hold queries of its own.
//! The entity modules see everything here through `use super::*` and reach each other only
//! through `rows`, `settle` and `audit::insert_audit`, which this module re-exports.

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
    Millis, NewAuditEvent, NewJob, NewLogLine, NewRepository, NewRun, Registration, Repository,
    Result, Run, RunFilter, RunStatus, Runner, SecretMeta, Store, StoreError, StoredSecret, Token,
    TokenKind,
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

// The entity modules come after the macros above, which they use by textual scope; each
// `#[path]` is relative to this file's directory, whichever backend module includes it.
#[path = "approvals.rs"]
mod approvals;
#[path = "audit.rs"]
mod audit;
#[path = "deliveries.rs"]
mod deliveries;
#[path = "jobs.rs"]
mod jobs;
#[path = "logs.rs"]
mod logs;
#[path = "repos.rs"]
mod repos;
#[path = "rows.rs"]
mod rows;
#[path = "runs.rs"]
mod runs;
#[path = "secrets.rs"]
mod secrets;
#[path = "settle.rs"]
mod settle;
#[path = "tokens.rs"]
mod tokens;

use audit::insert_audit;
use rows::*;
use settle::*;

// ---------------------------------------------------------------------------------------------

// Each entity module implements its part of the trait as inherent methods of the same name on
// `Backend` (inherent methods win over trait methods in `Backend::name`); this impl only
// forwards to them, so it is the one list of what the store does.
#[async_trait]
impl Store for Backend {
    fn backend(&self) -> &'static str {
        BACKEND_NAME
    }

    // runs.rs
    async fn create_run(&self, run: NewRun, now: Millis) -> Result<Run> {
        Backend::create_run(self, run, now).await
    }

    async fn get_run(&self, id: i64) -> Result<Run> {
        Backend::get_run(self, id).await
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<Run>> {
        Backend::list_runs(self, filter).await
    }

    async fn jobs_of_run(&self, run_id: i64) -> Result<Vec<Job>> {
        Backend::jobs_of_run(self, run_id).await
    }

    async fn get_job(&self, id: i64) -> Result<Job> {
        Backend::get_job(self, id).await
    }

    async fn cancel_run(&self, run_id: i64, reason: &str, now: Millis) -> Result<Run> {
        Backend::cancel_run(self, run_id, reason, now).await
    }

    // jobs.rs
    async fn claim_job(
        &self,
        runner_id: i64,
        now: Millis,
        lease_ms: i64,
    ) -> Result<Option<Claimed>> {
        Backend::claim_job(self, runner_id, now, lease_ms).await
    }

    async fn heartbeat(
        &self,
        job_id: i64,
        runner_id: i64,
        now: Millis,
        lease_ms: i64,
    ) -> Result<HeartbeatReply> {
        Backend::heartbeat(self, job_id, runner_id, now, lease_ms).await
    }

    async fn complete_job(
        &self,
        job_id: i64,
        runner_id: i64,
        done: JobCompletion,
        now: Millis,
    ) -> Result<()> {
        Backend::complete_job(self, job_id, runner_id, done, now).await
    }

    async fn expire_leases(&self, now: Millis) -> Result<Vec<Expired>> {
        Backend::expire_leases(self, now).await
    }

    async fn extend_leases(&self, until: Millis) -> Result<u64> {
        Backend::extend_leases(self, until).await
    }

    // approvals.rs
    async fn approve_job(
        &self,
        job_id: i64,
        approver: &str,
        audit: &NewAuditEvent,
        now: Millis,
    ) -> Result<Job> {
        Backend::approve_job(self, job_id, approver, audit, now).await
    }

    // logs.rs
    async fn append_logs(
        &self,
        job_id: i64,
        attempt: i64,
        lines: &[NewLogLine],
        now: Millis,
    ) -> Result<()> {
        Backend::append_logs(self, job_id, attempt, lines, now).await
    }

    async fn run_logs(&self, run_id: i64, after: i64, limit: i64) -> Result<Vec<LogLine>> {
        Backend::run_logs(self, run_id, after, limit).await
    }

    async fn job_logs(&self, job_id: i64, after: i64, limit: i64) -> Result<Vec<LogLine>> {
        Backend::job_logs(self, job_id, after, limit).await
    }

    // tokens.rs
    async fn create_token(
        &self,
        kind: TokenKind,
        hash: &[u8],
        description: &str,
        expires_at: Option<Millis>,
    ) -> Result<Token> {
        Backend::create_token(self, kind, hash, description, expires_at).await
    }

    async fn find_token(&self, hash: &[u8]) -> Result<Option<Token>> {
        Backend::find_token(self, hash).await
    }

    async fn use_token(&self, hash: &[u8], now: Millis) -> Result<Option<Token>> {
        Backend::use_token(self, hash, now).await
    }

    async fn consume_registration_token(&self, hash: &[u8], now: Millis) -> Result<Registration> {
        Backend::consume_registration_token(self, hash, now).await
    }

    async fn count_tokens(&self, kind: TokenKind) -> Result<i64> {
        Backend::count_tokens(self, kind).await
    }

    async fn list_tokens(&self) -> Result<Vec<Token>> {
        Backend::list_tokens(self).await
    }

    async fn revoke_token(&self, id: i64) -> Result<Token> {
        Backend::revoke_token(self, id).await
    }

    async fn installation_id(&self) -> Result<String> {
        Backend::installation_id(self).await
    }

    async fn create_runner(&self, name: &str, token_hash: &[u8], slots: i64) -> Result<Runner> {
        Backend::create_runner(self, name, token_hash, slots).await
    }

    async fn runner_by_token(&self, hash: &[u8]) -> Result<Option<Runner>> {
        Backend::runner_by_token(self, hash).await
    }

    async fn touch_runner(&self, runner_id: i64, now: Millis) -> Result<()> {
        Backend::touch_runner(self, runner_id, now).await
    }

    async fn list_runners(&self) -> Result<Vec<Runner>> {
        Backend::list_runners(self).await
    }

    // repos.rs
    async fn create_repo(&self, repo: NewRepository) -> Result<Repository> {
        Backend::create_repo(self, repo).await
    }

    async fn list_repos(&self) -> Result<Vec<Repository>> {
        Backend::list_repos(self).await
    }

    async fn get_repo(&self, id: i64) -> Result<Repository> {
        Backend::get_repo(self, id).await
    }

    async fn get_repo_by_name(&self, name: &str) -> Result<Repository> {
        Backend::get_repo_by_name(self, name).await
    }

    async fn delete_repo(&self, id: i64) -> Result<()> {
        Backend::delete_repo(self, id).await
    }

    async fn webhook_secret(&self, repo_id: i64) -> Result<String> {
        Backend::webhook_secret(self, repo_id).await
    }

    // secrets.rs
    async fn set_secret(
        &self,
        repo_id: i64,
        name: &str,
        secret: &StoredSecret,
        now: Millis,
    ) -> Result<bool> {
        Backend::set_secret(self, repo_id, name, secret, now).await
    }

    async fn get_secret(&self, repo_id: i64, name: &str) -> Result<Option<StoredSecret>> {
        Backend::get_secret(self, repo_id, name).await
    }

    async fn list_secrets(&self, repo_id: i64) -> Result<Vec<SecretMeta>> {
        Backend::list_secrets(self, repo_id).await
    }

    async fn delete_secret(&self, repo_id: i64, name: &str) -> Result<bool> {
        Backend::delete_secret(self, repo_id, name).await
    }

    // deliveries.rs
    async fn insert_delivery(
        &self,
        repo_id: i64,
        delivery_id: &str,
        event: &str,
        payload: &[u8],
        now: Millis,
    ) -> Result<Option<i64>> {
        Backend::insert_delivery(self, repo_id, delivery_id, event, payload, now).await
    }

    async fn claim_delivery(&self, now: Millis, lease_ms: i64) -> Result<Option<Delivery>> {
        Backend::claim_delivery(self, now, lease_ms).await
    }

    async fn delivery_error(&self, id: i64) -> Result<Option<String>> {
        Backend::delivery_error(self, id).await
    }

    async fn finish_delivery(&self, id: i64, error: Option<&str>, now: Millis) -> Result<()> {
        Backend::finish_delivery(self, id, error, now).await
    }

    async fn set_delivery_run(&self, id: i64, run_id: i64) -> Result<()> {
        Backend::set_delivery_run(self, id, run_id).await
    }

    async fn list_deliveries(&self, repo_id: Option<i64>, limit: i64) -> Result<Vec<DeliveryInfo>> {
        Backend::list_deliveries(self, repo_id, limit).await
    }

    async fn prune_deliveries(&self, older_than: Millis, keep: i64) -> Result<u64> {
        Backend::prune_deliveries(self, older_than, keep).await
    }

    // audit.rs
    async fn audit(
        &self,
        actor: &str,
        action: &str,
        run_id: Option<i64>,
        detail: &str,
        now: Millis,
    ) -> Result<()> {
        Backend::audit(self, actor, action, run_id, detail, now).await
    }

    async fn audit_events(&self, run_id: Option<i64>, limit: i64) -> Result<Vec<AuditEvent>> {
        Backend::audit_events(self, run_id, limit).await
    }
}
