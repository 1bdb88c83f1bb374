//! Durable state in SQLite (WAL, `synchronous=FULL`), written by ONE writer thread that commits in
//! groups: every job waiting when a transaction starts shares it and its fsync, and each job's
//! caller is told only after the commit. Reads at open load everything into memory; afterwards only
//! LookupEvents and the trail export read SQLite (through their own connection).
//!
//! Tables: `meta(name, value)`, `keys(id, account, region, doc)` (doc = key metadata JSON, no
//! secret), `materials(key_id, version, wrapped)` (wrapped by the root key), `aliases`, `grants(id,
//! key_id, doc)`, `trail(seq, time_ms, account, region, event_id, event_name, read_only, username,
//! access_key_id, resources, record)`, `roles(arn, account, doc)` (IAM roles, JSON),
//! `sessions(access_key_id, doc, wrapped_secret, expires_ms)` (STS sessions; the secret wrapped by
//! the root key). A dev reset keeps roles and sessions: they are identities.

use std::path::Path;
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection};
use tokio::sync::oneshot;

use crate::error::Error;

/// One change to the durable state.
pub(crate) enum Op {
    PutKey {
        id: String,
        account: String,
        region: String,
        doc: String,
    },
    DeleteKey {
        id: String,
    },
    PutMaterial {
        key_id: String,
        version: u32,
        wrapped: Vec<u8>,
    },
    PutAlias {
        account: String,
        region: String,
        name: String,
        key_id: String,
        created_ms: i64,
        updated_ms: i64,
    },
    DeleteAlias {
        account: String,
        region: String,
        name: String,
    },
    PutGrant {
        id: String,
        key_id: String,
        doc: String,
    },
    DeleteGrant {
        id: String,
    },
    SetMeta {
        name: &'static str,
        value: Vec<u8>,
    },
    PutRole {
        arn: String,
        account: String,
        doc: String,
    },
    DeleteRole {
        arn: String,
    },
    PutSession {
        access_key_id: String,
        doc: String,
        /// The session's secret, wrapped by the root key.
        wrapped_secret: Vec<u8>,
        expires_ms: i64,
    },
    /// Forgets sessions that expired before this KMS-clock time.
    PruneSessions {
        before_ms: i64,
    },
    Trail(TrailRow),
    /// Dev reset: everything but the root-key check value.
    ClearAll,
}

pub(crate) struct TrailRow {
    pub time_ms: i64,
    pub account: String,
    pub region: String,
    pub event_id: String,
    pub event_name: String,
    pub read_only: bool,
    pub username: String,
    pub access_key_id: String,
    /// Resource ARNs, newline-separated.
    pub resources: String,
    pub record: String,
}

struct Job {
    ops: Vec<Op>,
    done: oneshot::Sender<Result<(), String>>,
}

