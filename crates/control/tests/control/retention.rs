//! No platform action destroys another cluster's data: a restored internal cluster has a
//! platform key of its own; a deleted cluster's backups are kept for the retention period
//! (listed, restorable and deletable by its organization only), and its platform key is
//! scheduled for deletion only once nothing uses it; a restore whose backup is gone fails once,
//! for good, with a message naming it.
//!
//! Time moves on two test clocks: the control plane's (retention) and the KMS's (deletion
//! windows). Nothing sleeps through a period.

use std::time::Duration;

use aws_sdk_kms::types::KeyState;
use keyward_control::{
    Cluster, ClusterState, ControlPlane, Encryption, HealthStatus, NewCluster, OrgId,
};

use crate::harness::{self, org, ready_external_cluster, wait_for, wait_ready, Env};

const DAY: Duration = Duration::from_secs(86_400);

async fn ready_internal_cluster(plane: &ControlPlane, org: &OrgId, name: &str) -> Cluster {
    let cluster = plane
        .create_cluster(
            org,
            NewCluster {
                name: name.into(),
                region: None,
                encryption: Encryption::Internal,
            },
        )
        .await
        .unwrap();
    wait_ready(plane, org, &cluster.id).await
}

async fn key_state(env: &Env, key_arn: &str) -> KeyState {
    env.operator_kms
        .describe_key()
        .key_id(key_arn)
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .key_state()
        .unwrap()
        .clone()
}

/// Waits until the organization keeps no backup (the operator's sweep deleted them).
async fn wait_none_kept(plane: &ControlPlane, org: &OrgId) {
    wait_for(
        "the kept backups to be deleted",
        Duration::from_secs(30),
        || async { plane.list_retained_backups(org).await.unwrap().is_empty() },
    )
    .await;
}

/// Waits until the platform key is scheduled for deletion.
async fn wait_pending_deletion(env: &Env, key_arn: &str) {
    wait_for(
        "the key to be scheduled for deletion",
        Duration::from_secs(30),
        || async { key_state(env, key_arn).await == KeyState::PendingDeletion },
    )
    .await;
}

/// The principals a key policy names.
async fn policy_principals(env: &Env, key_arn: &str) -> Vec<String> {
    let policy = env
        .operator_kms
        .get_key_policy()
        .key_id(key_arn)
        .send()
        .await
        .unwrap();
    let policy: serde_json::Value = serde_json::from_str(policy.policy().unwrap()).unwrap();
    policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["Principal"]["AWS"].as_str().unwrap().to_owned())
        .collect()
}

