//! The control plane's operational metrics, and the Prometheus text format they are shown in.
//!
//! What is counted here: every KMS request made as a cluster's role, by operation and result,
//! with its latency (told by the audit's interceptor, which times and classifies each attempt
//! once, through [`KmsObserver`](crate::audit::KmsObserver)), and
//! the plaintext bytes the document paths encrypt and decrypt. What is read when asked: the
//! data-key caches' hits and misses (each cluster's cache counts its own), the clusters' key
//! states (the health monitor), the audit records dropped. [`ControlPlane::write_metrics`]
//! (the facade's, in `plane.rs`, since it reads the runtimes too) writes them all.
//!
//! Counting never blocks a KMS call: atomics, and one short lock of a small map whose keys are
//! the KMS operations keyward calls (a bounded set).
//!
//! Also the webhook notifications by result (delivered, retried, failed, suppressed).
//!
//! Not here: the API's own request counts (`keyward-api` adds them to the same page), alarm
//! states and costs.
//!
//! [`ControlPlane::write_metrics`]: crate::ControlPlane::write_metrics

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use crate::audit::{AuditResult, KmsObserver};

/// Upper bounds (seconds) of the KMS latency histogram's buckets; `+Inf` follows.
pub const KMS_LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Distinct operation names counted at most; past it an unseen name counts as `other`. KMS has
/// about fifty operations, keyward calls a dozen: the bound only guards the map against a name
/// that is not one.
const MAX_OPERATIONS: usize = 128;

/// One operation's requests and latencies.
#[derive(Default)]
struct OperationStats {
    /// By result: success, error, unreachable.
    results: [u64; 3],
    /// Not cumulative: `buckets[i]` counts latencies in `(bound[i-1], bound[i]]`; the last slot
    /// is past every bound.
    buckets: [u64; KMS_LATENCY_BUCKETS.len() + 1],
    sum: Duration,
    count: u64,
}

/// The counters, shared by every role session's interceptor.
#[derive(Default)]
pub(crate) struct Metrics {
    kms: Mutex<BTreeMap<String, OperationStats>>,
    documents_encrypted: AtomicU64,
    documents_decrypted: AtomicU64,
    /// Notification deliveries, by [`DeliveryOutcome`].
    notifications: [AtomicU64; 4],
}

/// How one notification attempt (or a notification never attempted) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeliveryOutcome {
    /// Answered 2xx.
    Delivered,
    /// Failed; a retry is scheduled.
    Retried,
    /// Failed its last attempt: given up.
    Failed,
    /// Not sent: the destination's rate limit was spent (a summary follows).
    Suppressed,
}

impl DeliveryOutcome {
    const ALL: [DeliveryOutcome; 4] = [
        DeliveryOutcome::Delivered,
        DeliveryOutcome::Retried,
        DeliveryOutcome::Failed,
        DeliveryOutcome::Suppressed,
    ];

