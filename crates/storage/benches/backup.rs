//! Backup and restore of a whole cluster, against a plain `cp` of the same bytes
//! in the same run, with the peak resident memory of each.
//!
//! The cluster: six disks (three `engine-disk`, three `search-disk`) and
//! sixteen documents, 4 GiB in all by default (three quarters disks, one
//! quarter documents), every byte written (no sparse holes). The backup goes
//! to the cluster's local backup store in 64 MiB parts; the restore makes six
//! new volumes (new data keys) and sixteen documents in a new cluster's store.
//! The baseline is `cp -r` of the volume files and document objects to another
//! directory, plus `sync`, timed the same way (the backup and restore each
//! end with fsync too). KMS is the embedded server on loopback, in-process.
//!
//! Peak memory is `VmHWM` of this process, reset (`/proc/self/clear_refs` ← 5)
//! before each measured step; the page cache is not part of it.
//!
//! `cargo bench -p keyward-storage --bench backup`. Environment:
//! `KEYWARD_BENCH_CLUSTER_MIB` (default 4096), `KEYWARD_BENCH_DIR` (default the
//! temporary directory; it needs about 4× the cluster's size free).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyward_envelope::{Client, Config, KmsKeyring};
use keyward_kms_server::DevServer;
use keyward_storage::backup::{
    create_backup, restore_backup, BackupRequest, BackupVolume, Progress, RestoreTarget,
    DEFAULT_PART_SIZE,
};
use keyward_storage::objects::{EncryptedStore, ObjectClass};
use keyward_storage::{create_volume, AwsKms, KeyService, NewVolume, Volume, VolumeFile};

const DISKS: u64 = 6;
const DOCUMENTS: u64 = 16;

fn rate(bytes: u64, time: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / time.as_secs_f64()
}

fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM");
}

fn peak_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap();
    kib / 1024.0
}

fn sync() {
    assert!(std::process::Command::new("sync")
        .status()
        .unwrap()
        .success());
}

fn store(
    root: &Path,
    client: &Arc<Client<KmsKeyring>>,
    cluster: &str,
    class: ObjectClass,
) -> EncryptedStore {
    EncryptedStore::local(root, cluster, class, client.clone()).unwrap()
}

