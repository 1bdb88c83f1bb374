//! CloudTrail LookupEvents over the wire: every call, failed ones included, with the request id the
//! client was given.

use aws_sdk_kms::operation::RequestId;
use aws_sdk_kms::primitives::Blob;

use crate::support::start;

#[tokio::test]
async fn lookup_events_shows_calls_with_their_request_ids_including_failures() {
    let h = start().await;
    let created = h.kms.create_key().send().await.unwrap();
    let create_request_id = created.request_id().expect("x-amzn-RequestId").to_owned();
    let key = created.key_metadata().unwrap().clone();
    h.kms
        .disable_key()
        .key_id(key.key_id())
        .send()
        .await
        .unwrap();
    let failed = h
        .kms
        .encrypt()
        .key_id(key.key_id())
        .plaintext(Blob::new(b"secret text".to_vec()))
        .send()
        .await;
    let failed = failed.expect_err("disabled key");
    let failed_request_id = failed
        .request_id()
        .expect("request id on errors too")
        .to_owned();

    let records = h.all_events().await;
    let by_id = |id: &str| records.iter().find(|r| r["requestID"] == id).cloned();
    let create = by_id(&create_request_id).expect("CreateKey in the trail");
    assert_eq!(create["eventName"], "CreateKey");
    assert_eq!(create["eventSource"], "kms.amazonaws.com");
    assert_eq!(create["awsRegion"], "us-east-1");
    assert_eq!(create["recipientAccountId"], h.server.account_id());
    assert_eq!(create["userIdentity"]["type"], "Root");
    assert_eq!(
        create["userIdentity"]["accessKeyId"],
        h.server.access_key_id()
    );
    assert_eq!(create["sourceIPAddress"], "127.0.0.1");
    assert!(create["userAgent"]
        .as_str()
        .unwrap()
        .contains("aws-sdk-rust"));

    let encrypt = by_id(&failed_request_id).expect("the failed Encrypt in the trail");
    assert_eq!(encrypt["eventName"], "Encrypt");
    assert_eq!(encrypt["errorCode"], "DisabledException");
    assert!(encrypt["errorMessage"]
        .as_str()
        .unwrap()
        .contains("is disabled"));
    assert!(
        !encrypt.to_string().contains("c2VjcmV0IHRleHQ"),
        "plaintext (base64) in the trail"
    );

    // Attribute filter and paging.
    let page = h
        .lookup_events(serde_json::json!({
            "LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": "Encrypt"}],
            "MaxResults": 1
        }))
        .await;
    let events = page["Events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["EventName"], "Encrypt");
    assert_eq!(events[0]["EventSource"], "kms.amazonaws.com");
    let all = h.all_events().await;
    assert!(all.len() >= 3);
    let mut ids: Vec<_> = all
        .iter()
        .map(|r| r["eventID"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), all.len(), "paging repeats no event");
}
