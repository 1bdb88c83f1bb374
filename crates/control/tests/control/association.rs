//! Key association: a passing key, and every failure with its reported cause and fix.
//!
//! The cluster's principal is in another account than the key, with its own account's identity
//! policy allowing the guide's actions; the key's side is either a grant (which works without the
//! key policy naming the principal) or the key policy the guide has the customer write. A key
//! policy that does not name the principal gives it nothing.

use aws_sdk_kms::types::GrantOperation;
use keyward_control::{
    merge_key_policy, validate_key_association, AssociationReport, AssociationTarget, Cause, Check,
    Outcome,
};

use crate::{start_kms, Kms, CLUSTER, CUSTOMER, PLATFORM, REGION};

/// The cluster the keys are checked for: its principal, in `region`, on a platform whose own
/// account is [`PLATFORM`].
fn target(region: &str) -> AssociationTarget<'_> {
    AssociationTarget {
        region,
        role_arn: CLUSTER,
        refused_account: Some(PLATFORM),
    }
}

const ALL: &[GrantOperation] = &[
    GrantOperation::DescribeKey,
    GrantOperation::GenerateDataKey,
    GrantOperation::Decrypt,
    GrantOperation::CreateGrant,
];

/// A customer key; the cluster's principal gets `operations` through a grant (none when empty).
async fn key_with_grant(kms: &Kms, operations: &[GrantOperation]) -> String {
    let key = kms.customer.create_key().send().await.unwrap();
    let arn = key.key_metadata().unwrap().arn().unwrap().to_string();
    if !operations.is_empty() {
        kms.customer
            .create_grant()
            .key_id(&arn)
            .grantee_principal(CLUSTER)
            .set_operations(Some(operations.to_vec()))
            .send()
            .await
            .unwrap();
    }
    arn
}

#[track_caller]
fn failed(report: &AssociationReport, check: Check) -> (Cause, String) {
    match report.outcome(check) {
        Some(Outcome::Failed { cause, fix, .. }) => (cause.clone(), fix.clone()),
        other => panic!("{check:?} should have failed, was {other:?}\n{report:#?}"),
    }
}

#[track_caller]
fn passed(report: &AssociationReport, checks: &[Check]) {
    for &check in checks {
        assert_eq!(
            report.outcome(check),
            Some(&Outcome::Passed),
            "{check:?}\n{report:#?}"
        );
    }
}

#[track_caller]
fn skipped(report: &AssociationReport, checks: &[Check]) {
    for &check in checks {
        assert!(
            matches!(report.outcome(check), Some(Outcome::Skipped { why }) if !why.is_empty()),
            "{check:?} should be skipped with a reason\n{report:#?}"
        );
    }
}

/// Every check is reported exactly once, in order.
#[track_caller]
fn complete(report: &AssociationReport) {
    let order: Vec<Check> = report.checks.iter().map(|c| c.check).collect();
    assert_eq!(
        order,
        [
            Check::NotAlias,
            Check::ArnFormat,
            Check::Partition,
            Check::CustomerAccount,
            Check::Region,
            Check::KeyExists,
            Check::DescribeKeyPermission,
            Check::SymmetricKey,
            Check::EncryptDecryptUsage,
            Check::Enabled,
            Check::NotPendingDeletion,
            Check::GenerateDataKeyPermission,
            Check::DecryptPermission,
            Check::CreateGrantPermission,
            Check::CreateGrantLimitedToRole,
        ]
    );
}

#[tokio::test]
async fn a_usable_key_passes_every_check_and_leaves_no_grant_behind() {
    let kms = start_kms().await;
    let arn = key_with_policy(&kms, |_| {}).await;
    let report = validate_key_association(&kms.cluster, &arn, &target(REGION)).await;
    complete(&report);
    assert!(report.may_apply(), "{report:#?}");
    assert_eq!(report.failures().count(), 0);
    // CreateGrant was probed with DryRun, twice: no grant exists.
    let grants = kms
        .customer
        .list_grants()
        .key_id(&arn)
        .send()
        .await
        .unwrap();
    assert_eq!(grants.grants().len(), 0);
    // The report is JSON for the API, without key material.
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["checks"][0]["result"], "passed");
    assert!(!json.to_string().to_lowercase().contains("plaintext"));
}

