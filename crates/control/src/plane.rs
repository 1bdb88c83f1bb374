//! The control plane facade: what the REST API calls.
//!
//! [`ControlPlane::open`] applies the migrations, starts the operator (which resumes every
//! cluster's reconciliation, see [`crate::operator`]) and the key-health loop. Every cluster call
//! is scoped by the calling organization: another organization's cluster is `not_found`, exactly
//! as one that does not exist.
//!
//! The control plane reaches AWS only as the operator (`keyward-operator`'s access key) through
//! aws-sdk-iam and aws-sdk-sts, and as each cluster's role (assumed) through aws-sdk-kms.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_kms::error::ProvideErrorMetadata;
use tokio::sync::{Mutex, OnceCell};
use zeroize::Zeroizing;

use crate::association::validate_key_association;
use crate::cluster::{
    status_str, Association, Cluster, ClusterState, Encryption, NewCluster, CLUSTER_COLUMNS,
};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::health::{HealthMonitor, HealthStatus, KeyHealth, MonitorConfig};
use crate::operator::Operator;
use crate::org::{
    check_name, digests_match, id_shape_ok, random_id, token_digest, token_shape_ok, ApiToken,
    OrgId, Organization,
};
use crate::{merge_key_policy, roles};

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
    pub engine_disks: u32,
    pub search_disks: u32,
    /// Size of each disk; a positive multiple of 4096.
    pub disk_size_bytes: u64,
    /// Where the NBD exports listen.
    pub nbd_host: IpAddr,
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
            .field("engine_disks", &self.engine_disks)
            .field("search_disks", &self.search_disks)
            .field("disk_size_bytes", &self.disk_size_bytes)
            .field("nbd_host", &self.nbd_host)
            .finish_non_exhaustive()
    }
}

impl ControlConfig {
    /// The embedded setup's defaults: SQLite in `data_dir`, the platform account `111122223333`,
    /// `us-east-1`, probes every 10 s, 3 + 3 disks of 64 MiB, NBD on 127.0.0.1.
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
            engine_disks: 3,
            search_disks: 3,
            disk_size_bytes: 64 << 20,
            nbd_host: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }

    fn check(&self) -> Result<()> {
        let bad = |what: String| Err(Error::InvalidRequest(what));
        if self.disk_size_bytes == 0 || !self.disk_size_bytes.is_multiple_of(4096) {
            return bad(format!(
                "disk_size_bytes {} must be a positive multiple of 4096",
                self.disk_size_bytes
            ));
        }
        if self.probe_interval.is_zero() {
            return bad("probe_interval must be positive".into());
        }
        if self.platform_account_id.len() != 12
            || !self.platform_account_id.bytes().all(|b| b.is_ascii_digit())
        {
            return bad(format!(
                "platform_account_id {:?} must be 12 digits",
                self.platform_account_id
            ));
        }
        check_region(&self.default_region)
    }
}

