//! Backups: a consistent, streamed copy of a cluster's disks and documents
//! into its backup store, and the restore into new disks and documents.
//!
//! # Public API (what the control plane calls)
//!
//! - [`create_backup`]`(backups, BackupRequest { volumes, documents, exclude_documents,
//!   part_size }, progress)`
//!   → the [`Manifest`] of the new, complete backup.
//! - [`list_backups`]`(backups)` → the complete backups, oldest first ([`BackupSummary`]);
//!   no KMS call. [`list_incomplete`] names the unfinished ones, [`delete_backup`] removes one.
//! - [`read_manifest`]`(backups, id)` → the checked manifest.
//! - [`restore_backup`]`(backups, id, RestoreTarget { cluster_id, key_id, kms, volumes_dir,
//!   documents, documents_prefix }, progress)` → [`Restored`]: the new volumes (new ids, new
//!   data keys) and the number of documents written.
//!
//! `backups` is the cluster's [`EncryptedStore`] of class `backups` (local or S3);
//! `progress` is called with [`Progress`] every few MiB and at the end.
//!
//! # Format
//!
//! A backup is a sequence of objects in the backup store, each one an AWS
//! Encryption SDK v2 message (so each is bound by its encryption context
//! `{keyward:cluster, keyward:class=backups, keyward:object=<object key>}` to its
//! cluster and name, and opens with the official AWS Encryption CLI):
//!
//! ```text
//!  <backup id>/part-000000    plaintext bytes [0, part_size) of the backup stream
//!  <backup id>/part-000001    bytes [part_size, 2·part_size)
//!  ...                        (the last part may be shorter)
//!  <backup id>/manifest       JSON (below), written LAST
//!
//!  backup stream = item 0 ‖ item 1 ‖ … : each volume's whole plaintext (sector 0
//!                  first), then each document's plaintext, in manifest order
//!  backup id     = "bk-" <creation time, unix ms, 13 digits> "-" <8 random hex>
//! ```
//!
//! The manifest (version 1):
//!
//! ```json
//! { "format": "keyward-backup", "version": 1,
//!   "backup_id": "bk-1764400000000-0a1b2c3d", "cluster": "c-…",
//!   "created_at_ms": …, "completed_at_ms": …,
//!   "part_size": 67108864, "total_bytes": …,
//!   "items": [ { "kind": "volume", "volume_id": "vol-…", "name": "engine-0",
//!                "class": "engine-disk", "offset": 0, "size": 67108864 },
//!              { "kind": "document", "key": "reports/q4.pdf", "offset": 67108864, "size": 5120 } ],
//!   "parts": [ { "name": "bk-…/part-000000", "offset": 0, "size": 67108864,
//!                "sha256": "<hex of the part's plaintext>" } ] }
//! ```
//!
//! A reader refuses any other `version`. Items and parts each tile
//! `[0, total_bytes)` in order; parts are named by their index, so a part of
//! another backup cannot be listed (and could not be decrypted under this name).
//!
//! # Guarantees
//!
//! - **Complete or invisible**: the manifest is written after every part has
//!   been stored, and only a backup with a manifest is listed or restored. A
//!   backup that fails removes its parts; one killed mid-way leaves parts
//!   without a manifest ([`list_incomplete`]), which nothing reads.
//! - **Consistency of live disks**: each volume **blocks writes** (it does not
//!   copy on write) while its own copy is taken ([`Volume::freeze_writes`]):
//!   writes in flight land first, new ones wait (an NBD client sees latency, not
//!   errors). Each disk is thus copied at one point in time, as after a power
//!   cut of that disk; disks are frozen one after another, not all at once.
//!   Documents are listed when the backup starts; each is copied as one
//!   version (a put replaces an object whole); one deleted meanwhile is left out.
//! - **Restore checks everything**: the manifest's consistency (above) and that
//!   every part it names — and no other — is stored, before anything is
//!   created; each part's size and SHA-256 as it is read. Restored volumes are
//!   new files with new ids and new data keys (`GenerateDataKeyWithoutPlaintext`
//!   under the target key, as at creation) and documents go to a new store or
//!   prefix where none of their names may exist yet: nothing is overwritten, and
//!   on any error everything the restore made is removed.
//! - **Bounded memory** whatever the size: the stream flows through a 1 MiB
//!   pipe; parts are streamed into the store (see [`crate::objects`]).

mod io;
pub mod manifest;
mod restore;

use std::collections::BTreeMap;
use std::sync::Arc;

use keyward_envelope::Keyring;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use crate::objects::{EncryptedStore, ObjectError};
use crate::volume::Volume;
use io::{CountingWriter, HashingReader};
pub use manifest::{
    manifest_name, part_name, valid_backup_id, Item, Manifest, Part, MANIFEST_FORMAT,
    MANIFEST_VERSION, MAX_PART_SIZE,
};
pub use restore::{restore_backup, RestoreTarget, Restored, RestoredVolume};

