//! Backups of a cluster (volumes under the real embedded KMS, documents in an
//! encrypted store) and restores into new volumes and documents: round trip,
//! consistency of a volume written during its backup, manifests that lie, a
//! failed backup, and a backup process killed mid-way (SIGKILL).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keyward_envelope::{Client, Config, KmsKeyring};
use keyward_storage::backup::{
    create_backup, delete_backup, list_backups, list_incomplete, manifest_name, read_manifest,
    restore_backup, BackupError, BackupRequest, BackupVolume, Manifest, Progress, RestoreTarget,
    Restored,
};
use keyward_storage::objects::{EncryptedStore, ObjectClass};
use keyward_storage::verify::scan_with_object_decrypts;
use keyward_storage::{create_volume, AwsKms, KeyService, NewVolume, Volume, VolumeFile};
use keyward_storage::{scan, ScanRequest, StorageClass};

use crate::objects::{keys, pattern, KillOnDrop};

const CLUSTER: &str = "c-0123456789abcdef";
const RESTORED: &str = "c-fedcba9876543210";
const CHILD_ENV: &str = "KEYWARD_BACKUP_CRASH_CHILD";

struct Cluster {
    dir: tempfile::TempDir,
    server: keyward_kms_server::DevServer,
    kms: aws_sdk_kms::Client,
    key_arn: String,
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let server = keyward_kms_server::DevServer::start(&dir.path().join("kms"));
        let kms = aws_sdk_kms::Client::new(&server.sdk_config().await);
        let key_arn = kms
            .create_key()
            .description("cluster key")
            .send()
            .await
            .unwrap()
            .key_metadata
            .unwrap()
            .arn
            .unwrap();
        Cluster {
            dir,
            server,
            kms,
            key_arn,
        }
    }

    fn store(&self, cluster: &str, class: ObjectClass) -> EncryptedStore {
        open_store(
            self.dir.path(),
            self.kms.clone(),
            &self.key_arn,
            cluster,
            class,
        )
    }

    fn volumes_dir(&self, cluster: &str) -> PathBuf {
        self.dir.path().join("volumes").join(cluster)
    }

    async fn new_volume(&self, class: &str, size: u64) -> Arc<Volume> {
        new_volume(
            &self.kms,
            &self.key_arn,
            &self.volumes_dir(CLUSTER),
            class,
            size,
        )
        .await
    }

    fn target<'a>(
        &self,
        kms: &'a AwsKms,
        documents: &'a EncryptedStore,
    ) -> RestoreTarget<'a, KmsKeyring, AwsKms> {
        RestoreTarget {
            cluster_id: RESTORED.into(),
            key_id: self.key_arn.clone(),
            kms,
            volumes_dir: self.volumes_dir(RESTORED),
            documents: Some(documents),
            documents_prefix: String::new(),
        }
    }
}

fn open_store(
    root: &Path,
    kms: aws_sdk_kms::Client,
    key_arn: &str,
    cluster: &str,
    class: ObjectClass,
) -> EncryptedStore {
    let client = Client::new(KmsKeyring::new(kms, key_arn), Config::default()).unwrap();
    EncryptedStore::local(&root.join("objects"), cluster, class, Arc::new(client)).unwrap()
}

/// A volume of the cluster as the control plane makes one, opened with its key.
async fn new_volume(
    kms: &aws_sdk_kms::Client,
    key_arn: &str,
    dir: &Path,
    class: &str,
    size: u64,
) -> Arc<Volume> {
    std::fs::create_dir_all(dir).unwrap();
    let id = keyward_storage::volume::kms::new_volume_id().unwrap();
    let path = dir.join(format!("{id}.vol"));
    let kms = AwsKms::new(kms.clone());
    let context = BTreeMap::from([
        ("keyward:cluster".to_owned(), CLUSTER.to_owned()),
        ("keyward:class".to_owned(), class.to_owned()),
    ]);
    let header = create_volume(
        &kms,
        &path,
        NewVolume {
            volume_id: Some(id),
            size,
            key_id: key_arn.into(),
            encryption_context: context,
        },
    )
    .await
    .unwrap();
    open_volume(&kms, &path, &header).await
}

