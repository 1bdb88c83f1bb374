//! Notifications of alarm transitions: signed webhooks to an organization's destinations.
//!
//! - **Destinations** belong to an organization, optionally to one of its clusters; at most
//!   [`NotifyConfig::max_destinations_per_org`]. Each has a URL (checked, see [`target`]), a
//!   format (`keyward` JSON or a Slack incoming-webhook message) and a random signing secret
//!   shown once at creation and stored only wrapped under the platform's notification key
//!   ([`secrets`]).
//! - **What is sent**: a transition into or out of `ALARM` (the first evaluation of a new cluster,
//!   `INSUFFICIENT_DATA` → `OK`, is not news), a test on request
//!   ([`crate::ControlPlane::send_test_notification`]), and the summary of suppressed ones.
//! - **Signing** ([`signature`]): `Keyward-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>` over
//!   `"<t>.<body>"`, a `Keyward-Delivery-Id` the same on every retry; [`verify`] is the
//!   receiver's side (constant-time, 5-minute tolerance, replayed ids refused).
//! - **Delivery** (`operator/notify_worker.rs`): every notification is first a row of the durable queue
//!   (`notification_deliveries`, SQLite or PostgreSQL), so a restart loses none. A worker claims
//!   due rows with a lease (several replicas share the queue), posts at most
//!   [`NotifyConfig::concurrency`] at once and at most
//!   [`NotifyConfig::per_destination_concurrency`] per destination, so a slow or unreachable
//!   destination holds a bounded share and delays no other one; each attempt is bounded by
//!   [`NotifyConfig::attempt_timeout`]. A failed attempt (no answer, or not 2xx) is retried after
//!   a delay drawn uniformly from `[0, min(max_retry, first_retry × 2^(n-1))]` (exponential
//!   backoff with full jitter), up to [`NotifyConfig::max_attempts`]. Every attempt is logged
//!   (`notification_attempts`): the delivery log, by cluster, alarm and destination.
//! - **Rate limit** per destination: a token bucket of [`NotifyConfig::rate_burst`] tokens,
//!   one more every [`NotifyConfig::rate_refill`] (defaults: 10, then one every 6 s — 10 a
//!   minute). A notification that finds the bucket empty is recorded `suppressed`; once a token
//!   is back, one summary ("N notifications suppressed") goes out in their place.
//!
//! Nothing here runs on the evaluation's path but the queue's inserts: alarms and probes never
//! wait for a webhook.
//!
//! Here: the types, signing, payloads, URL checks and the [`Notifier`]'s state (the queue's
//! inserts, rate limits, cached secrets). What needs the shared state lives above it: the
//! delivery worker (`operator/notify_worker.rs`), the secret store's KMS calls
//! (`notify_secrets.rs`) and the API's side (`notifications.rs`: destinations, tests, the log).
//!
//! Not here: email or other channels; per-rule routing (every destination of a cluster gets all
//! its alarms).

pub(crate) mod payload;
pub mod secrets;
pub mod signature;
pub mod target;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::alarms::{AlarmState, AlarmTransition};
use crate::cluster::Cluster;
use crate::db::{Db, Row, Value};
use crate::error::{Error, Result};
use crate::org::random_id;

pub use crate::config::NotifyConfig;

pub use signature::{
    sign, verify, VerifyError, WebhookSecret, DELIVERY_ID_HEADER, SECRET_PREFIX, SIGNATURE_HEADER,
    TOLERANCE, TOLERANCE_SECONDS,
};

/// The longest description of a destination.
pub const MAX_DESCRIPTION_LEN: usize = 256;
/// The most deliveries one query of the delivery log answers.
pub const MAX_DELIVERY_PAGE: usize = 500;
/// How long finished deliveries stay in the log.
pub const DELIVERY_RETENTION: Duration = Duration::from_secs(30 * 86_400);

/// What a destination's body looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DestinationFormat {
    /// The event as JSON: cluster, alarm, from, to, reason, at, delivery id.
    #[default]
    Keyward,
    /// A Slack incoming-webhook message: `text` and `blocks`.
    Slack,
}

