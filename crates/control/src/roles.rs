//! The per-cluster IAM role, and reaching KMS as it.
//!
//! Each cluster gets its own role in the platform account, `keyward-cluster-<cluster id>` under
//! the path `/keyward/`, made through IAM `CreateRole`:
//! - its trust policy lets only the operator's principal assume it, and only with the cluster id
//!   as `sts:ExternalId` (so a request about one cluster cannot be turned into another's role —
//!   the confused-deputy guard AWS recommends for third-party roles);
//! - its inline policy `keyward-kms` allows the KMS actions the cluster needs on any key: a key in
//!   the customer's account is usable only when both the key policy and the caller's identity
//!   policy allow it, and the customer's key policy is what narrows it to their one key.
//!
//! The operator reaches KMS for a cluster as that role: `AssumeRole` with the external id, session
//! name `keyward-operator`, through `aws_config::sts::AssumeRoleProvider`, whose credentials the
//! KMS client caches and refreshes before they expire.
//!
//! All of it is plain `aws-sdk-iam` / `aws-sdk-sts` / `aws-sdk-kms`: against AWS, the endpoint
//! override is simply absent.
//!
//! Every client made from the operator's `SdkConfig` — each cluster role's KMS client and the STS
//! client inside its `AssumeRoleProvider` included — shares the one HTTP client of
//! [`share_one_http_client`]: without it the SDK builds a new connection pool per client, and
//! each pool keeps its own idle keep-alive connection, so descriptors grew with the clusters
//! (two per cluster against the embedded KMS, whose end of each connection is in this process
//! too) instead of with the requests in flight.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_iam::error::ProvideErrorMetadata;
use aws_smithy_http_client::{proxy::ProxyConfig, tls, ConnectorBuilder};
use aws_smithy_runtime_api::client::http::{http_client_fn, SharedHttpClient, SharedHttpConnector};
use serde_json::json;

use crate::error::{Error, Result};

/// The path of every cluster role.
pub const ROLE_PATH: &str = "/keyward/";
/// The session name the operator assumes cluster roles with (shown in CloudTrail).
pub const SESSION_NAME: &str = "keyward-operator";
/// The name of the role's inline policy.
pub const ROLE_POLICY_NAME: &str = "keyward-kms";

/// Idle connections the shared pool keeps per host: enough for the probes and provisioning in
/// flight at once (the monitor's default concurrency is 32), not one per cluster.
pub(crate) const POOL_MAX_IDLE_PER_HOST: usize = 64;
/// An idle pooled connection is closed after this long.
pub(crate) const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// `base` with one HTTP client (one connection pool) that every client made from it shares.
pub(crate) fn share_one_http_client(base: SdkConfig) -> SdkConfig {
    base.to_builder().http_client(http_client()).build()
}

/// The SDK's default HTTPS client (rustls with aws-lc, proxies from the environment), with its
/// idle connections bounded per host and in time. Its connectors are made once per pair of
/// timeouts, as the SDK's own client does, and kept: a connector is a pool.
fn http_client() -> SharedHttpClient {
    type Timeouts = (Option<Duration>, Option<Duration>);
    let connectors: Arc<parking_lot::Mutex<HashMap<Timeouts, SharedHttpConnector>>> =
        Arc::default();
    http_client_fn(move |settings, components| {
        let key = (settings.connect_timeout(), settings.read_timeout());
        connectors
            .lock()
            .entry(key)
            .or_insert_with(|| {
                let mut builder = ConnectorBuilder::default()
                    .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
                    .pool_idle_timeout(POOL_IDLE_TIMEOUT)
                    .proxy_config(ProxyConfig::from_env())
                    .tls_provider(tls::Provider::Rustls(
                        tls::rustls_provider::CryptoMode::AwsLc,
                    ));
                builder.set_connector_settings(Some(settings.clone()));
                builder.set_sleep_impl(components.sleep_impl());
                SharedHttpConnector::new(builder.build())
            })
            .clone()
    })
}

/// The role name of a cluster.
pub fn role_name(cluster_id: &str) -> String {
    format!("keyward-cluster-{cluster_id}")
}

/// The role ARN of a cluster in the platform account.
pub fn role_arn(platform_account_id: &str, cluster_id: &str) -> String {
    format!(
        "arn:aws:iam::{platform_account_id}:role{ROLE_PATH}{}",
        role_name(cluster_id)
    )
}

/// The trust policy: only `operator_arn`, only with the cluster id as external id.
pub fn trust_policy(operator_arn: &str, cluster_id: &str) -> serde_json::Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "AWS": operator_arn },
            "Action": "sts:AssumeRole",
            "Condition": { "StringEquals": { "sts:ExternalId": cluster_id } }
        }]
    })
}

/// The role's identity policy: what the guide's key-policy statements allow, plus re-wrapping and
/// retiring the grants the cluster made.
///
/// `kms:CreateGrant` is deliberately not conditioned here: the lock on what the role may grant is
/// the customer's key policy ([`crate::create_grant_condition`]), which the platform cannot edit,
/// whereas the platform's operator can rewrite this policy. A condition here too would also hide
/// an unconditioned key-policy statement from the association probe that refuses it.
pub fn role_policy() -> serde_json::Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "KeywardClusterKms",
            "Effect": "Allow",
            "Action": [
                "kms:DescribeKey",
                "kms:GenerateDataKey*",
                "kms:Decrypt",
                "kms:CreateGrant",
                "kms:ReEncrypt*",
                "kms:RetireGrant"
            ],
            "Resource": "*"
        }]
    })
}

