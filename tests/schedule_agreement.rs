//! `moat run` and the coordinator make the same stage decisions. For every pipeline in
//! `tests/pipelines/valid/`, planned for a push, a pull request, a tag and a manual run, and for
//! every mix of stage outcomes (passed, failed, cancelled; all of them up to
//! [`EXHAUSTIVE_UP_TO`] runnable stages, a fixed pseudo-random sample beyond), two callers of
//! the scheduling rule are driven to the end of the run:
//!
//! * the local executor's [`Schedule`], the very code `moat run` drives, here fed the chosen
//!   outcomes instead of container results (the rule is what is compared, not Docker);
//! * the coordinator's real store (SQLite, in memory): jobs created from the same plan, claimed
//!   by a runner, completed with the same outcomes, approved when they wait for an approval.
//!
//! Every stage must end with the same status (and a skipped one with the same reason), and the
//! run with the same status.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use moat_coordinator::store::{
    Forge, JobCompletion, JobOutcome, JobStatus, NewJob, NewRepository, NewRun, RunStatus, Store,
};
use moat_pipelines::{Event, EventKind, Plan};
use moat_runner::StageResult;
use moat_runner::local::{Schedule, Step};
use moat_runner::{Observer, StageStatus};

/// All 3^n mixes up to this many runnable stages (729); a sample of that many beyond.
const EXHAUSTIVE_UP_TO: u32 = 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Passed,
    Failed,
    Cancelled,
}

const OUTCOMES: [Outcome; 3] = [Outcome::Passed, Outcome::Failed, Outcome::Cancelled];

/// How one stage ended, as both sides can say it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct End {
    status: &'static str,
    /// Compared for skipped stages only: other reasons come from the stage itself.
    reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Ending {
    stages: BTreeMap<String, End>,
    run: &'static str,
}

struct Quiet;

impl Observer for Quiet {
    fn log_line(&self, _: &moat_pipelines::PlannedStage, _: moat_runner::StreamKind, _: &str) {}
}

fn result(outcome: Outcome) -> StageResult {
    let (status, exit_code, reason) = match outcome {
        Outcome::Passed => (StageStatus::Passed, Some(0), None),
        Outcome::Failed => (
            StageStatus::Failed,
            Some(1),
            Some("exit code 1".to_string()),
        ),
        Outcome::Cancelled => (StageStatus::Cancelled, None, Some("cancelled".to_string())),
    };
    StageResult {
        status,
        exit_code,
        reason,
        duration: Duration::ZERO,
        outputs: serde_json::Value::Null,
    }
}

/// `moat run`'s decisions, with stages "running" one at a time in the order they start.
fn local(plan: &Plan, outcomes: &BTreeMap<usize, Outcome>) -> Ending {
    let mut schedule = Schedule::new(plan);
    let mut queue = std::collections::VecDeque::new();
    // Bounded: every step decides or starts at least one stage while any is undecided.
    for _ in 0..=2 * plan.stages.len() + 1 {
        for step in schedule.step(false, 1) {
            if let Step::Start(i) = step {
                queue.push_back(i);
            }
        }
        match queue.pop_front() {
            Some(i) => schedule.finished(i, result(outcomes[&i])),
            None => break,
        }
    }
    let report = schedule.report("agreement", false, Duration::ZERO, &Quiet);
    Ending {
        stages: report
            .stages
            .into_iter()
            .map(|(name, r)| {
                let status = r.status.as_str();
                let reason = (r.status == StageStatus::Skipped)
                    .then_some(r.reason)
                    .flatten();
                (name, End { status, reason })
            })
            .collect(),
        run: report.status.as_str(),
    }
}

struct Coordinator {
    store: Arc<dyn Store>,
    repo_id: i64,
    runner_id: i64,
}