impl DestinationFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            DestinationFormat::Keyward => "keyward",
            DestinationFormat::Slack => "slack",
        }
    }

    pub(crate) fn parse(value: &str) -> Result<DestinationFormat> {
        match value {
            "keyward" => Ok(DestinationFormat::Keyward),
            "slack" => Ok(DestinationFormat::Slack),
            other => Err(Error::Internal(format!(
                "notification_destinations holds an unknown format {other:?}"
            ))),
        }
    }
}

/// A destination as asked for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewDestination {
    pub url: String,
    #[serde(default)]
    pub format: DestinationFormat,
    /// Only this cluster's alarms; none: every cluster of the organization.
    #[serde(default)]
    pub cluster_id: Option<String>,
    #[serde(default)]
    pub description: String,
}

/// A stored destination (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Destination {
    /// `nd-` and 16 lowercase hex digits.
    pub id: String,
    pub cluster_id: Option<String>,
    pub url: String,
    pub format: DestinationFormat,
    pub description: String,
    pub created_at_ms: i64,
}

/// A destination just made, and its secret: shown once, here.
pub struct CreatedDestination {
    pub destination: Destination,
    pub secret: WebhookSecret,
}

/// One attempt of a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryAttempt {
    pub attempt: i64,
    pub at_ms: i64,
    pub duration_ms: i64,
    /// The HTTP status answered; none when nothing was (unreachable, timed out).
    pub status: Option<i64>,
    pub error: Option<String>,
    /// The backoff's ceiling after this attempt and the delay drawn under it; none after the
    /// last attempt.
    pub backoff_ceiling_ms: Option<i64>,
    pub retry_in_ms: Option<i64>,
}

/// One notification to one destination, and how its delivery went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delivery {
    /// `d-` and 16 lowercase hex digits; the `Keyward-Delivery-Id` header.
    pub id: String,
    pub destination_id: String,
    pub cluster_id: String,
    /// `alarm`, `test` or `suppressed-summary`.
    pub kind: String,
    pub alarm: Option<String>,
    /// `pending`, `delivered`, `failed` (every attempt failed) or `suppressed` (rate limit).
    pub state: String,
    pub event: serde_json::Value,
    pub next_attempt_ms: Option<i64>,
    pub last_error: Option<String>,
    pub created_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    pub attempts: Vec<DeliveryAttempt>,
}

/// Which deliveries of the log.
#[derive(Debug, Clone, Default)]
pub struct DeliveryQuery {
    /// Only this alarm's (`key-disabled`, ...).
    pub alarm: Option<String>,
    /// Only this destination's.
    pub destination_id: Option<String>,
    /// At most this many, newest first (1 to [`MAX_DELIVERY_PAGE`]; default 100).
    pub limit: Option<usize>,
}

/// A destination's token bucket.
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The notifications' state: the queue in the database, the rate limits and unwrapped secrets in
/// memory.
pub(crate) struct Notifier {
    pub(crate) db: Db,
    pub(crate) config: NotifyConfig,
    pub(crate) key: secrets::NotificationKey,
    buckets: Mutex<HashMap<String, Bucket>>,
    /// Unwrapped secrets, so an attempt costs no KMS call; bounded, dropped with their
    /// destination.
    pub(crate) secrets: Mutex<HashMap<String, Arc<WebhookSecret>>>,
    /// Wakes the worker (something was queued).
    pub(crate) wake: Arc<tokio::sync::Notify>,
    pub(crate) client: reqwest::Client,
}

/// Secrets kept unwrapped at most.
pub(crate) const MAX_CACHED_SECRETS: usize = 1024;

pub(crate) const DESTINATION_COLUMNS: &str = "id, org_id, cluster_id, url, format, description, \
                                   wrapped_secret, created_at_ms";
pub(crate) const DELIVERY_COLUMNS: &str =
    "id, destination_id, cluster_id, kind, alarm, state, event, \
                                next_attempt_ms, last_error, created_at_ms, finished_at_ms";

pub(crate) fn destination_of(row: &Row) -> Result<Destination> {
    Ok(Destination {
        id: row.text("id")?,
        cluster_id: row.opt_text("cluster_id")?,
        url: row.text("url")?,
        format: DestinationFormat::parse(&row.text("format")?)?,
        description: row.text("description")?,
        created_at_ms: row.int("created_at_ms")?,
    })
}

