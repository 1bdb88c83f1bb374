//! keyward-control against the real embedded KMS/IAM/STS server on loopback, driven through the
//! AWS SDK for Rust and the command-line NBD clients.
//!
//! The association and policy tests (the first ones written) use their own two accounts: the
//! customer's (111122223333), who owns the key, and the platform's (444455556666), where an IAM
//! user stands for the cluster's principal. The control-plane tests ([`harness`]: clusters,
//! provision) use the contract's setup: the platform account 111122223333 with the
//! `keyward-operator` user, real per-cluster roles assumed through STS, and the customer account
//! 444455556666.

mod alarm_rules;
mod alarms;
mod association;
mod audit;
mod audit_load;
mod backups;
mod clusters;
pub mod db;
pub mod descriptors;
mod disk_tls;
pub mod harness;
pub mod health;
mod key_change;
mod notifications;
mod objects_s3;
mod policy;
mod provision;
mod replicas;
mod retention;
mod rewrap;
mod scale;
mod usage;

pub const CUSTOMER: &str = "111122223333";
pub const PLATFORM: &str = "444455556666";
pub const CLUSTER: &str = "arn:aws:iam::444455556666:user/cluster-c1";
pub const REGION: &str = "us-east-1";

pub struct Kms {
    _dir: tempfile::TempDir,
    pub customer: aws_sdk_kms::Client,
    pub cluster: aws_sdk_kms::Client,
    _server: keyward_kms_server::DevServer,
}

pub async fn start_kms() -> Kms {
    let dir = tempfile::tempdir().unwrap();
    let identities = keyward_kms::IdentityConfig::from_toml_str(&format!(
        r#"
        [[account]]
        id = "{CUSTOMER}"
        [[account.access_key]]
        id = "AKIACUSTOMER0000TEST"
        secret = "customer-secret-for-control-tests"
        principal = "root"
        [[account]]
        id = "{PLATFORM}"
        [[account.access_key]]
        id = "AKIACLUSTERC10000TEST"
        secret = "cluster-secret-for-control-tests"
        principal = "user/cluster-c1"
        # Across accounts both sides must allow: the platform's own policy for the cluster's
        # principal allows what the guide's key-policy statements allow, on any customer key.
        [[account.user]]
        name = "cluster-c1"
        policy = '{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":["kms:DescribeKey","kms:GenerateDataKey*","kms:Decrypt","kms:CreateGrant"],"Resource":"arn:aws:kms:*:*:key/*"}}]}}'
        "#
    ))
    .unwrap();
    let server = keyward_kms_server::DevServer::try_start_with(dir.path(), identities).unwrap();
    let endpoint = server.endpoint().to_owned();
    Kms {
        _dir: dir,
        customer: client(
            &endpoint,
            "AKIACUSTOMER0000TEST",
            "customer-secret-for-control-tests",
        )
        .await,
        cluster: client(
            &endpoint,
            "AKIACLUSTERC10000TEST",
            "cluster-secret-for-control-tests",
        )
        .await,
        _server: server,
    }
}

async fn client(endpoint: &str, key_id: &str, secret: &str) -> aws_sdk_kms::Client {
    let credentials = aws_credential_types::Credentials::from_keys(key_id, secret, None);
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(credentials)
        .load()
        .await;
    aws_sdk_kms::Client::new(&config)
}
