//! Errors of the encrypted object stores.
//!
//! Kept beside the store rather than in the crate's [`crate::Error`] while the
//! two evolve separately; every variant names the object key, never key bytes.

/// Everything that can go wrong with an encrypted object.
///
/// Every failure to authenticate an object — altered or truncated bytes, an
/// object copied from another cluster, storage class or name, a key that
/// cannot open it — is the one [`ObjectError::Authentication`], with no detail
/// on which check failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ObjectError {
    /// The object key is not acceptable (empty, too long, `.`/`..` or empty
    /// segments, control characters, or `#`, which the local backend uses for
    /// uploads in progress).
    #[error("invalid object key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },

    /// A list prefix that could not name a place in the store (`../`, empty segments).
    #[error("invalid prefix {prefix:?}: {reason}")]
    InvalidPrefix {
        prefix: String,
        reason: &'static str,
    },

    /// The key is an existing object's prefix, or an existing object is its prefix (`a` beside
    /// `a/b`): a key is an object or a folder of objects, never both.
    #[error(
        "object key {key:?} clashes with the existing object {existing:?}: a key cannot be both an \
         object and the prefix of other objects; delete one or choose another name"
    )]
    Conflict { key: String, existing: String },

    /// The cluster or storage class name cannot be used in a path.
    #[error("invalid store name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },

    /// No object under this key.
    #[error("object {key:?} does not exist")]
    NotFound { key: String },

    /// The stored bytes do not start with an ESDK v2 message header: the object
    /// was not written by an encrypted store (or its header is cut short).
    #[error("object {key:?} is not an encrypted object: its bytes are not an AWS Encryption SDK v2 message")]
    NotEncrypted { key: String },

    /// The object failed authentication (see the type's doc). Bytes already
    /// written to the caller's output by a streaming get must be discarded.
    #[error(
        "object {key:?} failed authentication: it was altered or truncated, or it was written \
         for another cluster, storage class or object key, or under another KMS key"
    )]
    Authentication { key: String },

    /// A KMS call, the envelope configuration or the caller's reader/writer failed.
    #[error("object {key:?}: {source}")]
    Envelope {
        key: String,
        #[source]
        source: keyward_envelope::Error,
    },

    /// The backend store failed.
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
}

/// The result type of the object stores.
pub type ObjectResult<T> = std::result::Result<T, ObjectError>;
