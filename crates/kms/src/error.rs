//! The two error types of the engine.
//!
//! [`Error`] is the engine's own failure (store, root key, configuration): the binary prints it and
//! stops. [`ApiError`] is the AWS answer to one request: `code` is AWS's exception name ([`Code`]:
//! its `as_str` is the wire's `__type`, its `http_status` the answer's status), `message` the text
//! AWS would give. Neither ever carries key bytes.

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

/// AWS's exception names (KMS and CloudTrail, JSON protocol) and error codes (IAM and STS, query
/// protocol) that the engine answers with, each with its HTTP status in one `match`
/// ([`Code::http_status`]) so that no code falls to a default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[allow(clippy::enum_variant_names)] // the variants are AWS's names, suffixes included
pub enum Code {
    // KMS
    AccessDeniedException,
    AlreadyExistsException,
    DisabledException,
    DryRunOperationException,
    IncorrectKeyException,
    InvalidAliasNameException,
    InvalidArnException,
    InvalidCiphertextException,
    InvalidGrantTokenException,
    InvalidKeyUsageException,
    InvalidMarkerException,
    KMSInternalException,
    KMSInvalidStateException,
    LimitExceededException,
    MalformedPolicyDocumentException,
    NotFoundException,
    SerializationException,
    TagException,
    UnknownOperationException,
    UnsupportedOperationException,
    ValidationException,
    // CloudTrail
    InvalidLookupAttributesException,
    InvalidMaxResultsException,
    InvalidNextTokenException,
    InvalidTimeRangeException,
    InternalFailure,
    // IAM and STS
    AccessDenied,
    DeleteConflict,
    EntityAlreadyExists,
    InvalidAction,
    LimitExceeded,
    MalformedPolicyDocument,
    NoSuchEntity,
    ServiceFailure,
    ValidationError,
}

