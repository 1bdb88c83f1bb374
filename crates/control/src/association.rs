//! Validation of a key association: every check, run as the cluster's role, before a customer's
//! key is applied to a cluster.
//!
//! Order and dependencies: the ARN checks and the region check need no KMS call; one DescribeKey
//! shows existence, the DescribeKey permission, spec, usage and state; then GenerateDataKey with a
//! probe encryption context, Decrypt of that probe, and CreateGrant with `DryRun` (which answers
//! `DryRunOperationException` when the call would be allowed): once as the operator attaches a
//! disk (must be allowed), once for a principal other than the role (must be refused, so the
//! role cannot hand the key to anyone). An external cluster's key must be the customer's: one of
//! the platform's own account (another cluster's internal key) or of another partition is refused
//! before any KMS call. When DescribeKey is denied, the
//! other permissions are still probed, so one report names every missing permission. KMS errors
//! are classified by their AWS error code, never by their message.

use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::types::{GrantConstraints, GrantOperation, KeySpec, KeyState, KeyUsageType};
use keyward_envelope::{KmsCause, KmsErrorCode, KmsFailure};
use serde::Serialize;
use zeroize::Zeroizing;

use keyward_storage::vocab::{
    ASSOCIATION_PROBE, PROBE_CONTEXT_KEY, PROBE_GRANT_NAME, VOLUME_ID_CONTEXT_KEY,
};

use crate::policy::{BASIC_ACCESS_SID, CREATE_GRANT_SID};

/// One thing that can stop a key from working for a cluster, in the order they are run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    NotAlias,
    ArnFormat,
    /// The key is in the platform's partition (`aws`, `aws-cn`, `aws-us-gov` never mix).
    Partition,
    /// An external cluster's key is the customer's, not one of the platform's own account.
    CustomerAccount,
    Region,
    KeyExists,
    DescribeKeyPermission,
    SymmetricKey,
    EncryptDecryptUsage,
    Enabled,
    NotPendingDeletion,
    GenerateDataKeyPermission,
    DecryptPermission,
    CreateGrantPermission,
    /// The role may create grants only for itself, with only the operations disks and key
    /// changes use: a grant for anyone else is refused by the key policy.
    CreateGrantLimitedToRole,
}

/// Why a check failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "detail")]
pub enum Cause {
    MalformedArn,
    AliasInsteadOfKey,
    /// The key's partition is not the platform's.
    WrongPartition,
    /// The key belongs to the platform's own account (another cluster's internal key).
    PlatformKey,
    WrongRegion,
    KeyNotFound,
    NotSymmetric,
    NotEncryptDecrypt,
    Disabled,
    PendingDeletion,
    /// Another key state that refuses use (PendingImport, Unavailable, Creating, ...).
    KeyUnavailable(String),
    AccessDenied,
    /// No answer from KMS (network, timeout, throttling, KMS internal error).
    KmsUnreachable(String),
    /// Decrypt answered, but not with the data key GenerateDataKey returned.
    ProbeMismatch,
    /// The key policy lets the role create grants for other principals or operations.
    GrantTooBroad,
    /// An AWS error code this validation does not expect at this step.
    Unexpected(String),
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "result")]
pub enum Outcome {
    Passed,
    Failed {
        cause: Cause,
        /// What was seen (for AWS errors: the error code and KMS's message).
        detail: String,
        /// What the customer should do, exactly.
        fix: String,
    },
    Skipped {
        why: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    pub check: Check,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// Every check of one association attempt. Carries no key material.
#[derive(Debug, Clone, Serialize)]
pub struct AssociationReport {
    pub key_arn: String,
    pub cluster_region: String,
    pub checks: Vec<CheckResult>,
}

impl AssociationReport {
    /// The key may be applied only when every check ran and passed.
    pub fn may_apply(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.outcome == Outcome::Passed)
    }

    pub fn outcome(&self, check: Check) -> Option<&Outcome> {
        self.checks
            .iter()
            .find(|c| c.check == check)
            .map(|c| &c.outcome)
    }

    /// The failed checks, in order.
    pub fn failures(&self) -> impl Iterator<Item = &CheckResult> {
        self.checks
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Failed { .. }))
    }

    fn pass(&mut self, check: Check) {
        self.push(check, Outcome::Passed);
    }

    fn fail(
        &mut self,
        check: Check,
        cause: Cause,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) {
        let (detail, fix) = (detail.into(), fix.into());
        self.push(check, Outcome::Failed { cause, detail, fix });
    }

    fn skip(&mut self, checks: &[Check], why: &str) {
        for &check in checks {
            self.push(
                check,
                Outcome::Skipped {
                    why: why.to_string(),
                },
            );
        }
    }

    fn push(&mut self, check: Check, outcome: Outcome) {
        self.checks.push(CheckResult { check, outcome });
    }
}