pub(crate) fn delivery_of(row: &Row) -> Result<Delivery> {
    let state = row.text("state")?;
    Ok(Delivery {
        id: row.text("id")?,
        destination_id: row.text("destination_id")?,
        cluster_id: row.text("cluster_id")?,
        kind: row.text("kind")?,
        alarm: row.opt_text("alarm")?,
        event: serde_json::from_str(&row.text("event")?).map_err(Error::internal)?,
        next_attempt_ms: (state == "pending")
            .then(|| row.int("next_attempt_ms"))
            .transpose()?,
        state,
        last_error: row.opt_text("last_error")?,
        created_at_ms: row.int("created_at_ms")?,
        finished_at_ms: row.opt_int("finished_at_ms")?,
        attempts: Vec::new(),
    })
}

/// A transition worth telling: into or out of `ALARM`.
fn notifies(t: &AlarmTransition) -> bool {
    t.from != t.to && (t.to == AlarmState::Alarm || t.from == AlarmState::Alarm)
}

impl Notifier {
    pub(crate) fn new(db: Db, config: NotifyConfig) -> Result<Notifier> {
        config.check()?;
        Ok(Notifier {
            client: target::client(config.allow_private_destinations, config.attempt_timeout)?,
            db,
            config,
            key: secrets::NotificationKey::default(),
            buckets: Mutex::new(HashMap::new()),
            secrets: Mutex::new(HashMap::new()),
            wake: Arc::default(),
        })
    }

