//! What every part of the control plane works with, owned once: the configuration, the stored
//! state ([`Repo`]), the key-health monitor, the operator's AWS clients, the one cache of cluster
//! role sessions, the per-cluster locks, and the operator's work queue (`kick`).
//!
//! The facade and the operator both hold a [`Shared`]; neither reaches into the other.

use std::collections::HashMap;
use std::sync::Arc;

use aws_config::SdkConfig;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, OnceCell};

use crate::alarms::Alarms;
use crate::audit::{session_arn, AuditLog};
use crate::config::ControlConfig;
use crate::error::Result;
use crate::health::HealthMonitor;
use crate::metrics::Metrics;
/// Kept here for the modules that remove directories of their own (volumes).
pub(crate) use crate::objects::remove_dir;
use crate::repo::Repo;
use crate::roles;

/// A cluster's identity as the role sessions need it.
pub(crate) struct RoleOf<'a> {
    pub(crate) cluster_id: &'a str,
    pub(crate) role_arn: &'a str,
    pub(crate) region: &'a str,
}

/// Told how the operator's attempt at finishing a deletion went (the error's message).
type DeletionWaiter = oneshot::Sender<Result<(), String>>;

pub(crate) struct Shared {
    pub(crate) config: ControlConfig,
    pub(crate) repo: Repo,
    pub(crate) monitor: HealthMonitor,
    /// The per-cluster KMS audit; every role session's client records into it.
    pub(crate) audit: AuditLog,
    /// The clusters' alarms, evaluated by the operator.
    pub(crate) alarms: Alarms,
    /// Alarm notifications: destinations, the delivery queue, rate limits.
    pub(crate) notifier: crate::notify::Notifier,
    /// The operational counters (KMS requests as the clusters' roles, bytes on the data paths).
    pub(crate) metrics: Arc<Metrics>,
    /// The operator's SDK configuration (its own credentials).
    pub(crate) base: SdkConfig,
    pub(crate) iam: aws_sdk_iam::Client,
    sts: aws_sdk_sts::Client,
    operator_arn: OnceCell<String>,
    /// The KMS client acting as each cluster's role: the one cache of role sessions. The data
    /// paths, the disks and the monitor all get theirs from here.
    sessions: Mutex<HashMap<String, aws_sdk_kms::Client>>,
    /// Serializes the state changes of one cluster (association, reconciliation, deletion).
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The operator's queue of clusters to reconcile; `None` once it stopped.
    kick: Mutex<Option<mpsc::UnboundedSender<String>>>,
    /// Those waiting for a cluster's deletion to be finished by the operator.
    deletions: Mutex<HashMap<String, Vec<DeletionWaiter>>>,
    /// Wakes the operator's sweep of kept backups (one was deleted).
    retention: Arc<tokio::sync::Notify>,
    /// Where documents and backups live (local files or an S3 bucket).
    pub(crate) objects: crate::objects::Objects,
    /// Where the unexpected-principal alarm has read each key account's trail to.
    pub(crate) trail: crate::trail::TrailReader,
    /// The cluster leases this replica holds: the work it does among the replicas.
    pub(crate) leases: Arc<crate::lease::Leases>,
}

impl Shared {
    /// The shared state, and the receiving end of the operator's queue.
    pub(crate) fn new(
        config: ControlConfig,
        repo: Repo,
        monitor: HealthMonitor,
        audit: AuditLog,
        alarms: Alarms,
        notifier: crate::notify::Notifier,
        base: SdkConfig,
    ) -> Result<(Shared, mpsc::UnboundedReceiver<String>)> {
        // One set of leases: the repository fences the operator's writes with it.
        let leases = repo.leases().clone();
        let (tx, rx) = mpsc::unbounded_channel();
        let objects = crate::objects::Objects::new(&config)?;
        let shared = Shared {
            iam: aws_sdk_iam::Client::new(&base),
            sts: aws_sdk_sts::Client::new(&base),
            base,
            config,
            repo,
            monitor,
            audit,
            alarms,
            notifier,
            objects,
            metrics: Arc::default(),
            operator_arn: OnceCell::new(),
            sessions: Mutex::new(HashMap::new()),
            locks: Mutex::new(HashMap::new()),
            kick: Mutex::new(Some(tx)),
            deletions: Mutex::new(HashMap::new()),
            retention: Arc::new(tokio::sync::Notify::new()),
            trail: Default::default(),
            leases,
        };
        Ok((shared, rx))
    }

    // ---- the operator's queue ----

    /// Asks the operator to reconcile the cluster soon. `false` when the operator has stopped.
    pub(crate) fn kick(&self, cluster_id: &str) -> bool {
        match self.kick.lock().as_ref() {
            Some(tx) => tx.send(cluster_id.to_owned()).is_ok(),
            None => false,
        }
    }

