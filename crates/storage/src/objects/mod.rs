//! Encrypted object stores: the documents and backups storage classes.
//!
//! An [`EncryptedStore`] is one storage class of one cluster on an
//! [`object_store::ObjectStore`] backend — the local filesystem
//! ([`EncryptedStore::local`]), or Amazon S3 / any S3-compatible endpoint
//! ([`EncryptedStore::s3`], see [`s3`]): the same code, since the store only
//! uses the backend trait. Objects live under `<cluster>/<class>/<key>` in the
//! backend (the bucket, on S3).
//!
//! Every object is one AWS Encryption SDK v2 message (the envelope crate), so
//! the official AWS Encryption CLI opens it given the key. Its encryption
//! context names where it belongs:
//!
//! ```text
//! { "keyward:cluster": <cluster>, "keyward:class": "documents" | "backups",
//!   "keyward:object": <object key> }
//! ```
//!
//! The context is stored in the message header (so [`EncryptedStore::head`] can
//! report it with the KMS key ARN without any KMS call) and is *required* on
//! decryption: the store supplies the three pairs it expects, so an object
//! copied to another cluster, class or name fails authentication — the
//! context is bound into the data key's KMS wrapping and the header tag.
//!
//! Why the metadata comes from the ESDK header rather than a sidecar file or
//! backend attributes: the header is already there and authenticated on every
//! read; a sidecar would be a second file to keep atomic with the object, and
//! the local backend supports no attributes. `head` reads only the header's
//! bytes (a few hundred), not the body.
//!
//! Atomicity: bytes reach the backend through [`object_store::buffered::BufWriter`],
//! which sends a small object in one `put` and a large one as a multipart
//! upload. The local backend writes either into a staging file
//! (`<name>#<n>`, never listed nor read as an object) and renames it into place
//! on completion, with fsync; on S3 the publish is the single `PutObject` of a
//! small object or the `CompleteMultipartUpload` sent last for a large one —
//! S3 shows neither until it succeeds. A failed put aborts its upload, so the previous version stays.
//! Memory stays bounded by about one ESDK frame plus the writer's buffered parts
//! ([`PART_SIZE`] × [`PARTS_IN_FLIGHT`]), whatever the object's size.

mod error;
pub mod s3;

use std::sync::Arc;
use std::time::SystemTime;

use futures::TryStreamExt;
use keyward_envelope::{
    Client, DecryptOptions, EncryptOptions, EncryptionContext, Keyring, KmsKeyring,
    UnverifiedHeader,
};
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{GetResultPayload, ObjectStore, ObjectStoreExt, PutPayload};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::io::StreamReader;

pub use error::{ObjectError, ObjectResult};
pub use s3::{s3_backend, S3Config, S3Credentials};

pub use crate::vocab::{ObjectClass, CLASS_CONTEXT_KEY, CLUSTER_CONTEXT_KEY, OBJECT_CONTEXT_KEY};

/// Size of one multipart part (S3's minimum part size is 5 MiB).
pub const PART_SIZE: usize = 5 << 20;
/// Parts uploaded at once by one put.
pub const PARTS_IN_FLIGHT: usize = 4;
/// Read size of a get from the local backend.
const READ_BLOCK: usize = 1 << 20;
/// Longest object key, in bytes (S3's limit).
pub const MAX_KEY_LEN: usize = 1024;
/// Longest `/`-separated segment of a key, in bytes. S3 has no such limit, but the local backend
/// keeps each segment as a file name (255 bytes on Linux), and an upload in progress adds
/// `#<digits>` to it; one rule for every backend keeps a key that works on one working on all.
pub const MAX_SEGMENT_LEN: usize = 200;
/// The ESDK provider id of KMS-wrapped data keys, whose provider info is the key ARN.
const KMS_PROVIDER_ID: &str = "aws-kms";

/// An object's metadata, read from its ESDK header without decrypting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The object key.
    pub key: String,
    /// Stored (encrypted) size in bytes.
    pub size: u64,
    /// When the backend last wrote it.
    pub last_modified: SystemTime,
    /// The KMS key ARNs that wrapped its data key (one per encrypted data key
    /// of provider `aws-kms`).
    pub kms_key_arns: Vec<String>,
    /// The encryption context stored in the header (unauthenticated until a get).
    pub context: EncryptionContext,
    /// Whether that context is exactly the one this store expects for the key.
    pub context_matches: bool,
    /// The ESDK algorithm suite id (0x0478 or 0x0578).
    pub suite_id: u16,
    /// The ESDK frame length.
    pub frame_length: u32,
}

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEntry {
    /// The object key.
    pub key: String,
    /// Stored (encrypted) size in bytes.
    pub size: u64,
    /// When the backend last wrote it.
    pub last_modified: SystemTime,
}

