//! The ciphertext blob that Encrypt, GenerateDataKey and ReEncrypt return: a format of ours.
//!
//! ```text
//!  0         1                   17                21            33                      n-16       n
//!  +---------+-------------------+-----------------+-------------+-----------------------+----------+
//!  | 0x01    | key id            | material        | nonce       | AES-256-GCM           | GCM tag  |
//!  | version | (UUID, 16 bytes)  | version (u32 BE)| (12 bytes)  | ciphertext            | (16 B)   |
//!  +---------+-------------------+-----------------+-------------+-----------------------+----------+
//!
//!  AAD = bytes 0..33 (the header) || canonical encryption context
//!  canonical encryption context = count (u16 BE), then for each pair in byte order of the keys:
//!                                 key length (u16 BE) | key | value length (u16 BE) | value
//! ```
//!
//! The header is authenticated, so a blob cannot be pointed at another key or material version; the
//! encryption context is authenticated but not stored, so decrypting needs the same context. The
//! key id is in clear so Decrypt can find the key without a KeyId, as AWS does.

use std::collections::BTreeMap;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use zeroize::Zeroizing;

pub(crate) const VERSION: u8 = 1;
pub(crate) const HEADER_LEN: usize = 33;
pub(crate) const TAG_LEN: usize = 16;

/// The parsed, not yet authenticated, header of a blob.
pub(crate) struct Blob<'a> {
    pub key_id: uuid::Uuid,
    pub material_version: u32,
    header: &'a [u8],
    nonce: [u8; 12],
    sealed: &'a [u8],
}

/// Parses the header; `None` for anything that is not a well-formed blob. Never panics.
pub(crate) fn parse(bytes: &[u8]) -> Option<Blob<'_>> {
    if bytes.len() < HEADER_LEN + TAG_LEN || bytes[0] != VERSION {
        return None;
    }
    let key_id = uuid::Uuid::from_bytes(bytes[1..17].try_into().ok()?);
    let material_version = u32::from_be_bytes(bytes[17..21].try_into().ok()?);
    let nonce = bytes[21..33].try_into().ok()?;
    Some(Blob {
        key_id,
        material_version,
        header: &bytes[..HEADER_LEN],
        nonce,
        sealed: &bytes[HEADER_LEN..],
    })
}

/// The canonical encryption context bytes (see the module doc).
pub(crate) fn canonical_context(context: &BTreeMap<String, String>) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + context.len() * 32);
    out.extend_from_slice(&(context.len() as u16).to_be_bytes());
    // BTreeMap<String, _> iterates in byte order of the keys.
    for (k, v) in context {
        out.extend_from_slice(&(k.len() as u16).to_be_bytes());
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(&(v.len() as u16).to_be_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    out
}

fn aad(header: &[u8], context: &BTreeMap<String, String>) -> Vec<u8> {
    let mut aad = header.to_vec();
    aad.extend_from_slice(&canonical_context(context));
    aad
}

fn aead(material: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, material).expect("32-byte key"))
}

/// Seals `plaintext` under `material` (version `material_version` of key `key_id`).
pub(crate) fn seal(
    key_id: &uuid::Uuid,
    material_version: u32,
    material: &[u8; 32],
    plaintext: &[u8],
    context: &BTreeMap<String, String>,
) -> Vec<u8> {
    let mut nonce = [0u8; 12];
    aws_lc_rs::rand::fill(&mut nonce).expect("random generator");
    seal_with_nonce(
        key_id,
        material_version,
        material,
        nonce,
        plaintext,
        context,
    )
}

fn seal_with_nonce(
    key_id: &uuid::Uuid,
    material_version: u32,
    material: &[u8; 32],
    nonce: [u8; 12],
    plaintext: &[u8],
    context: &BTreeMap<String, String>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
    out.push(VERSION);
    out.extend_from_slice(key_id.as_bytes());
    out.extend_from_slice(&material_version.to_be_bytes());
    out.extend_from_slice(&nonce);
    let aad = aad(&out, context);
    out.extend_from_slice(plaintext);
    let tag = aead(material)
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&aad[..]),
            &mut out[HEADER_LEN..],
        )
        .expect("AES-GCM seal");
    out.extend_from_slice(tag.as_ref());
    out
}

