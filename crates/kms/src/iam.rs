//! IAM roles and STS sessions: the role verbs of the IAM query API (`CreateRole`, `GetRole`,
//! `DeleteRole`, `ListRoles`, `PutRolePolicy`, `GetRolePolicy`, `DeleteRolePolicy`,
//! `ListRolePolicies`) and STS's `AssumeRole` and `GetCallerIdentity`.
//!
//! Requests arrive as typed operations ([`IamRequest`], [`StsRequest`] to [`Engine::call_iam`],
//! [`Engine::call_sts`]) whose members are the caller's unchecked text; answers are typed
//! ([`IamAnswer`], [`StsAnswer`]), or an [`ApiError`] whose `code` is IAM's/STS's error code
//! (`NoSuchEntity`, `EntityAlreadyExists`, `MalformedPolicyDocument`, `ValidationError`,
//! `DeleteConflict`, `LimitExceeded`, `AccessDenied`). The query protocol (form parameters in,
//! XML out, unknown actions) is the wire's, in `keyward-kms-server`.
//!
//! Roles live in the identity set beside the configured users, so key policies bind role
//! principals to the role's unique id (`AROA…`) when saved, exactly as users: a role deleted and
//! re-created under the same name gets a new id and no longer matches until the policy is saved
//! again. A role's trust policy binds its principals the same way.
//!
//! Sessions: `AssumeRole` issues an `ASIA…` access key, a 40-character secret and an opaque random
//! session token; SigV4 must present the token ([`AccessKey::session_token`]) and the key expires
//! on the KMS clock ([`Engine::is_expired`]), so a dev-mode test expires it by moving the clock.
//! Deleting a role does not revoke its sessions' credentials (as on AWS they authenticate until
//! they expire), but the deleted role's unique id matches nothing any more, so every call they
//! make is denied by the key policy (`AccessDeniedException`).
//! Roles and sessions are persisted in the engine's SQLite store (a session's secret wrapped by
//! the root key), so both survive a restart.
//!
//! Every call, refused ones included, is written to the trail (`eventSource` `iam.amazonaws.com`
//! or `sts.amazonaws.com`) before it is answered.
//!
//! Who may call IAM: the account's root, and users or role sessions whose identity policies allow
//! the `iam:` action on the role's ARN. Differences from AWS: no managed policies, tags,
//! permission boundaries, session policies or `RoleLastUsed`; `AssumeRole` by an account's root is refused as AWS does ("Roles may not be assumed by
//! root accounts.").

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use zeroize::Zeroizing;

use crate::authz::principal;
use crate::clock::iso8601;
use crate::engine::Engine;
use crate::error::{ApiError, Code};
use crate::identity::{random_chars, AccessKey, Caller, Identity, IdentityConfig, IdentityKind};
use crate::policy::{evaluate, evaluate_identity, Decision, Policy, PolicyError, RequestContext};
use crate::root_key::RootKey;
use crate::store::{durable, Op};

/// IAM's default quota on a role's trust policy (`ACLSizePerRole`), in characters without
/// whitespace.
pub const MAX_TRUST_POLICY_CHARS: usize = 2048;
/// IAM's limit on the total size of a role's inline policies, in characters without whitespace.
pub const MAX_ROLE_POLICIES_CHARS: usize = 10240;
const DEFAULT_SESSION_SECS: i64 = 3600;
const UPPER32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// A role as persisted (JSON in the `roles` table). Holds no secret.
#[derive(Serialize, Deserialize, Clone)]
pub(crate) struct RoleDoc {
    pub account: String,
    pub name: String,
    pub path: String,
    /// `AROA` + 17 characters, new for every CreateRole.
    pub id: String,
    pub arn: String,
    pub created_ms: i64,
    /// The trust policy as given.
    pub trust: String,
    /// The trust policy's user and role principals bound to their ids when it was saved.
    pub trust_ids: Vec<(String, String)>,
    pub description: Option<String>,
    pub max_session_secs: i64,
    /// Inline identity policies by name.
    pub policies: BTreeMap<String, String>,
}

/// A role with its policies compiled.
pub(crate) struct Role {
    pub doc: RoleDoc,
    pub trust: Policy,
    /// `doc.policies`, compiled, in the same order.
    pub policies: Vec<Policy>,
}

impl Role {
    /// Compiles a stored role (trust policy bound to its saved ids).
    pub(crate) fn load(doc: RoleDoc) -> Result<Role, String> {
        let mut trust = Policy::parse_trust(&doc.trust).map_err(|e| e.to_string())?;
        trust
            .resolve_principals(|arn| {
                doc.trust_ids
                    .iter()
                    .find(|(a, _)| a == arn)
                    .map(|(_, id)| id.clone())
            })
            .map_err(|e| format!("{e} ({})", doc.arn))?;
        let policies = compile_inline(&doc.policies).map_err(|e| e.to_string())?;
        Ok(Role {
            doc,
            trust,
            policies,
        })
    }
}

