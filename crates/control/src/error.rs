//! The crate's one error type, with a stable code per condition for the REST API.
//!
//! Each variant's message is what a person can act on; none carries a secret (no token, no key
//! bytes, no credentials). [`Error::code`] is its kind ([`ErrorCode`]), whose stable, snake_case
//! name the API answers with; the HTTP status of each kind is the REST API's (`keyward-api`), in
//! one exhaustive table there.

use keyward_envelope::KmsFailure;

use crate::association::AssociationReport;
use crate::db::DbError;
use crate::health::InaccessibleReason;

/// Everything the control plane can refuse or fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No such organization, cluster, document, backup or disk — or it belongs to another
    /// organization (which is not told apart, so one organization learns nothing of another's).
    #[error("{what} not found")]
    NotFound { what: String },

    /// No API token, or one that is not valid.
    #[error("the API token is missing or not valid: pass `Authorization: Bearer <token>` with a token of your organization")]
    Unauthenticated,

    /// The request itself is wrong; nothing was changed.
    #[error("invalid request: {0}")]
    InvalidRequest(String),

    /// The key policy given to [`crate::merge_key_policy`] is not one we can add statements to.
    #[error("the key policy is not valid: {0}")]
    InvalidPolicy(String),

    /// The request conflicts with the current state (a name taken, a cluster being deleted).
    #[error("conflict: {0}")]
    Conflict(String),

    /// The cluster has no KMS key yet: it cannot store anything.
    #[error("cluster {cluster_id} has no KMS key yet: create a key whose policy has the cluster's statements (GET the cluster's key-policy), then associate it (PUT the cluster's key)")]
    KeyNotAssociated { cluster_id: String },

    /// The cluster's storage is still being provisioned (or its key re-wrapped).
    #[error(
        "cluster {cluster_id} is {state}: its storage is not ready yet; retry in a few seconds"
    )]
    NotReady { cluster_id: String, state: String },

    /// A key association that did not pass every check; the report says which and how to fix it.
    #[error("the key {} cannot be associated: {}", .0.key_arn, failures(.0))]
    AssociationFailed(Box<AssociationReport>),

    /// The cluster's key cannot be used right now; the data is locked until it can.
    #[error("{message}")]
    KeyInaccessible {
        reason: InaccessibleReason,
        message: String,
    },

    /// The cluster's key is deleted: its data is gone for good.
    #[error("{message}")]
    KeyDeleted { message: String },

    /// A KMS call as the cluster's role failed for a reason that does not lock the cluster's
    /// data (the key was re-checked and is usable, or the call was the operator's). Answered as
    /// an internal error; the failure stays typed for whoever decides on it.
    #[error("KMS {operation} as {role_arn} failed: {failure}")]
    Kms {
        operation: &'static str,
        role_arn: String,
        failure: KmsFailure,
    },

    /// Anything else; the message names what failed, never a secret.
    #[error("internal error: {0}")]
    Internal(String),
}

fn failures(report: &AssociationReport) -> String {
    let failed: Vec<String> = report
        .failures()
        .map(|c| match &c.outcome {
            crate::Outcome::Failed { detail, fix, .. } => {
                format!("{:?}: {detail}; fix: {fix}", c.check)
            }
            _ => String::new(),
        })
        .collect();
    if failed.is_empty() {
        "no check ran".into()
    } else {
        failed.join("; ")
    }
}

/// The kinds of [`Error`] a client is told apart, each with its stable name. Deliberately not
/// `#[non_exhaustive]`: the REST API maps every kind to its HTTP status in one exhaustive
/// `match`, so a new kind does not compile until it has a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    NotFound,
    Unauthenticated,
    InvalidRequest,
    Conflict,
    KeyNotAssociated,
    NotReady,
    AssociationFailed,
    KeyInaccessible,
    KeyDeleted,
    Internal,
}

impl ErrorCode {
    /// The stable, snake_case name the API answers with.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotFound => "not_found",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::Conflict => "conflict",
            ErrorCode::KeyNotAssociated => "key_not_associated",
            ErrorCode::NotReady => "not_ready",
            ErrorCode::AssociationFailed => "association_failed",
            ErrorCode::KeyInaccessible => "key_inaccessible",
            ErrorCode::KeyDeleted => "key_deleted",
            ErrorCode::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Error {
    /// The kind the API answers with.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::NotFound { .. } => ErrorCode::NotFound,
            Error::Unauthenticated => ErrorCode::Unauthenticated,
            Error::InvalidRequest(_) | Error::InvalidPolicy(_) => ErrorCode::InvalidRequest,
            Error::Conflict(_) => ErrorCode::Conflict,
            Error::KeyNotAssociated { .. } => ErrorCode::KeyNotAssociated,
            Error::NotReady { .. } => ErrorCode::NotReady,
            Error::AssociationFailed(_) => ErrorCode::AssociationFailed,
            Error::KeyInaccessible { .. } => ErrorCode::KeyInaccessible,
            Error::KeyDeleted { .. } => ErrorCode::KeyDeleted,
            Error::Kms { .. } | Error::Internal(_) => ErrorCode::Internal,
        }
    }

    pub(crate) fn not_found(what: impl Into<String>) -> Error {
        Error::NotFound { what: what.into() }
    }

    pub(crate) fn internal(what: impl std::fmt::Display) -> Error {
        Error::Internal(what.to_string())
    }
}

impl From<DbError> for Error {
    fn from(error: DbError) -> Error {
        match error {
            DbError::Conflict(what) => Error::Conflict(what),
            DbError::NotFound => Error::not_found("row"),
            DbError::GuardFailed => Error::internal(
                "this replica no longer holds the cluster's lease: nothing was written, and the \
                 replica that holds it now does the work",
            ),
            DbError::Backend(what) => Error::Internal(format!("database: {what}")),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
