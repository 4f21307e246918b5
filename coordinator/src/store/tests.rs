//! Store tests. Every case runs against a fresh SQLite file in a temporary directory and, when
//! `MOAT_TEST_POSTGRES` names a server (`postgres://user:pass@host:port/db`), again against a
//! fresh database created on it for that case and dropped afterwards. After each case the
//! scheduler's denormalised counters are checked against the job rows.

use std::collections::HashSet;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use sqlx::Connection;

use super::*;

// ---------------------------------------------------------------------------------------------
// Harness.

enum Cleanup {
    Dir(PathBuf),
    Database { server: String, name: String },
}

/// One fresh database; removed on drop, also when the case panicked.
struct TestDb {
    url: String,
    cleanup: Cleanup,
}

impl TestDb {
    fn sqlite() -> TestDb {
        let dir = std::env::temp_dir().join(format!("moat-store-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        TestDb {
            url: dir.join("moat.db").display().to_string(),
            cleanup: Cleanup::Dir(dir),
        }
    }

    async fn postgres(server: &str) -> TestDb {
        let name = format!("moat_test_{:016x}", rand::random::<u64>());
        let mut admin = sqlx::PgConnection::connect(server).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        TestDb {
            url: database_url(server, &name),
            cleanup: Cleanup::Database {
                server: server.to_string(),
                name,
            },
        }
    }
}

/// `server` with its database path replaced by `name`.
fn database_url(server: &str, name: &str) -> String {
    let (base, query) = match server.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (server, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    format!("{base}/{name}{query}")
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Database { server, name } => {
                // Drop may run inside the test's runtime (or while unwinding): use a thread
                // with its own runtime.
                let (server, name) = (server.clone(), name.clone());
                let _ = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    rt.block_on(async {
                        if let Ok(mut admin) = sqlx::PgConnection::connect(&server).await {
                            let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                                .execute(&mut admin)
                                .await;
                        }
                    });
                })
                .join();
            }
        }
    }
}

/// What a case gets: the store, and the URL it was opened from (to open it again).
struct Ctx {
    store: Arc<dyn Store>,
    url: String,
}

async fn run_case<F, Fut>(case: F)
where
    F: Fn(Ctx) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut dbs = vec![TestDb::sqlite()];
    if let Ok(server) = std::env::var("MOAT_TEST_POSTGRES")
        && !server.is_empty()
    {
        dbs.push(TestDb::postgres(&server).await);
    }
    for db in dbs {
        let store = connect(&db.url).await.unwrap();
        case(Ctx {
            store: store.clone(),
            url: db.url.clone(),
        })
        .await;
        check_counters(&db.url).await;
        drop(store);
    }
}

/// `repos.ready` / `repos.running` must equal the job rows they summarise.
async fn check_counters(url: &str) {
    const SQL: &str = "SELECT r.name, r.ready, r.running, \
        (SELECT COUNT(*) FROM jobs j WHERE j.repo_id = r.id AND j.status = 'ready'), \
        (SELECT COUNT(*) FROM jobs j WHERE j.repo_id = r.id AND j.status = 'running') \
        FROM repos r";
    type Counts = (String, i64, i64, i64, i64);
    let rows: Vec<Counts> = if url.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query_as(SQL).fetch_all(&mut c).await.unwrap()
    } else {
        let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(url);
        let mut c = sqlx::SqliteConnection::connect_with(&opts).await.unwrap();
        sqlx::query_as(SQL).fetch_all(&mut c).await.unwrap()
    };
    for (name, ready, running, real_ready, real_running) in rows {
        assert_eq!(
            (ready, running),
            (real_ready, real_running),
            "counters of repository {name} (ready, running) disagree with its jobs"
        );
    }
}

macro_rules! store_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                run_case(cases::$name).await;
            }
        )*
    };
}

