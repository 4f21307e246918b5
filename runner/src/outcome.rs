//! The vocabulary every stage kind and every caller of the engine shares: how a stage ended
//! ([`StageStatus`], [`StageResult`]), what it is given besides its plan ([`StageInput`]) and who
//! hears about it ([`Observer`]). Types only: no Docker, no scheduling.

use std::time::Duration;

use moat_pipelines::PlannedStage;

use crate::docker;
use crate::logs::StreamKind;

/// How a stage ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StageStatus {
    Passed,
    Failed,
    /// Not run: a stage it needs did not pass, `when:` excluded it, or it was not selected.
    Skipped,
    Cancelled,
}

impl StageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StageStatus::Passed => "passed",
            StageStatus::Failed => "failed",
            StageStatus::Skipped => "skipped",
            StageStatus::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageResult {
    pub status: StageStatus,
    pub exit_code: Option<i64>,
    /// Why it failed or was skipped, in words for the user.
    pub reason: Option<String>,
    pub duration: Duration,
    /// What the stage produced for later stages and the record: a build's image (id, tag,
    /// digest), a scan's verdict and findings. `Null` for most stages.
    pub outputs: serde_json::Value,
}

/// What a stage gets besides its plan. Its `Debug` shows secret names only.
#[derive(Clone, Default)]
pub struct StageInput {
    /// The secrets granted to it, as (name, value).
    pub secrets: Vec<(String, String)>,
    /// Values masked in its output but never given to it: the secrets granted to the run's
    /// other stages, which may reach this one through the workspace.
    pub mask: Vec<String>,
    /// The outputs of the stages it needs (transitively), as (stage name, outputs).
    pub upstream: Vec<(String, serde_json::Value)>,
    /// The coordinator job attempt this stage runs as (`None` for `moat run`): its containers
    /// are labelled with it (see [`docker::JobRef`]).
    pub job: Option<docker::JobRef>,
}

impl std::fmt::Debug for StageInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.secrets.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("StageInput")
            .field("secrets", &names)
            .field("mask", &self.mask.len())
            .field("upstream", &self.upstream)
            .field("job", &self.job)
            .finish()
    }
}

/// How a stage ended, before timing is added.
pub(crate) struct Outcome {
    pub status: StageStatus,
    pub exit_code: Option<i64>,
    pub reason: Option<String>,
    pub outputs: serde_json::Value,
}

impl Outcome {
    pub fn new(status: StageStatus, exit_code: Option<i64>, reason: Option<String>) -> Self {
        Outcome {
            status,
            exit_code,
            reason,
            outputs: serde_json::Value::Null,
        }
    }

    pub fn failed(reason: impl Into<String>) -> Self {
        Self::new(StageStatus::Failed, None, Some(reason.into()))
    }
}

impl StageResult {
    pub fn skipped(reason: impl Into<String>) -> Self {
        StageResult {
            status: StageStatus::Skipped,
            exit_code: None,
            reason: Some(reason.into()),
            duration: Duration::ZERO,
            outputs: serde_json::Value::Null,
        }
    }
}

/// Receives what happens during a run. Called from the engine's tasks; keep it quick.
pub trait Observer: Send + Sync {
    fn stage_started(&self, _stage: &PlannedStage) {}
    fn log_line(&self, stage: &PlannedStage, stream: StreamKind, line: &str);
    fn stage_finished(&self, _stage: &PlannedStage, _result: &StageResult) {}
}
