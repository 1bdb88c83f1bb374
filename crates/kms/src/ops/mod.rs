//! The KMS actions. Each handler validates its whole request, authorizes, and only then changes
//! state, so a refused request changes nothing. Reads run under the state's read lock; writes under
//! its write lock, and queue their store changes before the lock is released so later requests
//! never depend on a change that could be lost while theirs survives.

pub(crate) mod aliases;
pub(crate) mod crypto;
pub(crate) mod grants;
pub(crate) mod keys;
mod req;
pub(crate) mod rotation;

use base64::Engine as _;
use serde_json::Value;

use crate::engine::{Inner, State};
use crate::error::{ApiError, Code};
use crate::identity::Caller;
use crate::keys::{KeyRecord, KeyState};
use crate::store::Op;

pub(crate) use req::{member, Req};

/// What one request is doing, shared by its handler and the trail.
pub(crate) struct Cx<'a> {
    pub caller: &'a Caller,
    pub inner: &'a Inner,
    pub now: i64,
    pub ops: Vec<Op>,
    /// (account, ARN) of every key the request reached.
    pub resources: Vec<(String, String)>,
    /// CloudTrail `responseElements` for calls that change something.
    pub response_elements: Value,
}

impl<'a> Cx<'a> {
    pub(crate) fn new(caller: &'a Caller, inner: &'a Inner, now: i64) -> Cx<'a> {
        Cx {
            caller,
            inner,
            now,
            ops: Vec::new(),
            resources: Vec::new(),
            response_elements: Value::Null,
        }
    }

    fn touch(&mut self, key: &KeyRecord) {
        if !self.resources.iter().any(|(_, arn)| *arn == key.meta.arn) {
            self.resources
                .push((key.meta.account.clone(), key.meta.arn.clone()));
        }
    }

    /// Queues the key's metadata for the store.
    pub(crate) fn save_key(&mut self, key: &KeyRecord) {
        self.ops.push(Op::PutKey {
            id: key.meta.id.clone(),
            account: key.meta.account.clone(),
            region: key.meta.region.clone(),
            doc: serde_json::to_string(&key.meta).expect("key metadata serializes"),
        });
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Read,
    Write,
}

/// Known AWS KMS actions this engine does not implement (symmetric keys only).
const UNSUPPORTED: &[&str] = &[
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "Sign",
    "Verify",
    "GetPublicKey",
    "GenerateMac",
    "VerifyMac",
    "DeriveSharedSecret",
    "GetParametersForImport",
    "ImportKeyMaterial",
    "DeleteImportedKeyMaterial",
    "ReplicateKey",
    "UpdatePrimaryRegion",
    "CreateCustomKeyStore",
    "ConnectCustomKeyStore",
    "DeleteCustomKeyStore",
    "DescribeCustomKeyStores",
    "DisconnectCustomKeyStore",
    "UpdateCustomKeyStore",
];

pub(crate) fn kind(action: &str) -> Option<Kind> {
    match action {
        "DescribeKey"
        | "ListKeys"
        | "ListAliases"
        | "ListResourceTags"
        | "GetKeyPolicy"
        | "ListKeyPolicies"
        | "GetKeyRotationStatus"
        | "ListKeyRotations"
        | "ListGrants"
        | "ListRetirableGrants"
        | "Encrypt"
        | "Decrypt"
        | "ReEncrypt"
        | "GenerateDataKey"
        | "GenerateDataKeyWithoutPlaintext"
        | "GenerateRandom" => Some(Kind::Read),
        "CreateKey"
        | "EnableKey"
        | "DisableKey"
        | "ScheduleKeyDeletion"
        | "CancelKeyDeletion"
        | "CreateAlias"
        | "UpdateAlias"
        | "DeleteAlias"
        | "TagResource"
        | "UntagResource"
        | "UpdateKeyDescription"
        | "PutKeyPolicy"
        | "EnableKeyRotation"
        | "DisableKeyRotation"
        | "RotateKeyOnDemand"
        | "CreateGrant"
        | "RetireGrant"
        | "RevokeGrant" => Some(Kind::Write),
        a if UNSUPPORTED.contains(&a) => Some(Kind::Read),
        _ => None,
    }
}

