//! Key health against the real embedded KMS: each state a customer can put their key in, seen by
//! a probe as the cluster's principal, and the monitor reporting changes.
//!
//! The key is the customer's, with the guide's key-policy statements naming the cluster's
//! principal (an IAM user of the platform account whose identity policy allows what the role's
//! policy allows).

use std::time::{Duration, Instant};

use keyward_control::health::{
    classify_kms_error, probe_key, probe_key_since, HealthMonitor, HealthStatus,
    InaccessibleReason, KeyHealth, MonitorConfig,
};
use keyward_control::merge_key_policy;

pub const CUSTOMER: &str = "111122223333";
pub const PLATFORM: &str = "444455556666";
pub const CLUSTER_PRINCIPAL: &str = "arn:aws:iam::444455556666:user/cluster-health";
pub const REGION: &str = "us-east-1";
const CLUSTER_ID: &str = "c-0123456789abcdef";

/// The embedded KMS with a customer and a cluster principal.
pub struct HealthKms {
    pub dir: tempfile::TempDir,
    pub server: Option<keyward_kms_server::DevServer>,
    pub customer: aws_sdk_kms::Client,
    pub cluster: aws_sdk_kms::Client,
}

pub async fn start() -> HealthKms {
    let dir = tempfile::tempdir().unwrap();
    let identities = keyward_kms::IdentityConfig::from_toml_str(&format!(
        r#"
        [[account]]
        id = "{CUSTOMER}"
        [[account.access_key]]
        id = "AKIACUSTOMERHEALTH01"
        secret = "customer-secret-for-health-tests"
        principal = "root"
        [[account]]
        id = "{PLATFORM}"
        [[account.access_key]]
        id = "AKIACLUSTERHEALTH001"
        secret = "cluster-secret-for-health-tests"
        principal = "user/cluster-health"
        [[account.user]]
        name = "cluster-health"
        policy = '{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":["kms:DescribeKey","kms:GenerateDataKey*","kms:Decrypt","kms:CreateGrant","kms:ReEncrypt*","kms:RetireGrant"],"Resource":"*"}}]}}'
        "#
    ))
    .unwrap();
    let server = keyward_kms_server::DevServer::try_start_with(dir.path(), identities).unwrap();
    let customer = server
        .sdk_config_as("AKIACUSTOMERHEALTH01", "customer-secret-for-health-tests")
        .await;
    let cluster = server
        .sdk_config_as("AKIACLUSTERHEALTH001", "cluster-secret-for-health-tests")
        .await;
    HealthKms {
        dir,
        server: Some(server),
        customer: aws_sdk_kms::Client::new(&customer),
        cluster: aws_sdk_kms::Client::new(&cluster),
    }
}

impl HealthKms {
    /// A customer key whose policy holds the guide's statements for the cluster's principal,
    /// edited by `edit` first.
    pub async fn key(&self, edit: impl FnOnce(&mut serde_json::Value)) -> String {
        let key = self.customer.create_key().send().await.unwrap();
        let arn = key.key_metadata().unwrap().arn().unwrap().to_string();
        self.set_policy(&arn, edit).await;
        arn
    }

    pub async fn set_policy(&self, arn: &str, edit: impl FnOnce(&mut serde_json::Value)) {
        let current = self
            .customer
            .get_key_policy()
            .key_id(arn)
            .send()
            .await
            .unwrap();
        let mut policy = merge_key_policy(current.policy().unwrap(), CLUSTER_PRINCIPAL).unwrap();
        edit(&mut policy);
        self.customer
            .put_key_policy()
            .key_id(arn)
            .policy(policy.to_string())
            .send()
            .await
            .unwrap();
    }

    /// Moves the KMS clock forward and runs what became due (deletions).
    pub async fn advance_clock(&self, by: Duration) {
        self.server
            .as_ref()
            .unwrap()
            .engine()
            .advance_clock(by)
            .await
            .unwrap();
    }
}

/// Removes `action` from the guide's basic-access statement (the one naming the principal).
pub fn without_action(action: &'static str) -> impl FnOnce(&mut serde_json::Value) {
    move |policy| {
        for statement in policy["Statement"].as_array_mut().unwrap() {
            if statement["Principal"]["AWS"] == CLUSTER_PRINCIPAL {
                if let Some(actions) = statement["Action"].as_array_mut() {
                    actions.retain(|a| a != action);
                }
            }
        }
    }
}