async fn new_volume(
    kms: &AwsKms,
    key: &str,
    dir: &Path,
    class: &str,
    size: u64,
) -> (PathBuf, Arc<Volume>) {
    let id = keyward_storage::volume::kms::new_volume_id().unwrap();
    let path = dir.join(format!("{id}.vol"));
    let header = create_volume(
        kms,
        &path,
        NewVolume {
            volume_id: Some(id),
            size,
            key_id: key.into(),
            encryption_context: BTreeMap::from([
                ("keyward:cluster".into(), "c-bench".into()),
                ("keyward:class".into(), class.into()),
            ]),
        },
    )
    .await
    .unwrap();
    let data_key = kms
        .decrypt(
            &header.key_arn,
            &header.wrapped_key,
            &header.encryption_context,
            None,
        )
        .await
        .unwrap();
    let volume = VolumeFile::open(&path).unwrap().unlock(data_key).unwrap();
    (path, Arc::new(volume))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let total: u64 = std::env::var("KEYWARD_BENCH_CLUSTER_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4096)
        << 20;
    let base = std::env::var_os("KEYWARD_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(base).unwrap();
    let server = DevServer::start(&dir.path().join("kms"));
    let sdk = aws_sdk_kms::Client::new(&server.sdk_config().await);
    let key = sdk
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .arn
        .unwrap();
    let kms = AwsKms::new(sdk.clone());
    let client =
        Arc::new(Client::new(KmsKeyring::new(sdk, key.clone()), Config::default()).unwrap());
    let objects = dir.path().join("objects");
    let volumes_dir = dir.path().join("volumes").join("c-bench");
    std::fs::create_dir_all(&volumes_dir).unwrap();

    // The cluster, every byte written.
    let disk_size = (total * 3 / 4 / DISKS) / 4096 * 4096;
    let doc_size = total / 4 / DOCUMENTS;
    let block: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let mut volumes = Vec::new();
    let mut files = Vec::new();
    for i in 0..DISKS {
        let class = if i < DISKS / 2 {
            "engine-disk"
        } else {
            "search-disk"
        };
        let (path, volume) = new_volume(&kms, &key, &volumes_dir, class, disk_size).await;
        let filler = volume.clone();
        let block = block.clone();
        tokio::task::spawn_blocking(move || {
            let mut at = 0;
            while at < disk_size {
                let n = (disk_size - at).min(block.len() as u64) as usize;
                filler.write_at(at, &block[..n], false).unwrap();
                at += n as u64;
            }
            filler.flush().unwrap();
        })
        .await
        .unwrap();
        files.push(path);
        volumes.push((format!("{class}-{i}"), class.to_owned(), volume));
    }
    let documents = store(&objects, &client, "c-bench", ObjectClass::Documents);
    for i in 0..DOCUMENTS {
        let mut source = tokio::io::AsyncReadExt::take(
            tokio::io::AsyncReadExt::chain(&block[..], tokio::io::repeat(0x42)),
            doc_size,
        );
        documents
            .put_reader(&format!("docs/{i:02}.bin"), &mut source)
            .await
            .unwrap();
    }
    let plaintext = disk_size * DISKS + doc_size * DOCUMENTS;
    sync();

    // Baseline: cp of the same files (the stored bytes: volume files and
    // document objects), then sync.
    let copy = dir.path().join("cp");
    std::fs::create_dir_all(&copy).unwrap();
    let started = Instant::now();
    let status = std::process::Command::new("cp")
        .arg("-r")
        .arg(&volumes_dir)
        .arg(objects.join("c-bench").join("documents"))
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    sync();
    let cp_time = started.elapsed();
    std::fs::remove_dir_all(&copy).unwrap();
    sync();

    let backups = store(&objects, &client, "c-bench", ObjectClass::Backups);
    let request = BackupRequest {
        volumes: volumes
            .iter()
            .map(|(name, class, volume)| BackupVolume {
                name: name.clone(),
                class: class.clone(),
                volume: volume.clone(),
            })
            .collect(),
        documents: Some(&documents),
        exclude_documents: Vec::new(),
        part_size: DEFAULT_PART_SIZE,
    };
    let quiet = |_: Progress| {};
    reset_peak();
    let started = Instant::now();
    let manifest = create_backup(&backups, request, &quiet).await.unwrap();
    sync();
    let backup_time = started.elapsed();
    let backup_peak = peak_mib();
    assert_eq!(manifest.total_bytes, plaintext);

    let target_docs = store(&objects, &client, "c-restored", ObjectClass::Documents);
    reset_peak();
    let started = Instant::now();
    let restored = restore_backup(
        &backups,
        &manifest.backup_id,
        RestoreTarget {
            cluster_id: "c-restored".into(),
            key_id: key.clone(),
            kms: &kms,
            volumes_dir: dir.path().join("volumes").join("c-restored"),
            documents: Some(&target_docs),
            documents_prefix: String::new(),
        },
        &quiet,
    )
    .await
    .unwrap();
    sync();
    let restore_time = started.elapsed();
    let restore_peak = peak_mib();
    assert_eq!(restored.bytes, plaintext);

    let mib = plaintext >> 20;
    println!(
        "cluster: {mib} MiB ({DISKS} disks of {} MiB, {DOCUMENTS} documents of {} MiB), {} parts of {} MiB",
        disk_size >> 20,
        doc_size >> 20,
        manifest.parts.len(),
        DEFAULT_PART_SIZE >> 20
    );
    println!(
        "cp -r + sync (baseline):  {:>7.2} s  {:>7.1} MiB/s",
        cp_time.as_secs_f64(),
        rate(plaintext, cp_time)
    );
    println!(
        "backup:                   {:>7.2} s  {:>7.1} MiB/s  {:.2}x cp  peak RSS {:.1} MiB",
        backup_time.as_secs_f64(),
        rate(plaintext, backup_time),
        rate(plaintext, backup_time) / rate(plaintext, cp_time),
        backup_peak
    );
    println!(
        "restore:                  {:>7.2} s  {:>7.1} MiB/s  {:.2}x cp  peak RSS {:.1} MiB",
        restore_time.as_secs_f64(),
        rate(plaintext, restore_time),
        rate(plaintext, restore_time) / rate(plaintext, cp_time),
        restore_peak
    );
    assert!(
        backup_peak < 128.0 && restore_peak < 128.0,
        "peak resident memory must stay under 128 MiB"
    );
}
