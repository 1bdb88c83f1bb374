//! Evaluation: who is asking for what ([`RequestContext`]), and AWS KMS's decision logic
//! ([`evaluate`]).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;

use super::condition::{Key, Values};
use super::parse::{ActionKey, Policy, PrincipalEntry, Statement};

/// What kind of principal is calling; CloudTrail's `userIdentity.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    /// The account's root user: `arn:aws:iam::ACCT:root`. Has no identity policies; IAM allows
    /// it everything within its account.
    Root,
    /// An IAM user: `arn:aws:iam::ACCT:user/path/name`.
    User,
    /// A session of an IAM role: `arn:aws:sts::ACCT:assumed-role/ROLE/SESSION`.
    AssumedRole,
    /// An AWS service principal (`arn` is the service name, e.g. `ec2.amazonaws.com`).
    Service,
}

/// The principal making the request (the authenticated caller, as established by SigV4).
/// Build it from the engine's `Identity`: `kind` from `IdentityKind`, `principal_id` as is,
/// `role_arn` from `session_issuer_arn`.
#[derive(Debug, Clone)]
pub struct Principal<'a> {
    pub kind: PrincipalKind,
    /// The caller's ARN (for an assumed role, the session ARN).
    pub arn: &'a str,
    /// The caller's account id (12 digits).
    pub account: &'a str,
    /// The caller's unique id as of now, as `aws:userid` shows it: `AIDA...` for a user,
    /// `AROA...:session` for a role session, the account id for root. Role principals in a
    /// policy match by the role's id (the part before `:`), so a re-created role does not match.
    pub principal_id: &'a str,
    /// For a role session, the role's ARN with its path (`arn:aws:iam::ACCT:role/path/R`);
    /// when None it is derived from the session ARN (without a path).
    pub role_arn: Option<&'a str>,
    /// A session whose role has since been deleted: AWS binds policy principals to unique ids,
    /// and a deleted role's id stands for no live principal, so role, session and unique-id
    /// principals no longer match it (`"*"` still does).
    pub issuer_deleted: bool,
}

impl<'a> Principal<'a> {
    /// The unique id of the user or role (without the session name).
    fn unique_id(&self) -> &'a str {
        self.principal_id
            .split_once(':')
            .map_or(self.principal_id, |(id, _)| id)
    }

    /// `aws:PrincipalArn`: the role's ARN for a session, the caller's ARN otherwise.
    fn principal_arn(&self) -> Cow<'a, str> {
        match (self.kind, self.role_arn) {
            (PrincipalKind::AssumedRole, Some(r)) => Cow::Borrowed(r),
            (PrincipalKind::AssumedRole, None) => match session_role_arn(self.arn) {
                Some(r) => Cow::Owned(r),
                None => Cow::Borrowed(self.arn),
            },
            _ => Cow::Borrowed(self.arn),
        }
    }

    fn role_arn_matches(&self, role_arn: &str) -> bool {
        match self.role_arn {
            Some(r) => r == role_arn,
            None => session_role_arn(self.arn).is_some_and(|r| r == role_arn),
        }
    }
}

/// `arn:aws:sts::A:assumed-role/R/s` -> `arn:aws:iam::A:role/R`.
fn session_role_arn(session_arn: &str) -> Option<String> {
    let rest = session_arn.strip_prefix("arn:")?;
    let (partition, rest) = rest.split_once(':')?;
    let rest = rest.strip_prefix("sts::")?;
    let (account, rest) = rest.split_once(':')?;
    let rest = rest.strip_prefix("assumed-role/")?;
    let (role, _session) = rest.split_once('/')?;
    Some(format!("arn:{partition}:iam::{account}:role/{role}"))
}

/// The `kms:Grant*` condition facts: the grant being created for `CreateGrant`; for `ListGrants`
/// and `RevokeGrant` only `kms:GrantIsForAWSResource` (the default, with no operations and no
/// principals, leaves the other keys absent).
#[derive(Debug, Clone, Default)]
pub struct GrantContext<'a> {
    pub is_for_aws_resource: bool,
    /// The operations the grant would allow, e.g. `["Decrypt", "GenerateDataKey"]`.
    pub operations: &'a [String],
    pub grantee_principal: Option<&'a str>,
    pub retiring_principal: Option<&'a str>,
}

