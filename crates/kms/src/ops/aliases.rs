//! Aliases: `alias/<name>` per account and region, each pointing at one key.

use serde_json::{json, Value};

use super::{alias_arn, page, paged, require_not_pending, resolve, Cx, Req};
use crate::authz::authorize;
use crate::clock::epoch_seconds;
use crate::engine::{Alias, State};
use crate::error::ApiError;
use crate::store::Op;

/// AWS's rules: 1–256 characters of `[a-zA-Z0-9:/_-]` (the API's pattern, else ValidationException),
/// starting with `alias/` and not `alias/aws/` (else InvalidAliasNameException).
fn alias_name<'r>(req: &'r Req, name: &str) -> Result<&'r str, ApiError> {
    let alias = req.str_len_req(name, 1, 256)?;
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
    let Some(rest) = alias.strip_prefix("alias/") else {
        return Err(ApiError::new(
            "InvalidAliasNameException",
            format!("Alias must start with the prefix \"alias/\": {alias}"),
        ));
    };
    if rest.is_empty() || rest.contains(':') {
        return Err(ApiError::new(
            "InvalidAliasNameException",
            format!("Invalid alias name: {alias}"),
        ));
    }
    if alias.starts_with("alias/aws/") {
        return Err(ApiError::new(
            "InvalidAliasNameException",
            "Alias names that begin with alias/aws/ are reserved for AWS managed keys.",
        ));
    }
    Ok(alias)
}

/// The target of CreateAlias/UpdateAlias: a key id or ARN in the caller's account and region.
fn target(cx: &mut Cx<'_>, st: &State, req: &Req) -> Result<String, ApiError> {
    let target = req.key_id("TargetKeyId")?;
    let id = resolve(cx, st, target, false)?;
    let key = &st.keys[&id];
    if key.meta.account != cx.caller.identity.account_id || key.meta.region != cx.caller.region {
        return Err(ApiError::not_found(format!(
            "Key '{}' does not exist",
            key.meta.arn
        )));
    }
    authorize(cx, st, "CreateAlias", key, None, &[])?;
    require_not_pending(key)?;
    Ok(id)
}

pub(crate) fn create_alias(cx: &mut Cx<'_>, st: &mut State, req: &Req) -> Result<Value, ApiError> {
    let name = alias_name(req, "AliasName")?;
    let id = target(cx, st, req)?;
    let slot = (
        cx.caller.identity.account_id.clone(),
        cx.caller.region.clone(),
        name.to_string(),
    );
    if st.aliases.contains_key(&slot) {
        return Err(ApiError::new(
            "AlreadyExistsException",
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
    let id = target(cx, st, req)?;
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
    crate::authz::authorize_account(cx, "ListAliases")?;
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
