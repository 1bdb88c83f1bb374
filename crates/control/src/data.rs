//! The data paths of a cluster: documents, disks, verification and backups, all behind the
//! cluster's gate (a locked key answers `key_inaccessible`, a deleted one `key_deleted`).
//!
//! A KMS error seen on a data path re-checks the key at once, so the caller learns the cause
//! (and every other data path of the cluster locks) without waiting for the next probe.

use std::sync::Arc;

use keyward_storage::backup::{self, BackupError};
use keyward_storage::{AwsKms, ObjectError, ScanRequest, StorageClass};

use crate::cluster::{
    BackupInfo, ClassVerification, Cluster, ClusterState, DiskInfo, DocumentInfo, Verification,
};
use crate::error::{Error, Result};
use crate::operator::{objects_dir, ClusterRuntime, RESERVED_PREFIX, STORE_MARKER};
use crate::org::OrgId;
use crate::plane::{now_ms, ControlPlane};

/// Sectors read from each disk by verification.
const VERIFY_SECTORS: usize = 4;
/// Objects decrypted in full per object class by verification.
const VERIFY_OBJECTS: usize = 2;

impl ControlPlane {
    /// The cluster, if its data may be served now.
    pub(crate) async fn serving(
        &self,
        org: &OrgId,
        cluster_id: &str,
    ) -> Result<(Cluster, Arc<ClusterRuntime>)> {
        let cluster = self.cluster(org, cluster_id).await?;
        match cluster.state {
            ClusterState::AwaitingKey => {
                return Err(Error::KeyNotAssociated {
                    cluster_id: cluster.id,
                })
            }
            ClusterState::Deleting => {
                return Err(Error::Conflict(format!(
                    "cluster {} is being deleted",
                    cluster.id
                )))
            }
            ClusterState::Provisioning | ClusterState::Ready | ClusterState::Rewrapping => {}
        }
        let runtime = self.inner.operator.runtime(&cluster.id);
        let ready = cluster.state != ClusterState::Provisioning;
        match runtime {
            Some(runtime) if ready => {
                runtime.gate()?;
                Ok((cluster, runtime))
            }
            Some(runtime) => {
                runtime.gate()?;
                Err(Error::NotReady {
                    cluster_id: cluster.id,
                    state: cluster.state.as_str().into(),
                })
            }
            None => Err(Error::NotReady {
                cluster_id: cluster.id,
                state: cluster.state.as_str().into(),
            }),
        }
    }

    /// Maps an object-store error; a KMS error re-checks the key first.
    async fn object_error(&self, runtime: &Arc<ClusterRuntime>, error: ObjectError) -> Error {
        match error {
            ObjectError::InvalidKey { key, reason } => {
                Error::InvalidRequest(format!("invalid document name {key:?}: {reason}"))
            }
            ObjectError::NotFound { key } => Error::not_found(format!("document {key}")),
            ObjectError::Envelope {
                source: keyward_envelope::Error::Kms { .. },
                ..
            } => {
                let seen = error.to_string();
                self.recheck(runtime).await;
                match runtime.gate() {
                    Err(locked) => locked,
                    Ok(()) => Error::Internal(seen),
                }
            }
            other => Error::internal(other),
        }
    }

    /// Re-checks a cluster's key now (a data path saw a KMS error).
    pub(crate) async fn recheck(&self, runtime: &Arc<ClusterRuntime>) {
        crate::operator::check_now(self, runtime).await;
    }

    pub async fn put_document(
        &self,
        org: &OrgId,
        cluster_id: &str,
        name: &str,
        body: bytes::Bytes,
    ) -> Result<DocumentInfo> {
        check_document_name(name)?;
        let (_, runtime) = self.serving(org, cluster_id).await?;
        let _writing = runtime.rewrap_lock.read().await;
        let store = runtime.documents();
        match store.put_bytes(name, &body).await {
            Ok(size) => Ok(DocumentInfo {
                name: name.to_owned(),
                size,
                key_arn: generating_key(&runtime),
            }),
            Err(error) => Err(self.object_error(&runtime, error).await),
        }
    }

    pub async fn get_document(&self, org: &OrgId, cluster_id: &str, name: &str) -> Result<Vec<u8>> {
        check_document_name(name)?;
        let (_, runtime) = self.serving(org, cluster_id).await?;
        let store = runtime.documents();
        match store.get_bytes(name).await {
            Ok(body) => {
                // The gate may have closed while this ran: no plaintext leaves after it did.
                runtime.gate()?;
                Ok(body)
            }
            Err(error) => Err(self.object_error(&runtime, error).await),
        }
    }

