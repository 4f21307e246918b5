//! Webhook delivery cases: the once-per-id inbox, leased claims with bounded attempts,
//! outcomes, listing and retention. They must not depend on run scheduling.

use super::*;

pub async fn deliveries(ctx: Ctx) {
    let s = &*ctx.store;
    let a = s.create_repo(new_repo("a")).await.unwrap();
    let b = s.create_repo(new_repo("b")).await.unwrap();
    let d1 = s
        .insert_delivery(a.id, "guid-1", "push", b"{\"x\":1}", 100)
        .await
        .unwrap()
        .expect("new delivery");
    assert_eq!(
        s.insert_delivery(a.id, "guid-1", "push", b"again", 101)
            .await
            .unwrap(),
        None,
        "a replayed delivery id is refused"
    );
    // Delivery ids are per repository.
    let d2 = s
        .insert_delivery(b.id, "guid-1", "push", b"{}", 102)
        .await
        .unwrap()
        .expect("another repository's delivery");
    assert!(matches!(
        s.insert_delivery(9999, "guid-9", "push", b"{}", 103).await,
        Err(StoreError::NotFound)
    ));

    let first = s.claim_delivery(1000, 500).await.unwrap().unwrap();
    assert_eq!(
        first,
        Delivery {
            id: d1,
            repo_id: a.id,
            delivery_id: "guid-1".into(),
            event: "push".into(),
            payload: b"{\"x\":1}".to_vec(),
            attempts: 1,
        }
    );
    // Leased: the next claim gets the next delivery, then nothing.
    let second = s.claim_delivery(1001, 500).await.unwrap().unwrap();
    assert_eq!(second.id, d2);
    assert!(s.claim_delivery(1002, 500).await.unwrap().is_none());
    // A processor that died: its delivery comes back when the lease ends.
    s.finish_delivery(d2, Some("clone failed"), 1100)
        .await
        .unwrap();
    let again = s.claim_delivery(1500, 500).await.unwrap().unwrap();
    assert_eq!((again.id, again.attempts), (d1, 2));
    s.finish_delivery(d1, None, 1600).await.unwrap();
    assert!(s.claim_delivery(10_000, 500).await.unwrap().is_none());
    assert!(matches!(
        s.finish_delivery(9999, None, 1).await,
        Err(StoreError::NotFound)
    ));
}

