//! The delivery worker: claims due deliveries from the queue, posts them signed, records each
//! attempt and schedules the retry. The bounds are described in `notify/`.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::db::Value;
use crate::error::{Error, Result};
use crate::metrics::DeliveryOutcome;
use crate::notify::{
    payload, signature, DestinationFormat, DELIVERY_RETENTION, MAX_CACHED_SECRETS,
};
use crate::shared::Shared;

/// How often the worker looks at the queue when nothing wakes it.
const TICK: Duration = Duration::from_millis(200);
/// Due deliveries read per look.
const BATCH: usize = 64;
/// How often finished deliveries past their retention are deleted.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Attempts in flight, by destination.
type InFlight = Arc<Mutex<HashMap<String, usize>>>;

/// Runs until the control plane is dropped (or the operator aborts it, which aborts every
/// attempt in flight with it).
pub(crate) async fn run(shared: Weak<Shared>) {
    let mut attempts = tokio::task::JoinSet::new();
    let in_flight: InFlight = Arc::default();
    let mut swept: Option<Instant> = None;
    loop {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let notifier = &strong.notifier;
        if let Err(error) = notifier.queue_summaries().await {
            tracing::warn!(%error, "notification summaries not queued");
        }
        if let Err(error) = claim_and_start(&strong, &in_flight, &mut attempts).await {
            tracing::warn!(%error, "notification queue not read");
        }
        if swept.is_none_or(|at| at.elapsed() >= SWEEP_EVERY) {
            swept = Some(Instant::now());
            if let Err(error) = sweep(&strong).await {
                tracing::warn!(%error, "old notification deliveries not deleted");
            }
        }
        let wake = strong.notifier.wake.clone();
        drop(strong);
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(TICK) => {}
            Some(_) = attempts.join_next(), if !attempts.is_empty() => {}
        }
        while attempts.try_join_next().is_some() {}
    }
}

/// Claims what is due, within the bounds, and starts an attempt of each.
async fn claim_and_start(
    shared: &Arc<Shared>,
    in_flight: &InFlight,
    attempts: &mut tokio::task::JoinSet<()>,
) -> Result<()> {
    let config = &shared.notifier.config;
    let (total, saturated): (usize, Vec<String>) = {
        let map = in_flight.lock();
        (
            map.values().sum(),
            map.iter()
                .filter(|(_, n)| **n >= config.per_destination_concurrency)
                .map(|(d, _)| d.clone())
                .collect(),
        )
    };
    if total >= config.concurrency {
        return Ok(());
    }
    let now = keyward_storage::vocab::now_ms();
    // A saturated destination's deliveries are not even read: however many it has due, they
    // never crowd out another destination's.
    let mut params: Vec<Value> = vec![now.into()];
    let mut exclude = String::new();
    for destination in &saturated {
        params.push(destination.as_str().into());
        exclude.push_str(if exclude.is_empty() { "$" } else { ", $" });
        exclude.push_str(&params.len().to_string());
    }
    let exclude = if exclude.is_empty() {
        String::new()
    } else {
        format!(" AND destination_id NOT IN ({exclude})")
    };
    let due = shared
        .notifier
        .db
        .query(
            &format!(
                "SELECT id, destination_id FROM notification_deliveries WHERE state = 'pending' \
                 AND next_attempt_ms <= $1 AND leased_until_ms <= $1{exclude} \
                 ORDER BY next_attempt_ms LIMIT {BATCH}"
            ),
            &params,
        )
        .await?;
    let lease = i64::try_from((config.attempt_timeout + Duration::from_secs(10)).as_millis())
        .unwrap_or(i64::MAX);
    for row in due {
        let id = row.text("id")?;
        let destination = row.text("destination_id")?;
        {
            let map = in_flight.lock();
            if map.values().sum::<usize>() >= config.concurrency {
                break;
            }
            if map.get(&destination).copied().unwrap_or(0) >= config.per_destination_concurrency {
                continue;
            }
        }
        // The lease: another replica's worker skips it until the attempt is recorded.
        let claimed = shared
            .notifier
            .db
            .execute(
                "UPDATE notification_deliveries SET leased_until_ms = $2 WHERE id = $1 \
                 AND state = 'pending' AND leased_until_ms <= $3",
                &[id.as_str().into(), (now + lease).into(), now.into()],
            )
            .await?;
        if claimed != 1 {
            continue;
        }
        *in_flight.lock().entry(destination.clone()).or_default() += 1;
        let shared = shared.clone();
        let in_flight = in_flight.clone();
        attempts.spawn(async move {
            let span =
                tracing::info_span!("notification", delivery = %id, destination = %destination);
            let outcome = tracing::Instrument::instrument(attempt(&shared, &id), span).await;
            if let Err(error) = outcome {
                tracing::warn!(delivery = %id, %error, "notification attempt not recorded");
            }
            let mut map = in_flight.lock();
            if let Some(n) = map.get_mut(&destination) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&destination);
                }
            }
        });
    }
    Ok(())
}

