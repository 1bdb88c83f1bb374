use serde_json::json;

use crate::{Fixture, ACCOUNT, REGION};

#[tokio::test]
async fn create_and_describe_give_full_key_metadata() {
    let f = Fixture::new();
    let v = f
        .ok(
            "CreateKey",
            json!({"Description": "orders db", "KeyUsage": "ENCRYPT_DECRYPT", "KeySpec": "SYMMETRIC_DEFAULT",
                   "Origin": "AWS_KMS", "Tags": [{"TagKey": "team", "TagValue": "data"}],
                   "BypassPolicyLockoutSafetyCheck": false}),
        )
        .await;
    let m = &v["KeyMetadata"];
    let id = m["KeyId"].as_str().unwrap();
    assert_eq!(m["Arn"], format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/{id}"));
    assert_eq!(m["AWSAccountId"], ACCOUNT);
    assert!(m["CreationDate"].is_number());
    for (k, want) in [
        ("Enabled", json!(true)),
        ("Description", json!("orders db")),
        ("KeyUsage", json!("ENCRYPT_DECRYPT")),
        ("KeyState", json!("Enabled")),
        ("Origin", json!("AWS_KMS")),
        ("KeyManager", json!("CUSTOMER")),
        ("CustomerMasterKeySpec", json!("SYMMETRIC_DEFAULT")),
        ("KeySpec", json!("SYMMETRIC_DEFAULT")),
        ("EncryptionAlgorithms", json!(["SYMMETRIC_DEFAULT"])),
        ("MultiRegion", json!(false)),
    ] {
        assert_eq!(m[k], want, "{k}");
    }
    assert_eq!(f.describe(id).await, *m);
    // The default key policy delegates to the account.
    let p = f
        .ok(
            "GetKeyPolicy",
            json!({"KeyId": id, "PolicyName": "default"}),
        )
        .await;
    let policy: serde_json::Value = serde_json::from_str(p["Policy"].as_str().unwrap()).unwrap();
    assert_eq!(policy["Statement"][0]["Sid"], "Enable IAM User Permissions");
    assert_eq!(
        policy["Statement"][0]["Principal"]["AWS"],
        format!("arn:aws:iam::{ACCOUNT}:root")
    );
    assert_eq!(policy["Statement"][0]["Action"], "kms:*");
    let l = f.ok("ListKeyPolicies", json!({"KeyId": id})).await;
    assert_eq!(l["PolicyNames"], json!(["default"]));
}

#[tokio::test]
async fn unsupported_key_kinds_are_refused() {
    let f = Fixture::new();
    for body in [
        json!({"KeySpec": "RSA_2048"}),
        json!({"KeyUsage": "SIGN_VERIFY"}),
        json!({"Origin": "EXTERNAL"}),
        json!({"MultiRegion": true}),
    ] {
        assert_eq!(
            f.err("CreateKey", body).await.code,
            "UnsupportedOperationException"
        );
    }
    assert_eq!(
        f.err("CreateKey", json!({"KeySpec": "AES"})).await.code,
        "ValidationException"
    );
    assert_eq!(f.ok("ListKeys", json!({})).await["Keys"], json!([]));
}

#[tokio::test]
async fn list_keys_pages_with_limit_and_marker() {
    let f = Fixture::new();
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(f.create_key().await.0);
    }
    ids.sort();
    let mut seen = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let mut body = json!({"Limit": 2});
        if let Some(m) = &marker {
            body["Marker"] = json!(m);
        }
        let page = f.ok("ListKeys", body).await;
        for k in page["Keys"].as_array().unwrap() {
            seen.push(k["KeyId"].as_str().unwrap().to_string());
            assert!(k["KeyArn"]
                .as_str()
                .unwrap()
                .ends_with(k["KeyId"].as_str().unwrap()));
        }
        if page["Truncated"] == json!(true) {
            marker = Some(page["NextMarker"].as_str().unwrap().to_string());
        } else {
            assert!(page.get("NextMarker").is_none());
            break;
        }
    }
    assert_eq!(seen, ids);
    assert_eq!(
        f.err("ListKeys", json!({"Marker": "!!!"})).await.code,
        "InvalidMarkerException"
    );
    assert_eq!(
        f.err("ListKeys", json!({"Limit": 1001})).await.code,
        "ValidationException"
    );
}

