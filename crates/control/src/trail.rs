//! What the key account's CloudTrail says of who used a cluster's key: the unexpected-principal
//! alarm's source.
//!
//! KMS logs a use of a key in the key's account (and in the caller's). The platform's own audit
//! holds only its own calls, so another principal's use of the customer's key is visible only in
//! the customer's trail, which the platform cannot read by itself — against AWS as against the
//! embedded KMS, whose `LookupEvents` shows only the caller's account. The customer who wants
//! this alarm lets the platform read it: a role in the key's account that the platform's
//! operator may assume (ExternalId: the organization id) and that allows
//! `cloudtrail:LookupEvents`, named in the alarm rule (`trail_reader_role_arn`). The platform
//! assumes it through STS and calls CloudTrail's `LookupEvents` (aws-sdk-cloudtrail), the same
//! calls against AWS and the embedded KMS. Without a reader the alarm is INSUFFICIENT_DATA and
//! says why and what to do.
//!
//! Here: the reader's state (a cursor per cluster), reading a page of events, and which
//! principals are expected. The operator's side, which assumes the reader role with the
//! operator's credentials and turns the uses into the alarm's input, is `operator/trail.rs`.
//!
//! Reading is incremental: each evaluation asks for the key's events since the last one read
//! (one page of 50 usually; at most [`MAX_PAGES`] pages a round) and keeps the data uses of the
//! window in memory, so a busy key is not read again and again. Not handled: events that
//! CloudTrail delivers after the platform read past their time (AWS's `LookupEvents` can lag by
//! minutes; the embedded trail is written before each answer), and `LookupEvents`' rate limit
//! of 2 requests per second per account, which a customer with many clusters shares.

use std::collections::{HashMap, HashSet};

use aws_sdk_cloudtrail::types::{LookupAttribute, LookupAttributeKey};
use aws_smithy_types::DateTime;
use parking_lot::Mutex;

/// Pages of 50 events one evaluation reads at most; the rest waits for the next round.
pub const MAX_PAGES: usize = 20;
/// Events kept per cluster at most (the data uses in the window).
const MAX_KEPT: usize = 10_000;

/// The KMS operations that use a key for data.
const DATA_OPERATIONS: [&str; 8] = [
    "Decrypt",
    "Encrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "ReEncrypt",
    "CreateGrant",
];

/// One data use of the key.
#[derive(Debug, Clone)]
pub(crate) struct Use {
    event_id: String,
    pub(crate) time_ms: i64,
    pub(crate) principal: String,
    pub(crate) operation: String,
}

/// One cluster's reading position.
pub(crate) struct Cursor {
    pub(crate) reader_role: String,
    pub(crate) key_arn: String,
    pub(crate) client: aws_sdk_cloudtrail::Client,
    /// Events up to this time were read.
    pub(crate) read_to_ms: i64,
    pub(crate) uses: Vec<Use>,
}

/// The trail reader's state, one cursor per cluster.
#[derive(Default)]
pub(crate) struct TrailReader {
    pub(crate) cursors: Mutex<HashMap<String, Cursor>>,
}

impl TrailReader {
    pub(crate) fn forget(&self, cluster_id: &str) {
        self.cursors.lock().remove(cluster_id);
    }
}

/// Whether `principal` (an event's `userIdentity.arn`) is the cluster's role or one the rule
/// allows: an allowed role covers its sessions, as the key policy's role principal does.
pub(crate) fn expected(principal: &str, role_arn: &str, allowed: &[String]) -> bool {
    std::iter::once(role_arn)
        .chain(allowed.iter().map(String::as_str))
        .any(|arn| arn == principal || session_of(arn).is_some_and(|p| principal.starts_with(&p)))
}

/// `arn:aws:iam::A:role/path/name` -> `arn:aws:sts::A:assumed-role/name/`.
fn session_of(role_arn: &str) -> Option<String> {
    let parts: Vec<&str> = role_arn.splitn(6, ':').collect();
    match parts[..] {
        ["arn", partition, "iam", "", account, resource] if resource.starts_with("role/") => {
            let name = resource.rsplit('/').next()?;
            Some(format!(
                "arn:{partition}:sts::{account}:assumed-role/{name}/"
            ))
        }
        _ => None,
    }
}

/// Reads the key's events from the cursor's position to `now_ms` into its uses.
pub(crate) async fn read_new(cursor: &mut Cursor, since: i64, now_ms: i64) -> Result<(), String> {
    // One second back: events of the second the last read ended in may have come after it.
    let start = cursor.read_to_ms.max(since) - 1000;
    let known: HashSet<String> = cursor.uses.iter().map(|u| u.event_id.clone()).collect();
    let attribute = LookupAttribute::builder()
        .attribute_key(LookupAttributeKey::ResourceName)
        .attribute_value(&cursor.key_arn)
        .build()
        .map_err(|e| e.to_string())?;
    let mut token: Option<String> = None;
    let mut newest = cursor.read_to_ms;
    for _ in 0..MAX_PAGES {
        let page = cursor
            .client
            .lookup_events()
            .lookup_attributes(attribute.clone())
            .start_time(DateTime::from_millis(start))
            .end_time(DateTime::from_millis(now_ms))
            .max_results(50)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| aws_sdk_cloudtrail::error::DisplayErrorContext(e).to_string())?;
        for event in page.events() {
            let Some(raw) = event.cloud_trail_event() else {
                continue;
            };
            let Ok(record) = serde_json::from_str::<serde_json::Value>(raw) else {
                continue;
            };
            let operation = record["eventName"].as_str().unwrap_or_default();
            // A refused call did not use the key; the key's own account reports refusals of
            // the platform's role in the access-denied alarm.
            if !DATA_OPERATIONS.contains(&operation) || record.get("errorCode").is_some() {
                continue;
            }
            let id = event.event_id().unwrap_or_default();
            let time_ms = event
                .event_time()
                .map_or(now_ms, |t| t.to_millis().unwrap_or(now_ms));
            newest = newest.max(time_ms);
            if known.contains(id) || cursor.uses.len() >= MAX_KEPT {
                continue;
            }
            cursor.uses.push(Use {
                event_id: id.to_owned(),
                time_ms,
                principal: record["userIdentity"]["arn"]
                    .as_str()
                    .unwrap_or("(unknown)")
                    .to_owned(),
                operation: operation.to_owned(),
            });
        }
        match page.next_token() {
            Some(next) => token = Some(next.to_owned()),
            None => {
                newest = now_ms;
                break;
            }
        }
    }
    cursor.read_to_ms = newest;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_role_and_the_allowed_principals_and_their_sessions_are_expected() {
        let role = "arn:aws:iam::111122223333:role/keyward/keyward-cluster-c-1";
        let allowed = vec![
            "arn:aws:iam::444455556666:role/app".to_owned(),
            "arn:aws:iam::444455556666:user/ops".to_owned(),
        ];
        for principal in [
            "arn:aws:sts::111122223333:assumed-role/keyward-cluster-c-1/keyward",
            "arn:aws:sts::444455556666:assumed-role/app/s-1",
            "arn:aws:iam::444455556666:user/ops",
        ] {
            assert!(expected(principal, role, &allowed), "{principal}");
        }
        for principal in [
            "arn:aws:iam::444455556666:root",
            "arn:aws:iam::444455556666:user/opsx",
            "arn:aws:sts::444455556666:assumed-role/application/s-1",
            "arn:aws:sts::111122223333:assumed-role/keyward-cluster-c-2/keyward",
        ] {
            assert!(!expected(principal, role, &allowed), "{principal}");
        }
    }
}
