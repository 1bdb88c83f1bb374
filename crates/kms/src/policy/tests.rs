//! The policy module's tests: a table of authorization cases, each naming the AWS rule it
//! checks; the malformed-document cases with their errors; messages, the default policy, the
//! lockout check; and a property test that parsing never panics.

use std::collections::BTreeMap;

use super::*;

const A: &str = "111122223333";
const B: &str = "444455556666";
const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const OTHER_KEY: &str =
    "arn:aws:kms:us-east-1:111122223333:key/ffffffff-12ab-34cd-56ef-1234567890ab";

const A_ROOT: &str = "arn:aws:iam::111122223333:root";
const ALICE: &str = "arn:aws:iam::111122223333:user/alice";
const CAROL: &str = "arn:aws:iam::111122223333:user/carol";
const ROLE: &str = "arn:aws:iam::111122223333:role/keyward/cluster-7";
const SESSION: &str = "arn:aws:sts::111122223333:assumed-role/cluster-7/node-1";
const OTHER_ROLE: &str = "arn:aws:iam::111122223333:role/other";
const B_ROOT: &str = "arn:aws:iam::444455556666:root";
const BOB: &str = "arn:aws:iam::444455556666:user/bob";
const B_ROLE: &str = "arn:aws:iam::444455556666:role/platform";

/// The IAM state when policies are saved: ARN -> unique id.
const IAM_AT_SAVE: &[(&str, &str)] = &[
    (ALICE, "AIDAALICEEXAMPLE0001"),
    (CAROL, "AIDACAROLEXAMPLE0001"),
    (ROLE, "AROACLUSTERSEVEN0001"),
    (OTHER_ROLE, "AROAOTHERROLE0000001"),
    (BOB, "AIDABOBEXAMPLE000001"),
    (B_ROLE, "AROAPLATFORM00000001"),
];

fn resolve(arn: &str) -> Option<String> {
    IAM_AT_SAVE
        .iter()
        .find(|(a, _)| *a == arn)
        .map(|(_, id)| id.to_string())
}

#[derive(Clone, Copy, Debug)]
enum Who {
    RootA,
    Alice,
    Carol,
    /// A session of ROLE as saved.
    Session,
    /// Another session of ROLE.
    Session2,
    /// A session of ROLE after it was deleted and re-created (new unique id).
    RecreatedSession,
    /// A session of OTHER_ROLE.
    OtherRoleSession,
    RootB,
    Bob,
    BSession,
    Ec2Service,
}

fn caller(who: Who) -> Principal<'static> {
    let c = |kind, arn, account, principal_id, role_arn| Principal {
        kind,
        arn,
        account,
        principal_id,
        role_arn,
        issuer_deleted: false,
    };
    use PrincipalKind::*;
    match who {
        Who::RootA => c(Root, A_ROOT, A, A, None),
        Who::Alice => c(User, ALICE, A, "AIDAALICEEXAMPLE0001", None),
        Who::Carol => c(User, CAROL, A, "AIDACAROLEXAMPLE0001", None),
        Who::Session => c(
            AssumedRole,
            SESSION,
            A,
            "AROACLUSTERSEVEN0001:node-1",
            Some(ROLE),
        ),
        Who::Session2 => c(
            AssumedRole,
            "arn:aws:sts::111122223333:assumed-role/cluster-7/node-2",
            A,
            "AROACLUSTERSEVEN0001:node-2",
            Some(ROLE),
        ),
        Who::RecreatedSession => c(
            AssumedRole,
            SESSION,
            A,
            "AROACLUSTERSEVEN0002:node-1",
            Some(ROLE),
        ),
        Who::OtherRoleSession => c(
            AssumedRole,
            "arn:aws:sts::111122223333:assumed-role/other/node-1",
            A,
            "AROAOTHERROLE0000001:node-1",
            Some(OTHER_ROLE),
        ),
        Who::RootB => c(Root, B_ROOT, B, B, None),
        Who::Bob => c(User, BOB, B, "AIDABOBEXAMPLE000001", None),
        Who::BSession => c(
            AssumedRole,
            "arn:aws:sts::444455556666:assumed-role/platform/s1",
            B,
            "AROAPLATFORM00000001:s1",
            None,
        ),
        Who::Ec2Service => c(Service, "ec2.amazonaws.com", A, "ec2.amazonaws.com", None),
    }
}

/// Expected decisions, short.
const ALLOW: Decision = Decision::Allow;
const DENY_KEY: Decision = Decision::ExplicitDeny(PolicyType::ResourceBased);
const DENY_IAM: Decision = Decision::ExplicitDeny(PolicyType::IdentityBased);
const NO_KEY: Decision = Decision::ImplicitDeny(PolicyType::ResourceBased);
const NO_IAM: Decision = Decision::ImplicitDeny(PolicyType::IdentityBased);

/// One authorization case.
#[derive(Clone, Copy)]
struct Case {
    rule: &'static str,
    /// Statements of the key policy (a JSON array's contents), or "DEFAULT" for the default policy.
    key_policy: &'static str,
    /// Statements of the caller's identity policy, "" for none.
    identity: &'static str,
    who: Who,
    action: &'static str,
    resource: &'static str,
    ec: &'static [(&'static str, &'static str)],
    via_service: Option<&'static str>,
    grant_ops: &'static [&'static str],
    grant_for_aws: Option<bool>,
    grantee: Option<&'static str>,
    algorithm: Option<&'static str>,
    source_ip: Option<&'static str>,
    now: Option<i64>,
    expect: Decision,
}

const BASE: Case = Case {
    rule: "",
    key_policy: "DEFAULT",
    identity: "",
    who: Who::Alice,
    action: "Decrypt",
    resource: KEY,
    ec: &[],
    via_service: None,
    grant_ops: &[],
    grant_for_aws: None,
    grantee: None,
    algorithm: None,
    source_ip: None,
    now: None,
    expect: ALLOW,
};

const ALLOW_ALICE_DECRYPT: &str = r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/alice"},"Action":"kms:Decrypt","Resource":"*"}"#;
const ALLOW_ROLE_GUIDE: &str = r#"
    {"Sid":"Allow keyward cluster role basic key access","Effect":"Allow",
     "Principal":{"AWS":"arn:aws:iam::111122223333:role/keyward/cluster-7"},
     "Action":["kms:DescribeKey","kms:GenerateDataKey*","kms:Decrypt"],"Resource":"*"},
    {"Sid":"Allow keyward cluster role to create grants for encrypted disks","Effect":"Allow",
     "Principal":{"AWS":"arn:aws:iam::111122223333:role/keyward/cluster-7"},
     "Action":["kms:CreateGrant"],"Resource":"*"}"#;
const ROOT_A_ALL: &str = r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}"#;
const IAM_DECRYPT: &str = r#"{"Effect":"Allow","Action":"kms:Decrypt","Resource":"*"}"#;
const IAM_ALL_KMS: &str = r#"{"Effect":"Allow","Action":"kms:*","Resource":"*"}"#;
/// Any principal (root of A via its account, everyone else directly) with a condition.
macro_rules! any_with {
    ($action:literal, $cond:literal) => {
        concat!(
            r#"{"Effect":"Allow","Principal":"*","Action":""#,
            $action,
            r#"","Resource":"*","Condition":"#,
            $cond,
            "}"
        )
    };
}

