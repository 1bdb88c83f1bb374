//! Several control-plane replicas on one PostgreSQL: the clusters' work divided by leases, handed
//! over at a graceful stop, and taken over from a replica cut off from the database only after
//! it stopped acting.
//!
//! The replicas run in this process on one PostgreSQL database (a fresh one per test) and share
//! one data directory, which stands for the shared object store; the CLI tests run them as
//! separate `keyward serve` processes and kill them.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyward_control::{ControlPlane, HealthStatus, Organization};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::{org, ready_external_cluster, start, wait_for, wait_health, Env};

/// A lease of two probe intervals' length at most: the tests' probe interval is 1 s.
const LEASE: Duration = Duration::from_secs(1);

/// A fresh PostgreSQL database; `None` (the test is skipped) only where PostgreSQL is not
/// required.
async fn postgres() -> Option<String> {
    crate::db::test_databases()
        .await
        .into_iter()
        .find(|d| d.backend == keyward_control::db::Backend::Postgres)
        .map(|d| d.url.clone())
}

async fn replica(env: &Env, id: &str, url: &str) -> ControlPlane {
    let data = env.dir.path().join("shared");
    let mut config = env.config(&data, url);
    config.replica_id = id.into();
    config.replica_api_url = format!("http://{id}.invalid");
    config.lease_ttl = Some(LEASE);
    config.engine_disks = 1;
    config.search_disks = 1;
    ControlPlane::open(config).await.expect("open a replica")
}

fn held(plane: &ControlPlane) -> BTreeSet<String> {
    plane
        .held_leases()
        .into_iter()
        .map(|l| l.cluster_id)
        .collect()
}

/// Waits until every cluster of `all` has exactly one holder among `a` and `b`.
async fn settle(a: &ControlPlane, b: &ControlPlane, all: &BTreeSet<String>) {
    wait_for("the leases to settle", Duration::from_secs(20), || async {
        let (ha, hb) = (held(a), held(b));
        ha.is_disjoint(&hb) && ha.union(&hb).cloned().collect::<BTreeSet<_>>() == *all
    })
    .await;
}

