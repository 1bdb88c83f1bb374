use keyward_kms::ApiError;
use serde_json::json;

use crate::{b64, root_caller, Fixture, ACCOUNT};

async fn raw(f: &Fixture, action: &str, body: &[u8]) -> ApiError {
    f.engine
        .call_kms(&root_caller(ACCOUNT), action, body)
        .await
        .unwrap_err()
}

#[tokio::test]
async fn malformed_bodies_and_unknown_actions() {
    let f = Fixture::new();
    let (id, _) = f.create_key().await;
    let before = f.snapshot().await;
    assert_eq!(
        raw(&f, "CreateKey", b"{not json").await.code,
        "SerializationException"
    );
    assert_eq!(
        raw(&f, "CreateKey", b"[1,2]").await.code,
        "SerializationException"
    );
    assert_eq!(
        raw(&f, "DescribeKey", br#"{"KeyId": 12}"#).await.code,
        "SerializationException"
    );
    assert_eq!(
        raw(&f, "CreateKey", br#"{"Tags": {"TagKey": "x"}}"#)
            .await
            .code,
        "SerializationException"
    );
    assert_eq!(
        raw(
            &f,
            "ScheduleKeyDeletion",
            format!(r#"{{"KeyId": "{id}", "PendingWindowInDays": "7"}}"#).as_bytes()
        )
        .await
        .code,
        "SerializationException"
    );
    assert_eq!(
        raw(
            &f,
            "Encrypt",
            format!(r#"{{"KeyId": "{id}", "Plaintext": "%%%"}}"#).as_bytes()
        )
        .await
        .code,
        "SerializationException"
    );
    assert_eq!(
        raw(&f, "DestroyEverything", b"{}").await.code,
        "UnknownOperationException"
    );
    assert_eq!(
        raw(&f, "Sign", b"{}").await.code,
        "UnsupportedOperationException"
    );
    assert_eq!(f.snapshot().await, before);
}

#[tokio::test]
async fn validation_messages_in_aws_style() {
    let f = Fixture::new();
    let long = "k".repeat(2049);
    let e = f.err("DescribeKey", json!({"KeyId": long})).await;
    assert_eq!(e.code, "ValidationException");
    assert_eq!(
        e.message,
        format!("1 validation error detected: Value '{long}' at 'keyId' failed to satisfy constraint: Member must have length less than or equal to 2048")
    );
    let e = f.err("DescribeKey", json!({})).await;
    assert_eq!(
        e.message,
        "1 validation error detected: Value null at 'keyId' failed to satisfy constraint: Member must not be null"
    );
    let e = f.err("DescribeKey", json!({"KeyId": "not-a-key"})).await;
    assert_eq!(e.code, "NotFoundException");
    assert_eq!(e.message, "Invalid keyId 'not-a-key'");
    let missing = "0b3c9a7e-1111-4222-8333-444455556666";
    let e = f.err("DescribeKey", json!({"KeyId": missing})).await;
    assert_eq!(e.code, "NotFoundException");
    assert_eq!(
        e.message,
        format!("Key 'arn:aws:kms:us-east-1:{ACCOUNT}:key/{missing}' does not exist")
    );
    let e = f
        .err("DescribeKey", json!({"KeyId": "arn:aws:kms:us-east-1"}))
        .await;
    assert_eq!(e.code, "NotFoundException");
}

#[tokio::test]
async fn every_refused_request_changes_nothing() {
    let f = Fixture::new();
    let (id, _) = f.create_key().await;
    let (other, _) = f.create_key().await;
    f.ok(
        "CreateAlias",
        json!({"AliasName": "alias/keep", "TargetKeyId": id}),
    )
    .await;
    f.ok(
        "TagResource",
        json!({"KeyId": id, "Tags": [{"TagKey": "a", "TagValue": "1"}]}),
    )
    .await;
    let before = f.snapshot().await;
    let refused = [
        ("CreateKey", json!({"Policy": "{"})),
        (
            "CreateKey",
            json!({"Tags": [{"TagKey": "aws:no", "TagValue": "x"}]}),
        ),
        ("CreateKey", json!({"Description": "d".repeat(8193)})),
        (
            "ScheduleKeyDeletion",
            json!({"KeyId": id, "PendingWindowInDays": 3}),
        ),
        ("CancelKeyDeletion", json!({"KeyId": id})),
        (
            "CreateAlias",
            json!({"AliasName": "alias/keep", "TargetKeyId": other}),
        ),
        (
            "CreateAlias",
            json!({"AliasName": "alias/aws/x", "TargetKeyId": other}),
        ),
        (
            "UpdateAlias",
            json!({"AliasName": "alias/none", "TargetKeyId": other}),
        ),
        (
            "UpdateAlias",
            json!({"AliasName": "alias/keep", "TargetKeyId": "nope"}),
        ),
        ("DeleteAlias", json!({"AliasName": "alias/none"})),
        (
            "TagResource",
            json!({"KeyId": id, "Tags": [{"TagKey": "ok", "TagValue": "1"}, {"TagKey": "aws:x", "TagValue": "1"}]}),
        ),
        ("UntagResource", json!({"KeyId": id})),
        ("UpdateKeyDescription", json!({"KeyId": id})),
        ("PutKeyPolicy", json!({"KeyId": id, "Policy": "[]"})),
        (
            "PutKeyPolicy",
            json!({"KeyId": id, "PolicyName": "other", "Policy": "{}"}),
        ),
        (
            "EnableKeyRotation",
            json!({"KeyId": id, "RotationPeriodInDays": 89}),
        ),
        (
            "EnableKeyRotation",
            json!({"KeyId": id, "RotationPeriodInDays": 2561}),
        ),
        (
            "CreateGrant",
            json!({"KeyId": id, "GranteePrincipal": "nobody", "Operations": ["Decrypt"]}),
        ),
        (
            "CreateGrant",
            json!({"KeyId": id, "GranteePrincipal": "arn:aws:iam::444455556666:root", "Operations": ["Fly"]}),
        ),
        (
            "CreateGrant",
            json!({"KeyId": id, "GranteePrincipal": "arn:aws:iam::444455556666:root", "Operations": []}),
        ),
        (
            "RevokeGrant",
            json!({"KeyId": id, "GrantId": "0".repeat(64)}),
        ),
        ("RetireGrant", json!({"GrantToken": "bad token"})),
        ("Encrypt", json!({"KeyId": id, "Plaintext": b64(b"")})),
        ("DisableKey", json!({"KeyId": "alias/keep"})),
    ];
    for (action, body) in refused {
        let r = f.call(action, body.clone()).await;
        assert!(r.is_err(), "{action} {body} should be refused");
        assert_eq!(f.snapshot().await, before, "{action} {body} changed state");
    }
    // And after a reopen, still nothing changed.
    let mut f = f;
    f.reopen();
    assert_eq!(f.snapshot().await, before);
}

#[tokio::test]
async fn wrong_grant_tokens_are_refused() {
    let f = Fixture::new();
    let (id, _) = f.create_key().await;
    let e = f
        .err(
            "GenerateDataKey",
            json!({"KeyId": id, "KeySpec": "AES_256", "GrantTokens": ["garbage"]}),
        )
        .await;
    assert_eq!(e.code, "InvalidGrantTokenException");
    let e = f
        .err(
            "GenerateDataKey",
            json!({"KeyId": id, "KeySpec": "AES_256", "GrantTokens": vec!["x"; 11]}),
        )
        .await;
    assert_eq!(e.code, "ValidationException");
}
