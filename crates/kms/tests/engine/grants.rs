use serde_json::json;

use crate::{b64, root_caller, unb64, user_caller, Fixture, ACCOUNT, OTHER_ACCOUNT};

#[tokio::test]
async fn a_grant_lets_another_account_decrypt_under_its_constraint_until_revoked() {
    let f = Fixture::new();
    let (id, arn) = f.create_key().await;
    let host = user_caller(OTHER_ACCOUNT, "host");
    let ctx = json!({"aws:ebs:id": "vol-1"});
    let wrapped = f
        .ok(
            "GenerateDataKeyWithoutPlaintext",
            json!({"KeyId": id, "KeySpec": "AES_256", "EncryptionContext": ctx}),
        )
        .await["CiphertextBlob"]
        .clone();
    // Without a grant the other account is denied.
    let e = f
        .call_as(
            &host,
            "Decrypt",
            json!({"CiphertextBlob": wrapped, "EncryptionContext": ctx}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, "AccessDeniedException");
    let g = f
        .ok(
            "CreateGrant",
            json!({"KeyId": arn, "GranteePrincipal": host.identity.arn, "Operations": ["Decrypt"],
                   "RetiringPrincipal": format!("arn:aws:iam::{ACCOUNT}:root"),
                   "Constraints": {"EncryptionContextSubset": {"aws:ebs:id": "vol-1"}}, "Name": "attach-1"}),
        )
        .await;
    let token = g["GrantToken"].as_str().unwrap().to_string();
    let grant_id = g["GrantId"].as_str().unwrap().to_string();
    // Immediately usable with its token.
    let d = f
        .call_as(
            &host,
            "Decrypt",
            json!({"CiphertextBlob": wrapped, "EncryptionContext": ctx, "GrantTokens": [token]}),
        )
        .await
        .unwrap();
    assert_eq!(unb64(&d["Plaintext"]).len(), 32);
    // The constraint holds: another volume's context is denied.
    let other = f
        .ok("GenerateDataKeyWithoutPlaintext", json!({"KeyId": id, "KeySpec": "AES_256", "EncryptionContext": {"aws:ebs:id": "vol-2"}}))
        .await["CiphertextBlob"]
        .clone();
    let e = f
        .call_as(
            &host,
            "Decrypt",
            json!({"CiphertextBlob": other, "EncryptionContext": {"aws:ebs:id": "vol-2"}}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, "AccessDeniedException");
    // Operations outside the grant are denied.
    let e = f
        .call_as(
            &host,
            "GenerateDataKey",
            json!({"KeyId": arn, "KeySpec": "AES_256", "EncryptionContext": ctx}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, "AccessDeniedException");
    // Name idempotency returns the same grant.
    let again = f
        .ok(
            "CreateGrant",
            json!({"KeyId": id, "GranteePrincipal": host.identity.arn, "Operations": ["Decrypt"],
                   "RetiringPrincipal": format!("arn:aws:iam::{ACCOUNT}:root"),
                   "Constraints": {"EncryptionContextSubset": {"aws:ebs:id": "vol-1"}}, "Name": "attach-1"}),
        )
        .await;
    assert_eq!(again["GrantId"], grant_id);
    let l = f.ok("ListGrants", json!({"KeyId": id})).await;
    assert_eq!(l["Grants"].as_array().unwrap().len(), 1);
    let entry = &l["Grants"][0];
    assert_eq!(entry["GrantId"], grant_id);
    assert_eq!(entry["KeyId"], arn);
    assert_eq!(entry["GranteePrincipal"], host.identity.arn);
    assert_eq!(entry["Operations"], json!(["Decrypt"]));
    assert_eq!(
        entry["Constraints"]["EncryptionContextSubset"],
        json!({"aws:ebs:id": "vol-1"})
    );
    assert_eq!(
        entry["IssuingAccount"],
        format!("arn:aws:iam::{ACCOUNT}:root")
    );
    let r = f
        .ok(
            "ListRetirableGrants",
            json!({"RetiringPrincipal": format!("arn:aws:iam::{ACCOUNT}:root")}),
        )
        .await;
    assert_eq!(r["Grants"].as_array().unwrap().len(), 1);

    f.ok("RevokeGrant", json!({"KeyId": id, "GrantId": grant_id}))
        .await;
    let e = f
        .call_as(
            &host,
            "Decrypt",
            json!({"CiphertextBlob": wrapped, "EncryptionContext": ctx}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, "AccessDeniedException");
    assert_eq!(
        f.ok("ListGrants", json!({"KeyId": id})).await["Grants"],
        json!([])
    );
}

#[tokio::test]
async fn retire_grant_by_token_or_id_and_who_may_retire() {
    let f = Fixture::new();
    let (id, arn) = f.create_key().await;
    let host = user_caller(OTHER_ACCOUNT, "host");
    let stranger = root_caller("999988887777");
    let g = f
        .ok("CreateGrant", json!({"KeyId": id, "GranteePrincipal": host.identity.arn, "Operations": ["Decrypt", "RetireGrant"]}))
        .await;
    let token = g["GrantToken"].as_str().unwrap();
    let e = f
        .call_as(&stranger, "RetireGrant", json!({"GrantToken": token}))
        .await
        .unwrap_err();
    assert_eq!(e.code, "AccessDeniedException");
    // The grantee may retire it: the grant includes RetireGrant.
    f.call_as(&host, "RetireGrant", json!({"GrantToken": token}))
        .await
        .unwrap();
    assert_eq!(
        f.ok("ListGrants", json!({"KeyId": id})).await["Grants"],
        json!([])
    );
    let e = f.err("RetireGrant", json!({"GrantToken": token})).await;
    assert_eq!(e.code, "NotFoundException");
    let g = f
        .ok(
            "CreateGrant",
            json!({"KeyId": id, "GranteePrincipal": host.identity.arn, "Operations": ["Encrypt"]}),
        )
        .await;
    f.ok(
        "RetireGrant",
        json!({"KeyId": arn, "GrantId": g["GrantId"]}),
    )
    .await;
    assert_eq!(
        f.ok("ListGrants", json!({"KeyId": id})).await["Grants"],
        json!([])
    );
    // Encrypt through a grant.
    let g = f
        .ok(
            "CreateGrant",
            json!({"KeyId": id, "GranteePrincipal": host.identity.arn, "Operations": ["Encrypt"]}),
        )
        .await;
    f.call_as(
        &host,
        "Encrypt",
        json!({"KeyId": arn, "Plaintext": b64(b"x"), "GrantTokens": [g["GrantToken"]]}),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn grants_survive_reopen_and_die_with_their_key() {
    let mut f = Fixture::new();
    let (id, _) = f.create_key().await;
    let g = f
        .ok("CreateGrant", json!({"KeyId": id, "GranteePrincipal": "arn:aws:iam::444455556666:role/node", "Operations": ["Decrypt", "DescribeKey"]}))
        .await;
    f.reopen();
    let l = f.ok("ListGrants", json!({"KeyId": id})).await;
    assert_eq!(l["Grants"][0]["GrantId"], g["GrantId"]);
    assert_eq!(
        l["Grants"][0]["Operations"],
        json!(["Decrypt", "DescribeKey"])
    );
    f.ok(
        "ScheduleKeyDeletion",
        json!({"KeyId": id, "PendingWindowInDays": 7}),
    )
    .await;
    let e = f
        .err("CreateGrant", json!({"KeyId": id, "GranteePrincipal": "arn:aws:iam::444455556666:root", "Operations": ["Decrypt"]}))
        .await;
    assert_eq!(e.code, "KMSInvalidStateException");
    f.engine
        .advance_clock(std::time::Duration::from_secs(8 * 86400))
        .await
        .unwrap();
    f.reopen();
    let e = f
        .err("CreateGrant", json!({"KeyId": id, "GranteePrincipal": "arn:aws:iam::444455556666:root", "Operations": ["Decrypt"]}))
        .await;
    assert_eq!(e.code, "NotFoundException");
}
