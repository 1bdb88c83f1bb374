//! The SQLite back end: one `rusqlite` connection behind a mutex, every call on tokio's blocking
//! pool.
//!
//! **Group commit.** A file database stays `synchronous=FULL`: every write is on disk before it
//! is acknowledged, power loss included. (`NORMAL` would survive a crash of the process but not of
//! the machine, and the rows here decide destructive recovery: a disk still `creating` after a
//! restart has its file deleted and made again, so losing a `ready` would lose a disk's data.)
//! What is saved is the fsync *per write*: writes queue, and whoever takes the connection next
//! commits every queued write in one transaction — one fsync for all of them — each write inside
//! its own savepoint, so one write's failure rolls back that write alone and is answered to its
//! caller only, as if it had run by itself. A lone writer gets a transaction of its own, as before;
//! under load (the operator provisioning many clusters, the audit writer) the writes that arrive
//! during one commit's fsync share the next.

use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode, TransactionBehavior};

use super::{now_ms, pending, DbError, Migration, Result, Row, Value, MIGRATIONS_TABLE};

pub(super) struct Sqlite {
    conn: Arc<Mutex<Connection>>,
    /// Writes waiting for the next group commit.
    queued: Arc<Mutex<Vec<QueuedWrite>>>,
}

/// A write waiting for its group: its statements (all or nothing) and who to tell.
struct QueuedWrite {
    statements: Vec<(String, Vec<Value>)>,
    /// The first statement is a guard: when it changes no row, nothing of the write is kept.
    guarded: bool,
    done: tokio::sync::oneshot::Sender<Result<Vec<u64>>>,
}