#[track_caller]
fn assert_inaccessible(health: &KeyHealth, reason: InaccessibleReason, arn: &str) {
    assert_eq!(health.status, HealthStatus::KeyInaccessible, "{health:?}");
    assert_eq!(health.reason, Some(reason), "{health:?}");
    assert!(health.message.contains(arn), "{health:?}");
    assert!(health.checked_at_ms > 0);
}

#[tokio::test]
async fn a_usable_key_is_healthy() {
    let kms = start().await;
    let arn = kms.key(|_| {}).await;
    let health = probe_key(&kms.cluster, &arn, CLUSTER_ID).await;
    assert_eq!(health.status, HealthStatus::Healthy, "{health:?}");
    assert_eq!(health.reason, None);
    assert!(health.message.contains(&arn));
    let json = serde_json::to_value(&health).unwrap();
    assert_eq!(json["status"], "healthy");
    assert!(json["reason"].is_null());
}

#[tokio::test]
async fn a_disabled_key_is_inaccessible_until_enabled_again() {
    let kms = start().await;
    let arn = kms.key(|_| {}).await;
    kms.customer
        .disable_key()
        .key_id(&arn)
        .send()
        .await
        .unwrap();
    let health = probe_key(&kms.cluster, &arn, CLUSTER_ID).await;
    assert_inaccessible(&health, InaccessibleReason::Disabled, &arn);
    assert!(
        health
            .message
            .contains(&format!("aws kms enable-key --key-id {arn}")),
        "{health:?}"
    );
    kms.customer.enable_key().key_id(&arn).send().await.unwrap();
    assert!(probe_key(&kms.cluster, &arn, CLUSTER_ID).await.is_healthy());
}

#[tokio::test]
async fn a_key_pending_deletion_is_inaccessible_then_deleted_when_the_window_passes() {
    let kms = start().await;
    let arn = kms.key(|_| {}).await;
    kms.customer
        .schedule_key_deletion()
        .key_id(&arn)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    let pending = probe_key(&kms.cluster, &arn, CLUSTER_ID).await;
    assert_inaccessible(&pending, InaccessibleReason::PendingDeletion, &arn);
    assert!(
        pending.message.contains("aws kms cancel-key-deletion")
            && pending.message.contains("deletion date"),
        "{pending:?}"
    );

    // Six days later it is still pending (and could be saved).
    kms.advance_clock(Duration::from_secs(6 * 86_400)).await;
    let still = probe_key_since(&kms.cluster, &arn, CLUSTER_ID, &pending).await;
    assert_inaccessible(&still, InaccessibleReason::PendingDeletion, &arn);

    // Past the window the key is gone: key-deleted, for good.
    kms.advance_clock(Duration::from_secs(2 * 86_400)).await;
    let deleted = probe_key_since(&kms.cluster, &arn, CLUSTER_ID, &still).await;
    assert_eq!(deleted.status, HealthStatus::KeyDeleted, "{deleted:?}");
    assert!(deleted.message.contains(&arn));
    assert_eq!(
        serde_json::to_value(&deleted).unwrap()["status"],
        "key-deleted"
    );
    let again = probe_key_since(&kms.cluster, &arn, CLUSTER_ID, &deleted).await;
    assert_eq!(again.status, HealthStatus::KeyDeleted);
}

#[tokio::test]
async fn a_cancelled_deletion_leaves_the_key_disabled_and_enable_recovers_it() {
    let kms = start().await;
    let arn = kms.key(|_| {}).await;
    kms.customer
        .schedule_key_deletion()
        .key_id(&arn)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    kms.customer
        .cancel_key_deletion()
        .key_id(&arn)
        .send()
        .await
        .unwrap();
    let health = probe_key(&kms.cluster, &arn, CLUSTER_ID).await;
    assert_inaccessible(&health, InaccessibleReason::Disabled, &arn);
    kms.customer.enable_key().key_id(&arn).send().await.unwrap();
    assert!(probe_key(&kms.cluster, &arn, CLUSTER_ID).await.is_healthy());
}

