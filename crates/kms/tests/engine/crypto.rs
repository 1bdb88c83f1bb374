use serde_json::json;

use crate::{b64, unb64, Fixture};

#[tokio::test]
async fn encrypt_decrypt_round_trip_with_context() {
    let f = Fixture::new();
    let (id, arn) = f.create_key().await;
    let ctx = json!({"cluster": "c-1", "class": "documents"});
    let enc = f
        .ok(
            "Encrypt",
            json!({"KeyId": id, "Plaintext": b64(b"attack at dawn"), "EncryptionContext": ctx}),
        )
        .await;
    assert_eq!(enc["KeyId"], arn);
    assert_eq!(enc["EncryptionAlgorithm"], "SYMMETRIC_DEFAULT");
    let blob = enc["CiphertextBlob"].clone();
    // KeyId is optional on Decrypt.
    let dec = f
        .ok(
            "Decrypt",
            json!({"CiphertextBlob": blob, "EncryptionContext": ctx}),
        )
        .await;
    assert_eq!(unb64(&dec["Plaintext"]), b"attack at dawn");
    assert_eq!(dec["KeyId"], arn);
    // A different or missing context fails as AWS does.
    let other = json!({"cluster": "c-2", "class": "documents"});
    let e = f
        .err(
            "Decrypt",
            json!({"CiphertextBlob": blob, "EncryptionContext": other}),
        )
        .await;
    assert_eq!(e.code, "InvalidCiphertextException");
    let e = f.err("Decrypt", json!({"CiphertextBlob": blob})).await;
    assert_eq!(e.code, "InvalidCiphertextException");
}

#[tokio::test]
async fn decrypt_with_the_wrong_key_id_is_incorrect_key() {
    let f = Fixture::new();
    let (a, _) = f.create_key().await;
    let (b, _) = f.create_key().await;
    let enc = f
        .ok("Encrypt", json!({"KeyId": a, "Plaintext": b64(b"x")}))
        .await;
    let e = f
        .err(
            "Decrypt",
            json!({"CiphertextBlob": enc["CiphertextBlob"], "KeyId": b}),
        )
        .await;
    assert_eq!(e.code, "IncorrectKeyException");
    // The right key id, as id, ARN or alias, works.
    f.ok(
        "CreateAlias",
        json!({"AliasName": "alias/a", "TargetKeyId": a}),
    )
    .await;
    for k in [
        a.clone(),
        f.describe(&a).await["Arn"].as_str().unwrap().to_string(),
        "alias/a".into(),
    ] {
        f.ok(
            "Decrypt",
            json!({"CiphertextBlob": enc["CiphertextBlob"], "KeyId": k}),
        )
        .await;
    }
}

#[tokio::test]
async fn tampered_or_garbage_ciphertext_is_invalid() {
    let f = Fixture::new();
    let (id, _) = f.create_key().await;
    let enc = f
        .ok("Encrypt", json!({"KeyId": id, "Plaintext": b64(b"hello")}))
        .await;
    let mut blob = unb64(&enc["CiphertextBlob"]);
    let last = blob.len() - 1;
    blob[last] ^= 1;
    let e = f
        .err("Decrypt", json!({"CiphertextBlob": b64(&blob)}))
        .await;
    assert_eq!(e.code, "InvalidCiphertextException");
    let e = f
        .err(
            "Decrypt",
            json!({"CiphertextBlob": b64(b"not a ciphertext at all, no")}),
        )
        .await;
    assert_eq!(e.code, "InvalidCiphertextException");
}

#[tokio::test]
async fn generate_data_key_variants() {
    let f = Fixture::new();
    let (id, arn) = f.create_key().await;
    let ctx = json!({"aws:ebs:id": "vol-1"});
    let g = f
        .ok(
            "GenerateDataKey",
            json!({"KeyId": id, "KeySpec": "AES_256", "EncryptionContext": ctx}),
        )
        .await;
    assert_eq!(g["KeyId"], arn);
    let pt = unb64(&g["Plaintext"]);
    assert_eq!(pt.len(), 32);
    let dec = f
        .ok(
            "Decrypt",
            json!({"CiphertextBlob": g["CiphertextBlob"], "EncryptionContext": ctx}),
        )
        .await;
    assert_eq!(unb64(&dec["Plaintext"]), pt);

    let g = f
        .ok(
            "GenerateDataKey",
            json!({"KeyId": id, "KeySpec": "AES_128"}),
        )
        .await;
    assert_eq!(unb64(&g["Plaintext"]).len(), 16);
    let g = f
        .ok(
            "GenerateDataKey",
            json!({"KeyId": id, "NumberOfBytes": 1024}),
        )
        .await;
    assert_eq!(unb64(&g["Plaintext"]).len(), 1024);

    let w = f
        .ok(
            "GenerateDataKeyWithoutPlaintext",
            json!({"KeyId": id, "KeySpec": "AES_256"}),
        )
        .await;
    assert!(w.get("Plaintext").is_none());
    let dec = f
        .ok("Decrypt", json!({"CiphertextBlob": w["CiphertextBlob"]}))
        .await;
    assert_eq!(unb64(&dec["Plaintext"]).len(), 32);

    for bad in [
        json!({"KeyId": id}),
        json!({"KeyId": id, "KeySpec": "AES_256", "NumberOfBytes": 32}),
        json!({"KeyId": id, "NumberOfBytes": 0}),
        json!({"KeyId": id, "NumberOfBytes": 1025}),
        json!({"KeyId": id, "KeySpec": "AES_512"}),
    ] {
        assert_eq!(
            f.err("GenerateDataKey", bad).await.code,
            "ValidationException"
        );
    }
}

