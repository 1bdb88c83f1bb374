//! Each cluster's disks over NBD with mutual TLS under the cluster's own CA: credentials
//! issued through the facade reach that cluster's disks and no other's; nothing without them
//! or over plain TCP; and the CA, its key kept wrapped under the cluster's key, survives a
//! restart, so credentials issued before still work.

use std::path::Path;
use std::time::Duration;

use keyward_control::ControlPlane;

use crate::harness::{
    self, creds, disk_credentials, external_cluster, nbdinfo, nbds_uri, org, qemu_io, wait_for,
    wait_ready,
};

/// `nbds://host:port/` (the server, for `--list`).
fn server_of(uri: &str) -> String {
    let (server, _) = uri
        .strip_prefix("nbds://")
        .unwrap()
        .split_once('/')
        .unwrap();
    format!("nbds://{server}/")
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `uri` refused to the credentials in `creds` (listing, size, qemu-io read and write).
async fn refused(what: &str, uri: &str, creds: &Path, disk_id: &str) {
    let list = nbdinfo(&["--list", &nbds_uri(&server_of(uri), creds)]).await;
    assert!(!list.status.success(), "{what}: listed\n{}", text(&list));
    assert!(!text(&list).contains(disk_id), "{what}: a name leaked");
    let size = nbdinfo(&["--size", &nbds_uri(uri, creds)]).await;
    assert!(!size.status.success(), "{what}: {}", text(&size));
    for command in ["read 0 4096", "write -P 0xee 4096 4096"] {
        let out = qemu_io(uri, creds, command).await;
        assert!(
            !out.status.success() && !text(&out).contains("bytes at offset"),
            "{what}: qemu-io {command}\n{}",
            text(&out)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clusters_credentials_reach_its_disks_only_and_survive_a_restart() {
    let env = harness::start().await;
    let data = env.dir.path().join("plane");
    let url = format!("sqlite:{}", data.join("control.db").display());
    let plane = ControlPlane::open(env.config(&data, &url)).await.unwrap();
    let acme = org(&plane, "acme").await;
    let a = external_cluster(&plane, &acme, "a").await;
    let b = external_cluster(&plane, &acme, "b").await;
    for cluster in [&a, &b] {
        let key = env.customer_key(&cluster.role_arn).await;
        assert!(
            plane
                .associate_key(&acme.id, &cluster.id, &key)
                .await
                .unwrap()
                .applied
        );
    }
    wait_ready(&plane, &acme.id, &a.id).await;
    wait_ready(&plane, &acme.id, &b.id).await;
    let a_tls = disk_credentials(&plane, &acme.id, &a.id).await;
    let b_tls = disk_credentials(&plane, &acme.id, &b.id).await;
    let a_disks = plane.list_disks(&acme.id, &a.id).await.unwrap();
    let uri = a_disks[0].nbd_uri.clone().unwrap();
    assert!(uri.starts_with("nbds://127.0.0.1:"), "{uri}");

    // A's credentials: every disk of A listed, and read and written.
    let list = nbdinfo(&[
        "--list",
        "--json",
        &nbds_uri(&server_of(&uri), &creds(&a_tls)),
    ])
    .await;
    assert!(list.status.success(), "{}", text(&list));
    for disk in &a_disks {
        assert!(
            text(&list).contains(&format!("\"export-name\": \"{}\"", disk.id)),
            "{} not listed\n{}",
            disk.id,
            text(&list)
        );
    }
    let wrote = qemu_io(&uri, &creds(&a_tls), "write -P 0xa1 4096 65536").await;
    assert!(wrote.status.success(), "{}", text(&wrote));
    let read = qemu_io(&uri, &creds(&a_tls), "read -P 0xa1 4096 65536").await;
    assert!(
        read.status.success() && !text(&read).contains("verification failed"),
        "{}",
        text(&read)
    );

    // B's credentials, none (an empty directory), or plain TCP: nothing of A.
    let empty = tempfile::tempdir().unwrap();
    refused("B's credentials", &uri, &creds(&b_tls), &a_disks[0].id).await;
    refused("no credentials", &uri, empty.path(), &a_disks[0].id).await;
    let plain = uri.replacen("nbds://", "nbd://", 1);
    let out = nbdinfo(&["--list", &plain.replace(&a_disks[0].id, "")]).await;
    assert!(!out.status.success(), "plain TCP listed\n{}", text(&out));
    assert!(
        !text(&out).contains(&a_disks[0].id),
        "plain TCP: a name leaked"
    );
    let out = nbdinfo(&["--size", &plain]).await;
    assert!(!out.status.success(), "plain TCP: {}", text(&out));
    let out = tokio::task::spawn_blocking({
        let plain = plain.clone();
        move || {
            harness::tool("qemu-io")
                .args(["-f", "raw", &plain, "-c", "read 0 4096"])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(
        !out.status.success() && !text(&out).contains("bytes at offset"),
        "plain TCP: qemu-io read\n{}",
        text(&out)
    );
    // Nothing was written by the refused writes.
    let read = qemu_io(&uri, &creds(&a_tls), "read -P 0xa1 4096 65536").await;
    assert!(
        read.status.success() && !text(&read).contains("verification failed"),
        "{}",
        text(&read)
    );
    // B's own disks with B's credentials, still.
    let b_uri = plane.list_disks(&acme.id, &b.id).await.unwrap()[0]
        .nbd_uri
        .clone()
        .unwrap();
    let b_read = qemu_io(&b_uri, &creds(&b_tls), "read 0 4096").await;
    assert!(
        b_read.status.success() && text(&b_read).contains("bytes at offset"),
        "{}",
        text(&b_read)
    );
    // The CA key is stored only wrapped.
    let key_file = data.join("nbd-ca").join(&a.id).join("ca-key.pem.esdk");
    let stored = std::fs::read(&key_file).unwrap();
    assert!(!String::from_utf8_lossy(&stored).contains("PRIVATE KEY"));
    plane.shutdown().await;
    drop(plane);

    // After a restart: the same credentials, the same data; B's still refused.
    let plane = ControlPlane::open(env.config(&data, &url)).await.unwrap();
    wait_for(
        "A's disks attached again",
        Duration::from_secs(20),
        || async {
            plane
                .list_disks(&acme.id, &a.id)
                .await
                .is_ok_and(|d| d.len() == 6 && d.iter().all(|d| d.attached && d.nbd_uri.is_some()))
        },
    )
    .await;
    let uri = plane.list_disks(&acme.id, &a.id).await.unwrap()[0]
        .nbd_uri
        .clone()
        .unwrap();
    let read = qemu_io(&uri, &creds(&a_tls), "read -P 0xa1 4096 65536").await;
    assert!(
        read.status.success() && !text(&read).contains("verification failed"),
        "{}",
        text(&read)
    );
    refused(
        "B's credentials after the restart",
        &uri,
        &creds(&b_tls),
        &a_disks[0].id,
    )
    .await;
    plane.shutdown().await;
}

/// A cluster's NBD server that stops on its own (as after an error or a panic) is no longer
/// advertised by `list_disks`, and the operator serves the disks again, with the same
/// credentials and the data written before intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_nbd_server_is_not_advertised_and_the_operator_restarts_it() {
    let env = harness::start().await;
    let plane = env.plane("nbd-restart").await;
    let acme = org(&plane, "acme").await;
    let (cluster, _) = harness::ready_external_cluster(&env, &plane, &acme, "a").await;
    let tls = disk_credentials(&plane, &acme.id, &cluster.id).await;
    let disks = plane.list_disks(&acme.id, &cluster.id).await.unwrap();
    let uri = disks[0].nbd_uri.clone().expect("served");
    let wrote = qemu_io(&uri, &creds(&tls), "write -P 0x5c 8192 65536").await;
    assert!(wrote.status.success(), "{}", text(&wrote));

    // Stopped, and the operator held off until the guard goes: no disk advertises an address,
    // and the old one answers nothing.
    let held = plane.fail_nbd_server(&acme.id, &cluster.id).await.unwrap();
    let listed = plane.list_disks(&acme.id, &cluster.id).await.unwrap();
    assert_eq!(listed.len(), disks.len());
    for disk in &listed {
        assert!(disk.attached, "{disk:?}");
        assert_eq!(disk.nbd_uri, None, "a stopped server advertised: {disk:?}");
    }
    let dead = nbdinfo(&["--size", &nbds_uri(&uri, &creds(&tls))]).await;
    assert!(
        !dead.status.success(),
        "the stopped server answered: {}",
        text(&dead)
    );
    drop(held);

    // The operator serves the disks again; the same credentials reach the same data.
    wait_for(
        "the NBD server served again",
        Duration::from_secs(30),
        || async {
            plane
                .list_disks(&acme.id, &cluster.id)
                .await
                .is_ok_and(|d| d.iter().all(|d| d.nbd_uri.is_some()))
        },
    )
    .await;
    let uri = plane.list_disks(&acme.id, &cluster.id).await.unwrap()[0]
        .nbd_uri
        .clone()
        .unwrap();
    let size = nbdinfo(&["--size", &nbds_uri(&uri, &creds(&tls))]).await;
    assert!(size.status.success(), "{}", text(&size));
    let read = qemu_io(&uri, &creds(&tls), "read -P 0x5c 8192 65536").await;
    assert!(
        read.status.success() && !text(&read).contains("verification failed"),
        "{}",
        text(&read)
    );
    plane.shutdown().await;
}
