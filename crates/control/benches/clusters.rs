//! Many clusters on one machine: `KEYWARD_BENCH_CLUSTERS` (default 1,000) external clusters,
//! each with its own IAM role, its own customer key (policy with the guide's statements),
//! validated association, and the operator provisioning its four storage classes (documents,
//! backups, `KEYWARD_BENCH_DISKS` (default 3) engine disks and as many search disks of 1 MiB,
//! attached through grants and served over NBD) — through the real control plane on SQLite and
//! the embedded KMS/IAM/STS in the same process. Prints the wall time, the peak resident memory
//! (`VmHWM`, the KMS server included), the open file descriptors and disk blocks, and the cost
//! of probing: the monitor's own paced round (its duration, lateness, probes in flight and KMS
//! requests per second) and, as a capacity figure, every cluster's key fully probed on demand.
//!
//! The descriptors are counted by kind: an attached disk with no NBD client holds no file open
//! and the clusters' KMS clients share one connection pool, so what grows with the clusters is one
//! NBD listener each. The soft limit on open files is raised to the hard limit at the start.
//!
//! Baseline in the same run: one cluster brought to `ready` alone, before the others.
//!
//! `cargo bench -p keyward-control --bench clusters`

mod common;
#[path = "../tests/control/descriptors.rs"]
mod descriptors;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;

