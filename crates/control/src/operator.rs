//! The operator: makes and keeps each cluster's storage under its key, and locks it when the key
//! cannot be used.
//!
//! **Reconciliation** (one cluster at a time per cluster, several clusters at once) brings a
//! cluster with an applied key to this, idempotently:
//! 1. the documents and backups stores: `EncryptedStore`s under `<data_dir>/objects/<cluster>/`,
//!    each holding a small marker object written at provisioning (`.keyward/store`), so the
//!    store proves its key to verification before the customer has stored anything;
//! 2. the disks (`engine-disk` ×N, `search-disk` ×M): volume files under
//!    `<data_dir>/volumes/<cluster>/<disk id>.vol`, each made by `create_volume` under the cluster
//!    key with the context `{keyward:cluster, keyward:class, keyward:volume-id}`;
//! 3. each disk attached as EBS does it (`attach_volume`): a grant for `Decrypt` constrained to
//!    the disk's volume id, then `Decrypt` under the grant token. The node principal is the
//!    cluster's role itself — the operator acting as the role is both the one who grants and the
//!    node that attaches, since this control plane serves the disks from its own process; a
//!    separate node role per host is the same calls with another grantee;
//! 4. one NBD server per cluster on `nbd_host`, a fresh port, one export per disk named by its
//!    disk id;
//! 5. the state moves to `ready`.
//!
//! Nothing half made survives a crash: every store and disk has a row in `cluster_resources`
//! written `creating` *before* it is made and turned `ready` after. A restart finds each
//! `creating` disk, deletes whatever file a crash left and makes it again with the same id; the
//! attach grant of a previous run (recorded in the row) is retired before a new attach.
//!
//! **Key health, fail closed**: every cluster with a key is probed every `probe_interval`, and at
//! once when a data path sees a KMS error. When the key is inaccessible the cluster's cached data
//! keys are dropped, its disks detached (the keys wiped; the NBD exports refuse new connections
//! and fail every request with EIO) and the data routes answer `key_inaccessible`; when it comes
//! back the disks are re-attached (a fresh grant if the old one was revoked) and everything
//! serves again. `key-deleted` is terminal.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex as StdMutex, RwLock};
use std::time::Duration;

use keyward_envelope::{CacheLimits, Client as Esdk, DataKeyCache, KmsKeyring};
use keyward_storage::volume::kms::new_volume_id;
use keyward_storage::{
    attach_volume, create_volume, Attachment, AwsKms, EncryptedStore, NbdServer, NewVolume,
    ObjectClass,
};
use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinHandle;

use crate::cluster::{reason_str, status_str, Cluster, ClusterState};
use crate::db::Value;
use crate::error::{Error, Result};
use crate::health::{HealthChange, HealthStatus, InaccessibleReason, KeyHealth};
use crate::plane::{now_ms, ControlPlane};

/// The key of the marker object each object store gets at provisioning.
pub const STORE_MARKER: &str = ".keyward/store";
/// Object names under this prefix are the platform's, not the customer's.
pub const RESERVED_PREFIX: &str = ".keyward/";
/// Clusters reconciled at once.
const RECONCILE_CONCURRENCY: usize = 8;
/// Delay before a failed reconciliation is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(3);
/// How long cached data keys may be used (DESIGN invariant 2: short).
const CACHE_MAX_AGE: Duration = Duration::from_secs(60);

/// The operator's running parts, owned by the control plane.
#[derive(Default)]
pub(crate) struct Operator {
    kick: StdMutex<Option<mpsc::UnboundedSender<String>>>,
    pub(crate) runtimes: StdMutex<HashMap<String, Arc<ClusterRuntime>>>,
    tasks: StdMutex<Vec<JoinHandle<()>>>,
}

impl Operator {
    /// Asks for the cluster to be reconciled soon.
    pub(crate) fn kick(&self, cluster_id: &str) {
        if let Some(tx) = self.kick.lock().unwrap().as_ref() {
            let _ = tx.send(cluster_id.to_owned());
        }
    }

    pub(crate) fn runtime(&self, cluster_id: &str) -> Option<Arc<ClusterRuntime>> {
        self.runtimes.lock().unwrap().get(cluster_id).cloned()
    }
}

/// The ESDK client of a cluster and its two object stores over it.
pub(crate) type Clients = (
    Arc<Esdk<KmsKeyring>>,
    Arc<EncryptedStore>,
    Arc<EncryptedStore>,
);

