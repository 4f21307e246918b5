//! Run cases: numbering, plans that fail before any job, DAG propagation and skips,
//! cancellation, superseding, and filtered listing. Claims appear only to drive jobs to an end.

use super::*;

pub async fn run_numbering(ctx: Ctx) {
    let s = ctx.store.clone();
    let a = s.create_repo(new_repo("a")).await.unwrap();
    let b = s.create_repo(new_repo("b")).await.unwrap();
    let r1 = s
        .create_run(push_run(a.id, "main", vec![]), 1)
        .await
        .unwrap();
    let r2 = s
        .create_run(push_run(a.id, "main", vec![]), 2)
        .await
        .unwrap();
    let r3 = s
        .create_run(push_run(b.id, "main", vec![]), 3)
        .await
        .unwrap();
    assert_eq!((r1.number, r2.number, r3.number), (1, 2, 1));
    assert_eq!(r1.repo_name, "a");
    assert_eq!(r1.actor.as_deref(), Some("alice"));
    assert_eq!(r1.trigger, "webhook");
    assert_eq!(r1.commit.len(), 40);
    // No jobs at all: nothing to wait for.
    assert_eq!(r1.status, RunStatus::Passed);

    // Concurrent creation still numbers without gaps or duplicates.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.create_run(push_run(b.id, "main", vec![job(0, "t", &[])]), 10 + i)
                .await
                .unwrap()
                .number
        }));
    }
    let mut numbers = Vec::new();
    for t in tasks {
        numbers.push(t.await.unwrap());
    }
    numbers.sort();
    assert_eq!(numbers, (2..=21).collect::<Vec<_>>());
    assert!(matches!(
        s.create_run(push_run(9999, "main", vec![]), 1).await,
        Err(StoreError::NotFound)
    ));
    // A plan that names a stage it does not have, or whose needs form a cycle, is
    // refused whole.
    for bad in [
        vec![job(0, "x", &[7])],
        vec![job(0, "x", &[1]), job(1, "y", &[0])],
        vec![job(0, "x", &[]), job(0, "y", &[])],
    ] {
        assert!(matches!(
            s.create_run(push_run(a.id, "main", bad), 1).await,
            Err(StoreError::Conflict(_))
        ));
    }
    assert_eq!(
        s.list_runs(&RunFilter {
            repo_id: Some(a.id),
            ..Default::default()
        })
        .await
        .unwrap()
        .len(),
        2
    );
}

pub async fn failed_run_has_no_jobs(ctx: Ctx) {
    let s = &*ctx.store;
    let a = s.create_repo(new_repo("a")).await.unwrap();
    let mut spec = push_run(a.id, "main", vec![job(0, "t", &[])]);
    spec.failed = Some(".moat.yml:3:1: unknown key `stagez`".into());
    let run = s.create_run(spec, 50).await.unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(
        run.reason.as_deref(),
        Some(".moat.yml:3:1: unknown key `stagez`")
    );
    assert_eq!(run.finished_at, Some(50));
    assert!(s.jobs_of_run(run.id).await.unwrap().is_empty());
    assert!(s.claim_job(1, 60, LEASE).await.unwrap().is_none());
}

