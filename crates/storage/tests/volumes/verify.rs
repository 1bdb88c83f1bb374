//! The verification scan against the real embedded KMS (`DevServer` on
//! loopback, driven through aws-sdk-kms): volumes created with
//! `GenerateDataKeyWithoutPlaintext` and unwrapped by the scan with `Decrypt`,
//! objects written as ESDK v2 messages by the envelope crate's KMS keyring.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use keyward_envelope::{Client, Config, KmsErrorCode, KmsKeyring};
use keyward_storage::verify::scan_with_object_decrypts;
use keyward_storage::verify::{CLASS_CONTEXT_KEY, CLUSTER_CONTEXT_KEY, OBJECT_CONTEXT_KEY};
use keyward_storage::{
    create_volume, scan, AwsKms, Error, NewVolume, Reason, ScanReport, ScanRequest, StorageClass,
};

const CLUSTER: &str = "c-7";

struct Cluster {
    _kms: keyward_kms_server::DevServer,
    client: aws_sdk_kms::Client,
    key_arn: String,
    dir: tempfile::TempDir,
    request: ScanRequest,
}

fn context(cluster: &str, class: StorageClass) -> BTreeMap<String, String> {
    [
        (CLUSTER_CONTEXT_KEY.to_string(), cluster.to_string()),
        (CLASS_CONTEXT_KEY.to_string(), class.as_str().to_string()),
    ]
    .into()
}

async fn new_key(client: &aws_sdk_kms::Client) -> String {
    client
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .arn
        .unwrap()
}

async fn new_volume(
    client: &aws_sdk_kms::Client,
    key_arn: &str,
    path: &Path,
    context: BTreeMap<String, String>,
) {
    create_volume(
        &AwsKms::new(client.clone()),
        path,
        NewVolume {
            volume_id: None,
            size: 1 << 20,
            key_id: key_arn.to_string(),
            encryption_context: context,
        },
    )
    .await
    .unwrap();
}

/// Writes `<dir>/<object>` as the objects module does: an ESDK message whose
/// context is `context` plus the object's key.
async fn put_object(
    client: &aws_sdk_kms::Client,
    key_arn: &str,
    dir: &Path,
    object: &str,
    context: &BTreeMap<String, String>,
    plaintext: &[u8],
) {
    let mut context = context.clone();
    context.insert(OBJECT_CONTEXT_KEY.to_string(), object.to_string());
    let esdk = Client::new(KmsKeyring::new(client.clone(), key_arn), Config::default()).unwrap();
    let message = esdk.encrypt_to_vec(plaintext, &context).await.unwrap();
    let path = dir.join(object);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, message).unwrap();
}

/// A clean cluster: one volume per disk class, two documents (one nested), one backup.
async fn clean_cluster() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let kms = keyward_kms_server::DevServer::start(&dir.path().join("kms"));
    let client = aws_sdk_kms::Client::new(&kms.sdk_config().await);
    let key_arn = new_key(&client).await;
    let root = dir.path();
    let mut volumes = Vec::new();
    for (class, file) in [
        (StorageClass::EngineDisk, "engine-0.img"),
        (StorageClass::SearchDisk, "search-0.img"),
    ] {
        let path = root.join("disks").join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        new_volume(&client, &key_arn, &path, context(CLUSTER, class)).await;
        volumes.push((class, path));
    }
    let documents = root.join("documents");
    let backups = root.join("backups");
    let doc_context = context(CLUSTER, StorageClass::Documents);
    put_object(
        &client,
        &key_arn,
        &documents,
        "a.json",
        &doc_context,
        b"{\"a\":1}",
    )
    .await;
    put_object(
        &client,
        &key_arn,
        &documents,
        "sub/b.json",
        &doc_context,
        b"{\"b\":2}",
    )
    .await;
    put_object(
        &client,
        &key_arn,
        &backups,
        "b-1/manifest",
        &context(CLUSTER, StorageClass::Backups),
        b"manifest",
    )
    .await;
    let request = ScanRequest {
        key_arn: key_arn.clone(),
        cluster_id: CLUSTER.to_string(),
        volumes,
        object_dirs: vec![
            (StorageClass::Documents, documents),
            (StorageClass::Backups, backups),
        ],
        sampled_sectors: 4,
        sampled_objects: 2,
    };
    Cluster {
        _kms: kms,
        client,
        key_arn,
        dir,
        request,
    }
}

/// The scanner's ESDK client: decrypts only under the cluster's key.
fn esdk(cluster: &Cluster) -> Client<KmsKeyring> {
    Client::new(
        KmsKeyring::new(cluster.client.clone(), &cluster.key_arn),
        Config::default(),
    )
    .unwrap()
}

