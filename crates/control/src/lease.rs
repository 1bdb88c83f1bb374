//! Cluster leases: which control-plane replica does each cluster's work.
//!
//! Any number of replicas share one database. Every replica serves the API; the *work* on a
//! cluster — reconciling it, probing its key, evaluating its alarms, serving its disks — is done
//! by the one replica that holds the cluster's lease, a row of `cluster_leases`:
//!
//! - **Time is the database's.** A lease runs until `expires_ms` on the database's clock; a
//!   replica renews the leases it holds every `ttl / 4` (one statement for all of them) and
//!   heartbeats its row of `replicas` in the same breath. Replicas whose clocks disagree still
//!   agree on when a lease ends.
//! - **A holder stops before anyone can take over.** A replica counts its lease valid until
//!   `t0 + ttl × 3/4`, where `t0` is *its own* clock read *before* it sent the renewal. The
//!   database stamped the renewal after `t0`, so no other replica can take the lease before
//!   `t0 + ttl`. A replica cut off from the database (the renewals fail) therefore stops acting
//!   on its clusters — unwatched, disks detached, exports closed — a quarter of a lease before
//!   another can acquire them.
//! - **Fencing.** Each acquisition adds one to the row's `token`. The operator's writes for a
//!   cluster (its resources made, its state, its key health) run in a transaction guarded by
//!   `holder = me AND token = mine AND not expired` ([`Leases::guard`],
//!   [`crate::db::Db::guarded_transaction`]): a replica that lost the lease, however late its
//!   write arrives, writes nothing. On PostgreSQL the guard's row lock also orders the write
//!   before any takeover.
//! - **Who should hold what** ([`desired_holder`]) is computed by every replica alike from the
//!   live replicas (a heartbeat within one lease): the replica whose node holds the cluster's
//!   disks, while it lives (disks stay with their files); otherwise the highest rendezvous hash
//!   of (cluster, replica), so clusters spread evenly and a joining or leaving replica moves
//!   only its share. A replica takes the clusters it should hold once their lease is free or
//!   expired, and hands over (releases at once, after stopping its own work) those that another
//!   live replica should hold.
//! - **Graceful shutdown** ([`Leases::stop`]) releases every lease and marks the replica
//!   stopped, so the others take its clusters at their next renewal instead of waiting a lease.
//!
//! What it does not do: act on clusters (the operator does, `operator/replica.rs`), or decide
//! anything from a replica's own clock but its own deadline.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::db::{Db, Value};
use crate::error::Result;

/// A replica as the database knows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReplicaInfo {
    pub id: String,
    /// Where its API listens, as it was started with.
    pub api_url: String,
    /// Where its NBD exports are served.
    pub nbd_host: String,
    pub started_at_ms: i64,
    /// Its last heartbeat, on the database's clock.
    pub heartbeat_ms: i64,
    /// Heartbeating within one lease, and not stopped.
    pub live: bool,
    /// Shut down gracefully (its leases handed over).
    pub stopped: bool,
    /// The cluster leases it holds now.
    pub leases: u64,
}

/// One lease this replica holds, as the replica sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HeldLease {
    pub cluster_id: String,
    /// The fencing token of this acquisition.
    pub token: i64,
    /// Milliseconds the replica still counts it valid on its own clock (stops acting then
    /// unless renewed).
    pub valid_for_ms: u64,
}

/// A cluster that needs a holder, as one pass of the lease loop sees it.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    pub(crate) cluster_id: String,
    pub(crate) disk_node: Option<String>,
    /// Its state (`provisioning`, `ready`, ...).
    pub(crate) state: String,
    /// Its holder, when the lease is live.
    pub(crate) holder: Option<String>,
}

#[derive(Debug, Clone, Copy)]
struct Held {
    token: i64,
    valid_until: Instant,
}

/// This replica's leases and its view of the others.
pub(crate) struct Leases {
    db: Db,
    me: String,
    api_url: String,
    nbd_host: String,
    ttl: Duration,
    held: Mutex<HashMap<String, Held>>,
    stopping: std::sync::atomic::AtomicBool,
}

