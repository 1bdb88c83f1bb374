//! The 4 KiB volume header.
//!
//! ```text
//!  offset  size  field
//!  ------  ----  -----------------------------------------------------------
//!       0     8  magic  b"KWVOLUME"
//!       8     1  format version (1)
//!       9     1  cipher id (1 = aes-xts-plain64, 64-byte key, tweak = 4 KiB sector index)
//!      10     2  reserved, zero
//!      12     4  sector size, u32 LE (4096)
//!      16     8  data offset, u64 LE (4096: sector 0 starts right after this header)
//!      24     8  volume size in bytes, u64 LE (a multiple of 4096)
//!      32     2  n  volume id length, u16 LE, then n bytes of UTF-8
//!       …     2  n  KMS key ARN length, u16 LE, then n bytes of UTF-8
//!       …     2  n  wrapped data key length, u16 LE, then n bytes (the KMS ciphertext
//!                   blob of the 64-byte XTS key)
//!       …     2  c  encryption context pair count, u16 LE, then c times
//!                   (u16 LE length, key UTF-8, u16 LE length, value UTF-8), keys sorted
//!       …     …  zero padding up to offset 4064
//!    4064    32  HMAC-SHA256 over bytes 0..4064, keyed with
//!                HKDF-SHA256(ikm = data key, salt = "keyward volume header",
//!                            info = "keyward volume header mac v1")
//! ```
//!
//! The MAC can only be checked once KMS has unwrapped the data key; until then a
//! header is only checked for structure (magic, version, lengths, zero padding).
//! The wrapped key and the encryption context are authenticated by KMS itself;
//! the MAC covers the rest (size, sector layout, ids), so a header edited to, say,
//! grow the volume or point at another key is refused at attach.

use std::collections::BTreeMap;
use std::path::Path;

use aws_lc_rs::{hkdf, hmac};

use super::xts::{DataKey, SECTOR_SIZE};
use crate::error::{Error, Result};

pub const HEADER_LEN: usize = 4096;
pub const MAGIC: &[u8; 8] = b"KWVOLUME";
pub const FORMAT_VERSION: u8 = 1;
/// aes-xts-plain64 with a 512-bit key and 4096-byte sectors indexed from the data offset.
pub const CIPHER_AES_XTS_PLAIN64: u8 = 1;
pub const DATA_OFFSET: u64 = HEADER_LEN as u64;
const MAC_OFFSET: usize = HEADER_LEN - 32;
const MAX_ID_LEN: usize = 128;
const MAX_ARN_LEN: usize = 2048;
const MAX_WRAPPED_LEN: usize = 1024;

/// What a volume header says (the MAC aside).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeHeader {
    pub volume_id: String,
    /// Usable size in bytes, a multiple of 4096.
    pub size: u64,
    /// The KMS key that wraps the data key, as a full ARN.
    pub key_arn: String,
    /// The KMS ciphertext blob of the 64-byte XTS key. Safe to show: only KMS can open it.
    pub wrapped_key: Vec<u8>,
    /// The encryption context the data key was generated under; Decrypt needs it back.
    pub encryption_context: BTreeMap<String, String>,
}

