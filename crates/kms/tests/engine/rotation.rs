use std::time::Duration;

use serde_json::json;

use crate::{b64, unb64, Fixture};

const DAY: u64 = 86400;

async fn encrypt(f: &Fixture, id: &str, text: &[u8]) -> serde_json::Value {
    f.ok("Encrypt", json!({"KeyId": id, "Plaintext": b64(text)}))
        .await["CiphertextBlob"]
        .clone()
}

async fn decrypts(f: &Fixture, blob: &serde_json::Value, text: &[u8]) {
    let d = f.ok("Decrypt", json!({"CiphertextBlob": blob})).await;
    assert_eq!(unb64(&d["Plaintext"]), text);
}

#[tokio::test]
async fn on_demand_rotation_keeps_old_ciphertexts_and_is_limited_to_ten() {
    let f = Fixture::new();
    let (id, arn) = f.create_key().await;
    let before = encrypt(&f, &id, b"v1").await;
    let material = f.describe(&id).await["CurrentKeyMaterialId"].clone();
    assert_eq!(material.as_str().map(str::len), Some(64), "{material}");
    let r = f.ok("RotateKeyOnDemand", json!({"KeyId": id})).await;
    assert_eq!(r["KeyId"], id);
    // DescribeKey names the new current material (how a key's user sees a rotation).
    let rotated = f.describe(&id).await["CurrentKeyMaterialId"].clone();
    assert_ne!(rotated, material);
    assert_eq!(rotated.as_str().map(str::len), Some(64));
    let after = encrypt(&f, &id, b"v2").await;
    // New material encrypts: the blobs name different material versions.
    assert_ne!(unb64(&before)[17..21], unb64(&after)[17..21]);
    decrypts(&f, &before, b"v1").await;
    decrypts(&f, &after, b"v2").await;
    let s = f.ok("GetKeyRotationStatus", json!({"KeyId": id})).await;
    assert_eq!(s["KeyId"], arn);
    assert_eq!(s["KeyRotationEnabled"], false);
    assert!(s["OnDemandRotationStartDate"].is_number());
    for _ in 1..10 {
        f.ok("RotateKeyOnDemand", json!({"KeyId": id})).await;
    }
    let e = f.err("RotateKeyOnDemand", json!({"KeyId": id})).await;
    assert_eq!(e.code, "LimitExceededException");
    let l = f
        .ok("ListKeyRotations", json!({"KeyId": id, "Limit": 4}))
        .await;
    assert_eq!(l["Rotations"].as_array().unwrap().len(), 4);
    assert_eq!(l["Rotations"][0]["RotationType"], "ON_DEMAND");
    assert_eq!(l["Truncated"], true);
    let rest = f
        .ok(
            "ListKeyRotations",
            json!({"KeyId": id, "Marker": l["NextMarker"], "Limit": 100}),
        )
        .await;
    assert_eq!(rest["Rotations"].as_array().unwrap().len(), 6);
    decrypts(&f, &before, b"v1").await;
}

#[tokio::test]
async fn automatic_rotation_runs_on_the_kms_clock() {
    let f = Fixture::new();
    let (id, _) = f.create_key().await;
    let e = f
        .err(
            "EnableKeyRotation",
            json!({"KeyId": id, "RotationPeriodInDays": 89}),
        )
        .await;
    assert_eq!(e.code, "ValidationException");
    f.ok(
        "EnableKeyRotation",
        json!({"KeyId": id, "RotationPeriodInDays": 90}),
    )
    .await;
    let s = f.ok("GetKeyRotationStatus", json!({"KeyId": id})).await;
    assert_eq!(s["KeyRotationEnabled"], true);
    assert_eq!(s["RotationPeriodInDays"], 90);
    let next = s["NextRotationDate"].as_f64().unwrap();
    let old = encrypt(&f, &id, b"old").await;
    f.engine
        .advance_clock(Duration::from_secs(89 * DAY))
        .await
        .unwrap();
    assert_eq!(
        f.ok("ListKeyRotations", json!({"KeyId": id})).await["Rotations"],
        json!([])
    );
    f.engine
        .advance_clock(Duration::from_secs(DAY + 60))
        .await
        .unwrap();
    let l = f.ok("ListKeyRotations", json!({"KeyId": id})).await;
    assert_eq!(l["Rotations"].as_array().unwrap().len(), 1);
    assert_eq!(l["Rotations"][0]["RotationType"], "AUTOMATIC");
    let s = f.ok("GetKeyRotationStatus", json!({"KeyId": id})).await;
    assert!(s["NextRotationDate"].as_f64().unwrap() >= next + 89.0 * DAY as f64);
    decrypts(&f, &old, b"old").await;
    let new = encrypt(&f, &id, b"new").await;
    assert_ne!(unb64(&old)[17..21], unb64(&new)[17..21]);
}

#[tokio::test]
async fn disabled_keys_rotate_when_re_enabled_and_pending_deletion_never() {
    let f = Fixture::new();
    let (a, _) = f.create_key().await;
    let (b, _) = f.create_key().await;
    for k in [&a, &b] {
        f.ok("EnableKeyRotation", json!({"KeyId": k})).await;
    }
    f.ok("DisableKey", json!({"KeyId": a})).await;
    f.ok(
        "ScheduleKeyDeletion",
        json!({"KeyId": b, "PendingWindowInDays": 30}),
    )
    .await;
    // Rotation state calls on a disabled key answer DisabledException, as AWS.
    assert_eq!(
        f.err("EnableKeyRotation", json!({"KeyId": a})).await.code,
        "DisabledException"
    );
    assert_eq!(
        f.err("RotateKeyOnDemand", json!({"KeyId": a})).await.code,
        "DisabledException"
    );
    f.engine
        .advance_clock(Duration::from_secs(366 * DAY))
        .await
        .unwrap();
    assert_eq!(
        f.ok("ListKeyRotations", json!({"KeyId": a})).await["Rotations"],
        json!([])
    );
    f.ok("EnableKey", json!({"KeyId": a})).await;
    // The next call sees the overdue rotation at once.
    let l = f.ok("ListKeyRotations", json!({"KeyId": a})).await;
    assert_eq!(l["Rotations"].as_array().unwrap().len(), 1);
    // b was pending deletion and is gone now, never rotated.
    assert_eq!(
        f.err("DescribeKey", json!({"KeyId": b})).await.code,
        "NotFoundException"
    );
}

#[tokio::test]
async fn rotation_survives_reopen() {
    let mut f = Fixture::new();
    let (id, _) = f.create_key().await;
    let v1 = encrypt(&f, &id, b"one").await;
    f.ok("RotateKeyOnDemand", json!({"KeyId": id})).await;
    let v2 = encrypt(&f, &id, b"two").await;
    f.ok(
        "EnableKeyRotation",
        json!({"KeyId": id, "RotationPeriodInDays": 100}),
    )
    .await;
    f.reopen();
    decrypts(&f, &v1, b"one").await;
    decrypts(&f, &v2, b"two").await;
    let s = f.ok("GetKeyRotationStatus", json!({"KeyId": id})).await;
    assert_eq!(s["RotationPeriodInDays"], 100);
    assert_eq!(
        f.ok("ListKeyRotations", json!({"KeyId": id})).await["Rotations"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}
