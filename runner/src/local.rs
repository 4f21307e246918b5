//! Executes a whole plan on one engine: stages in DAG order, independent ones in parallel up to
//! a limit, a failed stage skipping everything that needs it, and every Docker resource of the
//! run removed at the end — also when the run is cancelled.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moat_pipelines::{Plan, PlannedStage};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::engine::{Engine, Observer, StageInput, StageResult, StageStatus};
use crate::error::EngineError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Passed,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Passed => "passed",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone)]
pub struct RunReport {
    pub run_id: String,
    pub status: RunStatus,
    /// One result per stage of the plan, in plan order.
    pub stages: Vec<(String, StageResult)>,
    pub duration: Duration,
}

/// Random run id: short, lower-case, valid in Docker resource names.
pub fn new_run_id() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..12)
        .map(|_| {
            let n: u8 = rng.random_range(0..36);
            (if n < 10 { b'0' + n } else { b'a' + n - 10 }) as char
        })
        .collect()
}

/// What a local run needs besides its plan.
pub struct RunOptions {
    pub run_id: String,
    /// The shared workspace, as a tar archive.
    pub workspace: Vec<u8>,
    /// Independent stages running at once.
    pub parallel: usize,
    /// Secret values by name; each stage gets those its `secrets:` lists, and every stage's
    /// output is masked for all of them (a value can travel between stages in the workspace).
    pub secrets: Vec<(String, String)>,
}

/// Runs `plan` on `engine`.
pub async fn execute(
    engine: Arc<Engine>,
    plan: &Plan,
    options: RunOptions,
    observer: Arc<dyn Observer>,
    cancel: CancellationToken,
) -> Result<RunReport, EngineError> {
    let RunOptions {
        run_id,
        workspace,
        parallel,
        secrets,
    } = options;
    let run_id = run_id.as_str();
    let secrets = Arc::new(secrets);
    let started = Instant::now();
    let n = plan.stages.len();
    let mut results: Vec<Option<StageResult>> = vec![None; n];
    for s in &plan.stages {
        if let Some(reason) = &s.skip {
            let r = StageResult::skipped(reason.clone());
            observer.stage_finished(s, &r);
            results[s.index] = Some(r);
        }
    }
    if plan.stages.iter().all(|s| s.skip.is_some()) {
        // Nothing runs: no Docker resources are needed at all.
        return Ok(finish(run_id, plan, results, started, &cancel, &*observer));
    }

    let prepared = tokio::select! {
        r = engine.prepare_run(run_id, workspace) => r,
        _ = cancel.cancelled() => Err(EngineError::Workspace("cancelled".to_string())),
    };
    let handle = match prepared {
        Ok(h) => Arc::new(h),
        Err(e) => {
            let _ = engine.finish_run(run_id).await;
            return Err(e);
        }
    };

    let parallel = parallel.max(1);
    let mut running: JoinSet<(usize, StageResult)> = JoinSet::new();
    let mut started_flags = vec![false; n];
    loop {
        // Decide every stage whose needs are all decided.
        let mut progressed = true;
        while progressed {
            progressed = false;
            for s in &plan.stages {
                if results[s.index].is_some() || started_flags[s.index] {
                    continue;
                }
                let needs: Vec<&StageResult> = s
                    .needs
                    .iter()
                    .filter_map(|&i| results[i].as_ref())
                    .collect();
                if needs.len() < s.needs.len() {
                    continue;
                }
                // A need excluded by `when:` counts as satisfied; a failed, cancelled or skipped
                // (because of a failure) need blocks.
                let blocking = s.needs.iter().find(|&&i| {
                    let r = results[i].as_ref().expect("decided");
                    match r.status {
                        StageStatus::Passed => false,
                        StageStatus::Skipped => plan.stages[i].skip.is_none(),
                        _ => true,
                    }
                });
                if let Some(&i) = blocking {
                    let cancelled = cancel.is_cancelled()
                        || results[i].as_ref().map(|r| r.status) == Some(StageStatus::Cancelled);
                    if cancelled {
                        let r = not_started();
                        observer.stage_finished(s, &r);
                        results[s.index] = Some(r);
                        progressed = true;
                        continue;
                    }
                    let r = StageResult::skipped(format!(
                        "needs {}, which {}",
                        plan.stages[i].name,
                        match results[i].as_ref().map(|r| r.status) {
                            Some(StageStatus::Skipped) => "was skipped",
                            _ => "failed",
                        }
                    ));
                    observer.stage_finished(s, &r);
                    results[s.index] = Some(r);
                    progressed = true;
                    continue;
                }
                if cancel.is_cancelled() {
                    continue;
                }
                if running.len() >= parallel {
                    continue;
                }
                started_flags[s.index] = true;
                let (engine, handle, observer, cancel, secrets) = (
                    engine.clone(),
                    handle.clone(),
                    observer.clone(),
                    cancel.clone(),
                    secrets.clone(),
                );
                let stage = s.clone();
                let upstream = upstream_outputs(plan, &results, s.index);
                running.spawn(async move {
                    let input = stage_input(&stage, &secrets, upstream);
                    let r = engine
                        .run_stage(&handle, &stage, &input, &*observer, &cancel)
                        .await;
                    (stage.index, r)
                });
            }
        }
        match running.join_next().await {
            Some(Ok((i, r))) => results[i] = Some(r),
            Some(Err(e)) => {
                // A panicking stage task must not take the run (and its cleanup) down with it.
                tracing::error!(error = %e, "stage task failed");
                cancel.cancel();
            }
            None => break,
        }
    }

    if let Err(e) = engine.finish_run(run_id).await {
        tracing::warn!(run.id = %run_id, error = %e, "cleanup failed");
    }
    Ok(finish(run_id, plan, results, started, &cancel, &*observer))
}

