//! The KMS audit's cost, measured:
//! - **write throughput**: records per second the audit's writer puts into SQLite (batched
//!   transactions, `synchronous=FULL`), records queued as the interceptor queues them;
//! - **overhead on a data path**: document put + get (4 KiB) through the real control plane,
//!   embedded KMS/IAM/STS on loopback, with the audit on and off (`ControlConfig::audit_enabled`)
//!   in the same run, rounds interleaved; and the same for the path the audit sits on, one
//!   `Decrypt` as the cluster's role (no data-key cache in front).
//!
//! `cargo bench -p keyward-control --bench audit` (`BENCH_SECONDS` per measurement, default 3).

mod common;

use std::time::{Duration, Instant};

use keyward_control::{ControlPlane, Organization};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds: f64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3.0);
    let budget = Duration::from_secs_f64(seconds);
    let env = common::start().await;

    // Write throughput: as many records as fit the budget, in rounds of 20,000.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("audit.db").display());
    let (mut written, mut spent, mut dropped) = (0usize, Duration::ZERO, 0u64);
    while spent < budget {
        let (took, lost) = keyward_control::write_records_for_bench(&url, 20_000)
            .await
            .unwrap();
        written += 20_000;
        spent += took;
        dropped += lost;
    }
    println!(
        "audit writer: {written} records in {} -> {:.0} records/s into SQLite ({dropped} dropped)",
        common::ms(spent),
        written as f64 / spent.as_secs_f64()
    );

    // The data paths, audit on and off.
    let interval = Duration::from_secs(60);
    let mut on = env.config(&env.dir.path().join("on"), interval);
    on.audit_enabled = true;
    let mut off = env.config(&env.dir.path().join("off"), interval);
    off.audit_enabled = false;
    let planes = [
        ControlPlane::open(on).await.unwrap(),
        ControlPlane::open(off).await.unwrap(),
    ];
    let mut setups = Vec::new();
    for (i, plane) in planes.iter().enumerate() {
        let org = common::org(plane, &format!("bench-{i}")).await;
        let (cluster, key) = common::associated_cluster(&env, plane, &org, "c").await;
        common::wait_ready(plane, &org, &cluster.id).await;
        let kms = plane
            .role_kms_for_tests(&org.id, &cluster.id)
            .await
            .unwrap();
        let blob = kms
            .generate_data_key()
            .key_id(&key)
            .number_of_bytes(32)
            .send()
            .await
            .unwrap()
            .ciphertext_blob()
            .unwrap()
            .clone();
        setups.push((org, cluster.id, kms, blob));
    }
    let body = vec![7u8; 4096];
    let mut documents = [Vec::new(), Vec::new()];
    let mut decrypts = [Vec::new(), Vec::new()];
    let start = Instant::now();
    let mut round = 0usize;
    // Interleaved: A, B, A, B... so drift in the machine's load falls on both alike.
    while start.elapsed() < budget * 2 {
        for (i, plane) in planes.iter().enumerate() {
            let (org, cluster, kms, blob): &(Organization, String, aws_sdk_kms::Client, _) =
                &setups[i];
            let name = format!("d{round}");
            let t = Instant::now();
            plane
                .put_document(&org.id, cluster, &name, &body[..])
                .await
                .unwrap();
            let read = plane
                .get_document(&org.id, cluster, &name)
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            documents[i].push(t.elapsed());
            assert_eq!(read.len(), body.len());
            let t = Instant::now();
            kms.decrypt()
                .ciphertext_blob(blob.clone())
                .send()
                .await
                .unwrap();
            decrypts[i].push(t.elapsed());
        }
        round += 1;
    }
    let mean = |v: &[Duration]| v.iter().sum::<Duration>() / u32::try_from(v.len()).unwrap();
    for (what, samples) in [
        ("document put+get 4 KiB", &mut documents),
        ("Decrypt as the cluster's role", &mut decrypts),
    ] {
        let (m_on, m_off) = (mean(&samples[0]), mean(&samples[1]));
        let (p_on, p_off) = (
            common::median(&mut samples[0]),
            common::median(&mut samples[1]),
        );
        println!(
            "{what}: audit on mean {} median {} | off mean {} median {} | on/off {:.3} (mean) {:.3} (median), {} rounds",
            common::ms(m_on),
            common::ms(p_on),
            common::ms(m_off),
            common::ms(p_off),
            m_on.as_secs_f64() / m_off.as_secs_f64(),
            p_on.as_secs_f64() / p_off.as_secs_f64(),
            samples[0].len()
        );
    }
    let audited = planes[0].audit_dropped();
    println!("audit drops during the run: {audited}");
    for plane in &planes {
        plane.shutdown().await;
    }
}
