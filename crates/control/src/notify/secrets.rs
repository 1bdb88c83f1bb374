//! The webhook secrets at rest: each only as a KMS ciphertext under the platform's notification
//! key, never under the customer's key — a notification that the customer's key was disabled
//! must still be signed and sent while that key is disabled.
//!
//! The key is made once by the operator in the platform account, found again by its alias
//! [`NOTIFICATION_KEY_ALIAS`]. Its policy names only the operator, for `Encrypt`/`Decrypt` and
//! administration: no account-root statement, so the cluster roles (whose identity policy allows
//! `kms:Decrypt` on any key, as customer keys need) cannot use it. Every ciphertext is bound by
//! its encryption context to its organization and destination: a wrapped secret copied to
//! another destination's row does not decrypt.
//!
//! Here: the key's alias, policy and encryption context, and the ARN once known. The KMS calls,
//! made with the operator's credentials from the shared state, are in `notify_secrets.rs`.

use keyward_storage::vocab::PURPOSE_CONTEXT_KEY;
use tokio::sync::OnceCell;

/// The alias of the platform's notification key.
pub const NOTIFICATION_KEY_ALIAS: &str = "alias/keyward/notification-secrets";

/// The encryption context's keys beside the shared [`PURPOSE_CONTEXT_KEY`].
const PURPOSE: &str = "notification-secret";
const ORG_KEY: &str = "keyward:org";
const DESTINATION_KEY: &str = "keyward:destination";

/// The notification key's ARN, found or made once per process.
#[derive(Default)]
pub(crate) struct NotificationKey {
    pub(crate) arn: OnceCell<String>,
}

pub(crate) fn policy(operator_arn: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Id": "keyward-notification-secrets",
        "Statement": [{
            "Sid": "Allow the keyward operator to wrap and unwrap webhook secrets",
            "Effect": "Allow",
            "Principal": { "AWS": operator_arn },
            "Action": [
                "kms:Encrypt", "kms:Decrypt", "kms:DescribeKey", "kms:CreateAlias",
                "kms:GetKeyPolicy", "kms:PutKeyPolicy", "kms:EnableKey", "kms:DisableKey",
                "kms:TagResource", "kms:ListResourceTags", "kms:ScheduleKeyDeletion",
                "kms:CancelKeyDeletion", "kms:EnableKeyRotation", "kms:GetKeyRotationStatus"
            ],
            "Resource": "*"
        }]
    })
    .to_string()
}

pub(crate) fn context(
    org_id: &str,
    destination_id: &str,
) -> std::collections::HashMap<String, String> {
    [
        (PURPOSE_CONTEXT_KEY, PURPOSE),
        (ORG_KEY, org_id),
        (DESTINATION_KEY, destination_id),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}
