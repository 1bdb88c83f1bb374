//! Finishing a cluster's deletion: what the facade marked `deleting` is taken apart here, and the
//! same steps resume after a crash (each is idempotent).

use crate::cluster::{Cluster, Encryption};
use crate::error::Result;
use crate::roles;
use crate::runtime::Runtimes;
use crate::shared::{remove_dir, Shared};

/// The runtime released (export stopped, disks detached, grants retired), the volume files and
/// objects deleted, an internal key scheduled for deletion, the role deleted, then the rows.
pub(super) async fn finish(shared: &Shared, runtimes: &Runtimes, cluster: &Cluster) -> Result<()> {
    if let Some(runtime) = runtimes.remove(&cluster.id) {
        runtime.release(shared).await;
    }
    remove_dir(&shared.volumes_dir(&cluster.id)).await?;
    remove_dir(&shared.objects_dir().join(&cluster.id)).await?;
    if cluster.encryption == Encryption::Internal {
        if let Some(key_arn) = &cluster.key_arn {
            if let Err(error) = shared
                .operator_kms(None)
                .schedule_key_deletion()
                .key_id(key_arn)
                .pending_window_in_days(7)
                .send()
                .await
            {
                tracing::warn!(cluster = %cluster.id, error = %aws_sdk_kms::error::DisplayErrorContext(&error), "internal key not scheduled for deletion");
            }
        }
    }
    roles::delete_role(&shared.iam, &cluster.id).await?;
    shared.repo.delete_cluster(&cluster.id).await?;
    shared.forget(&cluster.id);
    tracing::info!(cluster = %cluster.id, "deleted");
    Ok(())
}
