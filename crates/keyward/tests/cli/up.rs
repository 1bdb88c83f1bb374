//! `keyward up`: everything on one machine from a fresh data directory, what it prints and keeps
//! in up.json, and that a restart keeps the same credentials, tokens and clusters. Also the
//! helpers the guide test drives it with.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::{keyward, require_tool, run_with_deadline};

pub const DEADLINE: Duration = Duration::from_secs(120);

/// A `keyward up` child on OS-chosen loopback ports. Killed (SIGKILL) on drop.
pub struct Up {
    child: Child,
    pub data_dir: PathBuf,
    /// The parsed up.json.
    pub info: Value,
    pub banner: String,
}

/// `keyward up` on OS-chosen loopback ports, with its root key in `config_dir`.
pub fn up_command(data_dir: &Path, config_dir: &Path) -> Command {
    let mut command = keyward();
    command
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--kms-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data_dir)
        .env("KEYWARD_CONFIG_DIR", config_dir)
        .env_remove("KEYWARD_KMS_ROOT_KEY")
        .env_remove("KEYWARD_ROOT_KEY_FILE")
        .env("KEYWARD_LOG", "warn")
        .env_remove("KEYWARD_API_URL")
        .env_remove("KEYWARD_TOKEN");
    command
}

/// Where a test's `keyward up` keeps its root key: beside the data directory, never inside it.
pub fn config_dir_of(data_dir: &Path) -> PathBuf {
    let name = data_dir.file_name().unwrap().to_string_lossy();
    data_dir.with_file_name(format!("{name}-config"))
}

impl Up {
    /// Step 1 to 3 of the guide with the CLIs: an external cluster, the customer's key with the
    /// full policy `keyward` prints (written under `dir`), associated. Answers (cluster id, key
    /// ARN); the cluster may still be provisioning.
    pub fn associated_cluster(&self, dir: &Path, name: &str) -> (String, String) {
        let customer = self.info["customer"]["account_id"].as_str().unwrap();
        associate_with_clis(
            dir,
            name,
            customer,
            &|args| self.keyward_json(args),
            &|args| self.aws(args),
        )
    }

    pub fn start(data_dir: &Path, extra: &[&str]) -> Up {
        Up::start_with_config(data_dir, &config_dir_of(data_dir), extra)
    }

    pub fn start_with_config(data_dir: &Path, config_dir: &Path, extra: &[&str]) -> Up {
        let mut child = up_command(data_dir, config_dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn keyward up");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, receiver) = std::sync::mpsc::channel();
        // Read the banner on a thread so a child that never prints cannot hang the test.
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let mut banner = String::new();
            for line in lines.by_ref() {
                let Ok(line) = line else { break };
                banner.push_str(&line);
                banner.push('\n');
                if line.contains("keyward cluster verify") {
                    let _ = sender.send(banner.clone());
                    break;
                }
            }
            for _ in lines {}
        });
        let banner = match receiver.recv_timeout(DEADLINE) {
            Ok(banner) => banner,
            Err(_) => {
                let _ = child.kill();
                panic!("keyward up printed no banner within {DEADLINE:?}");
            }
        };
        let info: Value =
            serde_json::from_str(&std::fs::read_to_string(data_dir.join("up.json")).unwrap())
                .unwrap();
        Up {
            child,
            data_dir: data_dir.to_path_buf(),
            info,
            banner,
        }
    }

    /// The `keyward up` process's id (to read its /proc status).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kms_endpoint(&self) -> &str {
        self.info["kms_endpoint"].as_str().unwrap()
    }

    /// `keyward <args>` as the platform (API URL and token from up.json): (ok, stdout, stderr).
    pub fn keyward(&self, args: &[&str]) -> (bool, String, String) {
        let mut command = keyward();
        command
            .args(args)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env_remove("KEYWARD_API_URL")
            .env_remove("KEYWARD_TOKEN")
            .env("KEYWARD_LOG", "warn");
        let (status, out, err) = run_with_deadline(&mut command, DEADLINE);
        (status.success(), out, err)
    }

    /// `keyward <args> --json` that must succeed, parsed.
    pub fn keyward_json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let (ok, out, err) = self.keyward(&all);
        assert!(ok, "keyward {args:?} failed: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("keyward {args:?}: {e}: {out}"))
    }

    /// The aws CLI as the customer (the admin user of the customer's account).
    pub fn aws_command(&self) -> Command {
        let c = &self.info["customer"];
        aws_command(
            self.kms_endpoint(),
            c["access_key_id"].as_str().unwrap(),
            c["secret_access_key"].as_str().unwrap(),
        )
    }

    /// `aws <args>` as the customer that must succeed, parsed (`null` when it prints nothing).
    pub fn aws(&self, args: &[&str]) -> Value {
        let mut command = self.aws_command();
        command.args(args);
        let (status, out, err) = run_with_deadline(&mut command, DEADLINE);
        assert!(status.success(), "aws {args:?}: {err}");
        if out.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&out).unwrap()
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The aws CLI with these credentials against `endpoint`, isolated from the user's own setup
/// (no profile, config or credentials file, no instance metadata), answering JSON.
pub fn aws_command(endpoint: &str, access_key_id: &str, secret_access_key: &str) -> Command {
    let mut command = Command::new(require_tool("aws"));
    command
        .env("AWS_ACCESS_KEY_ID", access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", secret_access_key)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", endpoint)
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args(["--output", "json"]);
    command
}

