//! Association validation latency against the embedded KMS on loopback, with one DescribeKey
//! round trip (the least any validation must do) measured in the same run as the baseline.
//!
//! `cargo bench -p keyward-control --bench association` prints the median and p99 of each and
//! their ratio. Validation makes five KMS calls (DescribeKey, GenerateDataKey, Decrypt, and two
//! CreateGrant with DryRun: for the role, allowed; for an outsider, refused), each of which the KMS
//! writes to its trail durably before answering. The key policy is the guide's.

use std::time::{Duration, Instant};

use keyward_control::AssociationTarget;

const CUSTOMER: &str = "111122223333";
const CLUSTER: &str = "arn:aws:iam::444455556666:user/cluster-c1";
const ROUNDS: usize = 300;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let identities = keyward_kms::IdentityConfig::from_toml_str(&format!(
        r#"
        [[account]]
        id = "{CUSTOMER}"
        [[account.access_key]]
        id = "AKIACUSTOMER0000BENCH"
        secret = "customer-secret-for-the-bench"
        [[account]]
        id = "444455556666"
        [[account.access_key]]
        id = "AKIACLUSTERC10000BENCH"
        secret = "cluster-secret-for-the-bench"
        principal = "user/cluster-c1"
        [[account.user]]
        name = "cluster-c1"
        policy = '{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"kms:*","Resource":"*"}}]}}'
        "#
    ))
    .unwrap();
    let server = keyward_kms_server::DevServer::try_start_with(dir.path(), identities).unwrap();
    let endpoint = server.endpoint().to_owned();
    let customer = client(
        &endpoint,
        "AKIACUSTOMER0000BENCH",
        "customer-secret-for-the-bench",
    )
    .await;
    let cluster = client(
        &endpoint,
        "AKIACLUSTERC10000BENCH",
        "cluster-secret-for-the-bench",
    )
    .await;

    let key = customer.create_key().send().await.unwrap();
    let arn = key.key_metadata().unwrap().arn().unwrap().to_string();
    let default = customer.get_key_policy().key_id(&arn).send().await.unwrap();
    let policy = keyward_control::merge_key_policy(default.policy().unwrap(), CLUSTER).unwrap();
    customer
        .put_key_policy()
        .key_id(&arn)
        .policy(policy.to_string())
        .send()
        .await
        .unwrap();
    let target = AssociationTarget {
        region: "us-east-1",
        role_arn: CLUSTER,
        refused_account: Some("444455556666"),
    };

    // Warm up connections and caches, and check the key really validates.
    for _ in 0..20 {
        assert!(
            keyward_control::validate_key_association(&cluster, &arn, &target)
                .await
                .may_apply()
        );
        cluster.describe_key().key_id(&arn).send().await.unwrap();
    }
    let mut describe = Vec::with_capacity(ROUNDS);
    let mut validate = Vec::with_capacity(ROUNDS);
    // Interleaved, so both see the same machine load.
    for _ in 0..ROUNDS {
        let t = Instant::now();
        cluster.describe_key().key_id(&arn).send().await.unwrap();
        describe.push(t.elapsed());
        let t = Instant::now();
        let report = keyward_control::validate_key_association(&cluster, &arn, &target).await;
        validate.push(t.elapsed());
        assert!(report.may_apply());
    }
    let (d50, d99) = percentiles(&mut describe);
    let (v50, v99) = percentiles(&mut validate);
    println!("DescribeKey (baseline):   median {d50:?}  p99 {d99:?}  ({ROUNDS} rounds)");
    println!("validate_key_association: median {v50:?}  p99 {v99:?}  ({ROUNDS} rounds)");
    println!(
        "ratio validation/DescribeKey: median {:.2}x  p99 {:.2}x",
        v50.as_secs_f64() / d50.as_secs_f64(),
        v99.as_secs_f64() / d99.as_secs_f64()
    );
}

fn percentiles(samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort();
    let p = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    (p(0.5), p(0.99))
}

async fn client(endpoint: &str, key_id: &str, secret: &str) -> aws_sdk_kms::Client {
    let credentials = aws_credential_types::Credentials::from_keys(key_id, secret, None);
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(credentials)
        .load()
        .await;
    aws_sdk_kms::Client::new(&config)
}
