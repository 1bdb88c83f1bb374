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
pub const KEYS: [K; 10] = [
    K::Default,
    K::Named,
    K::DenyCtx,
    K::Cond,
    K::Cross,
    K::Star,
    K::Tls,
    K::GrantCond,
    K::Chain,
    K::AcctGrant,
];

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
    /// Root statement plus the standard deny of every request not made over TLS
    /// (`aws:SecureTransport` false): this server listens in plain HTTP.
    Tls,
    /// Root statement; bob may CreateGrant only for himself (kms:GranteePrincipal), only
    /// Decrypt/Encrypt (ForAllValues kms:GrantOperations), only with the account root as retiring
    /// principal when he names one (kms:RetiringPrincipal); alice only for AWS resources
    /// (kms:GrantIsForAWSResource true, which no request here is).
    GrantCond,
    /// The default policy and a grant to `grantee` for Decrypt and CreateGrant under the
    /// constraint app=web: grants made through it must be no broader.
    Chain,
    /// The default policy and a Decrypt grant to the other account (its root ARN), which its
    /// users reach only through their IAM policies.
    AcctGrant,
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
    // aws:SecureTransport is false on the plain-HTTP listener: the deny-non-TLS statement applies.
    c("aws:SecureTransport false: deny-non-TLS statement beats root's allow", "root", "DescribeKey", K::Tls, None, Deny),
    c("aws:SecureTransport false: deny-non-TLS statement beats root's allow", "root", "Encrypt", K::Tls, None, Deny),
    c("aws:SecureTransport false: deny-non-TLS statement beats the identity allow", "carol", "GenerateDataKey", K::Tls, None, Deny),
    // Grant condition keys on CreateGrant.
    c("kms:GranteePrincipal: a grant for himself", "bob", "CreateGrant:self", K::GrantCond, None, Allow),
    c("kms:GranteePrincipal: a grant for someone else", "bob", "CreateGrant", K::GrantCond, None, Deny),
    c("kms:GrantOperations: Encrypt is among the allowed", "bob", "CreateGrant:self:Encrypt", K::GrantCond, None, Allow),
    c("kms:GrantOperations (ForAllValues): ReEncryptFrom is not allowed", "bob", "CreateGrant:self:Decrypt+ReEncryptFrom", K::GrantCond, None, Deny),
    c("kms:GrantOperations (ForAllValues): CreateGrant is not allowed", "bob", "CreateGrant:self:Decrypt+CreateGrant", K::GrantCond, None, Deny),
    c("kms:RetiringPrincipal: the account root", "bob", "CreateGrant:self:retired-by-root", K::GrantCond, None, Allow),
    c("kms:RetiringPrincipal: someone else", "bob", "CreateGrant:self:retired-by-alice", K::GrantCond, None, Deny),
    c("kms:GrantIsForAWSResource is false for a principal's own request", "alice", "CreateGrant:self", K::GrantCond, None, Deny),
    c("the grant bob made for himself above lets him Decrypt", "bob", "Decrypt", K::GrantCond, None, Allow),
    c("neither the policy nor his grants give bob GenerateDataKey", "bob", "GenerateDataKey", K::GrantCond, None, Deny),
    // CreateGrant through a grant: only as broad as the parent.
    c("grant with CreateGrant: child no broader (same operation, same constraint)", "grantee", "CreateGrant:web", K::Chain, None, Allow),
    c("grant with CreateGrant: child stricter (Equals within the parent's pairs)", "grantee", "CreateGrant:web-equals", K::Chain, None, Allow),
    c("grant with CreateGrant: child may pass CreateGrant on", "grantee", "CreateGrant:web:Decrypt+CreateGrant", K::Chain, None, Allow),
    c("grant escalation: an operation the parent lacks", "grantee", "CreateGrant:web:Encrypt", K::Chain, None, Deny),
    c("grant escalation: more operations than the parent", "grantee", "CreateGrant:web:Decrypt+ReEncryptFrom", K::Chain, None, Deny),
    c("grant escalation: dropping the parent's constraint", "grantee", "CreateGrant", K::Chain, None, Deny),
    c("grant escalation: a different constraint", "grantee", "CreateGrant:db", K::Chain, None, Deny),
    c("grant escalation: a grant for oneself without the constraint", "grantee", "CreateGrant:self", K::Chain, None, Deny),
    c("grant with CreateGrant is for its grantee only", "erin", "CreateGrant:web", K::Chain, None, Deny),
    c("the chain grant's constraint holds for Decrypt", "grantee", "Decrypt", K::Chain, WEB, Allow),
    c("the chain grant's constraint holds for Decrypt", "grantee", "Decrypt", K::Chain, DB, Deny),
    c("the chain grant has no DescribeKey", "grantee", "DescribeKey", K::Chain, None, Deny),
    // A grant to an account delegates to that account's IAM policies.
    c("grant to an account: its root", "other-root", "Decrypt", K::AcctGrant, None, Allow),
    c("grant to an account: a user whose IAM policy allows", "dave", "Decrypt", K::AcctGrant, None, Allow),
    c("grant to an account: a user without IAM permission", "erin", "Decrypt", K::AcctGrant, None, Deny),
    c("grant to an account: a user of the account named in no grant", "grantee", "Decrypt", K::AcctGrant, None, Deny),
    c("grant to an account: only its operations", "other-root", "Encrypt", K::AcctGrant, None, Deny),
];