impl Sqlite {
    /// `rest` is what follows `sqlite:` in the URL.
    pub(super) async fn open(rest: &str) -> Result<Sqlite> {
        let rest = rest.to_owned();
        let conn = tokio::task::spawn_blocking(move || -> Result<Connection> {
            let conn = if rest == ":memory:" {
                Connection::open_in_memory().map_err(backend)?
            } else {
                let path = rest.strip_prefix("//").unwrap_or(&rest);
                if path.is_empty() {
                    return Err(DbError::Backend(
                        "the sqlite: URL names no file (use sqlite:<path>)".into(),
                    ));
                }
                let path = Path::new(path);
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        DbError::Backend(format!("cannot create {}: {e}", dir.display()))
                    })?;
                }
                let conn = Connection::open(path).map_err(|e| {
                    DbError::Backend(format!("cannot open {}: {e}", path.display()))
                })?;
                // WAL lets readers run beside the writer; FULL makes a commit durable before it
                // is acknowledged (DESIGN invariant 7).
                conn.pragma_update(None, "journal_mode", "WAL")
                    .map_err(backend)?;
                conn.pragma_update(None, "synchronous", "FULL")
                    .map_err(backend)?;
                // SQLite's default page cache is 2 MiB: past a few hundred clusters the audit's
                // and the clusters' pages no longer fit, and every query copies its pages from
                // the kernel again (measured: half the CPU in `pread`). 64 MiB at most, taken
                // only as pages are read.
                conn.pragma_update(None, "cache_size", -65_536)
                    .map_err(backend)?;
                conn
            };
            conn.pragma_update(None, "foreign_keys", "ON")
                .map_err(backend)?;
            conn.busy_timeout(std::time::Duration::from_secs(10))
                .map_err(backend)?;
            Ok(conn)
        })
        .await
        .map_err(joined)??;
        Ok(Sqlite {
            conn: Arc::new(Mutex::new(conn)),
            queued: Arc::default(),
        })
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave a half-done transaction behind
            // (rusqlite rolls back on drop), so a poisoned lock is still usable.
            let mut conn = conn.lock();
            f(&mut conn)
        })
        .await
        .map_err(joined)?
    }

    pub(super) async fn migrate(&self, migrations: &[Migration]) -> Result<()> {
        let migrations = migrations.to_vec();
        self.with(move |conn| {
            // IMMEDIATE takes the write lock first, so two processes opening the same file do
            // not both apply the same migration.
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            tx.execute_batch(MIGRATIONS_TABLE).map_err(backend)?;
            let applied = {
                let mut stmt = tx
                    .prepare("SELECT version, name FROM schema_migrations ORDER BY version")
                    .map_err(backend)?;
                let rows = stmt
                    .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
                    .map_err(backend)?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(backend)?
            };
            for m in pending(&applied, &migrations)? {
                tx.execute_batch(m.sql).map_err(|e| {
                    DbError::Backend(format!("migration {} ({}) failed: {e}", m.version, m.name))
                })?;
                tx.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES (?1, ?2, ?3)",
                    rusqlite::params![m.version, m.name, now_ms()],
                )
                .map_err(backend)?;
            }
            tx.commit().map_err(backend)
        })
        .await
    }

    pub(super) async fn execute(&self, sql: &str, params: &[Value]) -> Result<u64> {
        let counts = self
            .write(vec![(sql.to_owned(), params.to_vec())], false)
            .await?;
        Ok(counts.first().copied().unwrap_or(0))
    }

    /// Queues `statements` (all or nothing) for the next group commit and waits until it is
    /// durable.
    async fn write(
        &self,
        statements: Vec<(String, Vec<Value>)>,
        guarded: bool,
    ) -> Result<Vec<u64>> {
        let (done, answer) = tokio::sync::oneshot::channel();
        self.queued.lock().push(QueuedWrite {
            statements,
            guarded,
            done,
        });
        let (conn, queued) = (self.conn.clone(), self.queued.clone());
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock();
            // Taken under the connection's lock: whatever queued while the last holder worked
            // (this write, maybe others) goes in one transaction. Empty when an earlier holder
            // already took this write.
            let group = std::mem::take(&mut *queued.lock());
            if !group.is_empty() {
                commit_group(&mut conn, group);
            }
        })
        .await
        .map_err(joined)?;
        answer
            .await
            .map_err(|_| DbError::Backend("a database write was lost by its group".into()))?
    }

    pub(super) async fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        let sql = rewrite_placeholders(sql);
        let params = params.to_vec();
        self.with(move |conn| {
            let mut stmt = conn.prepare_cached(&sql).map_err(mapped)?;
            let columns = stmt.column_count();
            let names: Arc<[String]> = stmt.column_names().map(str::to_owned).collect();
            let mut rows = stmt
                .query(rusqlite::params_from_iter(params.iter()))
                .map_err(mapped)?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(mapped)? {
                let mut values = Vec::with_capacity(columns);
                for col in 0..columns {
                    values.push(match row.get_ref(col).map_err(backend)? {
                        ValueRef::Null => Value::Null,
                        ValueRef::Integer(v) => Value::Int(v),
                        ValueRef::Text(t) => Value::Text(
                            std::str::from_utf8(t)
                                .map_err(|_| {
                                    DbError::Backend(format!("column {col} is not UTF-8 text"))
                                })?
                                .to_owned(),
                        ),
                        ValueRef::Real(_) | ValueRef::Blob(_) => {
                            return Err(DbError::Backend(format!(
                                "column {col} is a REAL or BLOB; the shared SQL uses only \
                                 BIGINT and TEXT"
                            )))
                        }
                    });
                }
                out.push(Row::new(names.clone(), values));
            }
            Ok(out)
        })
        .await
    }

    pub(super) async fn transaction(
        &self,
        statements: Vec<(String, Vec<Value>)>,
    ) -> Result<Vec<u64>> {
        self.write(statements, false).await
    }

    pub(super) async fn guarded_transaction(
        &self,
        guard: (String, Vec<Value>),
        mut statements: Vec<(String, Vec<Value>)>,
    ) -> Result<Vec<u64>> {
        statements.insert(0, guard);
        let mut counts = self.write(statements, true).await?;
        counts.remove(0);
        Ok(counts)
    }
}

