//! Encryption context: the key-value pairs bound to a message as AAD.
//!
//! Serialization (`framework/structures.md`), all integers big-endian; the empty
//! context serializes to zero bytes:
//!
//! ```text
//! +-------+-------------+-----+---------------+-----+
//! | count | key len (2) | key | value len (2) | val | ... (count entries,
//! |  (2)  |             |     |               |     |      sorted by key bytes)
//! +-------+-------------+-----+---------------+-----+
//! ```

use std::collections::BTreeMap;

use crate::{Error, Result};

/// An encryption context. `BTreeMap<String, _>` orders keys by their UTF-8
/// bytes, which is exactly the order the format requires.
pub type EncryptionContext = BTreeMap<String, String>;

/// Prefix of the keys the format reserves for itself.
pub const RESERVED_PREFIX: &str = "aws-crypto-";

/// Serializes a context; fails when it does not fit the format's u16 fields.
pub fn serialize(context: &EncryptionContext) -> Result<Vec<u8>> {
    if context.is_empty() {
        return Ok(Vec::new());
    }
    let too_long =
        |what: &str| Error::InvalidContext(format!("{what} is longer than 65,535 bytes"));
    let count = u16::try_from(context.len()).map_err(|_| too_long("the entry count"))?;
    let mut out = Vec::new();
    out.extend_from_slice(&count.to_be_bytes());
    for (key, value) in context {
        for field in [key, value] {
            let len = u16::try_from(field.len()).map_err(|_| too_long("a key or value"))?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(field.as_bytes());
        }
    }
    if out.len() > usize::from(u16::MAX) {
        return Err(too_long("the serialized context"));
    }
    Ok(out)
}

/// Parses a serialized context. Refuses duplicates, unsorted keys, invalid
/// UTF-8 and trailing bytes (the canonical form is unique, so the bytes we
/// authenticate are the bytes we interpret). `None` on any defect.
pub(crate) fn parse(bytes: &[u8]) -> Option<EncryptionContext> {
    let mut context = EncryptionContext::new();
    if bytes.is_empty() {
        return Some(context);
    }
    let mut r = crate::header::Cursor::new(bytes);
    let count = r.u16()?;
    if count == 0 {
        return None;
    }
    let mut last: Option<String> = None;
    for _ in 0..count {
        let key = std::str::from_utf8(r.field()?).ok()?.to_owned();
        let value = std::str::from_utf8(r.field()?).ok()?.to_owned();
        if last
            .as_ref()
            .is_some_and(|last| last.as_bytes() >= key.as_bytes())
        {
            return None;
        }
        last = Some(key.clone());
        context.insert(key, value);
    }
    if !r.is_empty() {
        return None;
    }
    Some(context)
}

/// Refuses caller contexts that use the reserved prefix.
pub(crate) fn check_caller_context(context: &EncryptionContext) -> Result<()> {
    if let Some(key) = context.keys().find(|k| k.starts_with(RESERVED_PREFIX)) {
        return Err(Error::InvalidContext(format!(
            "the key {key:?} uses the prefix {RESERVED_PREFIX:?} reserved by the message format"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn serializes_sorted_by_key_bytes_and_parses_back() {
        let c = ctx(&[("b", "2"), ("a", "1"), ("é", "3"), ("Z", "0")]);
        let bytes = serialize(&c).unwrap();
        assert_eq!(&bytes[..2], &[0, 4]);
        assert_eq!(&bytes[2..7], &[0, 1, b'Z', 0, 1]);
        assert_eq!(parse(&bytes), Some(c));
        assert_eq!(
            serialize(&EncryptionContext::new()).unwrap(),
            Vec::<u8>::new()
        );
        assert_eq!(parse(&[]), Some(EncryptionContext::new()));
    }

    #[test]
    fn refuses_non_canonical_forms() {
        // Unsorted, duplicate, zero count, trailing byte, invalid UTF-8.
        let unsorted = [0, 2, 0, 1, b'b', 0, 0, 0, 1, b'a', 0, 0];
        let duplicate = [0, 2, 0, 1, b'a', 0, 0, 0, 1, b'a', 0, 0];
        let mut trailing = serialize(&ctx(&[("a", "1")])).unwrap();
        trailing.push(0);
        let bad_utf8 = [0, 1, 0, 1, 0xff, 0, 0];
        for bytes in [&unsorted[..], &duplicate, &[0, 0], &trailing, &bad_utf8] {
            assert_eq!(parse(bytes), None, "{bytes:?}");
        }
    }

    #[test]
    fn reserved_prefix_is_refused_for_callers() {
        assert!(check_caller_context(&ctx(&[("aws-crypto-x", "1")])).is_err());
        assert!(check_caller_context(&ctx(&[("aws-other", "1")])).is_ok());
    }
}
