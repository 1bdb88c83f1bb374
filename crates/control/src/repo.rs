//! The control plane's stored state, one statement per method: organizations and their tokens,
//! clusters, and what the operator made for each cluster (`cluster_resources`).
//!
//! Every SQL statement on these tables is here, and rows are read by column name: a column added
//! to a `SELECT` cannot shift what another one means. The rest of the crate speaks in the types of
//! [`crate::cluster`] and [`crate::health`].

use keyward_storage::vocab::{now_ms, StorageClass};

use crate::cluster::{Cluster, ClusterState, Encryption, RetainedBackup, RewrapProgress};
use crate::db::{Db, DbError, Row, Value};
use crate::error::{Error, Result};
use crate::health::{HealthStatus, InaccessibleReason, KeyHealth};
use crate::org::{NewTokenRow, OrgId, Organization, TokenInfo};

/// The columns of `clusters` a [`Cluster`] is read from.
const CLUSTER_COLUMNS: &str = "id, org_id, name, region, encryption, role_arn, key_arn, state, \
     health_status, health_reason, health_message, health_checked_at_ms, rewrap_to, rewrap_done, \
     rewrap_total, failure, created_at_ms, disk_node";

/// The columns of `retained_clusters` a [`RetainedCluster`] is read from.
const RETAINED_COLUMNS: &str = "cluster_id, org_id, name, region, encryption, role_arn, key_arn, \
     deleted_at_ms, retain_until_ms";

/// The row name of an object store in `cluster_resources` (a disk's is `engine-0`, ...).
pub(crate) const STORE_RESOURCE: &str = "store";

/// Where a resource is: written `creating` before it is made, `ready` after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResourceState {
    Creating,
    Ready,
}

impl ResourceState {
    fn as_str(self) -> &'static str {
        match self {
            ResourceState::Creating => "creating",
            ResourceState::Ready => "ready",
        }
    }

    fn parse(s: &str) -> Result<ResourceState> {
        match s {
            "creating" => Ok(ResourceState::Creating),
            "ready" => Ok(ResourceState::Ready),
            other => Err(Error::internal(format!(
                "unknown resource state {other:?} in the database"
            ))),
        }
    }
}

/// A disk's row: its volume id, where it is, its size and the grant of its last attachment.
pub(crate) struct DiskRow {
    pub(crate) disk_id: String,
    pub(crate) state: ResourceState,
    pub(crate) size: u64,
    pub(crate) grant_id: Option<String>,
}

/// A new cluster's row.
pub(crate) struct NewClusterRow<'a> {
    pub(crate) id: &'a str,
    pub(crate) org: &'a OrgId,
    pub(crate) name: &'a str,
    pub(crate) region: &'a str,
    pub(crate) encryption: Encryption,
    pub(crate) role_arn: &'a str,
    pub(crate) restore_from: Option<&'a str>,
}

/// A disk a restore made, to record as the new cluster's.
pub(crate) struct RestoredDisk<'a> {
    pub(crate) class: StorageClass,
    pub(crate) name: &'a str,
    pub(crate) disk_id: &'a str,
    pub(crate) key_arn: &'a str,
    pub(crate) size: u64,
}

/// A deleted cluster whose backups are kept until `retain_until_ms`: what reading them needs
/// (its role is kept meanwhile).
#[derive(Debug, Clone)]
pub(crate) struct RetainedCluster {
    pub(crate) cluster_id: String,
    pub(crate) org_id: String,
    pub(crate) name: String,
    pub(crate) region: String,
    pub(crate) encryption: Encryption,
    pub(crate) role_arn: String,
    pub(crate) key_arn: String,
    pub(crate) deleted_at_ms: i64,
    pub(crate) retain_until_ms: i64,
}

/// A complete backup of a cluster being deleted, to keep.
pub(crate) struct RetainedBackupRow {
    pub(crate) backup_id: String,
    pub(crate) created_at_ms: i64,
    pub(crate) stored_bytes: u64,
}

/// The control plane's tables. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Repo {
    db: Db,
    /// The fence of the operator's writes: they land only while this replica holds the
    /// cluster's lease ([`Repo::fenced`]).
    leases: std::sync::Arc<crate::lease::Leases>,
}

