//! Key rotation: automatic (period 90–2560 days) and on demand (at most 10 per key, as AWS).

use serde_json::{json, Value};

use super::{page, paged, require_usable, resolve, Cx, Req};
use crate::authz::authorize;
use crate::clock::{epoch_seconds, DAY_MS};
use crate::engine::{rotate, State};
use crate::error::{ApiError, Code};

pub(crate) const MAX_ON_DEMAND_ROTATIONS: u32 = 10;

fn key_for(cx: &mut Cx<'_>, st: &State, req: &Req, action: &str) -> Result<String, ApiError> {
    let key_id = req.key_id("KeyId")?;
    let id = resolve(cx, st, key_id, false)?;
    authorize(cx, st, action, &st.keys[&id], None, &[])?;
    Ok(id)
}

pub(crate) fn enable_key_rotation(
    cx: &mut Cx<'_>,
    st: &mut State,
    req: &Req,
) -> Result<Value, ApiError> {
    let period = req
        .int_range("RotationPeriodInDays", 90, 2560)?
        .unwrap_or(365);
    let id = key_for(cx, st, req, "EnableKeyRotation")?;
    let key = st.keys.get_mut(&id).expect("resolved");
    require_usable(key)?;
    key.meta.rotation_enabled = true;
    key.meta.rotation_period_days = period;
    key.meta.next_rotation_ms = Some(cx.now + period * DAY_MS);
    cx.save_key(key);
    Ok(json!({}))
}

pub(crate) fn disable_key_rotation(
    cx: &mut Cx<'_>,
    st: &mut State,
    req: &Req,
) -> Result<Value, ApiError> {
    let id = key_for(cx, st, req, "DisableKeyRotation")?;
    let key = st.keys.get_mut(&id).expect("resolved");
    require_usable(key)?;
    key.meta.rotation_enabled = false;
    key.meta.next_rotation_ms = None;
    cx.save_key(key);
    Ok(json!({}))
}

pub(crate) fn get_key_rotation_status(
    cx: &mut Cx<'_>,
    st: &State,
    req: &Req,
) -> Result<Value, ApiError> {
    let id = key_for(cx, st, req, "GetKeyRotationStatus")?;
    let m = &st.keys[&id].meta;
    let mut out = json!({ "KeyRotationEnabled": m.rotation_enabled, "KeyId": m.arn });
    if m.rotation_enabled {
        out["RotationPeriodInDays"] = json!(m.rotation_period_days);
        if let Some(next) = m.next_rotation_ms {
            out["NextRotationDate"] = epoch_seconds(next);
        }
    }
    if let Some(start) = m.on_demand_start_ms {
        out["OnDemandRotationStartDate"] = epoch_seconds(start);
    }
    Ok(out)
}

pub(crate) fn rotate_key_on_demand(
    cx: &mut Cx<'_>,
    st: &mut State,
    req: &Req,
) -> Result<Value, ApiError> {
    let id = key_for(cx, st, req, "RotateKeyOnDemand")?;
    let inner = cx.inner;
    let key = st.keys.get_mut(&id).expect("resolved");
    require_usable(key)?;
    if key.meta.on_demand_rotations >= MAX_ON_DEMAND_ROTATIONS {
        return Err(ApiError::new(
            Code::LimitExceededException,
            format!(
                "The on-demand rotation limit ({MAX_ON_DEMAND_ROTATIONS}) has been reached for {}.",
                key.meta.arn
            ),
        ));
    }
    let ops = rotate(inner, key, cx.now, "ON_DEMAND");
    key.meta.on_demand_rotations += 1;
    key.meta.on_demand_start_ms = Some(cx.now);
    cx.ops.extend(ops);
    cx.save_key(key);
    let response = json!({ "KeyId": key.meta.id });
    cx.response_elements = response.clone();
    Ok(response)
}

pub(crate) fn list_key_rotations(
    cx: &mut Cx<'_>,
    st: &State,
    req: &Req,
) -> Result<Value, ApiError> {
    let limit = req.int_range("Limit", 1, 1000)?.unwrap_or(100) as usize;
    let marker = req.str_len("Marker", 1, 1024)?;
    let id = key_for(cx, st, req, "ListKeyRotations")?;
    let m = &st.keys[&id].meta;
    let items = m
        .rotations
        .iter()
        .enumerate()
        .map(|(i, r)| {
            (
                format!("{i:010}"),
                json!({"KeyId": m.id, "RotationDate": epoch_seconds(r.date_ms), "RotationType": r.kind}),
            )
        })
        .collect();
    let (rotations, next) = page(items, limit, marker)?;
    Ok(paged(json!({ "Rotations": rotations }), next))
}
