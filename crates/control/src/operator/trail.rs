//! The unexpected-principal alarm's input, read from the key account's CloudTrail as the
//! operator: assumes the rule's reader role with the operator's credentials and reads through
//! the cluster's cursor (`trail.rs`: the cursors, reading, which principals are expected).

use std::time::Duration;

use crate::alarm_rules::EffectiveRules;
use crate::alarms::PrincipalsSeen;
use crate::cluster::Cluster;
use crate::shared::Shared;
use crate::trail::{expected, read_new, Cursor};

/// The unexpected data uses of the cluster's key in the rule's window, read from the key
/// account's trail through the rule's reader role.
pub(crate) async fn principals_seen(
    shared: &Shared,
    org_id: &str,
    cluster: &Cluster,
    rules: &EffectiveRules,
    now_ms: i64,
) -> PrincipalsSeen {
    let Some(key_arn) = cluster.key_arn.as_deref() else {
        return PrincipalsSeen::Unreadable("the cluster has no key".into());
    };
    let key_account = key_arn.split(':').nth(4).unwrap_or_default();
    let Some(reader) = rules.trail_reader_role_arn.as_deref() else {
        shared.trail.forget(&cluster.id);
        let operator = shared
            .operator_arn()
            .await
            .unwrap_or_else(|_| "the platform's operator".into());
        return PrincipalsSeen::Unreadable(format!(
            "the platform cannot read the CloudTrail of account {key_account}, where KMS logs \
             other principals' use of key {key_arn}; to watch for them, create a role in that \
             account that {operator} may assume with ExternalId {org_id} and that allows \
             cloudtrail:LookupEvents, and set it as the alarm rule's trail_reader_role_arn"
        ));
    };
    if reader.split(':').nth(4) != Some(key_account) {
        return PrincipalsSeen::Unreadable(format!(
            "the trail reader role {reader} is not in the key's account {key_account}, whose \
             trail logs the key's use"
        ));
    }
    let window_ms = i64::try_from(rules.principal_window_seconds * 1000).unwrap_or(i64::MAX);
    let since = now_ms - window_ms;
    let mut cursor = {
        let taken = shared.trail.cursors.lock().remove(&cluster.id);
        match taken {
            Some(c) if c.reader_role == reader && c.key_arn == key_arn => c,
            _ => Cursor {
                reader_role: reader.to_owned(),
                key_arn: key_arn.to_owned(),
                client: reader_client(shared, reader, org_id, &cluster.region).await,
                read_to_ms: since,
                uses: Vec::new(),
            },
        }
    };
    let read = read_new(&mut cursor, since, now_ms).await;
    cursor.uses.retain(|u| u.time_ms >= since);
    let mut unexpected: Vec<(String, String, u64)> = Vec::new();
    for u in &cursor.uses {
        if expected(&u.principal, &cluster.role_arn, &rules.allowed_principals) {
            continue;
        }
        match unexpected
            .iter_mut()
            .find(|(p, o, _)| *p == u.principal && *o == u.operation)
        {
            Some(entry) => entry.2 += 1,
            None => unexpected.push((u.principal.clone(), u.operation.clone(), 1)),
        }
    }
    shared
        .trail
        .cursors
        .lock()
        .insert(cluster.id.clone(), cursor);
    match read {
        Ok(()) => PrincipalsSeen::Read {
            unexpected,
            window_seconds: rules.principal_window_seconds,
        },
        Err(why) => PrincipalsSeen::Unreadable(format!(
            "the trail of account {key_account} could not be read as {reader}: {why}"
        )),
    }
}

/// A CloudTrail client as the reader role, in the cluster's region.
async fn reader_client(
    shared: &Shared,
    reader: &str,
    org_id: &str,
    region: &str,
) -> aws_sdk_cloudtrail::Client {
    let region = aws_config::Region::new(region.to_owned());
    let provider = aws_config::sts::AssumeRoleProvider::builder(reader)
        .external_id(org_id)
        .session_name("keyward-trail-reader")
        .session_length(Duration::from_secs(3600))
        .region(region.clone())
        .configure(&shared.base)
        .build()
        .await;
    aws_sdk_cloudtrail::Client::from_conf(
        aws_sdk_cloudtrail::config::Builder::from(&shared.base)
            .region(region)
            .credentials_provider(provider)
            .build(),
    )
}