pub(crate) struct Store {
    tx: Mutex<mpsc::Sender<Job>>,
    reader: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS keys (id TEXT PRIMARY KEY, account TEXT NOT NULL, region TEXT NOT NULL, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS materials (key_id TEXT NOT NULL, version INTEGER NOT NULL, wrapped BLOB NOT NULL,
    PRIMARY KEY (key_id, version));
CREATE TABLE IF NOT EXISTS aliases (account TEXT NOT NULL, region TEXT NOT NULL, name TEXT NOT NULL,
    key_id TEXT NOT NULL, created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL, PRIMARY KEY (account, region, name));
CREATE TABLE IF NOT EXISTS grants (id TEXT PRIMARY KEY, key_id TEXT NOT NULL, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trail (seq INTEGER PRIMARY KEY AUTOINCREMENT, time_ms INTEGER NOT NULL,
    account TEXT NOT NULL, region TEXT NOT NULL, event_id TEXT NOT NULL, event_name TEXT NOT NULL,
    read_only INTEGER NOT NULL, username TEXT NOT NULL, access_key_id TEXT NOT NULL, resources TEXT NOT NULL,
    record TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS trail_by_account ON trail (account, region, seq);
CREATE TABLE IF NOT EXISTS roles (arn TEXT PRIMARY KEY, account TEXT NOT NULL, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (access_key_id TEXT PRIMARY KEY, doc TEXT NOT NULL,
    wrapped_secret BLOB NOT NULL, expires_ms INTEGER NOT NULL);
-- Every AssumeRole prunes the expired sessions: without this index each one read the whole
-- table, so assuming N roles cost N^2 page reads (thousands of clusters: minutes of writer time).
CREATE INDEX IF NOT EXISTS sessions_by_expiry ON sessions (expires_ms);
";

fn connect(path: &Path) -> Result<Connection, Error> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: a commit is on disk (the WAL fsynced) before the writer acknowledges it.
    conn.pragma_update(None, "synchronous", "FULL")?;
    // The default 2 MiB page cache is outgrown by the trail's index and the sessions of a few
    // thousand roles: 64 MiB at most, taken only as pages are read.
    conn.pragma_update(None, "cache_size", -65_536)?;
    Ok(conn)
}

/// What [`Store::open`] loads.
pub(crate) struct Loaded {
    pub meta: Vec<(String, Vec<u8>)>,
    pub keys: Vec<String>,
    pub materials: Vec<(String, u32, Vec<u8>)>,
    pub aliases: Vec<(String, String, String, String, i64, i64)>,
    pub grants: Vec<String>,
    pub roles: Vec<String>,
    /// (doc, wrapped secret) of every session not yet pruned.
    pub sessions: Vec<(String, Vec<u8>)>,
}

impl Store {
    /// Opens the store; `root_check` is stored as the root-key check value when none exists yet.
    pub(crate) fn open(data_dir: &Path, root_check: Vec<u8>) -> Result<(Store, Loaded), Error> {
        std::fs::create_dir_all(data_dir).map_err(|source| Error::Io {
            path: data_dir.display().to_string(),
            source,
        })?;
        let path = data_dir.join("kms.sqlite3");
        let writer = connect(&path)?;
        writer.execute_batch(SCHEMA)?;
        writer.execute(
            "INSERT OR IGNORE INTO meta (name, value) VALUES ('root_check', ?1)",
            params![root_check],
        )?;
        let loaded = load(&writer)?;
        let reader = connect(&path)?;
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("kms-store-writer".into())
            .spawn(move || write_loop(writer, rx))
            .map_err(|source| Error::Io {
                path: path.display().to_string(),
                source,
            })?;
        Ok((
            Store {
                tx: Mutex::new(tx),
                reader: Mutex::new(reader),
            },
            loaded,
        ))
    }

    /// Queues `ops` as one job; the receiver completes once they are durable. Callers that need
    /// ordering (a write that later requests may depend on) submit while holding the state lock.
    pub(crate) fn submit(&self, ops: Vec<Op>) -> oneshot::Receiver<Result<(), String>> {
        let (done, rx) = oneshot::channel();
        let sender = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        // If the writer is gone the sender is dropped with the job and the receiver reports it.
        let _ = sender.send(Job { ops, done });
        rx
    }

    /// Runs `f` on the read connection.
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, Error> {
        let conn = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        Ok(f(&conn)?)
    }
}

/// Waits for a submitted job.
pub(crate) async fn durable(rx: oneshot::Receiver<Result<(), String>>) -> Result<(), Error> {
    match rx.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Error::Store(e)),
        Err(_) => Err(Error::WriterStopped),
    }
}

fn load(conn: &Connection) -> Result<Loaded, Error> {
    let meta = conn
        .prepare("SELECT name, value FROM meta")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let keys = conn
        .prepare("SELECT doc FROM keys ORDER BY id")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let materials = conn
        .prepare("SELECT key_id, version, wrapped FROM materials ORDER BY key_id, version")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let aliases = conn
        .prepare("SELECT account, region, name, key_id, created_ms, updated_ms FROM aliases")?
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let grants = conn
        .prepare("SELECT doc FROM grants")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let roles = conn
        .prepare("SELECT doc FROM roles ORDER BY arn")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let sessions = conn
        .prepare("SELECT doc, wrapped_secret FROM sessions")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Loaded {
        meta,
        keys,
        materials,
        aliases,
        grants,
        roles,
        sessions,
    })
}

/// Largest group: bounds the time one transaction holds the writer.
const MAX_GROUP: usize = 4096;

/// After a group of more than one job, how long the writer keeps collecting while jobs still
/// arrive (each gap at most `LINGER_GAP`, in all at most `LINGER_MAX`, and never beyond the
/// previous group's size). Callers answered by the last commit resubmit within microseconds; waiting for them lets
/// one fsync carry the whole wave instead of a straggler group plus a full one. A lone caller
/// (previous group of one) never waits.
const LINGER_GAP: Duration = Duration::from_micros(150);
const LINGER_MAX: Duration = Duration::from_micros(1000);

fn write_loop(mut conn: Connection, rx: mpsc::Receiver<Job>) {
    let mut last_group = 1;
    // After a failed commit the in-memory state may be ahead of the disk: refuse everything from
    // then on (fail closed) rather than acknowledge requests that build on lost changes. A restart
    // reloads the last durable state.
    let mut broken: Option<String> = None;
    while let Ok(first) = rx.recv() {
        let started = Instant::now();
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(mpsc::TryRecvError::Disconnected) => break,
                Err(mpsc::TryRecvError::Empty) => {
                    // Linger only until the previous group's size is reached: a closed loop of
                    // callers resubmits as a wave of about that size.
                    if last_group <= 1
                        || jobs.len() >= last_group
                        || started.elapsed() >= LINGER_MAX
                    {
                        break;
                    }
                    match rx.recv_timeout(LINGER_GAP) {
                        Ok(job) => jobs.push(job),
                        Err(_) => break,
                    }
                }
            }
        }
        last_group = jobs.len();
        let result = match &broken {
            Some(e) => Err(format!(
                "the store failed earlier and refuses writes until restart: {e}"
            )),
            None => apply_all(&mut conn, &jobs).map_err(|e| e.to_string()),
        };
        if let (Err(e), None) = (&result, &broken) {
            tracing::error!(error = %e, "KMS store commit failed; refusing writes until restart");
            broken = Some(e.clone());
        }
        for job in jobs {
            let _ = job.done.send(result.clone());
        }
    }
}

