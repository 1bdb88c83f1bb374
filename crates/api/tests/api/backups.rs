//! Backups outlive their cluster: after the deletion, `GET /v1/backups` lists them for the
//! organization, which can restore one into a new cluster or delete it; another organization is
//! told `not_found` on each, exactly as for a backup that does not exist, and changes nothing.

use axum::body::Body;
use axum::http::{Method, StatusCode};

use crate::{assert_error, Api};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_clusters_backups_are_listed_restored_and_deleted_by_its_organization_only() {
    let api = Api::start().await;
    let (_, a) = api.organization("org-a").await;
    let (_, b) = api.organization("org-b").await;
    let id = api.ready_cluster(&a, "a-prod").await;
    let made = api
        .call(
            Method::POST,
            &format!("/v1/clusters/{id}/backups"),
            Some(&a),
            Body::empty(),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.json);
    let backup = made.json["id"].as_str().unwrap().to_owned();
    let deleted = api
        .call(
            Method::DELETE,
            &format!("/v1/clusters/{id}"),
            Some(&a),
            Body::empty(),
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.json);

    let listed = api
        .call(Method::GET, "/v1/backups", Some(&a), Body::empty())
        .await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.json);
    let kept = listed.json["backups"].as_array().unwrap();
    assert_eq!(kept.len(), 1, "{}", listed.json);
    assert_eq!(kept[0]["id"], backup.as_str());
    assert_eq!(kept[0]["cluster_id"], id.as_str());
    assert_eq!(kept[0]["cluster_name"], "a-prod");
    let retained_for = kept[0]["retained_until_ms"].as_i64().unwrap()
        - kept[0]["cluster_deleted_at_ms"].as_i64().unwrap();
    assert_eq!(retained_for, 30 * 86_400_000, "the default retention");

    // Organization B sees none of it, and cannot restore or delete it.
    let other = api
        .call(Method::GET, "/v1/backups", Some(&b), Body::empty())
        .await;
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(other.json["backups"], serde_json::json!([]));
    let nowhere = "bk-1764400000000-0a1b2c3d";
    for (method, path) in [
        (Method::POST, "/v1/backups/{}/restore"),
        (Method::DELETE, "/v1/backups/{}"),
    ] {
        let answer = api
            .call(
                method.clone(),
                &path.replace("{}", &backup),
                Some(&b),
                Body::empty(),
            )
            .await;
        assert_error(&answer, 404, "not_found");
        let missing = api
            .call(
                method,
                &path.replace("{}", nowhere),
                Some(&b),
                Body::empty(),
            )
            .await;
        assert_error(&missing, 404, "not_found");
        assert_eq!(
            answer.json["error"]["message"]
                .as_str()
                .map(|m| m.replace(&backup, "ID")),
            missing.json["error"]["message"]
                .as_str()
                .map(|m| m.replace(nowhere, "ID")),
        );
    }
    let unchanged = api
        .call(Method::GET, "/v1/backups", Some(&a), Body::empty())
        .await;
    assert_eq!(unchanged.json, listed.json);

    // A restores it into a new cluster (external: it waits for its key), then deletes it.
    let restored = api
        .call(
            Method::POST,
            &format!("/v1/backups/{backup}/restore"),
            Some(&a),
            Body::empty(),
        )
        .await;
    assert_eq!(restored.status, StatusCode::CREATED, "{}", restored.json);
    assert_eq!(restored.json["state"], "awaiting-key");
    assert_eq!(restored.json["encryption"], "external");
    assert_ne!(restored.json["id"], id.as_str());
    let gone = api
        .call(
            Method::DELETE,
            &format!("/v1/backups/{backup}"),
            Some(&a),
            Body::empty(),
        )
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT, "{}", gone.json);
    let empty = api
        .call(Method::GET, "/v1/backups", Some(&a), Body::empty())
        .await;
    assert_eq!(empty.json["backups"], serde_json::json!([]));
    let again = api
        .call(
            Method::DELETE,
            &format!("/v1/backups/{backup}"),
            Some(&a),
            Body::empty(),
        )
        .await;
    assert_error(&again, 404, "not_found");
}
