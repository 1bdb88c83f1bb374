//! Engine throughput: `GenerateDataKey` and `Decrypt` through `Engine::call_kms` with the trail
//! durable (group commit, WAL, synchronous=FULL), at 1, 8 and 64 concurrent callers, side by side
//! with two baselines measured in the same run:
//! - the bare crypto of one call (random data key + AES-256-GCM seal, or open), single thread;
//! - concurrency 1, where every request waits for its own fsync (no commit to share).
//!
//! Then `Decrypt` under a 10-statement key policy (conditions, a deny on the encryption context,
//! the caller's statement last) against the same under the default key policy, alternating the
//! two in one run, to show that authorization stays off the hot path.
//!
//! Then `Decrypt` by a grantee (101 grants on the key, its own among them, constrained) against
//! `Decrypt` by the key's owner, alternating, to show the cost of the grant checks.
//!
//! Run: `cargo bench -p keyward-kms --bench engine` (KEYWARD_BENCH_SECS sets seconds per case).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use keyward_kms::{Caller, Engine, EngineConfig, Identity, IdentityConfig, RootKey};
use serde_json::json;

fn caller() -> Caller {
    Caller {
        identity: Identity::root("111122223333"),
        access_key_id: "AKIABENCHBENCHBENCH1".into(),
        region: "us-east-1".into(),
        source_ip: "127.0.0.1".into(),
        secure_transport: false,
        user_agent: "keyward-bench".into(),
        request_id: "00000000-0000-4000-8000-000000000000".into(),
    }
}

fn bare_crypto(secs: f64) -> f64 {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).unwrap());
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        let mut dk = [0u8; 32];
        aws_lc_rs::rand::fill(&mut dk).unwrap();
        let mut nonce = [0u8; 12];
        aws_lc_rs::rand::fill(&mut nonce).unwrap();
        let mut buf = dk.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&[0u8; 40][..]),
            &mut buf,
        )
        .unwrap();
        std::hint::black_box(&buf);
        n += 1;
    }
    start.elapsed().as_secs_f64() * 1e9 / n as f64
}

async fn run(
    engine: &Engine,
    action: &'static str,
    body: String,
    clients: usize,
    secs: f64,
) -> f64 {
    run_as(engine, caller(), action, body, clients, secs).await
}

async fn run_as(
    engine: &Engine,
    caller: Caller,
    action: &'static str,
    body: String,
    clients: usize,
    secs: f64,
) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (engine, body, stop, done) = (engine.clone(), body.clone(), stop.clone(), done.clone());
        let caller = caller.clone();
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                engine
                    .call_kms(&caller, action, body.as_bytes())
                    .await
                    .unwrap();
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let n = done.load(Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    for t in tasks {
        t.await.unwrap();
    }
    n as f64 / elapsed
}

/// Ten statements, the caller's (the account root) last, so every request walks them all: other
/// accounts, a service, conditions on the context and the caller, and a deny whose condition
/// is evaluated on every Decrypt.
fn ten_statement_policy() -> String {
    let mut st = vec![
        json!({"Sid": "deny other clusters", "Effect": "Deny", "Principal": "*",
        "Action": "kms:Decrypt", "Resource": "*",
        "Condition": {"StringNotLike": {"kms:EncryptionContext:cluster": "c-*"}}}),
    ];
    for i in 0..8 {
        st.push(json!({"Sid": format!("partner {i}"), "Effect": "Allow",
            "Principal": {"AWS": format!("arn:aws:iam::55556666{i:04}:root")},
            "Action": ["kms:Decrypt", "kms:GenerateDataKey*", "kms:DescribeKey"], "Resource": "*",
            "Condition": {"StringEquals": {"kms:EncryptionContext:class": "engine-disk"},
                          "ForAnyValue:StringLike": {"kms:EncryptionContextKeys": ["cluster", "class"]}}}));
    }
    st.push(json!({"Sid": "Enable IAM User Permissions", "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*", "Resource": "*"}));
    json!({"Version": "2012-10-17", "Statement": st}).to_string()
}

