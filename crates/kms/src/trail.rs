//! The trail: a CloudTrail-format record for every request, allowed, denied or failed, and
//! CloudTrail's `LookupEvents` over it.
//!
//! Records follow CloudTrail's `eventVersion` 1.08 layout. `requestParameters` never holds plaintext
//! or ciphertext; `responseElements` is null for read-only calls (crypto, Describe, List, Get). A
//! call that reaches a key in another account is recorded in both accounts, denied or not (a
//! request refused before it finds the key, e.g. for an unknown key, only in the caller's).

use base64::Engine as _;
use rusqlite::params_from_iter;
use serde_json::{json, Map, Value};

use crate::clock::{epoch_seconds, iso8601};
use crate::error::{ApiError, Code, Error};
use crate::identity::{Caller, IdentityKind};
use crate::keys::KeyMeta;
use crate::ops::{member, read_only, Cx, Req};
use crate::store::{Store, TrailRow};

/// Members never copied into `requestParameters`.
const SECRET_MEMBERS: &[&str] = &["Plaintext", "CiphertextBlob"];

/// The request as CloudTrail shows it: lowerCamelCase members, secrets left out.
pub(crate) fn request_parameters(req: &Req) -> Value {
    let mut out = Map::new();
    for (k, v) in req.map() {
        if SECRET_MEMBERS.contains(&k.as_str()) {
            continue;
        }
        out.insert(member(k), v.clone());
    }
    if out.is_empty() {
        Value::Null
    } else {
        Value::Object(out)
    }
}

fn camel(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (member(k), camel(v))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(camel).collect()),
        other => other.clone(),
    }
}

fn user_identity(caller: &Caller) -> Value {
    let id = &caller.identity;
    let mut v = json!({
        "type": id.kind.as_str(),
        "principalId": id.principal_id,
        "arn": id.arn,
        "accountId": id.account_id,
        "accessKeyId": caller.access_key_id,
    });
    if let Some(name) = &id.user_name {
        v["userName"] = json!(name);
    }
    if id.kind == IdentityKind::AssumedRole {
        let issuer = id.session_issuer_arn.clone().unwrap_or_default();
        v["sessionContext"] = json!({
            "sessionIssuer": {
                "type": "Role",
                "principalId": id.principal_id.split(':').next().unwrap_or_default(),
                "arn": issuer,
                "accountId": id.account_id,
                "userName": issuer.rsplit('/').next().unwrap_or_default(),
            },
            "attributes": {"mfaAuthenticated": "false"}
        });
    }
    v
}

