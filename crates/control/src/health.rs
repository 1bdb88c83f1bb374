//! Key health: whether a cluster's KMS key can still be used by the cluster's role, checked
//! against KMS itself — the signal that makes the platform fail closed.
//!
//! - [`probe_key`]: one full probe, as the cluster's role: `DescribeKey` (the key's state), then
//!   a `GenerateDataKey` + `Decrypt` round trip under the probe context (`keyward:cluster` = the
//!   cluster id, `keyward:probe` = `key-health`, from `keyward_storage::vocab`). A key can be
//!   `Enabled` while the role has lost `kms:Decrypt`, so the state alone is not enough.
//! - The monitor's periodic probe is cheaper: **one `Decrypt`** of the ciphertext the last full
//!   probe made. That single request fails on each revocation the monitor exists for — a
//!   disabled key (`DisabledException`), one pending deletion (`KMSInvalidStateException`), a
//!   deleted one (`NotFoundException`), `kms:Decrypt` taken from the role (`AccessDeniedException`)
//!   — and succeeds across rotations (KMS keeps every version of the material). Only when it
//!   fails does a full probe run, to name the cause (and the deletion date). A full probe also
//!   runs first for every watched key and on [`HealthMonitor::check_now`], which data paths call
//!   after a KMS error: losing `kms:GenerateDataKey` alone is seen there. Each probe request is
//!   billed to the customer's account; at the default 10 s interval a healthy cluster costs
//!   259,200 requests a month instead of 777,600.
//! - [`classify_kms_error`]: what an error seen on a data path (Decrypt, GenerateDataKey, a
//!   volume attach) says about the key, so the data path can ask for an immediate probe
//!   ([`HealthMonitor::check_now`]) and refuse service at once.
//! - [`HealthMonitor`]: periodic probes of many clusters on one tokio task, with bounded
//!   concurrency, and changes reported through a channel.
//!
//! `key-deleted` is terminal: `NotFoundException` from `DescribeKey` after the key was seen
//! pending deletion means the window has passed and the key is gone (a key ARN holds a unique id:
//! a deleted key never comes back). [`probe_key`] alone cannot know what was seen before, so it
//! reports `NotFoundException` as `key-inaccessible` / `not-found`; [`settle`] (used by the
//! monitor and [`probe_key_since`]) turns that into `key-deleted` when the previous health was
//! `pending-deletion`. A `not-found` without a deletion seen first (the key deleted while nobody
//! watched, or the platform pointed at the wrong region or endpoint) stays inaccessible and is
//! probed again, so a configuration mistake never becomes a terminal state by itself. The monitor
//! never probes a deleted key again.
//!
//! ## How the monitor reports
//!
//! [`HealthMonitor::start`] returns the monitor and an unbounded receiver of [`HealthChange`]s.
//! A change is sent when a cluster's status or reason differs from the last one known (the
//! initial health given to [`HealthMonitor::watch`], often the one stored in the database); the
//! message and time alone changing is not a change. The consumer (the control plane) drops the
//! cluster's cached data keys and detaches its disks on `key-inaccessible` / `key-deleted`, and
//! reattaches on `healthy`. A channel rather than a callback: the consumer's reaction does I/O and
//! must not run inside the probe loop, and a slow consumer never delays the next probes.
//!
//! Every watched cluster is probed once per interval (default [`DEFAULT_PROBE_INTERVAL`]);
//! at most `concurrency` probes run at once, so a thousand clusters cost a thousand short
//! probes spread over the round, not a thousand simultaneous connections. Probes of one cluster
//! never overlap: a periodic probe and a [`HealthMonitor::check_now`] of the same cluster run one
//! after the other, so changes are reported in order.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::types::KeyState;
use futures::StreamExt;
use keyward_envelope::{KmsCause, KmsErrorCode, KmsFailure};
use keyward_storage::vocab::{now_ms, CLUSTER_CONTEXT_KEY, HEALTH_PROBE, PROBE_CONTEXT_KEY};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::mpsc;
use zeroize::Zeroizing;

/// How often the monitor probes each cluster unless configured otherwise.
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(10);
/// How many probes the monitor runs at once unless configured otherwise.
pub const DEFAULT_PROBE_CONCURRENCY: usize = 16;

