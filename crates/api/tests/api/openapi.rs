//! The OpenAPI document lists exactly the routes the router serves.

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode};
use keyward_api::{OPENAPI_JSON, ROUTES};

use crate::Api;

#[test]
fn the_document_lists_exactly_the_served_routes() {
    let doc: serde_json::Value = serde_json::from_str(OPENAPI_JSON).expect("valid JSON");
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            assert!(
                operation["responses"].is_object(),
                "{method} {path} has no responses"
            );
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let served: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.replace("{*name}", "{name}")))
        .collect();
    let missing: Vec<_> = served.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&served).collect();
    assert!(missing.is_empty(), "served but not documented: {missing:?}");
    assert!(extra.is_empty(), "documented but not served: {extra:?}");
    // Every $ref points at a schema that exists.
    let text = OPENAPI_JSON;
    for piece in text.split("\"$ref\": \"#/components/schemas/").skip(1) {
        let name = &piece[..piece.find('"').unwrap()];
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "dangling $ref {name}"
        );
    }
}

#[tokio::test]
async fn the_document_is_served_without_a_token_and_every_documented_route_is_routed() {
    let api = Api::start().await;
    let answer = api
        .call(
            Method::GET,
            "/v1/openapi.json",
            None,
            axum::body::Body::empty(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.bytes.as_ref(), OPENAPI_JSON.as_bytes());
    // A method the document does not list for a path is 405; a path it does not list is 404.
    let doc: serde_json::Value = serde_json::from_str(OPENAPI_JSON).unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let concrete = crate::concrete(path, "c-0123456789abcdef");
        for method in ["GET", "PUT", "POST", "DELETE", "PATCH"] {
            let answer = api
                .call(
                    crate::method(method),
                    &concrete,
                    None,
                    axum::body::Body::empty(),
                )
                .await;
            if item.get(method.to_lowercase()).is_some() {
                assert_ne!(
                    answer.status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path}"
                );
                assert_ne!(answer.status, StatusCode::NOT_FOUND, "{method} {path}");
            } else {
                crate::assert_error(&answer, 405, "method_not_allowed");
            }
        }
    }
    let answer = api
        .call(
            Method::GET,
            "/v1/nothing-here",
            None,
            axum::body::Body::empty(),
        )
        .await;
    crate::assert_error(&answer, 404, "not_found");
}
