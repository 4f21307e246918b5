//! Durable state of the coordinator behind one trait, with SQLite (the embedded default, WAL)
//! and Postgres implementations. Everything the scheduler decides — which job is ready, who
//! holds it, what happens when a lease expires — happens inside store transactions, so several
//! coordinators can share one Postgres and a killed process loses nothing.
//!
//! Times are milliseconds since the Unix epoch (`i64`) in both backends.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

mod sql;
#[cfg(test)]
mod tests;

pub use sql::{PgStore, SqliteStore, connect};

pub type Millis = i64;

pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    /// The job is no longer held by this runner (its lease expired, or it was reassigned).
    #[error("the job's lease is held by another runner or has expired")]
    LeaseLost,
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// An existing SQLite database failed the start-up check; nothing was written to it.
    #[error(
        "refusing to start: the database {} {problem}. Nothing was written to it, to its \
         write-ahead log or to the data directory; restore it from a backup, or move it away to \
         start a new installation",
        path.display()
    )]
    Damaged {
        path: std::path::PathBuf,
        problem: String,
    },
    /// A database file that cannot be read (permissions, a directory in its place, …).
    #[error("cannot read the database {}: {source}", path.display())]
    Unreadable {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Forge {
    Github,
    Gitlab,
    Gitea,
}

impl Forge {
    pub fn as_str(self) -> &'static str {
        match self {
            Forge::Github => "github",
            Forge::Gitlab => "gitlab",
            Forge::Gitea => "gitea",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "github" => Forge::Github,
            "gitlab" => Forge::Gitlab,
            "gitea" | "forgejo" => Forge::Gitea,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repository {
    pub id: i64,
    pub name: String,
    pub clone_url: String,
    pub forge: Forge,
    /// Most jobs of this repository running at once; `None` = no limit.
    pub concurrency: Option<i64>,
    /// A new push run cancels older unfinished runs of the same branch.
    pub cancel_superseded: bool,
    /// Branch patterns whose pushes are trusted for deploys (used by the gates).
    pub protected_branches: Vec<String>,
    pub created_at: Millis,
}

#[derive(Debug, Clone)]
pub struct NewRepository {
    pub name: String,
    pub clone_url: String,
    pub forge: Forge,
    pub webhook_secret: String,
    pub concurrency: Option<i64>,
    pub cancel_superseded: bool,
    pub protected_branches: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Created; no job claimed yet.
    Queued,
    Running,
    Passed,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Passed => "passed",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => RunStatus::Queued,
            "running" => RunStatus::Running,
            "passed" => RunStatus::Passed,
            "failed" => RunStatus::Failed,
            "cancelled" => RunStatus::Cancelled,
            _ => return None,
        })
    }

    pub fn is_finished(self) -> bool {
        matches!(
            self,
            RunStatus::Passed | RunStatus::Failed | RunStatus::Cancelled
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting for its needs.
    Pending,
    /// Claimable.
    Ready,
    /// Held by a runner under a lease.
    Running,
    Passed,
    Failed,
    /// Not run: excluded by `when:`, or a need did not pass (see `reason`).
    Skipped,
    Cancelled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Ready => "ready",
            JobStatus::Running => "running",
            JobStatus::Passed => "passed",
            JobStatus::Failed => "failed",
            JobStatus::Skipped => "skipped",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => JobStatus::Pending,
            "ready" => JobStatus::Ready,
            "running" => JobStatus::Running,
            "passed" => JobStatus::Passed,
            "failed" => JobStatus::Failed,
            "skipped" => JobStatus::Skipped,
            "cancelled" => JobStatus::Cancelled,
            _ => return None,
        })
    }

    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobStatus::Passed | JobStatus::Failed | JobStatus::Skipped | JobStatus::Cancelled
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub id: i64,
    pub repo_id: i64,
    pub repo_name: String,
    /// 1, 2, 3… per repository.
    pub number: i64,
    pub status: RunStatus,
    /// `push`, `pull_request`, `tag`, `manual`.
    pub event: String,
    pub branch: Option<String>,
    pub target_branch: Option<String>,
    pub tag: Option<String>,
    pub commit: String,
    /// False for pull requests from forks: they get no secrets and can never deploy.
    pub trusted: bool,
    /// `webhook`, `manual`, `rerun`.
    pub trigger: String,
    pub actor: Option<String>,
    /// Why it failed or was cancelled.
    pub reason: Option<String>,
    pub created_at: Millis,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
}