/// CloudTrail's `readOnly`.
pub(crate) fn read_only(action: &str) -> bool {
    matches!(kind(action), Some(Kind::Read))
}

pub(crate) fn run_read(
    cx: &mut Cx<'_>,
    st: &State,
    action: &str,
    req: &Req,
) -> Result<Value, ApiError> {
    match action {
        "DescribeKey" => keys::describe_key(cx, st, req),
        "ListKeys" => keys::list_keys(cx, st, req),
        "ListResourceTags" => keys::list_resource_tags(cx, st, req),
        "GetKeyPolicy" => keys::get_key_policy(cx, st, req),
        "ListKeyPolicies" => keys::list_key_policies(cx, st, req),
        "ListAliases" => aliases::list_aliases(cx, st, req),
        "GetKeyRotationStatus" => rotation::get_key_rotation_status(cx, st, req),
        "ListKeyRotations" => rotation::list_key_rotations(cx, st, req),
        "ListGrants" => grants::list_grants(cx, st, req),
        "ListRetirableGrants" => grants::list_retirable_grants(cx, st, req),
        "Encrypt" => crypto::encrypt(cx, st, req),
        "Decrypt" => crypto::decrypt(cx, st, req),
        "ReEncrypt" => crypto::re_encrypt(cx, st, req),
        "GenerateDataKey" => crypto::generate_data_key(cx, st, req, true),
        "GenerateDataKeyWithoutPlaintext" => crypto::generate_data_key(cx, st, req, false),
        "GenerateRandom" => crypto::generate_random(cx, st, req),
        other => Err(ApiError::new(
            Code::UnsupportedOperationException,
            format!(
                "{other} is not supported: this KMS implements symmetric encryption keys only."
            ),
        )),
    }
}

pub(crate) fn run_write(
    cx: &mut Cx<'_>,
    st: &mut State,
    action: &str,
    req: &Req,
) -> Result<Value, ApiError> {
    match action {
        "CreateKey" => keys::create_key(cx, st, req),
        "EnableKey" => keys::enable_key(cx, st, req),
        "DisableKey" => keys::disable_key(cx, st, req),
        "ScheduleKeyDeletion" => keys::schedule_key_deletion(cx, st, req),
        "CancelKeyDeletion" => keys::cancel_key_deletion(cx, st, req),
        "UpdateKeyDescription" => keys::update_key_description(cx, st, req),
        "PutKeyPolicy" => keys::put_key_policy(cx, st, req),
        "TagResource" => keys::tag_resource(cx, st, req),
        "UntagResource" => keys::untag_resource(cx, st, req),
        "CreateAlias" => aliases::create_alias(cx, st, req),
        "UpdateAlias" => aliases::update_alias(cx, st, req),
        "DeleteAlias" => aliases::delete_alias(cx, st, req),
        "EnableKeyRotation" => rotation::enable_key_rotation(cx, st, req),
        "DisableKeyRotation" => rotation::disable_key_rotation(cx, st, req),
        "RotateKeyOnDemand" => rotation::rotate_key_on_demand(cx, st, req),
        "CreateGrant" => grants::create_grant(cx, st, req),
        "RetireGrant" => grants::retire_grant(cx, st, req),
        "RevokeGrant" => grants::revoke_grant(cx, st, req),
        other => Err(ApiError::new(
            Code::UnknownOperationException,
            format!("Unknown operation {other}"),
        )),
    }
}

pub(crate) fn key_arn(region: &str, account: &str, id: &str) -> String {
    format!("arn:aws:kms:{region}:{account}:key/{id}")
}

pub(crate) fn alias_arn(region: &str, account: &str, name: &str) -> String {
    format!("arn:aws:kms:{region}:{account}:{name}")
}

fn invalid_key_id(key_id: &str) -> ApiError {
    ApiError::not_found(format!("Invalid keyId '{key_id}'"))
}

