//! Backups through the facade: a backup of a running cluster's disks and documents, listed, and
//! restored into a new cluster of the same organization under the same key.

use keyward_control::{ClusterState, ControlPlane};

use crate::harness::{
    self, creds, customer_policy, disk_credentials, external_cluster, org, qemu_io, wait_ready,
};

async fn engine_0(plane: &ControlPlane, org: &str, cluster: &str) -> String {
    // Disks are listed in the order they were made: engine-0 first.
    plane.list_disks(&org.to_owned(), cluster).await.unwrap()[0]
        .nbd_uri
        .clone()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restores_into_a_new_cluster_under_the_same_key() {
    let env = harness::start().await;
    let plane = env.plane("plane").await;
    let acme = org(&plane, "acme").await;
    let source = external_cluster(&plane, &acme, "prod").await;
    let key = env.customer_key(&source.role_arn).await;
    assert!(
        plane
            .associate_key(&acme.id, &source.id, &key)
            .await
            .unwrap()
            .applied
    );
    wait_ready(&plane, &acme.id, &source.id).await;
    plane
        .put_document(&acme.id, &source.id, "a.txt", &b"first"[..])
        .await
        .unwrap();
    plane
        .put_document(&acme.id, &source.id, "dir/b.bin", &vec![3u8; 200_000][..])
        .await
        .unwrap();
    let uri = engine_0(&plane, &acme.id, &source.id).await;
    let tls = disk_credentials(&plane, &acme.id, &source.id).await;
    assert!(qemu_io(&uri, &creds(&tls), "write -P 0x6b 65536 8192")
        .await
        .status
        .success());

    assert!(plane
        .list_backups(&acme.id, &source.id)
        .await
        .unwrap()
        .is_empty());
    let backup = plane.create_backup(&acme.id, &source.id).await.unwrap();
    assert!(
        backup.complete && backup.id.starts_with("bk-"),
        "{backup:?}"
    );
    assert!(
        backup.bytes >= 6 * (1 << 20),
        "six disks and the documents: {backup:?}"
    );
    let listed = plane.list_backups(&acme.id, &source.id).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].id.as_str(), listed[0].complete),
        (backup.id.as_str(), true)
    );
    // The backup's objects are encrypted under the cluster key like everything else.
    let verification = plane.verify(&acme.id, &source.id).await.unwrap();
    assert!(verification.all_encrypted, "{verification:?}");
    assert!(
        verification.classes[1].count > 1,
        "{:?}",
        verification.classes[1]
    );

    let missing = plane
        .restore_backup(&acme.id, &source.id, "bk-1764400000000-0a1b2c3d")
        .await
        .unwrap_err();
    assert_eq!(missing.code(), "not_found");
    let restored = plane
        .restore_backup(&acme.id, &source.id, &backup.id)
        .await
        .unwrap();
    assert_ne!(restored.id, source.id);
    assert_ne!(restored.role_arn, source.role_arn);
    assert_eq!(restored.state, ClusterState::AwaitingKey);
    assert_eq!(restored.encryption, source.encryption);

    // The customer lets the new cluster's role use the same key, and associates it.
    let mut policy: serde_json::Value =
        serde_json::from_str(&customer_policy(&source.role_arn, true)).unwrap();
    for mut statement in keyward_control::key_policy_statements(&restored.role_arn)
        .as_array()
        .unwrap()
        .clone()
    {
        statement["Sid"] = format!("{} (restore)", statement["Sid"].as_str().unwrap()).into();
        policy["Statement"].as_array_mut().unwrap().push(statement);
    }
    env.customer
        .put_key_policy()
        .key_id(&key)
        .policy_name("default")
        .policy(policy.to_string())
        .send()
        .await
        .unwrap();
    let association = plane
        .associate_key(&acme.id, &restored.id, &key)
        .await
        .unwrap();
    assert!(association.applied, "{:?}", association.report);
    wait_ready(&plane, &acme.id, &restored.id).await;

    // The same documents and disk contents, in the new cluster, under the same key.
    assert_eq!(
        harness::read_document(&plane, &acme.id, &restored.id, "a.txt").await,
        b"first"
    );
    assert_eq!(
        harness::read_document(&plane, &acme.id, &restored.id, "dir/b.bin").await,
        vec![3u8; 200_000]
    );
    let names: Vec<String> = plane
        .list_documents(&acme.id, &restored.id, "")
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names, ["a.txt", "dir/b.bin"]);
    let disks = plane.list_disks(&acme.id, &restored.id).await.unwrap();
    assert_eq!(disks.len(), 6);
    let source_disks = plane.list_disks(&acme.id, &source.id).await.unwrap();
    assert!(
        disks
            .iter()
            .all(|d| source_disks.iter().all(|s| s.id != d.id)),
        "new disk ids"
    );
    // The new cluster has its own CA: its own credentials.
    let restored_tls = disk_credentials(&plane, &acme.id, &restored.id).await;
    let read = qemu_io(
        &engine_0(&plane, &acme.id, &restored.id).await,
        &creds(&restored_tls),
        "read -P 0x6b 65536 8192",
    )
    .await;
    assert!(
        read.status.success()
            && !String::from_utf8_lossy(&read.stdout).contains("verification failed"),
        "{read:?}"
    );
    let verification = plane.verify(&acme.id, &restored.id).await.unwrap();
    assert!(verification.all_encrypted, "{verification:?}");
    assert_eq!(verification.key_arn, key);
    plane.shutdown().await;
}
