//! Property test over the whole request path: random bodies for every action never panic, every
//! refusal is one of AWS's error names, and a refused request changes nothing.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Map, Value};

use crate::{b64, root_caller, Fixture, ACCOUNT};

const ACTIONS: &[&str] = &[
    "CreateKey",
    "DescribeKey",
    "ListKeys",
    "EnableKey",
    "DisableKey",
    "ScheduleKeyDeletion",
    "CancelKeyDeletion",
    "CreateAlias",
    "UpdateAlias",
    "DeleteAlias",
    "ListAliases",
    "TagResource",
    "UntagResource",
    "ListResourceTags",
    "UpdateKeyDescription",
    "PutKeyPolicy",
    "GetKeyPolicy",
    "ListKeyPolicies",
    "Encrypt",
    "Decrypt",
    "ReEncrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "GenerateRandom",
    "EnableKeyRotation",
    "DisableKeyRotation",
    "GetKeyRotationStatus",
    "RotateKeyOnDemand",
    "ListKeyRotations",
    "CreateGrant",
    "ListGrants",
    "ListRetirableGrants",
    "RetireGrant",
    "RevokeGrant",
    "NoSuchAction",
];

const MEMBERS: &[&str] = &[
    "KeyId",
    "Plaintext",
    "CiphertextBlob",
    "EncryptionContext",
    "KeySpec",
    "NumberOfBytes",
    "GrantTokens",
    "Limit",
    "Marker",
    "AliasName",
    "TargetKeyId",
    "Tags",
    "TagKeys",
    "Description",
    "Policy",
    "PendingWindowInDays",
    "RotationPeriodInDays",
    "GranteePrincipal",
    "Operations",
    "Constraints",
    "GrantId",
    "GrantToken",
    "DryRun",
    "DestinationKeyId",
    "PolicyName",
];

const KNOWN_ERRORS: &[&str] = &[
    "NotFoundException",
    "DisabledException",
    "KMSInvalidStateException",
    "InvalidCiphertextException",
    "ValidationException",
    "SerializationException",
    "UnknownOperationException",
    "AccessDeniedException",
    "AlreadyExistsException",
    "LimitExceededException",
    "MalformedPolicyDocumentException",
    "InvalidKeyUsageException",
    "InvalidAliasNameException",
    "TagException",
    "IncorrectKeyException",
    "InvalidGrantTokenException",
    "InvalidArnException",
    "DryRunOperationException",
    "UnsupportedOperationException",
    "InvalidMarkerException",
];

fn value(key_id: String) -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!(key_id)),
        Just(json!("alias/fuzz")),
        Just(json!("AES_256")),
        ".{0,24}".prop_map(|s| json!(s)),
        (-5i64..5000).prop_map(|n| json!(n)),
        any::<bool>().prop_map(|b| json!(b)),
        Just(Value::Null),
        proptest::collection::vec(".{0,8}", 0..4).prop_map(|v| json!(v)),
        proptest::collection::btree_map("[a-z]{1,4}", ".{0,6}", 0..3).prop_map(|m| json!(m)),
        proptest::collection::vec(any::<u8>(), 0..80).prop_map(|b| json!(b64(&b))),
        Just(json!([{"TagKey": "k", "TagValue": "v"}])),
        Just(json!(["Decrypt"])),
        Just(json!(2.5)),
    ]
}

fn body(key_id: String) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => proptest::collection::vec(any::<u8>(), 0..120),
        5 => proptest::collection::vec((proptest::sample::select(MEMBERS), value(key_id)), 0..5).prop_map(|pairs| {
            let mut m = Map::new();
            for (k, v) in pairs {
                m.insert(k.to_string(), v);
            }
            Value::Object(m).to_string().into_bytes()
        }),
    ]
}

async fn snapshot(f: &Fixture, key_id: &str) -> Value {
    json!([
        f.call("DescribeKey", json!({"KeyId": key_id})).await.ok(),
        f.call("ListResourceTags", json!({"KeyId": key_id}))
            .await
            .ok(),
        f.call("ListAliases", json!({})).await.ok(),
        f.call("ListGrants", json!({"KeyId": key_id})).await.ok(),
        f.call("ListKeys", json!({})).await.ok(),
        f.call("GetKeyPolicy", json!({"KeyId": key_id})).await.ok(),
        f.call("ListKeyRotations", json!({"KeyId": key_id}))
            .await
            .ok(),
    ])
}

#[test]
fn random_requests_never_panic_and_refusals_change_nothing() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let f = Fixture::new();
    let (key_id, _) = rt.block_on(f.create_key());
    let mut runner = TestRunner::new(Config {
        cases: 200,
        failure_persistence: None,
        ..Config::default()
    });
    let before = std::cell::RefCell::new(rt.block_on(snapshot(&f, &key_id)));
    runner
        .run(
            &(proptest::sample::select(ACTIONS), body(key_id.clone())),
            |(action, body)| {
                rt.block_on(async {
                    let result = f
                        .engine
                        .call_kms(&root_caller(ACCOUNT), action, &body)
                        .await;
                    let after = snapshot(&f, &key_id).await;
                    match result {
                        Err(e) => {
                            prop_assert!(
                                KNOWN_ERRORS.contains(&e.code.as_str()),
                                "{action}: unexpected {}",
                                e.code
                            );
                            prop_assert_eq!(
                                &*before.borrow(),
                                &after,
                                "{} refused ({}) but changed state",
                                action,
                                e.code
                            );
                        }
                        Ok(_) => *before.borrow_mut() = after,
                    }
                    Ok(())
                })
            },
        )
        .unwrap();
}
