//! The control plane's database: one small API over SQLite (the embedded default) and PostgreSQL
//! (several control-plane replicas at scale), with the same SQL and the same migrations on both.
//!
//! SQL is written once for both back ends:
//! - placeholders `$1..$n` (rewritten to SQLite's `?1..?n`, which bind by number as PostgreSQL
//!   does; SQLite would otherwise number `$2 ... $1` by first appearance);
//! - column types `TEXT` and `BIGINT` only: timestamps are BIGINT unix milliseconds, booleans
//!   BIGINT 0/1, wrapped keys base64 TEXT;
//! - no back-end-specific syntax: `INSERT ... ON CONFLICT (...) DO NOTHING / DO UPDATE` works on
//!   both.
//!
//! A unique or primary-key violation is [`DbError::Conflict`] on both back ends, so callers can
//! answer "already exists" without knowing which database they run on.
//!
//! Why these shapes:
//! - SQLite (`rusqlite`, bundled) is synchronous: one connection behind a mutex, every call on
//!   tokio's blocking pool (`spawn_blocking`), so no async task ever waits on disk. One
//!   connection is enough: SQLite has one writer at a time anyway, and the control plane's
//!   queries are short.
//! - PostgreSQL (`tokio-postgres`): a transaction needs a connection to itself (`&mut Client`),
//!   so a single shared client would serialize every transaction behind every query. A fixed
//!   set of [`POSTGRES_CONNECTIONS`] connections, each behind its own async mutex, lets a few
//!   queries and transactions run at once without a pool crate; a connection found closed is
//!   opened again on its next use.
//!
//! Not here: TLS to PostgreSQL (plain TCP: loopback or a private network), statement caching.

mod postgres;
mod sqlite;

use std::sync::Arc;

use keyward_storage::vocab::now_ms;

pub use postgres::POSTGRES_CONNECTIONS;

/// A parameter or a column value. Only the types the shared SQL uses: `BIGINT` and `TEXT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Int(i64::from(v))
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Value {
        Value::Text(v.clone())
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

/// One result row: its columns by name (as the `SELECT` list names them) or by position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The column names, shared by every row of one result.
    names: Arc<[String]>,
    values: Vec<Value>,
}

/// How a column of a [`Row`] is picked: by its name (`"key_arn"`) or by its position.
pub trait Column: std::fmt::Display + Copy {
    fn index(self, row: &Row) -> Option<usize>;
}

impl Column for usize {
    fn index(self, row: &Row) -> Option<usize> {
        (self < row.values.len()).then_some(self)
    }
}

impl Column for &str {
    fn index(self, row: &Row) -> Option<usize> {
        row.names.iter().position(|n| n == self)
    }
}

impl Row {
    pub(crate) fn new(names: Arc<[String]>, values: Vec<Value>) -> Row {
        Row { names, values }
    }

    /// The number of columns.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The raw value of column `col`, if there is one.
    pub fn get(&self, col: impl Column) -> Option<&Value> {
        col.index(self).map(|i| &self.values[i])
    }

    /// Column `col` as text; NULL or an integer is an error.
    pub fn text(&self, col: impl Column) -> Result<String> {
        self.opt_text(col)?
            .ok_or_else(|| DbError::Backend(format!("column {col} is NULL, expected text")))
    }

    /// Column `col` as text or NULL.
    pub fn opt_text(&self, col: impl Column) -> Result<Option<String>> {
        match self.column(col)? {
            Value::Null => Ok(None),
            Value::Text(s) => Ok(Some(s.clone())),
            Value::Int(_) => Err(DbError::Backend(format!(
                "column {col} is an integer, expected text"
            ))),
        }
    }

    /// Column `col` as an integer; NULL or text is an error.
    pub fn int(&self, col: impl Column) -> Result<i64> {
        self.opt_int(col)?
            .ok_or_else(|| DbError::Backend(format!("column {col} is NULL, expected an integer")))
    }

    /// Column `col` as an integer or NULL.
    pub fn opt_int(&self, col: impl Column) -> Result<Option<i64>> {
        match self.column(col)? {
            Value::Null => Ok(None),
            Value::Int(v) => Ok(Some(*v)),
            Value::Text(_) => Err(DbError::Backend(format!(
                "column {col} is text, expected an integer"
            ))),
        }
    }

    fn column(&self, col: impl Column) -> Result<&Value> {
        self.get(col).ok_or_else(|| {
            DbError::Backend(format!(
                "column {col} does not exist (the row has {})",
                self.values.len()
            ))
        })
    }
}