const INSERT_TOKEN: &str =
    "INSERT INTO api_tokens (token_sha256, org_id, created_at_ms, id, last4) \
     VALUES ($1, $2, $3, $4, $5)";

impl Repo {
    pub(crate) fn new(db: Db, leases: std::sync::Arc<crate::lease::Leases>) -> Repo {
        Repo { db, leases }
    }

    pub(crate) fn leases(&self) -> &std::sync::Arc<crate::lease::Leases> {
        &self.leases
    }

    /// Runs the operator's writes for a cluster only while this replica holds its lease, with
    /// the fencing token it acquired, checked in the same transaction; a replica that lost the
    /// lease writes nothing (an error). Returns the rows each statement changed.
    async fn fenced(
        &self,
        cluster_id: &str,
        statements: Vec<(String, Vec<Value>)>,
    ) -> Result<Vec<u64>> {
        let guard = self
            .leases
            .guard(cluster_id)
            .ok_or(crate::db::DbError::GuardFailed)?;
        Ok(self.db.guarded_transaction(guard, statements).await?)
    }

    /// [`Repo::fenced`] for one statement.
    async fn fenced_one(&self, cluster_id: &str, sql: &str, params: Vec<Value>) -> Result<u64> {
        let counts = self
            .fenced(cluster_id, vec![(sql.to_owned(), params)])
            .await?;
        Ok(counts.first().copied().unwrap_or(0))
    }

    /// Records this replica's node as the one holding the cluster's disks, unless another node
    /// already does; returns the node that holds them.
    pub(crate) async fn claim_disk_node(&self, cluster_id: &str, node: &str) -> Result<String> {
        self.fenced_one(
            cluster_id,
            "UPDATE clusters SET disk_node = $1 WHERE id = $2 AND disk_node IS NULL",
            vec![node.into(), cluster_id.into()],
        )
        .await?;
        let row = self
            .db
            .query_one(
                "SELECT disk_node FROM clusters WHERE id = $1",
                &[cluster_id.into()],
            )
            .await?;
        Ok(row
            .opt_text("disk_node")?
            .unwrap_or_else(|| node.to_owned()))
    }

    /// A trivial query: whether the database answers at all (readiness).
    pub(crate) async fn ping(&self) -> Result<()> {
        self.db.query_one("SELECT 1", &[]).await?;
        Ok(())
    }

    // ---- organizations and tokens ----

    /// An organization and its first token (by digest), together or not at all.
    pub(crate) async fn insert_organization(
        &self,
        id: &str,
        name: &str,
        token: NewTokenRow,
    ) -> Result<()> {
        let now = now_ms();
        self.db
            .transaction(vec![
                (
                    "INSERT INTO organizations (id, name, created_at_ms) VALUES ($1, $2, $3)"
                        .into(),
                    vec![id.into(), name.into(), now.into()],
                ),
                (
                    INSERT_TOKEN.into(),
                    vec![
                        token.digest.into(),
                        id.into(),
                        now.into(),
                        token.id.into(),
                        token.last4.into(),
                    ],
                ),
            ])
            .await?;
        Ok(())
    }

    pub(crate) async fn insert_token(&self, org: &OrgId, token: NewTokenRow) -> Result<i64> {
        let now = now_ms();
        self.db
            .execute(
                INSERT_TOKEN,
                &[
                    token.digest.into(),
                    org.into(),
                    now.into(),
                    token.id.into(),
                    token.last4.into(),
                ],
            )
            .await?;
        Ok(now)
    }

