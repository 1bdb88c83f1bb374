//! The one error type of this crate.

use keyward_envelope::KmsFailure;

use std::path::PathBuf;

/// Everything that can go wrong with a volume or its export.
///
/// No variant carries key bytes; a header that fails authentication is one
/// variant ([`Error::HeaderMacMismatch`]) with no detail on what differed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{path}: not a keyward volume (bad magic)")]
    NotAVolume { path: PathBuf },

    #[error("{path}: volume header is truncated ({len} bytes; a header is 4096)")]
    TruncatedHeader { path: PathBuf, len: u64 },

    #[error("{path}: volume format version {version} is not supported (this build reads version {supported})")]
    UnsupportedVersion {
        path: PathBuf,
        version: u8,
        supported: u8,
    },

    #[error("{path}: volume header is corrupted: {reason}")]
    CorruptHeader { path: PathBuf, reason: String },

    #[error("volume header authentication failed: the header was changed or the key is not this volume's")]
    HeaderMacMismatch,

    #[error("{path}: volume file is {actual} bytes, the header says {expected}")]
    TruncatedData {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },

    #[error("invalid volume parameter: {0}")]
    InvalidParameter(String),

    #[error("the XTS data key is invalid: {0}")]
    InvalidKey(&'static str),

    #[error("{path} already exists; refusing to overwrite it")]
    AlreadyExists { path: PathBuf },

    #[error("volume {volume_id} is detached: its key is no longer available")]
    Detached { volume_id: String },

    #[error("KMS {operation} failed: {failure}")]
    Kms {
        operation: &'static str,
        failure: KmsFailure,
    },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The KMS failure this error carries, if it is one.
    pub fn kms_failure(&self) -> Option<&KmsFailure> {
        match self {
            Error::Kms { failure, .. } => Some(failure),
            _ => None,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
