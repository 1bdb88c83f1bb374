//! The allow/deny table shared by the engine's test (through `Engine::call_kms`) and the wire's
//! (through the real server and aws-sdk-kms): callers, keys with their policies, and cases, each
//! naming the AWS rule it checks. Self-contained so both test binaries include it by path.

#![allow(dead_code)] // each including test binary uses part of it

use keyward_kms::IdentityConfig;
use serde_json::{json, Value};

/// The keys' account and another account.
pub const ACCOUNT: &str = "111122223333";
pub const OTHER_ACCOUNT: &str = "444455556666";

/// Every key of the table, in creation order.
pub const KEYS: [K; 6] = [K::Default, K::Named, K::DenyCtx, K::Cond, K::Cross, K::Star];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum K {
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
pub enum Want {
    Allow,
    Deny,
}
pub use Want::{Allow, Deny};

pub struct Case {
    pub rule: &'static str,
    pub who: &'static str,
    pub action: &'static str,
    pub key: K,
    /// The encryption context's `app` (and `tier`) value.
    pub ctx: Option<(&'static str, &'static str)>,
    pub want: Want,
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
pub const CASES: &[Case] = &[
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

/// The IAM users of both accounts and their identity policies.
pub fn identities() -> IdentityConfig {
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

/// The key policy of each key (None: the default key policy).
pub fn key_policy(k: K) -> Option<Value> {
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

/// The (account, IAM user name or None for root) a table caller stands for.
pub fn who(name: &str) -> (&'static str, Option<&str>) {
    match name {
        "root" => (ACCOUNT, None),
        "other-root" => (OTHER_ACCOUNT, None),
        "alice" | "bob" | "carol" => (ACCOUNT, Some(name)),
        _ => (OTHER_ACCOUNT, Some(name)),
    }
}

/// The request body of a table case; `decrypt_blob` is a ciphertext made under the case's key
/// with the case's context.
pub fn body(case: &Case, key_arn: &str, decrypt_blob: Option<&Value>) -> (&'static str, Value) {
    let context: Value = match case.ctx {
        Some((k, v)) => json!({ k: v }),
        None => json!({}),
    };
    let (action, dry) = match case.action.strip_prefix("DryRun") {
        Some(a) => (a, true),
        None => (case.action, false),
    };
    let mut body = match action {
        "Decrypt" => {
            json!({"CiphertextBlob": decrypt_blob.expect("a blob"), "EncryptionContext": context})
        }
        "Encrypt" => {
            json!({"KeyId": key_arn, "Plaintext": "c2VjcmV0", "EncryptionContext": context})
        }
        "GenerateDataKey" | "GenerateDataKeyWithoutPlaintext" => {
            json!({"KeyId": key_arn, "KeySpec": "AES_256", "EncryptionContext": context})
        }
        "CreateGrant" => json!({"KeyId": key_arn, "Operations": ["Decrypt"],
            "GranteePrincipal": format!("arn:aws:iam::{ACCOUNT}:user/not-in-this-table")}),
        _ => json!({"KeyId": key_arn}),
    };
    if dry {
        body["DryRun"] = json!(true);
    }
    (action, body)
}
