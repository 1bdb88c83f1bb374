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
use crate::error::{ApiError, Code};
use crate::grants::{principal_named, ChildGrant, Grant, Named};
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
        issuer_deleted: id.issuer_deleted,
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
    authorize_with(cx, state, action, key, context, grant_tokens, None, None)
}

/// The identity config (users' and roles' policies), read-locked for one decision.
fn identities<'a>(
    cx: &'a Cx<'_>,
) -> std::sync::RwLockReadGuard<'a, crate::identity::IdentityConfig> {
    cx.inner
        .identities
        .read()
        .unwrap_or_else(|e| e.into_inner())
}

/// The facts of a request that the policy module needs beyond the caller and the key.
fn request_context<'a>(
    cx: &'a Cx<'_>,
    action: &'a str,
    resource: &'a str,
    resource_account: &'a str,
) -> RequestContext<'a> {
    let caller = cx.caller;
    let mut ctx = RequestContext::new(
        principal(&caller.identity),
        action,
        resource,
        resource_account,
    );
    ctx.source_ip = caller.source_ip.parse().ok();
    ctx.secure_transport = Some(caller.secure_transport);
    ctx.now_epoch_seconds = Some(cx.now.div_euclid(1000));
    // kms:CallerAccount is always the caller's account; kms:ViaService stays absent because no
    // AWS service calls this KMS on a principal's behalf.
    ctx
}

/// [`authorize`] for `CreateGrant`, `ListGrants` and `RevokeGrant`, with the `kms:Grant*`
/// condition facts (`grant`) and, for `CreateGrant`, the grant being created (`child`): a grant
/// whose grantee is the caller and which includes `CreateGrant` authorizes it only when the child
/// is no broader than that grant.
#[allow(clippy::too_many_arguments)] // each argument is one fact of the request, named at the call
pub(crate) fn authorize_with(
    cx: &Cx<'_>,
    state: &State,
    action: &str,
    key: &KeyRecord,
    context: Option<&BTreeMap<String, String>>,
    _grant_tokens: &[String],
    grant: Option<GrantContext<'_>>,
    child: Option<&ChildGrant<'_>>,
) -> Result<(), ApiError> {
    let caller = cx.caller;
    let mut ctx = request_context(cx, action, &key.meta.arn, &key.meta.account);
    ctx.encryption_context = context;
    if context.is_some() && action != "CreateGrant" {
        ctx.encryption_algorithm = Some("SYMMETRIC_DEFAULT");
    }
    ctx.grant = grant;
    let ids = identities(cx);
    let policies = ids.policies_for(&caller.identity);
    let decision = evaluate(&ctx, &key.policy, policies);
    match decision {
        Decision::Allow => Ok(()),
        Decision::ExplicitDeny(_) => Err(denial(decision, &ctx)),
        Decision::ImplicitDeny(_) => {
            // Grants take effect at once here, so a grant token adds nothing beyond being well
            // formed (checked when the request is parsed).
            let granted = state.grants_of(&key.meta.id).any(|g| {
                g.covers(action, context, child)
                    && match principal_named(&g.grantee, &caller.identity) {
                        Named::Direct => true,
                        Named::Account => identity_allows(&ctx, policies),
                        Named::No => false,
                    }
            });
            if granted {
                Ok(())
            } else {
                Err(denial(decision, &ctx))
            }
        }
    }
}

/// Whether the caller's identity policies allow `ctx` (no explicit deny, an allow).
fn identity_allows(ctx: &RequestContext<'_>, policies: &[crate::policy::Policy]) -> bool {
    evaluate_identity(ctx, policies) == Decision::Allow
}

fn denial(decision: Decision, ctx: &RequestContext<'_>) -> ApiError {
    ApiError::new(
        Code::AccessDeniedException,
        decision
            .denial_message(ctx)
            .expect("a denial has a message"),
    )
}

/// Actions on no key (CreateKey, ListKeys, ListAliases, GenerateRandom, ListRetirableGrants):
/// AWS authorizes them by the caller's IAM identity policies alone, on resource `*` (on the
/// retiring principal for ListRetirableGrants). Root may do them all. An IAM user with no identity
/// policy in the config may too: identity files written before identity policies existed gave
/// users these rights, and a config that wants them withheld attaches a policy (see the crate
/// docs for this difference from AWS).
pub(crate) fn authorize_account(cx: &Cx<'_>, action: &str, resource: &str) -> Result<(), ApiError> {
    let caller = cx.caller;
    if caller.identity.kind == IdentityKind::IamUser
        && identities(cx).policies_for(&caller.identity).is_empty()
    {
        return Ok(());
    }
    authorize_identity(cx, action, resource)
}