/// Default part size: 64 MiB of plaintext.
pub const DEFAULT_PART_SIZE: u64 = 64 << 20;
/// Size of the reads from a volume and of the pipe between reader and writer.
const CHUNK: usize = 1 << 20;

/// Everything that can go wrong with a backup or a restore.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// The request cannot be carried out as given.
    #[error("invalid backup request: {0}")]
    InvalidRequest(String),

    /// No backup with this id (neither complete nor unfinished).
    #[error("backup {backup_id:?} does not exist")]
    NotFound { backup_id: String },

    /// Parts exist but no manifest: the backup never finished.
    #[error("backup {backup_id:?} did not finish (it has no manifest) and cannot be restored")]
    Incomplete { backup_id: String },

    /// The manifest contradicts itself or the stored parts.
    #[error("backup {backup_id:?} is inconsistent: {reason}; nothing was restored")]
    InconsistentManifest { backup_id: String, reason: String },

    /// A part's bytes are not what the manifest says.
    #[error("backup {backup_id:?}: part {part:?} {reason}; nothing was restored")]
    PartMismatch {
        backup_id: String,
        part: String,
        reason: String,
    },

    /// The manifest is of a version this build does not read.
    #[error("backup {backup_id:?} has manifest version {version}; this build reads version {MANIFEST_VERSION}")]
    UnsupportedVersion { backup_id: String, version: u32 },

    /// The restore would overwrite something.
    #[error("restore refused: {0}")]
    Conflict(String),

    /// The object store (or an object in it) failed.
    #[error(transparent)]
    Object(#[from] ObjectError),

    /// A volume or a KMS call for one failed.
    #[error(transparent)]
    Volume(#[from] crate::Error),

    /// The stream between the two halves of a backup or restore broke.
    #[error("backup stream: {0}")]
    Io(#[from] std::io::Error),
}

pub type BackupResult<T> = std::result::Result<T, BackupError>;

/// A disk to back up: an attached volume, with the caller's name and class for it.
pub struct BackupVolume {
    /// The caller's name for the disk (e.g. `engine-0`), kept for the restore.
    pub name: String,
    /// The storage class (`engine-disk`, `search-disk`).
    pub class: String,
    pub volume: Arc<Volume>,
}

/// What to back up.
pub struct BackupRequest<'a, K> {
    pub volumes: Vec<BackupVolume>,
    /// The cluster's documents store (the same cluster as the backup store), if any.
    pub documents: Option<&'a EncryptedStore<K>>,
    /// Documents whose key starts with one of these are left out (e.g. a
    /// store's own marker objects, which a restore target already has).
    pub exclude_documents: Vec<String>,
    /// Plaintext bytes per part, 1..=[`MAX_PART_SIZE`]; [`DEFAULT_PART_SIZE`] is a good choice.
    pub part_size: u64,
}

/// Progress of a backup or restore, in plaintext bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub bytes_done: u64,
    /// For a backup, an estimate (the documents' stored sizes); exact for a restore.
    pub bytes_total: u64,
}

/// A complete backup as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSummary {
    pub backup_id: String,
    pub created_at_ms: u64,
    /// Parts, as stored.
    pub parts: usize,
    /// Stored (encrypted) bytes of the parts and the manifest.
    pub stored_bytes: u64,
}

/// The one clock ([`crate::vocab::now_ms`]) as the manifest stores it.
fn unix_ms() -> u64 {
    crate::vocab::now_ms().max(0) as u64
}

fn new_backup_id() -> BackupResult<String> {
    let mut random = [0u8; 4];
    aws_lc_rs::rand::fill(&mut random)
        .map_err(|_| BackupError::InvalidRequest("the random generator failed".into()))?;
    Ok(format!("bk-{:013}-{}", unix_ms(), hex::encode(random)))
}

fn check_id(backup_id: &str) -> BackupResult<()> {
    if valid_backup_id(backup_id) {
        Ok(())
    } else {
        Err(BackupError::InvalidRequest(format!(
            "{backup_id:?} is not a backup id (bk-<13 digits>-<8 hex digits>)"
        )))
    }
}

