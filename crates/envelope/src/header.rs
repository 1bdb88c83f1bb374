//! The message header, format version 2 (`data-format/message-header.md`).
//!
//! ```text
//! +---------+-------+------------+---------+-------------+-----------+------+
//! | version | suite | message id | AAD len | encryption  | EDK count | EDKs |
//! |  0x02   |  (2)  |    (32)    |   (2)   | context (n) |    (2)    | ...  |
//! +---------+-------+------------+---------+-------------+-----------+------+
//! +--------------+--------------+------------------------+----------------+
//! | content type | frame length | suite data: commitment | header auth    |
//! | 0x02 framed  |     (4)      |        key (32)        | tag (16)       |
//! +--------------+--------------+------------------------+----------------+
//! EDK = u16 len ‖ provider id ‖ u16 len ‖ provider info ‖ u16 len ‖ ciphertext
//! ```
//!
//! The header auth tag is AES-256-GCM under the derived key, IV = 12 zero bytes,
//! empty plaintext, AAD = header body ‖ serialized required encryption context.

use crate::{context, keys::EncryptedDataKey, EncryptionContext, Error, Result, Suite};

/// Format version byte of the messages we write and read.
pub const VERSION: u8 = 0x02;
/// Content type "framed", the only one v2 messages use.
const CONTENT_TYPE_FRAMED: u8 = 0x02;
/// Length of the header authentication tag.
pub const AUTH_TAG_LEN: usize = 16;

/// A parsed (or to-be-written) message header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub suite: Suite,
    pub message_id: [u8; 32],
    /// The encryption context stored in the message (without required keys left out).
    pub context: EncryptionContext,
    pub encrypted_data_keys: Vec<EncryptedDataKey>,
    pub frame_length: u32,
    pub commitment: [u8; 32],
}

/// Why a header could not be parsed from a prefix of a message.
#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    /// More bytes are needed: at least this many in total.
    Incomplete(usize),
    /// The bytes are not a valid header.
    Invalid,
    /// A header of another format version.
    Version(u8),
    /// More encrypted data keys than allowed.
    TooManyKeys,
}

impl Header {
    /// Serializes the header body (everything the auth tag covers).
    pub fn serialize_body(&self) -> Result<Vec<u8>> {
        let aad = context::serialize(&self.context)?;
        let mut out = Vec::with_capacity(128 + aad.len());
        out.push(VERSION);
        out.extend_from_slice(&self.suite.id().to_be_bytes());
        out.extend_from_slice(&self.message_id);
        out.extend_from_slice(&(aad.len() as u16).to_be_bytes());
        out.extend_from_slice(&aad);
        let count = u16::try_from(self.encrypted_data_keys.len())
            .ok()
            .filter(|&c| c > 0)
            .ok_or_else(|| {
                Error::Config("a message needs 1 to 65,535 encrypted data keys".into())
            })?;
        out.extend_from_slice(&count.to_be_bytes());
        for edk in &self.encrypted_data_keys {
            for field in [
                edk.provider_id.as_bytes(),
                &edk.provider_info,
                &edk.ciphertext,
            ] {
                let len = u16::try_from(field.len()).map_err(|_| {
                    Error::Config("an encrypted data key field exceeds 65,535 bytes".into())
                })?;
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(field);
            }
        }
        out.push(CONTENT_TYPE_FRAMED);
        out.extend_from_slice(&self.frame_length.to_be_bytes());
        out.extend_from_slice(&self.commitment);
        Ok(out)
    }

    /// Parses a header body from the start of `bytes`. On success returns the
    /// header and the body length (the auth tag follows it). Never allocates
    /// more than the bytes it was given: every length is checked against the
    /// input before anything is copied.
    pub fn parse(
        bytes: &[u8],
        max_encrypted_data_keys: usize,
    ) -> std::result::Result<(Header, usize), ParseError> {
        let mut r = Cursor::new(bytes);
        let fail = |r: &Cursor| match r.short {
            Some(needed) => ParseError::Incomplete(needed),
            None => ParseError::Invalid,
        };
        let version = r.u8().ok_or_else(|| fail(&r))?;
        if version != VERSION {
            return Err(ParseError::Version(version));
        }
        let suite = r.u16().ok_or_else(|| fail(&r))?;
        let suite = Suite::from_id(suite).ok_or(ParseError::Invalid)?;
        let message_id: [u8; 32] = r.array().ok_or_else(|| fail(&r))?;
        let aad_len = r.u16().ok_or_else(|| fail(&r))?;
        let aad = r.take(usize::from(aad_len)).ok_or_else(|| fail(&r))?;
        let context = context::parse(aad).ok_or(ParseError::Invalid)?;
        let count = r.u16().ok_or_else(|| fail(&r))?;
        if count == 0 {
            return Err(ParseError::Invalid);
        }
        if usize::from(count) > max_encrypted_data_keys {
            return Err(ParseError::TooManyKeys);
        }
        let mut encrypted_data_keys = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let provider_id = r.field().ok_or_else(|| fail(&r))?;
            let provider_id = std::str::from_utf8(provider_id)
                .map_err(|_| ParseError::Invalid)?
                .to_owned();
            let provider_info = r.field().ok_or_else(|| fail(&r))?.to_vec();
            let ciphertext = r.field().ok_or_else(|| fail(&r))?.to_vec();
            encrypted_data_keys.push(EncryptedDataKey {
                provider_id,
                provider_info,
                ciphertext,
            });
        }
        let content_type = r.u8().ok_or_else(|| fail(&r))?;
        if content_type != CONTENT_TYPE_FRAMED {
            return Err(ParseError::Invalid);
        }
        let frame_length = r.u32().ok_or_else(|| fail(&r))?;
        if frame_length == 0 {
            return Err(ParseError::Invalid);
        }
        let commitment: [u8; 32] = r.array().ok_or_else(|| fail(&r))?;
        let header = Header {
            suite,
            message_id,
            context,
            encrypted_data_keys,
            frame_length,
            commitment,
        };
        Ok((header, r.pos))
    }
}

/// A bounds-checked reader over a byte slice that remembers how many bytes
/// would have been needed when it runs short.
pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    short: Option<usize>,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Cursor {
            bytes,
            pos: 0,
            short: None,
        }
    }

    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        match self.bytes.get(self.pos..end) {
            Some(slice) => {
                self.pos = end;
                Some(slice)
            }
            None => {
                self.short = Some(end);
                None
            }
        }
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N).map(|s| s.try_into().expect("length checked"))
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[b]| b)
    }

    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
    }

    /// A u16-length-prefixed field.
    pub(crate) fn field(&mut self) -> Option<&'a [u8]> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos == self.bytes.len()
    }
}
