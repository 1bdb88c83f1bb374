//! Grants: CreateGrant, ListGrants, ListRetirableGrants, RetireGrant, RevokeGrant.

use base64::Engine as _;
use serde_json::{json, Value};

use super::{dry_run, page, paged, require_not_pending, resolve, Cx, Req};
use crate::authz::{authorize_retire, authorize_with, denied};
use crate::engine::State;
use crate::error::{ApiError, Code};
use crate::grants::{ChildGrant, Constraints, Grant, ALL_GRANT_OPERATIONS, GRANT_OPERATIONS};
use crate::policy::GrantContext;
use crate::store::Op;

/// Grants per key, as AWS.
const MAX_GRANTS_PER_KEY: usize = 50_000;
const TOKEN_BYTES: usize = 48;

/// A grant token is 48 random bytes, base64url without padding.
pub(crate) fn token_is_well_formed(token: &str) -> bool {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .is_ok_and(|b| b.len() == TOKEN_BYTES)
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut b).expect("random generator");
    hex::encode(b)
}

fn new_token() -> String {
    let mut b = [0u8; TOKEN_BYTES];
    aws_lc_rs::rand::fill(&mut b).expect("random generator");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// A principal AWS would accept in a grant: an IAM/STS ARN or a service principal.
fn valid_principal(p: &str) -> bool {
    if p.ends_with(".amazonaws.com") && !p.contains(':') {
        return true;
    }
    let parts: Vec<&str> = p.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && (parts[2] == "iam" || parts[2] == "sts")
        && parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && (parts[5] == "root"
            || ["user/", "role/", "assumed-role/"]
                .iter()
                .any(|pre| parts[5].len() > pre.len() && parts[5].starts_with(pre)))
}

fn principal_member<'r>(
    req: &'r Req,
    name: &str,
    required: bool,
) -> Result<Option<&'r str>, ApiError> {
    let p = if required {
        Some(req.str_len_req(name, 1, 256)?)
    } else {
        req.str_len(name, 1, 256)?
    };
    if let Some(p) = p {
        if !p
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@:/-".contains(&b))
        {
            return Err(ApiError::validation(
                p,
                &super::member(name),
                "Member must satisfy regular expression pattern: ^[\\w+=,.@:/-]+$",
            ));
        }
        if !valid_principal(p) {
            return Err(ApiError::new(
                Code::InvalidArnException,
                format!("{name} {p} is not a valid principal."),
            ));
        }
    }
    Ok(p)
}

/// ListGrants and RevokeGrant: the policies decide, with `kms:GrantIsForAWSResource` known.
fn authorize_grant_admin(
    cx: &Cx<'_>,
    st: &State,
    action: &str,
    key: &crate::keys::KeyRecord,
) -> Result<(), ApiError> {
    let grant = Some(GrantContext::default());
    authorize_with(cx, st, action, key, None, &[], grant, None)
}

/// The account of an IAM/STS principal ARN (None for a service principal).
fn principal_account(p: &str) -> Option<&str> {
    p.strip_prefix("arn:")?.split(':').nth(3)
}