impl Coordinator {
    async fn new() -> Coordinator {
        let store = moat_coordinator::store::connect("sqlite::memory:")
            .await
            .expect("in-memory store");
        let repo = store
            .create_repo(NewRepository {
                name: "agreement".into(),
                clone_url: "file:///nonexistent/agreement.git".into(),
                forge: Forge::Github,
                webhook_secret: "secret".into(),
                concurrency: None,
                cancel_superseded: false,
                protected_branches: vec!["main".into()],
            })
            .await
            .unwrap();
        let runner = store
            .create_runner("agreement", b"runner-token-hash", 1)
            .await
            .unwrap();
        Coordinator {
            store,
            repo_id: repo.id,
            runner_id: runner.id,
        }
    }

    /// The coordinator's decisions for the same plan and outcomes.
    async fn run(&self, plan: &Plan, outcomes: &BTreeMap<usize, Outcome>) -> Ending {
        let jobs: Vec<NewJob> = plan
            .stages
            .iter()
            .map(|s| NewJob::planned(s).unwrap())
            .collect();
        let run = self
            .store
            .create_run(
                NewRun {
                    repo_id: self.repo_id,
                    event: "push".into(),
                    branch: Some("main".into()),
                    target_branch: None,
                    tag: None,
                    commit: "0123456789abcdef0123456789abcdef01234567".into(),
                    trusted: true,
                    trigger: "webhook".into(),
                    actor: None,
                    max_retries: 0,
                    jobs,
                    failed: None,
                },
                1,
            )
            .await
            .unwrap();
        let mut now = 2;
        for _ in 0..=2 * plan.stages.len() + 1 {
            now += 1;
            if let Some(claimed) = self
                .store
                .claim_job(self.runner_id, now, 60_000)
                .await
                .unwrap()
            {
                assert_eq!(claimed.run.id, run.id, "a job of another run was claimed");
                let (outcome, exit_code) = match outcomes[&(claimed.job.stage_index as usize)] {
                    Outcome::Passed => (JobOutcome::Passed, Some(0)),
                    Outcome::Failed => (JobOutcome::Failed, Some(1)),
                    Outcome::Cancelled => (JobOutcome::Cancelled, None),
                };
                self.store
                    .complete_job(
                        claimed.job.id,
                        self.runner_id,
                        JobCompletion {
                            outcome,
                            exit_code,
                            reason: None,
                            outputs: None,
                        },
                        now,
                    )
                    .await
                    .unwrap();
                continue;
            }
            // Nothing to claim: approve what waits for an approval, as `moat run`'s user does
            // by starting it; otherwise the run is over.
            let waiting: Vec<_> = self
                .store
                .jobs_of_run(run.id)
                .await
                .unwrap()
                .into_iter()
                .filter(|j| j.status == JobStatus::Pending && j.approval_required)
                .collect();
            if waiting.is_empty() {
                break;
            }
            for j in waiting {
                assert_eq!(
                    j.reason.as_deref(),
                    Some(moat_pipelines::schedule::AWAITING_APPROVAL),
                    "{}: pending with no approval asked",
                    j.name
                );
                let record = moat_coordinator::store::NewAuditEvent {
                    actor: "alice".into(),
                    action: "gate.approval".into(),
                    run_id: Some(run.id),
                    detail: "{}".into(),
                };
                self.store
                    .approve_job(j.id, "alice", &record, now)
                    .await
                    .unwrap();
            }
        }
        let jobs = self.store.jobs_of_run(run.id).await.unwrap();
        let run = self.store.get_run(run.id).await.unwrap();
        Ending {
            stages: jobs
                .into_iter()
                .map(|j| {
                    let reason = (j.status == JobStatus::Skipped)
                        .then_some(j.reason)
                        .flatten();
                    (
                        j.name,
                        End {
                            status: j.status.as_str(),
                            reason,
                        },
                    )
                })
                .collect(),
            run: match run.status {
                RunStatus::Passed => "passed",
                RunStatus::Failed => "failed",
                RunStatus::Cancelled => "cancelled",
                other => panic!("run not finished: {other:?} ({:?})", run.reason),
            },
        }
    }
}

