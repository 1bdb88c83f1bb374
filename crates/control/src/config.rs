//! How the control plane is set up ([`ControlConfig`]), checked before anything starts, and the
//! AWS SDK configuration the operator's calls are made with.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use aws_config::SdkConfig;
use serde::Serialize;

use crate::clock::Clock;
use crate::error::{Error, Result};

/// How long the backups of a deleted cluster are kept by default: 30 days.
pub const DEFAULT_BACKUP_RETENTION: Duration = Duration::from_secs(30 * 86_400);

/// The replica id of a control plane that runs alone (`keyward up`).
pub const DEFAULT_REPLICA_ID: &str = "local";

/// KMS prices, in micro-dollars (1 USD = 1,000,000). The default is AWS's public price for
/// symmetric keys: $1 per key-month, $0.03 per 10,000 requests, 20,000 free requests a month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct KmsPrices {
    pub key_month_micro_usd: u64,
    pub per_10k_requests_micro_usd: u64,
    /// Per AWS account and calendar month.
    pub free_requests_per_month: u64,
}

impl Default for KmsPrices {
    fn default() -> KmsPrices {
        KmsPrices {
            key_month_micro_usd: 1_000_000,
            per_10k_requests_micro_usd: 30_000,
            free_requests_per_month: 20_000,
        }
    }
}

/// How notifications are sent. Defaults in [`NotifyConfig::default`].
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// Let webhooks reach loopback, private and link-local addresses. Off by default: on a
    /// shared host such a webhook is a door into the platform's network (SSRF).
    pub allow_private_destinations: bool,
    /// Destinations one organization may have (default 20).
    pub max_destinations_per_org: usize,
    /// Attempts of one delivery before it is given up (default 8).
    pub max_attempts: u32,
    /// The backoff's first ceiling (default 1 s); it doubles with each failed attempt.
    pub first_retry: Duration,
    /// The backoff's largest ceiling (default 10 min).
    pub max_retry: Duration,
    /// How long one attempt may take, connection included (default 10 s).
    pub attempt_timeout: Duration,
    /// Attempts in flight at once (default 16).
    pub concurrency: usize,
    /// Attempts in flight at once to one destination (default 2).
    pub per_destination_concurrency: usize,
    /// Notifications a destination may get at once (default 10).
    pub rate_burst: u32,
    /// One more every this long (default 6 s: 10 a minute).
    pub rate_refill: Duration,
}

impl Default for NotifyConfig {
    fn default() -> NotifyConfig {
        NotifyConfig {
            allow_private_destinations: false,
            max_destinations_per_org: 20,
            max_attempts: 8,
            first_retry: Duration::from_secs(1),
            max_retry: Duration::from_secs(600),
            attempt_timeout: Duration::from_secs(10),
            concurrency: 16,
            per_destination_concurrency: 2,
            rate_burst: 10,
            rate_refill: Duration::from_secs(6),
        }
    }
}

impl NotifyConfig {
    pub(crate) fn check(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::InvalidRequest(format!("notifications: {what}")));
        if self.max_attempts == 0 || self.max_attempts > 50 {
            return bad("max_attempts must be from 1 to 50");
        }
        if self.concurrency == 0 || self.per_destination_concurrency == 0 {
            return bad("concurrency and per_destination_concurrency must be positive");
        }
        if self.rate_burst == 0 || self.rate_refill.is_zero() {
            return bad("rate_burst and rate_refill must be positive");
        }
        if self.attempt_timeout.is_zero() || self.first_retry.is_zero() {
            return bad("attempt_timeout and first_retry must be positive");
        }
        Ok(())
    }
}