#[tokio::test]
async fn an_alias_name_or_alias_arn_is_refused_before_calling_kms() {
    let kms = start_kms().await;
    for alias in [
        "alias/keyward-prod".to_string(),
        format!("arn:aws:kms:{REGION}:{CUSTOMER}:alias/keyward-prod"),
    ] {
        let report = validate_key_association(&kms.cluster, &alias, &target(REGION)).await;
        complete(&report);
        let (cause, fix) = failed(&report, Check::NotAlias);
        assert_eq!(cause, Cause::AliasInsteadOfKey);
        assert!(
            fix.contains("key ARN") && fix.contains("describe-key"),
            "{fix}"
        );
        skipped(
            &report,
            &[
                Check::ArnFormat,
                Check::Region,
                Check::CreateGrantPermission,
            ],
        );
        assert!(!report.may_apply());
    }
}

#[tokio::test]
async fn a_malformed_arn_is_refused_with_the_expected_form() {
    let kms = start_kms().await;
    for bad in [
        "not-an-arn",
        "1234abcd-12ab-34cd-56ef-1234567890ab",
        "arn:aws:kms:us-east-1:1111:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    ] {
        let report = validate_key_association(&kms.cluster, bad, &target(REGION)).await;
        complete(&report);
        passed(&report, &[Check::NotAlias]);
        let (cause, fix) = failed(&report, Check::ArnFormat);
        assert_eq!(cause, Cause::MalformedArn);
        assert!(
            fix.contains("arn:aws:kms:<region>:<12-digit account>:key/<key-id>"),
            "{fix}"
        );
        skipped(
            &report,
            &[Check::Region, Check::KeyExists, Check::DecryptPermission],
        );
        assert!(!report.may_apply());
    }
}

#[tokio::test]
async fn a_key_in_another_region_is_refused() {
    let kms = start_kms().await;
    let arn = key_with_grant(&kms, ALL).await;
    let report = validate_key_association(&kms.cluster, &arn, &target("eu-west-1")).await;
    complete(&report);
    let (cause, fix) = failed(&report, Check::Region);
    assert_eq!(cause, Cause::WrongRegion);
    assert!(fix.contains("--region eu-west-1"), "{fix}");
    skipped(
        &report,
        &[Check::KeyExists, Check::GenerateDataKeyPermission],
    );
}

#[tokio::test]
async fn a_key_that_does_not_exist_is_reported_not_found() {
    let kms = start_kms().await;
    let arn = format!("arn:aws:kms:{REGION}:{CUSTOMER}:key/0f0f0f0f-1111-2222-3333-444455556666");
    let report = validate_key_association(&kms.cluster, &arn, &target(REGION)).await;
    complete(&report);
    let (cause, fix) = failed(&report, Check::KeyExists);
    assert_eq!(cause, Cause::KeyNotFound);
    assert!(fix.contains(CUSTOMER) && fix.contains(REGION), "{fix}");
    skipped(
        &report,
        &[
            Check::DescribeKeyPermission,
            Check::SymmetricKey,
            Check::CreateGrantPermission,
        ],
    );
}

#[tokio::test]
async fn a_disabled_key_is_refused_with_enable_key() {
    let kms = start_kms().await;
    let arn = key_with_grant(&kms, ALL).await;
    kms.customer
        .disable_key()
        .key_id(&arn)
        .send()
        .await
        .unwrap();
    let report = validate_key_association(&kms.cluster, &arn, &target(REGION)).await;
    complete(&report);
    passed(
        &report,
        &[
            Check::KeyExists,
            Check::DescribeKeyPermission,
            Check::NotPendingDeletion,
        ],
    );
    let (cause, fix) = failed(&report, Check::Enabled);
    assert_eq!(cause, Cause::Disabled);
    assert!(fix.contains("aws kms enable-key --key-id"), "{fix}");
    skipped(
        &report,
        &[
            Check::GenerateDataKeyPermission,
            Check::DecryptPermission,
            Check::CreateGrantPermission,
        ],
    );
    assert!(!report.may_apply());
}

#[tokio::test]
async fn a_key_pending_deletion_is_refused_with_cancel_key_deletion() {
    let kms = start_kms().await;
    let arn = key_with_grant(&kms, ALL).await;
    kms.customer
        .schedule_key_deletion()
        .key_id(&arn)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    let report = validate_key_association(&kms.cluster, &arn, &target(REGION)).await;
    complete(&report);
    let (cause, fix) = failed(&report, Check::NotPendingDeletion);
    assert_eq!(cause, Cause::PendingDeletion);
    assert!(
        fix.contains("aws kms cancel-key-deletion") && fix.contains("enable-key"),
        "{fix}"
    );
    skipped(&report, &[Check::GenerateDataKeyPermission]);
    assert!(!report.may_apply());
}

