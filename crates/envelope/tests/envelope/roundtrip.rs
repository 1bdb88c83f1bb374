//! Round trips over every frame boundary, both suites, sync and async; context
//! handling; the memory bound of streaming.

use std::collections::BTreeSet;

use keyward_envelope::{
    Client, Config, DecryptOptions, EncryptOptions, Error, RawAesKeyring, Suite,
};

use crate::common::{client, context, keyring, pattern, split};

const SUITES: [Suite; 2] = [
    Suite::Aes256GcmHkdfSha512Commit,
    Suite::Aes256GcmHkdfSha512CommitEcdsaP384,
];

#[tokio::test]
async fn every_frame_boundary_round_trips_sync_and_async() {
    let ctx = context(&[("cluster", "c-1"), ("clé", "välue")]);
    for suite in SUITES {
        for frame in [1u32, 16, 128, 4096] {
            let f = frame as usize;
            for n in [0, 1, f.saturating_sub(1), f, f + 1, 3 * f, 3 * f + 5] {
                let client = client(suite, frame);
                let plain = pattern(n);
                let message = client.encrypt_to_vec(&plain, &ctx).await.unwrap();
                let (back, got_ctx) = client
                    .decrypt_to_vec(&message, &DecryptOptions::default())
                    .await
                    .unwrap();
                assert_eq!(back, plain, "suite {suite:?} frame {frame} len {n}");
                assert_eq!(got_ctx.get("cluster").map(String::as_str), Some("c-1"));
                assert_eq!(
                    got_ctx.contains_key("aws-crypto-public-key"),
                    suite.is_signed()
                );

                let mut async_msg = Vec::new();
                client
                    .encrypt_async(
                        &ctx,
                        &EncryptOptions::default(),
                        &mut &plain[..],
                        &mut async_msg,
                    )
                    .await
                    .unwrap();
                let mut async_back = Vec::new();
                let (len, _) = client
                    .decrypt_async(
                        &DecryptOptions::default(),
                        &mut &message[..],
                        &mut async_back,
                    )
                    .await
                    .unwrap();
                assert_eq!((len as usize, &async_back), (n, &plain));
                let (sync_back, _) = client
                    .decrypt_to_vec(&async_msg, &DecryptOptions::default())
                    .await
                    .unwrap();
                assert_eq!(sync_back, plain);
            }
        }
    }
}

#[tokio::test]
async fn exact_multiple_of_the_frame_ends_with_an_empty_final_frame() {
    let client = client(Suite::Aes256GcmHkdfSha512Commit, 64);
    let message = client
        .encrypt_to_vec(&pattern(128), &context(&[]))
        .await
        .unwrap();
    let (_, frames, _) = split(&message, false);
    assert_eq!(
        frames.len(),
        3,
        "two full regular frames and an empty final frame"
    );
    let last = frames.last().unwrap();
    assert_eq!(&last[..4], &[0xff; 4]);
    assert_eq!(
        u32::from_be_bytes(last[4..8].try_into().unwrap()),
        3,
        "final frame's sequence number"
    );
    assert_eq!(
        u32::from_be_bytes(last[20..24].try_into().unwrap()),
        0,
        "final frame content length"
    );
    // The empty message is one empty final frame with sequence number 1.
    let empty = client.encrypt_to_vec(&[], &context(&[])).await.unwrap();
    let (_, frames, _) = split(&empty, false);
    assert_eq!(frames.len(), 1);
    assert_eq!(u32::from_be_bytes(frames[0][4..8].try_into().unwrap()), 1);
}

#[tokio::test]
async fn default_configuration_writes_suite_0478_with_large_frames() {
    let client = Client::new(keyring(), Config::default()).unwrap();
    let message = client.encrypt_to_vec(b"x", &context(&[])).await.unwrap();
    assert_eq!(&message[..3], &[0x02, 0x04, 0x78]);
    let (header, _) = keyward_envelope::header::Header::parse(&message, 16).unwrap();
    assert_eq!(header.frame_length, keyward_envelope::DEFAULT_FRAME_LENGTH);
}