    pub async fn list_documents(
        &self,
        org: &OrgId,
        cluster_id: &str,
        prefix: &str,
    ) -> Result<Vec<DocumentInfo>> {
        let (_, runtime) = self.serving(org, cluster_id).await?;
        let store = runtime.documents();
        let entries = match store.list(prefix).await {
            Ok(entries) => entries,
            Err(error) => return Err(self.object_error(&runtime, error).await),
        };
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            if entry.key.starts_with(RESERVED_PREFIX) {
                continue;
            }
            // The key ARN comes from the object's own header: no KMS call.
            let key_arn = match store.head(&entry.key).await {
                Ok(info) => info.kms_key_arns.join(","),
                Err(ObjectError::NotFound { .. }) => continue,
                Err(error) => return Err(self.object_error(&runtime, error).await),
            };
            out.push(DocumentInfo {
                name: entry.key,
                size: entry.size,
                key_arn,
            });
        }
        Ok(out)
    }

    pub async fn delete_document(&self, org: &OrgId, cluster_id: &str, name: &str) -> Result<()> {
        check_document_name(name)?;
        let (_, runtime) = self.serving(org, cluster_id).await?;
        let _writing = runtime.rewrap_lock.read().await;
        let store = runtime.documents();
        // Deleting a missing document is not an error, as on S3.
        match store.delete(name).await {
            Ok(()) => Ok(()),
            Err(error) => Err(self.object_error(&runtime, error).await),
        }
    }

    /// The cluster's disks with their NBD addresses (while attached).
    pub async fn list_disks(&self, org: &OrgId, cluster_id: &str) -> Result<Vec<DiskInfo>> {
        let (_, runtime) = self.serving(org, cluster_id).await?;
        let port = runtime.nbd_port();
        let host = match self.inner.config.nbd_host {
            std::net::IpAddr::V4(v4) => v4.to_string(),
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        };
        let disks = runtime.disks.lock().await;
        Ok(disks
            .iter()
            .map(|d| {
                let attached = d
                    .attachment
                    .as_ref()
                    .is_some_and(|a| a.volume().is_attached());
                DiskInfo {
                    id: d.id.clone(),
                    class: d.class.to_owned(),
                    size_bytes: d.size,
                    attached,
                    nbd_uri: match (attached, port) {
                        (true, Some(port)) => Some(format!("nbd://{host}:{port}/{}", d.id)),
                        _ => None,
                    },
                }
            })
            .collect())
    }

    /// Scans every storage class of the cluster (built on `keyward_storage::scan`): disks by
    /// their headers, a MAC check under the unwrapped key and sampled sectors; objects by their
    /// ESDK headers, with a few decrypted in full.
    pub async fn verify(&self, org: &OrgId, cluster_id: &str) -> Result<Verification> {
        let (cluster, runtime) = self.serving(org, cluster_id).await?;
        let key_arn = runtime.key_arn();
        let volumes = {
            let disks = runtime.disks.lock().await;
            disks
                .iter()
                .map(|d| {
                    let class = StorageClass::parse(d.class).unwrap_or(StorageClass::EngineDisk);
                    (class, d.path.clone())
                })
                .collect()
        };
        let objects = objects_dir(self).join(&cluster.id);
        let request = ScanRequest {
            key_arn: key_arn.clone(),
            cluster_id: cluster.id.clone(),
            volumes,
            object_dirs: vec![
                (StorageClass::Documents, objects.join("documents")),
                (StorageClass::Backups, objects.join("backups")),
            ],
            sampled_sectors: VERIFY_SECTORS,
            sampled_objects: VERIFY_OBJECTS,
        };
        let kms = AwsKms::new(runtime.kms());
        let esdk = runtime.esdk();
        let report = keyward_storage::verify::scan_with_object_decrypts(&kms, &esdk, &request)
            .await
            .map_err(Error::internal)?;
        let verified_at_ms = now_ms();
        let mut classes: Vec<ClassVerification> = report
            .classes
            .iter()
            .map(|c| {
                let key_arns: Vec<String> = c.key_arns.iter().cloned().collect();
                ClassVerification {
                    class: c.class.as_str().to_owned(),
                    encrypted: c.encrypted,
                    key_arn: match key_arns.as_slice() {
                        [one] => Some(one.clone()),
                        _ => None,
                    },
                    key_arns,
                    count: if c.class.is_volume_class() {
                        c.volumes
                    } else {
                        c.objects
                    },
                    verified_at_ms,
                    offenders: c
                        .offenders
                        .iter()
                        .map(|o| format!("{}: {}", o.name, o.reason))
                        .collect(),
                }
            })
            .collect();
        classes.sort_by_key(|c| StorageClass::parse(&c.class));
        // A KMS refusal seen by the scan is a reason to look at the key now.
        if report
            .offenders()
            .any(|o| matches!(o.reason, keyward_storage::Reason::KmsRefused { .. }))
        {
            self.recheck(&runtime).await;
            runtime.gate()?;
        }
        Ok(Verification {
            cluster_id: cluster.id,
            key_arn,
            all_encrypted: report.all_encrypted(),
            verified_at_ms,
            classes,
        })
    }

    /// Takes a backup of the cluster's disks (each frozen for writes while it is copied) and
    /// documents into its backups store: complete when this returns, invisible if it fails.
    pub async fn create_backup(&self, org: &OrgId, cluster_id: &str) -> Result<BackupInfo> {
        let (_, runtime) = self.serving(org, cluster_id).await?;
        let volumes = {
            let disks = runtime.disks.lock().await;
            disks
                .iter()
                .filter_map(|d| {
                    d.attachment.as_ref().map(|a| backup::BackupVolume {
                        name: d.name.clone(),
                        class: d.class.to_owned(),
                        volume: a.volume().clone(),
                    })
                })
                .collect()
        };
        let documents = runtime.documents();
        let request = backup::BackupRequest {
            volumes,
            documents: Some(&documents),
            exclude_documents: vec![RESERVED_PREFIX.to_owned()],
            part_size: backup::DEFAULT_PART_SIZE,
        };
        let backups = runtime.backups();
        match backup::create_backup(&backups, request, &|_| {}).await {
            Ok(manifest) => {
                runtime.gate()?;
                Ok(BackupInfo {
                    id: manifest.backup_id,
                    complete: true,
                    created_at_ms: manifest.created_at_ms as i64,
                    bytes: manifest.total_bytes,
                })
            }
            Err(error) => Err(self.backup_error(&runtime, error).await),
        }
    }

    /// The cluster's backups, complete ones first then unfinished ones, each oldest first. No
    /// KMS call: only the store's listing.
    pub async fn list_backups(&self, org: &OrgId, cluster_id: &str) -> Result<Vec<BackupInfo>> {
        let (_, runtime) = self.serving(org, cluster_id).await?;
        let backups = runtime.backups();
        let complete = match backup::list_backups(&backups).await {
            Ok(list) => list,
            Err(error) => return Err(self.backup_error(&runtime, error).await),
        };
        let incomplete = match backup::list_incomplete(&backups).await {
            Ok(list) => list,
            Err(error) => return Err(self.backup_error(&runtime, error).await),
        };
        Ok(complete
            .into_iter()
            .map(|b| BackupInfo {
                id: b.backup_id,
                complete: true,
                created_at_ms: b.created_at_ms as i64,
                bytes: b.stored_bytes,
            })
            .chain(incomplete.into_iter().map(|id| BackupInfo {
                created_at_ms: backup::manifest::created_at_ms(&id) as i64,
                id,
                complete: false,
                bytes: 0,
            }))
            .collect())
    }

    /// Restores a backup into a new cluster of the same organization, under the same key.
    ///
    /// The new cluster has its own role, which the key's policy must name before the key can be
    /// used for it:
    /// - `internal` encryption: the platform adds the new role's statements to its key's
    ///   policy and applies the key at once;
    /// - `external`: the new cluster waits for its key like any new cluster (its key-policy
    ///   statements name the new role); once the customer has added them and associated the
    ///   key, the operator restores the backup's disks and documents before anything else.
    ///
    /// The source cluster must stay accessible until the restore is done: its role reads the
    /// backup.
    pub async fn restore_backup(
        &self,
        org: &OrgId,
        cluster_id: &str,
        backup_id: &str,
    ) -> Result<Cluster> {
        let (source, runtime) = self.serving(org, cluster_id).await?;
        if !backup::valid_backup_id(backup_id) {
            return Err(Error::not_found(format!("backup {backup_id}")));
        }
        if let Err(error) = backup::read_manifest(&runtime.backups(), backup_id).await {
            return Err(self.backup_error(&runtime, error).await);
        }
        let mut name = format!("{}-{backup_id}", source.name);
        name.truncate(64);
        let name = name.trim_end().to_owned();
        let restore_from = format!("{}/{backup_id}", source.id);
        self.create_cluster_restoring(org, &source, &name, &restore_from)
            .await
    }

    async fn backup_error(&self, runtime: &Arc<ClusterRuntime>, error: BackupError) -> Error {
        match error {
            BackupError::NotFound { backup_id } => Error::not_found(format!("backup {backup_id}")),
            BackupError::InvalidRequest(what) => Error::InvalidRequest(what),
            BackupError::Conflict(what) => Error::Conflict(what),
            BackupError::Incomplete { backup_id } => Error::Conflict(format!(
                "backup {backup_id} did not finish and cannot be restored"
            )),
            BackupError::Object(object) => self.object_error(runtime, object).await,
            other => {
                if crate::health::classify_kms_error(&other).is_some() {
                    let seen = other.to_string();
                    self.recheck(runtime).await;
                    match runtime.gate() {
                        Err(locked) => locked,
                        Ok(()) => Error::Internal(seen),
                    }
                } else {
                    Error::internal(other)
                }
            }
        }
    }
}

