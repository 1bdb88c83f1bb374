//! Secret and public key values, as distinct types.

use zeroize::Zeroizing;

/// A 256-bit plaintext data key. No `Debug`, `Clone` or `Serialize`: its bytes are
/// read only through [`DataKey::expose`] and wiped when it is dropped.
pub struct DataKey(Zeroizing<[u8; 32]>);

impl DataKey {
    /// Wraps 32 key bytes; `None` when the length is wrong.
    pub fn from_slice(bytes: &[u8]) -> Option<DataKey> {
        let array: [u8; 32] = bytes.try_into().ok()?;
        Some(DataKey(Zeroizing::new(array)))
    }

    /// A fresh random data key.
    pub fn generate() -> crate::Result<DataKey> {
        let mut key = Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::fill(&mut key[..]).map_err(|_| crate::Error::Crypto)?;
        Ok(DataKey(key))
    }

    /// The key bytes. The one place they are read.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

/// A data key wrapped by some keyring, as stored in the message header.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EncryptedDataKey {
    /// Who wrapped it: `aws-kms` for the KMS keyring, the key namespace for raw keys.
    pub provider_id: String,
    /// For `aws-kms`, the key ARN; for raw AES keys, name ‖ tag bits ‖ IV length ‖ IV.
    pub provider_info: Vec<u8>,
    /// The wrapped key (the KMS ciphertext blob).
    pub ciphertext: Vec<u8>,
}