/// Step 1 to 3 of the guide with `keyward` (through `keyward_json`) and the aws CLI as the
/// customer of account `customer` (through `aws`): an external cluster, a key under the full policy
/// `keyward` prints (written under `dir`), associated. (cluster id, key ARN)
pub fn associate_with_clis(
    dir: &Path,
    name: &str,
    customer: &str,
    keyward_json: &dyn Fn(&[&str]) -> Value,
    aws: &dyn Fn(&[&str]) -> Value,
) -> (String, String) {
    let cluster = keyward_json(&["cluster", "create", name, "--encryption", "external"]);
    let id = cluster["id"].as_str().unwrap().to_owned();
    let policy = keyward_json(&["cluster", "key-policy", &id, "--full-policy-for", customer]);
    let policy_file = dir.join(format!("{name}-policy.json"));
    std::fs::write(&policy_file, policy.to_string()).unwrap();
    let key = aws(&[
        "kms",
        "create-key",
        "--policy",
        &format!("file://{}", policy_file.display()),
    ]);
    let key_arn = key["KeyMetadata"]["Arn"].as_str().unwrap().to_owned();
    let association = keyward_json(&["cluster", "associate", &id, &key_arn]);
    assert_eq!(association["applied"], true, "{association:#}");
    (id, key_arn)
}