fn reasons(report: &ScanReport) -> BTreeMap<String, Reason> {
    report
        .offenders()
        .map(|o| (o.name.clone(), o.reason.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_cluster_is_all_encrypted_under_its_key() {
    let cluster = clean_cluster().await;
    let kms = AwsKms::new(cluster.client.clone());
    let report = scan_with_object_decrypts(&kms, &esdk(&cluster), &cluster.request)
        .await
        .unwrap();
    assert!(report.all_encrypted(), "{report:#?}");
    let only_key: BTreeSet<String> = [cluster.key_arn.clone()].into();
    let classes: Vec<_> = report.classes.iter().map(|c| c.class).collect();
    assert_eq!(classes, StorageClass::ALL);
    for class in &report.classes {
        assert!(class.encrypted, "{class:#?}");
        assert_eq!(class.key_arns, only_key, "{class:#?}");
        assert!(class.offenders.is_empty());
    }
    let counts = |c| {
        let r = report.class(c).unwrap();
        (r.volumes, r.objects)
    };
    assert_eq!(counts(StorageClass::Documents), (0, 2));
    assert_eq!(counts(StorageClass::Backups), (0, 1));
    assert_eq!(counts(StorageClass::EngineDisk), (1, 0));
    assert_eq!(counts(StorageClass::SearchDisk), (1, 0));
    let decrypted = |c| report.class(c).unwrap().objects_decrypted;
    assert_eq!(decrypted(StorageClass::Documents), 2);
    assert_eq!(decrypted(StorageClass::Backups), 1);

    // Volumes are vouched for through KMS: once the key is disabled, the scan
    // cannot unwrap them and says so, by name.
    cluster
        .client
        .disable_key()
        .key_id(&cluster.key_arn)
        .send()
        .await
        .unwrap();
    let report = scan(&kms, &cluster.request).await.unwrap();
    let offenders = reasons(&report);
    for volume in ["engine-0.img", "search-0.img"] {
        match &offenders[volume] {
            Reason::KmsRefused { failure } => {
                assert_eq!(failure.code(), Some(&KmsErrorCode::DisabledException))
            }
            other => panic!("{volume}: {other}"),
        }
    }
    // Objects are checked from their headers alone, so they still pass.
    assert!(report.class(StorageClass::Documents).unwrap().encrypted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offenders_are_reported_by_name_with_the_reason() {
    let mut cluster = clean_cluster().await;
    let root = cluster.dir.path().to_owned();
    let client = cluster.client.clone();
    let other_key = new_key(&client).await;
    let documents = root.join("documents");

    // A plaintext file among the documents.
    std::fs::write(
        documents.join("sub/plain.txt"),
        b"customer data in the clear",
    )
    .unwrap();
    // A document whose context names another cluster.
    put_object(
        &client,
        &cluster.key_arn,
        &documents,
        "moved.json",
        &context("c-other", StorageClass::Documents),
        b"{}",
    )
    .await;
    // A document whose context names another class (a backup copied here).
    put_object(
        &client,
        &cluster.key_arn,
        &documents,
        "from-backups.json",
        &context(CLUSTER, StorageClass::Backups),
        b"{}",
    )
    .await;
    // A backup under another key.
    put_object(
        &client,
        &other_key,
        &root.join("backups"),
        "b-2/part-0",
        &context(CLUSTER, StorageClass::Backups),
        b"part",
    )
    .await;
    // A document whose body was changed after writing: its header still
    // passes, only the sampled decrypt (every object is sampled here) finds it.
    put_object(
        &client,
        &cluster.key_arn,
        &documents,
        "sub/flipped.json",
        &context(CLUSTER, StorageClass::Documents),
        b"{\"flipped\":true}",
    )
    .await;
    let mut flipped = std::fs::read(documents.join("sub/flipped.json")).unwrap();
    *flipped.last_mut().unwrap() ^= 1;
    std::fs::write(documents.join("sub/flipped.json"), &flipped).unwrap();
    // A document copied to another name: its context still names the old one.
    std::fs::copy(documents.join("a.json"), documents.join("renamed.json")).unwrap();
    // object_store staging files: an honest half-written and a whole message, and plaintext.
    let whole = std::fs::read(documents.join("a.json")).unwrap();
    std::fs::write(documents.join("c.json#17"), &whole[..20]).unwrap();
    put_object(
        &client,
        &cluster.key_arn,
        &documents,
        "e.json",
        &context(CLUSTER, StorageClass::Documents),
        b"{}",
    )
    .await;
    std::fs::rename(documents.join("e.json"), documents.join("e.json#19")).unwrap();
    std::fs::write(documents.join("d.json#18"), b"plaintext being uploaded").unwrap();

    // An engine disk under another key.
    let foreign_disk = root.join("disks/engine-1.img");
    new_volume(
        &client,
        &other_key,
        &foreign_disk,
        context(CLUSTER, StorageClass::EngineDisk),
    )
    .await;
    // A search disk whose header was edited (its size halved): it parses, the MAC fails.
    let tampered = root.join("disks/search-1.img");
    new_volume(
        &client,
        &cluster.key_arn,
        &tampered,
        context(CLUSTER, StorageClass::SearchDisk),
    )
    .await;
    let mut bytes = std::fs::read(&tampered).unwrap();
    bytes[24..32].copy_from_slice(&(512u64 << 10).to_le_bytes());
    std::fs::write(&tampered, &bytes).unwrap();
    // A plaintext file listed as a disk, and a search disk of another class's context.
    let raw_disk = root.join("disks/raw.img");
    std::fs::write(&raw_disk, vec![0u8; 8192]).unwrap();
    let misfiled = root.join("disks/misfiled.img");
    new_volume(
        &client,
        &cluster.key_arn,
        &misfiled,
        context(CLUSTER, StorageClass::EngineDisk),
    )
    .await;
    cluster.request.volumes.extend([
        (StorageClass::EngineDisk, foreign_disk),
        (StorageClass::SearchDisk, tampered.clone()),
        (StorageClass::SearchDisk, raw_disk),
        (StorageClass::SearchDisk, misfiled),
    ]);

    cluster.request.sampled_objects = 100;
    let report = scan_with_object_decrypts(
        &AwsKms::new(client.clone()),
        &esdk(&cluster),
        &cluster.request,
    )
    .await
    .unwrap();
    let offenders = reasons(&report);
    let names: BTreeSet<&str> = offenders.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "sub/plain.txt",
            "moved.json",
            "from-backups.json",
            "renamed.json",
            "sub/flipped.json",
            "d.json#18",
            "b-2/part-0",
            "engine-1.img",
            "search-1.img",
            "raw.img",
            "misfiled.img",
        ]
        .into(),
        "{report:#?}"
    );
    assert!(matches!(
        offenders["sub/plain.txt"],
        Reason::NotEncrypted(_)
    ));
    assert!(matches!(offenders["d.json#18"], Reason::NotEncrypted(_)));
    assert!(matches!(offenders["raw.img"], Reason::NotEncrypted(_)));
    match &offenders["moved.json"] {
        Reason::ForeignContext(why) => assert!(why.contains("\"c-other\""), "{why}"),
        other => panic!("{other}"),
    }
    match &offenders["from-backups.json"] {
        Reason::ForeignContext(why) => assert!(why.contains("\"backups\""), "{why}"),
        other => panic!("{other}"),
    }
    assert!(matches!(
        offenders["sub/flipped.json"],
        Reason::DecryptFailed(_)
    ));
    match &offenders["renamed.json"] {
        Reason::ForeignContext(why) => assert!(
            why.contains("keyward:object is \"a.json\", expected \"renamed.json\""),
            "{why}"
        ),
        other => panic!("{other}"),
    }
    match &offenders["misfiled.img"] {
        Reason::ForeignContext(why) => assert!(why.contains("\"engine-disk\""), "{why}"),
        other => panic!("{other}"),
    }
    for name in ["b-2/part-0", "engine-1.img"] {
        assert_eq!(
            offenders[name],
            Reason::ForeignKey {
                seen: vec![other_key.clone()]
            }
        );
    }
    assert_eq!(offenders["search-1.img"], Reason::HeaderMacMismatch);
    // The tampered file was only read.
    assert_eq!(std::fs::read(&tampered).unwrap(), bytes);

    let documents = report.class(StorageClass::Documents).unwrap();
    assert!(!documents.encrypted);
    assert_eq!((documents.objects, documents.staged_uploads), (7, 3));
    // a.json, sub/b.json and sub/flipped.json passed the header checks; two of them decrypt.
    assert_eq!(documents.objects_decrypted, 2);
    let backups = report.class(StorageClass::Backups).unwrap();
    assert_eq!(
        backups.key_arns,
        [cluster.key_arn.clone(), other_key.clone()].into()
    );
    let engine = report.class(StorageClass::EngineDisk).unwrap();
    assert_eq!((engine.volumes, engine.offenders.len()), (2, 1));
    let search = report.class(StorageClass::SearchDisk).unwrap();
    assert_eq!((search.volumes, search.offenders.len()), (4, 3));
    // The clean items of each class are still counted and were not reported.
    assert!(!names.contains("a.json") && !names.contains("engine-0.img"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_request_is_refused_before_anything_is_read() {
    let cluster = clean_cluster().await;
    let kms = AwsKms::new(cluster.client.clone());
    let mut request = cluster.request.clone();
    request
        .volumes
        .push((StorageClass::Documents, PathBuf::from("x.img")));
    let refused = scan(&kms, &request).await.unwrap_err();
    assert!(matches!(refused, Error::InvalidParameter(_)), "{refused}");
    assert!(refused.to_string().contains("documents is an object class"));

    let mut request = cluster.request.clone();
    request.key_arn = "alias/cluster".into();
    let refused = scan(&kms, &request).await.unwrap_err();
    assert!(
        refused.to_string().contains("must be a key ARN"),
        "{refused}"
    );
}
