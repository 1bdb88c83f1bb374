//! `GET /v1/clusters/{id}/usage`: the cluster's KMS requests per day and operation, their charges
//! and the probe's monthly cost; malformed dates are a 400 naming the rule; another
//! organization's cluster is not found.

use axum::body::Body;
use axum::http::{Method, StatusCode};

use crate::{assert_error, Api};

#[tokio::test]
async fn the_usage_counts_the_clusters_requests_and_refuses_bad_dates() {
    let api = Api::start().await;
    let (_, token) = api.organization("acme").await;
    let (_, other) = api.organization("rival").await;
    let id = api.ready_cluster(&token, "prod").await;
    let get = |query: &str, token: &str| {
        let (api, path) = (&api, format!("/v1/clusters/{id}/usage{query}"));
        let token = token.to_owned();
        async move {
            api.call(Method::GET, &path, Some(&token), Body::empty())
                .await
        }
    };

    let usage = get("", &token).await;
    assert_eq!(usage.status, StatusCode::OK, "{}", usage.json);
    let report = &usage.json;
    assert_eq!(report["cluster_id"], id.as_str());
    // The current month so far, by default.
    let (from, to) = (
        report["from"].as_str().unwrap(),
        report["to"].as_str().unwrap(),
    );
    assert!(from.ends_with("-01") && from[..7] == to[..7], "{from} {to}");
    // The association and the key-health probes made requests: counted as probes, per day and
    // operation, and the totals are the sums.
    let operations = report["operations"].as_array().unwrap();
    let sum = |field: &str| -> u64 { operations.iter().map(|o| o[field].as_u64().unwrap()).sum() };
    assert!(report["total"]["probe"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["total"]["probe"].as_u64().unwrap(), sum("probe"));
    assert_eq!(report["total"]["data"].as_u64().unwrap(), sum("data"));
    assert!(operations.iter().any(|o| o["operation"] == "DescribeKey"));
    let days = report["days"].as_array().unwrap();
    assert!(!days.is_empty());
    assert!(days
        .iter()
        .all(|d| d["date"].as_str().unwrap()[..7] == from[..7]));
    // Charged in the key's account; well under the free requests, so only the key-days cost.
    let period = &report["charges"]["periods"][0];
    assert_eq!(period["account"], "444455556666");
    assert_eq!(period["billable_requests"], 0);
    assert_eq!(period["requests_micro_usd"], 0);
    assert_eq!(period["keys"][0]["days"], 1);
    assert_eq!(
        report["charges"]["prices"]["per_10k_requests_micro_usd"],
        30_000
    );
    // The default 10 s probe: 259,200 requests a month, $0.7776.
    assert_eq!(report["probe_cost"]["requests_per_month"], 259_200);
    assert_eq!(report["probe_cost"]["usd_per_month"], "0.777600");
    assert!(report["data_key_cache"]["requests_saved"].is_u64());

    let day = get(&format!("?from={to}&to={to}"), &token).await;
    assert_eq!(day.status, StatusCode::OK, "{}", day.json);
    assert_eq!(day.json["from"], to);

    for (bad, rule) in [
        ("?from=2026-13-01", "YYYY-MM-DD"),
        ("?from=2026-02-29", "YYYY-MM-DD"),
        ("?to=yesterday", "YYYY-MM-DD"),
        ("?from=2026-1-01", "YYYY-MM-DD"),
        ("?from=1700000000000", "YYYY-MM-DD"),
        ("?from=2026-01-01&to=2026-12-31", "at most 92 days"),
        ("?from=2026-12-06&to=2026-12-05", "on or before"),
        ("?month=2026-12", "unknown parameter"),
    ] {
        let answer = get(bad, &token).await;
        assert_error(&answer, 400, "invalid_request");
        let message = answer.json["error"]["message"].as_str().unwrap();
        assert!(message.contains(rule), "{bad}: {message}");
    }

    // Another organization's token: the cluster does not exist for it.
    let elsewhere = get("", &other).await;
    assert_error(&elsewhere, 404, "not_found");
}
