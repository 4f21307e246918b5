//! The decisions made when a runner claims a job: whether a deploy is refused, which of a
//! stage's secrets it is granted (and why the others are withheld), and which of the run's
//! other secrets its output must mask. Pure functions over typed values — the run's event and
//! refs, the planned stages, the administrator's policy — that do no I/O: the runner protocol
//! (`http/runner.rs`) reads the run, opens the secrets, writes the audit trail and acts on the
//! answers.

use std::collections::HashSet;

use moat_pipelines::{Approval, EventKind, PlannedStage, SecretDecl, StageKind};

use crate::policy::AdminPolicy;

/// The run a claimed job belongs to, as the decisions see it.
#[derive(Debug, Clone, Copy)]
pub struct RunFacts<'a> {
    pub event: EventKind,
    /// False for pull requests from forks: they get no secrets and can never deploy.
    pub trusted: bool,
    pub branch: Option<&'a str>,
    pub tag: Option<&'a str>,
}

/// One job of the run, as the deploy gate sees it when it looks at what a deploy needs.
#[derive(Debug, Clone, Copy)]
pub struct RunJob<'a> {
    /// Its stage's index in the plan; `needs` name stages by these.
    pub stage_index: i64,
    pub name: &'a str,
    pub needs: &'a [i64],
    /// Its stage's kind; `None` when its stored spec cannot be read.
    pub kind: Option<StageKind>,
    pub passed: bool,
}

/// The job being claimed: its planned stage, what it needs, whether it was approved.
#[derive(Debug, Clone, Copy)]
pub struct ClaimedJob<'a> {
    pub stage: &'a PlannedStage,
    pub needs: &'a [i64],
    pub approved: bool,
}

/// Why a deploy is refused; its text is the job's failure reason and the audit trail's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("refused: deploys never run for pull_request events")]
    PullRequest,
    #[error("refused: the event is not trusted")]
    Untrusted,
    #[error("refused: {git_ref} is not a protected ref (the administrator's policy lists them)")]
    Unprotected { git_ref: String },
    #[error("refused: no scan stage before this deploy (policy: scan_before_deploy)")]
    NoScan,
    #[error("refused: scan stage {stage} did not pass")]
    ScanFailed { stage: String },
    #[error("refused: this deploy requires an approval (moat approve RUN)")]
    ApprovalRequired,
}

/// Whether the run's ref is one the administrator protects: the tag of a tag event, the branch
/// of a push or a manual run; a pull request's never is.
pub fn protected_ref(policy: &AdminPolicy, run: &RunFacts) -> bool {
    let git_ref = match run.event {
        EventKind::Tag => run.tag,
        EventKind::Push | EventKind::Manual => run.branch,
        EventKind::PullRequest => None,
    };
    git_ref.is_some_and(|r| policy.is_protected(r))
}

/// The deploy preconditions, decided by the coordinator and never by the pipeline file: a
/// trusted event on a protected ref (never a pull request), a passed scan stage among
/// everything the deploy needs, transitively (when the policy requires it), and an approval
/// when the stage asks for one. `Some` refuses the job; a stage that is not a deploy is never
/// refused. `jobs` are the run's jobs.
pub fn deploy_refusal(
    policy: &AdminPolicy,
    run: &RunFacts,
    job: &ClaimedJob,
    jobs: &[RunJob],
) -> Option<Refusal> {
    if job.stage.kind != StageKind::Deploy {
        return None;
    }
    if run.event == EventKind::PullRequest {
        return Some(Refusal::PullRequest);
    }
    if !run.trusted {
        return Some(Refusal::Untrusted);
    }
    if !protected_ref(policy, run) {
        let git_ref = run.tag.or(run.branch).unwrap_or("?").to_string();
        return Some(Refusal::Unprotected { git_ref });
    }
    if policy.scan_before_deploy {
        // Everything the deploy needs, transitively.
        let mut todo = job.needs.to_vec();
        let mut seen = HashSet::new();
        let mut scans = Vec::new();
        while let Some(i) = todo.pop() {
            if !seen.insert(i) {
                continue;
            }
            if let Some(need) = jobs.iter().find(|j| j.stage_index == i) {
                if need.kind == Some(StageKind::Scan) {
                    scans.push(need);
                }
                todo.extend(need.needs.iter().copied());
            }
        }
        if scans.is_empty() {
            return Some(Refusal::NoScan);
        }
        if let Some(failed) = scans.iter().find(|s| !s.passed) {
            return Some(Refusal::ScanFailed {
                stage: failed.name.to_string(),
            });
        }
    }
    if job.stage.approval == Approval::Required && !job.approved {
        return Some(Refusal::ApprovalRequired);
    }
    None
}

