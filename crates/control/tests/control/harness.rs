//! The control plane against the real embedded KMS/IAM/STS server on loopback, with the
//! contract's identities: the platform account `111122223333` with the IAM user
//! `keyward-operator` (iam:*, sts:AssumeRole, kms:* on *), and the customer account
//! `444455556666`, whose root makes keys with the aws SDK.

use std::path::Path;
use std::time::{Duration, Instant};

use keyward_control::{
    Cluster, ClusterState, ControlConfig, ControlPlane, Encryption, HealthStatus, NewCluster,
    Organization,
};
use keyward_kms::IdentityConfig;
use keyward_kms_server::DevServer;

pub const PLATFORM: &str = "111122223333";
pub const CUSTOMER: &str = "444455556666";
pub const OPERATOR_KEY: &str = "AKIAKEYWARDOPERATOR1";
pub const OPERATOR_SECRET: &str = "keyward-operator-secret-for-tests";
const CUSTOMER_KEY: &str = "AKIACUSTOMERROOT0001";
const CUSTOMER_SECRET: &str = "customer-root-secret-for-tests";
/// Probes run this often in these tests, so a key change is seen quickly.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

pub fn identities() -> IdentityConfig {
    IdentityConfig::from_toml_str(&format!(
        r#"
[[account]]
id = "{PLATFORM}"
[[account.access_key]]
id = "{OPERATOR_KEY}"
secret = "{OPERATOR_SECRET}"
principal = "user/keyward-operator"
[[account.user]]
name = "keyward-operator"
policy = '''{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":["iam:*","sts:AssumeRole","kms:*"],"Resource":"*"}}]}}'''

[[account]]
id = "{CUSTOMER}"
[[account.access_key]]
id = "{CUSTOMER_KEY}"
secret = "{CUSTOMER_SECRET}"
"#
    ))
    .expect("identities")
}

/// A running KMS server and clients for the customer and the operator.
pub struct Env {
    pub server: DevServer,
    pub customer: aws_sdk_kms::Client,
    /// IAM as the customer account's root.
    pub customer_iam: aws_sdk_iam::Client,
    pub iam: aws_sdk_iam::Client,
    pub operator_kms: aws_sdk_kms::Client,
    pub dir: tempfile::TempDir,
}

pub async fn start() -> Env {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = DevServer::try_start_with(&dir.path().join("kms"), identities()).expect("server");
    let customer = server.sdk_config_as(CUSTOMER_KEY, CUSTOMER_SECRET).await;
    let operator = server.sdk_config_as(OPERATOR_KEY, OPERATOR_SECRET).await;
    Env {
        customer_iam: aws_sdk_iam::Client::new(&customer),
        customer: aws_sdk_kms::Client::new(&customer),
        iam: aws_sdk_iam::Client::new(&operator),
        operator_kms: aws_sdk_kms::Client::new(&operator),
        server,
        dir,
    }
}

impl Env {
    /// The control plane's configuration for `data_dir` and `database_url`: short probes, small
    /// disks.
    pub fn config(&self, data_dir: &Path, database_url: &str) -> ControlConfig {
        let mut config = ControlConfig::embedded(
            data_dir,
            self.server.endpoint(),
            OPERATOR_KEY,
            OPERATOR_SECRET,
        );
        config.database_url = database_url.to_owned();
        config.probe_interval = PROBE_INTERVAL;
        config.disk_size_bytes = 1 << 20;
        config
    }

    /// A control plane on SQLite in a fresh directory under the test's.
    pub async fn plane(&self, name: &str) -> ControlPlane {
        self.plane_with(name, |_| {}).await
    }

    /// [`Env::plane`] with its configuration changed by `change` first.
    pub async fn plane_with(
        &self,
        name: &str,
        change: impl FnOnce(&mut ControlConfig),
    ) -> ControlPlane {
        let data = self.dir.path().join(name);
        let url = format!("sqlite:{}", data.join("control.db").display());
        let mut config = self.config(&data, &url);
        change(&mut config);
        ControlPlane::open(config)
            .await
            .expect("open the control plane")
    }

    /// A customer key whose policy has the account root's statement and the cluster's two.
    pub async fn customer_key(&self, role_arn: &str) -> String {
        self.customer_key_with(&customer_policy(role_arn, true))
            .await
    }

    /// The customer replaces the key's policy by the guide's with or without `kms:Decrypt` for
    /// the cluster's role.
    pub async fn set_customer_policy(&self, key_arn: &str, role_arn: &str, decrypt: bool) {
        self.customer
            .put_key_policy()
            .key_id(key_arn)
            .policy(customer_policy(role_arn, decrypt))
            .send()
            .await
            .expect("PutKeyPolicy");
    }

    pub async fn customer_key_with(&self, policy: &str) -> String {
        self.customer
            .create_key()
            .policy(policy)
            .send()
            .await
            .expect("CreateKey")
            .key_metadata()
            .expect("KeyMetadata")
            .arn()
            .expect("Arn")
            .to_owned()
    }
}