/// Whether a cluster's data may be served.
#[derive(Clone)]
pub(crate) enum Gate {
    Open,
    Locked {
        reason: InaccessibleReason,
        message: String,
    },
    Deleted {
        message: String,
    },
}

/// One provisioned disk.
pub(crate) struct Disk {
    pub(crate) id: String,
    /// `engine-0`, `search-2`, ...: its row in `cluster_resources`.
    pub(crate) name: String,
    pub(crate) class: &'static str,
    pub(crate) path: PathBuf,
    pub(crate) size: u64,
    pub(crate) attachment: Option<Attachment>,
}

/// What the operator keeps in memory for a cluster with a key.
pub(crate) struct ClusterRuntime {
    pub(crate) id: String,
    pub(crate) role_arn: String,
    pub(crate) key_arn: RwLock<String>,
    /// The key new data keys come from (the new key during a key change).
    pub(crate) write_key_arn: RwLock<String>,
    /// During a key change, the old key, which objects may still be under.
    old_key_arn: RwLock<Option<String>>,
    /// The KMS client acting as the cluster's role; replaced when its session must be renewed.
    kms: RwLock<aws_sdk_kms::Client>,
    pub(crate) cache: Arc<DataKeyCache>,
    pub(crate) esdk: RwLock<Arc<Esdk<KmsKeyring>>>,
    pub(crate) documents: RwLock<Arc<EncryptedStore>>,
    pub(crate) backups: RwLock<Arc<EncryptedStore>>,
    pub(crate) disks: Mutex<Vec<Disk>>,
    pub(crate) nbd: StdMutex<Option<(u16, JoinHandle<()>)>>,
    pub(crate) gate: RwLock<Gate>,
    pub(crate) health: RwLock<KeyHealth>,
    /// Serializes health transitions (detach / re-attach) of this cluster.
    pub(crate) transition: Mutex<()>,
    /// Serializes on-demand checks (a data path's, the API's, the renewal after a denial), so
    /// a session renewal never races another check's probe.
    checking: Mutex<()>,
    /// Taken shared by document writes and exclusively by the re-wrap of one object, so a
    /// re-wrap never publishes an older version over a newer one.
    pub(crate) rewrap_lock: tokio::sync::RwLock<()>,
}

