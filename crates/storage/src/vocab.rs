//! The platform's small vocabulary, written once: the storage classes, the encryption-context
//! keys every data key is bound with, the probe context, and the clock the stored timestamps use.
//!
//! Every crate above (the control plane, the REST API through it) takes these from here; no
//! other file spells `keyward:cluster` or `engine-disk`.

use std::fmt;

/// Encryption-context key naming the cluster an item (object, volume, probe) belongs to.
pub const CLUSTER_CONTEXT_KEY: &str = "keyward:cluster";
/// Encryption-context key naming the storage class of an item.
pub const CLASS_CONTEXT_KEY: &str = "keyward:class";
/// Encryption-context key naming an object's key (its path under the class's directory).
pub const OBJECT_CONTEXT_KEY: &str = "keyward:object";
/// Encryption-context key naming a volume; set by keyward to the volume id, and the one pair an
/// attach grant is constrained to.
pub const VOLUME_ID_CONTEXT_KEY: &str = "keyward:volume-id";
/// Encryption-context key naming what a cluster's own secret is for (not an object or a
/// volume): [`NBD_CA_PURPOSE`].
pub const PURPOSE_CONTEXT_KEY: &str = "keyward:purpose";
/// [`PURPOSE_CONTEXT_KEY`]'s value on the wrapped private key of a cluster's NBD CA.
pub const NBD_CA_PURPOSE: &str = "nbd-ca";
/// Encryption-context key that marks a probe's throw-away data key, so the customer can
/// recognise keyward's probes in CloudTrail. Its value says which probe:
/// [`HEALTH_PROBE`] or [`ASSOCIATION_PROBE`].
pub const PROBE_CONTEXT_KEY: &str = "keyward:probe";
/// [`PROBE_CONTEXT_KEY`]'s value in the key-health monitor's probes.
pub const HEALTH_PROBE: &str = "key-health";
/// [`PROBE_CONTEXT_KEY`]'s value in the association checks (followed by the cluster's region).
pub const ASSOCIATION_PROBE: &str = "association";
/// The grant name of the association's `CreateGrant` dry runs (a grant has no encryption
/// context), so they too are recognisable as probes. One of them is refused by design: it checks
/// that the role cannot grant anyone else.
pub const PROBE_GRANT_NAME: &str = "keyward-association-probe";

/// The four storage classes of a cluster (DESIGN.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StorageClass {
    Documents,
    Backups,
    EngineDisk,
    SearchDisk,
}

impl StorageClass {
    pub const ALL: [StorageClass; 4] = [
        StorageClass::Documents,
        StorageClass::Backups,
        StorageClass::EngineDisk,
        StorageClass::SearchDisk,
    ];

    /// The name used in paths, encryption contexts, the database and on the console.
    pub fn as_str(self) -> &'static str {
        match self {
            StorageClass::Documents => "documents",
            StorageClass::Backups => "backups",
            StorageClass::EngineDisk => "engine-disk",
            StorageClass::SearchDisk => "search-disk",
        }
    }

    /// Disks are volumes; documents and backups are objects.
    pub fn is_volume_class(self) -> bool {
        matches!(self, StorageClass::EngineDisk | StorageClass::SearchDisk)
    }

    pub fn parse(name: &str) -> Option<StorageClass> {
        StorageClass::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl fmt::Display for StorageClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The storage classes kept as objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectClass {
    /// Document handling storage.
    Documents,
    /// Backup storage.
    Backups,
}

impl ObjectClass {
    /// The storage class this is.
    pub fn storage_class(self) -> StorageClass {
        match self {
            ObjectClass::Documents => StorageClass::Documents,
            ObjectClass::Backups => StorageClass::Backups,
        }
    }

    /// The name used in paths and in the encryption context.
    pub fn as_str(self) -> &'static str {
        self.storage_class().as_str()
    }
}

/// Milliseconds since the Unix epoch: the one clock of stored timestamps (0 if the system clock
/// is before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `2026-11-29T04:12:00Z`: unix milliseconds as CloudTrail's `eventTime` (UTC, whole seconds).
pub fn iso8601(ms: i64) -> String {
    let seconds = ms.div_euclid(1000);
    let (days, of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's `civil_from_days`).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

#[cfg(test)]
mod time_tests {
    use super::iso8601;

    #[test]
    fn iso8601_is_cloudtrails_event_time() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(1_774_292_310_999), "2026-03-23T18:58:30Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601(4_107_542_399_000), "2100-02-28T23:59:59Z");
    }
}
