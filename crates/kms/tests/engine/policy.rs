//! Key-policy and identity-policy evaluation through `call_kms`: the guide's scenario, explicit
//! deny, delegation to identity policies, cross-account calls, and refused policy documents.

use keyward_kms::IdentityConfig;
use serde_json::{json, Value};

use crate::{b64, root_caller, user_caller, Fixture, ACCOUNT, OTHER_ACCOUNT};

/// The platform's identity (an IAM user: roles are not built yet) in the platform account.
const PLATFORM: &str = OTHER_ACCOUNT;
const CLUSTER: &str = "cluster-a";

fn cluster_arn() -> String {
    format!("arn:aws:iam::{PLATFORM}:user/{CLUSTER}")
}

/// The guide's key policy: the customer's root keeps administration (delegation to its IAM),
/// the cluster's identity gets the guide's two statements, optionally without `kms:Decrypt`.
fn guide_policy(with_decrypt: bool) -> String {
    let mut basic = vec!["kms:DescribeKey", "kms:GenerateDataKey*"];
    if with_decrypt {
        basic.push("kms:Decrypt");
    }
    json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "Enable IAM User Permissions", "Effect": "Allow",
         "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")}, "Action": "kms:*", "Resource": "*"},
        {"Sid": "Allow keyward cluster role basic key access", "Effect": "Allow",
         "Principal": {"AWS": cluster_arn()}, "Action": basic, "Resource": "*"},
        {"Sid": "Allow keyward cluster role to create grants for encrypted disks", "Effect": "Allow",
         "Principal": {"AWS": cluster_arn()}, "Action": ["kms:CreateGrant"], "Resource": "*"}
    ]})
    .to_string()
}

/// The platform side of cross-account use: the cluster's identity policy allows the same actions
/// on keys of the customer's account.
fn platform_identities() -> IdentityConfig {
    let mut ids = IdentityConfig::empty();
    ids.add_user_policy(
        PLATFORM,
        CLUSTER,
        &json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Action": ["kms:DescribeKey", "kms:GenerateDataKey*", "kms:Decrypt", "kms:CreateGrant"],
            "Resource": format!("arn:aws:kms:*:{ACCOUNT}:key/*")}]})
        .to_string(),
    )
    .unwrap();
    ids.add_user(PLATFORM, "intruder");
    ids
}

fn denied_message(who: &str, action: &str, arn: &str, kind: &str) -> String {
    format!(
        "User: {who} is not authorized to perform: kms:{action} on resource: {arn} because no \
         {kind} policy allows the kms:{action} action"
    )
}