#[tokio::test]
async fn schedule_and_cancel_deletion() {
    let f = Fixture::new();
    let (id, arn) = f.create_key().await;
    let s = f.ok("ScheduleKeyDeletion", json!({"KeyId": id})).await;
    assert_eq!(s["KeyId"], arn);
    assert_eq!(s["KeyState"], "PendingDeletion");
    assert_eq!(s["PendingWindowInDays"], 30);
    let m = f.describe(&id).await;
    assert_eq!(m["KeyState"], "PendingDeletion");
    assert_eq!(m["Enabled"], false);
    assert_eq!(m["PendingDeletionWindowInDays"], 30);
    assert_eq!(m["DeletionDate"], s["DeletionDate"]);
    let e = f.err("ScheduleKeyDeletion", json!({"KeyId": id})).await;
    assert_eq!(e.code, "KMSInvalidStateException");
    assert_eq!(
        f.err("EnableKey", json!({"KeyId": id})).await.code,
        "KMSInvalidStateException"
    );
    let c = f.ok("CancelKeyDeletion", json!({"KeyId": id})).await;
    assert_eq!(c["KeyId"], arn);
    let m = f.describe(&id).await;
    assert_eq!(m["KeyState"], "Disabled");
    assert!(m.get("DeletionDate").is_none());
    let e = f.err("CancelKeyDeletion", json!({"KeyId": id})).await;
    assert_eq!(e.code, "KMSInvalidStateException");
    for days in [6, 31] {
        let e = f
            .err(
                "ScheduleKeyDeletion",
                json!({"KeyId": id, "PendingWindowInDays": days}),
            )
            .await;
        assert_eq!(e.code, "ValidationException");
    }
}

#[tokio::test]
async fn deletion_completes_when_the_window_passes() {
    let f = Fixture::new();
    let (id, arn) = f.create_key().await;
    f.ok(
        "CreateAlias",
        json!({"AliasName": "alias/doomed", "TargetKeyId": id}),
    )
    .await;
    f.ok(
        "ScheduleKeyDeletion",
        json!({"KeyId": id, "PendingWindowInDays": 7}),
    )
    .await;
    f.engine
        .advance_clock(std::time::Duration::from_secs(6 * 86400))
        .await
        .unwrap();
    assert_eq!(f.describe(&id).await["KeyState"], "PendingDeletion");
    f.engine
        .advance_clock(std::time::Duration::from_secs(86400 + 60))
        .await
        .unwrap();
    let e = f.err("DescribeKey", json!({"KeyId": id})).await;
    assert_eq!(e.code, "NotFoundException");
    assert_eq!(e.message, format!("Key '{arn}' does not exist"));
    assert_eq!(f.ok("ListAliases", json!({})).await["Aliases"], json!([]));
    assert_eq!(f.ok("ListKeys", json!({})).await["Keys"], json!([]));
}

