//! Repository cases: creation, lookup, conflicts and deletion. No runs or jobs beyond what
//! deletion must cascade to.

use super::*;

pub async fn repositories(ctx: Ctx) {
    let s = &*ctx.store;
    let mut spec = new_repo("web");
    spec.forge = Forge::Gitea;
    spec.concurrency = Some(3);
    spec.cancel_superseded = true;
    spec.protected_branches = vec!["main".into(), "release/*".into()];
    let web = s.create_repo(spec).await.unwrap();
    assert_eq!(web.name, "web");
    assert_eq!(web.forge, Forge::Gitea);
    assert_eq!(web.concurrency, Some(3));
    assert!(web.cancel_superseded);
    assert_eq!(web.protected_branches, vec!["main", "release/*"]);
    let api = s.create_repo(new_repo("api")).await.unwrap();

    assert_eq!(s.get_repo(web.id).await.unwrap(), web);
    assert_eq!(s.get_repo_by_name("api").await.unwrap(), api);
    assert_eq!(s.webhook_secret(web.id).await.unwrap(), "secret-web");
    let names: Vec<_> = s
        .list_repos()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["api", "web"]);

    match s.create_repo(new_repo("web")).await {
        Err(StoreError::Conflict(msg)) => assert!(msg.contains("web"), "{msg}"),
        other => panic!("expected a conflict, got {other:?}"),
    }

    // Deleting takes the repository's runs, jobs, logs and deliveries with it.
    let run = s
        .create_run(push_run(api.id, "main", vec![job(0, "t", &[])]), now_ms())
        .await
        .unwrap();
    let j = job_named(s, run.id, "t").await;
    let line = NewLogLine {
        seq: 0,
        stream: "stdout".into(),
        line: "hi".into(),
    };
    s.append_logs(j.id, 1, &[line], now_ms()).await.unwrap();
    s.insert_delivery(api.id, "d1", "push", b"{}", now_ms())
        .await
        .unwrap();
    s.delete_repo(api.id).await.unwrap();
    assert!(matches!(
        s.get_repo(api.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(s.get_run(run.id).await, Err(StoreError::NotFound)));
    assert!(matches!(s.get_job(j.id).await, Err(StoreError::NotFound)));
    assert!(s.run_logs(run.id, 0, 10).await.unwrap().is_empty());
    assert!(s.claim_delivery(now_ms(), 1000).await.unwrap().is_none());
    assert!(matches!(
        s.delete_repo(api.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.get_repo_by_name("api").await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.webhook_secret(api.id).await,
        Err(StoreError::NotFound)
    ));
}
