//! The data-key cache, as the ESDK's caching CMM (`framework/caching-cmm.md`).
//!
//! Encryption entries are keyed by the keyring's key ids (key ARNs), the suite
//! and the caller's encryption context; each holds a data key, its wrapped
//! forms and (for signed suites) the signing key, and may serve a bounded
//! number of messages and plaintext bytes for a bounded time. Decryption
//! entries are keyed by key ids, suite, encrypted data keys and the full
//! context, and live as long. A hard cap bounds the number of entries (oldest
//! evicted first). [`DataKeyCache::drop_key`] removes every entry of a key at
//! once, under the same lock every lookup takes, so the very next call misses.
//!
//! Plaintext keys are zeroized when the last reference to an evicted entry is
//! dropped: at once, or when an encryption already using it finishes.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use crate::{keys::DataKey, EncryptedDataKey, EncryptionContext, Error, Result};

/// Limits of the cache. `max_age` is required by the ESDK; the others default
/// to the ESDK's (2^32 messages, unbounded bytes) except the entry cap.
#[derive(Debug, Clone)]
pub struct CacheLimits {
    /// How long a data key may be used after it was generated or unwrapped.
    pub max_age: Duration,
    /// Messages one cached data key may encrypt.
    pub max_messages: u64,
    /// Plaintext bytes one cached data key may encrypt.
    pub max_bytes: u64,
    /// Hard cap on entries (encryption and decryption entries together).
    pub max_entries: usize,
}

impl Default for CacheLimits {
    fn default() -> Self {
        // Short by default (DESIGN invariant 2: fail closed quickly).
        CacheLimits {
            max_age: Duration::from_secs(60),
            max_messages: 1 << 32,
            max_bytes: u64::MAX,
            max_entries: 1000,
        }
    }
}

/// What an encryption entry holds.
pub(crate) struct EncryptMaterials {
    pub(crate) data_key: DataKey,
    pub(crate) edks: Vec<EncryptedDataKey>,
    /// The full context, including `aws-crypto-public-key` for signed suites.
    pub(crate) context: EncryptionContext,
    pub(crate) signing_key: Option<aws_lc_rs::signature::EcdsaKeyPair>,
}

#[derive(PartialEq, Eq, Hash, Clone)]
pub(crate) struct EncryptKey {
    pub(crate) key_ids: Vec<String>,
    pub(crate) suite: u16,
    pub(crate) context: Vec<u8>,
}

#[derive(PartialEq, Eq, Hash, Clone)]
pub(crate) struct DecryptKey {
    pub(crate) key_ids: Vec<String>,
    pub(crate) suite: u16,
    pub(crate) edks: Vec<EncryptedDataKey>,
    pub(crate) context: Vec<u8>,
}

struct Entry<T> {
    value: Arc<T>,
    created: Instant,
    messages: u64,
    bytes: u64,
}

#[derive(Default)]
struct Inner {
    encrypt: HashMap<EncryptKey, Entry<EncryptMaterials>>,
    decrypt: HashMap<DecryptKey, Entry<DataKey>>,
}

/// A bounded, shareable data-key cache. Share it with `Arc` between the
/// clients of one key and the control plane that may drop the key.
pub struct DataKeyCache {
    limits: CacheLimits,
    inner: Mutex<Inner>,
    saved: AtomicU64,
    missed: AtomicU64,
}

impl DataKeyCache {
    /// An empty cache.
    pub fn new(limits: CacheLimits) -> Result<DataKeyCache> {
        if limits.max_age.is_zero() || limits.max_messages == 0 || limits.max_entries == 0 {
            return Err(Error::Config("cache limits must be positive".into()));
        }
        Ok(DataKeyCache {
            limits,
            inner: Mutex::new(Inner::default()),
            saved: AtomicU64::new(0),
            missed: AtomicU64::new(0),
        })
    }

    /// The limits in force.
    pub fn limits(&self) -> &CacheLimits {
        &self.limits
    }

    /// KMS (keyring) calls the cache has saved so far.
    pub fn kms_calls_saved(&self) -> u64 {
        self.saved.load(Ordering::Relaxed)
    }