pub async fn dag_propagation(ctx: Ctx) {
    let s = &*ctx.store;
    let a = s.create_repo(new_repo("a")).await.unwrap();
    let mut lint = job(2, "lint", &[]);
    lint.skip = Some("when: branch is not main".into());
    let jobs = vec![
        job(0, "build", &[]),
        job(1, "test", &[0]),
        lint,
        job(3, "deploy", &[1, 2]),
        job(4, "notify", &[3]),
    ];
    let run = s
        .create_run(push_run(a.id, "dev", jobs), 1000)
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::Queued);
    use JobStatus::*;
    let st = |v: &[(&str, JobStatus)]| {
        v.iter()
            .map(|(n, s)| (n.to_string(), *s))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        statuses(s, run.id).await,
        st(&[
            ("build", Ready),
            ("test", Pending),
            ("lint", Skipped),
            ("deploy", Pending),
            ("notify", Pending)
        ])
    );
    let lint = job_named(s, run.id, "lint").await;
    assert!(lint.when_skipped);
    assert_eq!(lint.reason.as_deref(), Some("when: branch is not main"));
    let build = job_named(s, run.id, "build").await;
    assert_eq!(build.ready_at, Some(1000));
    assert_eq!(build.needs, Vec::<i64>::new());
    assert_eq!(job_named(s, run.id, "deploy").await.needs, vec![1, 2]);

    let c = s.claim_job(7, 1100, LEASE).await.unwrap().unwrap();
    assert_eq!(c.job.name, "build");
    assert_eq!(c.job.status, Running);
    assert_eq!(c.job.attempt, 1);
    assert_eq!(c.job.runner_id, Some(7));
    assert_eq!(c.job.lease_expires_at, Some(1100 + LEASE));
    assert_eq!(c.job.started_at, Some(1100));
    assert_eq!(c.job.spec, "{\"stage\":\"build\"}");
    assert_eq!(c.run.id, run.id);
    assert_eq!(c.run.status, RunStatus::Running);
    assert_eq!(c.run.started_at, Some(1100));
    assert_eq!(c.repo, a);
    // Nothing else is ready yet.
    assert!(s.claim_job(8, 1101, LEASE).await.unwrap().is_none());

    s.complete_job(c.job.id, 7, passed(), 1200).await.unwrap();
    let build = s.get_job(c.job.id).await.unwrap();
    assert_eq!(
        (build.status, build.exit_code, build.finished_at),
        (Passed, Some(0), Some(1200))
    );
    let test = job_named(s, run.id, "test").await;
    assert_eq!((test.status, test.ready_at), (Ready, Some(1200)));

    let c = s.claim_job(7, 1300, LEASE).await.unwrap().unwrap();
    assert_eq!(c.job.name, "test");
    s.complete_job(c.job.id, 7, passed(), 1400).await.unwrap();
    // deploy needs test (passed) and lint (excluded by `when:`, so satisfied).
    assert_eq!(job_named(s, run.id, "deploy").await.status, Ready);

    let c = s.claim_job(7, 1500, LEASE).await.unwrap().unwrap();
    assert_eq!(c.job.name, "deploy");
    s.complete_job(c.job.id, 7, failed(), 1600).await.unwrap();
    let deploy = job_named(s, run.id, "deploy").await;
    assert_eq!(
        (deploy.status, deploy.exit_code, deploy.reason.as_deref()),
        (Failed, Some(1), Some("exit code 1"))
    );
    let notify = job_named(s, run.id, "notify").await;
    assert_eq!(notify.status, Skipped);
    assert!(!notify.when_skipped);
    assert_eq!(notify.reason.as_deref(), Some("needs deploy, which failed"));
    assert_eq!(notify.finished_at, Some(1600));

    let run = s.get_run(run.id).await.unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(run.reason.as_deref(), Some("stage deploy failed"));
    assert_eq!(run.finished_at, Some(1600));

    // A passing run.
    let run = s
        .create_run(
            push_run(a.id, "main", vec![job(0, "x", &[]), job(1, "y", &[0])]),
            2000,
        )
        .await
        .unwrap();
    drain(s, 7).await;
    let run = s.get_run(run.id).await.unwrap();
    assert_eq!((run.status, run.reason), (RunStatus::Passed, None));
    assert!(run.finished_at.is_some());
}

pub async fn dag_skip_chain(ctx: Ctx) {
    let s = &*ctx.store;
    let a = s.create_repo(new_repo("a")).await.unwrap();
    // test fails → deploy skipped → notify skipped, while docs (independent) still runs.
    let jobs = vec![
        job(0, "test", &[]),
        job(1, "deploy", &[0]),
        job(2, "notify", &[1]),
        job(3, "docs", &[]),
        job(4, "report", &[0, 3]),
    ];
    let run = s.create_run(push_run(a.id, "main", jobs), 1).await.unwrap();
    let t = s.claim_job(1, 2, LEASE).await.unwrap().unwrap();
    assert_eq!(t.job.name, "test");
    let d = s.claim_job(1, 2, LEASE).await.unwrap().unwrap();
    assert_eq!(d.job.name, "docs");
    s.complete_job(t.job.id, 1, failed(), 3).await.unwrap();
    assert_eq!(
        job_named(s, run.id, "deploy").await.reason.as_deref(),
        Some("needs test, which failed")
    );
    assert_eq!(
        job_named(s, run.id, "notify").await.reason.as_deref(),
        Some("needs deploy, which was skipped")
    );
    // report waits until all its needs are decided.
    assert_eq!(
        job_named(s, run.id, "report").await.status,
        JobStatus::Pending
    );
    assert_eq!(s.get_run(run.id).await.unwrap().status, RunStatus::Running);
    s.complete_job(
        d.job.id,
        1,
        JobCompletion {
            outcome: JobOutcome::Cancelled,
            exit_code: None,
            reason: Some("no-output timeout".into()),
            outputs: None,
        },
        4,
    )
    .await
    .unwrap();
    let report = job_named(s, run.id, "report").await;
    assert_eq!(report.status, JobStatus::Skipped);
    assert_eq!(report.reason.as_deref(), Some("needs test, which failed"));
    assert_eq!(
        job_named(s, run.id, "docs").await.status,
        JobStatus::Cancelled
    );
    let run = s.get_run(run.id).await.unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(run.reason.as_deref(), Some("stage test failed"));
}

