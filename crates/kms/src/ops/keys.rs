//! Key lifecycle, description, policy and tags.

use serde_json::{json, Value};

use super::{key_arn, page, paged, require_not_pending, resolve, Cx, Req};
use crate::authz::authorize;
use crate::clock::{epoch_seconds, DAY_MS};
use crate::engine::State;
use crate::error::{ApiError, Code};
use crate::keys::{default_policy, material_aad, new_material, KeyMeta, KeyRecord, KeyState};
use crate::policy::Policy;
use crate::store::Op;

const MAX_TAGS: usize = 50;
pub(crate) const MAX_POLICY_BYTES: usize = 32768;

fn unsupported(what: &str) -> ApiError {
    ApiError::new(
        Code::UnsupportedOperationException,
        format!("{what} is not supported: this KMS creates symmetric encryption keys (SYMMETRIC_DEFAULT, ENCRYPT_DECRYPT) with KMS-generated material only."),
    )
}

/// Checks a key policy document with the policy module's parser (JSON, elements, principals,
/// actions, conditions), answering `MalformedPolicyDocumentException` as AWS does.
pub(crate) fn validate_policy(policy: &str) -> Result<(), ApiError> {
    crate::policy::Policy::parse(policy)
        .map(|_| ())
        .map_err(|e| ApiError::new(Code::MalformedPolicyDocumentException, e.to_string()))
}

/// Compiles a key policy being saved and binds the IAM users it names to their unique ids now,
/// as AWS does; a principal that does not exist makes the policy malformed. Returns the policy
/// and the (ARN, id) pairs to persist.
pub(crate) fn compile_policy(
    cx: &Cx<'_>,
    text: &str,
) -> Result<(Policy, Vec<(String, String)>), ApiError> {
    let malformed = |e: crate::policy::PolicyError| {
        ApiError::new(Code::MalformedPolicyDocumentException, e.to_string())
    };
    let mut policy = Policy::parse(text).map_err(malformed)?;
    {
        let ids = cx
            .inner
            .identities
            .read()
            .unwrap_or_else(|e| e.into_inner());
        policy
            .resolve_principals(|arn| ids.user_id(arn).map(str::to_string))
            .map_err(malformed)?;
    }
    let pairs = policy
        .principal_ids()
        .into_iter()
        .map(|(a, i)| (a.to_string(), i.to_string()))
        .collect();
    Ok((policy, pairs))
}

/// AWS's policy lockout safety check: a new key policy must still let the caller make a later
/// PutKeyPolicy request, unless `BypassPolicyLockoutSafetyCheck` is set.
fn check_lockout(
    cx: &Cx<'_>,
    parsed: &Policy,
    key_arn: &str,
    key_account: &str,
    bypass: bool,
) -> Result<(), ApiError> {
    use crate::policy::{would_lock_out, LOCKOUT_MESSAGE};
    if bypass {
        return Ok(());
    }
    let caller = crate::authz::principal(&cx.caller.identity);
    if would_lock_out(parsed, &caller, key_arn, key_account) {
        return Err(ApiError::new(
            Code::MalformedPolicyDocumentException,
            LOCKOUT_MESSAGE,
        ));
    }
    Ok(())
}

/// The `Policy` member checked for presence and length only (the model's validation).
fn policy_text(req: &Req, required: bool) -> Result<Option<&str>, ApiError> {
    let p = req.str_len("Policy", 1, MAX_POLICY_BYTES)?;
    match p {
        Some(p) if p.len() > MAX_POLICY_BYTES => {
            Err(ApiError::too_long(p, "policy", MAX_POLICY_BYTES))
        }
        None if required => Err(ApiError::null("policy")),
        p => Ok(p),
    }
}