/// Why `decl` is withheld from a stage of kind `kind`, or `None` when it is granted: a fork's
/// pull request gets no secret; a deploy-only one reaches only deploy stages on protected refs.
pub fn withheld(
    decl: &SecretDecl,
    kind: StageKind,
    trusted: bool,
    protected: bool,
) -> Option<&'static str> {
    if !trusted {
        return Some("the run is not trusted (a fork's pull request)");
    }
    if decl.deploy_only && !(kind == StageKind::Deploy && protected) {
        return Some("deploy-only: not a deploy stage on a protected ref");
    }
    None
}

/// The secrets to mask in `stage`'s output besides its own grants: every secret granted to
/// any other stage of the run (`run` holds all of its stages; those `when:` excludes never run
/// and are left out), once each. A value one stage writes to the workspace can be printed by
/// any stage after it.
pub fn run_mask<'a>(
    stage: &PlannedStage,
    run: &'a [PlannedStage],
    trusted: bool,
    protected: bool,
) -> Vec<&'a SecretDecl> {
    let own = |name: &str| {
        stage
            .secret_decls
            .iter()
            .any(|d| d.name == name && withheld(d, stage.kind, trusted, protected).is_none())
    };
    let mut out: Vec<&SecretDecl> = Vec::new();
    for other in run.iter().filter(|s| s.skip.is_none()) {
        for decl in &other.secret_decls {
            if withheld(decl, other.kind, trusted, protected).is_none()
                && !own(&decl.name)
                && !out.iter().any(|d| d.name == decl.name)
            {
                out.push(decl);
            }
        }
    }
    out
}

/// One of a stage's own secrets, and whether it may have it.
#[derive(Debug, Clone, Copy)]
pub struct Grant<'a> {
    pub decl: &'a SecretDecl,
    /// Why it is withheld ([`withheld`]); `None` when it is granted.
    pub withheld: Option<&'static str>,
}

/// What a stage is given of the secrets, before any value is opened.
#[derive(Debug, Clone, Default)]
pub struct Grants<'a> {
    /// The stage's own secrets, in the order it declares them.
    pub own: Vec<Grant<'a>>,
    /// The run's other granted secrets, to mask in its output ([`run_mask`]).
    pub mask: Vec<&'a SecretDecl>,
}

impl Grants<'_> {
    /// Nothing to open, nothing to record.
    pub fn is_empty(&self) -> bool {
        self.own.is_empty() && self.mask.is_empty()
    }
}

