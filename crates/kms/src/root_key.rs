//! The root key: the one secret that wraps every piece of key material at rest.
//!
//! Wrapped material layout (AES-256-GCM under the root key, AAD supplied by the caller and naming
//! what is wrapped, so a wrapped blob cannot be moved to another key or version):
//!
//! ```text
//!  0        1              13                      n-16        n
//!  +--------+--------------+-----------------------+-----------+
//!  | 0x01   | nonce (12 B) | ciphertext            | tag (16 B)|
//!  | version|              |                       |           |
//!  +--------+--------------+-----------------------+-----------+
//! ```

use std::io::Write;
use std::path::Path;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use zeroize::Zeroizing;

use crate::error::Error;

const WRAP_VERSION: u8 = 1;

/// 32 secret bytes, zeroized on drop; no `Debug`, no `Clone`.
pub struct RootKey {
    bytes: Zeroizing<[u8; 32]>,
}

impl RootKey {
    pub fn from_bytes(bytes: [u8; 32]) -> RootKey {
        RootKey {
            bytes: Zeroizing::new(bytes),
        }
    }

    /// A fresh random root key.
    pub fn generate() -> Result<RootKey, Error> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::fill(bytes.as_mut())
            .map_err(|_| Error::InvalidRootKey("the random generator failed".into()))?;
        Ok(RootKey { bytes })
    }

    /// 64 hex characters (surrounding whitespace ignored), e.g. from `KEYWARD_KMS_ROOT_KEY`.
    pub fn from_hex(hex_text: &str) -> Result<RootKey, Error> {
        let text = hex_text.trim();
        if text.len() != 64 {
            return Err(Error::InvalidRootKey(format!(
                "{} hex characters given",
                text.len()
            )));
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text, bytes.as_mut())
            .map_err(|_| Error::InvalidRootKey("not hexadecimal".into()))?;
        Ok(RootKey { bytes })
    }

    /// A file of 32 raw bytes or 64 hex characters.
    pub fn from_file(path: &Path) -> Result<RootKey, Error> {
        let data = Zeroizing::new(std::fs::read(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?);
        if data.len() == 32 {
            let mut bytes = Zeroizing::new([0u8; 32]);
            bytes.copy_from_slice(&data);
            return Ok(RootKey { bytes });
        }
        let text = std::str::from_utf8(&data).map_err(|_| {
            Error::InvalidRootKey(format!("{} is neither 32 bytes nor hex", path.display()))
        })?;
        RootKey::from_hex(text)
    }

    /// Dev mode: reads the key file, or creates it (mode 0600, 64 hex characters) when missing.
    pub fn load_or_create_dev(path: &Path) -> Result<RootKey, Error> {
        if path.exists() {
            return RootKey::from_file(path);
        }
        let key = RootKey::generate()?;
        let io = |source| Error::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(io)?;
        let text = Zeroizing::new(hex::encode(key.bytes.as_ref()));
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(key)
    }

    fn aead(&self) -> LessSafeKey {
        // A 32-byte key is always valid for AES-256-GCM.
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, self.bytes.as_ref()).expect("32-byte key"))
    }

    /// Wraps `plaintext` (see the module doc for the layout).
    pub(crate) fn wrap(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 12];
        aws_lc_rs::rand::fill(&mut nonce).expect("random generator");
        let mut out = Vec::with_capacity(1 + 12 + plaintext.len() + 16);
        out.push(WRAP_VERSION);
        out.extend_from_slice(&nonce);
        let start = out.len();
        out.extend_from_slice(plaintext);
        let tag = self
            .aead()
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut out[start..],
            )
            .expect("AES-GCM seal");
        out.extend_from_slice(tag.as_ref());
        out
    }

    /// Unwraps a blob made by [`RootKey::wrap`] with the same `aad`; `None` when it does not verify.
    pub(crate) fn unwrap(&self, blob: &[u8], aad: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if blob.len() < 1 + 12 + 16 || blob[0] != WRAP_VERSION {
            return None;
        }
        let nonce: [u8; 12] = blob[1..13].try_into().ok()?;
        let mut buf = Zeroizing::new(blob[13..].to_vec());
        let len = self
            .aead()
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut buf,
            )
            .ok()?
            .len();
        buf.truncate(len);
        Some(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_round_trips_and_binds_aad() {
        let k = RootKey::generate().unwrap();
        let w = k.wrap(b"secret material", b"key/1");
        assert_eq!(
            k.unwrap(&w, b"key/1").unwrap().as_slice(),
            b"secret material"
        );
        assert!(k.unwrap(&w, b"key/2").is_none());
        let other = RootKey::generate().unwrap();
        assert!(other.unwrap(&w, b"key/1").is_none());
    }

    #[test]
    fn hex_and_file_forms() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("root.key");
        let k = RootKey::load_or_create_dev(&p).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let again = RootKey::load_or_create_dev(&p).unwrap();
        let w = k.wrap(b"x", b"a");
        assert!(again.unwrap(&w, b"a").is_some());
        std::fs::write(&p, [7u8; 32]).unwrap();
        assert!(RootKey::from_file(&p).is_ok());
        assert!(RootKey::from_hex("abcd").is_err());
        assert!(RootKey::from_hex(&"zz".repeat(32)).is_err());
    }
}