/// The records for one `call_kms` request: one in the caller's account, and one in each other
/// account whose key the request reached (also when it was denied there).
pub(crate) fn api_records(
    cx: &Cx<'_>,
    action: &str,
    params: Value,
    result: &Result<Value, ApiError>,
) -> Vec<TrailRow> {
    let caller = cx.caller;
    let read_only = read_only(action);
    let event_name: String = action.chars().take(128).collect();
    let resources: Vec<Value> = cx
        .resources
        .iter()
        .map(|(account, arn)| json!({"accountId": account, "type": "AWS::KMS::Key", "ARN": arn}))
        .collect();
    // Cross-account calls go to both accounts' trails, except those refused for want of
    // permission: AWS logs those only in the caller's account, so a key owner never sees who was
    // denied its key (the AWS KMS Developer Guide, "Logging AWS KMS API calls with CloudTrail").
    let mut accounts = vec![caller.identity.account_id.clone()];
    let denied = matches!(result, Err(e) if e.code == Code::AccessDeniedException);
    for (account, _) in &cx.resources {
        if !denied && !accounts.contains(account) {
            accounts.push(account.clone());
        }
    }
    let response_elements = match result {
        Ok(_) if !read_only => camel(&cx.response_elements),
        _ => Value::Null,
    };
    let resource_names = cx
        .resources
        .iter()
        .map(|(_, a)| a.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let username = caller.identity.trail_username();
    accounts
        .into_iter()
        .map(|account| {
            let event_id = uuid::Uuid::new_v4().to_string();
            let mut record = json!({
                "eventVersion": "1.08",
                "userIdentity": user_identity(caller),
                "eventTime": iso8601(cx.now),
                "eventSource": "kms.amazonaws.com",
                "eventName": event_name,
                "awsRegion": caller.region,
                "sourceIPAddress": caller.source_ip,
                "userAgent": caller.user_agent,
                "requestParameters": params,
                "responseElements": response_elements,
                "requestID": caller.request_id,
                "eventID": event_id,
                "readOnly": read_only,
                "resources": resources,
                "eventType": "AwsApiCall",
                "managementEvent": true,
                "recipientAccountId": account,
                "eventCategory": "Management",
            });
            if let Err(e) = result {
                record["errorCode"] = json!(e.code.as_str());
                record["errorMessage"] = json!(e.message);
            }
            TrailRow {
                time_ms: cx.now,
                account,
                region: caller.region.clone(),
                event_id,
                event_name: event_name.clone(),
                read_only,
                username: username.clone(),
                access_key_id: caller.access_key_id.clone(),
                resources: resource_names.clone(),
                record: record.to_string(),
            }
        })
        .collect()
}

/// The record of one IAM or STS call (`event_source` `iam.amazonaws.com` or `sts.amazonaws.com`)
/// in the caller's account and, when it reached a role of another account (`AssumeRole`), that
/// account's too. `params` are the request's members by CloudTrail's name (no secret among them); `response` holds what
/// CloudTrail shows of the answer (for `AssumeRole` the access key id, never the secret).
#[allow(clippy::too_many_arguments)] // the facts of one record
pub(crate) fn query_records(
    caller: &Caller,
    now: i64,
    event_source: &str,
    action: &str,
    params: &[(&str, &str)],
    response: Value,
    error: Option<&ApiError>,
    other_account: Option<&str>,
) -> Vec<TrailRow> {
    let read_only = action.starts_with("Get") || action.starts_with("List");
    let event_name: String = action.chars().take(128).collect();
    let request: serde_json::Map<String, Value> = params
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    let mut accounts = vec![caller.identity.account_id.clone()];
    if let Some(a) = other_account {
        if !accounts.iter().any(|x| x == a) {
            accounts.push(a.to_string());
        }
    }
    let username = caller.identity.trail_username();
    accounts
        .into_iter()
        .map(|account| {
            let event_id = uuid::Uuid::new_v4().to_string();
            let mut record = json!({
                "eventVersion": "1.08",
                "userIdentity": user_identity(caller),
                "eventTime": iso8601(now),
                "eventSource": event_source,
                "eventName": event_name,
                "awsRegion": caller.region,
                "sourceIPAddress": caller.source_ip,
                "userAgent": caller.user_agent,
                "requestParameters": if request.is_empty() { Value::Null } else { Value::Object(request.clone()) },
                "responseElements": if error.is_some() { Value::Null } else { response.clone() },
                "requestID": caller.request_id,
                "eventID": event_id,
                "readOnly": read_only,
                "eventType": "AwsApiCall",
                "managementEvent": true,
                "recipientAccountId": account,
                "eventCategory": "Management",
            });
            if let Some(e) = error {
                record["errorCode"] = json!(e.code.as_str());
                record["errorMessage"] = json!(e.message);
            }
            TrailRow {
                time_ms: now,
                account,
                region: caller.region.clone(),
                event_id,
                event_name: event_name.clone(),
                read_only,
                username: username.clone(),
                access_key_id: caller.access_key_id.clone(),
                resources: String::new(),
                record: record.to_string(),
            }
        })
        .collect()
}

/// An `AwsServiceEvent` record (automatic rotation, completed deletion) in the key's account.
pub(crate) fn service_record(event_name: &str, key: &KeyMeta, now: i64) -> TrailRow {
    let event_id = uuid::Uuid::new_v4().to_string();
    let record = json!({
        "eventVersion": "1.08",
        "userIdentity": {"accountId": key.account, "invokedBy": "kms.amazonaws.com"},
        "eventTime": iso8601(now),
        "eventSource": "kms.amazonaws.com",
        "eventName": event_name,
        "awsRegion": key.region,
        "sourceIPAddress": "kms.amazonaws.com",
        "userAgent": "kms.amazonaws.com",
        "requestParameters": null,
        "responseElements": null,
        "additionalEventData": {"keyId": key.id},
        "requestID": uuid::Uuid::new_v4().to_string(),
        "eventID": event_id,
        "readOnly": false,
        "resources": [{"accountId": key.account, "type": "AWS::KMS::Key", "ARN": key.arn}],
        "eventType": "AwsServiceEvent",
        "managementEvent": true,
        "recipientAccountId": key.account,
        "eventCategory": "Management",
    });
    TrailRow {
        time_ms: now,
        account: key.account.clone(),
        region: key.region.clone(),
        event_id,
        event_name: event_name.to_string(),
        read_only: false,
        username: String::new(),
        access_key_id: String::new(),
        resources: key.arn.clone(),
        record: record.to_string(),
    }
}

fn ct_error(code: Code, message: impl Into<String>) -> ApiError {
    ApiError::new(code, message)
}

/// A time given as epoch seconds (number) or, as some clients send, an ISO-8601 string.
fn time_ms(req: &Req, name: &str) -> Result<Option<i64>, ApiError> {
    match req.map().get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .map(|f| Some((f * 1000.0) as i64))
            .ok_or_else(|| ApiError::serialization(format!("Invalid value for {name}"))),
        Some(Value::String(s)) => {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map(|t| Some((t.unix_timestamp_nanos() / 1_000_000) as i64))
                .map_err(|_| ApiError::serialization(format!("Invalid timestamp for {name}")))
        }
        Some(_) => Err(ApiError::serialization(format!("Invalid value for {name}"))),
    }
}