/// One storage class of one cluster, every object encrypted under the
/// keyring's KMS key. See the module doc.
pub struct EncryptedStore<K = KmsKeyring> {
    store: Arc<dyn ObjectStore>,
    /// The local backend's directory, where its uploads in progress are files of their own.
    local_dir: Option<std::path::PathBuf>,
    root: String,
    cluster: String,
    class: ObjectClass,
    client: Arc<Client<K>>,
}

fn check_name(name: &str) -> ObjectResult<()> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > 128 {
        Some("it is longer than 128 bytes")
    } else if name == "." || name == ".." {
        Some("it is a relative path segment")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        Some("only ASCII letters, digits, '-', '_' and '.' are allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(ObjectError::InvalidName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

pub(crate) fn check_key(key: &str) -> ObjectResult<()> {
    let invalid = |reason| {
        Err(ObjectError::InvalidKey {
            key: key.to_owned(),
            reason,
        })
    };
    if key.is_empty() {
        return invalid("it is empty");
    }
    if key.len() > MAX_KEY_LEN {
        return invalid("it is longer than 1024 bytes");
    }
    if key.chars().any(char::is_control) {
        return invalid("it contains control characters");
    }
    // The local backend names uploads in progress `<name>#<digits>`; refusing
    // '#' keeps every key distinct from every staging file.
    if key.contains('#') {
        return invalid("it contains '#'");
    }
    if key
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return invalid("it has an empty, '.' or '..' segment");
    }
    if key
        .split('/')
        .any(|segment| segment.len() > MAX_SEGMENT_LEN)
    {
        return invalid("a '/'-separated segment is longer than 200 bytes");
    }
    match Path::parse(key) {
        Ok(path) if path.as_ref() == key => Ok(()),
        _ => invalid("it is not a valid object path"),
    }
}

/// A list prefix is any string whose directory part (up to its last `/`) is a valid key, so a
/// listing never walks outside the store (`../`) or through a path the backend cannot name.
fn check_prefix(prefix: &str) -> ObjectResult<()> {
    let invalid = |reason| {
        Err(ObjectError::InvalidPrefix {
            prefix: prefix.to_owned(),
            reason,
        })
    };
    if prefix.len() > MAX_KEY_LEN {
        return invalid("it is longer than 1024 bytes");
    }
    if prefix.chars().any(char::is_control) || prefix.contains('#') {
        return invalid("it contains control characters or '#'");
    }
    match prefix.rfind('/') {
        Some(at) if check_key(&prefix[..at]).is_err() => {
            invalid("the part before its last '/' is not a valid object key (no empty, '.' or '..' segment)")
        }
        _ => Ok(()),
    }
}

fn mapped(key: &str, error: keyward_envelope::Error) -> ObjectError {
    match error {
        keyward_envelope::Error::Decrypt => ObjectError::Authentication {
            key: key.to_owned(),
        },
        source => ObjectError::Envelope {
            key: key.to_owned(),
            source,
        },
    }
}

fn store_error(key: &str, error: object_store::Error) -> ObjectError {
    match error {
        object_store::Error::NotFound { .. } => ObjectError::NotFound {
            key: key.to_owned(),
        },
        other => ObjectError::Store(other),
    }
}

impl<K: Keyring> EncryptedStore<K> {
    /// A store over any backend. `cluster` must be a plain name (letters,
    /// digits, `-`, `_`, `.`).
    pub fn new(
        store: Arc<dyn ObjectStore>,
        cluster: &str,
        class: ObjectClass,
        client: Arc<Client<K>>,
    ) -> ObjectResult<EncryptedStore<K>> {
        check_name(cluster)?;
        Ok(EncryptedStore {
            store,
            local_dir: None,
            root: format!("{cluster}/{}", class.as_str()),
            cluster: cluster.to_owned(),
            class,
            client,
        })
    }

    /// A store on the local filesystem under `dir` (created if missing), with
    /// fsync on every publish so an acknowledged put survives a crash.
    pub fn local(
        dir: &std::path::Path,
        cluster: &str,
        class: ObjectClass,
        client: Arc<Client<K>>,
    ) -> ObjectResult<EncryptedStore<K>> {
        std::fs::create_dir_all(dir).map_err(|source| {
            ObjectError::Store(object_store::Error::Generic {
                store: "LocalFileSystem",
                source: Box::new(source),
            })
        })?;
        let local = LocalFileSystem::new_with_prefix(dir)?.with_fsync(true);
        let mut store = EncryptedStore::new(Arc::new(local), cluster, class, client)?;
        store.local_dir = Some(dir.to_path_buf());
        Ok(store)
    }

    /// A store in an S3 bucket (Amazon S3 or any S3-compatible endpoint). The
    /// bucket must exist; nothing is sent until the first operation.
    pub fn s3(
        config: &S3Config,
        cluster: &str,
        class: ObjectClass,
        client: Arc<Client<K>>,
    ) -> ObjectResult<EncryptedStore<K>> {
        EncryptedStore::new(s3_backend(config)?, cluster, class, client)
    }

    /// The envelope client (its keyring names the KMS key).
    pub fn client(&self) -> &Arc<Client<K>> {
        &self.client
    }

    /// The cluster name.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The storage class.
    pub fn class(&self) -> ObjectClass {
        self.class
    }

    /// The backend, for tools that must look at raw bytes (verification).
    pub fn backend(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The backend path of an object key.
    pub fn path_of(&self, key: &str) -> ObjectResult<Path> {
        check_key(key)?;
        Ok(Path::parse(format!("{}/{key}", self.root)).map_err(object_store::Error::from)?)
    }

    /// The encryption context of an object of this store.
    pub fn context_for(&self, key: &str) -> EncryptionContext {
        EncryptionContext::from([
            (CLUSTER_CONTEXT_KEY.to_owned(), self.cluster.clone()),
            (CLASS_CONTEXT_KEY.to_owned(), self.class.as_str().to_owned()),
            (OBJECT_CONTEXT_KEY.to_owned(), key.to_owned()),
        ])
    }

    fn decrypt_options(&self, key: &str) -> DecryptOptions {
        let context = self.context_for(key);
        DecryptOptions {
            required_keys: context.keys().cloned().collect(),
            context,
        }
    }

    /// Encrypts `plaintext` into the object `key`, replacing any previous
    /// version atomically. Returns the stored size. The data-key cache (if the
    /// client has one) serves puts of known length.
    pub async fn put_bytes(&self, key: &str, plaintext: &[u8]) -> ObjectResult<u64> {
        let path = self.path_of(key)?;
        self.refuse_clash(key).await?;
        let message = self
            .client
            .encrypt_to_vec(plaintext, &self.context_for(key))
            .await
            .map_err(|e| mapped(key, e))?;
        let size = message.len() as u64;
        if let Err(error) = self.store.put(&path, PutPayload::from(message)).await {
            return Err(self.publish_error(key, error).await);
        }
        Ok(size)
    }

    /// Streams `reader` into the object `key`, encrypting frame by frame; the
    /// object appears (replacing any previous version) only once the whole
    /// message is stored. Returns the plaintext length. On any error the upload
    /// is aborted and the previous version, if any, stays.
    pub async fn put_reader<R>(&self, key: &str, reader: &mut R) -> ObjectResult<u64>
    where
        R: AsyncRead + Unpin + ?Sized,
    {
        let path = self.path_of(key)?;
        self.refuse_clash(key).await?;
        let encryption = self
            .client
            .begin_encrypt(&self.context_for(key), &EncryptOptions::default())
            .await
            .map_err(|e| mapped(key, e))?;
        let mut writer = BufWriter::with_capacity(self.store.clone(), path, PART_SIZE)
            .with_max_concurrency(PARTS_IN_FLIGHT);
        let written = match encryption.write_async(reader, &mut writer).await {
            Ok(n) => n,
            Err(error) => {
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(key, error = %abort, "aborting a failed upload failed");
                }
                return Err(mapped(key, error));
            }
        };
        // Completing the upload is the publish step (rename or S3 complete).
        if let Err(error) = writer.shutdown().await {
            let error = object_store::Error::Generic {
                store: "BufWriter",
                source: Box::new(error),
            };
            return Err(self.publish_error(key, error).await);
        }
        Ok(written)
    }

    /// A failed publish: two puts racing past `refuse_clash` (`a` and `a/b` at once) meet here on
    /// the local backend, as a file where a directory must be or the reverse; say so.
    async fn publish_error(&self, key: &str, error: object_store::Error) -> ObjectError {
        match self.clash_of(key).await {
            Some(existing) => ObjectError::Conflict {
                key: key.to_owned(),
                existing,
            },
            None => ObjectError::Store(error),
        }
    }

    /// A key can be an object or the prefix of other objects (`a` or `a/b`), not both: S3 would
    /// take both, the local backend neither (a file cannot also be a directory), so every backend
    /// refuses alike, before any byte is written.
    async fn refuse_clash(&self, key: &str) -> ObjectResult<()> {
        match self.clash_of(key).await {
            Some(existing) => Err(ObjectError::Conflict {
                key: key.to_owned(),
                existing,
            }),
            None => Ok(()),
        }
    }

    /// The existing key that `key` would clash with, if any.
    async fn clash_of(&self, key: &str) -> Option<String> {
        // An object at one of the key's own prefixes (`a` when putting `a/b/c`).
        let mut at = 0;
        while let Some(slash) = key[at..].find('/') {
            let ancestor = &key[..at + slash];
            if let Ok(path) = self.path_of(ancestor) {
                if self.store.head(&path).await.is_ok() {
                    return Some(ancestor.to_owned());
                }
            }
            at += slash + 1;
        }
        // Objects under the key as a prefix (`a/b` when putting `a`).
        let path = self.path_of(key).ok()?;
        let mut under = self.store.list(Some(&path));
        while let Ok(Some(meta)) = under.try_next().await {
            if meta.location != path {
                let root = format!("{}/", self.root);
                let found = meta.location.as_ref().strip_prefix(&root)?.to_owned();
                return Some(found);
            }
        }
        None
    }

    async fn open(
        &self,
        key: &str,
    ) -> ObjectResult<(object_store::ObjectMeta, Box<dyn AsyncRead + Unpin + Send>)> {
        let path = self.path_of(key)?;
        let result = self
            .store
            .get(&path)
            .await
            .map_err(|e| store_error(key, e))?;
        let meta = result.meta.clone();
        let reader: Box<dyn AsyncRead + Unpin + Send> = match result.payload {
            // The local backend hands over the open file: read it in large
            // blocks (its generic stream reads 8 KiB per blocking call). The
            // file stays the version opened even if a put renames over it.
            GetResultPayload::File(file, _) => Box::new(tokio::io::BufReader::with_capacity(
                READ_BLOCK,
                tokio::fs::File::from_std(file),
            )),
            GetResultPayload::Stream(stream) => {
                Box::new(StreamReader::new(stream.map_err(std::io::Error::other)))
            }
        };
        Ok((meta, reader))
    }

    async fn read_header<R: AsyncRead + Unpin>(
        &self,
        key: &str,
        reader: &mut R,
    ) -> ObjectResult<UnverifiedHeader> {
        UnverifiedHeader::read_async(reader, self.client.config())
            .await
            .map_err(|error| match error {
                keyward_envelope::Error::Decrypt
                | keyward_envelope::Error::UnsupportedVersion(_) => ObjectError::NotEncrypted {
                    key: key.to_owned(),
                },
                keyward_envelope::Error::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    ObjectError::NotEncrypted {
                        key: key.to_owned(),
                    }
                }
                other => mapped(key, other),
            })
    }

    /// Streams the object's plaintext into `writer`, returning its length.
    ///
    /// As with any streaming ESDK decryption, frames are written as each is
    /// authenticated and the end of the message is proved last: when this
    /// returns an error, the caller must discard what was written.
    pub async fn get_to<W>(&self, key: &str, writer: &mut W) -> ObjectResult<u64>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        let (_, mut reader) = self.open(key).await?;
        let header = self.read_header(key, &mut reader).await?;
        let decryption = self
            .client
            .begin_decrypt(header, &self.decrypt_options(key))
            .await
            .map_err(|e| mapped(key, e))?;
        decryption
            .read_async(&mut reader, writer)
            .await
            .map_err(|e| mapped(key, e))
    }

    /// The object's whole plaintext, returned only once it is fully authenticated.
    pub async fn get_bytes(&self, key: &str) -> ObjectResult<Vec<u8>> {
        let mut out = Vec::new();
        self.get_to(key, &mut out).await?;
        Ok(out)
    }

    /// The object's metadata — KMS key ARNs, encryption context, suite —
    /// parsed from its ESDK header, with no KMS call and without reading the body.
    pub async fn head(&self, key: &str) -> ObjectResult<ObjectInfo> {
        let (meta, mut reader) = self.open(key).await?;
        let raw = self.read_header(key, &mut reader).await?;
        let header = raw.header();
        let kms_key_arns = header
            .encrypted_data_keys
            .iter()
            .filter(|edk| edk.provider_id == KMS_PROVIDER_ID)
            .map(|edk| String::from_utf8_lossy(&edk.provider_info).into_owned())
            .collect();
        Ok(ObjectInfo {
            key: key.to_owned(),
            size: meta.size,
            last_modified: SystemTime::from(meta.last_modified),
            kms_key_arns,
            context_matches: header.context == self.context_for(key),
            context: header.context.clone(),
            suite_id: header.suite.id(),
            frame_length: header.frame_length,
        })
    }

    /// The objects whose key starts with `prefix` (any string; `""` lists
    /// all), sorted by key.
    pub async fn list(&self, prefix: &str) -> ObjectResult<Vec<ObjectEntry>> {
        check_prefix(prefix)?;
        // The backend lists by whole path segments: list the directory part of
        // the prefix and filter on the rest.
        let directory = match prefix.rfind('/') {
            Some(at) => format!("{}/{}", self.root, &prefix[..at]),
            None => self.root.clone(),
        };
        let directory = Path::parse(&directory).map_err(object_store::Error::from)?;
        let root = format!("{}/", self.root);
        let mut entries: Vec<ObjectEntry> = self
            .store
            .list(Some(&directory))
            .try_filter_map(|meta| {
                let key = meta
                    .location
                    .as_ref()
                    .strip_prefix(&root)
                    .filter(|key| key.starts_with(prefix) && check_key(key).is_ok())
                    .map(|key| ObjectEntry {
                        key: key.to_owned(),
                        size: meta.size,
                        last_modified: SystemTime::from(meta.last_modified),
                    });
                futures::future::ready(Ok(key))
            })
            .try_collect()
            .await?;
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(entries)
    }

    /// Removes the local backend's uploads in progress (`<name>#<digits>` files) last written
    /// more than `older_than` ago, and returns how many. A put that was killed (or whose process
    /// was) leaves its staging file behind: never visible as an object, but still bytes under the
    /// key of its day, which a key change would not re-wrap. With `older_than` zero this is for
    /// start-up, before any put runs; later, an age no live upload reaches between two writes.
    /// S3 keeps unfinished multipart uploads out of sight; a bucket lifecycle rule ends them.
    pub fn remove_stale_uploads(&self, older_than: std::time::Duration) -> ObjectResult<usize> {
        let Some(dir) = &self.local_dir else {
            return Ok(0);
        };
        let io = |source: std::io::Error| {
            ObjectError::Store(object_store::Error::Generic {
                store: "LocalFileSystem",
                source: Box::new(source),
            })
        };
        let mut removed = 0;
        let mut pending = vec![dir.join(&self.root)];
        while let Some(dir) = pending.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => return Err(io(error)),
            };
            for entry in entries {
                let entry = entry.map_err(io)?;
                let meta = entry.metadata().map_err(io)?;
                if meta.is_dir() {
                    pending.push(entry.path());
                    continue;
                }
                let age = meta
                    .modified()
                    .ok()
                    .and_then(|at| at.elapsed().ok())
                    .unwrap_or_default();
                if crate::verify::is_staged_upload(&entry.path()) && age >= older_than {
                    match std::fs::remove_file(entry.path()) {
                        Ok(()) => removed += 1,
                        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                        Err(error) => return Err(io(error)),
                    }
                }
            }
        }
        Ok(removed)
    }

    /// Deletes the object. Deleting a missing object is not an error (as on S3).
    pub async fn delete(&self, key: &str) -> ObjectResult<()> {
        let path = self.path_of(key)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(other) => Err(ObjectError::Store(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_could_escape_or_clash_are_refused() {
        for bad in [
            "",
            "/a",
            "a/",
            "a//b",
            "../x",
            "a/./b",
            "a#1",
            "x\ny",
            &"k".repeat(1025),
        ] {
            assert!(
                matches!(check_key(bad), Err(ObjectError::InvalidKey { .. })),
                "{bad:?}"
            );
        }
        for good in ["a", "reports/2026/q4.pdf", "name with spaces.txt", "ü-ß"] {
            check_key(good).unwrap();
        }
        check_key(&format!("dir/{}", "s".repeat(MAX_SEGMENT_LEN))).unwrap();
        for long in [
            "s".repeat(MAX_SEGMENT_LEN + 1),
            format!("dir/{}", "s".repeat(254)),
        ] {
            assert!(
                matches!(check_key(&long), Err(ObjectError::InvalidKey { .. })),
                "{long}"
            );
        }
    }

    #[test]
    fn prefixes_that_would_leave_the_store_are_refused() {
        for bad in ["../", "../x", "a/../", "a//b", "./", "/", "a\nb/", "a#1/"] {
            assert!(
                matches!(check_prefix(bad), Err(ObjectError::InvalidPrefix { .. })),
                "{bad:?}"
            );
        }
        for good in ["", "a", "a/", "reports/20", "..x", "a/.b"] {
            check_prefix(good).unwrap();
        }
    }

    #[test]
    fn store_names_are_single_plain_segments() {
        for bad in ["", ".", "..", "a/b", "a b", "clüster"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        check_name("prod-eu_1.a").unwrap();
    }
}
