//! Restoring a backup into new volumes and a new documents store or prefix.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use keyward_envelope::Keyring;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use super::io::{CountingWriter, ExactReader, HashingWriter};
use super::{blocking, read_manifest, BackupError, BackupResult, Item, Manifest, Progress, CHUNK};
use crate::objects::{EncryptedStore, ObjectError, CLASS_CONTEXT_KEY, CLUSTER_CONTEXT_KEY};
use crate::volume::kms::{create_volume, new_volume_id, KeyService, NewVolume};
use crate::volume::{Volume, VolumeFile};

/// Where a restore goes.
pub struct RestoreTarget<'a, K, S> {
    /// The cluster the new volumes belong to (`keyward:cluster` of their keys).
    pub cluster_id: String,
    /// The KMS key of the new volumes (id, ARN or alias).
    pub key_id: String,
    /// Makes the new volumes' keys: `GenerateDataKeyWithoutPlaintext`, then
    /// `Decrypt` to write them (as [`create_volume`] does).
    pub kms: &'a S,
    /// Directory of the new volume files, named `<new volume id>.vol` (created if missing).
    pub volumes_dir: PathBuf,
    /// The store the documents go to; required when the backup has documents.
    pub documents: Option<&'a EncryptedStore<K>>,
    /// Put before every restored document key (`""` for none). No restored
    /// key may exist in `documents` yet.
    pub documents_prefix: String,
}

/// A volume made by a restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoredVolume {
    /// The backed-up volume's id.
    pub source_volume_id: String,
    /// The disk's name and class, as backed up.
    pub name: String,
    pub class: String,
    /// The new volume.
    pub volume_id: String,
    pub path: PathBuf,
    pub size: u64,
    pub key_arn: String,
}

/// What a restore made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub backup_id: String,
    pub volumes: Vec<RestoredVolume>,
    /// The documents' keys in the target store (prefix included).
    pub documents: Vec<String>,
    /// Plaintext bytes restored.
    pub bytes: u64,
}

/// Restores backup `backup_id` of `backups` into `target` (see the module doc
/// of [`super`]): every check that can be made before writing is made first;
/// each part's size and SHA-256 are checked as it streams; on any error every
/// volume and document made so far is removed again.
pub async fn restore_backup<K: Keyring, S: KeyService>(
    backups: &EncryptedStore<K>,
    backup_id: &str,
    target: RestoreTarget<'_, K, S>,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> BackupResult<Restored> {
    let manifest = read_manifest(backups, backup_id).await?;
    check_parts_stored(backups, &manifest).await?;
    let documents: Vec<(&str, u64)> = manifest
        .items
        .iter()
        .filter_map(|item| match item {
            Item::Document { key, size, .. } => Some((key.as_str(), *size)),
            Item::Volume { .. } => None,
        })
        .collect();
    if !documents.is_empty() {
        let Some(store) = target.documents else {
            return Err(BackupError::InvalidRequest(
                "the backup holds documents but the restore has no documents store".into(),
            ));
        };
        let existing: BTreeSet<String> = store
            .list(&target.documents_prefix)
            .await?
            .into_iter()
            .map(|e| e.key)
            .collect();
        let mut clashes = Vec::new();
        for (key, _) in &documents {
            let restored = format!("{}{key}", target.documents_prefix);
            store.path_of(&restored)?;
            if existing.contains(&restored) {
                clashes.push(restored);
            }
        }
        if !clashes.is_empty() {
            clashes.truncate(5);
            return Err(BackupError::Conflict(format!(
                "documents already exist in the target store: {}",
                clashes.join(", ")
            )));
        }
    }

    let mut made = Made::default();
    let result = restore_into(backups, &manifest, &target, progress, &mut made).await;
    match result {
        Ok(volumes) => Ok(Restored {
            backup_id: backup_id.to_owned(),
            volumes,
            documents: made.documents,
            bytes: manifest.total_bytes,
        }),
        Err(error) => {
            made.remove(target.documents).await;
            Err(error)
        }
    }
}

