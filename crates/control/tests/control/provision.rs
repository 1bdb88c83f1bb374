//! The operator and the data paths against the real server: provisioning of the four storage
//! classes, verification, documents, a disk over NBD with qemu-io and nbdinfo, failing closed
//! and recovering, and resuming after a restart.

use std::time::Duration;

use keyward_control::{
    ClusterState, ControlPlane, Error as ControlError, HealthStatus, InaccessibleReason,
};

use crate::harness::{
    self, creds, customer_policy, disk_credentials, external_cluster, nbdinfo, nbds_uri, org,
    qemu_io, wait_for, wait_health, wait_ready, PROBE_INTERVAL,
};

/// Associate a key: the four classes are provisioned under it, verification shows each
/// encrypted under it, a document round-trips, and every disk serves data over NBD. On SQLite
/// and on PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_provisions_four_classes_that_verify_and_serve() {
    let env = harness::start().await;
    for (n, db) in crate::db::test_databases().await.into_iter().enumerate() {
        let data = env.dir.path().join(format!("plane-{n}"));
        let plane = ControlPlane::open(env.config(&data, &db.url))
            .await
            .unwrap();
        let acme = org(&plane, "acme").await;
        let cluster = external_cluster(&plane, &acme, "prod").await;
        let key = env.customer_key(&cluster.role_arn).await;
        let association = plane
            .associate_key(&acme.id, &cluster.id, &key)
            .await
            .unwrap();
        assert!(association.applied, "{:?}", association.report);
        let ready = wait_ready(&plane, &acme.id, &cluster.id).await;
        assert_eq!(ready.key_arn.as_deref(), Some(key.as_str()));
        assert_eq!(ready.health.status, HealthStatus::Healthy);

        // Documents.
        let body = vec![7u8; 300_000];
        let info = plane
            .put_document(&acme.id, &cluster.id, "reports/q4.pdf", &body[..])
            .await
            .unwrap();
        assert_eq!(info.key_arn, key);
        assert!(info.size > 300_000, "stored size includes the ESDK header");
        assert_eq!(
            harness::read_document(&plane, &acme.id, &cluster.id, "reports/q4.pdf").await,
            body
        );
        let listed = plane
            .list_documents(&acme.id, &cluster.id, "reports/")
            .await
            .unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (listed[0].name.as_str(), listed[0].key_arn.as_str()),
            ("reports/q4.pdf", key.as_str())
        );
        // The store marker is the platform's: not listed, not writable.
        assert_eq!(
            plane
                .list_documents(&acme.id, &cluster.id, "")
                .await
                .unwrap()
                .len(),
            1
        );
        let reserved = plane
            .put_document(&acme.id, &cluster.id, ".keyward/store", &b""[..])
            .await
            .unwrap_err();
        assert_eq!(reserved.code(), "invalid_request");
        let missing = plane
            .get_document(&acme.id, &cluster.id, "nope")
            .await
            .unwrap_err();
        assert_eq!(missing.code(), "not_found");

        // Verification: every class encrypted under the key, nothing else.
        let verification = plane.verify(&acme.id, &cluster.id).await.unwrap();
        assert!(verification.all_encrypted, "{verification:?}");
        assert_eq!(verification.key_arn, key);
        let classes: Vec<(&str, u64)> = verification
            .classes
            .iter()
            .map(|c| (c.class.as_str(), c.count))
            .collect();
        assert_eq!(
            classes,
            [
                ("documents", 2),
                ("backups", 1),
                ("engine-disk", 3),
                ("search-disk", 3)
            ]
        );
        for class in &verification.classes {
            assert!(class.encrypted, "{class:?}");
            assert_eq!(class.key_arn.as_deref(), Some(key.as_str()), "{class:?}");
            assert!(class.offenders.is_empty(), "{class:?}");
        }

        // Disks: six, attached, each served over NBD (mutual TLS under the cluster's CA).
        let tls = disk_credentials(&plane, &acme.id, &cluster.id).await;
        let disks = plane.list_disks(&acme.id, &cluster.id).await.unwrap();
        assert_eq!(disks.len(), 6);
        assert_eq!(disks.iter().filter(|d| d.class == "engine-disk").count(), 3);
        for disk in &disks {
            assert!(disk.attached);
            assert_eq!(disk.size_bytes, 1 << 20);
            let uri = disk.nbd_uri.as_deref().unwrap();
            assert!(
                uri.starts_with("nbds://127.0.0.1:") && uri.ends_with(&disk.id),
                "{uri}"
            );
        }
        let uri = disks[0].nbd_uri.clone().unwrap();
        let wrote = qemu_io(&uri, &creds(&tls), "write -P 0x5a 4096 65536").await;
        assert!(wrote.status.success(), "{wrote:?}");
        let read = qemu_io(&uri, &creds(&tls), "read -P 0x5a 4096 65536").await;
        assert!(read.status.success(), "{read:?}");
        assert!(!String::from_utf8_lossy(&read.stdout).contains("verification failed"));
        let info = nbdinfo(&[&nbds_uri(
            disks[5].nbd_uri.as_deref().unwrap(),
            &creds(&tls),
        )])
        .await;
        assert!(info.status.success(), "{info:?}");
        assert!(String::from_utf8_lossy(&info.stdout).contains("1048576"));

        plane
            .delete_document(&acme.id, &cluster.id, "reports/q4.pdf")
            .await
            .unwrap();
        assert!(plane
            .list_documents(&acme.id, &cluster.id, "")
            .await
            .unwrap()
            .is_empty());

        // Deleting the cluster removes its files.
        plane.delete_cluster(&acme.id, &cluster.id).await.unwrap();
        assert!(!data.join("volumes").join(&cluster.id).exists());
        assert!(!data.join("objects").join(&cluster.id).exists());
        plane.shutdown().await;
    }
}

