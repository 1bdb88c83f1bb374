//! The database layer, the same test bodies on SQLite and on PostgreSQL.
//!
//! PostgreSQL runs when `KEYWARD_TEST_POSTGRES_URL` names a server (scripts/test starts one);
//! under `scripts/test` (`KEYWARD_REQUIRE_POSTGRES=1`) or CI (`CI=true`) a missing URL fails
//! the tests instead of leaving PostgreSQL untested. Each test gets its own fresh database.

use keyward_control::db::{Backend, Db, DbError, Migration, Value};

/// A database for one test; the SQLite file lives as long as this value.
pub struct TestDatabase {
    pub url: String,
    pub backend: Backend,
    _dir: Option<tempfile::TempDir>,
}

/// A fresh SQLite file, and a fresh PostgreSQL database when a server is configured. Panics when
/// PostgreSQL is required (`KEYWARD_REQUIRE_POSTGRES=1` or `CI=true`) but not configured.
pub async fn test_databases() -> Vec<TestDatabase> {
    let dir = tempfile::tempdir().unwrap();
    let mut out = vec![TestDatabase {
        url: format!("sqlite:{}", dir.path().join("control.db").display()),
        backend: Backend::Sqlite,
        _dir: Some(dir),
    }];
    match std::env::var("KEYWARD_TEST_POSTGRES_URL") {
        Ok(base) if !base.is_empty() => out.push(TestDatabase {
            url: scratch_postgres_database(&base).await,
            backend: Backend::Postgres,
            _dir: None,
        }),
        _ => {
            let required = std::env::var("KEYWARD_REQUIRE_POSTGRES").is_ok_and(|v| v == "1")
                || std::env::var("CI").is_ok_and(|v| v == "true");
            assert!(
                !required,
                "PostgreSQL is required here (KEYWARD_REQUIRE_POSTGRES=1 or CI=true) but \
                 KEYWARD_TEST_POSTGRES_URL is not set: run the tests with scripts/test, which \
                 starts a server"
            );
            eprintln!("KEYWARD_TEST_POSTGRES_URL is not set: testing SQLite only");
        }
    }
    out
}

/// Creates an empty database on the server of `base` and returns its URL. Tests run in separate
/// processes (nextest), so the name carries the process id and the time.
async fn scratch_postgres_database(base: &str) -> String {
    let admin = Db::open(base, &[])
        .await
        .expect("cannot reach the PostgreSQL server of KEYWARD_TEST_POSTGRES_URL");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let name = format!("kw_{}_{nanos}", std::process::id());
    admin
        .execute(&format!("CREATE DATABASE {name}"), &[])
        .await
        .unwrap();
    // Replace the database name: the path after the authority, before any `?options`.
    let (url, options) = match base.split_once('?') {
        Some((u, o)) => (u, format!("?{o}")),
        None => (base, String::new()),
    };
    let authority_start = url.find("://").unwrap() + 3;
    let authority_end = url[authority_start..]
        .find('/')
        .map_or(url.len(), |i| authority_start + i);
    format!("{}/{name}{options}", &url[..authority_end])
}

const V1: Migration = Migration {
    version: 1,
    name: "clusters",
    sql: "CREATE TABLE clusters (id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at_ms BIGINT NOT NULL);
          CREATE UNIQUE INDEX clusters_name ON clusters (name)",
};
const V2: Migration = Migration {
    version: 2,
    name: "cluster keys",
    sql: "ALTER TABLE clusters ADD COLUMN key_arn TEXT",
};
const V3: Migration = Migration {
    version: 3,
    name: "counters",
    sql: "CREATE TABLE counters (name TEXT PRIMARY KEY, n BIGINT NOT NULL)",
};

fn insert(id: &str, name: &str) -> (String, Vec<Value>) {
    (
        "INSERT INTO clusters (id, name, created_at_ms) VALUES ($1, $2, $3)".into(),
        vec![id.into(), name.into(), 1_700_000_000_000i64.into()],
    )
}

async fn count(db: &Db, table: &str) -> i64 {
    db.query_one(&format!("SELECT COUNT(*) FROM {table}"), &[])
        .await
        .unwrap()
        .int(0)
        .unwrap()
}

