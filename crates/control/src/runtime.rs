//! The live state of each cluster with a key, and the behaviour that changes it.
//!
//! A [`ClusterRuntime`] owns, for one cluster: the keys it writes and reads under and the ESDK
//! client and object stores built on them; its data-key cache; its attached disks and their NBD
//! export (mutual TLS under the cluster's own CA, whose key is kept wrapped under the cluster's
//! key); and its access — the last key health and the gate the data paths pass — behind one
//! lock. The code that changes them is here, as methods: [`ClusterRuntime::check_now`],
//! [`ClusterRuntime::apply_health`], [`ClusterRuntime::renew_session`],
//! [`ClusterRuntime::attach_disk`], [`ClusterRuntime::reattach_disks`],
//! [`ClusterRuntime::release`]. The operator and the facade ask; they do not reach in.
//!
//! [`Runtimes`] is the registry of the runtimes of one control plane.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use keyward_envelope::{CacheLimits, Client as Esdk, DataKeyCache, KmsKeyring};
use keyward_storage::vocab::StorageClass;
use keyward_storage::{
    attach_volume, Attachment, AwsKms, ClientCredentials, ClusterCa, EncryptedStore, NbdConfig,
    NbdServer, ObjectClass,
};
use parking_lot::{Mutex, RwLock};
use tokio::task::JoinHandle;

use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::health::{HealthStatus, InaccessibleReason, KeyHealth};
use crate::repo::RetainedCluster;
use crate::shared::{RoleOf, Shared};

/// How long cached data keys may be used (DESIGN invariant 2: short).
const CACHE_MAX_AGE: Duration = Duration::from_secs(60);

/// Whether a cluster's data may be served.
#[derive(Clone)]
enum Gate {
    Open,
    Locked {
        reason: InaccessibleReason,
        message: String,
    },
    Deleted {
        message: String,
    },
}

impl Gate {
    /// The gate a stored health stands for (a restart keeps a locked cluster locked until a
    /// probe says otherwise).
    fn of(health: &KeyHealth) -> Gate {
        match health.status {
            HealthStatus::KeyInaccessible => Gate::Locked {
                reason: health.reason.unwrap_or(InaccessibleReason::KmsUnreachable),
                message: health.message.clone(),
            },
            HealthStatus::KeyDeleted => Gate::Deleted {
                message: health.message.clone(),
            },
            HealthStatus::Healthy | HealthStatus::Unknown => Gate::Open,
        }
    }
}

/// The last key health and the gate: one lock, so they never disagree for a reader.
struct Access {
    health: KeyHealth,
    gate: Gate,
}

/// The keys of a cluster and what is built on them.
struct Keys {
    /// The cluster's key.
    key_arn: String,
    /// The key new data keys come from (the new key during a key change).
    write_key_arn: String,
    /// During a key change, the old key, which objects may still be under.
    old_key_arn: Option<String>,
    esdk: Arc<Esdk<KmsKeyring>>,
    documents: Arc<EncryptedStore>,
    backups: Arc<EncryptedStore>,
}

/// One provisioned disk.
pub(crate) struct Disk {
    pub(crate) id: String,
    /// `engine-0`, `search-2`, ...: its row in `cluster_resources`.
    pub(crate) name: String,
    pub(crate) class: StorageClass,
    pub(crate) path: PathBuf,
    pub(crate) size: u64,
    attachment: Option<Attachment>,
}

impl Disk {
    /// A disk found or made by provisioning, not attached yet.
    pub(crate) fn new(
        id: String,
        name: String,
        class: StorageClass,
        path: PathBuf,
        size: u64,
    ) -> Disk {
        Disk {
            id,
            name,
            class,
            path,
            size,
            attachment: None,
        }
    }

    /// The attached volume, if the disk is attached.
    pub(crate) fn volume(&self) -> Option<&Arc<keyward_storage::Volume>> {
        self.attachment.as_ref().map(|a| a.volume())
    }

