//! Token and runner cases: admin, registration and runner tokens (creation, expiry,
//! coarse "last used", listing, revocation keeping one admin token), the installation id, and
//! runner registration. No scheduling here.

use super::*;

pub async fn tokens(ctx: Ctx) {
    let s = &*ctx.store;
    let admin = s
        .create_token(TokenKind::Admin, b"admin-hash", "first admin", None)
        .await
        .unwrap();
    assert_eq!(admin.kind, TokenKind::Admin);
    assert_eq!(admin.expires_at, None);
    assert_eq!(s.find_token(b"admin-hash").await.unwrap(), Some(admin));
    assert_eq!(s.find_token(b"nope").await.unwrap(), None);
    assert!(matches!(
        s.create_token(TokenKind::Admin, b"admin-hash", "dup", None)
            .await,
        Err(StoreError::Conflict(_))
    ));
    // Runner tokens are only made with their runner.
    assert!(matches!(
        s.create_token(TokenKind::Runner, b"r", "x", None).await,
        Err(StoreError::Conflict(_))
    ));
    s.create_token(TokenKind::Registration, &[0, 159, 255], "runner-1", None)
        .await
        .unwrap();
    assert_eq!(s.count_tokens(TokenKind::Admin).await.unwrap(), 1);
    assert_eq!(s.count_tokens(TokenKind::Registration).await.unwrap(), 1);
    // An admin token is not a registration token.
    assert_eq!(
        s.consume_registration_token(b"admin-hash", 1)
            .await
            .unwrap(),
        Registration::Unknown
    );
    assert_eq!(
        s.consume_registration_token(&[0, 159, 255], 1)
            .await
            .unwrap(),
        Registration::Accepted
    );
    assert_eq!(
        s.consume_registration_token(&[0, 159, 255], 1)
            .await
            .unwrap(),
        Registration::Unknown
    );
    assert_eq!(s.count_tokens(TokenKind::Registration).await.unwrap(), 0);
}

pub async fn registration_tokens_expire(ctx: Ctx) {
    let s = &*ctx.store;
    let t = s
        .create_token(TokenKind::Registration, b"reg", "ci", Some(5_000))
        .await
        .unwrap();
    assert_eq!(t.expires_at, Some(5_000));
    assert!(!t.expired(4_999) && t.expired(5_000));
    // At or after its expiry it registers nothing, and stays (listed, revocable).
    assert_eq!(
        s.consume_registration_token(b"reg", 5_000).await.unwrap(),
        Registration::Expired
    );
    assert_eq!(s.use_token(b"reg", 5_000).await.unwrap(), None);
    assert_eq!(s.list_tokens().await.unwrap(), vec![t.clone()]);
    // Before it, once.
    assert_eq!(
        s.consume_registration_token(b"reg", 4_999).await.unwrap(),
        Registration::Accepted
    );
    assert_eq!(
        s.consume_registration_token(b"reg", 4_999).await.unwrap(),
        Registration::Unknown
    );
}

pub async fn token_use_is_recorded_coarsely(ctx: Ctx) {
    let s = &*ctx.store;
    let admin = s
        .create_token(TokenKind::Admin, b"adm", "ops", None)
        .await
        .unwrap();
    assert_eq!(admin.last_used_at, None);
    let used = s.use_token(b"adm", 100_000).await.unwrap().unwrap();
    assert_eq!(used.last_used_at, Some(100_000));
    // Within a minute of the last write nothing is written; after it, the new time lands.
    s.use_token(b"adm", 130_000).await.unwrap().unwrap();
    assert_eq!(
        s.find_token(b"adm").await.unwrap().unwrap().last_used_at,
        Some(100_000)
    );
    s.use_token(b"adm", 161_000).await.unwrap().unwrap();
    assert_eq!(
        s.find_token(b"adm").await.unwrap().unwrap().last_used_at,
        Some(161_000)
    );
    assert_eq!(s.use_token(b"other", 1).await.unwrap(), None);
}

