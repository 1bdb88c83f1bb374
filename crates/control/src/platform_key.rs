//! The platform's own keys, for clusters with `internal` encryption: made by the operator in the
//! platform account, one per cluster (a restored cluster gets its own too), each policy naming
//! only its cluster's role; scheduled for deletion only once nothing uses the key.
//!
//! The policy has no "Enable IAM User Permissions" statement for the account: with one, every
//! identity policy of the platform account would apply to the key, and each cluster role's
//! (`kms:Decrypt` on `*`, as it must be for customer keys) would open every other cluster's
//! internal key. Instead the operator is named for administration only (it can describe,
//! re-policy, tag and schedule the deletion of the key, never use it for data), and the cluster's
//! role gets the guide's two statements, `CreateGrant` conditioned as for a customer key.

use std::time::Duration;

use keyward_envelope::{KmsErrorCode, KmsFailure};
use keyward_storage::vocab::CLUSTER_CONTEXT_KEY;

use crate::error::{Error, Result};
use crate::merge_key_policy;
use crate::shared::Shared;

/// The deletion window of a platform key no cluster uses any more.
const PENDING_WINDOW_DAYS: i32 = 7;

/// `Sid` of the internal key's statement for the operator.
pub const OPERATOR_ADMIN_SID: &str = "Allow the keyward operator to administer the key";

/// What the operator may do with an internal key: administration, never data. `PutKeyPolicy`
/// keeps the policy editable by its author (AWS's lockout check asks for it).
pub const OPERATOR_ADMIN_ACTIONS: [&str; 12] = [
    "kms:DescribeKey",
    "kms:GetKeyPolicy",
    "kms:PutKeyPolicy",
    "kms:ListGrants",
    "kms:RevokeGrant",
    "kms:ListResourceTags",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:EnableKey",
    "kms:DisableKey",
    "kms:ScheduleKeyDeletion",
    "kms:CancelKeyDeletion",
];

/// The internal key's policy: the operator's administration statement and the cluster role's
/// two statements, nothing for anyone else.
pub fn internal_key_policy(operator_arn: &str, role_arn: &str) -> Result<serde_json::Value> {
    let admin = serde_json::json!({
        "Version": "2012-10-17",
        "Id": "keyward-internal-key",
        "Statement": [{
            "Sid": OPERATOR_ADMIN_SID,
            "Effect": "Allow",
            "Principal": { "AWS": operator_arn },
            "Action": OPERATOR_ADMIN_ACTIONS,
            "Resource": "*"
        }]
    });
    merge_key_policy(&admin.to_string(), role_arn)
}

/// The internal key of a cluster: made by the operator in the platform account, with the policy
/// of [`internal_key_policy`].
pub(crate) async fn create(
    shared: &Shared,
    cluster_id: &str,
    role_arn: &str,
    region: &str,
) -> Result<String> {
    let operator_arn = shared.operator_arn().await?;
    let policy = internal_key_policy(&operator_arn, role_arn)?.to_string();
    let kms = shared.operator_kms(Some(region));
    // A role just created may not be visible to KMS yet on AWS (IAM is eventually
    // consistent): KMS then refuses the policy; retry a few times.
    let mut attempt = 0;
    loop {
        let created = kms
            .create_key()
            .description(format!("keyward internal key of cluster {cluster_id}"))
            .policy(&policy)
            .tags(
                aws_sdk_kms::types::Tag::builder()
                    .tag_key(CLUSTER_CONTEXT_KEY)
                    .tag_value(cluster_id)
                    .build()
                    .map_err(Error::internal)?,
            )
            .send()
            .await;
        match created {
            Ok(out) => {
                return out
                    .key_metadata()
                    .and_then(|m| m.arn())
                    .map(str::to_owned)
                    .ok_or_else(|| Error::internal("KMS CreateKey answered without a key ARN"))
            }
            Err(error)
                if KmsFailure::from_sdk(&error)
                    .is(&KmsErrorCode::MalformedPolicyDocumentException)
                    && attempt < 5 =>
            {
                attempt += 1;
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(error) => {
                return Err(Error::Internal(format!(
                    "KMS CreateKey failed: {}",
                    aws_sdk_kms::error::DisplayErrorContext(&error)
                )))
            }
        }
    }
}

/// Schedules the platform key `key_arn` of the cluster `owner` for deletion, unless another
/// cluster, live or deleted with its backups kept, still uses it (a key shared by a restore made
/// before each restored cluster got its own key): the customer cannot cancel the deletion of a
/// platform key, so it must never lock data that is still wanted. A key already pending deletion
/// is left as it is.
pub(crate) async fn retire(shared: &Shared, key_arn: &str, owner: &str) -> Result<()> {
    if shared.repo.key_in_use(key_arn, owner).await? {
        tracing::info!(cluster = %owner, key = %key_arn, "platform key still in use: kept");
        return Ok(());
    }
    if let Err(error) = shared
        .operator_kms(None)
        .schedule_key_deletion()
        .key_id(key_arn)
        .pending_window_in_days(PENDING_WINDOW_DAYS)
        .send()
        .await
    {
        tracing::warn!(cluster = %owner, error = %aws_sdk_kms::error::DisplayErrorContext(&error), "platform key not scheduled for deletion");
    }
    Ok(())
}