/// Every part the manifest names is stored, and no other part of this backup is.
async fn check_parts_stored<K: Keyring>(
    backups: &EncryptedStore<K>,
    manifest: &Manifest,
) -> BackupResult<()> {
    let id = &manifest.backup_id;
    let stored: BTreeMap<String, u64> = backups
        .list(&format!("{id}/"))
        .await?
        .into_iter()
        .map(|e| (e.key, e.size))
        .collect();
    let lie = |reason| {
        Err(BackupError::InconsistentManifest {
            backup_id: id.clone(),
            reason,
        })
    };
    for part in &manifest.parts {
        match stored.get(&part.name) {
            None => return lie(format!("part {:?} is missing from the store", part.name)),
            // An ESDK message is always longer than its plaintext.
            Some(&stored) if stored <= part.size => {
                return lie(format!(
                    "part {:?} is stored in {stored} bytes, too few for {} bytes of plaintext",
                    part.name, part.size
                ))
            }
            Some(_) => {}
        }
    }
    let listed: BTreeSet<&str> = manifest.parts.iter().map(|p| p.name.as_str()).collect();
    let manifest_key = super::manifest_name(id);
    if let Some(extra) = stored
        .keys()
        .find(|k| **k != manifest_key && !listed.contains(k.as_str()))
    {
        return lie(format!(
            "the store holds {extra:?}, which the manifest does not list"
        ));
    }
    Ok(())
}

/// What a restore has made so far, to remove on failure.
#[derive(Default)]
struct Made {
    volume_files: Vec<PathBuf>,
    documents: Vec<String>,
}

impl Made {
    async fn remove<K: Keyring>(&self, documents: Option<&EncryptedStore<K>>) {
        for path in &self.volume_files {
            if let Err(error) = tokio::fs::remove_file(path).await {
                tracing::warn!(path = %path.display(), %error, "could not remove a volume of a failed restore");
            }
        }
        if let Some(store) = documents {
            for key in &self.documents {
                if let Err(error) = store.delete(key).await {
                    tracing::warn!(key, %error, "could not remove a document of a failed restore");
                }
            }
        }
    }
}