fn compile_inline(docs: &BTreeMap<String, String>) -> Result<Vec<Policy>, PolicyError> {
    docs.values().map(|d| Policy::parse_identity(d)).collect()
}

/// An STS session as persisted (JSON in the `sessions` table; the secret is stored apart, wrapped).
#[derive(Serialize, Deserialize)]
pub(crate) struct SessionDoc {
    pub access_key_id: String,
    pub account: String,
    pub role_arn: String,
    pub role_id: String,
    pub role_name: String,
    pub session_name: String,
    pub token: String,
    pub expires_ms: i64,
}

/// A live session: its record and its secret (zeroized on drop).
pub(crate) struct Session {
    pub doc: SessionDoc,
    secret: Zeroizing<Vec<u8>>,
}

/// The AAD binding a wrapped session secret to its access key id.
pub(crate) fn session_secret_aad(access_key_id: &str) -> Vec<u8> {
    format!("keyward-kms session secret v1 {access_key_id}").into_bytes()
}

impl Session {
    pub(crate) fn load(doc: SessionDoc, wrapped: &[u8], root: &RootKey) -> Option<Session> {
        let secret = root.unwrap(wrapped, &session_secret_aad(&doc.access_key_id))?;
        Some(Session { doc, secret })
    }

    /// `arn:aws:sts::ACCT:assumed-role/ROLE/SESSION`, principal id `AROA…:SESSION`.
    pub(crate) fn identity(&self) -> Identity {
        let d = &self.doc;
        Identity {
            account_id: d.account.clone(),
            arn: format!(
                "arn:aws:sts::{}:assumed-role/{}/{}",
                d.account, d.role_name, d.session_name
            ),
            principal_id: format!("{}:{}", d.role_id, d.session_name),
            kind: IdentityKind::AssumedRole,
            user_name: None,
            session_issuer_arn: Some(d.role_arn.clone()),
            issuer_deleted: false,
        }
    }

    pub(crate) fn access_key(&self) -> AccessKey {
        let mut key = AccessKey::new(self.identity(), &self.secret, Some(self.doc.token.clone()));
        key.expires_at = Some(self.doc.expires_ms.div_euclid(1000));
        key
    }
}

/// One IAM role operation, its members as the caller sent them.
///
/// Members are the caller's text, unchecked: a missing required member, a number that is not
/// one or a name out of pattern is IAM's `ValidationError`, which the engine answers and writes to
/// the trail like every other refusal. The query protocol's parameter names and its form
/// decoding are the wire's (`keyward-kms-server`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IamRequest {
    CreateRole {
        role_name: Option<String>,
        path: Option<String>,
        assume_role_policy_document: Option<String>,
        description: Option<String>,
        /// Seconds, as text.
        max_session_duration: Option<String>,
    },
    GetRole {
        role_name: Option<String>,
    },
    DeleteRole {
        role_name: Option<String>,
    },
    ListRoles {
        path_prefix: Option<String>,
        marker: Option<String>,
        /// A count, as text.
        max_items: Option<String>,
    },
    PutRolePolicy {
        role_name: Option<String>,
        policy_name: Option<String>,
        policy_document: Option<String>,
    },
    GetRolePolicy {
        role_name: Option<String>,
        policy_name: Option<String>,
    },
    DeleteRolePolicy {
        role_name: Option<String>,
        policy_name: Option<String>,
    },
    ListRolePolicies {
        role_name: Option<String>,
        marker: Option<String>,
        /// A count, as text.
        max_items: Option<String>,
    },
}

impl IamRequest {
    /// The action's name (`CreateRole`, ...), as IAM and the trail name it.
    pub fn action(&self) -> &'static str {
        match self {
            IamRequest::CreateRole { .. } => "CreateRole",
            IamRequest::GetRole { .. } => "GetRole",
            IamRequest::DeleteRole { .. } => "DeleteRole",
            IamRequest::ListRoles { .. } => "ListRoles",
            IamRequest::PutRolePolicy { .. } => "PutRolePolicy",
            IamRequest::GetRolePolicy { .. } => "GetRolePolicy",
            IamRequest::DeleteRolePolicy { .. } => "DeleteRolePolicy",
            IamRequest::ListRolePolicies { .. } => "ListRolePolicies",
        }
    }

    /// The members given, by CloudTrail's name, for the trail's `requestParameters`.
    fn members(&self) -> Vec<(&'static str, &str)> {
        let all: Vec<(&'static str, &Option<String>)> = match self {
            IamRequest::CreateRole {
                role_name,
                path,
                assume_role_policy_document,
                description,
                max_session_duration,
            } => vec![
                ("roleName", role_name),
                ("path", path),
                ("assumeRolePolicyDocument", assume_role_policy_document),
                ("description", description),
                ("maxSessionDuration", max_session_duration),
            ],
            IamRequest::GetRole { role_name } | IamRequest::DeleteRole { role_name } => {
                vec![("roleName", role_name)]
            }
            IamRequest::ListRoles {
                path_prefix,
                marker,
                max_items,
            } => vec![
                ("pathPrefix", path_prefix),
                ("marker", marker),
                ("maxItems", max_items),
            ],
            IamRequest::PutRolePolicy {
                role_name,
                policy_name,
                policy_document,
            } => vec![
                ("roleName", role_name),
                ("policyName", policy_name),
                ("policyDocument", policy_document),
            ],
            IamRequest::GetRolePolicy {
                role_name,
                policy_name,
            }
            | IamRequest::DeleteRolePolicy {
                role_name,
                policy_name,
            } => vec![("roleName", role_name), ("policyName", policy_name)],
            IamRequest::ListRolePolicies {
                role_name,
                marker,
                max_items,
            } => vec![
                ("roleName", role_name),
                ("marker", marker),
                ("maxItems", max_items),
            ],
        };
        present(all)
    }
}