async fn applied_versions(db: &Db) -> Vec<i64> {
    db.query(
        "SELECT version FROM schema_migrations ORDER BY version",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.int(0).unwrap())
    .collect()
}

#[tokio::test]
async fn migrations_run_once_in_order_and_a_failed_one_leaves_nothing() {
    for t in test_databases().await {
        let db = Db::open(&t.url, &[V1, V2]).await.unwrap();
        assert_eq!(db.backend(), t.backend);
        assert_eq!(applied_versions(&db).await, [1, 2]);
        let (sql, params) = insert("c-1", "one");
        db.execute(&sql, &params).await.unwrap();
        drop(db);

        // Opening again applies nothing twice (V1 would fail on CREATE TABLE) and keeps the data.
        let db = Db::open(&t.url, &[V1, V2]).await.unwrap();
        assert_eq!(applied_versions(&db).await, [1, 2]);
        assert_eq!(count(&db, "clusters").await, 1);
        // A new migration is applied on top.
        let db = Db::open(&t.url, &[V1, V2, V3]).await.unwrap();
        assert_eq!(applied_versions(&db).await, [1, 2, 3]);

        // A migration that fails half-way: its first statement is rolled back with it.
        let broken = Migration {
            version: 4,
            name: "broken",
            sql: "CREATE TABLE half (id TEXT PRIMARY KEY); INSERT INTO no_such_table VALUES (1)",
        };
        let err = Db::open(&t.url, &[V1, V2, V3, broken]).await.unwrap_err();
        assert!(
            matches!(&err, DbError::Backend(m) if m.contains("migration 4 (broken) failed")),
            "{:?}: {err}",
            t.backend
        );
        let db = Db::open(&t.url, &[V1, V2, V3]).await.unwrap();
        assert_eq!(applied_versions(&db).await, [1, 2, 3]);
        assert!(db.query("SELECT id FROM half", &[]).await.is_err());

        // Another build's history is refused: a renamed migration, an unknown newer one.
        let renamed = Migration {
            name: "renamed",
            ..V2
        };
        let err = Db::open(&t.url, &[V1, renamed, V3]).await.unwrap_err();
        assert!(err.to_string().contains("another build"), "{err}");
        let err = Db::open(&t.url, &[V1, V2]).await.unwrap_err();
        assert!(err.to_string().contains("newer build"), "{err}");
        // Versions out of order are a programming error, refused before touching the database.
        assert!(Db::open(&t.url, &[V2, V1]).await.is_err());
    }
}

#[tokio::test]
async fn unique_violations_are_conflicts_and_on_conflict_works_on_both() {
    for t in test_databases().await {
        let db = Db::open(&t.url, &[V1, V2, V3]).await.unwrap();
        let (sql, params) = insert("c-1", "one");
        assert_eq!(db.execute(&sql, &params).await.unwrap(), 1);
        // Same primary key.
        let (sql, params) = insert("c-1", "other");
        let err = db.execute(&sql, &params).await.unwrap_err();
        assert!(
            matches!(err, DbError::Conflict(_)),
            "{:?}: {err}",
            t.backend
        );
        // Same value in a unique index.
        let (sql, params) = insert("c-2", "one");
        let err = db.execute(&sql, &params).await.unwrap_err();
        assert!(
            matches!(err, DbError::Conflict(_)),
            "{:?}: {err}",
            t.backend
        );
        // Other errors are not conflicts.
        let err = db
            .execute("INSERT INTO nowhere VALUES (1)", &[])
            .await
            .unwrap_err();
        assert!(matches!(err, DbError::Backend(_)), "{:?}: {err}", t.backend);
        let err = db
            .execute(
                "INSERT INTO clusters (id, name, created_at_ms) VALUES ($1, $2, $3)",
                &["c-3".into(), Value::Null, 1i64.into()],
            )
            .await
            .unwrap_err();
        assert!(matches!(err, DbError::Backend(_)), "{:?}: {err}", t.backend);

        // The shared upsert syntax.
        let upsert = "INSERT INTO counters (name, n) VALUES ($1, $2) \
                      ON CONFLICT (name) DO UPDATE SET n = counters.n + excluded.n";
        db.execute(upsert, &["hits".into(), 2i64.into()])
            .await
            .unwrap();
        db.execute(upsert, &["hits".into(), 3i64.into()])
            .await
            .unwrap();
        let n = db
            .query_one("SELECT n FROM counters WHERE name = $1", &["hits".into()])
            .await
            .unwrap();
        assert_eq!(n.int(0).unwrap(), 5);
        let skipped = db
            .execute(
                "INSERT INTO counters (name, n) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                &["hits".into(), 100i64.into()],
            )
            .await
            .unwrap();
        assert_eq!(skipped, 0);
        assert!(matches!(
            db.query_one("SELECT n FROM counters WHERE name = $1", &["none".into()])
                .await,
            Err(DbError::NotFound)
        ));
    }
}