store_tests!(
    migrations_are_idempotent,
    tokens,
    registration_tokens_expire,
    token_use_is_recorded_coarsely,
    tokens_are_listed_and_revoked,
    concurrent_revocations_keep_one_admin_token,
    installation_id_is_stable,
    runners,
    repositories,
    deliveries,
    delivery_listing_and_retention,
    delivery_attempts_are_limited,
    run_numbering,
    failed_run_has_no_jobs,
    dag_propagation,
    dag_skip_chain,
    all_when_skipped_run_passes,
    wrong_runner_loses_lease,
    heartbeat,
    lease_expiry_retries_then_fails,
    cancel_run,
    cancel_superseded,
    fairness_across_repositories,
    affinity_prefers_runs_in_hand,
    concurrency_limit,
    concurrent_claims_never_double_claim,
    logs,
    extend_leases,
    audit,
    list_runs_filters,
    secrets_and_outputs,
    approvals,
    cancelled_writes_leave_no_open_transaction,
);

// ---------------------------------------------------------------------------------------------
// Builders.

fn new_repo(name: &str) -> NewRepository {
    NewRepository {
        name: name.to_string(),
        clone_url: format!("file:///srv/git/{name}.git"),
        forge: Forge::Github,
        webhook_secret: format!("secret-{name}"),
        concurrency: None,
        cancel_superseded: false,
        protected_branches: vec!["main".into()],
    }
}

fn job(stage_index: i64, name: &str, needs: &[i64]) -> NewJob {
    NewJob {
        stage_index,
        name: name.to_string(),
        needs: needs.to_vec(),
        spec: format!("{{\"stage\":\"{name}\"}}"),
        skip: None,
        approval_required: false,
    }
}

fn push_run(repo_id: i64, branch: &str, jobs: Vec<NewJob>) -> NewRun {
    NewRun {
        repo_id,
        event: "push".into(),
        branch: Some(branch.into()),
        target_branch: None,
        tag: None,
        commit: "0123456789abcdef0123456789abcdef01234567".into(),
        trusted: true,
        trigger: "webhook".into(),
        actor: Some("alice".into()),
        max_retries: 1,
        jobs,
        failed: None,
    }
}

fn passed() -> JobCompletion {
    JobCompletion {
        outcome: JobOutcome::Passed,
        exit_code: Some(0),
        reason: None,
        outputs: None,
    }
}

fn failed() -> JobCompletion {
    JobCompletion {
        outcome: JobOutcome::Failed,
        exit_code: Some(1),
        reason: Some("exit code 1".into()),
        outputs: None,
    }
}

const LEASE: i64 = 30_000;

async fn job_named(s: &dyn Store, run_id: i64, name: &str) -> Job {
    s.jobs_of_run(run_id)
        .await
        .unwrap()
        .into_iter()
        .find(|j| j.name == name)
        .unwrap_or_else(|| panic!("no job {name}"))
}

async fn statuses(s: &dyn Store, run_id: i64) -> Vec<(String, JobStatus)> {
    s.jobs_of_run(run_id)
        .await
        .unwrap()
        .into_iter()
        .map(|j| (j.name, j.status))
        .collect()
}

/// Claims until nothing is left, completing each claim as passed; returns the claimed job ids.
async fn drain(s: &dyn Store, runner: i64) -> Vec<i64> {
    let mut ids = Vec::new();
    while let Some(c) = s.claim_job(runner, now_ms(), LEASE).await.unwrap() {
        ids.push(c.job.id);
        s.complete_job(c.job.id, runner, passed(), now_ms())
            .await
            .unwrap();
    }
    ids
}

// ---------------------------------------------------------------------------------------------
// Cases.

mod cases {
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

