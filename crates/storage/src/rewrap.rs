//! Re-wrapping stored data keys under a new KMS key, online: a volume's header and an object of
//! an [`EncryptedStore`]. The data itself (sectors, ESDK frames) is not touched: only the wrapped
//! data key, the key ARN and what authenticates them change. The KMS side — `Decrypt` of the
//! old wrapping, `ReEncrypt` to the new key, short-lived grants when the key policy does not
//! allow `ReEncrypt` — is [`keyward_envelope::rewrap::Rewrapper`]'s; see its module for why.
//!
//! Signatures:
//! - [`rewrap_volume`]`(path, &rewrapper)`: the volume header at `path` gets the new key ARN and
//!   the `ReEncrypt`ed wrapped key, and a MAC recomputed with the (unchanged) data key, which is
//!   `Decrypt`ed once, checked against the old MAC first, and wiped. The header is replaced
//!   atomically through a journal file (below). The volume may be attached meanwhile: its
//!   sectors and in-memory key do not change; re-attach it afterwards so its attachment (and
//!   its periodic `recheck`) uses the new key before the old one is disabled.
//! - [`recover_volume_rewrap`]`(path)`: finishes or discards a header replacement interrupted
//!   by a crash; run it before opening a volume (the operator does at start).
//! - [`rewrap_object`]`(&store, key, &rewrapper)`: the object is streamed through
//!   [`keyward_envelope::rewrap::rewrap_message`] into a new version of itself, published
//!   atomically the way a put is (a staging file renamed into place, or the S3 multipart
//!   completion); a failure leaves the old version. Memory is one copy buffer and the
//!   backend writer's parts, whatever the object's size. The caller must not write the same
//!   object during its re-wrap (the later publish wins).
//!
//! Both answer [`RewrapOutcome::AlreadyRewrapped`] without any KMS call when the data key is
//! already under the new key, so an interrupted re-wrap of a whole cluster simply runs again.
//!
//! The volume header journal:
//!
//! ```text
//! 1. <volume>.rewrap.tmp   <- the new 4096-byte header; fsync
//! 2. rename to <volume>.rewrap; fsync the directory        (the journal now exists, complete)
//! 3. pwrite the new header at offset 0 of <volume>; fsync
//! 4. remove <volume>.rewrap; fsync the directory
//! ```
//!
//! A crash before 2 leaves the old header and at most a `.tmp` file (removed by recovery); after
//! 2, recovery writes the journal's header again (idempotent) and removes the journal, so the
//! header on disk is always either the whole old one or the whole new one.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use keyward_envelope::rewrap::{rewrap_message, RewrapOutcome, Rewrapper};
use keyward_envelope::{EncryptionContext, Keyring};
use object_store::buffered::BufWriter;
use object_store::ObjectStoreExt;
use tokio::io::AsyncWriteExt;
use tokio_util::io::StreamReader;

use crate::error::{Error, Result};
use crate::objects::{EncryptedStore, ObjectError, ObjectResult, PARTS_IN_FLIGHT, PART_SIZE};
use crate::volume::header::{self, VolumeHeader, HEADER_LEN};
use crate::volume::xts::DataKey;

/// Re-wraps the data key in the header of the volume at `path` (see the module doc).
pub async fn rewrap_volume(path: &Path, rewrapper: &Rewrapper) -> Result<RewrapOutcome> {
    let owned = path.to_owned();
    let (raw, header) = blocking(move || {
        recover_volume_rewrap(&owned)?;
        read_header(&owned)
    })
    .await?;
    if header.key_arn == rewrapper.new_key_arn() {
        return Ok(RewrapOutcome::AlreadyRewrapped);
    }
    if header.key_arn != rewrapper.old_key_arn() {
        return Err(Error::InvalidParameter(format!(
            "volume {} is wrapped by {}, not by the key being replaced ({})",
            header.volume_id,
            header.key_arn,
            rewrapper.old_key_arn()
        )));
    }
    let context: EncryptionContext = header.encryption_context.clone();
    let mut plaintext = rewrapper
        .decrypt(&header.wrapped_key, &context)
        .await
        .map_err(envelope_error)?;
    // from_slice wipes the buffer, whatever it decides; the Zeroizing buffer is wiped again on drop.
    let key = DataKey::from_slice(&mut plaintext)?;
    drop(plaintext);
    // The header as it is must be authentic before a new MAC vouches for its fields.
    header::verify_mac(&raw, &key)?;
    let (new_arn, new_blob) = rewrapper
        .reencrypt(&header.wrapped_key, &context)
        .await
        .map_err(envelope_error)?;
    let rewrapped = VolumeHeader {
        key_arn: new_arn,
        wrapped_key: new_blob,
        ..header
    };
    let sealed = rewrapped.seal(&key)?;
    drop(key);
    let owned = path.to_owned();
    blocking(move || replace_header(&owned, &sealed)).await?;
    Ok(RewrapOutcome::Rewrapped)
}

/// Finishes (journal complete) or discards (journal incomplete) a header replacement that a
/// crash interrupted. Returns whether there was one to finish.
pub fn recover_volume_rewrap(path: &Path) -> Result<bool> {
    let (journal, staging) = journal_paths(path);
    match std::fs::remove_file(&staging) {
        Ok(()) => sync_parent(path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("remove {}", staging.display()), e)),
    }
    let raw = match std::fs::read(&journal) {
        Ok(raw) => raw,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io(format!("read {}", journal.display()), e)),
    };
    // The journal was renamed into place only once complete and synced.
    let raw: Box<[u8; HEADER_LEN]> =
        raw.into_boxed_slice()
            .try_into()
            .map_err(|_| Error::CorruptHeader {
                path: journal.clone(),
                reason: "the re-wrap journal is not one 4096-byte header".into(),
            })?;
    VolumeHeader::parse(&raw[..], &journal)?;
    write_header_in_place(path, &raw)?;
    std::fs::remove_file(&journal)
        .map_err(|e| Error::io(format!("remove {}", journal.display()), e))?;
    sync_parent(path)?;
    Ok(true)
}