async fn restore_into<K: Keyring, S: KeyService>(
    backups: &EncryptedStore<K>,
    manifest: &Manifest,
    target: &RestoreTarget<'_, K, S>,
    progress: &(dyn Fn(Progress) + Send + Sync),
    made: &mut Made,
) -> BackupResult<Vec<RestoredVolume>> {
    // Every volume is created (new id, new data key) before any byte is read,
    // so a key or permission problem shows before the long part.
    tokio::fs::create_dir_all(&target.volumes_dir).await?;
    let mut volumes = Vec::new();
    let mut opened: Vec<Arc<Volume>> = Vec::new();
    for item in &manifest.items {
        let Item::Volume {
            volume_id: source,
            name,
            class,
            size,
            ..
        } = item
        else {
            continue;
        };
        let volume_id = new_volume_id()?;
        let path = target.volumes_dir.join(format!("{volume_id}.vol"));
        let context = BTreeMap::from([
            (CLUSTER_CONTEXT_KEY.to_owned(), target.cluster_id.clone()),
            (CLASS_CONTEXT_KEY.to_owned(), class.clone()),
        ]);
        let header = create_volume(
            target.kms,
            &path,
            NewVolume {
                volume_id: Some(volume_id.clone()),
                size: *size,
                key_id: target.key_id.clone(),
                encryption_context: context,
            },
        )
        .await?;
        made.volume_files.push(path.clone());
        let key = target
            .kms
            .decrypt(
                &header.key_arn,
                &header.wrapped_key,
                &header.encryption_context,
                None,
            )
            .await?;
        let file_path = path.clone();
        let volume = blocking(move || Ok(VolumeFile::open(&file_path)?.unlock(key)?)).await?;
        opened.push(Arc::new(volume));
        volumes.push(RestoredVolume {
            source_volume_id: source.clone(),
            name: name.clone(),
            class: class.clone(),
            volume_id,
            path,
            size: *size,
            key_arn: header.key_arn,
        });
    }

    let total = manifest.total_bytes;
    let report = move |done: u64| {
        progress(Progress {
            bytes_done: done,
            bytes_total: total,
        })
    };
    let (pipe_writer, pipe_reader) = tokio::io::duplex(CHUNK);
    // Parts → pipe, each part's length and hash checked once it is through.
    let produce = async {
        let mut out = CountingWriter::new(pipe_writer, &report);
        for part in &manifest.parts {
            let mut hashing = HashingWriter::new(&mut out);
            let size =
                backups
                    .get_to(&part.name, &mut hashing)
                    .await
                    .map_err(|error| match error {
                        ObjectError::Authentication { .. } => BackupError::PartMismatch {
                            backup_id: manifest.backup_id.clone(),
                            part: part.name.clone(),
                            reason:
                                "failed authentication: it was altered, or written for another \
                                 backup, name, cluster or key"
                                    .into(),
                        },
                        other => other.into(),
                    })?;
            let mismatch = |reason: String| BackupError::PartMismatch {
                backup_id: manifest.backup_id.clone(),
                part: part.name.clone(),
                reason,
            };
            let sha256 = hashing.finish_hex();
            if size != part.size {
                return Err(mismatch(format!(
                    "holds {size} bytes; the manifest says {}",
                    part.size
                )));
            }
            if sha256 != part.sha256 {
                return Err(mismatch(format!(
                    "has SHA-256 {sha256}; the manifest says {}",
                    part.sha256
                )));
            }
        }
        out.shutdown().await?;
        out.report_now();
        Ok::<_, BackupError>(())
    };
    // Pipe → items.
    let consume = async {
        let mut reader = tokio::io::BufReader::with_capacity(CHUNK, pipe_reader);
        let mut volumes = opened.iter();
        let mut documents = Vec::new();
        let result = async {
            for item in &manifest.items {
                match item {
                    Item::Volume { size, .. } => {
                        let volume = volumes.next().expect("one opened volume per volume item");
                        write_volume(volume, &mut reader, *size, manifest).await?;
                    }
                    Item::Document { key, size, .. } => {
                        let store = target.documents.expect("checked before");
                        let restored = format!("{}{key}", target.documents_prefix);
                        documents.push(restored.clone());
                        // A stream that ends early fails the put: no short document is stored.
                        let mut body = ExactReader::new(&mut reader, *size);
                        store.put_reader(&restored, &mut body).await?;
                    }
                }
            }
            if !reader.fill_buf().await?.is_empty() {
                return Err(BackupError::InconsistentManifest {
                    backup_id: manifest.backup_id.clone(),
                    reason: "the parts hold more bytes than the items".into(),
                });
            }
            Ok::<_, BackupError>(())
        }
        .await;
        (result, documents)
    };
    let (produced, (consumed, documents)) = tokio::join!(produce, consume);
    made.documents = documents;
    match (produced, consumed) {
        (Ok(()), Ok(())) => {}
        // A broken pipe is the consumer having stopped: its error is the cause.
        (Err(BackupError::Io(_)), Err(error)) => return Err(error),
        // Otherwise the producer's error (a part that does not match) explains
        // the consumer's short stream.
        (Err(error), _) | (Ok(()), Err(error)) => return Err(error),
    }
    for volume in &opened {
        let volume = volume.clone();
        blocking(move || Ok(volume.flush()?)).await?;
    }
    Ok(volumes)
}

fn short_stream(manifest: &Manifest) -> BackupError {
    BackupError::InconsistentManifest {
        backup_id: manifest.backup_id.clone(),
        reason: "the parts end before the items do".into(),
    }
}

/// Writes `size` bytes from `reader` to the start of `volume`, 1 MiB at a time,
/// encrypting on a blocking thread while the next chunk is read.
async fn write_volume<R>(
    volume: &Arc<Volume>,
    reader: &mut R,
    size: u64,
    manifest: &Manifest,
) -> BackupResult<()>
where
    R: tokio::io::AsyncRead + Unpin,
{
    let _open = volume.keep_open();
    let mut at = 0u64;
    let mut pending: Option<tokio::task::JoinHandle<crate::Result<()>>> = None;
    while at < size {
        let mut chunk = vec![0u8; (size - at).min(CHUNK as u64) as usize];
        let filled = reader.read_exact(&mut chunk).await;
        if let Some(previous) = pending.take() {
            previous.await.map_err(std::io::Error::other)??;
        }
        match filled {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(short_stream(manifest));
            }
            Err(e) => return Err(e.into()),
        }
        let volume = volume.clone();
        let offset = at;
        at += chunk.len() as u64;
        pending = Some(tokio::task::spawn_blocking(move || {
            volume.write_at_in_place(offset, &mut chunk, false)
        }));
    }
    if let Some(previous) = pending {
        previous.await.map_err(std::io::Error::other)??;
    }
    Ok(())
}