impl VolumeHeader {
    /// Checks the fields a header can hold before encoding anything.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidParameter(m));
        if !valid_volume_id(&self.volume_id) {
            return bad(format!(
                "volume id {:?} must be 1-{MAX_ID_LEN} characters of A-Z a-z 0-9 . _ -",
                self.volume_id
            ));
        }
        if self.size == 0 || !self.size.is_multiple_of(SECTOR_SIZE as u64) {
            return bad(format!(
                "volume size {} must be a positive multiple of 4096",
                self.size
            ));
        }
        if self.key_arn.is_empty() || self.key_arn.len() > MAX_ARN_LEN {
            return bad(format!("key ARN must be 1-{MAX_ARN_LEN} bytes"));
        }
        if self.wrapped_key.is_empty() || self.wrapped_key.len() > MAX_WRAPPED_LEN {
            return bad(format!("wrapped key must be 1-{MAX_WRAPPED_LEN} bytes"));
        }
        let body = self.body_len();
        if body > MAC_OFFSET {
            return bad(format!(
                "header fields take {body} bytes; at most {MAC_OFFSET} fit"
            ));
        }
        Ok(())
    }

    fn body_len(&self) -> usize {
        let pairs: usize = self
            .encryption_context
            .iter()
            .map(|(k, v)| 4 + k.len() + v.len())
            .sum();
        32 + 2
            + self.volume_id.len()
            + 2
            + self.key_arn.len()
            + 2
            + self.wrapped_key.len()
            + 2
            + pairs
    }

    /// Encodes the header and seals it with a MAC keyed from `key`.
    pub fn seal(&self, key: &DataKey) -> Result<Box<[u8; HEADER_LEN]>> {
        self.validate()?;
        let mut out = Box::new([0u8; HEADER_LEN]);
        out[0..8].copy_from_slice(MAGIC);
        out[8] = FORMAT_VERSION;
        out[9] = CIPHER_AES_XTS_PLAIN64;
        out[12..16].copy_from_slice(&(SECTOR_SIZE as u32).to_le_bytes());
        out[16..24].copy_from_slice(&DATA_OFFSET.to_le_bytes());
        out[24..32].copy_from_slice(&self.size.to_le_bytes());
        let mut fields = Vec::with_capacity(self.body_len() - 32);
        let mut put = |bytes: &[u8]| {
            fields.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
            fields.extend_from_slice(bytes);
        };
        put(self.volume_id.as_bytes());
        put(self.key_arn.as_bytes());
        put(&self.wrapped_key);
        fields.extend_from_slice(&(self.encryption_context.len() as u16).to_le_bytes());
        for (k, v) in &self.encryption_context {
            fields.extend_from_slice(&(k.len() as u16).to_le_bytes());
            fields.extend_from_slice(k.as_bytes());
            fields.extend_from_slice(&(v.len() as u16).to_le_bytes());
            fields.extend_from_slice(v.as_bytes());
        }
        out[32..32 + fields.len()].copy_from_slice(&fields);
        let tag = hmac::sign(&mac_key(key), &out[..MAC_OFFSET]);
        out[MAC_OFFSET..].copy_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Parses a header's structure. Does not (cannot) check the MAC: see [`verify_mac`].
    pub fn parse(raw: &[u8], path: &Path) -> Result<VolumeHeader> {
        let corrupt = |reason: &str| Error::CorruptHeader {
            path: path.to_owned(),
            reason: reason.to_owned(),
        };
        if raw.len() < HEADER_LEN {
            if raw.len() < 8 || &raw[..8] != MAGIC {
                return Err(Error::NotAVolume {
                    path: path.to_owned(),
                });
            }
            return Err(Error::TruncatedHeader {
                path: path.to_owned(),
                len: raw.len() as u64,
            });
        }
        let raw = &raw[..HEADER_LEN];
        if &raw[..8] != MAGIC {
            return Err(Error::NotAVolume {
                path: path.to_owned(),
            });
        }
        if raw[8] != FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                path: path.to_owned(),
                version: raw[8],
                supported: FORMAT_VERSION,
            });
        }
        if raw[9] != CIPHER_AES_XTS_PLAIN64 {
            return Err(corrupt(&format!("unknown cipher id {}", raw[9])));
        }
        if raw[10..12] != [0, 0] {
            return Err(corrupt("reserved bytes are not zero"));
        }
        let sector = u32::from_le_bytes(raw[12..16].try_into().expect("4 bytes"));
        if sector as usize != SECTOR_SIZE {
            return Err(corrupt(&format!(
                "sector size {sector} (only 4096 is defined)"
            )));
        }
        let offset = u64::from_le_bytes(raw[16..24].try_into().expect("8 bytes"));
        if offset != DATA_OFFSET {
            return Err(corrupt(&format!(
                "data offset {offset} (only 4096 is defined)"
            )));
        }
        let size = u64::from_le_bytes(raw[24..32].try_into().expect("8 bytes"));
        let mut fields = Fields {
            raw: &raw[..MAC_OFFSET],
            at: 32,
        };
        let text = |bytes: &[u8], what: &str| {
            String::from_utf8(bytes.to_vec()).map_err(|_| corrupt(&format!("{what} is not UTF-8")))
        };
        let past = |what: &str| corrupt(&format!("{what} runs past the MAC"));
        let volume_id = text(fields.take().ok_or_else(|| past("volume id"))?, "volume id")?;
        let key_arn = text(fields.take().ok_or_else(|| past("key ARN"))?, "key ARN")?;
        let wrapped_key = fields.take().ok_or_else(|| past("wrapped key"))?.to_vec();
        let count = fields.u16().ok_or_else(|| past("encryption context"))?;
        let mut encryption_context = BTreeMap::new();
        for _ in 0..count {
            let k = text(
                fields.take().ok_or_else(|| past("encryption context"))?,
                "encryption context key",
            )?;
            let v = text(
                fields.take().ok_or_else(|| past("encryption context"))?,
                "encryption context value",
            )?;
            if encryption_context.insert(k, v).is_some() {
                return Err(corrupt("encryption context repeats a key"));
            }
        }
        let at = fields.at;
        if raw[at..MAC_OFFSET].iter().any(|&b| b != 0) {
            return Err(corrupt("padding after the fields is not zero"));
        }
        let header = VolumeHeader {
            volume_id,
            size,
            key_arn,
            wrapped_key,
            encryption_context,
        };
        header.validate().map_err(|e| corrupt(&e.to_string()))?;
        Ok(header)
    }
}

/// A cursor over the length-prefixed fields; `None` when a field runs past the end.
struct Fields<'a> {
    raw: &'a [u8],
    at: usize,
}

impl<'a> Fields<'a> {
    fn u16(&mut self) -> Option<u16> {
        let bytes = self.raw.get(self.at..self.at + 2)?;
        self.at += 2;
        Some(u16::from_le_bytes([bytes[0], bytes[1]]))
    }