/// One request to authorize. Build it with [`RequestContext::new`], then set the optional
/// request facts that apply to the operation.
#[derive(Debug, Clone)]
pub struct RequestContext<'a> {
    pub caller: Principal<'a>,
    /// The service prefix of the action: `"kms"` (set by [`RequestContext::new`]), or `"sts"`
    /// when evaluating a trust policy for `AssumeRole`.
    pub service: &'a str,
    /// The action as in `X-Amz-Target` after `TrentService.`, e.g. `"Decrypt"`.
    pub action: &'a str,
    /// The key's ARN.
    pub resource: &'a str,
    /// The account that owns the key.
    pub resource_account: &'a str,
    /// The request's encryption context, when the operation takes one.
    pub encryption_context: Option<&'a BTreeMap<String, String>>,
    /// `kms:EncryptionAlgorithm`, when the operation takes one.
    pub encryption_algorithm: Option<&'a str>,
    /// `kms:ViaService`: the AWS service that made the call on the caller's behalf.
    pub via_service: Option<&'a str>,
    /// For `CreateGrant`.
    pub grant: Option<GrantContext<'a>>,
    /// `aws:SourceIp`.
    pub source_ip: Option<IpAddr>,
    /// `aws:SecureTransport`.
    pub secure_transport: Option<bool>,
    /// `aws:CurrentTime` / `aws:EpochTime`, seconds since the epoch.
    pub now_epoch_seconds: Option<i64>,
    /// Values of any other condition keys, e.g. `("sts:ExternalId", "...")` for `AssumeRole`;
    /// names match case-insensitively.
    pub extra: &'a [(&'a str, &'a str)],
}

impl<'a> RequestContext<'a> {
    pub fn new(
        caller: Principal<'a>,
        action: &'a str,
        resource: &'a str,
        resource_account: &'a str,
    ) -> RequestContext<'a> {
        RequestContext {
            caller,
            service: "kms",
            action,
            resource,
            resource_account,
            encryption_context: None,
            encryption_algorithm: None,
            via_service: None,
            grant: None,
            source_ip: None,
            secure_transport: None,
            now_epoch_seconds: None,
            extra: &[],
        }
    }

    /// The request's values for a condition key; None when the key is absent (an empty
    /// multi-valued key counts as absent).
    pub(crate) fn condition_values(&self, key: &Key) -> Option<Values<'a>> {
        let one = |s: &'a str| Some(Values::One(Cow::Borrowed(s)));
        let flag = |b: bool| Some(Values::One(Cow::Borrowed(if b { "true" } else { "false" })));
        match key {
            Key::EncryptionContext(name) => self.encryption_context.and_then(|ec| {
                ec.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| Values::One(Cow::Borrowed(v.as_str())))
            }),
            Key::EncryptionContextKeys => self
                .encryption_context
                .filter(|ec| !ec.is_empty())
                .map(Values::EcKeys),
            Key::CallerAccount | Key::PrincipalAccount => one(self.caller.account),
            Key::ViaService => self.via_service.and_then(one),
            Key::GrantIsForAwsResource => self
                .grant
                .as_ref()
                .and_then(|g| flag(g.is_for_aws_resource)),
            Key::GrantOperations => self
                .grant
                .as_ref()
                .filter(|g| !g.operations.is_empty())
                .map(|g| Values::Strings(g.operations)),
            Key::GranteePrincipal => self
                .grant
                .as_ref()
                .and_then(|g| g.grantee_principal)
                .and_then(one),
            Key::RetiringPrincipal => self
                .grant
                .as_ref()
                .and_then(|g| g.retiring_principal)
                .and_then(one),
            Key::EncryptionAlgorithm => self.encryption_algorithm.and_then(one),
            Key::PrincipalArn => Some(Values::One(self.caller.principal_arn())),
            Key::PrincipalType => one(match self.caller.kind {
                PrincipalKind::Root => "Account",
                PrincipalKind::User => "User",
                PrincipalKind::AssumedRole => "AssumedRole",
                PrincipalKind::Service => "Service",
            }),
            Key::UserId => one(self.caller.principal_id),
            Key::SourceIp => self
                .source_ip
                .map(|ip| Values::One(Cow::Owned(ip.to_string()))),
            Key::SecureTransport => self.secure_transport.and_then(flag),
            Key::CurrentTime | Key::EpochTime => self
                .now_epoch_seconds
                .map(|t| Values::One(Cow::Owned(t.to_string()))),
            Key::Other(name) => self
                .extra
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| Values::One(Cow::Borrowed(*v))),
        }
    }
}

