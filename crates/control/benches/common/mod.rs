//! What the control-plane benchmarks share: the embedded KMS/IAM/STS server with the contract's
//! identities, a control plane over it, and a cluster brought to `ready` the way the guide does.

#![allow(dead_code)] // each bench binary uses part of this

use std::path::Path;
use std::time::{Duration, Instant};

use keyward_control::{
    Cluster, ClusterState, ControlConfig, ControlPlane, Encryption, NewCluster, Organization,
};

pub const PLATFORM: &str = "111122223333";
pub const CUSTOMER: &str = "444455556666";
pub const OPERATOR_KEY: &str = "AKIAKEYWARDOPERBENCH";
pub const OPERATOR_SECRET: &str = "keyward-operator-secret-for-benches";
const CUSTOMER_KEY: &str = "AKIACUSTOMERBENCH001";
const CUSTOMER_SECRET: &str = "customer-root-secret-for-benches";

pub struct Env {
    pub server: keyward_kms_server::DevServer,
    pub customer: aws_sdk_kms::Client,
    pub dir: tempfile::TempDir,
}

pub async fn start() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let identities = keyward_kms::IdentityConfig::from_toml_str(&format!(
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
    .unwrap();
    let server =
        keyward_kms_server::DevServer::try_start_with(&dir.path().join("kms"), identities).unwrap();
    let customer = server.sdk_config_as(CUSTOMER_KEY, CUSTOMER_SECRET).await;
    Env {
        customer: aws_sdk_kms::Client::new(&customer),
        server,
        dir,
    }
}

impl Env {
    pub fn config(&self, data_dir: &Path, probe_interval: Duration) -> ControlConfig {
        let mut config = ControlConfig::embedded(
            data_dir,
            self.server.endpoint(),
            OPERATOR_KEY,
            OPERATOR_SECRET,
        );
        config.database_url = format!("sqlite:{}", data_dir.join("control.db").display());
        config.probe_interval = probe_interval;
        config.disk_size_bytes = 1 << 20;
        config
    }

    pub async fn plane(&self, name: &str, probe_interval: Duration) -> ControlPlane {
        ControlPlane::open(self.config(&self.dir.path().join(name), probe_interval))
            .await
            .unwrap()
    }

    /// A customer key whose policy has the account root's statement and the guide's two for
    /// `role_arn`.
    pub async fn customer_key(&self, role_arn: &str) -> String {
        let default = format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{CUSTOMER}:root"}},"Action":"kms:*","Resource":"*"}}]}}"#
        );
        let policy = keyward_control::merge_key_policy(&default, role_arn).unwrap();
        self.customer
            .create_key()
            .policy(policy.to_string())
            .send()
            .await
            .unwrap()
            .key_metadata()
            .unwrap()
            .arn()
            .unwrap()
            .to_owned()
    }
}

pub async fn org(plane: &ControlPlane, name: &str) -> Organization {
    plane.create_organization(name).await.unwrap().0
}

/// Creates an external cluster, the customer's key for its role, and associates it; returns the
/// cluster (not waiting for provisioning) and the key ARN.
pub async fn associated_cluster(
    env: &Env,
    plane: &ControlPlane,
    org: &Organization,
    name: &str,
) -> (Cluster, String) {
    let cluster = plane
        .create_cluster(
            &org.id,
            NewCluster {
                name: name.into(),
                region: None,
                encryption: Encryption::External,
            },
        )
        .await
        .unwrap();
    let key = env.customer_key(&cluster.role_arn).await;
    let association = plane
        .associate_key(&org.id, &cluster.id, &key)
        .await
        .unwrap();
    assert!(association.applied, "association failed for {name}");
    (cluster, key)
}

pub async fn wait_ready(plane: &ControlPlane, org: &Organization, cluster_id: &str) {
    let start = Instant::now();
    loop {
        let state = plane.cluster(&org.id, cluster_id).await.unwrap().state;
        if state == ClusterState::Ready {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "cluster {cluster_id} not ready after 300 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Peak and current resident memory of this process, in MiB (`VmHWM`, `VmRSS`).
pub fn memory_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

pub fn median(values: &mut [Duration]) -> Duration {
    values.sort();
    values[values.len() / 2]
}

pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