/// How the control plane is set up. Build it with [`ControlConfig::embedded`] and change fields.
pub struct ControlConfig {
    /// `volumes/<cluster>/...`, `objects/<cluster>/{documents,backups}/...`, and by default the
    /// database.
    pub data_dir: PathBuf,
    /// `sqlite:<path>`, `sqlite::memory:` or `postgres://user:pass@host:port/db`.
    pub database_url: String,
    /// The embedded KMS/IAM/STS endpoint; `None` for AWS itself.
    pub aws_endpoint_url: Option<String>,
    pub platform_account_id: String,
    pub operator_access_key_id: String,
    /// Never logged; not in `Debug`.
    pub operator_secret_access_key: String,
    /// The region of clusters created without one.
    pub default_region: String,
    /// How often every cluster's key is probed.
    pub probe_interval: Duration,
    /// Periodic key probes in flight at once (see [`crate::health`]: sized to the KMS).
    pub probe_concurrency: usize,
    /// Periodic key probes started per second at most (the probes' share of the account's KMS
    /// request quota); 0 for no bound but the interval's spread.
    pub probe_max_rate: u32,
    pub engine_disks: u32,
    pub search_disks: u32,
    /// Size of each disk; a positive multiple of 4096.
    pub disk_size_bytes: u64,
    /// Where the NBD exports listen.
    pub nbd_host: IpAddr,
    /// How long the KMS audit keeps a record (CloudTrail's 90 days by default).
    pub audit_retention: Duration,
    /// After how long the audit's successful probe requests are folded into hourly counts (a day
    /// by default); denied calls, errors and data paths stay one by one until retention.
    pub audit_compaction_age: Duration,
    /// How long the backups of a deleted cluster are kept (listed and restorable by its
    /// organization) before the operator deletes them; zero deletes them with the cluster.
    pub backup_retention: Duration,
    /// The clock retention runs on (the wall clock unless a test moves it).
    pub clock: Clock,
    /// The KMS prices usage is charged at (AWS's public prices by default).
    pub kms_prices: KmsPrices,
    /// How often the key-rotated alarm asks KMS which material is current (one `DescribeKey`
    /// per cluster; hourly by default, 720 requests a month).
    pub key_material_check_interval: Duration,
    /// Whether every KMS request of the clusters' roles is recorded in the audit (on by default;
    /// off only to measure what the audit costs a data path).
    pub audit_enabled: bool,
    /// How alarm notifications are sent (webhooks, their bounds and the SSRF guard).
    pub notifications: NotifyConfig,
    /// Where documents and backups live: under `data_dir` (the default) or in an S3 bucket that
    /// several replicas share.
    pub objects: ObjectsConfig,
    /// This replica's identity among the control-plane replicas sharing the database (stable
    /// across its restarts: the leases and disks it held are found by it). `keyward up` is the
    /// one replica `local`.
    pub replica_id: String,
    /// Where this replica's API can be reached, as the replica list shows it.
    pub replica_api_url: String,
    /// How long a cluster lease lasts without renewal (see `lease.rs`): a replica that dies is
    /// replaced on its clusters within about this plus a quarter of it. `None`: the probe
    /// interval, so a dead replica's clusters are probed again within two intervals.
    pub lease_ttl: Option<Duration>,
}

/// Where the control plane keeps documents and backups. The same code runs on both: only the
/// `object_store` backend differs (see [`keyward_storage::objects`]).
#[derive(Default)]
pub enum ObjectsConfig {
    /// `<data_dir>/objects/<cluster>/{documents,backups}/...`: one process alone.
    #[default]
    Local,
    /// `<cluster>/{documents,backups}/...` in a bucket: what several replicas share.
    S3(keyward_storage::objects::S3Config),
}

impl std::fmt::Debug for ObjectsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ObjectsConfig::Local => f.write_str("Local"),
            // The credentials (if given) stay out: only where the bucket is.
            ObjectsConfig::S3(s3) => f
                .debug_struct("S3")
                .field("endpoint", &s3.endpoint)
                .field("region", &s3.region)
                .field("bucket", &s3.bucket)
                .field("credentials", &s3.credentials.as_ref().map(|_| "<given>"))
                .finish(),
        }
    }
}

impl std::fmt::Debug for ControlConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlConfig")
            .field("data_dir", &self.data_dir)
            .field("aws_endpoint_url", &self.aws_endpoint_url)
            .field("platform_account_id", &self.platform_account_id)
            .field("operator_access_key_id", &self.operator_access_key_id)
            .field("operator_secret_access_key", &"<redacted>")
            .field("default_region", &self.default_region)
            .field("probe_interval", &self.probe_interval)
            .field("probe_concurrency", &self.probe_concurrency)
            .field("probe_max_rate", &self.probe_max_rate)
            .field("engine_disks", &self.engine_disks)
            .field("search_disks", &self.search_disks)
            .field("disk_size_bytes", &self.disk_size_bytes)
            .field("nbd_host", &self.nbd_host)
            .field("audit_retention", &self.audit_retention)
            .field("audit_compaction_age", &self.audit_compaction_age)
            .field("backup_retention", &self.backup_retention)
            .field("kms_prices", &self.kms_prices)
            .field(
                "key_material_check_interval",
                &self.key_material_check_interval,
            )
            .field("audit_enabled", &self.audit_enabled)
            .field("notifications", &self.notifications)
            .field("objects", &self.objects)
            .field("replica_id", &self.replica_id)
            .field("replica_api_url", &self.replica_api_url)
            .field("lease_ttl", &self.lease_ttl)
            .finish_non_exhaustive()
    }
}

