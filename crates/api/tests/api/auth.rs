//! Authentication on every route, the admin route, and the shape of errors (bad JSON, bodies too
//! large).

use axum::body::Body;
use axum::http::{Method, StatusCode};
use keyward_api::{Limits, ROUTES};
use serde_json::json;

use crate::{assert_error, concrete, method, Api, ADMIN, PUBLIC};

#[tokio::test]
async fn every_route_but_the_public_ones_refuses_a_missing_or_bad_token() {
    let api = Api::start().await;
    let (_, org_token) = api.organization("acme").await;
    let cluster = api.cluster(&org_token, "prod").await;
    let id = cluster["id"].as_str().unwrap();
    let unknown = format!("kw_{}", "A".repeat(43));
    let admin = api.admin_token.clone();
    for (m, path) in ROUTES {
        let path = concrete(path, id);
        if PUBLIC.contains(&(m, path.as_str())) {
            let answer = api.call(method(m), &path, None, Body::empty()).await;
            assert_eq!(answer.status, StatusCode::OK, "{m} {path}");
            continue;
        }
        let body = || {
            Body::from(json!({"name": "x", "encryption": "external", "key_arn": "x"}).to_string())
        };
        let mut tokens: Vec<(Option<&str>, &str)> = vec![
            (None, "no token"),
            (Some(""), "empty token"),
            (Some("not-a-token"), "garbage"),
            (Some(unknown.as_str()), "well-shaped unknown token"),
        ];
        if ADMIN.iter().any(|prefix| path.starts_with(prefix)) {
            tokens.push((
                Some(org_token.as_str()),
                "an organization's token on the admin route",
            ));
        } else {
            tokens.push((
                Some(admin.as_str()),
                "the admin token on an organization's route",
            ));
        }
        for (token, what) in tokens {
            let answer = api.call(method(m), &path, token, body()).await;
            assert_error(&answer, 401, "unauthenticated");
            assert!(
                answer.json["error"]["message"].as_str().unwrap().len() > 10,
                "{what}"
            );
        }
        // A header that is not `Bearer <token>`.
        let request = axum::http::Request::builder()
            .method(method(m))
            .uri(&path)
            .header("authorization", format!("Basic {org_token}"))
            .body(body())
            .unwrap();
        let response = tower::ServiceExt::oneshot(api.router.clone(), request)
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{m} {path} with Basic"
        );
    }
    // Nothing was created by any refused request.
    let answer = api
        .call(Method::GET, "/v1/clusters", Some(&org_token), Body::empty())
        .await;
    assert_eq!(answer.json["clusters"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_admin_token_creates_organizations_whose_tokens_work() {
    let api = Api::start().await;
    let (org_id, token) = api.organization("acme").await;
    assert!(org_id.starts_with("o-"), "{org_id}");
    assert!(token.starts_with("kw_"), "{token}");
    let answer = api
        .call(Method::GET, "/v1/clusters", Some(&token), Body::empty())
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json, json!({"clusters": []}));
    // A bad organization request is invalid and creates nothing.
    let answer = api
        .call_json(
            Method::POST,
            "/v1/organizations",
            Some(&api.admin_token.clone()),
            json!({"nom": "x"}),
        )
        .await;
    assert_error(&answer, 400, "invalid_request");
}

#[tokio::test]
async fn bad_json_is_invalid_and_bodies_over_the_limit_are_413_with_a_json_error() {
    let api = Api::start_with(Limits {
        max_json_bytes: 1024,
        max_document_bytes: 4096,
        ..Limits::default()
    })
    .await;
    let (_, token) = api.organization("acme").await;
    for body in [
        "{",
        "[]",
        r#"{"name": "a"}"#,
        r#"{"name": "a", "encryption": "sideways"}"#,
    ] {
        let answer = api
            .call(Method::POST, "/v1/clusters", Some(&token), body)
            .await;
        assert_error(&answer, 400, "invalid_request");
    }
    let big = json!({"name": "a".repeat(2000), "encryption": "external"}).to_string();
    let answer = api
        .call(Method::POST, "/v1/clusters", Some(&token), big)
        .await;
    assert_error(&answer, 413, "payload_too_large");
    let list = api
        .call(Method::GET, "/v1/clusters", Some(&token), Body::empty())
        .await;
    assert_eq!(
        list.json["clusters"].as_array().unwrap().len(),
        0,
        "nothing created"
    );

    let cluster = api.cluster(&token, "prod").await;
    let id = cluster["id"].as_str().unwrap();
    let path = format!("/v1/clusters/{id}/documents/big.bin");
    let answer = api
        .call(Method::PUT, &path, Some(&token), vec![7u8; 4097])
        .await;
    assert_error(&answer, 413, "payload_too_large");
    // A streamed body without a length is read only once the cluster can store it: here it
    // cannot (no key), which is the answer. (On a ready cluster it is cut at the limit:
    // `documents::a_document_over_the_limit_is_413_and_nothing_of_it_is_stored`.)
    let stream = futures_body(vec![vec![1u8; 3000], vec![2u8; 3000]]);
    let answer = api.call(Method::PUT, &path, Some(&token), stream).await;
    assert_error(&answer, 409, "key_not_associated");
    // Within the limit the request reaches the control plane, which refuses: no key yet.
    let answer = api
        .call(Method::PUT, &path, Some(&token), vec![7u8; 100])
        .await;
    assert_error(&answer, 409, "key_not_associated");
}

/// A body of several chunks with no known length.
fn futures_body(chunks: Vec<Vec<u8>>) -> Body {
    Body::from_stream(futures::stream::iter(
        chunks.into_iter().map(Ok::<_, std::io::Error>),
    ))
}
