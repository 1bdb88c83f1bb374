//! Volumes under a real KMS: the embedded server on loopback, driven through
//! aws-sdk-kms. Two identities, as on a platform: the operator (whose key policy
//! allows it everything) and a node (`user/node-a`, in another account) that the
//! key policy does not name at all — only the attach grant lets it open a
//! volume's key.

use std::collections::BTreeMap;
use std::path::Path;

use aws_sdk_kms::types::GrantOperation;
use keyward_storage::volume::kms::VOLUME_ID_CONTEXT_KEY;
use keyward_storage::{
    attach_volume, create_volume, AwsKms, Error, KeyService, NbdServer, NewVolume,
};

use crate::common::{nbds_uri, qemu_io_ok, qemu_tls_args, run, TlsCluster};

const ACCOUNT: &str = "111122223333";
/// The node is in the platform's node account, not the key's: a cross-account
/// grantee, as a customer-managed key shared with the platform is used.
const NODE_ACCOUNT: &str = "444455556666";
const NODE: &str = "arn:aws:iam::444455556666:user/node-a";

struct Kms {
    _dir: tempfile::TempDir,
    endpoint: String,
    engine: keyward_kms::Engine,
    _server: keyward_kms_server::DevServer,
}

async fn start_kms() -> Kms {
    let dir = tempfile::tempdir().unwrap();
    let identities = keyward_kms::IdentityConfig::from_toml_str(&format!(
        r#"
        [[account]]
        id = "{ACCOUNT}"
        [[account.access_key]]
        id = "AKIAOPERATOR0000TEST"
        secret = "operator-secret-for-volume-tests"
        principal = "user/operator"
        [[account]]
        id = "{NODE_ACCOUNT}"
        [[account.access_key]]
        id = "AKIANODEA00000000TEST"
        secret = "node-a-secret-for-volume-tests"
        principal = "user/node-a"
        "#
    ))
    .unwrap();
    let server = keyward_kms_server::DevServer::try_start_with(dir.path(), identities).unwrap();
    Kms {
        endpoint: server.endpoint().to_owned(),
        engine: server.engine().clone(),
        _server: server,
        _dir: dir,
    }
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

#[track_caller]
fn kms_code(result: Result<impl Sized, Error>) -> String {
    match result {
        Err(Error::Kms { failure, .. }) => failure
            .code()
            .map_or_else(|| failure.to_string(), |c| c.as_str().to_owned()),
        Err(other) => panic!("expected a KMS error, got {other}"),
        Ok(_) => panic!("expected a KMS error, got success"),
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

async fn grants(
    client: &aws_sdk_kms::Client,
    key: &str,
) -> Vec<aws_sdk_kms::types::GrantListEntry> {
    client
        .list_grants()
        .key_id(key)
        .send()
        .await
        .unwrap()
        .grants
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_is_a_grant_to_the_node_and_detach_retires_it() {
    let kms = start_kms().await;
    let operator_client = client(
        &kms.endpoint,
        "AKIAOPERATOR0000TEST",
        "operator-secret-for-volume-tests",
    )
    .await;
    let node_client = client(
        &kms.endpoint,
        "AKIANODEA00000000TEST",
        "node-a-secret-for-volume-tests",
    )
    .await;
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "operator only",
            "Effect": "Allow",
            "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:user/operator")},
            "Action": "kms:*",
            "Resource": "*"
        }]
    });
    let key_arn = operator_client
        .create_key()
        .policy(policy.to_string())
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .arn
        .unwrap();
    let operator = AwsKms::new(operator_client.clone());
    let node = AwsKms::new(node_client);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("engine-disk.img");
    let extra: BTreeMap<String, String> = [
        ("keyward:cluster".to_string(), "c-42".to_string()),
        ("keyward:class".to_string(), "engine-disk".to_string()),
    ]
    .into();
    let header = create_volume(
        &operator,
        &path,
        NewVolume {
            volume_id: None,
            size: 8 << 20,
            key_id: key_arn.clone(),
            encryption_context: extra.clone(),
        },
    )
    .await
    .unwrap();
    assert_eq!(header.key_arn, key_arn);
    assert_eq!(
        header.encryption_context[VOLUME_ID_CONTEXT_KEY],
        header.volume_id
    );
    assert_eq!(header.encryption_context["keyward:cluster"], "c-42");

    // Without a grant the node cannot open the key.
    let denied = node
        .decrypt(
            &key_arn,
            &header.wrapped_key,
            &header.encryption_context,
            None,
        )
        .await;
    assert_eq!(kms_code(denied), "AccessDeniedException");

    // Attach: one grant, to the node, Decrypt only, bound to this volume's id.
    let mut attachment = attach_volume(&operator, &node, &path, NODE).await.unwrap();
    let listed = grants(&operator_client, &key_arn).await;
    assert_eq!(listed.len(), 1);
    let grant = &listed[0];
    assert_eq!(grant.grant_id(), Some(attachment.grant_id()));
    assert_eq!(grant.grantee_principal(), Some(NODE));
    assert_eq!(grant.operations(), &[GrantOperation::Decrypt]);
    let subset = grant
        .constraints()
        .unwrap()
        .encryption_context_subset()
        .unwrap();
    assert_eq!(subset.len(), 1);
    assert_eq!(subset[VOLUME_ID_CONTEXT_KEY], header.volume_id);

    // The grant opens this volume's key and no other, even under the same KMS key.
    let other_path = dir.path().join("other.img");
    let other = create_volume(
        &operator,
        &other_path,
        NewVolume {
            volume_id: None,
            size: 1 << 20,
            key_id: key_arn.clone(),
            encryption_context: extra.clone(),
        },
    )
    .await
    .unwrap();
    // (Grants apply without their token once KMS has them; the embedded server
    // has them at once.) This volume's key opens for the node, the other's not.
    node.decrypt(
        &key_arn,
        &header.wrapped_key,
        &header.encryption_context,
        None,
    )
    .await
    .unwrap();
    let cross = node
        .decrypt(
            &key_arn,
            &other.wrapped_key,
            &other.encryption_context,
            None,
        )
        .await;
    assert_eq!(kms_code(cross), "AccessDeniedException");

    // The attached volume serves real clients.
    let volume = attachment.volume().clone();
    let tls_dir = tempfile::tempdir().unwrap();
    let cluster = TlsCluster::new(tls_dir.path(), "c-kms");
    let server = NbdServer::new(
        [(header.volume_id.clone(), volume.clone())],
        cluster.config(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let uri = nbds_uri(port, &header.volume_id, &cluster.creds);
    let target = qemu_tls_args(port, &header.volume_id, &cluster.creds);
    let _handle = server.spawn_tcp(listener);
    let t = target.clone();
    blocking(move || qemu_io_ok(&t, &["write -P 0x3c 777 9000"])).await;
    let t = target.clone();
    let out = blocking(move || qemu_io_ok(&t, &["read -P 0x3c 777 9000"])).await;
    assert!(!out.contains("verification failed"), "{out}");

    // Key disabled: the periodic re-check fails closed and the export stops.
    attachment.recheck(&node).await.unwrap();
    operator_client
        .disable_key()
        .key_id(&key_arn)
        .send()
        .await
        .unwrap();
    let refused = attachment.recheck(&node).await;
    assert_eq!(kms_code(refused), "DisabledException");
    assert!(!volume.is_attached());
    let u = uri.clone();
    let after = blocking(move || run("nbdinfo", &[&u])).await;
    assert!(
        !after.status.success(),
        "a detached export takes no new connections"
    );
    operator_client
        .enable_key()
        .key_id(&key_arn)
        .send()
        .await
        .unwrap();

    // Access back: the same grant opens the key again and the export serves again.
    attachment.reopen(&operator, &node).await.unwrap();
    assert!(volume.is_attached());
    let t = target.clone();
    let out = blocking(move || qemu_io_ok(&t, &["read -P 0x3c 777 9000"])).await;
    assert!(!out.contains("verification failed"), "{out}");

    // The grant revoked by the customer: the re-check fails closed; reopening
    // asks the operator for a fresh grant (and that is the only one left).
    let first_grant = attachment.grant_id().to_owned();
    operator_client
        .revoke_grant()
        .key_id(&key_arn)
        .grant_id(&first_grant)
        .send()
        .await
        .unwrap();
    assert_eq!(
        kms_code(attachment.recheck(&node).await),
        "AccessDeniedException"
    );
    assert!(!volume.is_attached());
    attachment.reopen(&operator, &node).await.unwrap();
    assert!(volume.is_attached());
    let listed = grants(&operator_client, &key_arn).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].grant_id(), Some(attachment.grant_id()));
    assert_ne!(attachment.grant_id(), first_grant);

    // Detach retires the grant: it is gone from ListGrants and the node is locked out again.
    attachment.detach(&node).await.unwrap();
    assert!(grants(&operator_client, &key_arn).await.is_empty());
    let stale = node
        .decrypt(
            &key_arn,
            &header.wrapped_key,
            &header.encryption_context,
            None,
        )
        .await;
    assert_eq!(kms_code(stale), "AccessDeniedException");

    // Re-attach after the key is back: the data written before is still there.
    let again = attach_volume(&operator, &node, &path, NODE).await.unwrap();
    let mut back = vec![0u8; 9000];
    again.volume().read_at(777, &mut back).unwrap();
    assert!(back.iter().all(|&b| b == 0x3c));
    again.detach(&node).await.unwrap();

    tampered_headers_are_refused_and_leave_no_grant(
        &operator,
        &node,
        &operator_client,
        &key_arn,
        &path,
    )
    .await;

    // Every step left a CloudTrail record.
    let mut trail = Vec::new();
    kms.engine.export_trail(&mut trail).unwrap();
    let trail = String::from_utf8(trail).unwrap();
    for event in [
        "GenerateDataKeyWithoutPlaintext",
        "CreateGrant",
        "Decrypt",
        "RevokeGrant",
        "RetireGrant",
        "DisableKey",
    ] {
        assert!(
            trail.contains(&format!("\"eventName\":\"{event}\"")),
            "no {event} in the trail"
        );
    }
}