/// One permission missing from the cluster's grant: exactly that check fails, with AccessDenied
/// and a fix naming the action and the statement that carries it; every other probe still runs.
async fn missing(
    operation: GrantOperation,
    check: Check,
    action: &str,
    statement: &str,
) -> AssociationReport {
    let kms = start_kms().await;
    let without: Vec<GrantOperation> = ALL.iter().filter(|o| **o != operation).cloned().collect();
    let arn = key_with_grant(&kms, &without).await;
    let report = validate_key_association(&kms.cluster, &arn, &target(REGION)).await;
    complete(&report);
    let (cause, fix) = failed(&report, check);
    assert_eq!(cause, Cause::AccessDenied);
    assert!(fix.contains(action) && fix.contains(statement), "{fix}");
    assert!(!report.may_apply());
    report
}

const BASIC: &str = "Allow keyward cluster role basic key access";
const GRANTS: &str = "Allow keyward cluster role to create grants for encrypted disks";

#[tokio::test]
async fn without_describe_key_the_other_permissions_are_still_probed() {
    let report = missing(
        GrantOperation::DescribeKey,
        Check::DescribeKeyPermission,
        "kms:DescribeKey",
        BASIC,
    )
    .await;
    skipped(
        &report,
        &[Check::KeyExists, Check::SymmetricKey, Check::Enabled],
    );
    passed(
        &report,
        &[
            Check::GenerateDataKeyPermission,
            Check::DecryptPermission,
            Check::CreateGrantPermission,
        ],
    );
}

#[tokio::test]
async fn without_generate_data_key_decrypt_has_nothing_to_decrypt() {
    let report = missing(
        GrantOperation::GenerateDataKey,
        Check::GenerateDataKeyPermission,
        "kms:GenerateDataKey",
        BASIC,
    )
    .await;
    skipped(&report, &[Check::DecryptPermission]);
    passed(
        &report,
        &[Check::DescribeKeyPermission, Check::CreateGrantPermission],
    );
}

#[tokio::test]
async fn without_decrypt_the_round_trip_fails() {
    let report = missing(
        GrantOperation::Decrypt,
        Check::DecryptPermission,
        "kms:Decrypt",
        BASIC,
    )
    .await;
    passed(&report, &[Check::GenerateDataKeyPermission]);
    // Here the cluster's rights come from a grant, and a grantee may only create grants whose
    // operations its own grant has (AWS's rule for grants made through a grant): the probe's
    // CreateGrant of a Decrypt grant is refused too.
    let (cause, _) = failed(&report, Check::CreateGrantPermission);
    assert_eq!(cause, Cause::AccessDenied);
}

#[tokio::test]
async fn without_create_grant_the_dry_run_is_denied() {
    let report = missing(
        GrantOperation::CreateGrant,
        Check::CreateGrantPermission,
        "kms:CreateGrant",
        GRANTS,
    )
    .await;
    passed(
        &report,
        &[Check::DescribeKeyPermission, Check::DecryptPermission],
    );
}

#[tokio::test]
async fn a_key_the_cluster_cannot_use_at_all_names_every_missing_permission() {
    let kms = start_kms().await;
    let arn = key_with_grant(&kms, &[]).await;
    let report = validate_key_association(&kms.cluster, &arn, &target(REGION)).await;
    complete(&report);
    for check in [
        Check::DescribeKeyPermission,
        Check::GenerateDataKeyPermission,
        Check::CreateGrantPermission,
    ] {
        assert_eq!(failed(&report, check).0, Cause::AccessDenied);
    }
    skipped(&report, &[Check::KeyExists, Check::DecryptPermission]);
}

// By key policy, as the guide has the customer do it.

async fn key_with_policy(kms: &Kms, edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let key = kms.customer.create_key().send().await.unwrap();
    let arn = key.key_metadata().unwrap().arn().unwrap().to_string();
    let default = kms
        .customer
        .get_key_policy()
        .key_id(&arn)
        .send()
        .await
        .unwrap();
    let mut policy = merge_key_policy(default.policy().unwrap(), CLUSTER).unwrap();
    edit(&mut policy);
    kms.customer
        .put_key_policy()
        .key_id(&arn)
        .policy(policy.to_string())
        .send()
        .await
        .unwrap();
    arn
}

#[tokio::test]
async fn by_key_policy_the_guides_statements_pass() {
    let kms = start_kms().await;
    let arn = key_with_policy(&kms, |_| {}).await;
    let report = validate_key_association(&kms.cluster, &arn, &target(REGION)).await;
    assert!(report.may_apply(), "{report:#?}");
}

