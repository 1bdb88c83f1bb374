//! The data paths of a cluster: documents, disks, verification and backups, all behind the
//! cluster's gate (a locked key answers `key_inaccessible`, a deleted one `key_deleted`).
//!
//! A KMS error seen on a data path re-checks the key at once, so the caller learns the cause
//! (and every other data path of the cluster locks) without waiting for the next probe.

use std::sync::Arc;

use keyward_storage::backup::{self, BackupError};
use keyward_storage::vocab::{now_ms, ObjectClass, StorageClass};
use keyward_storage::{AwsKms, ObjectError, ScanRequest};

use crate::cluster::{
    BackupInfo, ClassVerification, Cluster, ClusterState, DiskInfo, DocumentInfo, RetainedBackup,
    Verification,
};
use crate::error::{Error, Result};
use crate::operator::{RESERVED_PREFIX, STORE_MARKER};
use crate::org::OrgId;
use crate::plane::ControlPlane;
use crate::repo::RetainedCluster;
use crate::runtime::ClusterRuntime;

pub use crate::document_stream::DocumentStream;
use crate::document_stream::DOWNLOAD_PIPE_BYTES;

/// Sectors read from each disk by verification.
const VERIFY_SECTORS: usize = 4;
/// Objects decrypted in full per object class by verification.
const VERIFY_OBJECTS: usize = 2;

/// One object class kept in a bucket, verified as the file walk verifies a local one: every
/// object's ESDK header (its KMS key ARNs, its context naming this cluster, class and key), and
/// [`VERIFY_OBJECTS`] of them, spread over the listing, decrypted in full (plaintext discarded).
async fn verify_bucket_class(
    store: &keyward_storage::EncryptedStore,
    key_arn: &str,
    verified_at_ms: i64,
) -> Result<ClassVerification> {
    let listed = store
        .list("")
        .await
        .map_err(|e| Error::Internal(format!("listing {}: {e}", store.class().as_str())))?;
    let mut seen = std::collections::BTreeSet::new();
    let mut offenders = Vec::new();
    let mut passed = Vec::new();
    for entry in &listed {
        match store.head(&entry.key).await {
            Ok(info) => {
                seen.extend(info.kms_key_arns.iter().cloned());
                if info.kms_key_arns.iter().any(|arn| arn != key_arn)
                    || info.kms_key_arns.is_empty()
                {
                    offenders.push(format!(
                        "{}: encrypted under a foreign key: {}",
                        entry.key,
                        info.kms_key_arns.join(", ")
                    ));
                } else if !info.context_matches {
                    offenders.push(format!(
                        "{}: foreign encryption context: {:?}",
                        entry.key, info.context
                    ));
                } else {
                    passed.push(&entry.key);
                }
            }
            Err(e) => offenders.push(format!("{}: not encrypted: {e}", entry.key)),
        }
    }
    let step = passed.len().div_ceil(VERIFY_OBJECTS).max(1);
    for key in passed.iter().step_by(step) {
        if let Err(e) = store.get_to(key, &mut tokio::io::sink()).await {
            offenders.push(format!("{key}: sampled decrypt failed: {e}"));
        }
    }
    let key_arns: Vec<String> = seen.into_iter().collect();
    Ok(ClassVerification {
        class: store.class().as_str().to_owned(),
        encrypted: offenders.is_empty(),
        key_arn: match key_arns.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        },
        key_arns,
        count: listed.len() as u64,
        verified_at_ms,
        offenders,
    })
}

impl ControlPlane {
    /// Refuses what needs the cluster's disk files on a replica whose node does not hold them
    /// (409, naming the replica that does).
    fn disks_here(&self, cluster: &Cluster) -> Result<()> {
        match &cluster.disk_node {
            Some(node) if node != self.replica_id() => Err(Error::Conflict(format!(
                "the disks of cluster {} are on the node of replica {node}: ask that replica \
                 (GET /v1/replicas says where it serves)",
                cluster.id
            ))),
            _ => Ok(()),
        }
    }