fn read_header(path: &Path) -> Result<(Box<[u8; HEADER_LEN]>, VolumeHeader)> {
    let file = File::open(path).map_err(|e| Error::io(format!("open {}", path.display()), e))?;
    let mut raw = Box::new([0u8; HEADER_LEN]);
    file.read_exact_at(&mut raw[..], 0)
        .map_err(|e| Error::io(format!("read {}", path.display()), e))?;
    let header = VolumeHeader::parse(&raw[..], path)?;
    Ok((raw, header))
}

fn replace_header(path: &Path, sealed: &[u8; HEADER_LEN]) -> Result<()> {
    let (journal, staging) = journal_paths(path);
    let ctx = |p: &Path| format!("write {}", p.display());
    {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&staging)
            .map_err(|e| Error::io(ctx(&staging), e))?;
        std::io::Write::write_all(&mut file, &sealed[..])
            .map_err(|e| Error::io(ctx(&staging), e))?;
        file.sync_all().map_err(|e| Error::io(ctx(&staging), e))?;
    }
    std::fs::rename(&staging, &journal).map_err(|e| Error::io(ctx(&journal), e))?;
    sync_parent(path)?;
    write_header_in_place(path, sealed)?;
    std::fs::remove_file(&journal)
        .map_err(|e| Error::io(format!("remove {}", journal.display()), e))?;
    sync_parent(path)
}

fn write_header_in_place(path: &Path, raw: &[u8; HEADER_LEN]) -> Result<()> {
    let ctx = || format!("write {}", path.display());
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io(ctx(), e))?;
    file.write_all_at(&raw[..], 0)
        .map_err(|e| Error::io(ctx(), e))?;
    file.sync_data().map_err(|e| Error::io(ctx(), e))
}

fn journal_paths(path: &Path) -> (PathBuf, PathBuf) {
    let mut journal = path.as_os_str().to_owned();
    journal.push(".rewrap");
    let mut staging = journal.clone();
    staging.push(".tmp");
    (PathBuf::from(journal), PathBuf::from(staging))
}

fn sync_parent(path: &Path) -> Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(format!("sync {}", dir.display()), e)),
        None => Ok(()),
    }
}

/// A KMS failure keeps its code (so the control plane can classify it); anything else from the
/// envelope layer (an unauthentic wrapped key, a bad response) is reported as such.
fn envelope_error(error: keyward_envelope::Error) -> Error {
    match error {
        keyward_envelope::Error::Kms {
            operation, failure, ..
        } => Error::Kms { operation, failure },
        other => Error::Kms {
            operation: "ReEncrypt",
            failure: keyward_envelope::KmsFailure::InvalidAnswer {
                detail: other.to_string(),
            },
        },
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::io("blocking task", std::io::Error::other(e.to_string())))?
}

/// Re-wraps the data key of the object `key` of `store` in place (see the module doc).
pub async fn rewrap_object<K: Keyring>(
    store: &EncryptedStore<K>,
    key: &str,
    rewrapper: &Rewrapper,
) -> ObjectResult<RewrapOutcome> {
    // The header alone (no KMS call) says where the object stands.
    let info = store.head(key).await?;
    if !info.context_matches {
        // An object copied here from another cluster, class or name: it would not decrypt
        // here anyway, and re-wrapping must not make it look like it belongs.
        return Err(ObjectError::Authentication {
            key: key.to_owned(),
        });
    }
    if info
        .kms_key_arns
        .iter()
        .any(|a| a == rewrapper.new_key_arn())
        && !info
            .kms_key_arns
            .iter()
            .any(|a| a == rewrapper.old_key_arn())
    {
        return Ok(RewrapOutcome::AlreadyRewrapped);
    }
    let path = store.path_of(key)?;
    let backend = store.backend().clone();
    let stream = backend
        .get(&path)
        .await
        .map_err(|e| match e {
            object_store::Error::NotFound { .. } => ObjectError::NotFound {
                key: key.to_owned(),
            },
            other => ObjectError::Store(other),
        })?
        .into_stream();
    let mut reader = StreamReader::new(futures::TryStreamExt::map_err(stream, |e| {
        std::io::Error::other(e)
    }));
    let mut writer =
        BufWriter::with_capacity(backend, path, PART_SIZE).with_max_concurrency(PARTS_IN_FLIGHT);
    let outcome = match rewrap_message(
        rewrapper,
        &mut reader,
        &mut writer,
        &EncryptionContext::new(),
    )
    .await
    {
        Ok(outcome) => outcome,
        Err(error) => {
            if let Err(abort) = writer.abort().await {
                tracing::warn!(key, error = %abort, "aborting a failed re-wrap upload failed");
            }
            return Err(match error {
                keyward_envelope::Error::Decrypt => ObjectError::Authentication {
                    key: key.to_owned(),
                },
                source => ObjectError::Envelope {
                    key: key.to_owned(),
                    source,
                },
            });
        }
    };
    // Completing the upload is the publish step (rename or S3 complete).
    writer.shutdown().await.map_err(|e| {
        ObjectError::Store(object_store::Error::Generic {
            store: "BufWriter",
            source: Box::new(e),
        })
    })?;
    Ok(outcome)
}