#[tokio::test]
async fn the_guides_scenario_cross_account() {
    let f = Fixture::with_identities(platform_identities());
    let key = f
        .ok("CreateKey", json!({"Policy": guide_policy(true)}))
        .await;
    let arn = key["KeyMetadata"]["Arn"].as_str().unwrap().to_string();
    let cluster = user_caller(PLATFORM, CLUSTER);

    let described = f
        .call_as(&cluster, "DescribeKey", json!({"KeyId": arn}))
        .await
        .unwrap();
    assert_eq!(described["KeyMetadata"]["Arn"], arn.as_str());
    let dk = f
        .call_as(
            &cluster,
            "GenerateDataKey",
            json!({"KeyId": arn, "KeySpec": "AES_256", "EncryptionContext": {"cluster": "c-1"}}),
        )
        .await
        .unwrap();
    let blob = dk["CiphertextBlob"].clone();
    let plain = f
        .call_as(
            &cluster,
            "Decrypt",
            json!({"CiphertextBlob": blob, "EncryptionContext": {"cluster": "c-1"}}),
        )
        .await
        .unwrap();
    assert_eq!(plain["Plaintext"], dk["Plaintext"]);
    f.call_as(
        &cluster,
        "CreateGrant",
        json!({"KeyId": arn, "GranteePrincipal": cluster_arn(), "Operations": ["Decrypt"],
               "Constraints": {"EncryptionContextSubset": {"cluster": "c-1"}}}),
    )
    .await
    .unwrap();
    // Not in the guide's statements: administration stays the customer's.
    let e = f
        .call_as(&cluster, "ScheduleKeyDeletion", json!({"KeyId": arn}))
        .await
        .unwrap_err();
    assert_eq!(e.code, "AccessDeniedException");

    // The customer removes kms:Decrypt. The grant the cluster made would still let it decrypt,
    // so revoke it first: this is about the policy.
    let grants = f.ok("ListGrants", json!({"KeyId": arn})).await;
    for g in grants["Grants"].as_array().unwrap() {
        f.ok(
            "RevokeGrant",
            json!({"KeyId": arn, "GrantId": g["GrantId"]}),
        )
        .await;
    }
    f.ok(
        "PutKeyPolicy",
        json!({"KeyId": arn, "Policy": guide_policy(false)}),
    )
    .await;
    let e = f
        .call_as(
            &cluster,
            "Decrypt",
            json!({"CiphertextBlob": blob, "EncryptionContext": {"cluster": "c-1"}}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, "AccessDeniedException");
    assert_eq!(
        e.message,
        denied_message(&cluster_arn(), "Decrypt", &arn, "resource-based")
    );
    f.call_as(
        &cluster,
        "GenerateDataKey",
        json!({"KeyId": arn, "KeySpec": "AES_256"}),
    )
    .await
    .unwrap();

    // The denial is in the caller's trail only (AWS logs a cross-account call refused for want
    // of permission only in the caller's account), with AWS's code and message.
    let denials: Vec<Value> = f
        .trail()
        .into_iter()
        .filter(|r| r["eventName"] == "Decrypt" && r["errorCode"] == "AccessDeniedException")
        .collect();
    let mut accounts: Vec<&str> = denials
        .iter()
        .map(|r| r["recipientAccountId"].as_str().unwrap())
        .collect();
    accounts.sort();
    assert_eq!(accounts, [PLATFORM]);
    assert_eq!(denials[0]["errorMessage"], e.message.as_str());

    // Cross-account needs both sides: another platform identity without an identity policy is
    // refused although nothing in the key policy forbids it... and the key policy does not name
    // it either; one named by the key policy but without an identity policy is refused by IAM.
    let intruder = user_caller(PLATFORM, "intruder");
    let e = f
        .call_as(&intruder, "DescribeKey", json!({"KeyId": arn}))
        .await
        .unwrap_err();
    assert_eq!(
        e.message,
        denied_message(
            &intruder.identity.arn,
            "DescribeKey",
            &arn,
            "resource-based"
        )
    );
}

#[tokio::test]
async fn cross_account_needs_the_callers_identity_policy_too() {
    let mut ids = IdentityConfig::empty();
    ids.add_user(PLATFORM, "no-policy");
    let f = Fixture::with_identities(ids);
    // The key policy trusts the whole platform account (delegation to its IAM).
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{PLATFORM}:root")}, "Action": "kms:Decrypt", "Resource": "*"}]});
    let key = f
        .ok("CreateKey", json!({"Policy": policy.to_string()}))
        .await;
    let arn = key["KeyMetadata"]["Arn"].as_str().unwrap().to_string();
    let blob = f
        .ok("Encrypt", json!({"KeyId": arn, "Plaintext": b64(b"x")}))
        .await["CiphertextBlob"]
        .clone();
    let user = user_caller(PLATFORM, "no-policy");
    let e = f
        .call_as(&user, "Decrypt", json!({"CiphertextBlob": blob}))
        .await
        .unwrap_err();
    assert_eq!(
        e.message,
        denied_message(&user.identity.arn, "Decrypt", &arn, "identity-based")
    );
    // The platform account's root has every IAM right in its own account: the key side suffices.
    f.call_as(
        &root_caller(PLATFORM),
        "Decrypt",
        json!({"CiphertextBlob": blob}),
    )
    .await
    .unwrap();
    // But the key policy only gave Decrypt.
    let e = f
        .call_as(
            &root_caller(PLATFORM),
            "Encrypt",
            json!({"KeyId": arn, "Plaintext": b64(b"x")}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, "AccessDeniedException");
}

#[tokio::test]
async fn identity_policies_under_the_default_key_policy() {
    let mut ids = IdentityConfig::empty();
    ids.add_user_policy(
        ACCOUNT,
        "alice",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["kms:Encrypt","kms:Decrypt","kms:Describe*"],"Resource":"*"}]}"#,
    )
    .unwrap();
    ids.add_user(ACCOUNT, "bob");
    let f = Fixture::with_identities(ids);
    let (_, arn) = f.create_key().await;
    let alice = user_caller(ACCOUNT, "alice");
    let bob = user_caller(ACCOUNT, "bob");
    let blob = f
        .call_as(
            &alice,
            "Encrypt",
            json!({"KeyId": arn, "Plaintext": b64(b"hi")}),
        )
        .await
        .unwrap()["CiphertextBlob"]
        .clone();
    f.call_as(&alice, "Decrypt", json!({"CiphertextBlob": blob}))
        .await
        .unwrap();
    f.call_as(&alice, "DescribeKey", json!({"KeyId": arn}))
        .await
        .unwrap();
    let e = f
        .call_as(&alice, "DisableKey", json!({"KeyId": arn}))
        .await
        .unwrap_err();
    assert_eq!(
        e.message,
        denied_message(&alice.identity.arn, "DisableKey", &arn, "identity-based")
    );
    let e = f
        .call_as(&bob, "Decrypt", json!({"CiphertextBlob": blob}))
        .await
        .unwrap_err();
    assert_eq!(
        e.message,
        denied_message(&bob.identity.arn, "Decrypt", &arn, "identity-based")
    );
    assert_eq!(f.describe(&arn).await["KeyState"], "Enabled");
}

