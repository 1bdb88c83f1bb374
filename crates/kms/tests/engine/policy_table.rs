//! A table of allow/deny cases through `Engine::call_kms`, each naming the AWS rule it checks.
//! Zero cases may let an unauthorized call through, and every denial must be in the trail.

use std::collections::BTreeMap;

use keyward_kms::{Caller, IdentityConfig};
use serde_json::{json, Value};

use crate::{b64, root_caller, user_caller, Fixture, ACCOUNT, OTHER_ACCOUNT};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum K {
    /// AWS's default key policy: the account root (delegation to IAM).
    Default,
    /// Names alice directly for Encrypt/Decrypt/GenerateDataKey*, plus the root statement.
    Named,
    /// Root statement plus a Deny of Decrypt to everyone unless the context has tier=gold.
    DenyCtx,
    /// Names bob with a condition on the encryption context (app = web).
    Cond,
    /// Trusts the other account (delegation) for Decrypt/Encrypt/DescribeKey.
    Cross,
    /// `"*"` principal for DescribeKey limited by kms:CallerAccount to the other account.
    Star,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Want {
    Allow,
    Deny,
}
use Want::{Allow, Deny};

struct Case {
    rule: &'static str,
    who: &'static str,
    action: &'static str,
    key: K,
    /// The encryption context's `app` (and `tier`) value.
    ctx: Option<(&'static str, &'static str)>,
    want: Want,
}

const fn c(
    rule: &'static str,
    who: &'static str,
    action: &'static str,
    key: K,
    ctx: Option<(&'static str, &'static str)>,
    want: Want,
) -> Case {
    Case {
        rule,
        who,
        action,
        key,
        ctx,
        want,
    }
}

const WEB: Option<(&str, &str)> = Some(("app", "web"));
const DB: Option<(&str, &str)> = Some(("app", "db"));
const GOLD: Option<(&str, &str)> = Some(("tier", "gold"));

#[rustfmt::skip]
const CASES: &[Case] = &[
    // Default key policy: root of the key's account is allowed everything.
    c("root of the key's account, default policy", "root", "DescribeKey", K::Default, None, Allow),
    c("root of the key's account, default policy", "root", "Encrypt", K::Default, None, Allow),
    c("root of the key's account, default policy", "root", "Decrypt", K::Default, None, Allow),
    c("root of the key's account, default policy", "root", "GenerateDataKey", K::Default, None, Allow),
    c("root of the key's account, default policy", "root", "GetKeyPolicy", K::Default, None, Allow),
    c("root of the key's account, default policy", "root", "CreateGrant", K::Default, None, Allow),
    // Default policy delegates to IAM: alice's identity policy allows Encrypt/Decrypt/Describe.
    c("delegation: identity policy allows", "alice", "Encrypt", K::Default, None, Allow),
    c("delegation: identity policy allows", "alice", "Decrypt", K::Default, None, Allow),
    c("delegation: identity policy allows (wildcard kms:Describe*)", "alice", "DescribeKey", K::Default, None, Allow),
    c("delegation: identity policy does not allow the action", "alice", "GenerateDataKey", K::Default, None, Deny),
    c("delegation: identity policy does not allow the action", "alice", "GetKeyPolicy", K::Default, None, Deny),
    c("delegation: identity policy does not allow the action", "alice", "CreateGrant", K::Default, None, Deny),
    c("delegation: user without identity policy", "bob", "DescribeKey", K::Default, None, Deny),
    c("delegation: user without identity policy", "bob", "Encrypt", K::Default, None, Deny),
    c("delegation: user without identity policy", "bob", "Decrypt", K::Default, None, Deny),
    c("delegation: identity kms:* allows", "carol", "GetKeyPolicy", K::Default, None, Allow),
    c("delegation: identity kms:* allows", "carol", "GenerateDataKey", K::Default, None, Allow),
    c("explicit deny in an identity policy wins", "carol", "Decrypt", K::Default, None, Deny),
    c("other account's root: default policy names only the key's account", "other-root", "DescribeKey", K::Default, None, Deny),
    c("other account's root: default policy names only the key's account", "other-root", "Decrypt", K::Default, None, Deny),
    c("other account's user: default policy names only the key's account", "dave", "Encrypt", K::Default, None, Deny),
    // A key policy naming alice directly: no identity policy needed for what it lists.
    c("key policy names the caller", "alice", "GenerateDataKey", K::Named, None, Allow),
    c("key policy names the caller (GenerateDataKey* wildcard)", "alice", "GenerateDataKeyWithoutPlaintext", K::Named, None, Allow),
    c("key policy names the caller", "alice", "Decrypt", K::Named, None, Allow),
    c("key policy names the caller, action not listed, identity policy silent", "alice", "GetKeyPolicy", K::Named, None, Deny),
    c("key policy names someone else; bob has no identity policy", "bob", "Encrypt", K::Named, None, Deny),
    c("key policy names someone else; bob has no identity policy", "bob", "GenerateDataKey", K::Named, None, Deny),
    c("root statement keeps root in", "root", "GetKeyPolicy", K::Named, None, Allow),
    c("identity kms:* through the root statement", "carol", "Encrypt", K::Named, None, Allow),
    c("identity deny still wins under a naming key policy", "carol", "Decrypt", K::Named, None, Deny),
    c("cross-account user not named", "dave", "Decrypt", K::Named, None, Deny),
    // Explicit deny in the key policy on a context condition.
    c("key-policy deny (StringNotEquals on context) beats root's allow", "root", "Decrypt", K::DenyCtx, None, Deny),
    c("key-policy deny does not apply when the condition fails", "root", "Decrypt", K::DenyCtx, GOLD, Allow),
    c("key-policy deny applies to a different context", "root", "Decrypt", K::DenyCtx, WEB, Deny),
    c("key-policy deny is for Decrypt only", "root", "Encrypt", K::DenyCtx, None, Allow),
    c("key-policy deny is for Decrypt only", "root", "GenerateDataKey", K::DenyCtx, None, Allow),
    c("key-policy deny beats the identity allow", "alice", "Decrypt", K::DenyCtx, None, Deny),
    c("key-policy deny not matched; identity allow via delegation", "alice", "Decrypt", K::DenyCtx, GOLD, Allow),
    c("key-policy deny beats a grant", "grantee", "Decrypt", K::DenyCtx, None, Deny),
    // Conditions on the encryption context for a named principal.
    c("StringEquals kms:EncryptionContext:app holds", "bob", "Encrypt", K::Cond, WEB, Allow),
    c("StringEquals kms:EncryptionContext:app fails", "bob", "Encrypt", K::Cond, DB, Deny),
    c("StringEquals on a missing context key fails", "bob", "Encrypt", K::Cond, None, Deny),
    c("StringEquals kms:EncryptionContext:app holds", "bob", "Decrypt", K::Cond, WEB, Allow),
    c("StringEquals kms:EncryptionContext:app fails", "bob", "Decrypt", K::Cond, DB, Deny),
    c("StringEquals kms:EncryptionContext:app holds", "bob", "GenerateDataKey", K::Cond, WEB, Allow),
    c("action not in the conditional statement", "bob", "DescribeKey", K::Cond, None, Deny),
    c("root statement unaffected by bob's condition", "root", "Encrypt", K::Cond, DB, Allow),
    // Cross-account: the key policy trusts the other account; its IAM must allow too.
    c("cross-account: key policy + other root (IAM allows root)", "other-root", "Decrypt", K::Cross, None, Allow),
    c("cross-account: key policy + other root (IAM allows root)", "other-root", "DescribeKey", K::Cross, None, Allow),
    c("cross-account: action not in key policy", "other-root", "GenerateDataKey", K::Cross, None, Deny),
    c("cross-account: action not in key policy", "other-root", "GetKeyPolicy", K::Cross, None, Deny),
    c("cross-account: both sides allow", "dave", "Decrypt", K::Cross, None, Allow),
    c("cross-account: both sides allow", "dave", "Encrypt", K::Cross, None, Allow),
    c("cross-account: identity side does not allow DescribeKey", "dave", "DescribeKey", K::Cross, None, Deny),
    c("cross-account: user without identity policy", "erin", "Decrypt", K::Cross, None, Deny),
    c("cross-account: user without identity policy", "erin", "Encrypt", K::Cross, None, Deny),
    c("same-account user via root statement + identity", "alice", "Encrypt", K::Cross, None, Allow),
    // "*" principal with kms:CallerAccount.
    c("\"*\" principal with kms:CallerAccount matching (IAM side: root)", "other-root", "DescribeKey", K::Star, None, Allow),
    c("\"*\" principal but IAM side silent", "erin", "DescribeKey", K::Star, None, Deny),
    c("\"*\" principal, identity allows", "dave", "Decrypt", K::Star, None, Deny),
    c("\"*\" principal, kms:CallerAccount does not match; default root statement covers", "alice", "DescribeKey", K::Star, None, Allow),
    c("\"*\" principal only for DescribeKey", "other-root", "Encrypt", K::Star, None, Deny),
    // Grants: allow on implicit deny, only for their operations and their grantee.
    c("grant allows its grantee (cross-account)", "grantee", "Decrypt", K::Default, None, Allow),
    c("grant allows only its operations", "grantee", "Encrypt", K::Default, None, Deny),
    c("grant allows only its operations", "grantee", "DescribeKey", K::Default, None, Deny),
    c("grant is for its grantee only", "erin", "Decrypt", K::Default, None, Deny),
    c("grant on one key does not reach another", "grantee", "Decrypt", K::Named, None, Deny),
    // DryRun: authorized → DryRunOperationException, unauthorized → AccessDenied.
    c("DryRun after authorization", "root", "DryRunEncrypt", K::Default, None, Allow),
    c("DryRun after authorization", "bob", "DryRunEncrypt", K::Default, None, Deny),
    c("DryRun after authorization", "alice", "DryRunDecrypt", K::Named, None, Allow),
    c("DryRun after authorization", "dave", "DryRunDecrypt", K::Default, None, Deny),
];

fn identities() -> IdentityConfig {
    let mut ids = IdentityConfig::empty();
    let mut policy = |account: &str, user: &str, doc: Value| {
        ids.add_user_policy(account, user, &doc.to_string())
            .unwrap();
    };
    policy(
        ACCOUNT,
        "alice",
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Action": ["kms:Encrypt", "kms:Decrypt", "kms:Describe*"], "Resource": "*"}]}),
    );
    policy(
        ACCOUNT,
        "carol",
        json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "kms:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "kms:Decrypt", "Resource": "*"}]}),
    );
    policy(
        OTHER_ACCOUNT,
        "dave",
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Action": ["kms:Decrypt", "kms:Encrypt"], "Resource": format!("arn:aws:kms:*:{ACCOUNT}:key/*")}]}),
    );
    ids.add_user(ACCOUNT, "bob");
    ids.add_user(OTHER_ACCOUNT, "erin");
    ids.add_user(OTHER_ACCOUNT, "grantee");
    ids
}

fn caller(who: &str) -> Caller {
    match who {
        "root" => root_caller(ACCOUNT),
        "other-root" => root_caller(OTHER_ACCOUNT),
        "alice" | "bob" | "carol" => user_caller(ACCOUNT, who),
        _ => user_caller(OTHER_ACCOUNT, who),
    }
}

fn key_policy(k: K) -> Option<Value> {
    let root = json!({"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")},
        "Action": "kms:*", "Resource": "*"});
    let user = |n: &str| format!("arn:aws:iam::{ACCOUNT}:user/{n}");
    let statements = match k {
        K::Default => return None,
        K::Named => vec![
            root,
            json!({"Effect": "Allow", "Principal": {"AWS": user("alice")},
            "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey*"], "Resource": "*"}),
        ],
        K::DenyCtx => vec![
            root,
            json!({"Effect": "Deny", "Principal": "*", "Action": "kms:Decrypt",
            "Resource": "*", "Condition": {"StringNotEquals": {"kms:EncryptionContext:tier": "gold"}}}),
        ],
        K::Cond => vec![
            root,
            json!({"Effect": "Allow", "Principal": {"AWS": [user("bob")]},
            "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"], "Resource": "*",
            "Condition": {"StringEquals": {"kms:EncryptionContext:app": "web"}}}),
        ],
        K::Cross => vec![
            root,
            json!({"Effect": "Allow", "Principal": {"AWS": OTHER_ACCOUNT},
            "Action": ["kms:Decrypt", "kms:Encrypt", "kms:DescribeKey"], "Resource": "*"}),
        ],
        K::Star => vec![
            root,
            json!({"Effect": "Allow", "Principal": {"AWS": "*"},
            "Action": "kms:DescribeKey", "Resource": "*",
            "Condition": {"StringEquals": {"kms:CallerAccount": OTHER_ACCOUNT}}}),
        ],
    };
    Some(json!({"Version": "2012-10-17", "Statement": statements}))
}

#[tokio::test]
async fn allow_deny_table() {
    assert!(CASES.len() >= 60, "{} cases", CASES.len());
    let f = Fixture::with_identities(identities());
    let mut arns: BTreeMap<&str, String> = BTreeMap::new();
    for k in [K::Default, K::Named, K::DenyCtx, K::Cond, K::Cross, K::Star] {
        let body = match key_policy(k) {
            Some(p) => json!({"Policy": p.to_string()}),
            None => json!({}),
        };
        let v = f.ok("CreateKey", body).await;
        arns.insert(
            format!("{k:?}").leak(),
            v["KeyMetadata"]["Arn"].as_str().unwrap().to_string(),
        );
    }
    let arn = |k: K| arns[format!("{k:?}").as_str()].clone();
    // The grantee (another account, no policies) may Decrypt with the Default and DenyCtx keys.
    for k in [K::Default, K::DenyCtx] {
        f.ok(
            "CreateGrant",
            json!({"KeyId": arn(k), "Operations": ["Decrypt"],
                   "GranteePrincipal": format!("arn:aws:iam::{OTHER_ACCOUNT}:user/grantee")}),
        )
        .await;
    }
    let mut denials = 0;
    let mut failures = Vec::new();
    for case in CASES {
        let context: Value = match case.ctx {
            Some((k, v)) => json!({ k: v }),
            None => json!({}),
        };
        let key = arn(case.key);
        let (action, dry) = match case.action.strip_prefix("DryRun") {
            Some(a) => (a, true),
            None => (case.action, false),
        };
        let mut body = match action {
            "Decrypt" => {
                // The blob is made by whoever may: encrypt with the same context under a
                // key-policy-free path (root, or root with the context the deny allows).
                let blob = f
                    .ok(
                        "Encrypt",
                        json!({"KeyId": key, "Plaintext": b64(b"secret"), "EncryptionContext": context}),
                    )
                    .await["CiphertextBlob"]
                    .clone();
                json!({"CiphertextBlob": blob, "EncryptionContext": context})
            }
            "Encrypt" => {
                json!({"KeyId": key, "Plaintext": b64(b"secret"), "EncryptionContext": context})
            }
            "GenerateDataKey" | "GenerateDataKeyWithoutPlaintext" => {
                json!({"KeyId": key, "KeySpec": "AES_256", "EncryptionContext": context})
            }
            "CreateGrant" => json!({"KeyId": key, "Operations": ["Decrypt"],
                "GranteePrincipal": format!("arn:aws:iam::{ACCOUNT}:user/not-in-this-table")}),
            _ => json!({"KeyId": key}),
        };
        if dry {
            body["DryRun"] = json!(true);
        }
        let who = caller(case.who);
        let result = f.call_as(&who, action, body).await;
        let got = match &result {
            Ok(_) => Allow,
            Err(e) if dry && e.code == "DryRunOperationException" => Allow,
            Err(e) if e.code == "AccessDeniedException" => {
                let head = format!(
                    "User: {} is not authorized to perform: kms:{action} on resource: {key} ",
                    who.identity.arn
                );
                assert!(e.message.starts_with(&head), "{}: {}", case.rule, e.message);
                denials += 1;
                Deny
            }
            Err(e) => panic!("{} ({} {action}): unexpected {e}", case.rule, case.who),
        };
        if got != case.want {
            failures.push(format!(
                "{} — {} {} on {:?} ctx {:?}: want {:?}, got {:?}",
                case.rule, case.who, case.action, case.key, case.ctx, case.want, got
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Every denial is in the trail of the caller's account with its code and message.
    let trail = f.trail();
    let denied_records = trail
        .iter()
        .filter(|r| {
            r["errorCode"] == "AccessDeniedException"
                && r["recipientAccountId"] == r["userIdentity"]["accountId"]
        })
        .count();
    assert_eq!(denied_records, denials);
    assert!(trail
        .iter()
        .filter(|r| r["errorCode"] == "AccessDeniedException")
        .all(|r| r["errorMessage"].as_str().unwrap().starts_with("User: ")));
}
