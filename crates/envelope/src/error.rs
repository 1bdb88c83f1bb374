//! The crate's one error type.

use crate::kms_failure::KmsFailure;

/// Everything that can go wrong while encrypting or decrypting a message.
///
/// Every failure that comes from the bytes of a message — truncation,
/// reordered or missing frames, trailing bytes, a flipped bit anywhere, a wrong
/// key, a wrong encryption context — is the single [`Error::Decrypt`] variant,
/// with no detail: an attacker who feeds us altered messages learns nothing
/// about which check failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The message is not authentic (altered, truncated, reordered, trailing
    /// bytes) or no configured key could open it, or the encryption context is
    /// not the one it was encrypted with.
    #[error(
        "cannot decrypt: the message is not authentic (altered or truncated), or the key or \
         encryption context is not the one it was encrypted with"
    )]
    Decrypt,
    /// Message format version 1 (the non-committing suites) is refused by the
    /// commitment policy `RequireEncryptRequireDecrypt`, the only one we implement.
    #[error(
        "message format version {0} is not supported: only v2 messages with key commitment \
         (suites 0x0478 and 0x0578) can be decrypted"
    )]
    UnsupportedVersion(u8),
    /// An authentic message whose frame length is above the caller's limit.
    #[error(
        "the message's frame length {frame_length} is above the limit {max} set for decryption"
    )]
    FrameLengthLimit { frame_length: u32, max: u32 },
    /// The caller's required encryption-context key is absent from the message's context.
    #[error("the encryption context lacks the required key {0:?}")]
    MissingRequiredContext(String),
    /// The caller's encryption context is invalid (reserved key, too long).
    #[error("invalid encryption context: {0}")]
    InvalidContext(String),
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The keyring produced more encrypted data keys than the configured maximum.
    #[error("{count} encrypted data keys exceed the configured maximum of {max}")]
    TooManyEncryptedDataKeys { count: usize, max: usize },
    /// The plaintext is longer than one message can hold (2^32 - 1 frames).
    #[error("the plaintext is too long for one message at this frame length")]
    TooLong,
    /// A KMS call failed; the failure is typed so the caller can decide on it (drop
    /// cached keys, lock the data) and say what to do (enable the key, fix the key policy,
    /// check the endpoint).
    #[error("KMS {operation} on {key_id} failed: {failure}")]
    Kms {
        operation: &'static str,
        key_id: String,
        failure: KmsFailure,
    },
    /// Reading the input or writing the output failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The crypto library failed where it should not (randomness, key generation).
    #[error("internal cryptographic failure")]
    Crypto,
}

impl Error {
    /// The KMS failure this error carries, if it is one.
    pub fn kms_failure(&self) -> Option<&KmsFailure> {
        match self {
            Error::Kms { failure, .. } => Some(failure),
            _ => None,
        }
    }
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;
