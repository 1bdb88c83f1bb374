//! The PostgreSQL back end: `tokio-postgres` over plain TCP, a fixed set of connections each
//! behind its own async mutex (a transaction needs its connection to itself).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{Mutex, MutexGuard};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{IsNull, ToSql, Type};
use tokio_postgres::{Client, Config, NoTls};

use super::{now_ms, pending, DbError, Migration, Result, Row, Value, MIGRATIONS_TABLE};

/// How many connections one [`super::Db`] keeps to PostgreSQL.
pub const POSTGRES_CONNECTIONS: usize = 4;

/// The advisory lock that serializes migrations between control-plane replicas (an arbitrary
/// constant: "keyward" in ASCII).
const MIGRATION_LOCK: i64 = 0x006b_6579_7761_7264;

pub(super) struct Postgres {
    config: Config,
    connections: Vec<Mutex<Option<Client>>>,
    next: AtomicUsize,
}

impl Postgres {
    pub(super) async fn open(url: &str) -> Result<Postgres> {
        // The URL's text stays out of errors: it may hold a password.
        let config: Config = url
            .parse()
            .map_err(|e| DbError::Backend(format!("the PostgreSQL URL is not valid: {e}")))?;
        let pg = Postgres {
            config,
            connections: (0..POSTGRES_CONNECTIONS)
                .map(|_| Mutex::new(None))
                .collect(),
            next: AtomicUsize::new(0),
        };
        // Connect one now, so a wrong URL or a server that is down fails `open`.
        drop(pg.connection().await?);
        Ok(pg)
    }

    /// A free connection (or the next one in turn when all are busy), connected.
    async fn connection(&self) -> Result<Connection<'_>> {
        let mut guard = None;
        for slot in &self.connections {
            if let Ok(g) = slot.try_lock() {
                guard = Some(g);
                break;
            }
        }
        let mut guard = match guard {
            Some(g) => g,
            None => {
                let i = self.next.fetch_add(1, Ordering::Relaxed) % self.connections.len();
                self.connections[i].lock().await
            }
        };
        if guard.as_ref().is_none_or(|c| c.is_closed()) {
            let (client, connection) = self
                .config
                .connect(NoTls)
                .await
                .map_err(|e| DbError::Backend(format!("cannot connect to PostgreSQL: {e}")))?;
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::warn!(%error, "PostgreSQL connection closed");
                }
            });
            *guard = Some(client);
        }
        Ok(Connection { guard })
    }

    pub(super) async fn migrate(&self, migrations: &[Migration]) -> Result<()> {
        let mut conn = self.connection().await?;
        let tx = conn.client().transaction().await.map_err(mapped)?;
        // Several replicas may start at once: the first takes the lock and migrates, the others
        // wait, then find nothing pending. The lock ends with the transaction.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(mapped)?;
        tx.batch_execute(MIGRATIONS_TABLE).await.map_err(mapped)?;
        let applied: Vec<(i64, String)> = tx
            .query(
                "SELECT version, name FROM schema_migrations ORDER BY version",
                &[],
            )
            .await
            .map_err(mapped)?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        for m in pending(&applied, migrations)? {
            tx.batch_execute(m.sql).await.map_err(|e| {
                DbError::Backend(format!(
                    "migration {} ({}) failed: {}",
                    m.version,
                    m.name,
                    describe(&e)
                ))
            })?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES ($1, $2, $3)",
                &[&m.version, &m.name, &now_ms()],
            )
            .await
            .map_err(mapped)?;
        }
        tx.commit().await.map_err(mapped)
    }

    pub(super) async fn execute(&self, sql: &str, params: &[Value]) -> Result<u64> {
        let mut conn = self.connection().await?;
        conn.client()
            .execute(sql, &refs(params))
            .await
            .map_err(mapped)
    }

    pub(super) async fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        let mut conn = self.connection().await?;
        let rows = conn
            .client()
            .query(sql, &refs(params))
            .await
            .map_err(mapped)?;
        rows.iter().map(row).collect()
    }

    pub(super) async fn transaction(
        &self,
        statements: Vec<(String, Vec<Value>)>,
    ) -> Result<Vec<u64>> {
        self.run_transaction(None, statements).await
    }

    pub(super) async fn guarded_transaction(
        &self,
        guard: (String, Vec<Value>),
        statements: Vec<(String, Vec<Value>)>,
    ) -> Result<Vec<u64>> {
        self.run_transaction(Some(guard), statements).await
    }

    /// `statements` in one transaction, after `guard` (if any) changed a row.
    async fn run_transaction(
        &self,
        guard: Option<(String, Vec<Value>)>,
        statements: Vec<(String, Vec<Value>)>,
    ) -> Result<Vec<u64>> {
        let mut conn = self.connection().await?;
        let tx = conn.client().transaction().await.map_err(mapped)?;
        // On error (or a failed guard) `tx` is dropped, which sends ROLLBACK before the
        // connection is reused.
        if let Some((sql, params)) = &guard {
            if tx
                .execute(sql.as_str(), &refs(params))
                .await
                .map_err(mapped)?
                == 0
            {
                return Err(DbError::GuardFailed);
            }
        }
        let mut counts = Vec::with_capacity(statements.len());
        for (sql, params) in &statements {
            counts.push(
                tx.execute(sql.as_str(), &refs(params))
                    .await
                    .map_err(mapped)?,
            );
        }
        tx.commit().await.map_err(mapped)?;
        Ok(counts)
    }
}

