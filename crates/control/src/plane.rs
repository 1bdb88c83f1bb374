//! The control plane facade: what the REST API calls.
//!
//! [`ControlPlane::open`] applies the migrations, starts the key-health monitor and the operator
//! (which resumes every cluster's reconciliation, see [`crate::operator`]). Every cluster call
//! is scoped by the calling organization: another organization's cluster is `not_found`, exactly
//! as one that does not exist.
//!
//! The facade records what is wanted and kicks the operator; it never provisions, re-wraps or
//! takes a cluster apart itself. It reaches AWS only as the operator (`keyward-operator`'s access
//! key) through aws-sdk-iam and aws-sdk-sts, and as each cluster's role (the shared session)
//! through aws-sdk-kms.

use std::sync::Arc;

use zeroize::Zeroizing;

use crate::alarm_rules::{AlarmRule, RulesView, Scope};
use crate::alarms::{Alarm, AlarmTransition, Alarms};
use crate::association::{validate_key_association, AssociationTarget};
use crate::audit::{AuditLog, AuditQuery, AuditRecord, CompactedCount};
use crate::cluster::{Association, Cluster, ClusterState, Encryption, NewCluster};
use crate::config::{check_region, sdk_config, ControlConfig};
use crate::db::{Db, DbError};
use crate::error::{Error, Result};
use crate::health::{HealthMonitor, HealthStatus, KeyHealth, MonitorConfig};
use crate::metrics::Exposition;
use crate::operator::Operator;
use crate::org::{
    check_name, digests_match, id_shape_ok, random_id, token_digest, token_shape_ok, ApiToken,
    OrgId, Organization, TokenInfo,
};
use crate::repo::{NewClusterRow, Repo};
use crate::runtime::{ClusterRuntime, Runtimes};
use crate::shared::{RoleOf, Shared};
use crate::{platform_key, roles};

/// The control plane. Cheap to clone: an `Arc` inside.
#[derive(Clone)]
pub struct ControlPlane {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    runtimes: Arc<Runtimes>,
    operator: Operator,
    /// Set when [`ControlPlane::shutdown`] begins: the replica is no longer ready.
    stopping: std::sync::atomic::AtomicBool,
}

/// Why a replica is not ready to serve ([`ControlPlane::ready`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    /// [`ControlPlane::shutdown`] has begun.
    ShuttingDown,
    /// The database did not answer a trivial query within [`READY_DB_TIMEOUT`].
    DatabaseUnavailable,
}

impl NotReady {
    /// The check that failed, as the readiness probe names it.
    pub fn check(self) -> &'static str {
        match self {
            NotReady::ShuttingDown => "shutdown",
            NotReady::DatabaseUnavailable => "database",
        }
    }
}

/// How long the readiness check waits for the database's answer.
pub const READY_DB_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

