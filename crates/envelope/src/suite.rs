//! The algorithm suites we speak, and the per-message key derivation.
//!
//! Spec: `framework/algorithm-suites.md` of
//! <https://github.com/awslabs/aws-encryption-sdk-specification>.

use aws_lc_rs::{aead, hkdf};
use zeroize::Zeroizing;

use crate::{keys::DataKey, Error, Result};

/// An algorithm suite with key commitment (message format v2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Suite {
    /// `0x0478`: AES-256-GCM, HKDF-SHA512, key commitment, no signature. The default.
    Aes256GcmHkdfSha512Commit,
    /// `0x0578`: as `0x0478`, plus an ECDSA P-384 / SHA-384 signature in the footer.
    Aes256GcmHkdfSha512CommitEcdsaP384,
}

/// Context key under which signed suites carry the verification key (base64 of
/// the compressed public point).
pub const PUBLIC_KEY_CONTEXT_KEY: &str = "aws-crypto-public-key";

impl Suite {
    /// The two-byte identifier written in the header.
    pub fn id(self) -> u16 {
        match self {
            Suite::Aes256GcmHkdfSha512Commit => 0x0478,
            Suite::Aes256GcmHkdfSha512CommitEcdsaP384 => 0x0578,
        }
    }

    /// The suite with this identifier, if we implement it.
    pub fn from_id(id: u16) -> Option<Suite> {
        match id {
            0x0478 => Some(Suite::Aes256GcmHkdfSha512Commit),
            0x0578 => Some(Suite::Aes256GcmHkdfSha512CommitEcdsaP384),
            _ => None,
        }
    }

    /// Whether the message ends with an ECDSA signature footer.
    pub fn is_signed(self) -> bool {
        matches!(self, Suite::Aes256GcmHkdfSha512CommitEcdsaP384)
    }
}

/// The keys derived from one data key and one message id.
pub(crate) struct Derived {
    pub(crate) key: aead::LessSafeKey,
    pub(crate) commitment: Zeroizing<[u8; 32]>,
}

struct Len(usize);
impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-SHA512 with the message id as salt: the encryption key
/// (info = suite id ‖ "DERIVEKEY") and the commitment key (info = "COMMITKEY").
pub(crate) fn derive(suite: Suite, data_key: &DataKey, message_id: &[u8; 32]) -> Result<Derived> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA512, message_id).extract(data_key.expose());
    let id = suite.id().to_be_bytes();
    let info: [&[u8]; 2] = [&id, b"DERIVEKEY"];
    let mut enc = Zeroizing::new([0u8; 32]);
    prk.expand(&info, Len(32))
        .and_then(|okm| okm.fill(&mut enc[..]))
        .map_err(|_| Error::Crypto)?;
    let mut commitment = Zeroizing::new([0u8; 32]);
    prk.expand(&[b"COMMITKEY"], Len(32))
        .and_then(|okm| okm.fill(&mut commitment[..]))
        .map_err(|_| Error::Crypto)?;
    let unbound = aead::UnboundKey::new(&aead::AES_256_GCM, &enc[..]).map_err(|_| Error::Crypto)?;
    Ok(Derived {
        key: aead::LessSafeKey::new(unbound),
        commitment,
    })
}
