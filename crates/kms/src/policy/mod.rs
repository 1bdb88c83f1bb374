//! The IAM policy language as AWS KMS uses it: parse and validate key policies and identity
//! policies, and evaluate a request against them.
//!
//! This module is pure: no I/O, no storage, no clock. The engine parses a policy once when it is
//! saved or loaded ([`Policy::parse`] for key policies, [`Policy::parse_identity`] for IAM
//! identity policies), binds the IAM principals it names to their unique ids
//! ([`Policy::resolve_principals`]), keeps the compiled [`Policy`], and on every request calls
//! [`evaluate`] with a [`RequestContext`]. Parsing lowers every action, resource and condition to
//! a precompiled matcher so that evaluation does no parsing and, for policies without conditions,
//! no allocation.
//!
//! What it models (see the KMS developer guide, "Key policies" and "Determining access"):
//! - explicit `Deny` anywhere wins;
//! - an `Allow` in the key policy that names the caller (or `"*"`) suffices in the key's account;
//! - an `Allow` naming the caller's account (`arn:aws:iam::ACCT:root` or `"ACCT"`) delegates to the
//!   caller's identity policies;
//! - cross-account calls need both the key policy and the caller's identity policy;
//! - a role principal matches every session of the role, by the role's unique id as of when the
//!   policy was saved, so a deleted and re-created role no longer matches until the policy is
//!   saved again.
//!
//! What it does not model: grants (the engine checks those), service control policies,
//! permission boundaries, session policies, policy variables (`${aws:username}`), and
//! `Federated`/`CanonicalUser` principals (parsed, never matched).
//!
//! How the engine uses it:
//!
//! ```
//! use std::collections::BTreeMap;
//! use keyward_kms::policy::{evaluate, Decision, Policy, Principal, PrincipalKind, RequestContext};
//!
//! // On CreateKey/PutKeyPolicy: parse, bind principals to their ids now, persist the pairs.
//! let text = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow",
//!     "Principal":{"AWS":"arn:aws:iam::111122223333:role/app"},
//!     "Action":["kms:Decrypt","kms:GenerateDataKey*"],"Resource":"*"}]}"#;
//! let mut policy = Policy::parse(text).expect("a valid policy");
//! policy
//!     .resolve_principals(|arn| (arn == "arn:aws:iam::111122223333:role/app").then(|| "AROAAPPEXAMPLE000001".into()))
//!     .expect("every principal exists");
//! let saved_ids: Vec<(String, String)> = policy
//!     .principal_ids()
//!     .into_iter()
//!     .map(|(arn, id)| (arn.to_string(), id.to_string()))
//!     .collect();
//!
//! // On every request: who is calling, what for, and the request's condition facts.
//! let caller = Principal {
//!     kind: PrincipalKind::AssumedRole,
//!     arn: "arn:aws:sts::111122223333:assumed-role/app/worker",
//!     account: "111122223333",
//!     principal_id: "AROAAPPEXAMPLE000001:worker",
//!     role_arn: Some("arn:aws:iam::111122223333:role/app"),
//!     issuer_deleted: false,
//! };
//! let key_arn = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
//! let context: BTreeMap<String, String> = [("cluster".into(), "c-7".into())].into();
//! let mut ctx = RequestContext::new(caller, "Decrypt", key_arn, "111122223333");
//! ctx.encryption_context = Some(&context);
//! assert_eq!(evaluate(&ctx, &policy, &[]), Decision::Allow);
//!
//! ctx.action = "ScheduleKeyDeletion";
//! let denied = evaluate(&ctx, &policy, &[]);
//! assert!(denied.denial_message(&ctx).unwrap().ends_with(
//!     "because no resource-based policy allows the kms:ScheduleKeyDeletion action"));
//! # let _ = saved_ids;
//! ```

mod condition;
mod evaluate;
mod parse;
mod pattern;

#[cfg(test)]
mod tests;

pub use evaluate::{
    evaluate, evaluate_identity, Decision, GrantContext, PolicyType, Principal, PrincipalKind,
    RequestContext,
};
pub use parse::{Policy, PolicyVersion};

/// The largest key policy AWS KMS accepts, in bytes.
pub const MAX_POLICY_BYTES: usize = 32 * 1024;

