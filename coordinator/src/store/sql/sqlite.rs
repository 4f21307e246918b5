//! SQLite backend: connection set-up (WAL, `synchronous=NORMAL`, foreign keys, busy timeout),
//! the start-up check of an existing database file, and the statements SQLite spells
//! differently; everything else is in `shared/`.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, Sqlite, SqliteConnection, Transaction};
use tokio::sync::{Mutex, MutexGuard};

use crate::store::{Result, StoreError};

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
#[path = "shared/mod.rs"]
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
        if !in_memory {
            check_existing(options.get_filename()).await?;
        }
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

/// Refuses a database file that exists but is not a sound SQLite database, before anything
/// opens it for writing. Opening it normally would make things worse: SQLite takes an empty
/// file for a new database (the migrations then make a fresh installation over the old one,
/// with a new admin token) and deletes the write-ahead log of a database with no pages; a
/// truncated file starts and fails later, request by request.
///
/// The header is judged from the bytes on disk (see [`judge_header`]), so an empty file is
/// refused before SQLite sees it; then `PRAGMA quick_check` runs on a read-only connection,
/// which reads the write-ahead log but never checkpoints, truncates or removes it.
async fn check_existing(path: &Path) -> Result<()> {
    let damaged = |problem: String| StoreError::Damaged {
        path: path.to_path_buf(),
        problem,
    };
    let unreadable = |source| StoreError::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    let wal = wal_path(path);
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if wal.exists() {
                return Err(damaged(format!(
                    "is missing, but its write-ahead log {} is there",
                    wal.display()
                )));
            }
            return Ok(());
        }
        Err(e) => return Err(unreadable(e)),
    };
    if !meta.is_file() {
        return Err(damaged("is not a regular file".into()));
    }
    let mut header = Vec::with_capacity(HEADER_LEN);
    {
        use std::io::Read;
        std::fs::File::open(path)
            .and_then(|f| f.take(HEADER_LEN as u64).read_to_end(&mut header))
            .map_err(unreadable)?;
    }
    if let Some(problem) = judge_header(meta.len(), &header) {
        return Err(damaged(problem));
    }
    let options = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .create_if_missing(false);
    let verdict: std::result::Result<Vec<String>, sqlx::Error> = async {
        let mut conn = SqliteConnection::connect_with(&options).await?;
        let rows = sqlx::query_scalar("PRAGMA quick_check")
            .fetch_all(&mut conn)
            .await;
        let _ = conn.close().await;
        rows
    }
    .await;
    match verdict {
        Ok(rows) if rows.len() == 1 && rows[0] == "ok" => Ok(()),
        Ok(rows) => Err(damaged(format!(
            "fails SQLite's integrity check: {}",
            rows.iter()
                .take(3)
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join("; ")
        ))),
        // SQLITE_CORRUPT (11), SQLITE_NOTADB (26): the file's content is the problem.
        Err(sqlx::Error::Database(db))
            if db
                .code()
                .and_then(|c| c.parse::<u32>().ok())
                .is_some_and(|c| matches!(c & 0xff, 11 | 26)) =>
        {
            Err(damaged(format!("is damaged: {}", db.message())))
        }
        Err(e) => Err(unreadable(std::io::Error::other(e.to_string()))),
    }
}

/// The database header: the first 100 bytes of the file.
const HEADER_LEN: usize = 100;

fn wal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// What is wrong with an existing database file of `len` bytes whose first bytes are
/// `header`, or `None` when nothing is (see <https://www.sqlite.org/fileformat2.html>).
///
/// The page count in the header (bytes 28–31, trusted when the "version-valid-for" number at
/// 92 equals the change counter at 24) says how long the file must be at least: a checkpoint
/// writes pages before it shrinks the file, so a shorter file was cut off.
fn judge_header(len: u64, header: &[u8]) -> Option<String> {
    if len == 0 {
        return Some(
            "is empty (0 bytes), so it is not the database this installation wrote".into(),
        );
    }
    if header.len() < HEADER_LEN || !header.starts_with(b"SQLite format 3\0") {
        return Some("is not an SQLite database (its header is missing or wrong)".into());
    }
    let be32 = |at: usize| {
        u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let page_size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65_536u64,
        n if n >= 512 && n.is_power_of_two() => u64::from(n),
        n => return Some(format!("has an invalid page size ({n}) in its header")),
    };
    if be32(24) == be32(92) {
        let pages = u64::from(be32(28));
        let expected = pages * page_size;
        if len < expected {
            return Some(format!(
                "is truncated: it has {len} bytes, but its header says {pages} pages of \
                 {page_size} bytes ({expected} bytes)"
            ));
        }
    }
    None
}

#[cfg(test)]
mod header_tests {
    use super::judge_header;

    /// A header as SQLite writes it: `pages` pages of `page_size`, change counter 7.
    fn header(page_size: u16, pages: u32, valid: bool) -> Vec<u8> {
        let mut h = vec![0u8; 100];
        h[..16].copy_from_slice(b"SQLite format 3\0");
        h[16..18].copy_from_slice(&page_size.to_be_bytes());
        h[24..28].copy_from_slice(&7u32.to_be_bytes());
        h[28..32].copy_from_slice(&pages.to_be_bytes());
        let version_valid_for: u32 = if valid { 7 } else { 6 };
        h[92..96].copy_from_slice(&version_valid_for.to_be_bytes());
        h
    }

