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
    assert_eq!(list.len(), 8);
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

#[tokio::test]
async fn alarm_rules_are_set_per_organization_and_cluster_and_a_bad_field_is_a_400_naming_it() {
    let api = Api::start().await;
    let (_, token) = api.organization("acme").await;
    let (_, other) = api.organization("globex").await;
    let id = api.ready_cluster(&token, "prod").await;
    let call = |method: Method, path: String, body: serde_json::Value, token: String| {
        let api = &api;
        async move {
            api.call(method, &path, Some(&token), Body::from(body.to_string()))
                .await
        }
    };
    let org_path = "/v1/alarm-rules".to_owned();
    let cluster_path = format!("/v1/clusters/{id}/alarm-rules");
    let set = call(
        Method::PUT,
        org_path.clone(),
        serde_json::json!({"access_denied_threshold": 5, "enabled": {"key-rotated": false}}),
        token.clone(),
    )
    .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.json);
    assert_eq!(set.json["organization"]["access_denied_threshold"], 5);
    let set = call(
        Method::PUT,
        cluster_path.clone(),
        serde_json::json!({"access_denied_threshold": 2, "probe_cost_budget_usd": 1.5}),
        token.clone(),
    )
    .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.json);
    // The cluster's threshold over the organization's; the organization's switch; defaults.
    let effective = &set.json["effective"];
    assert_eq!(effective["access_denied_threshold"], 2);
    assert_eq!(effective["enabled"]["key-rotated"], false);
    assert_eq!(effective["probe_cost_budget_usd"], 1.5);
    assert_eq!(effective["access_denied_window_seconds"], 300);
    let before = call(
        Method::GET,
        cluster_path.clone(),
        serde_json::json!(null),
        token.clone(),
    )
    .await;
    let org_before = call(
        Method::GET,
        org_path.clone(),
        serde_json::json!(null),
        token.clone(),
    )
    .await;
    for (bad, field) in [
        (
            serde_json::json!({"access_denied_threshold": 0}),
            "access_denied_threshold",
        ),
        (
            serde_json::json!({"access_denied_window_seconds": "300"}),
            "access_denied_window_seconds",
        ),
        (
            serde_json::json!({"enabled": {"nope": true}}),
            "enabled.nope",
        ),
        (
            serde_json::json!({"access_denied_operations": ["Decrypt", "Frobnicate"]}),
            "access_denied_operations[1]",
        ),
        (
            serde_json::json!({"allowed_principals": ["arn:aws:iam::444455556666:group/admins"]}),
            "allowed_principals[0]",
        ),
        (
            serde_json::json!({"rotation_window_seconds": 0}),
            "rotation_window_seconds",
        ),
        (
            serde_json::json!({"probe_cost_budget_usd": "lots"}),
            "probe_cost_budget_usd",
        ),
        (serde_json::json!({"threshold": 5}), "\"threshold\""),
    ] {
        for path in [&cluster_path, &org_path] {
            let answer = call(Method::PUT, path.clone(), bad.clone(), token.clone()).await;
            assert_error(&answer, 400, "invalid_request");
            let message = answer.json["error"]["message"].as_str().unwrap();
            assert!(message.contains(field), "{bad}: {message}");
        }
    }
    let after = call(
        Method::GET,
        cluster_path.clone(),
        serde_json::json!(null),
        token.clone(),
    )
    .await;
    let org_after = call(
        Method::GET,
        org_path.clone(),
        serde_json::json!(null),
        token.clone(),
    )
    .await;
    assert_eq!(
        after.json, before.json,
        "nothing of a refused rule is stored"
    );
    assert_eq!(org_after.json, org_before.json);
    // Another organization: its own rule is empty, and the cluster is not found.
    let theirs = call(
        Method::GET,
        org_path.clone(),
        serde_json::json!(null),
        other.clone(),
    )
    .await;
    assert_eq!(theirs.json["organization"], serde_json::json!({}));
    let foreign = call(
        Method::GET,
        cluster_path.clone(),
        serde_json::json!(null),
        other.clone(),
    )
    .await;
    assert_error(&foreign, 404, "not_found");
}
