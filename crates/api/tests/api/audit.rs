//! `GET /v1/clusters/{id}/audit`: the cluster's KMS requests, filtered, as keyward's records or as
//! CloudTrail events; every malformed parameter is a 400 naming the rule.

use axum::body::Body;
use axum::http::{Method, StatusCode};

use crate::{assert_error, Api};

#[tokio::test]
async fn the_audit_lists_the_clusters_kms_requests_and_refuses_bad_parameters() {
    let api = Api::start().await;
    let (_, token) = api.organization("acme").await;
    let id = api.ready_cluster(&token, "prod").await;
    let get = |query: String| {
        let (api, token, id) = (&api, &token, &id);
        async move {
            api.call(
                Method::GET,
                &format!("/v1/clusters/{id}/audit{query}"),
                Some(token),
                Body::empty(),
            )
            .await
        }
    };

    let all = get(String::new()).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.json);
    let records = all.json["records"].as_array().unwrap();
    assert!(!records.is_empty());
    assert!(records.iter().all(|r| r["cluster_id"] == id.as_str()));
    assert_eq!(all.json["dropped"], 0);
    let decrypts = get("?operation=Decrypt&result=success&limit=2".into()).await;
    let decrypts = decrypts.json["records"].as_array().unwrap().clone();
    assert!(!decrypts.is_empty() && decrypts.len() <= 2);
    assert!(decrypts
        .iter()
        .all(|r| r["operation"] == "Decrypt" && r["result"] == "success"));
    let newest = records[0]["time_ms"].as_i64().unwrap();
    let later = get(format!("?from={}", newest + 1)).await;
    assert_eq!(later.json["records"], serde_json::json!([]));

    let trail = get("?format=cloudtrail&limit=5".into()).await;
    assert_eq!(trail.status, StatusCode::OK);
    let events = trail.json["Records"].as_array().unwrap();
    assert_eq!(events.len(), 5);
    for event in events {
        assert_eq!(event["eventSource"], "kms.amazonaws.com");
        assert_eq!(event["userIdentity"]["type"], "AssumedRole");
        assert!(event["eventTime"].as_str().unwrap().ends_with('Z'));
    }

    for bad in [
        "?from=-1",
        "?from=yesterday",
        "?to=1.5",
        "?from=10&to=10",
        "?operation=",
        "?operation=Decrypt;DROP",
        "?result=maybe",
        "?limit=0",
        "?limit=1001",
        "?limit=many",
        "?format=xml",
        "?region=us-east-1",
    ] {
        let answer = get(bad.into()).await;
        assert_error(&answer, 400, "invalid_request");
    }
    // Refusals changed nothing: the same records are there.
    let again = get(String::new()).await;
    assert!(again.json["records"].as_array().unwrap().len() >= records.len());
}

#[tokio::test]
async fn the_alarms_and_their_history_are_the_clusters_own() {
    let api = Api::start().await;
    let (_, token) = api.organization("acme").await;
    let (_, other) = api.organization("globex").await;
    let id = api.ready_cluster(&token, "prod").await;
    api.plane.evaluate_alarms_now().await.unwrap();
    let alarms = api
        .call(
            Method::GET,
            &format!("/v1/clusters/{id}/alarms"),
            Some(&token),
            Body::empty(),
        )
        .await;
    assert_eq!(alarms.status, StatusCode::OK, "{}", alarms.json);
    let list = alarms.json["alarms"].as_array().unwrap();
    assert_eq!(list.len(), 5);
    assert!(list
        .iter()
        .all(|a| ["OK", "INSUFFICIENT_DATA"].contains(&a["state"].as_str().unwrap())));
    let history = api
        .call(
            Method::GET,
            &format!("/v1/clusters/{id}/alarms/history?limit=3"),
            Some(&token),
            Body::empty(),
        )
        .await;
    assert_eq!(history.status, StatusCode::OK);
    assert_eq!(history.json["transitions"].as_array().unwrap().len(), 3);
    for bad in ["?limit=0", "?limit=x", "?since=1"] {
        let answer = api
            .call(
                Method::GET,
                &format!("/v1/clusters/{id}/alarms/history{bad}"),
                Some(&token),
                Body::empty(),
            )
            .await;
        assert_error(&answer, 400, "invalid_request");
    }
    let foreign = api
        .call(
            Method::GET,
            &format!("/v1/clusters/{id}/alarms"),
            Some(&other),
            Body::empty(),
        )
        .await;
    assert_error(&foreign, 404, "not_found");
}
