//! Notification destinations through the API: bad input is `400 invalid_request` with the rule
//! it broke and stores nothing; the secret is answered once, at creation, and never listed.

use axum::body::Body;
use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::{assert_error, Api};

#[tokio::test]
async fn bad_destinations_are_400_with_the_rule_and_nothing_is_stored() {
    let api = Api::start().await;
    let (_, token) = api.organization("acme").await;
    let cluster = api.cluster(&token, "prod").await;
    let cluster_id = cluster["id"].as_str().unwrap();
    // Each refused with the rule it broke (serde's own words for the JSON's shape).
    for (body, message) in [
        (json!({"url": "ftp://93.184.216.34/x"}), "url has the scheme \"ftp\": only https (or http) webhooks are sent"),
        (json!({"url": "https://user:secret@93.184.216.34/x"}), "url must not carry credentials (user:password@): the signature authenticates keyward to the receiver; put any token of the receiver in the path"),
        (json!({"url": "http://127.0.0.1:9000/hook"}), "url's host 127.0.0.1 is a loopback, private or link-local address: webhooks go only to public addresses on this platform"),
        (json!({"url": "http://169.254.169.254/latest/meta-data/"}), "url's host 169.254.169.254 is a loopback, private or link-local address: webhooks go only to public addresses on this platform"),
        (json!({"url": "http://10.0.0.7/hook"}), "url's host 10.0.0.7 is a loopback, private or link-local address: webhooks go only to public addresses on this platform"),
        (json!({"url": format!("https://93.184.216.34/{}", "a".repeat(2048))}), "url is 2070 characters long, more than the limit of 2048"),
        (json!({"url": ""}), "url is empty: give the webhook's http:// or https:// URL"),
        (
            json!({"url": "https://93.184.216.34/x", "format": "teams"}),
            "the JSON body is not valid: unknown variant `teams`",
        ),
        (
            json!({"url": "https://93.184.216.34/x", "secret": "mine"}),
            "the JSON body is not valid: unknown field `secret`",
        ),
        (
            json!({"format": "slack"}),
            "the JSON body is not valid: missing field `url`",
        ),
    ] {
        let answer = api
            .call_json(Method::POST, "/v1/notification-destinations", Some(&token), body.clone())
            .await;
        assert_error(&answer, 400, "invalid_request");
        let said = answer.json["error"]["message"].as_str().unwrap();
        assert!(said.contains(message), "{body}: {said}");
    }
    let foreign = api
        .call_json(
            Method::POST,
            "/v1/notification-destinations",
            Some(&token),
            json!({"url": "https://93.184.216.34/x", "cluster_id": "c-00000000000000ff"}),
        )
        .await;
    assert_error(&foreign, 404, "not_found");
    let listed = api
        .call(
            Method::GET,
            "/v1/notification-destinations",
            Some(&token),
            Body::empty(),
        )
        .await;
    assert_eq!(listed.json, json!({"destinations": []}));
    // With no destination, a test notification says how to make one.
    let test = api
        .call(
            Method::POST,
            &format!("/v1/clusters/{cluster_id}/alarms/test"),
            Some(&token),
            Body::empty(),
        )
        .await;
    assert_error(&test, 400, "invalid_request");
    assert!(test.json["error"]["message"]
        .as_str()
        .unwrap()
        .contains("POST /v1/notification-destinations"));

    // A good one: the secret once, then never again.
    let created = api
        .call_json(
            Method::POST,
            "/v1/notification-destinations",
            Some(&token),
            json!({"url": "https://93.184.216.34/hook", "format": "slack", "cluster_id": cluster_id, "description": "ops channel"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.json);
    let secret = created.json["secret"].as_str().unwrap();
    assert!(
        secret.starts_with("kwwhsec_") && secret.len() > 40,
        "{secret}"
    );
    let listed = api
        .call(
            Method::GET,
            "/v1/notification-destinations",
            Some(&token),
            Body::empty(),
        )
        .await;
    assert_eq!(listed.json["destinations"].as_array().unwrap().len(), 1);
    assert_eq!(listed.json["destinations"][0]["format"], "slack");
    assert_eq!(listed.json["destinations"][0]["cluster_id"], cluster_id);
    assert!(!String::from_utf8_lossy(&listed.bytes).contains(secret));
    let id = listed.json["destinations"][0]["id"].as_str().unwrap();
    let bad_limit = api
        .call(
            Method::GET,
            &format!("/v1/notification-destinations/{id}/deliveries?limit=0"),
            Some(&token),
            Body::empty(),
        )
        .await;
    assert_error(&bad_limit, 400, "invalid_request");
    let deliveries = api
        .call(
            Method::GET,
            &format!("/v1/notification-destinations/{id}/deliveries"),
            Some(&token),
            Body::empty(),
        )
        .await;
    assert_eq!(deliveries.json, json!({"deliveries": []}));
    let deleted = api
        .call(
            Method::DELETE,
            &format!("/v1/notification-destinations/{id}"),
            Some(&token),
            Body::empty(),
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let listed = api
        .call(
            Method::GET,
            "/v1/notification-destinations",
            Some(&token),
            Body::empty(),
        )
        .await;
    assert_eq!(listed.json, json!({"destinations": []}));
}
