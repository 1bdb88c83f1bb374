//! Document names and list prefixes a hostile client might send: each answers a 4xx naming the
//! rule, never a 500, and nothing changes.

use axum::body::Body;
use axum::http::{Method, StatusCode};

use crate::{assert_error, Api};

#[tokio::test]
async fn bad_document_names_and_prefixes_get_a_4xx_naming_the_rule_and_change_nothing() {
    let api = Api::start().await;
    let (_, token) = api.organization("acme").await;
    let id = api.ready_cluster(&token, "prod").await;
    let doc = |name: &str| format!("/v1/clusters/{id}/documents/{name}");
    for (name, body) in [("a", "object a"), ("x/y", "object x/y")] {
        let put = api.call(Method::PUT, &doc(name), Some(&token), body).await;
        assert_eq!(put.status, StatusCode::OK, "{name}: {}", put.json);
    }
    let listing = |prefix: &str| format!("/v1/clusters/{id}/documents?prefix={prefix}");
    let before = api
        .call(Method::GET, &listing(""), Some(&token), Body::empty())
        .await;
    assert_eq!(before.status, StatusCode::OK);

    let long = "s".repeat(254);
    let cases: Vec<(Method, String, u16, &str, &str)> = vec![
        // A segment the local backend could not name.
        (Method::PUT, doc(&long), 400, "invalid_request", "200 bytes"),
        (
            Method::PUT,
            doc(&format!("dir/{long}")),
            400,
            "invalid_request",
            "200 bytes",
        ),
        // An object where a folder is, and a folder where an object is.
        (Method::PUT, doc("a/b"), 409, "conflict", "\"a\""),
        (Method::PUT, doc("a/b/c"), 409, "conflict", "\"a\""),
        (Method::PUT, doc("x"), 409, "conflict", "\"x/y\""),
        // Prefixes that would leave the store.
        (
            Method::GET,
            listing("../"),
            400,
            "invalid_request",
            "prefix",
        ),
        (
            Method::GET,
            listing("../../etc"),
            400,
            "invalid_request",
            "prefix",
        ),
        (
            Method::GET,
            listing("x//"),
            400,
            "invalid_request",
            "prefix",
        ),
        (
            Method::GET,
            listing("a/../"),
            400,
            "invalid_request",
            "prefix",
        ),
    ];
    for (method, path, status, code, says) in cases {
        let answer = api
            .call(method.clone(), &path, Some(&token), "should not be stored")
            .await;
        assert_error(&answer, status, code);
        let message = answer.json["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{method} {path}: {message}");
        assert!(
            !message.contains("Generic") && !message.contains("source:"),
            "a library's Debug text reached the answer: {message}"
        );
    }

    // Nothing changed: the same two documents, whole.
    let after = api
        .call(Method::GET, &listing(""), Some(&token), Body::empty())
        .await;
    assert_eq!(after.json, before.json);
    for (name, body) in [("a", "object a"), ("x/y", "object x/y")] {
        let get = api
            .call(Method::GET, &doc(name), Some(&token), Body::empty())
            .await;
        assert_eq!(get.status, StatusCode::OK);
        assert_eq!(&get.bytes[..], body.as_bytes());
    }
}
