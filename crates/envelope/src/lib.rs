//! AWS Encryption SDK message format v2, written and read as streams.
//!
//! What it does:
//! - writes messages with the committing suite `0x0478` (AES-256-GCM,
//!   HKDF-SHA512, key commitment) by default, or `0x0578` (the same plus an
//!   ECDSA P-384 signature), and reads both — so a message written here opens
//!   with the official AWS Encryption CLI and the other way round;
//! - streams over `std::io` and `tokio::io` with memory bounded by about one
//!   frame, whatever the input size, sealing frames in place; in memory it
//!   works in one buffer ([`Client::encrypt_in_place`], [`Client::decrypt_in_place`])
//!   or with one copy ([`Client::encrypt_to_vec`], [`Client::decrypt_to_vec`]);
//! - gets data keys from a [`Keyring`]: [`KmsKeyring`] over `aws-sdk-kms`
//!   (the embedded KMS or AWS) or [`RawAesKeyring`] (test vectors);
//! - caches data keys ([`DataKeyCache`]) with age, message and byte limits, a
//!   cap on entries and dropping of every entry of a key at once.
//!
//! What it does not do: message format v1 and the non-committing suites
//! (refused, as the commitment policy `RequireEncryptRequireDecrypt` does),
//! non-framed bodies, the multi-keyring, discovery keyrings (decryption uses
//! only the key ARNs the caller configured).
//!
//! Every failure caused by a message's bytes is the one opaque
//! [`Error::Decrypt`]. Specification:
//! <https://github.com/awslabs/aws-encryption-sdk-specification>.
#![forbid(unsafe_code)]

pub mod cache;
mod client;
pub mod context;
mod error;
mod frame;
pub mod header;
pub mod keyring;
mod keys;
pub mod kms_failure;
pub mod rewrap;
mod stream;
mod suite;

pub use cache::{CacheLimits, DataKeyCache};
pub use client::{
    Client, CommitmentPolicy, Config, DecryptOptions, Decryption, EncryptOptions, Encryption,
    UnverifiedHeader, DEFAULT_FRAME_LENGTH,
};
pub use context::EncryptionContext;
pub use error::{Error, Result};
pub use keyring::{Keyring, KmsKeyring, RawAesKeyring};
pub use keys::{DataKey, EncryptedDataKey};
pub use kms_failure::{KmsCause, KmsErrorCode, KmsFailure};
pub use suite::{Suite, PUBLIC_KEY_CONTEXT_KEY};
