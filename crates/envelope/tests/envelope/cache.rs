//! The data-key cache: never past its age, message or byte limit; drop_key
//! takes effect for the very next call; KMS calls saved are counted.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use keyward_envelope::{
    CacheLimits, Client, Config, DataKey, DataKeyCache, DecryptOptions, EncryptedDataKey,
    EncryptionContext, Keyring, RawAesKeyring, Suite,
};

use crate::common::{context, keyring};

/// The real raw AES keyring, with a count of the calls that reached it (the
/// stand-in for KMS calls; the KMS-backed count is in the interop tests).
struct Counted {
    inner: RawAesKeyring,
    generates: AtomicU64,
    unwraps: AtomicU64,
}

impl Keyring for Counted {
    fn key_ids(&self) -> Vec<String> {
        self.inner.key_ids()
    }
    async fn generate(
        &self,
        suite: Suite,
        ctx: &EncryptionContext,
    ) -> keyward_envelope::Result<(DataKey, Vec<EncryptedDataKey>)> {
        self.generates.fetch_add(1, Ordering::SeqCst);
        self.inner.generate(suite, ctx).await
    }
    async fn unwrap(
        &self,
        suite: Suite,
        edks: &[EncryptedDataKey],
        ctx: &EncryptionContext,
    ) -> keyward_envelope::Result<Option<DataKey>> {
        self.unwraps.fetch_add(1, Ordering::SeqCst);
        self.inner.unwrap(suite, edks, ctx).await
    }
}

fn cached(limits: CacheLimits, suite: Suite) -> (Client<Counted>, Arc<DataKeyCache>) {
    let cache = Arc::new(DataKeyCache::new(limits).unwrap());
    let keyring = Counted {
        inner: keyring(),
        generates: AtomicU64::new(0),
        unwraps: AtomicU64::new(0),
    };
    let client = Client::new(
        keyring,
        Config {
            suite,
            frame_length: 4096,
            ..Config::default()
        },
    )
    .unwrap()
    .with_cache(cache.clone());
    (client, cache)
}

fn edk_of(message: &[u8]) -> Vec<EncryptedDataKey> {
    keyward_envelope::header::Header::parse(message, 16)
        .unwrap()
        .0
        .encrypted_data_keys
}

fn generates(client: &Client<Counted>) -> u64 {
    client.keyring().generates.load(Ordering::SeqCst)
}

#[tokio::test]
async fn message_limit_is_never_exceeded() {
    let limits = CacheLimits {
        max_messages: 3,
        ..CacheLimits::default()
    };
    let (client, cache) = cached(limits, Suite::Aes256GcmHkdfSha512Commit);
    let ctx = context(&[("cluster", "c-1")]);
    let mut keys = Vec::new();
    for _ in 0..10 {
        keys.push(edk_of(
            &client.encrypt_to_vec(b"hello", &ctx).await.unwrap(),
        ));
    }
    for chunk in keys.chunks(3) {
        assert!(
            chunk.iter().all(|k| *k == chunk[0]),
            "one data key serves at most 3 messages"
        );
    }
    assert_ne!(keys[2], keys[3]);
    assert_eq!(generates(&client), 4);
    assert_eq!(cache.kms_calls_saved(), 6);
}

#[tokio::test]
async fn byte_limit_is_never_exceeded() {
    let limits = CacheLimits {
        max_bytes: 1000,
        ..CacheLimits::default()
    };
    let (client, cache) = cached(limits, Suite::Aes256GcmHkdfSha512Commit);
    let ctx = context(&[]);
    let a = edk_of(&client.encrypt_to_vec(&[0; 600], &ctx).await.unwrap());
    let b = edk_of(&client.encrypt_to_vec(&[0; 400], &ctx).await.unwrap());
    assert_eq!(a, b, "600 + 400 bytes fit the 1000-byte limit");
    let c = edk_of(&client.encrypt_to_vec(&[0; 1], &ctx).await.unwrap());
    assert_ne!(b, c, "a 1001st byte needs a new data key");
    // A message larger than the limit is never cached at all.
    let d = edk_of(&client.encrypt_to_vec(&[0; 1001], &ctx).await.unwrap());
    let e = edk_of(&client.encrypt_to_vec(&[0; 1], &ctx).await.unwrap());
    assert_ne!(d, e);
    assert_ne!(
        e, c,
        "the entry that could not take the 1001 bytes was evicted"
    );
    assert_eq!(cache.kms_calls_saved(), 1);
}

