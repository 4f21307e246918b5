//! SQLite backend: connection set-up (WAL, `synchronous=NORMAL`, foreign keys, busy timeout)
//! and the statements SQLite spells differently; everything else is in `shared.rs`.

use std::str::FromStr;
use std::time::Duration;

use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, Sqlite, SqliteConnection, Transaction};
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

/// The claim is one statement (see `claim_job`).
const PICK_IN_OWN_STATEMENT: bool = false;

// The same source is compiled inside each backend module, on purpose (see `sql.rs`).
#[allow(clippy::duplicate_mod)]
#[path = "shared.rs"]
mod shared;

/// The embedded store: one SQLite file in WAL mode.
pub struct SqliteStore {
    /// Readers run concurrently with the writer (WAL).
    read: Readers,
    /// The one connection that writes. SQLite admits one writer at a time anyway; queueing
    /// writers on a fair async mutex is far cheaper than letting several connections collide
    /// on the file lock (SQLite's busy handler sleeps in steps of milliseconds), and cheaper
    /// than a one-connection pool (whose acquire/release costs more than a statement).
    write: Mutex<SqliteConnection>,
    touched: shared::Touched,
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
        // sqlx names in-memory databases `file:sqlx-in-memory-N` (shared cache, so the readers
        // and the writer see one database for as long as they live).
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
        let mut read = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            read.push(Mutex::new(SqliteConnection::connect_with(&options).await?));
        }
        let read = Readers {
            conns: read,
            next: AtomicUsize::new(0),
        };
        Ok(SqliteStore {
            read,
            write: Mutex::new(write),
            touched: Default::default(),
        })
    }

    async fn reader(&self) -> Result<MutexGuard<'_, SqliteConnection>> {
        Ok(self.read.get().await)
    }

    async fn writer(&self) -> Result<MutexGuard<'_, SqliteConnection>> {
        Ok(self.write.lock().await)
    }
}

/// Read connections. Not an sqlx pool: its release spawns a task that pings the connection
/// (a round trip to the connection's worker thread) every time, which costs more than the
/// point reads the API makes. Local files need none of a pool's reconnecting either.
struct Readers {
    conns: Vec<Mutex<SqliteConnection>>,
    next: AtomicUsize,
}

const READERS: usize = 4;

impl Readers {
    /// A free connection if there is one, else the next in turn once it is free.
    async fn get(&self) -> MutexGuard<'_, SqliteConnection> {
        for conn in &self.conns {
            if let Ok(guard) = conn.try_lock() {
                return guard;
            }
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len();
        self.conns[i].lock().await
    }
}

/// SQLite's dedicated write connection stays: sqlx's SQLite worker runs `BEGIN` to completion
/// on its own thread, and a dropped transaction queues its `ROLLBACK` there.
impl shared::Abandon for MutexGuard<'_, SqliteConnection> {
    fn abandon(&mut self) {}
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

/// `SQLITE_BUSY` and its extended codes: another process held or changed the database (the
/// busy timeout already waited). Nothing was written; the caller rolls back and runs again.
fn is_retryable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|code| code.parse::<u32>().ok())
            .is_some_and(|code| code & 0xff == 5),
        _ => false,
    }
}
