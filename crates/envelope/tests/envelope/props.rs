//! Property tests of the parsers on hostile bytes: no panic, and no length
//! field makes the reader ask for more than the format's bound.

use keyward_envelope::{
    header::{Header, ParseError},
    DecryptOptions, EncryptedDataKey, Suite,
};
use proptest::prelude::*;

use crate::common::{client, context, pattern};

/// The largest header the parser may ever ask for with `max_edks` keys: every
/// field is u16-prefixed, so this is the format's hard bound.
fn header_bound(max_edks: usize) -> usize {
    1 + 2 + 32 + 2 + 65_535 + 2 + max_edks * 3 * (2 + 65_535) + 1 + 4 + 32
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn header_parser_never_panics_and_asks_for_bounded_input(bytes in proptest::collection::vec(any::<u8>(), 0..600), max in 1usize..20) {
        match Header::parse(&bytes, max) {
            Ok((_, len)) => prop_assert!(len <= bytes.len()),
            Err(ParseError::Incomplete(needed)) => {
                prop_assert!(needed > bytes.len());
                prop_assert!(needed <= header_bound(max));
            }
            Err(_) => {}
        }
    }

    #[test]
    fn header_with_valid_prefix_and_hostile_lengths(aad_len in any::<u16>(), count in any::<u16>(), field in any::<u16>(), tail in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut bytes = vec![0x02, 0x04, 0x78];
        bytes.extend_from_slice(&[7u8; 32]);
        bytes.extend_from_slice(&aad_len.to_be_bytes());
        bytes.extend_from_slice(&count.to_be_bytes());
        bytes.extend_from_slice(&field.to_be_bytes());
        bytes.extend_from_slice(&tail);
        match Header::parse(&bytes, 16) {
            Err(ParseError::Incomplete(needed)) => prop_assert!(needed <= header_bound(16)),
            Err(ParseError::TooManyKeys) => prop_assert!(aad_len == 0 && count > 16 || aad_len > 0),
            _ => {}
        }
    }

    #[test]
    fn headers_round_trip(ctx in proptest::collection::btree_map("[a-zé]{1,8}", "[ -~]{0,8}", 0..4),
                          edks in proptest::collection::vec((".{1,6}", proptest::collection::vec(any::<u8>(), 0..40), proptest::collection::vec(any::<u8>(), 1..40)), 1..4),
                          frame in 1u32.., signed in any::<bool>(), id in any::<[u8; 32]>(), commitment in any::<[u8; 32]>()) {
        let header = Header {
            suite: if signed { Suite::Aes256GcmHkdfSha512CommitEcdsaP384 } else { Suite::Aes256GcmHkdfSha512Commit },
            message_id: id,
            context: ctx,
            encrypted_data_keys: edks.into_iter().map(|(provider_id, provider_info, ciphertext)| EncryptedDataKey { provider_id, provider_info, ciphertext }).collect(),
            frame_length: frame,
            commitment,
        };
        let bytes = header.serialize_body().unwrap();
        let (parsed, len) = Header::parse(&bytes, 16).unwrap();
        prop_assert_eq!(len, bytes.len());
        prop_assert_eq!(parsed, header);
        for cut in 0..bytes.len() {
            prop_assert!(matches!(Header::parse(&bytes[..cut], 16), Err(ParseError::Incomplete(_))));
        }
    }

    #[test]
    fn decrypting_arbitrary_bytes_is_an_error_not_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let client = client(Suite::Aes256GcmHkdfSha512Commit, 16);
        let result = runtime().block_on(client.decrypt_to_vec(&bytes, &DecryptOptions::default()));
        prop_assert!(result.is_err());
        let mut buf = bytes.clone();
        prop_assert!(runtime().block_on(client.decrypt_in_place(&mut buf, &DecryptOptions::default())).is_err());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn frame_parser_on_mutated_messages_never_panics(edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6), signed in any::<bool>(), cut in any::<prop::sample::Index>()) {
        let suite = if signed { Suite::Aes256GcmHkdfSha512CommitEcdsaP384 } else { Suite::Aes256GcmHkdfSha512Commit };
        let rt = runtime();
        let client = client(suite, 16);
        let message = rt.block_on(client.encrypt_to_vec(&pattern(70), &context(&[("a", "b")]))).unwrap();
        let mut bad = message.clone();
        for (at, byte) in &edits {
            let i = at.index(bad.len());
            bad[i] = *byte;
        }
        let keep = cut.index(bad.len() + 1);
        bad.truncate(keep.max(bad.len() / 2));
        let result = rt.block_on(client.decrypt_to_vec(&bad, &DecryptOptions::default()));
        let mut buf = bad.clone();
        let in_place = rt.block_on(client.decrypt_in_place(&mut buf, &DecryptOptions::default()));
        if bad != message {
            prop_assert!(result.is_err());
            prop_assert!(in_place.is_err());
        }
    }
}