/// A cluster's key health as the API shows it.
#[derive(Debug, Serialize, Clone, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum HealthStatus {
    /// Not probed yet.
    Unknown,
    Healthy,
    /// The key cannot be used now; it can be again when the reason is fixed.
    KeyInaccessible,
    /// The key is gone: the data encrypted under it is lost for good.
    KeyDeleted,
}

impl HealthStatus {
    /// The kebab-case name, as in JSON and the database.
    pub fn as_str(&self) -> &'static str {
        match self {
            HealthStatus::Unknown => "unknown",
            HealthStatus::Healthy => "healthy",
            HealthStatus::KeyInaccessible => "key-inaccessible",
            HealthStatus::KeyDeleted => "key-deleted",
        }
    }
}

impl HealthStatus {
    /// The status of its kebab-case name.
    pub fn parse(name: &str) -> Option<HealthStatus> {
        [
            HealthStatus::Unknown,
            HealthStatus::Healthy,
            HealthStatus::KeyInaccessible,
            HealthStatus::KeyDeleted,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }
}

/// Why a key is inaccessible.
#[derive(Debug, Serialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum InaccessibleReason {
    Disabled,
    PendingDeletion,
    AccessDenied,
    NotFound,
    KmsUnreachable,
}

impl InaccessibleReason {
    /// The kebab-case name, as in JSON and the database.
    pub fn as_str(&self) -> &'static str {
        match self {
            InaccessibleReason::Disabled => "disabled",
            InaccessibleReason::PendingDeletion => "pending-deletion",
            InaccessibleReason::AccessDenied => "access-denied",
            InaccessibleReason::NotFound => "not-found",
            InaccessibleReason::KmsUnreachable => "kms-unreachable",
        }
    }
}

impl InaccessibleReason {
    /// The reason of its kebab-case name.
    pub fn parse(name: &str) -> Option<InaccessibleReason> {
        [
            InaccessibleReason::Disabled,
            InaccessibleReason::PendingDeletion,
            InaccessibleReason::AccessDenied,
            InaccessibleReason::NotFound,
            InaccessibleReason::KmsUnreachable,
        ]
        .into_iter()
        .find(|r| r.as_str() == name)
    }
}

/// The result of a probe.
#[derive(Debug, Serialize, Clone)]
pub struct KeyHealth {
    pub status: HealthStatus,
    /// Set when `status` is `key-inaccessible`.
    pub reason: Option<InaccessibleReason>,
    /// What a person can act on: names the key ARN and the fix.
    pub message: String,
    pub checked_at_ms: i64,
}