/// Disable the key: within two probe intervals the cluster is key-inaccessible (disabled), and
/// documents, disks and the NBD exports refuse; enable it: everything serves again by itself.
/// Then Decrypt removed from the key policy: access-denied; restored: healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_locks_when_the_key_goes_and_unlocks_when_it_comes_back() {
    let env = harness::start().await;
    let plane = env.plane("plane").await;
    let acme = org(&plane, "acme").await;
    let cluster = external_cluster(&plane, &acme, "prod").await;
    let key = env.customer_key(&cluster.role_arn).await;
    assert!(
        plane
            .associate_key(&acme.id, &cluster.id, &key)
            .await
            .unwrap()
            .applied
    );
    wait_ready(&plane, &acme.id, &cluster.id).await;
    plane
        .put_document(&acme.id, &cluster.id, "a.txt", &b"hello"[..])
        .await
        .unwrap();
    let tls = disk_credentials(&plane, &acme.id, &cluster.id).await;
    let disks = plane.list_disks(&acme.id, &cluster.id).await.unwrap();
    let uri = disks[0].nbd_uri.clone().unwrap();
    assert!(qemu_io(&uri, &creds(&tls), "write -P 0x11 0 4096")
        .await
        .status
        .success());

    env.customer
        .disable_key()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    let locked = wait_health(
        &plane,
        &acme.id,
        &cluster.id,
        HealthStatus::KeyInaccessible,
        // Two probe intervals, and a second of slack for a loaded machine.
        PROBE_INTERVAL * 2 + Duration::from_secs(1),
    )
    .await;
    assert_eq!(locked.health.reason, Some(InaccessibleReason::Disabled));
    assert!(
        locked.health.message.contains(&key),
        "{}",
        locked.health.message
    );
    // Data refuses, naming the reason and the fix.
    let refused = plane
        .get_document(&acme.id, &cluster.id, "a.txt")
        .await
        .unwrap_err();
    assert_eq!(
        (
            refused.code().as_str(),
            matches!(refused, ControlError::KeyInaccessible { .. })
        ),
        ("key_inaccessible", true)
    );
    assert!(
        refused
            .to_string()
            .contains(&format!("aws kms enable-key --key-id {key}")),
        "{refused}"
    );
    for error in [
        plane
            .put_document(&acme.id, &cluster.id, "b.txt", &b"x"[..])
            .await
            .unwrap_err(),
        plane
            .list_documents(&acme.id, &cluster.id, "")
            .await
            .unwrap_err(),
        plane.list_disks(&acme.id, &cluster.id).await.unwrap_err(),
        plane.verify(&acme.id, &cluster.id).await.unwrap_err(),
    ] {
        assert_eq!(error.code(), "key_inaccessible", "{error}");
    }
    let nbd = nbdinfo(&[&nbds_uri(&uri, &creds(&tls))]).await;
    assert!(
        !nbd.status.success(),
        "a locked cluster's export takes no connection"
    );
    // Stored health says so too (a restart keeps it locked until a probe says otherwise).
    assert_eq!(
        plane
            .check_health_now(&acme.id, &cluster.id)
            .await
            .unwrap()
            .status,
        HealthStatus::KeyInaccessible
    );

    env.customer.enable_key().key_id(&key).send().await.unwrap();
    wait_health(
        &plane,
        &acme.id,
        &cluster.id,
        HealthStatus::Healthy,
        Duration::from_secs(15),
    )
    .await;
    wait_for("the data to unlock", Duration::from_secs(15), || async {
        plane
            .get_document(&acme.id, &cluster.id, "a.txt")
            .await
            .is_ok()
    })
    .await;
    assert_eq!(
        harness::read_document(&plane, &acme.id, &cluster.id, "a.txt").await,
        b"hello"
    );
    let disks = plane.list_disks(&acme.id, &cluster.id).await.unwrap();
    assert!(disks.iter().all(|d| d.attached));
    let read = qemu_io(
        &disks[0].nbd_uri.clone().unwrap(),
        &creds(&tls),
        "read -P 0x11 0 4096",
    )
    .await;
    assert!(read.status.success(), "{read:?}");
    assert!(!String::from_utf8_lossy(&read.stdout).contains("verification failed"));

    // Decrypt removed from the key policy: access denied.
    env.set_customer_policy(&key, &cluster.role_arn, false)
        .await;
    let denied = plane.check_health_now(&acme.id, &cluster.id).await.unwrap();
    assert_eq!(denied.status, HealthStatus::KeyInaccessible);
    assert_eq!(denied.reason, Some(InaccessibleReason::AccessDenied));
    let refused = plane
        .get_document(&acme.id, &cluster.id, "a.txt")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), "key_inaccessible");
    assert!(refused.to_string().contains("key-policy"), "{refused}");
    env.customer
        .put_key_policy()
        .key_id(&key)
        .policy_name("default")
        .policy(customer_policy(&cluster.role_arn, true))
        .send()
        .await
        .unwrap();
    wait_health(
        &plane,
        &acme.id,
        &cluster.id,
        HealthStatus::Healthy,
        Duration::from_secs(15),
    )
    .await;
    wait_for("the data to unlock", Duration::from_secs(15), || async {
        plane
            .get_document(&acme.id, &cluster.id, "a.txt")
            .await
            .is_ok()
    })
    .await;
    plane.shutdown().await;
}

