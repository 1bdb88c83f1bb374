//! Object store benchmark, against plain file I/O of the same bytes in the same run:
//! a streamed put (ESDK encryption, multipart upload to the local backend, fsync
//! on publish) against writing the plaintext to a file with one fsync, and a
//! streamed get (authenticated decryption) against reading that file back.
//! KMS is the embedded server on loopback (one GenerateDataKey per put, one
//! Decrypt per get). Best of three runs each.
//!
//! `cargo bench -p keyward-storage --bench objects`. Environment:
//! `KEYWARD_BENCH_SIZE_MIB` (default 512), `KEYWARD_BENCH_DIR` (default the
//! temporary directory).

use std::sync::Arc;
use std::time::{Duration, Instant};

use keyward_envelope::{Client, Config, KmsKeyring};
use keyward_kms_server::DevServer;
use keyward_storage::objects::{EncryptedStore, ObjectClass};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn best(times: &[Duration]) -> Duration {
    *times.iter().min().unwrap()
}

fn rate(bytes: u64, time: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / time.as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let size: u64 = std::env::var("KEYWARD_BENCH_SIZE_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(512)
        << 20;
    let base = std::env::var_os("KEYWARD_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(base).unwrap();
    let server = DevServer::start(&dir.path().join("kms"));
    let kms = aws_sdk_kms::Client::new(&server.sdk_config().await);
    let arn = kms
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .arn
        .unwrap();
    let client = Client::new(KmsKeyring::new(kms, arn), Config::default()).unwrap();
    let store = EncryptedStore::local(
        &dir.path().join("objects"),
        "bench",
        ObjectClass::Documents,
        Arc::new(client),
    )
    .unwrap();
    let plain = dir.path().join("plain.bin");
    let chunk = vec![0x5au8; 1 << 20];

    let (mut file_write, mut file_read, mut put, mut get) = (vec![], vec![], vec![], vec![]);
    for _ in 0..3 {
        let start = Instant::now();
        let mut file = tokio::fs::File::create(&plain).await.unwrap();
        for _ in 0..size >> 20 {
            file.write_all(&chunk).await.unwrap();
        }
        file.sync_all().await.unwrap();
        file_write.push(start.elapsed());

        let start = Instant::now();
        // Plain std reads in 1 MiB blocks: the fastest honest baseline.
        let path = plain.clone();
        let n = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(path).unwrap();
            let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
            std::io::copy(&mut reader, &mut std::io::sink()).unwrap()
        })
        .await
        .unwrap();
        assert_eq!(n, size);
        file_read.push(start.elapsed());

        let start = Instant::now();
        let mut source = tokio::io::repeat(0x5a).take(size);
        store.put_reader("bench.bin", &mut source).await.unwrap();
        put.push(start.elapsed());

        let start = Instant::now();
        let n = store
            .get_to("bench.bin", &mut tokio::io::sink())
            .await
            .unwrap();
        assert_eq!(n, size);
        get.push(start.elapsed());
    }
    let mib = size >> 20;
    let (fw, fr) = (rate(size, best(&file_write)), rate(size, best(&file_read)));
    let (p, g) = (rate(size, best(&put)), rate(size, best(&get)));
    println!("objects, {mib} MiB, best of 3:");
    println!(
        "  write: plain file + fsync {fw:8.0} MiB/s | encrypted put {p:8.0} MiB/s | ratio {:.2}",
        p / fw
    );
    println!(
        "  read:  plain file (std) {fr:8.0} MiB/s | encrypted get {g:8.0} MiB/s | ratio {:.2}",
        g / fr
    );
}
