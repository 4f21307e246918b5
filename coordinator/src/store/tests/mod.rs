//! Store tests. Every case runs against a fresh SQLite file in a temporary directory and, when
//! `MOAT_TEST_POSTGRES` names a server (`postgres://user:pass@host:port/db`), again against a
//! fresh database created on it for that case and dropped afterwards. After each case the
//! scheduler's denormalised counters are checked against the job rows.
//!
//! This module holds the harness (`TestDb`, `run_case`, `check_counters`), the builders and the
//! list of contract cases (`store_tests!`); the cases live in one module per entity below, each a
//! `pub async fn(Ctx)` that uses only the [`Store`] trait (and the database URL where it must
//! look under it), never a backend type.

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
    approval_is_audited_in_its_transaction,
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
// Cases, one module per entity; `store_tests!` above names each case in `cases`.

mod approvals;
mod audit;
mod deliveries;
mod jobs;
mod logs;
mod migrations;
mod repos;
mod runs;
mod secrets;
mod tokens;
mod write_tx;

mod cases {
    pub(super) use super::{
        approvals::*, audit::*, deliveries::*, jobs::*, logs::*, migrations::*, repos::*, runs::*,
        secrets::*, tokens::*, write_tx::*,
    };
}