#[tokio::test]
async fn explicit_deny_wins_over_allows_and_grants() {
    let mut ids = IdentityConfig::empty();
    ids.add_user_policy(
        ACCOUNT,
        "alice",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"},
            {"Effect":"Deny","Action":"kms:ScheduleKeyDeletion","Resource":"*"}]}"#,
    )
    .unwrap();
    let f = Fixture::with_identities(ids);
    let alice = user_caller(ACCOUNT, "alice");
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": alice.identity.arn}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "kms:Decrypt", "Resource": "*",
         "Condition": {"StringNotEquals": {"kms:EncryptionContext:tier": "gold"}}}]});
    let key = f
        .ok("CreateKey", json!({"Policy": policy.to_string()}))
        .await;
    let arn = key["KeyMetadata"]["Arn"].as_str().unwrap().to_string();
    let plain = f
        .ok("Encrypt", json!({"KeyId": arn, "Plaintext": b64(b"x")}))
        .await["CiphertextBlob"]
        .clone();
    let gold = f
        .ok(
            "Encrypt",
            json!({"KeyId": arn, "Plaintext": b64(b"x"), "EncryptionContext": {"tier": "gold"}}),
        )
        .await["CiphertextBlob"]
        .clone();
    // A grant to alice for Decrypt does not override the key policy's explicit deny.
    f.ok(
        "CreateGrant",
        json!({"KeyId": arn, "GranteePrincipal": alice.identity.arn, "Operations": ["Decrypt"]}),
    )
    .await;
    for who in [root_caller(ACCOUNT), alice.clone()] {
        let e = f
            .call_as(&who, "Decrypt", json!({"CiphertextBlob": plain}))
            .await
            .unwrap_err();
        assert_eq!(
            e.message,
            format!(
                "User: {} is not authorized to perform: kms:Decrypt on resource: {arn} with an \
                 explicit deny in a resource-based policy",
                who.identity.arn
            )
        );
        f.call_as(
            &who,
            "Decrypt",
            json!({"CiphertextBlob": gold, "EncryptionContext": {"tier": "gold"}}),
        )
        .await
        .unwrap();
    }
    // The identity policy's deny wins over the key policy naming alice with kms:*.
    let e = f
        .call_as(&alice, "ScheduleKeyDeletion", json!({"KeyId": arn}))
        .await
        .unwrap_err();
    assert_eq!(
        e.message,
        format!(
            "User: {} is not authorized to perform: kms:ScheduleKeyDeletion on resource: {arn} \
             with an explicit deny in an identity-based policy",
            alice.identity.arn
        )
    );
    assert_eq!(f.describe(&arn).await["KeyState"], "Enabled");
}

