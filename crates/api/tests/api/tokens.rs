//! Organization tokens under the admin token: listed (never the secret), created (shown once),
//! revoked at once; an organization's token cannot manage tokens, and one organization's tokens
//! are not shown under another's.

use axum::body::Body;
use axum::http::{Method, StatusCode};

use crate::{assert_error, Api};

#[tokio::test]
async fn the_admin_lists_creates_and_revokes_tokens_and_a_revoked_token_is_refused_at_once() {
    let api = Api::start().await;
    let admin = api.admin_token.clone();
    let (org, first) = api.organization("acme").await;
    let (other_org, other) = api.organization("globex").await;
    let tokens = format!("/v1/organizations/{org}/tokens");

    let list = api
        .call(Method::GET, &tokens, Some(&admin), Body::empty())
        .await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.json);
    let listed = list.json["tokens"].as_array().unwrap().clone();
    assert_eq!(listed.len(), 1, "{}", list.json);
    assert_eq!(listed[0]["last4"], first[first.len() - 4..]);
    assert!(listed[0]["created_at_ms"].as_i64().unwrap() > 0);
    assert!(
        !list
            .bytes
            .windows(first.len())
            .any(|w| w == first.as_bytes()),
        "no secret listed"
    );
    let first_id = listed[0]["id"].as_str().unwrap().to_owned();

    // A second token (rotation's first half), shown once, works.
    let created = api
        .call(Method::POST, &tokens, Some(&admin), Body::empty())
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.json);
    let second = created.json["token"].as_str().unwrap().to_owned();
    assert_eq!(created.json["last4"], second[second.len() - 4..]);
    let list = api
        .call(Method::GET, &tokens, Some(&admin), Body::empty())
        .await;
    assert_eq!(list.json["tokens"].as_array().unwrap().len(), 2);
    assert!(!list
        .bytes
        .windows(second.len())
        .any(|w| w == second.as_bytes()));
    let ok = api
        .call(Method::GET, "/v1/clusters", Some(&second), Body::empty())
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.json);
    api.cluster(&first, "prod").await;

    // Revoke the first: its next request is 401 and changes nothing.
    let revoked = api
        .call(
            Method::DELETE,
            &format!("{tokens}/{first_id}"),
            Some(&admin),
            Body::empty(),
        )
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{}", revoked.json);
    let refused = api
        .call_json(
            Method::POST,
            "/v1/clusters",
            Some(&first),
            serde_json::json!({"name": "after", "encryption": "external"}),
        )
        .await;
    assert_error(&refused, 401, "unauthenticated");
    let clusters = api
        .call(Method::GET, "/v1/clusters", Some(&second), Body::empty())
        .await;
    let names: Vec<&str> = clusters.json["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["prod"]);
    let list = api
        .call(Method::GET, &tokens, Some(&admin), Body::empty())
        .await;
    assert_eq!(list.json["tokens"].as_array().unwrap().len(), 1);
    // Again, or an id that never was: not_found.
    for id in [first_id.as_str(), "t-00000000000000ff", "nonsense"] {
        let again = api
            .call(
                Method::DELETE,
                &format!("{tokens}/{id}"),
                Some(&admin),
                Body::empty(),
            )
            .await;
        assert_error(&again, 404, "not_found");
    }

    // Another organization's token ids are not found under this one, and each sees its own.
    let other_list = api
        .call(
            Method::GET,
            &format!("/v1/organizations/{other_org}/tokens"),
            Some(&admin),
            Body::empty(),
        )
        .await;
    let other_id = other_list.json["tokens"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(other_list.json["tokens"].as_array().unwrap().len(), 1);
    assert_eq!(
        other_list.json["tokens"][0]["last4"],
        other[other.len() - 4..]
    );
    let cross = api
        .call(
            Method::DELETE,
            &format!("{tokens}/{other_id}"),
            Some(&admin),
            Body::empty(),
        )
        .await;
    assert_error(&cross, 404, "not_found");
    let still = api
        .call(Method::GET, "/v1/clusters", Some(&other), Body::empty())
        .await;
    assert_eq!(
        still.status,
        StatusCode::OK,
        "the other organization's token still works"
    );
    let nowhere = api
        .call(
            Method::GET,
            "/v1/organizations/o-00000000000000ff/tokens",
            Some(&admin),
            Body::empty(),
        )
        .await;
    assert_error(&nowhere, 404, "not_found");
}

#[tokio::test]
async fn an_organization_token_cannot_list_create_or_revoke_tokens() {
    let api = Api::start().await;
    let (org, token) = api.organization("acme").await;
    let (other_org, _) = api.organization("globex").await;
    let admin = api.admin_token.clone();
    let before = api
        .call(
            Method::GET,
            &format!("/v1/organizations/{org}/tokens"),
            Some(&admin),
            Body::empty(),
        )
        .await;
    let id = before.json["tokens"][0]["id"].as_str().unwrap().to_owned();
    for target in [&org, &other_org] {
        let tokens = format!("/v1/organizations/{target}/tokens");
        for (method, path) in [
            (Method::GET, tokens.clone()),
            (Method::POST, tokens.clone()),
            (Method::DELETE, format!("{tokens}/{id}")),
        ] {
            let answer = api.call(method, &path, Some(&token), Body::empty()).await;
            assert_error(&answer, 401, "unauthenticated");
        }
    }
    let after = api
        .call(
            Method::GET,
            &format!("/v1/organizations/{org}/tokens"),
            Some(&admin),
            Body::empty(),
        )
        .await;
    assert_eq!(after.json, before.json, "nothing changed");
    let ok = api
        .call(Method::GET, "/v1/clusters", Some(&token), Body::empty())
        .await;
    assert_eq!(ok.status, StatusCode::OK);
}
