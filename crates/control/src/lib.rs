//! The keyward control plane, first pieces: what the customer must put in their KMS key's policy,
//! and the validation that runs, as a cluster's role, before a customer's key is applied to a
//! cluster.
//!
//! What it does:
//! - [`key_policy_statements`]: the guide's two key-policy statements (basic key access, and
//!   CreateGrant for encrypted disks) with the cluster's role ARN filled in; [`merge_key_policy`]
//!   puts them into an existing key policy, idempotently (statements with the same `Sid` are
//!   replaced).
//! - [`validate_key_association`]: every check that can stop a key from working for a cluster
//!   (ARN shape, alias instead of key, region, existence, spec and usage, state, and each permission
//!   the cluster needs, probed against KMS rather than guessed), each reported as passed, failed
//!   (with the likely cause and the exact fix) or skipped (with why). Nothing is applied here: the
//!   report only says whether the key may be applied.
//!
//! What it does not do yet: clusters, their IAM roles, state (no database), the operator, key
//! health probes and the REST API. It talks to KMS only through `aws-sdk-kms`.

#![forbid(unsafe_code)]

mod association;
pub mod db;
pub mod health;
mod policy;

pub use association::{
    validate_key_association, AssociationReport, Cause, Check, CheckResult, Outcome,
    PROBE_CONTEXT_KEY,
};
pub use policy::{key_policy_statements, merge_key_policy, BASIC_ACCESS_SID, CREATE_GRANT_SID};

/// The errors of this crate. Association failures are not errors: they are reported, check by
/// check, in an [`AssociationReport`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The key policy given to [`merge_key_policy`] is not one we can add statements to.
    #[error("the key policy is not valid: {0}")]
    InvalidPolicy(String),
}
