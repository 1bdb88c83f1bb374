//! Interop with the official `aws-encryption-cli` through the embedded KMS
//! (the real server on loopback, driven by aws-sdk-kms and by the CLI's boto3),
//! and the KMS keyring's behaviour against it.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
};

use keyward_envelope::{
    header::Header, CacheLimits, Client, Config, DataKeyCache, DecryptOptions, EncryptionContext,
    Error, KmsErrorCode, KmsKeyring, Suite,
};
use keyward_kms_server::DevServer;

use crate::common::{context, pattern, tool};

struct Kms {
    server: DevServer,
    sdk: aws_sdk_kms::Client,
    _dir: tempfile::TempDir,
}

async fn start() -> Kms {
    let dir = tempfile::tempdir().unwrap();
    let server = DevServer::start(dir.path());
    let sdk = aws_sdk_kms::Client::new(&server.sdk_config().await);
    Kms {
        server,
        sdk,
        _dir: dir,
    }
}

async fn create_key(kms: &Kms) -> String {
    let out = kms
        .sdk
        .create_key()
        .description("envelope interop")
        .send()
        .await
        .unwrap();
    out.key_metadata().unwrap().arn().unwrap().to_owned()
}

fn suite_name(suite: Suite) -> &'static str {
    match suite {
        Suite::Aes256GcmHkdfSha512Commit => "AES_256_GCM_HKDF_SHA512_COMMIT_KEY",
        Suite::Aes256GcmHkdfSha512CommitEcdsaP384 => {
            "AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384"
        }
    }
}

/// `aws-encryption-cli` pointed at the embedded KMS.
fn cli(kms: &Kms) -> Command {
    let mut command = tool("aws-encryption-cli");
    command
        .env("AWS_ENDPOINT_URL_KMS", kms.server.endpoint())
        .env("AWS_ACCESS_KEY_ID", kms.server.access_key_id())
        .env("AWS_SECRET_ACCESS_KEY", kms.server.secret_access_key())
        .env("AWS_DEFAULT_REGION", kms.server.region())
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    command
}

fn context_args(ctx: &EncryptionContext) -> Vec<String> {
    let mut args = vec!["--encryption-context".to_string()];
    args.extend(ctx.iter().map(|(k, v)| format!("{k}={v}")));
    args
}

