//! The operator: makes and keeps each cluster's storage under its key, locks it when the key
//! cannot be used, changes its key, restores a backup into it, and finishes its deletion.
//!
//! It works on [`Shared`] and the [`Runtimes`], never through the facade: the facade records
//! what is wanted (a key applied, a cluster marked `deleting`) and [`Shared::kick`]s; the
//! operator's worker brings the cluster there ([`reconcile`]).
//!
//! **Reconciliation** (one run at a time per cluster, several clusters at once) brings a cluster
//! with an applied key to this, idempotently ([`provision`]):
//! 1. a restore into a new cluster first, when it was made from a backup ([`restore`]); a
//!    restore whose backup is gone (deleted, or its retention ended) fails the cluster for good
//!    (state `failed`, with the reason), and it is not retried;
//! 2. the documents and backups stores: `EncryptedStore`s under `<data_dir>/objects/<cluster>/`,
//!    each holding a small marker object written at provisioning (`.keyward/store`), so the
//!    store proves its key to verification before the customer has stored anything;
//! 3. the disks (`engine-disk` ×N, `search-disk` ×M): volume files under
//!    `<data_dir>/volumes/<cluster>/<disk id>.vol`, each made by `create_volume` under the cluster
//!    key with the context `{keyward:cluster, keyward:class, keyward:volume-id}`;
//! 4. each disk attached as EBS does it (`attach_volume`): a grant for `Decrypt` constrained to
//!    the disk's volume id, then `Decrypt` under the grant token. The node principal is the
//!    cluster's role itself — the operator acting as the role is both the one who grants and the
//!    node that attaches, since this control plane serves the disks from its own process; a
//!    separate node role per host is the same calls with another grantee;
//! 5. one NBD server per cluster on `nbd_host`, a fresh port, one export per disk named by its
//!    disk id;
//! 6. the state moves to `ready`; a cluster in `rewrapping` then has its key changed ([`rekey`]).
//!
//! Nothing half made survives a crash: every store and disk has a row in `cluster_resources`
//! written `creating` *before* it is made and turned `ready` after. A restart finds each
//! `creating` disk, deletes whatever file a crash left and makes it again with the same id; the
//! attach grant of a previous run (recorded in the row) is retired before a new attach.
//!
//! **Key health, fail closed**: the monitor's changes are applied to the cluster's runtime
//! ([`crate::runtime::ClusterRuntime::apply_health`]) on a task of their own, so a slow detach
//! never delays the probes; an access denial first renews the role's session and probes again.
//!
//! **Deletion** ([`delete`]): a cluster marked `deleting` loses its runtime (export stopped,
//! disks detached), its volume files, documents and rows; its complete backups are kept for the
//! configured retention, with its role and key, until [`retention`] deletes them (its internal
//! key then scheduled for deletion when no other cluster uses it); a cluster without backups
//! loses them at once. A crash during it resumes at the next start.

mod delete;
mod provision;
mod rekey;
mod restore;
mod retention;

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::cluster::ClusterState;
use crate::error::Result;
use crate::health::{HealthChange, InaccessibleReason};
use crate::runtime::Runtimes;
use crate::shared::Shared;

pub use provision::{RESERVED_PREFIX, STORE_MARKER};

/// Clusters reconciled at once.
const RECONCILE_CONCURRENCY: usize = 8;
/// Delay before a failed reconciliation is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(3);