/// What a stage of a local run gets: the secrets its `secrets:` lists, and every other value
/// of the run to mask.
fn stage_input(
    stage: &PlannedStage,
    secrets: &[(String, String)],
    upstream: Vec<(String, serde_json::Value)>,
) -> StageInput {
    StageInput {
        secrets: stage
            .secrets
            .iter()
            .filter_map(|n| secrets.iter().find(|(k, _)| k == n).cloned())
            .collect(),
        mask: secrets
            .iter()
            .filter(|(k, _)| !stage.secrets.contains(k))
            .map(|(_, v)| v.clone())
            .collect(),
        upstream,
        job: None,
    }
}

fn not_started() -> StageResult {
    StageResult {
        status: StageStatus::Cancelled,
        exit_code: None,
        reason: Some("cancelled before it started".to_string()),
        duration: Duration::ZERO,
        outputs: serde_json::Value::Null,
    }
}

/// The outputs of everything stage `index` needs, transitively, nearest first.
fn upstream_outputs(
    plan: &Plan,
    results: &[Option<StageResult>],
    index: usize,
) -> Vec<(String, serde_json::Value)> {
    let mut out = Vec::new();
    let mut seen = vec![false; plan.stages.len()];
    let mut queue: std::collections::VecDeque<usize> =
        plan.stages[index].needs.iter().copied().collect();
    while let Some(i) = queue.pop_front() {
        if std::mem::replace(&mut seen[i], true) {
            continue;
        }
        if let Some(r) = &results[i]
            && !r.outputs.is_null()
        {
            out.push((plan.stages[i].name.clone(), r.outputs.clone()));
        }
        queue.extend(plan.stages[i].needs.iter().copied());
    }
    out
}

fn finish(
    run_id: &str,
    plan: &Plan,
    results: Vec<Option<StageResult>>,
    started: Instant,
    cancel: &CancellationToken,
    observer: &dyn Observer,
) -> RunReport {
    let stages: Vec<(String, StageResult)> = plan
        .stages
        .iter()
        .zip(results)
        .map(|(s, r)| {
            let r = r.unwrap_or_else(|| {
                let r = not_started();
                observer.stage_finished(s, &r);
                r
            });
            (s.name.clone(), r)
        })
        .collect();
    let status = if cancel.is_cancelled() {
        RunStatus::Cancelled
    } else if stages.iter().zip(&plan.stages).all(|((_, r), s)| {
        r.status == StageStatus::Passed || (r.status == StageStatus::Skipped && s.skip.is_some())
    }) {
        RunStatus::Passed
    } else {
        RunStatus::Failed
    };
    RunReport {
        run_id: run_id.to_string(),
        status,
        stages,
        duration: started.elapsed(),
    }
}
