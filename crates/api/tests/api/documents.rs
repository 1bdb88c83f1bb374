//! Documents stream through the API: an upload over `max_document_bytes` is `413` and stores
//! nothing (no object, no staging file, the previous version intact), whether its
//! `Content-Length` says so or the body only turns out longer; a download stops sending
//! plaintext once the cluster's key is seen inaccessible; and the `423` body and the health
//! message carry the KMS's error code and message, never a library's `Debug` text.

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use keyward_api::Limits;
use tower::ServiceExt;

use crate::{assert_error, Api};

const MIB: usize = 1 << 20;

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_type().unwrap().is_dir() {
                pending.push(entry.path());
            } else {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    out
}

/// A body of `chunks` chunks of 1 MiB and no declared length.
fn unsized_body(chunks: usize, fill: u8) -> Body {
    Body::from_stream(futures::stream::iter(
        (0..chunks).map(move |_| Ok::<_, std::io::Error>(vec![fill; MIB])),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_over_the_limit_is_413_and_nothing_of_it_is_stored() {
    // Over the store's part size (5 MiB), so a too-long body has started a staged upload
    // before it is cut.
    let limit = 12 * MIB;
    let api = Api::start_with(Limits {
        max_document_bytes: limit as u64,
        ..Limits::default()
    })
    .await;
    let (_, token) = api.organization("acme").await;
    let id = api.ready_cluster(&token, "prod").await;
    let path = |name: &str| format!("/v1/clusters/{id}/documents/{name}");
    let documents_dir = api
        .data_dir()
        .join("control/objects")
        .join(&id)
        .join("documents");

    // A first version, within the limit (exactly at it).
    let v1 = vec![0x11u8; limit];
    let put = api
        .call(Method::PUT, &path("big.bin"), Some(&token), v1.clone())
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.json);
    let files_before = files_under(&documents_dir);

    // A declared length over the limit: refused before the body is read.
    let declared = api
        .call(
            Method::PUT,
            &path("big.bin"),
            Some(&token),
            vec![0x22u8; limit + 1],
        )
        .await;
    assert_error(&declared, 413, "payload_too_large");
    assert!(
        declared.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&limit.to_string()),
        "{}",
        declared.json
    );
    // No declared length, 16 MiB sent: cut at the limit, the staged upload removed.
    for name in ["big.bin", "new.bin"] {
        let streamed = api
            .call(
                Method::PUT,
                &path(name),
                Some(&token),
                unsized_body(16, 0x33),
            )
            .await;
        assert_error(&streamed, 413, "payload_too_large");
    }

    // Nothing changed: the same files on disk (no staging file left), the listing shows the
    // first version only, which reads back whole; the new name does not exist.
    assert_eq!(files_under(&documents_dir), files_before);
    assert!(
        files_before
            .iter()
            .all(|f| !f.to_string_lossy().contains('#')),
        "{files_before:?}"
    );
    let names = api.document_names(&token, &id, "").await;
    assert_eq!(names, ["big.bin"]);
    let get = api
        .call(Method::GET, &path("big.bin"), Some(&token), Body::empty())
        .await;
    assert_eq!(get.status, StatusCode::OK);
    assert!(
        get.bytes.as_ref() == v1.as_slice(),
        "the first version changed"
    );
    let missing = api
        .call(Method::GET, &path("new.bin"), Some(&token), Body::empty())
        .await;
    assert_error(&missing, 404, "not_found");
}

/// The cluster's key ARN (from the cluster's details).
async fn key_of(api: &Api, token: &str, id: &str) -> String {
    api.cluster_details(token, id).await["key_arn"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_sends_no_more_plaintext_once_the_key_is_seen_inaccessible() {
    let api = Api::start().await;
    let (_, token) = api.organization("acme").await;
    let id = api.ready_cluster(&token, "prod").await;
    let path = format!("/v1/clusters/{id}/documents/large.bin");
    let size = 16 * MIB;
    let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let put = api
        .call(Method::PUT, &path, Some(&token), body.clone())
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.json);

    // A whole download first: the plaintext, in several chunks.
    let whole = api
        .call(Method::GET, &path, Some(&token), Body::empty())
        .await;
    assert!(whole.bytes.as_ref() == body.as_slice());

    // A download under way: the first chunk is read, then the key is disabled and the cluster
    // checked; the rest of the body is refused.
    let request = Request::builder()
        .method(Method::GET)
        .uri(&path)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let response = api.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut download = response.into_body();
    let first = download
        .frame()
        .await
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap();
    assert!(!first.is_empty() && first.len() < size);
    assert_eq!(first.as_ref(), &body[..first.len()]);

    let kms = api.customer_kms().await;
    kms.disable_key()
        .key_id(key_of(&api, &token, &id).await)
        .send()
        .await
        .unwrap();
    let check = api
        .call(
            Method::POST,
            &format!("/v1/clusters/{id}/health-check"),
            Some(&token),
            Body::empty(),
        )
        .await;
    assert_eq!(check.json["status"], "key-inaccessible", "{}", check.json);

    let mut received = first.len();
    let ended = loop {
        match download.frame().await {
            Some(Ok(frame)) => received += frame.into_data().map(|d| d.len()).unwrap_or(0),
            Some(Err(error)) => break Some(error),
            None => break None,
        }
    };
    let error = ended.expect("the body must end in an error, never as if complete");
    assert!(
        error.to_string().contains("DisabledException") || error.to_string().contains("disabled"),
        "{error}"
    );
    assert_eq!(
        received,
        first.len(),
        "plaintext was sent after the key was seen inaccessible"
    );

    // New downloads are refused with 423 before anything is sent.
    let refused = api
        .call(Method::GET, &path, Some(&token), Body::empty())
        .await;
    assert_error(&refused, 423, "key_inaccessible");
}

/// Text a person reads must not carry a library's `Debug` output.
#[track_caller]
fn assert_no_debug_text(what: &str, text: &str) {
    for debug in [
        "{",
        "}",
        "Refused",
        "KmsFailure",
        "Some(",
        "None",
        "\\\"",
        "code:",
        "message:",
    ] {
        assert!(
            !text.contains(debug),
            "{what} carries Debug text ({debug:?}): {text}"
        );
    }
}

/// The 423 answer and the health message name what KMS said — its exception name and its own
/// message — as text: for a key policy that no longer lets the role in, `AccessDeniedException`
/// with KMS's sentence; for a disabled key, the state and the command that fixes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_423_body_and_the_health_message_carry_the_kms_code_and_message_not_debug_text() {
    let api = Api::start().await;
    let (_, token) = api.organization("acme").await;
    let kms = api.customer_kms().await;
    let health_check = |id: String| {
        let api = &api;
        let token = token.clone();
        async move {
            let health = api
                .call(
                    Method::POST,
                    &format!("/v1/clusters/{id}/health-check"),
                    Some(&token),
                    Body::empty(),
                )
                .await;
            assert_eq!(health.status, StatusCode::OK, "{}", health.json);
            assert_eq!(health.json["status"], "key-inaccessible", "{}", health.json);
            health.json
        }
    };

    // The role taken out of the key policy: KMS refuses it with AccessDeniedException.
    let denied = api.ready_cluster(&token, "denied").await;
    let path = format!("/v1/clusters/{denied}/documents/a.txt");
    let put = api.call(Method::PUT, &path, Some(&token), "hello").await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.json);
    let key_arn = key_of(&api, &token, &denied).await;
    let root_only = serde_json::json!({"Version": "2012-10-17", "Statement": [{
        "Sid": "root", "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::444455556666:root"},
        "Action": "kms:*", "Resource": "*"
    }]});
    kms.put_key_policy()
        .key_id(&key_arn)
        .policy_name("default")
        .policy(root_only.to_string())
        .send()
        .await
        .unwrap();
    let health = health_check(denied.clone()).await;
    assert_eq!(health["reason"], "access-denied", "{health}");
    let message = health["message"].as_str().unwrap();
    assert!(
        message.contains("KMS said: AccessDeniedException: ") && message.contains("not authorized"),
        "the KMS's code and own message: {message}"
    );
    assert_no_debug_text("the health message", message);
    let refused = api
        .call(Method::GET, &path, Some(&token), Body::empty())
        .await;
    assert_error(&refused, 423, "key_inaccessible");
    assert_eq!(
        refused.json["error"]["reason"], "access-denied",
        "{}",
        refused.json
    );
    let message = refused.json["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("AccessDeniedException: "),
        "{}",
        refused.json
    );
    assert_no_debug_text("the 423 message", message);
    let cluster = api.cluster_details(&token, &denied).await;
    let message = cluster["health"]["message"].as_str().unwrap();
    assert!(message.contains("AccessDeniedException"), "{cluster}");
    assert_no_debug_text("the cluster's health message", message);

    // A disabled key: its state and the fix, as text.
    let disabled = api.ready_cluster(&token, "disabled").await;
    let key_arn = key_of(&api, &token, &disabled).await;
    kms.disable_key().key_id(&key_arn).send().await.unwrap();
    let health = health_check(disabled.clone()).await;
    assert_eq!(health["reason"], "disabled", "{health}");
    let message = health["message"].as_str().unwrap();
    assert!(
        message.contains("is disabled") && message.contains("aws kms enable-key"),
        "{message}"
    );
    assert_no_debug_text("the health message", message);
    let refused = api
        .call(
            Method::PUT,
            &format!("/v1/clusters/{disabled}/documents/b.txt"),
            Some(&token),
            "x",
        )
        .await;
    assert_error(&refused, 423, "key_inaccessible");
    assert_no_debug_text(
        "the 423 message",
        refused.json["error"]["message"].as_str().unwrap(),
    );
}

