//! The control plane's side of notifications: an organization's webhook destinations (each
//! secret wrapped at creation), a test notification on request, and the delivery log. What is
//! sent and how is in `notify/`; the worker that sends it is the operator's
//! (`operator/notify_worker.rs`).

use crate::db::Value;
use crate::error::{Error, Result};
use crate::notify::signature::WebhookSecret;
use crate::notify::{
    delivery_of, destination_of, insert_delivery, target, CreatedDestination, Delivery,
    DeliveryAttempt, DeliveryQuery, Destination, NewDestination, Notifier, DELIVERY_COLUMNS,
    DESTINATION_COLUMNS, MAX_DELIVERY_PAGE, MAX_DESCRIPTION_LEN,
};
use crate::org::{id_shape_ok, random_id, OrgId};
use crate::plane::ControlPlane;

/// A description as stored: at most [`MAX_DESCRIPTION_LEN`] characters, none a control character.
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
