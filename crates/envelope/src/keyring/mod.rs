//! Keyrings: where data keys come from and how they are wrapped.

use std::future::Future;

use crate::{keys::DataKey, EncryptedDataKey, EncryptionContext, Result, Suite};

mod kms;
mod raw_aes;

pub use kms::KmsKeyring;
pub(crate) use kms::{invalid_answer, kms_error, to_map};
pub use raw_aes::RawAesKeyring;

/// A source of data keys: generates and wraps a fresh one for encryption,
/// unwraps one of a message's encrypted data keys for decryption.
///
/// The context passed in is the full encryption context of the message,
/// including `aws-crypto-public-key` for signed suites, as the ESDK does.
pub trait Keyring: Send + Sync {
    /// The wrapping keys this keyring uses (key ARNs for KMS), used to key the
    /// data-key cache and to drop a key's cache entries.
    fn key_ids(&self) -> Vec<String>;

    /// A fresh 32-byte data key and its wrapped forms (at least one).
    fn generate(
        &self,
        suite: Suite,
        context: &EncryptionContext,
    ) -> impl Future<Output = Result<(DataKey, Vec<EncryptedDataKey>)>> + Send;

    /// Unwraps the first encrypted data key this keyring can open; `Ok(None)`
    /// when none is ours or none opens. Errors are for failures the caller must
    /// act on (KMS key disabled, access denied, KMS unreachable).
    fn unwrap(
        &self,
        suite: Suite,
        encrypted_data_keys: &[EncryptedDataKey],
        context: &EncryptionContext,
    ) -> impl Future<Output = Result<Option<DataKey>>> + Send;
}