#[tokio::test]
async fn decrypt_removed_from_the_key_policy_is_access_denied() {
    let kms = start().await;
    let arn = kms.key(without_action("kms:Decrypt")).await;
    // DescribeKey still works (the key is Enabled); the round trip proves Decrypt is gone.
    let health = probe_key(&kms.cluster, &arn, CLUSTER_ID).await;
    assert_inaccessible(&health, InaccessibleReason::AccessDenied, &arn);
    assert!(health.message.contains("put-key-policy"), "{health:?}");
    assert!(health.message.contains(CLUSTER_ID), "{health:?}");
    // Restoring the statement restores health.
    kms.set_policy(&arn, |_| {}).await;
    assert!(probe_key(&kms.cluster, &arn, CLUSTER_ID).await.is_healthy());
    // Without DescribeKey the probe fails at its first step, the same way.
    kms.set_policy(&arn, without_action("kms:DescribeKey"))
        .await;
    let health = probe_key(&kms.cluster, &arn, CLUSTER_ID).await;
    assert_inaccessible(&health, InaccessibleReason::AccessDenied, &arn);
}

#[tokio::test]
async fn a_key_that_does_not_exist_is_not_found_and_not_terminal() {
    let kms = start().await;
    let arn = format!("arn:aws:kms:{REGION}:{CUSTOMER}:key/00000000-0000-4000-8000-000000000000");
    let health = probe_key(&kms.cluster, &arn, CLUSTER_ID).await;
    assert_inaccessible(&health, InaccessibleReason::NotFound, &arn);
    // Without a deletion seen first it stays not-found, probed again, never key-deleted.
    let again = probe_key_since(&kms.cluster, &arn, CLUSTER_ID, &health).await;
    assert_inaccessible(&again, InaccessibleReason::NotFound, &arn);
}

#[tokio::test]
async fn kms_not_answering_is_unreachable() {
    let mut kms = start().await;
    let arn = kms.key(|_| {}).await;
    assert!(probe_key(&kms.cluster, &arn, CLUSTER_ID).await.is_healthy());
    // Stop the server: the port now refuses connections.
    drop(kms.server.take());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let health = probe_key(&kms.cluster, &arn, CLUSTER_ID).await;
    assert_inaccessible(&health, InaccessibleReason::KmsUnreachable, &arn);
    assert!(
        health.message.contains("locked until KMS answers"),
        "{health:?}"
    );
}

#[tokio::test]
async fn data_path_errors_from_the_sdk_are_classified() {
    let kms = start().await;
    let arn = kms.key(|_| {}).await;
    let generated = kms
        .cluster
        .generate_data_key()
        .key_id(&arn)
        .number_of_bytes(32)
        .send()
        .await
        .unwrap();
    let blob = generated.ciphertext_blob().unwrap().clone();
    // Not about the key: a ciphertext that is not one.
    let garbage = kms
        .cluster
        .decrypt()
        .key_id(&arn)
        .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(vec![1u8; 80]))
        .send()
        .await
        .unwrap_err();
    assert_eq!(classify_kms_error(&garbage), None, "{garbage:?}");

    kms.customer
        .disable_key()
        .key_id(&arn)
        .send()
        .await
        .unwrap();
    let disabled = kms
        .cluster
        .decrypt()
        .key_id(&arn)
        .ciphertext_blob(blob.clone())
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        classify_kms_error(&disabled),
        Some(InaccessibleReason::Disabled)
    );
    let generate = kms
        .cluster
        .generate_data_key()
        .key_id(&arn)
        .number_of_bytes(32)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        classify_kms_error(&generate),
        Some(InaccessibleReason::Disabled)
    );
    // The aggregate error type too.
    let aggregate: aws_sdk_kms::Error = disabled.into();
    assert_eq!(
        classify_kms_error(&aggregate),
        Some(InaccessibleReason::Disabled)
    );

    kms.customer.enable_key().key_id(&arn).send().await.unwrap();
    kms.set_policy(&arn, without_action("kms:Decrypt")).await;
    let denied = kms
        .cluster
        .decrypt()
        .key_id(&arn)
        .ciphertext_blob(blob)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        classify_kms_error(&denied),
        Some(InaccessibleReason::AccessDenied)
    );
}