    fn as_str(self) -> &'static str {
        match self {
            DeliveryOutcome::Delivered => "delivered",
            DeliveryOutcome::Retried => "retried",
            DeliveryOutcome::Failed => "failed",
            DeliveryOutcome::Suppressed => "suppressed",
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn result_slot(result: AuditResult) -> usize {
    match result {
        AuditResult::Success => 0,
        AuditResult::Error => 1,
        AuditResult::Unreachable => 2,
    }
}

const RESULTS: [AuditResult; 3] = [
    AuditResult::Success,
    AuditResult::Error,
    AuditResult::Unreachable,
];

impl KmsObserver for Metrics {
    fn kms_request(&self, operation: &str, result: AuditResult, latency: Duration) {
        Metrics::kms_request(self, operation, result, latency);
    }
}

impl Metrics {
    /// Counts one KMS request attempt.
    pub(crate) fn kms_request(&self, operation: &str, result: AuditResult, latency: Duration) {
        let seconds = latency.as_secs_f64();
        let bucket = KMS_LATENCY_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(KMS_LATENCY_BUCKETS.len());
        let mut kms = self.kms.lock();
        let name = if kms.contains_key(operation) || kms.len() < MAX_OPERATIONS {
            operation
        } else {
            "other"
        };
        let stats = match kms.get_mut(name) {
            Some(stats) => stats,
            None => kms.entry(name.to_owned()).or_default(),
        };
        stats.results[result_slot(result)] += 1;
        stats.buckets[bucket] += 1;
        stats.sum += latency;
        stats.count += 1;
    }

    /// Counts the plaintext bytes of one document stored.
    pub(crate) fn document_encrypted(&self, bytes: u64) {
        self.documents_encrypted.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts the plaintext bytes of one document read.
    pub(crate) fn document_decrypted(&self, bytes: u64) {
        self.documents_decrypted.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts one notification outcome.
    pub(crate) fn notification(&self, outcome: DeliveryOutcome) {
        self.notifications[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Writes the KMS and document families.
    pub(crate) fn write(&self, out: &mut Exposition) {
        let kms = self.kms.lock();
        out.family(
            "keyward_kms_requests_total",
            "counter",
            "KMS requests made as a cluster's role, by operation and result (each retry counts).",
        );
        for (operation, stats) in kms.iter() {
            for result in RESULTS {
                out.sample(
                    "keyward_kms_requests_total",
                    &[("operation", operation), ("result", result.as_str())],
                    stats.results[result_slot(result)] as f64,
                );
            }
        }
        out.family(
            "keyward_kms_request_duration_seconds",
            "histogram",
            "Latency of KMS requests made as a cluster's role, by operation.",
        );
        for (operation, stats) in kms.iter() {
            let mut cumulative = 0;
            for (bound, count) in KMS_LATENCY_BUCKETS.iter().zip(stats.buckets) {
                cumulative += count;
                out.sample(
                    "keyward_kms_request_duration_seconds_bucket",
                    &[("operation", operation), ("le", &bound.to_string())],
                    cumulative as f64,
                );
            }
            out.sample(
                "keyward_kms_request_duration_seconds_bucket",
                &[("operation", operation), ("le", "+Inf")],
                stats.count as f64,
            );
            out.sample(
                "keyward_kms_request_duration_seconds_sum",
                &[("operation", operation)],
                stats.sum.as_secs_f64(),
            );
            out.sample(
                "keyward_kms_request_duration_seconds_count",
                &[("operation", operation)],
                stats.count as f64,
            );
        }
        drop(kms);
        out.family(
            "keyward_plaintext_bytes_total",
            "counter",
            "Plaintext bytes encrypted and decrypted on the data paths, by storage class and direction.",
        );
        for (direction, counter) in [
            ("encrypt", &self.documents_encrypted),
            ("decrypt", &self.documents_decrypted),
        ] {
            out.sample(
                "keyward_plaintext_bytes_total",
                &[("class", "documents"), ("direction", direction)],
                counter.load(Ordering::Relaxed) as f64,
            );
        }
        out.family(
            "keyward_notification_deliveries_total",
            "counter",
            "Webhook notification attempts by result (delivered, retried, failed = given up), and notifications suppressed by a destination's rate limit.",
        );
        for outcome in DeliveryOutcome::ALL {
            out.sample(
                "keyward_notification_deliveries_total",
                &[("result", outcome.as_str())],
                self.notifications[outcome as usize].load(Ordering::Relaxed) as f64,
            );
        }
    }
}

/// A page in Prometheus's text exposition format (version 0.0.4): each family's `# HELP` and
/// `# TYPE` lines, then its samples, label values escaped.
#[derive(Default)]
pub struct Exposition {
    text: String,
}

/// The `Content-Type` of an [`Exposition`].
pub const EXPOSITION_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Exposition {
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// Starts a family: `kind` is `counter`, `gauge` or `histogram`. Its samples follow.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    /// One sample of the family last started.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                self.text.push_str(label);
                self.text.push_str("=\"");
                for c in value.chars() {
                    match c {
                        '\\' => self.text.push_str("\\\\"),
                        '"' => self.text.push_str("\\\""),
                        '\n' => self.text.push_str("\\n"),
                        c => self.text.push(c),
                    }
                }
                self.text.push('"');
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }

    /// The page.
    pub fn into_text(self) -> String {
        self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_and_help_text_too() {
        let mut out = Exposition::new();
        out.family("x_total", "counter", "a\\b\nc");
        out.sample("x_total", &[("a", "q\"uo\\te\nline"), ("b", "plain")], 3.0);
        out.sample("x_total", &[], 0.5);
        assert_eq!(
            out.into_text(),
            "# HELP x_total a\\\\b\\nc\n# TYPE x_total counter\n\
             x_total{a=\"q\\\"uo\\\\te\\nline\",b=\"plain\"} 3\nx_total 0.5\n"
        );
    }

    #[test]
    fn latencies_fall_in_cumulative_buckets() {
        let metrics = Metrics::default();
        metrics.kms_request("Decrypt", AuditResult::Success, Duration::from_micros(900));
        metrics.kms_request("Decrypt", AuditResult::Error, Duration::from_millis(30));
        metrics.kms_request("Decrypt", AuditResult::Success, Duration::from_secs(20));
        let mut out = Exposition::new();
        metrics.write(&mut out);
        let text = out.into_text();
        for line in [
            "keyward_kms_requests_total{operation=\"Decrypt\",result=\"success\"} 2",
            "keyward_kms_requests_total{operation=\"Decrypt\",result=\"error\"} 1",
            "keyward_kms_requests_total{operation=\"Decrypt\",result=\"unreachable\"} 0",
            "keyward_kms_request_duration_seconds_bucket{operation=\"Decrypt\",le=\"0.001\"} 1",
            "keyward_kms_request_duration_seconds_bucket{operation=\"Decrypt\",le=\"0.025\"} 1",
            "keyward_kms_request_duration_seconds_bucket{operation=\"Decrypt\",le=\"0.05\"} 2",
            "keyward_kms_request_duration_seconds_bucket{operation=\"Decrypt\",le=\"10\"} 2",
            "keyward_kms_request_duration_seconds_bucket{operation=\"Decrypt\",le=\"+Inf\"} 3",
            "keyward_kms_request_duration_seconds_count{operation=\"Decrypt\"} 3",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }

    #[test]
    fn operation_names_are_bounded() {
        let metrics = Metrics::default();
        for i in 0..MAX_OPERATIONS + 10 {
            metrics.kms_request(&format!("Op{i}"), AuditResult::Success, Duration::ZERO);
        }
        let kms = metrics.kms.lock();
        assert_eq!(kms.len(), MAX_OPERATIONS + 1);
        assert_eq!(kms["other"].count, 10);
    }
}
