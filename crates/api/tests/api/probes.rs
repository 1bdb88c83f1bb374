//! `GET /livez` and `GET /readyz`: answered without a token (load balancers probe without
//! credentials), with bodies that carry a status and the name of a failed check only. Readiness
//! follows the database and the shutdown: a PostgreSQL database that goes away, and a plane that
//! is shutting down, answer 503 naming the check.
//!
//! PostgreSQL is the server of `KEYWARD_TEST_POSTGRES_URL` (scripts/test starts one); the test of
//! the database's loss fails without it.

use axum::body::Body;
use axum::http::{Method, StatusCode};
use keyward_api::Limits;
use keyward_control::db::Db;
use serde_json::json;

use crate::Api;

#[tokio::test]
async fn livez_and_readyz_answer_without_a_token_and_readyz_fails_on_shutdown() {
    let api = Api::start().await;
    let live = api.call(Method::GET, "/livez", None, Body::empty()).await;
    assert_eq!(live.status, StatusCode::OK);
    assert_eq!(live.json, json!({"status": "ok"}));
    let ready = api.call(Method::GET, "/readyz", None, Body::empty()).await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.json, json!({"status": "ready"}));

    // Shutting down: not ready any more, still alive.
    api.plane.shutdown().await;
    let ready = api.call(Method::GET, "/readyz", None, Body::empty()).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        ready.json,
        json!({"status": "not_ready", "failed": "shutdown"})
    );
    let live = api.call(Method::GET, "/livez", None, Body::empty()).await;
    assert_eq!(live.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_answers_503_naming_the_database_once_postgresql_is_gone() {
    let base = std::env::var("KEYWARD_TEST_POSTGRES_URL").expect(
        "KEYWARD_TEST_POSTGRES_URL must name a PostgreSQL server (scripts/test starts one)",
    );
    let server = Db::open(&base, &[])
        .await
        .expect("the PostgreSQL server of KEYWARD_TEST_POSTGRES_URL");
    let name = format!(
        "kw_readyz_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    server
        .execute(&format!("CREATE DATABASE {name}"), &[])
        .await
        .unwrap();
    let url = with_database(&base, &name);
    let api = Api::start_configured(Limits::default(), |config| config.database_url = url).await;
    let ready = api.call(Method::GET, "/readyz", None, Body::empty()).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.json);

    // The database goes away under the running plane (its connections ended by the server).
    server
        .execute(&format!("DROP DATABASE {name} WITH (FORCE)"), &[])
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let ready = api.call(Method::GET, "/readyz", None, Body::empty()).await;
    assert!(started.elapsed() < keyward_control::READY_DB_TIMEOUT * 2);
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    // Which check failed, and nothing of the database's error (no host, no database name).
    assert_eq!(
        ready.json,
        json!({"status": "not_ready", "failed": "database"})
    );
    let live = api.call(Method::GET, "/livez", None, Body::empty()).await;
    assert_eq!(live.status, StatusCode::OK);
    api.plane.shutdown().await;
}

/// `base` (`postgres://.../db?options`) naming the database `name` instead.
fn with_database(base: &str, name: &str) -> String {
    let mut url = url::Url::parse(base).expect("a PostgreSQL URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}