#[tokio::test]
async fn wrong_key_and_wrong_context_are_the_opaque_error() {
    let ctx = context(&[("cluster", "c-1")]);
    let client = client(Suite::Aes256GcmHkdfSha512Commit, 128);
    let message = client.encrypt_to_vec(&pattern(300), &ctx).await.unwrap();

    let other = RawAesKeyring::new("keyward-vectors", "vector-key-1", &[9u8; 32]).unwrap();
    let other = Client::new(other, Config::default()).unwrap();
    let err = other
        .decrypt_to_vec(&message, &DecryptOptions::default())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, Error::Decrypt), "{err:?}");

    let wrong = DecryptOptions {
        context: context(&[("cluster", "c-2")]),
        ..Default::default()
    };
    let err = client.decrypt_to_vec(&message, &wrong).await.err().unwrap();
    assert!(matches!(err, Error::Decrypt), "{err:?}");
    // A pair the message does not hold is a required-context pair the encryptor
    // never authenticated: the header tag fails.
    let extra = DecryptOptions {
        context: context(&[("tenant", "t")]),
        ..Default::default()
    };
    let err = client.decrypt_to_vec(&message, &extra).await.err().unwrap();
    assert!(matches!(err, Error::Decrypt), "{err:?}");
    assert_eq!(
        err.to_string(),
        "cannot decrypt: the message is not authentic (altered or truncated), or the key or encryption context \
         is not the one it was encrypted with"
    );
}

#[tokio::test]
async fn required_context_keys_are_left_out_but_authenticated() {
    let ctx = context(&[("cluster", "c-1"), ("object", "o-9")]);
    let client = client(Suite::Aes256GcmHkdfSha512Commit, 128);
    let options = EncryptOptions {
        required_context_keys: BTreeSet::from(["object".to_string()]),
        ..Default::default()
    };
    let mut message = Vec::new();
    client
        .encrypt_async(&ctx, &options, &mut &pattern(200)[..], &mut message)
        .await
        .unwrap();
    let (header, _) = keyward_envelope::header::Header::parse(&message, 16).unwrap();
    assert!(
        !header.context.contains_key("object"),
        "required keys are not stored"
    );

    let err = client
        .decrypt_to_vec(&message, &DecryptOptions::default())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, Error::Decrypt), "{err:?}");
    let bad = DecryptOptions {
        context: context(&[("object", "o-8")]),
        ..Default::default()
    };
    assert!(matches!(
        client.decrypt_to_vec(&message, &bad).await,
        Err(Error::Decrypt)
    ));
    let good = DecryptOptions {
        context: context(&[("object", "o-9")]),
        required_keys: vec!["object".into()],
    };
    let (plain, full) = client.decrypt_to_vec(&message, &good).await.unwrap();
    assert_eq!(plain, pattern(200));
    assert_eq!(full, ctx);

    // The caller's required keys must be present in the context.
    let other = client.encrypt_to_vec(b"x", &ctx).await.unwrap();
    let need = DecryptOptions {
        required_keys: vec!["tenant".into()],
        ..Default::default()
    };
    match client.decrypt_to_vec(&other, &need).await {
        Err(Error::MissingRequiredContext(key)) => assert_eq!(key, "tenant"),
        other => panic!("{:?}", other.err()),
    }
    // Encryption refuses a required key the context lacks.
    let missing = EncryptOptions {
        required_context_keys: BTreeSet::from(["tenant".to_string()]),
        ..Default::default()
    };
    assert!(matches!(
        client.begin_encrypt(&ctx, &missing).await,
        Err(Error::MissingRequiredContext(_))
    ));
}

#[tokio::test]
async fn reserved_context_keys_and_bad_configuration_are_refused() {
    let client = client(Suite::Aes256GcmHkdfSha512Commit, 128);
    let err = client
        .encrypt_to_vec(b"x", &context(&[("aws-crypto-public-key", "x")]))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, Error::InvalidContext(_)), "{err:?}");
    let long = "k".repeat(70_000);
    let err = client
        .encrypt_to_vec(b"x", &context(&[(&long, "v")]))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, Error::InvalidContext(_)), "{err:?}");
    assert!(matches!(
        Client::new(
            keyring(),
            Config {
                frame_length: 0,
                ..Config::default()
            }
        ),
        Err(Error::Config(_))
    ));
}

