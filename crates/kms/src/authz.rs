//! Authorization: called for every operation on a key, before anything changes.
//!
//! AWS KMS's rules, in order: an explicit `Deny` in the key policy or the caller's identity
//! policies refuses; an `Allow` in the key policy naming the caller allows; one naming the caller's
//! account delegates to the caller's identity policies; a caller from another account needs both
//! the key policy and its identity policies. When policies do not allow, a grant on the key whose
//! grantee is the caller, whose operations include the action and whose constraints the request's
//! encryption context satisfies, allows (an explicit deny is not overridden by a grant).
//!
//! The key policy is compiled when it is saved or loaded ([`crate::keys::KeyRecord::policy`]) and
//! identity policies when the identity config is read, so a request parses nothing here.

use std::collections::BTreeMap;

use crate::engine::State;
use crate::error::ApiError;
use crate::identity::{Caller, Identity, IdentityKind};
use crate::keys::KeyRecord;
use crate::ops::Cx;
use crate::policy::{
    evaluate, evaluate_identity, Decision, GrantContext, Principal, PrincipalKind, RequestContext,
};

/// The policy module's view of an identity.
pub(crate) fn principal(id: &Identity) -> Principal<'_> {
    Principal {
        kind: match id.kind {
            IdentityKind::Root => PrincipalKind::Root,
            IdentityKind::IamUser => PrincipalKind::User,
            IdentityKind::AssumedRole => PrincipalKind::AssumedRole,
        },
        arn: &id.arn,
        account: &id.account_id,
        principal_id: &id.principal_id,
        role_arn: id.session_issuer_arn.as_deref(),
    }
}

/// `action` is the IAM action without its `kms:` prefix (`Decrypt`, `ReEncryptFrom`, …).
pub(crate) fn authorize(
    cx: &Cx<'_>,
    state: &State,
    action: &str,
    key: &KeyRecord,
    context: Option<&BTreeMap<String, String>>,
    grant_tokens: &[String],
) -> Result<(), ApiError> {
    authorize_with(cx, state, action, key, context, grant_tokens, None)
}

/// [`authorize`] with the grant a `CreateGrant` request would create (for `kms:Grant*`
/// condition keys).
pub(crate) fn authorize_with(
    cx: &Cx<'_>,
    state: &State,
    action: &str,
    key: &KeyRecord,
    context: Option<&BTreeMap<String, String>>,
    _grant_tokens: &[String],
    grant: Option<GrantContext<'_>>,
) -> Result<(), ApiError> {
    let caller = cx.caller;
    let mut ctx = RequestContext::new(
        principal(&caller.identity),
        action,
        &key.meta.arn,
        &key.meta.account,
    );
    ctx.encryption_context = context;
    if context.is_some() {
        ctx.encryption_algorithm = Some("SYMMETRIC_DEFAULT");
    }
    ctx.grant = grant;
    ctx.source_ip = caller.source_ip.parse().ok();
    ctx.now_epoch_seconds = Some(cx.now.div_euclid(1000));
    let decision = if caller.identity.kind == IdentityKind::Root {
        evaluate(&ctx, &key.policy, &[])
    } else {
        let ids = cx
            .inner
            .identities
            .read()
            .unwrap_or_else(|e| e.into_inner());
        evaluate(&ctx, &key.policy, ids.policies_for(&caller.identity))
    };
    match decision {
        Decision::Allow => Ok(()),
        Decision::ExplicitDeny(_) => Err(denial(decision, &ctx)),
        Decision::ImplicitDeny(_) => {
            // Grants take effect at once here, so a grant token adds nothing beyond being well
            // formed (checked when the request is parsed).
            if state
                .grants_of(&key.meta.id)
                .any(|g| g.allows(&caller.identity, action, context))
            {
                Ok(())
            } else {
                Err(denial(decision, &ctx))
            }
        }
    }
}

fn denial(decision: Decision, ctx: &RequestContext<'_>) -> ApiError {
    ApiError::new(
        "AccessDeniedException",
        decision
            .denial_message(ctx)
            .expect("a denial has a message"),
    )
}

/// Actions on no key (CreateKey, ListKeys, ListAliases, GenerateRandom, ListRetirableGrants):
/// AWS authorizes them by the caller's IAM identity policies alone, on resource `*`. Root may do
/// them all. An IAM user with no identity policy in the config may too: identity files written
/// before identity policies existed gave users these rights, and a config that wants them
/// withheld attaches a policy (see the crate docs for this difference from AWS).
pub(crate) fn authorize_account(cx: &Cx<'_>, action: &str) -> Result<(), ApiError> {
    let caller = cx.caller;
    if caller.identity.kind == IdentityKind::Root {
        return Ok(());
    }
    let ids = cx
        .inner
        .identities
        .read()
        .unwrap_or_else(|e| e.into_inner());
    let policies = ids.policies_for(&caller.identity);
    if policies.is_empty() && caller.identity.kind == IdentityKind::IamUser {
        return Ok(());
    }
    let mut ctx = RequestContext::new(
        principal(&caller.identity),
        action,
        "*",
        &caller.identity.account_id,
    );
    ctx.source_ip = caller.source_ip.parse().ok();
    ctx.now_epoch_seconds = Some(cx.now.div_euclid(1000));
    match evaluate_identity(&ctx, policies) {
        Decision::Allow => Ok(()),
        d => Err(denial(d, &ctx)),
    }
}

/// AWS's AccessDeniedException message when no policy allows (for checks outside
/// [`authorize`], e.g. who may retire a grant).
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