/// Parses and checks a `Tags` list.
fn tags_member(req: &Req) -> Result<Option<Vec<(String, String)>>, ApiError> {
    let Some(list) = req.list("Tags")? else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for t in list {
        let key = t.get("TagKey");
        let value = t.get("TagValue");
        let (Some(Value::String(k)), Some(Value::String(v))) = (key, value) else {
            if key.is_none_or(Value::is_null) {
                return Err(ApiError::null("tags.member.tagKey"));
            }
            if value.is_none_or(Value::is_null) {
                return Err(ApiError::null("tags.member.tagValue"));
            }
            return Err(ApiError::serialization(
                "Tags must be a list of {TagKey, TagValue} strings.",
            ));
        };
        if k.is_empty() || k.chars().count() > 128 {
            return Err(ApiError::too_long(k, "tags.member.tagKey", 128));
        }
        if v.chars().count() > 256 {
            return Err(ApiError::too_long(v, "tags.member.tagValue", 256));
        }
        if k.starts_with("aws:") {
            return Err(ApiError::new(
                Code::TagException,
                "Tags beginning with aws: are reserved.",
            ));
        }
        if out.iter().any(|(ek, _): &(String, String)| ek == k) {
            return Err(ApiError::new(
                Code::TagException,
                "Duplicate tag keys are not allowed.",
            ));
        }
        out.push((k.clone(), v.clone()));
    }
    Ok(Some(out))
}

pub(crate) fn create_key(cx: &mut Cx<'_>, st: &mut State, req: &Req) -> Result<Value, ApiError> {
    let policy = policy_text(req, false)?;
    let description = req.str_len("Description", 0, 8192)?.unwrap_or("");
    req.enum_opt(
        "KeyUsage",
        &[
            "SIGN_VERIFY",
            "ENCRYPT_DECRYPT",
            "GENERATE_VERIFY_MAC",
            "KEY_AGREEMENT",
        ],
    )?
    .filter(|u| *u != "ENCRYPT_DECRYPT")
    .map_or(Ok(()), |u| Err(unsupported(&format!("KeyUsage {u}"))))?;
    const SPECS: &[&str] = &[
        "RSA_2048",
        "RSA_3072",
        "RSA_4096",
        "ECC_NIST_P256",
        "ECC_NIST_P384",
        "ECC_NIST_P521",
        "ECC_SECG_P256K1",
        "SYMMETRIC_DEFAULT",
        "HMAC_224",
        "HMAC_256",
        "HMAC_384",
        "HMAC_512",
        "SM2",
    ];
    for m in ["KeySpec", "CustomerMasterKeySpec"] {
        if let Some(s) = req
            .enum_opt(m, SPECS)?
            .filter(|s| *s != "SYMMETRIC_DEFAULT")
        {
            return Err(unsupported(&format!("{m} {s}")));
        }
    }
    if let Some(o) = req
        .enum_opt(
            "Origin",
            &["AWS_KMS", "EXTERNAL", "AWS_CLOUDHSM", "EXTERNAL_KEY_STORE"],
        )?
        .filter(|o| *o != "AWS_KMS")
    {
        return Err(unsupported(&format!("Origin {o}")));
    }
    // AWS checks the key's usage and spec before it parses the policy.
    if let Some(p) = policy {
        validate_policy(p)?;
    }
    if req.bool_opt("MultiRegion")? == Some(true) {
        return Err(unsupported("MultiRegion"));
    }
    if req.str_opt("CustomKeyStoreId")?.is_some() || req.str_opt("XksKeyId")?.is_some() {
        return Err(unsupported("A custom key store"));
    }
    let bypass = req.bool_opt("BypassPolicyLockoutSafetyCheck")? == Some(true);
    let tags = tags_member(req)?.unwrap_or_default();
    crate::authz::authorize_account(cx, "CreateKey", "*")?;
    if tags.len() > MAX_TAGS {
        return Err(ApiError::new(
            Code::TagException,
            format!("A key can have at most {MAX_TAGS} tags."),
        ));
    }

    let caller = cx.caller;
    let uuid = uuid::Uuid::new_v4();
    let id = uuid.hyphenated().to_string();
    let account = caller.identity.account_id.clone();
    let arn = key_arn(&caller.region, &account, &id);
    let policy_text = policy
        .map(str::to_string)
        .unwrap_or_else(|| default_policy(&account));
    let (compiled, principal_ids) = compile_policy(cx, &policy_text)?;
    if policy.is_some() {
        check_lockout(cx, &compiled, &arn, &account, bypass)?;
    }
    let material = new_material(1);
    let wrapped = cx
        .inner
        .root
        .wrap(material.bytes.as_ref(), &material_aad(&id, 1));
    let key = KeyRecord {
        meta: KeyMeta {
            id: id.clone(),
            account: account.clone(),
            region: caller.region.clone(),
            arn,
            created_ms: cx.now,
            description: description.to_string(),
            state: KeyState::Enabled,
            deletion_ms: None,
            pending_window_days: None,
            policy: policy_text,
            policy_principal_ids: principal_ids,
            tags,
            rotation_enabled: false,
            rotation_period_days: 365,
            next_rotation_ms: None,
            on_demand_rotations: 0,
            on_demand_start_ms: None,
            rotations: Vec::new(),
        },
        policy: compiled,
        uuid,
        materials: vec![material],
    };
    cx.touch(&key);
    cx.save_key(&key);
    cx.ops.push(Op::PutMaterial {
        key_id: id.clone(),
        version: 1,
        wrapped,
    });
    let response = json!({ "KeyMetadata": key.metadata() });
    cx.response_elements = response.clone();
    st.keys.insert(id, key);
    Ok(response)
}