/// One STS operation, its members as the caller sent them (unchecked, as in [`IamRequest`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StsRequest {
    GetCallerIdentity,
    AssumeRole {
        role_arn: Option<String>,
        role_session_name: Option<String>,
        external_id: Option<String>,
        /// Seconds, as text.
        duration_seconds: Option<String>,
    },
}

impl StsRequest {
    /// The action's name, as STS and the trail name it.
    pub fn action(&self) -> &'static str {
        match self {
            StsRequest::GetCallerIdentity => "GetCallerIdentity",
            StsRequest::AssumeRole { .. } => "AssumeRole",
        }
    }

    fn members(&self) -> Vec<(&'static str, &str)> {
        match self {
            StsRequest::GetCallerIdentity => Vec::new(),
            StsRequest::AssumeRole {
                role_arn,
                role_session_name,
                external_id,
                duration_seconds,
            } => present(vec![
                ("roleArn", role_arn),
                ("roleSessionName", role_session_name),
                ("externalId", external_id),
                ("durationSeconds", duration_seconds),
            ]),
        }
    }
}

fn present<'a>(members: Vec<(&'static str, &'a Option<String>)>) -> Vec<(&'static str, &'a str)> {
    members
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
        .collect()
}

/// A role as IAM describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleInfo {
    pub path: String,
    pub name: String,
    /// `AROA…`.
    pub id: String,
    pub arn: String,
    /// Milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// The trust policy document as given.
    pub trust_policy: String,
    pub description: Option<String>,
    pub max_session_secs: i64,
}

impl From<&RoleDoc> for RoleInfo {
    fn from(r: &RoleDoc) -> RoleInfo {
        RoleInfo {
            path: r.path.clone(),
            name: r.name.clone(),
            id: r.id.clone(),
            arn: r.arn.clone(),
            created_ms: r.created_ms,
            trust_policy: r.trust.clone(),
            description: r.description.clone(),
            max_session_secs: r.max_session_secs,
        }
    }
}

/// The answer to an [`IamRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IamAnswer {
    /// `CreateRole`, `GetRole`.
    Role(RoleInfo),
    /// `ListRoles`: one page, and the marker of the next if there is one.
    Roles {
        roles: Vec<RoleInfo>,
        next_marker: Option<String>,
    },
    /// `GetRolePolicy`.
    RolePolicy {
        role_name: String,
        policy_name: String,
        document: String,
    },
    /// `ListRolePolicies`: one page of names.
    PolicyNames {
        names: Vec<String>,
        next_marker: Option<String>,
    },
    /// `DeleteRole`, `PutRolePolicy`, `DeleteRolePolicy`: nothing to return.
    Done,
}

/// Temporary credentials issued by `AssumeRole`. The secret is zeroized on drop and never
/// printed (no `Debug`).
pub struct AssumedRole {
    pub access_key_id: String,
    pub secret_access_key: Zeroizing<String>,
    pub session_token: String,
    /// When the credentials expire on the KMS clock, in milliseconds since the Unix epoch.
    pub expires_ms: i64,
    /// `AROA…:SESSION`.
    pub assumed_role_id: String,
    /// `arn:aws:sts::ACCT:assumed-role/ROLE/SESSION`.
    pub arn: String,
}

/// The answer to an [`StsRequest`].
pub enum StsAnswer {
    CallerIdentity {
        arn: String,
        user_id: String,
        account: String,
    },
    AssumedRole(AssumedRole),
}

fn required<'a>(value: &'a Option<String>, member: &str) -> Result<&'a str, ApiError> {
    value.as_deref().ok_or_else(|| {
        ApiError::new(
            Code::ValidationError,
            format!(
                "1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"
            ),
        )
    })
}

fn validation(value: &str, member: &str, constraint: &str) -> ApiError {
    ApiError::new(
        Code::ValidationError,
        format!(
            "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: {constraint}"
        ),
    )
}

fn check_len(value: &str, member: &str, min: usize, max: usize) -> Result<(), ApiError> {
    let n = value.chars().count();
    if n < min {
        return Err(validation(
            value,
            member,
            &format!("Member must have length greater than or equal to {min}"),
        ));
    }
    if n > max {
        return Err(validation(
            value,
            member,
            &format!("Member must have length less than or equal to {max}"),
        ));
    }
    Ok(())
}