impl KeyHealth {
    /// Not probed yet.
    pub fn unknown() -> KeyHealth {
        KeyHealth {
            status: HealthStatus::Unknown,
            reason: None,
            message: "the key has not been checked yet".into(),
            checked_at_ms: 0,
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.status == HealthStatus::Healthy
    }

    /// The same status and reason (message and time aside).
    pub fn same_state(&self, other: &KeyHealth) -> bool {
        self.status == other.status && self.reason == other.reason
    }

    pub(crate) fn healthy(key_arn: &str) -> KeyHealth {
        KeyHealth {
            status: HealthStatus::Healthy,
            reason: None,
            message: format!(
                "the KMS key {key_arn} is enabled and the cluster's role can generate and \
                 decrypt data keys with it"
            ),
            checked_at_ms: now_ms(),
        }
    }

    fn deleted(key_arn: &str) -> KeyHealth {
        KeyHealth {
            status: HealthStatus::KeyDeleted,
            reason: None,
            message: format!(
                "the KMS key {key_arn} no longer exists: its deletion window has passed and the \
                 data encrypted under it can never be decrypted again; delete this cluster"
            ),
            checked_at_ms: now_ms(),
        }
    }

    pub(crate) fn inaccessible(reason: InaccessibleReason, message: String) -> KeyHealth {
        KeyHealth {
            status: HealthStatus::KeyInaccessible,
            reason: Some(reason),
            message,
            checked_at_ms: now_ms(),
        }
    }
}

/// The message for an inaccessible key: what is wrong, and the command that fixes it.
fn inaccessible_message(
    reason: InaccessibleReason,
    key_arn: &str,
    cluster_id: &str,
    detail: &str,
) -> String {
    let detail = if detail.is_empty() {
        String::new()
    } else {
        format!(" (KMS said: {detail})")
    };
    match reason {
        InaccessibleReason::Disabled => format!(
            "the KMS key {key_arn} is disabled{detail}; enable it with \
             `aws kms enable-key --key-id {key_arn}`"
        ),
        InaccessibleReason::PendingDeletion => format!(
            "the KMS key {key_arn} is scheduled for deletion{detail}; until the window ends \
             you can save the data: `aws kms cancel-key-deletion --key-id {key_arn}`, then \
             `aws kms enable-key --key-id {key_arn}`"
        ),
        InaccessibleReason::AccessDenied => format!(
            "the role of cluster {cluster_id} may no longer use the KMS key {key_arn}{detail}; \
             put the cluster's statements (GET /v1/clusters/{cluster_id}/key-policy) back into \
             the key policy with `aws kms put-key-policy --key-id {key_arn} --policy-name \
             default --policy file://policy.json`"
        ),
        InaccessibleReason::NotFound => format!(
            "the KMS key {key_arn} was not found{detail}; check that it exists in the \
             cluster's region and account with `aws kms describe-key --key-id {key_arn}` (a \
             deleted key cannot be recovered, nor the data under it)"
        ),
        InaccessibleReason::KmsUnreachable => format!(
            "KMS could not be reached to use the key {key_arn}{detail}; the cluster's data \
             stays locked until KMS answers again"
        ),
    }
}

/// One probe of `key_arn` as the cluster's role (`kms` holds the role's credentials).
///
/// `DescribeKey` first: `Disabled` and `PendingDeletion` are reported from the key's state (with
/// the deletion date), `NotFoundException` as `not-found` (see [`settle`]). Then a `GenerateDataKey` +
/// `Decrypt` round trip under the probe context proves the role may still use the key; a
/// refusal there is classified like a data path's error. The probe's data key is zeroized.
pub async fn probe_key(kms: &aws_sdk_kms::Client, key_arn: &str, cluster_id: &str) -> KeyHealth {
    full_probe(kms, key_arn, cluster_id).await.0
}

/// [`probe_key`], and when healthy the probe's ciphertext, for the cheap probes that follow.
async fn full_probe(
    kms: &aws_sdk_kms::Client,
    key_arn: &str,
    cluster_id: &str,
) -> (KeyHealth, Option<aws_sdk_kms::primitives::Blob>) {
    let health = |h: KeyHealth| (h, None);
    let inaccessible = |reason: InaccessibleReason, detail: &str| {
        KeyHealth::inaccessible(
            reason,
            inaccessible_message(reason, key_arn, cluster_id, detail),
        )
    };
    let from_error = |reason: Option<InaccessibleReason>, detail: String| match reason {
        Some(reason) => inaccessible(reason, &detail),
        // Not about the key (a malformed request or answer): the key cannot be shown to work,
        // so the cluster stays closed, reported as KMS misbehaving.
        None => inaccessible(InaccessibleReason::KmsUnreachable, &detail),
    };
    let from_failure =
        |failure: KmsFailure| from_error(InaccessibleReason::of(&failure), failure.to_string());

    let described = kms.describe_key().key_id(key_arn).send().await;
    let metadata = match described {
        Ok(out) => match out.key_metadata {
            Some(m) => m,
            None => {
                return health(inaccessible(
                    InaccessibleReason::KmsUnreachable,
                    "DescribeKey answered without KeyMetadata",
                ))
            }
        },
        Err(error) => return health(from_failure(KmsFailure::from_sdk(&error))),
    };
    match metadata.key_state() {
        Some(KeyState::Enabled) => {}
        Some(KeyState::PendingDeletion) | Some(KeyState::PendingReplicaDeletion) => {
            let when = metadata
                .deletion_date()
                .and_then(|d| {
                    d.fmt(aws_sdk_kms::primitives::DateTimeFormat::DateTime)
                        .ok()
                })
                .map(|d| format!("deletion date {d}"))
                .unwrap_or_default();
            return health(inaccessible(InaccessibleReason::PendingDeletion, &when));
        }
        Some(KeyState::Disabled) => return health(inaccessible(InaccessibleReason::Disabled, "")),
        Some(other) => {
            // PendingImport, Unavailable, Creating, Updating: unusable, and enabling (or
            // importing material) is the customer's way out.
            return health(inaccessible(
                InaccessibleReason::Disabled,
                &format!("key state {}", other.as_str()),
            ));
        }
        None => {
            return health(inaccessible(
                InaccessibleReason::KmsUnreachable,
                "DescribeKey answered without a KeyState",
            ))
        }
    }

    let generated = kms
        .generate_data_key()
        .key_id(key_arn)
        .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256)
        .encryption_context(CLUSTER_CONTEXT_KEY, cluster_id)
        .encryption_context(PROBE_CONTEXT_KEY, HEALTH_PROBE)
        .send()
        .await;
    let generated = match generated {
        Ok(out) => out,
        Err(error) => return health(from_failure(KmsFailure::from_sdk(&error))),
    };
    let plaintext = Zeroizing::new(
        generated
            .plaintext()
            .map(|b| b.as_ref().to_vec())
            .unwrap_or_default(),
    );
    let Some(blob) = generated.ciphertext_blob() else {
        return health(inaccessible(
            InaccessibleReason::KmsUnreachable,
            "GenerateDataKey answered without a CiphertextBlob",
        ));
    };
    match probe_decrypt(kms, key_arn, cluster_id, blob).await {
        Ok(out) => {
            let back = Zeroizing::new(
                out.plaintext()
                    .map(|b| b.as_ref().to_vec())
                    .unwrap_or_default(),
            );
            let same = plaintext.len() == 32
                && aws_lc_rs::constant_time::verify_slices_are_equal(&plaintext, &back).is_ok();
            if same {
                (KeyHealth::healthy(key_arn), Some(blob.clone()))
            } else {
                health(inaccessible(
                    InaccessibleReason::KmsUnreachable,
                    "Decrypt returned another data key than GenerateDataKey: the endpoint is \
                     not behaving as KMS",
                ))
            }
        }
        Err(error) => health(from_failure(KmsFailure::from_sdk(&error))),
    }
}