impl ClusterRuntime {
    pub(crate) fn gate(&self) -> Result<()> {
        match &*self.gate.read().unwrap() {
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

    pub(crate) fn kms(&self) -> aws_sdk_kms::Client {
        self.kms.read().unwrap().clone()
    }

    pub(crate) fn key_arn(&self) -> String {
        self.key_arn.read().unwrap().clone()
    }

    pub(crate) fn nbd_port(&self) -> Option<u16> {
        self.nbd.lock().unwrap().as_ref().map(|(port, _)| *port)
    }

    /// The ESDK client and the two stores for `key_arn` (and, during a key change, decryption
    /// under `old_key_arn` too).
    pub(crate) fn build_clients(
        kms: &aws_sdk_kms::Client,
        cache: &Arc<DataKeyCache>,
        objects_dir: &std::path::Path,
        cluster_id: &str,
        key_arn: &str,
        old_key_arn: Option<&str>,
    ) -> Result<Clients> {
        let mut keyring = KmsKeyring::new(kms.clone(), key_arn);
        if let Some(old) = old_key_arn {
            keyring = keyring.with_decrypt_key(old);
        }
        let esdk = Arc::new(
            Esdk::new(keyring, keyward_envelope::Config::default())
                .map_err(Error::internal)?
                .with_cache(cache.clone()),
        );
        let store = |class| {
            EncryptedStore::local(objects_dir, cluster_id, class, esdk.clone())
                .map(Arc::new)
                .map_err(Error::internal)
        };
        Ok((
            esdk.clone(),
            store(ObjectClass::Documents)?,
            store(ObjectClass::Backups)?,
        ))
    }

    /// New data keys from `write_key_arn`; objects under it (or `old_key_arn`) open.
    pub(crate) fn use_keys(
        &self,
        objects_dir: &std::path::Path,
        write_key_arn: &str,
        old_key_arn: Option<&str>,
    ) -> Result<()> {
        let (esdk, documents, backups) = ClusterRuntime::build_clients(
            &self.kms(),
            &self.cache,
            objects_dir,
            &self.id,
            write_key_arn,
            old_key_arn,
        )?;
        *self.esdk.write().unwrap() = esdk;
        *self.documents.write().unwrap() = documents;
        *self.backups.write().unwrap() = backups;
        *self.write_key_arn.write().unwrap() = write_key_arn.to_owned();
        *self.old_key_arn.write().unwrap() = old_key_arn.map(str::to_owned);
        Ok(())
    }

    pub(crate) fn esdk(&self) -> Arc<Esdk<KmsKeyring>> {
        self.esdk.read().unwrap().clone()
    }

    pub(crate) fn documents(&self) -> Arc<EncryptedStore> {
        self.documents.read().unwrap().clone()
    }

    pub(crate) fn backups(&self) -> Arc<EncryptedStore> {
        self.backups.read().unwrap().clone()
    }

    fn stop_nbd(&self) {
        if let Some((_, task)) = self.nbd.lock().unwrap().take() {
            task.abort();
        }
    }
}

pub(crate) fn objects_dir(plane: &ControlPlane) -> PathBuf {
    plane.inner.config.data_dir.join("objects")
}

pub(crate) fn volumes_dir(plane: &ControlPlane, cluster_id: &str) -> PathBuf {
    plane.inner.config.data_dir.join("volumes").join(cluster_id)
}

/// Starts the reconciliation worker and the health loop, and queues every cluster that has a key
/// (or was being deleted) so a restart resumes where the last run stopped.
pub(crate) async fn start(
    plane: &ControlPlane,
    mut changes: mpsc::UnboundedReceiver<HealthChange>,
) -> Result<()> {
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    *plane.inner.operator.kick.lock().unwrap() = Some(tx);
    let weak = Arc::downgrade(&plane.inner);
    let worker = tokio::spawn(async move {
        // Every reconciliation and retry timer lives in this set, so aborting the worker (at
        // shutdown) stops all of them: nothing keeps provisioning behind a stopped plane.
        let mut tasks = tokio::task::JoinSet::new();
        let permits = Arc::new(tokio::sync::Semaphore::new(RECONCILE_CONCURRENCY));
        let running: Arc<StdMutex<std::collections::HashSet<String>>> = Default::default();
        loop {
            let cluster_id = tokio::select! {
                next = rx.recv() => match next {
                    Some(id) => id,
                    None => break,
                },
                Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            };
            let Some(inner) = weak.upgrade() else { break };
            let plane = ControlPlane { inner };
            if !running.lock().unwrap().insert(cluster_id.clone()) {
                // Already being reconciled: a kick that arrives during a run is honoured after
                // it (the run may have read the state before the change that kicked).
                tasks.spawn(async move {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    plane.inner.operator.kick(&cluster_id);
                });
                continue;
            }
            let permits = permits.clone();
            let running = running.clone();
            tasks.spawn(async move {
                let outcome = {
                    let _permit = permits.acquire_owned().await;
                    reconcile(&plane, &cluster_id).await
                };
                running.lock().unwrap().remove(&cluster_id);
                if let Err(error) = outcome {
                    tracing::warn!(cluster = %cluster_id, %error, "reconciliation failed; retrying");
                    tokio::time::sleep(RETRY_AFTER).await;
                    plane.inner.operator.kick(&cluster_id);
                }
            });
        }
    });
    // The monitor's changes lock or unlock the cluster's data; its own task, so a slow detach
    // never delays the probes.
    let weak = Arc::downgrade(&plane.inner);
    let consumer = tokio::spawn(async move {
        while let Some(change) = changes.recv().await {
            let Some(inner) = weak.upgrade() else { break };
            let plane = ControlPlane { inner };
            if let Some(runtime) = plane.inner.operator.runtime(&change.cluster_id) {
                if change.current.reason == Some(InaccessibleReason::AccessDenied) {
                    // Renews the role's session and probes again before locking.
                    check_now(&plane, &runtime).await;
                } else {
                    apply_health(&plane, &runtime, change.current).await;
                }
            }
        }
    });
    plane
        .inner
        .operator
        .tasks
        .lock()
        .unwrap()
        .extend([worker, consumer]);
    let rows = plane
        .inner
        .db
        .query(
            "SELECT id FROM clusters WHERE key_arn IS NOT NULL OR state = $1 ORDER BY created_at_ms",
            &[ClusterState::Deleting.as_str().into()],
        )
        .await?;
    for row in rows {
        plane.inner.operator.kick(&row.text(0)?);
    }
    Ok(())
}

/// Stops every task and detaches every disk (key wiped, grant retired).
pub(crate) async fn stop(plane: &ControlPlane) {
    plane.inner.operator.kick.lock().unwrap().take();
    plane.inner.monitor.shutdown();
    for task in plane.inner.operator.tasks.lock().unwrap().drain(..) {
        task.abort();
    }
    let runtimes: Vec<Arc<ClusterRuntime>> = plane
        .inner
        .operator
        .runtimes
        .lock()
        .unwrap()
        .drain()
        .map(|(_, r)| r)
        .collect();
    for runtime in runtimes {
        release(plane, &runtime).await;
    }
}

/// Stops a runtime's export and detaches its disks, retiring their grants.
async fn release(plane: &ControlPlane, runtime: &ClusterRuntime) {
    runtime.stop_nbd();
    runtime.cache.clear();
    let node = AwsKms::new(runtime.kms());
    let mut disks = runtime.disks.lock().await;
    for disk in disks.iter_mut() {
        if let Some(attachment) = disk.attachment.take() {
            let retired =
                tokio::time::timeout(Duration::from_secs(5), attachment.detach(&node)).await;
            match retired {
                Ok(Ok(())) => {
                    let _ = plane
                        .inner
                        .db
                        .execute(
                            "UPDATE cluster_resources SET grant_id = NULL WHERE cluster_id = $1 AND disk_id = $2",
                            &[runtime.id.clone().into(), disk.id.clone().into()],
                        )
                        .await;
                }
                Ok(Err(error)) => {
                    tracing::debug!(disk = %disk.id, %error, "attach grant not retired")
                }
                Err(_) => tracing::debug!(disk = %disk.id, "attach grant retirement timed out"),
            }
        }
    }
}

/// Removes everything a cluster stored: its runtime (export stopped, disks detached), its volume
/// files and its objects.
pub(crate) async fn delete_cluster_storage(plane: &ControlPlane, cluster: &Cluster) -> Result<()> {
    let runtime = plane
        .inner
        .operator
        .runtimes
        .lock()
        .unwrap()
        .remove(&cluster.id);
    if let Some(runtime) = runtime {
        release(plane, &runtime).await;
    }
    for dir in [
        volumes_dir(plane, &cluster.id),
        objects_dir(plane).join(&cluster.id),
    ] {
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::Internal(format!(
                    "cannot delete {}: {e}",
                    dir.display()
                )))
            }
        }
    }
    Ok(())
}