pub async fn delivery_listing_and_retention(ctx: Ctx) {
    let s = &*ctx.store;
    let a = s.create_repo(new_repo("a")).await.unwrap();
    let b = s.create_repo(new_repo("b")).await.unwrap();
    // Received at 100, 200, …: a1 processed into a run, a2 ignored, a3 failed, b1 pending.
    let a1 = s
        .insert_delivery(a.id, "a1", "push", b"{}", 100)
        .await
        .unwrap()
        .unwrap();
    let a2 = s
        .insert_delivery(a.id, "a2", "push", b"{}", 200)
        .await
        .unwrap()
        .unwrap();
    let a3 = s
        .insert_delivery(a.id, "a3", "pull_request", b"{}", 300)
        .await
        .unwrap()
        .unwrap();
    let b1 = s
        .insert_delivery(b.id, "b1", "push", b"{}", 400)
        .await
        .unwrap()
        .unwrap();
    let run = s
        .create_run(push_run(a.id, "main", vec![]), 150)
        .await
        .unwrap();
    s.set_delivery_run(a1, run.id).await.unwrap();
    s.finish_delivery(a1, None, 160).await.unwrap();
    s.finish_delivery(a2, None, 260).await.unwrap();
    s.finish_delivery(a3, Some("commit not in the repository"), 360)
        .await
        .unwrap();
    assert!(matches!(
        s.set_delivery_run(9999, run.id).await,
        Err(StoreError::NotFound)
    ));

    let all = s.list_deliveries(None, 0).await.unwrap();
    let ids: Vec<&str> = all.iter().map(|d| d.delivery_id.as_str()).collect();
    assert_eq!(ids, ["b1", "a3", "a2", "a1"], "newest first");
    let by_id = |id: &str| all.iter().find(|d| d.delivery_id == id).unwrap().clone();
    let d = by_id("a1");
    assert_eq!(d.outcome, DeliveryOutcome::Processed);
    assert_eq!((d.run_id, d.run_number), (Some(run.id), Some(run.number)));
    assert_eq!((d.received_at, d.processed_at), (100, Some(160)));
    assert_eq!(d.repo_name, "a");
    assert_eq!(by_id("a2").outcome, DeliveryOutcome::Ignored);
    let d = by_id("a3");
    assert_eq!(d.outcome, DeliveryOutcome::Failed);
    assert_eq!(d.event, "pull_request");
    assert_eq!(d.error.as_deref(), Some("commit not in the repository"));
    let d = by_id("b1");
    assert_eq!(
        (d.outcome, d.processed_at, d.run_number),
        (DeliveryOutcome::Pending, None, None)
    );
    let only_b = s.list_deliveries(Some(b.id), 0).await.unwrap();
    assert_eq!(only_b.len(), 1);
    assert_eq!(only_b[0].id, b1);
    assert_eq!(s.list_deliveries(None, 2).await.unwrap().len(), 2);

    // Keep the newest 2 or everything from 250 on, whichever is more: only a1 and a2
    // are both old and beyond the newest 2 (b1 pending would stay anyway).
    assert_eq!(s.prune_deliveries(250, 2).await.unwrap(), 2);
    let left: Vec<String> = s
        .list_deliveries(None, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.delivery_id)
        .collect();
    assert_eq!(left, ["b1", "a3"]);
    // Pending deliveries are never deleted, old or not; processed ones go once old.
    assert_eq!(s.prune_deliveries(10_000, 0).await.unwrap(), 1);
    let left = s.list_deliveries(None, 0).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].delivery_id, "b1");
    // Once deleted, a delivery id is new again (retention bounds replay detection).
    assert!(
        s.insert_delivery(a.id, "a1", "push", b"{}", 500)
            .await
            .unwrap()
            .is_some()
    );
    // Deleting a repository takes its deliveries too.
    s.delete_repo(b.id).await.unwrap();
    assert!(s.list_deliveries(Some(b.id), 0).await.unwrap().is_empty());
}

/// A delivery whose processor crashes every time (its lease runs out) is claimed three
/// times, then finished with the reason on the fourth claim, never handed out again.
pub async fn delivery_attempts_are_limited(ctx: Ctx) {
    let s = &*ctx.store;
    let a = s.create_repo(new_repo("a")).await.unwrap();
    let crashing = s
        .insert_delivery(a.id, "guid-1", "pull_request", b"{}", 100)
        .await
        .unwrap()
        .unwrap();
    let mut now = 1000;
    for attempt in 1..=crate::store::MAX_DELIVERY_ATTEMPTS {
        let d = s.claim_delivery(now, 500).await.unwrap().unwrap();
        assert_eq!((d.id, d.attempts), (crashing, attempt));
        // The processor dies: nothing finishes the delivery; the lease runs out.
        now += 600;
    }
    assert_eq!(s.delivery_error(crashing).await.unwrap(), None);
    // A later delivery is still served, and the crashing one is given up.
    let fine = s
        .insert_delivery(a.id, "guid-2", "push", b"{}", now)
        .await
        .unwrap()
        .unwrap();
    let d = s.claim_delivery(now, 500).await.unwrap().unwrap();
    assert_eq!(d.id, fine);
    assert_eq!(
        s.delivery_error(crashing).await.unwrap().as_deref(),
        Some(crate::store::DELIVERY_GAVE_UP)
    );
    s.finish_delivery(fine, None, now + 1).await.unwrap();
    assert!(s.claim_delivery(now + 10_000, 500).await.unwrap().is_none());
    assert_eq!(s.delivery_error(fine).await.unwrap(), None);
    assert!(matches!(
        s.delivery_error(9999).await,
        Err(StoreError::NotFound)
    ));
}