/// One CreateGrant request of the table, from its action name: `CreateGrant[:grantee[:ops]]`,
/// the grantee `self` (the caller), `web`/`db`/`web-equals` (someone outside the table, under a
/// constraint on `app`) or absent (someone outside the table, no constraint), `retired-by-root`
/// or `retired-by-alice` for a retiring principal, operations joined by `+` (default Decrypt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRequest {
    pub grantee: String,
    pub operations: Vec<String>,
    /// (`EncryptionContextSubset` or, when `equals`, `EncryptionContextEquals`) {app: value}.
    pub app: Option<&'static str>,
    pub equals: bool,
    pub retiring: Option<String>,
}

pub const OUTSIDER: &str = "arn:aws:iam::111122223333:user/not-in-this-table";

pub fn grant_request(action: &str, caller_arn: &str) -> Option<GrantRequest> {
    let rest = action.strip_prefix("CreateGrant")?;
    let mut parts = rest.split(':').skip(1);
    let mut g = GrantRequest {
        grantee: OUTSIDER.to_string(),
        operations: vec!["Decrypt".to_string()],
        app: None,
        equals: false,
        retiring: None,
    };
    for part in parts.by_ref() {
        match part {
            "self" => g.grantee = caller_arn.to_string(),
            "web" => g.app = Some("web"),
            "db" => g.app = Some("db"),
            "web-equals" => {
                g.app = Some("web");
                g.equals = true;
            }
            "retired-by-root" => g.retiring = Some(format!("arn:aws:iam::{ACCOUNT}:root")),
            "retired-by-alice" => g.retiring = Some(format!("arn:aws:iam::{ACCOUNT}:user/alice")),
            ops => g.operations = ops.split('+').map(str::to_string).collect(),
        }
    }
    Some(g)
}

/// The action a table case calls (`DryRun` and CreateGrant variants removed).
pub fn base_action(action: &str) -> &str {
    let a = action.trim_start_matches("DryRun");
    a.split(':').next().unwrap_or(a)
}

/// A grant the table's setup creates (by the key's root) before the cases run.
pub struct SetupGrant {
    pub key: K,
    pub grantee: String,
    pub operations: &'static [&'static str],
    /// `EncryptionContextSubset` {app: value}.
    pub app: Option<&'static str>,
}

pub fn setup_grants() -> Vec<SetupGrant> {
    let grantee = format!("arn:aws:iam::{OTHER_ACCOUNT}:user/grantee");
    vec![
        SetupGrant {
            key: K::Default,
            grantee: grantee.clone(),
            operations: &["Decrypt"],
            app: None,
        },
        SetupGrant {
            key: K::DenyCtx,
            grantee: grantee.clone(),
            operations: &["Decrypt"],
            app: None,
        },
        SetupGrant {
            key: K::Chain,
            grantee,
            operations: &["Decrypt", "CreateGrant"],
            app: Some("web"),
        },
        SetupGrant {
            key: K::AcctGrant,
            grantee: format!("arn:aws:iam::{OTHER_ACCOUNT}:root"),
            operations: &["Decrypt"],
            app: None,
        },
    ]
}

impl SetupGrant {
    pub fn body(&self, key_arn: &str) -> Value {
        let mut body = json!({"KeyId": key_arn, "GranteePrincipal": self.grantee, "Operations": self.operations});
        if let Some(app) = self.app {
            body["Constraints"] = json!({"EncryptionContextSubset": {"app": app}});
        }
        body
    }
}

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
        K::Tls => vec![
            root,
            json!({"Sid": "DenyNonTls", "Effect": "Deny", "Principal": "*", "Action": "kms:*",
            "Resource": "*", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}),
        ],
        K::GrantCond => vec![
            root,
            json!({"Effect": "Allow", "Principal": {"AWS": user("bob")}, "Action": "kms:CreateGrant",
            "Resource": "*", "Condition": {
                "StringEquals": {"kms:GranteePrincipal": user("bob")},
                "ForAllValues:StringEquals": {"kms:GrantOperations": ["Decrypt", "Encrypt"]},
                "StringEqualsIfExists": {"kms:RetiringPrincipal": format!("arn:aws:iam::{ACCOUNT}:root")}}}),
            json!({"Effect": "Allow", "Principal": {"AWS": user("alice")}, "Action": "kms:CreateGrant",
            "Resource": "*", "Condition": {"Bool": {"kms:GrantIsForAWSResource": true}}}),
        ],
        K::Chain | K::AcctGrant => return None,
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
    let caller_arn = match who(case.who) {
        (account, None) => format!("arn:aws:iam::{account}:root"),
        (account, Some(user)) => format!("arn:aws:iam::{account}:user/{user}"),
    };
    if let Some(g) = grant_request(action, &caller_arn) {
        let mut body = json!({"KeyId": key_arn, "Operations": g.operations,
            "GranteePrincipal": g.grantee});
        if let Some(app) = g.app {
            let kind = if g.equals {
                "EncryptionContextEquals"
            } else {
                "EncryptionContextSubset"
            };
            body["Constraints"] = json!({ kind: {"app": app} });
        }
        if let Some(r) = g.retiring {
            body["RetiringPrincipal"] = json!(r);
        }
        if dry {
            body["DryRun"] = json!(true);
        }
        return ("CreateGrant", body);
    }
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
        _ => json!({"KeyId": key_arn}),
    };
    if dry {
        body["DryRun"] = json!(true);
    }
    (action, body)
}