/// `Decrypt` of a probe ciphertext under the probe context.
async fn probe_decrypt(
    kms: &aws_sdk_kms::Client,
    key_arn: &str,
    cluster_id: &str,
    blob: &aws_sdk_kms::primitives::Blob,
) -> Result<
    aws_sdk_kms::operation::decrypt::DecryptOutput,
    SdkError<aws_sdk_kms::operation::decrypt::DecryptError>,
> {
    kms.decrypt()
        .key_id(key_arn)
        .ciphertext_blob(blob.clone())
        .encryption_context(CLUSTER_CONTEXT_KEY, cluster_id)
        .encryption_context(PROBE_CONTEXT_KEY, HEALTH_PROBE)
        .send()
        .await
}

/// The periodic probe of a key last seen healthy: one `Decrypt` of `blob` (made by a full probe
/// under the probe context). `true` when KMS decrypted it with `key_arn`; anything else asks for
/// a full probe.
async fn quick_probe(
    kms: &aws_sdk_kms::Client,
    key_arn: &str,
    cluster_id: &str,
    blob: &aws_sdk_kms::primitives::Blob,
) -> bool {
    let decrypted = probe_decrypt(kms, key_arn, cluster_id, blob).await;
    // The data key itself is dropped (zeroized) at once: only the answer's key id matters.
    matches!(decrypted, Ok(out) if out.key_id() == Some(key_arn) && out.plaintext().is_some_and(|p| p.as_ref().len() == 32))
}

/// [`probe_key`], then [`settle`] against the health known before.
pub async fn probe_key_since(
    kms: &aws_sdk_kms::Client,
    key_arn: &str,
    cluster_id: &str,
    previous: &KeyHealth,
) -> KeyHealth {
    if previous.status == HealthStatus::KeyDeleted {
        return previous.clone();
    }
    settle(previous, probe_key(kms, key_arn, cluster_id).await, key_arn)
}

/// The health after a probe, given the one before: `key-deleted` stays deleted, and a key not
/// found after it was seen pending deletion is deleted.
pub fn settle(previous: &KeyHealth, probed: KeyHealth, key_arn: &str) -> KeyHealth {
    if previous.status == HealthStatus::KeyDeleted {
        return previous.clone();
    }
    if probed.reason == Some(InaccessibleReason::NotFound)
        && previous.reason == Some(InaccessibleReason::PendingDeletion)
    {
        return KeyHealth::deleted(key_arn);
    }
    probed
}