/// The control plane. Cheap to clone: an `Arc` inside.
#[derive(Clone)]
pub struct ControlPlane {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: ControlConfig,
    pub(crate) db: Db,
    pub(crate) base: SdkConfig,
    pub(crate) iam: aws_sdk_iam::Client,
    sts: aws_sdk_sts::Client,
    operator_arn: OnceCell<String>,
    /// The KMS client of each cluster's role, made once per cluster.
    kms_clients: StdMutex<HashMap<String, aws_sdk_kms::Client>>,
    pub(crate) operator: Operator,
    pub(crate) monitor: HealthMonitor,
    /// Serializes the state changes of one cluster (association, deletion).
    cluster_locks: StdMutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl ControlPlane {
    /// Opens the database (applying migrations), then starts the operator, which resumes every
    /// cluster that has a key, and the key-health loop.
    pub async fn open(config: ControlConfig) -> Result<ControlPlane> {
        config.check()?;
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            Error::Internal(format!("cannot create {}: {e}", config.data_dir.display()))
        })?;
        let db = Db::open(&config.database_url, crate::migrations::MIGRATIONS).await?;
        let base = sdk_config(&config).await;
        let (monitor, changes) = HealthMonitor::start(MonitorConfig {
            interval: config.probe_interval,
            ..MonitorConfig::default()
        });
        let inner = Arc::new(Inner {
            iam: aws_sdk_iam::Client::new(&base),
            sts: aws_sdk_sts::Client::new(&base),
            base,
            db,
            operator_arn: OnceCell::new(),
            kms_clients: StdMutex::new(HashMap::new()),
            operator: Operator::default(),
            monitor,
            cluster_locks: StdMutex::new(HashMap::new()),
            config,
        });
        let plane = ControlPlane { inner };
        crate::operator::start(&plane, changes).await?;
        Ok(plane)
    }

    /// Stops the operator and the health loop, detaches every disk (its key wiped, its grant
    /// retired) and closes every NBD export. The database is left as it is: a later `open`
    /// resumes.
    pub async fn shutdown(&self) {
        crate::operator::stop(self).await;
    }

    pub fn config(&self) -> &ControlConfig {
        &self.inner.config
    }

    // ---- organizations and tokens ----

    /// Creates an organization and its first API token (shown only here).
    pub async fn create_organization(&self, name: &str) -> Result<(Organization, ApiToken)> {
        check_name("organization", name)?;
        let id = random_id("o-")?;
        let token = ApiToken::generate()?;
        let now = now_ms();
        self.inner
            .db
            .transaction(vec![
                (
                    "INSERT INTO organizations (id, name, created_at_ms) VALUES ($1, $2, $3)".into(),
                    vec![id.clone().into(), name.into(), now.into()],
                ),
                (
                    "INSERT INTO api_tokens (token_sha256, org_id, created_at_ms) VALUES ($1, $2, $3)"
                        .into(),
                    vec![token_digest(token.expose()).into(), id.clone().into(), now.into()],
                ),
            ])
            .await?;
        Ok((
            Organization {
                id,
                name: name.to_owned(),
            },
            token,
        ))
    }

    /// Another API token for an organization.
    pub async fn create_token(&self, org: &OrgId) -> Result<ApiToken> {
        self.organization(org).await?;
        let token = ApiToken::generate()?;
        self.inner
            .db
            .execute(
                "INSERT INTO api_tokens (token_sha256, org_id, created_at_ms) VALUES ($1, $2, $3)",
                &[
                    token_digest(token.expose()).into(),
                    org.into(),
                    now_ms().into(),
                ],
            )
            .await?;
        Ok(token)
    }

    pub async fn organization(&self, org: &OrgId) -> Result<Organization> {
        let row = self
            .inner
            .db
            .query_opt(
                "SELECT id, name FROM organizations WHERE id = $1",
                &[org.into()],
            )
            .await?
            .ok_or_else(|| Error::not_found(format!("organization {org}")))?;
        Ok(Organization {
            id: row.text(0)?,
            name: row.text(1)?,
        })
    }

    /// The organization a bearer token belongs to, or [`Error::Unauthenticated`].
    pub async fn authenticate(&self, bearer_token: &str) -> Result<Organization> {
        let token = Zeroizing::new(bearer_token.trim().to_owned());
        if !token_shape_ok(&token) {
            return Err(Error::Unauthenticated);
        }
        let digest = token_digest(&token);
        let row = self
            .inner
            .db
            .query_opt(
                "SELECT t.token_sha256, o.id, o.name FROM api_tokens t \
                 JOIN organizations o ON o.id = t.org_id WHERE t.token_sha256 = $1",
                &[digest.clone().into()],
            )
            .await?
            .ok_or(Error::Unauthenticated)?;
        if !digests_match(&digest, &row.text(0)?) {
            return Err(Error::Unauthenticated);
        }
        Ok(Organization {
            id: row.text(1)?,
            name: row.text(2)?,
        })
    }

    // ---- clusters ----

    /// Creates a cluster and its IAM role. With `internal` encryption the platform also creates
    /// the key (in its own account, naming the role) and applies it at once.
    pub async fn create_cluster(&self, org: &OrgId, req: NewCluster) -> Result<Cluster> {
        self.create_cluster_from(org, req, None).await
    }

    /// A new cluster that restores `restore_from` (`<source cluster>/<backup id>`) when it is
    /// provisioned, with the source's region and encryption (and, for internal encryption, the
    /// source's key).
    pub(crate) async fn create_cluster_restoring(
        &self,
        org: &OrgId,
        source: &Cluster,
        name: &str,
        restore_from: &str,
    ) -> Result<Cluster> {
        let req = NewCluster {
            name: name.to_owned(),
            region: Some(source.region.clone()),
            encryption: source.encryption,
        };
        let reuse = source
            .key_arn
            .clone()
            .map(|key| (key, restore_from.to_owned()));
        self.create_cluster_from(org, req, reuse).await
    }

    /// `restoring`: the source's key and the restore source, for a restore.
    async fn create_cluster_from(
        &self,
        org: &OrgId,
        req: NewCluster,
        restoring: Option<(String, String)>,
    ) -> Result<Cluster> {
        check_name("cluster", &req.name)?;
        let region = req
            .region
            .clone()
            .unwrap_or_else(|| self.inner.config.default_region.clone());
        check_region(&region)?;
        self.organization(org).await?;
        let id = random_id("c-")?;
        let role_arn = roles::role_arn(&self.inner.config.platform_account_id, &id);
        let now = now_ms();
        let inserted = self
            .inner
            .db
            .execute(
                "INSERT INTO clusters (id, org_id, name, region, encryption, role_arn, key_arn, state, \
                 health_status, health_reason, health_message, health_checked_at_ms, created_at_ms, \
                 restore_from) \
                 VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, $8, NULL, $9, 0, $10, $11)",
                &[
                    id.clone().into(),
                    org.into(),
                    req.name.clone().into(),
                    region.clone().into(),
                    req.encryption.as_str().into(),
                    role_arn.clone().into(),
                    ClusterState::AwaitingKey.as_str().into(),
                    status_str(&HealthStatus::Unknown).into(),
                    "no KMS key is associated yet".into(),
                    now.into(),
                    restoring.as_ref().map(|(_, from)| from.clone()).into(),
                ],
            )
            .await;
        match inserted {
            Ok(_) => {}
            Err(crate::db::DbError::Conflict(_)) => {
                return Err(Error::Conflict(format!(
                    "a cluster named {:?} exists already in this organization",
                    req.name
                )))
            }
            Err(other) => return Err(other.into()),
        }
        let made = async {
            let operator_arn = self.operator_arn().await?;
            let arn = roles::create_role(&self.inner.iam, &operator_arn, &id).await?;
            if arn != role_arn {
                return Err(Error::Internal(format!(
                    "IAM created the role {arn}, expected {role_arn}"
                )));
            }
            if req.encryption == Encryption::Internal {
                let key_arn = match &restoring {
                    // A restore under the source's platform key: the new role joins its policy.
                    Some((key_arn, _)) => {
                        self.add_role_to_internal_key(key_arn, &role_arn).await?;
                        key_arn.clone()
                    }
                    None => self.create_internal_key(&id, &role_arn, &region).await?,
                };
                let cluster = self.cluster(org, &id).await?;
                let association = self.associate(&cluster, &key_arn, true).await?;
                if !association.applied {
                    return Err(Error::AssociationFailed(Box::new(association.report)));
                }
            }
            Ok(())
        }
        .await;
        if let Err(error) = made {
            // Leave nothing of a cluster that could not be made.
            if let Err(cleanup) = roles::delete_role(&self.inner.iam, &id).await {
                tracing::warn!(cluster = %id, error = %cleanup, "role of a failed cluster creation not deleted");
            }
            let _ = self
                .inner
                .db
                .execute("DELETE FROM clusters WHERE id = $1", &[id.clone().into()])
                .await;
            return Err(error);
        }
        self.cluster(org, &id).await
    }

    pub async fn list_clusters(&self, org: &OrgId) -> Result<Vec<Cluster>> {
        let rows = self
            .inner
            .db
            .query(
                &format!(
                    "SELECT {CLUSTER_COLUMNS} FROM clusters WHERE org_id = $1 ORDER BY created_at_ms, id"
                ),
                &[org.into()],
            )
            .await?;
        rows.iter()
            .map(|row| Cluster::from_row(row).map(|c| self.with_live_health(c)))
            .collect()
    }

    /// The cluster with the monitor's latest probe, which is fresher than the stored health (the
    /// database is written only when the status changes).
    fn with_live_health(&self, mut cluster: Cluster) -> Cluster {
        if let Some(health) = self.inner.monitor.health(&cluster.id) {
            if health.status != HealthStatus::Unknown {
                cluster.health = health;
            }
        }
        cluster
    }

    pub async fn cluster(&self, org: &OrgId, cluster_id: &str) -> Result<Cluster> {
        let missing = || Error::not_found(format!("cluster {cluster_id}"));
        if !id_shape_ok("c-", cluster_id) {
            return Err(missing());
        }
        let row = self
            .inner
            .db
            .query_opt(
                &format!("SELECT {CLUSTER_COLUMNS} FROM clusters WHERE id = $1 AND org_id = $2"),
                &[cluster_id.into(), org.into()],
            )
            .await?
            .ok_or_else(missing)?;
        Cluster::from_row(&row).map(|c| self.with_live_health(c))
    }

    /// A cluster by id alone, for the operator.
    pub(crate) async fn cluster_by_id(&self, cluster_id: &str) -> Result<Option<(OrgId, Cluster)>> {
        let row = self
            .inner
            .db
            .query_opt(
                &format!("SELECT {CLUSTER_COLUMNS} FROM clusters WHERE id = $1"),
                &[cluster_id.into()],
            )
            .await?;
        match row {
            Some(row) => Ok(Some((row.text(15)?, Cluster::from_row(&row)?))),
            None => Ok(None),
        }
    }

    /// Deletes a cluster: its disks are detached and deleted, its documents and backups deleted,
    /// its role deleted, and (internal encryption) its key scheduled for deletion.
    pub async fn delete_cluster(&self, org: &OrgId, cluster_id: &str) -> Result<()> {
        let lock = self.cluster_lock(cluster_id);
        let _held = lock.lock().await;
        let cluster = self.cluster(org, cluster_id).await?;
        self.inner
            .db
            .execute(
                "UPDATE clusters SET state = $1 WHERE id = $2",
                &[ClusterState::Deleting.as_str().into(), cluster_id.into()],
            )
            .await?;
        crate::operator::delete_cluster_storage(self, &cluster).await?;
        if cluster.encryption == Encryption::Internal {
            if let Some(key_arn) = &cluster.key_arn {
                let kms = aws_sdk_kms::Client::new(&self.inner.base);
                if let Err(error) = kms
                    .schedule_key_deletion()
                    .key_id(key_arn)
                    .pending_window_in_days(7)
                    .send()
                    .await
                {
                    tracing::warn!(cluster = %cluster_id, error = %aws_sdk_kms::error::DisplayErrorContext(&error), "internal key not scheduled for deletion");
                }
            }
        }
        roles::delete_role(&self.inner.iam, cluster_id).await?;
        self.inner
            .db
            .transaction(vec![
                (
                    "DELETE FROM cluster_resources WHERE cluster_id = $1".into(),
                    vec![cluster_id.into()],
                ),
                (
                    "DELETE FROM clusters WHERE id = $1".into(),
                    vec![cluster_id.into()],
                ),
            ])
            .await?;
        self.inner.monitor.unwatch(cluster_id);
        self.inner.kms_clients.lock().unwrap().remove(cluster_id);
        self.inner.cluster_locks.lock().unwrap().remove(cluster_id);
        Ok(())
    }

    /// The two statements the customer adds to their key policy, with the cluster's role:
    /// `{"Statement": [...]}`.
    pub async fn key_policy(&self, org: &OrgId, cluster_id: &str) -> Result<serde_json::Value> {
        let cluster = self.cluster(org, cluster_id).await?;
        Ok(serde_json::json!({
            "Statement": crate::key_policy_statements(&cluster.role_arn)
        }))
    }

    /// Validates `key_arn` for the cluster as the cluster's role, and applies it only if every
    /// check passes. The first key starts provisioning; a different key on a running cluster
    /// starts the re-wrap of every data key under it. The report is returned either way.
    pub async fn associate_key(
        &self,
        org: &OrgId,
        cluster_id: &str,
        key_arn: &str,
    ) -> Result<Association> {
        let cluster = self.cluster(org, cluster_id).await?;
        if cluster.encryption == Encryption::Internal {
            return Err(Error::InvalidRequest(format!(
                "cluster {cluster_id} uses internal encryption: its key is the platform's"
            )));
        }
        self.associate(&cluster, key_arn, false).await
    }

    pub(crate) async fn associate(
        &self,
        cluster: &Cluster,
        key_arn: &str,
        internal: bool,
    ) -> Result<Association> {
        let id = &cluster.id;
        check_may_associate(cluster)?;
        // Validation runs without the cluster's lock: the operator may hold it for a long
        // provisioning or re-wrap, and a refusal must not wait for that.
        let kms = self.cluster_kms(cluster).await;
        let report = validate_key_association(&kms, key_arn, &cluster.region).await;
        if !report.may_apply() {
            return Ok(Association {
                applied: false,
                report,
            });
        }
        let lock = self.cluster_lock(id);
        let _held = lock.lock().await;
        // Read again under the lock: the state may have moved on.
        let Some((_, cluster)) = self.cluster_by_id(id).await? else {
            return Err(Error::not_found(format!("cluster {id}")));
        };
        check_may_associate(&cluster)?;
        let key_arn = report.key_arn.clone();
        match &cluster.key_arn {
            None => {
                let changed = self
                    .inner
                    .db
                    .execute(
                        "UPDATE clusters SET key_arn = $1, state = $2 WHERE id = $3 AND key_arn IS NULL",
                        &[
                            key_arn.clone().into(),
                            ClusterState::Provisioning.as_str().into(),
                            id.into(),
                        ],
                    )
                    .await?;
                if changed != 1 {
                    return Err(Error::Conflict(format!(
                        "cluster {id} got a key meanwhile; read it again"
                    )));
                }
            }
            Some(current) if *current == key_arn => {}
            Some(_) if internal => {
                return Err(Error::internal("an internal key is applied once"));
            }
            Some(_) => {
                if cluster.state != ClusterState::Ready {
                    return Err(Error::NotReady {
                        cluster_id: id.clone(),
                        state: cluster.state.as_str().into(),
                    });
                }
                self.inner
                    .db
                    .execute(
                        "UPDATE clusters SET state = $1, rewrap_to = $2, rewrap_done = 0, rewrap_total = 0 \
                         WHERE id = $3",
                        &[
                            ClusterState::Rewrapping.as_str().into(),
                            key_arn.clone().into(),
                            id.into(),
                        ],
                    )
                    .await?;
            }
        }
        self.inner.operator.kick(id);
        Ok(Association {
            applied: true,
            report,
        })
    }

    /// Probes the cluster's key now, applies the result (locking or unlocking the data) and
    /// returns it.
    pub async fn check_health_now(&self, org: &OrgId, cluster_id: &str) -> Result<KeyHealth> {
        let cluster = self.cluster(org, cluster_id).await?;
        if cluster.key_arn.is_none() {
            return Err(Error::KeyNotAssociated {
                cluster_id: cluster.id,
            });
        }
        let Some(runtime) = self.inner.operator.runtime(&cluster.id) else {
            return Err(Error::NotReady {
                cluster_id: cluster.id,
                state: cluster.state.as_str().into(),
            });
        };
        Ok(crate::operator::check_now(self, &runtime).await)
    }

    // ---- helpers ----

    pub(crate) fn cluster_lock(&self, cluster_id: &str) -> Arc<Mutex<()>> {
        self.inner
            .cluster_locks
            .lock()
            .unwrap()
            .entry(cluster_id.to_owned())
            .or_default()
            .clone()
    }

    /// The operator's principal ARN, asked of STS once.
    pub(crate) async fn operator_arn(&self) -> Result<String> {
        self.inner
            .operator_arn
            .get_or_try_init(|| roles::operator_arn(&self.inner.sts))
            .await
            .cloned()
    }

    /// The KMS client acting as the cluster's role in the cluster's region.
    pub(crate) async fn cluster_kms(&self, cluster: &Cluster) -> aws_sdk_kms::Client {
        if let Some(client) = self.inner.kms_clients.lock().unwrap().get(&cluster.id) {
            return client.clone();
        }
        let client = roles::cluster_kms(
            &self.inner.base,
            &cluster.role_arn,
            &cluster.id,
            &cluster.region,
        )
        .await;
        self.inner
            .kms_clients
            .lock()
            .unwrap()
            .entry(cluster.id.clone())
            .or_insert(client)
            .clone()
    }

    /// Adds the two statements for `role_arn` to the policy of the platform's key `key_arn`.
    async fn add_role_to_internal_key(&self, key_arn: &str, role_arn: &str) -> Result<()> {
        let kms = aws_sdk_kms::Client::new(&self.inner.base);
        let kms_error = |what: &str, e: &dyn std::fmt::Display| {
            Error::Internal(format!("KMS {what} of {key_arn} failed: {e}"))
        };
        let current = kms
            .get_key_policy()
            .key_id(key_arn)
            .policy_name("default")
            .send()
            .await
            .map_err(|e| kms_error("GetKeyPolicy", &aws_sdk_kms::error::DisplayErrorContext(&e)))?;
        let policy = current.policy().unwrap_or("{}");
        // Keep the statements of the other clusters sharing the key: ours get their own Sids.
        let mut merged: serde_json::Value =
            serde_json::from_str(policy).map_err(|e| kms_error("GetKeyPolicy", &e))?;
        let ours = crate::key_policy_statements(role_arn);
        if let (Some(list), Some(add)) = (merged["Statement"].as_array_mut(), ours.as_array()) {
            for statement in add {
                let mut statement = statement.clone();
                let sid = format!(
                    "{} ({})",
                    statement["Sid"].as_str().unwrap_or_default(),
                    role_arn.rsplit('/').next().unwrap_or_default()
                );
                statement["Sid"] = serde_json::Value::String(sid);
                list.push(statement);
            }
        }
        kms.put_key_policy()
            .key_id(key_arn)
            .policy_name("default")
            .policy(merged.to_string())
            .send()
            .await
            .map_err(|e| kms_error("PutKeyPolicy", &aws_sdk_kms::error::DisplayErrorContext(&e)))?;
        Ok(())
    }

    /// A fresh KMS client for the cluster's role (a new `AssumeRole` session), replacing the
    /// cached one.
    pub(crate) async fn renew_cluster_kms(&self, cluster: &Cluster) -> aws_sdk_kms::Client {
        let client = roles::cluster_kms(
            &self.inner.base,
            &cluster.role_arn,
            &cluster.id,
            &cluster.region,
        )
        .await;
        self.inner
            .kms_clients
            .lock()
            .unwrap()
            .insert(cluster.id.clone(), client.clone());
        client
    }

    /// The internal key of a cluster: made by the operator in the platform account, with the
    /// account's default statement and the two statements naming the cluster's role.
    async fn create_internal_key(
        &self,
        cluster_id: &str,
        role_arn: &str,
        region: &str,
    ) -> Result<String> {
        let account = &self.inner.config.platform_account_id;
        let default = serde_json::json!({
            "Version": "2012-10-17",
            "Id": "key-default-1",
            "Statement": [{
                "Sid": "Enable IAM User Permissions",
                "Effect": "Allow",
                "Principal": { "AWS": format!("arn:aws:iam::{account}:root") },
                "Action": "kms:*",
                "Resource": "*"
            }]
        });
        let policy = merge_key_policy(&default.to_string(), role_arn)?.to_string();
        let kms = aws_sdk_kms::Client::from_conf(
            aws_sdk_kms::config::Builder::from(&self.inner.base)
                .region(aws_config::Region::new(region.to_owned()))
                .build(),
        );
        // A role just created may not be visible to KMS yet on AWS (IAM is eventually
        // consistent): KMS then refuses the policy; retry a few times.
        let mut attempt = 0;
        loop {
            let created = kms
                .create_key()
                .description(format!("keyward internal key of cluster {cluster_id}"))
                .policy(&policy)
                .tags(
                    aws_sdk_kms::types::Tag::builder()
                        .tag_key("keyward:cluster")
                        .tag_value(cluster_id)
                        .build()
                        .map_err(Error::internal)?,
                )
                .send()
                .await;
            match created {
                Ok(out) => {
                    return out
                        .key_metadata()
                        .and_then(|m| m.arn())
                        .map(str::to_owned)
                        .ok_or_else(|| Error::internal("KMS CreateKey answered without a key ARN"))
                }
                Err(error)
                    if error.code() == Some("MalformedPolicyDocumentException") && attempt < 5 =>
                {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                Err(error) => {
                    return Err(Error::Internal(format!(
                        "KMS CreateKey failed: {}",
                        aws_sdk_kms::error::DisplayErrorContext(&error)
                    )))
                }
            }
        }
    }
}

/// A key can be associated unless the cluster is going away or changing its key already.
fn check_may_associate(cluster: &Cluster) -> Result<()> {
    let id = &cluster.id;
    match cluster.state {
        ClusterState::Deleting => Err(Error::Conflict(format!("cluster {id} is being deleted"))),
        ClusterState::Rewrapping => Err(Error::Conflict(format!(
            "cluster {id} is changing its key already; wait until the re-wrap is done"
        ))),
        _ => Ok(()),
    }
}

async fn sdk_config(config: &ControlConfig) -> SdkConfig {
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

/// A region name as AWS spells them: `us-east-1`, `eu-central-2`, `us-gov-west-1`.
fn check_region(region: &str) -> Result<()> {
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

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
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
    }
}