    /// Whether the disk's key is in memory.
    pub(crate) fn is_attached(&self) -> bool {
        self.volume().is_some_and(|v| v.is_attached())
    }
}

/// The disks and their export: one lock, held across the slow attach and detach calls.
#[derive(Default)]
pub(crate) struct Disks {
    pub(crate) list: Vec<Disk>,
    nbd: Option<NbdTask>,
}

/// A cluster's running NBD server.
struct NbdTask {
    port: u16,
    task: JoinHandle<()>,
    /// Set by the task when the server ended on its own (an error, a panic), before it asks
    /// the operator for a restart.
    ended: Arc<std::sync::atomic::AtomicBool>,
    /// Ends the server as if it had failed (tests of the restart).
    fail: Arc<tokio::sync::Notify>,
}

impl NbdTask {
    fn is_serving(&self) -> bool {
        !self.ended.load(std::sync::atomic::Ordering::Acquire) && !self.task.is_finished()
    }
}

impl Disks {
    /// The port of the cluster's NBD server while it serves: `None` once it stopped, so a dead
    /// address is never advertised.
    pub(crate) fn nbd_port(&self) -> Option<u16> {
        self.nbd
            .as_ref()
            .filter(|nbd| nbd.is_serving())
            .map(|nbd| nbd.port)
    }

    /// The port of the last server, serving or not: a restart takes it again if it can.
    pub(crate) fn last_nbd_port(&self) -> Option<u16> {
        self.nbd.as_ref().map(|nbd| nbd.port)
    }

    fn stop_nbd(&mut self) {
        if let Some(nbd) = self.nbd.take() {
            nbd.task.abort();
        }
    }

    /// Ends the NBD server as a failure would (no port advertised, the operator asked to
    /// restart it). For tests; `false` when no server ran.
    pub(crate) fn fail_nbd(&self) -> bool {
        match &self.nbd {
            Some(nbd) => {
                nbd.fail.notify_one();
                true
            }
            None => false,
        }
    }
}

/// What the control plane keeps in memory for a cluster with a key.
pub(crate) struct ClusterRuntime {
    pub(crate) id: String,
    pub(crate) role_arn: String,
    region: String,
    cache: Arc<DataKeyCache>,
    keys: RwLock<Keys>,
    access: RwLock<Access>,
    disks: tokio::sync::Mutex<Disks>,
    /// The cluster's NBD CA, once loaded or made.
    nbd_ca: tokio::sync::Mutex<Option<Arc<ClusterCa>>>,
    /// Serializes health transitions (detach / re-attach) and on-demand checks, so a session
    /// renewal never races another check's probe and changes apply in order.
    transition: tokio::sync::Mutex<()>,
    /// Taken shared by document writes and exclusively by the re-wrap of one object, so a
    /// re-wrap never publishes an older version over a newer one.
    rewrap: tokio::sync::RwLock<()>,
}

impl ClusterRuntime {
    /// The runtime of a cluster with a key: a session as its role, its clients and stores (during
    /// a key change, writing under the new key and reading under both), and its access from the
    /// stored health. The monitor starts watching its key.
    async fn new(shared: &Shared, cluster: &Cluster) -> Result<ClusterRuntime> {
        let key_arn = cluster
            .key_arn
            .clone()
            .ok_or_else(|| Error::internal("a runtime for a cluster without a key"))?;
        let cache = Arc::new(
            DataKeyCache::new(CacheLimits {
                max_age: CACHE_MAX_AGE,
                ..CacheLimits::default()
            })
            .map_err(Error::internal)?,
        );
        let (write, old) = match &cluster.rewrap {
            Some(r) => (r.to_key_arn.clone(), Some(key_arn.clone())),
            None => (key_arn.clone(), None),
        };
        let kms = shared
            .session(RoleOf {
                cluster_id: &cluster.id,
                role_arn: &cluster.role_arn,
                region: &cluster.region,
            })
            .await;
        let keys = Keys::build(shared, &kms, &cache, &cluster.id, key_arn, write, old)?;
        Ok(ClusterRuntime {
            id: cluster.id.clone(),
            role_arn: cluster.role_arn.clone(),
            region: cluster.region.clone(),
            cache,
            keys: RwLock::new(keys),
            access: RwLock::new(Access {
                health: cluster.health.clone(),
                gate: Gate::of(&cluster.health),
            }),
            disks: tokio::sync::Mutex::new(Disks::default()),
            nbd_ca: tokio::sync::Mutex::new(None),
            transition: tokio::sync::Mutex::new(()),
            rewrap: tokio::sync::RwLock::new(()),
        })
    }

    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// The last key health applied here.
    pub(crate) fn health(&self) -> KeyHealth {
        self.access.read().health.clone()
    }