pub(crate) fn describe_key(cx: &mut Cx<'_>, st: &State, req: &Req) -> Result<Value, ApiError> {
    let key_id = req.key_id("KeyId")?;
    let tokens = req.grant_tokens()?;
    let id = resolve(cx, st, key_id, true)?;
    let key = &st.keys[&id];
    authorize(cx, st, "DescribeKey", key, None, &tokens)?;
    Ok(json!({ "KeyMetadata": key.metadata() }))
}

pub(crate) fn list_keys(cx: &mut Cx<'_>, st: &State, req: &Req) -> Result<Value, ApiError> {
    let limit = req.int_range("Limit", 1, 1000)?.unwrap_or(100) as usize;
    let marker = req.str_len("Marker", 1, 1024)?;
    crate::authz::authorize_account(cx, "ListKeys", "*")?;
    let mut items: Vec<(String, Value)> = st
        .keys
        .values()
        .filter(|k| {
            k.meta.account == cx.caller.identity.account_id && k.meta.region == cx.caller.region
        })
        .map(|k| {
            (
                k.meta.id.clone(),
                json!({"KeyId": k.meta.id, "KeyArn": k.meta.arn}),
            )
        })
        .collect();
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let (keys, next) = page(items, limit, marker)?;
    Ok(paged(json!({ "Keys": keys }), next))
}

/// Resolves a key id or ARN (no alias), authorizes `action`, returns the key id.
fn key_for(cx: &mut Cx<'_>, st: &State, req: &Req, action: &str) -> Result<String, ApiError> {
    let key_id = req.key_id("KeyId")?;
    let id = resolve(cx, st, key_id, false)?;
    authorize(cx, st, action, &st.keys[&id], None, &[])?;
    Ok(id)
}

pub(crate) fn enable_key(cx: &mut Cx<'_>, st: &mut State, req: &Req) -> Result<Value, ApiError> {
    let id = key_for(cx, st, req, "EnableKey")?;
    let key = st.keys.get_mut(&id).expect("resolved");
    require_not_pending(key)?;
    key.meta.state = KeyState::Enabled;
    // A key whose rotation fell due while it was disabled rotates at once: the engine sees it due.
    cx.save_key(key);
    Ok(json!({}))
}

