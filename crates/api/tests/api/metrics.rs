//! `GET /metrics`: the admin token only (it counts every organization's clusters); after a real
//! document round trip it shows the KMS requests the cluster's role made, the data-key cache's
//! hit, the plaintext bytes, the key health and the API requests; and Prometheus's own checker
//! (`promtool check metrics`) accepts the page.

use std::io::Write as _;
use std::process::{Command, Stdio};

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use http_body_util::BodyExt;
use keyward_api::REQUEST_ID_HEADER;
use tower::ServiceExt;

use crate::{assert_error, Api};

/// `GET /metrics` with the admin token: the content type and the page.
async fn scrape(api: &Api) -> (String, String) {
    let request = Request::builder()
        .method(Method::GET)
        .uri("/metrics")
        .header("authorization", format!("Bearer {}", api.admin_token))
        .body(Body::empty())
        .unwrap();
    let response = api.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (content_type, String::from_utf8(body.to_vec()).unwrap())
}

/// The value of the sample `series` (name and labels, exactly as written) on the page.
fn value(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

#[track_caller]
fn at_least(page: &str, series: &str, min: f64) {
    let found = value(page, series).unwrap_or_else(|| panic!("{series} missing in\n{page}"));
    assert!(found >= min, "{series} is {found}, expected at least {min}");
}

/// Finds a tool on PATH or panics: a missing tool fails the test, never skips it.
fn require_tool(name: &str) -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not on PATH: install Debian's `prometheus` package (scripts/test does)"
            )
        })
}

#[tokio::test]
async fn metrics_take_the_admin_token_and_refuse_none_or_an_organizations() {
    let api = Api::start().await;
    let (_, org_token) = api.organization("acme").await;
    let none = api.call(Method::GET, "/metrics", None, Body::empty()).await;
    assert_error(&none, 401, "unauthenticated");
    let org = api
        .call(Method::GET, "/metrics", Some(&org_token), Body::empty())
        .await;
    assert_error(&org, 401, "unauthenticated");
    assert!(
        org.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("admin token"),
        "{}",
        org.json
    );
    // Neither refusal leaked a sample.
    assert!(!String::from_utf8_lossy(&org.bytes).contains("keyward_"));

    let (content_type, page) = scrape(&api).await;
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    assert!(
        page.contains("# TYPE keyward_kms_requests_total counter"),
        "{page}"
    );
    // The two refusals are counted by route and status.
    assert_eq!(
        value(
            &page,
            "keyward_api_requests_total{method=\"GET\",route=\"/metrics\",status=\"401\"}"
        ),
        Some(2.0),
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_the_kms_requests_cache_bytes_and_health_of_a_document_round_trip() {
    let api = Api::start().await;
    let (_, token) = api.organization("acme").await;
    let id = api.ready_cluster(&token, "prod").await;
    let check = api
        .call(
            Method::POST,
            &format!("/v1/clusters/{id}/health-check"),
            Some(&token),
            Body::empty(),
        )
        .await;
    assert_eq!(check.status, StatusCode::OK, "{}", check.json);
    let document = vec![7u8; 10_000];
    let path = format!("/v1/clusters/{id}/documents/report.txt");
    let put = api
        .call(Method::PUT, &path, Some(&token), document.clone())
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.json);
    for _ in 0..2 {
        let get = api
            .call(Method::GET, &path, Some(&token), Body::empty())
            .await;
        assert_eq!(get.status, StatusCode::OK);
        assert_eq!(get.bytes.as_ref(), document.as_slice());
    }

    let (_, page) = scrape(&api).await;
    at_least(
        &page,
        "keyward_kms_requests_total{operation=\"GenerateDataKey\",result=\"success\"}",
        1.0,
    );
    at_least(
        &page,
        "keyward_kms_requests_total{operation=\"Decrypt\",result=\"success\"}",
        1.0,
    );
    at_least(
        &page,
        "keyward_kms_request_duration_seconds_count{operation=\"GenerateDataKey\"}",
        1.0,
    );
    // Every request falls in the +Inf bucket: its count equals the histogram's.
    assert_eq!(
        value(
            &page,
            "keyward_kms_request_duration_seconds_bucket{operation=\"Decrypt\",le=\"+Inf\"}"
        ),
        value(
            &page,
            "keyward_kms_request_duration_seconds_count{operation=\"Decrypt\"}"
        )
    );
    at_least(
        &page,
        "keyward_plaintext_bytes_total{class=\"documents\",direction=\"encrypt\"}",
        10_000.0,
    );
    at_least(
        &page,
        "keyward_plaintext_bytes_total{class=\"documents\",direction=\"decrypt\"}",
        20_000.0,
    );
    // The second read found the data key the first one unwrapped.
    at_least(
        &page,
        &format!("keyward_data_key_cache_hits_total{{cluster=\"{id}\"}}"),
        1.0,
    );
    at_least(
        &page,
        &format!("keyward_data_key_cache_misses_total{{cluster=\"{id}\"}}"),
        1.0,
    );
    assert_eq!(
        value(&page, "keyward_cluster_key_health{status=\"healthy\"}"),
        Some(1.0),
        "{page}"
    );
    assert_eq!(
        value(
            &page,
            "keyward_cluster_key_health{status=\"key-inaccessible\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        value(&page, "keyward_audit_records_dropped_total"),
        Some(0.0)
    );
    assert_eq!(
        value(
            &page,
            "keyward_api_requests_total{method=\"PUT\",route=\"/v1/clusters/{id}/documents/{*name}\",status=\"200\"}"
        ),
        Some(1.0),
        "{page}"
    );
    assert_eq!(
        value(
            &page,
            "keyward_api_requests_total{method=\"GET\",route=\"/v1/clusters/{id}/documents/{*name}\",status=\"200\"}"
        ),
        Some(2.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_the_metrics_page() {
    let promtool = require_tool("promtool");
    let api = Api::start().await;
    let (_, token) = api.organization("acme").await;
    let id = api.ready_cluster(&token, "prod").await;
    let path = format!("/v1/clusters/{id}/documents/a");
    let put = api.call(Method::PUT, &path, Some(&token), "x").await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.json);
    let get = api
        .call(Method::GET, &path, Some(&token), Body::empty())
        .await;
    assert_eq!(get.status, StatusCode::OK);
    // A refused request too, so the page has more than one status.
    api.call(Method::GET, "/metrics", None, Body::empty()).await;
    let (_, page) = scrape(&api).await;
    assert!(page.contains("keyward_kms_request_duration_seconds_bucket"));

    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool refused the page ({}):\n{}{}\n---\n{page}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // Nor did it find anything to lint.
    assert!(
        output.stdout.is_empty() && output.stderr.is_empty(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn every_answer_names_its_request_id() {
    let api = Api::start().await;
    let mut ids = std::collections::BTreeSet::new();
    for uri in ["/healthz", "/healthz", "/no/such/route"] {
        let request = Request::builder().uri(uri).body(Body::empty()).unwrap();
        let response = api.router.clone().oneshot(request).await.unwrap();
        let id = response.headers()[REQUEST_ID_HEADER].to_str().unwrap();
        assert_eq!(id.len(), 16, "{id}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        ids.insert(id.to_owned());
    }
    assert_eq!(ids.len(), 3, "ids repeat: {ids:?}");
}
