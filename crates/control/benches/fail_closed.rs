//! Fail closed, measured: the time from `DisableKey` to every data path of a cluster refusing —
//! documents (get and put), the disks' NBD exports (a new connection gets no NBD greeting) and
//! the backups API — through the real control plane, embedded KMS/IAM/STS and NBD on loopback.
//!
//! Two ways the platform learns that the key is gone:
//! - **by probe**: nothing touches the data; the periodic probe sees the key disabled. The goal
//!   is at most the probe interval plus 1 s. Each trial disables the key at another phase of
//!   the interval.
//! - **by a data path first**: the probe interval is 60 s, so the probe cannot be what notices;
//!   a document read (a data key not in the cache) gets `DisabledException` from KMS, which
//!   re-checks the key at once. The goal is under 1 s.
//!
//! Baseline in the same run: one on-demand probe through the facade (`check_health_now`: a
//! DescribeKey, GenerateDataKey and Decrypt round trip as the cluster's role), the least work
//! any detection needs.
//!
//! Then the same by probe with **three replicas** on one PostgreSQL (`KEYWARD_BENCH_POSTGRES_URL`,
//! else `KEYWARD_TEST_POSTGRES_URL`; skipped without one): the time until every replica's data
//! paths refuse — the holder's by its probe, the others' by the health the holder records.
//!
//! `cargo bench -p keyward-control --bench fail_closed` (`KEYWARD_BENCH_TRIALS`, default 5).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use keyward_control::{ControlPlane, Organization};
use tokio::io::AsyncReadExt;

const POLL: Duration = Duration::from_millis(5);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let trials: usize = std::env::var("KEYWARD_BENCH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let env = common::start().await;

    println!("fail closed: DisableKey -> every data path refusing ({trials} trials each)");
    let mut baseline = None;
    for interval in [Duration::from_secs(1), Duration::from_secs(10)] {
        let plane = env
            .plane(&format!("probe-{}", interval.as_secs()), interval)
            .await;
        let org = common::org(&plane, "bench").await;
        let (cluster, key) = common::associated_cluster(&env, &plane, &org, "probe").await;
        common::wait_ready(&plane, &org, &cluster.id).await;
        plane
            .put_document(&org.id, &cluster.id, "d0", &b"hello"[..])
            .await
            .unwrap();
        let nbd = nbd_addresses(&plane, &org, &cluster.id).await;
        if baseline.is_none() {
            let mut probes = Vec::new();
            for _ in 0..20 {
                let start = Instant::now();
                let health = plane.check_health_now(&org.id, &cluster.id).await.unwrap();
                probes.push(start.elapsed());
                assert!(health.is_healthy());
            }
            baseline = Some(common::median(&mut probes));
        }
        let mut refused = Vec::new();
        let mut recovered = Vec::new();
        for trial in 0..trials {
            // Spread the disable over the probe interval's phases.
            tokio::time::sleep(interval.mul_f64(trial as f64 / trials as f64)).await;
            let t0 = Instant::now();
            set_enabled(&env, &key, false).await;
            let times = wait_refused(&plane, &org, &cluster.id, &nbd, interval * 3, false).await;
            refused.push(t0.elapsed().min(times.all));
            set_enabled(&env, &key, true).await;
            let t1 = Instant::now();
            wait_serving(&plane, &org, &cluster.id, &nbd, interval * 3).await;
            recovered.push(t1.elapsed());
            if trial == 0 {
                println!(
                    "  probe every {:>2} s, trial 0: documents {}, put {}, backups {}, NBD {}",
                    interval.as_secs(),
                    opt_ms(times.get),
                    opt_ms(times.put),
                    opt_ms(times.backups),
                    opt_ms(times.nbd)
                );
            }
        }
        let max = *refused.iter().max().unwrap();
        let med = common::median(&mut refused);
        println!(
            "  by probe, interval {:>2} s: median {}, max {} (goal <= {}; max / interval = {:.2}); \
             recovery after EnableKey median {}",
            interval.as_secs(),
            common::ms(med),
            common::ms(max),
            common::ms(interval + Duration::from_secs(1)),
            max.as_secs_f64() / interval.as_secs_f64(),
            common::ms(common::median(&mut recovered)),
        );
        plane.shutdown().await;
    }

    // A data path sees the error first: the probe is 60 s away.
    let plane = env.plane("data-path", Duration::from_secs(60)).await;
    let org = common::org(&plane, "bench").await;
    let (cluster, key) = common::associated_cluster(&env, &plane, &org, "data-path").await;
    common::wait_ready(&plane, &org, &cluster.id).await;
    let nbd = nbd_addresses(&plane, &org, &cluster.id).await;
    let mut refused = Vec::new();
    for trial in 0..trials {
        // A document whose data key is not cached yet: reading it calls KMS Decrypt.
        let name = format!("fresh-{trial}");
        plane
            .put_document(&org.id, &cluster.id, &name, &b"x"[..])
            .await
            .unwrap();
        let t0 = Instant::now();
        set_enabled(&env, &key, false).await;
        let error = plane
            .get_document(&org.id, &cluster.id, &name)
            .await
            .expect_err("a read after DisableKey must fail");
        let first = t0.elapsed();
        let times = wait_refused(
            &plane,
            &org,
            &cluster.id,
            &nbd,
            Duration::from_secs(30),
            true,
        )
        .await;
        let all = t0.elapsed();
        refused.push(all);
        if trial == 0 {
            println!(
                "  by a data path, trial 0: the read failed after {} ({}: {}); all refused after {} \
                 (documents {}, put {}, backups {}, NBD {})",
                common::ms(first),
                error.code(),
                error,
                common::ms(all),
                opt_ms(times.get),
                opt_ms(times.put),
                opt_ms(times.backups),
                opt_ms(times.nbd)
            );
        }
        set_enabled(&env, &key, true).await;
        plane.check_health_now(&org.id, &cluster.id).await.unwrap();
        wait_serving(&plane, &org, &cluster.id, &nbd, Duration::from_secs(30)).await;
    }
    let max = *refused.iter().max().unwrap();
    let med = common::median(&mut refused);
    let baseline = baseline.unwrap();
    println!(
        "  by a data path (probe every 60 s): median {}, max {} (goal < 1000 ms)",
        common::ms(med),
        common::ms(max)
    );
    println!(
        "  baseline, one on-demand probe (check_health_now): median {}; data-path detection / \
         probe = {:.1}x",
        common::ms(baseline),
        med.as_secs_f64() / baseline.as_secs_f64()
    );
    plane.shutdown().await;

    // Three replicas on one PostgreSQL: every replica's data paths must refuse, the holder's by
    // its probe, the others' by the health it records (read at each lease pass).
    let Some(url) = std::env::var("KEYWARD_BENCH_POSTGRES_URL")
        .or_else(|_| std::env::var("KEYWARD_TEST_POSTGRES_URL"))
        .ok()
        .filter(|u| !u.is_empty())
    else {
        println!(
            "  three replicas: skipped (set KEYWARD_BENCH_POSTGRES_URL to a PostgreSQL database)"
        );
        return;
    };
    three_replicas(&env, &url, trials).await;
}