async fn clusters(env: &Env, plane: &ControlPlane, acme: &Organization, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let (cluster, _) = ready_external_cluster(env, plane, acme, &format!("c{i}")).await;
        ids.push(cluster.id);
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_divide_the_clusters_and_a_stopped_one_hands_them_over_at_once() {
    let Some(url) = postgres().await else { return };
    let env = start().await;
    let a = replica(&env, "replica-a", &url).await;
    let b = replica(&env, "replica-b", &url).await;
    let acme = org(&a, "acme").await;
    let ids = clusters(&env, &a, &acme, 10).await;
    let all: BTreeSet<String> = ids.iter().cloned().collect();

    // Every cluster has exactly one holder, and both replicas work.
    settle(&a, &b, &all).await;
    let (ha, hb) = (held(&a), held(&b));
    assert!(
        !ha.is_empty() && !hb.is_empty(),
        "both replicas hold clusters: {ha:?} / {hb:?}"
    );
    // Each cluster's disks are on its holder's node, and every replica says so.
    for id in &ids {
        let disks = b.list_disks(&acme.id, id).await.unwrap();
        let holder = if ha.contains(id) {
            "replica-a"
        } else {
            "replica-b"
        };
        assert_eq!(disks.len(), 2, "{id}");
        assert!(disks.iter().all(|d| d.node == holder), "{id}: {disks:?}");
    }
    // Either replica serves any cluster's documents.
    let on_b = hb.iter().next().unwrap();
    a.put_document(&acme.id, on_b, "via-a.txt", &b"written through a"[..])
        .await
        .unwrap();
    let read = crate::harness::read_document(&b, &acme.id, on_b, "via-a.txt").await;
    assert_eq!(read, b"written through a");
    let shown = a.replicas().await.unwrap();
    assert_eq!(shown.len(), 2);
    assert!(shown.iter().all(|r| r.live), "{shown:?}");

    // A graceful stop hands b's clusters over: a takes them well before a lease would expire.
    let stopped = Instant::now();
    b.shutdown().await;
    wait_for("a to hold every cluster", LEASE, || async {
        held(&a) == all
    })
    .await;
    let took = stopped.elapsed();
    assert!(took < LEASE, "handed over in {took:?}");
    let shown = a.replicas().await.unwrap();
    let b_row = shown.iter().find(|r| r.id == "replica-b").unwrap();
    assert!(
        b_row.stopped && !b_row.live && b_row.leases == 0,
        "{b_row:?}"
    );
    // b's disks stay on b's node: a reports where they are and does not make them again.
    for id in &hb {
        let disks = a.list_disks(&acme.id, id).await.unwrap();
        assert_eq!(disks.len(), 2);
        assert!(disks.iter().all(|d| d.node == "replica-b" && !d.attached));
    }
    a.shutdown().await;
}

/// A TCP relay between a replica and PostgreSQL that the test can cut: every connection
/// dropped and new ones refused, while the replica keeps running.
struct Relay {
    port: u16,
    open: Arc<std::sync::atomic::AtomicBool>,
    cut: Arc<tokio::sync::Notify>,
}

impl Relay {
    async fn to(target: String) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let cut = Arc::new(tokio::sync::Notify::new());
        let (o, c) = (open.clone(), cut.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if !o.load(std::sync::atomic::Ordering::SeqCst) {
                    continue; // dropped: refused
                }
                let (target, cut) = (target.clone(), c.clone());
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.notified() => {}
                    }
                });
            }
        });
        Relay { port, open, cut }
    }

    fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        self.cut.notify_waiters();
    }

    fn restore(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Where `url`'s host and port are: (start, end) in the text.
fn authority(url: &str) -> (usize, usize) {
    let start = url
        .find('@')
        .map(|i| i + 1)
        .unwrap_or(url.find("://").unwrap() + 3);
    (start, start + url[start..].find('/').unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_cut_off_from_the_database_stops_acting_before_its_leases_can_be_taken() {
    let Some(url) = postgres().await else { return };
    let env = start().await;
    let (start, end) = authority(&url);
    let relay = Relay::to(url[start..end].to_owned()).await;
    let relayed = format!("{}127.0.0.1:{}{}", &url[..start], relay.port, &url[end..]);
    let a = replica(&env, "replica-a", &url).await;
    let b = replica(&env, "replica-b", &relayed).await;
    let acme = org(&a, "acme").await;
    let ids = clusters(&env, &a, &acme, 10).await;
    let all: BTreeSet<String> = ids.iter().cloned().collect();
    settle(&a, &b, &all).await;
    let on_b = held(&b);
    assert!(!on_b.is_empty(), "b holds some clusters");
    let victim = on_b.iter().next().unwrap().clone();
    let disks_before = b.list_disks(&acme.id, &victim).await.unwrap();
    let nbd = disks_before[0].nbd_uri.clone().expect("b serves its disks");
    let nbd_addr = nbd
        .trim_start_matches("nbds://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    assert!(TcpStream::connect(&nbd_addr).await.is_ok());

    // Cut b off. It must stop acting on its clusters before a can take any of them.
    relay.cut();
    let cut_at = Instant::now();
    let (mut b_stopped, mut a_took) = (None, None);
    while a_took.is_none() && cut_at.elapsed() < Duration::from_secs(10) {
        if b_stopped.is_none() && held(&b).is_empty() {
            b_stopped = Some(cut_at.elapsed());
        }
        if held(&a).intersection(&on_b).next().is_some() {
            a_took = Some(cut_at.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (b_stopped, a_took) = (
        b_stopped.expect("b stopped acting"),
        a_took.expect("a took b's clusters"),
    );
    assert!(
        b_stopped < a_took,
        "b stopped at {b_stopped:?}, a took over at {a_took:?}"
    );
    // b's exports are closed: its disks are served by nobody while it is cut off.
    assert!(
        TcpStream::connect(&nbd_addr).await.is_err(),
        "b still serves {nbd_addr}"
    );
    // a watches b's clusters: a disabled key is seen within two probe intervals of taking over.
    wait_for("a to hold all of b's clusters", LEASE * 2, || async {
        held(&a).is_superset(&on_b)
    })
    .await;
    let victim_key = a.cluster(&acme.id, &victim).await.unwrap().key_arn.unwrap();
    let disabled = Instant::now();
    env.customer
        .disable_key()
        .key_id(&victim_key)
        .send()
        .await
        .unwrap();
    wait_health(
        &a,
        &acme.id,
        &victim,
        HealthStatus::KeyInaccessible,
        Duration::from_secs(2),
    )
    .await;
    eprintln!(
        "b stopped {b_stopped:?} after the cut, a took over at {a_took:?}; the disabled key \
         was seen {:?} after disable-key",
        disabled.elapsed()
    );
    env.customer
        .enable_key()
        .key_id(&victim_key)
        .send()
        .await
        .unwrap();

    // b comes back: it rejoins, takes back the clusters whose disks it holds, and nothing was
    // made twice (the same disks, one holder per cluster).
    relay.restore();
    wait_for(
        "b to take its clusters back",
        Duration::from_secs(10),
        || async { held(&b) == on_b && held(&a).is_disjoint(&on_b) },
    )
    .await;
    wait_health(
        &b,
        &acme.id,
        &victim,
        HealthStatus::Healthy,
        Duration::from_secs(10),
    )
    .await;
    // The gate opens once the disks are attached again, just after the health turns.
    wait_for(
        "b to serve its disks again",
        Duration::from_secs(10),
        || async {
            b.list_disks(&acme.id, &victim)
                .await
                .is_ok_and(|d| d.iter().all(|d| d.attached && d.nbd_uri.is_some()))
        },
    )
    .await;
    let disks_after = b.list_disks(&acme.id, &victim).await.unwrap();
    let ids_of =
        |d: &[keyward_control::DiskInfo]| d.iter().map(|d| d.id.clone()).collect::<BTreeSet<_>>();
    assert_eq!(
        ids_of(&disks_before),
        ids_of(&disks_after),
        "the same disks, not new ones"
    );
    b.shutdown().await;
    a.shutdown().await;
}