impl Leases {
    pub(crate) fn new(
        db: Db,
        me: String,
        api_url: String,
        nbd_host: String,
        ttl: Duration,
    ) -> Self {
        Leases {
            db,
            me,
            api_url,
            nbd_host,
            ttl,
            held: Mutex::new(HashMap::new()),
            stopping: false.into(),
        }
    }

    pub(crate) fn replica_id(&self) -> &str {
        &self.me
    }

    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    /// How often the leases are renewed (and the loop looks for work to take or hand over).
    pub(crate) fn renew_every(&self) -> Duration {
        self.ttl / 4
    }

    /// How long after `t0` (read before the renewal was sent) a lease is counted valid here.
    fn valid_after(&self, t0: Instant) -> Instant {
        t0 + self.ttl * 3 / 4
    }

    fn ttl_ms(&self) -> i64 {
        i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX)
    }

    /// The fencing token when this replica holds the cluster's lease and still counts it valid.
    pub(crate) fn holds(&self, cluster_id: &str) -> Option<i64> {
        if self.stopping.load(std::sync::atomic::Ordering::Acquire) {
            return None;
        }
        let held = self.held.lock().get(cluster_id).copied()?;
        (held.valid_until > Instant::now()).then_some(held.token)
    }

    /// Every lease held, for the API.
    pub(crate) fn held(&self) -> Vec<HeldLease> {
        let now = Instant::now();
        let mut leases: Vec<HeldLease> = self
            .held
            .lock()
            .iter()
            .filter(|(_, h)| h.valid_until > now)
            .map(|(id, h)| HeldLease {
                cluster_id: id.clone(),
                token: h.token,
                valid_for_ms: u64::try_from((h.valid_until - now).as_millis()).unwrap_or(0),
            })
            .collect();
        leases.sort_by(|a, b| a.cluster_id.cmp(&b.cluster_id));
        leases
    }

    /// The statement that fences a write for the cluster: it changes the lease row only while
    /// this replica holds it with the token it has; `None` when it does not hold it.
    pub(crate) fn guard(&self, cluster_id: &str) -> Option<(String, Vec<Value>)> {
        let token = self.holds(cluster_id)?;
        Some((
            format!(
                "UPDATE cluster_leases SET token = token WHERE cluster_id = $1 AND holder = $2 \
                 AND token = $3 AND expires_ms > {}",
                self.db.now_ms_sql()
            ),
            vec![cluster_id.into(), self.me.as_str().into(), token.into()],
        ))
    }

    /// Heartbeats this replica's row and renews every lease it holds, in one transaction.
    /// Returns the clusters whose lease was lost (taken, or expired before this renewal).
    pub(crate) async fn renew(&self) -> Result<Vec<String>> {
        let t0 = Instant::now();
        let now = self.db.now_ms_sql();
        let ttl = self.ttl_ms();
        self.db
            .transaction(vec![
                (
                    format!(
                        "INSERT INTO replicas (id, api_url, nbd_host, started_at_ms, heartbeat_ms, \
                         stopped) VALUES ($1, $2, $3, {now}, {now}, 0) ON CONFLICT (id) DO UPDATE \
                         SET heartbeat_ms = {now}, stopped = 0, api_url = $2, nbd_host = $3"
                    ),
                    vec![
                        self.me.as_str().into(),
                        self.api_url.as_str().into(),
                        self.nbd_host.as_str().into(),
                    ],
                ),
                (
                    format!(
                        "UPDATE cluster_leases SET expires_ms = {now} + $2 \
                         WHERE holder = $1 AND expires_ms > {now}"
                    ),
                    vec![self.me.as_str().into(), ttl.into()],
                ),
            ])
            .await?;
        // What the database says is held now, token and all.
        let rows = self
            .db
            .query(
                &format!(
                    "SELECT cluster_id, token FROM cluster_leases \
                     WHERE holder = $1 AND expires_ms > {now}"
                ),
                &[self.me.as_str().into()],
            )
            .await?;
        let mut current = HashMap::with_capacity(rows.len());
        for row in &rows {
            current.insert(row.text("cluster_id")?, row.int("token")?);
        }
        let valid_until = self.valid_after(t0);
        let mut held = self.held.lock();
        let mut lost = Vec::new();
        held.retain(|id, h| match current.get(id) {
            Some(&token) if token == h.token => {
                h.valid_until = valid_until;
                true
            }
            _ => {
                lost.push(id.clone());
                false
            }
        });
        Ok(lost)
    }

    /// Drops, here, every lease whose validity ran out without a renewal (the database could not
    /// be reached): the caller stops acting on those clusters.
    pub(crate) fn expire_unrenewed(&self) -> Vec<String> {
        let now = Instant::now();
        let mut held = self.held.lock();
        let expired: Vec<String> = held
            .iter()
            .filter(|(_, h)| h.valid_until <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            held.remove(id);
        }
        expired
    }

    /// The earliest moment a held lease stops being valid here.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.held.lock().values().map(|h| h.valid_until).min()
    }

    /// The ids of the replicas that live (a heartbeat within one lease, not stopped), sorted.
    pub(crate) async fn live_replicas(&self) -> Result<Vec<String>> {
        let rows = self
            .db
            .query(
                &format!(
                    "SELECT id FROM replicas WHERE stopped = 0 AND heartbeat_ms > {} - $1 \
                     ORDER BY id",
                    self.db.now_ms_sql()
                ),
                &[self.ttl_ms().into()],
            )
            .await?;
        rows.iter().map(|r| Ok(r.text("id")?)).collect()
    }

    /// The replica holding the cluster's lease now, if any.
    pub(crate) async fn holder_of(&self, cluster_id: &str) -> Result<Option<String>> {
        let row = self
            .db
            .query_opt(
                &format!(
                    "SELECT holder FROM cluster_leases WHERE cluster_id = $1 AND expires_ms > {}",
                    self.db.now_ms_sql()
                ),
                &[cluster_id.into()],
            )
            .await?;
        Ok(row.map(|r| r.opt_text("holder")).transpose()?.flatten())
    }

    /// Every cluster that has work (a key, or a deletion to finish), with its disks' node and
    /// its live holder.
    pub(crate) async fn candidates(&self) -> Result<Vec<Candidate>> {
        let rows = self
            .db
            .query(
                &format!(
                    "SELECT c.id AS id, c.disk_node AS disk_node, c.state AS state, \
                     CASE WHEN l.expires_ms > {} THEN l.holder ELSE NULL END AS holder \
                     FROM clusters c LEFT JOIN cluster_leases l ON l.cluster_id = c.id \
                     WHERE c.key_arn IS NOT NULL OR c.state = 'deleting' ORDER BY c.id",
                    self.db.now_ms_sql()
                ),
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Candidate {
                    cluster_id: r.text("id")?,
                    disk_node: r.opt_text("disk_node")?,
                    state: r.text("state")?,
                    holder: r.opt_text("holder")?,
                })
            })
            .collect()
    }

    /// Takes the cluster's lease when it is free or expired: its new fencing token, or `None`
    /// when another replica holds it.
    pub(crate) async fn acquire(&self, cluster_id: &str) -> Result<Option<i64>> {
        self.acquire_many(&[cluster_id.to_owned()]).await?;
        Ok(self.holds(cluster_id))
    }

    /// Takes each lease that is free, expired, or recorded as this replica's by an earlier run
    /// of it (a restart under the same identity: the token still grows, fencing the old run),
    /// in transactions of up to 500 (one commit each); returns the clusters acquired.
    pub(crate) async fn acquire_many(&self, cluster_ids: &[String]) -> Result<Vec<String>> {
        // The earliest moment any of them was asked for: every lease taken here is counted
        // valid from then, which is never later than the database's stamp.
        let t0 = Instant::now();
        let now = self.db.now_ms_sql();
        let wanted: Vec<&String> = cluster_ids
            .iter()
            .filter(|id| self.holds(id).is_none())
            .collect();
        let mut taken = Vec::new();
        for chunk in wanted.chunks(500) {
            if self.stopping.load(std::sync::atomic::Ordering::Acquire) {
                return Ok(Vec::new());
            }
            let statements = chunk
                .iter()
                .map(|id| {
                    (
                        format!(
                            "INSERT INTO cluster_leases (cluster_id, holder, token, expires_ms, \
                             acquired_at_ms) VALUES ($1, $2, 1, {now} + $3, {now}) \
                             ON CONFLICT (cluster_id) DO UPDATE SET holder = $2, \
                             token = cluster_leases.token + 1, expires_ms = {now} + $3, \
                             acquired_at_ms = {now} \
                             WHERE cluster_leases.holder IS NULL OR cluster_leases.holder = $2 \
                             OR cluster_leases.expires_ms <= {now}"
                        ),
                        vec![
                            id.as_str().into(),
                            self.me.as_str().into(),
                            self.ttl_ms().into(),
                        ],
                    )
                })
                .collect();
            let counts = self.db.transaction(statements).await?;
            taken.extend(
                chunk
                    .iter()
                    .zip(counts)
                    .filter(|(_, n)| *n > 0)
                    .map(|(id, _)| (*id).clone()),
            );
        }
        if taken.is_empty() {
            return Ok(taken);
        }
        // The tokens just written (RETURNING does not cross a batch of statements).
        let rows = self
            .db
            .query(
                "SELECT cluster_id, token FROM cluster_leases WHERE holder = $1",
                &[self.me.as_str().into()],
            )
            .await?;
        let tokens: HashMap<String, i64> = rows
            .iter()
            .map(|r| Ok((r.text("cluster_id")?, r.int("token")?)))
            .collect::<Result<_>>()?;
        let valid_until = self.valid_after(t0);
        let mut held = self.held.lock();
        taken.retain(|id| match tokens.get(id) {
            Some(&token) => {
                held.insert(id.clone(), Held { token, valid_until });
                true
            }
            None => false,
        });
        Ok(taken)
    }

    /// Forgets the lease here at once, then frees its row (when still ours) so another replica
    /// can take it without waiting for it to expire. The caller has stopped its work first.
    pub(crate) async fn release(&self, cluster_id: &str) -> Result<()> {
        let Some(held) = self.held.lock().remove(cluster_id) else {
            return Ok(());
        };
        self.db
            .execute(
                "UPDATE cluster_leases SET holder = NULL, expires_ms = 0 \
                 WHERE cluster_id = $1 AND holder = $2 AND token = $3",
                &[
                    cluster_id.into(),
                    self.me.as_str().into(),
                    held.token.into(),
                ],
            )
            .await?;
        Ok(())
    }

    /// Forgets a lease here without touching the database (the cluster was deleted).
    pub(crate) fn forget(&self, cluster_id: &str) {
        self.held.lock().remove(cluster_id);
    }

    /// From now on nothing is acquired and nothing counts as held (shutdown begins).
    pub(crate) fn begin_stop(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Hands every lease over and marks this replica stopped (graceful shutdown; the work on
    /// the clusters has stopped first).
    pub(crate) async fn stop(&self) -> Result<()> {
        self.begin_stop();
        self.held.lock().clear();
        self.db
            .transaction(vec![
                (
                    "UPDATE cluster_leases SET holder = NULL, expires_ms = 0 WHERE holder = $1"
                        .into(),
                    vec![self.me.as_str().into()],
                ),
                (
                    "UPDATE replicas SET stopped = 1 WHERE id = $1".into(),
                    vec![self.me.as_str().into()],
                ),
            ])
            .await?;
        Ok(())
    }

    /// Every replica the database knows, with how many leases each holds.
    pub(crate) async fn replicas(&self) -> Result<Vec<ReplicaInfo>> {
        let now = self.db.now_ms_sql();
        let rows = self
            .db
            .query(
                &format!(
                    "SELECT r.id AS id, r.api_url AS api_url, r.nbd_host AS nbd_host, \
                     r.started_at_ms AS started_at_ms, r.heartbeat_ms AS heartbeat_ms, \
                     r.stopped AS stopped, \
                     CASE WHEN r.stopped = 0 AND r.heartbeat_ms > {now} - $1 THEN 1 ELSE 0 END \
                     AS live, \
                     (SELECT COUNT(*) FROM cluster_leases l WHERE l.holder = r.id \
                      AND l.expires_ms > {now}) AS leases \
                     FROM replicas r ORDER BY r.id"
                ),
                &[self.ttl_ms().into()],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ReplicaInfo {
                    id: r.text("id")?,
                    api_url: r.text("api_url")?,
                    nbd_host: r.text("nbd_host")?,
                    started_at_ms: r.int("started_at_ms")?,
                    heartbeat_ms: r.int("heartbeat_ms")?,
                    live: r.int("live")? == 1,
                    stopped: r.int("stopped")? == 1,
                    leases: u64::try_from(r.int("leases")?).unwrap_or(0),
                })
            })
            .collect()
    }
}