    /// Whether it holds disks (the holder's runtime; a follower's never does).
    pub(crate) async fn has_disks(&self) -> bool {
        !self.disks.lock().await.list.is_empty()
    }

    fn role(&self) -> RoleOf<'_> {
        RoleOf {
            cluster_id: &self.id,
            role_arn: &self.role_arn,
            region: &self.region,
        }
    }

    /// The KMS client acting as the cluster's role (the shared session).
    pub(crate) async fn kms(&self, shared: &Shared) -> aws_sdk_kms::Client {
        shared.session(self.role()).await
    }

    // ---- the gate ----

    /// `Ok` when the data may be served; else the error the data paths answer.
    pub(crate) fn gate(&self) -> Result<()> {
        match &self.access.read().gate {
            Gate::Open => Ok(()),
            Gate::Locked { reason, message } => Err(Error::KeyInaccessible {
                reason: *reason,
                message: message.clone(),
            }),
            Gate::Deleted { message } => Err(Error::KeyDeleted {
                message: message.clone(),
            }),
        }
    }

    fn is_open(&self) -> bool {
        matches!(self.access.read().gate, Gate::Open)
    }

    /// Whether the key is gone for good (nothing is provisioned for it any more).
    pub(crate) fn is_deleted(&self) -> bool {
        matches!(self.access.read().gate, Gate::Deleted { .. })
    }

    // ---- keys, clients and stores ----

    pub(crate) fn key_arn(&self) -> String {
        self.keys.read().key_arn.clone()
    }

    /// The key new objects are written under (the new key during a key change).
    pub(crate) fn write_key_arn(&self) -> String {
        self.keys.read().write_key_arn.clone()
    }

    /// KMS requests (`GenerateDataKey`, `Decrypt`) the data-key cache answered instead, since
    /// this runtime was made.
    pub(crate) fn kms_calls_saved(&self) -> u64 {
        self.cache.kms_calls_saved()
    }

    pub(crate) fn esdk(&self) -> Arc<Esdk<KmsKeyring>> {
        self.keys.read().esdk.clone()
    }

    /// Removes the staging files of uploads that a crash (or `kill -9`) cut short. Called only
    /// before the runtime is first published, so no put of this process can be writing to the
    /// stores: every staging file there is a leftover. Left alone, one would stay under the key
    /// of its day through a key change, and verification would flag it for good.
    fn remove_leftover_uploads(&self) {
        for store in [self.documents(), self.backups()] {
            match store.remove_stale_uploads(Duration::ZERO) {
                Ok(0) => {}
                Ok(removed) => tracing::info!(
                    cluster = %self.id,
                    class = store.class().as_str(),
                    removed,
                    "removed uploads left unfinished by an earlier run"
                ),
                Err(error) => tracing::warn!(
                    cluster = %self.id,
                    %error,
                    "cannot remove unfinished uploads; verification will name them"
                ),
            }
        }
    }

    pub(crate) fn documents(&self) -> Arc<EncryptedStore> {
        self.keys.read().documents.clone()
    }

    pub(crate) fn backups(&self) -> Arc<EncryptedStore> {
        self.keys.read().backups.clone()
    }

    /// Held shared while a document is written or deleted.
    pub(crate) async fn writing(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.rewrap.read().await
    }

    /// Held exclusively while one object is re-wrapped.
    pub(crate) async fn rewrapping(&self) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        self.rewrap.write().await
    }

    /// New data keys from `write_key_arn`; objects under it (or `old_key_arn`) open.
    pub(crate) async fn use_keys(
        &self,
        shared: &Shared,
        write_key_arn: &str,
        old_key_arn: Option<&str>,
    ) -> Result<()> {
        let kms = self.kms(shared).await;
        self.rebuild(shared, &kms, write_key_arn, old_key_arn)
    }

    fn rebuild(
        &self,
        shared: &Shared,
        kms: &aws_sdk_kms::Client,
        write_key_arn: &str,
        old_key_arn: Option<&str>,
    ) -> Result<()> {
        let key_arn = self.key_arn();
        let keys = Keys::build(
            shared,
            kms,
            &self.cache,
            &self.id,
            key_arn,
            write_key_arn.to_owned(),
            old_key_arn.map(str::to_owned),
        )?;
        *self.keys.write() = keys;
        Ok(())
    }

    /// The key change is done: `new_key_arn` is the cluster's only key; the old one's cached
    /// data keys go and the monitor watches the new key.
    pub(crate) async fn switch_key(&self, shared: &Shared, new_key_arn: &str) -> Result<()> {
        let old = std::mem::replace(&mut self.keys.write().key_arn, new_key_arn.to_owned());
        self.use_keys(shared, new_key_arn, None).await?;
        self.cache.drop_key(&old);
        shared
            .monitor
            .watch(&self.id, new_key_arn, self.kms(shared).await, None);
        Ok(())
    }

    // ---- key health ----

    /// Probes the cluster's key now and applies the result.
    ///
    /// An access denial may be the role's session rather than the key policy: credentials the
    /// SDK still believes valid can be refused as expired (a clock that jumped, a session revoked
    /// when the role was re-created). Before the data is locked for access denied, the role is
    /// assumed afresh and the key probed once more.
    pub(crate) async fn check_now(&self, shared: &Shared) -> KeyHealth {
        let _one_at_a_time = self.transition.lock().await;
        let Some(mut health) = shared.monitor.check_now(&self.id).await else {
            // Not watched here: a follower's runtime (another replica holds the cluster). Its
            // data path saw a KMS error, so it probes itself rather than wait for the holder's
            // record, and locks what it serves at once.
            let previous = self.access.read().health.clone();
            let kms = self.kms(shared).await;
            let health =
                crate::health::probe_key_since(&kms, &self.key_arn(), &self.id, &previous).await;
            self.apply_locked(shared, health.clone()).await;
            return health;
        };
        if health.reason == Some(InaccessibleReason::AccessDenied) {
            match self.renew_session(shared).await {
                Ok(()) => {
                    if let Some(again) = shared.monitor.check_now(&self.id).await {
                        health = again;
                    }
                }
                Err(error) => {
                    tracing::warn!(cluster = %self.id, %error, "role session not renewed")
                }
            }
        }
        self.apply_locked(shared, health.clone()).await;
        health
    }

    /// Applies a probe's result: locks or unlocks the data, and records a change.
    pub(crate) async fn apply_health(&self, shared: &Shared, health: KeyHealth) {
        let _held = self.transition.lock().await;
        self.apply_locked(shared, health).await;
    }

    /// [`ClusterRuntime::apply_health`] with `transition` held.
    async fn apply_locked(&self, shared: &Shared, health: KeyHealth) {
        let previous = self.access.read().health.clone();
        if self.is_deleted() {
            return;
        }
        match health.status {
            HealthStatus::Healthy => {
                if !self.is_open() {
                    // Re-attach every disk before the gate opens again.
                    let kms = AwsKms::new(self.kms(shared).await);
                    let mut disks = self.disks.lock().await;
                    for disk in disks.list.iter_mut() {
                        if let Some(attachment) = disk.attachment.as_mut() {
                            if let Err(error) = attachment.reopen(&kms, &kms).await {
                                tracing::warn!(cluster = %self.id, disk = %disk.id, %error, "disk not re-attached yet");
                                return;
                            }
                            let _ = shared
                                .repo
                                .disk_grant(&self.id, &disk.id, Some(attachment.grant_id()))
                                .await;
                        }
                    }
                    drop(disks);
                    self.access.write().gate = Gate::Open;
                    tracing::info!(cluster = %self.id, "key accessible again; data unlocked");
                }
            }
            HealthStatus::KeyInaccessible | HealthStatus::KeyDeleted => {
                // Gate first, so no new request starts; then the keys go.
                self.access.write().gate = Gate::of(&health);
                self.cache.clear();
                *self.nbd_ca.lock().await = None;
                let disks = self.disks.lock().await;
                for volume in disks.list.iter().filter_map(Disk::volume) {
                    volume.detach();
                }
                drop(disks);
                if !previous.same_state(&health) {
                    tracing::warn!(cluster = %self.id, message = %health.message, "key inaccessible; data locked");
                }
            }
            HealthStatus::Unknown => {}
        }
        let changed = !previous.same_state(&health);
        self.access.write().health = health.clone();
        if changed {
            let _ = shared.repo.record_health(&self.id, &health).await;
        }
    }

    /// A new session for the cluster's role (a fresh `AssumeRole`), used from now on by the
    /// cluster's data paths, disks and probes.
    pub(crate) async fn renew_session(&self, shared: &Shared) -> Result<()> {
        let client = shared.renew_session(self.role()).await;
        let (write, old) = {
            let keys = self.keys.read();
            (keys.write_key_arn.clone(), keys.old_key_arn.clone())
        };
        self.rebuild(shared, &client, &write, old.as_deref())?;
        let health = self.access.read().health.clone();
        shared
            .monitor
            .watch(&self.id, &self.key_arn(), client, Some(health));
        Ok(())
    }

    // ---- disks and their export ----

    /// The disks, locked (for reading them, or for provisioning to add to them).
    pub(crate) async fn disks(&self) -> tokio::sync::MutexGuard<'_, Disks> {
        self.disks.lock().await
    }

    /// Attaches a disk as EBS does (a grant for the cluster's role, then `Decrypt` under it),
    /// records the grant, and adds it to `disks`. A grant of a previous run is retired first. If
    /// the gate closed meanwhile the key is dropped at once.
    pub(crate) async fn attach_disk(
        &self,
        shared: &Shared,
        disks: &mut Disks,
        mut disk: Disk,
        stale_grant: Option<String>,
    ) -> Result<()> {
        let client = self.kms(shared).await;
        if let Some(grant_id) = stale_grant {
            if let Err(error) = client
                .retire_grant()
                .key_id(self.key_arn())
                .grant_id(&grant_id)
                .send()
                .await
            {
                tracing::debug!(disk = %disk.id, error = %aws_sdk_kms::error::DisplayErrorContext(&error), "stale attach grant not retired");
            }
        }
        self.attach(shared, &AwsKms::new(client), &mut disk).await?;
        disks.list.push(disk);
        Ok(())
    }

    /// A new attachment of `disk` (the cluster's role as the node), its grant recorded; the key
    /// dropped at once if the gate closed meanwhile.
    async fn attach(&self, shared: &Shared, kms: &AwsKms, disk: &mut Disk) -> Result<()> {
        let attachment = attach_volume(kms, kms, &disk.path, &self.role_arn)
            .await
            .map_err(|e| self.storage_error(e))?;
        shared
            .repo
            .disk_grant(&self.id, &disk.id, Some(attachment.grant_id()))
            .await?;
        if !self.is_open() {
            attachment.volume().detach();
        }
        disk.attachment = Some(attachment);
        Ok(())
    }

    /// Attaches every disk again (after its header was re-wrapped under a new key): the old
    /// attachments are detached and their grants retired, new ones made through grants on the
    /// key the headers now name, and the export restarted on the same port.
    pub(crate) async fn reattach_disks(&self, shared: &Shared) -> Result<()> {
        let kms = AwsKms::new(self.kms(shared).await);
        let mut disks = self.disks.lock().await;
        let port = disks.last_nbd_port().unwrap_or(0);
        disks.stop_nbd();
        for disk in disks.list.iter_mut() {
            if let Some(old) = disk.attachment.take() {
                if let Err(error) = old.detach(&kms).await {
                    tracing::debug!(disk = %disk.id, %error, "old attach grant not retired");
                }
            }
            self.attach(shared, &kms, disk).await?;
        }
        // The CA key wrapped again under the key the disks are now under.
        let ca = self.nbd_ca(shared).await?;
        let esdk = self.keys.read().esdk.clone();
        crate::nbd_ca::store(&shared.nbd_ca_dir(&self.id), &ca, &esdk).await?;
        self.serve_nbd(shared, &mut disks, port).await
    }

    /// The cluster's NBD CA: loaded (its key unwrapped under the cluster's key) or made and
    /// stored the first time.
    async fn nbd_ca(&self, shared: &Shared) -> Result<Arc<ClusterCa>> {
        let mut slot = self.nbd_ca.lock().await;
        if let Some(ca) = slot.as_ref() {
            return Ok(ca.clone());
        }
        let esdk = self.keys.read().esdk.clone();
        let ca = crate::nbd_ca::load_or_make(&shared.nbd_ca_dir(&self.id), &self.id, &esdk).await?;
        Ok(slot.insert(Arc::new(ca)).clone())
    }

    /// Fresh client credentials for the cluster's NBD export, issued by its CA.
    pub(crate) async fn nbd_credentials(&self, shared: &Shared) -> Result<ClientCredentials> {
        self.nbd_ca(shared)
            .await?
            .issue_client("organization client")
            .map_err(Error::internal)
    }

    /// Starts the cluster's NBD server over its attached disks on `port` (0: any free port).
    pub(crate) async fn serve_nbd(
        &self,
        shared: &Shared,
        disks: &mut Disks,
        port: u16,
    ) -> Result<()> {
        let host = shared.config.nbd_host;
        let exports: Vec<(String, Arc<keyward_storage::Volume>)> = disks
            .list
            .iter()
            .filter_map(|d| d.volume().map(|v| (d.id.clone(), v.clone())))
            .collect();
        let listener = match tokio::net::TcpListener::bind((host, port)).await {
            Ok(listener) => Ok(listener),
            // The old port is taken meanwhile: any port (the disks list shows the new one).
            Err(_) if port != 0 => tokio::net::TcpListener::bind((host, 0)).await,
            Err(e) => Err(e),
        }
        .map_err(|e| Error::Internal(format!("cannot listen for NBD on {host}: {e}")))?;
        let port = listener
            .local_addr()
            .map_err(|e| Error::Internal(format!("NBD listener: {e}")))?
            .port();
        // Mutual TLS under the cluster's CA: only its clients' certificates are accepted.
        let ca = self.nbd_ca(shared).await?;
        let names = [host.to_string()];
        let identity = ca.issue_server(&names).map_err(Error::internal)?;
        let tls = ca.server_tls(&identity).map_err(Error::internal)?;
        let server = NbdServer::new(exports, NbdConfig::tls(tls));
        let id = self.id.clone();
        let ended = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let fail = Arc::new(tokio::sync::Notify::new());
        let (ended_by_task, failed) = (ended.clone(), fail.clone());
        let operator = shared.kicker();
        let task = tokio::spawn(async move {
            use futures::FutureExt as _;
            let serving = std::panic::AssertUnwindSafe(server.serve_tcp(listener)).catch_unwind();
            tokio::select! {
                outcome = serving => match outcome {
                    Ok(()) => tracing::warn!(cluster = %id, "NBD server stopped"),
                    Err(_) => tracing::error!(cluster = %id, "NBD server panicked"),
                },
                () = failed.notified() => tracing::warn!(cluster = %id, "NBD server made to fail"),
            }
            // Its address is no longer listed from here on; the operator serves the disks again.
            ended_by_task.store(true, std::sync::atomic::Ordering::Release);
            if let Some(operator) = operator.and_then(|weak| weak.upgrade()) {
                let _ = operator.send(id);
            }
        });
        let started = NbdTask {
            port,
            task,
            ended,
            fail,
        };
        if let Some(old) = disks.nbd.replace(started) {
            old.task.abort();
        }
        Ok(())
    }

    /// Stops the export and detaches the disks, retiring their grants.
    pub(crate) async fn release(&self, shared: &Shared) {
        self.cache.clear();
        // The CA's key goes with the data keys: unwrapped again only under an accessible key.
        *self.nbd_ca.lock().await = None;
        let node = AwsKms::new(self.kms(shared).await);
        let mut disks = self.disks.lock().await;
        disks.stop_nbd();
        for disk in disks.list.iter_mut() {
            if let Some(attachment) = disk.attachment.take() {
                let retired =
                    tokio::time::timeout(Duration::from_secs(5), attachment.detach(&node)).await;
                match retired {
                    Ok(Ok(())) => {
                        let _ = shared.repo.disk_grant(&self.id, &disk.id, None).await;
                    }
                    Ok(Err(error)) => {
                        tracing::debug!(disk = %disk.id, %error, "attach grant not retired")
                    }
                    Err(_) => tracing::debug!(disk = %disk.id, "attach grant retirement timed out"),
                }
            }
        }
    }

    /// A storage error of this cluster's, with a KMS failure kept typed.
    pub(crate) fn storage_error(&self, error: keyward_storage::Error) -> Error {
        match error {
            keyward_storage::Error::Kms { operation, failure } => Error::Kms {
                operation,
                role_arn: self.role_arn.clone(),
                failure,
            },
            other => Error::internal(other),
        }
    }
}

