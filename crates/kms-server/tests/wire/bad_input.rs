//! Bad input through raw HTTP: AWS's error for each, and no change to the keys.

use crate::raw::signed_headers;
use crate::support::start;

#[tokio::test]
async fn malformed_unknown_oversize_and_mistyped_requests_change_nothing() {
    let h = start().await;
    let key = h.kms_raw("CreateKey", r#"{"Description":"kept"}"#).await;
    assert_eq!(key.status, 200);
    let key_id = key.json()["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = h.kms_raw("ListKeys", "{}").await.json();

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "CreateKey",
            r#"{"Description":"#.into(),
            "SerializationException",
        ),
        (
            "CreateKey",
            "not json at all".into(),
            "SerializationException",
        ),
        (
            "CreateKey",
            r#"{"Description": 5}"#.into(),
            "SerializationException",
        ),
        (
            "CreateKey",
            r#"{"Tags": {"TagKey": "x"}}"#.into(),
            "SerializationException",
        ),
        (
            "GenerateRandom",
            r#"{"NumberOfBytes": "ten"}"#.into(),
            "SerializationException",
        ),
        (
            "GenerateRandom",
            r#"{"NumberOfBytes": 0}"#.into(),
            "ValidationException",
        ),
        (
            "CreateKey",
            r#"{"KeySpec": "RSA_1"}"#.into(),
            "ValidationException",
        ),
        (
            "ScheduleKeyDeletion",
            format!(r#"{{"KeyId": "{key_id}", "PendingWindowInDays": 5}}"#),
            "ValidationException",
        ),
        (
            "DisableKey",
            r#"{"KeyId": "not-a-key"}"#.into(),
            "NotFoundException",
        ),
        (
            "DisableKey",
            r#"{"KeyId": "alias/missing"}"#.into(),
            "NotFoundException",
        ),
        (
            "DisableKey",
            r#"{"KeyId": "11111111-2222-3333-4444-555555555555"}"#.into(),
            "NotFoundException",
        ),
        (
            "DisableKey",
            r#"{"KeyId": ""}"#.into(),
            "ValidationException",
        ),
        ("DisableKey", "{}".into(), "ValidationException"),
        (
            "Encrypt",
            serde_json::json!({"KeyId": key_id, "Plaintext": base64_of(&[0u8; 4097])}).to_string(),
            "ValidationException",
        ),
        (
            "Decrypt",
            r#"{"CiphertextBlob": "AAAA"}"#.into(),
            "InvalidCiphertextException",
        ),
        ("NoSuchAction", "{}".into(), "UnknownOperationException"),
    ];
    for (action, body, code) in &cases {
        let answer = h.kms_raw(action, body).await;
        assert_eq!(
            answer.status,
            400,
            "{action} {body}: {}",
            String::from_utf8_lossy(&answer.body)
        );
        assert_eq!(&answer.error_type(), code, "{action} {body}");
        assert!(answer.header("x-amzn-requestid").is_some());
    }

    // No X-Amz-Target at all, or another service's.
    let mut client = h.raw().await;
    let host = client.host().to_owned();
    for target in ["", "DynamoDB_20120810.ListTables"] {
        let mut headers = signed_headers(
            &h.creds(),
            &host,
            "kms",
            target,
            b"{}",
            time::OffsetDateTime::now_utc(),
        );
        if target.is_empty() {
            headers.retain(|(n, _)| n != "x-amz-target");
        }
        let answer = client.send("POST", "/", &headers, b"{}").await.unwrap();
        assert_eq!(
            (answer.status, answer.error_type().as_str()),
            (400, "UnknownOperationException")
        );
    }

    // Oversize: refused from the declared Content-Length before the body is read.
    let mut headers = signed_headers(
        &h.creds(),
        &host,
        "kms",
        "TrentService.CreateKey",
        b"{}",
        time::OffsetDateTime::now_utc(),
    );
    headers.push((
        "content-length".into(),
        (keyward_kms_server::MAX_BODY_BYTES + 1).to_string(),
    ));
    let answer = h
        .raw()
        .await
        .send("POST", "/", &headers, b"")
        .await
        .unwrap();
    assert_eq!(answer.status, 413);
    assert_eq!(answer.error_type(), "RequestEntityTooLargeException");
    // A body just under the limit is read and served.
    let padded = format!("{{{}}}", " ".repeat(keyward_kms_server::MAX_BODY_BYTES - 2));
    let answer = h.kms_raw("CreateKey", &padded).await;
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let extra_key = answer.json()["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_owned();

    let mut after = h.kms_raw("ListKeys", "{}").await.json();
    after["Keys"]
        .as_array_mut()
        .unwrap()
        .retain(|k| k["KeyId"] != extra_key.as_str());
    assert_eq!(before, after, "bad requests changed the key list");
    let described = h
        .kms_raw("DescribeKey", &format!(r#"{{"KeyId":"{key_id}"}}"#))
        .await
        .json();
    assert_eq!(described["KeyMetadata"]["KeyState"], "Enabled");
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