/// A download holds its organization's data-request permit until its body is done: with the cap
/// taken by downloads still sending, another data request is 429; once one body is dropped, the
/// next is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_counts_against_the_cap_until_its_body_is_done() {
    let api = Api::start_with(Limits {
        max_data_requests_per_org: 2,
        ..Limits::default()
    })
    .await;
    let (_, token) = api.organization("acme").await;
    let id = api.ready_cluster(&token, "prod").await;
    let path = format!("/v1/clusters/{id}/documents/large.bin");
    let put = api
        .call(Method::PUT, &path, Some(&token), vec![5u8; 4 * MIB])
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.json);

    let mut downloads = Vec::new();
    for _ in 0..2 {
        let request = Request::builder()
            .uri(&path)
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        let response = api.router.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let mut body = response.into_body();
        body.frame().await.unwrap().unwrap();
        downloads.push(body);
    }
    let refused = api
        .call(Method::GET, &path, Some(&token), Body::empty())
        .await;
    assert_error(&refused, 429, "too_many_requests");

    drop(downloads.pop());
    let served = api
        .call(Method::GET, &path, Some(&token), Body::empty())
        .await;
    assert_eq!(served.status, StatusCode::OK, "{}", served.json);
    assert_eq!(served.bytes.len(), 4 * MIB);
}