fn iam_error<E, R>(action: &str, error: aws_sdk_iam::error::SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match (error.code(), error.message()) {
        (Some(code), message) => Error::Internal(format!(
            "IAM {action} failed: {code}: {}",
            message.unwrap_or_default()
        )),
        (None, _) => Error::Internal(format!(
            "IAM {action} failed: {}",
            aws_sdk_iam::error::DisplayErrorContext(&error)
        )),
    }
}

/// Creates the cluster's role with its trust policy and inline policy. Idempotent: a role that
/// exists already (a retry after a crash) gets its policies written again.
pub async fn create_role(
    iam: &aws_sdk_iam::Client,
    operator_arn: &str,
    cluster_id: &str,
) -> Result<String> {
    let name = role_name(cluster_id);
    let trust = trust_policy(operator_arn, cluster_id).to_string();
    let created = iam
        .create_role()
        .role_name(&name)
        .path(ROLE_PATH)
        .assume_role_policy_document(&trust)
        .description(format!(
            "keyward cluster {cluster_id}: the principal the customer's key policy names"
        ))
        .max_session_duration(3600)
        .send()
        .await;
    let arn = match created {
        Ok(out) => out.role().map(|r| r.arn().to_owned()),
        // A retry after a crash between CreateRole and the database: the role is ours (the
        // name holds the random cluster id); its policies are written again below.
        Err(error) if error.code() == Some("EntityAlreadyExists") => None,
        Err(error) => return Err(iam_error("CreateRole", error)),
    };
    iam.put_role_policy()
        .role_name(&name)
        .policy_name(ROLE_POLICY_NAME)
        .policy_document(role_policy().to_string())
        .send()
        .await
        .map_err(|e| iam_error("PutRolePolicy", e))?;
    match arn {
        Some(arn) => Ok(arn),
        None => {
            let out = iam
                .get_role()
                .role_name(&name)
                .send()
                .await
                .map_err(|e| iam_error("GetRole", e))?;
            out.role()
                .map(|r| r.arn().to_owned())
                .ok_or_else(|| Error::internal("IAM GetRole answered without a role"))
        }
    }
}

/// Deletes the cluster's role and its inline policy. A role already gone is not an error.
pub async fn delete_role(iam: &aws_sdk_iam::Client, cluster_id: &str) -> Result<()> {
    let name = role_name(cluster_id);
    match iam
        .delete_role_policy()
        .role_name(&name)
        .policy_name(ROLE_POLICY_NAME)
        .send()
        .await
    {
        Ok(_) => {}
        Err(error) if error.code() == Some("NoSuchEntity") => {}
        Err(error) => return Err(iam_error("DeleteRolePolicy", error)),
    }
    match iam.delete_role().role_name(&name).send().await {
        Ok(_) => Ok(()),
        Err(error) if error.code() == Some("NoSuchEntity") => Ok(()),
        Err(error) => Err(iam_error("DeleteRole", error)),
    }
}

/// The ARN of the operator's own principal (`sts:GetCallerIdentity`), which the trust policies name.
pub async fn operator_arn(sts: &aws_sdk_sts::Client) -> Result<String> {
    let out = sts.get_caller_identity().send().await.map_err(|error| {
        Error::Internal(format!(
            "STS GetCallerIdentity failed: {}",
            aws_sdk_sts::error::DisplayErrorContext(&error)
        ))
    })?;
    out.arn()
        .map(str::to_owned)
        .ok_or_else(|| Error::internal("STS GetCallerIdentity answered without an ARN"))
}

/// A KMS client acting as the cluster's role in `region`: credentials from `AssumeRole` with the
/// cluster id as external id, refreshed by the SDK before they expire. It and its STS client use
/// `base`'s HTTP client ([`share_one_http_client`]).
pub async fn cluster_kms(
    base: &SdkConfig,
    role_arn: &str,
    cluster_id: &str,
    region: &str,
) -> aws_sdk_kms::Client {
    audited_cluster_kms(base, role_arn, cluster_id, region, None).await
}

/// [`cluster_kms`], every request of which `audit` records (and tells the metrics).
pub(crate) async fn audited_cluster_kms(
    base: &SdkConfig,
    role_arn: &str,
    cluster_id: &str,
    region: &str,
    audit: Option<crate::audit::AuditInterceptor>,
) -> aws_sdk_kms::Client {
    let region = aws_config::Region::new(region.to_owned());
    let provider = aws_config::sts::AssumeRoleProvider::builder(role_arn)
        .external_id(cluster_id)
        .session_name(SESSION_NAME)
        .session_length(Duration::from_secs(3600))
        .region(region.clone())
        .configure(base)
        .build()
        .await;
    let mut config = aws_sdk_kms::config::Builder::from(base)
        .region(region)
        .credentials_provider(provider);
    if let Some(audit) = audit {
        config = config.interceptor(audit);
    }
    aws_sdk_kms::Client::from_conf(config.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_policies() {
        assert_eq!(
            role_arn("111122223333", "c-0123456789abcdef"),
            "arn:aws:iam::111122223333:role/keyward/keyward-cluster-c-0123456789abcdef"
        );
        let trust = trust_policy("arn:aws:iam::111122223333:user/keyward-operator", "c-1");
        let s = &trust["Statement"][0];
        assert_eq!(
            s["Principal"]["AWS"],
            "arn:aws:iam::111122223333:user/keyward-operator"
        );
        assert_eq!(s["Action"], "sts:AssumeRole");
        assert_eq!(s["Condition"]["StringEquals"]["sts:ExternalId"], "c-1");
        let actions = role_policy()["Statement"][0]["Action"].clone();
        assert_eq!(actions.as_array().unwrap().len(), 6);
    }
}