#[tokio::test]
async fn age_limit_is_never_exceeded() {
    let limits = CacheLimits {
        max_age: Duration::from_millis(1000),
        ..CacheLimits::default()
    };
    let (client, _cache) = cached(limits, Suite::Aes256GcmHkdfSha512Commit);
    let ctx = context(&[]);
    let a = edk_of(&client.encrypt_to_vec(b"x", &ctx).await.unwrap());
    let b = edk_of(&client.encrypt_to_vec(b"x", &ctx).await.unwrap());
    assert_eq!(a, b);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let c = edk_of(&client.encrypt_to_vec(b"x", &ctx).await.unwrap());
    assert_ne!(a, c, "a data key older than max_age is not served");
    // Decryption entries age out too.
    let message = client.encrypt_to_vec(b"y", &ctx).await.unwrap();
    client
        .decrypt_to_vec(&message, &DecryptOptions::default())
        .await
        .unwrap();
    client
        .decrypt_to_vec(&message, &DecryptOptions::default())
        .await
        .unwrap();
    assert_eq!(client.keyring().unwraps.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    client
        .decrypt_to_vec(&message, &DecryptOptions::default())
        .await
        .unwrap();
    assert_eq!(client.keyring().unwraps.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn drop_key_takes_effect_for_the_very_next_call() {
    let (client, cache) = cached(CacheLimits::default(), Suite::Aes256GcmHkdfSha512Commit);
    let ctx = context(&[("cluster", "c-1")]);
    let message = client.encrypt_to_vec(b"x", &ctx).await.unwrap();
    client
        .decrypt_to_vec(&message, &DecryptOptions::default())
        .await
        .unwrap();
    client
        .decrypt_to_vec(&message, &DecryptOptions::default())
        .await
        .unwrap();
    let _ = client.encrypt_to_vec(b"x", &ctx).await.unwrap();
    assert_eq!(
        (
            generates(&client),
            client.keyring().unwraps.load(Ordering::SeqCst)
        ),
        (1, 1)
    );
    assert_eq!(cache.len(), 2);

    cache.drop_key("some-other-key");
    assert_eq!(cache.len(), 2, "other keys' drops leave this key alone");
    cache.drop_key(&client.keyring().key_ids()[0]);
    assert!(cache.is_empty());
    let _ = client.encrypt_to_vec(b"x", &ctx).await.unwrap();
    assert_eq!(
        generates(&client),
        2,
        "the next encrypt went to the keyring"
    );
    client
        .decrypt_to_vec(&message, &DecryptOptions::default())
        .await
        .unwrap();
    assert_eq!(
        client.keyring().unwraps.load(Ordering::SeqCst),
        2,
        "the next decrypt went to the keyring"
    );
}

#[tokio::test]
async fn entries_are_capped_and_keyed_by_context_and_suite() {
    let limits = CacheLimits {
        max_entries: 4,
        ..CacheLimits::default()
    };
    let (client, cache) = cached(limits, Suite::Aes256GcmHkdfSha512CommitEcdsaP384);
    for i in 0..10 {
        let ctx = context(&[("object", &i.to_string())]);
        let first = client.encrypt_to_vec(b"x", &ctx).await.unwrap();
        let second = client.encrypt_to_vec(b"x", &ctx).await.unwrap();
        assert_eq!(
            edk_of(&first),
            edk_of(&second),
            "same context, same cached key (signed suite too)"
        );
        // Both messages decrypt: the cached signing key matches the cached context.
        client
            .decrypt_to_vec(&second, &DecryptOptions::default())
            .await
            .unwrap();
        assert!(cache.len() <= 4);
    }
    assert_eq!(generates(&client), 10, "one data key per context");
}

#[tokio::test]
async fn unknown_length_streams_bypass_the_cache() {
    let (client, cache) = cached(CacheLimits::default(), Suite::Aes256GcmHkdfSha512Commit);
    for _ in 0..3 {
        let mut out = Vec::new();
        client
            .encrypt_async(
                &context(&[]),
                &Default::default(),
                &mut &b"abc"[..],
                &mut out,
            )
            .await
            .unwrap();
    }
    assert_eq!(generates(&client), 3);
    assert_eq!(cache.kms_calls_saved(), 0);
}
