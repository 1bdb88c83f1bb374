//! `cargo bench -p keyward-envelope`: one run, one core.
//!
//! 1. 256 MiB in memory: our encrypt and decrypt against raw AES-256-GCM
//!    (aws-lc-rs, in place, same frame size) over the same bytes.
//! 2. Peak memory of a 1 GiB stream: this binary re-runs itself as a child
//!    that streams 1 GiB through encrypt and decrypt, and reads its VmHWM.
//! 3. 4 KiB messages with a warm data-key cache: encrypts per second, and the
//!    keyring (KMS) calls per 10,000 messages.
//!
//! The comparison with `aws-encryption-cli` needs the KMS server and lives in
//! `benches/cli.rs`... see the crate's report in the README for quoted figures.

use std::{
    hint::black_box,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use aws_lc_rs::aead;
use keyward_envelope::{
    CacheLimits, Client, Config, DataKey, DataKeyCache, DecryptOptions, EncryptOptions,
    EncryptedDataKey, EncryptionContext, Keyring, RawAesKeyring, Suite, UnverifiedHeader,
    DEFAULT_FRAME_LENGTH,
};

const MIB: usize = 1 << 20;
const ROUNDS: usize = 3;

fn keyring() -> RawAesKeyring {
    RawAesKeyring::new("bench", "bench-key", &[7u8; 32]).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn best<F: FnMut() -> Duration>(mut f: F) -> Duration {
    (0..ROUNDS).map(|_| f()).min().unwrap()
}

fn mbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

fn throughput() {
    let len = 256 * MIB;
    let frame = DEFAULT_FRAME_LENGTH as usize;
    let input: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
    let rt = runtime();

    // Baseline: raw AES-256-GCM in place over the same bytes, frame by frame.
    let key =
        aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_256_GCM, &[1u8; 32]).unwrap());
    let mut work = input.clone();
    let mut tags = Vec::with_capacity(len / frame + 1);
    let raw_seal = best(|| {
        tags.clear();
        let t = Instant::now();
        for (i, chunk) in work.chunks_mut(frame).enumerate() {
            let mut n = [0u8; 12];
            n[8..].copy_from_slice(&(i as u32).to_be_bytes());
            let tag = key
                .seal_in_place_separate_tag(
                    aead::Nonce::assume_unique_for_key(n),
                    aead::Aad::from(&[0u8; 16]),
                    chunk,
                )
                .unwrap();
            tags.push(tag);
        }
        t.elapsed()
    });
    // Re-seal once from the plaintext so `work` holds one valid ciphertext.
    work.copy_from_slice(&input);
    tags.clear();
    for (i, chunk) in work.chunks_mut(frame).enumerate() {
        let mut n = [0u8; 12];
        n[8..].copy_from_slice(&(i as u32).to_be_bytes());
        tags.push(
            key.seal_in_place_separate_tag(
                aead::Nonce::assume_unique_for_key(n),
                aead::Aad::from(&[0u8; 16]),
                chunk,
            )
            .unwrap(),
        );
    }
    let sealed = work.clone();
    let raw_open = best(|| {
        work.copy_from_slice(&sealed);
        let t = Instant::now();
        for (i, chunk) in work.chunks_mut(frame).enumerate() {
            let mut n = [0u8; 12];
            n[8..].copy_from_slice(&(i as u32).to_be_bytes());
            key.open_in_place_separate_tag(
                aead::Nonce::assume_unique_for_key(n),
                aead::Aad::from(&[0u8; 16]),
                tags[i].as_ref(),
                chunk,
            )
            .unwrap();
        }
        t.elapsed()
    });
    drop(work);
    drop(sealed);

    let client = Client::new(keyring(), Config::default()).unwrap();
    let ctx = EncryptionContext::from([("cluster".to_string(), "bench".to_string())]);
    let mut message = Vec::with_capacity(len + len / 1000 + 4096);
    let ours_enc = best(|| {
        message.clear();
        let enc = rt
            .block_on(client.begin_encrypt(&ctx, &EncryptOptions::default()))
            .unwrap();
        let t = Instant::now();
        enc.write_sync(&mut &input[..], &mut message).unwrap();
        t.elapsed()
    });
    let mut plain = Vec::with_capacity(len);
    let ours_dec = best(|| {
        plain.clear();
        let mut r = &message[..];
        let t = Instant::now();
        let raw = UnverifiedHeader::read_sync(&mut r, client.config()).unwrap();
        let dec = rt
            .block_on(client.begin_decrypt(raw, &DecryptOptions::default()))
            .unwrap();
        dec.read_sync(&mut r, &mut plain).unwrap();
        t.elapsed()
    });
    assert_eq!(plain, input);

    let (rs, ro, oe, od) = (
        mbps(len, raw_seal),
        mbps(len, raw_open),
        mbps(len, ours_enc),
        mbps(len, ours_dec),
    );
    println!(
        "256 MiB in memory, 1 core, best of {ROUNDS}, frame {} KiB:",
        frame / 1024
    );
    println!("  raw AES-256-GCM seal (aws-lc-rs, in place)   {rs:8.0} MB/s");
    println!(
        "  keyward-envelope encrypt (0x0478)            {oe:8.0} MB/s  = {:.1}% of raw",
        100.0 * oe / rs
    );
    println!("  raw AES-256-GCM open (aws-lc-rs, in place)   {ro:8.0} MB/s");
    println!(
        "  keyward-envelope decrypt (0x0478)            {od:8.0} MB/s  = {:.1}% of raw",
        100.0 * od / ro
    );
    println!("BENCH raw_seal_mbps={rs:.0} raw_open_mbps={ro:.0} encrypt_mbps={oe:.0} decrypt_mbps={od:.0}");
}