/// What a webhook or an API call asks to run; the jobs come from the plan.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub repo_id: i64,
    pub event: String,
    pub branch: Option<String>,
    pub target_branch: Option<String>,
    pub tag: Option<String>,
    pub commit: String,
    pub trusted: bool,
    pub trigger: String,
    pub actor: Option<String>,
    /// Retries allowed per job after a lost lease.
    pub max_retries: i64,
    pub jobs: Vec<NewJob>,
    /// A run that cannot start (e.g. invalid pipeline file): created already failed with this
    /// reason and no jobs, so the failure is visible.
    pub failed: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewJob {
    pub stage_index: i64,
    pub name: String,
    /// Stage indices (within the run) this job waits for.
    pub needs: Vec<i64>,
    /// The planned stage as JSON, handed to the runner verbatim.
    pub spec: String,
    /// `Some(reason)`: excluded by `when:`; counts as satisfied for its dependants.
    pub skip: Option<String>,
    /// Waits for [`Store::approve_job`] once its needs passed.
    pub approval_required: bool,
}

impl NewJob {
    /// The job that runs a planned stage.
    pub fn planned(stage: &moat_pipelines::PlannedStage) -> serde_json::Result<NewJob> {
        Ok(NewJob {
            stage_index: stage.index as i64,
            name: stage.name.clone(),
            needs: stage.needs.iter().map(|&i| i as i64).collect(),
            spec: serde_json::to_string(stage)?,
            skip: stage.skip.clone(),
            approval_required: stage.approval == moat_pipelines::Approval::Required,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: i64,
    pub run_id: i64,
    pub repo_id: i64,
    pub stage_index: i64,
    pub name: String,
    pub status: JobStatus,
    pub needs: Vec<i64>,
    #[serde(skip)]
    pub spec: String,
    /// How many times it was claimed.
    pub attempt: i64,
    pub max_retries: i64,
    pub runner_id: Option<i64>,
    pub lease_expires_at: Option<Millis>,
    pub exit_code: Option<i64>,
    pub reason: Option<String>,
    /// True when excluded by `when:` (as opposed to skipped because a need failed).
    pub when_skipped: bool,
    pub cancel_requested: bool,
    pub ready_at: Option<Millis>,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    /// What the stage produced (a build's image, a scan's verdict and findings).
    pub outputs: Option<serde_json::Value>,
    pub approval_required: bool,
    /// Who approved it, when it needed an approval.
    pub approved_by: Option<String>,
}

/// A repository secret as stored: ciphertext only.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredSecret {
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for StoredSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSecret")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// What the API shows of a secret: never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretMeta {
    pub name: String,
    pub key_id: String,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// A job handed to a runner, with what it needs to execute it.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub job: Job,
    pub run: Run,
    pub repo: Repository,
}

/// How a runner says a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobOutcome {
    Passed,
    Failed,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobCompletion {
    pub outcome: JobOutcome,
    pub exit_code: Option<i64>,
    pub reason: Option<String>,
    /// JSON of what the stage produced, if anything.
    pub outputs: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatReply {
    pub cancel_requested: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Global order; pass the last one seen as `after` to get what came next.
    pub id: i64,
    pub job_id: i64,
    pub attempt: i64,
    /// Per job attempt, assigned by the runner; makes log uploads idempotent.
    pub seq: i64,
    /// `stdout`, `stderr`, `system`.
    pub stream: String,
    pub line: String,
    pub at: Millis,
}

#[derive(Debug, Clone)]
pub struct NewLogLine {
    pub seq: i64,
    pub stream: String,
    pub line: String,
}

#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub repo_id: Option<i64>,
    pub branch: Option<String>,
    pub status: Option<RunStatus>,
    /// Only runs with a smaller id (for paging); newest first.
    pub before: Option<i64>,
    pub limit: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    Admin,
    /// One-time: exchanged by `moat runner` for a runner token.
    Registration,
    /// A runner's own token, made at its registration ([`Store::create_runner`]).
    Runner,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Admin => "admin",
            TokenKind::Registration => "registration",
            TokenKind::Runner => "runner",
        }
    }
}