/// The backoff's ceiling after `failed` failed attempts: `first_retry × 2^(failed-1)`, at most
/// `max_retry`.
pub(crate) fn backoff_ceiling(first: Duration, max: Duration, failed: u32) -> Duration {
    let factor = 2u32.saturating_pow(failed.saturating_sub(1).min(30));
    first.saturating_mul(factor).min(max)
}

/// A delay drawn uniformly from `[0, ceiling]` (full jitter).
fn jitter(ceiling: Duration) -> Duration {
    let mut bytes = [0u8; 8];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        return ceiling;
    }
    let fraction = (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64;
    ceiling.mul_f64(fraction)
}

/// One attempt of delivery `id`, recorded.
async fn attempt(shared: &Shared, id: &str) -> Result<()> {
    let notifier = &shared.notifier;
    let config = &notifier.config;
    let db = &notifier.db;
    let Some(row) = db
        .query_opt(
            "SELECT d.event, d.attempts, d.org_id, t.id AS destination_id, t.url, t.format, \
             t.wrapped_secret FROM notification_deliveries d JOIN notification_destinations t \
             ON t.id = d.destination_id WHERE d.id = $1 AND d.state = 'pending'",
            &[id.into()],
        )
        .await?
    else {
        // The destination was deleted meanwhile (its deliveries were ended with it).
        return Ok(());
    };
    let event: serde_json::Value =
        serde_json::from_str(&row.text("event")?).map_err(Error::internal)?;
    let format = DestinationFormat::parse(&row.text("format")?)?;
    let url = row.text("url")?;
    let number = row.int("attempts")? + 1;
    let started = Instant::now();
    let at_ms = keyward_storage::vocab::now_ms();
    let (status, error) = match secret(
        shared,
        &row.text("org_id")?,
        &row.text("destination_id")?,
        &row.text("wrapped_secret")?,
    )
    .await
    {
        Err(error) => (
            None,
            Some(format!(
                "the signing secret could not be unwrapped: {error}"
            )),
        ),
        Ok(secret) => post(shared, &url, format, &event, id, &secret).await,
    };
    let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    let delivered = error.is_none();
    let last = !delivered && number >= i64::from(config.max_attempts);
    let (ceiling, retry_in) = if delivered || last {
        (None, None)
    } else {
        let failed = u32::try_from(number).unwrap_or(u32::MAX);
        let ceiling = backoff_ceiling(config.first_retry, config.max_retry, failed);
        (Some(ceiling), Some(jitter(ceiling)))
    };
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let now = keyward_storage::vocab::now_ms();
    let (state, next, finished) = if delivered {
        ("delivered", now, Some(now))
    } else if last {
        ("failed", now, Some(now))
    } else {
        ("pending", now + retry_in.map_or(0, ms), None)
    };
    db.transaction(vec![
        (
            "INSERT INTO notification_attempts (delivery_id, attempt, at_ms, duration_ms, status, \
             error, backoff_ceiling_ms, retry_in_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                .to_owned(),
            vec![
                id.into(),
                number.into(),
                at_ms.into(),
                duration_ms.into(),
                status.into(),
                error.clone().into(),
                ceiling.map(ms).into(),
                retry_in.map(ms).into(),
            ],
        ),
        (
            "UPDATE notification_deliveries SET state = $2, attempts = $3, next_attempt_ms = $4, \
             leased_until_ms = 0, last_error = $5, finished_at_ms = $6 WHERE id = $1"
                .to_owned(),
            vec![
                id.into(),
                state.into(),
                number.into(),
                next.into(),
                error.clone().into(),
                finished.into(),
            ],
        ),
    ])
    .await?;
    shared.metrics.notification(if delivered {
        DeliveryOutcome::Delivered
    } else if last {
        DeliveryOutcome::Failed
    } else {
        DeliveryOutcome::Retried
    });
    match (&error, last) {
        (None, _) => tracing::info!(attempt = number, duration_ms, "notification delivered"),
        (Some(error), false) => {
            tracing::info!(attempt = number, %error, "notification attempt failed; retrying")
        }
        (Some(error), true) => tracing::warn!(attempt = number, %error, "notification given up"),
    }
    Ok(())
}