const AFTER_ARN: &[Check] = &[
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
];
const DESCRIBED: &[Check] = &[
    Check::SymmetricKey,
    Check::EncryptDecryptUsage,
    Check::Enabled,
    Check::NotPendingDeletion,
];
const PROBES: &[Check] = &[
    Check::GenerateDataKeyPermission,
    Check::DecryptPermission,
    Check::CreateGrantPermission,
    Check::CreateGrantLimitedToRole,
];

/// The checks of [`AFTER_ARN`] that come after `check`.
fn after(check: Check) -> &'static [Check] {
    let at = AFTER_ARN
        .iter()
        .position(|c| *c == check)
        .map_or(0, |i| i + 1);
    &AFTER_ARN[at..]
}

/// What a key is checked against: the cluster it is for, and the platform it runs on.
#[derive(Debug, Clone, Copy)]
pub struct AssociationTarget<'a> {
    /// The cluster's region: the key must be there.
    pub region: &'a str,
    /// The cluster's role, whose credentials `kms` carries. Its partition is the platform's; it
    /// is the only grantee the `CreateGrant` statement may allow.
    pub role_arn: &'a str,
    /// The platform's own account, whose keys an external cluster must not use; `None` for an
    /// internal cluster, whose key the platform made there.
    pub refused_account: Option<&'a str>,
}

/// The grantee of the probe that must be refused: a principal of the key's account that is not
/// the cluster's role (the account itself always exists, so KMS checks the policy, not the name).
fn outside_grantee(partition: &str, account: &str) -> String {
    format!("arn:{partition}:iam::{account}:root")
}

