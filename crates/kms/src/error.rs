//! The two error types of the engine.
//!
//! [`Error`] is the engine's own failure (store, root key, configuration): the binary prints it and
//! stops. [`ApiError`] is the AWS answer to one request: `code` is AWS's exception name exactly as it
//! appears in the wire's `__type`, `message` the text AWS would give. Neither ever carries key bytes.

use std::fmt;

/// A failure of the engine itself, as opposed to a refused request ([`ApiError`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// SQLite refused an operation on the store.
    #[error("KMS store error: {0}")]
    Store(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The root key does not open the data already stored (its check value does not verify).
    #[error(
        "the root key does not match the KMS data in {data_dir}: start with the root key this data was \
         created with (a stored check value failed to verify)"
    )]
    WrongRootKey { data_dir: String },
    /// The root key is malformed.
    #[error("invalid root key: {0} (expected 32 raw bytes or 64 hex characters)")]
    InvalidRootKey(String),
    /// The identity configuration is invalid.
    #[error("invalid identity configuration: {0}")]
    Config(String),
    /// Stored data failed to parse or to authenticate.
    #[error("the KMS store is damaged: {0}")]
    Corrupt(String),
    /// A dev-only operation was called on an engine not in dev mode.
    #[error("this operation is only available in dev mode")]
    NotDev,
    /// A dev clock move that would take the clock past [`crate::MAX_CLOCK_OFFSET`].
    #[error("the KMS clock may run at most {limit_days} days ahead of the wall clock; nothing was changed")]
    ClockOutOfRange { limit_days: u64 },
    /// The writer thread stopped (after an earlier store failure).
    #[error("the KMS store writer has stopped")]
    WriterStopped,
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Store(e.to_string())
    }
}

/// An AWS-style error answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// AWS's exception name, e.g. `"NotFoundException"`.
    pub code: &'static str,
    /// The human-readable message, in AWS's wording where known.
    pub message: String,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn serialization(message: impl Into<String>) -> Self {
        Self::new("SerializationException", message)
    }

    /// AWS's one-violation validation message.
    pub(crate) fn validation(value: &str, member: &str, constraint: &str) -> Self {
        Self::new(
            "ValidationException",
            format!(
                "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: {constraint}"
            ),
        )
    }

    pub(crate) fn null(member: &str) -> Self {
        Self::new(
            "ValidationException",
            format!(
                "1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"
            ),
        )
    }

    pub(crate) fn too_long(value: &str, member: &str, max: usize) -> Self {
        Self::validation(
            value,
            member,
            &format!("Member must have length less than or equal to {max}"),
        )
    }

    pub(crate) fn too_short(value: &str, member: &str, min: usize) -> Self {
        Self::validation(
            value,
            member,
            &format!("Member must have length greater than or equal to {min}"),
        )
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new("NotFoundException", message)
    }

    pub(crate) fn invalid_state(message: impl Into<String>) -> Self {
        Self::new("KMSInvalidStateException", message)
    }

    pub(crate) fn invalid_ciphertext() -> Self {
        // Like AWS, a ciphertext that fails to authenticate says nothing about why.
        Self::new("InvalidCiphertextException", "")
    }

    pub(crate) fn internal() -> Self {
        Self::new(
            "KMSInternalException",
            "The request was rejected because an internal exception occurred. The request can be retried.",
        )
    }
}