impl ControlPlane {
    /// Opens the database (applying migrations), then starts the operator, which resumes every
    /// cluster that has a key, and the key-health loop.
    pub async fn open(config: ControlConfig) -> Result<ControlPlane> {
        config.check()?;
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            Error::Internal(format!("cannot create {}: {e}", config.data_dir.display()))
        })?;
        // The bucket first: a replica pointed at a wrong one makes nothing, not even its database.
        crate::objects::Objects::new(&config)?.check().await?;
        let db = Db::open(&config.database_url, crate::migrations::MIGRATIONS).await?;
        // One connection pool for every AWS client, the clusters' role sessions included.
        let base = crate::roles::share_one_http_client(sdk_config(&config).await);
        let (monitor, changes) = HealthMonitor::start(MonitorConfig {
            interval: config.probe_interval,
            concurrency: config.probe_concurrency,
            max_rate: config.probe_max_rate,
        });
        let audit = AuditLog::start(db.clone());
        let alarms = Alarms::new(db.clone());
        let notifier = crate::notify::Notifier::new(db.clone(), config.notifications.clone())?;
        let leases = Arc::new(crate::lease::Leases::new(
            db.clone(),
            config.replica_id.clone(),
            config.replica_api_url.clone(),
            config.nbd_host.to_string(),
            config.lease_ttl(),
        ));
        let (shared, kicks) = Shared::new(
            config,
            Repo::new(db, leases),
            monitor,
            audit,
            alarms,
            notifier,
            base,
        )?;
        let inner = Arc::new(Inner {
            shared: Arc::new(shared),
            runtimes: Arc::new(Runtimes::default()),
            operator: Operator::default(),
            stopping: Default::default(),
        });
        inner
            .operator
            .start(&inner.shared, &inner.runtimes, kicks, changes)
            .await?;
        Ok(ControlPlane { inner })
    }

    /// Stops the operator and the health loop, detaches every disk (its key wiped, its grant
    /// retired) and closes every NBD export. The database is left as it is: a later `open`
    /// resumes.
    pub async fn shutdown(&self) {
        self.inner
            .stopping
            .store(true, std::sync::atomic::Ordering::Release);
        self.inner
            .operator
            .stop(&self.inner.shared, &self.inner.runtimes)
            .await;
        // The releases above made KMS requests too: their records are written before this ends.
        self.inner.shared.audit.flush().await;
    }

    /// Whether this replica can serve now: not shutting down, and its database answers a trivial
    /// query within [`READY_DB_TIMEOUT`]. What a load balancer's readiness probe asks.
    pub async fn ready(&self) -> std::result::Result<(), NotReady> {
        if self
            .inner
            .stopping
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return Err(NotReady::ShuttingDown);
        }
        match tokio::time::timeout(READY_DB_TIMEOUT, self.shared().repo.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => {
                tracing::debug!(%error, "not ready: the database did not answer");
                Err(NotReady::DatabaseUnavailable)
            }
            Err(_) => Err(NotReady::DatabaseUnavailable),
        }
    }

    pub fn config(&self) -> &ControlConfig {
        &self.inner.shared.config
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    pub(crate) fn runtimes(&self) -> &Runtimes {
        &self.inner.runtimes
    }

    pub(crate) fn runtime(&self, cluster_id: &str) -> Option<Arc<ClusterRuntime>> {
        self.inner.runtimes.get(cluster_id)
    }

    // ---- replicas ----

    /// This replica's identity.
    pub fn replica_id(&self) -> &str {
        self.shared().leases.replica_id()
    }

    /// The cluster leases this replica holds now (the clusters whose work it does).
    pub fn held_leases(&self) -> Vec<crate::lease::HeldLease> {
        self.shared().leases.held()
    }

    /// Every replica the shared database knows: live or not, and the leases each holds.
    pub async fn replicas(&self) -> Result<Vec<crate::lease::ReplicaInfo>> {
        self.shared().leases.replicas().await
    }

    // ---- organizations and tokens ----

    /// Creates an organization and its first API token (shown only here).
    pub async fn create_organization(&self, name: &str) -> Result<(Organization, ApiToken)> {
        check_name("organization", name)?;
        let id = random_id("o-")?;
        let token = ApiToken::generate()?;
        self.shared()
            .repo
            .insert_organization(&id, name, token.row()?)
            .await?;
        Ok((
            Organization {
                id,
                name: name.to_owned(),
            },
            token,
        ))
    }

    /// Another API token for an organization (with its first, a rotation's first half).
    pub async fn create_token(&self, org: &OrgId) -> Result<(TokenInfo, ApiToken)> {
        self.organization(org).await?;
        let token = ApiToken::generate()?;
        let row = token.row()?;
        let info = TokenInfo {
            id: row.id.clone(),
            last4: Some(row.last4.clone()),
            created_at_ms: 0,
        };
        let created_at_ms = self.shared().repo.insert_token(org, row).await?;
        Ok((
            TokenInfo {
                created_at_ms,
                ..info
            },
            token,
        ))
    }

    /// An organization's tokens (ids, creation times, last four characters).
    pub async fn list_tokens(&self, org: &OrgId) -> Result<Vec<TokenInfo>> {
        self.organization(org).await?;
        self.shared().repo.tokens(org).await
    }

    /// Revokes a token at once: the next request with it is refused.
    pub async fn revoke_token(&self, org: &OrgId, token_id: &str) -> Result<()> {
        self.organization(org).await?;
        if !id_shape_ok("t-", token_id) || !self.shared().repo.delete_token(org, token_id).await? {
            return Err(Error::not_found(format!(
                "token {token_id} of organization {org}"
            )));
        }
        Ok(())
    }

    pub async fn organization(&self, org: &OrgId) -> Result<Organization> {
        self.shared()
            .repo
            .organization(org)
            .await?
            .ok_or_else(|| Error::not_found(format!("organization {org}")))
    }

    /// The organization a bearer token belongs to, or [`Error::Unauthenticated`].
    pub async fn authenticate(&self, bearer_token: &str) -> Result<Organization> {
        let token = Zeroizing::new(bearer_token.trim().to_owned());
        if !token_shape_ok(&token) {
            return Err(Error::Unauthenticated);
        }
        let digest = token_digest(&token);
        let (stored, organization) = self
            .shared()
            .repo
            .token(&digest)
            .await?
            .ok_or(Error::Unauthenticated)?;
        if !digests_match(&digest, &stored) {
            return Err(Error::Unauthenticated);
        }
        Ok(organization)
    }

    // ---- clusters ----

    /// Creates a cluster and its IAM role. With `internal` encryption the platform also creates
    /// the key (in its own account, naming the role) and applies it at once.
    pub async fn create_cluster(&self, org: &OrgId, req: NewCluster) -> Result<Cluster> {
        self.create_cluster_from(org, req, None).await
    }

    /// A new cluster that restores `restore_from` (`<source cluster>/<backup id>`) when it is
    /// provisioned, with the source's region and encryption. An internal one gets its own
    /// platform key, like any new internal cluster: the restore writes everything anew under it.
    pub(crate) async fn create_cluster_restoring(
        &self,
        org: &OrgId,
        source: (&str, Encryption),
        name: &str,
        restore_from: &str,
    ) -> Result<Cluster> {
        let (region, encryption) = source;
        let req = NewCluster {
            name: name.to_owned(),
            region: Some(region.to_owned()),
            encryption,
        };
        self.create_cluster_from(org, req, Some(restore_from)).await
    }

    /// `restore_from`: the backup a restore reads, `<source cluster>/<backup id>`.
    async fn create_cluster_from(
        &self,
        org: &OrgId,
        req: NewCluster,
        restore_from: Option<&str>,
    ) -> Result<Cluster> {
        let shared = self.shared();
        check_name("cluster", &req.name)?;
        let region = req
            .region
            .clone()
            .unwrap_or_else(|| shared.config.default_region.clone());
        check_region(&region)?;
        self.organization(org).await?;
        let id = random_id("c-")?;
        let role_arn = roles::role_arn(&shared.config.platform_account_id, &id);
        let inserted = shared
            .repo
            .insert_cluster(NewClusterRow {
                id: &id,
                org,
                name: &req.name,
                region: &region,
                encryption: req.encryption,
                role_arn: &role_arn,
                restore_from,
            })
            .await;
        match inserted {
            Ok(()) => {}
            Err(DbError::Conflict(_)) => {
                return Err(Error::Conflict(format!(
                    "a cluster named {:?} exists already in this organization",
                    req.name
                )))
            }
            Err(other) => return Err(other.into()),
        }
        let made = async {
            let operator_arn = shared.operator_arn().await?;
            let arn = roles::create_role(&shared.iam, &operator_arn, &id).await?;
            if arn != role_arn {
                return Err(Error::Internal(format!(
                    "IAM created the role {arn}, expected {role_arn}"
                )));
            }
            if req.encryption == Encryption::Internal {
                // Its own key, also for a restore: deleting the source never locks it.
                let key_arn = platform_key::create(shared, &id, &role_arn, &region).await?;
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
            if let Err(cleanup) = roles::delete_role(&shared.iam, &id).await {
                tracing::warn!(cluster = %id, error = %cleanup, "role of a failed cluster creation not deleted");
            }
            let _ = shared.repo.remove_failed_cluster(&id).await;
            return Err(error);
        }
        self.cluster(org, &id).await
    }

    pub async fn list_clusters(&self, org: &OrgId) -> Result<Vec<Cluster>> {
        let clusters = self.shared().repo.clusters_of(org).await?;
        Ok(clusters
            .into_iter()
            .map(|c| self.with_live_health(c))
            .collect())
    }

    /// The cluster with the monitor's latest probe, which is fresher than the stored health (the
    /// database is written only when the status changes).
    fn with_live_health(&self, mut cluster: Cluster) -> Cluster {
        if let Some(health) = self.shared().monitor.health(&cluster.id) {
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
        let cluster = self
            .shared()
            .repo
            .cluster_of(org, cluster_id)
            .await?
            .ok_or_else(missing)?;
        Ok(self.with_live_health(cluster))
    }

    /// Deletes a cluster: its disks are detached and deleted, its documents deleted. Its complete
    /// backups are kept for the configured retention (listed by [`ControlPlane::list_retained_backups`],
    /// restorable and deletable by the organization), with its role and key; when they are gone
    /// its role is deleted and (internal encryption) its key scheduled for deletion, unless
    /// another cluster still uses it.
    ///
    /// The cluster is marked `deleting` here; the operator takes it apart, and this returns when
    /// the operator's attempt did (a failed attempt is retried by the operator, also after a
    /// restart).
    pub async fn delete_cluster(&self, org: &OrgId, cluster_id: &str) -> Result<()> {
        let shared = self.shared();
        let outcome = {
            let lock = shared.cluster_lock(cluster_id);
            let _held = lock.lock().await;
            self.cluster(org, cluster_id).await?;
            // Waiting before the mark, so no run of the operator can finish unseen.
            let outcome = shared.await_deletion(cluster_id);
            shared.repo.mark_deleting(cluster_id).await?;
            outcome
        };
        if !shared.kick(cluster_id) {
            return Err(Error::internal(
                "the control plane is shut down: the deletion resumes at the next start",
            ));
        }
        // The replica holding the cluster's lease finishes the deletion: this one tells its
        // own waiter, another one is seen by the row going.
        let gone = async {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                if let Ok(None) = shared.repo.cluster(cluster_id).await {
                    return;
                }
            }
        };
        let outcome = tokio::select! {
            told = outcome => told,
            () = gone => Ok(Ok(())),
        };
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(Error::Internal(format!(
                "deleting cluster {cluster_id}: {error}; the operator retries"
            ))),
            Err(_) => Err(Error::internal(
                "the control plane stopped during the deletion: it resumes at the next start",
            )),
        }
    }

    /// The KMS requests made as the cluster's role that match `query`, newest first: allowed
    /// and denied alike (AWS logs a denied cross-account call only in the caller's account, so
    /// the customer's own trail never shows these).
    pub async fn audit(
        &self,
        org: &OrgId,
        cluster_id: &str,
        query: &AuditQuery,
    ) -> Result<Vec<AuditRecord>> {
        self.cluster(org, cluster_id).await?;
        self.shared().audit.query(cluster_id, query).await
    }

    /// The hourly counts of successful probe requests that compaction left in place of the
    /// records, for the same query (`audit.rs`): what
    /// [`ControlPlane::audit`] no longer lists one by one.
    pub async fn audit_compacted(
        &self,
        org: &OrgId,
        cluster_id: &str,
        query: &AuditQuery,
    ) -> Result<Vec<CompactedCount>> {
        self.cluster(org, cluster_id).await?;
        self.shared().audit.compacted(cluster_id, query).await
    }

    /// Runs the audit's retention and compaction now (the operator does so periodically).
    /// Returns (records compacted, records expired).
    pub async fn maintain_audit_now(&self) -> Result<(u64, u64)> {
        crate::operator::maintain_audit(self.shared()).await
    }

    /// The cluster's alarms as last evaluated (every cluster with a key has the default ones).
    pub async fn alarms(&self, org: &OrgId, cluster_id: &str) -> Result<Vec<Alarm>> {
        self.cluster(org, cluster_id).await?;
        self.shared().alarms.current(cluster_id).await
    }

    /// The cluster's alarm transitions, newest first, at most `limit` (1 to 1000).
    pub async fn alarm_history(
        &self,
        org: &OrgId,
        cluster_id: &str,
        limit: usize,
    ) -> Result<Vec<AlarmTransition>> {
        self.cluster(org, cluster_id).await?;
        self.shared().alarms.history(cluster_id, limit).await
    }

    /// The organization's alarm rule, and what a cluster without a rule of its own is evaluated
    /// with.
    pub async fn org_alarm_rules(&self, org: &OrgId) -> Result<RulesView> {
        self.organization(org).await?;
        self.shared().alarms.rules.view(org, None).await
    }

    /// Replaces the organization's alarm rule by `rule` (a JSON object of the fields to set; see
    /// [`AlarmRule::parse`]). A rule refused is not stored.
    pub async fn set_org_alarm_rules(
        &self,
        org: &OrgId,
        rule: &serde_json::Value,
    ) -> Result<RulesView> {
        self.organization(org).await?;
        let rule = AlarmRule::parse(rule)?;
        let rules = &self.shared().alarms.rules;
        rules
            .set(
                Scope::Organization(org),
                &rule,
                keyward_storage::vocab::now_ms(),
            )
            .await?;
        rules.view(org, None).await
    }

    /// The cluster's alarm rule, its organization's, and what its alarms are evaluated with.
    pub async fn cluster_alarm_rules(&self, org: &OrgId, cluster_id: &str) -> Result<RulesView> {
        self.cluster(org, cluster_id).await?;
        self.shared().alarms.rules.view(org, Some(cluster_id)).await
    }

    /// Replaces the cluster's alarm rule by `rule`; what it leaves out comes from the
    /// organization's rule, then the defaults. A rule refused is not stored.
    pub async fn set_cluster_alarm_rules(
        &self,
        org: &OrgId,
        cluster_id: &str,
        rule: &serde_json::Value,
    ) -> Result<RulesView> {
        self.cluster(org, cluster_id).await?;
        let rule = AlarmRule::parse(rule)?;
        let rules = &self.shared().alarms.rules;
        rules
            .set(
                Scope::Cluster(cluster_id),
                &rule,
                keyward_storage::vocab::now_ms(),
            )
            .await?;
        rules.view(org, Some(cluster_id)).await
    }

    /// Evaluates every cluster's alarms now (the operator does so once per probe interval).
    pub async fn evaluate_alarms_now(&self) -> Result<()> {
        crate::operator::evaluate_alarms_once(self.shared()).await
    }

    /// Records the audit could not keep because its queue was full (see [`crate::AUDIT_QUEUE`]).
    pub fn audit_dropped(&self) -> u64 {
        self.shared().audit.dropped()
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

    async fn associate(
        &self,
        cluster: &Cluster,
        key_arn: &str,
        internal: bool,
    ) -> Result<Association> {
        let shared = self.shared();
        let id = &cluster.id;
        check_may_associate(cluster)?;
        // Validation runs without the cluster's lock: the operator may hold it for a long
        // provisioning or re-wrap, and a refusal must not wait for that.
        let kms = shared
            .session(RoleOf {
                cluster_id: id,
                role_arn: &cluster.role_arn,
                region: &cluster.region,
            })
            .await;
        // An external cluster must not borrow a key of the platform's account (another cluster's
        // internal key, deleted with that cluster); an internal cluster's key is made there.
        let target = AssociationTarget {
            region: &cluster.region,
            role_arn: &cluster.role_arn,
            refused_account: (!internal).then_some(shared.config.platform_account_id.as_str()),
        };
        let report = validate_key_association(&kms, key_arn, &target).await;
        if !report.may_apply() {
            return Ok(Association {
                applied: false,
                report,
            });
        }
        let lock = shared.cluster_lock(id);
        let _held = lock.lock().await;
        // Read again under the lock: the state may have moved on.
        let Some((_, cluster)) = shared.repo.cluster(id).await? else {
            return Err(Error::not_found(format!("cluster {id}")));
        };
        check_may_associate(&cluster)?;
        let key_arn = report.key_arn.clone();
        match &cluster.key_arn {
            None => {
                if !shared.repo.apply_first_key(id, &key_arn).await? {
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
                shared.repo.start_rewrap(id, &key_arn).await?;
            }
        }
        shared.kick(id);
        Ok(Association {
            applied: true,
            report,
        })
    }

    /// What the key-health monitor's last round of periodic probes took, and the KMS requests
    /// every probe has sent since the start (for capacity planning and benchmarks).
    pub fn probe_stats(&self) -> (crate::health::RoundStats, u64) {
        let monitor = &self.shared().monitor;
        (monitor.last_round(), monitor.kms_requests())
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
        let Some(runtime) = self.runtime(&cluster.id) else {
            return Err(Error::NotReady {
                cluster_id: cluster.id,
                state: cluster.state.as_str().into(),
            });
        };
        Ok(runtime.check_now(self.shared()).await)
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
        ClusterState::Failed => Err(failed(cluster)),
        _ => Ok(()),
    }
}

/// What a failed cluster answers to everything but its deletion.
pub(crate) fn failed(cluster: &Cluster) -> Error {
    Error::Conflict(format!(
        "cluster {} failed: {}",
        cluster.id,
        cluster
            .failure
            .as_deref()
            .unwrap_or("no reason was recorded")
    ))
}

impl ControlPlane {
    /// Writes every metric the control plane keeps (see the module's doc) to `out`.
    pub fn write_metrics(&self, out: &mut Exposition) {
        let shared = self.shared();
        shared.metrics.write(out);
        out.family(
            "keyward_data_key_cache_hits_total",
            "counter",
            "Data-key cache lookups served without a KMS call, by cluster (since its runtime started).",
        );
        let caches = self.runtimes().cache_counts();
        for (cluster, hits, _) in &caches {
            out.sample(
                "keyward_data_key_cache_hits_total",
                &[("cluster", cluster)],
                *hits as f64,
            );
        }
        out.family(
            "keyward_data_key_cache_misses_total",
            "counter",
            "Data-key cache lookups that needed a KMS call, by cluster (since its runtime started).",
        );
        for (cluster, _, misses) in &caches {
            out.sample(
                "keyward_data_key_cache_misses_total",
                &[("cluster", cluster)],
                *misses as f64,
            );
        }
        out.family(
            "keyward_cluster_key_health",
            "gauge",
            "Clusters with a key, by the key's last known health.",
        );
        for (status, count) in shared.monitor.status_counts() {
            out.sample(
                "keyward_cluster_key_health",
                &[("status", status.as_str())],
                count as f64,
            );
        }
        out.family(
            "keyward_audit_records_dropped_total",
            "counter",
            "KMS audit records dropped because the audit's queue was full.",
        );
        out.sample(
            "keyward_audit_records_dropped_total",
            &[],
            shared.audit.dropped() as f64,
        );
    }
}

#[cfg(feature = "test-support")]
impl ControlPlane {
    /// The KMS client of the cluster's role, audited as every data path's is: for tests and
    /// benches that make the role's own requests (a flood of denied calls). Not in a build that
    /// serves (feature `test-support`).
    pub async fn role_kms_for_tests(
        &self,
        org: &OrgId,
        cluster_id: &str,
    ) -> Result<aws_sdk_kms::Client> {
        let cluster = self.cluster(org, cluster_id).await?;
        Ok(self
            .shared()
            .session(RoleOf {
                cluster_id: &cluster.id,
                role_arn: &cluster.role_arn,
                region: &cluster.region,
            })
            .await)
    }
}