/// A restored internal cluster gets its own platform key, naming only its own role; the source
/// is deleted, its backups' retention ends and its key's deletion window passes — the restored
/// cluster stays healthy and its documents read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_internal_cluster_has_its_own_key_and_outlives_its_source() {
    let env = harness::start().await;
    let plane = env.plane("plane").await;
    let acme = org(&plane, "acme").await;
    let source = ready_internal_cluster(&plane, &acme.id, "prod").await;
    plane
        .put_document(&acme.id, &source.id, "a.txt", &b"kept"[..])
        .await
        .unwrap();
    let backup = plane.create_backup(&acme.id, &source.id).await.unwrap();
    let restored = plane
        .restore_backup(&acme.id, &source.id, &backup.id)
        .await
        .unwrap();
    let restored = wait_ready(&plane, &acme.id, &restored.id).await;
    let (source_key, restored_key) = (source.key_arn.unwrap(), restored.key_arn.clone().unwrap());
    assert_ne!(restored_key, source_key, "a platform key of its own");
    let principals = policy_principals(&env, &restored_key).await;
    assert!(principals.contains(&restored.role_arn), "{principals:?}");
    assert!(!principals.contains(&source.role_arn), "{principals:?}");
    assert!(!policy_principals(&env, &source_key)
        .await
        .contains(&restored.role_arn));
    assert_eq!(
        harness::read_document(&plane, &acme.id, &restored.id, "a.txt").await,
        b"kept"
    );
    let verification = plane.verify(&acme.id, &restored.id).await.unwrap();
    assert!(verification.all_encrypted, "{verification:?}");
    assert!(
        verification
            .classes
            .iter()
            .all(|c| c.key_arns.iter().all(|k| *k == restored_key)),
        "nothing of the restored cluster is under the source's key: {verification:?}"
    );

    // The source goes; its backups' retention ends; its key's deletion window passes.
    plane.delete_cluster(&acme.id, &source.id).await.unwrap();
    plane.config().clock.advance(31 * DAY);
    wait_pending_deletion(&env, &source_key).await;
    env.server.engine().advance_clock(8 * DAY).await.unwrap();
    let gone = env
        .operator_kms
        .describe_key()
        .key_id(&source_key)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        gone.is_not_found_exception(),
        "the source's key is deleted: {gone:?}"
    );
    assert_eq!(key_state(&env, &restored_key).await, KeyState::Enabled);
    let health = plane
        .check_health_now(&acme.id, &restored.id)
        .await
        .unwrap();
    assert_eq!(health.status, HealthStatus::Healthy, "{health:?}");
    assert_eq!(
        harness::read_document(&plane, &acme.id, &restored.id, "a.txt").await,
        b"kept"
    );
    plane
        .put_document(&acme.id, &restored.id, "b.txt", &b"new"[..])
        .await
        .unwrap();
    plane.shutdown().await;
}

/// A deleted cluster's backups are listed and restorable until the retention ends (on each
/// database); the internal key stays usable meanwhile, and is scheduled for deletion only once
/// the retention has ended and the backups are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_clusters_backups_are_kept_and_restorable_until_retention_ends() {
    let env = harness::start().await;
    for (n, db) in crate::db::test_databases().await.into_iter().enumerate() {
        let data = env.dir.path().join(format!("plane-{n}"));
        let plane = ControlPlane::open(env.config(&data, &db.url))
            .await
            .unwrap();
        kept_until_retention_ends(&env, &plane).await;
        plane.shutdown().await;
    }
}

async fn kept_until_retention_ends(env: &Env, plane: &ControlPlane) {
    let acme = org(plane, "acme").await;
    let cluster = ready_internal_cluster(plane, &acme.id, "prod").await;
    let key = cluster.key_arn.clone().unwrap();
    plane
        .put_document(&acme.id, &cluster.id, "a.txt", &b"v1"[..])
        .await
        .unwrap();
    let backup = plane.create_backup(&acme.id, &cluster.id).await.unwrap();
    assert!(plane
        .list_retained_backups(&acme.id)
        .await
        .unwrap()
        .is_empty());

    let before = plane.config().clock.now_ms();
    plane.delete_cluster(&acme.id, &cluster.id).await.unwrap();
    assert_eq!(
        plane
            .cluster(&acme.id, &cluster.id)
            .await
            .unwrap_err()
            .code(),
        "not_found"
    );
    let kept = plane.list_retained_backups(&acme.id).await.unwrap();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(
        (
            kept[0].id.as_str(),
            kept[0].cluster_id.as_str(),
            kept[0].cluster_name.as_str()
        ),
        (backup.id.as_str(), cluster.id.as_str(), "prod")
    );
    assert_eq!(kept[0].encryption, Encryption::Internal);
    assert!(kept[0].cluster_deleted_at_ms >= before);
    assert_eq!(
        kept[0].retained_until_ms - kept[0].cluster_deleted_at_ms,
        30 * 86_400_000,
        "the default retention"
    );
    assert_eq!(
        key_state(env, &key).await,
        KeyState::Enabled,
        "the backups need it"
    );

    // 29 days on, the backup restores into a new cluster with a key of its own.
    plane.config().clock.advance(29 * DAY);
    let restored = plane
        .restore_retained_backup(&acme.id, &backup.id)
        .await
        .unwrap();
    assert_eq!(restored.encryption, Encryption::Internal);
    let restored = wait_ready(plane, &acme.id, &restored.id).await;
    let restored_key = restored.key_arn.clone().unwrap();
    assert_ne!(restored_key, key);
    assert_eq!(
        harness::read_document(plane, &acme.id, &restored.id, "a.txt").await,
        b"v1"
    );
    assert_eq!(plane.list_retained_backups(&acme.id).await.unwrap(), kept);
    assert_eq!(key_state(env, &key).await, KeyState::Enabled);

    // The retention ends: the backup is gone, and only then is the key scheduled for deletion.
    plane.config().clock.advance(2 * DAY);
    wait_none_kept(plane, &acme.id).await;
    wait_pending_deletion(env, &key).await;
    assert_eq!(
        plane
            .restore_retained_backup(&acme.id, &backup.id)
            .await
            .unwrap_err()
            .code(),
        "not_found"
    );
    // The restored cluster is not touched by any of it.
    assert_eq!(key_state(env, &restored_key).await, KeyState::Enabled);
    assert_eq!(
        harness::read_document(plane, &acme.id, &restored.id, "a.txt").await,
        b"v1"
    );
    plane.delete_cluster(&acme.id, &restored.id).await.unwrap();
}

