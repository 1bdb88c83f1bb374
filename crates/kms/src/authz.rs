//! The authorization hook: called for every operation on a key, before anything changes.
//!
//! For now: a caller in the key's own account is allowed; a caller from another account only through
//! a grant on the key whose grantee it is, whose operations include the action and whose constraints
//! the request's encryption context satisfies. Key-policy and IAM evaluation (the `policy` module)
//! plugs in here without changing any caller.

use std::collections::BTreeMap;

use crate::engine::State;
use crate::error::ApiError;
use crate::identity::Caller;
use crate::keys::KeyRecord;

/// `action` is the IAM action without its `kms:` prefix (`Decrypt`, `ReEncryptFrom`, …).
pub(crate) fn authorize(
    caller: &Caller,
    state: &State,
    action: &str,
    key: &KeyRecord,
    context: Option<&BTreeMap<String, String>>,
    _grant_tokens: &[String],
) -> Result<(), ApiError> {
    if caller.identity.account_id == key.meta.account {
        return Ok(());
    }
    // Grants take effect at once here, so a grant token adds nothing beyond being well formed
    // (checked when the request is parsed).
    if state
        .grants_of(&key.meta.id)
        .any(|g| g.allows(&caller.identity, action, context))
    {
        return Ok(());
    }
    Err(denied(caller, action, &key.meta.arn))
}

/// The hook for actions on no key (CreateKey, ListKeys, ListAliases, GenerateRandom,
/// ListRetirableGrants): AWS authorizes them by the caller's IAM identity policy alone. Every
/// configured identity may call them for now; IAM evaluation plugs in here.
pub(crate) fn authorize_account(_caller: &Caller, _action: &str) -> Result<(), ApiError> {
    Ok(())
}

/// AWS's AccessDeniedException message shape.
pub(crate) fn denied(caller: &Caller, action: &str, resource_arn: &str) -> ApiError {
    ApiError::new(
        "AccessDeniedException",
        format!(
            "User: {} is not authorized to perform: kms:{action} on resource: {resource_arn} because no \
             resource-based policy allows the kms:{action} action",
            caller.identity.arn
        ),
    )
}