/// Which kind of policy decided a denial (AWS names it in the message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyType {
    /// The key policy.
    ResourceBased,
    /// The caller's IAM policies.
    IdentityBased,
}

impl PolicyType {
    fn phrase(self) -> &'static str {
        match self {
            PolicyType::ResourceBased => "resource-based",
            PolicyType::IdentityBased => "identity-based",
        }
    }
}

/// The outcome of [`evaluate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// A matching `Deny` statement in a policy of this type.
    ExplicitDeny(PolicyType),
    /// Nothing allowed the request; a policy of this type would have had to.
    ImplicitDeny(PolicyType),
}

impl Decision {
    pub fn is_allowed(self) -> bool {
        self == Decision::Allow
    }

    /// AWS's `AccessDeniedException` message for a denial, None for [`Decision::Allow`]:
    /// "User: <arn> is not authorized to perform: kms:<Action> on resource: <key arn> because no
    /// resource-based policy allows the kms:<Action> action" (or "identity-based", or "with an
    /// explicit deny in a resource-based / an identity-based policy").
    pub fn denial_message(self, ctx: &RequestContext<'_>) -> Option<String> {
        let head = format!(
            "User: {} is not authorized to perform: {}:{} on resource: {}",
            ctx.caller.arn, ctx.service, ctx.action, ctx.resource
        );
        match self {
            Decision::Allow => None,
            Decision::ImplicitDeny(t) => Some(format!(
                "{head} because no {} policy allows the {}:{} action",
                t.phrase(),
                ctx.service,
                ctx.action
            )),
            Decision::ExplicitDeny(t) => Some(format!(
                "{head} with an explicit deny in {} {} policy",
                if t == PolicyType::IdentityBased {
                    "an"
                } else {
                    "a"
                },
                t.phrase()
            )),
        }
    }
}

/// How a statement's principal element matched the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Match {
    No,
    /// Names the caller (its ARN, role, unique id, or `"*"`).
    Direct,
    /// Names the caller's account: in an Allow, a delegation to the account's identity policies.
    Account,
}

fn entry_match(entry: &PrincipalEntry, caller: &Principal<'_>) -> Match {
    let hit = |b: bool| if b { Match::Direct } else { Match::No };
    match entry {
        PrincipalEntry::Any => Match::Direct,
        PrincipalEntry::Account(a) => {
            if caller.kind != PrincipalKind::Service && **a == *caller.account {
                Match::Account
            } else {
                Match::No
            }
        }
        PrincipalEntry::Role { .. } | PrincipalEntry::Session(_) | PrincipalEntry::UniqueId(_)
            if caller.issuer_deleted =>
        {
            Match::No
        }
        PrincipalEntry::User { arn, id } => hit(caller.kind == PrincipalKind::User
            && **arn == *caller.arn
            && id.as_deref().is_none_or(|id| id == caller.unique_id())),
        PrincipalEntry::Role { arn, id } => hit(caller.kind == PrincipalKind::AssumedRole
            && caller.role_arn_matches(arn)
            && id.as_deref().is_none_or(|id| id == caller.unique_id())),
        PrincipalEntry::Session(arn) => {
            hit(caller.kind == PrincipalKind::AssumedRole && **arn == *caller.arn)
        }
        PrincipalEntry::UniqueId(id) => {
            hit(caller.kind != PrincipalKind::Service && **id == *caller.unique_id())
        }
        PrincipalEntry::Service(name) => {
            hit(caller.kind == PrincipalKind::Service && **name == *caller.arn)
        }
        PrincipalEntry::Unmatchable => Match::No,
    }
}

fn principal_match(st: &Statement, caller: &Principal<'_>) -> Match {
    let Some(p) = &st.principals else {
        // Identity policies have no principal: they apply to their holder.
        return Match::Direct;
    };
    let mut best = Match::No;
    for e in p.entries.iter() {
        match entry_match(e, caller) {
            Match::Direct => {
                best = Match::Direct;
                break;
            }
            Match::Account => best = Match::Account,
            Match::No => {}
        }
    }
    if p.negated {
        // NotPrincipal: applies to everyone not listed; an account entry covers its members.
        if best == Match::No {
            Match::Direct
        } else {
            Match::No
        }
    } else {
        best
    }
}

