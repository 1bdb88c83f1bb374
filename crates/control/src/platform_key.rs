//! The platform's own keys, for clusters with `internal` encryption: made by the operator in the
//! platform account, their policy naming each cluster role that uses them.

use std::time::Duration;

use keyward_envelope::{KmsErrorCode, KmsFailure};
use keyward_storage::vocab::CLUSTER_CONTEXT_KEY;

use crate::error::{Error, Result};
use crate::merge_key_policy;
use crate::shared::Shared;

/// The internal key of a cluster: made by the operator in the platform account, with the
/// account's default statement and the two statements naming the cluster's role.
pub(crate) async fn create(
    shared: &Shared,
    cluster_id: &str,
    role_arn: &str,
    region: &str,
) -> Result<String> {
    let account = &shared.config.platform_account_id;
    let default = serde_json::json!({
        "Version": "2012-10-17",
        "Id": "key-default-1",
        "Statement": [{
            "Sid": "Enable IAM User Permissions",
            "Effect": "Allow",
            "Principal": { "AWS": format!("arn:aws:iam::{account}:root") },
            "Action": "kms:*",
            "Resource": "*"
        }]
    });
    let policy = merge_key_policy(&default.to_string(), role_arn)?.to_string();
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

/// Adds the two statements for `role_arn` to the policy of the platform's key `key_arn`.
pub(crate) async fn add_role(shared: &Shared, key_arn: &str, role_arn: &str) -> Result<()> {
    let kms = shared.operator_kms(None);
    let kms_error = |what: &str, e: &dyn std::fmt::Display| {
        Error::Internal(format!("KMS {what} of {key_arn} failed: {e}"))
    };
    let current = kms
        .get_key_policy()
        .key_id(key_arn)
        .policy_name("default")
        .send()
        .await
        .map_err(|e| kms_error("GetKeyPolicy", &aws_sdk_kms::error::DisplayErrorContext(&e)))?;
    let policy = current.policy().unwrap_or("{}");
    // Keep the statements of the other clusters sharing the key: ours get their own Sids.
    let mut merged: serde_json::Value =
        serde_json::from_str(policy).map_err(|e| kms_error("GetKeyPolicy", &e))?;
    let ours = crate::key_policy_statements(role_arn);
    if let (Some(list), Some(add)) = (merged["Statement"].as_array_mut(), ours.as_array()) {
        for statement in add {
            let mut statement = statement.clone();
            let sid = format!(
                "{} ({})",
                statement["Sid"].as_str().unwrap_or_default(),
                role_arn.rsplit('/').next().unwrap_or_default()
            );
            statement["Sid"] = serde_json::Value::String(sid);
            list.push(statement);
        }
    }
    kms.put_key_policy()
        .key_id(key_arn)
        .policy_name("default")
        .policy(merged.to_string())
        .send()
        .await
        .map_err(|e| kms_error("PutKeyPolicy", &aws_sdk_kms::error::DisplayErrorContext(&e)))?;
    Ok(())
}
