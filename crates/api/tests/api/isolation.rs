//! Tenant isolation: organization B, using organization A's cluster id on every route, is told
//! `not_found` — exactly what a cluster id that exists nowhere gets — and nothing of A changes.

use axum::body::Body;
use axum::http::{Method, StatusCode};
use keyward_api::ROUTES;
use serde_json::json;

use crate::{assert_error, concrete, method, Api};

#[tokio::test]
async fn another_organizations_cluster_is_not_found_on_every_route_and_left_unchanged() {
    let api = Api::start().await;
    let (_, a) = api.organization("org-a").await;
    let (_, b) = api.organization("org-b").await;
    let cluster = api.cluster(&a, "a-prod").await;
    let id = cluster["id"].as_str().unwrap().to_owned();
    let before = api
        .call(
            Method::GET,
            &format!("/v1/clusters/{id}"),
            Some(&a),
            Body::empty(),
        )
        .await;
    assert_eq!(before.status, StatusCode::OK);
    let policy_before = api
        .call(
            Method::GET,
            &format!("/v1/clusters/{id}/key-policy"),
            Some(&a),
            Body::empty(),
        )
        .await;
    assert_eq!(
        policy_before.status,
        StatusCode::OK,
        "{}",
        policy_before.json
    );

    let rules_path = format!("/v1/clusters/{id}/alarm-rules");
    let rules_before = api
        .call(
            Method::PUT,
            &rules_path,
            Some(&a),
            Body::from(json!({"access_denied_threshold": 7}).to_string()),
        )
        .await;
    assert_eq!(rules_before.status, StatusCode::OK, "{}", rules_before.json);

    let mut checked = 0;
    for (m, path) in ROUTES {
        if !path.contains("{id}") {
            continue;
        }
        let body = || {
            Body::from(json!({"key_arn": "arn:aws:kms:us-east-1:444455556666:key/00000000-0000-0000-0000-000000000000"}).to_string())
        };
        let answer = api
            .call(method(m), &concrete(path, &id), Some(&b), body())
            .await;
        assert_error(&answer, 404, "not_found");
        // Indistinguishable from an id that does not exist at all.
        let nowhere = api
            .call(
                method(m),
                &concrete(path, "c-00000000000000ff"),
                Some(&b),
                body(),
            )
            .await;
        assert_error(&nowhere, 404, "not_found");
        assert_eq!(
            answer.json["error"]["message"]
                .as_str()
                .map(|m| m.replace(&id, "ID")),
            nowhere.json["error"]["message"]
                .as_str()
                .map(|m| m.replace("c-00000000000000ff", "ID")),
            "{m} {path}: the message must not tell A's cluster from a missing one"
        );
        checked += 1;
    }
    assert_eq!(
        checked,
        ROUTES.iter().filter(|(_, p)| p.contains("{id}")).count()
    );
    assert_eq!(checked, 24);

    // A's cluster is as it was, and still A's alone.
    let after = api
        .call(
            Method::GET,
            &format!("/v1/clusters/{id}"),
            Some(&a),
            Body::empty(),
        )
        .await;
    assert_eq!(after.status, StatusCode::OK);
    assert_eq!(after.json, before.json);
    let policy_after = api
        .call(
            Method::GET,
            &format!("/v1/clusters/{id}/key-policy"),
            Some(&a),
            Body::empty(),
        )
        .await;
    assert_eq!(policy_after.json, policy_before.json);
    // B's PUT of a rule on A's cluster stored nothing.
    let rules_after = api
        .call(Method::GET, &rules_path, Some(&a), Body::empty())
        .await;
    assert_eq!(rules_after.json, rules_before.json);
    assert_eq!(rules_after.json["effective"]["access_denied_threshold"], 7);
    let list_a = api
        .call(Method::GET, "/v1/clusters", Some(&a), Body::empty())
        .await;
    assert_eq!(list_a.json["clusters"].as_array().unwrap().len(), 1);
    let list_b = api
        .call(Method::GET, "/v1/clusters", Some(&b), Body::empty())
        .await;
    assert_eq!(list_b.json, json!({"clusters": []}));
}

#[tokio::test]
async fn another_organization_cannot_read_overwrite_list_or_delete_a_ready_clusters_documents() {
    let api = Api::start().await;
    let (_, a) = api.organization("org-a").await;
    let (_, b) = api.organization("org-b").await;
    let id = api.ready_cluster(&a, "a-prod").await;
    let doc = format!("/v1/clusters/{id}/documents/ledger/2026.csv");
    let put = api.call(Method::PUT, &doc, Some(&a), "a,1\nb,2\n").await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.json);

    // B, with A's cluster id: every data route is not_found, whatever the document.
    for (m, body) in [("GET", ""), ("PUT", "b was here"), ("DELETE", "")] {
        let answer = api.call(method(m), &doc, Some(&b), body).await;
        assert_error(&answer, 404, "not_found");
    }
    let answer = api
        .call(
            Method::GET,
            &format!("/v1/clusters/{id}/documents?prefix="),
            Some(&b),
            Body::empty(),
        )
        .await;
    assert_error(&answer, 404, "not_found");
    let answer = api
        .call(
            Method::GET,
            &format!("/v1/clusters/{id}/disks"),
            Some(&b),
            Body::empty(),
        )
        .await;
    assert_error(&answer, 404, "not_found");

    // A's document is intact and alone.
    let get = api.call(Method::GET, &doc, Some(&a), Body::empty()).await;
    assert_eq!(get.status, StatusCode::OK);
    assert_eq!(get.bytes.as_ref(), b"a,1\nb,2\n");
    let names = api.document_names(&a, &id, "ledger/").await;
    assert_eq!(names, ["ledger/2026.csv"]);
}

#[tokio::test]
async fn another_organizations_notification_destinations_are_not_found_and_left_unchanged() {
    let api = Api::start().await;
    let (_, a) = api.organization("org-a").await;
    let (_, b) = api.organization("org-b").await;
    let created = api
        .call_json(
            Method::POST,
            "/v1/notification-destinations",
            Some(&a),
            json!({"url": "https://93.184.216.34/hook", "format": "slack"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.json);
    let id = created.json["destination"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut checked = 0;
    for (m, path) in ROUTES {
        if !path.contains("{destination_id}") {
            continue;
        }
        let answer = api
            .call(
                method(m),
                &path.replace("{destination_id}", &id),
                Some(&b),
                Body::empty(),
            )
            .await;
        assert_error(&answer, 404, "not_found");
        let nowhere = api
            .call(method(m), &concrete(path, ""), Some(&b), Body::empty())
            .await;
        assert_error(&nowhere, 404, "not_found");
        assert_eq!(
            answer.json["error"]["message"]
                .as_str()
                .map(|m| m.replace(&id, "ID")),
            nowhere.json["error"]["message"]
                .as_str()
                .map(|m| m.replace("nd-0000000000000000", "ID")),
            "{m} {path}"
        );
        checked += 1;
    }
    assert_eq!(checked, 2);
    let listed_b = api
        .call(
            Method::GET,
            "/v1/notification-destinations",
            Some(&b),
            Body::empty(),
        )
        .await;
    assert_eq!(listed_b.json, json!({"destinations": []}));
    let listed_a = api
        .call(
            Method::GET,
            "/v1/notification-destinations",
            Some(&a),
            Body::empty(),
        )
        .await;
    assert_eq!(listed_a.json["destinations"][0]["id"], id.as_str());
}
