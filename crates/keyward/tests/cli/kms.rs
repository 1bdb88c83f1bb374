//! `keyward kms serve` and `keyward kms trail export` as a user runs them: the aws CLI and boto3
//! scripts against a `--dev` child, startup refusals, and a SIGKILL in the middle of a stream of calls.

use std::collections::HashSet;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_kms::operation::RequestId;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;

use crate::support::{keyward, repo_root, require_tool, run_with_deadline, KmsChild};

#[test]
fn aws_cli_smoke_script_passes_against_kms_serve_dev() {
    require_tool("aws");
    let dir = tempfile::tempdir().unwrap();
    let server = KmsChild::start(&dir.path().join("kms"));
    let mut command = Command::new("bash");
    command.arg(repo_root().join("scripts/kms-smoke.sh"));
    server.aws_env(&mut command);
    let (status, stdout, stderr) = run_with_deadline(&mut command, Duration::from_secs(240));
    assert!(
        status.success(),
        "kms-smoke.sh failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("kms-smoke: ok"), "{stdout}");
}

#[test]
fn boto3_smoke_script_passes_against_kms_serve_dev() {
    let python = require_tool("python3");
    let (status, _, stderr) = run_with_deadline(
        Command::new(&python).args(["-c", "import boto3"]),
        Duration::from_secs(60),
    );
    assert!(
        status.success(),
        "boto3 is not importable by {}: {stderr}\nRun scripts/test (it installs boto3 into .venv) and put .venv/bin first on PATH",
        python.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let server = KmsChild::start(&dir.path().join("kms"));
    let mut command = Command::new(&python);
    command.arg(repo_root().join("scripts/kms-smoke.py"));
    server.aws_env(&mut command);
    let (status, stdout, stderr) = run_with_deadline(&mut command, Duration::from_secs(180));
    assert!(
        status.success(),
        "kms-smoke.py failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("kms-smoke.py: ok"), "{stdout}");
}

#[test]
fn serve_without_dev_refuses_to_start_without_a_root_key_or_with_a_wrong_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("kms");
    let creds = dir.path().join("credentials.toml");
    std::fs::write(
        &creds,
        "[[account]]\nid = \"111122223333\"\n[[account.access_key]]\nid = \"AKIATESTTESTTEST0001\"\nsecret = \"s3cr3t\"\nprincipal = \"root\"\n",
    )
    .unwrap();
    let mut command = keyward();
    command
        .args(["kms", "serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .arg("--credentials")
        .arg(&creds)
        .env_remove("KEYWARD_KMS_ROOT_KEY");
    let (status, _, stderr) = run_with_deadline(&mut command, Duration::from_secs(30));
    assert!(!status.success());
    assert!(stderr.contains("no root key"), "{stderr}");
    assert!(
        stderr.contains("--root-key-file") && stderr.contains("KEYWARD_KMS_ROOT_KEY"),
        "{stderr}"
    );

    // Create the store with one root key (via `trail export`, which opens it), then refuse another.
    let key_a = "11".repeat(32);
    let key_b = "22".repeat(32);
    let (status, _, stderr) = run_with_deadline(
        keyward()
            .args(["kms", "trail", "export", "--data-dir"])
            .arg(&data)
            .env("KEYWARD_KMS_ROOT_KEY", &key_a),
        Duration::from_secs(30),
    );
    assert!(status.success(), "{stderr}");
    let mut command = keyward();
    command
        .args(["kms", "serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .arg("--credentials")
        .arg(&creds)
        .env("KEYWARD_KMS_ROOT_KEY", &key_b);
    let (status, _, stderr) = run_with_deadline(&mut command, Duration::from_secs(30));
    assert!(!status.success());
    assert!(stderr.contains("root key"), "{stderr}");
    assert!(
        !stderr.contains(&key_b),
        "the root key leaked into the error: {stderr}"
    );

    // No credentials and no --dev.
    let (status, _, stderr) = run_with_deadline(
        keyward()
            .args(["kms", "serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .env("KEYWARD_KMS_ROOT_KEY", &key_a),
        Duration::from_secs(30),
    );
    assert!(!status.success());
    assert!(stderr.contains("--credentials"), "{stderr}");
}

#[test]
fn dev_root_key_is_private_and_credentials_survive_restart() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("kms");
    let first = KmsChild::start_with(&data, &["--account-id", "444455556666"]);
    assert_eq!(first.account_id, "444455556666");
    let mode = std::fs::metadata(data.join("dev-root.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let (id, secret) = (first.access_key_id.clone(), first.secret_access_key.clone());
    drop(first);
    let second = KmsChild::start(&data);
    assert_eq!(
        (
            second.access_key_id.as_str(),
            second.secret_access_key.as_str()
        ),
        (id.as_str(), secret.as_str())
    );
    assert_eq!(second.account_id, "444455556666");
}

/// What the clients were told succeeded.
#[derive(Default)]
struct Acknowledged {
    keys: Vec<String>,
    /// (key id, ciphertext, plaintext)
    data_keys: Vec<(String, Vec<u8>, Vec<u8>)>,
    request_ids: Vec<String>,
}

#[test]
fn acknowledged_keys_data_keys_and_trail_records_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("kms");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut server = KmsChild::start(&data);
    let acknowledged = Arc::new(Mutex::new(Acknowledged::default()));

    runtime.block_on(async {
        let client = server.sdk_client().await;
        let mut tasks = Vec::new();
        for _ in 0..6 {
            let client = client.clone();
            let acknowledged = acknowledged.clone();
            tasks.push(tokio::spawn(async move {
                // Stream CreateKey + GenerateDataKey until the server dies under us.
                loop {
                    let Ok(created) = client.create_key().send().await else {
                        return;
                    };
                    let key_id = created.key_metadata().unwrap().key_id().to_owned();
                    {
                        let mut ack = acknowledged.lock().unwrap();
                        ack.keys.push(key_id.clone());
                        ack.request_ids
                            .push(created.request_id().unwrap().to_owned());
                    }
                    for _ in 0..3 {
                        let Ok(data_key) = client
                            .generate_data_key()
                            .key_id(&key_id)
                            .key_spec(DataKeySpec::Aes256)
                            .encryption_context("crash", "test")
                            .send()
                            .await
                        else {
                            return;
                        };
                        let mut ack = acknowledged.lock().unwrap();
                        ack.data_keys.push((
                            key_id.clone(),
                            data_key.ciphertext_blob().unwrap().as_ref().to_vec(),
                            data_key.plaintext().unwrap().as_ref().to_vec(),
                        ));
                        ack.request_ids
                            .push(data_key.request_id().unwrap().to_owned());
                    }
                }
            }));
        }
        // Let the stream run, then SIGKILL mid-flight.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        server.kill();
        for task in tasks {
            task.await.unwrap();
        }
    });

    let ack = std::mem::take(&mut *acknowledged.lock().unwrap());
    assert!(
        ack.keys.len() >= 5,
        "too few acknowledged calls before the kill: {}",
        ack.keys.len()
    );

    let server = KmsChild::start(&data);
    runtime.block_on(async {
        let client = server.sdk_client().await;
        for key_id in &ack.keys {
            client
                .describe_key()
                .key_id(key_id)
                .send()
                .await
                .unwrap_or_else(|e| panic!("acknowledged key {key_id} lost after SIGKILL: {e:?}"));
        }
        for (key_id, ciphertext, plaintext) in &ack.data_keys {
            let decrypted = client
                .decrypt()
                .ciphertext_blob(Blob::new(ciphertext.clone()))
                .encryption_context("crash", "test")
                .key_id(key_id)
                .send()
                .await
                .unwrap_or_else(|e| {
                    panic!("acknowledged data key of {key_id} does not decrypt: {e:?}")
                });
            assert_eq!(
                decrypted.plaintext().unwrap().as_ref(),
                plaintext.as_slice()
            );
        }
    });
    drop(server);

    let (status, stdout, stderr) = run_with_deadline(
        keyward()
            .args(["kms", "trail", "export", "--dev", "--data-dir"])
            .arg(&data),
        Duration::from_secs(60),
    );
    assert!(status.success(), "{stderr}");
    let in_trail: HashSet<String> = stdout
        .lines()
        .map(|line| {
            let record: serde_json::Value =
                serde_json::from_str(line).expect("each line is a JSON record");
            record["requestID"].as_str().expect("requestID").to_owned()
        })
        .collect();
    let missing: Vec<_> = ack
        .request_ids
        .iter()
        .filter(|id| !in_trail.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged calls missing from the trail: {missing:?}",
        missing.len()
    );
}