fn events() -> Vec<Event> {
    let event = |kind, branch: Option<&str>, target: Option<&str>, tag: Option<&str>| Event {
        kind,
        branch: branch.map(str::to_string),
        target_branch: target.map(str::to_string),
        tag: tag.map(str::to_string),
        commit: "0123456789abcdef0123456789abcdef01234567".into(),
        repo: "agreement".into(),
        run_id: "agreement".into(),
    };
    vec![
        event(EventKind::Push, Some("main"), None, None),
        event(EventKind::Push, Some("feature/x"), None, None),
        event(
            EventKind::PullRequest,
            Some("feature/x"),
            Some("main"),
            None,
        ),
        event(EventKind::Tag, None, None, Some("v1.2.3")),
        event(EventKind::Manual, Some("main"), None, None),
    ]
}

/// The mixes of outcomes over `runnable` stages: every one when few, else a deterministic
/// sample (a fixed-seed generator) that always includes all-passed and all-failed.
fn mixes(runnable: &[usize]) -> Vec<BTreeMap<usize, Outcome>> {
    let n = runnable.len() as u32;
    let pick = |digits: &mut dyn FnMut() -> usize| {
        runnable
            .iter()
            .map(|&i| (i, OUTCOMES[digits()]))
            .collect::<BTreeMap<_, _>>()
    };
    if n <= EXHAUSTIVE_UP_TO {
        (0..3usize.pow(n))
            .map(|mut code| {
                pick(&mut || {
                    let d = code % 3;
                    code /= 3;
                    d
                })
            })
            .collect()
    } else {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut out = vec![pick(&mut || 0), pick(&mut || 1), pick(&mut || 2)];
        for _ in 0..3usize.pow(EXHAUSTIVE_UP_TO) {
            out.push(pick(&mut || {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                ((state >> 33) % 3) as usize
            }));
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moat_run_and_the_coordinator_decide_alike() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/pipelines/valid");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no pipelines in {}", dir.display());
    let coordinator = Coordinator::new().await;
    let (mut compared, mut skips_seen, mut approvals_seen) = (0usize, 0usize, 0usize);
    for file in &files {
        let src = std::fs::read_to_string(file).unwrap();
        let pipeline = moat_pipelines::parse(&src)
            .unwrap_or_else(|e| panic!("{}: {}", file.display(), e.render("pipeline")));
        let mut planned = 0;
        for event in events() {
            let Ok(plan) = moat_pipelines::plan(&pipeline, &event) else {
                continue;
            };
            planned += 1;
            let runnable: Vec<usize> = plan
                .stages
                .iter()
                .filter(|s| s.skip.is_none())
                .map(|s| s.index)
                .collect();
            approvals_seen += plan
                .stages
                .iter()
                .filter(|s| s.approval == moat_pipelines::Approval::Required)
                .count();
            for outcomes in mixes(&runnable) {
                let want = local(&plan, &outcomes);
                let got = coordinator.run(&plan, &outcomes).await;
                assert_eq!(
                    got,
                    want,
                    "{} on a {:?} event with outcomes {outcomes:?}: the coordinator (left) and \
                     moat run (right) disagree",
                    file.display(),
                    event.kind
                );
                skips_seen += want.stages.values().filter(|e| e.reason.is_some()).count();
                compared += 1;
            }
        }
        assert!(planned > 0, "{}: no event could be planned", file.display());
    }
    // The comparison covered what it claims to: cascades of skips and approvals.
    assert!(compared >= files.len(), "only {compared} runs compared");
    assert!(skips_seen > 0, "no mix skipped anything");
    println!(
        "{compared} runs compared over {} pipelines; {skips_seen} skips, {approvals_seen} \
         approval stages planned",
        files.len()
    );
}
