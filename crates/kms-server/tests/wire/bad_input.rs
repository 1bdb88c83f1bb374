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

#[tokio::test]
async fn admin_routes_answer_only_in_dev_mode() {
    let h = start().await;
    assert_eq!(h.kms_raw("CreateKey", "{}").await.status, 200);
    let mut client = h.raw().await;
    let reset = client
        .send("POST", "/_keyward/reset", &[], b"")
        .await
        .unwrap();
    assert_eq!(reset.status, 200);
    assert!(reset.header("x-amzn-requestid").is_some());
    assert_eq!(h.key_count().await, 0, "reset clears the keys");
    let bad = client
        .send("POST", "/_keyward/clock", &[], b"{\"advance_seconds\": -1}")
        .await
        .unwrap();
    assert_eq!(bad.status, 400);
    let get = client
        .send("GET", "/_keyward/reset", &[], b"")
        .await
        .unwrap();
    assert_eq!(get.status, 405);
    // The credentials survive a reset.
    assert_eq!(h.kms_raw("ListKeys", "{}").await.status, 200);
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn admin_routes_are_404_outside_dev_mode() {
    let dir = tempfile::tempdir().unwrap();
    let engine = keyward_kms::Engine::open(keyward_kms::EngineConfig {
        data_dir: dir.path().join("kms"),
        root_key: keyward_kms::RootKey::from_hex(&"ab".repeat(32)).unwrap(),
        identities: keyward_kms::IdentityConfig::empty(),
        dev: false,
    })
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(keyward_kms_server::serve(listener, engine, async {
        let _ = stopped.await;
    }));
    let mut client = crate::raw::RawClient::connect(&endpoint).await;
    for path in ["/_keyward/reset", "/_keyward/clock"] {
        let answer = client
            .send("POST", path, &[], b"{\"advance_seconds\": 1}")
            .await
            .unwrap();
        assert_eq!(answer.status, 404, "{path}");
    }
    let unsigned = client
        .send(
            "POST",
            "/",
            &[("x-amz-target".into(), "TrentService.ListKeys".into())],
            b"{}",
        )
        .await
        .unwrap();
    assert_eq!(
        (unsigned.status, unsigned.error_type().as_str()),
        (400, "MissingAuthenticationTokenException")
    );
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
