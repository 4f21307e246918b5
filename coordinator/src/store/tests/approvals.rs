//! Approval cases: a job waits for its approval, becomes ready once approved, its audit record
//! is written with it, and a refused approval (already given, not waiting, unknown job) changes
//! nothing and records nothing.

use super::*;

/// The audit record an approval of a stage of `run_id` by `who` carries.
fn approval(run_id: i64, who: &str, stage: &str) -> NewAuditEvent {
    NewAuditEvent {
        actor: who.into(),
        action: "gate.approval".into(),
        run_id: Some(run_id),
        detail: format!("{{\"stage\":\"{stage}\",\"approved_by\":\"{who}\"}}"),
    }
}

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
    let approved = s
        .approve_job(jobs[1].id, "alice", &approval(run.id, "alice", "deploy"), 5)
        .await
        .unwrap();
    assert_eq!(approved.approved_by.as_deref(), Some("alice"));
    assert_eq!(approved.status, JobStatus::Ready);
    assert_eq!(approved.reason, None);
    assert!(matches!(
        s.approve_job(jobs[1].id, "bob", &approval(run.id, "bob", "deploy"), 6)
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.approve_job(jobs[0].id, "bob", &approval(run.id, "bob", "build"), 6)
            .await,
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
        s.approve_job(j.id, "carol", &approval(run2.id, "carol", "gate"), 12)
            .await
            .unwrap()
            .status,
        JobStatus::Ready
    );
    assert!(matches!(
        s.approve_job(99_999, "x", &approval(run2.id, "x", "none"), 13)
            .await,
        Err(StoreError::NotFound)
    ));
}

/// An approval and its audit record are written together; a refused approval (already given,
/// not waiting for one, finished, unknown job) writes no audit record.
pub async fn approval_is_audited_in_its_transaction(ctx: Ctx) {
    let s = &*ctx.store;
    let a = s.create_repo(new_repo("a")).await.unwrap();
    let mut deploy = job(1, "deploy", &[]);
    deploy.approval_required = true;
    let run = s
        .create_run(
            push_run(a.id, "main", vec![job(0, "build", &[]), deploy]),
            1,
        )
        .await
        .unwrap();
    let jobs = s.jobs_of_run(run.id).await.unwrap();
    let (build, deploy) = (&jobs[0], &jobs[1]);
    assert!(s.audit_events(None, 0).await.unwrap().is_empty());

    let record = approval(run.id, "alice", "deploy");
    let approved = s.approve_job(deploy.id, "alice", &record, 5).await.unwrap();
    assert_eq!(approved.approved_by.as_deref(), Some("alice"));
    let trail = s.audit_events(Some(run.id), 0).await.unwrap();
    assert_eq!(trail.len(), 1, "{trail:?}");
    assert_eq!(trail[0].actor, record.actor);
    assert_eq!(trail[0].action, record.action);
    assert_eq!(trail[0].run_id, Some(run.id));
    assert_eq!(trail[0].detail, record.detail);
    assert_eq!(trail[0].at, 5);

    // Refused: already approved, needs no approval, unknown job.
    let refused = [(deploy.id, "bob", "deploy"), (build.id, "bob", "build")];
    for (id, who, stage) in refused {
        assert!(matches!(
            s.approve_job(id, who, &approval(run.id, who, stage), 6)
                .await,
            Err(StoreError::Conflict(_))
        ));
    }
    assert!(matches!(
        s.approve_job(99_999, "x", &approval(run.id, "x", "none"), 7)
            .await,
        Err(StoreError::NotFound)
    ));
    // Not waiting any more: its run was cancelled.
    let mut gate = job(0, "gate", &[]);
    gate.approval_required = true;
    let run2 = s
        .create_run(push_run(a.id, "main", vec![gate]), 8)
        .await
        .unwrap();
    let gate = &s.jobs_of_run(run2.id).await.unwrap()[0];
    s.cancel_run(run2.id, "cancelled by alice", 9)
        .await
        .unwrap();
    assert!(matches!(
        s.approve_job(gate.id, "carol", &approval(run2.id, "carol", "gate"), 10)
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.jobs_of_run(run2.id).await.unwrap()[0].approved_by, None);

    let all = s.audit_events(None, 0).await.unwrap();
    assert_eq!(all.len(), 1, "refused approvals were audited: {all:?}");
    assert_eq!(all[0].id, trail[0].id);
}
