//! Per-organization concurrency: past `max_data_requests_per_org` data requests in flight an
//! organization is answered `429 too_many_requests` with `Retry-After`, nothing of the refused
//! requests is written, and another organization is neither refused nor held up meanwhile.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use futures::StreamExt;
use http_body_util::BodyExt;
use keyward_api::Limits;
use tower::ServiceExt;

use crate::{assert_error, Api};

const CAP: usize = 4;
const UPLOADS: usize = 32;

fn content(i: usize) -> Vec<u8> {
    format!("document {i}: ").repeat(1000).into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_cap_uploads_are_429_with_retry_after_and_write_nothing_while_another_org_goes_on()
{
    let api = Api::start_with(Limits {
        max_data_requests_per_org: CAP,
        ..Limits::default()
    })
    .await;
    let (_, a) = api.organization("org-a").await;
    let (_, b) = api.organization("org-b").await;
    let a_cluster = api.ready_cluster(&a, "a-prod").await;
    let b_cluster = api.ready_cluster(&b, "b-prod").await;

    // 32 uploads at once whose bodies send half, then wait for `release`: the admitted ones
    // hold their permits until then.
    let (release, released) = tokio::sync::watch::channel(false);
    let (done, mut answers) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..UPLOADS {
        let data = content(i);
        let (head, tail) = data.split_at(data.len() / 2);
        let (head, tail) = (
            bytes::Bytes::copy_from_slice(head),
            bytes::Bytes::copy_from_slice(tail),
        );
        let mut released = released.clone();
        let body = futures::stream::iter([Ok::<_, Infallible>(head)]).chain(futures::stream::once(
            async move {
                released.wait_for(|r| *r).await.unwrap();
                Ok::<_, Infallible>(tail)
            },
        ));
        let request = Request::builder()
            .method(Method::PUT)
            .uri(format!("/v1/clusters/{a_cluster}/documents/burst/{i}"))
            .header("authorization", format!("Bearer {a}"))
            .body(Body::from_stream(body))
            .unwrap();
        let router = api.router.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let response = router.oneshot(request).await.unwrap();
            let status = response.status();
            let retry_after = response.headers().get("retry-after").cloned();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            done.send((i, status, retry_after, json)).unwrap();
        });
    }
    drop(done);

    // All but CAP are refused at once, while the admitted ones still wait on their bodies.
    let mut refused = Vec::new();
    for _ in 0..UPLOADS - CAP {
        let (i, status, retry_after, json) =
            tokio::time::timeout(Duration::from_secs(30), answers.recv())
                .await
                .expect("the refusals come at once")
                .unwrap();
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{json}");
        assert_eq!(json["error"]["code"], "too_many_requests", "{json}");
        assert_eq!(json["error"]["limit"]["max_data_requests_per_org"], CAP);
        assert!(json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_data_requests_per_org"));
        assert_eq!(retry_after.expect("Retry-After").to_str().unwrap(), "1");
        refused.push(i);
    }
    // A's other data routes are refused too while the cap is taken.
    let list = api
        .call(
            Method::GET,
            &format!("/v1/clusters/{a_cluster}/documents"),
            Some(&a),
            Body::empty(),
        )
        .await;
    assert_error(&list, 429, "too_many_requests");

    // Organization B is neither refused nor held up: a put and a get answer at once.
    let started = Instant::now();
    for round in 0..3 {
        let path = format!("/v1/clusters/{b_cluster}/documents/b/{round}");
        let put = api.call(Method::PUT, &path, Some(&b), "b's ledger").await;
        assert_eq!(put.status, StatusCode::OK, "{}", put.json);
        let get = api.call(Method::GET, &path, Some(&b), Body::empty()).await;
        assert_eq!(get.status, StatusCode::OK, "{}", get.json);
        assert_eq!(get.bytes.as_ref(), b"b's ledger");
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "B took {:?} while A was at its cap",
        started.elapsed()
    );
    assert!(
        !*release.borrow(),
        "A's admitted uploads were still in flight"
    );

    release.send(true).unwrap();
    let mut admitted = Vec::new();
    while let Some((i, status, _, json)) = answers.recv().await {
        assert_eq!(status, StatusCode::OK, "{json}");
        admitted.push(i);
    }
    assert_eq!(admitted.len(), CAP);

    // Every admitted document reads back whole; none of the refused ones exists.
    for i in &admitted {
        let get = api
            .call(
                Method::GET,
                &format!("/v1/clusters/{a_cluster}/documents/burst/{i}"),
                Some(&a),
                Body::empty(),
            )
            .await;
        assert_eq!(get.status, StatusCode::OK, "{}", get.json);
        assert_eq!(get.bytes.as_ref(), content(*i).as_slice(), "document {i}");
    }
    for i in &refused {
        let get = api
            .call(
                Method::GET,
                &format!("/v1/clusters/{a_cluster}/documents/burst/{i}"),
                Some(&a),
                Body::empty(),
            )
            .await;
        assert_error(&get, 404, "not_found");
    }
    let list = api
        .call(
            Method::GET,
            &format!("/v1/clusters/{a_cluster}/documents?prefix=burst/"),
            Some(&a),
            Body::empty(),
        )
        .await;
    assert_eq!(
        list.json["documents"].as_array().unwrap().len(),
        CAP,
        "{}",
        list.json
    );
}
