//! The crate's one error type, with a stable code per condition for the REST API.
//!
//! Each variant's message is what a person can act on; none carries a secret (no token, no key
//! bytes, no credentials). [`Error::code`] is the stable, snake_case name the API answers with;
//! the HTTP status of each code is the REST API's (`keyward-api`), in one table there.

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

impl Error {
    /// The stable code the API answers with.
    pub fn code(&self) -> &'static str {
        match self {
            Error::NotFound { .. } => "not_found",
            Error::Unauthenticated => "unauthenticated",
            Error::InvalidRequest(_) | Error::InvalidPolicy(_) => "invalid_request",
            Error::Conflict(_) => "conflict",
            Error::KeyNotAssociated { .. } => "key_not_associated",
            Error::NotReady { .. } => "not_ready",
            Error::AssociationFailed(_) => "association_failed",
            Error::KeyInaccessible { .. } => "key_inaccessible",
            Error::KeyDeleted { .. } => "key_deleted",
            Error::Kms { .. } | Error::Internal(_) => "internal",
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
            DbError::Backend(what) => Error::Internal(format!("database: {what}")),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
