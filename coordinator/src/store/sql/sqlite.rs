//! SQLite backend: connection set-up (WAL, `synchronous=NORMAL`, foreign keys, busy timeout)
//! and the statements SQLite spells differently; everything else is in `shared.rs`.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, Pool, Sqlite, SqliteConnection, Transaction};
use tokio::sync::{Mutex, MutexGuard};

use crate::store::Result;

type Db = Sqlite;
type Conn = sqlx::SqliteConnection;
type DbRow = sqlx::sqlite::SqliteRow;
type Backend = SqliteStore;

const BACKEND_NAME: &str = "sqlite";

// SQLite has no row locks: a write transaction (`BEGIN IMMEDIATE`) owns the whole database.
macro_rules! for_update {
    () => {
        ""
    };
}
macro_rules! skip_locked {
    () => {
        ""
    };
}
/// A claim that finds nothing has seen everything: there are no row locks to wait for.
const CLAIM_CAN_WAIT: bool = false;

#[path = "shared.rs"]
mod shared;

/// The embedded store: one SQLite file in WAL mode.
pub struct SqliteStore {
    /// Readers run concurrently with the writer (WAL).
    read: Pool<Sqlite>,
    /// The one connection that writes. SQLite admits one writer at a time anyway; queueing
    /// writers on a fair async mutex is far cheaper than letting several connections collide
    /// on the file lock (SQLite's busy handler sleeps in steps of milliseconds), and cheaper
    /// than a one-connection pool (whose acquire/release costs more than a statement).
    write: Mutex<SqliteConnection>,
}

impl SqliteStore {
    /// Opens (creating if missing) the database named by `url` — `sqlite:PATH`,
    /// `sqlite://PATH`, `sqlite::memory:` or a plain path — and applies the migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        let options = if url.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(url)?
        } else {
            SqliteConnectOptions::new().filename(url)
        };
        Self::open(options).await
    }

    pub async fn open(options: SqliteConnectOptions) -> Result<Self> {
        // sqlx names in-memory databases `file:sqlx-in-memory-N` (shared cache, so the reader
        // pool and the writer see one database for as long as the writer lives).
        let in_memory = options
            .get_filename()
            .to_string_lossy()
            .contains("sqlx-in-memory");
        let options = options
            .create_if_missing(true)
            .journal_mode(if in_memory {
                SqliteJournalMode::Memory
            } else {
                SqliteJournalMode::Wal
            })
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let mut write = SqliteConnection::connect_with(&options).await?;
        sqlx::migrate!("../migrations/sqlite")
            .run(&mut write)
            .await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            // Pinging a local file before every use buys nothing and costs a round trip to
            // the connection's worker thread.
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        Ok(SqliteStore {
            read,
            write: Mutex::new(write),
        })
    }

    fn reader(&self) -> &Pool<Db> {
        &self.read
    }

    async fn writer(&self) -> Result<MutexGuard<'_, SqliteConnection>> {
        Ok(self.write.lock().await)
    }
}

/// `BEGIN IMMEDIATE` takes the write lock up front: a deferred transaction that reads and then
/// writes fails with `SQLITE_BUSY` when another process wrote in between.
async fn begin_write(c: &mut Conn) -> Result<Transaction<'_, Db>> {
    Ok(c.begin_with("BEGIN IMMEDIATE").await?)
}

/// Nothing to do: the write transaction already excludes every other writer, and callers
/// have established that the repository exists.
async fn lock_repo(_c: &mut Conn, _repo_id: i64) -> Result<()> {
    Ok(())
}

/// As `lock_repo`, for the repository of a job (callers detect a missing job themselves).
async fn lock_repo_of_job(_c: &mut Conn, _job_id: i64) -> Result<()> {
    Ok(())
}

/// Log ids come from one writer, so they are committed in id order already.
async fn lock_run_logs(_c: &mut Conn, _run_id: i64) -> Result<()> {
    Ok(())
}

fn is_retryable(_e: &sqlx::Error) -> bool {
    // Writers are serialised by the pool and `BEGIN IMMEDIATE`; a busy error means another
    // process held the file past the busy timeout, which a retry would not cure quickly.
    false
}