    /// Whether another live replica holds the cluster's lease (this one then only follows it).
    async fn held_elsewhere(&self, cluster_id: &str) -> Result<bool> {
        let leases = &self.shared().leases;
        Ok(leases
            .holder_of(cluster_id)
            .await?
            .is_some_and(|holder| holder != leases.replica_id()))
    }

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
            ClusterState::Failed => return Err(crate::plane::failed(&cluster)),
            ClusterState::Provisioning | ClusterState::Ready | ClusterState::Rewrapping => {}
        }
        let ready = cluster.state != ClusterState::Provisioning;
        match self.runtime(&cluster.id) {
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
            // Held by another replica: served from here too (documents and backups live in the
            // shared object store), under the health its holder records.
            None if ready && self.held_elsewhere(&cluster.id).await? => {
                let runtime = self.runtimes().follower(self.shared(), &cluster).await?;
                runtime.gate()?;
                Ok((cluster, runtime))
            }
            // Not yet made by this replica's operator (it is starting, or taking the lease).
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
            ObjectError::InvalidPrefix { prefix, reason } => {
                Error::InvalidRequest(format!("invalid document prefix {prefix:?}: {reason}"))
            }
            conflict @ ObjectError::Conflict { .. } => Error::Conflict(conflict.to_string()),
            ObjectError::Envelope {
                source:
                    keyward_envelope::Error::Kms {
                        operation, failure, ..
                    },
                ..
            } => self.kms_error(runtime, operation, failure).await,
            other => Error::internal(other),
        }
    }

    /// A KMS failure on a data path: the key is re-checked at once, so the caller learns the
    /// cause (and every other data path of the cluster locks) without waiting for the next
    /// probe. The failure itself when the key is still usable.
    async fn kms_error(
        &self,
        runtime: &Arc<ClusterRuntime>,
        operation: &'static str,
        failure: keyward_envelope::KmsFailure,
    ) -> Error {
        self.recheck(runtime).await;
        match runtime.gate() {
            Err(locked) => locked,
            Ok(()) => Error::Kms {
                operation,
                role_arn: runtime.role_arn.clone(),
                failure,
            },
        }
    }

    /// Re-checks a cluster's key now (a data path saw a KMS error).
    async fn recheck(&self, runtime: &Arc<ClusterRuntime>) {
        runtime.check_now(self.shared()).await;
    }

    /// Stores the document `name` from `body`, encrypting it frame by frame as it is read: the
    /// memory it takes is about one ESDK frame plus the store's upload parts, whatever its size.
    /// The document appears (replacing any previous version) only once the whole body is stored;
    /// if reading `body` fails — a client gone, a body over the caller's limit — nothing is
    /// written and the previous version stays.
    pub async fn put_document<R>(
        &self,
        org: &OrgId,
        cluster_id: &str,
        name: &str,
        mut body: R,
    ) -> Result<DocumentInfo>
    where
        R: tokio::io::AsyncRead + Unpin + Send,
    {
        check_document_name(name)?;
        let (_, runtime) = self.serving(org, cluster_id).await?;
        let _writing = runtime.writing().await;
        let store = runtime.documents();
        match store.put_reader(name, &mut body).await {
            Ok(bytes) => self.shared().metrics.document_encrypted(bytes),
            Err(error) => return Err(self.object_error(&runtime, error).await),
        }
        // The stored size, read from the backend as a listing shows it (no KMS call).
        match store.head(name).await {
            Ok(info) => Ok(DocumentInfo {
                name: name.to_owned(),
                size: info.size,
                key_arn: info.kms_key_arns.join(","),
            }),
            Err(error) => Err(self.object_error(&runtime, error).await),
        }
    }

    /// The document `name`'s plaintext as a stream of authenticated frames.
    ///
    /// Answers once the first frame is authenticated (or the document is known empty), so a
    /// missing document, a locked key or a refused `Decrypt` is an error here, before anything
    /// is sent. Afterwards the stream checks the cluster's gate before each chunk: once the key
    /// is seen inaccessible no more plaintext leaves, and the stream ends with that error — as it
    /// does when a later frame fails authentication. A consumer must treat a stream that ends in
    /// an error as cut short and discard what it got (an HTTP response is aborted).
    pub async fn get_document(
        &self,
        org: &OrgId,
        cluster_id: &str,
        name: &str,
    ) -> Result<DocumentStream> {
        check_document_name(name)?;
        let (_, runtime) = self.serving(org, cluster_id).await?;
        let store = runtime.documents();
        let (mut writer, reader) = tokio::io::duplex(DOWNLOAD_PIPE_BYTES);
        let plane = self.clone();
        let owner = runtime.clone();
        let key = name.to_owned();
        let producer = tokio::spawn(async move {
            match store.get_to(&key, &mut writer).await {
                Ok(n) => {
                    plane.shared().metrics.document_decrypted(n);
                    Ok(n)
                }
                Err(error) => Err(plane.object_error(&owner, error).await),
            }
        });
        DocumentStream::start(runtime, reader, producer).await
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
        let _writing = runtime.writing().await;
        let store = runtime.documents();
        // Deleting a missing document is not an error, as on S3.
        match store.delete(name).await {
            Ok(()) => Ok(()),
            Err(error) => Err(self.object_error(&runtime, error).await),
        }
    }

    /// Ends the cluster's NBD server as a failure of it would (its address unlisted at once, the
    /// operator asked to serve the disks again), and answers once it has ended. For tests of
    /// that restart; not in the API. The operator cannot reconcile the cluster until the
    /// returned guard is dropped, so a test sees the stopped state before the restart.
    #[doc(hidden)]
    pub async fn fail_nbd_server(
        &self,
        org: &OrgId,
        cluster_id: &str,
    ) -> Result<tokio::sync::OwnedMutexGuard<()>> {
        let (_, runtime) = self.serving(org, cluster_id).await?;
        let held = self.shared().cluster_lock(cluster_id).lock_owned().await;
        if !runtime.disks().await.fail_nbd() {
            return Err(Error::Conflict(format!(
                "cluster {cluster_id} has no NBD server"
            )));
        }
        let started = std::time::Instant::now();
        while runtime.disks().await.nbd_port().is_some() {
            if started.elapsed() > std::time::Duration::from_secs(10) {
                return Err(Error::Internal("the NBD server did not stop".into()));
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        Ok(held)
    }

    /// Fresh client credentials for the cluster's disks (mutual TLS under the cluster's own
    /// CA): the CA certificate, a client certificate and its private key. Served only while the
    /// cluster's data is.
    pub async fn disk_credentials(
        &self,
        org: &OrgId,
        cluster_id: &str,
    ) -> Result<keyward_storage::ClientCredentials> {
        let (cluster, runtime) = self.serving(org, cluster_id).await?;
        self.disks_here(&cluster)?;
        runtime.nbd_credentials(self.shared()).await
    }

    /// The cluster's disks with their NBD addresses: only while attached and while the cluster's
    /// NBD server runs (a stopped one is never advertised; the operator restarts it).
    pub async fn list_disks(&self, org: &OrgId, cluster_id: &str) -> Result<Vec<DiskInfo>> {
        let (cluster, runtime) = self.serving(org, cluster_id).await?;
        let me = self.replica_id().to_owned();
        let node = cluster.disk_node.clone().unwrap_or_else(|| me.clone());
        let disks = runtime.disks().await;
        if node != me || disks.list.is_empty() {
            // Served by another node, or not attached here yet (this replica is taking the
            // cluster over): what the database records, and where the disks belong.
            drop(disks);
            return Ok(self
                .shared()
                .repo
                .disks_of(&cluster.id)
                .await?
                .into_iter()
                .map(|(class, id, size_bytes)| DiskInfo {
                    id,
                    class,
                    size_bytes,
                    attached: false,
                    nbd_uri: None,
                    node: node.clone(),
                })
                .collect());
        }
        let host = match self.config().nbd_host {
            std::net::IpAddr::V4(v4) => v4.to_string(),
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        };
        let port = disks.nbd_port();
        Ok(disks
            .list
            .iter()
            .map(|d| {
                let attached = d.is_attached();
                DiskInfo {
                    id: d.id.clone(),
                    class: d.class.as_str().to_owned(),
                    size_bytes: d.size,
                    attached,
                    nbd_uri: match (attached, port) {
                        (true, Some(port)) => Some(format!("nbds://{host}:{port}/{}", d.id)),
                        _ => None,
                    },
                    node: me.clone(),
                }
            })
            .collect())
    }

    /// Scans every storage class of the cluster (built on `keyward_storage::scan`): disks by
    /// their headers, a MAC check under the unwrapped key and sampled sectors; objects by their
    /// ESDK headers, with a few decrypted in full.
    pub async fn verify(&self, org: &OrgId, cluster_id: &str) -> Result<Verification> {
        let (cluster, runtime) = self.serving(org, cluster_id).await?;
        self.disks_here(&cluster)?;
        let key_arn = runtime.key_arn();
        let volumes = runtime
            .disks()
            .await
            .list
            .iter()
            .map(|d| (d.class, d.path.clone()))
            .collect();
        let request = ScanRequest {
            key_arn: key_arn.clone(),
            cluster_id: cluster.id.clone(),
            volumes,
            object_dirs: [ObjectClass::Documents, ObjectClass::Backups]
                .into_iter()
                .filter_map(|class| {
                    let dir = self.shared().objects.local_dir(&cluster.id, class)?;
                    Some((class.storage_class(), dir))
                })
                .collect(),
            sampled_sectors: VERIFY_SECTORS,
            sampled_objects: VERIFY_OBJECTS,
        };
        let kms = AwsKms::new(runtime.kms(self.shared()).await);
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
        // Objects in a bucket are not files to walk: each is read through its store instead.
        if self.shared().objects.is_shared() {
            for store in [runtime.documents(), runtime.backups()] {
                classes.push(verify_bucket_class(&store, &key_arn, verified_at_ms).await?);
            }
        }
        classes.sort_by_key(|c| StorageClass::parse(&c.class));
        // A KMS refusal seen by the scan is a reason to look at the key now.
        if report
            .offenders()
            .any(|o| matches!(o.reason, keyward_storage::Reason::KmsRefused { .. }))
        {
            self.recheck(&runtime).await;
            runtime.gate()?;
        }
        let all_encrypted = classes.iter().all(|c| c.encrypted);
        Ok(Verification {
            cluster_id: cluster.id,
            key_arn,
            all_encrypted,
            verified_at_ms,
            classes,
        })
    }

    /// Takes a backup of the cluster's disks (each frozen for writes while it is copied) and
    /// documents into its backups store: complete when this returns, invisible if it fails.
    pub async fn create_backup(&self, org: &OrgId, cluster_id: &str) -> Result<BackupInfo> {
        let (cluster, runtime) = self.serving(org, cluster_id).await?;
        // A backup here would miss the disks another node holds.
        self.disks_here(&cluster)?;
        let disks = runtime.disks().await;
        let volumes = disks
            .list
            .iter()
            .filter_map(|d| {
                d.volume().map(|volume| backup::BackupVolume {
                    name: d.name.clone(),
                    class: d.class.as_str().to_owned(),
                    volume: volume.clone(),
                })
            })
            .collect();
        drop(disks);
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

    /// Restores a backup into a new cluster of the same organization.
    ///
    /// The new cluster has its own role and, with `internal` encryption, its own platform key
    /// (applied at once); with `external` encryption it waits for its key like any new cluster
    /// (its key-policy statements name the new role), and once the customer has associated it,
    /// the operator restores the backup's disks and documents before anything else. The restore
    /// writes everything anew under the new cluster's key.
    ///
    /// The backup is read as the source cluster's role: the source must be accessible until the
    /// restore is done. If the source is deleted meanwhile, its backups are kept for the
    /// retention period and the restore reads them there; a backup gone for good fails the new
    /// cluster (state `failed`).
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
        let name = restored_name(&source.name, backup_id);
        let restore_from = format!("{}/{backup_id}", source.id);
        self.create_cluster_restoring(
            org,
            (&source.region, source.encryption),
            &name,
            &restore_from,
        )
        .await
    }

    /// Deletes one backup of a running cluster, complete or not.
    pub async fn delete_backup(
        &self,
        org: &OrgId,
        cluster_id: &str,
        backup_id: &str,
    ) -> Result<()> {
        let (_, runtime) = self.serving(org, cluster_id).await?;
        if !backup::valid_backup_id(backup_id) {
            return Err(Error::not_found(format!("backup {backup_id}")));
        }
        match backup::delete_backup(&runtime.backups(), backup_id).await {
            Ok(()) => Ok(()),
            Err(error) => Err(self.backup_error(&runtime, error).await),
        }
    }

    /// The organization's backups of deleted clusters, kept until their retention ends. No KMS
    /// call.
    pub async fn list_retained_backups(&self, org: &OrgId) -> Result<Vec<RetainedBackup>> {
        self.organization(org).await?;
        self.shared().repo.retained_backups(org).await
    }

    /// Restores a kept backup of a deleted cluster into a new cluster of the organization, with
    /// the deleted cluster's region and encryption (see [`ControlPlane::restore_backup`]). The
    /// backup is read as the deleted cluster's role, which is kept as long as its backups are.
    pub async fn restore_retained_backup(&self, org: &OrgId, backup_id: &str) -> Result<Cluster> {
        let kept = self.retained(org, backup_id).await?;
        let store = crate::runtime::retained_backups(self.shared(), &kept).await?;
        if let Err(error) = backup::read_manifest(&store, backup_id).await {
            return Err(match error {
                BackupError::NotFound { .. } => Error::not_found(format!("backup {backup_id}")),
                other => Error::Internal(format!(
                    "reading backup {backup_id} of the deleted cluster {}: {other}",
                    kept.cluster_id
                )),
            });
        }
        let name = restored_name(&kept.name, backup_id);
        let restore_from = format!("{}/{backup_id}", kept.cluster_id);
        self.create_cluster_restoring(org, (&kept.region, kept.encryption), &name, &restore_from)
            .await
    }

    /// Deletes a kept backup of a deleted cluster now. Once a deleted cluster keeps no backup,
    /// the operator deletes its role and (internal encryption) schedules its key for deletion
    /// when no other cluster uses it.
    pub async fn delete_retained_backup(&self, org: &OrgId, backup_id: &str) -> Result<()> {
        let shared = self.shared();
        let kept = self.retained(org, backup_id).await?;
        // Unlisted first; its objects then (a crash between leaves objects the retirement of
        // the deleted cluster's store removes).
        if !shared
            .repo
            .delete_retained_backup(&kept.cluster_id, backup_id)
            .await?
        {
            return Err(Error::not_found(format!("backup {backup_id}")));
        }
        let store = crate::runtime::retained_backups(shared, &kept).await?;
        match backup::delete_backup(&store, backup_id).await {
            Ok(()) | Err(BackupError::NotFound { .. }) => {}
            Err(error) => {
                tracing::warn!(backup = %backup_id, %error, "objects of a deleted backup left for the retirement of its store")
            }
        }
        shared.wake_retention();
        Ok(())
    }

    /// The deleted cluster of the organization that keeps `backup_id`; another organization's
    /// is `not_found`, as one that does not exist.
    async fn retained(&self, org: &OrgId, backup_id: &str) -> Result<RetainedCluster> {
        let missing = || Error::not_found(format!("backup {backup_id}"));
        if !backup::valid_backup_id(backup_id) {
            return Err(missing());
        }
        self.shared()
            .repo
            .retained_backup(org, backup_id)
            .await?
            .ok_or_else(missing)
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
            BackupError::Volume(keyward_storage::Error::Kms { operation, failure }) => {
                self.kms_error(runtime, operation, failure).await
            }
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

/// The name of a cluster restored from a backup: `<source name>-<backup id>`, at most 64
/// characters.
fn restored_name(source: &str, backup_id: &str) -> String {
    let mut name = format!("{source}-{backup_id}");
    name.truncate(64);
    name.trim_end().to_owned()
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