/// A control plane stopped in the middle of provisioning, and a disk left half made: a new one
/// on the same state finishes the job, with exactly the wanted disks and nothing else on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_provisioning_with_nothing_half_made() {
    let env = harness::start().await;
    let data = env.dir.path().join("plane");
    let url = format!("sqlite:{}", data.join("control.db").display());
    let first = ControlPlane::open(env.config(&data, &url)).await.unwrap();
    let acme = org(&first, "acme").await;
    let cluster = external_cluster(&first, &acme, "prod").await;
    let key = env.customer_key(&cluster.role_arn).await;
    assert!(
        first
            .associate_key(&acme.id, &cluster.id, &key)
            .await
            .unwrap()
            .applied
    );
    // Stop at once: the operator is somewhere in the middle.
    first.shutdown().await;
    drop(first);

    // What a crash in the middle of making a disk leaves: its row `creating` and a partial file.
    let db = keyward_control::db::Db::open(&url, keyward_control::MIGRATIONS)
        .await
        .unwrap();
    db.execute(
        "UPDATE clusters SET state = 'provisioning' WHERE id = $1",
        &[cluster.id.clone().into()],
    )
    .await
    .unwrap();
    db.execute(
        "INSERT INTO cluster_resources (cluster_id, class, name, disk_id, state, key_arn, size_bytes, grant_id, created_at_ms) \
         VALUES ($1, 'search-disk', 'search-2', 'vol-0000000000000000a', 'creating', $2, 1048576, NULL, 0) \
         ON CONFLICT (cluster_id, class, name) DO UPDATE SET state = 'creating', disk_id = 'vol-0000000000000000a'",
        &[cluster.id.clone().into(), key.clone().into()],
    )
    .await
    .unwrap();
    let volumes = data.join("volumes").join(&cluster.id);
    std::fs::create_dir_all(&volumes).unwrap();
    std::fs::write(volumes.join("vol-0000000000000000a.vol"), b"half a header").unwrap();
    drop(db);

    let second = ControlPlane::open(env.config(&data, &url)).await.unwrap();
    let ready = wait_ready(&second, &acme.id, &cluster.id).await;
    assert_eq!(ready.state, ClusterState::Ready);
    let disks = second.list_disks(&acme.id, &cluster.id).await.unwrap();
    assert_eq!(disks.len(), 6);
    assert!(disks.iter().any(|d| d.id == "vol-0000000000000000a"));
    let mut files: Vec<String> = std::fs::read_dir(&volumes)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut expected: Vec<String> = disks.iter().map(|d| format!("{}.vol", d.id)).collect();
    expected.sort();
    assert_eq!(
        files, expected,
        "exactly the recorded disks, nothing half made"
    );
    let verification = second.verify(&acme.id, &cluster.id).await.unwrap();
    assert!(verification.all_encrypted, "{verification:?}");
    let uri = disks
        .iter()
        .find(|d| d.id == "vol-0000000000000000a")
        .unwrap()
        .nbd_uri
        .clone()
        .unwrap();
    let tls = disk_credentials(&second, &acme.id, &cluster.id).await;
    assert!(qemu_io(&uri, &creds(&tls), "write -P 0x77 0 4096")
        .await
        .status
        .success());
    second.shutdown().await;

    // And once more: a ready cluster comes back attached and serving, its data intact.
    let third = ControlPlane::open(env.config(&data, &url)).await.unwrap();
    wait_for(
        "the disks to be attached again",
        Duration::from_secs(20),
        || async {
            third
                .list_disks(&acme.id, &cluster.id)
                .await
                .is_ok_and(|d| d.len() == 6 && d.iter().all(|d| d.attached))
        },
    )
    .await;
    let disks = third.list_disks(&acme.id, &cluster.id).await.unwrap();
    let uri = disks
        .iter()
        .find(|d| d.id == "vol-0000000000000000a")
        .unwrap()
        .nbd_uri
        .clone()
        .unwrap();
    // The credentials issued before the restart: the cluster's CA is the same.
    let read = qemu_io(&uri, &creds(&tls), "read -P 0x77 0 4096").await;
    assert!(
        read.status.success()
            && !String::from_utf8_lossy(&read.stdout).contains("verification failed")
    );
    third.shutdown().await;
}

