//! `GET /v1/replicas`: the answering replica, the cluster leases it holds and every replica.

use axum::body::Body;
use axum::http::{Method, StatusCode};

use crate::{assert_error, Api};

#[tokio::test]
async fn the_admin_sees_the_replica_its_leases_and_an_organization_does_not() {
    let api = Api::start().await;
    let (_, token) = api.organization("acme").await;
    let cluster_id = api.ready_cluster(&token, "prod").await;
    let admin = api.admin_token.clone();
    let mut answer = api
        .call(Method::GET, "/v1/replicas", Some(&admin), Body::empty())
        .await;
    // The first lease pass may still be running: the lease shows once it is taken.
    for _ in 0..100 {
        if answer.json["leases"]
            .as_array()
            .is_some_and(|l| !l.is_empty())
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        answer = api
            .call(Method::GET, "/v1/replicas", Some(&admin), Body::empty())
            .await;
    }
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json["replica"], "local");
    let leases = answer.json["leases"].as_array().unwrap();
    assert_eq!(leases.len(), 1, "{}", answer.json);
    assert_eq!(leases[0]["cluster_id"], cluster_id.as_str());
    assert!(leases[0]["token"].as_i64().unwrap() >= 1);
    let replicas = answer.json["replicas"].as_array().unwrap();
    assert_eq!(replicas.len(), 1);
    assert_eq!(replicas[0]["id"], "local");
    assert_eq!(replicas[0]["live"], true);
    assert_eq!(replicas[0]["leases"], 1);
    // The cluster's disks are on this replica's node, and say so.
    let disks = api
        .call(
            Method::GET,
            &format!("/v1/clusters/{cluster_id}/disks"),
            Some(&token),
            Body::empty(),
        )
        .await;
    let disks = disks.json["disks"].as_array().unwrap();
    assert!(!disks.is_empty());
    assert!(disks.iter().all(|d| d["node"] == "local"), "{disks:?}");
    // An organization's token names no other organization's clusters: refused.
    let refused = api
        .call(Method::GET, "/v1/replicas", Some(&token), Body::empty())
        .await;
    assert_error(&refused, 401, "unauthenticated");
}
