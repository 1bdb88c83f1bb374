//! What the facade returns about clusters and their storage.

use serde::{Deserialize, Serialize};

use crate::association::AssociationReport;
use crate::error::{Error, Result};
use crate::health::KeyHealth;

/// A request to create a cluster.
#[derive(Debug, Clone, Deserialize)]
pub struct NewCluster {
    pub name: String,
    /// `None`: the control plane's default region.
    #[serde(default)]
    pub region: Option<String>,
    pub encryption: Encryption,
}

/// Whose key encrypts the cluster's data.
#[derive(Debug, Serialize, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Encryption {
    /// The customer's own KMS key, associated after the cluster is created.
    External,
    /// A key the platform creates and owns in its own account.
    Internal,
}

impl Encryption {
    pub fn as_str(self) -> &'static str {
        match self {
            Encryption::External => "external",
            Encryption::Internal => "internal",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Encryption> {
        match s {
            "external" => Ok(Encryption::External),
            "internal" => Ok(Encryption::Internal),
            other => Err(Error::internal(format!(
                "unknown encryption {other:?} in the database"
            ))),
        }
    }
}

#[derive(Debug, Serialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ClusterState {
    /// Created; waits for its KMS key (external encryption).
    AwaitingKey,
    /// A key is applied; the operator is making its storage.
    Provisioning,
    /// Every storage class is provisioned under the key.
    Ready,
    /// A new key is applied; every data key is being re-wrapped under it.
    Rewrapping,
    /// Being deleted.
    Deleting,
    /// Stopped for good (a restore whose backup is gone); `failure` says why. Nothing is retried:
    /// delete the cluster.
    Failed,
}

impl ClusterState {
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterState::AwaitingKey => "awaiting-key",
            ClusterState::Provisioning => "provisioning",
            ClusterState::Ready => "ready",
            ClusterState::Rewrapping => "rewrapping",
            ClusterState::Deleting => "deleting",
            ClusterState::Failed => "failed",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<ClusterState> {
        Ok(match s {
            "awaiting-key" => ClusterState::AwaitingKey,
            "provisioning" => ClusterState::Provisioning,
            "ready" => ClusterState::Ready,
            "rewrapping" => ClusterState::Rewrapping,
            "deleting" => ClusterState::Deleting,
            "failed" => ClusterState::Failed,
            other => {
                return Err(Error::internal(format!(
                    "unknown cluster state {other:?} in the database"
                )))
            }
        })
    }
}

/// A key change in progress.
#[derive(Debug, Serialize, Clone, PartialEq, Eq)]
pub struct RewrapProgress {
    pub from_key_arn: String,
    pub to_key_arn: String,
    /// Data keys re-wrapped so far.
    pub done: u64,
    /// Data keys to re-wrap in all (objects and disks).
    pub total: u64,
}

#[derive(Debug, Serialize, Clone)]
pub struct Cluster {
    pub id: String,
    pub name: String,
    pub region: String,
    pub encryption: Encryption,
    /// The role the customer's key policy names.
    pub role_arn: String,
    pub key_arn: Option<String>,
    pub state: ClusterState,
    pub health: KeyHealth,
    pub rewrap: Option<RewrapProgress>,
    /// Why the cluster is `failed`; `None` otherwise.
    pub failure: Option<String>,
    pub created_at_ms: i64,
    /// The control-plane replica whose node holds the cluster's disk files and serves them
    /// (disks stay where their files are); `None` until its disks are made.
    pub disk_node: Option<String>,
}

/// The answer to a key association: the report of every check, and whether the key was applied
/// (only when every check passed). The API answers `association_failed` (422) with the report
/// when `applied` is false.
#[derive(Debug, Serialize, Clone)]
pub struct Association {
    pub applied: bool,
    pub report: AssociationReport,
}

impl Association {
    /// `Ok(self)` when applied, else [`Error::AssociationFailed`] carrying the report.
    pub fn into_result(self) -> Result<Association> {
        if self.applied {
            Ok(self)
        } else {
            Err(Error::AssociationFailed(Box::new(self.report)))
        }
    }
}

#[derive(Debug, Serialize, Clone, PartialEq, Eq)]
pub struct DiskInfo {
    /// The volume id, also the NBD export name.
    pub id: String,
    /// `engine-disk` or `search-disk`.
    pub class: String,
    pub size_bytes: u64,
    /// Whether the disk's key is in memory and its export serves.
    pub attached: bool,
    /// `nbd://<host>:<port>/<disk id>` while attached.
    pub nbd_uri: Option<String>,
    /// The control-plane replica whose node holds the disk's file and serves it. Disks stay on
    /// their node; asked of another replica, a disk shows here unattached, and its address and
    /// credentials come from that replica.
    pub node: String,
}

#[derive(Debug, Serialize, Clone, PartialEq, Eq)]
pub struct DocumentInfo {
    pub name: String,
    /// Stored (encrypted) size in bytes.
    pub size: u64,
    pub key_arn: String,
}

#[derive(Debug, Serialize, Clone, PartialEq, Eq)]
pub struct BackupInfo {
    pub id: String,
    pub complete: bool,
    pub created_at_ms: i64,
    pub bytes: u64,
}

/// A backup kept after its cluster was deleted: listed, restored into a new cluster or deleted
/// by the organization until `retained_until_ms`, when the operator deletes it.
#[derive(Debug, Serialize, Clone, PartialEq, Eq)]
pub struct RetainedBackup {
    pub id: String,
    /// The deleted cluster it is a backup of.
    pub cluster_id: String,
    pub cluster_name: String,
    pub encryption: Encryption,
    pub created_at_ms: i64,
    /// Stored (encrypted) bytes.
    pub bytes: u64,
    pub cluster_deleted_at_ms: i64,
    pub retained_until_ms: i64,
}

/// The console's encryption status of a cluster, one entry per storage class.
#[derive(Debug, Serialize, Clone)]
pub struct Verification {
    pub cluster_id: String,
    pub key_arn: String,
    /// True when every class is encrypted under `key_arn` with no offender.
    pub all_encrypted: bool,
    pub verified_at_ms: i64,
    pub classes: Vec<ClassVerification>,
}

#[derive(Debug, Serialize, Clone)]
pub struct ClassVerification {
    /// `documents`, `backups`, `engine-disk` or `search-disk`.
    pub class: String,
    pub encrypted: bool,
    /// The key the class is encrypted under when it is all one key; `None` when empty or mixed.
    pub key_arn: Option<String>,
    /// Every KMS key ARN seen in the class.
    pub key_arns: Vec<String>,
    /// Objects or disks.
    pub count: u64,
    pub verified_at_ms: i64,
    /// Each item that is not encrypted as it must be: `<name>: <reason>`.
    pub offenders: Vec<String>,
}