/// With probes far apart, a KMS refusal seen by a data path locks the cluster at once (the
/// data path re-checks the key); a key scheduled for deletion is inaccessible, and once its
/// window has passed (the KMS test clock) the cluster is key-deleted, for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_path_error_locks_at_once_and_a_deleted_key_is_final() {
    let env = harness::start().await;
    let data = env.dir.path().join("plane");
    let mut config = env.config(
        &data,
        &format!("sqlite:{}", data.join("control.db").display()),
    );
    config.probe_interval = Duration::from_secs(3600);
    let plane = ControlPlane::open(config).await.unwrap();
    let acme = org(&plane, "acme").await;
    let cluster = external_cluster(&plane, &acme, "prod").await;
    let key = env.customer_key(&cluster.role_arn).await;
    assert!(
        plane
            .associate_key(&acme.id, &cluster.id, &key)
            .await
            .unwrap()
            .applied
    );
    wait_ready(&plane, &acme.id, &cluster.id).await;
    plane
        .put_document(&acme.id, &cluster.id, "a.txt", &b"hello"[..])
        .await
        .unwrap();

    env.customer
        .disable_key()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let refused = plane
        .get_document(&acme.id, &cluster.id, "a.txt")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), "key_inaccessible", "{refused}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let locked = plane.cluster(&acme.id, &cluster.id).await.unwrap();
    assert_eq!(locked.health.status, HealthStatus::KeyInaccessible);
    assert_eq!(locked.health.reason, Some(InaccessibleReason::Disabled));
    assert_eq!(
        plane
            .list_disks(&acme.id, &cluster.id)
            .await
            .unwrap_err()
            .code(),
        "key_inaccessible"
    );

    env.customer
        .schedule_key_deletion()
        .key_id(&key)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    let pending = plane.check_health_now(&acme.id, &cluster.id).await.unwrap();
    assert_eq!(pending.reason, Some(InaccessibleReason::PendingDeletion));
    assert!(
        pending.message.contains("cancel-key-deletion"),
        "{}",
        pending.message
    );

    env.server
        .engine()
        .advance_clock(Duration::from_secs(8 * 24 * 3600))
        .await
        .unwrap();
    let deleted = plane.check_health_now(&acme.id, &cluster.id).await.unwrap();
    assert_eq!(deleted.status, HealthStatus::KeyDeleted, "{deleted:?}");
    let gone = plane
        .get_document(&acme.id, &cluster.id, "a.txt")
        .await
        .unwrap_err();
    assert_eq!(
        (
            gone.code().as_str(),
            matches!(gone, ControlError::KeyDeleted { .. })
        ),
        ("key_deleted", true)
    );
    assert_eq!(
        plane
            .check_health_now(&acme.id, &cluster.id)
            .await
            .unwrap()
            .status,
        HealthStatus::KeyDeleted
    );
    assert_eq!(
        plane
            .cluster(&acme.id, &cluster.id)
            .await
            .unwrap()
            .health
            .status,
        HealthStatus::KeyDeleted
    );
    plane.shutdown().await;
}