async fn open_volume(
    kms: &AwsKms,
    path: &Path,
    header: &keyward_storage::VolumeHeader,
) -> Arc<Volume> {
    let key = kms
        .decrypt(
            &header.key_arn,
            &header.wrapped_key,
            &header.encryption_context,
            None,
        )
        .await
        .unwrap();
    let path = path.to_owned();
    Arc::new(
        tokio::task::spawn_blocking(move || VolumeFile::open(&path).unwrap().unlock(key).unwrap())
            .await
            .unwrap(),
    )
}

fn contents(volume: &Arc<Volume>) -> Vec<u8> {
    let mut all = vec![0u8; volume.size() as usize];
    volume.read_at(0, &mut all).unwrap();
    all
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries.flatten().map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    }
}

fn no_progress(_: Progress) {}

/// Volumes and documents of the source cluster: two disks with patterns at
/// both ends, three documents (one spanning several 1 MiB parts).
async fn populate(cluster: &Cluster) -> (Vec<BackupVolume>, BTreeMap<String, Vec<u8>>) {
    let engine = cluster.new_volume("engine-disk", 3 << 20).await;
    let search = cluster.new_volume("search-disk", 1 << 20).await;
    engine.write_at(0, &pattern(5000, 1), false).unwrap();
    engine
        .write_at((3 << 20) - 777, &pattern(777, 2), true)
        .unwrap();
    search.write_zeroes(0, 1 << 20, false).unwrap();
    search.write_at(12345, &pattern(100_000, 3), true).unwrap();
    let docs = cluster.store(CLUSTER, ObjectClass::Documents);
    let documents = BTreeMap::from([
        ("contracts/a.pdf".to_owned(), pattern(2_500_000, 4)),
        ("notes.txt".to_owned(), b"remember the milk".to_vec()),
        ("zero".to_owned(), Vec::new()),
    ]);
    for (key, body) in &documents {
        docs.put_bytes(key, body).await.unwrap();
    }
    let volumes = vec![
        BackupVolume {
            name: "engine-0".into(),
            class: "engine-disk".into(),
            volume: engine,
        },
        BackupVolume {
            name: "search-0".into(),
            class: "search-disk".into(),
            volume: search,
        },
    ];
    (volumes, documents)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restores_into_new_volumes_and_documents() {
    let cluster = Cluster::start().await;
    let (volumes, documents) = populate(&cluster).await;
    let originals: Vec<(String, Vec<u8>)> = volumes
        .iter()
        .map(|v| (v.volume.id().to_owned(), contents(&v.volume)))
        .collect();
    let backups = cluster.store(CLUSTER, ObjectClass::Backups);
    let docs = cluster.store(CLUSTER, ObjectClass::Documents);
    // The store's own marker stays out of the backup: the target has its own.
    docs.put_bytes(".keyward/store", b"source marker")
        .await
        .unwrap();
    let seen = Mutex::new(Vec::new());
    let record = |p: Progress| seen.lock().unwrap().push(p);
    let manifest = create_backup(
        &backups,
        BackupRequest {
            volumes,
            documents: Some(&docs),
            exclude_documents: vec![".keyward/".into()],
            part_size: 1 << 20,
        },
        &record,
    )
    .await
    .unwrap();
    let total = (4 << 20) + 2_500_000 + 17;
    assert_eq!(manifest.total_bytes, total);
    assert_eq!(manifest.parts.len(), 7); // ceil(6.5 MiB / 1 MiB)
    assert_eq!(manifest.items.len(), 5);
    let seen = seen.into_inner().unwrap();
    assert!(seen.windows(2).all(|w| w[0].bytes_done <= w[1].bytes_done));
    assert_eq!(seen.last().unwrap().bytes_done, total);

    let listed = list_backups(&backups).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].backup_id, manifest.backup_id);
    assert_eq!(listed[0].parts, 7);
    assert_eq!(
        read_manifest(&backups, &manifest.backup_id).await.unwrap(),
        manifest
    );
    // Each part is an ESDK message bound to its own name.
    let head = backups.head(&manifest.parts[3].name).await.unwrap();
    assert!(head.context_matches);
    assert_eq!(head.context["keyward:object"], manifest.parts[3].name);
    assert_eq!(head.context["keyward:class"], "backups");

    let kms = AwsKms::new(cluster.kms.clone());
    let target_docs = cluster.store(RESTORED, ObjectClass::Documents);
    target_docs
        .put_bytes(".keyward/store", b"target marker")
        .await
        .unwrap();
    let restored: Restored = restore_backup(
        &backups,
        &manifest.backup_id,
        cluster.target(&kms, &target_docs),
        &no_progress,
    )
    .await
    .unwrap();
    assert_eq!(restored.volumes.len(), 2);
    for (new, (old_id, old_bytes)) in restored.volumes.iter().zip(&originals) {
        assert_eq!(&new.source_volume_id, old_id);
        assert_ne!(&new.volume_id, old_id, "a restore makes new volumes");
        let file = VolumeFile::open(&new.path).unwrap();
        let header = file.header().clone();
        assert_eq!(header.volume_id, new.volume_id);
        assert_eq!(header.encryption_context["keyward:cluster"], RESTORED);
        assert_eq!(header.encryption_context["keyward:class"], new.class);
        let volume = open_volume(&kms, &new.path, &header).await;
        assert!(contents(&volume) == *old_bytes, "volume {old_id} restored");
    }
    assert_eq!(restored.volumes[0].name, "engine-0");
    assert_eq!(restored.volumes[1].class, "search-disk");

    // The verification scan sees the backup's parts and manifest, and the
    // restored disks, all under the key and bound to their cluster and class.
    let objects = cluster.dir.path().join("objects");
    let backup_scan = scan_with_object_decrypts(
        &kms,
        backups.client(),
        &ScanRequest {
            key_arn: cluster.key_arn.clone(),
            cluster_id: CLUSTER.into(),
            volumes: Vec::new(),
            object_dirs: vec![(StorageClass::Backups, objects.join(CLUSTER).join("backups"))],
            sampled_sectors: 1,
            sampled_objects: 3,
        },
    )
    .await
    .unwrap();
    assert!(backup_scan.all_encrypted(), "{backup_scan:?}");
    let report = backup_scan.class(StorageClass::Backups).unwrap();
    assert_eq!(report.objects, 8, "seven parts and the manifest");
    assert_eq!(report.objects_decrypted, 3);
    let restored_scan = scan(
        &kms,
        &ScanRequest {
            key_arn: cluster.key_arn.clone(),
            cluster_id: RESTORED.into(),
            volumes: vec![
                (StorageClass::EngineDisk, restored.volumes[0].path.clone()),
                (StorageClass::SearchDisk, restored.volumes[1].path.clone()),
            ],
            object_dirs: vec![(
                StorageClass::Documents,
                objects.join(RESTORED).join("documents"),
            )],
            sampled_sectors: 4,
            sampled_objects: 0,
        },
    )
    .await
    .unwrap();
    assert!(restored_scan.all_encrypted(), "{restored_scan:?}");
    for (key, body) in &documents {
        assert_eq!(&target_docs.get_bytes(key).await.unwrap(), body, "{key}");
    }
    assert_eq!(
        keys(&target_docs.list("").await.unwrap()),
        [".keyward/store", "contracts/a.pdf", "notes.txt", "zero"]
    );

    assert_eq!(
        target_docs.get_bytes(".keyward/store").await.unwrap(),
        b"target marker"
    );
    // Restoring again over the same documents is refused, and makes nothing.
    let before = files_in(&cluster.volumes_dir(RESTORED));
    let again = restore_backup(
        &backups,
        &manifest.backup_id,
        cluster.target(&kms, &target_docs),
        &no_progress,
    )
    .await;
    assert!(matches!(again, Err(BackupError::Conflict(_))), "{again:?}");
    assert_eq!(files_in(&cluster.volumes_dir(RESTORED)), before);

    delete_backup(&backups, &manifest.backup_id).await.unwrap();
    assert!(list_backups(&backups).await.unwrap().is_empty());
    assert!(backups.list("").await.unwrap().is_empty());
}

