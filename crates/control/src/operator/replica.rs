//! The operator's share of the work among replicas: the lease loop and what follows from it.
//!
//! Every `ttl / 4` ([`crate::lease`]) one pass:
//! 1. renews this replica's leases and heartbeat; a lease the database no longer gives it is
//!    *lost* — its work stops at once ([`stand_down`]);
//! 2. reads the live replicas and every cluster with work, and for each computes who should hold
//!    it ([`desired_holder`]): a free or expired lease that should be this replica's is
//!    acquired and the cluster reconciled (its runtime made, its key watched — the monitor's
//!    first probe of a newly watched key is a full one, at once); a lease this replica holds but
//!    another live replica should hold is handed over (work stopped, then the row freed, so the
//!    other takes it at its next pass);
//! 3. kicks the held clusters whose state moved since the last pass (a key applied, a key
//!    change or a deletion asked through another replica's API);
//! 4. refreshes, from the database, the key health of the clusters this replica only *serves*
//!    (their documents, for requests that reached it) without holding: their holder probes and
//!    records; a follower locks within a pass of that record.
//!
//! Beside it, a deadline watcher drops every lease whose validity ran out unrenewed (the
//! database unreachable) and stops its work, a quarter of a lease before another replica can
//! take it.

use std::collections::HashMap;
use std::sync::Weak;
use std::time::{Duration, Instant};

use crate::cluster::ClusterState;
use crate::error::Result;
use crate::lease::desired_holder;
use crate::runtime::Runtimes;
use crate::shared::Shared;

/// The lease loop: one pass every `ttl / 4`. A pass may take longer (handing a cluster over
/// waits for its disks to detach); safety never waits on it — the deadline watcher stops the
/// work of every lease that runs out unrenewed. A pass stuck on a database that does not answer
/// is given up after a few leases.
pub(super) async fn run(shared: Weak<Shared>, runtimes: Weak<Runtimes>) {
    let mut seen: HashMap<String, String> = HashMap::new();
    loop {
        let (Some(strong), Some(rts)) = (shared.upgrade(), runtimes.upgrade()) else {
            return;
        };
        let every = strong.leases.renew_every();
        let limit = (strong.leases.ttl() * 4).max(Duration::from_secs(5));
        let started = Instant::now();
        match tokio::time::timeout(limit, pass(&strong, &rts, &mut seen)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, "lease pass failed; leases run out unless renewed")
            }
            Err(_) => tracing::warn!("lease pass gave up; leases run out unless renewed"),
        }
        drop((strong, rts));
        tokio::time::sleep(every.saturating_sub(started.elapsed())).await;
    }
}

/// Stops the work of every lease that ran out unrenewed, as soon as it does.
pub(super) async fn watch_deadlines(shared: Weak<Shared>, runtimes: Weak<Runtimes>) {
    loop {
        let (Some(strong), Some(rts)) = (shared.upgrade(), runtimes.upgrade()) else {
            return;
        };
        for cluster_id in strong.leases.expire_unrenewed() {
            tracing::warn!(cluster = %cluster_id, "cluster lease not renewed in time; stopping its work");
            stand_down(&strong, &rts, &cluster_id).await;
        }
        // Wake at the next deadline, or a twentieth of a lease from now at the latest.
        let poll = strong.leases.ttl() / 20;
        let wait = strong
            .leases
            .next_deadline()
            .map(|at| at.saturating_duration_since(Instant::now()))
            .unwrap_or(poll)
            .min(poll)
            .max(Duration::from_millis(5));
        drop((strong, rts));
        tokio::time::sleep(wait).await;
    }
}