pub async fn all_when_skipped_run_passes(ctx: Ctx) {
    let s = &*ctx.store;
    let a = s.create_repo(new_repo("a")).await.unwrap();
    let mut deploy = job(0, "deploy", &[]);
    deploy.skip = Some("when: event is not push".into());
    let after = job(1, "after", &[0]);
    let run = s
        .create_run(push_run(a.id, "main", vec![deploy]), 5)
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::Passed);
    assert_eq!(run.finished_at, Some(5));
    // A dependant of a `when:` skip is ready at once.
    let mut deploy = job(0, "deploy", &[]);
    deploy.skip = Some("when".into());
    let run = s
        .create_run(push_run(a.id, "main", vec![deploy, after]), 6)
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::Queued);
    assert_eq!(job_named(s, run.id, "after").await.status, JobStatus::Ready);
}

pub async fn cancel_run(ctx: Ctx) {
    let s = &*ctx.store;
    let a = s.create_repo(new_repo("a")).await.unwrap();
    let jobs = vec![
        job(0, "build", &[]),
        job(1, "test", &[0]),
        job(2, "lint", &[]),
    ];
    let run = s.create_run(push_run(a.id, "main", jobs), 0).await.unwrap();
    let c = s.claim_job(1, 10, LEASE).await.unwrap().unwrap();
    assert_eq!(c.job.name, "build");

    let after = s
        .cancel_run(run.id, "cancelled by alice", 20)
        .await
        .unwrap();
    // Still running: the build's runner has to stop it first.
    assert_eq!(after.status, RunStatus::Running);
    assert_eq!(after.reason.as_deref(), Some("cancelled by alice"));
    let lint = job_named(s, run.id, "lint").await;
    assert_eq!(
        (lint.status, lint.reason.as_deref()),
        (JobStatus::Cancelled, Some("cancelled by alice"))
    );
    assert_eq!(
        job_named(s, run.id, "test").await.status,
        JobStatus::Cancelled
    );
    let build = job_named(s, run.id, "build").await;
    assert_eq!(build.status, JobStatus::Running);
    assert!(build.cancel_requested);
    assert!(
        s.heartbeat(c.job.id, 1, 30, LEASE)
            .await
            .unwrap()
            .cancel_requested
    );
    assert!(s.claim_job(2, 30, LEASE).await.unwrap().is_none());

    // The runner finished before it saw the request: recorded as cancelled anyway.
    s.complete_job(c.job.id, 1, passed(), 40).await.unwrap();
    assert_eq!(
        s.get_job(c.job.id).await.unwrap().status,
        JobStatus::Cancelled
    );
    let run = s.get_run(run.id).await.unwrap();
    assert_eq!(run.status, RunStatus::Cancelled);
    assert_eq!(run.reason.as_deref(), Some("cancelled by alice"));
    assert_eq!(run.finished_at, Some(40));
    // Cancelling a finished run changes nothing.
    assert_eq!(s.cancel_run(run.id, "again", 50).await.unwrap(), run);
    assert!(matches!(
        s.cancel_run(9999, "x", 1).await,
        Err(StoreError::NotFound)
    ));

    // A queued run is cancelled at once.
    let queued = s
        .create_run(push_run(a.id, "main", vec![job(0, "t", &[])]), 60)
        .await
        .unwrap();
    let queued = s.cancel_run(queued.id, "nope", 70).await.unwrap();
    assert_eq!(queued.status, RunStatus::Cancelled);
    assert_eq!(queued.finished_at, Some(70));

    // A cancel-requested job whose runner vanished is cancelled when its lease expires.
    let r = s
        .create_run(push_run(a.id, "main", vec![job(0, "t", &[])]), 80)
        .await
        .unwrap();
    let c = s.claim_job(1, 90, 100).await.unwrap().unwrap();
    s.cancel_run(r.id, "stop", 95).await.unwrap();
    let expired = s.expire_leases(1000).await.unwrap();
    assert_eq!(expired.len(), 1);
    assert!(!expired[0].requeued);
    assert_eq!(
        s.get_job(c.job.id).await.unwrap().status,
        JobStatus::Cancelled
    );
    assert_eq!(s.get_run(r.id).await.unwrap().status, RunStatus::Cancelled);
}