    /// Lookups the cache could not serve (no entry, or one past its limits) so far: each is a
    /// KMS (keyring) call. With [`DataKeyCache::kms_calls_saved`], the hits, it is the hit ratio.
    pub fn misses(&self) -> u64 {
        self.missed.load(Ordering::Relaxed)
    }

    /// Number of live entries.
    pub fn len(&self) -> usize {
        let inner = self.lock();
        inner.encrypt.len() + inner.decrypt.len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every entry that uses `key_id` (a key ARN), at once.
    pub fn drop_key(&self, key_id: &str) {
        let mut inner = self.lock();
        inner
            .encrypt
            .retain(|k, _| !k.key_ids.iter().any(|id| id == key_id));
        inner
            .decrypt
            .retain(|k, _| !k.key_ids.iter().any(|id| id == key_id));
    }

    /// Drops everything.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.encrypt.clear();
        inner.decrypt.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps inconsistent
        // (every mutation is a single insert/remove), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A cached entry that may encrypt one more message of `bytes` bytes; the
    /// use is counted. An entry past any limit is evicted and `None` returned.
    pub(crate) fn take_encrypt(
        &self,
        key: &EncryptKey,
        bytes: u64,
    ) -> Option<Arc<EncryptMaterials>> {
        let mut inner = self.lock();
        let Some(entry) = inner.encrypt.get_mut(key) else {
            self.missed.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        let fits = entry.created.elapsed() < self.limits.max_age
            && entry.messages < self.limits.max_messages
            && entry
                .bytes
                .checked_add(bytes)
                .is_some_and(|b| b <= self.limits.max_bytes);
        if !fits {
            inner.encrypt.remove(key);
            self.missed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        entry.messages += 1;
        entry.bytes += bytes;
        self.saved.fetch_add(1, Ordering::Relaxed);
        Some(entry.value.clone())
    }

    /// Caches fresh materials that already encrypted one message of `bytes`.
    pub(crate) fn put_encrypt(&self, key: EncryptKey, value: Arc<EncryptMaterials>, bytes: u64) {
        if bytes > self.limits.max_bytes {
            return;
        }
        let mut inner = self.lock();
        Self::make_room(&mut inner, self.limits.max_entries);
        inner.encrypt.insert(
            key,
            Entry {
                value,
                created: Instant::now(),
                messages: 1,
                bytes,
            },
        );
    }

    pub(crate) fn get_decrypt(&self, key: &DecryptKey) -> Option<Arc<DataKey>> {
        let mut inner = self.lock();
        let Some(entry) = inner.decrypt.get(key) else {
            self.missed.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        if entry.created.elapsed() >= self.limits.max_age {
            inner.decrypt.remove(key);
            self.missed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.saved.fetch_add(1, Ordering::Relaxed);
        Some(entry.value.clone())
    }

    pub(crate) fn put_decrypt(&self, key: DecryptKey, value: Arc<DataKey>) {
        let mut inner = self.lock();
        Self::make_room(&mut inner, self.limits.max_entries);
        inner.decrypt.insert(
            key,
            Entry {
                value,
                created: Instant::now(),
                messages: 0,
                bytes: 0,
            },
        );
    }

    /// Evicts expired-first-then-oldest entries until one more fits.
    fn make_room(inner: &mut Inner, max_entries: usize) {
        while inner.encrypt.len() + inner.decrypt.len() >= max_entries {
            let oldest_enc = inner
                .encrypt
                .iter()
                .min_by_key(|(_, e)| e.created)
                .map(|(k, e)| (k.clone(), e.created));
            let oldest_dec = inner
                .decrypt
                .iter()
                .min_by_key(|(_, e)| e.created)
                .map(|(k, e)| (k.clone(), e.created));
            match (oldest_enc, oldest_dec) {
                (Some((k, a)), Some((_, b))) if a <= b => {
                    inner.encrypt.remove(&k);
                }
                (_, Some((k, _))) => {
                    inner.decrypt.remove(&k);
                }
                (Some((k, _)), None) => {
                    inner.encrypt.remove(&k);
                }
                (None, None) => return,
            }
        }
    }
}