struct Connection<'a> {
    guard: MutexGuard<'a, Option<Client>>,
}

impl Connection<'_> {
    fn client(&mut self) -> &mut Client {
        self.guard
            .as_mut()
            .expect("a connection is connected before it is handed out")
    }
}

fn refs(params: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

/// A result row, converted by the column's PostgreSQL type.
fn row(r: &tokio_postgres::Row) -> Result<Row> {
    let names: Arc<[String]> = r.columns().iter().map(|c| c.name().to_owned()).collect();
    let mut values = Vec::with_capacity(r.len());
    for (i, column) in r.columns().iter().enumerate() {
        let ty = column.type_();
        let value = if *ty == Type::INT8 {
            r.try_get::<_, Option<i64>>(i).map(|v| v.map(Value::Int))
        } else if *ty == Type::INT4 {
            r.try_get::<_, Option<i32>>(i)
                .map(|v| v.map(|v| Value::Int(v.into())))
        } else if *ty == Type::INT2 {
            r.try_get::<_, Option<i16>>(i)
                .map(|v| v.map(|v| Value::Int(v.into())))
        } else if *ty == Type::BOOL {
            r.try_get::<_, Option<bool>>(i)
                .map(|v| v.map(|v| Value::Int(v.into())))
        } else if [Type::TEXT, Type::VARCHAR, Type::BPCHAR, Type::NAME].contains(ty) {
            r.try_get::<_, Option<String>>(i)
                .map(|v| v.map(Value::Text))
        } else {
            return Err(DbError::Backend(format!(
                "column {i} ({}) has type {ty}; the shared SQL uses only BIGINT and TEXT",
                column.name()
            )));
        };
        values.push(
            value
                .map_err(|e| DbError::Backend(format!("column {i}: {e}")))?
                .unwrap_or(Value::Null),
        );
    }
    Ok(Row::new(names, values))
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut tokio_postgres::types::private::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) => {
                if *ty == Type::INT8 {
                    v.to_sql(ty, out)
                } else if *ty == Type::INT4 {
                    i32::try_from(*v)?.to_sql(ty, out)
                } else if *ty == Type::INT2 {
                    i16::try_from(*v)?.to_sql(ty, out)
                } else if *ty == Type::BOOL {
                    (*v != 0).to_sql(ty, out)
                } else {
                    Err(format!("an integer parameter where PostgreSQL expects {ty}").into())
                }
            }
            Value::Text(s) => {
                if [
                    Type::TEXT,
                    Type::VARCHAR,
                    Type::BPCHAR,
                    Type::NAME,
                    Type::UNKNOWN,
                ]
                .contains(ty)
                {
                    s.as_str().to_sql(ty, out)
                } else {
                    Err(format!("a text parameter where PostgreSQL expects {ty}").into())
                }
            }
        }
    }

    fn accepts(ty: &Type) -> bool {
        [
            Type::INT8,
            Type::INT4,
            Type::INT2,
            Type::BOOL,
            Type::TEXT,
            Type::VARCHAR,
            Type::BPCHAR,
            Type::NAME,
            Type::UNKNOWN,
        ]
        .contains(ty)
    }

    tokio_postgres::types::to_sql_checked!();
}

/// A unique violation is a conflict; everything else is a back-end error.
fn mapped(e: tokio_postgres::Error) -> DbError {
    if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        return DbError::Conflict(describe(&e));
    }
    DbError::Backend(describe(&e))
}

/// The server's message and detail when there is one (`Display` of the error says only "db
/// error").
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{}: {detail}", db.message()),
            None => db.message().to_owned(),
        },
        None => e.to_string(),
    }
}