/// The same backup and restore with the backup store in an S3 bucket (the
/// real s3s-fs server on loopback): parts go up as single PUTs and multipart
/// uploads, the manifest last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_in_an_s3_bucket_restores() {
    let cluster = Cluster::start().await;
    let s3 = crate::s3::S3Server::start().await;
    let (volumes, documents) = populate(&cluster).await;
    let originals: Vec<Vec<u8>> = volumes.iter().map(|v| contents(&v.volume)).collect();
    let backups = crate::s3::s3_store(
        &s3.config(),
        cluster.kms.clone(),
        &cluster.key_arn,
        CLUSTER,
        ObjectClass::Backups,
    );
    let docs = cluster.store(CLUSTER, ObjectClass::Documents);
    let manifest = create_backup(
        &backups,
        BackupRequest {
            volumes,
            documents: Some(&docs),
            exclude_documents: Vec::new(),
            part_size: 6 << 20, // one part: a multipart upload of two S3 parts
        },
        &no_progress,
    )
    .await
    .unwrap();
    assert_eq!(manifest.parts.len(), 2);
    let listed = list_backups(&backups).await.unwrap();
    assert_eq!(listed.len(), 1);
    let kms = AwsKms::new(cluster.kms.clone());
    let target_docs = cluster.store(RESTORED, ObjectClass::Documents);
    let restored = restore_backup(
        &backups,
        &manifest.backup_id,
        cluster.target(&kms, &target_docs),
        &no_progress,
    )
    .await
    .unwrap();
    for (new, old) in restored.volumes.iter().zip(&originals) {
        let header = VolumeFile::open(&new.path).unwrap().header().clone();
        assert!(contents(&open_volume(&kms, &new.path, &header).await) == *old);
    }
    for (key, body) in &documents {
        assert_eq!(&target_docs.get_bytes(key).await.unwrap(), body, "{key}");
    }
}

