//! Aliases: `alias/<name>` per account and region, each pointing at one key.

use serde_json::{json, Value};

use super::{alias_arn, page, paged, require_not_pending, resolve, Cx, Req};
use crate::authz::{authorize, authorize_identity};
use crate::clock::epoch_seconds;
use crate::engine::{Alias, State};
use crate::error::{ApiError, Code};
use crate::store::Op;

/// AWS's rules, in AWS's order: 1–256 characters; the `alias/` prefix (else ValidationException
/// "Invalid identifier"); no `:` after it (else ValidationException "<name> contains invalid
/// characters for an alias"); the API's pattern `[a-zA-Z0-9:/_-]` (else the model's validation
/// message); not `alias/aws/` and not empty after the prefix (InvalidAliasNameException).
fn alias_name<'r>(req: &'r Req, name: &str) -> Result<&'r str, ApiError> {
    let alias = req.str_len_req(name, 1, 256)?;
    let Some(rest) = alias.strip_prefix("alias/") else {
        return Err(ApiError::new(
            Code::ValidationException,
            "Invalid identifier",
        ));
    };
    if rest.contains(':') {
        return Err(ApiError::new(
            Code::ValidationException,
            format!("{alias} contains invalid characters for an alias"),
        ));
    }
    if !alias
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b":/_-".contains(&b))
    {
        return Err(ApiError::validation(
            alias,
            &super::member(name),
            "Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$",
        ));
    }
    if rest.is_empty() {
        return Err(ApiError::new(
            Code::InvalidAliasNameException,
            format!("Invalid alias name: {alias}"),
        ));
    }
    if alias.starts_with("alias/aws/") {
        return Err(ApiError::new(
            Code::InvalidAliasNameException,
            "Alias names that begin with alias/aws/ are reserved for AWS managed keys.",
        ));
    }
    Ok(alias)
}

/// Whether a `KeyId`-shaped value names an alias (`alias/...` or an alias ARN).
fn names_alias(key_id: &str) -> bool {
    key_id.starts_with("alias/")
        || (key_id.starts_with("arn:")
            && key_id
                .splitn(6, ':')
                .nth(5)
                .is_some_and(|r| r.starts_with("alias/")))
}

/// The target of CreateAlias/UpdateAlias: a key id or ARN in the caller's account and region
/// (an alias is refused: "Aliases must refer to keys. Not aliases"), on which the caller needs
/// `action` by the key's policy.
fn target(cx: &mut Cx<'_>, st: &State, req: &Req, action: &str) -> Result<String, ApiError> {
    let target = req.key_id("TargetKeyId")?;
    if names_alias(target) {
        return Err(ApiError::new(
            Code::ValidationException,
            "Aliases must refer to keys. Not aliases",
        ));
    }
    let id = resolve(cx, st, target, false)?;
    let key = &st.keys[&id];
    if key.meta.account != cx.caller.identity.account_id || key.meta.region != cx.caller.region {
        return Err(ApiError::not_found(format!(
            "Key '{}' does not exist",
            key.meta.arn
        )));
    }
    authorize(cx, st, action, key, None, &[])?;
    require_not_pending(key)?;
    Ok(id)
}

pub(crate) fn create_alias(cx: &mut Cx<'_>, st: &mut State, req: &Req) -> Result<Value, ApiError> {
    let name = alias_name(req, "AliasName")?;
    let slot = (
        cx.caller.identity.account_id.clone(),
        cx.caller.region.clone(),
        name.to_string(),
    );
    // AWS: kms:CreateAlias on the alias (IAM policy) and on the key (key policy).
    authorize_identity(cx, "CreateAlias", &alias_arn(&slot.1, &slot.0, name))?;
    let id = target(cx, st, req, "CreateAlias")?;
    if st.aliases.contains_key(&slot) {
        return Err(ApiError::new(
            Code::AlreadyExistsException,
            format!(
                "An alias with the name {} already exists",
                alias_arn(&slot.1, &slot.0, name)
            ),
        ));
    }
    cx.ops.push(Op::PutAlias {
        account: slot.0.clone(),
        region: slot.1.clone(),
        name: slot.2.clone(),
        key_id: id.clone(),
        created_ms: cx.now,
        updated_ms: cx.now,
    });
    st.aliases.insert(
        slot,
        Alias {
            key_id: id,
            created_ms: cx.now,
            updated_ms: cx.now,
        },
    );
    Ok(json!({}))
}

