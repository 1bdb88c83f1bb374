//! Alarm notifications end to end: real key events (the customer's SDK calls against the
//! embedded KMS) raise alarms, the operator queues the notifications, the delivery worker posts
//! them signed to webhook receivers this test runs on loopback (plain TCP, a minimal HTTP/1.1
//! server), and the receivers verify them with the documented scheme (`keyward_control::notify::
//! verify`). Also: tampered and replayed notifications fail verification; a slow and an
//! unreachable webhook delay no other destination and their retries back off; a burst is
//! rate-limited with one summary; bad destinations are refused with nothing stored; another
//! organization sees none of it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyward_control::notify::{self, VerifyError, WebhookSecret};
use keyward_control::{
    ControlConfig, ControlPlane, Delivery, DeliveryQuery, DestinationFormat, NewDestination,
    Organization,
};
use parking_lot::Mutex;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{self, org, ready_external_cluster, Env, PROBE_INTERVAL};

/// What a receiver does with a request.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Answers 200 at once.
    Ok,
    /// Reads the request and never answers.
    Silent,
}

/// One request a receiver got.
#[derive(Clone)]
struct Received {
    headers: HashMap<String, String>,
    body: Vec<u8>,
    at: Instant,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// A webhook receiver on loopback: every request it got, in order.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<Received> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let headers: HashMap<String, String> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(Received {
        headers,
        body: buf[head_end..head_end + length].to_vec(),
        at: Instant::now(),
    })
}