fn apply_all(conn: &mut Connection, jobs: &[Job]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    for job in jobs {
        for op in &job.ops {
            apply(&tx, op)?;
        }
    }
    tx.commit()
}

fn apply(tx: &rusqlite::Transaction<'_>, op: &Op) -> rusqlite::Result<()> {
    match op {
        Op::PutKey {
            id,
            account,
            region,
            doc,
        } => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO keys (id, account, region, doc) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![id, account, region, doc])?;
        }
        Op::DeleteKey { id } => {
            tx.execute("DELETE FROM keys WHERE id = ?1", params![id])?;
            tx.execute("DELETE FROM materials WHERE key_id = ?1", params![id])?;
            tx.execute("DELETE FROM aliases WHERE key_id = ?1", params![id])?;
            tx.execute("DELETE FROM grants WHERE key_id = ?1", params![id])?;
        }
        Op::PutMaterial {
            key_id,
            version,
            wrapped,
        } => {
            tx.prepare_cached(
                "INSERT INTO materials (key_id, version, wrapped) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![key_id, version, wrapped])?;
        }
        Op::PutAlias {
            account,
            region,
            name,
            key_id,
            created_ms,
            updated_ms,
        } => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO aliases (account, region, name, key_id, created_ms, updated_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![account, region, name, key_id, created_ms, updated_ms])?;
        }
        Op::DeleteAlias {
            account,
            region,
            name,
        } => {
            tx.execute(
                "DELETE FROM aliases WHERE account = ?1 AND region = ?2 AND name = ?3",
                params![account, region, name],
            )?;
        }
        Op::PutGrant { id, key_id, doc } => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO grants (id, key_id, doc) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![id, key_id, doc])?;
        }
        Op::DeleteGrant { id } => {
            tx.execute("DELETE FROM grants WHERE id = ?1", params![id])?;
        }
        Op::SetMeta { name, value } => {
            tx.prepare_cached("INSERT OR REPLACE INTO meta (name, value) VALUES (?1, ?2)")?
                .execute(params![name, value])?;
        }
        Op::PutRole { arn, account, doc } => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO roles (arn, account, doc) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![arn, account, doc])?;
        }
        Op::DeleteRole { arn } => {
            tx.execute("DELETE FROM roles WHERE arn = ?1", params![arn])?;
        }
        Op::PutSession {
            access_key_id,
            doc,
            wrapped_secret,
            expires_ms,
        } => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO sessions (access_key_id, doc, wrapped_secret, expires_ms) \
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![access_key_id, doc, wrapped_secret, expires_ms])?;
        }
        Op::PruneSessions { before_ms } => {
            tx.prepare_cached("DELETE FROM sessions WHERE expires_ms < ?1")?
                .execute(params![before_ms])?;
        }
        Op::Trail(r) => {
            tx.prepare_cached(
                "INSERT INTO trail (time_ms, account, region, event_id, event_name, read_only, username, \
                 access_key_id, resources, record) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                r.time_ms,
                r.account,
                r.region,
                r.event_id,
                r.event_name,
                r.read_only,
                r.username,
                r.access_key_id,
                r.resources,
                r.record
            ])?;
        }
        Op::ClearAll => {
            tx.execute_batch(
                "DELETE FROM keys; DELETE FROM materials; DELETE FROM aliases; DELETE FROM grants; \
                 DELETE FROM trail; DELETE FROM meta WHERE name <> 'root_check';",
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn material(version: u32) -> Op {
        Op::PutMaterial {
            key_id: "k".into(),
            version,
            wrapped: vec![1, 2, 3],
        }
    }

    #[tokio::test]
    async fn a_failed_commit_fails_closed_until_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), vec![0]).unwrap();
        durable(store.submit(vec![material(1)])).await.unwrap();
        // A duplicate primary key makes the whole group's transaction fail…
        assert!(durable(store.submit(vec![material(2), material(1)]))
            .await
            .is_err());
        // …and from then on nothing is acknowledged, not even a valid change.
        assert!(durable(store.submit(vec![material(3)])).await.is_err());
        drop(store);
        let (_, loaded) = Store::open(dir.path(), vec![0]).unwrap();
        let versions: Vec<u32> = loaded.materials.iter().map(|m| m.1).collect();
        assert_eq!(versions, [1], "the failed group left nothing behind");
    }

    #[tokio::test]
    async fn concurrent_jobs_are_all_durable() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), vec![0]).unwrap();
        let receivers: Vec<_> = (1..=500).map(|v| store.submit(vec![material(v)])).collect();
        for rx in receivers {
            durable(rx).await.unwrap();
        }
        drop(store);
        let (_, loaded) = Store::open(dir.path(), vec![0]).unwrap();
        assert_eq!(loaded.materials.len(), 500);
    }
}