/// A bearer token as stored: what it is for, never the token or its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    pub id: i64,
    pub kind: TokenKind,
    /// The label given at creation; a runner token's is its runner's name.
    pub description: String,
    pub created_at: Millis,
    /// After this the token is refused; `None`: it does not expire.
    pub expires_at: Option<Millis>,
    /// When it last authenticated a request (coarse; for runners their last request).
    pub last_used_at: Option<Millis>,
    /// The runner a runner token authenticates.
    pub runner_id: Option<i64>,
}

impl Token {
    pub fn expired(&self, now: Millis) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// What presenting a registration token achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// It was valid and is now used up.
    Accepted,
    /// It exists but expired (it stays listed until revoked).
    Expired,
    /// No such registration token (never made, already used or revoked).
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runner {
    pub id: i64,
    pub name: String,
    pub slots: i64,
    pub created_at: Millis,
    pub last_seen_at: Option<Millis>,
}

/// How many claims of one delivery may end with a lost lease before it is given up.
pub const MAX_DELIVERY_ATTEMPTS: i64 = 3;
/// The error of a delivery given up after [`MAX_DELIVERY_ATTEMPTS`] lost leases.
pub const DELIVERY_GAVE_UP: &str = "processing crashed 3 times; not retried";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: i64,
    pub repo_id: i64,
    pub delivery_id: String,
    pub event: String,
    pub payload: Vec<u8>,
    pub attempts: i64,
}

/// What became of a delivery, as `moat deliveries` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryOutcome {
    /// Stored, not processed yet (or being processed).
    Pending,
    /// Turned into a run.
    Processed,
    /// Processed and started nothing (the pipeline's `on:` does not match the event).
    Ignored,
    /// Processing failed (commit not in the repository, repository unreachable, …).
    Failed,
}

impl DeliveryOutcome {
    /// The outcome from a delivery's stored columns.
    pub fn of(processed: bool, run_id: Option<i64>, error: Option<&str>) -> Self {
        match (processed, run_id, error) {
            (false, _, _) => DeliveryOutcome::Pending,
            (true, _, Some(_)) => DeliveryOutcome::Failed,
            (true, Some(_), None) => DeliveryOutcome::Processed,
            (true, None, None) => DeliveryOutcome::Ignored,
        }
    }
}

/// A delivery without its payload, for listings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryInfo {
    pub id: i64,
    pub repo_id: i64,
    pub repo_name: String,
    pub delivery_id: String,
    pub event: String,
    pub received_at: Millis,
    pub processed_at: Option<Millis>,
    pub outcome: DeliveryOutcome,
    pub run_id: Option<i64>,
    /// The run's number within its repository.
    pub run_number: Option<i64>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub id: i64,
    pub at: Millis,
    pub actor: String,
    pub action: String,
    pub run_id: Option<i64>,
    /// JSON.
    pub detail: String,
}

/// An audit event to record with a write (see [`Store::approve_job`]); the store gives it its
/// id, and the write's time as its time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditEvent {
    pub actor: String,
    pub action: String,
    pub run_id: Option<i64>,
    /// JSON.
    pub detail: String,
}