/// Waits for the next change on the monitor's channel, up to `within`.
async fn next_change(
    changes: &mut tokio::sync::mpsc::UnboundedReceiver<keyward_control::health::HealthChange>,
    within: Duration,
) -> keyward_control::health::HealthChange {
    tokio::time::timeout(within, changes.recv())
        .await
        .expect("no health change reported in time")
        .expect("the monitor's channel closed")
}

#[tokio::test]
async fn the_monitor_reports_each_change_once_and_recovery() {
    let kms = start().await;
    let first = kms.key(|_| {}).await;
    let second = kms.key(|_| {}).await;
    let interval = Duration::from_millis(200);
    let (monitor, mut changes) = HealthMonitor::start(MonitorConfig {
        interval,
        concurrency: 2,
        ..MonitorConfig::default()
    });
    monitor.watch("c-1", &first, kms.cluster.clone(), None);
    monitor.watch("c-2", &second, kms.cluster.clone(), None);
    monitor.watch("c-3", &first, kms.cluster.clone(), None);
    assert_eq!(monitor.len(), 3);

    // The first round: unknown -> healthy, once per cluster.
    let mut seen = Vec::new();
    for _ in 0..3 {
        let change = next_change(&mut changes, Duration::from_secs(5)).await;
        assert_eq!(change.previous.status, HealthStatus::Unknown);
        assert!(change.current.is_healthy(), "{change:?}");
        seen.push(change.cluster_id);
    }
    seen.sort();
    assert_eq!(seen, ["c-1", "c-2", "c-3"]);

    // Disable the first key: both clusters on it go inaccessible within about one interval.
    let disabled_at = Instant::now();
    kms.customer
        .disable_key()
        .key_id(&first)
        .send()
        .await
        .unwrap();
    let mut seen = Vec::new();
    for _ in 0..2 {
        let change = next_change(&mut changes, Duration::from_secs(5)).await;
        assert_eq!(change.current.reason, Some(InaccessibleReason::Disabled));
        assert_eq!(change.key_arn, first);
        seen.push(change.cluster_id);
    }
    seen.sort();
    assert_eq!(seen, ["c-1", "c-3"]);
    assert!(disabled_at.elapsed() < interval * 2 + Duration::from_secs(1));
    // No change is repeated while nothing changes.
    assert!(
        tokio::time::timeout(interval * 3, changes.recv())
            .await
            .is_err(),
        "a change was reported twice"
    );
    assert_eq!(monitor.health("c-2").unwrap().status, HealthStatus::Healthy);

    // check_now probes at once and reports the change like a round would.
    kms.customer
        .enable_key()
        .key_id(&first)
        .send()
        .await
        .unwrap();
    let now = monitor.check_now("c-1").await.unwrap();
    assert!(now.is_healthy(), "{now:?}");
    let change = next_change(&mut changes, Duration::from_secs(5)).await;
    assert!(change.current.is_healthy());
    assert_eq!(change.previous.reason, Some(InaccessibleReason::Disabled));

    // Unwatched clusters are not probed; unknown ones answer None.
    monitor.unwatch("c-3");
    monitor.unwatch("c-2");
    assert!(monitor.check_now("c-3").await.is_none());
    assert!(monitor.health("c-2").is_none());
    let probes = monitor.probes_run();
    assert!(probes >= 6, "{probes}");
    monitor.shutdown();
    tokio::time::sleep(interval * 3).await;
    let after = monitor.probes_run();
    tokio::time::sleep(interval * 3).await;
    assert_eq!(
        monitor.probes_run(),
        after,
        "the loop kept probing after shutdown"
    );
}