/// Finds the key a `KeyId` member names: a key id, a key ARN, and where `alias_ok`, an alias name
/// or alias ARN. A bare key id or alias names the caller's account and region. Returns the key id.
pub(crate) fn resolve(
    cx: &mut Cx<'_>,
    st: &State,
    key_id: &str,
    alias_ok: bool,
) -> Result<String, ApiError> {
    let (region, account, resource) = if let Some(rest) = key_id.strip_prefix("arn:") {
        let parts: Vec<&str> = rest.splitn(5, ':').collect();
        if parts.len() != 5
            || !parts[0].starts_with("aws")
            || parts[1] != "kms"
            || parts[2].is_empty()
        {
            return Err(invalid_key_id(key_id));
        }
        (parts[2].to_string(), parts[3].to_string(), parts[4])
    } else {
        (
            cx.caller.region.clone(),
            cx.caller.identity.account_id.clone(),
            key_id,
        )
    };
    let id = if resource.starts_with("alias/") {
        if !alias_ok {
            return Err(invalid_key_id(key_id));
        }
        alias_target(st, &account, &region, resource)?
    } else {
        let raw = if key_id.starts_with("arn:") {
            resource
                .strip_prefix("key/")
                .ok_or_else(|| invalid_key_id(key_id))?
        } else {
            resource
        };
        match uuid::Uuid::parse_str(raw) {
            Ok(u) if raw.len() == 36 => u.hyphenated().to_string(),
            _ => return Err(invalid_key_id(key_id)),
        }
    };
    match st.keys.get(&id) {
        // Keys are regional: a request signed for one region never reaches another region's key.
        Some(k)
            if k.meta.account == account
                && k.meta.region == region
                && region == cx.caller.region =>
        {
            cx.touch(k);
            Ok(id)
        }
        _ => Err(ApiError::not_found(format!(
            "Key '{}' does not exist",
            key_arn(&region, &account, &id)
        ))),
    }
}

fn alias_target(st: &State, account: &str, region: &str, name: &str) -> Result<String, ApiError> {
    st.aliases
        .get(&(account.to_string(), region.to_string(), name.to_string()))
        .map(|a| a.key_id.clone())
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "Alias {} is not found.",
                alias_arn(region, account, name)
            ))
        })
}

/// Data-plane calls need an enabled key.
pub(crate) fn require_usable(key: &KeyRecord) -> Result<(), ApiError> {
    match key.meta.state {
        KeyState::Enabled => Ok(()),
        KeyState::Disabled => Err(ApiError::new(
            Code::DisabledException,
            format!("{} is disabled.", key.meta.arn),
        )),
        KeyState::PendingDeletion => Err(pending_deletion(key)),
    }
}

pub(crate) fn pending_deletion(key: &KeyRecord) -> ApiError {
    ApiError::invalid_state(format!("{} is pending deletion.", key.meta.arn))
}

/// Management calls that AWS refuses on a key pending deletion.
pub(crate) fn require_not_pending(key: &KeyRecord) -> Result<(), ApiError> {
    if key.meta.state == KeyState::PendingDeletion {
        return Err(pending_deletion(key));
    }
    Ok(())
}

pub(crate) fn dry_run(req: &Req) -> Result<(), ApiError> {
    if req.bool_opt("DryRun")? == Some(true) {
        return Err(ApiError::new(
            Code::DryRunOperationException,
            "The request would have succeeded, but the DryRun option is set.",
        ));
    }
    Ok(())
}

/// One page of `items` (already sorted by their sort key) after `marker`.
pub(crate) fn page<T>(
    items: Vec<(String, T)>,
    limit: usize,
    marker: Option<&str>,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let start = match marker {
        None => None,
        Some(m) => Some(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(m)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    ApiError::new(
                        Code::InvalidMarkerException,
                        "The request was rejected because the marker is not valid.",
                    )
                })?,
        ),
    };
    let mut out = Vec::new();
    let mut next = None;
    for (sort_key, item) in items {
        if start.as_ref().is_some_and(|s| sort_key < *s) {
            continue;
        }
        if out.len() == limit {
            next =
                Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sort_key.as_bytes()));
            break;
        }
        out.push(item);
    }
    Ok((out, next))
}

/// Adds `Truncated` and `NextMarker` to a list answer.
pub(crate) fn paged(mut body: Value, next: Option<String>) -> Value {
    body["Truncated"] = Value::Bool(next.is_some());
    if let Some(n) = next {
        body["NextMarker"] = Value::String(n);
    }
    body
}