impl Keys {
    /// The ESDK client and the two stores for `write` (and, during a key change, decryption
    /// under `old` too).
    fn build(
        shared: &Shared,
        kms: &aws_sdk_kms::Client,
        cache: &Arc<DataKeyCache>,
        cluster_id: &str,
        key_arn: String,
        write: String,
        old: Option<String>,
    ) -> Result<Keys> {
        let esdk = Arc::new(esdk_client(kms, &write, old.as_deref())?.with_cache(cache.clone()));
        let store = |class| shared.objects.store(cluster_id, class, &esdk);
        Ok(Keys {
            documents: store(ObjectClass::Documents)?,
            backups: store(ObjectClass::Backups)?,
            esdk,
            key_arn,
            write_key_arn: write,
            old_key_arn: old,
        })
    }
}

/// An ESDK client writing under `write` and (during a key change) reading under `old` too.
fn esdk_client(
    kms: &aws_sdk_kms::Client,
    write: &str,
    old: Option<&str>,
) -> Result<Esdk<KmsKeyring>> {
    let mut keyring = KmsKeyring::new(kms.clone(), write);
    if let Some(old) = old {
        keyring = keyring.with_decrypt_key(old);
    }
    Esdk::new(keyring, keyward_envelope::Config::default()).map_err(Error::internal)
}

