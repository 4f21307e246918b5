//! Executes a whole plan on one engine: stages in DAG order, independent ones in parallel up to
//! a limit, a failed stage skipping everything that needs it, and every Docker resource of the
//! run removed at the end — also when the run is cancelled.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moat_pipelines::schedule::{self, Conclusion, Decision, StageView, State};
use moat_pipelines::{Plan, PlannedStage};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::engine::Engine;
use crate::error::EngineError;
use crate::outcome::{Observer, StageInput, StageResult, StageStatus};

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
    let mut schedule = Schedule::new(plan);
    for s in plan.stages.iter().filter(|s| s.skip.is_some()) {
        observer.stage_finished(s, schedule.result(s.index).expect("decided"));
    }
    if plan.stages.iter().all(|s| s.skip.is_some()) {
        // Nothing runs: no Docker resources are needed at all.
        return Ok(schedule.report(run_id, false, started.elapsed(), &*observer));
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
    loop {
        let free = parallel.saturating_sub(running.len());
        for step in schedule.step(cancel.is_cancelled(), free) {
            match step {
                Step::Decided(i) => {
                    let r = schedule.result(i).expect("decided");
                    observer.stage_finished(&plan.stages[i], r);
                }
                Step::Start(i) => {
                    let (engine, handle, observer, cancel, secrets) = (
                        engine.clone(),
                        handle.clone(),
                        observer.clone(),
                        cancel.clone(),
                        secrets.clone(),
                    );
                    let stage = plan.stages[i].clone();
                    let upstream = schedule.upstream_outputs(i);
                    running.spawn(async move {
                        let input = stage_input(&stage, &secrets, upstream);
                        let r = engine
                            .run_stage(&handle, &stage, &input, &*observer, &cancel)
                            .await;
                        (stage.index, r)
                    });
                }
            }
        }
        match running.join_next().await {
            Some(Ok((i, r))) => schedule.finished(i, r),
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
    Ok(schedule.report(run_id, cancel.is_cancelled(), started.elapsed(), &*observer))
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

/// What a local run decides, without Docker: which stages start, which are skipped and why
/// (by [`moat_pipelines::schedule`], the rule the coordinator uses too), which never start
/// because the run was cancelled, and how the run ends. [`execute`] drives it with real stages.
pub struct Schedule<'p> {
    plan: &'p Plan,
    results: Vec<Option<StageResult>>,
    started: Vec<bool>,
}

/// What [`Schedule::step`] decided about one stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Start the stage now.
    Start(usize),
    /// The stage has its result without running (see [`Schedule::result`]).
    Decided(usize),
}

impl<'p> Schedule<'p> {
    /// Stages excluded by `when:` are decided from the start.
    pub fn new(plan: &'p Plan) -> Self {
        let results = plan
            .stages
            .iter()
            .map(|s| s.skip.clone().map(StageResult::skipped))
            .collect();
        Schedule {
            plan,
            results,
            started: vec![false; plan.stages.len()],
        }
    }

    pub fn result(&self, index: usize) -> Option<&StageResult> {
        self.results.get(index)?.as_ref()
    }

    fn state(&self, index: usize) -> State {
        match &self.results[index] {
            None if self.started[index] => State::Running,
            None => State::Pending,
            Some(r) => match r.status {
                StageStatus::Passed => State::Passed,
                StageStatus::Failed => State::Failed,
                StageStatus::Cancelled => State::Cancelled,
                StageStatus::Skipped if self.plan.stages[index].skip.is_some() => State::Excluded,
                StageStatus::Skipped => State::Skipped,
            },
        }
    }

    fn views(&self) -> Vec<StageView<'p>> {
        self.plan
            .stages
            .iter()
            .map(|s| StageView {
                name: &s.name,
                needs: &s.needs,
                state: self.state(s.index),
                // `moat run` is its own approver: the user started it.
                awaits_approval: false,
            })
            .collect()
    }

    /// Decides what can be decided now and starts at most `free` stages. Once `cancelled`,
    /// nothing starts and every stage not started ends as cancelled.
    pub fn step(&mut self, cancelled: bool, free: usize) -> Vec<Step> {
        let mut steps = Vec::new();
        if cancelled {
            for i in 0..self.results.len() {
                if self.results[i].is_none() && !self.started[i] {
                    self.results[i] = Some(not_started());
                    steps.push(Step::Decided(i));
                }
            }
            return steps;
        }
        // A plan's needs point at its own stages (the planner checks), so this cannot fail;
        // if it did, starting nothing more ends the run as failed rather than hanging.
        let decisions = match schedule::settle(&self.views()) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "plan has an impossible need");
                return self.step(true, 0);
            }
        };
        let mut free = free;
        for (i, decision) in decisions {
            match decision {
                Decision::Skip(blocked) => {
                    self.results[i] = Some(StageResult::skipped(blocked.to_string()));
                    steps.push(Step::Decided(i));
                }
                Decision::Run | Decision::AwaitApproval if free > 0 => {
                    free -= 1;
                    self.started[i] = true;
                    steps.push(Step::Start(i));
                }
                // Over the parallel limit: asked again when a slot frees up.
                Decision::Run | Decision::AwaitApproval => {}
            }
        }
        steps
    }

    /// Records how a started stage ended.
    pub fn finished(&mut self, index: usize, result: StageResult) {
        self.results[index] = Some(result);
    }

    /// The outputs of everything stage `index` needs, transitively, nearest first.
    pub fn upstream_outputs(&self, index: usize) -> Vec<(String, serde_json::Value)> {
        let plan = self.plan;
        let mut out = Vec::new();
        let mut seen = vec![false; plan.stages.len()];
        let mut queue: std::collections::VecDeque<usize> =
            plan.stages[index].needs.iter().copied().collect();
        while let Some(i) = queue.pop_front() {
            if std::mem::replace(&mut seen[i], true) {
                continue;
            }
            if let Some(r) = &self.results[i]
                && !r.outputs.is_null()
            {
                out.push((plan.stages[i].name.clone(), r.outputs.clone()));
            }
            queue.extend(plan.stages[i].needs.iter().copied());
        }
        out
    }

    /// The run's report: a stage never decided (the run ended early) counts as not started.
    pub fn report(
        self,
        run_id: &str,
        cancelled: bool,
        duration: Duration,
        observer: &dyn Observer,
    ) -> RunReport {
        let mut this = self;
        for (i, s) in this.plan.stages.iter().enumerate() {
            if this.results[i].is_none() {
                let r = not_started();
                observer.stage_finished(s, &r);
                this.results[i] = Some(r);
            }
        }
        let status = match schedule::conclude(&this.views(), cancelled) {
            Some(Conclusion::Passed) => RunStatus::Passed,
            Some(Conclusion::Cancelled) => RunStatus::Cancelled,
            Some(Conclusion::Failed { .. }) | None => RunStatus::Failed,
        };
        RunReport {
            run_id: run_id.to_string(),
            status,
            stages: this
                .plan
                .stages
                .iter()
                .zip(this.results)
                .map(|(s, r)| (s.name.clone(), r.expect("decided above")))
                .collect(),
            duration,
        }
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