/// A writer rewrites the whole volume over and over, each time with one value
/// in one write; the backup taken meanwhile must hold one value throughout
/// (writes are blocked while the copy is taken, so no copy mixes two writes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volume_written_during_its_backup_is_copied_at_one_point_in_time() {
    let cluster = Cluster::start().await;
    let size = 8u64 << 20;
    let volume = cluster.new_volume("engine-disk", size).await;
    volume.write_zeroes(0, size, false).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (volume, stop) = (volume.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut round = 0u8;
            let mut data = vec![0u8; size as usize];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                round = round.wrapping_add(1).max(1);
                data.fill(round);
                volume.write_at(0, &data, false).unwrap();
            }
            round
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    let backups = cluster.store(CLUSTER, ObjectClass::Backups);
    let manifest = create_backup(
        &backups,
        BackupRequest {
            volumes: vec![BackupVolume {
                name: "engine-0".into(),
                class: "engine-disk".into(),
                volume: volume.clone(),
            }],
            documents: None,
            exclude_documents: Vec::new(),
            part_size: 1 << 20,
        },
        &no_progress,
    )
    .await
    .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rounds = writer.join().unwrap();
    assert!(rounds > 1, "the writer kept writing");

    let kms = AwsKms::new(cluster.kms.clone());
    let target_docs = cluster.store(RESTORED, ObjectClass::Documents);
    let restored = restore_backup(
        &backups,
        &manifest.backup_id,
        cluster.target(&kms, &target_docs),
        &no_progress,
    )
    .await
    .unwrap();
    let path = &restored.volumes[0].path;
    let header = VolumeFile::open(path).unwrap().header().clone();
    let copy = contents(&open_volume(&kms, path, &header).await);
    let first = copy[0];
    assert!(first != 0, "the copy was taken after the first write");
    assert!(
        copy.iter().all(|&b| b == first),
        "the copy mixes writes: a torn backup"
    );
}