#[tokio::test]
async fn aliases_create_update_delete_and_resolve() {
    let f = Fixture::new();
    let (a, a_arn) = f.create_key().await;
    let (b, _) = f.create_key().await;
    f.ok(
        "CreateAlias",
        json!({"AliasName": "alias/app/db", "TargetKeyId": a}),
    )
    .await;
    let alias_arn = format!("arn:aws:kms:{REGION}:{ACCOUNT}:alias/app/db");
    assert_eq!(f.describe("alias/app/db").await["Arn"], a_arn);
    assert_eq!(f.describe(&alias_arn).await["Arn"], a_arn);
    let e = f
        .err(
            "CreateAlias",
            json!({"AliasName": "alias/app/db", "TargetKeyId": b}),
        )
        .await;
    assert_eq!(e.code, "AlreadyExistsException");
    assert_eq!(
        e.message,
        format!("An alias with the name {alias_arn} already exists")
    );
    f.ok(
        "UpdateAlias",
        json!({"AliasName": "alias/app/db", "TargetKeyId": b}),
    )
    .await;
    assert_eq!(f.describe("alias/app/db").await["KeyId"], b);
    let l = f.ok("ListAliases", json!({"KeyId": b})).await;
    assert_eq!(l["Aliases"].as_array().unwrap().len(), 1);
    assert_eq!(l["Aliases"][0]["AliasArn"], alias_arn);
    assert_eq!(l["Aliases"][0]["TargetKeyId"], b);
    assert_eq!(
        f.ok("ListAliases", json!({"KeyId": a})).await["Aliases"],
        json!([])
    );
    // Aliases are refused where AWS refuses them.
    for action in [
        "EnableKey",
        "DisableKey",
        "ScheduleKeyDeletion",
        "EnableKeyRotation",
        "TagResource",
    ] {
        let e = f
            .err(
                action,
                json!({"KeyId": "alias/app/db", "Tags": [{"TagKey": "a", "TagValue": "b"}]}),
            )
            .await;
        assert_eq!(e.code, "NotFoundException", "{action}");
    }
    let e = f
        .err(
            "CreateAlias",
            json!({"AliasName": "alias/x", "TargetKeyId": "alias/app/db"}),
        )
        .await;
    assert_eq!(e.code, "ValidationException");
    assert_eq!(e.message, "Aliases must refer to keys. Not aliases");
    f.ok("DeleteAlias", json!({"AliasName": "alias/app/db"}))
        .await;
    let e = f.err("DescribeKey", json!({"KeyId": "alias/app/db"})).await;
    assert_eq!(e.code, "NotFoundException");
    assert_eq!(e.message, format!("Alias {alias_arn} is not found."));
    let e = f
        .err("DeleteAlias", json!({"AliasName": "alias/app/db"}))
        .await;
    assert_eq!(e.code, "NotFoundException");
}

#[tokio::test]
async fn alias_names_follow_aws_rules() {
    let f = Fixture::new();
    let (a, _) = f.create_key().await;
    for (name, code) in [
        ("noprefix", "ValidationException"),
        ("alias/my:alias", "ValidationException"),
        ("alias/aws/reserved", "InvalidAliasNameException"),
        ("alias/", "InvalidAliasNameException"),
        ("alias/sp ace", "ValidationException"),
        ("alias/ünicode", "ValidationException"),
    ] {
        let e = f
            .err("CreateAlias", json!({"AliasName": name, "TargetKeyId": a}))
            .await;
        assert_eq!(e.code, code, "{name}");
    }
    let long = format!("alias/{}", "a".repeat(251));
    assert_eq!(
        f.err("CreateAlias", json!({"AliasName": long, "TargetKeyId": a}))
            .await
            .code,
        "ValidationException"
    );
    assert_eq!(f.ok("ListAliases", json!({})).await["Aliases"], json!([]));
}

