//! Restoring a backup into a new cluster, the first step of its provisioning.
//!
//! The backup is read from where it is kept: the source cluster's live backups store (as the
//! source's role, under its key), or, once the source is deleted, its kept backups store (as its
//! role, kept as long as its backups are). The restore writes new disks and documents with new
//! data keys under the new cluster's own key, so nothing of the new cluster refers to the
//! source's key: an internal cluster's restore gets a platform key of its own, and deleting the
//! source later locks nothing of it.
//!
//! A backup that is gone (deleted, its retention ended, or never finished) will not come back:
//! the restore then fails the cluster for good, once, with a message naming the backup and its
//! source. A source that is only not serving now (its key locked, being provisioned or deleted)
//! is waited for.

use std::sync::Arc;

use keyward_storage::backup::{self, BackupError};
use keyward_storage::vocab::{ObjectClass, StorageClass};
use keyward_storage::{AwsKms, EncryptedStore};

use crate::cluster::{Cluster, ClusterState};
use crate::error::{Error, Result};
use crate::repo::RestoredDisk;
use crate::runtime::{ClusterRuntime, Runtimes};
use crate::shared::{remove_dir, Shared};

/// Restores the backup named by `restore_from` (`<source cluster>/<backup id>`) into the new
/// cluster of `runtime`: its disks become the cluster's disks (rows `ready`, so provisioning
/// attaches them instead of making fresh ones) and its documents the cluster's documents. Runs
/// once: `restore_from` is cleared in the same transaction that records the disks. A crash
/// before that leaves only files of this new cluster, which are removed before trying again.
///
/// `Ok(Err(failure))`: the backup is gone for good; the caller fails the cluster ([`fail`]).
pub(super) async fn run(
    shared: &Shared,
    runtimes: &Runtimes,
    cluster: &Cluster,
    runtime: &ClusterRuntime,
    restore_from: &str,
) -> Result<std::result::Result<(), String>> {
    let (source_id, backup_id) = restore_from
        .split_once('/')
        .ok_or_else(|| Error::internal(format!("bad restore source {restore_from:?}")))?;
    let gone = |why: &str| {
        Ok(Err(format!(
            "the restore of backup {backup_id} of cluster {source_id} cannot be done: {why}; \
             delete this cluster"
        )))
    };
    let Some(backups) = source_backups(shared, runtimes, source_id, backup_id).await? else {
        return gone(
            "the backup no longer exists (it was deleted, or its cluster was deleted and its \
             retention ended)",
        );
    };
    let volumes_dir = shared.volumes_dir(&cluster.id);
    remove_dir(&volumes_dir).await?;
    shared
        .objects
        .delete(&cluster.id, Some(ObjectClass::Documents))
        .await?;
    let documents = runtime.documents();
    let kms = AwsKms::new(runtime.kms(shared).await);
    let target = backup::RestoreTarget {
        cluster_id: cluster.id.clone(),
        key_id: runtime.key_arn(),
        kms: &kms,
        volumes_dir,
        documents: Some(&documents),
        documents_prefix: String::new(),
    };
    let restored = match backup::restore_backup(&backups, backup_id, target, &|_| {}).await {
        Ok(restored) => restored,
        Err(BackupError::NotFound { .. }) => {
            return gone("the backup no longer exists (it was deleted)")
        }
        Err(
            error @ (BackupError::Incomplete { .. }
            | BackupError::InconsistentManifest { .. }
            | BackupError::PartMismatch { .. }),
        ) => return gone(&error.to_string()),
        Err(error) => {
            return Err(Error::Internal(format!(
                "restoring {restore_from}: {error}"
            )))
        }
    };
    let disks = restored
        .volumes
        .iter()
        .map(|v| {
            let class = StorageClass::parse(&v.class)
                .filter(|c| c.is_volume_class())
                .ok_or_else(|| {
                    Error::internal(format!(
                        "the backup {restore_from} has a disk of class {:?}",
                        v.class
                    ))
                })?;
            Ok(RestoredDisk {
                class,
                name: &v.name,
                disk_id: &v.volume_id,
                key_arn: &v.key_arn,
                size: v.size,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    shared.repo.record_restore(&cluster.id, &disks).await?;
    tracing::info!(cluster = %cluster.id, from = %restore_from, volumes = restored.volumes.len(), documents = restored.documents.len(), "backup restored");
    Ok(Ok(()))
}

/// The store the backup is read from: the source's live one, or its kept one once the source is
/// deleted. `None` when neither holds the backup any more; an error (retried) while the live
/// source cannot serve.
async fn source_backups(
    shared: &Shared,
    runtimes: &Runtimes,
    source_id: &str,
    backup_id: &str,
) -> Result<Option<Arc<EncryptedStore>>> {
    if let Some((_, source)) = shared.repo.cluster(source_id).await? {
        if matches!(
            source.state,
            ClusterState::AwaitingKey | ClusterState::Failed
        ) {
            // Never provisioned: it has no backups.
            return Ok(None);
        }
        let Some(source) = runtimes.get(source_id) else {
            return Err(Error::NotReady {
                cluster_id: source_id.to_owned(),
                state: "not serving (the restore reads its backup)".into(),
            });
        };
        source.gate()?;
        return Ok(Some(source.backups()));
    }
    match shared.repo.retained_cluster(source_id).await? {
        Some(kept) if shared.repo.keeps_backup(source_id, backup_id).await? => {
            Ok(Some(crate::runtime::retained_backups(shared, &kept).await?))
        }
        _ => Ok(None),
    }
}

/// Fails the cluster for good with `failure`: its runtime released and its key no longer
/// watched, so nothing about it runs again until it is deleted.
pub(super) async fn fail(
    shared: &Shared,
    runtimes: &Runtimes,
    cluster: &Cluster,
    failure: &str,
) -> Result<()> {
    shared.repo.mark_failed(&cluster.id, failure).await?;
    if let Some(runtime) = runtimes.remove(&cluster.id) {
        runtime.release(shared).await;
    }
    shared.monitor.unwatch(&cluster.id);
    tracing::warn!(cluster = %cluster.id, %failure, "restore failed for good");
    Ok(())
}