    /// A handle on the operator's queue for a background task that must not keep it open (an
    /// NBD server asking to be restarted); `None` when the operator has stopped.
    pub(crate) fn kicker(&self) -> Option<mpsc::WeakUnboundedSender<String>> {
        self.kick.lock().as_ref().map(|tx| tx.downgrade())
    }

    /// Closes the queue: the operator's worker ends.
    pub(crate) fn stop_kicks(&self) {
        self.kick.lock().take();
    }

    /// A receiver of the outcome of the operator's next attempt at finishing the cluster's
    /// deletion.
    pub(crate) fn await_deletion(&self, cluster_id: &str) -> oneshot::Receiver<Result<(), String>> {
        let (tx, rx) = oneshot::channel();
        self.deletions
            .lock()
            .entry(cluster_id.to_owned())
            .or_default()
            .push(tx);
        rx
    }

    /// Tells those waiting how the deletion of the cluster went.
    pub(crate) fn deletion_done(&self, cluster_id: &str, outcome: &Result<()>) {
        let waiting = self.deletions.lock().remove(cluster_id).unwrap_or_default();
        for tx in waiting {
            let _ = tx.send(outcome.as_ref().map(|_| ()).map_err(|e| e.to_string()));
        }
    }

    /// Asks the operator to sweep the kept backups soon (a permit is stored if it is busy).
    pub(crate) fn wake_retention(&self) {
        self.retention.notify_one();
    }

    /// What the operator's sweep of kept backups waits on.
    pub(crate) fn retention_wake(&self) -> Arc<tokio::sync::Notify> {
        self.retention.clone()
    }

    // ---- per-cluster locks ----

    pub(crate) fn cluster_lock(&self, cluster_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .entry(cluster_id.to_owned())
            .or_default()
            .clone()
    }

    // ---- AWS as the operator and as the clusters' roles ----

    /// The operator's principal ARN, asked of STS once.
    pub(crate) async fn operator_arn(&self) -> Result<String> {
        self.operator_arn
            .get_or_try_init(|| roles::operator_arn(&self.sts))
            .await
            .cloned()
    }

    /// The KMS client acting as the cluster's role in the cluster's region, made once.
    pub(crate) async fn session(&self, role: RoleOf<'_>) -> aws_sdk_kms::Client {
        if let Some(client) = self.sessions.lock().get(role.cluster_id) {
            return client.clone();
        }
        let client = self.new_session(&role).await;
        self.sessions
            .lock()
            .entry(role.cluster_id.to_owned())
            .or_insert(client)
            .clone()
    }

    /// A fresh session for the cluster's role (a new `AssumeRole`), replacing the cached one.
    pub(crate) async fn renew_session(&self, role: RoleOf<'_>) -> aws_sdk_kms::Client {
        let client = self.new_session(&role).await;
        self.sessions
            .lock()
            .insert(role.cluster_id.to_owned(), client.clone());
        client
    }

    /// A client for the role's session, audited.
    async fn new_session(&self, role: &RoleOf<'_>) -> aws_sdk_kms::Client {
        let principal = session_arn(role.role_arn, roles::SESSION_NAME);
        let audit = self.audit.interceptor(
            role.cluster_id,
            principal,
            self.metrics.clone(),
            self.config.audit_enabled,
        );
        roles::audited_cluster_kms(
            &self.base,
            role.role_arn,
            role.cluster_id,
            role.region,
            Some(audit),
        )
        .await
    }

    /// A KMS client as the operator itself (the platform's own keys), in `region`.
    pub(crate) fn operator_kms(&self, region: Option<&str>) -> aws_sdk_kms::Client {
        match region {
            None => aws_sdk_kms::Client::new(&self.base),
            Some(region) => aws_sdk_kms::Client::from_conf(
                aws_sdk_kms::config::Builder::from(&self.base)
                    .region(aws_config::Region::new(region.to_owned()))
                    .build(),
            ),
        }
    }

    /// Forgets everything kept for a deleted cluster.
    pub(crate) fn forget(&self, cluster_id: &str) {
        self.monitor.unwatch(cluster_id);
        self.sessions.lock().remove(cluster_id);
        self.locks.lock().remove(cluster_id);
        self.trail.forget(cluster_id);
        self.leases.forget(cluster_id);
    }

    /// `<data_dir>/nbd-ca/<cluster>`: the cluster's NBD CA, its key wrapped.
    pub(crate) fn nbd_ca_dir(&self, cluster_id: &str) -> std::path::PathBuf {
        self.config.data_dir.join("nbd-ca").join(cluster_id)
    }

    /// `<data_dir>/volumes/<cluster>`.
    pub(crate) fn volumes_dir(&self, cluster_id: &str) -> std::path::PathBuf {
        self.config.data_dir.join("volumes").join(cluster_id)
    }
}