#[tokio::test]
async fn re_encrypt_moves_a_ciphertext_to_another_key_and_context() {
    let f = Fixture::new();
    let (a, a_arn) = f.create_key().await;
    let (b, b_arn) = f.create_key().await;
    f.ok(
        "CreateAlias",
        json!({"AliasName": "alias/dest", "TargetKeyId": b}),
    )
    .await;
    let enc = f
        .ok(
            "Encrypt",
            json!({"KeyId": a, "Plaintext": b64(b"payload"), "EncryptionContext": {"k": "1"}}),
        )
        .await;
    let re = f
        .ok(
            "ReEncrypt",
            json!({"CiphertextBlob": enc["CiphertextBlob"], "SourceEncryptionContext": {"k": "1"},
                   "DestinationKeyId": "alias/dest", "DestinationEncryptionContext": {"k": "2"}}),
        )
        .await;
    assert_eq!(re["SourceKeyId"], a_arn);
    assert_eq!(re["KeyId"], b_arn);
    let dec = f
        .ok(
            "Decrypt",
            json!({"CiphertextBlob": re["CiphertextBlob"], "EncryptionContext": {"k": "2"}}),
        )
        .await;
    assert_eq!(unb64(&dec["Plaintext"]), b"payload");
    let e = f
        .err(
            "ReEncrypt",
            json!({"CiphertextBlob": enc["CiphertextBlob"], "DestinationKeyId": b}),
        )
        .await;
    assert_eq!(e.code, "InvalidCiphertextException");
}

#[tokio::test]
async fn generate_random_and_plaintext_limits() {
    let f = Fixture::new();
    let r = f.ok("GenerateRandom", json!({"NumberOfBytes": 64})).await;
    assert_eq!(unb64(&r["Plaintext"]).len(), 64);
    assert_eq!(
        f.err("GenerateRandom", json!({"NumberOfBytes": 1025}))
            .await
            .code,
        "ValidationException"
    );
    assert_eq!(
        f.err("GenerateRandom", json!({"NumberOfBytes": 0}))
            .await
            .code,
        "ValidationException"
    );
    let (id, _) = f.create_key().await;
    f.ok(
        "Encrypt",
        json!({"KeyId": id, "Plaintext": b64(&[1u8; 4096])}),
    )
    .await;
    let e = f
        .err(
            "Encrypt",
            json!({"KeyId": id, "Plaintext": b64(&[1u8; 4097])}),
        )
        .await;
    assert_eq!(e.code, "ValidationException");
    assert!(
        e.message.contains("'plaintext'") && e.message.contains("4096"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn key_states_give_aws_errors_on_crypto_calls() {
    let f = Fixture::new();
    let (id, arn) = f.create_key().await;
    let enc = f
        .ok("Encrypt", json!({"KeyId": id, "Plaintext": b64(b"x")}))
        .await;
    f.ok("DisableKey", json!({"KeyId": id})).await;
    let calls = [
        ("Encrypt", json!({"KeyId": id, "Plaintext": b64(b"x")})),
        ("Decrypt", json!({"CiphertextBlob": enc["CiphertextBlob"]})),
        (
            "GenerateDataKey",
            json!({"KeyId": id, "KeySpec": "AES_256"}),
        ),
        (
            "GenerateDataKeyWithoutPlaintext",
            json!({"KeyId": id, "KeySpec": "AES_256"}),
        ),
    ];
    for (action, body) in &calls {
        let e = f.err(action, body.clone()).await;
        assert_eq!(e.code, "DisabledException", "{action}");
        assert_eq!(e.message, format!("{arn} is disabled."));
    }
    f.ok(
        "ScheduleKeyDeletion",
        json!({"KeyId": id, "PendingWindowInDays": 7}),
    )
    .await;
    for (action, body) in &calls {
        let e = f.err(action, body.clone()).await;
        assert_eq!(e.code, "KMSInvalidStateException", "{action}");
        assert_eq!(e.message, format!("{arn} is pending deletion."));
    }
    // DescribeKey still works in both states.
    assert_eq!(f.describe(&id).await["KeyState"], "PendingDeletion");
    f.ok("CancelKeyDeletion", json!({"KeyId": id})).await;
    f.ok("EnableKey", json!({"KeyId": id})).await;
    for (action, body) in &calls {
        f.ok(action, body.clone()).await;
    }
}

#[tokio::test]
async fn dry_run_answers_dry_run_operation_exception_and_real_errors_otherwise() {
    let f = Fixture::new();
    let (id, _) = f.create_key().await;
    let e = f
        .err(
            "GenerateDataKey",
            json!({"KeyId": id, "KeySpec": "AES_256", "DryRun": true}),
        )
        .await;
    assert_eq!(e.code, "DryRunOperationException");
    f.ok("DisableKey", json!({"KeyId": id})).await;
    let e = f
        .err(
            "GenerateDataKey",
            json!({"KeyId": id, "KeySpec": "AES_256", "DryRun": true}),
        )
        .await;
    assert_eq!(e.code, "DisabledException");
}