pub(crate) fn create_grant(cx: &mut Cx<'_>, st: &mut State, req: &Req) -> Result<Value, ApiError> {
    let key_id = req.key_id("KeyId")?;
    let grantee = principal_member(req, "GranteePrincipal", true)?
        .expect("required")
        .to_string();
    let retiring = principal_member(req, "RetiringPrincipal", false)?.map(str::to_string);
    let operations = req
        .str_list("Operations")?
        .ok_or_else(|| ApiError::null("operations"))?;
    if operations.is_empty() {
        return Err(ApiError::validation(
            "[]",
            "operations",
            "Member must have length greater than or equal to 1",
        ));
    }
    for op in &operations {
        if !ALL_GRANT_OPERATIONS.contains(&op.as_str()) {
            return Err(ApiError::validation(
                &format!("[{}]", operations.join(", ")),
                "operations",
                &format!(
                    "Member must satisfy constraint: [Member must satisfy enum value set: [{}]]",
                    ALL_GRANT_OPERATIONS.join(", ")
                ),
            ));
        }
        if !GRANT_OPERATIONS.contains(&op.as_str()) {
            return Err(ApiError::new(
                Code::ValidationException,
                format!(
                    "Grant operation {op} is not valid for a key with KeyUsage ENCRYPT_DECRYPT."
                ),
            ));
        }
    }
    let mut operations_sorted = operations.clone();
    operations_sorted.sort();
    operations_sorted.dedup();
    let constraints = match req.map().get("Constraints") {
        None | Some(Value::Null) => None,
        Some(Value::Object(_)) => {
            let sub = Req::parse(req.map()["Constraints"].to_string().as_bytes())?;
            let c = Constraints {
                subset: sub.str_map("EncryptionContextSubset")?,
                equals: sub.str_map("EncryptionContextEquals")?,
            };
            if c.subset.is_some() && c.equals.is_some() {
                return Err(ApiError::new(
                    Code::ValidationException,
                    "A grant constraint can have EncryptionContextSubset or EncryptionContextEquals, not both.",
                ));
            }
            Some(c)
        }
        Some(_) => return Err(ApiError::serialization("Constraints must be a structure.")),
    };
    let name = req.str_len("Name", 1, 256)?;
    if let Some(n) = name {
        if !n
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b":/_-".contains(&b))
        {
            return Err(ApiError::validation(
                n,
                "name",
                "Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$",
            ));
        }
    }
    let tokens = req.grant_tokens()?;
    req.bool_opt("DryRun")?;
    let id = resolve(cx, st, key_id, false)?;
    let key = &st.keys[&id];
    let grant_ctx = GrantContext {
        // No AWS service creates grants here.
        is_for_aws_resource: false,
        operations: &operations_sorted,
        grantee_principal: Some(&grantee),
        retiring_principal: retiring.as_deref(),
    };
    let child = ChildGrant {
        operations: &operations_sorted,
        constraints: constraints.as_ref(),
    };
    // In a CreateGrant request the kms:EncryptionContext* condition keys see the grant's
    // constraint.
    let context = constraints.as_ref().and_then(Constraints::pairs);
    authorize_with(
        cx,
        st,
        "CreateGrant",
        key,
        context,
        &tokens,
        Some(grant_ctx),
        Some(&child),
    )?;
    require_not_pending(key)?;
    dry_run(req)?;
    // Name idempotency: the same name and parameters return the existing grant.
    if let Some(n) = name {
        if let Some(g) = st.grants_of(&id).find(|g| {
            g.name.as_deref() == Some(n)
                && g.grantee == grantee
                && g.retiring == retiring
                && g.operations == operations_sorted
                && g.constraints == constraints
        }) {
            let response = json!({ "GrantToken": g.token, "GrantId": g.id });
            cx.response_elements = json!({ "GrantId": g.id });
            return Ok(response);
        }
    }
    if st.grants_of(&id).count() >= MAX_GRANTS_PER_KEY {
        return Err(ApiError::new(
            Code::LimitExceededException,
            format!("Too many grants for key {}.", key.meta.arn),
        ));
    }
    let grant = Grant {
        id: random_hex(32),
        key_id: id.clone(),
        key_arn: key.meta.arn.clone(),
        key_account: key.meta.account.clone(),
        name: name.map(str::to_string),
        created_ms: cx.now,
        grantee,
        retiring,
        operations: operations_sorted,
        constraints,
        token: new_token(),
    };
    cx.ops.push(Op::PutGrant {
        id: grant.id.clone(),
        key_id: id,
        doc: serde_json::to_string(&grant).expect("grant serializes"),
    });
    let response = json!({ "GrantToken": grant.token, "GrantId": grant.id });
    cx.response_elements = json!({ "GrantId": grant.id });
    st.grants
        .insert((grant.key_id.clone(), grant.id.clone()), grant);
    Ok(response)
}

pub(crate) fn list_grants(cx: &mut Cx<'_>, st: &State, req: &Req) -> Result<Value, ApiError> {
    let limit = req.int_range("Limit", 1, 100)?.unwrap_or(50) as usize;
    let marker = req.str_len("Marker", 1, 1024)?;
    let grant_id = req.str_len("GrantId", 1, 128)?;
    let grantee = req.str_len("GranteePrincipal", 1, 256)?;
    let key_id = req.key_id("KeyId")?;
    let id = resolve(cx, st, key_id, false)?;
    authorize_grant_admin(cx, st, "ListGrants", &st.keys[&id])?;
    let items = st
        .grants_of(&id)
        .filter(|g| grant_id.is_none_or(|x| x == g.id) && grantee.is_none_or(|x| x == g.grantee))
        .map(|g| (format!("{:020}{}", g.created_ms, g.id), g.entry()))
        .collect::<std::collections::BTreeMap<_, _>>()
        .into_iter()
        .collect();
    let (grants, next) = page(items, limit, marker)?;
    Ok(paged(json!({ "Grants": grants }), next))
}