/// Posts the signed body: the HTTP status answered (if any) and the error (none for a 2xx).
async fn post(
    shared: &Shared,
    url: &str,
    format: DestinationFormat,
    event: &serde_json::Value,
    delivery_id: &str,
    secret: &signature::WebhookSecret,
) -> (Option<i64>, Option<String>) {
    let config = &shared.notifier.config;
    // An IP literal never meets the resolver: checked here, at every attempt.
    if let Err(error) = crate::notify::target::check_url(url, config.allow_private_destinations) {
        return (None, Some(error.to_string()));
    }
    let body = payload::render(format, event, delivery_id);
    let timestamp = keyward_storage::vocab::now_ms().div_euclid(1000);
    let request = shared
        .notifier
        .client
        .post(url)
        .header("content-type", "application/json")
        .header(signature::DELIVERY_ID_HEADER, delivery_id)
        .header(
            signature::SIGNATURE_HEADER,
            signature::sign(secret, timestamp, &body),
        )
        .body(body);
    // The client's own timeout bounds the attempt; this guards against one that would not.
    let guard = config.attempt_timeout + Duration::from_secs(1);
    match tokio::time::timeout(guard, request.send()).await {
        Err(_) => (None, Some(format!("no answer within {guard:?}"))),
        Ok(Err(error)) => (None, Some(describe(&error, config.attempt_timeout))),
        Ok(Ok(response)) => {
            let status = response.status();
            // The body is not read: nothing in it matters, and a large one must cost nothing.
            drop(response);
            if status.is_success() {
                (Some(i64::from(status.as_u16())), None)
            } else {
                (
                    Some(i64::from(status.as_u16())),
                    Some(format!("the webhook answered HTTP {}", status.as_u16())),
                )
            }
        }
    }
}

/// An HTTP failure in words, without the URL (its path may hold the receiver's token).
fn describe(error: &reqwest::Error, timeout: Duration) -> String {
    use std::error::Error as _;
    if error.is_timeout() {
        return format!("no answer within {timeout:?}");
    }
    let mut text = if error.is_connect() {
        "cannot connect".to_owned()
    } else {
        "the request failed".to_owned()
    };
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Deletes finished deliveries (and their attempts) past [`DELIVERY_RETENTION`].
async fn sweep(shared: &Shared) -> Result<()> {
    let before = keyward_storage::vocab::now_ms()
        - i64::try_from(DELIVERY_RETENTION.as_millis()).unwrap_or(i64::MAX);
    shared
        .notifier
        .db
        .transaction(vec![
            (
                "DELETE FROM notification_attempts WHERE at_ms < $1".to_owned(),
                vec![before.into()],
            ),
            (
                "DELETE FROM notification_deliveries WHERE state <> 'pending' \
                 AND created_at_ms < $1"
                    .to_owned(),
                vec![before.into()],
            ),
        ])
        .await?;
    Ok(())
}

/// The destination's secret, unwrapped once and kept.
async fn secret(
    shared: &Shared,
    org_id: &str,
    destination_id: &str,
    wrapped: &str,
) -> Result<Arc<signature::WebhookSecret>> {
    if let Some(secret) = shared.notifier.secrets.lock().get(destination_id) {
        return Ok(secret.clone());
    }
    let secret = Arc::new(
        shared
            .notifier
            .key
            .unwrap(shared, org_id, destination_id, wrapped)
            .await?,
    );
    let mut cache = shared.notifier.secrets.lock();
    if cache.len() >= MAX_CACHED_SECRETS {
        cache.clear();
    }
    cache.insert(destination_id.to_owned(), secret.clone());
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_to_its_cap_and_jitter_stays_under_it() {
        let first = Duration::from_secs(1);
        let max = Duration::from_secs(600);
        let ceilings: Vec<u64> = (1..=12)
            .map(|n| backoff_ceiling(first, max, n).as_secs())
            .collect();
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600]);
        assert_eq!(backoff_ceiling(first, max, 1000), max);
        for _ in 0..1000 {
            assert!(jitter(Duration::from_secs(4)) <= Duration::from_secs(4));
        }
    }
}