/// The child of `peak_memory`: streams `gib` GiB through encrypt then decrypt
/// with a pipe between them and prints its own VmHWM.
fn stream_child(gib: u64) {
    use tokio::io::AsyncReadExt;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    rt.block_on(async {
        let client = Client::new(keyring(), Config::default()).unwrap();
        let len = gib << 30;
        let (mut pipe_w, mut pipe_r) = tokio::io::duplex(64 * 1024);
        let enc = client
            .begin_encrypt(&EncryptionContext::new(), &EncryptOptions::default())
            .await
            .unwrap();
        let writer = tokio::spawn(async move {
            let mut source = tokio::io::repeat(0x5a).take(len);
            enc.write_async(&mut source, &mut pipe_w).await.unwrap()
        });
        let raw = UnverifiedHeader::read_async(&mut pipe_r, client.config())
            .await
            .unwrap();
        let dec = client
            .begin_decrypt(raw, &DecryptOptions::default())
            .await
            .unwrap();
        let n = dec
            .read_async(&mut pipe_r, &mut tokio::io::sink())
            .await
            .unwrap();
        assert_eq!(writer.await.unwrap(), len);
        assert_eq!(n, len);
    });
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hwm = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    println!("{hwm}");
}

fn peak_memory() {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .arg("--stream-child")
        .arg("1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let kib: u64 = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    println!(
        "1 GiB streamed through encrypt | decrypt (async, one process): peak RSS (VmHWM) {:.1} MiB",
        kib as f64 / 1024.0
    );
    println!("BENCH stream_1gib_vmhwm_mib={:.1}", kib as f64 / 1024.0);
}

/// The real raw keyring, counting the calls that would be KMS calls.
struct Counted(RawAesKeyring, AtomicU64);
impl Keyring for Counted {
    fn key_ids(&self) -> Vec<String> {
        self.0.key_ids()
    }
    async fn generate(
        &self,
        suite: Suite,
        ctx: &EncryptionContext,
    ) -> keyward_envelope::Result<(DataKey, Vec<EncryptedDataKey>)> {
        self.1.fetch_add(1, Ordering::Relaxed);
        self.0.generate(suite, ctx).await
    }
    async fn unwrap(
        &self,
        suite: Suite,
        edks: &[EncryptedDataKey],
        ctx: &EncryptionContext,
    ) -> keyward_envelope::Result<Option<DataKey>> {
        self.1.fetch_add(1, Ordering::Relaxed);
        self.0.unwrap(suite, edks, ctx).await
    }
}

fn small_messages() {
    let rt = runtime();
    let cache = Arc::new(
        DataKeyCache::new(CacheLimits {
            max_age: Duration::from_secs(300),
            ..CacheLimits::default()
        })
        .unwrap(),
    );
    let client = Client::new(Counted(keyring(), AtomicU64::new(0)), Config::default())
        .unwrap()
        .with_cache(cache.clone());
    let ctx = EncryptionContext::from([
        ("cluster".to_string(), "bench".to_string()),
        ("class".to_string(), "documents".to_string()),
    ]);
    let plain = vec![0x42u8; 4096];
    let mut out = Vec::with_capacity(8192);
    let n = 10_000;
    let d = best(|| {
        let t = Instant::now();
        for _ in 0..n {
            out.clear();
            let enc = rt
                .block_on(client.begin_encrypt(
                    &ctx,
                    &EncryptOptions {
                        plaintext_length: Some(4096),
                        ..Default::default()
                    },
                ))
                .unwrap();
            enc.write_sync(&mut &plain[..], &mut out).unwrap();
            black_box(&out);
        }
        t.elapsed()
    });
    let calls = client.keyring().1.load(Ordering::Relaxed);
    let per_s = n as f64 / d.as_secs_f64();
    println!("4 KiB messages, warm cache, 1 core: {per_s:.0} encrypts/s; keyring (KMS) calls for {} messages: {calls}, saved: {}",
        n * ROUNDS, cache.kms_calls_saved());
    println!(
        "BENCH small_encrypts_per_s={per_s:.0} kms_calls_per_{}={calls}",
        n * ROUNDS
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--stream-child") {
        stream_child(args[i + 1].parse().unwrap());
        return;
    }
    // `cargo test --benches` passes `--test`/filters; run only under `cargo bench`.
    if !args.iter().any(|a| a == "--bench") {
        return;
    }
    throughput();
    peak_memory();
    small_messages();
}