impl InaccessibleReason {
    /// What a KMS failure makes of the key, or `None` when it is not about the key: a `match`
    /// on the one classification of KMS failures, [`KmsFailure::cause`].
    pub fn of(failure: &KmsFailure) -> Option<InaccessibleReason> {
        Some(match failure.cause() {
            KmsCause::Disabled => InaccessibleReason::Disabled,
            KmsCause::PendingDeletion => InaccessibleReason::PendingDeletion,
            // PendingImport, Unavailable: the key cannot be used until the customer acts.
            KmsCause::Unusable => InaccessibleReason::Disabled,
            KmsCause::AccessDenied => InaccessibleReason::AccessDenied,
            // The caller's credentials themselves are refused (the role deleted, the session
            // gone): the cluster cannot use the key, which is what access denied means to the
            // customer.
            KmsCause::CredentialsRefused => InaccessibleReason::AccessDenied,
            KmsCause::NotFound => InaccessibleReason::NotFound,
            // No answer, or KMS unable to serve now (throttled, internal error, key material
            // unavailable for a while): the key cannot be shown to work.
            KmsCause::Transient => InaccessibleReason::KmsUnreachable,
            // A ciphertext of another key, a bad parameter, an unknown code: about the
            // request, not about the key.
            KmsCause::InvalidKeyUsage | KmsCause::InvalidArn | KmsCause::NotAboutTheKey => {
                return None
            }
        })
    }
}

/// The reason an SDK error gives, including "no answer at all".
fn sdk_reason<E, R>(error: &SdkError<E, R>) -> Option<InaccessibleReason>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    InaccessibleReason::of(&KmsFailure::from_sdk(error))
}

/// Classifies an error seen on a data path (Decrypt, GenerateDataKey, a volume attach or an
/// object read) into the reason the key is inaccessible, or `None` when the error is not about
/// the key (a malformed ciphertext, a missing object).
///
/// It looks through the whole `source()` chain for the errors that carry a KMS answer:
/// `keyward_envelope::Error::Kms`, `keyward_storage::Error::Kms`, `aws_sdk_kms::Error`, and the
/// SDK errors of the operations the data paths call.
pub fn classify_kms_error(err: &(dyn std::error::Error + 'static)) -> Option<InaccessibleReason> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(found) = classify_one(e) {
            return found;
        }
        next = e.source();
    }
    None
}