pub async fn tokens_are_listed_and_revoked(ctx: Ctx) {
    let s = &*ctx.store;
    let first = s
        .create_token(TokenKind::Admin, b"a1", "first start", None)
        .await
        .unwrap();
    let reg = s
        .create_token(TokenKind::Registration, b"g1", "for ci", Some(i64::MAX))
        .await
        .unwrap();
    let runner = s.create_runner("builder", b"r1", 2).await.unwrap();
    s.touch_runner(runner.id, 777).await.unwrap();
    let list = s.list_tokens().await.unwrap();
    assert_eq!(
        list.iter()
            .map(|t| (t.kind, t.description.as_str()))
            .collect::<Vec<_>>(),
        vec![
            (TokenKind::Admin, "first start"),
            (TokenKind::Registration, "for ci"),
            (TokenKind::Runner, "builder"),
        ]
    );
    let runner_token = &list[2];
    assert_eq!(runner_token.runner_id, Some(runner.id));
    assert_eq!(
        runner_token.last_used_at,
        Some(777),
        "a runner's last request"
    );

    // The last admin token cannot go; with a second one, either can.
    assert!(matches!(
        s.revoke_token(first.id).await,
        Err(StoreError::Conflict(m)) if m.contains("last admin token")
    ));
    let second = s
        .create_token(TokenKind::Admin, b"a2", "rotated", None)
        .await
        .unwrap();
    assert_eq!(s.revoke_token(first.id).await.unwrap(), first);
    assert_eq!(s.find_token(b"a1").await.unwrap(), None);
    assert_eq!(s.use_token(b"a1", 1).await.unwrap(), None);
    assert!(matches!(
        s.revoke_token(second.id).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.revoke_token(first.id).await,
        Err(StoreError::NotFound)
    ));

    // A revoked registration token registers nothing.
    s.revoke_token(reg.id).await.unwrap();
    assert_eq!(
        s.consume_registration_token(b"g1", 1).await.unwrap(),
        Registration::Unknown
    );
    // A revoked runner token authenticates no runner; the runner's record stays.
    assert_eq!(
        s.runner_by_token(b"r1").await.unwrap().map(|r| r.id),
        Some(runner.id)
    );
    let gone = s.revoke_token(runner_token.id).await.unwrap();
    assert_eq!(gone.kind, TokenKind::Runner);
    assert_eq!(s.runner_by_token(b"r1").await.unwrap(), None);
    assert_eq!(s.list_runners().await.unwrap().len(), 1);
    assert_eq!(
        s.list_tokens()
            .await
            .unwrap()
            .iter()
            .map(|t| t.id)
            .collect::<Vec<_>>(),
        vec![second.id]
    );
}

pub async fn concurrent_revocations_keep_one_admin_token(ctx: Ctx) {
    let s = ctx.store.clone();
    for round in 0..5u8 {
        let a = s
            .create_token(TokenKind::Admin, &[round, 1], "a", None)
            .await
            .unwrap();
        let b = s
            .create_token(TokenKind::Admin, &[round, 2], "b", None)
            .await
            .unwrap();
        let mut others = s.list_tokens().await.unwrap();
        others.retain(|t| t.id != a.id && t.id != b.id);
        for t in others {
            s.revoke_token(t.id).await.unwrap();
        }
        // Two administrators revoke the last two admin tokens at once: one must fail.
        let (ra, rb) = tokio::join!(
            {
                let s = s.clone();
                async move { s.revoke_token(a.id).await }
            },
            {
                let s = s.clone();
                async move { s.revoke_token(b.id).await }
            }
        );
        assert_eq!(
            u8::from(ra.is_ok()) + u8::from(rb.is_ok()),
            1,
            "round {round}: {ra:?} {rb:?}"
        );
        assert_eq!(s.count_tokens(TokenKind::Admin).await.unwrap(), 1);
    }
}

pub async fn installation_id_is_stable(ctx: Ctx) {
    let id = ctx.store.installation_id().await.unwrap();
    assert_eq!(id.len(), 32, "{id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    let again = connect(&ctx.url).await.unwrap();
    assert_eq!(again.installation_id().await.unwrap(), id);
}

pub async fn runners(ctx: Ctx) {
    let s = &*ctx.store;
    let r1 = s.create_runner("host-a", b"tok-a", 4).await.unwrap();
    let r2 = s.create_runner("host-b", b"tok-b", 2).await.unwrap();
    assert!(r1.last_seen_at.is_none());
    assert_eq!(s.runner_by_token(b"tok-b").await.unwrap(), Some(r2.clone()));
    assert_eq!(s.runner_by_token(b"tok-c").await.unwrap(), None);
    s.touch_runner(r1.id, 1234).await.unwrap();
    let all = s.list_runners().await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].last_seen_at, Some(1234));
    // Touches within a second of the last one written are coalesced; later ones land.
    s.touch_runner(r1.id, 1900).await.unwrap();
    assert_eq!(s.list_runners().await.unwrap()[0].last_seen_at, Some(1234));
    s.touch_runner(r1.id, 2300).await.unwrap();
    assert_eq!(s.list_runners().await.unwrap()[0].last_seen_at, Some(2300));
    assert!(matches!(
        s.touch_runner(9999, 1).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.create_runner("dup", b"tok-a", 1).await,
        Err(StoreError::Conflict(_))
    ));
}
