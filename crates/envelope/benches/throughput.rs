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
    EncryptedDataKey, EncryptionContext, Keyring, KmsKeyring, RawAesKeyring, Suite,
    UnverifiedHeader, DEFAULT_FRAME_LENGTH,
};

const MIB: usize = 1 << 20;
const ROUNDS: usize = 5;

fn keyring() -> RawAesKeyring {
    RawAesKeyring::new("bench", "bench-key", &[7u8; 32]).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn mbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

fn nonce(i: usize) -> aead::Nonce {
    let mut n = [0u8; 12];
    n[8..].copy_from_slice(&(i as u32).to_be_bytes());
    aead::Nonce::assume_unique_for_key(n)
}

fn throughput() {
    let len = 256 * MIB;
    let frame = DEFAULT_FRAME_LENGTH as usize;
    let input: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
    let rt = runtime();
    let key =
        aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_256_GCM, &[1u8; 32]).unwrap());
    let aad = [0u8; 16];
    let client = Client::new(keyring(), Config::default()).unwrap();
    let ctx = EncryptionContext::from([("cluster".to_string(), "bench".to_string())]);

    // Buffers allocated and touched once, reused by every round.
    let mut work = input.clone();
    let mut raw_out: Vec<u8> = Vec::with_capacity(len + len / 1000 + 4096);
    let mut message: Vec<u8> = Vec::with_capacity(len + len / 1000 + 4096);
    let mut streamed: Vec<u8> = Vec::with_capacity(len + len / 1000 + 4096);
    let mut plain: Vec<u8> = Vec::with_capacity(len);
    raw_out.resize(raw_out.capacity(), 0);
    raw_out.clear();
    plain.resize(len, 0);
    // One valid raw ciphertext of `input` to open.
    let mut sealed = input.clone();
    let tags: Vec<aead::Tag> = sealed
        .chunks_mut(frame)
        .enumerate()
        .map(|(i, c)| {
            key.seal_in_place_separate_tag(nonce(i), aead::Aad::from(&aad), c)
                .unwrap()
        })
        .collect();
    let first = rt
        .block_on(client.begin_encrypt(&ctx, &EncryptOptions::default()))
        .unwrap();
    first.seal_slice(&input, &mut message).unwrap();

    let names = [
        "raw seal, in place",
        "raw seal, into a new buffer",
        "encrypt, in place",
        "encrypt, into a new buffer",
        "encrypt, streaming",
        "raw open, in place",
        "raw open, into a new buffer",
        "decrypt, in place",
        "decrypt, into a new buffer",
        "decrypt, streaming",
    ];
    let mut best = [Duration::MAX; 10];
    let mut in_place: Vec<u8> = Vec::with_capacity(len + len / 1000 + 4096);
    // Interleaved rounds: the machine is shared, so every variant sees the
    // same background load; the best round of each is kept.
    for _round in 0..ROUNDS {
        for (v, slot) in best.iter_mut().enumerate() {
            let t;
            match v {
                2 => {
                    in_place.clear();
                    in_place.extend_from_slice(&input);
                    t = Instant::now();
                    rt.block_on(client.encrypt_in_place(&mut in_place, &ctx))
                        .unwrap();
                }
                7 => {
                    in_place.clear();
                    in_place.extend_from_slice(&message);
                    t = Instant::now();
                    rt.block_on(client.decrypt_in_place(&mut in_place, &DecryptOptions::default()))
                        .unwrap();
                }
                0 => {
                    work.copy_from_slice(&input);
                    t = Instant::now();
                    for (i, c) in work.chunks_mut(frame).enumerate() {
                        let tag = key
                            .seal_in_place_separate_tag(nonce(i), aead::Aad::from(&aad), c)
                            .unwrap();
                        black_box(&tag);
                    }
                }
                1 => {
                    raw_out.clear();
                    t = Instant::now();
                    for (i, c) in input.chunks(frame).enumerate() {
                        let at = raw_out.len();
                        raw_out.extend_from_slice(c);
                        let tag = key
                            .seal_in_place_separate_tag(
                                nonce(i),
                                aead::Aad::from(&aad),
                                &mut raw_out[at..],
                            )
                            .unwrap();
                        raw_out.extend_from_slice(tag.as_ref());
                    }
                }
                3 => {
                    message.clear();
                    let enc = rt
                        .block_on(client.begin_encrypt(&ctx, &EncryptOptions::default()))
                        .unwrap();
                    t = Instant::now();
                    enc.seal_slice(&input, &mut message).unwrap();
                }
                4 => {
                    streamed.clear();
                    let enc = rt
                        .block_on(client.begin_encrypt(&ctx, &EncryptOptions::default()))
                        .unwrap();
                    t = Instant::now();
                    enc.write_sync(&mut &input[..], &mut streamed).unwrap();
                }
                5 => {
                    work.copy_from_slice(&sealed);
                    t = Instant::now();
                    for (i, c) in work.chunks_mut(frame).enumerate() {
                        key.open_in_place_separate_tag(
                            nonce(i),
                            aead::Aad::from(&aad),
                            tags[i].as_ref(),
                            c,
                        )
                        .unwrap();
                    }
                }
                6 => {
                    plain.clear();
                    t = Instant::now();
                    for (i, c) in sealed.chunks(frame).enumerate() {
                        let at = plain.len();
                        plain.extend_from_slice(c);
                        key.open_in_place_separate_tag(
                            nonce(i),
                            aead::Aad::from(&aad),
                            tags[i].as_ref(),
                            &mut plain[at..],
                        )
                        .unwrap();
                    }
                }
                8 => {
                    plain.clear();
                    let mut r = &message[..];
                    t = Instant::now();
                    let raw = UnverifiedHeader::read_sync(&mut r, client.config()).unwrap();
                    let dec = rt
                        .block_on(client.begin_decrypt(raw, &DecryptOptions::default()))
                        .unwrap();
                    dec.open_slice(r, &mut plain).unwrap();
                }
                _ => {
                    plain.clear();
                    let mut r = &streamed[..];
                    t = Instant::now();
                    let raw = UnverifiedHeader::read_sync(&mut r, client.config()).unwrap();
                    let dec = rt
                        .block_on(client.begin_decrypt(raw, &DecryptOptions::default()))
                        .unwrap();
                    dec.read_sync(&mut r, &mut plain).unwrap();
                }
            }
            *slot = (*slot).min(t.elapsed());
            if v >= 8 {
                assert!(plain == input, "{} round-trips", names[v]);
            }
            if v == 7 {
                assert!(in_place == input, "decrypt in place round-trips");
            }
        }
    }
    let m: Vec<f64> = best.iter().map(|d| mbps(len, *d)).collect();
    println!(
        "256 MiB in memory, 1 core, best of {ROUNDS} interleaved rounds, frame {} KiB:",
        frame / 1024
    );
    for (v, name) in names.iter().enumerate() {
        let base = if v < 5 { (m[0], m[1]) } else { (m[5], m[6]) };
        if v % 5 < 2 {
            println!("  {name:30} {:7.0} MB/s", m[v]);
        } else {
            println!(
                "  {name:30} {:7.0} MB/s = {:5.1}% of raw in place, {:5.1}% of raw into a new buffer",
                m[v],
                100.0 * m[v] / base.0,
                100.0 * m[v] / base.1
            );
        }
    }
    let keys = [
        "raw_seal_inplace",
        "raw_seal_copy",
        "encrypt_inplace",
        "encrypt_copy",
        "encrypt_stream",
        "raw_open_inplace",
        "raw_open_copy",
        "decrypt_inplace",
        "decrypt_copy",
        "decrypt_stream",
    ];
    let line: Vec<String> = keys
        .iter()
        .zip(&m)
        .map(|(k, v)| format!("{k}_mbps={v:.0}"))
        .collect();
    println!("BENCH {}", line.join(" "));
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
    let n = 10_000;
    let d = (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            rt.block_on(async {
                for _ in 0..n {
                    black_box(client.encrypt_to_vec(&plain, &ctx).await.unwrap());
                }
            });
            t.elapsed()
        })
        .min()
        .unwrap();
    let calls = client.keyring().1.load(Ordering::Relaxed);
    let per_s = n as f64 / d.as_secs_f64();
    println!("4 KiB messages, warm cache, 1 core: {per_s:.0} encrypts/s; keyring (KMS) calls for {} messages: {calls}, saved: {}",
        n * ROUNDS, cache.kms_calls_saved());
    println!(
        "BENCH small_encrypts_per_s={per_s:.0} kms_calls_per_{}={calls}",
        n * ROUNDS
    );
}