#[tokio::test]
async fn tags_description_and_policy() {
    let f = Fixture::new();
    let (id, _) = f.create_key().await;
    f.ok(
        "TagResource",
        json!({"KeyId": id, "Tags": [{"TagKey": "env", "TagValue": "prod"}, {"TagKey": "team", "TagValue": "a"}]}),
    )
    .await;
    f.ok(
        "TagResource",
        json!({"KeyId": id, "Tags": [{"TagKey": "team", "TagValue": "b"}]}),
    )
    .await;
    let t = f.ok("ListResourceTags", json!({"KeyId": id})).await;
    assert_eq!(
        t["Tags"],
        json!([{"TagKey": "env", "TagValue": "prod"}, {"TagKey": "team", "TagValue": "b"}])
    );
    assert_eq!(t["Truncated"], false);
    f.ok("UntagResource", json!({"KeyId": id, "TagKeys": ["env"]}))
        .await;
    let t = f
        .ok("ListResourceTags", json!({"KeyId": id, "Limit": 1}))
        .await;
    assert_eq!(t["Tags"], json!([{"TagKey": "team", "TagValue": "b"}]));
    let e = f
        .err(
            "TagResource",
            json!({"KeyId": id, "Tags": [{"TagKey": "aws:x", "TagValue": "y"}]}),
        )
        .await;
    assert_eq!(e.code, "TagException");

    f.ok(
        "UpdateKeyDescription",
        json!({"KeyId": id, "Description": "new words"}),
    )
    .await;
    assert_eq!(f.describe(&id).await["Description"], "new words");

    let policy = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")}, "Action": "kms:*", "Resource": "*"}]})
    .to_string();
    f.ok(
        "PutKeyPolicy",
        json!({"KeyId": id, "PolicyName": "default", "Policy": policy}),
    )
    .await;
    assert_eq!(
        f.ok("GetKeyPolicy", json!({"KeyId": id})).await["Policy"],
        policy
    );
    for bad in [
        "{not json",
        "[]",
        "{\"Statement\": []}",
        "{\"Statement\": [{\"Effect\": \"Maybe\"}]}",
    ] {
        let e = f
            .err("PutKeyPolicy", json!({"KeyId": id, "Policy": bad}))
            .await;
        assert_eq!(e.code, "MalformedPolicyDocumentException", "{bad}");
    }
    let huge = format!("{{\"Statement\": [], \"pad\": \"{}\"}}", "x".repeat(32768));
    let e = f
        .err("PutKeyPolicy", json!({"KeyId": id, "Policy": huge}))
        .await;
    assert_eq!(e.code, "ValidationException");
    assert_eq!(
        f.ok("GetKeyPolicy", json!({"KeyId": id})).await["Policy"],
        policy
    );
    let e = f.err("CreateKey", json!({"Policy": "{oops"})).await;
    assert_eq!(e.code, "MalformedPolicyDocumentException");

    // The lockout safety check: a policy that would not let the caller change it again is
    // refused unless BypassPolicyLockoutSafetyCheck is set.
    let others_only = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::444455556666:root"}, "Action": "kms:*", "Resource": "*"}]})
    .to_string();
    let e = f
        .err("PutKeyPolicy", json!({"KeyId": id, "Policy": others_only}))
        .await;
    assert_eq!(e.code, "MalformedPolicyDocumentException");
    assert_eq!(
        e.message,
        "The new key policy will not allow you to update the key policy in the future."
    );
    assert_eq!(
        f.ok("GetKeyPolicy", json!({"KeyId": id})).await["Policy"],
        policy
    );
    let e = f.err("CreateKey", json!({"Policy": others_only})).await;
    assert_eq!(e.code, "MalformedPolicyDocumentException");
    f.ok(
        "PutKeyPolicy",
        json!({"KeyId": id, "Policy": others_only, "BypassPolicyLockoutSafetyCheck": true}),
    )
    .await;
    // Bypassed: the policy is saved, and it locks the account's own root out, as in AWS.
    let e = f.err("GetKeyPolicy", json!({"KeyId": id})).await;
    assert_eq!(e.code, "AccessDeniedException");
    assert_eq!(
        f.ok("ListKeys", json!({})).await["Keys"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn keys_are_per_account_and_region() {
    let f = Fixture::new();
    let (id, arn) = f.create_key().await;
    let mut west = crate::root_caller(ACCOUNT);
    west.region = "eu-west-1".into();
    let e = f
        .call_as(&west, "DescribeKey", json!({"KeyId": id}))
        .await
        .unwrap_err();
    assert_eq!(e.code, "NotFoundException");
    // Not even by its ARN: keys are regional.
    let e = f
        .call_as(&west, "DescribeKey", json!({"KeyId": arn}))
        .await
        .unwrap_err();
    assert_eq!(e.code, "NotFoundException");
    assert_eq!(
        f.call_as(&west, "ListKeys", json!({})).await.unwrap()["Keys"],
        json!([])
    );
    let other = crate::root_caller(crate::OTHER_ACCOUNT);
    // A bare key id names the caller's own account.
    let e = f
        .call_as(&other, "DescribeKey", json!({"KeyId": id}))
        .await
        .unwrap_err();
    assert_eq!(e.code, "NotFoundException");
    // By ARN, another account reaches the key and is denied by the authorization hook.
    let e = f
        .call_as(&other, "DescribeKey", json!({"KeyId": arn}))
        .await
        .unwrap_err();
    assert_eq!(e.code, "AccessDeniedException");
    assert_eq!(
        e.message,
        format!(
            "User: arn:aws:iam::{}:root is not authorized to perform: kms:DescribeKey on resource: {arn} \
             because no resource-based policy allows the kms:DescribeKey action",
            crate::OTHER_ACCOUNT
        )
    );
}
