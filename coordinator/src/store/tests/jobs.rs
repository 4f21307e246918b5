//! Claim and lease cases: the lease owner, heartbeats, expiry with retries, fairness
//! across repositories, affinity, concurrency limits, concurrent claims and lease extension.

use super::*;

pub async fn wrong_runner_loses_lease(ctx: Ctx) {
    let s = &*ctx.store;
    let a = s.create_repo(new_repo("a")).await.unwrap();
    let run = s
        .create_run(push_run(a.id, "main", vec![job(0, "t", &[])]), 1)
        .await
        .unwrap();
    let c = s.claim_job(1, 2, LEASE).await.unwrap().unwrap();
    assert!(matches!(
        s.complete_job(c.job.id, 2, passed(), 3).await,
        Err(StoreError::LeaseLost)
    ));
    let j = s.get_job(c.job.id).await.unwrap();
    assert_eq!((j.status, j.runner_id), (JobStatus::Running, Some(1)));
    s.complete_job(c.job.id, 1, passed(), 4).await.unwrap();
    // Twice: the job is no longer running.
    assert!(matches!(
        s.complete_job(c.job.id, 1, failed(), 5).await,
        Err(StoreError::LeaseLost)
    ));
    assert_eq!(s.get_job(c.job.id).await.unwrap().status, JobStatus::Passed);
    assert_eq!(s.get_run(run.id).await.unwrap().status, RunStatus::Passed);
    assert!(matches!(
        s.complete_job(9999, 1, passed(), 5).await,
        Err(StoreError::NotFound)
    ));
}

pub async fn heartbeat(ctx: Ctx) {
    let s = &*ctx.store;
    let a = s.create_repo(new_repo("a")).await.unwrap();
    s.create_run(push_run(a.id, "main", vec![job(0, "t", &[])]), 1)
        .await
        .unwrap();
    let c = s.claim_job(1, 10, 100).await.unwrap().unwrap();
    let hb = s.heartbeat(c.job.id, 1, 50, 100).await.unwrap();
    assert!(!hb.cancel_requested);
    assert_eq!(
        s.get_job(c.job.id).await.unwrap().lease_expires_at,
        Some(150)
    );
    assert!(s.expire_leases(140).await.unwrap().is_empty());
    assert!(matches!(
        s.heartbeat(c.job.id, 2, 60, 100).await,
        Err(StoreError::LeaseLost)
    ));
}

pub async fn lease_expiry_retries_then_fails(ctx: Ctx) {
    let s = &*ctx.store;
    let a = s.create_repo(new_repo("a")).await.unwrap();
    let run = s
        .create_run(
            push_run(
                a.id,
                "main",
                vec![job(0, "build", &[]), job(1, "ship", &[0])],
            ),
            0,
        )
        .await
        .unwrap();
    let c = s.claim_job(1, 100, 1000).await.unwrap().unwrap();
    assert!(s.expire_leases(1100).await.unwrap().is_empty(), "not yet");
    let expired = s.expire_leases(1101).await.unwrap();
    assert_eq!(
        expired,
        vec![Expired {
            job_id: c.job.id,
            run_id: run.id,
            requeued: true
        }]
    );
    let j = s.get_job(c.job.id).await.unwrap();
    assert_eq!(j.status, JobStatus::Ready);
    assert_eq!(j.runner_id, None);
    assert_eq!(j.lease_expires_at, None);
    assert_eq!(
        j.reason.as_deref(),
        Some("runner lost (lease expired); retrying")
    );
    // The lost runner reports late: refused.
    assert!(matches!(
        s.complete_job(c.job.id, 1, passed(), 1200).await,
        Err(StoreError::LeaseLost)
    ));

    let c2 = s.claim_job(2, 1300, 1000).await.unwrap().unwrap();
    assert_eq!((c2.job.id, c2.job.attempt), (c.job.id, 2));
    let expired = s.expire_leases(2301).await.unwrap();
    assert_eq!(expired.len(), 1);
    assert!(!expired[0].requeued);
    let j = s.get_job(c.job.id).await.unwrap();
    assert_eq!(j.status, JobStatus::Failed);
    assert_eq!(
        j.reason.as_deref(),
        Some("runner lost: lease expired after 2 attempts")
    );
    assert_eq!(j.finished_at, Some(2301));
    assert_eq!(
        job_named(s, run.id, "ship").await.reason.as_deref(),
        Some("needs build, which failed")
    );
    let run = s.get_run(run.id).await.unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(run.reason.as_deref(), Some("stage build failed"));
    assert!(s.expire_leases(99_999).await.unwrap().is_empty());
}

