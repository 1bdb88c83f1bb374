//! The per-cluster KMS audit: every KMS request made as a cluster's role is recorded, allowed
//! and denied alike, and a denied one is found here although the customer's trail never holds
//! it (AWS logs a denied cross-account call only in the caller's account).

use keyward_control::{AuditQuery, AuditResult, HealthStatus, OrgId};

use crate::harness::{self, org, ready_external_cluster, CUSTOMER, PLATFORM};

/// The embedded KMS's whole trail (every account), one parsed record per line.
fn trail(env: &harness::Env) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    env.server.engine().export_trail(&mut out).unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_of_the_role_is_audited_and_a_denied_one_only_here() {
    let env = harness::start().await;
    let plane = env.plane("plane").await;
    let acme = org(&plane, "acme").await;
    let (cluster, key) = ready_external_cluster(&env, &plane, &acme, "prod").await;
    plane
        .put_document(&acme.id, &cluster.id, "a.txt", &b"audited"[..])
        .await
        .unwrap();

    let all = plane
        .audit(&acme.id, &cluster.id, &AuditQuery::default())
        .await
        .unwrap();
    let session = format!(
        "arn:aws:sts::{PLATFORM}:assumed-role/keyward-cluster-{}/keyward-operator",
        cluster.id
    );
    assert!(all
        .iter()
        .all(|r| r.principal == session && r.cluster_id == cluster.id));
    // Newest first.
    assert!(all.windows(2).all(|w| w[0].time_ms >= w[1].time_ms));
    // The association checks, the provisioning and the document: each a successful request
    // under the key, with its request id.
    for operation in ["DescribeKey", "GenerateDataKey", "Decrypt", "CreateGrant"] {
        assert!(
            all.iter().any(|r| r.operation == operation
                && r.result == AuditResult::Success
                && r.key_arn.as_deref() == Some(key.as_str())
                && r.request_id.is_some()),
            "{operation} not audited: {all:#?}"
        );
    }
    let document_key = all
        .iter()
        .find(|r| {
            r.operation == "GenerateDataKey"
                && !r.probe
                && r.encryption_context.as_ref().is_some_and(|c| {
                    c["keyward:cluster"] == cluster.id.as_str() && c["keyward:class"] == "documents"
                })
        })
        .unwrap_or_else(|| panic!("the document's data key: {all:#?}"));
    assert_eq!(document_key.error_code, None);
    assert!(
        all.iter().any(|r| r.probe),
        "the association probes are probes"
    );

    // The customer takes Decrypt away; the next probe's Decrypt is denied.
    env.set_customer_policy(&key, &cluster.role_arn, false)
        .await;
    let health = plane.check_health_now(&acme.id, &cluster.id).await.unwrap();
    assert_eq!(health.status, HealthStatus::KeyInaccessible);
    let denied = plane
        .audit(
            &acme.id,
            &cluster.id,
            &AuditQuery {
                operation: Some("Decrypt".into()),
                result: Some(AuditResult::Error),
                ..AuditQuery::default()
            },
        )
        .await
        .unwrap();
    let record = denied.first().expect("the denied Decrypt is audited");
    assert_eq!(record.error_code.as_deref(), Some("AccessDeniedException"));
    assert_eq!(record.key_arn.as_deref(), Some(key.as_str()));
    assert!(record.probe);
    assert!(denied
        .iter()
        .all(|r| r.operation == "Decrypt" && r.result == AuditResult::Error));
    let request_id = record.request_id.clone().expect("KMS's request id");

    // The customer's trail does not hold it; the platform account's does, as on AWS.
    let trail = trail(&env);
    let same = |e: &&serde_json::Value| e["requestID"] == request_id.as_str();
    let copies: Vec<&serde_json::Value> = trail.iter().filter(same).collect();
    assert_eq!(copies.len(), 1, "{copies:#?}");
    assert_eq!(copies[0]["recipientAccountId"], PLATFORM);
    assert_eq!(copies[0]["errorCode"], "AccessDeniedException");
    assert!(!trail
        .iter()
        .any(|e| e["recipientAccountId"] == CUSTOMER && e["requestID"] == request_id.as_str()));

    // As CloudTrail would have it.
    let event = record.to_cloudtrail(&cluster.region);
    assert_eq!(event["eventName"], "Decrypt");
    assert_eq!(event["errorCode"], "AccessDeniedException");
    assert_eq!(event["userIdentity"]["arn"], session.as_str());
    assert_eq!(event["requestID"], request_id.as_str());

    // A time window and a limit narrow it; another organization sees nothing of it.
    let after = plane
        .audit(
            &acme.id,
            &cluster.id,
            &AuditQuery {
                from_ms: Some(record.time_ms + 1),
                ..AuditQuery::default()
            },
        )
        .await
        .unwrap();
    assert!(after.iter().all(|r| r.time_ms > record.time_ms));
    let one = plane
        .audit(
            &acme.id,
            &cluster.id,
            &AuditQuery {
                limit: Some(1),
                ..AuditQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    let globex = org(&plane, "globex").await;
    let other = plane
        .audit(&globex.id, &cluster.id, &AuditQuery::default())
        .await
        .unwrap_err();
    assert_eq!(other.code(), "not_found");
    let nobody: OrgId = "o-0000000000000000".to_owned();
    assert!(plane
        .audit(&nobody, &cluster.id, &AuditQuery::default())
        .await
        .is_err());
    assert_eq!(plane.audit_dropped(), 0);
    plane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_past_retention_are_deleted() {
    let env = harness::start().await;
    let dir = env.dir.path().join("short");
    let url = format!("sqlite:{}", dir.join("control.db").display());
    let mut config = env.config(&dir, &url);
    config.audit_retention = std::time::Duration::from_secs(2);
    let plane = keyward_control::ControlPlane::open(config).await.unwrap();
    let acme = org(&plane, "acme").await;
    let (cluster, _) = ready_external_cluster(&env, &plane, &acme, "prod").await;
    let before = plane
        .audit(&acme.id, &cluster.id, &AuditQuery::default())
        .await
        .unwrap();
    assert!(!before.is_empty());
    let oldest = before.last().unwrap().event_id.clone();
    harness::wait_for(
        "the oldest record to expire",
        std::time::Duration::from_secs(20),
        || async {
            !plane
                .audit(&acme.id, &cluster.id, &AuditQuery::default())
                .await
                .unwrap()
                .iter()
                .any(|r| r.event_id == oldest)
        },
    )
    .await;
    plane.shutdown().await;
}

/// The periodic probe of a healthy key is one `Decrypt` (the audit counts every request), and
/// that one request still sees revocation within an interval: here `kms:Decrypt` taken away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_key_costs_one_kms_request_per_probe_and_revocation_is_still_seen() {
    let env = harness::start().await;
    let plane = env.plane("plane").await;
    let acme = org(&plane, "acme").await;
    let (cluster, key) = ready_external_cluster(&env, &plane, &acme, "prod").await;
    let is_health_probe = |r: &keyward_control::AuditRecord| {
        r.probe
            && r.encryption_context
                .as_ref()
                .is_some_and(|c| c["keyward:probe"] == "key-health")
    };
    // Let the first full probe pass, then watch a few rounds.
    tokio::time::sleep(harness::PROBE_INTERVAL * 2).await;
    let start = keyward_storage::vocab::now_ms();
    tokio::time::sleep(harness::PROBE_INTERVAL * 4).await;
    let window = plane
        .audit(
            &acme.id,
            &cluster.id,
            &AuditQuery {
                from_ms: Some(start),
                ..AuditQuery::default()
            },
        )
        .await
        .unwrap();
    let probes: Vec<_> = window.iter().filter(|r| is_health_probe(r)).collect();
    assert!(probes.len() >= 2, "{window:#?}");
    assert!(
        probes
            .iter()
            .all(|r| r.operation == "Decrypt" && r.result == AuditResult::Success),
        "a healthy key's probe is one Decrypt: {probes:#?}"
    );

    // Decrypt taken away: the next periodic probe fails and names the cause.
    let since = keyward_storage::vocab::now_ms();
    env.set_customer_policy(&key, &cluster.role_arn, false)
        .await;
    harness::wait_for(
        "the periodic probe to see the revocation",
        harness::PROBE_INTERVAL * 2 + std::time::Duration::from_secs(1),
        || async {
            let c = plane.cluster(&acme.id, &cluster.id).await.unwrap();
            c.health.status == HealthStatus::KeyInaccessible && c.health.checked_at_ms >= since
        },
    )
    .await;
    let health = plane.cluster(&acme.id, &cluster.id).await.unwrap().health;
    assert_eq!(
        health.reason,
        Some(keyward_control::InaccessibleReason::AccessDenied)
    );
    plane.shutdown().await;
}