/// The customer's key policy: the root administers; the guide's statements name the role
/// (without `kms:Decrypt` when `decrypt` is false).
pub fn customer_policy(role_arn: &str, decrypt: bool) -> String {
    let default = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{CUSTOMER}:root"}},"Action":"kms:*","Resource":"*"}}]}}"#
    );
    let mut policy = keyward_control::merge_key_policy(&default, role_arn).unwrap();
    if !decrypt {
        policy["Statement"][1]["Action"] =
            serde_json::json!(["kms:DescribeKey", "kms:GenerateDataKey*"]);
    }
    policy.to_string()
}

pub async fn org(plane: &ControlPlane, name: &str) -> Organization {
    plane
        .create_organization(name)
        .await
        .expect("organization")
        .0
}

pub async fn external_cluster(plane: &ControlPlane, org: &Organization, name: &str) -> Cluster {
    plane
        .create_cluster(
            &org.id,
            NewCluster {
                name: name.into(),
                region: None,
                encryption: Encryption::External,
            },
        )
        .await
        .expect("create cluster")
}

/// An external cluster of `org` whose customer key (with the cluster's statements) is
/// associated, once ready: the cluster and the key's ARN.
pub async fn ready_external_cluster(
    env: &Env,
    plane: &ControlPlane,
    org: &Organization,
    name: &str,
) -> (Cluster, String) {
    let cluster = external_cluster(plane, org, name).await;
    let key = env.customer_key(&cluster.role_arn).await;
    let association = plane
        .associate_key(&org.id, &cluster.id, &key)
        .await
        .expect("associate");
    assert!(association.applied, "{:?}", association.report);
    wait_ready(plane, &org.id, &cluster.id).await;
    (cluster, key)
}

/// A document's whole plaintext, read through the facade (the test fails if it cannot be).
pub async fn read_document(
    plane: &ControlPlane,
    org: &str,
    cluster_id: &str,
    name: &str,
) -> Vec<u8> {
    plane
        .get_document(&org.to_owned(), cluster_id, name)
        .await
        .unwrap_or_else(|e| panic!("get {name}: {e}"))
        .bytes()
        .await
        .unwrap_or_else(|e| panic!("read {name}: {e}"))
}

/// Polls until `done` says yes, or panics naming `what` after `limit`.
pub async fn wait_for<F, Fut>(what: &str, limit: Duration, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !done().await {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn wait_ready(plane: &ControlPlane, org: &str, cluster_id: &str) -> Cluster {
    wait_for(
        "the cluster to be ready",
        Duration::from_secs(30),
        || async {
            plane
                .cluster(&org.to_owned(), cluster_id)
                .await
                .unwrap()
                .state
                == ClusterState::Ready
        },
    )
    .await;
    plane.cluster(&org.to_owned(), cluster_id).await.unwrap()
}

pub async fn wait_health(
    plane: &ControlPlane,
    org: &str,
    cluster_id: &str,
    status: HealthStatus,
    limit: Duration,
) -> Cluster {
    wait_for(&format!("health {status:?}"), limit, || async {
        plane
            .cluster(&org.to_owned(), cluster_id)
            .await
            .unwrap()
            .health
            .status
            == status
    })
    .await;
    plane.cluster(&org.to_owned(), cluster_id).await.unwrap()
}

/// Runs a tool found on PATH; the test fails (not skips) when it is missing.
pub fn tool(name: &str) -> std::process::Command {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|p| p.join(name).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{name} is not on PATH: install it (scripts/test installs it)"
    );
    std::process::Command::new(name)
}

/// Client credentials for `cluster`'s disks, issued through the facade and written (as the CLI
/// does) to a private directory: `ca-cert.pem`, `client-cert.pem`, `client-key.pem`.
pub async fn disk_credentials(
    plane: &ControlPlane,
    org: &keyward_control::OrgId,
    cluster: &str,
) -> tempfile::TempDir {
    let credentials = plane.disk_credentials(org, cluster).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    credentials.write_dir(&dir.path().join("tls")).unwrap();
    dir
}

/// The credentials directory inside what [`disk_credentials`] made.
pub fn creds(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("tls")
}

/// `uri` (`nbds://host:port/export`) with libnbd's credentials query.
pub fn nbds_uri(uri: &str, creds: &Path) -> String {
    format!("{uri}?tls-certificates={}", creds.display())
}

/// qemu-io on the disk at `uri` (`nbds://host:port/export`) with qemu's TLS client object over
/// the credentials in `creds`.
pub async fn qemu_io(uri: &str, creds: &Path, command: &str) -> std::process::Output {
    let rest = uri.strip_prefix("nbds://").expect("an nbds:// URI");
    let (authority, export) = rest.split_once('/').expect("host:port/export");
    let (host, port) = authority.rsplit_once(':').expect("host:port");
    let object = format!(
        "tls-creds-x509,id=tls0,endpoint=client,dir={}",
        creds.display()
    );
    let image = format!(
        "driver=nbd,server.type=inet,server.host={host},server.port={port},export={export},tls-creds=tls0"
    );
    let command = command.to_owned();
    tokio::task::spawn_blocking(move || {
        tool("qemu-io")
            .args(["--object", &object, "--image-opts", &image, "-c", &command])
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// nbdinfo with `args`.
pub async fn nbdinfo(args: &[&str]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || tool("nbdinfo").args(&args).output().unwrap())
        .await
        .unwrap()
}
