//! Encrypted object stores on the local filesystem, under a KMS key of the real
//! embedded KMS server (loopback, aws-sdk-kms): round trips, metadata without
//! decryption, objects copied to another cluster, class or name, bad input,
//! readers racing a writer, and a writer killed (SIGKILL) in a large put.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyward_envelope::{Client, Config, KmsKeyring};
use keyward_kms_server::DevServer;
use keyward_storage::objects::{
    EncryptedStore, ObjectClass, ObjectError, CLASS_CONTEXT_KEY, CLUSTER_CONTEXT_KEY,
    OBJECT_CONTEXT_KEY,
};

const CHILD_ENV: &str = "KEYWARD_OBJECTS_CRASH_CHILD";

pub(crate) struct Env {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) _server: DevServer,
    pub(crate) kms: aws_sdk_kms::Client,
    pub(crate) key_arn: String,
}

impl Env {
    pub(crate) async fn start() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let server = DevServer::start(&dir.path().join("kms"));
        let kms = aws_sdk_kms::Client::new(&server.sdk_config().await);
        let key_arn = kms
            .create_key()
            .description("documents and backups")
            .send()
            .await
            .unwrap()
            .key_metadata
            .unwrap()
            .arn
            .unwrap();
        Env {
            dir,
            _server: server,
            kms,
            key_arn,
        }
    }

    pub(crate) fn root(&self) -> PathBuf {
        self.dir.path().join("objects")
    }

    pub(crate) fn store(&self, cluster: &str, class: ObjectClass) -> EncryptedStore {
        store_at(
            &self.root(),
            self.kms.clone(),
            &self.key_arn,
            cluster,
            class,
        )
    }
}

fn store_at(
    root: &Path,
    kms: aws_sdk_kms::Client,
    key_arn: &str,
    cluster: &str,
    class: ObjectClass,
) -> EncryptedStore {
    let client = Client::new(KmsKeyring::new(kms, key_arn), Config::default()).unwrap();
    EncryptedStore::local(root, cluster, class, Arc::new(client)).unwrap()
}

/// A tool from PATH; a missing tool fails the test.
pub(crate) fn tool(name: &str) -> Command {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(name))
                .find(|p| p.is_file())
        })
        .map(Command::new)
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not on PATH: run scripts/test (or put the project venv's bin first)"
            )
        })
}

pub(crate) fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn file_of(env: &Env, cluster: &str, class: &str, key: &str) -> PathBuf {
    env.root().join(cluster).join(class).join(key)
}

pub(crate) fn keys(entries: &[keyward_storage::objects::ObjectEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.key.as_str()).collect()
}

/// Files under `dir` whose names mark an upload in progress (`<name>#<digits>`).
fn staged_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(staged_files(&path));
        } else if path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.split_once('#'))
            .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        {
            found.push(path);
        }
    }
    found
}