/// One schema change, applied once, in `version` order, inside a transaction.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    /// One or more statements separated by `;`, in the shared SQL dialect.
    pub sql: &'static str,
}

/// Which database a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// What went wrong in the database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// A unique or primary-key constraint refused the write (the row exists already).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The row asked for does not exist ([`Db::query_one`]).
    #[error("not found")]
    NotFound,
    /// A guarded transaction's guard changed no row ([`Db::guarded_transaction`]): nothing of
    /// it was written.
    #[error("the transaction's guard failed: nothing was written")]
    GuardFailed,
    /// Anything else: connection, SQL, types, migrations.
    #[error("database error: {0}")]
    Backend(String),
}

pub type Result<T, E = DbError> = std::result::Result<T, E>;

/// A handle to the control plane's database; cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

enum Inner {
    Sqlite(sqlite::Sqlite),
    // Boxed: the PostgreSQL state is much larger than the SQLite handle.
    Postgres(Box<postgres::Postgres>),
}

impl std::fmt::Debug for Db {
    // No URL: a PostgreSQL URL may carry a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("backend", &self.backend())
            .finish()
    }
}

impl Db {
    /// Opens the database at `url` and applies `migrations`, each once:
    /// - `sqlite:<path>` (or `sqlite://<path>`): the file and its directory are created when
    ///   missing; WAL journal, `synchronous=FULL` (an acknowledged write survives power loss),
    ///   writes that arrive together committed as one group (one fsync);
    /// - `sqlite::memory:`: a private in-memory database (tests);
    /// - `postgres://user:pass@host:port/db` (or `postgresql://`).
    ///
    /// Applied migrations are recorded in `schema_migrations` (version, name, applied_at_ms);
    /// all pending ones run in one transaction, so a failed migration leaves nothing behind. A
    /// recorded migration whose name differs from the one given, or a database with a version
    /// this build does not know, is refused: the database belongs to another build.
    pub async fn open(url: &str, migrations: &[Migration]) -> Result<Db> {
        check_migration_order(migrations)?;
        let inner = if let Some(rest) = url.strip_prefix("sqlite:") {
            Inner::Sqlite(sqlite::Sqlite::open(rest).await?)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Inner::Postgres(Box::new(postgres::Postgres::open(url).await?))
        } else {
            return Err(DbError::Backend(
                "unsupported database URL: use sqlite:<path>, sqlite::memory: or \
                 postgres://user:password@host:port/database"
                    .into(),
            ));
        };
        let db = Db {
            inner: Arc::new(inner),
        };
        match &*db.inner {
            Inner::Sqlite(s) => s.migrate(migrations).await?,
            Inner::Postgres(p) => p.migrate(migrations).await?,
        }
        Ok(db)
    }

    /// Runs one statement; returns the number of rows it changed.
    pub async fn execute(&self, sql: &str, params: &[Value]) -> Result<u64> {
        match &*self.inner {
            Inner::Sqlite(s) => s.execute(sql, params).await,
            Inner::Postgres(p) => p.execute(sql, params).await,
        }
    }

    /// Runs one query; returns every row.
    pub async fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        match &*self.inner {
            Inner::Sqlite(s) => s.query(sql, params).await,
            Inner::Postgres(p) => p.query(sql, params).await,
        }
    }

    /// Runs one query; returns its first row, if any.
    pub async fn query_opt(&self, sql: &str, params: &[Value]) -> Result<Option<Row>> {
        Ok(self.query(sql, params).await?.into_iter().next())
    }

    /// Runs one query; returns its first row, or [`DbError::NotFound`].
    pub async fn query_one(&self, sql: &str, params: &[Value]) -> Result<Row> {
        self.query_opt(sql, params).await?.ok_or(DbError::NotFound)
    }

    /// Runs `statements` in one transaction, all or nothing: if one fails, none of them has any
    /// effect and its error is returned. Returns the rows changed by each.
    pub async fn transaction(&self, statements: Vec<(String, Vec<Value>)>) -> Result<Vec<u64>> {
        match &*self.inner {
            Inner::Sqlite(s) => s.transaction(statements).await,
            Inner::Postgres(p) => p.transaction(statements).await,
        }
    }

    /// Runs `guard`, then `statements`, in one transaction, all or nothing — and nothing at all
    /// when `guard` changes no row ([`DbError::GuardFailed`]). A fencing token is checked this way:
    /// the guard touches the lease row only while the caller still holds it, and on PostgreSQL
    /// the row lock it takes keeps a takeover from committing between the check and the writes.
    pub async fn guarded_transaction(
        &self,
        guard: (String, Vec<Value>),
        statements: Vec<(String, Vec<Value>)>,
    ) -> Result<Vec<u64>> {
        match &*self.inner {
            Inner::Sqlite(s) => s.guarded_transaction(guard, statements).await,
            Inner::Postgres(p) => p.guarded_transaction(guard, statements).await,
        }
    }

    /// The database's own clock in Unix milliseconds, as an SQL expression: the one clock every
    /// replica's lease is measured against, whatever their own clocks say.
    pub fn now_ms_sql(&self) -> &'static str {
        match &*self.inner {
            Inner::Sqlite(_) => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS BIGINT)",
            Inner::Postgres(_) => "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT",
        }
    }

    pub fn backend(&self) -> Backend {
        match &*self.inner {
            Inner::Sqlite(_) => Backend::Sqlite,
            Inner::Postgres(_) => Backend::Postgres,
        }
    }
}

