//! Re-wrap under a new key against the real embedded KMS, as the cluster's principal whose key
//! policies hold only the guide's statements (no ReEncrypt): the re-wrap gives itself two
//! short-lived grants and retires them. After the re-wrap the old key is disabled and every
//! message, object and volume still opens, with the new key only — and the official AWS
//! Encryption CLI agrees.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use keyward_envelope::rewrap::{rewrap_message, RewrapOutcome, Rewrapper, REWRAP_GRANT_NAME};
use keyward_envelope::{Client, Config, EncryptionContext, KmsKeyring};
use keyward_storage::objects::{EncryptedStore, ObjectClass};
use keyward_storage::rewrap::{recover_volume_rewrap, rewrap_object, rewrap_volume};
use keyward_storage::volume::kms::{attach_volume, create_volume, AwsKms, NewVolume};

use crate::health::{start, HealthKms, CLUSTER_PRINCIPAL};

const CLUSTER_ID: &str = "c-00aa11bb22cc33dd";

fn context(object: &str) -> EncryptionContext {
    EncryptionContext::from([
        ("keyward:cluster".to_owned(), CLUSTER_ID.to_owned()),
        ("keyward:class".to_owned(), "documents".to_owned()),
        ("keyward:object".to_owned(), object.to_owned()),
    ])
}

fn rewrapper(kms: &HealthKms, old: &str, new: &str) -> Rewrapper {
    Rewrapper::new(kms.cluster.clone(), old, new).with_grants(
        CLUSTER_PRINCIPAL,
        &EncryptionContext::from([("keyward:cluster".to_owned(), CLUSTER_ID.to_owned())]),
    )
}

fn client(kms: &HealthKms, key: &str) -> Client<KmsKeyring> {
    Client::new(KmsKeyring::new(kms.cluster.clone(), key), Config::default()).unwrap()
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// The header length (body and tag) of a message.
fn header_len(message: &[u8]) -> usize {
    let (_, body) = keyward_envelope::header::Header::parse(message, 16).unwrap();
    body + keyward_envelope::header::AUTH_TAG_LEN
}

async fn rewrap_grants(kms: &HealthKms, key: &str) -> usize {
    kms.customer
        .list_grants()
        .key_id(key)
        .send()
        .await
        .unwrap()
        .grants()
        .iter()
        .filter(|g| g.name() == Some(REWRAP_GRANT_NAME))
        .count()
}

fn tool(name: &str) -> Command {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(name))
                .find(|p| p.is_file())
        })
        .map(Command::new)
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not on PATH: run scripts/test (or put the project venv's bin first)"
            )
        })
}

/// The customer opens a message with the official AWS Encryption CLI and their key.
async fn decrypt_with_the_cli(kms: &HealthKms, input: &Path, key: &str, object: &str) -> Vec<u8> {
    let server = kms.server.as_ref().unwrap();
    let output = kms.dir.path().join("cli-out");
    let mut command = tool("aws-encryption-cli");
    command
        .env("AWS_ENDPOINT_URL_KMS", server.endpoint())
        .env("AWS_ACCESS_KEY_ID", "AKIACUSTOMERHEALTH01")
        .env("AWS_SECRET_ACCESS_KEY", "customer-secret-for-health-tests")
        .env("AWS_DEFAULT_REGION", server.region())
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args([
            "--decrypt",
            "-S",
            "--commitment-policy",
            "require-encrypt-require-decrypt",
        ])
        .arg("-i")
        .arg(input)
        .arg("-o")
        .arg(&output)
        .args(["--wrapping-keys", &format!("key={key}")])
        .args([
            "--encryption-context",
            &format!("keyward:cluster={CLUSTER_ID}"),
            "keyward:class=documents",
            &format!("keyward:object={object}"),
        ]);
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "aws-encryption-cli failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(&output).unwrap()
}