pub(crate) fn disable_key(cx: &mut Cx<'_>, st: &mut State, req: &Req) -> Result<Value, ApiError> {
    let id = key_for(cx, st, req, "DisableKey")?;
    let key = st.keys.get_mut(&id).expect("resolved");
    require_not_pending(key)?;
    key.meta.state = KeyState::Disabled;
    cx.save_key(key);
    Ok(json!({}))
}

pub(crate) fn schedule_key_deletion(
    cx: &mut Cx<'_>,
    st: &mut State,
    req: &Req,
) -> Result<Value, ApiError> {
    let days = req.int_range("PendingWindowInDays", 7, 30)?.unwrap_or(30);
    let id = key_for(cx, st, req, "ScheduleKeyDeletion")?;
    let key = st.keys.get_mut(&id).expect("resolved");
    require_not_pending(key)?;
    let deletion = cx.now + days * DAY_MS;
    key.meta.state = KeyState::PendingDeletion;
    key.meta.deletion_ms = Some(deletion);
    key.meta.pending_window_days = Some(days);
    cx.save_key(key);
    let response = json!({
        "KeyId": key.meta.arn,
        "DeletionDate": epoch_seconds(deletion),
        "KeyState": "PendingDeletion",
        "PendingWindowInDays": days,
    });
    cx.response_elements = response.clone();
    Ok(response)
}

pub(crate) fn cancel_key_deletion(
    cx: &mut Cx<'_>,
    st: &mut State,
    req: &Req,
) -> Result<Value, ApiError> {
    let id = key_for(cx, st, req, "CancelKeyDeletion")?;
    let key = st.keys.get_mut(&id).expect("resolved");
    if key.meta.state != KeyState::PendingDeletion {
        return Err(ApiError::invalid_state(format!(
            "{} is not pending deletion.",
            key.meta.arn
        )));
    }
    key.meta.state = KeyState::Disabled;
    key.meta.deletion_ms = None;
    key.meta.pending_window_days = None;
    cx.save_key(key);
    let response = json!({ "KeyId": key.meta.arn });
    cx.response_elements = response.clone();
    Ok(response)
}

pub(crate) fn update_key_description(
    cx: &mut Cx<'_>,
    st: &mut State,
    req: &Req,
) -> Result<Value, ApiError> {
    let description = req
        .str_len("Description", 0, 8192)?
        .ok_or_else(|| ApiError::null("description"))?;
    let id = key_for(cx, st, req, "UpdateKeyDescription")?;
    let key = st.keys.get_mut(&id).expect("resolved");
    require_not_pending(key)?;
    key.meta.description = description.to_string();
    cx.save_key(key);
    Ok(json!({}))
}

fn policy_name(req: &Req) -> Result<(), ApiError> {
    if let Some(name) = req.str_len("PolicyName", 1, 128)? {
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(ApiError::validation(
                name,
                "policyName",
                "Member must satisfy regular expression pattern: [\\w]+",
            ));
        }
        if name != "default" {
            return Err(ApiError::not_found(format!("No such policy: {name}")));
        }
    }
    Ok(())
}

pub(crate) fn put_key_policy(
    cx: &mut Cx<'_>,
    st: &mut State,
    req: &Req,
) -> Result<Value, ApiError> {
    policy_name(req)?;
    let policy = policy_text(req, true)?.expect("required");
    let bypass = req.bool_opt("BypassPolicyLockoutSafetyCheck")? == Some(true);
    // AWS finds the key (NotFoundException) before it parses the new policy.
    let id = key_for(cx, st, req, "PutKeyPolicy")?;
    validate_policy(policy)?;
    let key = st.keys.get_mut(&id).expect("resolved");
    require_not_pending(key)?;
    let (compiled, principal_ids) = compile_policy(cx, policy)?;
    check_lockout(cx, &compiled, &key.meta.arn, &key.meta.account, bypass)?;
    key.meta.policy = policy.to_string();
    key.meta.policy_principal_ids = principal_ids;
    key.policy = compiled;
    cx.save_key(key);
    Ok(json!({}))
}