/// Clusters created and associated at once (the operator provisions in the background).
const CONCURRENCY: usize = 8;
/// On-demand probes at once when probing every cluster.
const PROBE_CONCURRENCY: usize = 16;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("KEYWARD_BENCH_CLUSTERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let disks: u32 = std::env::var("KEYWARD_BENCH_DISKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let nofile = raise_open_files_limit();
    let env = common::start().await;
    let interval = Duration::from_secs(10);
    let mut config = env.config(&env.dir.path().join("scale"), interval);
    config.engine_disks = disks;
    config.search_disks = disks;
    let plane = keyward_control::ControlPlane::open(config).await.unwrap();
    let org = common::org(&plane, "bench").await;
    let (_, rss_start) = common::memory_mib();

    // Baseline: one cluster alone.
    let t = Instant::now();
    let (first, _) = common::associated_cluster(&env, &plane, &org, "baseline").await;
    common::wait_ready(&plane, &org, &first.id).await;
    let alone = t.elapsed();

    let t0 = Instant::now();
    let ids: Vec<String> = futures::stream::iter(0..n)
        .map(|i| {
            let (env, plane, org) = (&env, &plane, &org);
            async move {
                common::associated_cluster(env, plane, org, &format!("c{i}"))
                    .await
                    .0
                    .id
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let associated = t0.elapsed();
    for id in &ids {
        common::wait_ready(&plane, &org, id).await;
    }
    let ready = t0.elapsed();
    let (peak, rss) = common::memory_mib();
    let fds = descriptors::Descriptors::now(&env.dir.path().join("scale"));
    let disk_mib = allocated(env.dir.path()) as f64 / (1024.0 * 1024.0);

    // The monitor's own rounds: the second one to finish after every cluster was ready is the
    // first that started with all of them watched.
    let (before, requests_before) = plane.probe_stats();
    let steady = loop {
        let (stats, _) = plane.probe_stats();
        if stats.rounds >= before.rounds + 2 && stats.clusters == n + 1 {
            break stats;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (_, requests_after) = plane.probe_stats();

    // Capacity: one full probe (DescribeKey, GenerateDataKey, Decrypt) of every cluster's key on
    // demand, PROBE_CONCURRENCY at once, as fast as it goes.
    let t = Instant::now();
    let healthy = futures::stream::iter(ids.iter())
        .map(|id| {
            let (plane, org) = (&plane, &org);
            async move {
                plane
                    .check_health_now(&org.id, id)
                    .await
                    .is_ok_and(|h| h.is_healthy())
            }
        })
        .buffer_unordered(PROBE_CONCURRENCY)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await;
    let round = t.elapsed();
    assert_eq!(healthy, n, "every cluster's key is healthy");

    let per = ready / n as u32;
    println!("{n} clusters provisioned on one machine (each: IAM role, customer key, association, 2 object stores, 6 x 1 MiB disks on NBD)");
    println!(
        "  created and associated in {:.1} s; all ready after {:.1} s ({:.1} clusters/s, {} per cluster amortized)",
        associated.as_secs_f64(),
        ready.as_secs_f64(),
        n as f64 / ready.as_secs_f64(),
        common::ms(per)
    );
    println!(
        "  baseline: one cluster alone ready in {}; amortized / alone = {:.2}",
        common::ms(alone),
        per.as_secs_f64() / alone.as_secs_f64()
    );
    println!(
        "  memory: peak resident {peak:.0} MiB, now {rss:.0} MiB (at start {rss_start:.0} MiB; {:.0} KiB per cluster), KMS server included",
        (rss - rss_start) * 1024.0 / (n + 1) as f64
    );
    println!(
        "  {} open file descriptors ({:.2} per cluster; limit {nofile}): {} volume files, {} TCP connection ends (both ends of those to the in-process KMS), {} TCP listeners (an NBD server per cluster), {} other; {disk_mib:.0} MiB of disk blocks in use (KMS, database, volumes, objects)",
        fds.total,
        fds.total as f64 / (n + 1) as f64,
        fds.volume_files,
        fds.tcp_established,
        fds.tcp_listening,
        fds.other,
    );
    let config = plane.config();
    println!(
        "  monitor round (paced over the {} s interval; at most {} probes in flight, {}/s): {} clusters in {:.2} s, latest start {} behind its slot, {} probes in flight at most, {} KMS requests = {:.0} requests/s over the interval",
        interval.as_secs(),
        config.probe_concurrency,
        config.probe_max_rate,
        steady.clusters,
        steady.duration.as_secs_f64(),
        common::ms(steady.max_lag),
        steady.max_in_flight,
        steady.kms_requests,
        steady.kms_requests as f64 / interval.as_secs_f64(),
    );
    println!(
        "  probe requests/s against AWS KMS's shared symmetric-crypto quota: {:.1}% of 10,000/s ({:.1}% of 5,500/s, the smallest region's); {} probe requests while waiting for the rounds",
        100.0 * steady.kms_requests as f64 / interval.as_secs_f64() / 10_000.0,
        100.0 * steady.kms_requests as f64 / interval.as_secs_f64() / 5_500.0,
        requests_after - requests_before,
    );
    println!(
        "  full probe of every key on demand (capacity): {:.2} s for {n} clusters ({:.1} ms each at {PROBE_CONCURRENCY} at once); round / probe interval {} s = {:.2}",
        round.as_secs_f64(),
        round.as_secs_f64() * 1000.0 / n as f64,
        interval.as_secs(),
        round.as_secs_f64() / interval.as_secs_f64()
    );
    plane.shutdown().await;
}

/// Raises the soft limit on open files to the hard limit (each cluster's NBD listener is one);
/// returns the limit in force.
fn raise_open_files_limit() -> String {
    // `prlimit` from util-linux, on this process: no unsafe code, no libc binding in the bench.
    let pid = std::process::id().to_string();
    let hard = std::process::Command::new("prlimit")
        .args(["--pid", &pid, "--nofile", "--output=HARD", "--noheadings"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|h| !h.is_empty());
    if let Some(hard) = &hard {
        let _ = std::process::Command::new("prlimit")
            .args(["--pid", &pid, &format!("--nofile={hard}:{hard}")])
            .status();
    }
    std::process::Command::new("prlimit")
        .args(["--pid", &pid, "--nofile", "--output=SOFT", "--noheadings"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Bytes of disk blocks allocated under `dir` (sparse volumes count what is written).
fn allocated(dir: &Path) -> u64 {
    let mut total = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            total += allocated(&entry.path());
        } else {
            total += meta.blocks() * 512;
        }
    }
    total
}