#[tokio::test]
async fn a_rewrapped_message_opens_with_only_the_new_key_and_with_the_official_cli() {
    let kms = start().await;
    let old = kms.key(|_| {}).await;
    let new = kms.key(|_| {}).await;
    let plaintext = pattern(300_000, 7);
    let message = client(&kms, &old)
        .encrypt_to_vec(&plaintext, &context("reports/q3.pdf"))
        .await
        .unwrap();

    let rw = rewrapper(&kms, &old, &new);
    let mut rewrapped = Vec::new();
    let outcome = rewrap_message(
        &rw,
        &mut &message[..],
        &mut rewrapped,
        &EncryptionContext::new(),
    )
    .await
    .unwrap();
    assert_eq!(outcome, RewrapOutcome::Rewrapped);
    // The key policies do not allow ReEncrypt: the re-wrap used its own grants, one per key.
    assert!(rw.used_grants().await);
    assert_eq!(rewrap_grants(&kms, &old).await, 1);
    assert_eq!(rewrap_grants(&kms, &new).await, 1);
    rw.finish().await.unwrap();
    assert_eq!(
        rewrap_grants(&kms, &old).await,
        0,
        "grant on the old key not retired"
    );
    assert_eq!(
        rewrap_grants(&kms, &new).await,
        0,
        "grant on the new key not retired"
    );

    // Only the header changed: the frames are copied byte for byte.
    let (old_len, new_len) = (header_len(&message), header_len(&rewrapped));
    assert_eq!(message[old_len..], rewrapped[new_len..]);
    let (header, _) = keyward_envelope::header::Header::parse(&rewrapped, 16).unwrap();
    let arns: Vec<_> = header
        .encrypted_data_keys
        .iter()
        .map(|e| String::from_utf8(e.provider_info.clone()).unwrap())
        .collect();
    assert_eq!(arns, std::slice::from_ref(&new));

    // The old key disabled: the new key opens it, the old one cannot open anything.
    kms.customer
        .disable_key()
        .key_id(&old)
        .send()
        .await
        .unwrap();
    let options = keyward_envelope::DecryptOptions {
        context: context("reports/q3.pdf"),
        required_keys: Vec::new(),
    };
    let opened = client(&kms, &new)
        .decrypt_to_vec(&rewrapped, &options)
        .await
        .unwrap();
    assert!(opened.0 == plaintext);
    assert!(client(&kms, &old)
        .decrypt_to_vec(&message, &options)
        .await
        .is_err());
    // The customer's escape hatch still works.
    let file = kms.dir.path().join("rewrapped.esdk");
    std::fs::write(&file, &rewrapped).unwrap();
    assert!(decrypt_with_the_cli(&kms, &file, &new, "reports/q3.pdf").await == plaintext);

    // Again: nothing to do, no KMS call needed (the old key is disabled), bytes unchanged.
    let rw = rewrapper(&kms, &old, &new);
    let mut again = Vec::new();
    let outcome = rewrap_message(
        &rw,
        &mut &rewrapped[..],
        &mut again,
        &EncryptionContext::new(),
    )
    .await
    .unwrap();
    assert_eq!(outcome, RewrapOutcome::AlreadyRewrapped);
    assert!(again == rewrapped);
    assert!(!rw.used_grants().await);
}

