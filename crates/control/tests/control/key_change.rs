//! Changing a running cluster's key through the facade: every data key re-wrapped under the new
//! key, online; afterwards nothing refers to the old key, which can be disabled without effect.

use std::time::Duration;

use keyward_control::{ClusterState, HealthStatus};

use crate::harness::{
    self, creds, disk_credentials, org, qemu_io, ready_external_cluster, wait_for,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_key_rewraps_everything_and_the_old_one_can_be_disabled() {
    let env = harness::start().await;
    let plane = env.plane("plane").await;
    let acme = org(&plane, "acme").await;
    let (cluster, old) = ready_external_cluster(&env, &plane, &acme, "prod").await;
    for i in 0..5 {
        plane
            .put_document(
                &acme.id,
                &cluster.id,
                &format!("doc-{i}"),
                &vec![i as u8; 10_000][..],
            )
            .await
            .unwrap();
    }
    let disks = plane.list_disks(&acme.id, &cluster.id).await.unwrap();
    let tls = disk_credentials(&plane, &acme.id, &cluster.id).await;
    assert!(qemu_io(
        disks[2].nbd_uri.as_deref().unwrap(),
        &creds(&tls),
        "write -P 0x42 8192 4096"
    )
    .await
    .status
    .success());

    let new = env.customer_key(&cluster.role_arn).await;
    let association = plane
        .associate_key(&acme.id, &cluster.id, &new)
        .await
        .unwrap();
    assert!(association.applied, "{:?}", association.report);
    // Another change while one runs is refused.
    let during = plane.cluster(&acme.id, &cluster.id).await.unwrap();
    if during.state == ClusterState::Rewrapping {
        let progress = during.rewrap.clone().unwrap();
        assert_eq!(
            (progress.from_key_arn.as_str(), progress.to_key_arn.as_str()),
            (old.as_str(), new.as_str())
        );
        let again = plane
            .associate_key(&acme.id, &cluster.id, &old)
            .await
            .unwrap_err();
        assert_eq!(again.code(), "conflict");
    }
    wait_for(
        "the key change to finish",
        Duration::from_secs(30),
        || async {
            let c = plane.cluster(&acme.id, &cluster.id).await.unwrap();
            c.state == ClusterState::Ready && c.key_arn.as_deref() == Some(new.as_str())
        },
    )
    .await;
    let changed = plane.cluster(&acme.id, &cluster.id).await.unwrap();
    assert!(changed.rewrap.is_none());

    // Verification: every class under the new key only.
    let verification = plane.verify(&acme.id, &cluster.id).await.unwrap();
    assert!(verification.all_encrypted, "{verification:?}");
    assert_eq!(verification.key_arn, new);
    for class in &verification.classes {
        assert_eq!(class.key_arns, std::slice::from_ref(&new), "{class:?}");
    }
    for doc in plane
        .list_documents(&acme.id, &cluster.id, "")
        .await
        .unwrap()
    {
        assert_eq!(doc.key_arn, new);
    }

    // The old key disabled: no effect.
    env.customer
        .disable_key()
        .key_id(&old)
        .send()
        .await
        .unwrap();
    assert_eq!(
        plane
            .check_health_now(&acme.id, &cluster.id)
            .await
            .unwrap()
            .status,
        HealthStatus::Healthy
    );
    for i in 0..5u8 {
        assert_eq!(
            plane
                .get_document(&acme.id, &cluster.id, &format!("doc-{i}"))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap(),
            vec![i; 10_000]
        );
    }
    plane
        .put_document(&acme.id, &cluster.id, "after", &b"new key"[..])
        .await
        .unwrap();
    let disks = plane.list_disks(&acme.id, &cluster.id).await.unwrap();
    assert!(disks.iter().all(|d| d.attached));
    // The credentials issued under the old key: the CA outlives the key change.
    let read = qemu_io(
        disks[2].nbd_uri.as_deref().unwrap(),
        &creds(&tls),
        "read -P 0x42 8192 4096",
    )
    .await;
    assert!(
        read.status.success()
            && !String::from_utf8_lossy(&read.stdout).contains("verification failed"),
        "{read:?}"
    );
    // The old key stays out of it even across a health round.
    tokio::time::sleep(harness::PROBE_INTERVAL * 2).await;
    assert_eq!(
        plane
            .cluster(&acme.id, &cluster.id)
            .await
            .unwrap()
            .health
            .status,
        HealthStatus::Healthy
    );
    plane.shutdown().await;
}

/// A put cut short by a crash leaves its staging file (`<name>#<digits>`, the bytes of the
/// message as far as they got, under the key of the day). The next start removes it, so a key
/// change afterwards leaves nothing under the old key and verification passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_cut_short_by_a_crash_does_not_outlive_the_next_start_or_a_key_change() {
    let env = harness::start().await;
    let plane = env.plane("plane").await;
    let acme = org(&plane, "acme").await;
    let (cluster, _) = ready_external_cluster(&env, &plane, &acme, "prod").await;
    plane
        .put_document(
            &acme.id,
            &cluster.id,
            "reports/q1.pdf",
            &vec![7u8; 200_000][..],
        )
        .await
        .unwrap();
    plane.shutdown().await;

    // What the crash leaves: half of a message under the old key, by its staging name.
    let documents = env
        .dir
        .path()
        .join("plane/objects")
        .join(&cluster.id)
        .join("documents");
    let complete = std::fs::read(documents.join("reports/q1.pdf")).unwrap();
    let staged = documents.join("reports/q2.pdf#17");
    std::fs::write(&staged, &complete[..complete.len() / 2]).unwrap();

    let plane = env.plane("plane").await;
    // The stored state is already `ready`; the data paths open once the operator has made the
    // cluster's runtime again, which is when leftovers go.
    wait_for("the documents to open", Duration::from_secs(30), || async {
        plane
            .get_document(&acme.id, &cluster.id, "reports/q1.pdf")
            .await
            .is_ok()
    })
    .await;
    assert!(!staged.exists(), "the start removed the unfinished upload");
    let new = env.customer_key(&cluster.role_arn).await;
    assert!(
        plane
            .associate_key(&acme.id, &cluster.id, &new)
            .await
            .unwrap()
            .applied
    );
    wait_for(
        "the key change to finish",
        Duration::from_secs(30),
        || async {
            let c = plane.cluster(&acme.id, &cluster.id).await.unwrap();
            c.state == ClusterState::Ready && c.key_arn.as_deref() == Some(new.as_str())
        },
    )
    .await;
    let verification = plane.verify(&acme.id, &cluster.id).await.unwrap();
    assert!(verification.all_encrypted, "{verification:?}");
    for class in &verification.classes {
        assert_eq!(class.key_arns, std::slice::from_ref(&new), "{class:?}");
    }
    assert_eq!(
        harness::read_document(&plane, &acme.id, &cluster.id, "reports/q1.pdf").await,
        vec![7u8; 200_000]
    );
    plane.shutdown().await;
}