#[tokio::test]
async fn a_transaction_is_all_or_nothing() {
    for t in test_databases().await {
        let db = Db::open(&t.url, &[V1, V2, V3]).await.unwrap();
        // The third statement conflicts with the first: nothing of the three remains.
        let err = db
            .transaction(vec![
                insert("c-1", "one"),
                insert("c-2", "two"),
                insert("c-1", "three"),
            ])
            .await
            .unwrap_err();
        assert!(
            matches!(err, DbError::Conflict(_)),
            "{:?}: {err}",
            t.backend
        );
        assert_eq!(count(&db, "clusters").await, 0, "{:?}", t.backend);
        // A failure other than a conflict rolls back just the same.
        let err = db
            .transaction(vec![
                insert("c-1", "one"),
                ("UPDATE nowhere SET x = 1".into(), vec![]),
            ])
            .await
            .unwrap_err();
        assert!(matches!(err, DbError::Backend(_)), "{err}");
        assert_eq!(count(&db, "clusters").await, 0, "{:?}", t.backend);

        // A good one commits every statement and reports each one's rows.
        let counts = db
            .transaction(vec![
                insert("c-1", "one"),
                insert("c-2", "two"),
                (
                    "UPDATE clusters SET key_arn = $1 WHERE id <> $2".into(),
                    vec![
                        "arn:aws:kms:us-east-1:111122223333:key/k".into(),
                        "none".into(),
                    ],
                ),
            ])
            .await
            .unwrap();
        assert_eq!(counts, [1, 1, 2]);
        // The database is usable after the failed transactions (no transaction left open).
        assert_eq!(count(&db, "clusters").await, 2);
    }
}

#[tokio::test]
async fn values_round_trip_and_placeholders_bind_by_number() {
    for t in test_databases().await {
        let db = Db::open(&t.url, &[V1, V2, V3]).await.unwrap();
        let name = "ünïcode 'quoted' $1 ; -- not a comment";
        // `$3` before `$1`: SQLite would bind by first appearance without the rewrite.
        db.execute(
            "INSERT INTO clusters (created_at_ms, id, name, key_arn) VALUES ($3, $1, $2, $4)",
            &["c-1".into(), name.into(), i64::MIN.into(), Value::Null],
        )
        .await
        .unwrap();
        db.execute(
            "INSERT INTO clusters (id, name, created_at_ms, key_arn) VALUES ($1, $2, $3, $4)",
            &[
                "c-2".into(),
                "two".into(),
                i64::MAX.into(),
                Some("arn").into(),
            ],
        )
        .await
        .unwrap();
        let rows = db
            .query(
                "SELECT id, name, created_at_ms, key_arn FROM clusters WHERE created_at_ms <> $2 \
                 OR id = $1 ORDER BY id",
                &["c-1".into(), 0i64.into()],
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].text(0).unwrap(), "c-1");
        assert_eq!(rows[0].text(1).unwrap(), name);
        assert_eq!(rows[0].int(2).unwrap(), i64::MIN);
        assert_eq!(rows[0].opt_text(3).unwrap(), None);
        assert_eq!(rows[1].int(2).unwrap(), i64::MAX);
        assert_eq!(rows[1].opt_text(3).unwrap().as_deref(), Some("arn"));
        // A string literal holding `$1` is left alone.
        let row = db
            .query_one("SELECT '$1', $1", &["bound".into()])
            .await
            .unwrap();
        assert_eq!(row.text(0).unwrap(), "$1");
        assert_eq!(row.text(1).unwrap(), "bound");
        assert!(db
            .query_opt("SELECT id FROM clusters WHERE id = $1", &["c-9".into()])
            .await
            .unwrap()
            .is_none());
    }
}

