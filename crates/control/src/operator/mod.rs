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
mod notify_worker;
mod provision;
mod rekey;
mod replica;
mod restore;
mod retention;
mod trail;

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::alarms::{MaterialSeen, Observed, PrincipalsSeen};
use crate::cluster::ClusterState;
use crate::error::Result;
use crate::health::{HealthChange, InaccessibleReason};
use crate::runtime::Runtimes;
use crate::shared::Shared;
use crate::AlarmKind;

pub use provision::{RESERVED_PREFIX, STORE_MARKER};

/// Clusters reconciled at once. Provisioning mostly waits — on KMS, on fsyncs of volume files,
/// on commits — so more than the cores run at once, and the waits overlap: the KMS store and the
/// control database each commit the writes that arrive together in one fsync. The bound keeps
/// a restart with thousands of clusters from opening thousands of files and KMS requests at once.
const RECONCILE_CONCURRENCY: usize = 32;
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
        let notifications = tokio::spawn(notify_worker::run(Arc::downgrade(shared)));
        // The first pass registers this replica and takes its clusters' leases; each acquired
        // cluster is then kicked, so a restart resumes where the last run stopped.
        let leases = tokio::spawn(replica::run(
            Arc::downgrade(shared),
            Arc::downgrade(runtimes),
        ));
        let deadlines = tokio::spawn(replica::watch_deadlines(
            Arc::downgrade(shared),
            Arc::downgrade(runtimes),
        ));
        self.tasks.lock().extend([
            worker,
            consumer,
            expiry,
            sweeper,
            alarms,
            notifications,
            leases,
            deadlines,
        ]);
        Ok(())
    }

    /// Stops every task and releases every runtime (disks detached, keys wiped, grants retired).
    /// Then hands every lease over, so the other replicas take this one's clusters at their
    /// next pass rather than after a lease.
    pub(crate) async fn stop(&self, shared: &Shared, runtimes: &Runtimes) {
        shared.stop_kicks();
        shared.monitor.shutdown();
        for task in self.tasks.lock().drain(..) {
            task.abort();
        }
        for runtime in runtimes.drain() {
            runtime.release(shared).await;
        }
        if let Err(error) = shared.leases.stop().await {
            tracing::warn!(%error, "leases not handed over; they expire within one lease");
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

/// Evaluates the alarms of every cluster that has a key, once, each under its effective rules.
/// Errors of one cluster are logged and do not stop the others.
pub(crate) async fn evaluate_alarms_once(shared: &Shared) -> Result<()> {
    // Wall time, as the audit's records have it (the control clock only moves retention).
    let now = keyward_storage::vocab::now_ms();
    // Once for the round: each cluster's count then reads only the database.
    shared.audit.flush().await;
    let probe =
        crate::cost::probe_projection(shared.config.probe_interval, &shared.config.kms_prices);
    for (org, cluster) in shared.repo.keyed_clusters().await? {
        let id = &cluster.id;
        // Another replica holds it: that one evaluates its alarms.
        if shared.leases.holds(id).is_none() {
            continue;
        }
        match evaluate_cluster(shared, &org, &cluster, &probe, now).await {
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

/// Gathers what one cluster's alarms are decided from and evaluates them.
async fn evaluate_cluster(
    shared: &Shared,
    org: &str,
    cluster: &crate::cluster::Cluster,
    probe: &crate::cost::ProbeProjection,
    now: i64,
) -> Result<Vec<crate::alarms::AlarmTransition>> {
    let rules = shared
        .alarms
        .rules
        .view(org, Some(&cluster.id))
        .await?
        .effective;
    let window_ms = i64::try_from(rules.access_denied_window_seconds * 1000).unwrap_or(i64::MAX);
    let denied = shared
        .audit
        .count_denied(
            &cluster.id,
            now - window_ms,
            rules.access_denied_operations.as_deref(),
        )
        .await?;
    let material = if rules.is_enabled(AlarmKind::KeyRotated) {
        key_material(shared, cluster, now).await?
    } else {
        MaterialSeen::Unknown(String::new())
    };
    let principals = if rules.is_enabled(AlarmKind::UnexpectedPrincipal) {
        trail::principals_seen(shared, org, cluster, &rules, now).await
    } else {
        PrincipalsSeen::Unreadable(String::new())
    };
    let seen = Observed {
        rules: &rules,
        denied_in_window: denied,
        probe,
        material,
        principals,
        now_ms: now,
    };
    shared.alarms.evaluate(cluster, &seen).await
}

/// What KMS last said of the cluster key's current material: asked again (one `DescribeKey` as
/// the cluster's role) once per `key_material_check_interval`, else as recorded.
async fn key_material(
    shared: &Shared,
    cluster: &crate::cluster::Cluster,
    now: i64,
) -> Result<MaterialSeen> {
    let Some(key_arn) = cluster.key_arn.as_deref() else {
        return Ok(MaterialSeen::Unknown("the cluster has no key".into()));
    };
    let recorded = shared.alarms.material(&cluster.id).await?;
    let every =
        i64::try_from(shared.config.key_material_check_interval.as_millis()).unwrap_or(i64::MAX);
    if let Some(row) = &recorded {
        if row.key_arn == key_arn && now - row.checked_at_ms < every {
            return Ok(MaterialSeen::Seen {
                rotated_at_ms: row.rotated_at_ms,
            });
        }
    }
    let kms = shared
        .session(crate::shared::RoleOf {
            cluster_id: &cluster.id,
            role_arn: &cluster.role_arn,
            region: &cluster.region,
        })
        .await;
    let asked = kms.describe_key().key_id(key_arn).send().await;
    let reported = asked
        .as_ref()
        .ok()
        .and_then(|out| out.key_metadata())
        .and_then(|m| m.current_key_material_id())
        .map(str::to_owned);
    match (reported, recorded) {
        (Some(material), _) => Ok(MaterialSeen::Seen {
            rotated_at_ms: shared
                .alarms
                .record_material(&cluster.id, key_arn, &material, now)
                .await?,
        }),
        // Asked and not answered: what was seen before still holds.
        (None, Some(row)) if row.key_arn == key_arn => Ok(MaterialSeen::Seen {
            rotated_at_ms: row.rotated_at_ms,
        }),
        (None, _) => Ok(MaterialSeen::Unknown(match asked {
            Ok(_) => format!(
                "KMS does not report the current material of key {key_arn} \
                 (DescribeKey's CurrentKeyMaterialId), so a rotation cannot be seen"
            ),
            Err(error) => format!(
                "the key's current material could not be read (DescribeKey as the cluster's \
                 role failed: {})",
                aws_sdk_kms::error::DisplayErrorContext(&error)
            ),
        })),
    }
}

/// Keeps the KMS audit bounded at a quarter of the retention period (at least every second, at
/// most every hour): records past their retention deleted, successful probes past the compaction
/// age folded into hourly counts.
async fn expire_audit(shared: Weak<Shared>) {
    loop {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let retention = strong.config.audit_retention;
        let every = (retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(3600));
        if let Err(error) = maintain_audit(&strong).await {
            tracing::warn!(%error, "KMS audit retention or compaction could not run");
        }
        drop(strong);
        tokio::time::sleep(every).await;
    }
}

/// Deletes what is past retention and compacts what is past the compaction age, once. Returns
/// (records compacted, records expired).
pub(crate) async fn maintain_audit(shared: &Shared) -> Result<(u64, u64)> {
    let now = shared.config.clock.now_ms();
    let age = |d: Duration| now.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let expired = shared
        .audit
        .expire(age(shared.config.audit_retention))
        .await?;
    let compacted = shared
        .audit
        .compact(age(shared.config.audit_compaction_age))
        .await?;
    if expired > 0 || compacted > 0 {
        tracing::debug!(expired, compacted, "KMS audit kept bounded");
    }
    Ok((compacted, expired))
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
        // Gone: a deletion finished by an earlier run (here or on another replica).
        shared.deletion_done(cluster_id, &Ok(()));
        return Ok(());
    };
    if shared.leases.holds(cluster_id).is_none() && !replica::take(shared, &cluster).await? {
        // Another replica's to do (it sees the change at its next lease pass).
        return Ok(());
    }
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
            // A key change re-wraps the disks too: only on the node that holds them.
            let me = shared.leases.replica_id();
            let disks_here = cluster.disk_node.as_deref().is_none_or(|node| node == me);
            if cluster.state == ClusterState::Rewrapping && disks_here {
                rekey::run(shared, &cluster, &runtime).await?;
            }
            Ok(())
        }
    }
}