pub(crate) fn get_key_policy(cx: &mut Cx<'_>, st: &State, req: &Req) -> Result<Value, ApiError> {
    policy_name(req)?;
    let id = key_for(cx, st, req, "GetKeyPolicy")?;
    let meta = &st.keys[&id].meta;
    Ok(json!({ "Policy": shown_policy(cx, meta), "PolicyName": "default" }))
}

/// The key policy as AWS shows it: a user or role principal that no longer exists with the id
/// it was bound to (deleted, or deleted and re-created) appears as its bare unique id.
fn shown_policy(cx: &Cx<'_>, meta: &crate::keys::KeyMeta) -> String {
    let ids = cx
        .inner
        .identities
        .read()
        .unwrap_or_else(|e| e.into_inner());
    let mut text = meta.policy.clone();
    for (arn, id) in &meta.policy_principal_ids {
        if ids.user_id(arn) != Some(id.as_str()) {
            text = text.replace(&format!("\"{arn}\""), &format!("\"{id}\""));
        }
    }
    text
}

pub(crate) fn list_key_policies(cx: &mut Cx<'_>, st: &State, req: &Req) -> Result<Value, ApiError> {
    req.int_range("Limit", 1, 1000)?;
    req.str_len("Marker", 1, 1024)?;
    key_for(cx, st, req, "ListKeyPolicies")?;
    Ok(json!({ "PolicyNames": ["default"], "Truncated": false }))
}

pub(crate) fn tag_resource(cx: &mut Cx<'_>, st: &mut State, req: &Req) -> Result<Value, ApiError> {
    let tags = tags_member(req)?.ok_or_else(|| ApiError::null("tags"))?;
    let id = key_for(cx, st, req, "TagResource")?;
    let key = st.keys.get_mut(&id).expect("resolved");
    require_not_pending(key)?;
    let mut merged = key.meta.tags.clone();
    for (k, v) in tags {
        match merged.iter_mut().find(|(ek, _)| *ek == k) {
            Some(slot) => slot.1 = v,
            None => merged.push((k, v)),
        }
    }
    if merged.len() > MAX_TAGS {
        return Err(ApiError::new(
            Code::TagException,
            format!("A key can have at most {MAX_TAGS} tags."),
        ));
    }
    key.meta.tags = merged;
    cx.save_key(key);
    Ok(json!({}))
}

pub(crate) fn untag_resource(
    cx: &mut Cx<'_>,
    st: &mut State,
    req: &Req,
) -> Result<Value, ApiError> {
    let keys = req
        .str_list("TagKeys")?
        .ok_or_else(|| ApiError::null("tagKeys"))?;
    for k in &keys {
        if k.is_empty() || k.chars().count() > 128 {
            return Err(ApiError::too_long(k, "tagKeys.member", 128));
        }
    }
    let id = key_for(cx, st, req, "UntagResource")?;
    let key = st.keys.get_mut(&id).expect("resolved");
    require_not_pending(key)?;
    key.meta.tags.retain(|(k, _)| !keys.contains(k));
    cx.save_key(key);
    Ok(json!({}))
}

pub(crate) fn list_resource_tags(
    cx: &mut Cx<'_>,
    st: &State,
    req: &Req,
) -> Result<Value, ApiError> {
    let limit = req.int_range("Limit", 1, 50)?.unwrap_or(50) as usize;
    let marker = req.str_len("Marker", 1, 1024)?;
    let id = key_for(cx, st, req, "ListResourceTags")?;
    let items = st.keys[&id]
        .tags_map()
        .into_iter()
        .map(|(k, v)| (k.to_string(), json!({"TagKey": k, "TagValue": v})))
        .collect();
    let (tags, next) = page(items, limit, marker)?;
    Ok(paged(json!({ "Tags": tags }), next))
}