impl Receiver {
    async fn start(mode: Mode) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let record = got.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let record = record.clone();
                tokio::spawn(async move {
                    let Some(received) = read_request(&mut stream).await else {
                        return;
                    };
                    record.lock().push(received);
                    match mode {
                        Mode::Ok => {
                            let _ = stream
                                .write_all(
                                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                                )
                                .await;
                        }
                        Mode::Silent => {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                        }
                    }
                });
            }
        });
        Receiver { url, got, task }
    }

    fn all(&self) -> Vec<Received> {
        self.got.lock().clone()
    }

    /// Waits for a notification whose body matches `pick`; answers it.
    async fn wait(&self, what: &str, limit: Duration, pick: impl Fn(&Value) -> bool) -> Received {
        let start = Instant::now();
        loop {
            if let Some(found) = self.all().into_iter().find(|r| pick(&r.json())) {
                return found;
            }
            assert!(
                start.elapsed() < limit,
                "no notification {what} within {limit:?}; got {:?}",
                self.all().iter().map(Received::json).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A loopback URL where nothing listens (connection refused).
async fn unreachable_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    drop(listener);
    url
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Verifies `received` with `secret`, as a receiver would.
fn verified(received: &Received, secret: &WebhookSecret) -> Result<(), VerifyError> {
    let header = received
        .headers
        .get("keyward-signature")
        .expect("a Keyward-Signature header");
    notify::verify(secret, header, &received.body, now_s(), None)
}

/// A plane whose webhooks may reach loopback (the receivers), with `tune` applied.
async fn plane_with(env: &Env, name: &str, tune: impl FnOnce(&mut ControlConfig)) -> ControlPlane {
    let data = env.dir.path().join(name);
    let url = format!("sqlite:{}", data.join("control.db").display());
    let mut config = env.config(&data, &url);
    config.notifications.allow_private_destinations = true;
    tune(&mut config);
    ControlPlane::open(config).await.expect("open the plane")
}

async fn destination(
    plane: &ControlPlane,
    org: &Organization,
    url: &str,
    format: DestinationFormat,
    cluster: Option<&str>,
) -> (String, WebhookSecret) {
    let created = plane
        .create_notification_destination(
            &org.id,
            NewDestination {
                url: url.into(),
                format,
                cluster_id: cluster.map(str::to_owned),
                description: "test receiver".into(),
            },
        )
        .await
        .expect("create the destination");
    assert!(created.secret.expose().starts_with(notify::SECRET_PREFIX));
    (
        created.destination.id,
        WebhookSecret::from_string(created.secret.expose().to_owned()),
    )
}

/// Polls a destination's delivery log until `done` holds; answers it.
async fn deliveries_until(
    plane: &ControlPlane,
    org: &Organization,
    destination_id: &str,
    what: &str,
    limit: Duration,
    done: impl Fn(&[Delivery]) -> bool,
) -> Vec<Delivery> {
    let query = DeliveryQuery {
        limit: Some(500),
        ..Default::default()
    };
    let started = Instant::now();
    loop {
        let log = plane
            .destination_deliveries(&org.id, destination_id, &query)
            .await
            .unwrap();
        if done(&log) {
            return log;
        }
        assert!(
            started.elapsed() < limit,
            "{what}: not within {limit:?}: {log:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn is_alarm(body: &Value, alarm: &str, to: &str) -> bool {
    body["type"] == "alarm.transition" && body["alarm"] == alarm && body["to"] == to
}

/// What the issue asks a notification to arrive within: the alarm follows the key within one
/// probe interval and one evaluation interval; the worker posts within its tick.
const IN_TIME: Duration = Duration::from_millis(2 * PROBE_INTERVAL.as_millis() as u64 + 1500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_alarm_reaches_a_webhook_signed_and_so_does_its_return_to_ok() {
    let env = harness::start().await;
    let plane = plane_with(&env, "plane", |_| {}).await;
    let acme = org(&plane, "acme").await;
    let (cluster, key) = ready_external_cluster(&env, &plane, &acme, "prod").await;
    let hook = Receiver::start(Mode::Ok).await;
    let slack = Receiver::start(Mode::Ok).await;
    let (_, secret) = destination(
        &plane,
        &acme,
        &hook.url,
        DestinationFormat::Keyward,
        Some(&cluster.id),
    )
    .await;
    // Organization-wide, in Slack's format.
    let (_, slack_secret) =
        destination(&plane, &acme, &slack.url, DestinationFormat::Slack, None).await;
    // The first evaluations (INSUFFICIENT_DATA -> OK) are not news.
    tokio::time::sleep(PROBE_INTERVAL * 2).await;
    assert!(
        hook.all().is_empty(),
        "{:?}",
        hook.all().iter().map(Received::json).collect::<Vec<_>>()
    );

    // Each event, the alarm it raises, and the event that clears it.
    let started = Instant::now();
    env.customer
        .disable_key()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    let raised = hook
        .wait("key-disabled ALARM", IN_TIME, |b| {
            is_alarm(b, "key-disabled", "ALARM")
        })
        .await;
    let took = raised.at - started;
    verified(&raised, &secret).expect("a correctly signed notification");
    let body = raised.json();
    assert_eq!(body["cluster"]["id"], cluster.id.as_str());
    assert_eq!(body["cluster"]["name"], "prod");
    assert_eq!(body["from"], "OK");
    assert!(
        body["reason"].as_str().unwrap().contains("disabled"),
        "{body}"
    );
    assert!(body["at"].as_str().unwrap().ends_with('Z'), "{body}");
    assert_eq!(
        raised.headers["keyward-delivery-id"],
        body["delivery_id"].as_str().unwrap()
    );
    hook.wait("cluster-key-inaccessible ALARM", IN_TIME, |b| {
        is_alarm(b, "cluster-key-inaccessible", "ALARM")
    })
    .await;
    let in_slack = slack
        .wait("key-disabled in Slack", IN_TIME, |b| {
            b["text"]
                .as_str()
                .is_some_and(|t| t.contains("`key-disabled` OK → ALARM"))
        })
        .await;
    verified(&in_slack, &slack_secret).expect("the Slack message is signed too");
    assert_eq!(in_slack.json()["blocks"][0]["type"], "section");
    eprintln!("key disabled -> signed notification received in {took:?}");

    env.customer.enable_key().key_id(&key).send().await.unwrap();
    let cleared = hook
        .wait("key-disabled OK", IN_TIME, |b| {
            is_alarm(b, "key-disabled", "OK")
        })
        .await;
    verified(&cleared, &secret).unwrap();
    assert_eq!(cleared.json()["from"], "ALARM");

    env.customer
        .schedule_key_deletion()
        .key_id(&key)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    let scheduled = hook
        .wait("key-deletion-scheduled ALARM", IN_TIME, |b| {
            is_alarm(b, "key-deletion-scheduled", "ALARM")
        })
        .await;
    verified(&scheduled, &secret).unwrap();
    assert!(
        scheduled.json()["reason"]
            .as_str()
            .unwrap()
            .contains("deletion date"),
        "{}",
        scheduled.json()
    );
    env.customer
        .cancel_key_deletion()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    // A cancelled deletion leaves the key disabled (as AWS does): enable it too.
    env.customer.enable_key().key_id(&key).send().await.unwrap();
    verified(
        &hook
            .wait("key-deletion-scheduled OK", IN_TIME, |b| {
                is_alarm(b, "key-deletion-scheduled", "OK")
            })
            .await,
        &secret,
    )
    .unwrap();
    hook.wait("cluster-key-inaccessible OK", IN_TIME, |b| {
        is_alarm(b, "cluster-key-inaccessible", "OK")
            && b["at_ms"].as_i64() > scheduled.json()["at_ms"].as_i64()
    })
    .await;

    // The key policy edited: the role's Decrypt is refused.
    let edited_at = keyward_storage_now_ms();
    env.set_customer_policy(&key, &cluster.role_arn, false)
        .await;
    let denied = hook
        .wait("access-denied ALARM", IN_TIME + PROBE_INTERVAL, |b| {
            is_alarm(b, "access-denied", "ALARM")
        })
        .await;
    verified(&denied, &secret).unwrap();
    assert!(
        denied.json()["reason"]
            .as_str()
            .unwrap()
            .contains("AccessDeniedException"),
        "{}",
        denied.json()
    );
    hook.wait(
        "cluster-key-inaccessible ALARM after the policy edit",
        IN_TIME,
        |b| {
            is_alarm(b, "cluster-key-inaccessible", "ALARM")
                && b["at_ms"].as_i64() >= Some(edited_at)
        },
    )
    .await;
    // Restored: the cluster reaches its data again, and says so. (access-denied counts the
    // refusals of its window, five minutes: it clears when they age out of it.)
    env.set_customer_policy(&key, &cluster.role_arn, true).await;
    let restored = hook
        .wait(
            "cluster-key-inaccessible OK after the policy is restored",
            IN_TIME + PROBE_INTERVAL,
            |b| {
                is_alarm(b, "cluster-key-inaccessible", "OK")
                    && b["at_ms"].as_i64() >= Some(edited_at)
            },
        )
        .await;
    verified(&restored, &secret).unwrap();

    // Every notification of both receivers verifies; each delivery id is unique.
    let mut seen = HashSet::new();
    for (receiver, secret) in [(&hook, &secret), (&slack, &slack_secret)] {
        for r in receiver.all() {
            let id = r.headers["keyward-delivery-id"].clone();
            notify::verify(
                secret,
                &r.headers["keyward-signature"],
                &r.body,
                now_s(),
                Some((&mut seen, &id)),
            )
            .unwrap_or_else(|e| panic!("{e}: {}", r.json()));
        }
    }

    // The delivery log has each, delivered at the first attempt, by alarm.
    let log = plane
        .cluster_deliveries(
            &acme.id,
            &cluster.id,
            &DeliveryQuery {
                alarm: Some("key-disabled".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // Raised and cleared, to each of the two destinations.
    assert_eq!(log.len(), 4, "{log:#?}");
    assert!(log.iter().all(|d| d.state == "delivered"
        && d.attempts.len() == 1
        && d.attempts[0].status == Some(200)
        && d.alarm.as_deref() == Some("key-disabled")));
    plane.shutdown().await;
}

fn keyward_storage_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A plane on `database_url` whose webhooks may reach loopback.
async fn plane_on(env: &Env, name: &str, database_url: &str) -> ControlPlane {
    let mut config = env.config(&env.dir.path().join(name), database_url);
    config.notifications.allow_private_destinations = true;
    ControlPlane::open(config).await.expect("open the plane")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_forged_and_replayed_notifications_fail_verification() {
    let env = harness::start().await;
    // The queue, the worker's lease and the delivery log on SQLite and PostgreSQL alike.
    for (i, database) in crate::db::test_databases().await.into_iter().enumerate() {
        let plane = plane_on(&env, &format!("plane-{i}"), &database.url).await;
        test_notification_verifies_and_its_forgeries_do_not(&plane).await;
        plane.shutdown().await;
    }
}

async fn test_notification_verifies_and_its_forgeries_do_not(plane: &ControlPlane) {
    let plane = plane.clone();
    let acme = org(&plane, "acme").await;
    let cluster = harness::external_cluster(&plane, &acme, "prod").await;
    let hook = Receiver::start(Mode::Ok).await;
    let (destination_id, secret) =
        destination(&plane, &acme, &hook.url, DestinationFormat::Keyward, None).await;
    let queued = plane
        .send_test_notification(&acme.id, &cluster.id)
        .await
        .unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].destination_id, destination_id);
    let got = hook
        .wait("the test notification", Duration::from_secs(5), |b| {
            b["type"] == "test"
        })
        .await;
    assert_eq!(got.headers["keyward-delivery-id"], queued[0].id);
    let header = got.headers["keyward-signature"].clone();
    let now = now_s();
    notify::verify(&secret, &header, &got.body, now, None).expect("genuine");

    // One byte of the body changed.
    let mut tampered = got.body.clone();
    let at = tampered.iter().position(|b| *b == b'p').unwrap();
    tampered[at] = b'q';
    assert_eq!(
        notify::verify(&secret, &header, &tampered, now, None),
        Err(VerifyError::Mismatch)
    );
    // Signed with another secret (or verified with one).
    let other = WebhookSecret::from_string("kwwhsec_not-the-destinations-secret".into());
    assert_eq!(
        notify::verify(&other, &header, &got.body, now, None),
        Err(VerifyError::Mismatch)
    );
    let forged = notify::sign(&other, now, &got.body);
    assert_eq!(
        notify::verify(&secret, &forged, &got.body, now, None),
        Err(VerifyError::Mismatch)
    );
    // The same request replayed later than the tolerance...
    assert!(matches!(
        notify::verify(&secret, &header, &got.body, now + 301, None),
        Err(VerifyError::OutsideTolerance { .. })
    ));
    // ... or within it, with a delivery id already seen.
    let mut seen = HashSet::new();
    let id = got.headers["keyward-delivery-id"].clone();
    notify::verify(&secret, &header, &got.body, now, Some((&mut seen, &id))).unwrap();
    assert_eq!(
        notify::verify(&secret, &header, &got.body, now, Some((&mut seen, &id))),
        Err(VerifyError::Replayed)
    );
    // A timestamp moved forward to look fresh breaks the MAC.
    let t: i64 = header[2..header.find(',').unwrap()].parse().unwrap();
    let moved = header.replacen(&format!("t={t}"), &format!("t={}", t + 400), 1);
    assert_eq!(
        notify::verify(&secret, &moved, &got.body, now + 400, None),
        Err(VerifyError::Mismatch)
    );
    let log = plane
        .destination_deliveries(&acme.id, &destination_id, &DeliveryQuery::default())
        .await
        .unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].state, "delivered");
    assert_eq!(log[0].attempts[0].status, Some(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_and_an_unreachable_webhook_delay_no_other_destination_and_retries_back_off() {
    let env = harness::start().await;
    let plane = plane_with(&env, "plane", |c| {
        c.notifications.max_attempts = 4;
        c.notifications.first_retry = Duration::from_millis(300);
        c.notifications.attempt_timeout = Duration::from_secs(2);
    })
    .await;
    let acme = org(&plane, "acme").await;
    let (cluster, key) = ready_external_cluster(&env, &plane, &acme, "prod").await;
    let slow = Receiver::start(Mode::Silent).await;
    let good = Receiver::start(Mode::Ok).await;
    let unreachable = unreachable_url().await;
    let (slow_id, _) =
        destination(&plane, &acme, &slow.url, DestinationFormat::Keyward, None).await;
    let (unreachable_id, _) = destination(
        &plane,
        &acme,
        &unreachable,
        DestinationFormat::Keyward,
        None,
    )
    .await;
    let (_, secret) = destination(&plane, &acme, &good.url, DestinationFormat::Keyward, None).await;
    tokio::time::sleep(PROBE_INTERVAL * 2).await;

    // A test notification first, so the slow destination's slots are held when the alarm fires.
    plane
        .send_test_notification(&acme.id, &cluster.id)
        .await
        .unwrap();
    good.wait("the test", Duration::from_secs(2), |b| b["type"] == "test")
        .await;
    let started = Instant::now();
    env.customer
        .disable_key()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    let got = good
        .wait("key-disabled ALARM at the good destination", IN_TIME, |b| {
            is_alarm(b, "key-disabled", "ALARM")
        })
        .await;
    verified(&got, &secret).unwrap();
    eprintln!(
        "with a slow and an unreachable destination: notified in {:?}",
        got.at - started
    );
    // The slow one got its requests but never answered.
    assert!(!slow.all().is_empty());

    // The unreachable destination's test delivery: four attempts, each refused, the backoff's
    // ceiling doubling and each retry waiting at least the delay drawn under it.
    let log = deliveries_until(
        &plane,
        &acme,
        &unreachable_id,
        "the unreachable delivery to be given up",
        Duration::from_secs(15),
        |log| log.iter().any(|d| d.kind == "test" && d.state == "failed"),
    )
    .await;
    let test = log.iter().find(|d| d.kind == "test").unwrap();
    assert_eq!(test.attempts.len(), 4, "{test:#?}");
    let ceilings: Vec<Option<i64>> = test.attempts.iter().map(|a| a.backoff_ceiling_ms).collect();
    assert_eq!(ceilings, [Some(300), Some(600), Some(1200), None]);
    for pair in test.attempts.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert!(a.status.is_none());
        assert!(
            a.error.as_deref().unwrap().contains("cannot connect"),
            "{:?}",
            a.error
        );
        let drawn = a.retry_in_ms.unwrap();
        assert!(drawn <= a.backoff_ceiling_ms.unwrap());
        assert!(
            b.at_ms - a.at_ms >= drawn,
            "attempt {} came {} ms after the previous, before its delay of {drawn} ms",
            b.attempt,
            b.at_ms - a.at_ms
        );
    }
    // The slow destination's attempts each end at the attempt timeout, and are retried.
    let slow_log = deliveries_until(
        &plane,
        &acme,
        &slow_id,
        "a slow attempt to time out",
        Duration::from_secs(10),
        |log| log.iter().any(|d| !d.attempts.is_empty()),
    )
    .await;
    let attempt = slow_log
        .iter()
        .flat_map(|d| d.attempts.iter())
        .next()
        .unwrap();
    assert!(attempt.duration_ms >= 1900, "{attempt:?}");
    assert!(
        attempt
            .error
            .as_deref()
            .unwrap()
            .contains("no answer within"),
        "{attempt:?}"
    );
    plane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_transitions_is_rate_limited_with_one_summary() {
    let env = harness::start().await;
    let plane = plane_with(&env, "plane", |c| {
        c.notifications.rate_burst = 3;
        c.notifications.rate_refill = Duration::from_secs(3);
    })
    .await;
    let acme = org(&plane, "acme").await;
    let (cluster, key) = ready_external_cluster(&env, &plane, &acme, "prod").await;
    let hook = Receiver::start(Mode::Ok).await;
    let (destination_id, secret) =
        destination(&plane, &acme, &hook.url, DestinationFormat::Keyward, None).await;
    tokio::time::sleep(PROBE_INTERVAL * 2).await;

    // The key flipped six times at once: each flip moves key-disabled and
    // cluster-key-inaccessible, twelve notifications for a bucket of three.
    for i in 0..6 {
        if i % 2 == 0 {
            env.customer
                .disable_key()
                .key_id(&key)
                .send()
                .await
                .unwrap();
        } else {
            env.customer.enable_key().key_id(&key).send().await.unwrap();
        }
        let _ = plane.check_health_now(&acme.id, &cluster.id).await;
        plane.evaluate_alarms_now().await.unwrap();
    }
    let summary = hook
        .wait("the summary", Duration::from_secs(8), |b| {
            b["type"] == "notifications.suppressed"
        })
        .await;
    verified(&summary, &secret).unwrap();
    // One more refill: nothing else arrives (the key is steady now).
    tokio::time::sleep(Duration::from_secs(4)).await;
    let all = hook.all();
    let alarms = all
        .iter()
        .filter(|r| r.json()["type"] == "alarm.transition")
        .count();
    let summaries: Vec<Value> = all
        .iter()
        .map(Received::json)
        .filter(|b| b["type"] == "notifications.suppressed")
        .collect();
    assert_eq!(alarms, 3, "only the bucket's three went out");
    assert_eq!(summaries.len(), 1, "one summary: {summaries:?}");
    let log = plane
        .destination_deliveries(
            &acme.id,
            &destination_id,
            &DeliveryQuery {
                limit: Some(500),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let suppressed = log.iter().filter(|d| d.state == "suppressed").count();
    let alarm_deliveries = log.iter().filter(|d| d.kind == "alarm").count();
    assert!(alarm_deliveries >= 12, "{alarm_deliveries}");
    assert_eq!(suppressed, alarm_deliveries - 3);
    assert_eq!(summaries[0]["suppressed"].as_u64(), Some(suppressed as u64));
    assert!(log
        .iter()
        .any(|d| d.kind == "suppressed-summary" && d.state == "delivered"));
    plane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_destinations_are_refused_with_nothing_stored_and_other_organizations_see_none() {
    let env = harness::start().await;
    // The default configuration: webhooks only to public addresses.
    let plane = plane_with(&env, "plane", |c| {
        c.notifications.allow_private_destinations = false;
        c.notifications.max_destinations_per_org = 2;
    })
    .await;
    let acme = org(&plane, "acme").await;
    let globex = org(&plane, "globex").await;
    let cluster = harness::external_cluster(&plane, &acme, "prod").await;
    let theirs = harness::external_cluster(&plane, &globex, "theirs").await;
    let new = |url: &str| NewDestination {
        url: url.into(),
        format: DestinationFormat::Keyward,
        cluster_id: None,
        description: String::new(),
    };
    for (bad, says) in [
        (new("ftp://93.184.216.34/x"), "invalid request: url has the scheme \"ftp\": only https (or http) webhooks are sent"),
        (new("https://user:pw@93.184.216.34/x"), "invalid request: url must not carry credentials"),
        (new("http://127.0.0.1:8080/hook"), "invalid request: url's host 127.0.0.1 is a loopback, private or link-local address: webhooks go only to public addresses on this platform"),
        (new("http://169.254.169.254/latest/meta-data/"), "invalid request: url's host 169.254.169.254 is a loopback"),
        (new("http://localhost/hook"), "invalid request: url's host localhost is a loopback"),
        (new("https://[::1]/hook"), "invalid request: url's host [::1] is a loopback"),
        (new(&format!("https://93.184.216.34/{}", "a".repeat(2100))), "invalid request: url is 2122 characters long, more than the limit of 2048"),
        (new("not a url"), "invalid request: url is not a valid absolute URL"),
        (NewDestination { description: "x".repeat(300), ..new("https://93.184.216.34/x") }, "invalid request: description must be at most 256 characters"),
        (NewDestination { cluster_id: Some(theirs.id.clone()), ..new("https://93.184.216.34/x") }, &format!("cluster {} not found", theirs.id)),
    ] {
        let refused = plane
            .create_notification_destination(&acme.id, bad)
            .await
            .err()
            .expect("refused");
        assert!(
            refused.to_string().starts_with(says),
            "{refused} does not start with {says}"
        );
    }
    assert!(plane
        .list_notification_destinations(&acme.id)
        .await
        .unwrap()
        .is_empty());

    // The per-organization limit.
    let (first, _) = destination(
        &plane,
        &acme,
        "https://93.184.216.34/a",
        DestinationFormat::Slack,
        Some(&cluster.id),
    )
    .await;
    destination(
        &plane,
        &acme,
        "https://93.184.216.34/b",
        DestinationFormat::Keyward,
        None,
    )
    .await;
    let refused = plane
        .create_notification_destination(&acme.id, new("https://93.184.216.34/c"))
        .await
        .err()
        .unwrap();
    assert_eq!(
        refused.to_string(),
        format!(
            "invalid request: organization {} has 2 notification destinations, the limit \
             (max_destinations_per_org): delete one first",
            acme.id
        )
    );
    let listed = plane
        .list_notification_destinations(&acme.id)
        .await
        .unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].id, first);
    assert_eq!(listed[0].cluster_id.as_deref(), Some(cluster.id.as_str()));
    assert_eq!(listed[0].format, DestinationFormat::Slack);
    // The secret is never listed.
    let shown = serde_json::to_string(&listed).unwrap();
    assert!(!shown.contains(notify::SECRET_PREFIX), "{shown}");

    // Another organization: nothing listed, nothing deleted, no deliveries read.
    assert!(plane
        .list_notification_destinations(&globex.id)
        .await
        .unwrap()
        .is_empty());
    let code = |e: keyward_control::Error| e.code().as_str();
    assert_eq!(
        code(
            plane
                .delete_notification_destination(&globex.id, &first)
                .await
                .unwrap_err()
        ),
        "not_found"
    );
    assert_eq!(
        code(
            plane
                .destination_deliveries(&globex.id, &first, &DeliveryQuery::default())
                .await
                .unwrap_err()
        ),
        "not_found"
    );
    assert_eq!(
        code(
            plane
                .cluster_deliveries(&globex.id, &cluster.id, &DeliveryQuery::default())
                .await
                .unwrap_err()
        ),
        "not_found"
    );
    assert_eq!(
        code(
            plane
                .send_test_notification(&globex.id, &cluster.id)
                .await
                .unwrap_err()
        ),
        "not_found"
    );
    assert_eq!(
        plane
            .list_notification_destinations(&acme.id)
            .await
            .unwrap()
            .len(),
        2
    );
    // Its owner deletes it.
    plane
        .delete_notification_destination(&acme.id, &first)
        .await
        .unwrap();
    assert_eq!(
        plane
            .list_notification_destinations(&acme.id)
            .await
            .unwrap()
            .len(),
        1
    );
    plane.shutdown().await;
}