#[tokio::test]
async fn put_get_list_head_delete_round_trip() {
    let env = Env::start().await;
    let store = env.store("c1", ObjectClass::Documents);

    let small = b"invoice 42".to_vec();
    store.put_bytes("reports/q4.txt", &small).await.unwrap();
    // Larger than one part: goes through the multipart upload and several frames.
    let large = pattern(12 << 20, 7);
    let written = store
        .put_reader("reports/archive.bin", &mut large.as_slice())
        .await
        .unwrap();
    assert_eq!(written, large.len() as u64);
    store.put_bytes("readme", b"").await.unwrap();

    assert_eq!(store.get_bytes("reports/q4.txt").await.unwrap(), small);
    assert_eq!(store.get_bytes("readme").await.unwrap(), b"");
    let mut streamed = Vec::new();
    let n = store
        .get_to("reports/archive.bin", &mut streamed)
        .await
        .unwrap();
    assert_eq!(n, large.len() as u64);
    assert!(streamed == large, "the large object reads back unchanged");

    // Objects are ciphertext on disk: the plaintext pattern does not appear.
    let raw = std::fs::read(file_of(&env, "c1", "documents", "reports/q4.txt")).unwrap();
    assert_eq!(raw[0], 0x02, "an ESDK v2 message");
    assert!(!raw.windows(small.len()).any(|w| w == small.as_slice()));

    assert_eq!(
        keys(&store.list("").await.unwrap()),
        ["readme", "reports/archive.bin", "reports/q4.txt"]
    );
    assert_eq!(
        keys(&store.list("reports/").await.unwrap()),
        ["reports/archive.bin", "reports/q4.txt"]
    );
    assert_eq!(
        keys(&store.list("re").await.unwrap()),
        keys(&store.list("").await.unwrap())
    );
    assert_eq!(
        keys(&store.list("reports/q").await.unwrap()),
        ["reports/q4.txt"]
    );
    assert!(store.list("nothing/").await.unwrap().is_empty());
    // Another class of the same cluster is a separate namespace.
    assert!(env
        .store("c1", ObjectClass::Backups)
        .list("")
        .await
        .unwrap()
        .is_empty());

    let info = store.head("reports/archive.bin").await.unwrap();
    assert_eq!(info.kms_key_arns, std::slice::from_ref(&env.key_arn));
    assert_eq!(info.context.get(CLUSTER_CONTEXT_KEY).unwrap(), "c1");
    assert_eq!(info.context.get(CLASS_CONTEXT_KEY).unwrap(), "documents");
    assert_eq!(
        info.context.get(OBJECT_CONTEXT_KEY).unwrap(),
        "reports/archive.bin"
    );
    assert!(info.context_matches);
    assert_eq!(info.suite_id, 0x0478);
    let on_disk = std::fs::metadata(file_of(&env, "c1", "documents", "reports/archive.bin"))
        .unwrap()
        .len();
    assert_eq!(info.size, on_disk);
    assert!(on_disk > large.len() as u64);

    // Overwrite replaces.
    store.put_bytes("reports/q4.txt", b"v2").await.unwrap();
    assert_eq!(store.get_bytes("reports/q4.txt").await.unwrap(), b"v2");

    store.delete("reports/q4.txt").await.unwrap();
    assert!(matches!(
        store.get_bytes("reports/q4.txt").await,
        Err(ObjectError::NotFound { .. })
    ));
    assert!(matches!(
        store.head("reports/q4.txt").await,
        Err(ObjectError::NotFound { .. })
    ));
    store.delete("reports/q4.txt").await.unwrap();
    assert_eq!(
        keys(&store.list("").await.unwrap()),
        ["readme", "reports/archive.bin"]
    );
}

#[tokio::test]
async fn an_object_copied_to_another_cluster_class_or_name_does_not_decrypt() {
    let env = Env::start().await;
    let c1 = env.store("c1", ObjectClass::Documents);
    c1.put_bytes("contract.pdf", b"the customer's contract")
        .await
        .unwrap();
    let original = file_of(&env, "c1", "documents", "contract.pdf");

    let copies = [
        ("c2", ObjectClass::Documents, "contract.pdf"),
        ("c1", ObjectClass::Backups, "contract.pdf"),
        ("c1", ObjectClass::Documents, "other.pdf"),
    ];
    for (cluster, class, key) in copies {
        let target = file_of(&env, cluster, class.as_str(), key);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&original, &target).unwrap();
        let store = env.store(cluster, class);
        let error = store.get_bytes(key).await.unwrap_err();
        assert!(
            matches!(error, ObjectError::Authentication { .. }),
            "{cluster}/{class:?}/{key}: {error}"
        );
        assert!(error.to_string().contains("failed authentication"));
        let info = store.head(key).await.unwrap();
        assert!(!info.context_matches, "head shows the foreign context");
        assert_eq!(
            info.context.get(OBJECT_CONTEXT_KEY).unwrap(),
            "contract.pdf"
        );
        // The refused copy is left as it was.
        assert_eq!(
            std::fs::read(&target).unwrap(),
            std::fs::read(&original).unwrap()
        );
    }
    assert_eq!(
        c1.get_bytes("contract.pdf").await.unwrap(),
        b"the customer's contract"
    );

    // The same key under another KMS key's store refuses too (its keyring
    // is configured for its own key only).
    let other_arn = env
        .kms
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .arn
        .unwrap();
    let other = store_at(
        &env.root(),
        env.kms.clone(),
        &other_arn,
        "c1",
        ObjectClass::Documents,
    );
    assert!(matches!(
        other.get_bytes("contract.pdf").await,
        Err(ObjectError::Authentication { .. })
    ));
}

