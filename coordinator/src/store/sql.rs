//! The SQL implementations of [`Store`]: [`SqliteStore`] and [`PgStore`], and [`connect`], which
//! picks one from a URL and applies the embedded migrations (`migrations/sqlite`,
//! `migrations/postgres`).
//!
//! Layout: `sql/shared/` holds every query and all scheduling logic, written once against a
//! backend-neutral vocabulary (`Db`, `Conn`, `DbRow`, a few SQL-fragment macros) and split per
//! entity (`runs.rs`, `jobs.rs`, `tokens.rs`, …, see `shared/mod.rs`). Each backend module
//! (`sql/sqlite.rs`, `sql/postgres.rs`) defines that vocabulary, its connection set-up and the
//! few statements that must differ (how a write transaction starts, row locks, the claim's
//! repository pick), then compiles `shared/mod.rs`, with its entity modules, as its own child
//! module. The same source is thus type-checked once per backend with concrete sqlx types,
//! without generic-bound plumbing.

use std::sync::Arc;

use super::{Store, StoreError};

mod postgres;
mod sqlite;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Opens the store named by `url` and brings its schema up to date.
///
/// * `postgres://…`, `postgresql://…` → [`PgStore`];
/// * `sqlite:PATH`, `sqlite://PATH`, `sqlite::memory:` or a plain file path → [`SqliteStore`]
///   (the file is created when missing).
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::connect(url).await?))
    } else {
        Ok(Arc::new(SqliteStore::connect(url).await?))
    }
}
