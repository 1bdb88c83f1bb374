//! The keyward control plane: organizations and their API tokens, clusters and their IAM roles,
//! the customer's key-policy statements, key association after validation, the operator that
//! provisions and reconciles each cluster's storage under its key, key health (fail closed), and
//! the data paths of a cluster (documents, disks over NBD, verification).
//!
//! The facade is [`ControlPlane`]; the REST API (crate `keyward-api`) is a thin layer over it.
//!
//! What it does:
//! - [`ControlPlane::create_cluster`]: a cluster and its own IAM role (trust: only the operator,
//!   only with the cluster id as ExternalId); `internal` encryption also makes a platform key;
//! - [`key_policy_statements`] / [`merge_key_policy`]: the guide's two statements for the role;
//! - [`validate_key_association`]: every check that can stop a key from working for a cluster,
//!   probed as the cluster's role against KMS, each with the likely cause and the exact fix;
//!   [`ControlPlane::associate_key`] applies a key only when every check passes;
//! - the operator (`operator/`): documents and backups stores, engine and search disks, each
//!   under the key with its own data keys and encryption context, disks attached through grants
//!   (the node principal is the cluster's role) and served over NBD, one server per cluster;
//!   idempotent, resumed after a restart with nothing half made;
//! - key health, fail closed: the [`health`] monitor probes every cluster's key; an
//!   inaccessible key drops the cluster's cached data keys, detaches its disks and makes its
//!   data calls answer `key_inaccessible` (a KMS error on a data call re-checks at once); access
//!   back re-attaches everything; `key-deleted` is final;
//! - a key change (`operator/rekey.rs`): every data key re-wrapped under the new key online, with
//!   progress, after which nothing refers to the old key;
//! - backups (`data.rs`, on the storage crate's backup format) and their restore into a new
//!   cluster of the same organization (`operator/restore.rs`): under the same customer key, or
//!   (internal encryption) under a platform key of the new cluster's own; a deleted cluster's
//!   backups are kept for a retention period, listed, restorable and deletable by the
//!   organization, then deleted by the operator (`operator/retention.rs`), and a platform key is
//!   scheduled for deletion only once no cluster and no kept backup uses it;
//! - the per-cluster KMS audit (`audit.rs`: every request of a cluster's role, kept 90 days,
//!   successful probes folded into hourly counts after a day) and the alarms evaluated from it
//!   and from key health (`alarms.rs`), under rules per organization and cluster
//!   (`alarm_rules.rs`; [`ControlPlane::set_cluster_alarm_rules`]), the key account's trail read
//!   through a role the customer lends (`trail.rs`, read by the operator: `operator/trail.rs`);
//! - KMS usage per cluster, day and operation (probes apart) and what it costs at AWS's prices
//!   ([`ControlPlane::usage`], `usage.rs`; the price arithmetic and the probe's cost in
//!   `cost.rs`), from the audit;
//! - verification per storage class, built on `keyward_storage::scan`;
//! - operational metrics (`metrics.rs`): KMS requests as the clusters' roles by operation and
//!   result with their latency, data-key cache hits and misses, plaintext bytes per class, key
//!   health, audit drops, written in Prometheus's text format ([`ControlPlane::write_metrics`]);
//! - notifications of alarm transitions (`notify/`): an organization's webhook destinations,
//!   signed as Stripe's are ([`notify::verify`] is the receiver's side), queued durably,
//!   retried with backoff and jitter, rate-limited per destination, each attempt logged (the
//!   worker is the operator's, `operator/notify_worker.rs`; the secrets' KMS calls
//!   `notify_secrets.rs`; destinations, tests and the log on the facade, `notifications.rs`);
//! - state in SQLite or PostgreSQL ([`db`]), with the same migrations; documents and backups
//!   under the data directory or in an S3 bucket ([`ObjectsConfig`], `objects.rs`), so several
//!   replicas can share both; readiness ([`ControlPlane::ready`]) for load balancers;
//! - several replicas on one database (`lease.rs`, `operator/replica.rs`): every replica serves
//!   the API, and each cluster's work — reconciling, probing, alarms, its disks — is done by the
//!   replica holding the cluster's lease, fenced by the lease's token; a replica that dies or is
//!   cut off from the database is replaced on its clusters within a lease and a quarter, having
//!   stopped acting first; a graceful shutdown hands its leases over at once. Disks stay on the
//!   node that holds their files ([`Cluster::disk_node`]); while that node is away another
//!   replica watches the cluster's key and serves its documents, and the disks wait for it.
//!
//! How it is laid out (the full map and the one-way call graph are in the crate's README): the
//! facade (`plane.rs`, `data.rs`) records what is wanted and kicks the operator; the operator
//! (`operator/`) works on the shared state (`shared.rs`: configuration, the repository of every
//! SQL statement `repo.rs`, the health monitor, the one cache of role sessions) and on each
//! cluster's live state (`runtime.rs`), never through the facade. A KMS failure reaches this crate
//! typed (`keyward_envelope::KmsFailure`) and is classified once (`KmsFailure::cause`).
//!
//! What it does not do: talk to AWS by any way but the official SDK (aws-sdk-kms, -iam, -sts);
//! keep a plaintext key anywhere but in memory; serve HTTP (that is `keyward-api`).