#[tokio::test]
async fn frame_length_above_the_reader_limit_is_refused_after_authentication() {
    let writer = client(Suite::Aes256GcmHkdfSha512Commit, 1 << 20);
    let message = writer.encrypt_to_vec(b"abc", &context(&[])).await.unwrap();
    let reader = Client::new(
        keyring(),
        Config {
            frame_length: 4096,
            max_frame_length: 65536,
            ..Config::default()
        },
    )
    .unwrap();
    match reader
        .decrypt_to_vec(&message, &DecryptOptions::default())
        .await
    {
        Err(Error::FrameLengthLimit { frame_length, max }) => {
            assert_eq!((frame_length, max), (1 << 20, 65536))
        }
        other => panic!("{:?}", other.err()),
    }
}

#[tokio::test]
async fn version_1_messages_are_refused_by_the_commitment_policy() {
    let client = client(Suite::Aes256GcmHkdfSha512Commit, 128);
    let mut message = client.encrypt_to_vec(b"abc", &context(&[])).await.unwrap();
    message[0] = 0x01;
    let err = client
        .decrypt_to_vec(&message, &DecryptOptions::default())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, Error::UnsupportedVersion(1)), "{err:?}");
}

fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn streaming_memory_does_not_grow_with_the_input() {
    // nextest runs each test in its own process, so the high-water mark is this test's.
    let client = client(
        Suite::Aes256GcmHkdfSha512Commit,
        keyward_envelope::DEFAULT_FRAME_LENGTH,
    );
    let before = vm_hwm_kib();
    let len = 192u64 << 20;
    // Encrypt 192 MiB into a small pipe whose other end is decrypted at the same
    // time, over tokio::io: neither side ever holds the message.
    let (mut pipe_w, mut pipe_r) = tokio::io::duplex(64 * 1024);
    let encryption = client
        .begin_encrypt(&context(&[("k", "v")]), &EncryptOptions::default())
        .await
        .unwrap();
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut source = tokio::io::repeat(0x5a).take(len);
        encryption
            .write_async(&mut source, &mut pipe_w)
            .await
            .unwrap()
    });
    let raw = keyward_envelope::UnverifiedHeader::read_async(&mut pipe_r, client.config())
        .await
        .unwrap();
    let decryption = client
        .begin_decrypt(raw, &DecryptOptions::default())
        .await
        .unwrap();
    let got = decryption
        .read_async(&mut pipe_r, &mut tokio::io::sink())
        .await
        .unwrap();
    assert_eq!(writer.await.unwrap(), len);
    assert_eq!(got, len);
    let grown_mib = (vm_hwm_kib() - before) / 1024;
    assert!(
        grown_mib < 16,
        "peak memory grew by {grown_mib} MiB for a {} MiB stream",
        len >> 20
    );
}

#[tokio::test]
async fn more_encrypted_data_keys_than_the_limit_are_refused_before_any_key_is_tried() {
    use keyward_envelope::{header::Header, EncryptedDataKey};
    let client = client(Suite::Aes256GcmHkdfSha512Commit, 128);
    let message = client.encrypt_to_vec(b"abc", &context(&[])).await.unwrap();
    let (mut header, body_len) = Header::parse(&message, 16).unwrap();
    let rest = &message[body_len..];
    // 17 keys (the limit is 16): ours first, then copies.
    let ours = header.encrypted_data_keys[0].clone();
    for i in 0..16 {
        header.encrypted_data_keys.push(EncryptedDataKey {
            provider_id: format!("other-{i}"),
            ..ours.clone()
        });
    }
    let mut hostile = header.serialize_body().unwrap();
    hostile.extend_from_slice(rest);
    let err = client
        .decrypt_to_vec(&hostile, &DecryptOptions::default())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, Error::Decrypt), "{err:?}");
    // With the limit raised, the header is parsed, and fails only its auth tag.
    let lenient = Client::new(
        keyring(),
        Config {
            max_encrypted_data_keys: 32,
            ..Config::default()
        },
    )
    .unwrap();
    let err = lenient
        .decrypt_to_vec(&hostile, &DecryptOptions::default())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, Error::Decrypt), "{err:?}");
    // Honest keys only: the same 17-key header would need the limit; ours alone opens.
    assert_eq!(
        lenient
            .decrypt_to_vec(&message, &DecryptOptions::default())
            .await
            .unwrap()
            .0,
        b"abc"
    );
}