/// Opens a parsed blob; `None` when it does not authenticate under `material` and `context`.
pub(crate) fn open(
    blob: &Blob<'_>,
    material: &[u8; 32],
    context: &BTreeMap<String, String>,
) -> Option<Zeroizing<Vec<u8>>> {
    let aad = aad(blob.header, context);
    let mut buf = Zeroizing::new(blob.sealed.to_vec());
    let len = aead(material)
        .open_in_place(
            Nonce::assume_unique_for_key(blob.nonce),
            Aad::from(&aad[..]),
            &mut buf,
        )
        .ok()?
        .len();
    buf.truncate(len);
    Some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ctx(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn round_trip_and_context_binding() {
        let id = uuid::Uuid::new_v4();
        let m = [9u8; 32];
        let c = ctx(&[("cluster", "c1"), ("class", "documents")]);
        let blob = seal(&id, 3, &m, b"hello", &c);
        assert_eq!(blob.len(), HEADER_LEN + 5 + TAG_LEN);
        let parsed = parse(&blob).unwrap();
        assert_eq!(parsed.key_id, id);
        assert_eq!(parsed.material_version, 3);
        assert_eq!(open(&parsed, &m, &c).unwrap().as_slice(), b"hello");
        assert!(open(
            &parsed,
            &m,
            &ctx(&[("cluster", "c2"), ("class", "documents")])
        )
        .is_none());
        assert!(open(&parsed, &m, &BTreeMap::new()).is_none());
        assert!(open(&parsed, &[8u8; 32], &c).is_none());
    }

    /// A vector computed independently (Python `cryptography`'s AESGCM over the layout in the
    /// module doc), checked in so the format never drifts.
    const VECTOR_V1: &str = "0100112233445566778899aabbccddeeff00000007000102030405060708090a0b\
                             7886cf641ad1518744a4e2141992ad333fce5c0258e4ed";

    #[test]
    fn version_1_test_vector() {
        let id = uuid::Uuid::parse_str("00112233-4455-6677-8899-aabbccddeeff").unwrap();
        let c = ctx(&[("cluster", "c-1"), ("class", "documents")]);
        let nonce: [u8; 12] = std::array::from_fn(|i| i as u8);
        let vector = hex::decode(VECTOR_V1.replace(' ', "")).unwrap();
        assert_eq!(
            seal_with_nonce(&id, 7, &[0x11; 32], nonce, b"keyward", &c),
            vector
        );
        let parsed = parse(&vector).unwrap();
        assert_eq!((parsed.key_id, parsed.material_version), (id, 7));
        assert_eq!(
            open(&parsed, &[0x11; 32], &c).unwrap().as_slice(),
            b"keyward"
        );
    }

    #[test]
    fn header_is_authenticated() {
        let id = uuid::Uuid::new_v4();
        let m = [1u8; 32];
        let mut blob = seal(&id, 1, &m, b"data", &BTreeMap::new());
        blob[20] ^= 1; // material version
        let parsed = parse(&blob).unwrap();
        assert!(open(&parsed, &m, &BTreeMap::new()).is_none());
    }

    #[test]
    fn canonical_context_is_unambiguous() {
        // {"ab": "c"} and {"a": "bc"} must not share AAD bytes.
        assert_ne!(
            canonical_context(&ctx(&[("ab", "c")])),
            canonical_context(&ctx(&[("a", "bc")]))
        );
    }

    proptest! {
        #[test]
        fn parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Some(b) = parse(&bytes) {
                let _ = open(&b, &[0u8; 32], &BTreeMap::new());
            }
        }

        #[test]
        fn flipped_bits_never_decrypt(pos in 0usize..60, bit in 0u8..8) {
            let id = uuid::Uuid::new_v4();
            let m = [5u8; 32];
            let mut blob = seal(&id, 1, &m, b"eleven byte", &BTreeMap::new());
            let pos = pos % blob.len();
            blob[pos] ^= 1 << bit;
            let ok = parse(&blob).and_then(|b| open(&b, &m, &BTreeMap::new()));
            prop_assert!(ok.is_none());
        }
    }
}
