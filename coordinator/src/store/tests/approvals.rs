//! Approval cases: a job waits for its approval, becomes ready once approved, and a
//! refused approval (already given, not waiting, unknown job) changes nothing.

use super::*;

pub async fn approvals(ctx: Ctx) {
    let s = &*ctx.store;
    let a = s.create_repo(new_repo("a")).await.unwrap();
    let mut deploy = job(1, "deploy", &[0]);
    deploy.approval_required = true;
    let mut early = job(0, "gate", &[]);
    early.approval_required = true;
    let run = s
        .create_run(
            push_run(a.id, "main", vec![job(0, "build", &[]), deploy]),
            1,
        )
        .await
        .unwrap();
    let c = s.claim_job(1, 2, LEASE).await.unwrap().unwrap();
    s.complete_job(c.job.id, 1, passed(), 3).await.unwrap();
    // The need passed; the deploy waits.
    let jobs = s.jobs_of_run(run.id).await.unwrap();
    assert_eq!(jobs[1].status, JobStatus::Pending);
    assert_eq!(jobs[1].reason.as_deref(), Some("waiting for approval"));
    assert!(s.claim_job(1, 4, LEASE).await.unwrap().is_none());
    assert_eq!(s.get_run(run.id).await.unwrap().status, RunStatus::Running);
    // Approved: ready, claimable, the run finishes.
    let approved = s.approve_job(jobs[1].id, "alice", 5).await.unwrap();
    assert_eq!(approved.approved_by.as_deref(), Some("alice"));
    assert_eq!(approved.status, JobStatus::Ready);
    assert_eq!(approved.reason, None);
    assert!(matches!(
        s.approve_job(jobs[1].id, "bob", 6).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.approve_job(jobs[0].id, "bob", 6).await,
        Err(StoreError::Conflict(_))
    ));
    let c = s.claim_job(1, 7, LEASE).await.unwrap().unwrap();
    assert_eq!(c.job.name, "deploy");
    s.complete_job(c.job.id, 1, passed(), 8).await.unwrap();
    assert_eq!(s.get_run(run.id).await.unwrap().status, RunStatus::Passed);

    // A job without needs that requires approval waits from the start; an approval given
    // before its needs are done is kept.
    let run2 = s
        .create_run(push_run(a.id, "main", vec![early]), 10)
        .await
        .unwrap();
    let j = &s.jobs_of_run(run2.id).await.unwrap()[0];
    assert_eq!(j.status, JobStatus::Pending);
    assert!(s.claim_job(1, 11, LEASE).await.unwrap().is_none());
    assert_eq!(
        s.approve_job(j.id, "carol", 12).await.unwrap().status,
        JobStatus::Ready
    );
    assert!(matches!(
        s.approve_job(99_999, "x", 13).await,
        Err(StoreError::NotFound)
    ));
}