/// Jobs whose lease expired, and what became of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    pub job_id: i64,
    pub run_id: i64,
    /// True: back to ready for another attempt; false: failed for good.
    pub requeued: bool,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;

    // Tokens (admin, one-time registration, runner). Only hashes are stored.
    /// An admin or registration token (runner tokens come with [`Store::create_runner`]).
    async fn create_token(
        &self,
        kind: TokenKind,
        hash: &[u8],
        description: &str,
        expires_at: Option<Millis>,
    ) -> Result<Token>;
    /// The token with this hash, whatever its state.
    async fn find_token(&self, hash: &[u8]) -> Result<Option<Token>>;
    /// The token with this hash if it has not expired, recording its use (coalesced: at most
    /// one write per token per minute and store instance).
    async fn use_token(&self, hash: &[u8], now: Millis) -> Result<Option<Token>>;
    /// Deletes an unexpired registration token: one use only.
    async fn consume_registration_token(&self, hash: &[u8], now: Millis) -> Result<Registration>;
    async fn count_tokens(&self, kind: TokenKind) -> Result<i64>;
    /// Every token, oldest first; a runner token's `last_used_at` is its runner's last request.
    async fn list_tokens(&self) -> Result<Vec<Token>>;
    /// Deletes the token: it authenticates nothing from now on. `NotFound` when there is no
    /// such token; `Conflict` for the last admin token (nobody could administer any more).
    async fn revoke_token(&self, id: i64) -> Result<Token>;
    /// This installation's random id (made by the migrations, the same for every coordinator
    /// of the database).
    async fn installation_id(&self) -> Result<String>;

    // Runners.
    /// The runner and its token (kind `runner`, labelled with the runner's name).
    async fn create_runner(&self, name: &str, token_hash: &[u8], slots: i64) -> Result<Runner>;
    /// The runner a (not revoked) runner token authenticates.
    async fn runner_by_token(&self, hash: &[u8]) -> Result<Option<Runner>>;
    async fn touch_runner(&self, runner_id: i64, now: Millis) -> Result<()>;
    async fn list_runners(&self) -> Result<Vec<Runner>>;

    // Repositories.
    async fn create_repo(&self, repo: NewRepository) -> Result<Repository>;
    async fn list_repos(&self) -> Result<Vec<Repository>>;
    async fn get_repo(&self, id: i64) -> Result<Repository>;
    async fn get_repo_by_name(&self, name: &str) -> Result<Repository>;
    async fn delete_repo(&self, id: i64) -> Result<()>;
    async fn webhook_secret(&self, repo_id: i64) -> Result<String>;

    // Repository secrets (ciphertext; the coordinator holds the key).
    /// Creates or replaces; returns true when it was new.
    async fn set_secret(
        &self,
        repo_id: i64,
        name: &str,
        secret: &StoredSecret,
        now: Millis,
    ) -> Result<bool>;
    async fn get_secret(&self, repo_id: i64, name: &str) -> Result<Option<StoredSecret>>;
    async fn list_secrets(&self, repo_id: i64) -> Result<Vec<SecretMeta>>;
    /// Returns whether it existed.
    async fn delete_secret(&self, repo_id: i64, name: &str) -> Result<bool>;

    // Webhook deliveries: stored before the 202, processed asynchronously, at most once.
    /// `None` when this repository already received a delivery with this id.
    async fn insert_delivery(
        &self,
        repo_id: i64,
        delivery_id: &str,
        event: &str,
        payload: &[u8],
        now: Millis,
    ) -> Result<Option<i64>>;
    /// Takes the oldest unprocessed delivery for `lease_ms` (so another coordinator does not
    /// process it at the same time; a crashed processor's delivery comes back after the lease).
    /// Leases the oldest unprocessed delivery. A delivery whose lease ran out
    /// [`MAX_DELIVERY_ATTEMPTS`] times (its processor crashed or hung each time) is marked
    /// processed with [`DELIVERY_GAVE_UP`] instead of being handed out again.
    async fn claim_delivery(&self, now: Millis, lease_ms: i64) -> Result<Option<Delivery>>;
    /// The error a processed delivery was finished with, if any.
    async fn delivery_error(&self, id: i64) -> Result<Option<String>>;
    async fn finish_delivery(&self, id: i64, error: Option<&str>, now: Millis) -> Result<()>;
    /// Records the run a delivery started (before [`Store::finish_delivery`]).
    async fn set_delivery_run(&self, id: i64, run_id: i64) -> Result<()>;
    /// Deliveries, newest first, of one repository or all, at most `limit` (`0`: default).
    async fn list_deliveries(&self, repo_id: Option<i64>, limit: i64) -> Result<Vec<DeliveryInfo>>;
    /// Retention: deletes processed deliveries that are both received before `older_than`
    /// and not among the newest `keep` deliveries; pending ones stay. Returns how many went.
    async fn prune_deliveries(&self, older_than: Millis, keep: i64) -> Result<u64>;

    // Runs and jobs.
    /// Inserts the run and its jobs in one transaction: numbers the run, makes jobs without
    /// needs ready, records `when:` skips, and when the repository cancels superseded runs,
    /// cancels older unfinished runs of the same branch and event.
    async fn create_run(&self, run: NewRun, now: Millis) -> Result<Run>;
    async fn get_run(&self, id: i64) -> Result<Run>;
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<Run>>;
    async fn jobs_of_run(&self, run_id: i64) -> Result<Vec<Job>>;
    async fn get_job(&self, id: i64) -> Result<Job>;
    /// Unclaimed jobs are cancelled at once; running ones get `cancel_requested` (their runner
    /// stops them and reports). Returns the run as it is afterwards.
    async fn cancel_run(&self, run_id: i64, reason: &str, now: Millis) -> Result<Run>;

    /// Claims one ready job for `runner_id`, fairly: the repository whose last claim is oldest
    /// goes first, repositories at their concurrency limit are passed over, and within a
    /// repository jobs of runs this runner already works on, then the oldest ready job.
    async fn claim_job(
        &self,
        runner_id: i64,
        now: Millis,
        lease_ms: i64,
    ) -> Result<Option<Claimed>>;
    async fn heartbeat(
        &self,
        job_id: i64,
        runner_id: i64,
        now: Millis,
        lease_ms: i64,
    ) -> Result<HeartbeatReply>;
    /// Records the end of a job held by `runner_id`, decides its dependants (ready, or skipped
    /// because this one did not pass) and, when every job is decided, the run.
    async fn complete_job(
        &self,
        job_id: i64,
        runner_id: i64,
        done: JobCompletion,
        now: Millis,
    ) -> Result<()>;
    /// Approves a job that waits for an approval (its needs may still be running); the run is
    /// settled, so an approved job whose needs passed becomes ready. `Conflict` when the job
    /// needs no approval or already has one. `audit` is recorded (at `now`) in the same
    /// transaction: an approval is never stored without its audit record, and a refused one
    /// records nothing.
    async fn approve_job(
        &self,
        job_id: i64,
        approver: &str,
        audit: &NewAuditEvent,
        now: Millis,
    ) -> Result<Job>;
    /// Running jobs whose lease expired: back to ready while retries remain, failed otherwise
    /// (with the reason); cancel-requested ones become cancelled.
    async fn expire_leases(&self, now: Millis) -> Result<Vec<Expired>>;
    /// After a coordinator restart no runner could heartbeat while it was down: give every
    /// running job at least `until` before it can expire.
    async fn extend_leases(&self, until: Millis) -> Result<u64>;

    // Logs.
    /// Idempotent per (job, attempt, seq).
    async fn append_logs(
        &self,
        job_id: i64,
        attempt: i64,
        lines: &[NewLogLine],
        now: Millis,
    ) -> Result<()>;
    async fn run_logs(&self, run_id: i64, after: i64, limit: i64) -> Result<Vec<LogLine>>;
    async fn job_logs(&self, job_id: i64, after: i64, limit: i64) -> Result<Vec<LogLine>>;

    // Audit trail.
    async fn audit(
        &self,
        actor: &str,
        action: &str,
        run_id: Option<i64>,
        detail: &str,
        now: Millis,
    ) -> Result<()>;
    async fn audit_events(&self, run_id: Option<i64>, limit: i64) -> Result<Vec<AuditEvent>>;
}