#[tokio::test]
async fn truncated_altered_and_foreign_objects_are_refused_and_nothing_is_overwritten() {
    let env = Env::start().await;
    let store = env.store("c1", ObjectClass::Documents);
    let body = pattern(600_000, 3);
    store.put_bytes("good.bin", &body).await.unwrap();
    let good = std::fs::read(file_of(&env, "c1", "documents", "good.bin")).unwrap();

    let cases: [(&str, Vec<u8>); 5] = [
        ("cut-end.bin", good[..good.len() - 10].to_vec()),
        ("cut-frame.bin", good[..good.len() / 2].to_vec()),
        ("cut-header.bin", good[..40].to_vec()),
        ("plain.txt", b"just some plaintext, not encrypted".to_vec()),
        ("flipped.bin", {
            let mut b = good.clone();
            let at = b.len() - 1000;
            b[at] ^= 0x01;
            b
        }),
    ];
    for (key, bytes) in &cases {
        let path = file_of(&env, "c1", "documents", key);
        std::fs::write(&path, bytes).unwrap();
        let error = store.get_bytes(key).await.unwrap_err();
        match *key {
            "cut-header.bin" | "plain.txt" => {
                assert!(
                    matches!(error, ObjectError::NotEncrypted { .. }),
                    "{key}: {error}"
                );
                assert!(matches!(
                    store.head(key).await,
                    Err(ObjectError::NotEncrypted { .. })
                ));
            }
            _ => assert!(
                matches!(error, ObjectError::Authentication { .. }),
                "{key}: {error}"
            ),
        }
        assert_eq!(
            &std::fs::read(&path).unwrap(),
            bytes,
            "{key} left as it was"
        );
    }

    // Invalid keys are refused before anything is written.
    for bad in ["", "../escape", "a//b", "x#1", "/abs"] {
        assert!(
            matches!(
                store.put_bytes(bad, b"x").await,
                Err(ObjectError::InvalidKey { .. })
            ),
            "{bad:?}"
        );
    }
    assert!(!env.root().join("escape").exists());

    // A put whose input fails midway leaves the previous version in place.
    struct Failing(usize);
    impl tokio::io::AsyncRead for Failing {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            if self.0 == 0 {
                return std::task::Poll::Ready(Err(std::io::Error::other("source broke")));
            }
            let n = self.0.min(buf.remaining()).min(64 << 10);
            buf.put_slice(&vec![0x5a; n]);
            self.0 -= n;
            std::task::Poll::Ready(Ok(()))
        }
    }
    for size in [1000, 9 << 20] {
        let error = store
            .put_reader("good.bin", &mut Failing(size))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("source broke"), "{error}");
        assert_eq!(store.get_bytes("good.bin").await.unwrap(), body);
    }
    assert!(
        staged_files(&env.root()).is_empty(),
        "failed uploads are aborted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_never_see_a_half_written_object() {
    let env = Env::start().await;
    let store = Arc::new(env.store("c1", ObjectClass::Documents));
    let len = 6 << 20;
    store.put_bytes("hot.bin", &vec![0u8; len]).await.unwrap();
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for version in 1..=6u8 {
                let data = vec![version; len];
                store
                    .put_reader("hot.bin", &mut data.as_slice())
                    .await
                    .unwrap();
            }
        })
    };
    let mut reads = 0;
    let mut seen = std::collections::BTreeSet::new();
    while !writer.is_finished() {
        let data = store.get_bytes("hot.bin").await.unwrap();
        assert_eq!(data.len(), len);
        assert!(
            data.iter().all(|b| *b == data[0]),
            "a read mixed two versions"
        );
        seen.insert(data[0]);
        reads += 1;
    }
    writer.await.unwrap();
    assert!(reads > 0);
    assert_eq!(store.get_bytes("hot.bin").await.unwrap(), vec![6u8; len]);
    assert!(staged_files(&env.root()).is_empty());
}