/// `Some(answer)` when `e` is an error type that carries a KMS answer (the answer may be "not
/// about the key"); `None` to keep looking down the chain.
fn classify_one(e: &(dyn std::error::Error + 'static)) -> Option<Option<InaccessibleReason>> {
    if let Some(e) = e.downcast_ref::<keyward_envelope::Error>() {
        return e.kms_failure().map(InaccessibleReason::of);
    }
    if let Some(e) = e.downcast_ref::<keyward_storage::Error>() {
        return e.kms_failure().map(InaccessibleReason::of);
    }
    if let Some(e) = e.downcast_ref::<aws_sdk_kms::Error>() {
        let failure = match e.code() {
            Some(code) => {
                KmsFailure::refused(KmsErrorCode::parse(code), e.message().unwrap_or_default())
            }
            None => KmsFailure::Unreachable {
                detail: e.to_string(),
            },
        };
        return Some(InaccessibleReason::of(&failure));
    }
    macro_rules! sdk {
        ($($op:ty),*) => {$(
            if let Some(e) = e.downcast_ref::<SdkError<$op>>() {
                return Some(sdk_reason(e));
            }
        )*};
    }
    use aws_sdk_kms::operation as op;
    sdk!(
        op::decrypt::DecryptError,
        op::generate_data_key::GenerateDataKeyError,
        op::generate_data_key_without_plaintext::GenerateDataKeyWithoutPlaintextError,
        op::describe_key::DescribeKeyError,
        op::encrypt::EncryptError,
        op::re_encrypt::ReEncryptError,
        op::create_grant::CreateGrantError,
        op::retire_grant::RetireGrantError
    );
    None
}

/// One cluster whose key the monitor watches.
struct Watched {
    key_arn: String,
    /// The cluster's role's KMS client.
    kms: aws_sdk_kms::Client,
    health: KeyHealth,
    /// Bumped on every `watch`/`unwatch`, so the result of a probe of a replaced key is dropped.
    generation: u64,
    /// Serializes the probes of this cluster.
    probing: Arc<tokio::sync::Mutex<()>>,
    /// The ciphertext of the last healthy full probe: the periodic probe decrypts it.
    probe_blob: Option<aws_sdk_kms::primitives::Blob>,
}

/// A change of a cluster's key health, as sent on the monitor's channel.
#[derive(Debug, Clone)]
pub struct HealthChange {
    pub cluster_id: String,
    pub key_arn: String,
    pub previous: KeyHealth,
    pub current: KeyHealth,
}

/// How the monitor runs.
#[derive(Debug, Clone, Copy)]
pub struct MonitorConfig {
    /// Time between the starts of two rounds of probes (a round that takes longer delays the
    /// next one rather than piling up).
    pub interval: Duration,
    /// Probes in flight at once, across all clusters.
    pub concurrency: usize,
}

impl Default for MonitorConfig {
    fn default() -> MonitorConfig {
        MonitorConfig {
            interval: DEFAULT_PROBE_INTERVAL,
            concurrency: DEFAULT_PROBE_CONCURRENCY,
        }
    }
}

struct MonitorInner {
    watched: Mutex<HashMap<String, Watched>>,
    changes: mpsc::UnboundedSender<HealthChange>,
    next_generation: std::sync::atomic::AtomicU64,
    probes: std::sync::atomic::AtomicU64,
}

/// Periodic key-health probes of many clusters on one tokio task. Cheap to clone; the task
/// stops on [`HealthMonitor::shutdown`] or when every clone is dropped.
#[derive(Clone)]
pub struct HealthMonitor {
    inner: Arc<MonitorInner>,
    config: MonitorConfig,
    stop: Arc<tokio::sync::watch::Sender<bool>>,
}

impl HealthMonitor {
    /// Starts the probe loop on the current tokio runtime. The first round runs one interval
    /// after the start (clusters are usually watched with their stored health; call
    /// [`HealthMonitor::check_now`] for an immediate probe).
    pub fn start(config: MonitorConfig) -> (HealthMonitor, mpsc::UnboundedReceiver<HealthChange>) {
        let config = MonitorConfig {
            interval: config.interval.max(Duration::from_millis(10)),
            concurrency: config.concurrency.max(1),
        };
        let (changes, receiver) = mpsc::unbounded_channel();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let monitor = HealthMonitor {
            inner: Arc::new(MonitorInner {
                watched: Mutex::new(HashMap::new()),
                changes,
                next_generation: std::sync::atomic::AtomicU64::new(1),
                probes: std::sync::atomic::AtomicU64::new(0),
            }),
            config,
            stop: Arc::new(stop),
        };
        // The loop holds only a weak reference: dropping every handle ends it.
        let weak = Arc::downgrade(&monitor.inner);
        tokio::spawn(run(weak, config, stopped));
        (monitor, receiver)
    }

    pub fn config(&self) -> MonitorConfig {
        self.config
    }

    /// Watches (or re-watches, with a new key or client) a cluster's key. `initial` is the last
    /// known health (from the database), against which the first probe's change is judged;
    /// `None` is [`HealthStatus::Unknown`].
    pub fn watch(
        &self,
        cluster_id: &str,
        key_arn: &str,
        kms: aws_sdk_kms::Client,
        initial: Option<KeyHealth>,
    ) {
        let generation = self.inner.generation();
        let mut watched = self.inner.watched.lock();
        let probing = watched
            .get(cluster_id)
            .map(|w| w.probing.clone())
            .unwrap_or_default();
        watched.insert(
            cluster_id.to_owned(),
            Watched {
                key_arn: key_arn.to_owned(),
                kms,
                health: initial.unwrap_or_else(KeyHealth::unknown),
                generation,
                probing,
                probe_blob: None,
            },
        );
    }

    /// Stops watching a cluster (deleted). A probe in flight for it is discarded.
    pub fn unwatch(&self, cluster_id: &str) {
        self.inner.watched.lock().remove(cluster_id);
    }

    /// The last known health of a watched cluster.
    pub fn health(&self, cluster_id: &str) -> Option<KeyHealth> {
        self.inner
            .watched
            .lock()
            .get(cluster_id)
            .map(|w| w.health.clone())
    }

    /// How many watched clusters are in each status, every status named (zero included).
    pub fn status_counts(&self) -> [(HealthStatus, u64); 4] {
        let mut counts = [
            (HealthStatus::Unknown, 0),
            (HealthStatus::Healthy, 0),
            (HealthStatus::KeyInaccessible, 0),
            (HealthStatus::KeyDeleted, 0),
        ];
        for watched in self.inner.watched.lock().values() {
            if let Some(slot) = counts.iter_mut().find(|(s, _)| *s == watched.health.status) {
                slot.1 += 1;
            }
        }
        counts
    }

    /// How many clusters are watched.
    pub fn len(&self) -> usize {
        self.inner.watched.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Probes sent to KMS since the start (for measurements).
    pub fn probes_run(&self) -> u64 {
        self.inner.probes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Probes the cluster's key now (after any probe of it in flight), reports a change on the
    /// channel like a periodic probe does, and returns the health. `None` when the cluster is
    /// not watched. A deleted key is not probed again.
    pub async fn check_now(&self, cluster_id: &str) -> Option<KeyHealth> {
        probe_cluster(&self.inner, cluster_id, Probe::Full).await
    }

    /// Stops the probe loop; `check_now` keeps working.
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
    }
}

impl MonitorInner {
    fn generation(&self) -> u64 {
        self.next_generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }
}

async fn run(
    inner: std::sync::Weak<MonitorInner>,
    config: MonitorConfig,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval_at(
        tokio::time::Instant::now() + config.interval,
        config.interval,
    );
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopped.changed() => return,
        }
        let Some(inner) = inner.upgrade() else { return };
        let clusters: Vec<String> = inner.watched.lock().keys().cloned().collect();
        let round =
            futures::stream::iter(clusters).for_each_concurrent(config.concurrency, |cluster_id| {
                let inner = inner.clone();
                async move {
                    probe_cluster(&inner, &cluster_id, Probe::Periodic).await;
                }
            });
        tokio::select! {
            _ = round => {}
            _ = stopped.changed() => return,
        }
    }
}