    #[test]
    fn sound_headers_pass() {
        assert_eq!(judge_header(4096 * 3, &header(4096, 3, true)), None);
        // Longer than the header says: a checkpoint grew it, or free pages at the end.
        assert_eq!(judge_header(4096 * 5, &header(4096, 3, true)), None);
        // 1 means 65 536.
        assert_eq!(judge_header(65_536, &header(1, 1, true)), None);
        // A page count the header does not vouch for is not used.
        assert_eq!(judge_header(100, &header(4096, 9, false)), None);
    }

    #[test]
    fn empty_garbage_and_truncated_files_are_named() {
        assert!(judge_header(0, &[]).unwrap().contains("empty"));
        let garbage = vec![0x5au8; 100];
        assert!(
            judge_header(4096, &garbage)
                .unwrap()
                .contains("not an SQLite database")
        );
        assert!(
            judge_header(40, b"SQLite format 3\0")
                .unwrap()
                .contains("not an SQLite")
        );
        let cut = judge_header(6000, &header(4096, 3, true)).unwrap();
        assert!(
            cut.contains("truncated") && cut.contains("6000") && cut.contains("12288"),
            "{cut}"
        );
        assert!(
            judge_header(4096, &header(1000, 1, true))
                .unwrap()
                .contains("page size")
        );
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

#[cfg(test)]
mod check_tests {
    use super::*;

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn dir() -> Dir {
        let d =
            std::env::temp_dir().join(format!("moat-sqlite-check-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    fn problem(r: Result<()>) -> String {
        match r {
            Err(StoreError::Damaged { problem, .. }) => problem,
            other => panic!("expected a damaged database, got {other:?}"),
        }
    }

    /// A database of many pages written without WAL (so the file holds everything).
    async fn sound_db(path: &Path) {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true);
        let mut c = SqliteConnection::connect_with(&opts).await.unwrap();
        sqlx::raw_sql(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL); CREATE INDEX t_v ON t (v);",
        )
        .execute(&mut c)
        .await
        .unwrap();
        for i in 0..2000 {
            sqlx::query("INSERT INTO t (v) VALUES ($1)")
                .bind(format!("{i:0>100}"))
                .execute(&mut c)
                .await
                .unwrap();
        }
        c.close().await.unwrap();
    }

    #[tokio::test]
    async fn missing_and_sound_files_pass() {
        let d = dir();
        let path = d.0.join("moat.db");
        check_existing(&path).await.unwrap();
        sound_db(&path).await;
        let before = std::fs::read(&path).unwrap();
        check_existing(&path).await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[tokio::test]
    async fn empty_garbage_and_orphaned_logs_are_refused_untouched() {
        let d = dir();
        let path = d.0.join("moat.db");
        let wal = wal_path(&path);
        std::fs::write(&path, b"").unwrap();
        std::fs::write(&wal, b"the log of a lost database").unwrap();
        assert!(problem(check_existing(&path).await).contains("empty"));
        // SQLite itself would delete the log of a database with no pages; the check does not.
        assert_eq!(std::fs::read(&wal).unwrap(), b"the log of a lost database");
        assert_eq!(std::fs::read(&path).unwrap(), b"");

        std::fs::write(&path, vec![0x5au8; 8192]).unwrap();
        assert!(problem(check_existing(&path).await).contains("not an SQLite database"));

        std::fs::remove_file(&path).unwrap();
        let p = problem(check_existing(&path).await);
        assert!(p.contains("missing") && p.contains("moat.db-wal"), "{p}");
        assert!(!path.exists(), "nothing was created");

        std::fs::remove_file(&wal).unwrap();
        std::fs::create_dir(&path).unwrap();
        assert!(problem(check_existing(&path).await).contains("not a regular file"));
    }

    #[tokio::test]
    async fn truncated_and_corrupted_files_are_refused_untouched() {
        let d = dir();
        let path = d.0.join("moat.db");
        sound_db(&path).await;
        let full = std::fs::read(&path).unwrap();
        assert!(full.len() > 40 * 4096, "{}", full.len());

        std::fs::write(&path, &full[..full.len() / 2]).unwrap();
        let p = problem(check_existing(&path).await);
        assert!(p.contains("truncated"), "{p}");
        assert_eq!(std::fs::read(&path).unwrap(), &full[..full.len() / 2]);

        // Same length, a page in the middle overwritten: only the integrity check sees it.
        let mut bad = full.clone();
        bad[20 * 4096..21 * 4096].fill(0xff);
        std::fs::write(&path, &bad).unwrap();
        let p = problem(check_existing(&path).await);
        assert!(
            p.contains("integrity check") || p.contains("damaged"),
            "{p}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), bad);
        // Opening the store refuses the same way.
        assert!(matches!(
            SqliteStore::connect(&path.display().to_string()).await,
            Err(StoreError::Damaged { .. })
        ));
        assert_eq!(std::fs::read(&path).unwrap(), bad);
    }
}