/// Commits `group` in one transaction, each write in its own savepoint, and answers each.
fn commit_group(conn: &mut Connection, group: Vec<QueuedWrite>) {
    let results = (|| -> rusqlite::Result<Vec<Result<Vec<u64>>>> {
        let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut results = Vec::with_capacity(group.len());
        for write in &group {
            // Dropped without `commit`, a savepoint rolls back what it holds, and only that.
            let savepoint = tx.savepoint()?;
            let mut counts = Vec::with_capacity(write.statements.len());
            let outcome = write.statements.iter().try_for_each(|(sql, params)| {
                let n = run(&savepoint, &rewrite_placeholders(sql), params)?;
                if write.guarded && counts.is_empty() && n == 0 {
                    return Err(DbError::GuardFailed);
                }
                counts.push(n);
                Ok(())
            });
            match outcome {
                Ok(()) => {
                    savepoint.commit()?;
                    results.push(Ok(counts));
                }
                Err(error) => results.push(Err(error)),
            }
        }
        tx.commit()?;
        Ok(results)
    })();
    match results {
        Ok(results) => {
            for (write, result) in group.into_iter().zip(results) {
                let _ = write.done.send(result);
            }
        }
        // The transaction itself failed (the commit's fsync, a full disk): nothing of the group
        // was written, and every writer is told.
        Err(error) => {
            let error = error.to_string();
            for write in group {
                let _ = write.done.send(Err(DbError::Backend(error.clone())));
            }
        }
    }
}

fn run(conn: &Connection, sql: &str, params: &[Value]) -> Result<u64> {
    let mut stmt = conn.prepare_cached(sql).map_err(mapped)?;
    let n = stmt
        .execute(rusqlite::params_from_iter(params.iter()))
        .map_err(mapped)?;
    Ok(n as u64)
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        })
    }
}

/// `$1..$n` to `?1..?n` outside quoted strings, identifiers and comments: SQLite reads `$1` as a
/// *named* parameter numbered by first appearance, so `SET a = $2 WHERE id = $1` would bind
/// backwards; `?N` binds by number, as PostgreSQL's `$N` does.
fn rewrite_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    let mut quote: Option<char> = None;
    let mut line_comment = false;
    while let Some(c) = chars.next() {
        if line_comment {
            line_comment = c != '\n';
            out.push(c);
            continue;
        }
        match quote {
            Some(q) => {
                if c == q {
                    quote = None;
                }
                out.push(c);
            }
            None => match c {
                '\'' | '"' => {
                    quote = Some(c);
                    out.push(c);
                }
                '-' if chars.peek() == Some(&'-') => {
                    line_comment = true;
                    out.push(c);
                }
                '$' if chars.peek().is_some_and(|d| d.is_ascii_digit()) => out.push('?'),
                _ => out.push(c),
            },
        }
    }
    out
}

fn backend(e: rusqlite::Error) -> DbError {
    DbError::Backend(e.to_string())
}

/// A unique or primary-key violation is a conflict; everything else is a back-end error.
fn mapped(e: rusqlite::Error) -> DbError {
    if let rusqlite::Error::SqliteFailure(code, message) = &e {
        if code.code == ErrorCode::ConstraintViolation
            && matches!(
                code.extended_code,
                rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            )
        {
            return DbError::Conflict(message.clone().unwrap_or_else(|| e.to_string()));
        }
    }
    backend(e)
}

fn joined(e: tokio::task::JoinError) -> DbError {
    DbError::Backend(format!("a database task failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::rewrite_placeholders;

    #[test]
    fn placeholders_become_numbered_outside_quotes_and_comments() {
        assert_eq!(
            rewrite_placeholders("UPDATE t SET a = $2 WHERE id = $10"),
            "UPDATE t SET a = ?2 WHERE id = ?10"
        );
        assert_eq!(
            rewrite_placeholders("SELECT '$1', \"$2\", $3 -- $4\n, $5"),
            "SELECT '$1', \"$2\", ?3 -- $4\n, ?5"
        );
        assert_eq!(
            rewrite_placeholders("SELECT 'it''s $1'"),
            "SELECT 'it''s $1'"
        );
    }
}
