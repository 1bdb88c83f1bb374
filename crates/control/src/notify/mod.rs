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
//! - **Delivery** (`worker.rs`): every notification is first a row of the durable queue
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
//! Not here: email or other channels; per-rule routing (every destination of a cluster gets all
//! its alarms).

mod payload;
pub mod secrets;
pub mod signature;
pub mod target;
pub(crate) mod worker;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::alarms::{AlarmState, AlarmTransition};
use crate::cluster::Cluster;
use crate::db::{Db, Row, Value};
use crate::error::{Error, Result};
use crate::org::{id_shape_ok, random_id, OrgId};
use crate::shared::Shared;
use crate::ControlPlane;

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

    fn parse(value: &str) -> Result<DestinationFormat> {
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
    db: Db,
    pub(crate) config: NotifyConfig,
    key: secrets::NotificationKey,
    buckets: Mutex<HashMap<String, Bucket>>,
    /// Unwrapped secrets, so an attempt costs no KMS call; bounded, dropped with their
    /// destination.
    secrets: Mutex<HashMap<String, Arc<WebhookSecret>>>,
    /// Wakes the worker (something was queued).
    wake: Arc<tokio::sync::Notify>,
    client: reqwest::Client,
}

/// Secrets kept unwrapped at most.
const MAX_CACHED_SECRETS: usize = 1024;

const DESTINATION_COLUMNS: &str = "id, org_id, cluster_id, url, format, description, \
                                   wrapped_secret, created_at_ms";
const DELIVERY_COLUMNS: &str = "id, destination_id, cluster_id, kind, alarm, state, event, \
                                next_attempt_ms, last_error, created_at_ms, finished_at_ms";

fn destination_of(row: &Row) -> Result<Destination> {
    Ok(Destination {
        id: row.text("id")?,
        cluster_id: row.opt_text("cluster_id")?,
        url: row.text("url")?,
        format: DestinationFormat::parse(&row.text("format")?)?,
        description: row.text("description")?,
        created_at_ms: row.int("created_at_ms")?,
    })
}

