//! Shared helpers of the `keyward` CLI tests: running the binary, a `keyward kms serve --dev` child
//! process, and finding the real client tools (aws CLI, Python with boto3) on PATH.

#![allow(dead_code)] // each test module uses its own part

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `keyward` binary built for these tests.
pub fn keyward() -> Command {
    Command::new(env!("CARGO_BIN_EXE_keyward"))
}

/// The repository root (scripts live in `scripts/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Finds a tool on PATH or panics with how to install it: a missing tool fails the test, never skips it.
pub fn require_tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "`{name}` is not on PATH. Run the suite with scripts/test (it installs the tools into .venv and puts \
         .venv/bin first on PATH), or export PATH=$PWD/.venv/bin:$PATH"
    );
}

/// A `keyward kms serve --dev` child on 127.0.0.1 with an OS-chosen port. Killed (SIGKILL) on drop.
pub struct KmsChild {
    pub child: Child,
    pub endpoint: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub account_id: String,
}

impl KmsChild {
    pub fn start(data_dir: &Path) -> KmsChild {
        Self::start_with(data_dir, &[])
    }

    pub fn start_with(data_dir: &Path, extra: &[&str]) -> KmsChild {
        let mut child = keyward()
            .args([
                "kms",
                "serve",
                "--dev",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(data_dir)
            .args(extra)
            .env("KEYWARD_LOG", "warn")
            .env_remove("KEYWARD_KMS_ROOT_KEY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn keyward kms serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, receiver) = std::sync::mpsc::channel();
        // Read the banner on a thread so a server that never prints cannot hang the test.
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let mut found = (None, None, None, None);
            for line in lines.by_ref() {
                let Ok(line) = line else { break };
                if let Some(v) = line.strip_prefix("keyward KMS listening on ") {
                    found.0 = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("AWS_ACCESS_KEY_ID=") {
                    found.1 = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("AWS_SECRET_ACCESS_KEY=") {
                    found.2 = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("dev mode: account ") {
                    found.3 = v.split(',').next().map(|s| s.trim().to_owned());
                }
                if let (Some(a), Some(b), Some(c), Some(d)) = &found {
                    let _ = sender.send((a.clone(), b.clone(), c.clone(), d.clone()));
                    break;
                }
            }
            // Keep draining so the child never blocks on a full pipe.
            for _ in lines {}
        });
        let (endpoint, access_key_id, secret_access_key, account_id) = match receiver
            .recv_timeout(Duration::from_secs(60))
        {
            Ok(found) => found,
            Err(_) => {
                let _ = child.kill();
                panic!("keyward kms serve --dev printed no endpoint and credentials within 60 s");
            }
        };
        KmsChild {
            child,
            endpoint,
            access_key_id,
            secret_access_key,
            account_id,
        }
    }

    /// Environment for the aws CLI and boto3.
    pub fn aws_env(&self, command: &mut Command) {
        command
            .env("AWS_ACCESS_KEY_ID", &self.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret_access_key)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_REGION", "us-east-1")
            .env("KEYWARD_KMS_ENDPOINT", &self.endpoint)
            .env("KEYWARD_ACCOUNT_ID", &self.account_id)
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_EC2_METADATA_DISABLED", "true");
    }

    /// An aws-sdk-kms client for this server.
    pub async fn sdk_client(&self) -> aws_sdk_kms::Client {
        let credentials = aws_credential_types::Credentials::from_keys(
            &self.access_key_id,
            &self.secret_access_key,
            None,
        );
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(credentials)
            .load()
            .await;
        aws_sdk_kms::Client::new(&config)
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for KmsChild {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs a command to completion with a deadline, returning (status, stdout, stderr).
pub fn run_with_deadline(
    command: &mut Command,
    deadline: Duration,
) -> (std::process::ExitStatus, String, String) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            panic!("command did not finish within {deadline:?}: {command:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, out.join().unwrap(), err.join().unwrap())
}
