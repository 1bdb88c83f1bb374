//! The raw AES keyring (`framework/raw-aes-keyring.md`): data keys wrapped with
//! AES-256-GCM under a key the caller holds. Wire-compatible with the ESDK's
//! `RawAESKeyring` / Python `RawMasterKey`, which is what lets the official
//! implementation's test vectors stay decryptable without a KMS.
//!
//! ```text
//! provider id   = key namespace (UTF-8)
//! provider info = key name ‖ tag length in bits (u32 = 128) ‖ IV length (u32 = 12) ‖ IV (12)
//! ciphertext    = AES-256-GCM(wrapping key, IV, data key, AAD = serialized context) ‖ tag (16)
//! ```

use aws_lc_rs::aead;
use zeroize::Zeroizing;

use super::Keyring;
use crate::{context, keys::DataKey, EncryptedDataKey, EncryptionContext, Error, Result, Suite};

/// A keyring over one raw 256-bit AES wrapping key.
pub struct RawAesKeyring {
    namespace: String,
    name: String,
    key: aead::LessSafeKey,
}

impl RawAesKeyring {
    /// A keyring named `namespace`/`name` over `wrapping_key` (32 bytes).
    pub fn new(namespace: &str, name: &str, wrapping_key: &[u8]) -> Result<RawAesKeyring> {
        let wrapping_key = Zeroizing::new(wrapping_key.to_vec());
        let unbound = aead::UnboundKey::new(&aead::AES_256_GCM, &wrapping_key)
            .map_err(|_| Error::Config("a raw AES wrapping key must be 32 bytes".into()))?;
        Ok(RawAesKeyring {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            key: aead::LessSafeKey::new(unbound),
        })
    }

    fn info_prefix(&self) -> Vec<u8> {
        let mut info = self.name.as_bytes().to_vec();
        info.extend_from_slice(&128u32.to_be_bytes());
        info.extend_from_slice(&12u32.to_be_bytes());
        info
    }
}

impl Keyring for RawAesKeyring {
    fn key_ids(&self) -> Vec<String> {
        vec![format!("{}/{}", self.namespace, self.name)]
    }

    async fn generate(
        &self,
        _suite: Suite,
        ctx: &EncryptionContext,
    ) -> Result<(DataKey, Vec<EncryptedDataKey>)> {
        let data_key = DataKey::generate()?;
        let aad = context::serialize(ctx)?;
        let mut iv = [0u8; 12];
        aws_lc_rs::rand::fill(&mut iv).map_err(|_| Error::Crypto)?;
        let mut ciphertext = data_key.expose().to_vec();
        self.key
            .seal_in_place_append_tag(
                aead::Nonce::assume_unique_for_key(iv),
                aead::Aad::from(&aad),
                &mut ciphertext,
            )
            .map_err(|_| Error::Crypto)?;
        let mut provider_info = self.info_prefix();
        provider_info.extend_from_slice(&iv);
        let edk = EncryptedDataKey {
            provider_id: self.namespace.clone(),
            provider_info,
            ciphertext,
        };
        Ok((data_key, vec![edk]))
    }

    async fn unwrap(
        &self,
        _suite: Suite,
        edks: &[EncryptedDataKey],
        ctx: &EncryptionContext,
    ) -> Result<Option<DataKey>> {
        let aad = context::serialize(ctx)?;
        let prefix = self.info_prefix();
        for edk in edks {
            if edk.provider_id != self.namespace
                || edk.provider_info.len() != prefix.len() + 12
                || !edk.provider_info.starts_with(&prefix)
                || edk.ciphertext.len() != 32 + 16
            {
                continue;
            }
            let iv: [u8; 12] = edk.provider_info[prefix.len()..]
                .try_into()
                .expect("length checked");
            let mut buf = Zeroizing::new(edk.ciphertext.clone());
            if let Ok(plain) = self.key.open_in_place(
                aead::Nonce::assume_unique_for_key(iv),
                aead::Aad::from(&aad),
                &mut buf[..],
            ) {
                return Ok(DataKey::from_slice(plain));
            }
        }
        Ok(None)
    }
}