fn delivery_of(row: &Row) -> Result<Delivery> {
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
    fn take_token(&self, destination_id: &str) -> bool {
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
    async fn destinations_of_cluster(&self, org: &str, cluster_id: &str) -> Result<Vec<Row>> {
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

    /// The destination's secret, unwrapped once and kept.
    async fn secret(
        &self,
        shared: &Shared,
        org_id: &str,
        destination_id: &str,
        wrapped: &str,
    ) -> Result<Arc<WebhookSecret>> {
        if let Some(secret) = self.secrets.lock().get(destination_id) {
            return Ok(secret.clone());
        }
        let secret = Arc::new(
            self.key
                .unwrap(shared, org_id, destination_id, wrapped)
                .await?,
        );
        let mut cache = self.secrets.lock();
        if cache.len() >= MAX_CACHED_SECRETS {
            cache.clear();
        }
        cache.insert(destination_id.to_owned(), secret.clone());
        Ok(secret)
    }

    fn forget(&self, destination_id: &str) {
        self.buckets.lock().remove(destination_id);
        self.secrets.lock().remove(destination_id);
    }
}

/// The insert of one delivery.
#[allow(clippy::too_many_arguments)] // one row's columns, each named at the call
fn insert_delivery(
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

fn check_description(description: &str) -> Result<()> {
    if description.chars().count() > MAX_DESCRIPTION_LEN
        || description.chars().any(char::is_control)
    {
        return Err(Error::InvalidRequest(format!(
            "description must be at most {MAX_DESCRIPTION_LEN} characters, without control \
             characters"
        )));
    }
    Ok(())
}

impl ControlPlane {
    fn notifier(&self) -> &Notifier {
        &self.shared().notifier
    }

    /// Creates a webhook destination of the organization (optionally only for one of its
    /// clusters). The answer holds its signing secret: shown only here. Bad input is
    /// `invalid_request` and stores nothing.
    pub async fn create_notification_destination(
        &self,
        org: &OrgId,
        new: NewDestination,
    ) -> Result<CreatedDestination> {
        let config = &self.notifier().config;
        let url = target::check_url(new.url.trim(), config.allow_private_destinations)?;
        check_description(&new.description)?;
        if let Some(cluster_id) = &new.cluster_id {
            self.cluster(org, cluster_id).await?;
        }
        let id = random_id("nd-")?;
        let secret = WebhookSecret::generate()?;
        let wrapped = self
            .notifier()
            .key
            .wrap(self.shared(), org, &id, &secret)
            .await?;
        let now = keyward_storage::vocab::now_ms();
        let max = i64::try_from(config.max_destinations_per_org).unwrap_or(i64::MAX);
        // One statement: the count and the insert cannot be split by another creation.
        let inserted = self
            .notifier()
            .db
            .execute(
                "INSERT INTO notification_destinations (id, org_id, cluster_id, url, format, \
                 description, wrapped_secret, created_at_ms) SELECT CAST($1 AS TEXT), \
                 CAST($2 AS TEXT), CAST($3 AS TEXT), CAST($4 AS TEXT), CAST($5 AS TEXT), \
                 CAST($6 AS TEXT), CAST($7 AS TEXT), CAST($8 AS BIGINT) WHERE (SELECT COUNT(*) \
                 FROM notification_destinations WHERE org_id = $2) < CAST($9 AS BIGINT)",
                &[
                    id.as_str().into(),
                    org.as_str().into(),
                    new.cluster_id.clone().into(),
                    url.as_str().into(),
                    new.format.as_str().into(),
                    new.description.as_str().into(),
                    wrapped.into(),
                    now.into(),
                    max.into(),
                ],
            )
            .await?;
        if inserted == 0 {
            return Err(Error::InvalidRequest(format!(
                "organization {org} has {max} notification destinations, the limit \
                 (max_destinations_per_org): delete one first"
            )));
        }
        Ok(CreatedDestination {
            destination: Destination {
                id,
                cluster_id: new.cluster_id,
                url: url.to_string(),
                format: new.format,
                description: new.description,
                created_at_ms: now,
            },
            secret,
        })
    }

    /// The organization's destinations, oldest first (never their secrets).
    pub async fn list_notification_destinations(&self, org: &OrgId) -> Result<Vec<Destination>> {
        let rows = self
            .notifier()
            .db
            .query(
                &format!(
                    "SELECT {DESTINATION_COLUMNS} FROM notification_destinations \
                     WHERE org_id = $1 ORDER BY created_at_ms, id"
                ),
                &[org.as_str().into()],
            )
            .await?;
        rows.iter().map(destination_of).collect()
    }

    /// Deletes a destination: nothing more is sent to it; its pending deliveries end `failed`.
    pub async fn delete_notification_destination(
        &self,
        org: &OrgId,
        destination_id: &str,
    ) -> Result<()> {
        self.destination(org, destination_id).await?;
        let now = keyward_storage::vocab::now_ms();
        self.notifier()
            .db
            .transaction(vec![
                (
                    "DELETE FROM notification_destinations WHERE id = $1 AND org_id = $2"
                        .to_owned(),
                    vec![destination_id.into(), org.as_str().into()],
                ),
                (
                    "UPDATE notification_deliveries SET state = 'failed', finished_at_ms = $2, \
                     last_error = 'the destination was deleted' \
                     WHERE destination_id = $1 AND state = 'pending'"
                        .to_owned(),
                    vec![destination_id.into(), now.into()],
                ),
            ])
            .await?;
        self.notifier().forget(destination_id);
        Ok(())
    }

    async fn destination(&self, org: &OrgId, destination_id: &str) -> Result<Destination> {
        let missing = || Error::not_found(format!("notification destination {destination_id}"));
        if !id_shape_ok("nd-", destination_id) {
            return Err(missing());
        }
        let row = self
            .notifier()
            .db
            .query_opt(
                &format!(
                    "SELECT {DESTINATION_COLUMNS} FROM notification_destinations \
                     WHERE id = $1 AND org_id = $2"
                ),
                &[destination_id.into(), org.as_str().into()],
            )
            .await?
            .ok_or_else(missing)?;
        destination_of(&row)
    }

    /// Queues a test notification of the cluster to each of its destinations; answers the
    /// deliveries queued. A destination whose rate limit is spent refuses it (`conflict`).
    pub async fn send_test_notification(
        &self,
        org: &OrgId,
        cluster_id: &str,
    ) -> Result<Vec<Delivery>> {
        let cluster = self.cluster(org, cluster_id).await?;
        let notifier = self.notifier();
        let destinations = notifier.destinations_of_cluster(org, cluster_id).await?;
        if destinations.is_empty() {
            return Err(Error::InvalidRequest(format!(
                "cluster {cluster_id} has no notification destination: create one \
                 (POST /v1/notification-destinations, or `keyward alarms destinations create`)"
            )));
        }
        let now = keyward_storage::vocab::now_ms();
        let mut statements = Vec::new();
        let mut ids = Vec::new();
        for destination in &destinations {
            let destination_id = destination.text("id")?;
            if !notifier.take_token(&destination_id) {
                return Err(Error::Conflict(format!(
                    "destination {destination_id} is rate-limited ({} notifications, then one \
                     every {:?}); retry in a few seconds",
                    notifier.config.rate_burst, notifier.config.rate_refill
                )));
            }
            let id = random_id("d-")?;
            let event = serde_json::json!({
                "type": "test",
                "cluster": { "id": cluster.id, "name": cluster.name },
                "key_arn": cluster.key_arn,
                "at_ms": now,
            });
            statements.push(insert_delivery(
                &id,
                &destination_id,
                org,
                cluster_id,
                "test",
                None,
                &event,
                "pending",
                now,
            ));
            ids.push(id);
        }
        notifier.db.transaction(statements).await?;
        notifier.wake.notify_one();
        let mut deliveries = Vec::new();
        for id in ids {
            deliveries.extend(self.deliveries_where("id = $1", vec![id.into()], 1).await?);
        }
        Ok(deliveries)
    }

    /// The cluster's delivery log, newest first, each delivery with its attempts.
    pub async fn cluster_deliveries(
        &self,
        org: &OrgId,
        cluster_id: &str,
        query: &DeliveryQuery,
    ) -> Result<Vec<Delivery>> {
        self.cluster(org, cluster_id).await?;
        self.logged(("cluster_id", cluster_id), org, query).await
    }

    /// A destination's delivery log (summaries included), newest first.
    pub async fn destination_deliveries(
        &self,
        org: &OrgId,
        destination_id: &str,
        query: &DeliveryQuery,
    ) -> Result<Vec<Delivery>> {
        self.destination(org, destination_id).await?;
        let query = DeliveryQuery {
            destination_id: None,
            ..query.clone()
        };
        self.logged(("destination_id", destination_id), org, &query)
            .await
    }

    /// The organization's deliveries whose `column` is the value given, filtered by `query`.
    async fn logged(
        &self,
        (column, value): (&str, &str),
        org: &OrgId,
        query: &DeliveryQuery,
    ) -> Result<Vec<Delivery>> {
        let mut filter = format!("org_id = $1 AND {column} = $2");
        let mut params: Vec<Value> = vec![org.as_str().into(), value.into()];
        for (column, wanted) in [
            ("alarm", &query.alarm),
            ("destination_id", &query.destination_id),
        ] {
            if let Some(wanted) = wanted {
                params.push(wanted.as_str().into());
                filter.push_str(&format!(" AND {column} = ${}", params.len()));
            }
        }
        self.deliveries_where(&filter, params, query.limit.unwrap_or(100))
            .await
    }

    async fn deliveries_where(
        &self,
        filter: &str,
        params: Vec<Value>,
        limit: usize,
    ) -> Result<Vec<Delivery>> {
        let db = &self.notifier().db;
        let rows = db
            .query(
                &format!(
                    "SELECT {DELIVERY_COLUMNS} FROM notification_deliveries WHERE {filter} \
                     ORDER BY created_at_ms DESC, id DESC LIMIT {}",
                    limit.clamp(1, MAX_DELIVERY_PAGE)
                ),
                &params,
            )
            .await?;
        let mut deliveries: Vec<Delivery> = rows.iter().map(delivery_of).collect::<Result<_>>()?;
        for delivery in &mut deliveries {
            let rows = db
                .query(
                    "SELECT attempt, at_ms, duration_ms, status, error, backoff_ceiling_ms, \
                     retry_in_ms FROM notification_attempts WHERE delivery_id = $1 \
                     ORDER BY attempt",
                    &[delivery.id.as_str().into()],
                )
                .await?;
            delivery.attempts = rows
                .iter()
                .map(|r| {
                    Ok(DeliveryAttempt {
                        attempt: r.int("attempt")?,
                        at_ms: r.int("at_ms")?,
                        duration_ms: r.int("duration_ms")?,
                        status: r.opt_int("status")?,
                        error: r.opt_text("error")?,
                        backoff_ceiling_ms: r.opt_int("backoff_ceiling_ms")?,
                        retry_in_ms: r.opt_int("retry_in_ms")?,
                    })
                })
                .collect::<Result<_>>()?;
        }
        Ok(deliveries)
    }
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
