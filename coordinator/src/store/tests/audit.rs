//! Audit trail cases: events appended and read back per run and overall, oldest first.

use super::*;

pub async fn audit(ctx: Ctx) {
    let s = &*ctx.store;
    let a = s.create_repo(new_repo("a")).await.unwrap();
    let run = s
        .create_run(push_run(a.id, "main", vec![]), 1)
        .await
        .unwrap();
    s.audit("alice", "repo.create", None, "{\"name\":\"a\"}", 10)
        .await
        .unwrap();
    s.audit("gate", "gate.secrets", Some(run.id), "{\"findings\":0}", 11)
        .await
        .unwrap();
    s.audit("bob", "run.approve", Some(run.id), "{}", 12)
        .await
        .unwrap();
    let trail = s.audit_events(Some(run.id), 10).await.unwrap();
    let actions: Vec<_> = trail.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["gate.secrets", "run.approve"]);
    assert_eq!(trail[0].run_id, Some(run.id));
    assert_eq!(trail[0].at, 11);
    assert_eq!(trail[0].actor, "gate");
    assert_eq!(trail[0].detail, "{\"findings\":0}");
    let latest = s.audit_events(None, 2).await.unwrap();
    let actions: Vec<_> = latest.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["gate.secrets", "run.approve"]);
    assert_eq!(s.audit_events(None, 0).await.unwrap().len(), 3);
}
