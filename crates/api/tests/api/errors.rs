//! The REST statuses of the control plane's refusals, through the router: the API's error table
//! is the only one, so these are checked here, on the wire.

use axum::http::Method;

use crate::{assert_error, Api};

/// A region that is not one: 400 `invalid_request`; a key that fails a check: 422
/// `association_failed` with the report; the cluster's data before a key: 409; an unknown
/// cluster: 404. Nothing changes on any of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_refusals_answer_with_their_status() {
    let api = Api::start().await;
    let (_, token) = api.organization("acme").await;
    let bad_region = api
        .call_json(
            Method::POST,
            "/v1/clusters",
            Some(&token),
            serde_json::json!({"name": "prod", "region": "mars-1", "encryption": "external"}),
        )
        .await;
    assert_error(&bad_region, 400, "invalid_request");

    let cluster = api.cluster(&token, "prod").await;
    let id = cluster["id"].as_str().unwrap();
    let alias = api
        .call_json(
            Method::PUT,
            &format!("/v1/clusters/{id}/key"),
            Some(&token),
            serde_json::json!({"key_arn": "alias/prod"}),
        )
        .await;
    assert_error(&alias, 422, "association_failed");
    assert_eq!(
        alias.json["error"]["report"]["checks"][0]["check"],
        "not-alias"
    );

    let early = api
        .call(
            Method::GET,
            &format!("/v1/clusters/{id}/documents"),
            Some(&token),
            "",
        )
        .await;
    assert_error(&early, 409, "key_not_associated");

    let missing = api
        .call(
            Method::GET,
            "/v1/clusters/c-0000000000000000",
            Some(&token),
            "",
        )
        .await;
    assert_error(&missing, 404, "not_found");

    // The cluster still awaits its key.
    let after = api
        .call(Method::GET, &format!("/v1/clusters/{id}"), Some(&token), "")
        .await;
    assert_eq!(after.json["state"], "awaiting-key", "{}", after.json);
    assert_eq!(after.json["key_arn"], serde_json::Value::Null);
}
