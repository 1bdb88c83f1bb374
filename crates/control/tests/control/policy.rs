//! The key-policy statements, accepted by KMS as a key policy naming the cluster's principal.

use keyward_control::{key_policy_statements, merge_key_policy};

use crate::{start_kms, CLUSTER};

#[tokio::test]
async fn the_merged_policy_is_accepted_by_kms_and_read_back_unchanged() {
    let kms = start_kms().await;
    let key = kms.customer.create_key().send().await.unwrap();
    let key_id = key.key_metadata().unwrap().key_id().to_string();
    let default = kms
        .customer
        .get_key_policy()
        .key_id(&key_id)
        .send()
        .await
        .unwrap()
        .policy()
        .unwrap()
        .to_string();
    let merged = merge_key_policy(&default, CLUSTER).unwrap();
    kms.customer
        .put_key_policy()
        .key_id(&key_id)
        .policy(merged.to_string())
        .send()
        .await
        .unwrap();
    let stored = kms
        .customer
        .get_key_policy()
        .key_id(&key_id)
        .send()
        .await
        .unwrap()
        .policy()
        .unwrap()
        .to_string();
    let stored: serde_json::Value = serde_json::from_str(&stored).unwrap();
    let statements = stored["Statement"].as_array().unwrap();
    assert_eq!(statements.len(), 3, "the default statement and our two");
    assert_eq!(
        serde_json::Value::Array(statements[1..].to_vec()),
        key_policy_statements(CLUSTER)
    );
    // Merging what KMS stored again changes nothing.
    assert_eq!(
        merge_key_policy(&stored.to_string(), CLUSTER).unwrap(),
        stored
    );
}
