//! Finishing a cluster's deletion: what the facade marked `deleting` is taken apart here, and the
//! same steps resume after a crash (each is idempotent).
//!
//! The cluster's complete backups outlive it for the configured retention: they stay in its
//! backups store, recorded in `retained_clusters` / `retained_backups` in the same transaction
//! that removes the cluster's rows, and its role and key stay (the backups are read as the role,
//! under the key) until [`super::retention`] retires them.

use keyward_storage::backup;
use keyward_storage::vocab::ObjectClass;

use crate::cluster::{Cluster, Encryption};
use crate::error::{Error, Result};
use crate::repo::{RetainedBackupRow, RetainedCluster};
use crate::runtime::Runtimes;
use crate::shared::{remove_dir, Shared};
use crate::{platform_key, roles};

/// The runtime released (export stopped, disks detached, grants retired), the volume files and
/// documents deleted; then either the backups kept (with the role and key) or, when there are
/// none to keep, the backups deleted, an internal key no one else uses scheduled for deletion and
/// the role deleted; then the rows.
pub(super) async fn finish(shared: &Shared, runtimes: &Runtimes, cluster: &Cluster) -> Result<()> {
    if let Some(runtime) = runtimes.remove(&cluster.id) {
        runtime.release(shared).await;
    }
    remove_dir(&shared.volumes_dir(&cluster.id)).await?;
    shared
        .objects
        .delete(&cluster.id, Some(ObjectClass::Documents))
        .await?;
    let retained = kept_backups(shared, cluster).await?;
    if retained.is_none() {
        shared.objects.delete(&cluster.id, None).await?;
        if cluster.encryption == Encryption::Internal {
            if let Some(key_arn) = &cluster.key_arn {
                platform_key::retire(shared, key_arn, &cluster.id).await?;
            }
        }
        roles::delete_role(&shared.iam, &cluster.id).await?;
    }
    shared
        .repo
        .delete_cluster(
            &cluster.id,
            retained.as_ref().map(|(r, b)| (r, b.as_slice())),
        )
        .await?;
    shared.forget(&cluster.id);
    shared.alarms.forget(&cluster.id).await?;
    match &retained {
        Some((r, b)) => {
            tracing::info!(cluster = %cluster.id, backups = b.len(), until_ms = r.retain_until_ms, "deleted; backups kept")
        }
        None => tracing::info!(cluster = %cluster.id, "deleted"),
    }
    Ok(())
}

/// The cluster's complete backups to keep, if it has any and retention is on. Reads only the
/// store's listing (no KMS call): a cluster whose key is locked keeps its backups too.
async fn kept_backups(
    shared: &Shared,
    cluster: &Cluster,
) -> Result<Option<(RetainedCluster, Vec<RetainedBackupRow>)>> {
    let Some(key_arn) = &cluster.key_arn else {
        return Ok(None);
    };
    let retention = shared.config.backup_retention;
    if retention.is_zero() {
        return Ok(None);
    }
    let (org_id, _) = shared
        .repo
        .cluster(&cluster.id)
        .await?
        .ok_or_else(|| Error::not_found(format!("cluster {}", cluster.id)))?;
    let now = shared.config.clock.now_ms();
    let retained = RetainedCluster {
        cluster_id: cluster.id.clone(),
        org_id,
        name: cluster.name.clone(),
        region: cluster.region.clone(),
        encryption: cluster.encryption,
        role_arn: cluster.role_arn.clone(),
        key_arn: key_arn.clone(),
        deleted_at_ms: now,
        retain_until_ms: now
            .saturating_add(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX)),
    };
    let store = crate::runtime::retained_backups(shared, &retained).await?;
    let backups: Vec<RetainedBackupRow> = backup::list_backups(&store)
        .await
        .map_err(|e| Error::Internal(format!("listing the backups of {}: {e}", cluster.id)))?
        .into_iter()
        .map(|b| RetainedBackupRow {
            backup_id: b.backup_id,
            created_at_ms: b.created_at_ms as i64,
            stored_bytes: b.stored_bytes,
        })
        .collect();
    if backups.is_empty() {
        return Ok(None);
    }
    Ok(Some((retained, backups)))
}