impl ControlConfig {
    /// The embedded setup's defaults: SQLite in `data_dir`, the platform account `111122223333`,
    /// `us-east-1`, probes every 10 s, 3 + 3 disks of 64 MiB, NBD on 127.0.0.1, backups of a
    /// deleted cluster kept [`DEFAULT_BACKUP_RETENTION`] (30 days), AWS's public KMS prices.
    pub fn embedded(
        data_dir: impl Into<PathBuf>,
        endpoint: impl Into<String>,
        operator_access_key_id: impl Into<String>,
        operator_secret_access_key: impl Into<String>,
    ) -> ControlConfig {
        let data_dir = data_dir.into();
        ControlConfig {
            database_url: format!("sqlite:{}", data_dir.join("control.db").display()),
            data_dir,
            aws_endpoint_url: Some(endpoint.into()),
            platform_account_id: "111122223333".into(),
            operator_access_key_id: operator_access_key_id.into(),
            operator_secret_access_key: operator_secret_access_key.into(),
            default_region: "us-east-1".into(),
            probe_interval: Duration::from_secs(10),
            probe_concurrency: crate::health::DEFAULT_PROBE_CONCURRENCY,
            probe_max_rate: crate::health::DEFAULT_PROBE_MAX_RATE,
            engine_disks: 3,
            search_disks: 3,
            disk_size_bytes: 64 << 20,
            nbd_host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            audit_retention: Duration::from_secs(90 * 24 * 3600),
            audit_compaction_age: Duration::from_secs(24 * 3600),
            backup_retention: DEFAULT_BACKUP_RETENTION,
            clock: Clock::default(),
            kms_prices: KmsPrices::default(),
            key_material_check_interval: Duration::from_secs(3600),
            audit_enabled: true,
            notifications: NotifyConfig::default(),
            objects: ObjectsConfig::Local,
            replica_id: DEFAULT_REPLICA_ID.into(),
            replica_api_url: String::new(),
            lease_ttl: None,
        }
    }

    /// The cluster lease's length (see [`ControlConfig::lease_ttl`]).
    pub fn lease_ttl(&self) -> Duration {
        self.lease_ttl.unwrap_or(self.probe_interval)
    }

    pub(crate) fn check(&self) -> Result<()> {
        let bad = |what: String| Err(Error::InvalidRequest(what));
        if self.disk_size_bytes == 0 || !self.disk_size_bytes.is_multiple_of(4096) {
            return bad(format!(
                "disk_size_bytes {} must be a positive multiple of 4096",
                self.disk_size_bytes
            ));
        }
        if self.backup_retention > Duration::from_secs(10 * 365 * 86_400) {
            return bad(format!(
                "backup_retention {:?} is longer than ten years",
                self.backup_retention
            ));
        }
        if self.probe_interval.is_zero() {
            return bad("probe_interval must be positive".into());
        }
        if self.key_material_check_interval.is_zero() {
            return bad("key_material_check_interval must be positive".into());
        }
        if self.lease_ttl().as_millis() < 200 {
            return bad("lease_ttl must be at least 200 ms".into());
        }
        if self.probe_concurrency == 0 {
            return bad("probe_concurrency must be positive".into());
        }
        if self.audit_retention.is_zero() {
            return bad("audit_retention must be positive".into());
        }
        if self.platform_account_id.len() != 12
            || !self.platform_account_id.bytes().all(|b| b.is_ascii_digit())
        {
            return bad(format!(
                "platform_account_id {:?} must be 12 digits",
                self.platform_account_id
            ));
        }
        self.notifications.check()?;
        check_replica_id(&self.replica_id)?;
        if let ObjectsConfig::S3(s3) = &self.objects {
            check_bucket(&s3.bucket)?;
            check_region(&s3.region)?;
        }
        check_region(&self.default_region)
    }
}

