//! Clusters hold no descriptors of their own beyond their NBD listener: their KMS clients share
//! one connection pool, and an attached disk with no client keeps no file open.

use crate::descriptors::Descriptors;
use crate::harness::*;

/// Clusters made one after another, then each probed: before, every cluster's role session
/// had its own connection pool (KMS and STS) holding idle connections, both ends in this
/// process, and every attached disk held its volume file open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_share_one_kms_connection_pool_and_idle_disks_hold_no_files() {
    const CLUSTERS: usize = 16;
    let env = start().await;
    let plane = env.plane("fds").await;
    let org = org(&plane, "fds").await;
    let mut ids = Vec::new();
    for i in 0..CLUSTERS {
        let (cluster, _) = ready_external_cluster(&env, &plane, &org, &format!("c{i}")).await;
        ids.push(cluster.id);
    }
    for id in &ids {
        let health = plane.check_health_now(&org.id, id).await.unwrap();
        assert!(health.is_healthy(), "{health:?}");
    }
    let disks = plane.config().engine_disks + plane.config().search_disks;
    assert!(disks > 0, "the clusters have disks");
    let fds = Descriptors::now(&env.dir.path().join("fds"));
    assert_eq!(
        fds.volume_files, 0,
        "{CLUSTERS} clusters x {disks} attached disks, no NBD client: no volume file open ({fds:?})"
    );
    assert!(
        fds.tcp_established <= CLUSTERS,
        "{CLUSTERS} clusters' role sessions, each used just now: connections grow with the \
         requests in flight, not with the clusters ({fds:?})"
    );
    assert!(
        fds.tcp_listening > CLUSTERS,
        "one NBD listener per cluster, and the KMS's ({fds:?})"
    );
    plane.shutdown().await;
}