/// `aws-encryption-cli` against us on a 256 MiB file, both through the
/// embedded KMS; and the KMS calls of 10,000 small messages with the cache.
fn versus_cli() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let _guard = rt.enter();
    let server = keyward_kms_server::DevServer::start(&dir.path().join("kms"));
    let sdk = aws_sdk_kms::Client::new(&rt.block_on(server.sdk_config()));
    let arn = rt
        .block_on(sdk.create_key().send())
        .unwrap()
        .key_metadata()
        .unwrap()
        .arn()
        .unwrap()
        .to_owned();
    let len = 256 * MIB;
    let plain_path = dir.path().join("plain");
    std::fs::write(
        &plain_path,
        (0..len).map(|i| (i * 31 + 7) as u8).collect::<Vec<u8>>(),
    )
    .unwrap();

    let cli = |mode: &str, input: &std::path::Path, output: &std::path::Path| -> Duration {
        let t = Instant::now();
        let out = std::process::Command::new("aws-encryption-cli")
            .env("AWS_ENDPOINT_URL_KMS", server.endpoint())
            .env("AWS_ACCESS_KEY_ID", server.access_key_id())
            .env("AWS_SECRET_ACCESS_KEY", server.secret_access_key())
            .env("AWS_DEFAULT_REGION", server.region())
            .args([
                mode,
                "-S",
                "--commitment-policy",
                "require-encrypt-require-decrypt",
            ])
            .args(["--wrapping-keys", &format!("key={arn}"), "-i"])
            .arg(input)
            .arg("-o")
            .arg(output)
            .output()
            .expect("aws-encryption-cli on PATH (the project venv's bin)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        t.elapsed()
    };
    let cli_msg = dir.path().join("cli.msg");
    let cli_enc = cli("--encrypt", &plain_path, &cli_msg);
    let cli_dec = cli("--decrypt", &cli_msg, &dir.path().join("cli.out"));

    // Ours, file to file through the KMS keyring (streaming, tokio::fs).
    let client = Client::new(KmsKeyring::new(sdk.clone(), arn.clone()), Config::default()).unwrap();
    let ours_msg = dir.path().join("ours.msg");
    let ours_out = dir.path().join("ours.out");
    let mut ours_enc = Duration::MAX;
    let mut ours_dec = Duration::MAX;
    // Blocking std::fs, as `keyward encrypt` does: one read and one write per frame.
    for _ in 0..3 {
        let t = Instant::now();
        let enc = rt
            .block_on(client.begin_encrypt(&EncryptionContext::new(), &EncryptOptions::default()))
            .unwrap();
        let mut r = std::fs::File::open(&plain_path).unwrap();
        let mut w = std::fs::File::create(&ours_msg).unwrap();
        enc.write_sync(&mut r, &mut w).unwrap();
        ours_enc = ours_enc.min(t.elapsed());
        let t = Instant::now();
        let mut r = std::fs::File::open(&ours_msg).unwrap();
        let raw = UnverifiedHeader::read_sync(&mut r, client.config()).unwrap();
        let dec = rt
            .block_on(client.begin_decrypt(raw, &DecryptOptions::default()))
            .unwrap();
        let mut w = std::fs::File::create(&ours_out).unwrap();
        dec.read_sync(&mut r, &mut w).unwrap();
        ours_dec = ours_dec.min(t.elapsed());
    }
    // The CLI's message opens with us too (same run, same key).
    rt.block_on(async {
        let mut r = tokio::fs::File::open(&cli_msg).await.unwrap();
        client
            .decrypt_async(&DecryptOptions::default(), &mut r, &mut tokio::io::sink())
            .await
            .unwrap();
    });
    let (ce, cd, oe, od) = (
        mbps(len, cli_enc),
        mbps(len, cli_dec),
        mbps(len, ours_enc),
        mbps(len, ours_dec),
    );
    println!("256 MiB file to file through the embedded KMS (process start included for the CLI):");
    println!("  aws-encryption-cli 4.3.0 encrypt {ce:7.0} MB/s   keyward-envelope {oe:7.0} MB/s = {:5.1}x", oe / ce);
    println!("  aws-encryption-cli 4.3.0 decrypt {cd:7.0} MB/s   keyward-envelope {od:7.0} MB/s = {:5.1}x", od / cd);
    println!("BENCH cli_encrypt_mbps={ce:.0} cli_decrypt_mbps={cd:.0} file_encrypt_mbps={oe:.0} file_decrypt_mbps={od:.0}");

    // 10,000 4 KiB messages through the real KMS keyring and the cache.
    let cache = Arc::new(
        DataKeyCache::new(CacheLimits {
            max_age: Duration::from_secs(300),
            ..CacheLimits::default()
        })
        .unwrap(),
    );
    let client = Client::new(KmsKeyring::new(sdk, arn), Config::default())
        .unwrap()
        .with_cache(cache.clone());
    let ctx = EncryptionContext::from([("cluster".to_string(), "bench".to_string())]);
    let plain = vec![0x42u8; 4096];
    let n = 10_000u64;
    let t = Instant::now();
    rt.block_on(async {
        for _ in 0..n {
            black_box(client.encrypt_to_vec(&plain, &ctx).await.unwrap());
        }
    });
    let d = t.elapsed();
    let calls = n - cache.kms_calls_saved();
    println!(
        "10,000 4 KiB messages, KMS keyring + cache (max age 300 s): {calls} GenerateDataKey call(s), {:.0} encrypts/s",
        n as f64 / d.as_secs_f64()
    );
    println!("BENCH kms_calls_per_10000={calls}");
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
    versus_cli();
}