/// Deleting a backup: a running cluster's by its organization only; a deleted cluster's kept one
/// (kept across a restart) by its organization only (another is told `not_found` and nothing
/// changes); when the last kept backup goes, the internal key is scheduled for deletion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_backup_is_scoped_to_its_organization_and_the_last_one_frees_the_key() {
    let env = harness::start().await;
    let plane = env.plane("plane").await;
    let acme = org(&plane, "acme").await;
    let other = org(&plane, "other").await;
    let cluster = ready_internal_cluster(&plane, &acme.id, "prod").await;
    let key = cluster.key_arn.clone().unwrap();
    let first = plane.create_backup(&acme.id, &cluster.id).await.unwrap();
    let second = plane.create_backup(&acme.id, &cluster.id).await.unwrap();
    let third = plane.create_backup(&acme.id, &cluster.id).await.unwrap();

    // A running cluster's backup.
    assert_eq!(
        plane
            .delete_backup(&other.id, &cluster.id, &third.id)
            .await
            .unwrap_err()
            .code(),
        "not_found"
    );
    assert_eq!(
        plane
            .list_backups(&acme.id, &cluster.id)
            .await
            .unwrap()
            .len(),
        3
    );
    plane
        .delete_backup(&acme.id, &cluster.id, &third.id)
        .await
        .unwrap();
    let ids: Vec<String> = plane
        .list_backups(&acme.id, &cluster.id)
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(ids, [first.id.clone(), second.id.clone()]);
    assert_eq!(
        plane
            .delete_backup(&acme.id, &cluster.id, &third.id)
            .await
            .unwrap_err()
            .code(),
        "not_found"
    );

    // A deleted cluster's kept backups, still kept after a restart.
    plane.delete_cluster(&acme.id, &cluster.id).await.unwrap();
    plane.shutdown().await;
    drop(plane);
    let plane = env.plane("plane").await;
    let kept = plane.list_retained_backups(&acme.id).await.unwrap();
    assert_eq!(kept.len(), 2);
    assert!(plane
        .list_retained_backups(&other.id)
        .await
        .unwrap()
        .is_empty());
    for refused in [
        plane.delete_retained_backup(&other.id, &first.id).await,
        plane
            .restore_retained_backup(&other.id, &first.id)
            .await
            .map(|_| ()),
        plane
            .delete_retained_backup(&acme.id, "bk-1764400000000-0a1b2c3d")
            .await,
        plane.delete_retained_backup(&acme.id, "not-a-backup").await,
    ] {
        let error = refused.unwrap_err();
        assert_eq!(error.code(), "not_found", "{error}");
    }
    assert_eq!(plane.list_retained_backups(&acme.id).await.unwrap(), kept);
    assert!(plane.list_clusters(&other.id).await.unwrap().is_empty());

    plane
        .delete_retained_backup(&acme.id, &first.id)
        .await
        .unwrap();
    let left = plane.list_retained_backups(&acme.id).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, second.id);
    assert_eq!(
        key_state(&env, &key).await,
        KeyState::Enabled,
        "a backup still needs it"
    );
    assert_eq!(
        plane
            .delete_retained_backup(&acme.id, &first.id)
            .await
            .unwrap_err()
            .code(),
        "not_found"
    );

    plane
        .delete_retained_backup(&acme.id, &second.id)
        .await
        .unwrap();
    assert!(plane
        .list_retained_backups(&acme.id)
        .await
        .unwrap()
        .is_empty());
    wait_pending_deletion(&env, &key).await;
    plane.shutdown().await;
}