pub(crate) fn list_retirable_grants(
    cx: &mut Cx<'_>,
    st: &State,
    req: &Req,
) -> Result<Value, ApiError> {
    let limit = req.int_range("Limit", 1, 100)?.unwrap_or(50) as usize;
    let marker = req.str_len("Marker", 1, 1024)?;
    let retiring = principal_member(req, "RetiringPrincipal", true)?.expect("required");
    // The authorized resource is the retiring principal, which must be in the caller's account:
    // a principal of another account is a resource no policy of the caller's can reach.
    if principal_account(retiring) != Some(cx.caller.identity.account_id.as_str()) {
        return Err(denied(cx.caller, "ListRetirableGrants", retiring));
    }
    crate::authz::authorize_account(cx, "ListRetirableGrants", retiring)?;
    // Grants on keys of any account, in the caller's region.
    let region = format!(":{}:", cx.caller.region);
    let items = st
        .grants
        .values()
        .filter(|g| g.retiring.as_deref() == Some(retiring) && g.key_arn.contains(&region))
        .map(|g| (format!("{:020}{}", g.created_ms, g.id), g.entry()))
        .collect::<std::collections::BTreeMap<_, _>>()
        .into_iter()
        .collect();
    let (grants, next) = page(items, limit, marker)?;
    Ok(paged(json!({ "Grants": grants }), next))
}

pub(crate) fn retire_grant(cx: &mut Cx<'_>, st: &mut State, req: &Req) -> Result<Value, ApiError> {
    let token = req.str_len("GrantToken", 1, 8192)?;
    let key_id = req.key_id_opt("KeyId")?;
    let grant_id = req.str_len("GrantId", 1, 128)?;
    req.bool_opt("DryRun")?;
    let slot = match (token, key_id, grant_id) {
        (Some(t), _, _) => {
            if !token_is_well_formed(t) {
                return Err(ApiError::new(
                    Code::InvalidGrantTokenException,
                    "The grant token is not valid.",
                ));
            }
            st.grants
                .iter()
                .find(|(_, g)| g.token == t)
                .map(|(slot, _)| slot.clone())
                .ok_or_else(|| ApiError::not_found("Grant not found for the grant token."))?
        }
        (None, Some(k), Some(g)) => {
            let id = resolve(cx, st, k, false)?;
            let slot = (id, g.to_string());
            if !st.grants.contains_key(&slot) {
                return Err(ApiError::not_found(format!("Grant ID {g} not found")));
            }
            slot
        }
        _ => {
            return Err(ApiError::new(
                Code::ValidationException,
                "Either GrantToken, or both KeyId and GrantId, must be specified.",
            ))
        }
    };
    let grant = &st.grants[&slot];
    let key = &st.keys[&grant.key_id];
    cx.touch(key);
    authorize_retire(cx, grant, key)?;
    dry_run(req)?;
    st.grants.remove(&slot);
    cx.ops.push(Op::DeleteGrant { id: slot.1 });
    Ok(json!({}))
}

pub(crate) fn revoke_grant(cx: &mut Cx<'_>, st: &mut State, req: &Req) -> Result<Value, ApiError> {
    let key_id = req.key_id("KeyId")?;
    let grant_id = req.str_len_req("GrantId", 1, 128)?;
    req.bool_opt("DryRun")?;
    let id = resolve(cx, st, key_id, false)?;
    authorize_grant_admin(cx, st, "RevokeGrant", &st.keys[&id])?;
    let slot = (id, grant_id.to_string());
    if !st.grants.contains_key(&slot) {
        return Err(ApiError::not_found(format!(
            "Grant ID {grant_id} not found"
        )));
    }
    dry_run(req)?;
    st.grants.remove(&slot);
    cx.ops.push(Op::DeleteGrant {
        id: grant_id.to_string(),
    });
    Ok(json!({}))
}
