//! Documents and backups in an S3 bucket (`ObjectsConfig::S3`), as several replicas keep them: a
//! real S3 server (s3s-fs: objects as files, SigV4 checked) in-process on 127.0.0.1:0, reached
//! through the storage crate's S3 backend. The same control-plane code runs as on local files:
//! objects land in the bucket as ESDK ciphertext, read back, verify, and a deleted cluster's
//! objects go (its backups kept until retention ends, then deleted too). A bucket that does not
//! exist stops the control plane at start.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use keyward_control::{ControlPlane, ObjectsConfig};
use keyward_storage::objects::{S3Config, S3Credentials};
use zeroize::Zeroizing;

use crate::harness::{self, org, ready_external_cluster, wait_for};

const ACCESS: &str = "AKIAS3CONTROLTEST001";
const SECRET: &str = "s3-secret-of-the-control-plane-test";
const BUCKET: &str = "keyward-objects";
const DAY: Duration = Duration::from_secs(86_400);

/// An S3 server over a directory (one bucket, [`BUCKET`]), serving until the runtime ends.
struct S3Server {
    root: tempfile::TempDir,
    endpoint: String,
}

impl S3Server {
    async fn start() -> S3Server {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(BUCKET)).unwrap();
        let fs = s3s_fs::FileSystem::new(root.path()).unwrap();
        let mut builder = s3s::service::S3ServiceBuilder::new(fs);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS, SECRET));
        let service = builder.build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let service = service.clone();
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
        });
        S3Server { root, endpoint }
    }

    fn objects(&self, bucket: &str) -> ObjectsConfig {
        ObjectsConfig::S3(S3Config {
            endpoint: Some(self.endpoint.clone()),
            region: "us-east-1".into(),
            bucket: bucket.into(),
            credentials: Some(S3Credentials {
                access_key_id: ACCESS.into(),
                secret_access_key: Zeroizing::new(SECRET.into()),
                session_token: None,
            }),
        })
    }

    /// Every object file under `<cluster>/<class>/` in the bucket.
    fn files(&self, cluster_id: &str, class: &str) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut pending = vec![self.root.path().join(BUCKET).join(cluster_id).join(class)];
        while let Some(dir) = pending.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    pending.push(path);
                } else {
                    out.push(path);
                }
            }
        }
        out.sort();
        out
    }
}

/// The first bytes of an ESDK v2 message: version 2, then the committing suite 0x0478 or 0x0578.
fn is_esdk_message(path: &Path) -> bool {
    let bytes = std::fs::read(path).unwrap();
    bytes.len() > 3 && bytes[0] == 0x02 && matches!((bytes[1], bytes[2]), (0x04 | 0x05, 0x78))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_and_backups_live_in_the_bucket_as_ciphertext_and_go_with_their_cluster() {
    let env = harness::start().await;
    let s3 = S3Server::start().await;
    let plane = env
        .plane_with("plane", |config| config.objects = s3.objects(BUCKET))
        .await;
    let acme = org(&plane, "acme").await;
    let (cluster, key_arn) = ready_external_cluster(&env, &plane, &acme, "prod").await;
    let secret = b"the plaintext that must never reach the bucket";
    plane
        .put_document(&acme.id, &cluster.id, "reports/q1.txt", &secret[..])
        .await
        .unwrap();

    // In the bucket, not under the data directory; every object an ESDK message without the
    // plaintext.
    let documents = s3.files(&cluster.id, "documents");
    assert!(
        documents.iter().any(|p| p.ends_with("reports/q1.txt")),
        "{documents:?}"
    );
    for path in &documents {
        assert!(
            is_esdk_message(path),
            "{} is not ciphertext",
            path.display()
        );
        let bytes = std::fs::read(path).unwrap();
        assert!(!bytes.windows(secret.len()).any(|w| w == secret));
    }
    assert!(!env.dir.path().join("plane/objects").exists());
    assert_eq!(
        harness::read_document(&plane, &acme.id, &cluster.id, "reports/q1.txt").await,
        secret
    );

    let backup = plane.create_backup(&acme.id, &cluster.id).await.unwrap();
    let backups = s3.files(&cluster.id, "backups");
    assert!(!backups.is_empty());
    assert!(backups.iter().all(|p| is_esdk_message(p)), "{backups:?}");
    let listed = plane.list_backups(&acme.id, &cluster.id).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, backup.id);

    // Verification reads the bucket's objects through their stores.
    let verification = plane.verify(&acme.id, &cluster.id).await.unwrap();
    assert!(verification.all_encrypted, "{verification:?}");
    for class in ["documents", "backups"] {
        let c = verification
            .classes
            .iter()
            .find(|c| c.class == class)
            .unwrap_or_else(|| panic!("no {class} in {verification:?}"));
        assert!(c.count > 0 && c.encrypted, "{c:?}");
        assert_eq!(c.key_arn.as_deref(), Some(key_arn.as_str()), "{c:?}");
    }

    // Deleting the cluster deletes its documents; its backups stay for the retention period.
    plane.delete_cluster(&acme.id, &cluster.id).await.unwrap();
    assert!(s3.files(&cluster.id, "documents").is_empty());
    assert_eq!(s3.files(&cluster.id, "backups"), backups);
    let kept = plane.list_retained_backups(&acme.id).await.unwrap();
    assert_eq!(kept.len(), 1, "{kept:?}");

    // Past the retention, the operator deletes them from the bucket too.
    plane.config().clock.advance(31 * DAY);
    wait_for(
        "the kept backups to leave the bucket",
        Duration::from_secs(30),
        || async { s3.files(&cluster.id, "backups").is_empty() },
    )
    .await;
    assert!(plane
        .list_retained_backups(&acme.id)
        .await
        .unwrap()
        .is_empty());
    plane.shutdown().await;
}

#[tokio::test]
async fn a_bucket_that_does_not_exist_stops_the_control_plane_at_start() {
    let env = harness::start().await;
    let s3 = S3Server::start().await;
    let data = env.dir.path().join("plane");
    let mut config = env.config(&data, &format!("sqlite:{}", data.join("c.db").display()));
    config.objects = s3.objects("no-such-bucket");
    let refused = match ControlPlane::open(config).await {
        Ok(_) => panic!("a control plane started on a bucket that does not exist"),
        Err(refused) => refused.to_string(),
    };
    assert!(
        refused.contains("\"no-such-bucket\"") && refused.contains("create the bucket"),
        "{refused}"
    );
    // Nothing was made: the database is not even created.
    assert!(!data.join("c.db").exists());
}