    /// An organization's tokens, oldest first: never their digests.
    pub(crate) async fn tokens(&self, org: &OrgId) -> Result<Vec<TokenInfo>> {
        let rows = self
            .db
            .query(
                "SELECT id, created_at_ms, last4 FROM api_tokens WHERE org_id = $1 \
                 ORDER BY created_at_ms, id",
                &[org.into()],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(TokenInfo {
                    id: row.text("id")?,
                    created_at_ms: row.int("created_at_ms")?,
                    last4: row.opt_text("last4")?,
                })
            })
            .collect()
    }

    /// Deletes an organization's token by id: whether there was one.
    pub(crate) async fn delete_token(&self, org: &OrgId, token_id: &str) -> Result<bool> {
        let deleted = self
            .db
            .execute(
                "DELETE FROM api_tokens WHERE org_id = $1 AND id = $2",
                &[org.into(), token_id.into()],
            )
            .await?;
        Ok(deleted > 0)
    }

    pub(crate) async fn organization(&self, org: &OrgId) -> Result<Option<Organization>> {
        let row = self
            .db
            .query_opt(
                "SELECT id, name FROM organizations WHERE id = $1",
                &[org.into()],
            )
            .await?;
        row.map(|row| {
            Ok(Organization {
                id: row.text("id")?,
                name: row.text("name")?,
            })
        })
        .transpose()
    }

    /// The stored digest of a token and its organization, found by the digest.
    pub(crate) async fn token(&self, digest: &str) -> Result<Option<(String, Organization)>> {
        let row = self
            .db
            .query_opt(
                "SELECT t.token_sha256 AS token_sha256, o.id AS id, o.name AS name \
                 FROM api_tokens t JOIN organizations o ON o.id = t.org_id \
                 WHERE t.token_sha256 = $1",
                &[digest.into()],
            )
            .await?;
        row.map(|row| {
            Ok((
                row.text("token_sha256")?,
                Organization {
                    id: row.text("id")?,
                    name: row.text("name")?,
                },
            ))
        })
        .transpose()
    }

    // ---- clusters ----

    /// A new cluster awaiting its key. A name taken in the organization is
    /// [`DbError::Conflict`].
    pub(crate) async fn insert_cluster(&self, new: NewClusterRow<'_>) -> Result<(), DbError> {
        self.db
            .execute(
                "INSERT INTO clusters (id, org_id, name, region, encryption, role_arn, key_arn, state, \
                 health_status, health_reason, health_message, health_checked_at_ms, created_at_ms, \
                 restore_from) \
                 VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, $8, NULL, $9, 0, $10, $11)",
                &[
                    new.id.into(),
                    new.org.into(),
                    new.name.into(),
                    new.region.into(),
                    new.encryption.as_str().into(),
                    new.role_arn.into(),
                    ClusterState::AwaitingKey.as_str().into(),
                    HealthStatus::Unknown.as_str().into(),
                    "no KMS key is associated yet".into(),
                    now_ms().into(),
                    new.restore_from.into(),
                ],
            )
            .await?;
        Ok(())
    }

    /// Forgets a cluster whose creation failed.
    pub(crate) async fn remove_failed_cluster(&self, id: &str) -> Result<()> {
        self.db
            .execute("DELETE FROM clusters WHERE id = $1", &[id.into()])
            .await?;
        Ok(())
    }

    /// The organization's clusters, oldest first.
    pub(crate) async fn clusters_of(&self, org: &OrgId) -> Result<Vec<Cluster>> {
        let rows = self
            .db
            .query(
                &format!(
                    "SELECT {CLUSTER_COLUMNS} FROM clusters WHERE org_id = $1 ORDER BY created_at_ms, id"
                ),
                &[org.into()],
            )
            .await?;
        rows.iter().map(cluster_of_row).collect()
    }

    /// The cluster, if it is the organization's.
    pub(crate) async fn cluster_of(&self, org: &OrgId, id: &str) -> Result<Option<Cluster>> {
        let row = self
            .db
            .query_opt(
                &format!("SELECT {CLUSTER_COLUMNS} FROM clusters WHERE id = $1 AND org_id = $2"),
                &[id.into(), org.into()],
            )
            .await?;
        row.as_ref().map(cluster_of_row).transpose()
    }

    /// Every cluster with a key, in one query (the operator's alarm round reads them all each
    /// probe interval: one query per cluster would hold the database for thousands of them).
    pub(crate) async fn keyed_clusters(&self) -> Result<Vec<(OrgId, Cluster)>> {
        let rows = self
            .db
            .query(
                &format!(
                    "SELECT {CLUSTER_COLUMNS} FROM clusters WHERE key_arn IS NOT NULL \
                     ORDER BY created_at_ms, id"
                ),
                &[],
            )
            .await?;
        rows.iter()
            .map(|row| Ok((row.text("org_id")?, cluster_of_row(row)?)))
            .collect()
    }

    /// A cluster by id alone, with its organization (for the operator).
    pub(crate) async fn cluster(&self, id: &str) -> Result<Option<(OrgId, Cluster)>> {
        let row = self
            .db
            .query_opt(
                &format!("SELECT {CLUSTER_COLUMNS} FROM clusters WHERE id = $1"),
                &[id.into()],
            )
            .await?;
        row.map(|row| Ok((row.text("org_id")?, cluster_of_row(&row)?)))
            .transpose()
    }

    pub(crate) async fn mark_deleting(&self, id: &str) -> Result<()> {
        self.db
            .execute(
                "UPDATE clusters SET state = $1 WHERE id = $2",
                &[ClusterState::Deleting.as_str().into(), id.into()],
            )
            .await?;
        Ok(())
    }

    /// Applies the first key: `false` when the cluster got one meanwhile.
    pub(crate) async fn apply_first_key(&self, id: &str, key_arn: &str) -> Result<bool> {
        let changed = self
            .db
            .execute(
                "UPDATE clusters SET key_arn = $1, state = $2 WHERE id = $3 AND key_arn IS NULL",
                &[
                    key_arn.into(),
                    ClusterState::Provisioning.as_str().into(),
                    id.into(),
                ],
            )
            .await?;
        Ok(changed == 1)
    }

    /// Starts a key change to `key_arn`.
    pub(crate) async fn start_rewrap(&self, id: &str, key_arn: &str) -> Result<()> {
        self.db
            .execute(
                "UPDATE clusters SET state = $1, rewrap_to = $2, rewrap_done = 0, rewrap_total = 0 \
                 WHERE id = $3",
                &[
                    ClusterState::Rewrapping.as_str().into(),
                    key_arn.into(),
                    id.into(),
                ],
            )
            .await?;
        Ok(())
    }

    pub(crate) async fn rewrap_total(&self, id: &str, total: u64) -> Result<()> {
        self.db
            .execute(
                "UPDATE clusters SET rewrap_total = $1, rewrap_done = 0 WHERE id = $2",
                &[(total as i64).into(), id.into()],
            )
            .await?;
        Ok(())
    }

    pub(crate) async fn rewrap_done(&self, id: &str, done: u64) -> Result<()> {
        self.db
            .execute(
                "UPDATE clusters SET rewrap_done = $1 WHERE id = $2",
                &[(done as i64).into(), id.into()],
            )
            .await?;
        Ok(())
    }

    /// The key change is done: `new_key_arn` is the cluster's key and every resource's.
    pub(crate) async fn finish_rewrap(&self, id: &str, new_key_arn: &str) -> Result<()> {
        self.db
            .transaction(vec![
                (
                    "UPDATE clusters SET key_arn = $1, rewrap_to = NULL, state = $2 \
                     WHERE id = $3 AND state = $4"
                        .into(),
                    vec![
                        new_key_arn.into(),
                        ClusterState::Ready.as_str().into(),
                        id.into(),
                        ClusterState::Rewrapping.as_str().into(),
                    ],
                ),
                (
                    "UPDATE cluster_resources SET key_arn = $1 WHERE cluster_id = $2".into(),
                    vec![new_key_arn.into(), id.into()],
                ),
            ])
            .await?;
        Ok(())
    }

    /// Provisioning is done.
    pub(crate) async fn mark_ready(&self, id: &str) -> Result<()> {
        self.fenced_one(
            id,
            "UPDATE clusters SET state = $1 WHERE id = $2 AND state = $3",
            vec![
                ClusterState::Ready.as_str().into(),
                id.into(),
                ClusterState::Provisioning.as_str().into(),
            ],
        )
        .await?;
        Ok(())
    }

    /// The backup a new cluster is to restore, `<source cluster>/<backup id>`, until it is done.
    pub(crate) async fn restore_from(&self, id: &str) -> Result<Option<String>> {
        let row = self
            .db
            .query_opt(
                "SELECT restore_from FROM clusters WHERE id = $1",
                &[id.into()],
            )
            .await?;
        Ok(row
            .map(|row| row.opt_text("restore_from"))
            .transpose()?
            .flatten())
    }

    /// Records the disks a restore made and that it is done, in one transaction.
    pub(crate) async fn record_restore(
        &self,
        cluster_id: &str,
        disks: &[RestoredDisk<'_>],
    ) -> Result<()> {
        let now = now_ms();
        let mut statements: Vec<(String, Vec<Value>)> = disks
            .iter()
            .map(|d| {
                (
                    "INSERT INTO cluster_resources (cluster_id, class, name, disk_id, state, key_arn, size_bytes, grant_id, created_at_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8) \
                     ON CONFLICT (cluster_id, class, name) DO UPDATE SET disk_id = $4, state = $5, key_arn = $6, size_bytes = $7"
                        .to_owned(),
                    vec![
                        cluster_id.into(),
                        d.class.as_str().into(),
                        d.name.into(),
                        d.disk_id.into(),
                        ResourceState::Ready.as_str().into(),
                        d.key_arn.into(),
                        (d.size as i64).into(),
                        now.into(),
                    ],
                )
            })
            .collect();
        statements.push((
            "UPDATE clusters SET restore_from = NULL WHERE id = $1".to_owned(),
            vec![cluster_id.into()],
        ));
        self.fenced(cluster_id, statements).await?;
        Ok(())
    }

    /// Stores a cluster's key health.
    pub(crate) async fn record_health(&self, id: &str, health: &KeyHealth) -> Result<()> {
        self.fenced_one(
            id,
            "UPDATE clusters SET health_status = $1, health_reason = $2, health_message = $3, \
             health_checked_at_ms = $4 WHERE id = $5",
            vec![
                health.status.as_str().into(),
                Value::from(health.reason.map(|r| r.as_str())),
                health.message.clone().into(),
                health.checked_at_ms.into(),
                id.into(),
            ],
        )
        .await?;
        Ok(())
    }

    /// Removes a deleted cluster and its resources; with `retained`, its backups are recorded
    /// as kept, in the same transaction.
    pub(crate) async fn delete_cluster(
        &self,
        id: &str,
        retained: Option<(&RetainedCluster, &[RetainedBackupRow])>,
    ) -> Result<()> {
        let mut statements: Vec<(String, Vec<Value>)> = Vec::new();
        if let Some((cluster, backups)) = retained {
            statements.push((
                format!(
                    "INSERT INTO retained_clusters ({RETAINED_COLUMNS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                ),
                vec![
                    cluster.cluster_id.as_str().into(),
                    cluster.org_id.as_str().into(),
                    cluster.name.as_str().into(),
                    cluster.region.as_str().into(),
                    cluster.encryption.as_str().into(),
                    cluster.role_arn.as_str().into(),
                    cluster.key_arn.as_str().into(),
                    cluster.deleted_at_ms.into(),
                    cluster.retain_until_ms.into(),
                ],
            ));
            statements.extend(backups.iter().map(|b| {
                (
                    "INSERT INTO retained_backups (cluster_id, backup_id, created_at_ms, stored_bytes) \
                     VALUES ($1, $2, $3, $4)"
                        .to_owned(),
                    vec![
                        cluster.cluster_id.as_str().into(),
                        b.backup_id.as_str().into(),
                        b.created_at_ms.into(),
                        (b.stored_bytes as i64).into(),
                    ],
                )
            }));
        }
        statements.push((
            "DELETE FROM cluster_resources WHERE cluster_id = $1".into(),
            vec![id.into()],
        ));
        statements.push(("DELETE FROM clusters WHERE id = $1".into(), vec![id.into()]));
        self.db.transaction(statements).await?;
        Ok(())
    }

    /// The cluster failed for good: it says why, and nothing retries it.
    pub(crate) async fn mark_failed(&self, id: &str, failure: &str) -> Result<()> {
        self.db
            .execute(
                "UPDATE clusters SET state = $1, failure = $2 WHERE id = $3",
                &[
                    ClusterState::Failed.as_str().into(),
                    failure.into(),
                    id.into(),
                ],
            )
            .await?;
        Ok(())
    }

    /// Whether a cluster other than `except` (live, or deleted with its backups kept) uses the
    /// key: a platform key is scheduled for deletion only when none does.
    pub(crate) async fn key_in_use(&self, key_arn: &str, except: &str) -> Result<bool> {
        let row = self
            .db
            .query_one(
                "SELECT (SELECT COUNT(*) FROM clusters \
                         WHERE (key_arn = $1 OR rewrap_to = $1) AND id <> $2) \
                      + (SELECT COUNT(*) FROM retained_clusters \
                         WHERE key_arn = $1 AND cluster_id <> $2) AS users",
                &[key_arn.into(), except.into()],
            )
            .await?;
        Ok(row.int("users")? > 0)
    }

    // ---- backups kept after their cluster ----

    /// The organization's kept backups, oldest cluster deletion first, each cluster's backups
    /// oldest first.
    pub(crate) async fn retained_backups(&self, org: &OrgId) -> Result<Vec<RetainedBackup>> {
        let rows = self
            .db
            .query(
                "SELECT b.backup_id AS backup_id, b.created_at_ms AS created_at_ms, \
                 b.stored_bytes AS stored_bytes, c.cluster_id AS cluster_id, c.name AS name, \
                 c.encryption AS encryption, c.deleted_at_ms AS deleted_at_ms, \
                 c.retain_until_ms AS retain_until_ms \
                 FROM retained_backups b JOIN retained_clusters c ON c.cluster_id = b.cluster_id \
                 WHERE c.org_id = $1 ORDER BY c.deleted_at_ms, c.cluster_id, b.created_at_ms, b.backup_id",
                &[org.into()],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(RetainedBackup {
                    id: row.text("backup_id")?,
                    cluster_id: row.text("cluster_id")?,
                    cluster_name: row.text("name")?,
                    encryption: Encryption::parse(&row.text("encryption")?)?,
                    created_at_ms: row.int("created_at_ms")?,
                    bytes: row.int("stored_bytes")?.max(0) as u64,
                    cluster_deleted_at_ms: row.int("deleted_at_ms")?,
                    retained_until_ms: row.int("retain_until_ms")?,
                })
            })
            .collect()
    }

    /// The deleted cluster of the organization that kept the backup `backup_id`.
    pub(crate) async fn retained_backup(
        &self,
        org: &OrgId,
        backup_id: &str,
    ) -> Result<Option<RetainedCluster>> {
        let row = self
            .db
            .query_opt(
                &format!(
                    "SELECT {RETAINED_COLUMNS} FROM retained_clusters WHERE org_id = $1 AND \
                     cluster_id IN (SELECT cluster_id FROM retained_backups WHERE backup_id = $2) \
                     ORDER BY deleted_at_ms DESC LIMIT 1"
                ),
                &[org.into(), backup_id.into()],
            )
            .await?;
        row.as_ref().map(retained_of_row).transpose()
    }

    /// A deleted cluster whose backups are kept, by id.
    pub(crate) async fn retained_cluster(&self, id: &str) -> Result<Option<RetainedCluster>> {
        let row = self
            .db
            .query_opt(
                &format!("SELECT {RETAINED_COLUMNS} FROM retained_clusters WHERE cluster_id = $1"),
                &[id.into()],
            )
            .await?;
        row.as_ref().map(retained_of_row).transpose()
    }

    /// Whether the deleted cluster still keeps the backup.
    pub(crate) async fn keeps_backup(&self, cluster_id: &str, backup_id: &str) -> Result<bool> {
        Ok(self
            .db
            .query_opt(
                "SELECT backup_id FROM retained_backups WHERE cluster_id = $1 AND backup_id = $2",
                &[cluster_id.into(), backup_id.into()],
            )
            .await?
            .is_some())
    }

    /// Stops keeping one backup: whether it was kept.
    pub(crate) async fn delete_retained_backup(
        &self,
        cluster_id: &str,
        backup_id: &str,
    ) -> Result<bool> {
        let deleted = self
            .db
            .execute(
                "DELETE FROM retained_backups WHERE cluster_id = $1 AND backup_id = $2",
                &[cluster_id.into(), backup_id.into()],
            )
            .await?;
        Ok(deleted > 0)
    }

    /// The deleted clusters whose retention has ended at `now_ms`, or that keep no backup any
    /// more.
    pub(crate) async fn retained_to_retire(&self, now_ms: i64) -> Result<Vec<RetainedCluster>> {
        let rows = self
            .db
            .query(
                &format!(
                    "SELECT {RETAINED_COLUMNS} FROM retained_clusters c WHERE retain_until_ms <= $1 \
                     OR NOT EXISTS (SELECT 1 FROM retained_backups b WHERE b.cluster_id = c.cluster_id) \
                     ORDER BY retain_until_ms"
                ),
                &[now_ms.into()],
            )
            .await?;
        rows.iter().map(retained_of_row).collect()
    }

    /// Forgets a deleted cluster whose backups are gone.
    pub(crate) async fn forget_retained(&self, id: &str) -> Result<()> {
        self.db
            .transaction(vec![
                (
                    "DELETE FROM retained_backups WHERE cluster_id = $1".into(),
                    vec![id.into()],
                ),
                (
                    "DELETE FROM retained_clusters WHERE cluster_id = $1".into(),
                    vec![id.into()],
                ),
            ])
            .await?;
        Ok(())
    }

    // ---- cluster resources ----

    /// Where a resource is, if it has a row.
    pub(crate) async fn resource_state(
        &self,
        cluster_id: &str,
        class: StorageClass,
        name: &str,
    ) -> Result<Option<ResourceState>> {
        let row = self
            .db
            .query_opt(
                "SELECT state FROM cluster_resources WHERE cluster_id = $1 AND class = $2 AND name = $3",
                &[cluster_id.into(), class.as_str().into(), name.into()],
            )
            .await?;
        row.map(|r| ResourceState::parse(&r.text("state")?))
            .transpose()
    }

    /// An object store about to be made (a row there already is kept).
    pub(crate) async fn store_creating(
        &self,
        cluster_id: &str,
        class: StorageClass,
        key_arn: &str,
    ) -> Result<()> {
        self.fenced_one(
            cluster_id,
            "INSERT INTO cluster_resources (cluster_id, class, name, disk_id, state, key_arn, size_bytes, grant_id, created_at_ms) \
             VALUES ($1, $2, $3, NULL, $4, $5, 0, NULL, $6) ON CONFLICT (cluster_id, class, name) DO NOTHING",
            vec![
                cluster_id.into(),
                class.as_str().into(),
                STORE_RESOURCE.into(),
                ResourceState::Creating.as_str().into(),
                key_arn.into(),
                now_ms().into(),
            ],
        )
        .await?;
        Ok(())
    }

    /// A disk's row, if it has one.
    pub(crate) async fn disk(
        &self,
        cluster_id: &str,
        class: StorageClass,
        name: &str,
    ) -> Result<Option<DiskRow>> {
        let row = self
            .db
            .query_opt(
                "SELECT disk_id, state, size_bytes, grant_id FROM cluster_resources \
                 WHERE cluster_id = $1 AND class = $2 AND name = $3",
                &[cluster_id.into(), class.as_str().into(), name.into()],
            )
            .await?;
        row.map(|row| disk_of_row(&row)).transpose()
    }

    /// The cluster's disks as recorded: (class, disk id, size), by class and name.
    pub(crate) async fn disks_of(&self, cluster_id: &str) -> Result<Vec<(String, String, u64)>> {
        let rows = self
            .db
            .query(
                "SELECT class, disk_id, size_bytes FROM cluster_resources \
                 WHERE cluster_id = $1 AND disk_id IS NOT NULL ORDER BY class, name",
                &[cluster_id.into()],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.text("class")?,
                    r.text("disk_id")?,
                    r.int("size_bytes")?.max(0) as u64,
                ))
            })
            .collect()
    }

    /// A disk about to be made.
    pub(crate) async fn disk_creating(
        &self,
        cluster_id: &str,
        class: StorageClass,
        name: &str,
        disk_id: &str,
        key_arn: &str,
        size: u64,
    ) -> Result<()> {
        self.fenced_one(
            cluster_id,
            "INSERT INTO cluster_resources (cluster_id, class, name, disk_id, state, key_arn, size_bytes, grant_id, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8)",
            vec![
                cluster_id.into(),
                class.as_str().into(),
                name.into(),
                disk_id.into(),
                ResourceState::Creating.as_str().into(),
                key_arn.into(),
                (size as i64).into(),
                now_ms().into(),
            ],
        )
        .await?;
        Ok(())
    }

    /// A resource is made, under `key_arn`.
    pub(crate) async fn resource_ready(
        &self,
        cluster_id: &str,
        class: StorageClass,
        name: &str,
        key_arn: &str,
    ) -> Result<()> {
        self.fenced_one(
            cluster_id,
            "UPDATE cluster_resources SET state = $1, key_arn = $2 \
             WHERE cluster_id = $3 AND class = $4 AND name = $5",
            vec![
                ResourceState::Ready.as_str().into(),
                key_arn.into(),
                cluster_id.into(),
                class.as_str().into(),
                name.into(),
            ],
        )
        .await?;
        Ok(())
    }

    /// The grant of a disk's current attachment (`None`: retired).
    pub(crate) async fn disk_grant(
        &self,
        cluster_id: &str,
        disk_id: &str,
        grant_id: Option<&str>,
    ) -> Result<()> {
        self.fenced_one(
            cluster_id,
            "UPDATE cluster_resources SET grant_id = $1 WHERE cluster_id = $2 AND disk_id = $3",
            vec![grant_id.into(), cluster_id.into(), disk_id.into()],
        )
        .await?;
        Ok(())
    }
}