/// Runs every check of associating `key_arn` with the cluster `target` describes. `kms` acts as
/// the cluster's role and must be configured for the cluster's region. Never fails: what goes
/// wrong is reported, check by check; see [`AssociationReport::may_apply`].
pub async fn validate_key_association(
    kms: &aws_sdk_kms::Client,
    key_arn: &str,
    target: &AssociationTarget<'_>,
) -> AssociationReport {
    let cluster_region = target.region;
    let key_arn = key_arn.trim();
    let mut report = AssociationReport {
        key_arn: key_arn.to_string(),
        cluster_region: cluster_region.to_string(),
        checks: Vec::new(),
    };

    // The ARN, without calling KMS.
    if is_alias(key_arn) {
        report.fail(
            Check::NotAlias,
            Cause::AliasInsteadOfKey,
            format!("{key_arn} is an alias, which can later point to another key"),
            "Paste the key ARN (arn:aws:kms:<region>:<account>:key/<key-id>), not an alias: `aws kms \
             describe-key --key-id <alias> --query KeyMetadata.Arn` prints it",
        );
        report.skip(&[Check::ArnFormat], "the value is an alias, not a key ARN");
        report.skip(AFTER_ARN, "the value is an alias, not a key ARN");
        return report;
    }
    report.pass(Check::NotAlias);
    let Some(arn) = KeyArn::parse(key_arn) else {
        report.fail(
            Check::ArnFormat,
            Cause::MalformedArn,
            format!("{key_arn:?} is not a KMS key ARN"),
            "Paste the full key ARN, of the form arn:aws:kms:<region>:<12-digit account>:key/<key-id>, \
             as shown by `aws kms describe-key --key-id <key> --query KeyMetadata.Arn`",
        );
        report.skip(AFTER_ARN, "the key ARN is malformed");
        return report;
    };
    report.pass(Check::ArnFormat);
    let platform_partition = target.role_arn.split(':').nth(1).unwrap_or("aws");
    if arn.partition != platform_partition {
        report.fail(
            Check::Partition,
            Cause::WrongPartition,
            format!(
                "the key is in the {} partition, the platform in {platform_partition}",
                arn.partition
            ),
            format!(
                "Create the key in an account of the {platform_partition} partition (ARNs \
                 arn:{platform_partition}:kms:{cluster_region}:...): a role of one partition can never \
                 use a key of another"
            ),
        );
        report.skip(after(Check::Partition), "the key is in another partition");
        return report;
    }
    report.pass(Check::Partition);
    if target.refused_account == Some(arn.account) {
        report.fail(
            Check::CustomerAccount,
            Cause::PlatformKey,
            format!(
                "the key belongs to the platform's own account {}, not to you",
                arn.account
            ),
            format!(
                "Create a key in your own AWS account, in {cluster_region}, with the key policy \
                 statements for this cluster's role, and paste its ARN; keys of the platform's account \
                 are the platform's and can be deleted with the cluster they belong to"
            ),
        );
        report.skip(after(Check::CustomerAccount), "the key is the platform's");
        return report;
    }
    report.pass(Check::CustomerAccount);
    if arn.region != cluster_region {
        report.fail(
            Check::Region,
            Cause::WrongRegion,
            format!(
                "the key is in {}, the cluster in {cluster_region}",
                arn.region
            ),
            format!(
                "Create the key in the cluster's region: `aws kms create-key --region {cluster_region}`, \
                 with the key policy statements for the cluster's role, and paste its ARN"
            ),
        );
        report.skip(
            after(Check::Region),
            "the key is in another region than the cluster",
        );
        return report;
    }
    report.pass(Check::Region);

    // DescribeKey: existence, permission, spec, usage, state.
    let mut usable = true;
    match kms.describe_key().key_id(key_arn).send().await {
        Ok(out) => {
            report.pass(Check::KeyExists);
            report.pass(Check::DescribeKeyPermission);
            match out.key_metadata() {
                Some(meta) => {
                    usable = check_metadata(&mut report, meta);
                }
                None => {
                    report.fail(
                        Check::SymmetricKey,
                        Cause::Unexpected("no KeyMetadata".into()),
                        "DescribeKey answered without KeyMetadata",
                        "Retry; if it persists, the KMS endpoint is not behaving as AWS KMS",
                    );
                    report.skip(&DESCRIBED[1..], "DescribeKey returned no metadata");
                    usable = false;
                }
            }
        }
        Err(error) => {
            let failure = KmsFailure::from_sdk(&error);
            match failure.cause() {
                KmsCause::NotFound => {
                    report.fail(
                        Check::KeyExists,
                        Cause::KeyNotFound,
                        failure.to_string(),
                        format!(
                            "Check the key ARN for typos and that it is a key of account {} in {}; a key \
                             that was deleted cannot come back: create a new one",
                            arn.account, arn.region
                        ),
                    );
                    report.skip(
                        after(Check::KeyExists),
                        "the key does not exist (or is not visible from the cluster's account)",
                    );
                    return report;
                }
                KmsCause::AccessDenied => {
                    report.skip(
                        &[Check::KeyExists],
                        "DescribeKey is denied, so KMS does not say whether the key exists",
                    );
                    report.fail(
                        Check::DescribeKeyPermission,
                        Cause::AccessDenied,
                        failure.to_string(),
                        missing_permission_fix("kms:DescribeKey", BASIC_ACCESS_SID),
                    );
                    report.skip(
                        DESCRIBED,
                        "DescribeKey is denied, so the key's spec and state cannot be read",
                    );
                }
                _ => {
                    let (cause, fix) = classify(&failure);
                    report.fail(Check::KeyExists, cause, failure.to_string(), fix);
                    report.skip(after(Check::KeyExists), "DescribeKey did not answer");
                    return report;
                }
            }
        }
    }
    if !usable {
        report.skip(
            PROBES,
            "the key cannot be used as it is; fix the checks above first",
        );
        return report;
    }

    // GenerateDataKey and Decrypt: a real round trip with a probe context.
    // The probe context, so the customer can recognise the probe in CloudTrail.
    let context_value = format!("{ASSOCIATION_PROBE} cluster-region={cluster_region}");
    let generated = kms
        .generate_data_key()
        .key_id(key_arn)
        .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256)
        .encryption_context(PROBE_CONTEXT_KEY, &context_value)
        .send()
        .await;
    match generated {
        Ok(out) => {
            report.pass(Check::GenerateDataKeyPermission);
            let plaintext = Zeroizing::new(
                out.plaintext()
                    .map(|b| b.as_ref().to_vec())
                    .unwrap_or_default(),
            );
            match out.ciphertext_blob() {
                Some(blob) => {
                    let decrypted = kms
                        .decrypt()
                        .key_id(key_arn)
                        .ciphertext_blob(blob.clone())
                        .encryption_context(PROBE_CONTEXT_KEY, &context_value)
                        .send()
                        .await;
                    match decrypted {
                        Ok(d) => {
                            let back = Zeroizing::new(
                                d.plaintext()
                                    .map(|b| b.as_ref().to_vec())
                                    .unwrap_or_default(),
                            );
                            let same = !plaintext.is_empty()
                                && aws_lc_rs::constant_time::verify_slices_are_equal(
                                    &plaintext, &back,
                                )
                                .is_ok();
                            if same {
                                report.pass(Check::DecryptPermission);
                            } else {
                                report.fail(
                                    Check::DecryptPermission,
                                    Cause::ProbeMismatch,
                                    "Decrypt returned another data key than GenerateDataKey",
                                    "The KMS endpoint is not behaving as AWS KMS; check the endpoint the \
                                     platform is configured with",
                                );
                            }
                        }
                        Err(error) => fail_probe(
                            &mut report,
                            Check::DecryptPermission,
                            "kms:Decrypt",
                            BASIC_ACCESS_SID,
                            &error,
                        ),
                    }
                }
                None => report.fail(
                    Check::DecryptPermission,
                    Cause::Unexpected("no CiphertextBlob".into()),
                    "GenerateDataKey answered without a CiphertextBlob",
                    "The KMS endpoint is not behaving as AWS KMS",
                ),
            }
        }
        Err(error) => {
            fail_probe(
                &mut report,
                Check::GenerateDataKeyPermission,
                "kms:GenerateDataKey",
                BASIC_ACCESS_SID,
                &error,
            );
            report.skip(
                &[Check::DecryptPermission],
                "there is no probe ciphertext to decrypt, because GenerateDataKey failed",
            );
        }
    }

    // CreateGrant with DryRun, as the operator attaches a disk: for the role itself, retirable by
    // it, Decrypt under a volume-id constraint. Allowed when KMS answers DryRunOperationException;
    // nothing is created.
    let grant = kms
        .create_grant()
        .key_id(key_arn)
        .grantee_principal(target.role_arn)
        .retiring_principal(target.role_arn)
        .operations(GrantOperation::Decrypt)
        .constraints(
            GrantConstraints::builder()
                .encryption_context_subset(VOLUME_ID_CONTEXT_KEY, ASSOCIATION_PROBE)
                .build(),
        )
        .name(PROBE_GRANT_NAME)
        .dry_run(true)
        .send()
        .await;
    let allowed = match grant {
        Err(error) if KmsFailure::from_sdk(&error).is(&KmsErrorCode::DryRunOperationException) => {
            report.pass(Check::CreateGrantPermission);
            true
        }
        Err(error) => {
            fail_probe(
                &mut report,
                Check::CreateGrantPermission,
                "kms:CreateGrant",
                CREATE_GRANT_SID,
                &error,
            );
            false
        }
        Ok(out) => {
            // KMS ignored DryRun and created the grant: the permission is there; the role retires
            // its own grant.
            if let Some(id) = out.grant_id() {
                let _ = kms.retire_grant().key_id(key_arn).grant_id(id).send().await;
            }
            report.pass(Check::CreateGrantPermission);
            true
        }
    };
    if !allowed {
        report.skip(
            &[Check::CreateGrantLimitedToRole],
            "the role may not create the grants disks need, so what else it may grant is moot",
        );
        return report;
    }

    // The same DryRun for a principal other than the role must be refused: otherwise whoever
    // holds the platform's credentials could leave a Decrypt grant for an outsider on the key.
    let outside = outside_grantee(arn.partition, arn.account);
    let broad = kms
        .create_grant()
        .key_id(key_arn)
        .grantee_principal(&outside)
        .operations(GrantOperation::Decrypt)
        .name(PROBE_GRANT_NAME)
        .dry_run(true)
        .send()
        .await;
    match broad {
        Err(error) if KmsFailure::from_sdk(&error).cause() == KmsCause::AccessDenied => {
            report.pass(Check::CreateGrantLimitedToRole)
        }
        Err(error) if !KmsFailure::from_sdk(&error).is(&KmsErrorCode::DryRunOperationException) => {
            let failure = KmsFailure::from_sdk(&error);
            let (cause, fix) = classify(&failure);
            report.fail(
                Check::CreateGrantLimitedToRole,
                cause,
                failure.to_string(),
                fix,
            );
        }
        other => {
            if let Ok(out) = other {
                if let Some(id) = out.grant_id() {
                    let _ = kms.revoke_grant().key_id(key_arn).grant_id(id).send().await;
                }
            }
            report.fail(
                Check::CreateGrantLimitedToRole,
                Cause::GrantTooBroad,
                format!(
                    "the key policy lets the cluster's role create a Decrypt grant for {outside}"
                ),
                grant_too_broad_fix(target.role_arn),
            );
        }
    }
    report
}