/// The operator's running tasks.
#[derive(Default)]
pub(crate) struct Operator {
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Operator {
    /// Starts the reconciliation worker and the consumer of the monitor's changes, and queues
    /// every cluster that has a key (or was being deleted) so a restart resumes where the last
    /// run stopped. The tasks hold the state weakly: dropping the control plane ends them.
    pub(crate) async fn start(
        &self,
        shared: &Arc<Shared>,
        runtimes: &Arc<Runtimes>,
        kicks: mpsc::UnboundedReceiver<String>,
        changes: mpsc::UnboundedReceiver<HealthChange>,
    ) -> Result<()> {
        let worker = tokio::spawn(work(
            Arc::downgrade(shared),
            Arc::downgrade(runtimes),
            kicks,
        ));
        let consumer = tokio::spawn(apply_changes(
            Arc::downgrade(shared),
            Arc::downgrade(runtimes),
            changes,
        ));
        let expiry = tokio::spawn(expire_audit(Arc::downgrade(shared)));
        let alarms = tokio::spawn(evaluate_alarms(Arc::downgrade(shared)));
        let sweeper = tokio::spawn(retention::run(Arc::downgrade(shared)));
        let notifications = tokio::spawn(crate::notify::worker::run(Arc::downgrade(shared)));
        self.tasks
            .lock()
            .extend([worker, consumer, expiry, sweeper, alarms, notifications]);
        for id in shared.repo.clusters_to_resume().await? {
            shared.kick(&id);
        }
        Ok(())
    }

    /// Stops every task and releases every runtime (disks detached, keys wiped, grants retired).
    pub(crate) async fn stop(&self, shared: &Shared, runtimes: &Runtimes) {
        shared.stop_kicks();
        shared.monitor.shutdown();
        for task in self.tasks.lock().drain(..) {
            task.abort();
        }
        for runtime in runtimes.drain() {
            runtime.release(shared).await;
        }
    }
}

/// Evaluates every cluster's alarms once per probe interval: an alarm follows the health change
/// (or the refused requests) that causes it within one interval.
async fn evaluate_alarms(shared: Weak<Shared>) {
    loop {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let every = strong.config.probe_interval;
        if let Err(error) = evaluate_alarms_once(&strong).await {
            tracing::warn!(%error, "alarms not evaluated");
        }
        drop(strong);
        tokio::time::sleep(every).await;
    }
}

/// Evaluates the alarms of every cluster that has a key, once. Errors of one cluster are logged
/// and do not stop the others.
pub(crate) async fn evaluate_alarms_once(shared: &Shared) -> Result<()> {
    // Wall time, as the audit's records have it (the control clock only moves retention).
    let now = keyward_storage::vocab::now_ms();
    // Once for the round: each cluster's count then reads only the database.
    shared.audit.flush().await;
    for id in shared.repo.clusters_to_resume().await? {
        let Some((org, cluster)) = shared.repo.cluster(&id).await? else {
            continue;
        };
        if cluster.key_arn.is_none() {
            continue;
        }
        match shared.alarms.evaluate(&shared.audit, &cluster, now).await {
            Ok(transitions) => {
                for t in &transitions {
                    tracing::info!(
                        cluster = %id,
                        alarm = t.kind.as_str(),
                        from = t.from.as_str(),
                        to = t.to.as_str(),
                        reason = %t.reason,
                        "alarm state changed"
                    );
                }
                // Only the queue's inserts: the webhooks are posted by the delivery worker.
                match shared
                    .notifier
                    .enqueue_transitions(&org, &cluster, &transitions)
                    .await
                {
                    Ok((_, suppressed)) => {
                        for _ in 0..suppressed {
                            shared
                                .metrics
                                .notification(crate::metrics::DeliveryOutcome::Suppressed);
                        }
                    }
                    Err(error) => {
                        tracing::warn!(cluster = %id, %error, "alarm notifications not queued")
                    }
                }
            }
            Err(error) => tracing::warn!(cluster = %id, %error, "alarms not evaluated"),
        }
    }
    Ok(())
}

/// Deletes the KMS audit's records past their retention, at a quarter of the retention period
/// (at least every second, at most every hour), so the table's size stays bounded.
async fn expire_audit(shared: Weak<Shared>) {
    loop {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let retention = strong.config.audit_retention;
        let every = (retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(3600));
        let before = strong
            .config
            .clock
            .now_ms()
            .saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
        match strong.audit.expire(before).await {
            Ok(0) => {}
            Ok(expired) => tracing::debug!(expired, "KMS audit records past retention deleted"),
            Err(error) => tracing::warn!(%error, "KMS audit retention could not run"),
        }
        drop(strong);
        tokio::time::sleep(every).await;
    }
}

/// The reconciliation worker: one run per kicked cluster, at most [`RECONCILE_CONCURRENCY`] at
/// once, a failed run retried after [`RETRY_AFTER`].
async fn work(
    shared: Weak<Shared>,
    runtimes: Weak<Runtimes>,
    mut kicks: mpsc::UnboundedReceiver<String>,
) {
    // Every reconciliation and retry timer lives in this set, so aborting the worker (at
    // shutdown) stops all of them: nothing keeps provisioning behind a stopped plane.
    let mut tasks = tokio::task::JoinSet::new();
    let permits = Arc::new(tokio::sync::Semaphore::new(RECONCILE_CONCURRENCY));
    let running: Arc<Mutex<HashSet<String>>> = Default::default();
    loop {
        let cluster_id = tokio::select! {
            next = kicks.recv() => match next {
                Some(id) => id,
                None => break,
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let (Some(shared), Some(runtimes)) = (shared.upgrade(), runtimes.upgrade()) else {
            break;
        };
        if !running.lock().insert(cluster_id.clone()) {
            // Already being reconciled: a kick that arrives during a run is honoured after it
            // (the run may have read the state before the change that kicked).
            tasks.spawn(async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                shared.kick(&cluster_id);
            });
            continue;
        }
        let permits = permits.clone();
        let running = running.clone();
        tasks.spawn(async move {
            let outcome = {
                let _permit = permits.acquire_owned().await;
                // Every line the reconciliation logs names its cluster.
                let span = tracing::info_span!("reconcile", cluster = %cluster_id);
                tracing::Instrument::instrument(reconcile(&shared, &runtimes, &cluster_id), span)
                    .await
            };
            running.lock().remove(&cluster_id);
            if let Err(error) = outcome {
                tracing::warn!(cluster = %cluster_id, %error, "reconciliation failed; retrying");
                tokio::time::sleep(RETRY_AFTER).await;
                shared.kick(&cluster_id);
            }
        });
    }
}

/// The monitor's changes lock or unlock the cluster's data.
async fn apply_changes(
    shared: Weak<Shared>,
    runtimes: Weak<Runtimes>,
    mut changes: mpsc::UnboundedReceiver<HealthChange>,
) {
    while let Some(change) = changes.recv().await {
        let (Some(shared), Some(runtimes)) = (shared.upgrade(), runtimes.upgrade()) else {
            break;
        };
        if let Some(runtime) = runtimes.get(&change.cluster_id) {
            if change.current.reason == Some(InaccessibleReason::AccessDenied) {
                // Renews the role's session and probes again before locking.
                runtime.check_now(&shared).await;
            } else {
                runtime.apply_health(&shared, change.current).await;
            }
        }
    }
}

/// Brings one cluster to its desired state, under the cluster's lock. Idempotent.
async fn reconcile(shared: &Shared, runtimes: &Runtimes, cluster_id: &str) -> Result<()> {
    let lock = shared.cluster_lock(cluster_id);
    let _held = lock.lock().await;
    let Some((_, cluster)) = shared.repo.cluster(cluster_id).await? else {
        // Gone: a deletion finished by an earlier run.
        shared.deletion_done(cluster_id, &Ok(()));
        return Ok(());
    };
    match cluster.state {
        // A failed cluster is never retried: only its deletion changes it.
        ClusterState::AwaitingKey | ClusterState::Failed => Ok(()),
        ClusterState::Deleting => {
            let outcome = delete::finish(shared, runtimes, &cluster).await;
            shared.deletion_done(cluster_id, &outcome);
            outcome
        }
        ClusterState::Provisioning | ClusterState::Ready | ClusterState::Rewrapping => {
            let Some(runtime) = provision::run(shared, runtimes, &cluster).await? else {
                // Failed for good (its restore's backup is gone).
                return Ok(());
            };
            if cluster.state == ClusterState::Rewrapping {
                rekey::run(shared, &cluster, &runtime).await?;
            }
            Ok(())
        }
    }
}