/// Takes a backup of `request`'s disks and documents into `backups` (see the
/// module doc). Returns once the manifest is stored: the backup is then
/// listed and restorable. On error nothing is listed and the parts written
/// are removed.
pub async fn create_backup<K: Keyring>(
    backups: &EncryptedStore<K>,
    request: BackupRequest<'_, K>,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> BackupResult<Manifest> {
    if request.part_size == 0 || request.part_size > MAX_PART_SIZE {
        return Err(BackupError::InvalidRequest(format!(
            "part size {} is outside 1..={MAX_PART_SIZE}",
            request.part_size
        )));
    }
    if backups.class() != crate::objects::ObjectClass::Backups {
        return Err(BackupError::InvalidRequest(
            "the backup store must be of class backups".into(),
        ));
    }
    if let Some(documents) = request.documents {
        if documents.cluster() != backups.cluster()
            || documents.class() != crate::objects::ObjectClass::Documents
        {
            return Err(BackupError::InvalidRequest(format!(
                "the documents store must be the documents class of cluster {:?}",
                backups.cluster()
            )));
        }
    }
    let mut seen = BTreeMap::new();
    for v in &request.volumes {
        if seen.insert(v.volume.id().to_owned(), ()).is_some() {
            return Err(BackupError::InvalidRequest(format!(
                "volume {:?} is listed twice",
                v.volume.id()
            )));
        }
    }
    let created_at_ms = unix_ms();
    let backup_id = new_backup_id()?;
    let documents: Vec<_> = match request.documents {
        Some(store) => store
            .list("")
            .await?
            .into_iter()
            .filter(|entry| {
                !request
                    .exclude_documents
                    .iter()
                    .any(|prefix| entry.key.starts_with(prefix.as_str()))
            })
            .collect(),
        None => Vec::new(),
    };
    let total = request.volumes.iter().map(|v| v.volume.size()).sum::<u64>()
        + documents.iter().map(|d| d.size).sum::<u64>();
    let report = move |done: u64| {
        progress(Progress {
            bytes_done: done,
            bytes_total: total.max(done),
        })
    };

    let (pipe_writer, pipe_reader) = tokio::io::duplex(CHUNK);
    let produce = async {
        let mut out = CountingWriter::new(pipe_writer, &report);
        let mut items = Vec::new();
        for disk in &request.volumes {
            let offset = out.done();
            copy_volume(&disk.volume, &mut out).await?;
            items.push(Item::Volume {
                volume_id: disk.volume.id().to_owned(),
                name: disk.name.clone(),
                class: disk.class.clone(),
                offset,
                size: disk.volume.size(),
            });
        }
        if let Some(store) = request.documents {
            for entry in &documents {
                let offset = out.done();
                match store.get_to(&entry.key, &mut out).await {
                    Ok(size) => items.push(Item::Document {
                        key: entry.key.clone(),
                        offset,
                        size,
                    }),
                    // Deleted since the listing: not part of this backup.
                    Err(ObjectError::NotFound { .. }) if out.done() == offset => {}
                    Err(error) => return Err(BackupError::from(error)),
                }
            }
        }
        out.shutdown().await?;
        out.report_now();
        Ok::<_, BackupError>((items, out.done()))
    };
    let consume = async {
        let mut reader = tokio::io::BufReader::with_capacity(CHUNK, pipe_reader);
        let mut parts = Vec::new();
        let mut offset = 0u64;
        let result = async {
            while !reader.fill_buf().await?.is_empty() {
                let name = part_name(&backup_id, parts.len());
                let mut hashing = HashingReader::new((&mut reader).take(request.part_size));
                let size = backups.put_reader(&name, &mut hashing).await?;
                parts.push(Part {
                    name,
                    offset,
                    size,
                    sha256: hashing.finish_hex(),
                });
                offset += size;
            }
            Ok::<_, BackupError>(())
        }
        .await;
        (result, parts)
    };
    let (produced, (consumed, parts)) = tokio::join!(produce, consume);
    let outcome = match (consumed, produced) {
        (Err(error), _) | (Ok(()), Err(error)) => Err(error),
        (Ok(()), Ok((items, total_bytes))) => {
            let manifest = Manifest {
                format: MANIFEST_FORMAT.to_owned(),
                version: MANIFEST_VERSION,
                backup_id: backup_id.clone(),
                cluster: backups.cluster().to_owned(),
                created_at_ms,
                completed_at_ms: unix_ms(),
                part_size: request.part_size,
                total_bytes,
                items,
                parts: parts.clone(),
            };
            match manifest.check(&backup_id, backups.cluster()) {
                Err(error) => Err(error),
                Ok(()) => {
                    let json = serde_json::to_vec(&manifest).map_err(std::io::Error::other)?;
                    // The publish step: from here the backup is listed.
                    match backups.put_bytes(&manifest_name(&backup_id), &json).await {
                        Ok(_) => Ok(manifest),
                        Err(error) => Err(error.into()),
                    }
                }
            }
        }
    };
    if outcome.is_err() {
        for part in &parts {
            if let Err(error) = backups.delete(&part.name).await {
                tracing::warn!(part = %part.name, %error, "could not remove a part of a failed backup");
            }
        }
    }
    outcome
}