async fn tampered_headers_are_refused_and_leave_no_grant(
    operator: &AwsKms,
    node: &AwsKms,
    operator_client: &aws_sdk_kms::Client,
    key_arn: &str,
    path: &Path,
) {
    let good = std::fs::read(path).unwrap();
    // The size, shrunk: structurally valid, caught by the header MAC after Decrypt.
    let mut shrunk = good.clone();
    let size = u64::from_le_bytes(shrunk[24..32].try_into().unwrap());
    shrunk[24..32].copy_from_slice(&(size / 2).to_le_bytes());
    std::fs::write(path, &shrunk).unwrap();
    let error = attach_volume(operator, node, path, NODE)
        .await
        .err()
        .expect("a tampered header is refused");
    assert!(matches!(error, Error::HeaderMacMismatch), "{error}");
    assert_eq!(std::fs::read(path).unwrap(), shrunk, "nothing written");
    // The wrapped key, one bit flipped: KMS refuses it.
    let mut flipped = good.clone();
    let id_len = u16::from_le_bytes([good[32], good[33]]) as usize;
    let arn_at = 34 + id_len;
    let arn_len = u16::from_le_bytes([good[arn_at], good[arn_at + 1]]) as usize;
    let blob_at = arn_at + 2 + arn_len + 2;
    flipped[blob_at + 10] ^= 1;
    std::fs::write(path, &flipped).unwrap();
    let error = attach_volume(operator, node, path, NODE)
        .await
        .err()
        .expect("a flipped wrapped key is refused");
    assert!(
        matches!(
            &error,
            Error::Kms {
                operation: "Decrypt",
                ..
            }
        ),
        "{error}"
    );
    std::fs::write(path, &good).unwrap();
    // Each failed attach retired the grant it had made.
    assert!(
        grants(operator_client, key_arn).await.is_empty(),
        "failed attaches left grants behind"
    );
}
