//! Encrypted object stores on S3: a real S3 server (s3s-fs, objects as files,
//! SigV4 checked) started in-process on 127.0.0.1:0, reached through
//! `object_store`'s S3 client over HTTP, path-style. Round trips, metadata,
//! objects moved to another name, a large streamed object in bounded memory
//! (in a child process), and a writer killed mid multipart upload.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use keyward_envelope::{Client, Config, KmsKeyring};
use keyward_storage::objects::{EncryptedStore, ObjectClass, ObjectError, S3Config, S3Credentials};
use object_store::ObjectStoreExt;
use zeroize::Zeroizing;

use crate::objects::{keys, pattern, Env, KillOnDrop};

const ACCESS: &str = "AKIAS3TESTKEYWARD000";
const SECRET: &str = "s3-secret-of-the-loopback-test-server";
const BUCKET: &str = "keyward-objects";

/// An S3 server over a directory, serving until the runtime ends.
pub(crate) struct S3Server {
    pub(crate) root: tempfile::TempDir,
    pub(crate) endpoint: String,
}

impl S3Server {
    pub(crate) async fn start() -> S3Server {
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

    pub(crate) fn config(&self) -> S3Config {
        s3_config(&self.endpoint)
    }

    /// The file the server keeps an object in.
    fn file_of(&self, key: &str) -> PathBuf {
        self.root.path().join(BUCKET).join(key)
    }
}

fn s3_config(endpoint: &str) -> S3Config {
    S3Config {
        endpoint: Some(endpoint.to_owned()),
        region: "us-east-1".into(),
        bucket: BUCKET.into(),
        credentials: Some(S3Credentials {
            access_key_id: ACCESS.into(),
            secret_access_key: Zeroizing::new(SECRET.into()),
            session_token: None,
        }),
    }
}

pub(crate) fn s3_store(
    config: &S3Config,
    kms: aws_sdk_kms::Client,
    key_arn: &str,
    cluster: &str,
    class: ObjectClass,
) -> EncryptedStore {
    let client = Client::new(KmsKeyring::new(kms, key_arn), Config::default()).unwrap();
    EncryptedStore::s3(config, cluster, class, Arc::new(client)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_put_get_list_head_delete_round_trip() {
    let env = Env::start().await;
    let s3 = S3Server::start().await;
    let store = s3_store(
        &s3.config(),
        env.kms.clone(),
        &env.key_arn,
        "c1",
        ObjectClass::Documents,
    );
    let small = b"a small document".to_vec();
    let large = pattern(13 << 20, 3); // three multipart parts
    store.put_bytes("notes/small.txt", &small).await.unwrap();
    let written = store
        .put_reader("scans/large.bin", &mut large.as_slice())
        .await
        .unwrap();
    assert_eq!(written, large.len() as u64);

    assert_eq!(store.get_bytes("notes/small.txt").await.unwrap(), small);
    assert!(store.get_bytes("scans/large.bin").await.unwrap() == large);
    assert_eq!(
        keys(&store.list("").await.unwrap()),
        ["notes/small.txt", "scans/large.bin"]
    );
    assert_eq!(keys(&store.list("sc").await.unwrap()), ["scans/large.bin"]);

    let info = store.head("scans/large.bin").await.unwrap();
    assert_eq!(info.kms_key_arns, std::slice::from_ref(&env.key_arn));
    assert!(info.context_matches);
    assert!(info.size > large.len() as u64);

    // What the server stores is the ESDK message, not the plaintext.
    let raw = std::fs::read(s3.file_of("c1/documents/scans/large.bin")).unwrap();
    assert_eq!(raw[0], 0x02, "an ESDK v2 message");
    assert!(!raw.windows(64).any(|w| w == &large[4096..4160]));

    store.delete("notes/small.txt").await.unwrap();
    store.delete("notes/small.txt").await.unwrap(); // as on S3: no error
    assert!(matches!(
        store.get_bytes("notes/small.txt").await,
        Err(ObjectError::NotFound { .. })
    ));
    assert!(matches!(
        store.head("notes/small.txt").await,
        Err(ObjectError::NotFound { .. })
    ));
    assert_eq!(keys(&store.list("").await.unwrap()), ["scans/large.bin"]);

    // Wrong credentials are the server's refusal, not an empty listing.
    let mut bad = s3.config();
    bad.credentials.as_mut().unwrap().secret_access_key = Zeroizing::new("wrong".into());
    let refused = s3_store(
        &bad,
        env.kms.clone(),
        &env.key_arn,
        "c1",
        ObjectClass::Documents,
    );
    assert!(matches!(refused.list("").await, Err(ObjectError::Store(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_objects_moved_to_another_cluster_class_or_name_are_refused() {
    let env = Env::start().await;
    let s3 = S3Server::start().await;
    let config = s3.config();
    let docs = s3_store(
        &config,
        env.kms.clone(),
        &env.key_arn,
        "c1",
        ObjectClass::Documents,
    );
    docs.put_bytes("contract.pdf", b"signed").await.unwrap();
    let raw = std::fs::read(s3.file_of("c1/documents/contract.pdf")).unwrap();
    let backend = docs.backend().clone();
    for target in [
        "c2/documents/contract.pdf",
        "c1/backups/contract.pdf",
        "c1/documents/other.pdf",
    ] {
        backend
            .put(&object_store::path::Path::from(target), raw.clone().into())
            .await
            .unwrap();
    }
    let other_cluster = s3_store(
        &config,
        env.kms.clone(),
        &env.key_arn,
        "c2",
        ObjectClass::Documents,
    );
    let backups = s3_store(
        &config,
        env.kms.clone(),
        &env.key_arn,
        "c1",
        ObjectClass::Backups,
    );
    for (store, key) in [
        (&other_cluster, "contract.pdf"),
        (&backups, "contract.pdf"),
        (&docs, "other.pdf"),
    ] {
        assert!(
            matches!(
                store.get_bytes(key).await,
                Err(ObjectError::Authentication { .. })
            ),
            "{}/{key}",
            store.cluster()
        );
        assert!(!store.head(key).await.unwrap().context_matches);
    }
    assert_eq!(docs.get_bytes("contract.pdf").await.unwrap(), b"signed");
}

const MEMORY_CHILD_ENV: &str = "KEYWARD_S3_MEMORY_CHILD";
const CRASH_CHILD_ENV: &str = "KEYWARD_S3_CRASH_CHILD";
const LARGE: u64 = 192 << 20;

fn child(test: &str, env: &Env, s3: &S3Server, marker: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            test,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(marker, &s3.endpoint)
        .env("KEYWARD_CHILD_ENDPOINT", env._server.endpoint())
        .env("KEYWARD_CHILD_ACCESS", env._server.access_key_id())
        .env("KEYWARD_CHILD_SECRET", env._server.secret_access_key())
        .env("KEYWARD_CHILD_KEY", &env.key_arn)
        .env("KEYWARD_CHILD_REGION", env._server.region());
    command
}

async fn child_s3_store(endpoint: &str) -> EncryptedStore {
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
    s3_store(
        &s3_config(endpoint),
        aws_sdk_kms::Client::new(&config),
        &var("KEYWARD_CHILD_KEY"),
        "c1",
        ObjectClass::Documents,
    )
}

/// A 192 MiB object streamed to S3 and back in a fresh process whose peak
/// resident memory (`VmHWM`) stays far below the object's size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_large_object_streams_in_bounded_memory() {
    let env = Env::start().await;
    let s3 = S3Server::start().await;
    let mut command = child("s3::memory_child", &env, &s3, MEMORY_CHILD_ENV);
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let peak_kib: u64 = stdout
        .split_whitespace()
        .skip_while(|w| *w != "PEAK-KIB")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no peak reported: {stdout}"));
    eprintln!(
        "peak resident memory of a {} MiB S3 put and get: {peak_kib} KiB",
        LARGE >> 20
    );
    assert!(
        peak_kib < 96 << 10,
        "peak resident memory {peak_kib} KiB for a {LARGE}-byte object"
    );
    // The server holds the whole message.
    let stored = std::fs::metadata(s3.file_of("c1/documents/large.bin")).unwrap();
    assert!(stored.len() > LARGE);
}

/// The child of the memory test, run by it in a process of its own (ignored in a normal
/// run; run alone it fails, as it has nothing to do).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process: its parent test runs it"]
async fn memory_child() {
    let endpoint = std::env::var(MEMORY_CHILD_ENV)
        .expect("run by its parent test, which sets MEMORY_CHILD_ENV");
    use tokio::io::AsyncReadExt;
    let store = child_s3_store(&endpoint).await;
    let mut source = tokio::io::repeat(0x5a).take(LARGE);
    assert_eq!(
        store.put_reader("large.bin", &mut source).await.unwrap(),
        LARGE
    );
    let mut sink = tokio::io::sink();
    assert_eq!(store.get_to("large.bin", &mut sink).await.unwrap(), LARGE);
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let peak = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB");
    println!("PEAK-KIB {peak}");
}

/// Files the S3 server keeps for multipart uploads in progress.
fn upload_files(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(".upload_id-") && n.contains(".part-"))
            {
                found.push(path);
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_writer_killed_mid_upload_leaves_no_visible_object() {
    let env = Env::start().await;
    let s3 = S3Server::start().await;
    let mut command = child("s3::crash_child", &env, &s3, CRASH_CHILD_ENV);
    command.stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut spawned = command.spawn().unwrap();
    let stdout = spawned.stdout.take().unwrap();
    let mut child = KillOnDrop(spawned);
    let acked = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|line| line.contains("OBJECT-ACKED"))
    });
    assert!(acked.await.unwrap(), "the child acknowledged its first put");
    // Wait until the server holds two uploaded parts of the large object, then SIGKILL.
    let deadline = Instant::now() + Duration::from_secs(60);
    while upload_files(s3.root.path()).len() < 2 {
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "the child ended before it was killed"
        );
        assert!(
            Instant::now() < deadline,
            "the large upload never got going"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.0.kill().unwrap();
    assert!(!child.0.wait().unwrap().success());

    let store = s3_store(
        &s3.config(),
        env.kms.clone(),
        &env.key_arn,
        "c1",
        ObjectClass::Documents,
    );
    assert_eq!(keys(&store.list("").await.unwrap()), ["acked.txt"]);
    assert!(matches!(
        store.get_bytes("big.bin").await,
        Err(ObjectError::NotFound { .. })
    ));
    assert_eq!(
        store.get_bytes("acked.txt").await.unwrap(),
        b"acknowledged before the crash"
    );
    assert!(!s3.file_of("c1/documents/big.bin").exists());
}

/// The child of the crash test, run by it in a process of its own (ignored in a normal
/// run; run alone it fails, as it has nothing to do).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process: its parent test runs it"]
async fn crash_child() {
    let endpoint =
        std::env::var(CRASH_CHILD_ENV).expect("run by its parent test, which sets CRASH_CHILD_ENV");
    let store = child_s3_store(&endpoint).await;
    store
        .put_bytes("acked.txt", b"acknowledged before the crash")
        .await
        .unwrap();
    println!("OBJECT-ACKED");
    // A paced source (about 128 MiB/s, 4 GiB in all): far more than the parent
    // lets through before the kill.
    let (mut source, mut sink) = tokio::io::duplex(256 << 10);
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let chunk = vec![0xcd; 256 << 10];
        for _ in 0..(4 << 30) / chunk.len() {
            sink.write_all(&chunk).await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    store.put_reader("big.bin", &mut source).await.unwrap();
    panic!("the large put finished before the parent killed the child");
}