/// Restores the backup named by `restore_from` (`<source cluster>/<backup id>`) into the new
/// cluster of `runtime`: its disks become the cluster's disks (rows `ready`, so provisioning
/// attaches them instead of making fresh ones) and its documents the cluster's documents. Runs
/// once: `restore_from` is cleared in the same transaction that records the disks. A crash
/// before that leaves only files of this new cluster, which are removed before trying again.
pub(crate) async fn run_restore(
    plane: &ControlPlane,
    cluster: &Cluster,
    runtime: &Arc<ClusterRuntime>,
    restore_from: &str,
) -> Result<()> {
    let (source_id, backup_id) = restore_from
        .split_once('/')
        .ok_or_else(|| Error::internal(format!("bad restore source {restore_from:?}")))?;
    let Some(source) = plane.inner.operator.runtime(source_id) else {
        return Err(Error::NotReady {
            cluster_id: source_id.to_owned(),
            state: "not serving (the restore reads its backup)".into(),
        });
    };
    source.gate()?;
    let volumes_dir = crate::operator::volumes_dir(plane, &cluster.id);
    let documents_dir = objects_dir(plane).join(&cluster.id).join("documents");
    for dir in [&volumes_dir, &documents_dir] {
        match tokio::fs::remove_dir_all(dir).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::Internal(format!(
                    "cannot clear {}: {e}",
                    dir.display()
                )))
            }
        }
    }
    let documents = runtime.documents();
    let kms = AwsKms::new(runtime.kms());
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
    let now = now_ms();
    let mut statements: Vec<(String, Vec<crate::db::Value>)> = restored
        .volumes
        .iter()
        .map(|v| {
            (
                "INSERT INTO cluster_resources (cluster_id, class, name, disk_id, state, key_arn, size_bytes, grant_id, created_at_ms) \
                 VALUES ($1, $2, $3, $4, 'ready', $5, $6, NULL, $7) \
                 ON CONFLICT (cluster_id, class, name) DO UPDATE SET disk_id = $4, state = 'ready', key_arn = $5, size_bytes = $6"
                    .to_owned(),
                vec![
                    cluster.id.clone().into(),
                    v.class.clone().into(),
                    v.name.clone().into(),
                    v.volume_id.clone().into(),
                    v.key_arn.clone().into(),
                    (v.size as i64).into(),
                    now.into(),
                ],
            )
        })
        .collect();
    statements.push((
        "UPDATE clusters SET restore_from = NULL WHERE id = $1".to_owned(),
        vec![cluster.id.clone().into()],
    ));
    plane.inner.db.transaction(statements).await?;
    tracing::info!(cluster = %cluster.id, from = %restore_from, volumes = restored.volumes.len(), documents = restored.documents.len(), "backup restored");
    Ok(())
}

/// The key new objects are written under (the new key during a key change).
fn generating_key(runtime: &ClusterRuntime) -> String {
    runtime.write_key_arn.read().unwrap().clone()
}

/// Document names are object keys; the `.keyward/` prefix is the platform's.
fn check_document_name(name: &str) -> Result<()> {
    if name.starts_with(RESERVED_PREFIX) || name == STORE_MARKER {
        return Err(Error::InvalidRequest(format!(
            "document names starting with {RESERVED_PREFIX:?} are reserved"
        )));
    }
    if name.is_empty() {
        return Err(Error::InvalidRequest("the document name is empty".into()));
    }
    Ok(())
}