#[tokio::test]
async fn a_tampered_header_is_refused_and_nothing_is_written() {
    let kms = start().await;
    let old = kms.key(|_| {}).await;
    let new = kms.key(|_| {}).await;
    let message = client(&kms, &old)
        .encrypt_to_vec(&pattern(10_000, 1), &context("a"))
        .await
        .unwrap();
    // The frame length (4 bytes before the 32-byte commitment key): the data key still
    // unwraps, but the header tag no longer matches. A re-wrap must not re-seal it.
    let (_, body) = keyward_envelope::header::Header::parse(&message, 16).unwrap();
    let mut tampered = message.clone();
    tampered[body - 33] ^= 0x01;
    let rw = rewrapper(&kms, &old, &new);
    let mut out = Vec::new();
    let err = rewrap_message(&rw, &mut &tampered[..], &mut out, &EncryptionContext::new())
        .await
        .unwrap_err();
    assert!(matches!(err, keyward_envelope::Error::Decrypt), "{err}");
    assert!(out.is_empty());
    // A message under a third key is not this re-wrap's to touch.
    let other = kms.key(|_| {}).await;
    let foreign = client(&kms, &other)
        .encrypt_to_vec(b"x", &context("b"))
        .await
        .unwrap();
    let err = rewrap_message(&rw, &mut &foreign[..], &mut out, &EncryptionContext::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no data key wrapped by"), "{err}");
    rw.finish().await.unwrap();
}

#[tokio::test]
async fn a_stored_object_is_rewrapped_in_place() {
    let kms = start().await;
    let old = kms.key(|_| {}).await;
    let new = kms.key(|_| {}).await;
    let root = kms.dir.path().join("objects");
    let store_under = |key: &str| {
        EncryptedStore::local(
            &root,
            CLUSTER_ID,
            ObjectClass::Documents,
            Arc::new(client(&kms, key)),
        )
        .unwrap()
    };
    let store = store_under(&old);
    let body = pattern(2_500_000, 3);
    store.put_bytes("contracts/2026.pdf", &body).await.unwrap();
    store.put_bytes("small", b"hello").await.unwrap();

    let rw = rewrapper(&kms, &old, &new);
    for key in ["contracts/2026.pdf", "small"] {
        assert_eq!(
            rewrap_object(&store, key, &rw).await.unwrap(),
            RewrapOutcome::Rewrapped
        );
        assert_eq!(
            store.head(key).await.unwrap().kms_key_arns,
            std::slice::from_ref(&new)
        );
    }
    // Resumed after an interruption: done already, nothing rewritten.
    assert_eq!(
        rewrap_object(&store, "small", &rw).await.unwrap(),
        RewrapOutcome::AlreadyRewrapped
    );
    rw.finish().await.unwrap();
    assert_eq!(rewrap_grants(&kms, &old).await, 0);

    kms.customer
        .disable_key()
        .key_id(&old)
        .send()
        .await
        .unwrap();
    let store = store_under(&new);
    assert!(store.get_bytes("contracts/2026.pdf").await.unwrap() == body);
    assert_eq!(store.get_bytes("small").await.unwrap(), b"hello");
    // Nothing but the two objects in the store's directory (no staging file left behind).
    let listed = store.list("").await.unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
}

fn volume_data(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()[4096..].to_vec()
}

#[tokio::test]
async fn a_volume_reopens_under_the_new_key_with_identical_sectors() {
    let kms = start().await;
    let old = kms.key(|_| {}).await;
    let new = kms.key(|_| {}).await;
    let aws = AwsKms::new(kms.cluster.clone());
    let path: PathBuf = kms.dir.path().join("engine-0.vol");
    let header = create_volume(
        &aws,
        &path,
        NewVolume {
            volume_id: None,
            size: 1 << 20,
            key_id: old.clone(),
            encryption_context: BTreeMap::from([(
                "keyward:cluster".to_owned(),
                CLUSTER_ID.to_owned(),
            )]),
        },
    )
    .await
    .unwrap();
    let data = pattern(256 * 1024, 9);
    let attachment = attach_volume(&aws, &aws, &path, CLUSTER_PRINCIPAL)
        .await
        .unwrap();
    attachment
        .volume()
        .write_at(64 * 1024, &data, true)
        .unwrap();
    attachment.detach(&aws).await.unwrap();
    let sectors_before = volume_data(&path);

    let rw = rewrapper(&kms, &old, &new);
    assert_eq!(
        rewrap_volume(&path, &rw).await.unwrap(),
        RewrapOutcome::Rewrapped
    );
    assert_eq!(
        rewrap_volume(&path, &rw).await.unwrap(),
        RewrapOutcome::AlreadyRewrapped
    );
    rw.finish().await.unwrap();
    assert!(volume_data(&path) == sectors_before, "the sectors changed");
    assert!(!Path::new(&format!("{}.rewrap", path.display())).exists());

    kms.customer
        .disable_key()
        .key_id(&old)
        .send()
        .await
        .unwrap();
    let attachment = attach_volume(&aws, &aws, &path, CLUSTER_PRINCIPAL)
        .await
        .unwrap();
    assert_eq!(attachment.header().key_arn, new);
    assert_eq!(attachment.header().volume_id, header.volume_id);
    let mut back = vec![0u8; data.len()];
    attachment.volume().read_at(64 * 1024, &mut back).unwrap();
    assert!(back == data);
    attachment.detach(&aws).await.unwrap();

    // A crash after the journal was written but before the header was: recovery finishes it.
    let raw = std::fs::read(&path).unwrap();
    let new_header = raw[..4096].to_vec();
    let journal = PathBuf::from(format!("{}.rewrap", path.display()));
    std::fs::write(&journal, &new_header).unwrap();
    {
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&[0u8; 4096], 0).unwrap();
    }
    assert!(recover_volume_rewrap(&path).unwrap());
    assert!(std::fs::read(&path).unwrap()[..4096] == new_header[..]);
    assert!(!journal.exists());
    assert!(!recover_volume_rewrap(&path).unwrap());
}