/// Brings one cluster to its desired state. Idempotent.
async fn reconcile(plane: &ControlPlane, cluster_id: &str) -> Result<()> {
    let lock = plane.cluster_lock(cluster_id);
    let held = lock.lock().await;
    let Some((org, cluster)) = plane.cluster_by_id(cluster_id).await? else {
        return Ok(());
    };
    match cluster.state {
        ClusterState::AwaitingKey => Ok(()),
        ClusterState::Deleting => {
            // A deletion a crash interrupted: finish it.
            drop(held);
            match plane.delete_cluster(&org, cluster_id).await {
                Ok(()) | Err(Error::NotFound { .. }) => Ok(()),
                Err(error) => Err(error),
            }
        }
        ClusterState::Provisioning | ClusterState::Ready | ClusterState::Rewrapping => {
            let runtime = provision(plane, &cluster).await?;
            if cluster.state == ClusterState::Rewrapping {
                crate::rekey::run(plane, &cluster, &runtime).await?;
            }
            Ok(())
        }
    }
}

/// The runtime of a cluster, made if missing.
async fn runtime_for(plane: &ControlPlane, cluster: &Cluster) -> Result<Arc<ClusterRuntime>> {
    if let Some(runtime) = plane.inner.operator.runtime(&cluster.id) {
        return Ok(runtime);
    }
    let key_arn = cluster
        .key_arn
        .clone()
        .ok_or_else(|| Error::internal("provisioning a cluster without a key"))?;
    let kms = plane.cluster_kms(cluster).await;
    let cache = Arc::new(
        DataKeyCache::new(CacheLimits {
            max_age: CACHE_MAX_AGE,
            ..CacheLimits::default()
        })
        .map_err(Error::internal)?,
    );
    // During a key change new data keys come from the new key and objects under either key open.
    let (generate, old) = match &cluster.rewrap {
        Some(r) => (r.to_key_arn.as_str(), Some(key_arn.as_str())),
        None => (key_arn.as_str(), None),
    };
    let (esdk, documents, backups) = ClusterRuntime::build_clients(
        &kms,
        &cache,
        &objects_dir(plane),
        &cluster.id,
        generate,
        old,
    )?;
    let runtime = Arc::new(ClusterRuntime {
        id: cluster.id.clone(),
        role_arn: cluster.role_arn.clone(),
        write_key_arn: RwLock::new(generate.to_owned()),
        old_key_arn: RwLock::new(old.map(str::to_owned)),
        key_arn: RwLock::new(key_arn.clone()),
        kms: RwLock::new(kms),
        cache,
        esdk: RwLock::new(esdk),
        documents: RwLock::new(documents),
        backups: RwLock::new(backups),
        disks: Mutex::new(Vec::new()),
        nbd: StdMutex::new(None),
        gate: RwLock::new(gate_of(&cluster.health)),
        health: RwLock::new(cluster.health.clone()),
        transition: Mutex::new(()),
        checking: Mutex::new(()),
        rewrap_lock: tokio::sync::RwLock::new(()),
    });
    let runtime = plane
        .inner
        .operator
        .runtimes
        .lock()
        .unwrap()
        .entry(cluster.id.clone())
        .or_insert(runtime)
        .clone();
    plane.inner.monitor.watch(
        &cluster.id,
        &runtime.key_arn(),
        runtime.kms(),
        Some(cluster.health.clone()),
    );
    Ok(runtime)
}