fn existing(cx: &Cx<'_>, st: &State, name: &str) -> Result<(String, String, String), ApiError> {
    let slot = (
        cx.caller.identity.account_id.clone(),
        cx.caller.region.clone(),
        name.to_string(),
    );
    if !st.aliases.contains_key(&slot) {
        return Err(ApiError::not_found(format!(
            "Alias {} is not found.",
            alias_arn(&slot.1, &slot.0, name)
        )));
    }
    Ok(slot)
}

pub(crate) fn update_alias(cx: &mut Cx<'_>, st: &mut State, req: &Req) -> Result<Value, ApiError> {
    let name = alias_name(req, "AliasName")?;
    let slot = existing(cx, st, name)?;
    // AWS: kms:UpdateAlias on the alias (IAM policy), on the key it points at now and on the
    // new key (key policies), so moving an alias needs rights over both keys.
    authorize_identity(cx, "UpdateAlias", &alias_arn(&slot.1, &slot.0, name))?;
    let old = &st.keys[&st.aliases[&slot].key_id];
    cx.touch(old);
    authorize(cx, st, "UpdateAlias", old, None, &[])?;
    let id = target(cx, st, req, "UpdateAlias")?;
    let alias = st.aliases.get_mut(&slot).expect("checked");
    alias.key_id = id.clone();
    alias.updated_ms = cx.now;
    cx.ops.push(Op::PutAlias {
        account: slot.0,
        region: slot.1,
        name: slot.2,
        key_id: id,
        created_ms: alias.created_ms,
        updated_ms: cx.now,
    });
    Ok(json!({}))
}

pub(crate) fn delete_alias(cx: &mut Cx<'_>, st: &mut State, req: &Req) -> Result<Value, ApiError> {
    let name = alias_name(req, "AliasName")?;
    let slot = existing(cx, st, name)?;
    // AWS: kms:DeleteAlias on the alias (IAM policy) and on its key (key policy).
    authorize_identity(cx, "DeleteAlias", &alias_arn(&slot.1, &slot.0, name))?;
    let key = &st.keys[&st.aliases[&slot].key_id];
    cx.touch(key);
    authorize(cx, st, "DeleteAlias", key, None, &[])?;
    st.aliases.remove(&slot);
    cx.ops.push(Op::DeleteAlias {
        account: slot.0,
        region: slot.1,
        name: slot.2,
    });
    Ok(json!({}))
}

pub(crate) fn list_aliases(cx: &mut Cx<'_>, st: &State, req: &Req) -> Result<Value, ApiError> {
    let limit = req.int_range("Limit", 1, 100)?.unwrap_or(50) as usize;
    let marker = req.str_len("Marker", 1, 1024)?;
    crate::authz::authorize_account(cx, "ListAliases", "*")?;
    let filter = match req.key_id_opt("KeyId")? {
        Some(k) => Some(resolve(cx, st, k, false)?),
        None => None,
    };
    let account = &cx.caller.identity.account_id;
    let region = &cx.caller.region;
    let items = st
        .aliases
        .iter()
        .filter(|((a, r, _), alias)| {
            a == account && r == region && filter.as_ref().is_none_or(|f| *f == alias.key_id)
        })
        .map(|((a, r, name), alias)| {
            (
                name.clone(),
                json!({
                    "AliasName": name,
                    "AliasArn": alias_arn(r, a, name),
                    "TargetKeyId": alias.key_id,
                    "CreationDate": epoch_seconds(alias.created_ms),
                    "LastUpdatedDate": epoch_seconds(alias.updated_ms),
                }),
            )
        })
        .collect();
    let (aliases, next) = page(items, limit, marker)?;
    Ok(paged(json!({ "Aliases": aliases }), next))
}