/// The backups store of a deleted cluster whose backups are kept: read as its role (kept as
/// long as its backups are) under its key. Listing and deleting make no KMS call.
pub(crate) async fn retained_backups(
    shared: &Shared,
    retained: &RetainedCluster,
) -> Result<Arc<EncryptedStore>> {
    let kms = shared
        .session(RoleOf {
            cluster_id: &retained.cluster_id,
            role_arn: &retained.role_arn,
            region: &retained.region,
        })
        .await;
    let esdk = Arc::new(esdk_client(&kms, &retained.key_arn, None)?);
    shared
        .objects
        .store(&retained.cluster_id, ObjectClass::Backups, &esdk)
}

/// The runtimes of one control plane, by cluster id.
#[derive(Default)]
pub(crate) struct Runtimes {
    map: Mutex<HashMap<String, Arc<ClusterRuntime>>>,
}

impl Runtimes {
    /// Each live cluster's data-key cache hits and misses: (cluster id, hits, misses).
    pub(crate) fn cache_counts(&self) -> Vec<(String, u64, u64)> {
        let mut counts: Vec<_> = self
            .map
            .lock()
            .values()
            .map(|r| (r.id.clone(), r.cache.kms_calls_saved(), r.cache.misses()))
            .collect();
        counts.sort();
        counts
    }