/// One pass of the lease loop.
async fn pass(
    shared: &Shared,
    runtimes: &Runtimes,
    seen: &mut HashMap<String, String>,
) -> Result<()> {
    let leases = &shared.leases;
    for cluster_id in leases.renew().await? {
        tracing::warn!(cluster = %cluster_id, "cluster lease lost; stopping its work");
        stand_down(shared, runtimes, &cluster_id).await;
        seen.remove(&cluster_id);
    }
    let live = leases.live_replicas().await?;
    let me = leases.replica_id().to_owned();
    let candidates = leases.candidates().await?;
    let mut to_take = Vec::new();
    for c in &candidates {
        let want = desired_holder(&c.cluster_id, c.disk_node.as_deref(), &live);
        let held = leases.holds(&c.cluster_id).is_some();
        match (want == Some(me.as_str()), held) {
            (true, false) if c.holder.is_none() || c.holder.as_deref() == Some(me.as_str()) => {
                to_take.push(c.cluster_id.clone());
            }
            (false, true) if want.is_some() => {
                tracing::info!(cluster = %c.cluster_id, to = want.unwrap_or_default(), "handing the cluster's lease over");
                stand_down(shared, runtimes, &c.cluster_id).await;
                leases.release(&c.cluster_id).await?;
                seen.remove(&c.cluster_id);
            }
            _ => {}
        }
    }
    for cluster_id in leases.acquire_many(&to_take).await? {
        tracing::info!(cluster = %cluster_id, "cluster lease acquired");
        seen.remove(&cluster_id);
    }
    // Held clusters whose state moved (or newly held ones) are reconciled.
    let states: HashMap<&str, &str> = candidates
        .iter()
        .map(|c| (c.cluster_id.as_str(), c.state.as_str()))
        .collect();
    for lease in leases.held() {
        let Some(state) = states.get(lease.cluster_id.as_str()) else {
            continue;
        };
        if seen.get(&lease.cluster_id).map(String::as_str) != Some(*state) {
            seen.insert(lease.cluster_id.clone(), (*state).to_owned());
            shared.kick(&lease.cluster_id);
        }
    }
    seen.retain(|id, _| leases.holds(id).is_some());
    follow(shared, runtimes).await;
    Ok(())
}

/// Takes the cluster's lease at once when it is this replica's to hold and free (a change made
/// through this replica's API need not wait for the next pass); `false` when it is not.
pub(super) async fn take(shared: &Shared, cluster: &crate::cluster::Cluster) -> Result<bool> {
    let leases = &shared.leases;
    let live = leases.live_replicas().await?;
    let want = desired_holder(&cluster.id, cluster.disk_node.as_deref(), &live);
    if want != Some(leases.replica_id()) {
        return Ok(false);
    }
    Ok(leases.acquire(&cluster.id).await?.is_some())
}

/// The clusters this replica serves without holding: their health as their holder recorded it.
async fn follow(shared: &Shared, runtimes: &Runtimes) {
    for runtime in runtimes.all() {
        if shared.leases.holds(runtime.id()).is_some() {
            continue;
        }
        // A runtime the operator made before its lease went (a reconciliation that was
        // running) serves nothing from here: released, and made again as a follower if asked.
        if runtime.has_disks().await {
            stand_down(shared, runtimes, runtime.id()).await;
            continue;
        }
        match shared.repo.cluster(runtime.id()).await {
            Ok(Some((_, cluster))) if cluster.state != ClusterState::Deleting => {
                runtime.apply_health(shared, cluster.health).await;
            }
            // Deleted or being deleted: it is served no more from here.
            Ok(_) => {
                if let Some(runtime) = runtimes.remove(runtime.id()) {
                    runtime.release(shared).await;
                }
            }
            Err(error) => {
                tracing::debug!(cluster = %runtime.id(), %error, "followed health not read")
            }
        }
    }
}

/// Stops this replica's work on a cluster whose lease it no longer holds: its key unwatched, its
/// runtime released (export closed, disks detached, data keys wiped). A later request for its
/// documents makes a follower runtime that holds nothing but its stores.
pub(super) async fn stand_down(shared: &Shared, runtimes: &Runtimes, cluster_id: &str) {
    shared.monitor.unwatch(cluster_id);
    if let Some(runtime) = runtimes.remove(cluster_id) {
        runtime.release(shared).await;
    }
}