pub(crate) async fn sdk_config(config: &ControlConfig) -> SdkConfig {
    let credentials = aws_credential_types::Credentials::new(
        config.operator_access_key_id.clone(),
        config.operator_secret_access_key.clone(),
        None,
        None,
        "keyward-operator",
    );
    // Bounded waits: a probe or a data path must learn quickly that KMS does not answer.
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(Duration::from_secs(5))
        .operation_timeout(Duration::from_secs(15))
        .build();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(config.default_region.clone()))
        .credentials_provider(credentials)
        .timeout_config(timeouts);
    if let Some(endpoint) = &config.aws_endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    loader.load().await
}

/// A replica id: 1 to 64 ASCII letters, digits, `-`, `_` or `.` (it is written into leases and
/// logs, so nothing that needs quoting).
pub fn check_replica_id(id: &str) -> Result<()> {
    let ok = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidRequest(format!(
            "replica id {id:?} must be 1 to 64 ASCII letters, digits, '-', '_' or '.'"
        )))
    }
}

/// An S3 bucket name as S3 accepts them: 3 to 63 lowercase letters, digits, `-` and `.`,
/// starting and ending with a letter or digit.
fn check_bucket(bucket: &str) -> Result<()> {
    let ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidRequest(format!(
            "{bucket:?} is not an S3 bucket name (3 to 63 lowercase letters, digits, '-' and '.')"
        )))
    }
}

/// A region name as AWS spells them: `us-east-1`, `eu-central-2`, `us-gov-west-1`.
pub(crate) fn check_region(region: &str) -> Result<()> {
    let parts: Vec<&str> = region.split('-').collect();
    let ok = parts.len() >= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidRequest(format!(
            "{region:?} is not an AWS region name (like us-east-1)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions() {
        for good in [
            "us-east-1",
            "eu-central-2",
            "us-gov-west-1",
            "ap-southeast-4",
        ] {
            check_region(good).unwrap();
        }
        for bad in ["", "us", "us-east", "US-EAST-1", "us-east-x", "us--1"] {
            assert!(check_region(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn backup_retention_defaults_to_30_days_and_is_bounded() {
        let mut c =
            ControlConfig::embedded("keyward-data", "http://127.0.0.1:1", "AKIAOPERATOR", "s");
        assert_eq!(c.backup_retention, Duration::from_secs(30 * 86_400));
        c.check().unwrap();
        c.backup_retention = Duration::ZERO;
        c.check().unwrap();
        c.backup_retention = Duration::from_secs(11 * 365 * 86_400);
        let refused = c.check().unwrap_err();
        assert!(
            refused.to_string().contains("backup_retention"),
            "{refused}"
        );
    }

    #[test]
    fn replica_ids_and_bucket_names_are_checked() {
        for good in ["local", "r-0123abcd", "node_1.eu"] {
            check_replica_id(good).unwrap();
        }
        for bad in ["", "no spaces", "a/b", &"r".repeat(65)] {
            assert!(check_replica_id(bad).is_err(), "{bad:?}");
        }
        for good in ["keyward-objects", "abc", "a.b-c1"] {
            check_bucket(good).unwrap();
        }
        for bad in [
            "ab",
            "Upper",
            "-lead",
            "trail-",
            "under_score",
            &"b".repeat(64),
        ] {
            assert!(check_bucket(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn config_debug_hides_the_secret() {
        let c = ControlConfig::embedded(
            "/tmp/x",
            "http://127.0.0.1:1",
            "AKIAOPERATOR",
            "s3cr3t-value",
        );
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cr3t-value"));
        assert!(shown.contains("AKIAOPERATOR"));
        let mut c = c;
        c.objects = ObjectsConfig::S3(keyward_storage::objects::S3Config {
            endpoint: None,
            region: "us-east-1".into(),
            bucket: "keyward-objects".into(),
            credentials: Some(keyward_storage::objects::S3Credentials {
                access_key_id: "AKIAS3".into(),
                secret_access_key: zeroize::Zeroizing::new("s3-secret-value".into()),
                session_token: None,
            }),
        });
        let shown = format!("{c:?}");
        assert!(shown.contains("keyward-objects") && !shown.contains("s3-secret-value"));
    }
}