/// A restore whose backup is gone (its cluster deleted, the retention over) fails the new
/// cluster once, for good, with a message naming the backup and its source; it is not retried,
/// its data calls answer that message, and it can be deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_whose_backup_is_gone_fails_once_with_a_clear_error() {
    let env = harness::start().await;
    let plane = env.plane("plane").await;
    let acme = org(&plane, "acme").await;
    let (source, _) = ready_external_cluster(&env, &plane, &acme, "prod").await;
    let backup = plane.create_backup(&acme.id, &source.id).await.unwrap();
    let restored = plane
        .restore_backup(&acme.id, &source.id, &backup.id)
        .await
        .unwrap();
    assert_eq!(restored.state, ClusterState::AwaitingKey);

    plane.delete_cluster(&acme.id, &source.id).await.unwrap();
    assert_eq!(
        plane.list_retained_backups(&acme.id).await.unwrap().len(),
        1
    );
    plane.config().clock.advance(31 * DAY);
    wait_none_kept(&plane, &acme.id).await;

    // The customer associates a key with the new cluster: its restore finds nothing to read.
    let key = env.customer_key(&restored.role_arn).await;
    let association = plane
        .associate_key(&acme.id, &restored.id, &key)
        .await
        .unwrap();
    assert!(association.applied, "{:?}", association.report);
    wait_for("the restore to fail", Duration::from_secs(30), || async {
        plane.cluster(&acme.id, &restored.id).await.unwrap().state == ClusterState::Failed
    })
    .await;
    let failed = plane.cluster(&acme.id, &restored.id).await.unwrap();
    let message = failed.failure.clone().expect("the failure is recorded");
    assert!(
        message.contains(&backup.id) && message.contains(&source.id),
        "names the backup and its source: {message}"
    );
    assert!(message.contains("no longer exists"), "{message}");
    let json = serde_json::to_value(&failed).unwrap();
    assert_eq!(
        (json["state"].as_str(), json["failure"].as_str()),
        (Some("failed"), Some(message.as_str()))
    );

    // Not retried: past several retry delays, the same state and the same message.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let later = plane.cluster(&acme.id, &restored.id).await.unwrap();
    assert_eq!(later.state, ClusterState::Failed);
    assert_eq!(later.failure.as_deref(), Some(message.as_str()));
    let refused = plane
        .get_document(&acme.id, &restored.id, "a.txt")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), "conflict");
    assert!(refused.to_string().contains(&message), "{refused}");
    assert_eq!(
        plane
            .associate_key(&acme.id, &restored.id, &key)
            .await
            .unwrap_err()
            .code(),
        "conflict"
    );

    plane.delete_cluster(&acme.id, &restored.id).await.unwrap();
    assert!(plane.list_clusters(&acme.id).await.unwrap().is_empty());
    plane.shutdown().await;
}