#[tokio::test]
async fn account_actions_follow_identity_policies() {
    let mut ids = IdentityConfig::empty();
    ids.add_user_policy(
        ACCOUNT,
        "reader",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:List*","Resource":"*"}]}"#,
    )
    .unwrap();
    let f = Fixture::with_identities(ids);
    let reader = user_caller(ACCOUNT, "reader");
    f.call_as(&reader, "ListKeys", json!({})).await.unwrap();
    let e = f
        .call_as(&reader, "CreateKey", json!({}))
        .await
        .unwrap_err();
    assert_eq!(
        e.message,
        denied_message(&reader.identity.arn, "CreateKey", "*", "identity-based")
    );
    assert_eq!(f.ok("ListKeys", json!({})).await["Keys"], json!([]));
}

#[tokio::test]
async fn bad_policies_are_refused_and_change_nothing() {
    let mut ids = IdentityConfig::empty();
    ids.add_user(ACCOUNT, "alice");
    let f = Fixture::with_identities(ids);
    let (id, _) = f.create_key().await;
    let before = f.snapshot().await;
    let root = format!("arn:aws:iam::{ACCOUNT}:root");
    let allow_root =
        json!({"Effect": "Allow", "Principal": {"AWS": root}, "Action": "kms:*", "Resource": "*"});
    let oversize = json!({"Version": "2012-10-17", "Statement": [allow_root],
        "Id": "x".repeat(33_000)})
    .to_string();
    let cases: Vec<(&str, String, &str)> = vec![
        ("not JSON", "{oops".into(), "MalformedPolicyDocumentException"),
        ("not an object", "[1,2]".into(), "MalformedPolicyDocumentException"),
        (
            "unknown condition operator",
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": root},
                "Action": "kms:*", "Resource": "*", "Condition": {"StringSortOf": {"kms:CallerAccount": ACCOUNT}}}]})
            .to_string(),
            "MalformedPolicyDocumentException",
        ),
        (
            "principal that does not exist",
            json!({"Version": "2012-10-17", "Statement": [allow_root,
                {"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:user/nobody")},
                 "Action": "kms:Decrypt", "Resource": "*"}]})
            .to_string(),
            "MalformedPolicyDocumentException",
        ),
        (
            "role that does not exist",
            json!({"Version": "2012-10-17", "Statement": [allow_root,
                {"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:role/none")},
                 "Action": "kms:Decrypt", "Resource": "*"}]})
            .to_string(),
            "MalformedPolicyDocumentException",
        ),
        (
            "malformed principal",
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "not-an-arn"},
                "Action": "kms:*", "Resource": "*"}]})
            .to_string(),
            "MalformedPolicyDocumentException",
        ),
        (
            "bad effect",
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Maybe", "Principal": {"AWS": root},
                "Action": "kms:*", "Resource": "*"}]})
            .to_string(),
            "MalformedPolicyDocumentException",
        ),
        ("over 32 KB", oversize, "ValidationException"),
    ];
    for (what, doc, code) in &cases {
        let e = f
            .err("PutKeyPolicy", json!({"KeyId": id, "Policy": doc}))
            .await;
        assert_eq!(e.code, *code, "PutKeyPolicy with {what}: {}", e.message);
        let e = f.err("CreateKey", json!({"Policy": doc})).await;
        assert_eq!(e.code, *code, "CreateKey with {what}: {}", e.message);
    }
    let e = f
        .err("PutKeyPolicy", json!({"KeyId": id, "Policy": cases[3].1}))
        .await;
    assert_eq!(
        e.message,
        "Policy contains a statement with one or more invalid principals."
    );
    assert_eq!(f.snapshot().await, before);
}