/// The gate a stored health stands for (a restart keeps a locked cluster locked until a probe
/// says otherwise).
fn gate_of(health: &KeyHealth) -> Gate {
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

/// Probes the cluster's key now and applies the result.
///
/// An access denial may be the role's session rather than the key policy: credentials the SDK
/// still believes valid can be refused as expired (a clock that jumped, a session revoked when
/// the role was re-created). Before the data is locked for access denied, the role is assumed
/// afresh and the key probed once more.
pub(crate) async fn check_now(plane: &ControlPlane, runtime: &Arc<ClusterRuntime>) -> KeyHealth {
    let _one_at_a_time = runtime.checking.lock().await;
    let Some(mut health) = plane.inner.monitor.check_now(&runtime.id).await else {
        return runtime.health.read().unwrap().clone();
    };
    if health.reason == Some(InaccessibleReason::AccessDenied) {
        match renew_session(plane, runtime).await {
            Ok(()) => {
                if let Some(again) = plane.inner.monitor.check_now(&runtime.id).await {
                    health = again;
                }
            }
            Err(error) => tracing::warn!(cluster = %runtime.id, %error, "role session not renewed"),
        }
    }
    apply_health(plane, runtime, health.clone()).await;
    health
}

/// A new KMS client for the cluster's role (a fresh `AssumeRole`), used from now on by the
/// cluster's data paths, disks and probes.
async fn renew_session(plane: &ControlPlane, runtime: &Arc<ClusterRuntime>) -> Result<()> {
    let Some((_, cluster)) = plane.cluster_by_id(&runtime.id).await? else {
        return Ok(());
    };
    let client = plane.renew_cluster_kms(&cluster).await;
    *runtime.kms.write().unwrap() = client.clone();
    let write = runtime.write_key_arn.read().unwrap().clone();
    let old = runtime.old_key_arn.read().unwrap().clone();
    runtime.use_keys(&objects_dir(plane), &write, old.as_deref())?;
    let health = runtime.health.read().unwrap().clone();
    plane
        .inner
        .monitor
        .watch(&runtime.id, &runtime.key_arn(), client, Some(health));
    Ok(())
}

async fn provision(plane: &ControlPlane, cluster: &Cluster) -> Result<Arc<ClusterRuntime>> {
    let runtime = runtime_for(plane, cluster).await?;
    if let Gate::Deleted { .. } = &*runtime.gate.read().unwrap() {
        return Ok(runtime.clone());
    }
    let key_arn = runtime.key_arn();
    let db = &plane.inner.db;
    let config = &plane.inner.config;

    // 0. A restore into this new cluster, before anything else is made.
    let restore_from = db
        .query_opt(
            "SELECT restore_from FROM clusters WHERE id = $1",
            &[cluster.id.clone().into()],
        )
        .await?
        .map(|row| row.opt_text(0))
        .transpose()?
        .flatten();
    if let Some(restore_from) = restore_from {
        crate::data::run_restore(plane, cluster, &runtime, &restore_from).await?;
    }

    // 1. The object stores and their markers.
    for (class, store) in [
        ("documents", runtime.documents()),
        ("backups", runtime.backups()),
    ] {
        let state = resource_state(plane, &cluster.id, class, "store").await?;
        if state.as_deref() != Some("ready") {
            db.execute(
                "INSERT INTO cluster_resources (cluster_id, class, name, disk_id, state, key_arn, size_bytes, grant_id, created_at_ms) \
                 VALUES ($1, $2, 'store', NULL, 'creating', $3, 0, NULL, $4) ON CONFLICT (cluster_id, class, name) DO NOTHING",
                &[cluster.id.clone().into(), class.into(), key_arn.clone().into(), now_ms().into()],
            )
            .await?;
            let marker = format!("keyward {class} store of cluster {}\n", cluster.id);
            store
                .put_bytes(STORE_MARKER, marker.as_bytes())
                .await
                .map_err(|e| Error::Internal(format!("provisioning the {class} store: {e}")))?;
            set_resource_ready(plane, &cluster.id, class, "store", &key_arn).await?;
        }
    }

    // 2. The disks.
    let volumes = volumes_dir(plane, &cluster.id);
    tokio::fs::create_dir_all(&volumes)
        .await
        .map_err(|e| Error::Internal(format!("cannot create {}: {e}", volumes.display())))?;
    let kms = AwsKms::new(runtime.kms());
    let wanted: Vec<(&'static str, String)> = (0..config.engine_disks)
        .map(|i| ("engine-disk", format!("engine-{i}")))
        .chain((0..config.search_disks).map(|i| ("search-disk", format!("search-{i}"))))
        .collect();
    let mut disks = runtime.disks.lock().await;
    for (class, name) in &wanted {
        if disks.iter().any(|d| d.name == *name) {
            continue;
        }
        let row = db
            .query_opt(
                "SELECT disk_id, state, size_bytes, grant_id FROM cluster_resources \
                 WHERE cluster_id = $1 AND class = $2 AND name = $3",
                &[
                    cluster.id.clone().into(),
                    (*class).into(),
                    name.clone().into(),
                ],
            )
            .await?;
        let (disk_id, state, size, old_grant) = match row {
            Some(row) => (
                row.text(0)?,
                row.text(1)?,
                row.int(2)? as u64,
                row.opt_text(3)?,
            ),
            None => {
                let disk_id = new_volume_id().map_err(Error::internal)?;
                db.execute(
                    "INSERT INTO cluster_resources (cluster_id, class, name, disk_id, state, key_arn, size_bytes, grant_id, created_at_ms) \
                     VALUES ($1, $2, $3, $4, 'creating', $5, $6, NULL, $7)",
                    &[
                        cluster.id.clone().into(),
                        (*class).into(),
                        name.clone().into(),
                        disk_id.clone().into(),
                        key_arn.clone().into(),
                        (config.disk_size_bytes as i64).into(),
                        now_ms().into(),
                    ],
                )
                .await?;
                (disk_id, "creating".to_owned(), config.disk_size_bytes, None)
            }
        };
        let path = volumes.join(format!("{disk_id}.vol"));
        if state != "ready" {
            // Whatever a crash left of this disk goes; it is made again from the start.
            match tokio::fs::remove_file(&path).await {
                Ok(()) => tracing::info!(disk = %disk_id, "removed a half-made disk"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(Error::Internal(format!(
                        "cannot remove {}: {e}",
                        path.display()
                    )))
                }
            }
            let context: BTreeMap<String, String> = [
                ("keyward:cluster".to_owned(), cluster.id.clone()),
                ("keyward:class".to_owned(), (*class).to_owned()),
            ]
            .into();
            create_volume(
                &kms,
                &path,
                NewVolume {
                    volume_id: Some(disk_id.clone()),
                    size,
                    key_id: key_arn.clone(),
                    encryption_context: context,
                },
            )
            .await
            .map_err(|e| storage_error(&runtime, e))?;
            set_resource_ready(plane, &cluster.id, class, name, &key_arn).await?;
        }
        // A header replacement a crash interrupted (key change) is finished or discarded first.
        let journal = path.clone();
        tokio::task::spawn_blocking(move || {
            keyward_storage::rewrap::recover_volume_rewrap(&journal)
        })
        .await
        .map_err(Error::internal)?
        .map_err(Error::internal)?;
        // A grant of a previous run (the process stopped without detaching) is retired first.
        if let Some(grant_id) = old_grant {
            if let Err(error) = runtime
                .kms()
                .retire_grant()
                .key_id(&key_arn)
                .grant_id(&grant_id)
                .send()
                .await
            {
                tracing::debug!(disk = %disk_id, error = %aws_sdk_kms::error::DisplayErrorContext(&error), "stale attach grant not retired");
            }
        }
        let attachment = attach_volume(&kms, &kms, &path, &runtime.role_arn)
            .await
            .map_err(|e| storage_error(&runtime, e))?;
        db.execute(
            "UPDATE cluster_resources SET grant_id = $1 WHERE cluster_id = $2 AND class = $3 AND name = $4",
            &[
                attachment.grant_id().into(),
                cluster.id.clone().into(),
                (*class).into(),
                name.clone().into(),
            ],
        )
        .await?;
        // The gate may have closed while attaching: keep the key out of memory then.
        if !matches!(&*runtime.gate.read().unwrap(), Gate::Open) {
            attachment.volume().detach();
        }
        disks.push(Disk {
            id: disk_id,
            name: name.clone(),
            class,
            path,
            size,
            attachment: Some(attachment),
        });
    }

    // 3. The NBD export.
    if runtime.nbd_port().is_none() {
        serve_nbd(plane, &runtime, &disks, 0).await?;
    }
    drop(disks);

    // 4. Ready, with the key's health known.
    if cluster.state == ClusterState::Provisioning {
        check_now(plane, &runtime).await;
        db.execute(
            "UPDATE clusters SET state = $1 WHERE id = $2 AND state = $3",
            &[
                ClusterState::Ready.as_str().into(),
                cluster.id.clone().into(),
                ClusterState::Provisioning.as_str().into(),
            ],
        )
        .await?;
        tracing::info!(cluster = %cluster.id, "provisioned");
    }
    Ok(runtime)
}

async fn resource_state(
    plane: &ControlPlane,
    cluster_id: &str,
    class: &str,
    name: &str,
) -> Result<Option<String>> {
    let row = plane
        .inner
        .db
        .query_opt(
            "SELECT state FROM cluster_resources WHERE cluster_id = $1 AND class = $2 AND name = $3",
            &[cluster_id.into(), class.into(), name.into()],
        )
        .await?;
    row.map(|r| r.text(0)).transpose().map_err(Into::into)
}

async fn set_resource_ready(
    plane: &ControlPlane,
    cluster_id: &str,
    class: &str,
    name: &str,
    key_arn: &str,
) -> Result<()> {
    plane
        .inner
        .db
        .execute(
            "UPDATE cluster_resources SET state = 'ready', key_arn = $1 WHERE cluster_id = $2 AND class = $3 AND name = $4",
            &[key_arn.into(), cluster_id.into(), class.into(), name.into()],
        )
        .await?;
    Ok(())
}

fn storage_error(runtime: &ClusterRuntime, error: keyward_storage::Error) -> Error {
    match error {
        keyward_storage::Error::Kms {
            operation,
            code,
            message,
        } => Error::Internal(format!(
            "KMS {operation} as {} failed: {code}: {message}",
            runtime.role_arn
        )),
        other => Error::internal(other),
    }
}

/// Starts the cluster's NBD server over its attached disks on `port` (0: any free port).
async fn serve_nbd(
    plane: &ControlPlane,
    runtime: &ClusterRuntime,
    disks: &[Disk],
    port: u16,
) -> Result<()> {
    let host = plane.inner.config.nbd_host;
    let exports: Vec<(String, Arc<keyward_storage::Volume>)> = disks
        .iter()
        .filter_map(|d| {
            d.attachment
                .as_ref()
                .map(|a| (d.id.clone(), a.volume().clone()))
        })
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
    // Plain TCP as before, until the control plane issues each cluster's CA and
    // serves with `NbdConfig::tls` (issue 11).
    let server = NbdServer::new(exports, keyward_storage::NbdConfig::plain_for_tests());
    let id = runtime.id.clone();
    let task = tokio::spawn(async move {
        server.serve_tcp(listener).await;
        tracing::warn!(cluster = %id, "NBD server stopped");
    });
    if let Some((_, old)) = runtime.nbd.lock().unwrap().replace((port, task)) {
        old.abort();
    }
    Ok(())
}

/// Attaches every disk again (after its header was re-wrapped under a new key): the old
/// attachments are detached and their grants retired, new ones made through grants on the key
/// the headers now name, and the export restarted on the same port.
pub(crate) async fn reattach_disks(
    plane: &ControlPlane,
    cluster: &Cluster,
    runtime: &Arc<ClusterRuntime>,
) -> Result<()> {
    let port = runtime.nbd_port().unwrap_or(0);
    runtime.stop_nbd();
    let kms = AwsKms::new(runtime.kms());
    let mut disks = runtime.disks.lock().await;
    for disk in disks.iter_mut() {
        if let Some(old) = disk.attachment.take() {
            if let Err(error) = old.detach(&kms).await {
                tracing::debug!(disk = %disk.id, %error, "old attach grant not retired");
            }
        }
        let attachment = attach_volume(&kms, &kms, &disk.path, &runtime.role_arn)
            .await
            .map_err(|e| storage_error(runtime, e))?;
        plane
            .inner
            .db
            .execute(
                "UPDATE cluster_resources SET grant_id = $1 WHERE cluster_id = $2 AND disk_id = $3",
                &[
                    attachment.grant_id().into(),
                    cluster.id.clone().into(),
                    disk.id.clone().into(),
                ],
            )
            .await?;
        if !matches!(&*runtime.gate.read().unwrap(), Gate::Open) {
            attachment.volume().detach();
        }
        disk.attachment = Some(attachment);
    }
    serve_nbd(plane, runtime, &disks, port).await
}

/// Applies a probe's result to a cluster: locks or unlocks its data, and records a change.
pub(crate) async fn apply_health(
    plane: &ControlPlane,
    runtime: &Arc<ClusterRuntime>,
    health: KeyHealth,
) {
    let _held = runtime.transition.lock().await;
    let previous = runtime.health.read().unwrap().clone();
    if matches!(&*runtime.gate.read().unwrap(), Gate::Deleted { .. }) {
        return;
    }
    match health.status {
        HealthStatus::Healthy => {
            let locked = !matches!(&*runtime.gate.read().unwrap(), Gate::Open);
            if locked {
                // Re-attach every disk before the gate opens again.
                let kms = AwsKms::new(runtime.kms());
                let mut disks = runtime.disks.lock().await;
                for disk in disks.iter_mut() {
                    if let Some(attachment) = disk.attachment.as_mut() {
                        if let Err(error) = attachment.reopen(&kms, &kms).await {
                            tracing::warn!(cluster = %runtime.id, disk = %disk.id, %error, "disk not re-attached yet");
                            return;
                        }
                        let _ = plane
                            .inner
                            .db
                            .execute(
                                "UPDATE cluster_resources SET grant_id = $1 WHERE cluster_id = $2 AND disk_id = $3",
                                &[attachment.grant_id().into(), runtime.id.clone().into(), disk.id.clone().into()],
                            )
                            .await;
                    }
                }
                drop(disks);
                *runtime.gate.write().unwrap() = Gate::Open;
                tracing::info!(cluster = %runtime.id, "key accessible again; data unlocked");
            }
        }
        HealthStatus::KeyInaccessible | HealthStatus::KeyDeleted => {
            let gate = if health.status == HealthStatus::KeyDeleted {
                Gate::Deleted {
                    message: health.message.clone(),
                }
            } else {
                Gate::Locked {
                    reason: health.reason.unwrap_or(InaccessibleReason::KmsUnreachable),
                    message: health.message.clone(),
                }
            };
            // Gate first, so no new request starts; then the keys go.
            *runtime.gate.write().unwrap() = gate;
            runtime.cache.clear();
            let disks = runtime.disks.lock().await;
            for disk in disks.iter() {
                if let Some(attachment) = &disk.attachment {
                    attachment.volume().detach();
                }
            }
            drop(disks);
            if previous.status != health.status || previous.reason != health.reason {
                tracing::warn!(cluster = %runtime.id, message = %health.message, "key inaccessible; data locked");
            }
        }
        HealthStatus::Unknown => {}
    }
    let changed = previous.status != health.status || previous.reason != health.reason;
    *runtime.health.write().unwrap() = health.clone();
    if changed {
        let _ = plane
            .inner
            .db
            .execute(
                "UPDATE clusters SET health_status = $1, health_reason = $2, health_message = $3, health_checked_at_ms = $4 WHERE id = $5",
                &[
                    status_str(&health.status).into(),
                    Value::from(health.reason.map(reason_str)),
                    health.message.clone().into(),
                    health.checked_at_ms.into(),
                    runtime.id.clone().into(),
                ],
            )
            .await;
    }
}
