//! Cancel safety of `write_tx!`: writes dropped at arbitrary points leave no transaction
//! open and later writes still commit. Only transaction hygiene belongs here.

use super::*;

/// Writes dropped at arbitrary points (a client that goes away, a request timeout) leave
/// no transaction open on a pooled connection, and later writes still commit.
pub async fn cancelled_writes_leave_no_open_transaction(ctx: Ctx) {
    let s = &*ctx.store;
    let repo = s.create_repo(new_repo("app")).await.unwrap();
    let mut cancelled = 0;
    for i in 0..600u64 {
        // Drop the write after a growing number of scheduler turns: the cancellation points
        // spread over the whole write, the BEGIN round trip included (timers are too coarse).
        let run = push_run(repo.id, "main", vec![job(0, "t", &[]), job(1, "u", &[0])]);
        let write = s.create_run(run, i as i64);
        let turns = async {
            for _ in 0..i % 150 {
                tokio::task::yield_now().await;
            }
        };
        tokio::select! {
            biased;
            _ = write => {}
            _ = turns => cancelled += 1,
        }
    }
    assert!(
        cancelled > 0,
        "no write was cancelled: the case tests nothing"
    );
    if ctx.url.starts_with("postgres") {
        let mut admin = sqlx::PgConnection::connect(&ctx.url).await.unwrap();
        let mut open = -1i64;
        for _ in 0..50 {
            open = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
            )
            .fetch_one(&mut admin)
            .await
            .unwrap();
            if open == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(40)).await;
        }
        assert_eq!(open, 0, "connections left inside a transaction");
    }
    // Every later write commits and is seen by a fresh connection.
    let mut made = Vec::new();
    for i in 0..20 {
        let run = push_run(repo.id, "later", vec![job(0, "t", &[])]);
        made.push(s.create_run(run, 10_000 + i).await.unwrap().id);
    }
    let again = connect(&ctx.url).await.unwrap();
    for id in made {
        assert_eq!(
            again.get_run(id).await.unwrap().branch.as_deref(),
            Some("later")
        );
    }
}
