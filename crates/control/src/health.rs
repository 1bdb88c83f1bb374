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
//! ## How a round is paced
//!
//! Every watched cluster is probed once per interval (default [`DEFAULT_PROBE_INTERVAL`]). The
//! round's probes are **spread evenly over the interval**: with `n` clusters one starts every
//! `interval / n`, each cluster in the same slot of every round (clusters in id order), so each
//! is probed every interval and KMS sees a steady rate rather than a burst at each tick. Two
//! bounds sit on top, both sized to the KMS:
//! - at most [`MonitorConfig::concurrency`] periodic probes in flight: a slow KMS makes the
//!   round late instead of piling up connections (the next slot waits for a permit);
//! - at most [`MonitorConfig::max_rate`] periodic probes started per second: a fleet larger
//!   than `max_rate × interval` stretches the round past the interval (and says so in
//!   [`RoundStats`]) rather than spending more of the account's shared KMS request quota (AWS
//!   counts a cross-account call against the *caller's* account: every cluster's probe is
//!   billed to the platform account's quota).
//!
//! A round that ends late starts the next at once; rounds never overlap. [`HealthMonitor::check_now`]
//! (a data path saw a KMS error) is not held by these bounds: it is the fail-closed path, and
//! it must not queue behind a round. Probes of one cluster never overlap: a periodic probe and a
//! `check_now` of the same cluster run one after the other, so changes are reported in order.
//!
//! ## What is probed once per key, and what never is
//!
//! A key's *state* is the key's: disabled, pending deletion or not found (in one region) is the
//! same answer whichever principal asks. *Permission* is the role's: each cluster has its own
//! role, and the customer's key policy may allow one and not another, so a success as one role
//! says nothing about the next. Hence: when a probe of a cluster finds its key disabled, pending
//! deletion or not found, that verdict is shared with every other cluster watching the same key
//! ARN in the same region — they lock at once (not at their own slot), and their periodic probes
//! take the verdict without a KMS request while it is fresh (less than one interval old). A
//! success is never shared, nor an access denial (the role's), nor an unreachable KMS (a
//! transient, per request); a healthy probe of the key ends the shared verdict, and `check_now`
//! always asks KMS itself.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::types::KeyState;
use keyward_envelope::{KmsCause, KmsErrorCode, KmsFailure};
use keyward_storage::vocab::{now_ms, CLUSTER_CONTEXT_KEY, HEALTH_PROBE, PROBE_CONTEXT_KEY};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::mpsc;
use zeroize::Zeroizing;

/// How often the monitor probes each cluster unless configured otherwise.
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(10);
/// How many periodic probes the monitor runs at once unless configured otherwise: with KMS
/// answering in about 10 ms (AWS within a region), 32 in flight carry 3,200 probes a second,
/// three times the rate of 10,000 clusters at the default interval.
pub const DEFAULT_PROBE_CONCURRENCY: usize = 32;
/// Periodic probes started per second at most unless configured otherwise: 2,000/s is a fifth
/// of AWS KMS's shared quota for symmetric cryptographic requests in most regions (10,000/s;
/// 5,500/s in the smallest, 50,000/s in the largest), leaving the rest to the data paths. At the
/// default interval it covers 20,000 clusters.
pub const DEFAULT_PROBE_MAX_RATE: u32 = 2_000;

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
    full_probe(kms, key_arn, cluster_id, &mut 0).await.0
}

/// [`probe_key`], and when healthy the probe's ciphertext, for the cheap probes that follow;
/// `sent` counts the KMS requests made.
async fn full_probe(
    kms: &aws_sdk_kms::Client,
    key_arn: &str,
    cluster_id: &str,
    sent: &mut u64,
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

    *sent += 1;
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

    *sent += 1;
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
    *sent += 1;
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
    /// The region the client sends to (with the key ARN, what a shared key verdict is about).
    region: String,
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
    /// Periodic probes in flight at once, across all clusters.
    pub concurrency: usize,
    /// Periodic probes started per second at most; 0 for no bound but the interval's spread.
    pub max_rate: u32,
}

impl Default for MonitorConfig {
    fn default() -> MonitorConfig {
        MonitorConfig {
            interval: DEFAULT_PROBE_INTERVAL,
            concurrency: DEFAULT_PROBE_CONCURRENCY,
            max_rate: DEFAULT_PROBE_MAX_RATE,
        }
    }
}

impl MonitorConfig {
    /// The time between the starts of two probes of a round of `clusters`: the interval spread
    /// evenly, never closer than `max_rate` allows.
    pub fn spacing(&self, clusters: usize) -> Duration {
        let spread = self.interval / u32::try_from(clusters.max(1)).unwrap_or(u32::MAX);
        match self.max_rate {
            0 => spread,
            rate => spread.max(Duration::from_secs(1) / rate),
        }
    }
}

