//! The runner protocol: the JSON bodies exchanged between `moat runner` (and the embedded
//! runner of `moat up`) and the coordinator. Documented in `docs/runner-protocol.md`; both
//! sides use these types so they cannot drift apart.

use moat_pipelines::PlannedStage;
use serde::{Deserialize, Serialize};

/// Where a runner's paths live under the coordinator's base URL.
pub mod paths {
    pub const REGISTER: &str = "/api/v1/runners/register";
    pub const CLAIM: &str = "/api/v1/runner/claim";
    pub fn heartbeat(job: i64) -> String {
        format!("/api/v1/runner/jobs/{job}/heartbeat")
    }
    pub fn logs(job: i64) -> String {
        format!("/api/v1/runner/jobs/{job}/logs")
    }
    pub fn complete(job: i64) -> String {
        format!("/api/v1/runner/jobs/{job}/complete")
    }
    pub fn workspace(job: i64) -> String {
        format!("/api/v1/runner/jobs/{job}/workspace")
    }
    pub fn snapshot(job: i64) -> String {
        format!("/api/v1/runner/jobs/{job}/snapshot")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterRequest {
    /// The one-time registration token.
    pub token: String,
    pub name: String,
    pub slots: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterResponse {
    pub runner_id: i64,
    /// The runner's own token from now on; shown once.
    pub token: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClaimRequest {
    /// How long the coordinator may hold the request open when no job is ready.
    pub wait_ms: u64,
    /// Runs whose workspace this runner still keeps, so the coordinator can say which are over.
    #[serde(default)]
    pub held_runs: Vec<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClaimResponse {
    pub job: Option<JobAssignment>,
    /// Of the `held_runs`, those that are finished: their workspaces can go.
    #[serde(default)]
    pub release: Vec<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobAssignment {
    pub job_id: i64,
    pub attempt: i64,
    /// The coordinator installation's id: with `job_id` and `attempt` it labels the job's
    /// containers, so a later attempt finds (and removes) what an earlier one left running.
    pub installation: String,
    pub run_id: i64,
    pub run_number: i64,
    pub repo: String,
    pub stage: PlannedStage,
    /// Job ids of the stages this one needs, in order; their workspace snapshots, applied in
    /// this order, make this job's workspace. Empty: the source at the commit.
    pub needs_jobs: Vec<i64>,
    /// Whether another stage needs this one's workspace (so a snapshot must be uploaded).
    pub has_dependants: bool,
    pub lease_ms: u64,
    pub heartbeat_ms: u64,
    /// The secrets granted to this stage, as (name, value). Sent only over this channel, kept
    /// only in the runner's memory, masked in every log line.
    #[serde(default)]
    pub secrets: SecretValues,
    /// Values to mask but never inject: every other secret granted to any stage of the run, so
    /// a value an earlier stage left in the workspace is masked in this stage's output too.
    /// Kept only in the runner's memory, like `secrets`. Empty for older coordinators.
    #[serde(default)]
    pub mask: SecretValues,
    /// The outputs of the stages this one needs, transitively, as (stage, outputs): a scan
    /// finds the exact image a build in the same run produced.
    #[serde(default)]
    pub upstream: Vec<(String, serde_json::Value)>,
}

/// Secret values by name. Its `Debug` shows only the names, so an assignment can be logged.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretValues(pub Vec<(String, String)>);

impl std::fmt::Debug for SecretValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(k, _)| format!("{k}=***")))
            .finish()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    /// The run was cancelled: stop the job and report it cancelled.
    pub cancel: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogBatch {
    pub attempt: i64,
    pub lines: Vec<WireLogLine>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireLogLine {
    /// Per attempt, from 0; lets the coordinator drop lines it already has after a retry.
    pub seq: i64,
    /// `stdout`, `stderr` or `system`.
    pub stream: String,
    pub line: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireOutcome {
    Passed,
    Failed,
    Cancelled,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompleteRequest {
    pub attempt: i64,
    pub outcome: WireOutcome,
    pub exit_code: Option<i64>,
    pub reason: Option<String>,
    pub duration_ms: u64,
    /// What the stage produced (a build's image, a scan's verdict); `null` for most stages.
    #[serde(default)]
    pub outputs: serde_json::Value,
}

/// The error body of every non-2xx answer of the API.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `unauthorized`, `not_found`, `conflict`, `bad_request`, …
    pub code: String,
    pub message: String,
}
