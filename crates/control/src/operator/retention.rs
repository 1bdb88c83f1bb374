//! The end of a deleted cluster's backups: when its retention ends on the control plane's clock
//! ([`crate::Clock`]), or when its organization has deleted the last of them, the operator
//! deletes its backups store, schedules its internal key for deletion (only when no other
//! cluster, live or kept, uses it), deletes its role and forgets it. Each step is idempotent: a
//! crash resumes at the next sweep.
//!
//! The sweep runs every [`SWEEP_INTERVAL`], at once when the clock is moved, and when a kept
//! backup is deleted ([`Shared::wake_retention`]).

use std::sync::Weak;
use std::time::Duration;

use crate::cluster::Encryption;
use crate::error::Result;
use crate::repo::RetainedCluster;
use crate::shared::Shared;
use crate::{platform_key, roles};

/// How often kept backups are looked at when nothing wakes the sweep earlier.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Sweeps until the control plane is dropped.
pub(super) async fn run(shared: Weak<Shared>) {
    let (mut moves, wake) = match shared.upgrade() {
        Some(shared) => (shared.config.clock.moves(), shared.retention_wake()),
        None => return,
    };
    loop {
        // Seen before the sweep: a move during it wakes the next one.
        moves.borrow_and_update();
        {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            if let Err(error) = sweep(&shared).await {
                tracing::warn!(%error, "retention sweep failed; trying again later");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(SWEEP_INTERVAL) => {}
            changed = moves.changed() => if changed.is_err() { return },
            _ = wake.notified() => {}
        }
    }
}

/// Retires every kept cluster whose retention has ended or that keeps no backup any more.
async fn sweep(shared: &Shared) -> Result<()> {
    let now = shared.config.clock.now_ms();
    for retained in shared.repo.retained_to_retire(now).await? {
        if let Err(error) = retire(shared, &retained).await {
            tracing::warn!(cluster = %retained.cluster_id, %error, "kept backups not retired; trying again later");
        }
    }
    Ok(())
}

async fn retire(shared: &Shared, retained: &RetainedCluster) -> Result<()> {
    let id = &retained.cluster_id;
    shared.objects.delete(id, None).await?;
    if retained.encryption == Encryption::Internal {
        platform_key::retire(shared, &retained.key_arn, id).await?;
    }
    roles::delete_role(&shared.iam, id).await?;
    shared.repo.forget_retained(id).await?;
    shared.forget(id);
    tracing::info!(cluster = %id, "kept backups deleted: retention ended or none left");
    Ok(())
}
