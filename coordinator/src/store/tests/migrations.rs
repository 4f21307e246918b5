//! Schema cases: migrations applied twice change nothing, and a database made before
//! `0005_tokens` is upgraded with its runner tokens moved and its old registration tokens bounded.
//! Only schema and upgrade behaviour belongs here.

use super::*;

pub async fn migrations_are_idempotent(ctx: Ctx) {
    let repo = ctx.store.create_repo(new_repo("app")).await.unwrap();
    // A second coordinator (or a restart) on the same database: migrations are a no-op and
    // the data is still there.
    let again = connect(&ctx.url).await.unwrap();
    assert_eq!(again.get_repo(repo.id).await.unwrap(), repo);
    assert_eq!(again.backend(), ctx.store.backend());
    if ctx.store.backend() == "sqlite" {
        // The URL spellings all reach the same file.
        for url in [
            format!("sqlite:{}", ctx.url),
            format!("sqlite://{}", ctx.url),
        ] {
            let s = connect(&url).await.unwrap();
            assert_eq!(s.get_repo_by_name("app").await.unwrap().id, repo.id);
        }
        let mem = connect("sqlite::memory:").await.unwrap();
        assert!(mem.list_repos().await.unwrap().is_empty());
        mem.create_repo(new_repo("m")).await.unwrap();
        assert_eq!(mem.list_repos().await.unwrap().len(), 1);
    }
}

/// What an older coordinator left: a runner (its token on the runner row) and a registration
/// token without an expiry, written with the schema of migrations 0001–0002.
const OLD_ROWS: &str = "\
    INSERT INTO runners (name, token_hash, slots, created_at) VALUES ('old-runner', 'rtok', 2, 1000); \
    INSERT INTO tokens (kind, hash, description, created_at) VALUES ('registration', 'gtok', 'old', 5000); \
    INSERT INTO tokens (kind, hash, description, created_at) VALUES ('admin', 'atok', 'first start', 10);";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_moves_runner_tokens_and_bounds_old_registrations() {
    let mut dbs = vec![TestDb::sqlite()];
    if let Ok(server) = std::env::var("MOAT_TEST_POSTGRES")
        && !server.is_empty()
    {
        dbs.push(TestDb::postgres(&server).await);
    }
    for db in dbs {
        if db.url.starts_with("postgres") {
            let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
            sqlx::migrate!("../migrations/postgres")
                .run_to(2, &mut c)
                .await
                .unwrap();
            // Postgres keeps hashes as BYTEA: cast the same text.
            let rows = OLD_ROWS
                .replace("'rtok'", "'rtok'::bytea")
                .replace("'gtok'", "'gtok'::bytea")
                .replace("'atok'", "'atok'::bytea");
            sqlx::raw_sql(sqlx::AssertSqlSafe(rows))
                .execute(&mut c)
                .await
                .unwrap();
            c.close().await.unwrap();
        } else {
            let opts = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&db.url)
                .create_if_missing(true);
            let mut c = sqlx::SqliteConnection::connect_with(&opts).await.unwrap();
            sqlx::migrate!("../migrations/sqlite")
                .run_to(2, &mut c)
                .await
                .unwrap();
            // SQLite compares BLOB and TEXT as different: store the hashes as BLOBs.
            let rows = OLD_ROWS
                .replace("'rtok'", "CAST('rtok' AS BLOB)")
                .replace("'gtok'", "CAST('gtok' AS BLOB)")
                .replace("'atok'", "CAST('atok' AS BLOB)");
            sqlx::raw_sql(sqlx::AssertSqlSafe(rows))
                .execute(&mut c)
                .await
                .unwrap();
            c.close().await.unwrap();
        }
        let s = connect(&db.url).await.unwrap();
        let runner = s.runner_by_token(b"rtok").await.unwrap().expect("runner");
        assert_eq!(runner.name, "old-runner");
        let list = s.list_tokens().await.unwrap();
        let kinds: Vec<_> = list
            .iter()
            .map(|t| (t.kind, t.description.as_str()))
            .collect();
        assert!(
            kinds.contains(&(TokenKind::Runner, "old-runner")),
            "{kinds:?}"
        );
        let reg = list
            .iter()
            .find(|t| t.kind == TokenKind::Registration)
            .unwrap();
        assert_eq!(reg.expires_at, Some(5000 + 3_600_000));
        assert_eq!(
            s.consume_registration_token(b"gtok", now_ms())
                .await
                .unwrap(),
            Registration::Expired
        );
        // The moved runner token is revocable like any other.
        let rt = list.iter().find(|t| t.kind == TokenKind::Runner).unwrap();
        s.revoke_token(rt.id).await.unwrap();
        assert_eq!(s.runner_by_token(b"rtok").await.unwrap(), None);
        assert_eq!(s.installation_id().await.unwrap().len(), 32);
        drop(s);
    }
}