#[tokio::test]
async fn by_key_policy_a_statement_without_decrypt_fails_decrypt_only() {
    let kms = start_kms().await;
    let arn = key_with_policy(&kms, |p| {
        p["Statement"][1]["Action"] =
            serde_json::json!(["kms:DescribeKey", "kms:GenerateDataKey*"]);
    })
    .await;
    let report = validate_key_association(&kms.cluster, &arn, &target(REGION)).await;
    assert_eq!(
        failed(&report, Check::DecryptPermission).0,
        Cause::AccessDenied
    );
    passed(
        &report,
        &[
            Check::DescribeKeyPermission,
            Check::GenerateDataKeyPermission,
            Check::CreateGrantPermission,
        ],
    );
}

#[tokio::test]
async fn by_key_policy_without_the_grant_statement_create_grant_fails() {
    let kms = start_kms().await;
    let arn = key_with_policy(&kms, |p| {
        p["Statement"].as_array_mut().unwrap().pop();
    })
    .await;
    let report = validate_key_association(&kms.cluster, &arn, &target(REGION)).await;
    assert_eq!(
        failed(&report, Check::CreateGrantPermission).0,
        Cause::AccessDenied
    );
    passed(&report, &[Check::DecryptPermission]);
}

#[tokio::test]
async fn kms_not_answering_is_reported_as_unreachable_not_as_a_key_problem() {
    // A port that was bound and released: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let credentials =
        aws_credential_types::Credentials::from_keys("AKIAUNUSED00000TEST", "unused", None);
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .credentials_provider(credentials)
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    let kms = aws_sdk_kms::Client::new(&config);
    let arn = format!("arn:aws:kms:{REGION}:{CUSTOMER}:key/0f0f0f0f-1111-2222-3333-444455556666");
    let report = validate_key_association(&kms, &arn, &target(REGION)).await;
    complete(&report);
    let (cause, fix) = failed(&report, Check::KeyExists);
    assert!(matches!(cause, Cause::KmsUnreachable(_)), "{cause:?}");
    assert!(fix.contains("retry"), "{fix}");
    skipped(
        &report,
        &[Check::DescribeKeyPermission, Check::CreateGrantPermission],
    );
}

// Least privilege: the role may create grants only for itself, only with what disks and key
// changes use.

#[tokio::test]
async fn a_grant_that_lets_the_role_grant_anyone_is_refused_as_too_broad() {
    let kms = start_kms().await;
    // Through a grant with CreateGrant, AWS lets the grantee make child grants for any principal.
    let arn = key_with_grant(&kms, ALL).await;
    let report = validate_key_association(&kms.cluster, &arn, &target(REGION)).await;
    complete(&report);
    passed(&report, &[Check::CreateGrantPermission]);
    let (cause, fix) = failed(&report, Check::CreateGrantLimitedToRole);
    assert_eq!(cause, Cause::GrantTooBroad);
    assert!(
        fix.contains("kms:GranteePrincipal") && fix.contains(CLUSTER) && fix.contains("Decrypt"),
        "{fix}"
    );
    assert!(!report.may_apply());
    // Both probes were dry runs: only the customer's grant exists.
    let grants = kms
        .customer
        .list_grants()
        .key_id(&arn)
        .send()
        .await
        .unwrap();
    assert_eq!(grants.grants().len(), 1);
}

#[tokio::test]
async fn by_key_policy_an_unconditioned_create_grant_statement_is_refused_until_the_fix_is_applied()
{
    let kms = start_kms().await;
    let arn = key_with_policy(&kms, |p| {
        let grant = p["Statement"].as_array_mut().unwrap().last_mut().unwrap();
        grant.as_object_mut().unwrap().remove("Condition");
    })
    .await;
    let report = validate_key_association(&kms.cluster, &arn, &target(REGION)).await;
    complete(&report);
    passed(&report, &[Check::CreateGrantPermission]);
    let (cause, fix) = failed(&report, Check::CreateGrantLimitedToRole);
    assert_eq!(cause, Cause::GrantTooBroad);
    assert!(!report.may_apply());
    // The fix carries the statement to paste: applied as written, the key passes.
    let statement: serde_json::Value =
        serde_json::from_str(&fix[fix.find('{').unwrap()..]).unwrap();
    assert_eq!(
        statement["Condition"]["StringEquals"]["kms:GranteePrincipal"],
        CLUSTER
    );
    let current = kms
        .customer
        .get_key_policy()
        .key_id(&arn)
        .send()
        .await
        .unwrap();
    let mut policy: serde_json::Value = serde_json::from_str(current.policy().unwrap()).unwrap();
    *policy["Statement"]
        .as_array_mut()
        .unwrap()
        .last_mut()
        .unwrap() = statement;
    kms.customer
        .put_key_policy()
        .key_id(&arn)
        .policy(policy.to_string())
        .send()
        .await
        .unwrap();
    let report = validate_key_association(&kms.cluster, &arn, &target(REGION)).await;
    assert!(report.may_apply(), "{report:#?}");
}