/// IAM names: `[\w+=,.@-]+`, `min..=max` characters.
fn check_name(value: &str, member: &str, min: usize, max: usize) -> Result<(), ApiError> {
    check_len(value, member, min, max)?;
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b))
    {
        return Err(validation(
            value,
            member,
            "Member must satisfy regular expression pattern: [\\w+=,.@-]+",
        ));
    }
    Ok(())
}

fn int_param(
    value: Option<&str>,
    member: &str,
    min: i64,
    max: i64,
) -> Result<Option<i64>, ApiError> {
    let Some(text) = value else {
        return Ok(None);
    };
    let n: i64 = text
        .parse()
        .map_err(|_| validation(text, member, "Member must be a number"))?;
    if n < min {
        return Err(validation(
            text,
            member,
            &format!("Member must have value greater than or equal to {min}"),
        ));
    }
    if n > max {
        return Err(validation(
            text,
            member,
            &format!("Member must have value less than or equal to {max}"),
        ));
    }
    Ok(Some(n))
}

fn policy_document<'a>(value: &'a Option<String>, member: &str) -> Result<&'a str, ApiError> {
    let doc = required(value, member)?;
    check_len(doc, member, 1, 131_072)?;
    Ok(doc)
}

/// IAM's answer to a policy it refuses.
fn malformed(e: PolicyError) -> ApiError {
    let message = match &e {
        PolicyError::InvalidPrincipal(p) => format!("Invalid principal in policy: \"AWS\":\"{p}\""),
        other => other.to_string(),
    };
    ApiError::new(Code::MalformedPolicyDocument, message)
}

/// Policy size as IAM counts it: characters other than whitespace.
fn policy_chars(doc: &str) -> usize {
    doc.chars().filter(|c| !c.is_whitespace()).count()
}

fn no_such_role(name: &str) -> ApiError {
    ApiError::new(
        Code::NoSuchEntity,
        format!("The role with name {name} cannot be found."),
    )
}

fn role_arn(account: &str, path: &str, name: &str) -> String {
    format!("arn:aws:iam::{account}:role{path}{name}")
}

/// Who may call IAM: root of the account, else the caller's identity policies.
fn authorize_iam(
    ids: &IdentityConfig,
    caller: &Caller,
    action: &str,
    resource: &str,
    now_ms: i64,
) -> Result<(), ApiError> {
    let id = &caller.identity;
    if id.kind == IdentityKind::Root {
        return Ok(());
    }
    let mut ctx = RequestContext::new(principal(id), action, resource, &id.account_id);
    ctx.service = "iam";
    ctx.source_ip = caller.source_ip.parse().ok();
    ctx.now_epoch_seconds = Some(now_ms.div_euclid(1000));
    match evaluate_identity(&ctx, ids.policies_for(id)) {
        Decision::Allow => Ok(()),
        d => Err(ApiError::new(
            Code::AccessDenied,
            d.denial_message(&ctx).expect("a denial has a message"),
        )),
    }
}

/// `Marker`/`MaxItems` paging over sorted names: the marker is the first name of the next page.
fn page<'a, T>(
    marker: Option<&str>,
    max_items: Option<&str>,
    items: &'a [T],
    name: impl Fn(&T) -> &str,
) -> Result<(&'a [T], Option<String>), ApiError> {
    let max = int_param(max_items, "maxItems", 1, 1000)?.unwrap_or(100) as usize;
    let start = match marker {
        Some(m) => {
            check_len(m, "marker", 1, 320)?;
            items
                .iter()
                .position(|t| name(t) >= m)
                .unwrap_or(items.len())
        }
        None => 0,
    };
    let end = (start + max).min(items.len());
    let next = items.get(end).map(|t| name(t).to_string());
    Ok((&items[start..end], next))
}

fn find_role<'a>(ids: &'a IdentityConfig, account: &str, name: &str) -> Option<&'a Role> {
    ids.roles
        .values()
        .find(|r| r.doc.account == account && r.doc.name.eq_ignore_ascii_case(name))
}

impl Engine {
    /// One IAM role operation in the caller's account, answered once any change is durable.
    pub async fn call_iam(
        &self,
        caller: &Caller,
        request: &IamRequest,
    ) -> Result<IamAnswer, ApiError> {
        let inner = self.inner();
        let now = inner.clock.now_ms();
        let finish = |result| {
            let members = request.members();
            self.finish_query(
                caller,
                now,
                "iam",
                request.action(),
                members,
                result,
                Value::Null,
                None,
            )
        };
        let (result, rx) = match request {
            IamRequest::GetRole { .. }
            | IamRequest::ListRoles { .. }
            | IamRequest::GetRolePolicy { .. }
            | IamRequest::ListRolePolicies { .. } => {
                let ids = inner.identities.read().unwrap_or_else(|e| e.into_inner());
                let result = iam_read(&ids, caller, request, now).map(|a| (a, Vec::new()));
                finish(result)
            }
            IamRequest::CreateRole { .. }
            | IamRequest::DeleteRole { .. }
            | IamRequest::PutRolePolicy { .. }
            | IamRequest::DeleteRolePolicy { .. } => {
                let mut ids = inner.identities.write().unwrap_or_else(|e| e.into_inner());
                let result = iam_write(&mut ids, caller, request, now);
                // Queued while the lock is held, so later requests never see a change that
                // could be lost while theirs survives.
                finish(result)
            }
        };
        self.made_durable(request.action(), rx).await?;
        result
    }