/// The grants of `stage`, one of the stages of `run`.
pub fn grants<'a>(
    stage: &'a PlannedStage,
    run: &'a [PlannedStage],
    trusted: bool,
    protected: bool,
) -> Grants<'a> {
    Grants {
        own: stage
            .secret_decls
            .iter()
            .map(|decl| Grant {
                decl,
                withheld: withheld(decl, stage.kind, trusted, protected),
            })
            .collect(),
        mask: run_mask(stage, run, trusted, protected),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use moat_pipelines::Event;

    const PIPELINE: &str = r#"version: 1
secrets:
  TOKEN: {}
  NPM: {}
  DEPLOY_KEY: { deploy_only: true }
  UNUSED: {}
stages:
  - name: a
    kind: test
    image: x
    secrets: [TOKEN]
    commands: ["echo $TOKEN > t"]
  - name: b
    kind: test
    image: x
    needs: [a]
    commands: ["cat t"]
  - name: docs
    kind: test
    image: x
    when: { branch: docs }
    secrets: [NPM]
    commands: [true]
  - name: ship
    kind: deploy
    needs: [b]
    secrets: [TOKEN, DEPLOY_KEY]
    deploy: { target: docker, image: "app:1", port: 8080 }
"#;

    fn stages() -> Vec<PlannedStage> {
        let pipeline = moat_pipelines::parse(PIPELINE).expect("valid pipeline");
        let event = Event {
            kind: EventKind::Push,
            branch: Some("main".into()),
            target_branch: None,
            tag: None,
            commit: "0".repeat(40),
            repo: "o/r".into(),
            run_id: "1".into(),
        };
        moat_pipelines::plan(&pipeline, &event).unwrap().stages
    }

    fn names(decls: Vec<&SecretDecl>) -> Vec<&str> {
        decls.into_iter().map(|d| d.name.as_str()).collect()
    }

    #[test]
    fn grants_follow_trust_kind_and_protection() {
        let s = stages();
        let token = &s[0].secret_decls[0];
        let deploy_key = s[3]
            .secret_decls
            .iter()
            .find(|d| d.name == "DEPLOY_KEY")
            .unwrap();
        assert_eq!(withheld(token, StageKind::Test, true, false), None);
        assert!(withheld(token, StageKind::Test, false, true).is_some());
        assert_eq!(withheld(deploy_key, StageKind::Deploy, true, true), None);
        assert!(withheld(deploy_key, StageKind::Deploy, true, false).is_some());
        assert!(withheld(deploy_key, StageKind::Test, true, true).is_some());
    }

    #[test]
    fn every_stage_masks_what_the_run_s_other_stages_are_granted() {
        let s = stages();
        // b has no grant of its own, but a writes TOKEN where b can read it; the deploy's
        // DEPLOY_KEY is granted on a protected ref. `docs` never runs (when:), `UNUSED` is
        // granted to nobody.
        assert_eq!(
            names(run_mask(&s[1], &s, true, true)),
            ["TOKEN", "DEPLOY_KEY"]
        );
        // On an unprotected ref the deploy key goes to nobody.
        assert_eq!(names(run_mask(&s[1], &s, true, false)), ["TOKEN"]);
        // A stage's own grants travel as its secrets, not again as values to mask.
        assert_eq!(names(run_mask(&s[0], &s, true, true)), ["DEPLOY_KEY"]);
        assert!(run_mask(&s[3], &s, true, true).is_empty());
        // A fork's pull request gets no secret at all, so there is nothing to mask either.
        for stage in &s {
            assert!(run_mask(stage, &s, false, true).is_empty());
        }
    }

    #[test]
    fn a_stage_s_grants_keep_its_order_and_say_why_one_is_withheld() {
        let s = stages();
        let ship = grants(&s[3], &s, true, false);
        let own: Vec<(&str, Option<&str>)> = ship
            .own
            .iter()
            .map(|g| (g.decl.name.as_str(), g.withheld))
            .collect();
        assert_eq!(
            own,
            [
                ("TOKEN", None),
                (
                    "DEPLOY_KEY",
                    Some("deploy-only: not a deploy stage on a protected ref")
                )
            ]
        );
        assert!(ship.mask.is_empty());
        // b declares nothing but masks a's TOKEN; a stage of a fork's run has nothing at all.
        let b = grants(&s[1], &s, true, true);
        assert!(b.own.is_empty() && !b.is_empty());
        assert!(grants(&s[1], &s, false, true).is_empty());
        assert!(
            grants(&s[0], &s, false, true)
                .own
                .iter()
                .all(|g| g.withheld.is_some())
        );
    }

    // The deploy gate. `ship` (a deploy) needs `check` (a scan, index 1), which needs `build`
    // (index 0); the run is a trusted push to `main`, which the default policy protects.

    fn push_main() -> RunFacts<'static> {
        RunFacts {
            event: EventKind::Push,
            trusted: true,
            branch: Some("main"),
            tag: None,
        }
    }

    fn run_jobs(scan_passed: bool) -> Vec<RunJob<'static>> {
        vec![
            RunJob {
                stage_index: 0,
                name: "build",
                needs: &[],
                kind: Some(StageKind::Build),
                passed: true,
            },
            RunJob {
                stage_index: 1,
                name: "check",
                needs: &[0],
                kind: Some(StageKind::Scan),
                passed: scan_passed,
            },
        ]
    }

    fn deploy_stage(approval: Approval) -> PlannedStage {
        let mut ship = stages().remove(3);
        assert_eq!(ship.kind, StageKind::Deploy);
        ship.approval = approval;
        ship
    }

    fn refusal(
        policy: &AdminPolicy,
        run: &RunFacts,
        stage: &PlannedStage,
        needs: &[i64],
        approved: bool,
        jobs: &[RunJob],
    ) -> Option<String> {
        let job = ClaimedJob {
            stage,
            needs,
            approved,
        };
        deploy_refusal(policy, run, &job, jobs).map(|r| r.to_string())
    }

    #[test]
    fn a_trusted_deploy_on_a_protected_ref_after_a_passed_scan_is_granted() {
        let policy = AdminPolicy::default();
        let ship = deploy_stage(Approval::None);
        let jobs = run_jobs(true);
        assert_eq!(
            refusal(&policy, &push_main(), &ship, &[1], false, &jobs),
            None
        );
        // A manual run of a protected branch, a protected tag.
        let manual = RunFacts {
            event: EventKind::Manual,
            ..push_main()
        };
        assert_eq!(refusal(&policy, &manual, &ship, &[1], false, &jobs), None);
        let mut tags = AdminPolicy::default();
        tags.protected_refs = vec![moat_pipelines::pattern::Pattern::new("v*").unwrap()];
        let tag = RunFacts {
            event: EventKind::Tag,
            trusted: true,
            branch: None,
            tag: Some("v1.0"),
        };
        assert_eq!(refusal(&tags, &tag, &ship, &[1], false, &jobs), None);
        // An approved deploy that asks for one.
        let approved = deploy_stage(Approval::Required);
        assert_eq!(
            refusal(&policy, &push_main(), &approved, &[1], true, &jobs),
            None
        );
        // Without the policy's scan requirement, no scan is needed.
        let mut no_scan = AdminPolicy::default();
        no_scan.scan_before_deploy = false;
        assert_eq!(
            refusal(&no_scan, &push_main(), &ship, &[], false, &[]),
            None
        );
    }

    #[test]
    fn stages_that_are_not_deploys_are_never_refused() {
        let s = stages();
        let fork = RunFacts {
            event: EventKind::PullRequest,
            trusted: false,
            branch: Some("feature"),
            tag: None,
        };
        assert_eq!(
            refusal(&AdminPolicy::default(), &fork, &s[0], &[], false, &[]),
            None
        );
    }

    #[test]
    fn deploys_never_run_for_pull_requests() {
        let pr = RunFacts {
            event: EventKind::PullRequest,
            ..push_main()
        };
        assert_eq!(
            refusal(
                &AdminPolicy::default(),
                &pr,
                &deploy_stage(Approval::None),
                &[1],
                true,
                &run_jobs(true)
            )
            .as_deref(),
            Some("refused: deploys never run for pull_request events")
        );
    }

    #[test]
    fn deploys_never_run_for_untrusted_events() {
        let untrusted = RunFacts {
            trusted: false,
            ..push_main()
        };
        assert_eq!(
            refusal(
                &AdminPolicy::default(),
                &untrusted,
                &deploy_stage(Approval::None),
                &[1],
                true,
                &run_jobs(true)
            )
            .as_deref(),
            Some("refused: the event is not trusted")
        );
    }

    #[test]
    fn deploys_run_only_on_protected_refs() {
        let policy = AdminPolicy::default();
        let ship = deploy_stage(Approval::None);
        let jobs = run_jobs(true);
        let feature = RunFacts {
            branch: Some("feature/x"),
            ..push_main()
        };
        assert_eq!(
            refusal(&policy, &feature, &ship, &[1], true, &jobs).as_deref(),
            Some(
                "refused: feature/x is not a protected ref (the administrator's policy lists them)"
            )
        );
        // A tag event judges its tag, not a branch it may carry.
        let tag = RunFacts {
            event: EventKind::Tag,
            trusted: true,
            branch: Some("main"),
            tag: Some("v1"),
        };
        assert_eq!(
            refusal(&policy, &tag, &ship, &[1], true, &jobs).as_deref(),
            Some("refused: v1 is not a protected ref (the administrator's policy lists them)")
        );
    }

    #[test]
    fn deploys_need_a_scan_stage_before_them() {
        let policy = AdminPolicy::default();
        let ship = deploy_stage(Approval::None);
        let no_scan = Some(
            "refused: no scan stage before this deploy (policy: scan_before_deploy)".to_string(),
        );
        // Needing only the build, or nothing, or a stage whose spec is unreadable.
        let jobs = run_jobs(true);
        assert_eq!(
            refusal(&policy, &push_main(), &ship, &[0], true, &jobs),
            no_scan
        );
        assert_eq!(
            refusal(&policy, &push_main(), &ship, &[], true, &jobs),
            no_scan
        );
        let mut unreadable = run_jobs(true);
        unreadable[1].kind = None;
        assert_eq!(
            refusal(&policy, &push_main(), &ship, &[1], true, &unreadable),
            no_scan
        );
        // A scan found through the needs of a need counts.
        let mut through = run_jobs(true);
        through.push(RunJob {
            stage_index: 2,
            name: "package",
            needs: &[1],
            kind: Some(StageKind::Build),
            passed: true,
        });
        assert_eq!(
            refusal(&policy, &push_main(), &ship, &[2], true, &through),
            None
        );
    }

    #[test]
    fn deploys_need_their_scan_stages_to_pass() {
        assert_eq!(
            refusal(
                &AdminPolicy::default(),
                &push_main(),
                &deploy_stage(Approval::None),
                &[1],
                true,
                &run_jobs(false)
            )
            .as_deref(),
            Some("refused: scan stage check did not pass")
        );
    }

    #[test]
    fn deploys_that_require_an_approval_wait_for_one() {
        assert_eq!(
            refusal(
                &AdminPolicy::default(),
                &push_main(),
                &deploy_stage(Approval::Required),
                &[1],
                false,
                &run_jobs(true)
            )
            .as_deref(),
            Some("refused: this deploy requires an approval (moat approve RUN)")
        );
    }
}