#[tokio::test]
async fn principals_stay_bound_across_reopen() {
    let mut ids = IdentityConfig::empty();
    ids.add_user(ACCOUNT, "alice");
    let mut f = Fixture::with_identities(ids);
    let alice = user_caller(ACCOUNT, "alice");
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": alice.identity.arn}, "Action": "kms:Encrypt", "Resource": "*"}]});
    let key = f
        .ok("CreateKey", json!({"Policy": policy.to_string()}))
        .await;
    let arn = key["KeyMetadata"]["Arn"].as_str().unwrap().to_string();
    let encrypt = json!({"KeyId": arn, "Plaintext": b64(b"x")});
    f.call_as(&alice, "Encrypt", encrypt.clone()).await.unwrap();
    // Reopen (the fixture's reopen has an empty identity config: the binding comes from the
    // store, not from the live users).
    f.reopen();
    f.call_as(&alice, "Encrypt", encrypt.clone()).await.unwrap();
    let e = f
        .call_as(
            &alice,
            "Decrypt",
            json!({"CiphertextBlob": f.ok("Encrypt", encrypt).await["CiphertextBlob"]}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, "AccessDeniedException");
}

#[tokio::test]
async fn dry_run_on_every_operation_that_takes_it_changes_nothing() {
    let f = Fixture::new();
    let (id, arn) = f.create_key().await;
    let (_, other) = f.create_key().await;
    let blob = f
        .ok("Encrypt", json!({"KeyId": id, "Plaintext": b64(b"x")}))
        .await["CiphertextBlob"]
        .clone();
    let grant = f
        .ok(
            "CreateGrant",
            json!({"KeyId": id, "GranteePrincipal": format!("arn:aws:iam::{OTHER_ACCOUNT}:root"),
                   "Operations": ["Decrypt"]}),
        )
        .await;
    let before = f.snapshot().await;
    let trail_before = f.trail().len();
    let calls = [
        ("Encrypt", json!({"KeyId": id, "Plaintext": b64(b"x")})),
        ("Decrypt", json!({"CiphertextBlob": blob})),
        (
            "ReEncrypt",
            json!({"CiphertextBlob": blob, "DestinationKeyId": other}),
        ),
        (
            "GenerateDataKey",
            json!({"KeyId": id, "KeySpec": "AES_256"}),
        ),
        (
            "GenerateDataKeyWithoutPlaintext",
            json!({"KeyId": id, "NumberOfBytes": 32}),
        ),
        (
            "CreateGrant",
            json!({"KeyId": id, "GranteePrincipal": format!("arn:aws:iam::{OTHER_ACCOUNT}:root"), "Operations": ["Encrypt"]}),
        ),
        (
            "RetireGrant",
            json!({"KeyId": arn, "GrantId": grant["GrantId"]}),
        ),
        (
            "RevokeGrant",
            json!({"KeyId": id, "GrantId": grant["GrantId"]}),
        ),
    ];
    for (action, mut body) in calls {
        body["DryRun"] = json!(true);
        let e = f.err(action, body).await;
        assert_eq!(
            e.code, "DryRunOperationException",
            "{action}: {}",
            e.message
        );
        assert_eq!(
            e.message,
            "The request would have succeeded, but the DryRun option is set."
        );
    }
    assert_eq!(f.snapshot().await, before);
    // Each dry run is in the trail, with its error code.
    let trail = f.trail();
    assert!(
        trail[trail_before..]
            .iter()
            .filter(|r| r["errorCode"] == "DryRunOperationException")
            .count()
            >= 8
    );
}
