//! Restoring a backup into a new cluster, the first step of its provisioning.

use keyward_storage::backup;
use keyward_storage::vocab::StorageClass;
use keyward_storage::AwsKms;

use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::repo::RestoredDisk;
use crate::runtime::{ClusterRuntime, Runtimes};
use crate::shared::{remove_dir, Shared};

/// Restores the backup named by `restore_from` (`<source cluster>/<backup id>`) into the new
/// cluster of `runtime`: its disks become the cluster's disks (rows `ready`, so provisioning
/// attaches them instead of making fresh ones) and its documents the cluster's documents. Runs
/// once: `restore_from` is cleared in the same transaction that records the disks. A crash
/// before that leaves only files of this new cluster, which are removed before trying again.
pub(super) async fn run(
    shared: &Shared,
    runtimes: &Runtimes,
    cluster: &Cluster,
    runtime: &ClusterRuntime,
    restore_from: &str,
) -> Result<()> {
    let (source_id, backup_id) = restore_from
        .split_once('/')
        .ok_or_else(|| Error::internal(format!("bad restore source {restore_from:?}")))?;
    let Some(source) = runtimes.get(source_id) else {
        return Err(Error::NotReady {
            cluster_id: source_id.to_owned(),
            state: "not serving (the restore reads its backup)".into(),
        });
    };
    source.gate()?;
    let volumes_dir = shared.volumes_dir(&cluster.id);
    remove_dir(&volumes_dir).await?;
    remove_dir(
        &shared
            .objects_dir()
            .join(&cluster.id)
            .join(StorageClass::Documents.as_str()),
    )
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
    let restored = backup::restore_backup(&source.backups(), backup_id, target, &|_| {})
        .await
        .map_err(|e| Error::Internal(format!("restoring {restore_from}: {e}")))?;
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
    Ok(())
}