/// Kills the child when the test ends, whatever happens.
pub(crate) struct KillOnDrop(pub(crate) Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_killed_in_a_large_put_leaves_no_visible_partial_object() {
    let env = Env::start().await;
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "objects::crash_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, env.root())
        .env("KEYWARD_CHILD_ENDPOINT", env._server.endpoint())
        .env("KEYWARD_CHILD_ACCESS", env._server.access_key_id())
        .env("KEYWARD_CHILD_SECRET", env._server.secret_access_key())
        .env("KEYWARD_CHILD_KEY", &env.key_arn)
        .env("KEYWARD_CHILD_REGION", env._server.region())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut child = KillOnDrop(child);
    let acked = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|line| line.contains("OBJECT-ACKED"))
    });
    assert!(acked.await.unwrap(), "the child acknowledged its first put");

    // Wait until the large upload has well over a part staged, then SIGKILL.
    let dir = env.root().join("c1").join("documents");
    let deadline = Instant::now() + Duration::from_secs(60);
    let staged = loop {
        let staged: Vec<_> = staged_files(&dir)
            .into_iter()
            .filter(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0) > 12 << 20)
            .collect();
        if !staged.is_empty() {
            break staged;
        }
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "the child ended before it was killed"
        );
        assert!(Instant::now() < deadline, "the large put never got going");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    child.0.kill().unwrap();
    let status = child.0.wait().unwrap();
    assert!(!status.success(), "killed, not finished");

    let store = env.store("c1", ObjectClass::Documents);
    assert_eq!(keys(&store.list("").await.unwrap()), ["acked.txt"]);
    assert!(matches!(
        store.get_bytes("big.bin").await,
        Err(ObjectError::NotFound { .. })
    ));
    assert!(matches!(
        store.head("big.bin").await,
        Err(ObjectError::NotFound { .. })
    ));
    assert_eq!(
        store.get_bytes("acked.txt").await.unwrap(),
        b"acknowledged before the crash"
    );
    // The partial upload is still on disk, under its staging name only.
    assert!(staged[0].exists());
    assert!(!dir.join("big.bin").exists());

    // It is removed once old enough (at start-up: at once), and nothing else is.
    assert_eq!(
        store
            .remove_stale_uploads(Duration::from_secs(3600))
            .unwrap(),
        0,
        "a recent upload may still be live"
    );
    assert_eq!(store.remove_stale_uploads(Duration::ZERO).unwrap(), 1);
    assert!(!staged[0].exists());
    assert!(staged_files(&env.root()).is_empty());
    assert_eq!(
        store.get_bytes("acked.txt").await.unwrap(),
        b"acknowledged before the crash"
    );
}

#[tokio::test]
async fn clashing_keys_long_segments_and_escaping_prefixes_are_refused_and_change_nothing() {
    let env = Env::start().await;
    let store = env.store("c1", ObjectClass::Documents);
    store.put_bytes("a", b"file a").await.unwrap();
    store.put_bytes("x/y", b"file x/y").await.unwrap();

    // `a/b` under the object `a`, `x` over the folder `x/`: refused before any byte is written.
    for (key, existing) in [("a/b", "a"), ("a/b/c", "a"), ("x", "x/y")] {
        match store.put_bytes(key, b"clash").await {
            Err(ObjectError::Conflict {
                key: k,
                existing: e,
            }) => {
                assert_eq!((k.as_str(), e.as_str()), (key, existing));
            }
            other => panic!("{key}: expected a conflict, got {other:?}"),
        }
    }
    for long in ["s".repeat(254), format!("dir/{}", "s".repeat(300))] {
        assert!(
            matches!(
                store.put_bytes(&long, b"long").await,
                Err(ObjectError::InvalidKey { .. })
            ),
            "{long}"
        );
    }
    for prefix in ["../", "../../etc", "a/../", "x//"] {
        assert!(
            matches!(
                store.list(prefix).await,
                Err(ObjectError::InvalidPrefix { .. })
            ),
            "{prefix}"
        );
    }
    // Nothing changed: the two objects, whole, and no staging file.
    assert_eq!(keys(&store.list("").await.unwrap()), ["a", "x/y"]);
    assert_eq!(store.get_bytes("a").await.unwrap(), b"file a");
    assert_eq!(store.get_bytes("x/y").await.unwrap(), b"file x/y");
    assert!(staged_files(&env.root()).is_empty());
    // Deleting the one that stood in the way frees the name.
    store.delete("a").await.unwrap();
    store.put_bytes("a/b", b"now a folder").await.unwrap();
    assert_eq!(keys(&store.list("a/").await.unwrap()), ["a/b"]);
}