impl Code {
    /// The name as the wire writes it (`__type` or `<Code>`).
    pub fn as_str(self) -> &'static str {
        match self {
            Code::AccessDeniedException => "AccessDeniedException",
            Code::AlreadyExistsException => "AlreadyExistsException",
            Code::DisabledException => "DisabledException",
            Code::DryRunOperationException => "DryRunOperationException",
            Code::IncorrectKeyException => "IncorrectKeyException",
            Code::InvalidAliasNameException => "InvalidAliasNameException",
            Code::InvalidArnException => "InvalidArnException",
            Code::InvalidCiphertextException => "InvalidCiphertextException",
            Code::InvalidGrantTokenException => "InvalidGrantTokenException",
            Code::InvalidKeyUsageException => "InvalidKeyUsageException",
            Code::InvalidMarkerException => "InvalidMarkerException",
            Code::KMSInternalException => "KMSInternalException",
            Code::KMSInvalidStateException => "KMSInvalidStateException",
            Code::LimitExceededException => "LimitExceededException",
            Code::MalformedPolicyDocumentException => "MalformedPolicyDocumentException",
            Code::NotFoundException => "NotFoundException",
            Code::SerializationException => "SerializationException",
            Code::TagException => "TagException",
            Code::UnknownOperationException => "UnknownOperationException",
            Code::UnsupportedOperationException => "UnsupportedOperationException",
            Code::ValidationException => "ValidationException",
            Code::InvalidLookupAttributesException => "InvalidLookupAttributesException",
            Code::InvalidMaxResultsException => "InvalidMaxResultsException",
            Code::InvalidNextTokenException => "InvalidNextTokenException",
            Code::InvalidTimeRangeException => "InvalidTimeRangeException",
            Code::InternalFailure => "InternalFailure",
            Code::AccessDenied => "AccessDenied",
            Code::DeleteConflict => "DeleteConflict",
            Code::EntityAlreadyExists => "EntityAlreadyExists",
            Code::InvalidAction => "InvalidAction",
            Code::LimitExceeded => "LimitExceeded",
            Code::MalformedPolicyDocument => "MalformedPolicyDocument",
            Code::NoSuchEntity => "NoSuchEntity",
            Code::ServiceFailure => "ServiceFailure",
            Code::ValidationError => "ValidationError",
        }
    }

    /// The HTTP status AWS answers with: KMS and CloudTrail 400 for every client error
    /// (AccessDeniedException included) and 500 for their internal failures; IAM and STS 404 for
    /// a missing entity, 409 for conflicts and limits, 403 for a denial, 500 for their failures.
    pub fn http_status(self) -> u16 {
        match self {
            Code::AccessDeniedException
            | Code::AlreadyExistsException
            | Code::DisabledException
            | Code::DryRunOperationException
            | Code::IncorrectKeyException
            | Code::InvalidAliasNameException
            | Code::InvalidArnException
            | Code::InvalidCiphertextException
            | Code::InvalidGrantTokenException
            | Code::InvalidKeyUsageException
            | Code::InvalidMarkerException
            | Code::KMSInvalidStateException
            | Code::LimitExceededException
            | Code::MalformedPolicyDocumentException
            | Code::NotFoundException
            | Code::SerializationException
            | Code::TagException
            | Code::UnknownOperationException
            | Code::UnsupportedOperationException
            | Code::ValidationException
            | Code::InvalidLookupAttributesException
            | Code::InvalidMaxResultsException
            | Code::InvalidNextTokenException
            | Code::InvalidTimeRangeException
            | Code::InvalidAction
            | Code::MalformedPolicyDocument
            | Code::ValidationError => 400,
            Code::AccessDenied => 403,
            Code::NoSuchEntity => 404,
            Code::DeleteConflict | Code::EntityAlreadyExists | Code::LimitExceeded => 409,
            Code::KMSInternalException | Code::InternalFailure | Code::ServiceFailure => 500,
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for Code {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<str> for Code {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

/// An AWS-style error answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// AWS's exception name, e.g. [`Code::NotFoundException`].
    pub code: Code,
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
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn serialization(message: impl Into<String>) -> Self {
        Self::new(Code::SerializationException, message)
    }

    /// AWS's one-violation validation message.
    pub(crate) fn validation(value: &str, member: &str, constraint: &str) -> Self {
        Self::new(
            Code::ValidationException,
            format!(
                "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: {constraint}"
            ),
        )
    }

    pub(crate) fn null(member: &str) -> Self {
        Self::new(
            Code::ValidationException,
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
        Self::new(Code::NotFoundException, message)
    }

    pub(crate) fn invalid_state(message: impl Into<String>) -> Self {
        Self::new(Code::KMSInvalidStateException, message)
    }

    pub(crate) fn invalid_ciphertext() -> Self {
        // Like AWS, a ciphertext that fails to authenticate says nothing about why.
        Self::new(Code::InvalidCiphertextException, "")
    }

    pub(crate) fn internal() -> Self {
        Self::new(
            Code::KMSInternalException,
            "The request was rejected because an internal exception occurred. The request can be retried.",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_carry_awss_names_and_statuses() {
        assert_eq!(Code::NotFoundException, "NotFoundException");
        assert_eq!(
            Code::KMSInvalidStateException.to_string(),
            "KMSInvalidStateException"
        );
        for (code, status) in [
            (Code::AccessDeniedException, 400),
            (Code::NotFoundException, 400),
            (Code::InvalidTimeRangeException, 400),
            (Code::KMSInternalException, 500),
            (Code::ValidationError, 400),
            (Code::AccessDenied, 403),
            (Code::NoSuchEntity, 404),
            (Code::EntityAlreadyExists, 409),
            (Code::DeleteConflict, 409),
            (Code::LimitExceeded, 409),
            (Code::ServiceFailure, 500),
        ] {
            assert_eq!(code.http_status(), status, "{code}");
        }
    }
}