/// Under the guide's statements, the cluster's principal creates the grants disks and key
/// changes need, and nothing else: not for an outside principal, not with another operation,
/// not without being the retiring principal itself. The key's grants are unchanged by each
/// refusal.
#[tokio::test]
async fn by_key_policy_the_role_cannot_grant_an_outside_principal_anything() {
    let kms = start_kms().await;
    let arn = key_with_policy(&kms, |_| {}).await;
    let outsider = "arn:aws:iam::999988887777:root";
    let attempts: [(&str, &str, Option<&str>, GrantOperation); 5] = [
        (
            "an outside grantee",
            outsider,
            Some(CLUSTER),
            GrantOperation::Decrypt,
        ),
        (
            "an outside grantee it can retire",
            outsider,
            Some(outsider),
            GrantOperation::Decrypt,
        ),
        (
            "itself, Encrypt",
            CLUSTER,
            Some(CLUSTER),
            GrantOperation::Encrypt,
        ),
        (
            "itself, CreateGrant",
            CLUSTER,
            Some(CLUSTER),
            GrantOperation::CreateGrant,
        ),
        (
            "itself, without a retiring principal",
            CLUSTER,
            None,
            GrantOperation::Decrypt,
        ),
    ];
    for (what, grantee, retiring, operation) in attempts {
        let refused = kms
            .cluster
            .create_grant()
            .key_id(&arn)
            .grantee_principal(grantee)
            .set_retiring_principal(retiring.map(str::to_owned))
            .operations(operation)
            .send()
            .await
            .expect_err(what);
        assert_eq!(
            refused.as_service_error().and_then(|e| e.meta().code()),
            Some("AccessDeniedException"),
            "{what}: {refused:?}"
        );
        let grants = kms
            .customer
            .list_grants()
            .key_id(&arn)
            .send()
            .await
            .unwrap();
        assert!(grants.grants().is_empty(), "{what}: {grants:?}");
    }
    // What the operator does is allowed: a Decrypt grant for itself, which it retires.
    let grant = kms
        .cluster
        .create_grant()
        .key_id(&arn)
        .grantee_principal(CLUSTER)
        .retiring_principal(CLUSTER)
        .operations(GrantOperation::Decrypt)
        .operations(GrantOperation::ReEncryptFrom)
        .send()
        .await
        .unwrap();
    kms.cluster
        .retire_grant()
        .key_id(&arn)
        .grant_id(grant.grant_id().unwrap())
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_key_of_the_platforms_own_account_is_refused_before_calling_kms() {
    let kms = start_kms().await;
    let arn = format!("arn:aws:kms:{REGION}:{PLATFORM}:key/0f0f0f0f-1111-2222-3333-444455556666");
    let report = validate_key_association(&kms.cluster, &arn, &target(REGION)).await;
    complete(&report);
    passed(&report, &[Check::ArnFormat, Check::Partition]);
    let (cause, fix) = failed(&report, Check::CustomerAccount);
    assert_eq!(cause, Cause::PlatformKey);
    assert!(fix.contains("your own AWS account"), "{fix}");
    skipped(&report, &[Check::Region, Check::KeyExists]);
    assert!(!report.may_apply());
    // An internal cluster's own key lives there: the same ARN is not refused for it.
    let internal = AssociationTarget {
        refused_account: None,
        ..target(REGION)
    };
    let report = validate_key_association(&kms.cluster, &arn, &internal).await;
    passed(&report, &[Check::CustomerAccount]);
}

#[tokio::test]
async fn a_key_of_another_partition_is_refused() {
    let kms = start_kms().await;
    for partition in ["aws-cn", "aws-us-gov"] {
        let arn = format!(
            "arn:{partition}:kms:{REGION}:{CUSTOMER}:key/0f0f0f0f-1111-2222-3333-444455556666"
        );
        let report = validate_key_association(&kms.cluster, &arn, &target(REGION)).await;
        complete(&report);
        let (cause, fix) = failed(&report, Check::Partition);
        assert_eq!(cause, Cause::WrongPartition);
        assert!(fix.contains("aws partition"), "{fix}");
        skipped(&report, &[Check::CustomerAccount, Check::KeyExists]);
        assert!(!report.may_apply());
    }
}