    pub(crate) fn get(&self, cluster_id: &str) -> Option<Arc<ClusterRuntime>> {
        self.map.lock().get(cluster_id).cloned()
    }

    /// Every live runtime.
    pub(crate) fn all(&self) -> Vec<Arc<ClusterRuntime>> {
        self.map.lock().values().cloned().collect()
    }

    /// The runtime of a cluster this replica serves without holding its lease (its documents,
    /// for a request that reached this replica): made if missing, never watched by the monitor
    /// (the holder probes; the lease loop brings its recorded health here), and without disks.
    pub(crate) async fn follower(
        &self,
        shared: &Shared,
        cluster: &Cluster,
    ) -> Result<Arc<ClusterRuntime>> {
        self.get_or_make(shared, cluster, |_| {}).await
    }

    /// The cluster's runtime, made if missing, with its key watched by the monitor (the
    /// operator's, on the replica that holds the cluster's lease). A follower's runtime becomes
    /// the holder's: its key is watched from now on.
    pub(crate) async fn get_or_create(
        &self,
        shared: &Shared,
        cluster: &Cluster,
    ) -> Result<Arc<ClusterRuntime>> {
        let runtime = self
            .get_or_make(shared, cluster, ClusterRuntime::remove_leftover_uploads)
            .await?;
        if shared.monitor.health(&cluster.id).is_none() && !runtime.is_deleted() {
            shared.monitor.watch(
                &cluster.id,
                &runtime.key_arn(),
                runtime.kms(shared).await,
                Some(runtime.health()),
            );
        }
        Ok(runtime)
    }

    /// The cluster's runtime, made if missing; `first` runs on a new one as it goes in.
    async fn get_or_make(
        &self,
        shared: &Shared,
        cluster: &Cluster,
        first: impl FnOnce(&ClusterRuntime),
    ) -> Result<Arc<ClusterRuntime>> {
        if let Some(runtime) = self.get(&cluster.id) {
            return Ok(runtime);
        }
        let made = Arc::new(ClusterRuntime::new(shared, cluster).await?);
        Ok(self
            .map
            .lock()
            .entry(cluster.id.clone())
            .or_insert_with(|| {
                first(&made);
                made
            })
            .clone())
    }

    /// Takes the cluster's runtime out (deleted).
    pub(crate) fn remove(&self, cluster_id: &str) -> Option<Arc<ClusterRuntime>> {
        self.map.lock().remove(cluster_id)
    }

    /// Takes every runtime out (shutdown).
    pub(crate) fn drain(&self) -> Vec<Arc<ClusterRuntime>> {
        self.map.lock().drain().map(|(_, r)| r).collect()
    }
}