/// What the last finished round of periodic probes took.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RoundStats {
    /// Rounds finished since the start.
    pub rounds: u64,
    /// Clusters the last round probed.
    pub clusters: usize,
    /// From the first probe's start to the last probe's end.
    pub duration: Duration,
    /// The latest a probe started after its slot (a KMS slower than `concurrency` allows for).
    pub max_lag: Duration,
    /// KMS requests the last round sent (a shared key verdict costs none).
    pub kms_requests: u64,
    /// The most periodic probes in flight at once during the last round.
    pub max_in_flight: usize,
}

impl RoundStats {
    /// The probes' KMS requests per second over the last round.
    pub fn requests_per_second(&self) -> f64 {
        self.kms_requests as f64 / self.duration.as_secs_f64().max(1e-9)
    }
}

/// A key's state seen by one cluster's probe, shared with the others on the same key.
struct KeyVerdict {
    /// The probe's answer, before [`settle`] (each cluster settles it against its own past).
    health: KeyHealth,
    seen: tokio::time::Instant,
}

struct MonitorInner {
    watched: Mutex<HashMap<String, Watched>>,
    /// Key-state failures by (key ARN, region) — see "What is probed once per key".
    verdicts: Mutex<HashMap<(String, String), KeyVerdict>>,
    changes: mpsc::UnboundedSender<HealthChange>,
    next_generation: std::sync::atomic::AtomicU64,
    probes: std::sync::atomic::AtomicU64,
    /// KMS requests the probes sent, all kinds.
    kms_requests: std::sync::atomic::AtomicU64,
    /// Periodic probes in flight now.
    in_flight: std::sync::atomic::AtomicUsize,
    round: Mutex<RoundStats>,
    interval: Duration,
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
            max_rate: config.max_rate,
        };
        let (changes, receiver) = mpsc::unbounded_channel();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let monitor = HealthMonitor {
            inner: Arc::new(MonitorInner {
                watched: Mutex::new(HashMap::new()),
                verdicts: Mutex::new(HashMap::new()),
                changes,
                next_generation: std::sync::atomic::AtomicU64::new(1),
                probes: std::sync::atomic::AtomicU64::new(0),
                kms_requests: std::sync::atomic::AtomicU64::new(0),
                in_flight: std::sync::atomic::AtomicUsize::new(0),
                round: Mutex::new(RoundStats::default()),
                interval: config.interval,
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
        let region = kms
            .config()
            .region()
            .map(|r| r.to_string())
            .unwrap_or_default();
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
                region,
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

    /// KMS requests the probes sent since the start, every kind (for measurements).
    pub fn kms_requests(&self) -> u64 {
        self.inner
            .kms_requests
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// What the last finished round of periodic probes took.
    pub fn last_round(&self) -> RoundStats {
        *self.inner.round.lock()
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
    let mut next = tokio::time::Instant::now() + config.interval;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = stopped.changed() => return,
        }
        let Some(inner) = inner.upgrade() else { return };
        let started = tokio::time::Instant::now();
        tokio::select! {
            _ = round(&inner, config) => {}
            _ = stopped.changed() => return,
        }
        // One interval after this round started, or at once when it ran late: never two rounds
        // at the same time.
        next = (started + config.interval).max(tokio::time::Instant::now());
    }
}

/// One round of periodic probes, paced as the module documentation says.
async fn round(inner: &Arc<MonitorInner>, config: MonitorConfig) {
    use std::sync::atomic::Ordering::Relaxed;
    // Id order: each cluster keeps its slot from round to round.
    let mut clusters: Vec<String> = inner.watched.lock().keys().cloned().collect();
    clusters.sort_unstable();
    if clusters.is_empty() {
        return;
    }
    let spacing = config.spacing(clusters.len());
    // Verdicts of keys no longer watched (or long recovered) go.
    inner
        .verdicts
        .lock()
        .retain(|_, v| v.seen.elapsed() < config.interval * 2);
    let permits = Arc::new(tokio::sync::Semaphore::new(config.concurrency));
    let requests_before = inner.kms_requests.load(Relaxed);
    let start = tokio::time::Instant::now();
    let mut max_lag = Duration::ZERO;
    let mut max_in_flight = 0;
    // Dropped with the round: a stopped monitor leaves no probe running.
    let mut probes = tokio::task::JoinSet::new();
    for (slot, cluster_id) in clusters.iter().enumerate() {
        let due = start + spacing * u32::try_from(slot).unwrap_or(u32::MAX);
        tokio::time::sleep_until(due).await;
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .expect("the round's semaphore is never closed");
        max_lag = max_lag.max(due.elapsed());
        let in_flight = inner.in_flight.fetch_add(1, Relaxed) + 1;
        max_in_flight = max_in_flight.max(in_flight);
        let (inner, cluster_id) = (inner.clone(), cluster_id.clone());
        probes.spawn(async move {
            let _counted = InFlight(&inner.in_flight);
            probe_cluster(&inner, &cluster_id, Probe::Periodic).await;
            drop(permit);
        });
        while probes.try_join_next().is_some() {}
    }
    while probes.join_next().await.is_some() {}
    let mut stats = inner.round.lock();
    *stats = RoundStats {
        rounds: stats.rounds + 1,
        clusters: clusters.len(),
        duration: start.elapsed(),
        max_lag,
        kms_requests: inner.kms_requests.load(Relaxed) - requests_before,
        max_in_flight,
    };
    if stats.duration > config.interval + spacing {
        tracing::warn!(
            clusters = stats.clusters,
            duration_ms = stats.duration.as_millis() as u64,
            interval_ms = config.interval.as_millis() as u64,
            "a round of key probes took longer than the probe interval"
        );
    }
}

/// Which probe a cluster gets.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Probe {
    /// The round's: a fresh shared key verdict when there is one (no request); else one
    /// `Decrypt` when the key was healthy and a probe ciphertext is kept; else a full probe.
    Periodic,
    /// Asked for (a data path saw a KMS error): every check, always asking KMS.
    Full,
    /// Another cluster's probe found the key's state failing: take its verdict if it is still
    /// fresh, never asking KMS.
    Shared,
}

/// Whether a probe's answer is about the key's state (the same for every principal, so shared
/// with the other clusters on the key) rather than about the role or the moment.
fn is_key_state(health: &KeyHealth) -> bool {
    matches!(
        health.reason,
        Some(
            InaccessibleReason::Disabled
                | InaccessibleReason::PendingDeletion
                | InaccessibleReason::NotFound
        )
    )
}

impl MonitorInner {
    /// A key-state verdict about `key` seen less than one interval ago.
    fn fresh_verdict(&self, key: &(String, String)) -> Option<KeyHealth> {
        let verdicts = self.verdicts.lock();
        let verdict = verdicts.get(key)?;
        (verdict.seen.elapsed() < self.interval).then(|| verdict.health.clone())
    }

    /// Records what a probe that asked KMS learnt about the key: a key-state failure is shared
    /// (and the other clusters on the key told at once); a success ends a shared verdict.
    fn learn(self: &Arc<Self>, key: (String, String), probed: &KeyHealth, from: &str) {
        if probed.is_healthy() {
            self.verdicts.lock().remove(&key);
            return;
        }
        if !is_key_state(probed) {
            return;
        }
        self.verdicts.lock().insert(
            key.clone(),
            KeyVerdict {
                health: probed.clone(),
                seen: tokio::time::Instant::now(),
            },
        );
        let others: Vec<String> = self
            .watched
            .lock()
            .iter()
            .filter(|(id, w)| {
                id.as_str() != from
                    && w.key_arn == key.0
                    && w.region == key.1
                    && !w.health.same_state(probed)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for cluster_id in others {
            let inner = self.clone();
            tokio::spawn(async move {
                probe_cluster(&inner, &cluster_id, Probe::Shared).await;
            });
        }
    }
}

/// Counts a periodic probe in flight for as long as it lives.
struct InFlight<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

async fn probe_cluster(
    inner: &Arc<MonitorInner>,
    cluster_id: &str,
    probe: Probe,
) -> Option<KeyHealth> {
    let probing = inner.watched.lock().get(cluster_id)?.probing.clone();
    let _one_at_a_time = probing.lock().await;
    let (key_arn, region, kms, generation, previous, blob) = {
        let watched = inner.watched.lock();
        let w = watched.get(cluster_id)?;
        (
            w.key_arn.clone(),
            w.region.clone(),
            w.kms.clone(),
            w.generation,
            w.health.clone(),
            w.probe_blob.clone(),
        )
    };
    if previous.status == HealthStatus::KeyDeleted {
        return Some(previous);
    }
    let key = (key_arn.clone(), region);
    let shared = match probe {
        Probe::Full => None,
        Probe::Periodic | Probe::Shared => inner.fresh_verdict(&key),
    };
    let (current, blob, asked) = match (shared, probe) {
        (Some(verdict), _) => (settle(&previous, verdict, &key_arn), None, None),
        // The verdict was ended (a healthy probe of the key) before this cluster's turn.
        (None, Probe::Shared) => return Some(previous),
        (None, _) => {
            inner
                .probes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut sent = 0;
            let quick = match (&blob, probe) {
                (Some(blob), Probe::Periodic) if previous.status == HealthStatus::Healthy => {
                    sent += 1;
                    quick_probe(&kms, &key_arn, cluster_id, blob).await
                }
                _ => false,
            };
            let (probed, blob) = if quick {
                (KeyHealth::healthy(&key_arn), blob)
            } else {
                full_probe(&kms, &key_arn, cluster_id, &mut sent).await
            };
            inner
                .kms_requests
                .fetch_add(sent, std::sync::atomic::Ordering::Relaxed);
            (
                settle(&previous, probed.clone(), &key_arn),
                blob,
                Some(probed),
            )
        }
    };
    {
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
    }
    if let Some(probed) = asked {
        inner.learn(key, &probed, cluster_id);
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