/// CloudTrail `LookupEvents`: newest first, at most one lookup attribute, paged by `NextToken`.
pub(crate) fn lookup_events(store: &Store, caller: &Caller, req: &Req) -> Result<Value, ApiError> {
    let start = time_ms(req, "StartTime")?.unwrap_or(i64::MIN);
    let end = time_ms(req, "EndTime")?.unwrap_or(i64::MAX);
    if start > end {
        return Err(ct_error(
            Code::InvalidTimeRangeException,
            "Start time must be before end time.",
        ));
    }
    let max = req.int_opt("MaxResults")?.unwrap_or(50);
    if !(1..=50).contains(&max) {
        return Err(ct_error(
            Code::InvalidMaxResultsException,
            "MaxResults must be between 1 and 50.",
        ));
    }
    let mut sql = String::from(
        "SELECT seq, time_ms, event_id, event_name, read_only, username, access_key_id, resources, record \
         FROM trail WHERE account = ?1 AND region = ?2 AND time_ms >= ?3 AND time_ms <= ?4",
    );
    let mut args: Vec<rusqlite::types::Value> = vec![
        caller.identity.account_id.clone().into(),
        caller.region.clone().into(),
        start.into(),
        end.into(),
    ];
    let attributes = req.list("LookupAttributes")?.cloned().unwrap_or_default();
    if attributes.len() > 1 {
        return Err(ct_error(
            Code::InvalidLookupAttributesException,
            "You cannot specify more than one lookup attribute.",
        ));
    }
    if let Some(attr) = attributes.first() {
        let key = attr
            .get("AttributeKey")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let value = attr.get("AttributeValue").and_then(Value::as_str);
        let Some(value) = value.filter(|v| !v.is_empty() && v.len() <= 2000) else {
            return Err(ct_error(
                Code::InvalidLookupAttributesException,
                "AttributeValue must be 1 to 2000 characters.",
            ));
        };
        let n = args.len() + 1;
        match key {
            "EventId" => sql.push_str(&format!(" AND event_id = ?{n}")),
            "EventName" => sql.push_str(&format!(" AND event_name = ?{n}")),
            "ReadOnly" => {
                let ro = match value {
                    "true" => 1,
                    "false" => 0,
                    _ => {
                        return Err(ct_error(
                            Code::InvalidLookupAttributesException,
                            "ReadOnly must be true or false.",
                        ))
                    }
                };
                sql.push_str(&format!(" AND read_only = {ro} AND ?{n} = ?{n}"));
            }
            "Username" => sql.push_str(&format!(" AND username = ?{n}")),
            "ResourceType" => {
                sql.push_str(&format!(" AND resources <> '' AND ?{n} = 'AWS::KMS::Key'"));
            }
            "ResourceName" => sql.push_str(&format!(
                " AND (resources = ?{n} OR instr('\n' || resources || '\n', '\n' || ?{n} || '\n') > 0)"
            )),
            "EventSource" => sql.push_str(&format!(" AND ?{n} = 'kms.amazonaws.com'")),
            "AccessKeyId" => sql.push_str(&format!(" AND access_key_id = ?{n}")),
            other => {
                return Err(ct_error(
                    Code::InvalidLookupAttributesException,
                    format!("Unsupported lookup attribute key: {other}"),
                ))
            }
        }
        args.push(value.to_string().into());
    }
    if let Some(token) = req.str_opt("NextToken")? {
        let seq = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.strip_prefix("seq:").and_then(|n| n.parse::<i64>().ok()))
            .ok_or_else(|| ct_error(Code::InvalidNextTokenException, "Invalid NextToken."))?;
        sql.push_str(&format!(" AND seq <= ?{}", args.len() + 1));
        args.push(seq.into());
    }
    sql.push_str(&format!(" ORDER BY seq DESC LIMIT {}", max + 1));
    type Row = (
        i64,
        i64,
        String,
        String,
        bool,
        String,
        String,
        String,
        String,
    );
    let rows: Vec<Row> = store
        .read(|c| {
            let mut stmt = c.prepare(&sql)?;
            let rows = stmt
                .query_map(params_from_iter(args.iter()), |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                        r.get(8)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .map_err(|e| {
            tracing::error!(error = %e, "LookupEvents query failed");
            ApiError::new(
                Code::InternalFailure,
                "We encountered an internal error. Please try again.",
            )
        })?;
    let mut events = Vec::new();
    let mut next = None;
    for (i, (seq, time_ms, event_id, event_name, ro, username, access_key_id, resources, record)) in
        rows.into_iter().enumerate()
    {
        if i as i64 == max {
            next =
                Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("seq:{seq}")));
            break;
        }
        let mut event = json!({
            "EventId": event_id,
            "EventName": event_name,
            "ReadOnly": if ro { "true" } else { "false" },
            "EventTime": epoch_seconds(time_ms),
            "EventSource": "kms.amazonaws.com",
            "Resources": resources
                .split('\n')
                .filter(|r| !r.is_empty())
                .map(|r| json!({"ResourceType": "AWS::KMS::Key", "ResourceName": r}))
                .collect::<Vec<_>>(),
            "CloudTrailEvent": record,
        });
        if !access_key_id.is_empty() {
            event["AccessKeyId"] = json!(access_key_id);
        }
        if !username.is_empty() {
            event["Username"] = json!(username);
        }
        events.push(event);
    }
    let mut out = json!({ "Events": events });
    if let Some(n) = next {
        out["NextToken"] = json!(n);
    }
    Ok(out)
}

/// Writes every record as one JSON line, oldest first.
pub(crate) fn export(store: &Store, out: &mut dyn std::io::Write) -> Result<(), Error> {
    let mut last = 0i64;
    loop {
        // In chunks, so a long trail is not held in memory at once.
        let rows: Vec<(i64, String)> = store.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, record FROM trail WHERE seq > ?1 ORDER BY seq LIMIT 1000",
            )?;
            let rows = stmt
                .query_map([last], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })?;
        if rows.is_empty() {
            return Ok(());
        }
        for (seq, record) in rows {
            last = seq;
            out.write_all(record.as_bytes())
                .and_then(|_| out.write_all(b"\n"))
                .map_err(|source| Error::Io {
                    path: "trail export".into(),
                    source,
                })?;
        }
    }
}