/// DisableKey -> every data path refusing through each of three replicas sharing `url`.
async fn three_replicas(env: &common::Env, url: &str, trials: usize) {
    let interval = Duration::from_secs(1);
    let shared_dir = env.dir.path().join("replicas");
    let mut replicas = Vec::new();
    for i in 0..3 {
        let mut config = env.config(&shared_dir, interval);
        config.database_url = url.to_owned();
        config.replica_id = format!("bench-{i}");
        replicas.push(ControlPlane::open(config).await.unwrap());
    }
    let org = common::org(&replicas[0], "bench-replicas").await;
    let (cluster, key) = common::associated_cluster(env, &replicas[0], &org, "replicated").await;
    common::wait_ready(&replicas[0], &org, &cluster.id).await;
    replicas[0]
        .put_document(&org.id, &cluster.id, "d0", &b"hello"[..])
        .await
        .unwrap();
    let node = replicas[0]
        .cluster(&org.id, &cluster.id)
        .await
        .unwrap()
        .disk_node
        .expect("the disks have a node");
    let holder = replicas
        .iter()
        .position(|r| r.replica_id() == node)
        .unwrap();
    let nbd = nbd_addresses(&replicas[holder], &org, &cluster.id).await;
    // Every replica has read the document once (its followers' data keys cached).
    for replica in &replicas {
        replica
            .get_document(&org.id, &cluster.id, "d0")
            .await
            .unwrap();
    }
    let mut holder_times = Vec::new();
    let mut all_times = Vec::new();
    for trial in 0..trials {
        tokio::time::sleep(interval.mul_f64(trial as f64 / trials as f64)).await;
        let t0 = Instant::now();
        set_enabled(env, &key, false).await;
        wait_refused(
            &replicas[holder],
            &org,
            &cluster.id,
            &nbd,
            interval * 3,
            false,
        )
        .await;
        holder_times.push(t0.elapsed());
        for (i, replica) in replicas.iter().enumerate() {
            if i != holder {
                wait_refused(replica, &org, &cluster.id, &[], interval * 3, false).await;
            }
        }
        all_times.push(t0.elapsed());
        set_enabled(env, &key, true).await;
        for replica in &replicas {
            wait_serving(replica, &org, &cluster.id, &[], interval * 5).await;
        }
        wait_serving(&replicas[holder], &org, &cluster.id, &nbd, interval * 5).await;
    }
    let max = *all_times.iter().max().unwrap();
    println!(
        "  three replicas on PostgreSQL, probe every 1 s: holder (probe) median {}, every \
         replica refusing median {}, max {} (goal <= {}; max / interval = {:.2})",
        common::ms(common::median(&mut holder_times)),
        common::ms(common::median(&mut all_times)),
        common::ms(max),
        common::ms(interval + Duration::from_secs(1)),
        max.as_secs_f64() / interval.as_secs_f64(),
    );
    for replica in &replicas {
        replica.shutdown().await;
    }
}