/// The exact statement that replaces an unconditioned `CreateGrant` statement.
fn grant_too_broad_fix(role_arn: &str) -> String {
    let statement = serde_json::json!({
        "Sid": CREATE_GRANT_SID,
        "Effect": "Allow",
        "Principal": { "AWS": role_arn },
        "Action": ["kms:CreateGrant"],
        "Resource": "*",
        "Condition": crate::policy::create_grant_condition(role_arn)
    });
    format!(
        "Replace the key policy's CreateGrant statement for the cluster's role with this one, which \
         lets the role create grants only for itself and only for {}, and remove any other statement \
         that allows it kms:CreateGrant without these conditions: {statement}",
        crate::policy::GRANT_OPERATIONS.join(", ")
    )
}

/// Spec, usage and state from DescribeKey. Returns whether the key can be used at all.
fn check_metadata(report: &mut AssociationReport, meta: &aws_sdk_kms::types::KeyMetadata) -> bool {
    let mut usable = true;
    let spec = meta
        .key_spec()
        .cloned()
        .unwrap_or(KeySpec::SymmetricDefault);
    if spec == KeySpec::SymmetricDefault {
        report.pass(Check::SymmetricKey);
    } else {
        usable = false;
        report.fail(
            Check::SymmetricKey,
            Cause::NotSymmetric,
            format!("the key spec is {}", spec.as_str()),
            "Create a symmetric key (key spec SYMMETRIC_DEFAULT): `aws kms create-key --key-spec \
             SYMMETRIC_DEFAULT --key-usage ENCRYPT_DECRYPT`; a key's spec cannot be changed",
        );
    }
    let usage = meta
        .key_usage()
        .cloned()
        .unwrap_or(KeyUsageType::EncryptDecrypt);
    if usage == KeyUsageType::EncryptDecrypt {
        report.pass(Check::EncryptDecryptUsage);
    } else {
        usable = false;
        report.fail(
            Check::EncryptDecryptUsage,
            Cause::NotEncryptDecrypt,
            format!("the key usage is {}", usage.as_str()),
            "Create a key with key usage ENCRYPT_DECRYPT: `aws kms create-key --key-spec \
             SYMMETRIC_DEFAULT --key-usage ENCRYPT_DECRYPT`; a key's usage cannot be changed",
        );
    }
    let state = meta.key_state().cloned();
    let key_id = meta.key_id();
    match state {
        Some(KeyState::PendingDeletion) | Some(KeyState::PendingReplicaDeletion) => {
            usable = false;
            report.pass(Check::Enabled);
            report.fail(
                Check::NotPendingDeletion,
                Cause::PendingDeletion,
                format!("the key is scheduled for deletion{}", match meta.deletion_date() {
                    Some(d) => format!(" on {d}"),
                    None => String::new(),
                }),
                format!(
                    "Cancel the deletion and enable the key: `aws kms cancel-key-deletion --key-id {key_id}` \
                     then `aws kms enable-key --key-id {key_id}`"
                ),
            );
        }
        Some(KeyState::Disabled) => {
            usable = false;
            report.fail(
                Check::Enabled,
                Cause::Disabled,
                "the key is disabled",
                format!("Enable the key: `aws kms enable-key --key-id {key_id}`"),
            );
            report.pass(Check::NotPendingDeletion);
        }
        Some(KeyState::Enabled) => {
            report.pass(Check::Enabled);
            report.pass(Check::NotPendingDeletion);
        }
        other => {
            usable = false;
            let state = other.map_or_else(|| "unknown".to_string(), |s| s.as_str().to_string());
            report.fail(
                Check::Enabled,
                Cause::KeyUnavailable(state.clone()),
                format!("the key state is {state}"),
                "Use a key in state Enabled; a key waiting for imported material needs `aws kms \
                 import-key-material` first",
            );
            report.pass(Check::NotPendingDeletion);
        }
    }
    usable
}