/// An action on a resource of the caller's own account that only IAM identity policies govern
/// (an alias, the account's actions): root is allowed, anyone else needs an allowing statement
/// and no deny.
pub(crate) fn authorize_identity(
    cx: &Cx<'_>,
    action: &str,
    resource: &str,
) -> Result<(), ApiError> {
    let caller = cx.caller;
    let ids = identities(cx);
    let ctx = request_context(cx, action, resource, &caller.identity.account_id);
    match evaluate_identity(&ctx, ids.policies_for(&caller.identity)) {
        Decision::Allow => Ok(()),
        d => Err(denial(d, &ctx)),
    }
}

/// CloudTrail's `LookupEvents`: `cloudtrail:LookupEvents` by the caller's identity policies (an
/// account's root always may). The action has no resource, so CloudTrail's denial names none:
/// "User: <arn> is not authorized to perform: cloudtrail:LookupEvents because no identity-based
/// policy allows the cloudtrail:LookupEvents action".
pub(crate) fn authorize_lookup_events(cx: &Cx<'_>) -> Result<(), ApiError> {
    let caller = cx.caller;
    let ids = identities(cx);
    let mut ctx = request_context(cx, "LookupEvents", "*", &caller.identity.account_id);
    ctx.service = "cloudtrail";
    let why = match evaluate_identity(&ctx, ids.policies_for(&caller.identity)) {
        Decision::Allow => return Ok(()),
        Decision::ExplicitDeny(_) => "with an explicit deny in an identity-based policy",
        Decision::ImplicitDeny(_) => {
            "because no identity-based policy allows the cloudtrail:LookupEvents action"
        }
    };
    Err(ApiError::new(
        Code::AccessDeniedException,
        format!(
            "User: {} is not authorized to perform: cloudtrail:LookupEvents {why}",
            caller.identity.arn
        ),
    ))
}

/// Who may retire a grant, as "Retiring and revoking grants" lists it: the retiring principal,
/// the grantee when the grant includes `RetireGrant`, and the account in which the grant was
/// created (the key's): its root, or a principal of it to whom an IAM policy delegates
/// `kms:RetireGrant`. A principal named as an account (`arn:aws:iam::ACCT:root`) stands for that
/// account's root and, by delegation, its principals with `kms:RetireGrant` in their IAM
/// policies. `kms:RetireGrant` in a key policy has no effect; a `Deny` of it in the caller's IAM
/// policies refuses.
pub(crate) fn authorize_retire(
    cx: &Cx<'_>,
    grant: &Grant,
    key: &KeyRecord,
) -> Result<(), ApiError> {
    let me = &cx.caller.identity;
    let ids = identities(cx);
    let ctx = request_context(cx, "RetireGrant", &key.meta.arn, &key.meta.account);
    let identity = evaluate_identity(&ctx, ids.policies_for(me));
    if let Decision::ExplicitDeny(_) = identity {
        return Err(denial(identity, &ctx));
    }
    let delegated = identity == Decision::Allow;
    let named = |p: &str| match principal_named(p, me) {
        Named::Direct => true,
        Named::Account => delegated,
        Named::No => false,
    };
    let allowed = grant.retiring.as_deref().is_some_and(named)
        || (grant.operations.iter().any(|o| o == "RetireGrant") && named(&grant.grantee))
        || (me.account_id == grant.key_account && delegated);
    if allowed {
        Ok(())
    } else {
        Err(denied(cx.caller, "RetireGrant", &key.meta.arn))
    }
}

/// AWS's AccessDeniedException message when no policy allows (for checks outside
/// [`authorize`], e.g. who may retire a grant).
pub(crate) fn denied(caller: &Caller, action: &str, resource_arn: &str) -> ApiError {
    ApiError::new(
        Code::AccessDeniedException,
        format!(
            "User: {} is not authorized to perform: kms:{action} on resource: {resource_arn} because no \
             resource-based policy allows the kms:{action} action",
            caller.identity.arn
        ),
    )
}