#[tokio::test]
async fn the_monitor_reports_deletion_as_terminal_and_stops_probing_it() {
    let kms = start().await;
    let arn = kms.key(|_| {}).await;
    let (monitor, mut changes) = HealthMonitor::start(MonitorConfig {
        interval: Duration::from_secs(3600),
        concurrency: 4,
        ..MonitorConfig::default()
    });
    // Watched with the health stored before (healthy): no change to report until one happens.
    let stored = probe_key(&kms.cluster, &arn, CLUSTER_ID).await;
    monitor.watch(CLUSTER_ID, &arn, kms.cluster.clone(), Some(stored));
    assert!(monitor.check_now(CLUSTER_ID).await.unwrap().is_healthy());
    assert!(changes.try_recv().is_err());

    kms.customer
        .schedule_key_deletion()
        .key_id(&arn)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    let pending = monitor.check_now(CLUSTER_ID).await.unwrap();
    assert_eq!(pending.reason, Some(InaccessibleReason::PendingDeletion));
    next_change(&mut changes, Duration::from_secs(1)).await;

    kms.advance_clock(Duration::from_secs(8 * 86_400)).await;
    let deleted = monitor.check_now(CLUSTER_ID).await.unwrap();
    assert_eq!(deleted.status, HealthStatus::KeyDeleted, "{deleted:?}");
    let change = next_change(&mut changes, Duration::from_secs(1)).await;
    assert_eq!(change.current.status, HealthStatus::KeyDeleted);
    let probes = monitor.probes_run();
    assert_eq!(
        monitor.check_now(CLUSTER_ID).await.unwrap().status,
        HealthStatus::KeyDeleted
    );
    assert_eq!(
        monitor.probes_run(),
        probes,
        "a deleted key was probed again"
    );
}

/// Counts the KMS requests of one client in flight at once, and when each started.
#[derive(Debug, Default)]
struct InFlightCounter {
    now: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
    starts: std::sync::Mutex<Vec<Instant>>,
}