fn fail_probe<E, R>(
    report: &mut AssociationReport,
    check: Check,
    action: &str,
    sid: &str,
    error: &SdkError<E, R>,
) where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let failure = KmsFailure::from_sdk(error);
    let (cause, fix) = match failure.cause() {
        KmsCause::AccessDenied => (Cause::AccessDenied, missing_permission_fix(action, sid)),
        _ => classify(&failure),
    };
    report.fail(check, cause, failure.to_string(), fix);
}

fn missing_permission_fix(action: &str, sid: &str) -> String {
    format!(
        "Allow {action} for the cluster's role in the key policy: add the statement \"{sid}\" exactly as \
         keyward's key-policy statements for this cluster give it (`aws kms put-key-policy --key-id <key> \
         --policy-name default --policy file://policy.json`), and check that no Deny statement or grant \
         constraint takes it away"
    )
}

/// Cause and fix of a KMS failure, by what it says about the key ([`KmsFailure::cause`], the
/// table the key-health monitor uses too).
fn classify(failure: &KmsFailure) -> (Cause, String) {
    let code = || match failure.code() {
        Some(code) => code.as_str().to_owned(),
        None => failure.to_string(),
    };
    match failure.cause() {
        KmsCause::NotFound => (
            Cause::KeyNotFound,
            "Check the key ARN; a deleted key cannot come back: create a new key".into(),
        ),
        KmsCause::Disabled => (
            Cause::Disabled,
            "Enable the key: `aws kms enable-key --key-id <key>`".into(),
        ),
        KmsCause::PendingDeletion | KmsCause::Unusable => (
            Cause::KeyUnavailable("invalid state".into()),
            "Check the key's state with `aws kms describe-key`; cancel a scheduled deletion with `aws kms \
             cancel-key-deletion` and enable it"
                .into(),
        ),
        KmsCause::AccessDenied => (
            Cause::AccessDenied,
            "Allow the cluster's role to use the key: add keyward's key-policy statements for this \
             cluster to the key policy"
                .into(),
        ),
        KmsCause::InvalidKeyUsage => (
            Cause::NotEncryptDecrypt,
            "Use a SYMMETRIC_DEFAULT key with usage ENCRYPT_DECRYPT".into(),
        ),
        KmsCause::InvalidArn => (
            Cause::MalformedArn,
            "Paste the full key ARN, of the form arn:aws:kms:<region>:<account>:key/<key-id>".into(),
        ),
        // Throttling and KeyUnavailableException included: AWS asks for a retry.
        KmsCause::Transient => (
            Cause::KmsUnreachable(code()),
            "KMS did not answer: retry; if it persists, check the platform's network path to KMS in \
             this region"
                .into(),
        ),
        KmsCause::CredentialsRefused | KmsCause::NotAboutTheKey => {
            let other = code();
            (
                Cause::Unexpected(other.clone()),
                format!("KMS refused with {other}; see its message and retry once it is addressed"),
            )
        }
    }
}