#[test]
fn up_on_a_fresh_directory_prints_and_keeps_what_a_newcomer_needs_and_restarts_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("keyward-data");
    let mut up = Up::start(&data, &[]);
    let info = up.info.clone();

    // Everything the banner promises, and the same in up.json.
    for field in ["api_url", "kms_endpoint", "admin_token", "token"] {
        let value = info[field]
            .as_str()
            .unwrap_or_else(|| panic!("up.json has no {field}"));
        assert!(
            up.banner.contains(value),
            "the banner does not show {field}"
        );
    }
    for side in ["platform", "customer"] {
        for field in ["access_key_id", "secret_access_key"] {
            let value = info[side][field].as_str().unwrap();
            assert!(
                up.banner.contains(value),
                "the banner does not show the {side} {field}"
            );
        }
    }
    assert_eq!(info["platform"]["account_id"], "111122223333");
    assert_eq!(
        info["platform"]["user_arn"],
        "arn:aws:iam::111122223333:user/keyward-operator"
    );
    assert_eq!(info["customer"]["account_id"], "444455556666");
    {
        use std::os::unix::fs::PermissionsExt;
        for file in ["up.json", "kms/identities.toml"] {
            let mode = std::fs::metadata(data.join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{file} must be readable by its owner only");
        }
    }

    // The platform CLI finds the API in up.json; the customer's aws CLI reaches the KMS.
    let clusters = up.keyward_json(&["cluster", "list"]);
    assert_eq!(clusters["clusters"].as_array().unwrap().len(), 0);
    let cluster = up.keyward_json(&["cluster", "create", "demo"]);
    let id = cluster["id"].as_str().unwrap().to_owned();
    assert_eq!(cluster["state"], "awaiting-key");
    assert_eq!(
        cluster["role_arn"],
        format!("arn:aws:iam::111122223333:role/keyward/keyward-cluster-{id}")
    );
    let key = up.aws(&["kms", "create-key", "--description", "up test"]);
    let arn = key["KeyMetadata"]["Arn"].as_str().unwrap();
    assert!(
        arn.starts_with("arn:aws:kms:us-east-1:444455556666:key/"),
        "{arn}"
    );

    // The key-policy statements name the cluster's role; an alias is refused with the check
    // that failed, its cause and the fix, and nothing is applied.
    let statements = up.keyward_json(&["cluster", "key-policy", &id]);
    let statements = statements["Statement"].as_array().unwrap();
    assert_eq!(statements.len(), 2);
    for statement in statements {
        assert_eq!(statement["Principal"]["AWS"], cluster["role_arn"]);
    }
    let (ok, _, err) = up.keyward(&["cluster", "associate", &id, "alias/customer-key"]);
    assert!(!ok);
    assert!(err.contains("association_failed (422)"), "{err}");
    assert!(
        err.contains("FAIL  not-alias") && err.contains("fix:"),
        "{err}"
    );
    assert_eq!(
        up.keyward_json(&["cluster", "show", &id])["state"],
        "awaiting-key"
    );

    // Without up.json, the API and token come from the environment.
    let elsewhere = dir.path().join("no-up-json");
    let mut command = keyward();
    command
        .args(["cluster", "list", "--json", "--data-dir"])
        .arg(&elsewhere)
        .env("KEYWARD_API_URL", info["api_url"].as_str().unwrap())
        .env("KEYWARD_TOKEN", info["token"].as_str().unwrap());
    let (status, out, err) = run_with_deadline(&mut command, DEADLINE);
    assert!(status.success(), "{err}");
    assert!(out.contains(&id), "{out}");
    let mut command = keyward();
    command
        .args(["cluster", "list", "--data-dir"])
        .arg(&elsewhere);
    let (status, _, err) = run_with_deadline(&mut command, DEADLINE);
    assert!(!status.success());
    assert!(err.contains("start `keyward up`"), "{err}");

    // A bad token is refused with what to do.
    let mut command = keyward();
    command
        .args([
            "cluster",
            "list",
            "--api-url",
            info["api_url"].as_str().unwrap(),
        ])
        .env("KEYWARD_TOKEN", "kw_not-a-token")
        .arg("--data-dir")
        .arg(&data);
    let (status, _, err) = run_with_deadline(&mut command, DEADLINE);
    assert!(!status.success());
    assert!(err.contains("unauthenticated (401)"), "{err}");

    // The admin manages the organization's tokens (the admin token from up.json): a new token
    // works at once, a revoked one is refused at once, and no listing shows a secret.
    let org_id = info["organization"]["id"].as_str().unwrap();
    let created = up.keyward_json(&["org", "token", "create", org_id]);
    let new_token = created["token"].as_str().unwrap().to_owned();
    let token_id = created["id"].as_str().unwrap().to_owned();
    let listed = up.keyward_json(&["org", "token", "list", org_id]);
    let ids: Vec<&str> = listed["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&token_id.as_str()) && ids.len() >= 2,
        "{listed}"
    );
    let listed_text = listed.to_string();
    assert!(
        !listed_text.contains(&new_token) && !listed_text.contains(info["token"].as_str().unwrap())
    );
    let (ok, out, err) = up.keyward(&["cluster", "list", "--json", "--token", &new_token]);
    assert!(ok && out.contains(&id), "the new token works: {err}");
    let (ok, _, err) = up.keyward(&["org", "token", "revoke", org_id, &token_id]);
    assert!(ok, "{err}");
    let (ok, _, err) = up.keyward(&["cluster", "list", "--token", &new_token]);
    assert!(!ok && err.contains("unauthenticated (401)"), "{err}");
    // An organization's token cannot manage tokens.
    let (ok, _, err) = up.keyward(&[
        "org",
        "token",
        "list",
        org_id,
        "--admin-token",
        info["token"].as_str().unwrap(),
    ]);
    assert!(!ok && err.contains("(401)"), "{err}");

    // Restart: the same credentials, tokens and state.
    up.kill();
    let up = Up::start(&data, &[]);
    for (a, b) in [
        (&info["admin_token"], &up.info["admin_token"]),
        (&info["token"], &up.info["token"]),
        (&info["organization"], &up.info["organization"]),
        (&info["platform"], &up.info["platform"]),
        (&info["customer"], &up.info["customer"]),
    ] {
        assert_eq!(a, b);
    }
    let shown = up.keyward_json(&["cluster", "show", &id]);
    assert_eq!(shown["role_arn"], cluster["role_arn"]);
    let key_again = up.aws(&["kms", "describe-key", "--key-id", arn]);
    assert_eq!(key_again["KeyMetadata"]["Arn"], arn);
}