    /// Queues the request's changes and its trail records as one job.
    #[allow(clippy::too_many_arguments)] // the facts of one request
    fn finish_query<A>(
        &self,
        caller: &Caller,
        now: i64,
        service: &str,
        action: &str,
        members: Vec<(&'static str, &str)>,
        result: Result<(A, Vec<Op>), ApiError>,
        response: Value,
        other_account: Option<&str>,
    ) -> (
        Result<A, ApiError>,
        tokio::sync::oneshot::Receiver<Result<(), String>>,
    ) {
        let (result, mut ops) = match result {
            Ok((answer, ops)) => (Ok(answer), ops),
            Err(e) => (Err(e), Vec::new()),
        };
        let rows = crate::trail::query_records(
            caller,
            now,
            &format!("{service}.amazonaws.com"),
            action,
            &members,
            response,
            result.as_ref().err(),
            other_account,
        );
        ops.extend(rows.into_iter().map(Op::Trail));
        (result, self.inner().store.submit(ops))
    }

    /// One STS operation (`AssumeRole`, `GetCallerIdentity`).
    pub async fn call_sts(
        &self,
        caller: &Caller,
        request: &StsRequest,
    ) -> Result<StsAnswer, ApiError> {
        let inner = self.inner();
        let action = request.action();
        let (result, rx) = match request {
            StsRequest::GetCallerIdentity => {
                let id = &caller.identity;
                let answer = StsAnswer::CallerIdentity {
                    arn: id.arn.clone(),
                    user_id: id.principal_id.clone(),
                    account: id.account_id.clone(),
                };
                let now = inner.clock.now_ms();
                self.finish_query(
                    caller,
                    now,
                    "sts",
                    action,
                    request.members(),
                    Ok((answer, Vec::new())),
                    Value::Null,
                    None,
                )
            }
            StsRequest::AssumeRole {
                role_arn,
                role_session_name,
                external_id,
                duration_seconds,
            } => {
                let mut ids = inner.identities.write().unwrap_or_else(|e| e.into_inner());
                let now = inner.clock.now_ms();
                let asked = AssumeRoleRequest {
                    role_arn,
                    role_session_name,
                    external_id: external_id.as_deref(),
                    duration_seconds: duration_seconds.as_deref(),
                };
                match assume_role(&mut ids, &inner.root, caller, asked, now) {
                    Ok(a) => self.finish_query(
                        caller,
                        now,
                        "sts",
                        action,
                        request.members(),
                        Ok((StsAnswer::AssumedRole(a.credentials), a.ops)),
                        a.response,
                        Some(&a.role_account),
                    ),
                    Err(e) => self.finish_query(
                        caller,
                        now,
                        "sts",
                        action,
                        request.members(),
                        Err(e),
                        Value::Null,
                        None,
                    ),
                }
            }
        };
        self.made_durable(action, rx).await?;
        result
    }

    /// Whether a temporary access key has expired on the KMS clock (never for long-term keys).
    pub fn is_expired(&self, key: &AccessKey) -> bool {
        key.expires_at
            .is_some_and(|exp| self.inner().clock.now_ms().div_euclid(1000) >= exp)
    }

    async fn made_durable(
        &self,
        action: &str,
        rx: tokio::sync::oneshot::Receiver<Result<(), String>>,
    ) -> Result<(), ApiError> {
        durable(rx).await.map_err(|e| {
            tracing::error!(error = %e, action, "could not make an IAM/STS change durable");
            ApiError::new(
                Code::ServiceFailure,
                "The request processing has failed because of an unknown error, exception or failure.",
            )
        })
    }
}

fn iam_read(
    ids: &IdentityConfig,
    caller: &Caller,
    request: &IamRequest,
    now: i64,
) -> Result<IamAnswer, ApiError> {
    let account = caller.identity.account_id.as_str();
    let action = request.action();
    match request {
        IamRequest::GetRole { role_name } => {
            let name = required(role_name, "roleName")?;
            check_name(name, "roleName", 1, 64)?;
            let role = find_role(ids, account, name);
            let arn = role.map_or_else(|| role_arn(account, "/", name), |r| r.doc.arn.clone());
            authorize_iam(ids, caller, action, &arn, now)?;
            let role = role.ok_or_else(|| no_such_role(name))?;
            Ok(IamAnswer::Role(RoleInfo::from(&role.doc)))
        }
        IamRequest::ListRoles {
            path_prefix,
            marker,
            max_items,
        } => {
            let prefix = path_prefix.as_deref().unwrap_or("/");
            check_len(prefix, "pathPrefix", 1, 512)?;
            authorize_iam(ids, caller, action, &role_arn(account, "/", "*"), now)?;
            let mut roles: Vec<&RoleDoc> = ids
                .roles
                .values()
                .map(|r| &r.doc)
                .filter(|r| r.account == account && r.path.starts_with(prefix))
                .collect();
            roles.sort_by(|a, b| a.name.cmp(&b.name));
            let (roles, next_marker) =
                page(marker.as_deref(), max_items.as_deref(), &roles, |r| {
                    r.name.as_str()
                })?;
            Ok(IamAnswer::Roles {
                roles: roles.iter().map(|r| RoleInfo::from(*r)).collect(),
                next_marker,
            })
        }
        IamRequest::GetRolePolicy {
            role_name,
            policy_name,
        } => {
            let name = required(role_name, "roleName")?;
            check_name(name, "roleName", 1, 64)?;
            let p = required(policy_name, "policyName")?;
            check_name(p, "policyName", 1, 128)?;
            let role = find_role(ids, account, name);
            let arn = role.map_or_else(|| role_arn(account, "/", name), |r| r.doc.arn.clone());
            authorize_iam(ids, caller, action, &arn, now)?;
            let role = &role.ok_or_else(|| no_such_role(name))?.doc;
            let doc = role.policies.get(p).ok_or_else(|| no_such_policy(p))?;
            Ok(IamAnswer::RolePolicy {
                role_name: role.name.clone(),
                policy_name: p.to_string(),
                document: doc.clone(),
            })
        }
        IamRequest::ListRolePolicies {
            role_name,
            marker,
            max_items,
        } => {
            let name = required(role_name, "roleName")?;
            check_name(name, "roleName", 1, 64)?;
            let role = find_role(ids, account, name);
            let arn = role.map_or_else(|| role_arn(account, "/", name), |r| r.doc.arn.clone());
            authorize_iam(ids, caller, action, &arn, now)?;
            let role = &role.ok_or_else(|| no_such_role(name))?.doc;
            let names: Vec<&String> = role.policies.keys().collect();
            let (names, next_marker) =
                page(marker.as_deref(), max_items.as_deref(), &names, |n| {
                    n.as_str()
                })?;
            Ok(IamAnswer::PolicyNames {
                names: names.iter().map(|n| n.to_string()).collect(),
                next_marker,
            })
        }
        _ => unreachable!("dispatched by call_iam"),
    }
}

fn no_such_policy(name: &str) -> ApiError {
    ApiError::new(
        Code::NoSuchEntity,
        format!("The role policy with name {name} cannot be found."),
    )
}

fn save_role(doc: &RoleDoc) -> Op {
    Op::PutRole {
        arn: doc.arn.clone(),
        account: doc.account.clone(),
        doc: serde_json::to_string(doc).expect("a role serializes"),
    }
}

fn iam_write(
    ids: &mut IdentityConfig,
    caller: &Caller,
    request: &IamRequest,
    now: i64,
) -> Result<(IamAnswer, Vec<Op>), ApiError> {
    let account = caller.identity.account_id.clone();
    let action = request.action();
    let (IamRequest::CreateRole { role_name, .. }
    | IamRequest::DeleteRole { role_name }
    | IamRequest::PutRolePolicy { role_name, .. }
    | IamRequest::DeleteRolePolicy { role_name, .. }) = request
    else {
        unreachable!("dispatched by call_iam")
    };
    let name = required(role_name, "roleName")?;
    check_name(name, "roleName", 1, 64)?;
    match request {
        IamRequest::CreateRole {
            path,
            assume_role_policy_document,
            description,
            max_session_duration,
            ..
        } => {
            let path = path.as_deref().unwrap_or("/");
            check_len(path, "path", 1, 512)?;
            let path_ok = path == "/"
                || (path.len() >= 3
                    && path.starts_with('/')
                    && path.ends_with('/')
                    && path.bytes().all(|b| (0x21..=0x7e).contains(&b)));
            if !path_ok {
                return Err(validation(
                    path,
                    "path",
                    "Member must satisfy regular expression pattern: (\\u002F)|(\\u002F[\\u0021-\\u007E]+\\u002F)",
                ));
            }
            let trust = policy_document(assume_role_policy_document, "assumeRolePolicyDocument")?;
            let description = description.as_deref();
            if let Some(d) = description {
                check_len(d, "description", 0, 1000)?;
            }
            let max_session = int_param(
                max_session_duration.as_deref(),
                "maxSessionDuration",
                3600,
                43200,
            )?
            .unwrap_or(DEFAULT_SESSION_SECS);
            let arn = role_arn(&account, path, name);
            authorize_iam(ids, caller, action, &arn, now)?;
            if let Some(r) = find_role(ids, &account, name) {
                return Err(ApiError::new(
                    Code::EntityAlreadyExists,
                    format!("Role with name {} already exists.", r.doc.name),
                ));
            }
            if policy_chars(trust) > MAX_TRUST_POLICY_CHARS {
                return Err(ApiError::new(
                    Code::LimitExceeded,
                    format!("Cannot exceed quota for ACLSizePerRole: {MAX_TRUST_POLICY_CHARS}"),
                ));
            }
            let mut policy = Policy::parse_trust(trust).map_err(malformed)?;
            policy
                .resolve_principals(|a| ids.user_id(a).map(str::to_string))
                .map_err(malformed)?;
            let trust_ids = policy
                .principal_ids()
                .into_iter()
                .map(|(a, i)| (a.to_string(), i.to_string()))
                .collect();
            let doc = RoleDoc {
                account: account.clone(),
                name: name.to_string(),
                path: path.to_string(),
                id: format!("AROA{}", random_chars(17, UPPER32)),
                arn: arn.clone(),
                created_ms: now,
                trust: trust.to_string(),
                trust_ids,
                description: description.filter(|d| !d.is_empty()).map(str::to_string),
                max_session_secs: max_session,
                policies: BTreeMap::new(),
            };
            let answer = IamAnswer::Role(RoleInfo::from(&doc));
            let op = save_role(&doc);
            ids.roles.insert(
                arn,
                Role {
                    doc,
                    trust: policy,
                    policies: Vec::new(),
                },
            );
            Ok((answer, vec![op]))
        }
        IamRequest::DeleteRole { .. } => {
            let role = find_role(ids, &account, name);
            let arn = role.map_or_else(|| role_arn(&account, "/", name), |r| r.doc.arn.clone());
            authorize_iam(ids, caller, action, &arn, now)?;
            let role = role.ok_or_else(|| no_such_role(name))?;
            if !role.doc.policies.is_empty() {
                return Err(ApiError::new(
                    Code::DeleteConflict,
                    "Cannot delete entity, must delete policies first.",
                ));
            }
            ids.roles.remove(&arn);
            Ok((IamAnswer::Done, vec![Op::DeleteRole { arn }]))
        }
        IamRequest::PutRolePolicy { policy_name, .. }
        | IamRequest::DeleteRolePolicy { policy_name, .. } => {
            let policy_name = required(policy_name, "policyName")?;
            check_name(policy_name, "policyName", 1, 128)?;
            let document = match request {
                IamRequest::PutRolePolicy {
                    policy_document: document,
                    ..
                } => Some(policy_document(document, "policyDocument")?),
                _ => None,
            };
            let role = find_role(ids, &account, name);
            let arn = role.map_or_else(|| role_arn(&account, "/", name), |r| r.doc.arn.clone());
            authorize_iam(ids, caller, action, &arn, now)?;
            let role = role.ok_or_else(|| no_such_role(name))?;
            let mut docs = role.doc.policies.clone();
            match document {
                Some(d) => {
                    Policy::parse_identity(d).map_err(malformed)?;
                    docs.insert(policy_name.to_string(), d.to_string());
                    let total: usize = docs.values().map(|d| policy_chars(d)).sum();
                    if total > MAX_ROLE_POLICIES_CHARS {
                        return Err(ApiError::new(
                            Code::LimitExceeded,
                            format!(
                                "Maximum policy size of {MAX_ROLE_POLICIES_CHARS} bytes exceeded for role {}",
                                role.doc.name
                            ),
                        ));
                    }
                }
                None => {
                    if docs.remove(policy_name).is_none() {
                        return Err(no_such_policy(policy_name));
                    }
                }
            }
            let compiled = compile_inline(&docs).map_err(malformed)?;
            let role = ids.roles.get_mut(&arn).expect("found above");
            role.doc.policies = docs;
            role.policies = compiled;
            Ok((IamAnswer::Done, vec![save_role(&role.doc)]))
        }
        _ => unreachable!("dispatched by call_iam"),
    }
}

/// A granted AssumeRole: the answer, the changes, and what the trail shows.
struct Assumed {
    credentials: AssumedRole,
    ops: Vec<Op>,
    /// CloudTrail's `responseElements` (the access key id, never the secret).
    response: Value,
    role_account: String,
}

/// The members of an `AssumeRole` request ([`StsRequest::AssumeRole`]).
struct AssumeRoleRequest<'a> {
    role_arn: &'a Option<String>,
    role_session_name: &'a Option<String>,
    external_id: Option<&'a str>,
    duration_seconds: Option<&'a str>,
}