    /// Takes one token of the destination's bucket, if it has one.
    pub(crate) fn take_token(&self, destination_id: &str) -> bool {
        let burst = f64::from(self.config.rate_burst);
        let per_second = 1.0 / self.config.rate_refill.as_secs_f64();
        let now = Instant::now();
        let mut buckets = self.buckets.lock();
        let bucket = buckets.entry(destination_id.to_owned()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        bucket.tokens =
            (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * per_second).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// The destinations that get `cluster_id`'s notifications.
    pub(crate) async fn destinations_of_cluster(
        &self,
        org: &str,
        cluster_id: &str,
    ) -> Result<Vec<Row>> {
        Ok(self
            .db
            .query(
                &format!(
                    "SELECT {DESTINATION_COLUMNS} FROM notification_destinations WHERE org_id = $1 \
                     AND (cluster_id IS NULL OR cluster_id = $2) ORDER BY created_at_ms, id"
                ),
                &[org.into(), cluster_id.into()],
            )
            .await?)
    }

    /// Queues the notifications of `transitions` of `cluster` (organization `org`) for every
    /// destination of the cluster: each `pending`, or `suppressed` when the destination's bucket
    /// is empty or a summary of suppressed ones is still owed (so the summary comes first).
    pub(crate) async fn enqueue_transitions(
        &self,
        org: &str,
        cluster: &Cluster,
        transitions: &[AlarmTransition],
    ) -> Result<(usize, usize)> {
        let told: Vec<&AlarmTransition> = transitions.iter().filter(|t| notifies(t)).collect();
        if told.is_empty() {
            return Ok((0, 0));
        }
        let destinations = self.destinations_of_cluster(org, &cluster.id).await?;
        if destinations.is_empty() {
            return Ok((0, 0));
        }
        let owed = self.destinations_owed_summary().await?;
        let now = keyward_storage::vocab::now_ms();
        let mut statements = Vec::new();
        let mut suppressed = 0;
        for destination in &destinations {
            let destination_id = destination.text("id")?;
            for t in &told {
                let event = serde_json::json!({
                    "type": "alarm.transition",
                    "cluster": { "id": cluster.id, "name": cluster.name },
                    "key_arn": cluster.key_arn,
                    "alarm": t.kind.as_str(),
                    "from": t.from.as_str(),
                    "to": t.to.as_str(),
                    "reason": t.reason,
                    "at_ms": t.at_ms,
                });
                let send = !owed.contains(&destination_id) && self.take_token(&destination_id);
                suppressed += usize::from(!send);
                statements.push(insert_delivery(
                    &random_id("d-")?,
                    &destination_id,
                    org,
                    &cluster.id,
                    "alarm",
                    Some(t.kind.as_str()),
                    &event,
                    if send { "pending" } else { "suppressed" },
                    now,
                ));
            }
        }
        let queued = statements.len() - suppressed;
        self.db.transaction(statements).await?;
        self.wake.notify_one();
        Ok((queued, suppressed))
    }

    /// Destinations with suppressed notifications not yet summarized.
    async fn destinations_owed_summary(&self) -> Result<Vec<String>> {
        let rows = self
            .db
            .query(
                "SELECT DISTINCT destination_id FROM notification_deliveries \
                 WHERE state = 'suppressed' AND summary_id IS NULL",
                &[],
            )
            .await?;
        rows.iter().map(|r| Ok(r.text("destination_id")?)).collect()
    }

    /// For each destination owed a summary whose bucket has a token again: one summary delivery
    /// in place of its suppressed ones.
    pub(crate) async fn queue_summaries(&self) -> Result<()> {
        for destination_id in self.destinations_owed_summary().await? {
            let Some(destination) = self
                .db
                .query_opt(
                    "SELECT org_id, cluster_id FROM notification_destinations WHERE id = $1",
                    &[destination_id.as_str().into()],
                )
                .await?
            else {
                continue;
            };
            if !self.take_token(&destination_id) {
                continue;
            }
            let summary = random_id("d-")?;
            let now = keyward_storage::vocab::now_ms();
            let suppressed = self
                .db
                .execute(
                    "UPDATE notification_deliveries SET summary_id = $1 \
                     WHERE destination_id = $2 AND state = 'suppressed' AND summary_id IS NULL",
                    &[summary.as_str().into(), destination_id.as_str().into()],
                )
                .await?;
            let event = serde_json::json!({
                "type": "notifications.suppressed",
                "destination_id": destination_id,
                "suppressed": suppressed,
                "at_ms": now,
            });
            let cluster = destination.opt_text("cluster_id")?.unwrap_or_default();
            let (sql, params) = insert_delivery(
                &summary,
                &destination_id,
                &destination.text("org_id")?,
                &cluster,
                "suppressed-summary",
                None,
                &event,
                "pending",
                now,
            );
            self.db.execute(&sql, &params).await?;
            tracing::info!(destination = %destination_id, suppressed, "rate limit freed: summary queued");
        }
        Ok(())
    }

    pub(crate) fn forget(&self, destination_id: &str) {
        self.buckets.lock().remove(destination_id);
        self.secrets.lock().remove(destination_id);
    }
}

/// The insert of one delivery.
#[allow(clippy::too_many_arguments)] // one row's columns, each named at the call
pub(crate) fn insert_delivery(
    id: &str,
    destination_id: &str,
    org: &str,
    cluster_id: &str,
    kind: &str,
    alarm: Option<&str>,
    event: &serde_json::Value,
    state: &str,
    now: i64,
) -> (String, Vec<Value>) {
    (
        "INSERT INTO notification_deliveries (id, destination_id, org_id, cluster_id, kind, \
         alarm, event, state, attempts, next_attempt_ms, leased_until_ms, created_at_ms, \
         finished_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, 0, $9, $10)"
            .to_owned(),
        vec![
            id.into(),
            destination_id.into(),
            org.into(),
            cluster_id.into(),
            kind.into(),
            alarm.into(),
            event.to_string().into(),
            state.into(),
            now.into(),
            (state == "suppressed").then_some(now).into(),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alarms::AlarmKind;

    #[test]
    fn only_transitions_into_or_out_of_alarm_notify() {
        let t = |from, to| AlarmTransition {
            kind: AlarmKind::KeyDisabled,
            from,
            to,
            reason: String::new(),
            at_ms: 0,
        };
        use AlarmState::*;
        assert!(notifies(&t(Ok, Alarm)));
        assert!(notifies(&t(Alarm, Ok)));
        assert!(notifies(&t(InsufficientData, Alarm)));
        assert!(notifies(&t(Alarm, InsufficientData)));
        assert!(!notifies(&t(InsufficientData, Ok)));
        assert!(!notifies(&t(Ok, InsufficientData)));
    }
}
