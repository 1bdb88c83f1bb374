//! Many keep-alive connections at once, each with several requests: every answer is right and every
//! request id is distinct.

use std::collections::HashSet;

use crate::raw::signed_headers;
use crate::support::start;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_requests_over_concurrent_keep_alive_connections() {
    let h = start().await;
    let key = h.kms_raw("CreateKey", "{}").await.json()["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let mut client = h.raw().await;
        let creds = h.creds();
        let body = format!(r#"{{"KeyId":"{key}","NumberOfBytes":32}}"#);
        tasks.push(tokio::spawn(async move {
            let host = client.host().to_owned();
            let mut ids = Vec::new();
            for _ in 0..5 {
                let headers = signed_headers(
                    &creds,
                    &host,
                    "kms",
                    "TrentService.GenerateDataKey",
                    body.as_bytes(),
                    time::OffsetDateTime::now_utc(),
                );
                let answer = client
                    .send("POST", "/", &headers, body.as_bytes())
                    .await
                    .expect("answer on the same connection");
                assert_eq!(
                    answer.status,
                    200,
                    "{}",
                    String::from_utf8_lossy(&answer.body)
                );
                assert!(answer.json()["CiphertextBlob"].is_string());
                ids.push(answer.header("x-amzn-requestid").unwrap().to_owned());
            }
            ids
        }));
    }
    let mut all = HashSet::new();
    for task in tasks {
        for id in task.await.unwrap() {
            assert!(all.insert(id), "request id repeated");
        }
    }
    assert_eq!(all.len(), 500);
}