/// The child of the crash test, run by it in a process of its own (ignored in a normal
/// run; run alone it fails, as it has nothing to do).
#[tokio::test]
#[ignore = "a child process: its parent test runs it"]
async fn crash_child() {
    let root = std::env::var_os(CHILD_ENV).expect("run by its parent test, which sets CHILD_ENV");
    let store = child_store(&root).await;
    store
        .put_bytes("acked.txt", b"acknowledged before the crash")
        .await
        .unwrap();
    println!("OBJECT-ACKED");
    // A paced source (about 128 MiB/s, 4 GiB in all): far more than the parent
    // lets through before the kill, however fast the machine writes.
    let (mut source, mut sink) = tokio::io::duplex(256 << 10);
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let chunk = vec![0xab; 256 << 10];
        for _ in 0..(4 << 30) / chunk.len() {
            sink.write_all(&chunk).await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    store.put_reader("big.bin", &mut source).await.unwrap();
    panic!("the large put finished before the parent killed the child");
}

/// What a customer could do without keyward: the official AWS Encryption CLI
/// opens a stored object given the KMS key and the store's context.
#[tokio::test]
async fn a_stored_object_opens_with_the_aws_encryption_cli() {
    let env = Env::start().await;
    let store = env.store("c1", ObjectClass::Backups);
    let body = pattern(700_000, 9);
    store.put_bytes("2026/11/29/manifest", &body).await.unwrap();
    let input = file_of(&env, "c1", "backups", "2026/11/29/manifest");
    let output = env.dir.path().join("opened");
    let mut command = tool("aws-encryption-cli");
    command
        .env("AWS_ENDPOINT_URL_KMS", env._server.endpoint())
        .env("AWS_ACCESS_KEY_ID", env._server.access_key_id())
        .env("AWS_SECRET_ACCESS_KEY", env._server.secret_access_key())
        .env("AWS_DEFAULT_REGION", env._server.region())
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args([
            "--decrypt",
            "-S",
            "--commitment-policy",
            "require-encrypt-require-decrypt",
        ])
        .arg("-i")
        .arg(&input)
        .arg("-o")
        .arg(&output)
        .args(["--wrapping-keys", &format!("key={}", env.key_arn)])
        .args([
            "--encryption-context",
            "keyward:cluster=c1",
            "keyward:class=backups",
            "keyward:object=2026/11/29/manifest",
        ]);
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "aws-encryption-cli failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::read(&output).unwrap() == body);
}

const MEMORY_CHILD_ENV: &str = "KEYWARD_OBJECTS_MEMORY_CHILD";
const MEMORY_OBJECT: u64 = 256 << 20;

/// A 256 MiB put and get in a fresh process, whose peak resident memory
/// (`VmHWM`) must stay far below the object's size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_put_and_get_run_in_bounded_memory() {
    let env = Env::start().await;
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "objects::memory_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(MEMORY_CHILD_ENV, env.root())
        .env("KEYWARD_CHILD_ENDPOINT", env._server.endpoint())
        .env("KEYWARD_CHILD_ACCESS", env._server.access_key_id())
        .env("KEYWARD_CHILD_SECRET", env._server.secret_access_key())
        .env("KEYWARD_CHILD_KEY", &env.key_arn)
        .env("KEYWARD_CHILD_REGION", env._server.region());
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
        "peak resident memory of a {} MiB put and get: {peak_kib} KiB",
        MEMORY_OBJECT >> 20
    );
    assert!(
        peak_kib < 96 << 10,
        "peak resident memory {peak_kib} KiB for a {MEMORY_OBJECT}-byte object"
    );
}

async fn child_store(root: &std::ffi::OsStr) -> EncryptedStore {
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
    store_at(
        Path::new(root),
        aws_sdk_kms::Client::new(&config),
        &var("KEYWARD_CHILD_KEY"),
        "c1",
        ObjectClass::Documents,
    )
}

/// The child of the memory test, run by it in a process of its own (ignored in a normal
/// run; run alone it fails, as it has nothing to do).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process: its parent test runs it"]
async fn memory_child() {
    let root = std::env::var_os(MEMORY_CHILD_ENV)
        .expect("run by its parent test, which sets MEMORY_CHILD_ENV");
    use tokio::io::AsyncReadExt;
    let store = child_store(&root).await;
    let mut source = tokio::io::repeat(0x3c).take(MEMORY_OBJECT);
    let put = store.put_reader("large.bin", &mut source).await.unwrap();
    assert_eq!(put, MEMORY_OBJECT);
    let got = store
        .get_to("large.bin", &mut tokio::io::sink())
        .await
        .unwrap();
    assert_eq!(got, MEMORY_OBJECT);
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let peak = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB");
    println!("PEAK-KIB {peak}");
}