/// Streams a volume's plaintext into `out` with its writes frozen, reading the
/// next chunk (on a blocking thread: XTS) while the previous one is written.
async fn copy_volume<W>(volume: &Arc<Volume>, out: &mut W) -> BackupResult<()>
where
    W: tokio::io::AsyncWrite + Unpin,
{
    let frozen = volume.clone();
    let freeze = blocking(move || Ok(frozen.freeze_writes())).await?;
    let _open = volume.keep_open();
    let size = volume.size();
    let read = |at: u64| {
        let volume = volume.clone();
        tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; (size - at).min(CHUNK as u64) as usize];
            volume.read_at(at, &mut buf).map(|()| buf)
        })
    };
    let mut next = (size > 0).then(|| read(0));
    let mut at = 0u64;
    while let Some(pending) = next.take() {
        let chunk = pending.await.map_err(std::io::Error::other)??;
        at += chunk.len() as u64;
        if at < size {
            next = Some(read(at));
        }
        out.write_all(&chunk).await?;
    }
    drop(freeze);
    Ok(())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> BackupResult<T> + Send + 'static,
) -> BackupResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(std::io::Error::other)?
}

/// Objects of the backup store grouped by backup id: (id, names and stored sizes).
async fn backup_objects<K: Keyring>(
    backups: &EncryptedStore<K>,
) -> BackupResult<BTreeMap<String, Vec<(String, u64)>>> {
    let mut grouped: BTreeMap<String, Vec<(String, u64)>> = BTreeMap::new();
    for entry in backups.list("bk-").await? {
        if let Some((id, _)) = entry.key.split_once('/') {
            if valid_backup_id(id) {
                grouped
                    .entry(id.to_owned())
                    .or_default()
                    .push((entry.key.clone(), entry.size));
            }
        }
    }
    Ok(grouped)
}

/// The complete backups (those with a manifest), oldest first. Reads only the
/// listing: no object is opened, no KMS call is made.
pub async fn list_backups<K: Keyring>(
    backups: &EncryptedStore<K>,
) -> BackupResult<Vec<BackupSummary>> {
    let mut complete = Vec::new();
    for (id, objects) in backup_objects(backups).await? {
        let manifest = manifest_name(&id);
        if objects.iter().any(|(name, _)| *name == manifest) {
            complete.push(BackupSummary {
                created_at_ms: manifest::created_at_ms(&id),
                parts: objects.len() - 1,
                stored_bytes: objects.iter().map(|(_, size)| size).sum(),
                backup_id: id,
            });
        }
    }
    Ok(complete)
}

/// The ids of backups that have parts but no manifest (did not finish).
pub async fn list_incomplete<K: Keyring>(backups: &EncryptedStore<K>) -> BackupResult<Vec<String>> {
    Ok(backup_objects(backups)
        .await?
        .into_iter()
        .filter(|(id, objects)| {
            let manifest = manifest_name(id);
            !objects.iter().any(|(name, _)| *name == manifest)
        })
        .map(|(id, _)| id)
        .collect())
}

/// Reads, decrypts and checks a backup's manifest ([`Manifest::check`]).
pub async fn read_manifest<K: Keyring>(
    backups: &EncryptedStore<K>,
    backup_id: &str,
) -> BackupResult<Manifest> {
    check_id(backup_id)?;
    let bytes = match backups.get_bytes(&manifest_name(backup_id)).await {
        Ok(bytes) => bytes,
        Err(ObjectError::NotFound { .. }) => {
            let any = !backups.list(&format!("{backup_id}/")).await?.is_empty();
            return Err(if any {
                BackupError::Incomplete {
                    backup_id: backup_id.to_owned(),
                }
            } else {
                BackupError::NotFound {
                    backup_id: backup_id.to_owned(),
                }
            });
        }
        Err(error) => return Err(error.into()),
    };
    let manifest: Manifest =
        serde_json::from_slice(&bytes).map_err(|e| BackupError::InconsistentManifest {
            backup_id: backup_id.to_owned(),
            reason: format!("the manifest is not valid JSON of version {MANIFEST_VERSION}: {e}"),
        })?;
    manifest.check(backup_id, backups.cluster())?;
    Ok(manifest)
}

/// Deletes a backup, complete or not: the manifest first (so it stops being
/// listed at once), then its parts.
pub async fn delete_backup<K: Keyring>(
    backups: &EncryptedStore<K>,
    backup_id: &str,
) -> BackupResult<()> {
    check_id(backup_id)?;
    let objects = backups.list(&format!("{backup_id}/")).await?;
    if objects.is_empty() {
        return Err(BackupError::NotFound {
            backup_id: backup_id.to_owned(),
        });
    }
    backups.delete(&manifest_name(backup_id)).await?;
    for object in objects {
        backups.delete(&object.key).await?;
    }
    Ok(())
}