    pub async fn logs(ctx: Ctx) {
        let s = &*ctx.store;
        let a = s.create_repo(new_repo("a")).await.unwrap();
        let run = s
            .create_run(
                push_run(a.id, "main", vec![job(0, "one", &[]), job(1, "two", &[])]),
                1,
            )
            .await
            .unwrap();
        let one = job_named(s, run.id, "one").await.id;
        let two = job_named(s, run.id, "two").await.id;
        let lines = |seqs: std::ops::Range<i64>| {
            seqs.map(|seq| NewLogLine {
                seq,
                stream: if seq % 2 == 0 { "stdout" } else { "stderr" }.into(),
                line: format!("line {seq} ✓"),
            })
            .collect::<Vec<_>>()
        };
        s.append_logs(one, 1, &lines(0..3), 10).await.unwrap();
        // A retried upload of the same chunk, and an overlapping one: no duplicates.
        s.append_logs(one, 1, &lines(0..3), 11).await.unwrap();
        s.append_logs(one, 1, &lines(2..5), 12).await.unwrap();
        s.append_logs(two, 1, &lines(0..2), 13).await.unwrap();
        // The same seq in another attempt is another line.
        s.append_logs(one, 2, &lines(0..1), 14).await.unwrap();
        s.append_logs(one, 2, &[], 15).await.unwrap();
        // Big uploads go in batches.
        s.append_logs(two, 2, &lines(0..1200), 16).await.unwrap();

        let all_one = s.job_logs(one, 0, 100).await.unwrap();
        let keys: Vec<_> = all_one.iter().map(|l| (l.attempt, l.seq)).collect();
        assert_eq!(keys, [(1, 0), (1, 1), (1, 2), (1, 3), (1, 4), (2, 0)]);
        assert_eq!(all_one[0].line, "line 0 ✓");
        assert_eq!(all_one[1].stream, "stderr");
        assert_eq!(all_one[0].at, 10);
        assert_eq!(all_one[3].at, 12);
        assert!(all_one.windows(2).all(|w| w[0].id < w[1].id));

        // Paging through a run's logs with `after`.
        let mut seen = Vec::new();
        let mut after = 0;
        loop {
            let page = s.run_logs(run.id, after, 250).await.unwrap();
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= 250);
            after = page.last().unwrap().id;
            seen.extend(page);
        }
        assert_eq!(seen.len(), 6 + 2 + 1200);
        assert!(seen.windows(2).all(|w| w[0].id < w[1].id));
        let two_lines = s.job_logs(two, 0, 5000).await.unwrap();
        assert_eq!(two_lines.len(), 1202);
        assert!(two_lines.iter().all(|l| l.job_id == two));
        let tail = s.job_logs(two, two_lines[1199].id, 10).await.unwrap();
        assert_eq!(tail.len(), 2);

        assert!(matches!(
            s.append_logs(9999, 1, &lines(0..1), 1).await,
            Err(StoreError::NotFound)
        ));
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

    pub async fn secrets_and_outputs(ctx: Ctx) {
        let s = &*ctx.store;
        let a = s.create_repo(new_repo("a")).await.unwrap();
        let b = s.create_repo(new_repo("b")).await.unwrap();
        let sealed = |n: u8| StoredSecret {
            key_id: "k1".into(),
            nonce: vec![n; 12],
            ciphertext: vec![n, 0, 255, 7],
        };
        assert!(s.set_secret(a.id, "TOKEN", &sealed(1), 10).await.unwrap());
        assert!(!s.set_secret(a.id, "TOKEN", &sealed(2), 11).await.unwrap());
        assert!(s.set_secret(a.id, "DB", &sealed(3), 12).await.unwrap());
        assert_eq!(s.get_secret(a.id, "TOKEN").await.unwrap(), Some(sealed(2)));
        assert_eq!(s.get_secret(b.id, "TOKEN").await.unwrap(), None);
        let list = s.list_secrets(a.id).await.unwrap();
        let names: Vec<_> = list.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["DB", "TOKEN"]);
        assert_eq!((list[1].created_at, list[1].updated_at), (10, 11));
        assert!(s.delete_secret(a.id, "DB").await.unwrap());
        assert!(!s.delete_secret(a.id, "DB").await.unwrap());
        assert!(matches!(
            s.set_secret(9999, "X", &sealed(1), 1).await,
            Err(StoreError::Conflict(_)) | Err(StoreError::NotFound)
        ));

        // A completed job keeps what it produced.
        s.create_run(push_run(a.id, "main", vec![job(0, "build", &[])]), 20)
            .await
            .unwrap();
        let c = s.claim_job(1, 21, LEASE).await.unwrap().unwrap();
        let mut done = passed();
        done.outputs = Some(r#"{"image":{"id":"sha256:abc"}}"#.into());
        s.complete_job(c.job.id, 1, done, 22).await.unwrap();
        let j = s.get_job(c.job.id).await.unwrap();
        assert_eq!(j.outputs.unwrap()["image"]["id"], "sha256:abc");
        // Deleting the repository deletes its secrets.
        s.delete_repo(a.id).await.unwrap();
        assert_eq!(s.get_secret(a.id, "TOKEN").await.unwrap(), None);
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
}

// ---------------------------------------------------------------------------------------------
// Upgrading a database made before 0005_tokens.

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