fn assume_role(
    ids: &mut IdentityConfig,
    root: &RootKey,
    caller: &Caller,
    request: AssumeRoleRequest<'_>,
    now: i64,
) -> Result<Assumed, ApiError> {
    let arn = required(request.role_arn, "roleArn")?;
    check_len(arn, "roleArn", 20, 2048)?;
    let session_name = required(request.role_session_name, "roleSessionName")?;
    check_len(session_name, "roleSessionName", 2, 64)?;
    if !session_name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b))
    {
        return Err(validation(
            session_name,
            "roleSessionName",
            "Member must satisfy regular expression pattern: [\\w+=,.@-]*",
        ));
    }
    let external_id = request.external_id;
    if let Some(e) = external_id {
        check_len(e, "externalId", 2, 1224)?;
        if !e
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@:/-".contains(&b))
        {
            return Err(validation(
                e,
                "externalId",
                "Member must satisfy regular expression pattern: [\\w+=,.@:\\/-]*",
            ));
        }
    }
    let duration = int_param(request.duration_seconds, "durationSeconds", 900, 43200)?;
    let iam_arn = arn
        .strip_prefix("arn:aws:iam::")
        .and_then(|rest| rest.split_once(':'))
        .filter(|(acct, res)| {
            acct.len() == 12 && acct.bytes().all(|b| b.is_ascii_digit()) && res.starts_with("role/")
        });
    if iam_arn.is_none() {
        return Err(ApiError::new(
            Code::ValidationError,
            format!("{arn} is invalid"),
        ));
    }
    let id = &caller.identity;
    if id.kind == IdentityKind::Root {
        return Err(ApiError::new(
            Code::AccessDenied,
            "Roles may not be assumed by root accounts.",
        ));
    }
    let denied = || {
        ApiError::new(
            Code::AccessDenied,
            format!(
                "User: {} is not authorized to perform: sts:AssumeRole on resource: {arn}",
                id.arn
            ),
        )
    };
    let role = ids.roles.get(arn).ok_or_else(denied)?;
    let mut extra: Vec<(&str, &str)> = vec![("sts:RoleSessionName", session_name)];
    if let Some(e) = external_id {
        extra.push(("sts:ExternalId", e));
    }
    let mut ctx = RequestContext::new(principal(id), "AssumeRole", arn, &role.doc.account);
    ctx.service = "sts";
    ctx.extra = &extra;
    ctx.source_ip = caller.source_ip.parse().ok();
    ctx.now_epoch_seconds = Some(now.div_euclid(1000));
    if evaluate(&ctx, &role.trust, ids.policies_for(id)) != Decision::Allow {
        return Err(denied());
    }
    let duration = duration.unwrap_or(DEFAULT_SESSION_SECS);
    if id.kind == IdentityKind::AssumedRole && duration > 3600 {
        return Err(ApiError::new(
            Code::ValidationError,
            "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.",
        ));
    }
    if duration > role.doc.max_session_secs {
        return Err(ApiError::new(
            Code::ValidationError,
            "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
        ));
    }

    let access_key_id = format!("ASIA{}", random_chars(16, UPPER32));
    let secret = Zeroizing::new(random_chars(
        40,
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
    ));
    let token = random_chars(
        356,
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
    );
    let expires_ms = (now.div_euclid(1000) + duration) * 1000;
    let doc = SessionDoc {
        access_key_id: access_key_id.clone(),
        account: role.doc.account.clone(),
        role_arn: role.doc.arn.clone(),
        role_id: role.doc.id.clone(),
        role_name: role.doc.name.clone(),
        session_name: session_name.to_string(),
        token: token.clone(),
        expires_ms,
    };
    let session = Session {
        doc,
        secret: Zeroizing::new(secret.as_bytes().to_vec()),
    };
    let identity = session.identity();

    // Expired sessions go (from memory and the store) once one may have expired, not on every
    // call: the walk over every session would make assuming N roles cost N^2.
    let prune = now >= ids.sessions_expire_ms;
    let ops = [Op::PruneSessions { before_ms: now }]
        .into_iter()
        .filter(|_| prune)
        .chain([Op::PutSession {
            access_key_id: access_key_id.clone(),
            doc: serde_json::to_string(&session.doc).expect("a session serializes"),
            wrapped_secret: root.wrap(secret.as_bytes(), &session_secret_aad(&access_key_id)),
            expires_ms,
        }])
        .collect::<Vec<_>>();
    let response = serde_json::json!({
        "credentials": {"accessKeyId": access_key_id, "expiration": iso8601(expires_ms)},
        "assumedRoleUser": {"assumedRoleId": &identity.principal_id, "arn": &identity.arn},
    });
    let role_account = session.doc.account.clone();
    if prune {
        ids.sessions.retain(|_, s| s.doc.expires_ms > now);
        ids.sessions_expire_ms = ids
            .sessions
            .values()
            .map(|s| s.doc.expires_ms)
            .min()
            .unwrap_or(i64::MAX);
    }
    ids.sessions_expire_ms = ids.sessions_expire_ms.min(expires_ms);
    ids.sessions.insert(access_key_id.clone(), session);
    let credentials = AssumedRole {
        access_key_id,
        secret_access_key: secret,
        session_token: token,
        expires_ms,
        assumed_role_id: identity.principal_id,
        arn: identity.arn,
    };
    Ok(Assumed {
        credentials,
        ops,
        response,
        role_account,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_size_ignores_whitespace() {
        assert_eq!(policy_chars("{ \"a\" :\n 1 }"), 7);
    }
}