fn main() {
    // `cargo bench` passes `--bench`; a plain run is fine too.
    let secs: f64 = std::env::var("KEYWARD_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(EngineConfig {
        data_dir: dir.path().to_path_buf(),
        root_key: RootKey::from_bytes([9; 32]),
        identities: IdentityConfig::empty(),
        dev: false,
    })
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = caller();
        let key = engine.call_kms(&c, "CreateKey", b"{}").await.unwrap();
        let key_id = key["KeyMetadata"]["KeyId"].as_str().unwrap().to_string();
        let ctx = json!({"cluster": "c-0123456789", "class": "engine-disk"});
        let gdk = json!({"KeyId": key_id, "KeySpec": "AES_256", "EncryptionContext": ctx}).to_string();
        let blob = engine.call_kms(&c, "GenerateDataKey", gdk.as_bytes()).await.unwrap()["CiphertextBlob"].clone();
        let dec = json!({"CiphertextBlob": blob, "EncryptionContext": ctx}).to_string();

        let crypto_ns = bare_crypto(secs.min(1.0));
        println!("baseline: bare data-key crypto (rand + AES-256-GCM seal), 1 thread: {crypto_ns:.0} ns/op");
        println!("{:<18} {:>8} {:>12} {:>14} {:>16}", "action", "clients", "req/s", "us/req (wall)", "vs clients=1");
        for (action, body) in [("GenerateDataKey", gdk), ("Decrypt", dec)] {
            let mut one = 0.0;
            for clients in [1usize, 8, 64] {
                let rps = run(&engine, action, body.clone(), clients, secs).await;
                if clients == 1 {
                    one = rps;
                }
                println!(
                    "{action:<18} {clients:>8} {rps:>12.0} {:>14.1} {:>15.1}x",
                    1e6 / rps,
                    rps / one
                );
            }
        }

        // Decrypt under a 10-statement key policy vs the default one, same engine, alternating.
        let policy_key = engine
            .call_kms(&c, "CreateKey", json!({"Policy": ten_statement_policy()}).to_string().as_bytes())
            .await
            .unwrap()["KeyMetadata"]["KeyId"]
            .as_str()
            .unwrap()
            .to_string();
        let gdk10 = json!({"KeyId": policy_key, "KeySpec": "AES_256", "EncryptionContext": ctx}).to_string();
        let blob10 = engine.call_kms(&c, "GenerateDataKey", gdk10.as_bytes()).await.unwrap()["CiphertextBlob"].clone();
        let dec10 = json!({"CiphertextBlob": blob10, "EncryptionContext": ctx}).to_string();
        let dec_default = json!({"CiphertextBlob": engine.call_kms(&c, "GenerateDataKey", json!({"KeyId": key_id, "KeySpec": "AES_256", "EncryptionContext": ctx}).to_string().as_bytes()).await.unwrap()["CiphertextBlob"], "EncryptionContext": ctx}).to_string();
        for clients in [1usize, 64] {
            let (mut d, mut p) = (0.0, 0.0);
            for _ in 0..2 {
                d += run(&engine, "Decrypt", dec_default.clone(), clients, secs / 2.0).await;
                p += run(&engine, "Decrypt", dec10.clone(), clients, secs / 2.0).await;
            }
            println!(
                "Decrypt, clients={clients}: default key policy {:.0} req/s, 10-statement policy {:.0} req/s, ratio {:.3}",
                d / 2.0,
                p / 2.0,
                p / d
            );
        }
        // Decrypt by a grantee the key policy does not name, so every request falls through to
        // the key's grants (100 for other principals and its own under a context constraint),
        // against Decrypt by the key's owner, alternating in one run.
        let grantee = Caller {
            identity: Identity::iam_user("444455556666", "host"),
            ..caller()
        };
        for i in 0..100 {
            let g = json!({"KeyId": key_id, "Operations": ["Decrypt"],
                "GranteePrincipal": format!("arn:aws:iam::444455556666:user/other-{i}")});
            engine.call_kms(&c, "CreateGrant", g.to_string().as_bytes()).await.unwrap();
        }
        let g = json!({"KeyId": key_id, "Operations": ["Decrypt"], "GranteePrincipal": grantee.identity.arn,
            "Constraints": {"EncryptionContextSubset": {"cluster": "c-0123456789"}}});
        engine.call_kms(&c, "CreateGrant", g.to_string().as_bytes()).await.unwrap();
        for clients in [1usize, 64] {
            let (mut owner, mut granted) = (0.0, 0.0);
            for _ in 0..2 {
                owner += run(&engine, "Decrypt", dec_default.clone(), clients, secs / 2.0).await;
                granted += run_as(&engine, grantee.clone(), "Decrypt", dec_default.clone(), clients, secs / 2.0).await;
            }
            println!(
                "Decrypt, clients={clients}: key owner (policy) {:.0} req/s, grantee (101 grants) {:.0} req/s, ratio {:.3}",
                owner / 2.0,
                granted / 2.0,
                granted / owner
            );
        }
        let mut trail = Vec::new();
        engine.export_trail(&mut trail).unwrap();
        println!("trail records written durably: {}", trail.iter().filter(|b| **b == b'\n').count());
    });
}
