//! The API's own cost: `GET /v1/clusters/{id}` through the router (token check, routing, JSON)
//! against the same facade calls made directly (`authenticate` + `cluster` + JSON), in the same
//! run, over a real control plane (SQLite) and the embedded KMS.
//!
//! `cargo bench -p keyward-api --bench api` prints the median and p99 of each and their ratio.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use keyward_api::embedded::Identities;
use keyward_api::{AdminToken, Limits};
use keyward_control::{ControlConfig, ControlPlane, Encryption, NewCluster};
use tower::ServiceExt;

const ROUNDS: usize = 5000;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let identities = Identities::generate();
    let (_kms, plane, router, token, cluster_id) = runtime.block_on(async {
        let config = keyward_kms::IdentityConfig::from_toml_str(&identities.to_toml()).unwrap();
        let kms =
            keyward_kms_server::DevServer::try_start_with(&dir.path().join("kms"), config).unwrap();
        let plane = ControlPlane::open(ControlConfig::embedded(
            dir.path().join("control"),
            kms.endpoint(),
            identities.operator.access_key_id.clone(),
            identities.operator.secret_access_key.as_str(),
        ))
        .await
        .unwrap();
        let (org, token) = plane.create_organization("bench").await.unwrap();
        let cluster = plane
            .create_cluster(
                &org.id,
                NewCluster {
                    name: "bench".into(),
                    region: None,
                    encryption: Encryption::External,
                },
            )
            .await
            .unwrap();
        let router = keyward_api::router(
            plane.clone(),
            AdminToken::generate().unwrap(),
            Limits::default(),
        );
        (kms, plane, router, token.expose().to_owned(), cluster.id)
    });

    let facade_call = || {
        runtime.block_on(async {
            let org = plane.authenticate(&token).await.unwrap();
            let cluster = plane.cluster(&org.id, &cluster_id).await.unwrap();
            serde_json::to_vec(&cluster).unwrap().len()
        })
    };
    let api_call = || {
        runtime.block_on(async {
            let request = Request::get(format!("/v1/clusters/{cluster_id}"))
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap();
            let response = router.clone().oneshot(request).await.unwrap();
            assert!(response.status().is_success());
            response
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .len()
        })
    };
    let (facade, api) = measure_both(facade_call, api_call);
    println!("show a cluster, {ROUNDS} rounds each (median, p99):");
    println!(
        "  facade (authenticate + cluster + JSON): {:?}, {:?}",
        facade.0, facade.1
    );
    println!(
        "  API (GET /v1/clusters/{{id}}):           {:?}, {:?}",
        api.0, api.1
    );
    println!(
        "  API / facade: {:.2}x at the median",
        api.0.as_secs_f64() / facade.0.as_secs_f64()
    );
}

/// Median and p99 of `ROUNDS` calls of each, interleaved so both see the same machine, after
/// 200 warm-up calls of each.
fn measure_both(
    mut a: impl FnMut() -> usize,
    mut b: impl FnMut() -> usize,
) -> ((Duration, Duration), (Duration, Duration)) {
    for _ in 0..200 {
        std::hint::black_box(a());
        std::hint::black_box(b());
    }
    let mut times_a = Vec::with_capacity(ROUNDS);
    let mut times_b = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        std::hint::black_box(a());
        times_a.push(t.elapsed());
        let t = Instant::now();
        std::hint::black_box(b());
        times_b.push(t.elapsed());
    }
    (stats(times_a), stats(times_b))
}

fn stats(mut times: Vec<Duration>) -> (Duration, Duration) {
    times.sort();
    (times[ROUNDS / 2], times[ROUNDS * 99 / 100])
}