/// Which probe a cluster gets.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Probe {
    /// The round's: one `Decrypt` when the key was healthy and a probe ciphertext is kept.
    Periodic,
    /// Asked for (a data path saw a KMS error): every check.
    Full,
}

async fn probe_cluster(inner: &MonitorInner, cluster_id: &str, probe: Probe) -> Option<KeyHealth> {
    let probing = inner.watched.lock().get(cluster_id)?.probing.clone();
    let _one_at_a_time = probing.lock().await;
    let (key_arn, kms, generation, previous, blob) = {
        let watched = inner.watched.lock();
        let w = watched.get(cluster_id)?;
        (
            w.key_arn.clone(),
            w.kms.clone(),
            w.generation,
            w.health.clone(),
            w.probe_blob.clone(),
        )
    };
    if previous.status == HealthStatus::KeyDeleted {
        return Some(previous);
    }
    inner
        .probes
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let quick = match (&blob, probe) {
        (Some(blob), Probe::Periodic) if previous.status == HealthStatus::Healthy => {
            quick_probe(&kms, &key_arn, cluster_id, blob).await
        }
        _ => false,
    };
    let (current, blob) = if quick {
        (KeyHealth::healthy(&key_arn), blob)
    } else {
        let (probed, blob) = full_probe(&kms, &key_arn, cluster_id).await;
        (settle(&previous, probed, &key_arn), blob)
    };
    let mut watched = inner.watched.lock();
    let w = watched.get_mut(cluster_id)?;
    if w.generation != generation {
        // Re-watched with another key (or removed and added) meanwhile: this result is stale.
        return Some(w.health.clone());
    }
    w.probe_blob = blob;
    w.health = current.clone();
    if !previous.same_state(&current) {
        let _ = inner.changes.send(HealthChange {
            cluster_id: cluster_id.to_owned(),
            key_arn,
            previous,
            current: current.clone(),
        });
    }
    Some(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_reasons() {
        use InaccessibleReason::*;
        let reason = |code: &str, message: &str| {
            InaccessibleReason::of(&KmsFailure::refused(KmsErrorCode::parse(code), message))
        };
        let unreachable = |detail: &str| KmsFailure::Unreachable {
            detail: detail.into(),
        };
        assert_eq!(reason("DisabledException", ""), Some(Disabled));
        assert_eq!(
            reason(
                "KMSInvalidStateException",
                "arn:aws:kms:us-east-1:111122223333:key/k is pending deletion."
            ),
            Some(PendingDeletion)
        );
        assert_eq!(
            reason("KMSInvalidStateException", "k is pending import."),
            Some(Disabled)
        );
        assert_eq!(reason("AccessDeniedException", ""), Some(AccessDenied));
        assert_eq!(reason("NotFoundException", ""), Some(NotFound));
        assert_eq!(
            InaccessibleReason::of(&unreachable("connection refused")),
            Some(KmsUnreachable)
        );
        assert_eq!(
            InaccessibleReason::of(&KmsFailure::InvalidAnswer {
                detail: "Plaintext".into()
            }),
            Some(KmsUnreachable)
        );
        assert_eq!(reason("InvalidCiphertextException", ""), None);
        // Throttling is transient (AWS: retry), not about the key's access: unreachable for
        // now, never a revocation.
        assert_eq!(reason("ThrottlingException", ""), Some(KmsUnreachable));
    }

    #[test]
    fn classification_looks_through_the_source_chain() {
        let envelope = keyward_envelope::Error::Kms {
            operation: "Decrypt",
            key_id: "k".into(),
            failure: KmsFailure::refused(KmsErrorCode::DisabledException, "k is disabled."),
        };
        assert_eq!(
            classify_kms_error(&envelope),
            Some(InaccessibleReason::Disabled)
        );
        #[derive(Debug, thiserror::Error)]
        #[error("reading a document failed")]
        struct Wrapper(#[source] keyward_envelope::Error);
        let wrapped = Wrapper(keyward_envelope::Error::Kms {
            operation: "Decrypt",
            key_id: "k".into(),
            failure: KmsFailure::refused(KmsErrorCode::AccessDeniedException, "not authorized"),
        });
        assert_eq!(
            classify_kms_error(&wrapped),
            Some(InaccessibleReason::AccessDenied)
        );
        let storage = keyward_storage::Error::Kms {
            operation: "Decrypt",
            failure: KmsFailure::Unreachable {
                detail: "connection refused".into(),
            },
        };
        assert_eq!(
            classify_kms_error(&storage),
            Some(InaccessibleReason::KmsUnreachable)
        );
        assert_eq!(classify_kms_error(&keyward_envelope::Error::Decrypt), None);
        let io = std::io::Error::other("disk full");
        assert_eq!(classify_kms_error(&io), None);
    }

    #[test]
    fn not_found_after_pending_deletion_is_deleted_for_good() {
        let arn = "arn:aws:kms:us-east-1:111122223333:key/1234";
        let reason = |r| KeyHealth::inaccessible(r, String::new());
        let pending = reason(InaccessibleReason::PendingDeletion);
        let not_found = reason(InaccessibleReason::NotFound);
        let deleted = settle(&pending, not_found.clone(), arn);
        assert_eq!(deleted.status, HealthStatus::KeyDeleted);
        assert!(deleted.message.contains(arn));
        // Terminal: nothing brings it back.
        assert_eq!(
            settle(&deleted, KeyHealth::healthy(arn), arn).status,
            HealthStatus::KeyDeleted
        );
        // Not found without a deletion seen: inaccessible, not terminal.
        let after_healthy = settle(&KeyHealth::healthy(arn), not_found.clone(), arn);
        assert_eq!(after_healthy.reason, Some(InaccessibleReason::NotFound));
        let after_unknown = settle(&KeyHealth::unknown(), not_found, arn);
        assert_eq!(after_unknown.status, HealthStatus::KeyInaccessible);
    }

    #[test]
    fn messages_name_the_key_and_the_fix() {
        let arn = "arn:aws:kms:us-east-1:111122223333:key/1234";
        let m = inaccessible_message(InaccessibleReason::Disabled, arn, "c-1", "");
        assert!(
            m.contains(arn) && m.contains("aws kms enable-key --key-id"),
            "{m}"
        );
        let m = inaccessible_message(InaccessibleReason::PendingDeletion, arn, "c-1", "");
        assert!(m.contains("aws kms cancel-key-deletion"), "{m}");
        let m = inaccessible_message(InaccessibleReason::AccessDenied, arn, "c-1", "");
        assert!(m.contains("put-key-policy") && m.contains("c-1"), "{m}");
        let json = serde_json::to_value(KeyHealth::inaccessible(
            InaccessibleReason::PendingDeletion,
            m,
        ))
        .unwrap();
        assert_eq!(json["status"], "key-inaccessible");
        assert_eq!(json["reason"], "pending-deletion");
        assert_eq!(HealthStatus::KeyDeleted.as_str(), "key-deleted");
    }
}