#![forbid(unsafe_code)]

mod alarm_rules;
mod alarms;
mod association;
mod audit;
mod clock;
mod cluster;
mod config;
mod cost;
mod data;
pub mod db;
mod document_stream;
mod error;
pub mod health;
mod lease;
mod metrics;
mod migrations;
mod nbd_ca;
mod notifications;
pub mod notify;
mod notify_secrets;
mod objects;
mod operator;
mod org;
mod plane;
mod platform_key;
mod policy;
mod repo;
mod roles;
mod runtime;
mod shared;
mod trail;
mod usage;

pub use alarm_rules::{
    AlarmRule, EffectiveRules, RulesView, ACCESS_DENIED_WINDOW_SECONDS, KMS_OPERATIONS,
    MAX_ACCESS_DENIED_THRESHOLD, MAX_ALLOWED_PRINCIPALS, MAX_PROBE_COST_BUDGET_USD,
    PRINCIPAL_WINDOW_SECONDS, ROTATION_WINDOW_SECONDS,
};
pub use alarms::{
    Alarm, AlarmKind, AlarmState, AlarmTransition, ACCESS_DENIED_THRESHOLD, ACCESS_DENIED_WINDOW_MS,
};
pub use association::{
    validate_key_association, AssociationReport, AssociationTarget, Cause, Check, CheckResult,
    Outcome,
};
#[cfg(feature = "test-support")]
pub use audit::write_records_for_bench;
pub use audit::{
    AuditQuery, AuditRecord, AuditResult, CompactedCount, AUDIT_QUEUE, MAX_AUDIT_PAGE,
};
pub use clock::Clock;
pub use cluster::{
    Association, BackupInfo, ClassVerification, Cluster, ClusterState, DiskInfo, DocumentInfo,
    Encryption, NewCluster, RetainedBackup, RewrapProgress, Verification,
};
pub use config::{
    check_replica_id, ControlConfig, KmsPrices, NotifyConfig, ObjectsConfig,
    DEFAULT_BACKUP_RETENTION, DEFAULT_REPLICA_ID,
};
pub use cost::{probe_projection, usd, ProbeProjection};
pub use data::DocumentStream;
pub use error::{Error, ErrorCode, Result};
pub use health::{HealthStatus, InaccessibleReason, KeyHealth};
pub use keyward_storage::vocab::PROBE_CONTEXT_KEY;
pub use lease::{HeldLease, ReplicaInfo};
pub use metrics::{Exposition, EXPOSITION_CONTENT_TYPE, KMS_LATENCY_BUCKETS};
pub use migrations::MIGRATIONS;
pub use notify::{
    CreatedDestination, Delivery, DeliveryAttempt, DeliveryQuery, Destination, DestinationFormat,
    NewDestination,
};
pub use operator::{RESERVED_PREFIX, STORE_MARKER};
pub use org::{ApiToken, OrgId, Organization, TokenInfo, TOKEN_PREFIX};
pub use plane::{ControlPlane, NotReady, READY_DB_TIMEOUT};
pub use policy::{
    create_grant_condition, key_policy_statements, merge_key_policy, BASIC_ACCESS_SID,
    CREATE_GRANT_SID, GRANT_OPERATIONS,
};
pub use roles::{
    cluster_kms, role_arn, role_name, role_policy, trust_policy, ROLE_PATH, ROLE_POLICY_NAME,
    SESSION_NAME,
};
pub use usage::{
    CacheSavings, ChargePeriod, Charges, DayUsage, KeyDays, OperationUsage, RequestCounts,
    UsageReport, UsageWindow, MAX_USAGE_DAYS,
};