#[derive(Debug, Clone)]
struct CountingInterceptor(std::sync::Arc<InFlightCounter>);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl aws_sdk_kms::config::Intercept for CountingInterceptor {
    fn name(&self) -> &'static str {
        "InFlightCounter"
    }

    fn read_before_attempt(
        &self,
        _context: &aws_sdk_kms::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &aws_sdk_kms::config::RuntimeComponents,
        _cfg: &mut aws_sdk_kms::config::ConfigBag,
    ) -> Result<(), BoxError> {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.0.now.fetch_add(1, SeqCst) + 1;
        self.0.most.fetch_max(now, SeqCst);
        self.0.starts.lock().unwrap().push(Instant::now());
        Ok(())
    }

    fn read_after_attempt(
        &self,
        _context: &aws_sdk_kms::config::interceptors::FinalizerInterceptorContextRef<'_>,
        _runtime_components: &aws_sdk_kms::config::RuntimeComponents,
        _cfg: &mut aws_sdk_kms::config::ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.now.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

/// A round of periodic probes is spread over the interval — one probe every `interval / n`,
/// not a burst at the tick — and never has more KMS requests in flight than its concurrency
/// bound, as seen by the KMS client itself.
#[tokio::test]
async fn a_round_is_spread_over_the_interval_and_bounded_in_flight() {
    let kms = start().await;
    let counter = std::sync::Arc::new(InFlightCounter::default());
    let client = aws_sdk_kms::Client::from_conf(
        kms.cluster
            .config()
            .to_builder()
            .interceptor(CountingInterceptor(counter.clone()))
            .build(),
    );
    const CLUSTERS: usize = 24;
    const BOUND: usize = 2;
    let interval = Duration::from_millis(1200);
    let mut keys = Vec::new();
    for _ in 0..CLUSTERS {
        // A key each: no verdict is shared, every probe asks KMS.
        keys.push(kms.key(|_| {}).await);
    }
    let (monitor, _changes) = HealthMonitor::start(MonitorConfig {
        interval,
        concurrency: BOUND,
        max_rate: 0,
    });
    for (i, arn) in keys.iter().enumerate() {
        monitor.watch(&format!("c-{i:02}"), arn, client.clone(), None);
    }
    // The first round makes full probes (3 requests each, one after the other within a probe);
    // the second, one Decrypt each.
    let limit = Instant::now() + Duration::from_secs(30);
    while monitor.last_round().rounds < 2 {
        assert!(Instant::now() < limit, "two rounds did not finish in 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    monitor.shutdown();
    let stats = monitor.last_round();
    assert_eq!(stats.clusters, CLUSTERS);
    assert_eq!(stats.kms_requests, CLUSTERS as u64, "{stats:?}");
    assert!(stats.max_in_flight <= BOUND, "{stats:?}");
    let most = counter.most.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        (1..=BOUND).contains(&most),
        "{most} KMS requests in flight at once; the bound is {BOUND}"
    );
    // Spread: the second round's 24 Decrypts (after the first round's 3 requests a cluster)
    // start over about the whole interval, one every 50 ms; a burst would start them all within
    // a few milliseconds.
    let starts = counter.starts.lock().unwrap().clone();
    let round: Vec<Instant> = starts[3 * CLUSTERS..4 * CLUSTERS].to_vec();
    let span = *round.last().unwrap() - round[0];
    let spacing = interval / CLUSTERS as u32;
    assert!(
        span >= spacing * (CLUSTERS as u32 - 1) - Duration::from_millis(200),
        "the round's probes started within {span:?}: a burst, not spread over {interval:?}"
    );
    assert!(span < interval + Duration::from_millis(500), "{span:?}");
    // Four slots' worth at a time (timers fire late under load, never early), never half the
    // round at once.
    for (i, first) in round.iter().enumerate() {
        let close = round[i..]
            .iter()
            .take_while(|t| **t - *first < Duration::from_millis(200))
            .count();
        assert!(
            close <= CLUSTERS / 2,
            "{close} probes started within 200 ms; the slot is {spacing:?}"
        );
    }
    assert!(
        stats.duration >= spacing * (CLUSTERS as u32 - 1),
        "{stats:?}"
    );
}

/// A cluster's data path seeing its key disabled locks that cluster at once (`check_now`), and
/// the key's state is the key's: the other cluster on the same key is told at once too, with no
/// KMS request of its own — long before its own probe would come (the interval is an hour).
/// A success is never shared: once the key is enabled again, each cluster asks KMS itself.
#[tokio::test]
async fn a_key_state_seen_by_one_cluster_locks_every_cluster_on_the_key_at_once() {
    let kms = start().await;
    let shared_key = kms.key(|_| {}).await;
    let other_key = kms.key(|_| {}).await;
    let (monitor, mut changes) = HealthMonitor::start(MonitorConfig {
        interval: Duration::from_secs(3600),
        ..MonitorConfig::default()
    });
    let healthy = probe_key(&kms.cluster, &shared_key, "c-1").await;
    assert!(healthy.is_healthy());
    for (id, key) in [
        ("c-1", &shared_key),
        ("c-2", &shared_key),
        ("c-3", &other_key),
    ] {
        monitor.watch(id, key, kms.cluster.clone(), Some(healthy.clone()));
    }
    kms.customer
        .disable_key()
        .key_id(&shared_key)
        .send()
        .await
        .unwrap();
    let before = monitor.kms_requests();
    let health = monitor.check_now("c-1").await.unwrap();
    assert_inaccessible(&health, InaccessibleReason::Disabled, &shared_key);
    // DescribeKey alone answers a disabled key.
    assert_eq!(monitor.kms_requests() - before, 1);
    let mut locked = Vec::new();
    for _ in 0..2 {
        let change = next_change(&mut changes, Duration::from_secs(2)).await;
        assert_eq!(change.current.reason, Some(InaccessibleReason::Disabled));
        assert_eq!(change.key_arn, shared_key);
        locked.push(change.cluster_id);
    }
    locked.sort();
    assert_eq!(locked, ["c-1", "c-2"]);
    assert_eq!(
        monitor.kms_requests() - before,
        1,
        "c-2 took the key's verdict without asking KMS"
    );
    assert!(monitor.health("c-3").unwrap().is_healthy());

    kms.customer
        .enable_key()
        .key_id(&shared_key)
        .send()
        .await
        .unwrap();
    assert!(monitor.check_now("c-1").await.unwrap().is_healthy());
    let change = next_change(&mut changes, Duration::from_secs(2)).await;
    assert_eq!(change.cluster_id, "c-1");
    // c-2 is not unlocked by c-1's success (its role may have lost access meanwhile).
    assert!(
        tokio::time::timeout(Duration::from_millis(300), changes.recv())
            .await
            .is_err(),
        "a success was shared"
    );
    assert_eq!(
        monitor.health("c-2").unwrap().reason,
        Some(InaccessibleReason::Disabled)
    );
    assert!(monitor.check_now("c-2").await.unwrap().is_healthy());
}