/// AWS's message when a new key policy would lock the caller out of the key.
pub const LOCKOUT_MESSAGE: &str =
    "The new key policy will not allow you to update the key policy in the future.";

/// Why a policy document was refused. Every variant is answered on the wire as
/// `MalformedPolicyDocumentException` (see [`PolicyError::aws_code`]); `Display` gives the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    #[error("The policy document is not valid JSON: {0}")]
    NotJson(String),
    #[error("The policy document is {size} bytes; the limit is 32768 bytes.")]
    TooLarge { size: usize },
    #[error("The policy document must be a JSON object.")]
    NotAnObject,
    #[error("The policy Version \"{0}\" is not supported; use \"2012-10-17\" or \"2008-10-17\".")]
    UnsupportedVersion(String),
    #[error("The policy contains an unknown element: {0}")]
    UnknownElement(String),
    #[error("The policy is missing the required element {0}")]
    MissingElement(&'static str),
    #[error("The policy element {0} has the wrong type")]
    WrongType(&'static str),
    #[error("A policy statement cannot contain both {0} and {1}")]
    Conflicting(&'static str, &'static str),
    #[error("The policy element {0} must not be empty")]
    Empty(&'static str),
    #[error("Invalid Effect \"{0}\": it must be \"Allow\" or \"Deny\"")]
    InvalidEffect(String),
    /// AWS's exact wording; the offending value is kept for logs but not shown.
    #[error("Policy contains a statement with one or more invalid principals.")]
    InvalidPrincipal(String),
    /// IAM's wording for a `Principal` in an identity policy.
    #[error("Policy document should not specify a principal.")]
    ProhibitedPrincipal(&'static str),
    /// IAM's wording for an element a trust policy must not have (`Resource`).
    #[error("Has prohibited field {0}")]
    ProhibitedElement(&'static str),
    #[error("Invalid action \"{0}\": an action is \"*\" or \"<service>:<action>\"")]
    InvalidAction(String),
    #[error("Invalid resource \"{0}\": a resource is \"*\" or an ARN")]
    InvalidResource(String),
    #[error("Invalid Condition type : {0}")]
    UnknownConditionOperator(String),
    #[error("Invalid Condition: {0}")]
    InvalidCondition(String),
}

impl PolicyError {
    /// The AWS exception name KMS answers with.
    pub fn aws_code(&self) -> &'static str {
        "MalformedPolicyDocumentException"
    }

    /// The error code IAM's query API answers with (`PutRolePolicy`, `CreateRole`).
    pub fn iam_code(&self) -> &'static str {
        "MalformedPolicyDocument"
    }
}

/// AWS's default key policy for a key created without one, byte for byte as `GetKeyPolicy`
/// returns it: the account root may do everything, which delegates to IAM policies.
pub fn default_key_policy(account_id: &str) -> String {
    format!(
        "{{\n  \"Version\" : \"2012-10-17\",\n  \"Id\" : \"key-default-1\",\n  \"Statement\" : [ {{\n    \
         \"Sid\" : \"Enable IAM User Permissions\",\n    \"Effect\" : \"Allow\",\n    \
         \"Principal\" : {{\n      \"AWS\" : \"arn:aws:iam::{account_id}:root\"\n    }},\n    \
         \"Action\" : \"kms:*\",\n    \"Resource\" : \"*\"\n  }} ]\n}}"
    )
}

/// AWS's policy lockout safety check: true when `new_key_policy` would NOT allow `caller` to
/// make a later `PutKeyPolicy` request on the key, in which case `CreateKey`/`PutKeyPolicy` answer
/// `MalformedPolicyDocumentException` with [`LOCKOUT_MESSAGE`] unless
/// `BypassPolicyLockoutSafetyCheck` is true.
///
/// As the KMS API reference words it, the *key policy* must allow the principal: an explicit
/// deny locks out; an allow naming the caller, `"*"`, or the caller's account (delegation to
/// IAM) keeps it in. Identity policies are not consulted. `new_key_policy` must already be bound
/// with [`Policy::resolve_principals`].
pub fn would_lock_out(
    new_key_policy: &Policy,
    caller: &Principal<'_>,
    key_arn: &str,
    key_account: &str,
) -> bool {
    let ctx = RequestContext::new(caller.clone(), "PutKeyPolicy", key_arn, key_account);
    !evaluate::key_policy_allows(&ctx, new_key_policy)
}