#[tokio::test]
async fn concurrent_transactions_each_commit_once() {
    for t in test_databases().await {
        let db = Db::open(&t.url, &[V1, V2, V3]).await.unwrap();
        db.execute(
            "INSERT INTO counters (name, n) VALUES ($1, $2)",
            &["n".into(), 0i64.into()],
        )
        .await
        .unwrap();
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let db = db.clone();
                tokio::spawn(async move {
                    db.transaction(vec![
                        insert(&format!("c-{i}"), &format!("name-{i}")),
                        (
                            "UPDATE counters SET n = n + 1 WHERE name = $1".into(),
                            vec!["n".into()],
                        ),
                    ])
                    .await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(count(&db, "clusters").await, 40);
        let n = db
            .query_one("SELECT n FROM counters WHERE name = $1", &["n".into()])
            .await
            .unwrap();
        assert_eq!(n.int(0).unwrap(), 40, "{:?}", t.backend);
    }
}

#[tokio::test]
async fn bad_urls_and_unreachable_servers_are_clear_errors() {
    let err = Db::open("mysql://localhost/db", &[]).await.unwrap_err();
    assert!(
        err.to_string().contains("unsupported database URL"),
        "{err}"
    );
    // A closed port: the error says PostgreSQL cannot be reached, without the password.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = Db::open(
        &format!("postgres://keyward:s3cret-password@127.0.0.1:{port}/keyward"),
        &[],
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("cannot connect to PostgreSQL"), "{text}");
    assert!(!text.contains("s3cret-password"), "{text}");
}

/// Writes that arrive together share a commit on SQLite (group commit), yet each is answered as
/// if it ran alone: a failing write — here a transaction whose second statement conflicts —
/// leaves nothing of itself behind and fails alone, its neighbours in the group commit.
#[tokio::test]
async fn concurrent_writes_fail_alone_and_the_others_commit() {
    for t in test_databases().await {
        let db = Db::open(&t.url, &[V1, V2]).await.unwrap();
        db.transaction(vec![insert("taken", "taken")])
            .await
            .unwrap();
        let tasks: Vec<_> =
            (0..60)
                .map(|i| {
                    let db = db.clone();
                    tokio::spawn(async move {
                        if i % 3 == 0 {
                            // Its first insert is fine; its second conflicts: neither may stay.
                            db.transaction(vec![
                                insert(&format!("bad-{i}"), &format!("bad-{i}")),
                                insert("taken", "again"),
                            ])
                            .await
                            .map(|_| ())
                        } else {
                            db.execute(
                            "INSERT INTO clusters (id, name, created_at_ms) VALUES ($1, $2, $3)",
                            &[format!("ok-{i}").into(), format!("ok-{i}").into(), 1i64.into()],
                        )
                        .await
                        .map(|_| ())
                        }
                    })
                })
                .collect();
        for (i, task) in tasks.into_iter().enumerate() {
            let outcome = task.await.unwrap();
            if i % 3 == 0 {
                assert!(
                    matches!(outcome, Err(DbError::Conflict(_))),
                    "{:?}: {outcome:?}",
                    t.backend
                );
            } else {
                outcome.unwrap();
            }
        }
        assert_eq!(count(&db, "clusters").await, 1 + 40, "{:?}", t.backend);
        let bad = db
            .query("SELECT id FROM clusters WHERE id LIKE 'bad-%'", &[])
            .await
            .unwrap();
        assert!(
            bad.is_empty(),
            "{:?}: a failed transaction left rows",
            t.backend
        );
    }
}