async fn set_enabled(env: &common::Env, key: &str, enabled: bool) {
    if enabled {
        env.customer.enable_key().key_id(key).send().await.unwrap();
    } else {
        env.customer.disable_key().key_id(key).send().await.unwrap();
    }
}

#[derive(Default)]
struct Refusals {
    get: Option<Duration>,
    put: Option<Duration>,
    backups: Option<Duration>,
    nbd: Option<Duration>,
    all: Duration,
}

fn opt_ms(d: Option<Duration>) -> String {
    d.map_or("never".into(), common::ms)
}

/// Polls every data path until each has refused once; each path's first refusal time.
///
/// With `touch_data` false (the probe measurement) the poll itself must not be what notices:
/// it watches only the cluster's reported health and new NBD connections (neither calls KMS),
/// and tries the KMS-backed paths once the cluster reports the key inaccessible.
async fn wait_refused(
    plane: &ControlPlane,
    org: &Organization,
    cluster_id: &str,
    nbd: &[SocketAddr],
    limit: Duration,
    touch_data: bool,
) -> Refusals {
    let start = Instant::now();
    let mut r = Refusals::default();
    loop {
        let locked = touch_data
            || !plane
                .cluster(&org.id, cluster_id)
                .await
                .unwrap()
                .health
                .is_healthy();
        if !locked {
            assert!(
                start.elapsed() < limit,
                "the probe did not lock the cluster within {limit:?}"
            );
            tokio::time::sleep(POLL).await;
            continue;
        }
        let now = || Some(start.elapsed());
        if r.get.is_none() && plane.get_document(&org.id, cluster_id, "d0").await.is_err() {
            r.get = now();
        }
        if r.put.is_none()
            && plane
                .put_document(&org.id, cluster_id, "w", &b"w"[..])
                .await
                .is_err()
        {
            r.put = now();
        }
        if r.backups.is_none() && plane.list_backups(&org.id, cluster_id).await.is_err() {
            r.backups = now();
        }
        if r.nbd.is_none() {
            let mut all = true;
            for addr in nbd {
                all &= !greets(*addr).await;
            }
            if all {
                r.nbd = now();
            }
        }
        if r.get.is_some() && r.put.is_some() && r.backups.is_some() && r.nbd.is_some() {
            r.all = start.elapsed();
            return r;
        }
        assert!(
            start.elapsed() < limit,
            "not every data path refused within {limit:?}: documents {:?}, put {:?}, backups {:?}, NBD {:?}",
            r.get,
            r.put,
            r.backups,
            r.nbd
        );
        tokio::time::sleep(POLL).await;
    }
}

async fn wait_serving(
    plane: &ControlPlane,
    org: &Organization,
    cluster_id: &str,
    nbd: &[SocketAddr],
    limit: Duration,
) {
    let start = Instant::now();
    loop {
        let mut ok = plane.get_document(&org.id, cluster_id, "d0").await.is_ok()
            || plane.list_documents(&org.id, cluster_id, "").await.is_ok();
        for addr in nbd {
            ok &= greets(*addr).await;
        }
        if ok {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "not serving again within {limit:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// The disks' NBD addresses while the cluster serves.
async fn nbd_addresses(
    plane: &ControlPlane,
    org: &Organization,
    cluster_id: &str,
) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = plane
        .list_disks(&org.id, cluster_id)
        .await
        .unwrap()
        .iter()
        .map(|d| {
            let uri = d
                .nbd_uri
                .as_deref()
                .expect("an attached disk has an NBD URI");
            // The exports speak NBD with STARTTLS: the plain greeting comes first.
            let rest = uri.strip_prefix("nbds://").unwrap();
            rest.split('/').next().unwrap().parse().unwrap()
        })
        .collect();
    out.sort();
    out.dedup();
    assert!(!out.is_empty());
    out
}

/// Whether a new NBD connection gets the server's greeting (`NBDMAGIC` `IHAVEOPT` flags).
async fn greets(addr: SocketAddr) -> bool {
    let Ok(Ok(mut stream)) = tokio::time::timeout(
        Duration::from_millis(200),
        tokio::net::TcpStream::connect(addr),
    )
    .await
    else {
        return false;
    };
    let mut greeting = [0u8; 18];
    matches!(
        tokio::time::timeout(Duration::from_millis(500), stream.read_exact(&mut greeting)).await,
        Ok(Ok(_)) if &greeting[..8] == b"NBDMAGIC"
    )
}