pub async fn cancel_superseded(ctx: Ctx) {
    let s = &*ctx.store;
    let mut spec = new_repo("a");
    spec.cancel_superseded = true;
    let a = s.create_repo(spec).await.unwrap();
    let plain = s.create_repo(new_repo("plain")).await.unwrap();

    let two = || vec![job(0, "build", &[]), job(1, "test", &[0])];
    let r1 = s
        .create_run(push_run(a.id, "main", two()), 1)
        .await
        .unwrap();
    let c = s.claim_job(1, 2, LEASE).await.unwrap().unwrap();
    assert_eq!(c.run.id, r1.id);
    let other_branch = s.create_run(push_run(a.id, "dev", two()), 3).await.unwrap();
    let mut pr = push_run(a.id, "main", two());
    pr.event = "pull_request".into();
    let pr = s.create_run(pr, 4).await.unwrap();
    let p1 = s
        .create_run(push_run(plain.id, "main", two()), 5)
        .await
        .unwrap();

    let r2 = s
        .create_run(push_run(a.id, "main", two()), 6)
        .await
        .unwrap();
    assert_eq!(r2.number, 4);
    let r1_now = s.get_run(r1.id).await.unwrap();
    assert_eq!(r1_now.reason.as_deref(), Some("superseded by run #4"));
    // Its build is still running, so the run waits for the runner to stop it.
    assert_eq!(r1_now.status, RunStatus::Running);
    assert!(job_named(s, r1.id, "build").await.cancel_requested);
    assert_eq!(
        job_named(s, r1.id, "test").await.status,
        JobStatus::Cancelled
    );
    for untouched in [other_branch.id, pr.id] {
        assert_eq!(
            s.get_run(untouched).await.unwrap().status,
            RunStatus::Queued
        );
    }
    s.create_run(push_run(plain.id, "main", two()), 7)
        .await
        .unwrap();
    assert_eq!(s.get_run(p1.id).await.unwrap().status, RunStatus::Queued);

    s.complete_job(
        c.job.id,
        1,
        JobCompletion {
            outcome: JobOutcome::Cancelled,
            exit_code: None,
            reason: None,
            outputs: None,
        },
        8,
    )
    .await
    .unwrap();
    let r1_now = s.get_run(r1.id).await.unwrap();
    assert_eq!(r1_now.status, RunStatus::Cancelled);
    assert_eq!(r1_now.reason.as_deref(), Some("superseded by run #4"));
    assert_eq!(s.get_run(r2.id).await.unwrap().status, RunStatus::Queued);
}

pub async fn list_runs_filters(ctx: Ctx) {
    let s = &*ctx.store;
    let a = s.create_repo(new_repo("a")).await.unwrap();
    let b = s.create_repo(new_repo("b")).await.unwrap();
    let one = || vec![job(0, "t", &[])];
    let a1 = s
        .create_run(push_run(a.id, "main", one()), 1)
        .await
        .unwrap();
    let a2 = s.create_run(push_run(a.id, "dev", one()), 2).await.unwrap();
    let b1 = s
        .create_run(push_run(b.id, "main", one()), 3)
        .await
        .unwrap();
    let a3 = s
        .create_run(push_run(a.id, "main", one()), 4)
        .await
        .unwrap();
    s.cancel_run(a3.id, "x", 5).await.unwrap();
    let ids = |runs: Vec<Run>| runs.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let f = |repo_id, branch: Option<&str>, status, before, limit| RunFilter {
        repo_id,
        branch: branch.map(str::to_string),
        status,
        before,
        limit,
    };
    assert_eq!(
        ids(s.list_runs(&f(None, None, None, None, 0)).await.unwrap()),
        [a3.id, b1.id, a2.id, a1.id]
    );
    assert_eq!(
        ids(s
            .list_runs(&f(Some(a.id), None, None, None, 10))
            .await
            .unwrap()),
        [a3.id, a2.id, a1.id]
    );
    assert_eq!(
        ids(s
            .list_runs(&f(Some(a.id), Some("main"), None, None, 10))
            .await
            .unwrap()),
        [a3.id, a1.id]
    );
    assert_eq!(
        ids(s
            .list_runs(&f(None, Some("main"), Some(RunStatus::Queued), None, 10))
            .await
            .unwrap()),
        [b1.id, a1.id]
    );
    assert_eq!(
        ids(s
            .list_runs(&f(None, None, None, Some(b1.id), 1))
            .await
            .unwrap()),
        [a2.id]
    );
    let got = s
        .list_runs(&f(Some(b.id), None, None, None, 10))
        .await
        .unwrap();
    assert_eq!(got, vec![s.get_run(b1.id).await.unwrap()]);
}