/// The replica that should do the cluster's work, of the `live` ones (sorted ids): the node
/// that holds its disks while that node lives, else the highest rendezvous hash of (cluster,
/// replica). Every replica computes the same answer from the same list.
pub(crate) fn desired_holder<'a>(
    cluster_id: &str,
    disk_node: Option<&str>,
    live: &'a [String],
) -> Option<&'a str> {
    if let Some(node) = disk_node {
        if let Some(found) = live.iter().find(|r| r.as_str() == node) {
            return Some(found);
        }
    }
    live.iter()
        .max_by_key(|replica| (rendezvous(cluster_id, replica), replica.as_str()))
        .map(String::as_str)
}

/// FNV-1a over "cluster\0replica": stable across builds and platforms (std's hasher is not
/// promised to be), which every replica must agree on.
fn rendezvous(cluster_id: &str, replica: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in cluster_id
        .bytes()
        .chain(std::iter::once(0))
        .chain(replica.bytes())
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // FNV's low bits mix poorly for short inputs that differ at the end: a final avalanche.
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^ (hash >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn database() -> Db {
        Db::open("sqlite::memory:", crate::migrations::MIGRATIONS)
            .await
            .unwrap()
    }

    fn replica(db: &Db, id: &str, ttl_ms: u64) -> Leases {
        Leases::new(
            db.clone(),
            id.into(),
            format!("http://{id}"),
            "127.0.0.1".into(),
            Duration::from_millis(ttl_ms),
        )
    }

    #[tokio::test]
    async fn a_lease_has_one_holder_until_it_expires_and_each_taker_gets_a_larger_token() {
        let db = database().await;
        let (a, b) = (replica(&db, "a", 300), replica(&db, "b", 300));
        assert_eq!(a.acquire("c-1").await.unwrap(), Some(1));
        assert_eq!(b.acquire("c-1").await.unwrap(), None, "held by a");
        assert_eq!(b.holds("c-1"), None);
        // a stops renewing: it stops counting the lease at 3/4 of it, before b can take it.
        tokio::time::sleep(Duration::from_millis(240)).await;
        assert_eq!(a.holds("c-1"), None, "a must stop before the lease ends");
        assert_eq!(b.acquire("c-1").await.unwrap(), None, "not expired yet");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(b.acquire("c-1").await.unwrap(), Some(2));
        // a's renewal finds the lease gone.
        assert_eq!(a.renew().await.unwrap(), vec!["c-1".to_owned()]);
        assert!(a.held().is_empty());
        // b hands it over: a takes it at once, with the next token.
        b.release("c-1").await.unwrap();
        assert_eq!(a.acquire("c-1").await.unwrap(), Some(3));
    }

    #[tokio::test]
    async fn a_write_fenced_by_a_lost_lease_writes_nothing() {
        let db = database().await;
        let a = replica(&db, "a", 10_000);
        a.acquire("c-1").await.unwrap().unwrap();
        let insert = || {
            vec![(
                "INSERT INTO replicas (id, api_url, nbd_host, started_at_ms, heartbeat_ms) \
                 VALUES ($1, '', '', 0, 0)"
                    .to_owned(),
                vec![Value::from(format!("written-{}", rand_suffix()))],
            )]
        };
        // Held: the write lands.
        db.guarded_transaction(a.guard("c-1").unwrap(), insert())
            .await
            .unwrap();
        // Another replica took the lease (a has not noticed yet: its own view is still valid).
        db.execute(
            "UPDATE cluster_leases SET holder = 'b', token = token + 1 WHERE cluster_id = 'c-1'",
            &[],
        )
        .await
        .unwrap();
        let guard = a.guard("c-1").expect("a still believes it holds the lease");
        let before = db
            .query("SELECT id FROM replicas", &[])
            .await
            .unwrap()
            .len();
        let refused = db.guarded_transaction(guard, insert()).await;
        assert!(
            matches!(refused, Err(crate::db::DbError::GuardFailed)),
            "{refused:?}"
        );
        let after = db
            .query("SELECT id FROM replicas", &[])
            .await
            .unwrap()
            .len();
        assert_eq!(before, after, "nothing of a fenced write is kept");
        // And its renewal tells it so.
        assert_eq!(a.renew().await.unwrap(), vec!["c-1".to_owned()]);
        assert_eq!(a.holds("c-1"), None);
    }

    fn rand_suffix() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed)
    }

    #[tokio::test]
    async fn a_graceful_stop_frees_every_lease_and_leaves_the_replica_not_live() {
        let db = database().await;
        let (a, b) = (replica(&db, "a", 10_000), replica(&db, "b", 10_000));
        a.renew().await.unwrap();
        b.renew().await.unwrap();
        a.acquire_many(&["c-1".into(), "c-2".into()]).await.unwrap();
        assert_eq!(b.live_replicas().await.unwrap(), vec!["a", "b"]);
        a.stop().await.unwrap();
        assert_eq!(b.live_replicas().await.unwrap(), vec!["b"]);
        let taken = b.acquire_many(&["c-1".into(), "c-2".into()]).await.unwrap();
        assert_eq!(
            taken,
            vec!["c-1", "c-2"],
            "taken at once, without waiting for expiry"
        );
        let shown = b.replicas().await.unwrap();
        assert_eq!(shown.len(), 2);
        assert!(shown[0].stopped && !shown[0].live && shown[0].leases == 0);
        assert!(shown[1].live && shown[1].leases == 2);
    }

    fn live(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_disks_node_holds_its_cluster_while_it_lives() {
        let replicas = live(&["a", "b", "c"]);
        assert_eq!(desired_holder("c-1", Some("b"), &replicas), Some("b"));
        // Its node gone, another replica watches the cluster.
        let survivors = live(&["a", "c"]);
        assert!(matches!(
            desired_holder("c-1", Some("b"), &survivors),
            Some("a") | Some("c")
        ));
        assert_eq!(desired_holder("c-1", None, &[]), None);
    }

    #[test]
    fn clusters_spread_evenly_and_a_leaving_replica_moves_only_its_share() {
        let three = live(&["r-1", "r-2", "r-3"]);
        let ids: Vec<String> = (0..3000).map(|i| format!("c-{i:05}")).collect();
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for id in &ids {
            *counts
                .entry(desired_holder(id, None, &three).unwrap())
                .or_default() += 1;
        }
        for (replica, n) in &counts {
            assert!((850..=1150).contains(n), "{replica} got {n} of 3000");
        }
        let two = live(&["r-1", "r-3"]);
        for id in &ids {
            let before = desired_holder(id, None, &three).unwrap();
            let after = desired_holder(id, None, &two).unwrap();
            if before != "r-2" {
                assert_eq!(before, after, "{id} moved though its replica stayed");
            }
        }
    }
}