/// The table that records applied migrations, in the shared dialect.
const MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (\
     version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at_ms BIGINT NOT NULL)";

fn check_migration_order(migrations: &[Migration]) -> Result<()> {
    for pair in migrations.windows(2) {
        if pair[1].version <= pair[0].version {
            return Err(DbError::Backend(format!(
                "migrations must have increasing versions: {} ({}) comes after {} ({})",
                pair[1].version, pair[1].name, pair[0].version, pair[0].name
            )));
        }
    }
    Ok(())
}

/// Given the migrations recorded in the database, which of `migrations` still need to run.
/// Refuses a database that another build migrated differently.
fn pending<'m>(
    applied: &[(i64, String)],
    migrations: &'m [Migration],
) -> Result<Vec<&'m Migration>> {
    for (version, name) in applied {
        match migrations.iter().find(|m| m.version == *version) {
            Some(m) if m.name == name => {}
            Some(m) => {
                return Err(DbError::Backend(format!(
                    "migration {version} is recorded as {name:?} but this build calls it {:?}: \
                     the database belongs to another build",
                    m.name
                )))
            }
            None => {
                return Err(DbError::Backend(format!(
                    "the database has migration {version} ({name:?}), which this build does not \
                     know: it was migrated by a newer build"
                )))
            }
        }
    }
    Ok(migrations
        .iter()
        .filter(|m| !applied.iter().any(|(v, _)| *v == m.version))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &[Migration] = &[
        Migration {
            version: 1,
            name: "one",
            sql: "",
        },
        Migration {
            version: 2,
            name: "two",
            sql: "",
        },
    ];

    #[test]
    fn pending_skips_applied_and_refuses_foreign_history() {
        let p = pending(&[(1, "one".into())], M).unwrap();
        assert_eq!(p.iter().map(|m| m.version).collect::<Vec<_>>(), [2]);
        assert!(pending(&[(1, "uno".into())], M).is_err());
        assert!(pending(&[(3, "three".into())], M).is_err());
        assert_eq!(pending(&[], M).unwrap().len(), 2);
    }

    #[test]
    fn migrations_must_be_in_increasing_order() {
        assert!(check_migration_order(M).is_ok());
        let reversed = [M[1], M[0]];
        assert!(check_migration_order(&reversed).is_err());
    }

    #[test]
    fn row_accessors_check_types() {
        let names: Arc<[String]> = ["n", "t", "z"].map(String::from).into();
        let row = Row::new(
            names,
            vec![Value::Int(7), Value::Text("a".into()), Value::Null],
        );
        assert_eq!(row.int(0).unwrap(), 7);
        // By name, the same columns.
        assert_eq!(row.int("n").unwrap(), 7);
        assert_eq!(row.opt_text("z").unwrap(), None);
        assert!(row.text("missing").is_err());
        assert_eq!(row.text(1).unwrap(), "a");
        assert_eq!(row.opt_text(2).unwrap(), None);
        assert_eq!(row.opt_int(2).unwrap(), None);
        assert!(row.text(0).is_err());
        assert!(row.int(1).is_err());
        assert!(row.int(2).is_err());
        assert!(row.text(3).is_err());
        assert_eq!(Value::from(Some(3i64)), Value::Int(3));
        assert_eq!(Value::from(None::<&str>), Value::Null);
        assert_eq!(Value::from(true), Value::Int(1));
    }
}
