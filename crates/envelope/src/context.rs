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