pub async fn fairness_across_repositories(ctx: Ctx) {
    let s = &*ctx.store;
    let a = s.create_repo(new_repo("busy")).await.unwrap();
    let b = s.create_repo(new_repo("quiet")).await.unwrap();
    for i in 0..200 {
        s.create_run(push_run(a.id, "main", vec![job(0, "t", &[])]), i)
            .await
            .unwrap();
    }
    let quiet = s
        .create_run(push_run(b.id, "main", vec![job(0, "t", &[])]), 1000)
        .await
        .unwrap();
    let mut order = Vec::new();
    for i in 0..3 {
        let c = s.claim_job(1, 2000 + i, LEASE).await.unwrap().unwrap();
        order.push(c.repo.id);
        s.complete_job(c.job.id, 1, passed(), 2000 + i)
            .await
            .unwrap();
    }
    let pos = order.iter().position(|&r| r == b.id);
    assert!(
        matches!(pos, Some(p) if p < 2),
        "quiet repository served at {pos:?}"
    );
    assert_eq!(s.get_run(quiet.id).await.unwrap().status, RunStatus::Passed);

    // Round robin between busy repositories, also within one millisecond.
    let c = s.create_repo(new_repo("busy2")).await.unwrap();
    for i in 0..5 {
        s.create_run(push_run(c.id, "main", vec![job(0, "t", &[])]), i)
            .await
            .unwrap();
    }
    let mut order = Vec::new();
    for _ in 0..6 {
        let cl = s.claim_job(1, 5000, LEASE).await.unwrap().unwrap();
        order.push(cl.repo.id);
        s.complete_job(cl.job.id, 1, passed(), 5000).await.unwrap();
    }
    for pair in order.windows(2) {
        assert_ne!(pair[0], pair[1], "no repository twice in a row: {order:?}");
    }
    // Queue order within a repository: oldest ready first.
    let runs = s
        .list_runs(&RunFilter {
            repo_id: Some(a.id),
            status: Some(RunStatus::Passed),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut numbers: Vec<_> = runs.iter().map(|r| r.number).collect();
    numbers.sort();
    assert_eq!(numbers, (1..=numbers.len() as i64).collect::<Vec<_>>());
}

pub async fn affinity_prefers_runs_in_hand(ctx: Ctx) {
    let s = &*ctx.store;
    let a = s.create_repo(new_repo("a")).await.unwrap();
    let r1 = s
        .create_run(
            push_run(
                a.id,
                "main",
                vec![job(0, "build", &[]), job(1, "test", &[0])],
            ),
            1,
        )
        .await
        .unwrap();
    let c = s.claim_job(1, 2, LEASE).await.unwrap().unwrap();
    assert_eq!(c.run.id, r1.id);
    // Newer runs queue up in the meantime …
    for i in 0..3 {
        s.create_run(push_run(a.id, "main", vec![job(0, "t", &[])]), 3 + i)
            .await
            .unwrap();
    }
    s.complete_job(c.job.id, 1, passed(), 10).await.unwrap();
    // … but runner 1 continues its own run, even though the others were ready earlier.
    let next = s.claim_job(1, 11, LEASE).await.unwrap().unwrap();
    assert_eq!((next.run.id, next.job.name.as_str()), (r1.id, "test"));
    // Another runner takes the oldest ready job.
    let other = s.claim_job(2, 12, LEASE).await.unwrap().unwrap();
    assert_eq!(other.run.number, 2);
}

pub async fn concurrency_limit(ctx: Ctx) {
    let s = &*ctx.store;
    let mut spec = new_repo("limited");
    spec.concurrency = Some(2);
    let a = s.create_repo(spec).await.unwrap();
    for i in 0..5 {
        s.create_run(push_run(a.id, "main", vec![job(0, "t", &[])]), i)
            .await
            .unwrap();
    }
    let c1 = s.claim_job(1, 10, LEASE).await.unwrap().unwrap();
    let _c2 = s.claim_job(2, 10, LEASE).await.unwrap().unwrap();
    assert!(
        s.claim_job(3, 10, LEASE).await.unwrap().is_none(),
        "two already running"
    );
    // Another repository is not held up by the limited one.
    let b = s.create_repo(new_repo("free")).await.unwrap();
    s.create_run(push_run(b.id, "main", vec![job(0, "t", &[])]), 11)
        .await
        .unwrap();
    let cb = s.claim_job(3, 12, LEASE).await.unwrap().unwrap();
    assert_eq!(cb.repo.id, b.id);
    s.complete_job(c1.job.id, 1, passed(), 13).await.unwrap();
    let c3 = s.claim_job(3, 14, LEASE).await.unwrap().unwrap();
    assert_eq!(c3.repo.id, a.id);
    assert!(s.claim_job(4, 15, LEASE).await.unwrap().is_none());
}

pub async fn concurrent_claims_never_double_claim(ctx: Ctx) {
    const JOBS: usize = 500;
    const TASKS: i64 = 8;
    let s = ctx.store.clone();
    let mut repos = Vec::new();
    for r in 0..10 {
        let mut spec = new_repo(&format!("r{r}"));
        if r == 0 {
            spec.concurrency = Some(1);
        }
        repos.push(s.create_repo(spec).await.unwrap().id);
    }
    for i in 0..JOBS {
        let repo = repos[i % repos.len()];
        s.create_run(push_run(repo, "main", vec![job(0, "t", &[])]), i as i64)
            .await
            .unwrap();
    }
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for runner in 1..=TASKS {
        let s = s.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            let deadline = Instant::now() + std::time::Duration::from_secs(60);
            while done.load(Ordering::SeqCst) < JOBS {
                assert!(Instant::now() < deadline, "claims stalled");
                match s.claim_job(runner, now_ms(), LEASE).await.unwrap() {
                    Some(c) => {
                        assert_eq!(c.job.runner_id, Some(runner));
                        mine.push(c.job.id);
                        s.complete_job(c.job.id, runner, passed(), now_ms())
                            .await
                            .unwrap();
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                    // The concurrency-limited repository may be busy elsewhere.
                    None => tokio::task::yield_now().await,
                }
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let unique: HashSet<_> = all.iter().copied().collect();
    assert_eq!(all.len(), JOBS, "every job claimed exactly once");
    assert_eq!(unique.len(), JOBS, "a job was handed out twice");
    let passed = s
        .list_runs(&RunFilter {
            status: Some(RunStatus::Passed),
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(passed.len(), JOBS);
    for id in unique.iter().take(20) {
        assert_eq!(s.get_job(*id).await.unwrap().attempt, 1);
    }
}

pub async fn extend_leases(ctx: Ctx) {
    let s = &*ctx.store;
    let a = s.create_repo(new_repo("a")).await.unwrap();
    for i in 0..3 {
        s.create_run(push_run(a.id, "main", vec![job(0, "t", &[])]), i)
            .await
            .unwrap();
    }
    let c1 = s.claim_job(1, 100, 1000).await.unwrap().unwrap();
    let c2 = s.claim_job(2, 100, 100_000).await.unwrap().unwrap();
    // Coordinator restarted at 5000: runners get until 65 000 to heartbeat again.
    assert_eq!(s.extend_leases(65_000).await.unwrap(), 1);
    assert_eq!(
        s.get_job(c1.job.id).await.unwrap().lease_expires_at,
        Some(65_000)
    );
    assert_eq!(
        s.get_job(c2.job.id).await.unwrap().lease_expires_at,
        Some(100_100),
        "a longer lease is not shortened"
    );
    assert!(s.expire_leases(6000).await.unwrap().is_empty());
    assert_eq!(s.expire_leases(65_001).await.unwrap().len(), 1);
}
