//! Postgres backend: the connection pool, row locks (`FOR UPDATE`, `SKIP LOCKED`) and
//! deadlock retries; everything else is in `shared/`.
//!
//! Several coordinators may share one database. Every write transaction that changes jobs
//! first locks the row of their repository, so the repository row acts as a per-repository
//! mutex: lock order is always repository → jobs → run, and no two transactions can wait on
//! each other across repositories (each touches one). Claims skip repositories that are
//! locked, so concurrent claimers spread over repositories instead of queueing on one.

use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgPool, Postgres, Transaction};

use crate::store::{Result, StoreError};

type Db = Postgres;
type Conn = sqlx::PgConnection;
type DbRow = sqlx::postgres::PgRow;
type Backend = PgStore;

const BACKEND_NAME: &str = "postgres";

macro_rules! for_update {
    () => {
        " FOR UPDATE"
    };
}
macro_rules! skip_locked {
    () => {
        " FOR UPDATE SKIP LOCKED"
    };
}
/// The claim locks its repository first, then claims in a later statement (see `claim_job`).
const PICK_IN_OWN_STATEMENT: bool = true;

// The same source is compiled inside each backend module, on purpose (see `sql.rs`).
#[allow(clippy::duplicate_mod)]
#[path = "shared/mod.rs"]
mod shared;

/// A store on a Postgres server, shareable by several coordinator processes.
pub struct PgStore {
    pool: PgPool,
    touched: shared::Touched,
}

impl PgStore {
    /// Connects to `url` (`postgres://…`) and applies the migrations (under the migrator's
    /// advisory lock, so coordinators starting together do not race).
    pub async fn connect(url: &str) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .test_before_acquire(false)
            .connect(url)
            .await?;
        sqlx::migrate!("../migrations/postgres").run(&pool).await?;
        Ok(PgStore {
            pool,
            touched: Default::default(),
        })
    }

    /// Closes the pool's connections (tests drop their database afterwards).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn reader(&self) -> Result<PoolConnection<Db>> {
        Ok(self.pool.acquire().await?)
    }

    async fn writer(&self) -> Result<PoolConnection<Db>> {
        Ok(self.pool.acquire().await?)
    }
}

/// Closing the connection makes the server end its transaction (see `write_tx!`).
impl shared::Abandon for PoolConnection<Db> {
    fn abandon(&mut self) {
        self.close_on_drop();
    }
}

async fn begin_write(c: &mut Conn) -> Result<Transaction<'_, Db>> {
    Ok(c.begin().await?)
}

/// Takes the repository's row lock for the rest of the transaction (see the module docs).
async fn lock_repo(c: &mut Conn, repo_id: i64) -> Result<()> {
    let found: Option<i64> = sqlx::query_scalar("SELECT id FROM repos WHERE id = $1 FOR UPDATE")
        .bind(repo_id)
        .fetch_optional(&mut *c)
        .await?;
    found.map(|_| ()).ok_or(StoreError::NotFound)
}

/// Locks the repository of a job; `NotFound` when there is no such job.
async fn lock_repo_of_job(c: &mut Conn, job_id: i64) -> Result<()> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM repos WHERE id = (SELECT repo_id FROM jobs WHERE id = $1) FOR UPDATE",
    )
    .bind(job_id)
    .fetch_optional(&mut *c)
    .await?;
    found.map(|_| ()).ok_or(StoreError::NotFound)
}

/// Identity values are drawn before commit, so two transactions appending to one run could
/// commit out of id order and a reader paging with `after` would miss the earlier id. One
/// appender per run at a time keeps ids and commit order aligned within a run (and so within
/// each of its jobs), which is all `run_logs` and `job_logs` page over.
async fn lock_run_logs(c: &mut Conn, run_id: i64) -> Result<()> {
    // A key space of its own, so this never collides with another advisory-lock user.
    const LOG_LOCK_CLASS: i64 = 0x4d4f_4154 << 32; // "MOAT"
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(LOG_LOCK_CLASS ^ run_id)
        .execute(&mut *c)
        .await?;
    Ok(())
}

/// Deadlocks and serialisation failures: the transaction was rolled back and may simply be
/// run again.
fn is_retryable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => matches!(db.code().as_deref(), Some("40P01" | "40001")),
        _ => false,
    }
}