/// Writes a manifest through the backup store (with the key, as only a
/// holder of it can) and expects the restore to refuse it with `check`.
async fn refused(
    cluster: &Cluster,
    backups: &EncryptedStore,
    manifest: &Manifest,
    check: impl Fn(&BackupError) -> bool,
) {
    backups
        .put_bytes(
            &manifest_name(&manifest.backup_id),
            &serde_json::to_vec(manifest).unwrap(),
        )
        .await
        .unwrap();
    let kms = AwsKms::new(cluster.kms.clone());
    let target_docs = cluster.store(RESTORED, ObjectClass::Documents);
    let result = restore_backup(
        backups,
        &manifest.backup_id,
        cluster.target(&kms, &target_docs),
        &no_progress,
    )
    .await;
    match result {
        Err(error) => {
            assert!(check(&error), "unexpected error: {error}");
            eprintln!("refused: {error}");
        }
        Ok(_) => panic!("a lying manifest was restored"),
    }
    assert!(
        files_in(&cluster.volumes_dir(RESTORED)).is_empty(),
        "a refused restore leaves no volume"
    );
    assert!(
        target_docs.list("").await.unwrap().is_empty(),
        "a refused restore leaves no document"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_that_lie_are_refused_and_nothing_is_made() {
    let cluster = Cluster::start().await;
    let (volumes, _) = populate(&cluster).await;
    let backups = cluster.store(CLUSTER, ObjectClass::Backups);
    let docs = cluster.store(CLUSTER, ObjectClass::Documents);
    let request = |volumes| BackupRequest {
        volumes,
        documents: Some(&docs),
        exclude_documents: Vec::new(),
        part_size: 1 << 20,
    };
    let honest = create_backup(&backups, request(volumes), &no_progress)
        .await
        .unwrap();
    let other = create_backup(&backups, request(Vec::new()), &no_progress)
        .await
        .unwrap();
    let id = honest.backup_id.clone();
    let inconsistent = |e: &BackupError| matches!(e, BackupError::InconsistentManifest { .. });
    let mismatch = |e: &BackupError| matches!(e, BackupError::PartMismatch { .. });

    // A part's hash that is not its content: caught when the part streams
    // through, after volumes were already being written — all removed again.
    let mut lie = honest.clone();
    lie.parts[5].sha256 = "ab".repeat(32);
    refused(&cluster, &backups, &lie, mismatch).await;
    let mut lie = honest.clone();
    lie.parts[0].sha256 = "00".repeat(32);
    refused(&cluster, &backups, &lie, mismatch).await;

    // Sizes that do not add up, or a part's size that is not its content.
    let mut lie = honest.clone();
    lie.parts[2].size -= 1;
    refused(&cluster, &backups, &lie, inconsistent).await;
    let mut lie = honest.clone();
    lie.total_bytes += 4096;
    refused(&cluster, &backups, &lie, inconsistent).await;
    // A missing part.
    let mut lie = honest.clone();
    lie.parts.pop();
    refused(&cluster, &backups, &lie, inconsistent).await;

    // A part of another backup, named as such.
    let mut lie = honest.clone();
    lie.parts[1].name = other.parts[0].name.clone();
    refused(&cluster, &backups, &lie, |e| {
        inconsistent(e) && e.to_string().contains("another backup")
    })
    .await;

    // Put back the honest manifest: nothing above changed a part.
    backups
        .put_bytes(&manifest_name(&id), &serde_json::to_vec(&honest).unwrap())
        .await
        .unwrap();
    assert_eq!(read_manifest(&backups, &id).await.unwrap(), honest);

    // Another backup's part copied under this backup's name: its encryption
    // context names the other object, so it does not authenticate.
    let root = cluster
        .dir
        .path()
        .join("objects")
        .join(CLUSTER)
        .join("backups");
    let victim = root.join(&honest.parts[6].name);
    let saved = std::fs::read(&victim).unwrap();
    std::fs::copy(root.join(&other.parts[0].name), &victim).unwrap();
    refused(&cluster, &backups, &honest, mismatch).await;
    std::fs::write(&victim, &saved).unwrap();

    // An extra part the manifest does not list.
    std::fs::copy(&victim, root.join(format!("{id}/part-000099"))).unwrap();
    refused(&cluster, &backups, &honest, inconsistent).await;
    std::fs::remove_file(root.join(format!("{id}/part-000099"))).unwrap();

    // A manifest that is not a manifest, and one of a future version.
    backups
        .put_bytes(&manifest_name(&id), b"{\"format\": \"keyward-backup\"}")
        .await
        .unwrap();
    let kms = AwsKms::new(cluster.kms.clone());
    let target_docs = cluster.store(RESTORED, ObjectClass::Documents);
    let result = restore_backup(
        &backups,
        &id,
        cluster.target(&kms, &target_docs),
        &no_progress,
    )
    .await;
    assert!(matches!(
        result,
        Err(BackupError::InconsistentManifest { .. })
    ));
    let mut future = honest.clone();
    future.version = 2;
    refused(&cluster, &backups, &future, |e| {
        matches!(e, BackupError::UnsupportedVersion { version: 2, .. })
    })
    .await;

    // With the honest manifest back, everything restores.
    backups
        .put_bytes(&manifest_name(&id), &serde_json::to_vec(&honest).unwrap())
        .await
        .unwrap();
    restore_backup(
        &backups,
        &id,
        cluster.target(&kms, &target_docs),
        &no_progress,
    )
    .await
    .unwrap();

    // Unknown ids are refused plainly.
    let missing = restore_backup(
        &backups,
        "bk-0000000000000-00000000",
        cluster.target(&kms, &target_docs),
        &no_progress,
    )
    .await;
    assert!(matches!(missing, Err(BackupError::NotFound { .. })));
    let bad = read_manifest(&backups, "../x").await;
    assert!(matches!(bad, Err(BackupError::InvalidRequest(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_backup_leaves_nothing_listed() {
    let cluster = Cluster::start().await;
    let (volumes, _) = populate(&cluster).await;
    let backups = cluster.store(CLUSTER, ObjectClass::Backups);
    // The second disk loses its key: the backup fails after the first disk's parts.
    volumes[1].volume.detach();
    let result = create_backup(
        &backups,
        BackupRequest {
            volumes,
            documents: None,
            exclude_documents: Vec::new(),
            part_size: 1 << 20,
        },
        &no_progress,
    )
    .await;
    assert!(
        matches!(
            result,
            Err(BackupError::Volume(keyward_storage::Error::Detached { .. }))
        ),
        "{result:?}"
    );
    assert!(list_backups(&backups).await.unwrap().is_empty());
    assert!(list_incomplete(&backups).await.unwrap().is_empty());
    assert!(
        backups.list("").await.unwrap().is_empty(),
        "its parts were removed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_killed_mid_way_is_never_listed_and_earlier_ones_restore() {
    let cluster = Cluster::start().await;
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "backups::crash_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, cluster.dir.path())
        .env("KEYWARD_CHILD_ENDPOINT", cluster.server.endpoint())
        .env("KEYWARD_CHILD_ACCESS", cluster.server.access_key_id())
        .env("KEYWARD_CHILD_SECRET", cluster.server.secret_access_key())
        .env("KEYWARD_CHILD_KEY", &cluster.key_arn)
        .env("KEYWARD_CHILD_REGION", cluster.server.region())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut spawned = command.spawn().unwrap();
    let stdout = spawned.stdout.take().unwrap();
    let mut child = KillOnDrop(spawned);
    let acked = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            // libtest may print "test … " before the child's output on the same line.
            .find_map(|line| {
                line.split_once("BACKUP-ACKED ")
                    .map(|(_, id)| id.trim().to_owned())
            })
    })
    .await
    .unwrap()
    .expect("the child acknowledged its first backup");

    // Wait until the second backup has stored parts, then SIGKILL.
    let backups = cluster.store(CLUSTER, ObjectClass::Backups);
    let deadline = Instant::now() + Duration::from_secs(60);
    let killed = loop {
        let incomplete = list_incomplete(&backups).await.unwrap();
        if let Some(id) = incomplete.first() {
            if backups.list(&format!("{id}/")).await.unwrap().len() >= 2 {
                break id.clone();
            }
        }
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "the child ended before it was killed"
        );
        assert!(
            Instant::now() < deadline,
            "the second backup never got going"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    child.0.kill().unwrap();
    assert!(!child.0.wait().unwrap().success());

    let listed = list_backups(&backups).await.unwrap();
    assert_eq!(listed.len(), 1, "only the acknowledged backup is listed");
    assert_eq!(listed[0].backup_id, acked);
    assert_eq!(
        list_incomplete(&backups).await.unwrap(),
        std::slice::from_ref(&killed)
    );
    let kms = AwsKms::new(cluster.kms.clone());
    let target_docs = cluster.store(RESTORED, ObjectClass::Documents);
    let result = restore_backup(
        &backups,
        &killed,
        cluster.target(&kms, &target_docs),
        &no_progress,
    )
    .await;
    assert!(
        matches!(result, Err(BackupError::Incomplete { .. })),
        "{result:?}"
    );
    let restored = restore_backup(
        &backups,
        &acked,
        cluster.target(&kms, &target_docs),
        &no_progress,
    )
    .await
    .unwrap();
    let volume = &restored.volumes[0];
    let header = VolumeFile::open(&volume.path).unwrap().header().clone();
    let bytes = contents(&open_volume(&kms, &volume.path, &header).await);
    assert_eq!(&bytes[..4096], &pattern(4096, 7)[..]);
    assert_eq!(
        target_docs.get_bytes("acked.txt").await.unwrap(),
        b"in the first backup"
    );
    // The unfinished one can be cleaned up.
    delete_backup(&backups, &killed).await.unwrap();
    assert!(list_incomplete(&backups).await.unwrap().is_empty());
}

/// The child of the crash test, run by it in a process of its own (ignored in a normal
/// run; run alone it fails, as it has nothing to do).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process: its parent test runs it"]
async fn crash_child() {
    let root = std::env::var_os(CHILD_ENV).expect("run by its parent test, which sets CHILD_ENV");
    let root = PathBuf::from(root);
    let var = |name| std::env::var(name).unwrap();
    let credentials = aws_credential_types::Credentials::from_keys(
        var("KEYWARD_CHILD_ACCESS"),
        var("KEYWARD_CHILD_SECRET"),
        None,
    );
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(var("KEYWARD_CHILD_REGION")))
        .endpoint_url(var("KEYWARD_CHILD_ENDPOINT"))
        .credentials_provider(credentials)
        .load()
        .await;
    let kms = aws_sdk_kms::Client::new(&config);
    let key = var("KEYWARD_CHILD_KEY");
    let volume = new_volume(
        &kms,
        &key,
        &root.join("volumes").join(CLUSTER),
        "engine-disk",
        64 << 20,
    )
    .await;
    volume.write_at(0, &pattern(4096, 7), true).unwrap();
    let docs = open_store(&root, kms.clone(), &key, CLUSTER, ObjectClass::Documents);
    docs.put_bytes("acked.txt", b"in the first backup")
        .await
        .unwrap();
    let backups = open_store(&root, kms, &key, CLUSTER, ObjectClass::Backups);
    let request = || BackupRequest {
        volumes: vec![BackupVolume {
            name: "engine-0".into(),
            class: "engine-disk".into(),
            volume: volume.clone(),
        }],
        documents: Some(&docs),
        exclude_documents: Vec::new(),
        part_size: 1 << 20,
    };
    let first = create_backup(&backups, request(), &no_progress)
        .await
        .unwrap();
    println!("BACKUP-ACKED {}", first.backup_id);
    // The second backup is paced by its progress callback (a few MiB per 20 ms),
    // far slower than the parent's polling, so the kill lands mid-way.
    let slow = |_: Progress| std::thread::sleep(Duration::from_millis(20));
    create_backup(&backups, request(), &slow).await.unwrap();
    panic!("the second backup finished before the parent killed the child");
}