fn is_alias(value: &str) -> bool {
    value.starts_with("alias/")
        || (value.starts_with("arn:")
            && value
                .splitn(6, ':')
                .nth(5)
                .is_some_and(|r| r.starts_with("alias/")))
}

/// A parsed key ARN: `arn:<partition>:kms:<region>:<12-digit account>:key/<key-id>`.
struct KeyArn<'a> {
    partition: &'a str,
    region: &'a str,
    account: &'a str,
}

impl<'a> KeyArn<'a> {
    fn parse(value: &'a str) -> Option<KeyArn<'a>> {
        let parts: Vec<&str> = value.splitn(6, ':').collect();
        let [arn, partition, service, region, account, resource] = parts[..] else {
            return None;
        };
        let key_id = resource.strip_prefix("key/")?;
        let region_ok = !region.is_empty()
            && region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        let ok = arn == "arn"
            && matches!(partition, "aws" | "aws-cn" | "aws-us-gov")
            && service == "kms"
            && region_ok
            && account.len() == 12
            && account.bytes().all(|b| b.is_ascii_digit())
            && is_key_id(key_id);
        ok.then_some(KeyArn {
            partition,
            region,
            account,
        })
    }
}

/// A key id: a UUID, or `mrk-` and 32 hex digits for a multi-Region key.
fn is_key_id(id: &str) -> bool {
    if let Some(hex) = id.strip_prefix("mrk-") {
        return hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit());
    }
    let groups: Vec<&str> = id.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_kms::types::KeyMetadata;