fn cases() -> Vec<Case> {
    vec![
        // --- the default key policy: the account root, which delegates to IAM ---
        Case {
            rule: "default policy: the account root is allowed",
            who: Who::RootA,
            ..BASE
        },
        Case {
            rule: "default policy delegates to IAM: a user without an identity policy is refused",
            expect: NO_IAM,
            ..BASE
        },
        Case {
            rule: "default policy delegates to IAM: the user's identity policy allows",
            identity: IAM_DECRYPT,
            ..BASE
        },
        Case {
            rule: "identity policy must cover the action",
            identity: IAM_DECRYPT,
            action: "Encrypt",
            expect: NO_IAM,
            ..BASE
        },
        Case {
            rule: "identity policy Resource must cover the key",
            identity: r#"{"Effect":"Allow","Action":"kms:Decrypt","Resource":"arn:aws:kms:us-east-1:111122223333:key/ffffffff-12ab-34cd-56ef-1234567890ab"}"#,
            expect: NO_IAM,
            ..BASE
        },
        Case {
            rule: "identity policy naming the key ARN allows",
            identity: r#"{"Effect":"Allow","Action":"kms:*","Resource":"arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"}"#,
            ..BASE
        },
        Case {
            rule: "a role session's identity policy counts under delegation",
            who: Who::Session,
            identity: IAM_ALL_KMS,
            action: "GenerateDataKey",
            ..BASE
        },
        Case {
            rule: "default policy does not let another account in",
            who: Who::Bob,
            identity: IAM_ALL_KMS,
            expect: NO_KEY,
            ..BASE
        },
        Case {
            rule: "default policy does not let another account's root in",
            who: Who::RootB,
            expect: NO_KEY,
            ..BASE
        },
        // --- principals named directly ---
        Case {
            rule: "key policy naming the user allows without an identity policy",
            key_policy: ALLOW_ALICE_DECRYPT,
            ..BASE
        },
        Case {
            rule: "key policy naming the user allows only its actions",
            key_policy: ALLOW_ALICE_DECRYPT,
            action: "Encrypt",
            expect: NO_KEY,
            ..BASE
        },
        Case {
            rule: "key policy naming a user does not allow another user",
            key_policy: ALLOW_ALICE_DECRYPT,
            who: Who::Carol,
            identity: IAM_ALL_KMS,
            expect: NO_KEY,
            ..BASE
        },
        Case {
            rule: "without the account root statement, IAM policies are ignored",
            key_policy: ALLOW_ALICE_DECRYPT,
            who: Who::RootA,
            expect: NO_KEY,
            ..BASE
        },
        Case {
            rule: "role principal matches a session of the role (guide statement 1)",
            key_policy: ALLOW_ROLE_GUIDE,
            who: Who::Session,
            action: "GenerateDataKey",
            ..BASE
        },
        Case {
            rule: "role principal matches every session of the role",
            key_policy: ALLOW_ROLE_GUIDE,
            who: Who::Session2,
            action: "DescribeKey",
            ..BASE
        },
        Case {
            rule: "guide statement 2: the role may CreateGrant",
            key_policy: ALLOW_ROLE_GUIDE,
            who: Who::Session,
            action: "CreateGrant",
            ..BASE
        },
        Case {
            rule: "guide policy does not allow the role to ScheduleKeyDeletion",
            key_policy: ALLOW_ROLE_GUIDE,
            who: Who::Session,
            action: "ScheduleKeyDeletion",
            expect: NO_KEY,
            ..BASE
        },
        Case {
            rule: "role re-created under the same name no longer matches (unique id)",
            key_policy: ALLOW_ROLE_GUIDE,
            who: Who::RecreatedSession,
            expect: NO_KEY,
            ..BASE
        },
        Case {
            rule: "role principal does not match another role's session",
            key_policy: ALLOW_ROLE_GUIDE,
            who: Who::OtherRoleSession,
            expect: NO_KEY,
            ..BASE
        },
        Case {
            rule: "session ARN principal matches that session",
            key_policy: r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:sts::111122223333:assumed-role/cluster-7/node-1"},"Action":"kms:*","Resource":"*"}"#,
            who: Who::Session,
            ..BASE
        },
        Case {
            rule: "session ARN principal does not match another session",
            key_policy: r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:sts::111122223333:assumed-role/cluster-7/node-1"},"Action":"kms:*","Resource":"*"}"#,
            who: Who::Session2,
            expect: NO_KEY,
            ..BASE
        },
        Case {
            rule: "unique-id principal (as AWS shows a deleted role) matches by id",
            key_policy: r#"{"Effect":"Allow","Principal":{"AWS":"AROACLUSTERSEVEN0001"},"Action":"kms:*","Resource":"*"}"#,
            who: Who::Session,
            ..BASE
        },
        Case {
            rule: "Principal \"*\" allows a same-account user directly",
            key_policy: r#"{"Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*"}"#,
            ..BASE
        },
        Case {
            rule: "Principal {\"AWS\":\"*\"} cross-account still needs the identity policy",
            key_policy: r#"{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"kms:Decrypt","Resource":"*"}"#,
            who: Who::Bob,
            expect: NO_IAM,
            ..BASE
        },
        Case {
            rule: "Principal \"*\" cross-account with identity policy allows",
            key_policy: r#"{"Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*"}"#,
            who: Who::Bob,
            identity: IAM_DECRYPT,
            ..BASE
        },
        Case {
            rule: "bare account id principal is the account root",
            key_policy: r#"{"Effect":"Allow","Principal":{"AWS":"111122223333"},"Action":"kms:*","Resource":"*"}"#,
            identity: IAM_DECRYPT,
            ..BASE
        },
        Case {
            rule: "service principal matches the service only",
            key_policy: r#"{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"kms:*","Resource":"*"}"#,
            who: Who::Ec2Service,
            ..BASE
        },
        Case {
            rule: "service principal does not match a user",
            key_policy: r#"{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"kms:*","Resource":"*"}"#,
            identity: IAM_ALL_KMS,
            expect: NO_KEY,
            ..BASE
        },
        // --- explicit deny wins ---
        Case {
            rule: "explicit deny in the key policy beats an identity allow",
            key_policy: r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"},{"Effect":"Deny","Principal":{"AWS":"arn:aws:iam::111122223333:user/alice"},"Action":"kms:Decrypt","Resource":"*"}"#,
            identity: IAM_ALL_KMS,
            expect: DENY_KEY,
            ..BASE
        },
        Case {
            rule: "explicit deny in the identity policy beats a key policy allow",
            key_policy: ALLOW_ALICE_DECRYPT,
            identity: r#"{"Effect":"Deny","Action":"kms:Decrypt","Resource":"*"}"#,
            expect: DENY_IAM,
            ..BASE
        },
        Case {
            rule: "Deny to \"*\" beats the root's allow",
            key_policy: r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"},{"Effect":"Deny","Principal":"*","Action":"kms:Decrypt","Resource":"*"}"#,
            who: Who::RootA,
            expect: DENY_KEY,
            ..BASE
        },
        Case {
            rule: "Deny naming the account applies to its users",
            key_policy: r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/alice"},"Action":"kms:*","Resource":"*"},{"Effect":"Deny","Principal":{"AWS":"111122223333"},"Action":"kms:Decrypt","Resource":"*"}"#,
            expect: DENY_KEY,
            ..BASE
        },
        Case {
            rule: "Deny of another action does not deny this one",
            key_policy: r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/alice"},"Action":"kms:*","Resource":"*"},{"Effect":"Deny","Principal":"*","Action":"kms:Encrypt","Resource":"*"}"#,
            ..BASE
        },
        Case {
            rule: "Deny listed before the Allow still wins",
            key_policy: r#"{"Effect":"Deny","Principal":{"AWS":"arn:aws:iam::111122223333:role/keyward/cluster-7"},"Action":"kms:Decrypt","Resource":"*"},{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}"#,
            who: Who::Session,
            expect: DENY_KEY,
            ..BASE
        },
        // --- action wildcards and case ---
        Case {
            rule: "kms:GenerateDataKey* covers GenerateDataKeyWithoutPlaintext",
            key_policy: ALLOW_ROLE_GUIDE,
            who: Who::Session,
            action: "GenerateDataKeyWithoutPlaintext",
            ..BASE
        },
        Case {
            rule: "kms:GenerateDataKey* covers GenerateDataKeyPair",
            key_policy: ALLOW_ROLE_GUIDE,
            who: Who::Session,
            action: "GenerateDataKeyPair",
            ..BASE
        },
        Case {
            rule: "kms:GenerateDataKey* does not cover Encrypt",
            key_policy: ALLOW_ROLE_GUIDE,
            who: Who::Session,
            action: "Encrypt",
            expect: NO_KEY,
            ..BASE
        },
        Case {
            rule: "action names are case-insensitive",
            key_policy: r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/alice"},"Action":"KMS:dEcRyPt","Resource":"*"}"#,
            ..BASE
        },
        Case {
            rule: "'?' matches one character in an action",
            key_policy: r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/alice"},"Action":"kms:?ecrypt","Resource":"*"}"#,
            ..BASE
        },
        Case {
            rule: "kms:ReEncrypt* covers ReEncryptFrom",
            key_policy: r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/alice"},"Action":"kms:ReEncrypt*","Resource":"*"}"#,
            action: "ReEncryptFrom",
            ..BASE
        },
        Case {
            rule: "Action \"*\" covers every action",
            key_policy: r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/alice"},"Action":"*","Resource":"*"}"#,
            action: "PutKeyPolicy",
            ..BASE
        },
        Case {
            rule: "another service's actions do not cover KMS",
            key_policy: r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/alice"},"Action":"s3:*","Resource":"*"}"#,
            expect: NO_KEY,
            ..BASE
        },
        Case {
            rule: "an identity policy for another service does not cover KMS",
            identity: r#"{"Effect":"Allow","Action":"s3:*","Resource":"*"}"#,
            expect: NO_IAM,
            ..BASE
        },
        // --- NotAction / NotPrincipal / NotResource ---
        Case {
            rule: "Allow with NotAction allows the other actions",
            key_policy: r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/alice"},"NotAction":"kms:Decrypt","Resource":"*"}"#,
            action: "Encrypt",
            ..BASE
        },
        Case {
            rule: "Allow with NotAction does not allow the listed action",
            key_policy: r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/alice"},"NotAction":"kms:Decrypt","Resource":"*"}"#,
            expect: NO_KEY,
            ..BASE
        },
        Case {
            rule: "Deny with NotAction denies everything else",
            key_policy: r#"{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"},{"Effect":"Deny","Principal":"*","NotAction":["kms:Decrypt","kms:DescribeKey"],"Resource":"*"}"#,
            action: "ScheduleKeyDeletion",
            expect: DENY_KEY,
            ..BASE
        },
        Case {
            rule: "Deny with NotAction leaves the listed actions allowed",
            key_policy: r#"{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"},{"Effect":"Deny","Principal":"*","NotAction":["kms:Decrypt","kms:DescribeKey"],"Resource":"*"}"#,
            ..BASE
        },
        Case {
            rule: "Deny with NotPrincipal spares the listed principal",
            key_policy: r#"{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"},{"Effect":"Deny","NotPrincipal":{"AWS":"arn:aws:iam::111122223333:user/alice"},"Action":"kms:*","Resource":"*"}"#,
            ..BASE
        },
        Case {
            rule: "Deny with NotPrincipal denies everyone else",
            key_policy: r#"{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"},{"Effect":"Deny","NotPrincipal":{"AWS":"arn:aws:iam::111122223333:user/alice"},"Action":"kms:*","Resource":"*"}"#,
            who: Who::Session,
            expect: DENY_KEY,
            ..BASE
        },
        Case {
            rule: "NotPrincipal naming a role spares its sessions",
            key_policy: r#"{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"},{"Effect":"Deny","NotPrincipal":{"AWS":["arn:aws:iam::111122223333:role/keyward/cluster-7","arn:aws:iam::111122223333:root"]},"Action":"kms:*","Resource":"*"}"#,
            who: Who::Session,
            ..BASE
        },
        Case {
            rule: "Resource naming the key ARN matches",
            key_policy: r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/alice"},"Action":"kms:*","Resource":"arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"}"#,
            ..BASE
        },
        Case {
            rule: "Resource naming another key does not match",
            key_policy: r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/alice"},"Action":"kms:*","Resource":"arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"}"#,
            resource: OTHER_KEY,
            expect: NO_KEY,
            ..BASE
        },
        Case {
            rule: "Resource wildcards match key ARNs",
            key_policy: r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/alice"},"Action":"kms:*","Resource":"arn:aws:kms:*:111122223333:key/*"}"#,
            ..BASE
        },
        Case {
            rule: "NotResource excludes the listed key only",
            key_policy: r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/alice"},"Action":"kms:*","NotResource":"arn:aws:kms:us-east-1:111122223333:key/ffffffff-12ab-34cd-56ef-1234567890ab"}"#,
            ..BASE
        },
        // --- cross-account: both sides ---
        Case {
            rule: "cross-account: key policy allows the account and identity policy allows",
            key_policy: r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::444455556666:root"},"Action":"kms:Decrypt","Resource":"*"}"#,
            who: Who::Bob,
            identity: IAM_DECRYPT,
            ..BASE
        },
        Case {
            rule: "cross-account: key policy allows the account but no identity policy",
            key_policy: r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::444455556666:root"},"Action":"kms:Decrypt","Resource":"*"}"#,
            who: Who::Bob,
            expect: NO_IAM,
            ..BASE
        },
        Case {
            rule: "cross-account: key policy naming the user still needs the identity policy",
            key_policy: r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::444455556666:user/bob"},"Action":"kms:Decrypt","Resource":"*"}"#,
            who: Who::Bob,
            expect: NO_IAM,
            ..BASE
        },
        Case {
            rule: "cross-account: key policy naming the user and identity policy allow",
            key_policy: r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::444455556666:user/bob"},"Action":"kms:Decrypt","Resource":"*"}"#,
            who: Who::Bob,
            identity: IAM_DECRYPT,
            ..BASE
        },
        Case {
            rule: "cross-account: identity policy deny wins",
            key_policy: r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::444455556666:root"},"Action":"kms:*","Resource":"*"}"#,
            who: Who::Bob,
            identity: r#"{"Effect":"Allow","Action":"kms:*","Resource":"*"},{"Effect":"Deny","Action":"kms:Decrypt","Resource":"*"}"#,
            expect: DENY_IAM,
            ..BASE
        },
        Case {
            rule: "cross-account: the other account's root needs only the key policy",
            key_policy: r#"{"Effect":"Allow","Principal":{"AWS":"444455556666"},"Action":"kms:Decrypt","Resource":"*"}"#,
            who: Who::RootB,
            ..BASE
        },
        Case {
            rule: "cross-account: the other account's role session with identity policy",
            key_policy: r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::444455556666:role/platform"},"Action":"kms:Decrypt","Resource":"*"}"#,
            who: Who::BSession,
            identity: IAM_DECRYPT,
            ..BASE
        },
        Case {
            rule: "cross-account: the key account's root does not cover foreign users",
            key_policy: ROOT_A_ALL,
            who: Who::Bob,
            identity: IAM_ALL_KMS,
            expect: NO_KEY,
            ..BASE
        },
        // --- conditions: encryption context ---
        Case {
            rule: "StringEquals on kms:EncryptionContext:<key> matches",
            key_policy: any_with!(
                "kms:Decrypt",
                r#"{"StringEquals":{"kms:EncryptionContext:cluster":"c-7"}}"#
            ),
            ec: &[("cluster", "c-7")],
            ..BASE
        },
        Case {
            rule: "StringEquals on kms:EncryptionContext:<key> refuses another value",
            key_policy: any_with!(
                "kms:Decrypt",
                r#"{"StringEquals":{"kms:EncryptionContext:cluster":"c-7"}}"#
            ),
            ec: &[("cluster", "c-8")],
            expect: NO_KEY,
            ..BASE
        },
        Case {
            rule: "a missing context key makes a positive condition false",
            key_policy: any_with!(
                "kms:Decrypt",
                r#"{"StringEquals":{"kms:EncryptionContext:cluster":"c-7"}}"#
            ),
            expect: NO_KEY,
            ..BASE
        },
        Case {
            rule: "encryption context key names are case-insensitive",
            key_policy: any_with!(
                "kms:Decrypt",
                r#"{"StringEquals":{"kms:EncryptionContext:Cluster":"c-7"}}"#
            ),
            ec: &[("CLUSTER", "c-7")],
            ..BASE
        },
        Case {
            rule: "encryption context values are case-sensitive under StringEquals",
            key_policy: any_with!(
                "kms:Decrypt",
                r#"{"StringEquals":{"kms:EncryptionContext:cluster":"c-7"}}"#
            ),
            ec: &[("cluster", "C-7")],
            expect: NO_KEY,
            ..BASE
        },
        Case {
            rule: "StringEqualsIgnoreCase ignores the value's case",
            key_policy: any_with!(
                "kms:Decrypt",
                r#"{"StringEqualsIgnoreCase":{"kms:EncryptionContext:cluster":"c-7"}}"#
            ),
            ec: &[("cluster", "C-7")],
            ..BASE
        },
        Case {
            rule: "several condition values are ORed",
            key_policy: any_with!(
                "kms:Decrypt",
                r#"{"StringEquals":{"kms:EncryptionContext:cluster":["c-1","c-7"]}}"#
            ),
            ec: &[("cluster", "c-7")],
            ..BASE
        },
        Case {
            rule: "several condition keys are ANDed",
            key_policy: any_with!(
                "kms:Decrypt",
                r#"{"StringEquals":{"kms:EncryptionContext:cluster":"c-7","kms:EncryptionContext:class":"documents"}}"#
            ),
            ec: &[("cluster", "c-7"), ("class", "backups")],
            expect: NO_KEY,
            ..BASE
        },
        Case {
            rule: "StringLike wildcards in condition values",
            key_policy: any_with!(
                "kms:Decrypt",
                r#"{"StringLike":{"kms:EncryptionContext:cluster":"c-*"}}"#
            ),
            ec: &[("cluster", "c-77")],
            ..BASE
        },
        Case {
            rule: "StringNotLike refuses a matching value",
            key_policy: any_with!(
                "kms:Decrypt",
                r#"{"StringNotLike":{"kms:EncryptionContext:cluster":"c-*"}}"#
            ),
            ec: &[("cluster", "c-77")],
            expect: NO_KEY,
            ..BASE
        },
        Case {
            rule: "Deny with StringNotEquals denies another value",
            key_policy: r#"{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"},{"Effect":"Deny","Principal":"*","Action":"kms:Decrypt","Resource":"*","Condition":{"StringNotEquals":{"kms:EncryptionContext:cluster":"c-7"}}}"#,
            ec: &[("cluster", "c-8")],
            expect: DENY_KEY,
            ..BASE
        },
        Case {
            rule: "a missing key makes a negated condition true (Deny applies)",
            key_policy: r#"{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"},{"Effect":"Deny","Principal":"*","Action":"kms:Decrypt","Resource":"*","Condition":{"StringNotEquals":{"kms:EncryptionContext:cluster":"c-7"}}}"#,
            expect: DENY_KEY,
            ..BASE
        },
        Case {
            rule: "...IfExists: a missing key makes the condition true",
            key_policy: any_with!(
                "kms:Decrypt",
                r#"{"StringEqualsIfExists":{"kms:EncryptionContext:cluster":"c-7"}}"#
            ),
            ..BASE
        },
        Case {
            rule: "...IfExists: a present key is tested",
            key_policy: any_with!(
                "kms:Decrypt",
                r#"{"StringEqualsIfExists":{"kms:EncryptionContext:cluster":"c-7"}}"#
            ),
            ec: &[("cluster", "c-8")],
            expect: NO_KEY,
            ..BASE
        },
        Case {
            rule: "ForAllValues on kms:EncryptionContextKeys: all keys listed",
            key_policy: any_with!(
                "kms:Decrypt",
                r#"{"ForAllValues:StringEquals":{"kms:EncryptionContextKeys":["cluster","class"]}}"#
            ),
            ec: &[("cluster", "c-7"), ("class", "documents")],
            ..BASE
        },
        Case {
            rule: "ForAllValues on kms:EncryptionContextKeys: an unlisted key refuses",
            key_policy: any_with!(
                "kms:Decrypt",
                r#"{"ForAllValues:StringEquals":{"kms:EncryptionContextKeys":["cluster","class"]}}"#
            ),
            ec: &[("cluster", "c-7"), ("extra", "x")],
            expect: NO_KEY,
            ..BASE
        },
        Case {
            rule: "ForAllValues is true when the context is empty (AWS pitfall)",
            key_policy: any_with!(
                "kms:Decrypt",
                r#"{"ForAllValues:StringEquals":{"kms:EncryptionContextKeys":["cluster"]}}"#
            ),
            ..BASE
        },
        Case {
            rule: "ForAnyValue on kms:EncryptionContextKeys: one listed key suffices",
            key_policy: any_with!(
                "kms:Decrypt",
                r#"{"ForAnyValue:StringEquals":{"kms:EncryptionContextKeys":"cluster"}}"#
            ),
            ec: &[("cluster", "c-7"), ("other", "x")],
            ..BASE
        },
        Case {
            rule: "ForAnyValue is false when the context is empty",
            key_policy: any_with!(
                "kms:Decrypt",
                r#"{"ForAnyValue:StringEquals":{"kms:EncryptionContextKeys":"cluster"}}"#
            ),
            expect: NO_KEY,
            ..BASE
        },
        Case {
            rule: "ForAnyValue:StringLike on context keys",
            key_policy: any_with!(
                "kms:Decrypt",
                r#"{"ForAnyValue:StringLike":{"kms:EncryptionContextKeys":"aws:ebs:*"}}"#
            ),
            ec: &[("aws:ebs:id", "vol-1")],
            ..BASE
        },
        Case {
            rule: "Null false requires an encryption context",
            key_policy: any_with!(
                "kms:Decrypt",
                r#"{"Null":{"kms:EncryptionContextKeys":"false"}}"#
            ),
            expect: NO_KEY,
            ..BASE
        },
        Case {
            rule: "Null false with an encryption context holds",
            key_policy: any_with!(
                "kms:Decrypt",
                r#"{"Null":{"kms:EncryptionContextKeys":"false"}}"#
            ),
            ec: &[("cluster", "c-7")],
            ..BASE
        },
        Case {
            rule: "Null true holds when the key is absent",
            key_policy: any_with!("kms:Decrypt", r#"{"Null":{"kms:ViaService":"true"}}"#),
            ..BASE
        },
        // --- conditions: other keys ---
        Case {
            rule: "Bool kms:GrantIsForAWSResource true",
            key_policy: any_with!(
                "kms:CreateGrant",
                r#"{"Bool":{"kms:GrantIsForAWSResource":"true"}}"#
            ),
            action: "CreateGrant",
            grant_for_aws: Some(true),
            ..BASE
        },
        Case {
            rule: "Bool kms:GrantIsForAWSResource refuses a user's own grant",
            key_policy: any_with!(
                "kms:CreateGrant",
                r#"{"Bool":{"kms:GrantIsForAWSResource":true}}"#
            ),
            action: "CreateGrant",
            grant_for_aws: Some(false),
            expect: NO_KEY,
            ..BASE
        },
        Case {
            rule: "ForAllValues kms:GrantOperations within the list",
            key_policy: any_with!(
                "kms:CreateGrant",
                r#"{"ForAllValues:StringEquals":{"kms:GrantOperations":["Decrypt","GenerateDataKey"]}}"#
            ),
            action: "CreateGrant",
            grant_ops: &["Decrypt"],
            grant_for_aws: Some(false),
            ..BASE
        },
        Case {
            rule: "ForAllValues kms:GrantOperations outside the list refuses",
            key_policy: any_with!(
                "kms:CreateGrant",
                r#"{"ForAllValues:StringEquals":{"kms:GrantOperations":["Decrypt","GenerateDataKey"]}}"#
            ),
            action: "CreateGrant",
            grant_ops: &["Decrypt", "Encrypt"],
            grant_for_aws: Some(false),
            expect: NO_KEY,
            ..BASE
        },
        Case {
            rule: "kms:GranteePrincipal StringEquals",
            key_policy: any_with!(
                "kms:CreateGrant",
                r#"{"StringEquals":{"kms:GranteePrincipal":"arn:aws:iam::111122223333:role/keyward/cluster-7"}}"#
            ),
            action: "CreateGrant",
            grantee: Some(ROLE),
            grant_for_aws: Some(false),
            ..BASE
        },
        Case {
            rule: "kms:CallerAccount matches the caller's account",
            key_policy: any_with!(
                "kms:Decrypt",
                r#"{"StringEquals":{"kms:CallerAccount":"111122223333"}}"#
            ),
            ..BASE
        },
        Case {
            rule: "kms:CallerAccount refuses another account",
            key_policy: any_with!(
                "kms:Decrypt",
                r#"{"StringEquals":{"kms:CallerAccount":"111122223333"}}"#
            ),
            who: Who::Bob,
            identity: IAM_DECRYPT,
            expect: NO_KEY,
            ..BASE
        },
        Case {
            rule: "kms:ViaService matches the calling service",
            key_policy: any_with!(
                "kms:Decrypt",
                r#"{"StringEquals":{"kms:ViaService":"ec2.us-east-1.amazonaws.com"}}"#
            ),
            via_service: Some("ec2.us-east-1.amazonaws.com"),
            ..BASE
        },
        Case {
            rule: "kms:ViaService refuses a direct call",
            key_policy: any_with!(
                "kms:Decrypt",
                r#"{"StringEquals":{"kms:ViaService":"ec2.us-east-1.amazonaws.com"}}"#
            ),
            expect: NO_KEY,
            ..BASE
        },
        Case {
            rule: "kms:EncryptionAlgorithm StringEquals",
            key_policy: any_with!(
                "kms:Decrypt",
                r#"{"StringEquals":{"kms:EncryptionAlgorithm":"SYMMETRIC_DEFAULT"}}"#
            ),
            algorithm: Some("SYMMETRIC_DEFAULT"),
            ..BASE
        },
        Case {
            rule: "aws:PrincipalArn ArnLike is the role ARN for a session",
            key_policy: any_with!(
                "kms:Decrypt",
                r#"{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::111122223333:role/keyward/*"}}"#
            ),
            who: Who::Session,
            ..BASE
        },
        Case {
            rule: "aws:PrincipalArn ArnLike refuses another principal",
            key_policy: any_with!(
                "kms:Decrypt",
                r#"{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::111122223333:role/keyward/*"}}"#
            ),
            who: Who::OtherRoleSession,
            expect: NO_KEY,
            ..BASE
        },
        Case {
            rule: "aws:PrincipalArn ArnEquals the user",
            key_policy: any_with!(
                "kms:Decrypt",
                r#"{"ArnEquals":{"aws:PrincipalArn":"arn:aws:iam::111122223333:user/alice"}}"#
            ),
            ..BASE
        },
        Case {
            rule: "aws:PrincipalArn ArnNotEquals Deny spares the named user",
            key_policy: r#"{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"},{"Effect":"Deny","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"ArnNotEquals":{"aws:PrincipalArn":"arn:aws:iam::111122223333:user/alice"}}}"#,
            who: Who::Carol,
            expect: DENY_KEY,
            ..BASE
        },
        Case {
            rule: "aws:PrincipalArn ArnNotLike allows others",
            key_policy: any_with!(
                "kms:Decrypt",
                r#"{"ArnNotLike":{"aws:PrincipalArn":"arn:aws:iam::*:role/*"}}"#
            ),
            who: Who::Carol,
            ..BASE
        },
        Case {
            rule: "aws:PrincipalAccount StringEquals",
            key_policy: any_with!(
                "kms:Decrypt",
                r#"{"StringEquals":{"aws:PrincipalAccount":"111122223333"}}"#
            ),
            ..BASE
        },
        Case {
            rule: "condition key names are case-insensitive",
            key_policy: any_with!(
                "kms:Decrypt",
                r#"{"StringEquals":{"KMS:CALLERACCOUNT":"111122223333"}}"#
            ),
            ..BASE
        },
        Case {
            rule: "IpAddress aws:SourceIp inside the range",
            key_policy: any_with!(
                "kms:Decrypt",
                r#"{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}"#
            ),
            source_ip: Some("10.1.2.3"),
            ..BASE
        },
        Case {
            rule: "NotIpAddress Deny outside the range",
            key_policy: r#"{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"},{"Effect":"Deny","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"NotIpAddress":{"aws:SourceIp":["10.0.0.0/8","192.0.2.0/24"]}}}"#,
            source_ip: Some("198.51.100.7"),
            expect: DENY_KEY,
            ..BASE
        },
        Case {
            rule: "NumericLessThan on aws:EpochTime",
            key_policy: any_with!(
                "kms:Decrypt",
                r#"{"NumericLessThan":{"aws:EpochTime":2000000000}}"#
            ),
            now: Some(1_800_000_000),
            ..BASE
        },
        Case {
            rule: "NumericGreaterThanEquals on aws:EpochTime refuses earlier",
            key_policy: any_with!(
                "kms:Decrypt",
                r#"{"NumericGreaterThanEquals":{"aws:EpochTime":"2000000000"}}"#
            ),
            now: Some(1_800_000_000),
            expect: NO_KEY,
            ..BASE
        },
        Case {
            rule: "DateGreaterThan on aws:CurrentTime refuses before the date",
            key_policy: any_with!(
                "kms:Decrypt",
                r#"{"DateGreaterThan":{"aws:CurrentTime":"2030-01-01T00:00:00Z"}}"#
            ),
            now: Some(1_800_000_000),
            expect: NO_KEY,
            ..BASE
        },
        Case {
            rule: "DateLessThan on aws:CurrentTime allows before the date",
            key_policy: any_with!(
                "kms:Decrypt",
                r#"{"DateLessThan":{"aws:CurrentTime":"2030-01-01"}}"#
            ),
            now: Some(1_800_000_000),
            ..BASE
        },
        Case {
            rule: "an unknown condition key is absent",
            key_policy: any_with!(
                "kms:Decrypt",
                r#"{"StringEquals":{"aws:SourceVpce":"vpce-1"}}"#
            ),
            expect: NO_KEY,
            ..BASE
        },
        Case {
            rule: "conditions on the delegating statement gate the delegation",
            key_policy: r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*","Condition":{"StringEquals":{"kms:ViaService":"s3.us-east-1.amazonaws.com"}}}"#,
            identity: IAM_ALL_KMS,
            expect: NO_KEY,
            ..BASE
        },
        Case {
            rule: "conditions in the identity policy apply",
            identity: r#"{"Effect":"Allow","Action":"kms:Decrypt","Resource":"*","Condition":{"StringEquals":{"kms:EncryptionContext:cluster":"c-7"}}}"#,
            ec: &[("cluster", "c-8")],
            expect: NO_IAM,
            ..BASE
        },
        Case {
            rule: "several operators are ANDed",
            key_policy: any_with!(
                "kms:Decrypt",
                r#"{"StringEquals":{"kms:EncryptionContext:cluster":"c-7"},"Null":{"kms:ViaService":"false"}}"#
            ),
            ec: &[("cluster", "c-7")],
            expect: NO_KEY,
            ..BASE
        },
    ]
}

fn build(statements: &str) -> String {
    format!(r#"{{"Version":"2012-10-17","Statement":[{statements}]}}"#)
}

fn run(case: &Case) -> Decision {
    let key_text = if case.key_policy == "DEFAULT" {
        default_key_policy(A)
    } else {
        build(case.key_policy)
    };
    let mut key_policy = Policy::parse(&key_text)
        .unwrap_or_else(|e| panic!("{}: key policy does not parse: {e}", case.rule));
    key_policy
        .resolve_principals(resolve)
        .unwrap_or_else(|e| panic!("{}: {e}", case.rule));
    let identity: Vec<Policy> = if case.identity.is_empty() {
        vec![]
    } else {
        vec![Policy::parse_identity(&build(case.identity))
            .unwrap_or_else(|e| panic!("{}: identity policy does not parse: {e}", case.rule))]
    };
    let ec: BTreeMap<String, String> = case
        .ec
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let ops: Vec<String> = case.grant_ops.iter().map(|s| s.to_string()).collect();
    let mut ctx = RequestContext::new(caller(case.who), case.action, case.resource, A);
    ctx.encryption_context = Some(&ec);
    ctx.via_service = case.via_service;
    ctx.encryption_algorithm = case.algorithm;
    ctx.source_ip = case.source_ip.map(|s| s.parse().unwrap());
    ctx.now_epoch_seconds = case.now;
    if let Some(for_aws) = case.grant_for_aws {
        ctx.grant = Some(GrantContext {
            is_for_aws_resource: for_aws,
            operations: &ops,
            grantee_principal: case.grantee,
            retiring_principal: None,
        });
    }
    evaluate(&ctx, &key_policy, &identity)
}

#[test]
fn authorization_table() {
    let cases = cases();
    assert!(cases.len() >= 60, "only {} cases", cases.len());
    let mut failures = Vec::new();
    let mut unauthorized_allows = 0;
    for case in &cases {
        let got = run(case);
        if got != case.expect {
            if got.is_allowed() {
                unauthorized_allows += 1;
            }
            failures.push(format!(
                "{}: expected {:?}, got {:?}",
                case.rule, case.expect, got
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed ({unauthorized_allows} unauthorized allows):\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    let denials = cases.iter().filter(|c| !c.expect.is_allowed()).count();
    assert!(
        denials >= 30 && cases.len() - denials >= 30,
        "the table must exercise both outcomes"
    );
}

/// Each rule's case name is unique, so a failure names one rule.
#[test]
fn table_rules_are_unique() {
    let cases = cases();
    let mut names: Vec<&str> = cases.iter().map(|c| c.rule).collect();
    names.sort_unstable();
    let before = names.len();
    names.dedup();
    assert_eq!(before, names.len());
}

#[test]
fn malformed_policies_are_refused_with_their_error() {
    let stmt = |s: &str| build(s);
    let big = format!(
        r#"{{"Version":"2012-10-17","Id":"{}","Statement":[]}}"#,
        "x".repeat(MAX_POLICY_BYTES)
    );
    let cases: Vec<(&str, String, PolicyError)> = vec![
        (
            "not JSON",
            "{not json".into(),
            PolicyError::NotJson(String::new()),
        ),
        ("not an object", "[]".into(), PolicyError::NotAnObject),
        ("oversize (32 KB)", big, PolicyError::TooLarge { size: 0 }),
        (
            "unsupported Version",
            r#"{"Version":"2020-01-01","Statement":[]}"#.into(),
            PolicyError::UnsupportedVersion("2020-01-01".into()),
        ),
        (
            "unknown top-level element",
            r#"{"Version":"2012-10-17","Statement":[],"Foo":1}"#.into(),
            PolicyError::UnknownElement("Foo".into()),
        ),
        (
            "missing Statement",
            r#"{"Version":"2012-10-17"}"#.into(),
            PolicyError::MissingElement("Statement"),
        ),
        (
            "Statement of the wrong type",
            r#"{"Statement":"x"}"#.into(),
            PolicyError::WrongType("Statement"),
        ),
        (
            "unknown statement element",
            stmt(r#"{"Effect":"Allow","Principal":"*","Actions":"kms:*","Resource":"*"}"#),
            PolicyError::UnknownElement("Actions".into()),
        ),
        (
            "missing Effect",
            stmt(r#"{"Principal":"*","Action":"kms:*","Resource":"*"}"#),
            PolicyError::MissingElement("Effect"),
        ),
        (
            "invalid Effect",
            stmt(r#"{"Effect":"allow","Principal":"*","Action":"kms:*","Resource":"*"}"#),
            PolicyError::InvalidEffect("allow".into()),
        ),
        (
            "missing Principal in a key policy",
            stmt(r#"{"Effect":"Allow","Action":"kms:*","Resource":"*"}"#),
            PolicyError::MissingElement("Principal"),
        ),
        (
            "both Principal and NotPrincipal",
            stmt(
                r#"{"Effect":"Allow","Principal":"*","NotPrincipal":"*","Action":"kms:*","Resource":"*"}"#,
            ),
            PolicyError::Conflicting("Principal", "NotPrincipal"),
        ),
        (
            "missing Action",
            stmt(r#"{"Effect":"Allow","Principal":"*","Resource":"*"}"#),
            PolicyError::MissingElement("Action"),
        ),
        (
            "both Action and NotAction",
            stmt(
                r#"{"Effect":"Allow","Principal":"*","Action":"kms:*","NotAction":"kms:Decrypt","Resource":"*"}"#,
            ),
            PolicyError::Conflicting("Action", "NotAction"),
        ),
        (
            "empty Action list",
            stmt(r#"{"Effect":"Allow","Principal":"*","Action":[],"Resource":"*"}"#),
            PolicyError::Empty("Action"),
        ),
        (
            "action without service prefix",
            stmt(r#"{"Effect":"Allow","Principal":"*","Action":"Decrypt","Resource":"*"}"#),
            PolicyError::InvalidAction("Decrypt".into()),
        ),
        (
            "missing Resource",
            stmt(r#"{"Effect":"Allow","Principal":"*","Action":"kms:*"}"#),
            PolicyError::MissingElement("Resource"),
        ),
        (
            "resource that is not an ARN",
            stmt(r#"{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"key/123"}"#),
            PolicyError::InvalidResource("key/123".into()),
        ),
        (
            "principal: short account id",
            stmt(
                r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::1234:root"},"Action":"kms:*","Resource":"*"}"#,
            ),
            PolicyError::InvalidPrincipal(String::new()),
        ),
        (
            "principal: bare name",
            stmt(
                r#"{"Effect":"Allow","Principal":{"AWS":"alice"},"Action":"kms:*","Resource":"*"}"#,
            ),
            PolicyError::InvalidPrincipal(String::new()),
        ),
        (
            "principal: wildcard in an ARN",
            stmt(
                r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:role/*"},"Action":"kms:*","Resource":"*"}"#,
            ),
            PolicyError::InvalidPrincipal(String::new()),
        ),
        (
            "principal: wrong service in ARN",
            stmt(
                r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:s3::111122223333:bucket"},"Action":"kms:*","Resource":"*"}"#,
            ),
            PolicyError::InvalidPrincipal(String::new()),
        ),
        (
            "principal: a string other than *",
            stmt(r#"{"Effect":"Allow","Principal":"anyone","Action":"kms:*","Resource":"*"}"#),
            PolicyError::InvalidPrincipal(String::new()),
        ),
        (
            "principal: unknown principal type",
            stmt(r#"{"Effect":"Allow","Principal":{"Foo":"x"},"Action":"kms:*","Resource":"*"}"#),
            PolicyError::InvalidPrincipal(String::new()),
        ),
        (
            "principal: empty list",
            stmt(r#"{"Effect":"Allow","Principal":{"AWS":[]},"Action":"kms:*","Resource":"*"}"#),
            PolicyError::InvalidPrincipal(String::new()),
        ),
        (
            "principal: empty object",
            stmt(r#"{"Effect":"Allow","Principal":{},"Action":"kms:*","Resource":"*"}"#),
            PolicyError::InvalidPrincipal(String::new()),
        ),
        (
            "unknown condition operator",
            stmt(
                r#"{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"StringEqualz":{"kms:CallerAccount":"1"}}}"#,
            ),
            PolicyError::UnknownConditionOperator("StringEqualz".into()),
        ),
        (
            "NullIfExists is not an operator",
            stmt(
                r#"{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"NullIfExists":{"kms:ViaService":"true"}}}"#,
            ),
            PolicyError::UnknownConditionOperator("NullIfExists".into()),
        ),
        (
            "unknown set qualifier",
            stmt(
                r#"{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"ForSomeValues:StringEquals":{"kms:ViaService":"x"}}}"#,
            ),
            PolicyError::UnknownConditionOperator("ForSomeValues:StringEquals".into()),
        ),
        (
            "Bool with a non-boolean",
            stmt(
                r#"{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"Bool":{"kms:GrantIsForAWSResource":"yes"}}}"#,
            ),
            PolicyError::InvalidCondition(String::new()),
        ),
        (
            "Numeric with a non-number",
            stmt(
                r#"{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"NumericEquals":{"aws:EpochTime":"soon"}}}"#,
            ),
            PolicyError::InvalidCondition(String::new()),
        ),
        (
            "IpAddress with a bad range",
            stmt(
                r#"{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/33"}}}"#,
            ),
            PolicyError::InvalidCondition(String::new()),
        ),
        (
            "condition block not an object",
            stmt(
                r#"{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"StringEquals":"x"}}"#,
            ),
            PolicyError::InvalidCondition(String::new()),
        ),
        (
            "condition value an object",
            stmt(
                r#"{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"StringEquals":{"kms:ViaService":{}}}}"#,
            ),
            PolicyError::InvalidCondition(String::new()),
        ),
        (
            "encryption context key without a name",
            stmt(
                r#"{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"StringEquals":{"kms:EncryptionContext:":"x"}}}"#,
            ),
            PolicyError::InvalidCondition(String::new()),
        ),
        (
            "Sid not a string",
            stmt(r#"{"Sid":1,"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}"#),
            PolicyError::WrongType("Sid"),
        ),
    ];
    for (name, text, expected) in &cases {
        let got = Policy::parse(text).expect_err(name);
        assert_eq!(
            std::mem::discriminant(&got),
            std::mem::discriminant(expected),
            "{name}: got {got:?}"
        );
        // Variants that carry the offending element must name it exactly.
        match (expected, &got) {
            (PolicyError::NotJson(_), _)
            | (PolicyError::TooLarge { .. }, _)
            | (PolicyError::InvalidPrincipal(_), _)
            | (PolicyError::InvalidCondition(_), _) => {}
            _ => assert_eq!(&got, expected, "{name}"),
        }
        assert_eq!(got.aws_code(), "MalformedPolicyDocumentException");
    }
}

#[test]
fn invalid_principal_message_is_aws_wording() {
    let e = Policy::parse(&build(
        r#"{"Effect":"Allow","Principal":{"AWS":"alice"},"Action":"kms:*","Resource":"*"}"#,
    ))
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "Policy contains a statement with one or more invalid principals."
    );
    let e = Policy::parse(&build(r#"{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"StringEqualz":{"a:b":"c"}}}"#)).unwrap_err();
    assert_eq!(e.to_string(), "Invalid Condition type : StringEqualz");
}

#[test]
fn oversize_is_measured_in_bytes_and_the_limit_itself_is_accepted() {
    let base =
        build(r#"{"Sid":"PAD","Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}"#);
    let pad = MAX_POLICY_BYTES - base.len();
    let at_limit = base.replace("PAD", &format!("PAD{}", "x".repeat(pad)));
    assert_eq!(at_limit.len(), MAX_POLICY_BYTES);
    assert!(Policy::parse(&at_limit).is_ok());
    let over = base.replace("PAD", &format!("PAD{}", "x".repeat(pad + 1)));
    assert_eq!(
        Policy::parse(&over),
        Err(PolicyError::TooLarge {
            size: MAX_POLICY_BYTES + 1
        })
    );
}

#[test]
fn identity_policies_refuse_principals_and_need_no_principal() {
    let with = build(r#"{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}"#);
    assert_eq!(
        Policy::parse_identity(&with),
        Err(PolicyError::ProhibitedPrincipal("Principal"))
    );
    let not = build(r#"{"Effect":"Allow","NotPrincipal":"*","Action":"kms:*","Resource":"*"}"#);
    assert_eq!(
        Policy::parse_identity(&not),
        Err(PolicyError::ProhibitedPrincipal("NotPrincipal"))
    );
    assert!(Policy::parse_identity(&build(IAM_DECRYPT)).is_ok());
}

#[test]
fn grammar_accepts_single_statement_object_and_both_versions() {
    let p = Policy::parse(
        r#"{"Version":"2008-10-17","Id":"k1","Statement":{"Sid":"one","Effect":"Deny","Principal":{"AWS":["*"]},"NotAction":["kms:Decrypt"],"NotResource":"arn:aws:kms:*:*:key/*"}}"#,
    )
    .unwrap();
    assert_eq!(p.version(), PolicyVersion::V2008_10_17);
    assert_eq!(p.id(), Some("k1"));
    assert_eq!(p.sids().collect::<Vec<_>>(), vec![Some("one")]);
    // Without Version, IAM assumes 2008-10-17.
    let p = Policy::parse(&format!(r#"{{"Statement":[{ROOT_A_ALL}]}}"#)).unwrap();
    assert_eq!(p.version(), PolicyVersion::V2008_10_17);
    // Principal kinds AWS accepts.
    for principal in [
        r#"{"AWS":"arn:aws-cn:iam::111122223333:root"}"#,
        r#"{"AWS":"arn:aws:sts::111122223333:federated-user/bob"}"#,
        r#"{"Federated":"cognito-identity.amazonaws.com"}"#,
        r#"{"Service":["ec2.amazonaws.com","autoscaling.amazonaws.com"]}"#,
        r#"{"AWS":"arn:aws:iam::111122223333:user/division_abc/subdivision_xyz/Bob"}"#,
    ] {
        let text = build(&format!(
            r#"{{"Effect":"Allow","Principal":{principal},"Action":"kms:*","Resource":"*"}}"#
        ));
        assert!(Policy::parse(&text).is_ok(), "{principal}");
    }
}

#[test]
fn principals_bind_to_unique_ids_and_unknown_ones_are_invalid() {
    let mixed = Policy::parse(&build(&format!(
        r#"{ALLOW_ROLE_GUIDE},{{"Effect":"Allow","Principal":{{"AWS":["444455556666","arn:aws:iam::444455556666:user/bob","arn:aws:sts::555555555555:assumed-role/r/s","*"]}},"Action":"kms:*","Resource":"*"}}"#
    )))
    .unwrap();
    assert_eq!(mixed.principal_accounts(), vec![A, B, "555555555555"]);
    assert_eq!(mixed.principal_arns(), vec![ROLE, BOB]);
    let mut p = Policy::parse(&build(ALLOW_ROLE_GUIDE)).unwrap();
    assert_eq!(p.principal_arns(), vec![ROLE]);
    assert!(p.principal_ids().is_empty());
    p.resolve_principals(resolve).unwrap();
    assert_eq!(p.principal_ids(), vec![(ROLE, "AROACLUSTERSEVEN0001")]);
    // A role that does not exist when the policy is saved: AWS refuses it.
    let mut q = Policy::parse(&build(
        r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:role/missing"},"Action":"kms:*","Resource":"*"}"#,
    ))
    .unwrap();
    let e = q.resolve_principals(resolve).unwrap_err();
    assert!(matches!(e, PolicyError::InvalidPrincipal(_)));
    // Re-saving after the role was re-created binds the new id, and the new sessions match again.
    let mut resaved = Policy::parse(&build(ALLOW_ROLE_GUIDE)).unwrap();
    resaved
        .resolve_principals(|arn| (arn == ROLE).then(|| "AROACLUSTERSEVEN0002".to_string()))
        .unwrap();
    let ctx = RequestContext::new(caller(Who::RecreatedSession), "Decrypt", KEY, A);
    assert_eq!(evaluate(&ctx, &resaved, &[]), ALLOW);
    let ctx = RequestContext::new(caller(Who::Session), "Decrypt", KEY, A);
    assert_eq!(evaluate(&ctx, &resaved, &[]), NO_KEY);
}

#[test]
fn denial_messages_follow_aws_wording() {
    let ctx = RequestContext::new(caller(Who::Session), "Decrypt", KEY, A);
    let msg = |d: Decision| d.denial_message(&ctx);
    assert_eq!(msg(ALLOW), None);
    assert_eq!(
        msg(NO_KEY).unwrap(),
        format!("User: {SESSION} is not authorized to perform: kms:Decrypt on resource: {KEY} because no resource-based policy allows the kms:Decrypt action")
    );
    assert_eq!(
        msg(NO_IAM).unwrap(),
        format!("User: {SESSION} is not authorized to perform: kms:Decrypt on resource: {KEY} because no identity-based policy allows the kms:Decrypt action")
    );
    assert_eq!(
        msg(DENY_KEY).unwrap(),
        format!("User: {SESSION} is not authorized to perform: kms:Decrypt on resource: {KEY} with an explicit deny in a resource-based policy")
    );
    assert_eq!(
        msg(DENY_IAM).unwrap(),
        format!("User: {SESSION} is not authorized to perform: kms:Decrypt on resource: {KEY} with an explicit deny in an identity-based policy")
    );
}

#[test]
fn default_key_policy_is_aws_text_and_delegates_to_the_account() {
    let text = default_key_policy(A);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["Id"], "key-default-1");
    assert_eq!(v["Statement"][0]["Sid"], "Enable IAM User Permissions");
    assert_eq!(v["Statement"][0]["Principal"]["AWS"], A_ROOT);
    assert_eq!(v["Statement"][0]["Action"], "kms:*");
    assert_eq!(v["Statement"][0]["Resource"], "*");
    assert!(
        text.contains("\"Version\" : \"2012-10-17\""),
        "AWS's spacing: {text}"
    );
    let p = Policy::parse(&text).unwrap();
    assert_eq!(p.statement_count(), 1);
}

#[test]
fn lockout_check() {
    let locks_out = |stmts: &str, who: Who| {
        let mut p = Policy::parse(&build(stmts)).unwrap();
        p.resolve_principals(resolve).unwrap();
        would_lock_out(&p, &caller(who), KEY, A)
    };
    // The default policy keeps the root and the account's users in (delegation to IAM).
    assert!(!locks_out(ROOT_A_ALL, Who::RootA));
    assert!(!locks_out(ROOT_A_ALL, Who::Alice));
    // The guide's policy alone locks the root out (no PutKeyPolicy for anyone).
    assert!(locks_out(ALLOW_ROLE_GUIDE, Who::RootA));
    // Naming the user with kms:PutKeyPolicy keeps it in; naming another user does not.
    let alice_admin = r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/alice"},"Action":"kms:PutKeyPolicy","Resource":"*"}"#;
    assert!(!locks_out(alice_admin, Who::Alice));
    assert!(locks_out(alice_admin, Who::Carol));
    // kms:Put* covers it; kms:Get* does not.
    assert!(!locks_out(
        r#"{"Effect":"Allow","Principal":"*","Action":"kms:Put*","Resource":"*"}"#,
        Who::Carol
    ));
    assert!(locks_out(
        r#"{"Effect":"Allow","Principal":"*","Action":"kms:Get*","Resource":"*"}"#,
        Who::Carol
    ));
    // An explicit Deny of PutKeyPolicy locks out.
    assert!(locks_out(
        &format!(
            r#"{ROOT_A_ALL},{{"Effect":"Deny","Principal":"*","Action":"kms:PutKeyPolicy","Resource":"*"}}"#
        ),
        Who::RootA,
    ));
    // A role session is kept in by its role, by the role's id at save time.
    assert!(!locks_out(
        r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:role/keyward/cluster-7"},"Action":"kms:*","Resource":"*"}"#,
        Who::Session,
    ));
}

#[test]
fn trust_policies_decide_assume_role() {
    let role = "arn:aws:iam::111122223333:role/keyward/cluster-7";
    let trust = |stmts: &str| {
        let mut p = Policy::parse_trust(&build(stmts)).unwrap();
        p.resolve_principals(resolve).unwrap();
        p
    };
    let decide = |policy: &Policy, who: Who, extra: &[(&str, &str)], identity: &[&str]| {
        let ids: Vec<Policy> = identity
            .iter()
            .map(|s| Policy::parse_identity(&build(s)).unwrap())
            .collect();
        let mut ctx = RequestContext::new(caller(who), "AssumeRole", role, A);
        ctx.service = "sts";
        ctx.extra = extra;
        evaluate(&ctx, policy, &ids)
    };
    let external = trust(
        r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::444455556666:root"},"Action":"sts:AssumeRole",
            "Condition":{"StringEquals":{"sts:ExternalId":"cluster-7-secret"}}}"#,
    );
    let may_assume = r#"{"Effect":"Allow","Action":"sts:AssumeRole","Resource":"*"}"#;
    // Cross-account: the trust policy and the caller's identity policy, and the ExternalId.
    assert_eq!(
        decide(
            &external,
            Who::Bob,
            &[("sts:ExternalId", "cluster-7-secret")],
            &[may_assume]
        ),
        ALLOW
    );
    assert_eq!(
        decide(
            &external,
            Who::Bob,
            &[("STS:externalid", "cluster-7-secret")],
            &[may_assume]
        ),
        ALLOW
    );
    assert_eq!(
        decide(
            &external,
            Who::Bob,
            &[("sts:ExternalId", "wrong")],
            &[may_assume]
        ),
        NO_KEY
    );
    assert_eq!(decide(&external, Who::Bob, &[], &[may_assume]), NO_KEY);
    assert_eq!(
        decide(
            &external,
            Who::Bob,
            &[("sts:ExternalId", "cluster-7-secret")],
            &[]
        ),
        NO_IAM
    );
    // A KMS permission is not an STS one.
    assert_eq!(
        decide(
            &external,
            Who::Bob,
            &[("sts:ExternalId", "cluster-7-secret")],
            &[IAM_ALL_KMS]
        ),
        NO_IAM
    );
    // Same account, principal named directly: the trust policy alone suffices.
    let alice = trust(
        r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/alice"},"Action":"sts:AssumeRole"}"#,
    );
    assert_eq!(decide(&alice, Who::Alice, &[], &[]), ALLOW);
    assert_eq!(decide(&alice, Who::Carol, &[], &[]), NO_KEY);
    // Service principals.
    let ec2 = trust(
        r#"{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}"#,
    );
    assert_eq!(decide(&ec2, Who::Ec2Service, &[], &[]), ALLOW);
    // AWS-shaped message with the sts prefix.
    let mut ctx = RequestContext::new(caller(Who::Carol), "AssumeRole", role, A);
    ctx.service = "sts";
    assert_eq!(
        NO_KEY.denial_message(&ctx).unwrap(),
        format!("User: {CAROL} is not authorized to perform: sts:AssumeRole on resource: {role} because no resource-based policy allows the sts:AssumeRole action")
    );
    // Grammar: Principal required, Resource prohibited (IAM's wording).
    assert_eq!(
        Policy::parse_trust(&build(r#"{"Effect":"Allow","Action":"sts:AssumeRole"}"#)),
        Err(PolicyError::MissingElement("Principal"))
    );
    let with_resource = Policy::parse_trust(&build(
        r#"{"Effect":"Allow","Principal":"*","Action":"sts:AssumeRole","Resource":"*"}"#,
    ))
    .unwrap_err();
    assert_eq!(with_resource, PolicyError::ProhibitedElement("Resource"));
    assert_eq!(with_resource.to_string(), "Has prohibited field Resource");
    assert_eq!(with_resource.iam_code(), "MalformedPolicyDocument");
}

#[test]
fn policies_without_statements_allow_nothing() {
    let p = Policy::parse(r#"{"Version":"2012-10-17","Statement":[]}"#).unwrap();
    let ctx = RequestContext::new(caller(Who::RootA), "Decrypt", KEY, A);
    assert_eq!(evaluate(&ctx, &p, &[]), NO_KEY);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value as V;
        let atoms = prop_oneof![
            Just(V::Null),
            any::<bool>().prop_map(V::Bool),
            any::<i64>().prop_map(V::from),
            prop::sample::select(vec![
                "*",
                "Allow",
                "Deny",
                "kms:*",
                "kms:Decrypt",
                "2012-10-17",
                "arn:aws:iam::111122223333:root",
                "111122223333",
                "AROACLUSTERSEVEN0001",
                "arn:aws:kms:*:*:key/*",
                "StringEquals",
                "c-7",
                "?",
                "",
            ])
            .prop_map(|s| V::String(s.to_string())),
            ".{0,12}".prop_map(V::String),
        ];
        let names = prop::sample::select(vec![
            "Version",
            "Id",
            "Statement",
            "Sid",
            "Effect",
            "Principal",
            "NotPrincipal",
            "Action",
            "NotAction",
            "Resource",
            "NotResource",
            "Condition",
            "AWS",
            "Service",
            "StringEquals",
            "ForAllValues:StringLike",
            "Null",
            "Bool",
            "IpAddress",
            "ArnLike",
            "NumericLessThan",
            "DateEquals",
            "kms:EncryptionContext:x",
            "kms:EncryptionContextKeys",
            "aws:SourceIp",
            "x",
        ]);
        atoms.prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(V::Array),
                prop::collection::vec((names.clone(), inner), 0..6).prop_map(|kv| {
                    V::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn parse_never_panics_on_arbitrary_text(s in ".{0,400}") {
            let _ = Policy::parse(&s);
            let _ = Policy::parse_identity(&s);
        }

        #[test]
        fn parse_and_evaluate_never_panic_on_policy_shaped_json(v in json_value()) {
            let text = v.to_string();
            for p in [Policy::parse(&text), Policy::parse_identity(&text)].into_iter().flatten() {
                let ec: BTreeMap<String, String> = [("x".to_string(), "c-7".to_string())].into();
                let mut ctx = RequestContext::new(caller(Who::Session), "Decrypt", KEY, A);
                ctx.encryption_context = Some(&ec);
                ctx.source_ip = Some("10.0.0.1".parse().unwrap());
                ctx.now_epoch_seconds = Some(0);
                let _ = evaluate(&ctx, &p, std::slice::from_ref(&p));
            }
        }

        /// Evaluation never allows a caller the key policy does not name when no statement uses
        /// a wildcard principal, NotPrincipal or the caller's account.
        #[test]
        fn unnamed_callers_are_never_allowed(action in "[A-Za-z]{1,20}") {
            let p = Policy::parse(&build(ALLOW_ROLE_GUIDE)).unwrap();
            for who in [Who::Alice, Who::Carol, Who::RootA, Who::Bob, Who::OtherRoleSession] {
                let ctx = RequestContext::new(caller(who), &action, KEY, A);
                prop_assert!(!evaluate(&ctx, &p, &[]).is_allowed());
            }
        }
    }
}