fn statement_match(st: &Statement, ctx: &RequestContext<'_>, action: &ActionKey<'_>) -> Match {
    if !st.action_matches(action) {
        return Match::No;
    }
    let m = principal_match(st, &ctx.caller);
    if m == Match::No || !st.resource_matches(ctx.resource) {
        return Match::No;
    }
    if st.conditions.iter().all(|c| c.holds(ctx)) {
        m
    } else {
        Match::No
    }
}

/// What the key policy says: None for an explicit deny, else (allows the caller directly,
/// allows the caller's account).
fn key_side(
    ctx: &RequestContext<'_>,
    key_policy: &Policy,
    action: &ActionKey<'_>,
) -> Option<(bool, bool)> {
    let (mut direct, mut account) = (false, false);
    for st in key_policy.statements() {
        match statement_match(st, ctx, action) {
            Match::No => {}
            _ if st.deny => return None,
            Match::Direct => direct = true,
            Match::Account => account = true,
        }
    }
    Some((direct, account))
}

/// Whether the key policy alone lets the request through: no explicit deny, and an allow that
/// names the caller or its account (whose identity policies are then not consulted).
pub(crate) fn key_policy_allows(ctx: &RequestContext<'_>, key_policy: &Policy) -> bool {
    matches!(
        key_side(ctx, key_policy, &ActionKey::new(ctx.service, ctx.action)),
        Some((true, _)) | Some((_, true))
    )
}

/// AWS KMS's authorization decision for `ctx`, from the key policy and the caller's identity
/// policies (empty for root, and for callers without IAM policies). Grants are not considered:
/// when this denies, the engine may still allow the request through a grant.
///
/// The same logic decides `AssumeRole` with a role's trust policy in place of the key policy
/// (`ctx.service = "sts"`, `ctx.action = "AssumeRole"`, `ctx.resource` the role ARN,
/// `ctx.resource_account` the role's account, `ctx.extra` carrying `sts:ExternalId`).
pub fn evaluate(
    ctx: &RequestContext<'_>,
    key_policy: &Policy,
    identity_policies: &[Policy],
) -> Decision {
    let action = &ActionKey::new(ctx.service, ctx.action);
    let Some((key_direct, key_account)) = key_side(ctx, key_policy, action) else {
        return Decision::ExplicitDeny(PolicyType::ResourceBased);
    };
    let mut identity_allows = ctx.caller.kind == PrincipalKind::Root;
    for policy in identity_policies {
        for st in policy.statements() {
            if statement_match(st, ctx, action) != Match::No {
                if st.deny {
                    return Decision::ExplicitDeny(PolicyType::IdentityBased);
                }
                identity_allows = true;
            }
        }
    }
    let same_account = ctx.caller.account == ctx.resource_account;
    if same_account {
        if key_direct || (key_account && identity_allows) {
            Decision::Allow
        } else if key_account {
            Decision::ImplicitDeny(PolicyType::IdentityBased)
        } else {
            Decision::ImplicitDeny(PolicyType::ResourceBased)
        }
    } else if !(key_direct || key_account) {
        Decision::ImplicitDeny(PolicyType::ResourceBased)
    } else if !identity_allows {
        Decision::ImplicitDeny(PolicyType::IdentityBased)
    } else {
        Decision::Allow
    }
}

/// The decision for an action on no key (`CreateKey`, `ListKeys`, `GenerateRandom`, …), which AWS
/// authorizes by the caller's identity policies alone: an explicit deny refuses, root is allowed
/// everything in its account, anyone else needs an allowing statement.
pub fn evaluate_identity(ctx: &RequestContext<'_>, identity_policies: &[Policy]) -> Decision {
    let action = &ActionKey::new(ctx.service, ctx.action);
    let mut allowed = ctx.caller.kind == PrincipalKind::Root;
    for policy in identity_policies {
        for st in policy.statements() {
            if statement_match(st, ctx, action) != Match::No {
                if st.deny {
                    return Decision::ExplicitDeny(PolicyType::IdentityBased);
                }
                allowed = true;
            }
        }
    }
    if allowed {
        Decision::Allow
    } else {
        Decision::ImplicitDeny(PolicyType::IdentityBased)
    }
}
