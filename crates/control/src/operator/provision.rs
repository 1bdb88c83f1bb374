//! Provisioning a cluster's storage under its key (steps 1–6 of the [operator](super)).

use std::collections::BTreeMap;
use std::sync::Arc;

use keyward_storage::vocab::{StorageClass, CLASS_CONTEXT_KEY, CLUSTER_CONTEXT_KEY};
use keyward_storage::volume::kms::new_volume_id;
use keyward_storage::{create_volume, AwsKms, NewVolume};

use super::restore;
use crate::cluster::{Cluster, ClusterState};
use crate::error::{Error, Result};
use crate::repo::{ResourceState, STORE_RESOURCE};
use crate::runtime::{ClusterRuntime, Disk, Runtimes};
use crate::shared::Shared;

/// The key of the marker object each object store gets at provisioning.
pub const STORE_MARKER: &str = ".keyward/store";
/// Object names under this prefix are the platform's, not the customer's.
pub const RESERVED_PREFIX: &str = ".keyward/";

/// Makes whatever the cluster lacks; returns its runtime, or `None` when the cluster failed for
/// good (its restore's backup is gone).
pub(super) async fn run(
    shared: &Shared,
    runtimes: &Runtimes,
    cluster: &Cluster,
) -> Result<Option<Arc<ClusterRuntime>>> {
    // Newly watched here (a start, or a lease just taken from a replica that died): the key is
    // probed at once rather than at its slot of the next round.
    let newly_watched = shared.monitor.health(&cluster.id).is_none();
    let runtime = runtimes.get_or_create(shared, cluster).await?;
    if runtime.is_deleted() {
        return Ok(Some(runtime));
    }
    if newly_watched && cluster.state == ClusterState::Ready {
        runtime.check_now(shared).await;
    }
    let key_arn = runtime.key_arn();
    let repo = &shared.repo;
    let config = &shared.config;
    // Disks stay on the node that holds their files: the first replica to provision the
    // cluster makes them there; another replica holding the lease (that node is down) keeps
    // the key watched and the stores served, and leaves the disks to their node.
    let me = shared.leases.replica_id();
    let disk_node = repo.claim_disk_node(&cluster.id, me).await?;
    let disks_here = disk_node == me;

    // 1. A restore into this new cluster, before anything else is made (its disks are made on
    //    the disks' node, so it waits for that node).
    if let Some(restore_from) = repo.restore_from(&cluster.id).await? {
        if !disks_here {
            tracing::info!(cluster = %cluster.id, node = %disk_node, "the restore waits for the disks' node");
            return Ok(Some(runtime));
        }
        if let Err(failure) =
            restore::run(shared, runtimes, cluster, &runtime, &restore_from).await?
        {
            restore::fail(shared, runtimes, cluster, &failure).await?;
            return Ok(None);
        }
    }

    // 2. The object stores and their markers.
    for (class, store) in [
        (StorageClass::Documents, runtime.documents()),
        (StorageClass::Backups, runtime.backups()),
    ] {
        let state = repo
            .resource_state(&cluster.id, class, STORE_RESOURCE)
            .await?;
        if state != Some(ResourceState::Ready) {
            repo.store_creating(&cluster.id, class, &key_arn).await?;
            let marker = format!("keyward {class} store of cluster {}\n", cluster.id);
            store
                .put_bytes(STORE_MARKER, marker.as_bytes())
                .await
                .map_err(|e| Error::Internal(format!("provisioning the {class} store: {e}")))?;
            repo.resource_ready(&cluster.id, class, STORE_RESOURCE, &key_arn)
                .await?;
        }
    }

    if !disks_here {
        // A cluster still provisioning stays so until its node makes its disks.
        tracing::debug!(cluster = %cluster.id, node = %disk_node, "disks served by their node");
        return Ok(Some(runtime));
    }

    // 3. and 4. The disks, made if missing and attached.
    let volumes = shared.volumes_dir(&cluster.id);
    tokio::fs::create_dir_all(&volumes)
        .await
        .map_err(|e| Error::Internal(format!("cannot create {}: {e}", volumes.display())))?;
    let kms = AwsKms::new(runtime.kms(shared).await);
    let wanted: Vec<(StorageClass, String)> = (0..config.engine_disks)
        .map(|i| (StorageClass::EngineDisk, format!("engine-{i}")))
        .chain((0..config.search_disks).map(|i| (StorageClass::SearchDisk, format!("search-{i}"))))
        .collect();
    let mut disks = runtime.disks().await;
    for (class, name) in wanted {
        if disks.list.iter().any(|d| d.name == name) {
            continue;
        }
        let row = match repo.disk(&cluster.id, class, &name).await? {
            Some(row) => row,
            None => {
                let disk_id = new_volume_id().map_err(Error::internal)?;
                repo.disk_creating(
                    &cluster.id,
                    class,
                    &name,
                    &disk_id,
                    &key_arn,
                    config.disk_size_bytes,
                )
                .await?;
                crate::repo::DiskRow {
                    disk_id,
                    state: ResourceState::Creating,
                    size: config.disk_size_bytes,
                    grant_id: None,
                }
            }
        };
        let path = volumes.join(format!("{}.vol", row.disk_id));
        if row.state != ResourceState::Ready {
            // Whatever a crash left of this disk goes; it is made again from the start.
            match tokio::fs::remove_file(&path).await {
                Ok(()) => tracing::info!(disk = %row.disk_id, "removed a half-made disk"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(Error::Internal(format!(
                        "cannot remove {}: {e}",
                        path.display()
                    )))
                }
            }
            let context: BTreeMap<String, String> = [
                (CLUSTER_CONTEXT_KEY.to_owned(), cluster.id.clone()),
                (CLASS_CONTEXT_KEY.to_owned(), class.as_str().to_owned()),
            ]
            .into();
            create_volume(
                &kms,
                &path,
                NewVolume {
                    volume_id: Some(row.disk_id.clone()),
                    size: row.size,
                    key_id: key_arn.clone(),
                    encryption_context: context,
                },
            )
            .await
            .map_err(|e| runtime.storage_error(e))?;
            repo.resource_ready(&cluster.id, class, &name, &key_arn)
                .await?;
        }
        // A header replacement a crash interrupted (key change) is finished or discarded first.
        let journal = path.clone();
        tokio::task::spawn_blocking(move || {
            keyward_storage::rewrap::recover_volume_rewrap(&journal)
        })
        .await
        .map_err(Error::internal)?
        .map_err(Error::internal)?;
        let disk = Disk::new(row.disk_id, name, class, path, row.size);
        runtime
            .attach_disk(shared, &mut disks, disk, row.grant_id)
            .await?;
    }

    // 5. The NBD export; a server that stopped (an error, a panic) is started again, on its
    //    old port when that is free.
    if disks.nbd_port().is_none() {
        let port = disks.last_nbd_port();
        if port.is_some() {
            tracing::warn!(cluster = %cluster.id, "the NBD server had stopped; serving the disks again");
        }
        runtime
            .serve_nbd(shared, &mut disks, port.unwrap_or(0))
            .await?;
    }
    drop(disks);

    // 6. Ready, with the key's health known.
    if cluster.state == ClusterState::Provisioning {
        runtime.check_now(shared).await;
        repo.mark_ready(&cluster.id).await?;
        tracing::info!(cluster = %cluster.id, "provisioned");
    }
    Ok(Some(runtime))
}