    fn take(&mut self) -> Option<&'a [u8]> {
        let len = self.u16()? as usize;
        let bytes = self.raw.get(self.at..self.at + len)?;
        self.at += len;
        Some(bytes)
    }
}

/// Checks the header MAC in constant time (aws-lc-rs's `hmac::verify`).
pub fn verify_mac(raw: &[u8; HEADER_LEN], key: &DataKey) -> Result<()> {
    hmac::verify(&mac_key(key), &raw[..MAC_OFFSET], &raw[MAC_OFFSET..])
        .map_err(|_| Error::HeaderMacMismatch)
}

fn mac_key(key: &DataKey) -> hmac::Key {
    let prk =
        hkdf::Salt::new(hkdf::HKDF_SHA256, b"keyward volume header").extract(key.expose_secret());
    let okm = prk
        .expand(&[b"keyward volume header mac v1"], hmac::HMAC_SHA256)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    hmac::Key::from(okm)
}

pub fn valid_volume_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> VolumeHeader {
        VolumeHeader {
            volume_id: "vol-0123456789abcdef".into(),
            size: 1 << 30,
            key_arn: "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
                .into(),
            wrapped_key: (0..184u8).collect(),
            encryption_context: [
                (
                    "keyward:volume-id".to_string(),
                    "vol-0123456789abcdef".to_string(),
                ),
                ("keyward:cluster".to_string(), "c-1".to_string()),
            ]
            .into(),
        }
    }

    #[test]
    fn seal_parse_verify_round_trip() {
        let key = DataKey::generate().unwrap();
        let raw = sample().seal(&key).unwrap();
        assert_eq!(&raw[..8], b"KWVOLUME");
        assert_eq!(raw[8], 1);
        assert_eq!(&raw[16..24], &4096u64.to_le_bytes());
        let parsed = VolumeHeader::parse(&raw[..], Path::new("v")).unwrap();
        assert_eq!(parsed, sample());
        verify_mac(&raw, &key).unwrap();
        let other = DataKey::generate().unwrap();
        assert!(matches!(
            verify_mac(&raw, &other),
            Err(Error::HeaderMacMismatch)
        ));
    }

    #[test]
    fn every_single_byte_change_is_caught() {
        let key = DataKey::generate().unwrap();
        let raw = sample().seal(&key).unwrap();
        for i in 0..HEADER_LEN {
            let mut bad = raw.clone();
            bad[i] ^= 0x01;
            let structural = VolumeHeader::parse(&bad[..], Path::new("v"));
            let caught = structural.is_err() || verify_mac(&bad, &key).is_err();
            assert!(caught, "flipping byte {i} went unnoticed");
        }
    }

    #[test]
    fn truncated_wrong_version_and_foreign_files_are_named() {
        let key = DataKey::generate().unwrap();
        let raw = sample().seal(&key).unwrap();
        assert!(matches!(
            VolumeHeader::parse(&raw[..100], Path::new("v")),
            Err(Error::TruncatedHeader { len: 100, .. })
        ));
        let mut v2 = raw.clone();
        v2[8] = 2;
        assert!(matches!(
            VolumeHeader::parse(&v2[..], Path::new("v")),
            Err(Error::UnsupportedVersion { version: 2, .. })
        ));
        assert!(matches!(
            VolumeHeader::parse(&[0u8; 4096], Path::new("v")),
            Err(Error::NotAVolume { .. })
        ));
    }

    proptest::proptest! {
        /// Untrusted bytes never panic the parser; whatever it accepts re-encodes to
        /// the same fields (so nothing is silently dropped).
        #[test]
        fn parse_never_panics_on_mutated_headers(
            edits in proptest::collection::vec((0usize..HEADER_LEN, proptest::num::u8::ANY), 1..8),
            cut in 0usize..=HEADER_LEN,
        ) {
            let key = DataKey::from_slice(&mut (0..64u8).collect::<Vec<_>>()).unwrap();
            let mut raw = sample().seal(&key).unwrap().to_vec();
            for (at, byte) in edits {
                raw[at] = byte;
            }
            raw.truncate(cut.max(1));
            if let Ok(header) = VolumeHeader::parse(&raw, Path::new("v")) {
                let again = header.seal(&key).unwrap();
                let reparsed = VolumeHeader::parse(&again[..], Path::new("v")).unwrap();
                proptest::prop_assert_eq!(reparsed, header);
            }
        }
    }

    #[test]
    fn bad_parameters_are_refused() {
        let key = DataKey::generate().unwrap();
        for h in [
            VolumeHeader {
                size: 4095,
                ..sample()
            },
            VolumeHeader {
                size: 0,
                ..sample()
            },
            VolumeHeader {
                volume_id: "a/b".into(),
                ..sample()
            },
            VolumeHeader {
                wrapped_key: vec![],
                ..sample()
            },
            VolumeHeader {
                encryption_context: [("k".repeat(2000), "v".repeat(2000))].into(),
                ..sample()
            },
        ] {
            assert!(matches!(h.seal(&key), Err(Error::InvalidParameter(_))));
        }
    }
}