#[test]
fn a_copied_data_directory_without_its_root_key_decrypts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("keyward-data");
    let mut up = Up::start(&data, &[]);
    let key = up.aws(&["kms", "create-key", "--description", "kept apart"]);
    let arn = key["KeyMetadata"]["Arn"].as_str().unwrap().to_owned();
    up.kill();

    // The root key is in the config directory (0600), named by the store id; no file of the data
    // directory holds its bytes, raw or in hex.
    let store_id = std::fs::read_to_string(data.join("kms/store-id")).unwrap();
    let key_file = config_dir_of(&data)
        .join("root-keys")
        .join(format!("{}.key", store_id.trim()));
    let root_hex = std::fs::read_to_string(&key_file).expect("the root key file");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the root key must be readable by its owner only"
        );
    }
    let root_raw = hex_decode(root_hex.trim());
    assert_eq!(root_raw.len(), 32);
    let mut files = 0;
    for file in walk(&data) {
        let bytes = std::fs::read(&file).unwrap();
        files += 1;
        assert!(
            !contains(&bytes, root_hex.trim().as_bytes()) && !contains(&bytes, &root_raw),
            "{} holds the root key",
            file.display()
        );
    }
    assert!(files > 3, "the data directory was read ({files} files)");

    // A copy elsewhere, without the config directory: `keyward up` refuses, naming what is missing.
    let copy = dir.path().join("copied-data");
    let status = Command::new("cp")
        .arg("-a")
        .arg(&data)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    let empty_config = dir.path().join("another-user-config");
    let mut command = up_command(&copy, &empty_config);
    let (status, _, err) = run_with_deadline(&mut command, DEADLINE);
    assert!(!status.success(), "keyward up started without its root key");
    assert!(
        err.contains("root key") && err.contains("missing") && err.contains("--root-key-file"),
        "{err}"
    );
    assert!(
        err.contains(&*empty_config.to_string_lossy()),
        "the error names where the key was expected: {err}"
    );
    assert!(
        !empty_config.join("root-keys").exists() || walk(&empty_config).is_empty(),
        "no new root key was made for an existing store"
    );

    // With the root key given, the copy opens and the customer's key is there.
    let up = Up::start_with_config(
        &copy,
        &empty_config,
        &["--root-key-file", key_file.to_str().unwrap()],
    );
    let described = up.aws(&["kms", "describe-key", "--key-id", &arn]);
    assert_eq!(described["KeyMetadata"]["Arn"], arn.as_str());
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else if path.is_file() {
            out.push(path);
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

fn hex_decode(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}