async fn run(mut command: Command) {
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "aws-encryption-cli failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sizes for a frame length: empty, one byte, one frame, exact multiples, several frames.
fn sizes(frame: usize) -> Vec<usize> {
    vec![0, 1, frame - 1, frame, frame + 1, 3 * frame, 3 * frame + 7]
}

fn ctx() -> EncryptionContext {
    context(&[
        ("cluster", "c-interop"),
        ("clé", "välue"),
        ("集群", "グループ"),
        ("class", "documents"),
    ])
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_cli_decrypts_our_messages() {
    let kms = start().await;
    let arn = create_key(&kms).await;
    let work = tempfile::tempdir().unwrap();
    let (ours, plain_dir, out_dir) = (
        work.path().join("ours"),
        work.path().join("plain"),
        work.path().join("out"),
    );
    let mut count = 0;
    for suite in [
        Suite::Aes256GcmHkdfSha512Commit,
        Suite::Aes256GcmHkdfSha512CommitEcdsaP384,
    ] {
        for frame in [128u32, 1000, 4096] {
            let client = Client::new(
                KmsKeyring::new(kms.sdk.clone(), arn.clone()),
                Config {
                    suite,
                    frame_length: frame,
                    ..Config::default()
                },
            )
            .unwrap();
            for n in sizes(frame as usize) {
                let name = format!("{:04x}-f{frame}-n{n}", suite.id());
                let message = client.encrypt_to_vec(&pattern(n), &ctx()).await.unwrap();
                write(&ours, &name, &message);
                write(&plain_dir, &name, &pattern(n));
                count += 1;
            }
        }
    }
    std::fs::create_dir_all(&out_dir).unwrap();
    let mut command = cli(&kms);
    command
        .args([
            "--decrypt",
            "-r",
            "-S",
            "--suffix",
            "--commitment-policy",
            "require-encrypt-require-decrypt",
        ])
        .arg("-i")
        .arg(&ours)
        .arg("-o")
        .arg(&out_dir)
        .args(["--wrapping-keys", &format!("key={arn}")])
        .args(context_args(&ctx()));
    run(command).await;
    for entry in std::fs::read_dir(&plain_dir).unwrap() {
        let entry = entry.unwrap();
        let got = std::fs::read(out_dir.join(entry.file_name())).unwrap();
        assert_eq!(
            got,
            std::fs::read(entry.path()).unwrap(),
            "{:?}",
            entry.file_name()
        );
    }
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), count);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn we_decrypt_the_official_clis_messages() {
    let kms = start().await;
    let arn = create_key(&kms).await;
    let work = tempfile::tempdir().unwrap();
    let client = Client::new(
        KmsKeyring::new(kms.sdk.clone(), arn.clone()),
        Config::default(),
    )
    .unwrap();
    let mut checked = 0;
    for suite in [
        Suite::Aes256GcmHkdfSha512Commit,
        Suite::Aes256GcmHkdfSha512CommitEcdsaP384,
    ] {
        // The CLI accepts only multiples of 128 as frame lengths.
        for frame in [128usize, 4096] {
            let batch = format!("{:04x}-f{frame}", suite.id());
            let (plain_dir, out_dir) = (
                work.path().join(format!("p{batch}")),
                work.path().join(format!("c{batch}")),
            );
            for n in sizes(frame) {
                write(&plain_dir, &format!("n{n}"), &pattern(n));
            }
            std::fs::create_dir_all(&out_dir).unwrap();
            let mut command = cli(&kms);
            command
                .args([
                    "--encrypt",
                    "-r",
                    "-S",
                    "--suffix",
                    "--commitment-policy",
                    "require-encrypt-require-decrypt",
                ])
                .args([
                    "--algorithm",
                    suite_name(suite),
                    "--frame-length",
                    &frame.to_string(),
                ])
                .arg("-i")
                .arg(&plain_dir)
                .arg("-o")
                .arg(&out_dir)
                .args(["--wrapping-keys", &format!("key={arn}")])
                .args(context_args(&ctx()));
            run(command).await;
            for n in sizes(frame) {
                let message = std::fs::read(out_dir.join(format!("n{n}"))).unwrap();
                let (header, _) = Header::parse(&message, 16).unwrap();
                assert_eq!((header.suite, header.frame_length as usize), (suite, frame));
                let options = DecryptOptions {
                    context: ctx(),
                    ..Default::default()
                };
                let (plain, got) = client.decrypt_to_vec(&message, &options).await.unwrap();
                assert_eq!(plain, pattern(n), "{batch} n={n}");
                assert_eq!(got.contains_key("aws-crypto-public-key"), suite.is_signed());
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 28);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_keyring_wraps_under_the_key_arn_and_tries_only_configured_keys() {
    let kms = start().await;
    let arn = create_key(&kms).await;
    let other = create_key(&kms).await;
    let client = Client::new(
        KmsKeyring::new(kms.sdk.clone(), arn.clone()),
        Config::default(),
    )
    .unwrap();
    let message = client.encrypt_to_vec(b"secret", &ctx()).await.unwrap();
    let (header, _) = Header::parse(&message, 16).unwrap();
    assert_eq!(header.encrypted_data_keys.len(), 1);
    assert_eq!(header.encrypted_data_keys[0].provider_id, "aws-kms");
    assert_eq!(header.encrypted_data_keys[0].provider_info, arn.as_bytes());
    assert_eq!(header.context, ctx());

    // The data key was generated with the full context: KMS Decrypt with another context fails.
    let blob = aws_sdk_kms::primitives::Blob::new(header.encrypted_data_keys[0].ciphertext.clone());
    let err = kms
        .sdk
        .decrypt()
        .ciphertext_blob(blob.clone())
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        aws_sdk_kms::error::ProvideErrorMetadata::code(&err),
        Some("InvalidCiphertextException")
    );

    // A keyring configured only with another key never opens it.
    let wrong = Client::new(
        KmsKeyring::new(kms.sdk.clone(), other.clone()),
        Config::default(),
    )
    .unwrap();
    assert!(matches!(
        wrong
            .decrypt_to_vec(&message, &DecryptOptions::default())
            .await,
        Err(Error::Decrypt)
    ));
    // Listing the right key as an extra decrypt key works.
    let both = Client::new(
        KmsKeyring::new(kms.sdk.clone(), other).with_decrypt_key(arn.clone()),
        Config::default(),
    )
    .unwrap();
    assert_eq!(
        both.decrypt_to_vec(&message, &DecryptOptions::default())
            .await
            .unwrap()
            .0,
        b"secret"
    );

    // A disabled key is a KMS error the caller can act on, not the opaque one.
    kms.sdk.disable_key().key_id(&arn).send().await.unwrap();
    match client
        .decrypt_to_vec(&message, &DecryptOptions::default())
        .await
    {
        Err(Error::Kms {
            failure, operation, ..
        }) => assert_eq!(
            (failure.code(), operation),
            (Some(&KmsErrorCode::DisabledException), "Decrypt")
        ),
        other => panic!("{:?}", other.err()),
    }
    match client.encrypt_to_vec(b"x", &ctx()).await {
        Err(Error::Kms { failure, .. }) => {
            assert_eq!(failure.code(), Some(&KmsErrorCode::DisabledException))
        }
        other => panic!("{:?}", other.err()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_saves_kms_calls_and_forgets_a_disabled_key_at_once() {
    let kms = start().await;
    let arn = create_key(&kms).await;
    let cache = Arc::new(
        DataKeyCache::new(CacheLimits {
            max_messages: 1000,
            ..CacheLimits::default()
        })
        .unwrap(),
    );
    let client = Client::new(
        KmsKeyring::new(kms.sdk.clone(), arn.clone()),
        Config::default(),
    )
    .unwrap()
    .with_cache(cache.clone());
    let mut messages = Vec::new();
    for i in 0..2500 {
        messages.push(client.encrypt_to_vec(&pattern(4096), &ctx()).await.unwrap());
        if i == 0 {
            assert_eq!(cache.kms_calls_saved(), 0);
        }
    }
    // 2500 messages at 1000 per data key: 3 GenerateDataKey calls, 2497 saved.
    assert_eq!(cache.kms_calls_saved(), 2497);
    let distinct: std::collections::HashSet<_> = messages
        .iter()
        .map(|m| Header::parse(m, 16).unwrap().0.encrypted_data_keys)
        .collect();
    assert_eq!(distinct.len(), 3);

    client
        .decrypt_to_vec(&messages[0], &DecryptOptions::default())
        .await
        .unwrap();
    client
        .decrypt_to_vec(&messages[1], &DecryptOptions::default())
        .await
        .unwrap();
    assert_eq!(
        cache.kms_calls_saved(),
        2498,
        "same data key: the second Decrypt came from the cache"
    );

    // The key is disabled in KMS; the cached data key still exists until the
    // platform drops it (here: the very next call after drop_key goes to KMS).
    kms.sdk.disable_key().key_id(&arn).send().await.unwrap();
    cache.drop_key(&arn);
    assert!(matches!(
        client.encrypt_to_vec(b"x", &ctx()).await,
        Err(Error::Kms { .. })
    ));
    assert!(matches!(
        client
            .decrypt_to_vec(&messages[0], &DecryptOptions::default())
            .await,
        Err(Error::Kms { .. })
    ));
    kms.sdk.enable_key().key_id(&arn).send().await.unwrap();
    client
        .decrypt_to_vec(&messages[0], &DecryptOptions::default())
        .await
        .unwrap();
}