fn cluster_of_row(row: &Row) -> Result<Cluster> {
    let key_arn = row.opt_text("key_arn")?;
    let rewrap = match (row.opt_text("rewrap_to")?, &key_arn) {
        (Some(to), Some(from)) => Some(RewrapProgress {
            from_key_arn: from.clone(),
            to_key_arn: to,
            done: row.int("rewrap_done")?.max(0) as u64,
            total: row.int("rewrap_total")?.max(0) as u64,
        }),
        _ => None,
    };
    let status = row.text("health_status")?;
    let reason = row.opt_text("health_reason")?;
    Ok(Cluster {
        id: row.text("id")?,
        name: row.text("name")?,
        region: row.text("region")?,
        encryption: Encryption::parse(&row.text("encryption")?)?,
        role_arn: row.text("role_arn")?,
        key_arn,
        state: ClusterState::parse(&row.text("state")?)?,
        health: KeyHealth {
            status: HealthStatus::parse(&status).ok_or_else(|| {
                Error::internal(format!("unknown health status {status:?} in the database"))
            })?,
            reason: reason
                .map(|r| {
                    InaccessibleReason::parse(&r).ok_or_else(|| {
                        Error::internal(format!("unknown health reason {r:?} in the database"))
                    })
                })
                .transpose()?,
            message: row.text("health_message")?,
            checked_at_ms: row.int("health_checked_at_ms")?,
        },
        rewrap,
        failure: row.opt_text("failure")?,
        created_at_ms: row.int("created_at_ms")?,
        disk_node: row.opt_text("disk_node")?,
    })
}

fn retained_of_row(row: &Row) -> Result<RetainedCluster> {
    Ok(RetainedCluster {
        cluster_id: row.text("cluster_id")?,
        org_id: row.text("org_id")?,
        name: row.text("name")?,
        region: row.text("region")?,
        encryption: Encryption::parse(&row.text("encryption")?)?,
        role_arn: row.text("role_arn")?,
        key_arn: row.text("key_arn")?,
        deleted_at_ms: row.int("deleted_at_ms")?,
        retain_until_ms: row.int("retain_until_ms")?,
    })
}

fn disk_of_row(row: &Row) -> Result<DiskRow> {
    Ok(DiskRow {
        disk_id: row.text("disk_id")?,
        state: ResourceState::parse(&row.text("state")?)?,
        size: row.int("size_bytes")?.max(0) as u64,
        grant_id: row.opt_text("grant_id")?,
    })
}
