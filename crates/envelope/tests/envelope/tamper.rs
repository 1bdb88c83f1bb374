//! Every tamper case is the one opaque error, and a signed message's final
//! frame is not released before its signature verifies.

use keyward_envelope::{Client, DecryptOptions, Error, RawAesKeyring, Suite};

use crate::common::{client, context, pattern, split};

async fn refused(client: &Client<RawAesKeyring>, message: &[u8], what: &str) {
    match client
        .decrypt_to_vec(message, &DecryptOptions::default())
        .await
    {
        Err(Error::Decrypt) => {}
        other => panic!(
            "{what}: expected the opaque decrypt error, got {:?}",
            other.map(|(p, _)| p.len())
        ),
    }
    // The in-place path agrees, and leaves nothing behind.
    let mut buf = message.to_vec();
    let result = client
        .decrypt_in_place(&mut buf, &DecryptOptions::default())
        .await;
    assert!(matches!(result, Err(Error::Decrypt)), "{what} (in place)");
    assert!(
        buf.is_empty() || buf == message,
        "{what}: in place left partial plaintext"
    );
    // The async path agrees.
    let mut out = Vec::new();
    let result = client
        .decrypt_async(&DecryptOptions::default(), &mut &message[..], &mut out)
        .await;
    assert!(matches!(result, Err(Error::Decrypt)), "{what} (async)");
}

async fn sample(suite: Suite) -> (Client<RawAesKeyring>, Vec<u8>) {
    let client = client(suite, 16);
    // Three regular frames and a short final frame.
    let message = client
        .encrypt_to_vec(&pattern(53), &context(&[("cluster", "c-1")]))
        .await
        .unwrap();
    (client, message)
}

#[tokio::test]
async fn every_flipped_bit_is_refused() {
    for suite in [
        Suite::Aes256GcmHkdfSha512Commit,
        Suite::Aes256GcmHkdfSha512CommitEcdsaP384,
    ] {
        let (client, message) = sample(suite).await;
        for i in 0..message.len() {
            for bit in 0..8 {
                let mut bad = message.clone();
                bad[i] ^= 1 << bit;
                refused(&client, &bad, &format!("{suite:?} byte {i} bit {bit}")).await;
            }
        }
    }
}

#[tokio::test]
async fn every_truncation_and_any_trailing_bytes_are_refused() {
    for suite in [
        Suite::Aes256GcmHkdfSha512Commit,
        Suite::Aes256GcmHkdfSha512CommitEcdsaP384,
    ] {
        let (client, message) = sample(suite).await;
        for len in 0..message.len() {
            refused(
                &client,
                &message[..len],
                &format!("{suite:?} truncated to {len}"),
            )
            .await;
        }
        for extra in [&[0u8][..], b"trailing", &message[..]] {
            let mut bad = message.clone();
            bad.extend_from_slice(extra);
            refused(
                &client,
                &bad,
                &format!("{suite:?} + {} trailing bytes", extra.len()),
            )
            .await;
        }
    }
}

#[tokio::test]
async fn reordered_dropped_and_duplicated_frames_are_refused() {
    for suite in [
        Suite::Aes256GcmHkdfSha512Commit,
        Suite::Aes256GcmHkdfSha512CommitEcdsaP384,
    ] {
        let (client, message) = sample(suite).await;
        let (header, frames, footer) = split(&message, suite.is_signed());
        assert_eq!(frames.len(), 4);
        let join = |order: &[usize]| {
            let mut m = header.clone();
            for &i in order {
                m.extend_from_slice(&frames[i]);
            }
            m.extend_from_slice(&footer);
            m
        };
        assert_eq!(join(&[0, 1, 2, 3]), message);
        for order in [
            &[1, 0, 2, 3][..],
            &[0, 2, 1, 3],
            &[0, 1, 3],
            &[0, 2, 3],
            &[0, 0, 1, 2, 3],
            &[0, 1, 2],
            &[3],
        ] {
            refused(
                &client,
                &join(order),
                &format!("{suite:?} frames {order:?}"),
            )
            .await;
        }
        // A frame from another message under the same key.
        let (_, other) = sample(suite).await;
        let (_, other_frames, _) = split(&other, suite.is_signed());
        let mut spliced = header.clone();
        spliced.extend_from_slice(&other_frames[0]);
        for f in &frames[1..] {
            spliced.extend_from_slice(f);
        }
        spliced.extend_from_slice(&footer);
        refused(&client, &spliced, "frame from another message").await;
    }
}

#[tokio::test]
async fn signed_final_frame_is_not_released_before_the_signature_verifies() {
    let (client, message) = sample(Suite::Aes256GcmHkdfSha512CommitEcdsaP384).await;
    let mut bad = message.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1; // inside the signature
    let mut out = Vec::new();
    let result = client
        .decrypt_async(&DecryptOptions::default(), &mut &bad[..], &mut out)
        .await;
    assert!(matches!(result, Err(Error::Decrypt)));
    assert_eq!(
        out.len(),
        48,
        "only the three regular frames were released, not the final one"
    );
}