    #[test]
    fn key_arns_parse_and_bad_ones_do_not() {
        let good = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        let parsed = KeyArn::parse(good).unwrap();
        assert_eq!(
            (parsed.region, parsed.account),
            ("us-east-1", "111122223333")
        );
        assert!(KeyArn::parse(
            "arn:aws:kms:eu-west-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab"
        )
        .is_some());
        for bad in [
            "",
            "1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:kms:us-east-1:1111:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:s3:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:kms:us-east-1:111122223333:key/not-a-key-id",
            "arn:aws:kms::111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        ] {
            assert!(KeyArn::parse(bad).is_none(), "{bad}");
        }
        assert!(is_alias("alias/prod"));
        assert!(is_alias("arn:aws:kms:us-east-1:111122223333:alias/prod"));
        assert!(!is_alias(good));
    }

    fn report() -> AssociationReport {
        AssociationReport {
            key_arn: String::new(),
            cluster_region: "us-east-1".into(),
            checks: Vec::new(),
        }
    }

    // The embedded KMS makes only SYMMETRIC_DEFAULT keys, so the spec and usage checks are shown on
    // DescribeKey metadata as AWS returns it for other keys.
    #[test]
    fn asymmetric_and_mac_keys_fail_spec_and_usage() {
        let meta = KeyMetadata::builder()
            .key_id("k")
            .key_spec(KeySpec::Rsa2048)
            .key_usage(KeyUsageType::SignVerify)
            .key_state(KeyState::Enabled)
            .build()
            .unwrap();
        let mut r = report();
        assert!(!check_metadata(&mut r, &meta));
        assert!(
            matches!(r.outcome(Check::SymmetricKey), Some(Outcome::Failed { cause: Cause::NotSymmetric, fix, .. }) if fix.contains("SYMMETRIC_DEFAULT"))
        );
        assert!(matches!(
            r.outcome(Check::EncryptDecryptUsage),
            Some(Outcome::Failed {
                cause: Cause::NotEncryptDecrypt,
                ..
            })
        ));
        assert_eq!(r.outcome(Check::Enabled), Some(&Outcome::Passed));

        let hmac = KeyMetadata::builder()
            .key_id("k")
            .key_spec(KeySpec::Hmac256)
            .key_usage(KeyUsageType::GenerateVerifyMac)
            .key_state(KeyState::Enabled)
            .build()
            .unwrap();
        let mut r = report();
        assert!(!check_metadata(&mut r, &hmac));
        assert_eq!(r.failures().count(), 2);
    }

    #[test]
    fn a_key_awaiting_import_is_unavailable() {
        let meta = KeyMetadata::builder()
            .key_id("k")
            .key_state(KeyState::PendingImport)
            .build()
            .unwrap();
        let mut r = report();
        assert!(!check_metadata(&mut r, &meta));
        assert!(
            matches!(r.outcome(Check::Enabled), Some(Outcome::Failed { cause: Cause::KeyUnavailable(s), .. }) if s == "PendingImport")
        );
    }
}
