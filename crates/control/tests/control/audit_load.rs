//! The audit under load and over time: compaction folds old successful probes into hourly counts
//! and keeps every denied record; a flood of 10,000 denied requests of a cluster's role loses
//! nothing, and the access-denied alarm follows within an evaluation interval.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use keyward_control::{AlarmKind, AlarmState, AuditQuery, AuditRecord, AuditResult, ControlPlane};

use crate::harness::{self, org, ready_external_cluster};

/// Every record of the cluster in [from, to), however many: pages of at most 1,000, split by
/// time until each fits.
async fn all_records(
    plane: &ControlPlane,
    org: &str,
    cluster: &str,
    query: &AuditQuery,
    from: i64,
    to: i64,
) -> Vec<AuditRecord> {
    let mut out = Vec::new();
    let mut spans = vec![(from, to)];
    while let Some((a, b)) = spans.pop() {
        let page = plane
            .audit(
                &org.to_owned(),
                cluster,
                &AuditQuery {
                    from_ms: Some(a),
                    to_ms: Some(b),
                    limit: Some(1000),
                    ..query.clone()
                },
            )
            .await
            .unwrap();
        if page.len() < 1000 {
            out.extend(page);
        } else {
            assert!(b - a > 1, "more than 1,000 records in one millisecond");
            let mid = a + (b - a) / 2;
            spans.push((a, mid));
            spans.push((mid, b));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_bounds_the_rows_and_keeps_every_denied_record() {
    let env = harness::start().await;
    let plane = env
        .plane_with("plane", |c| c.audit_compaction_age = Duration::from_secs(1))
        .await;
    let acme = org(&plane, "acme").await;
    let (cluster, key) = ready_external_cluster(&env, &plane, &acme, "prod").await;
    // A few seconds of probes, some refused (Decrypt taken away), then access back.
    tokio::time::sleep(harness::PROBE_INTERVAL * 4).await;
    env.set_customer_policy(&key, &cluster.role_arn, false)
        .await;
    tokio::time::sleep(harness::PROBE_INTERVAL * 3).await;
    env.set_customer_policy(&key, &cluster.role_arn, true).await;
    plane.check_health_now(&acme.id, &cluster.id).await.unwrap();
    tokio::time::sleep(harness::PROBE_INTERVAL * 3).await;
    // Nothing more is written once the plane is stopped; then everything is past the age.
    plane.shutdown().await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let now = keyward_storage::vocab::now_ms();
    let everything = AuditQuery::default();
    let before = all_records(&plane, &acme.id, &cluster.id, &everything, 0, now).await;
    let routine = |r: &AuditRecord| r.probe && r.result == AuditResult::Success;
    let kept_before: BTreeSet<String> = before
        .iter()
        .filter(|r| !routine(r))
        .map(|r| r.event_id.clone())
        .collect();
    let folded = before.iter().filter(|r| routine(r)).count();
    let denied = before
        .iter()
        .filter(|r| r.error_code.as_deref() == Some("AccessDeniedException"))
        .count();
    assert!(folded >= 8, "{folded} successful probes");
    assert!(denied >= 2, "{denied} denied requests");
    let usage_before = plane
        .usage(&acme.id, &cluster.id, None, None)
        .await
        .unwrap();

    let (compacted, expired) = plane.maintain_audit_now().await.unwrap();
    assert_eq!((compacted, expired), (folded as u64, 0));

    let after = all_records(&plane, &acme.id, &cluster.id, &everything, 0, now).await;
    let kept_after: BTreeSet<String> = after.iter().map(|r| r.event_id.clone()).collect();
    // Every denied call, error and data-path request is still there one by one; no routine
    // probe is.
    assert_eq!(kept_after, kept_before);
    assert!(after.iter().all(|r| !routine(r)));
    // The folded probes are counted: per hour, operation, key and principal, summing to what
    // went, in a handful of rows.
    let counts = plane
        .audit_compacted(&acme.id, &cluster.id, &everything)
        .await
        .unwrap();
    assert_eq!(
        counts.iter().map(|c| c.requests).sum::<u64>(),
        folded as u64
    );
    let operations: BTreeSet<&str> = counts.iter().map(|c| c.operation.as_str()).collect();
    assert!(
        counts.len() <= 2 * operations.len(),
        "{} rows for {folded} records: {counts:#?}",
        counts.len()
    );
    assert!(counts
        .iter()
        .all(|c| c.probe && c.key_arn.as_deref() == Some(key.as_str())
            || c.operation == "DescribeKey"));
    // A query for failures only has nothing compacted; usage counts the same requests.
    let failures = AuditQuery {
        result: Some(AuditResult::Error),
        ..AuditQuery::default()
    };
    assert!(plane
        .audit_compacted(&acme.id, &cluster.id, &failures)
        .await
        .unwrap()
        .is_empty());
    let usage_after = plane
        .usage(&acme.id, &cluster.id, None, None)
        .await
        .unwrap();
    assert_eq!(usage_after.total, usage_before.total);
    assert_eq!(usage_after.operations, usage_before.operations);
    // Compacting again changes nothing.
    assert_eq!(plane.maintain_audit_now().await.unwrap(), (0, 0));
}

/// 10,000 requests of the cluster's role, refused by the key policy, in under a minute: the
/// audit holds all 10,000 and dropped none, and the access-denied alarm is raised within an
/// evaluation interval of the first while the evaluation stays well inside the interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_ten_thousand_denied_calls_loses_nothing_and_the_alarm_keeps_up() {
    const FLOOD: usize = 10_000;
    const CONCURRENCY: usize = 32;
    let env = harness::start().await;
    let plane = env.plane("plane").await;
    let acme = org(&plane, "acme").await;
    let (cluster, key) = ready_external_cluster(&env, &plane, &acme, "prod").await;
    plane.evaluate_alarms_now().await.unwrap();
    let kms = plane
        .role_kms_for_tests(&acme.id, &cluster.id)
        .await
        .unwrap();
    let blob = kms
        .generate_data_key()
        .key_id(&key)
        .number_of_bytes(32)
        .send()
        .await
        .unwrap()
        .ciphertext_blob()
        .unwrap()
        .clone();
    // The policy edit: Decrypt taken from the role.
    env.set_customer_policy(&key, &cluster.role_arn, false)
        .await;
    let start_ms = keyward_storage::vocab::now_ms();
    let started = Instant::now();
    let alarm_seen = {
        let plane = plane.clone();
        let org_id = acme.id.clone();
        let cluster_id = cluster.id.clone();
        tokio::spawn(async move {
            loop {
                let alarms = plane.alarms(&org_id, &cluster_id).await.unwrap();
                if alarms
                    .iter()
                    .any(|a| a.kind == AlarmKind::AccessDenied && a.state == AlarmState::Alarm)
                {
                    return started.elapsed();
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..CONCURRENCY {
        let kms = kms.clone();
        let blob = blob.clone();
        let key = key.clone();
        tasks.spawn(async move {
            let mut refused = 0;
            for _ in (worker..FLOOD).step_by(CONCURRENCY) {
                let answer = kms
                    .decrypt()
                    .key_id(&key)
                    .ciphertext_blob(blob.clone())
                    .send()
                    .await;
                let error = answer.expect_err("Decrypt is denied");
                let code = aws_sdk_kms::error::ProvideErrorMetadata::code(&error);
                assert_eq!(code, Some("AccessDeniedException"));
                refused += 1;
            }
            refused
        });
    }
    let mut refused = 0;
    while let Some(done) = tasks.join_next().await {
        refused += done.unwrap();
    }
    let flood_time = started.elapsed();
    assert_eq!(refused, FLOOD);
    assert!(
        flood_time < Duration::from_secs(60),
        "the flood took {flood_time:?}"
    );
    let raised_after = tokio::time::timeout(Duration::from_secs(5), alarm_seen)
        .await
        .expect("access-denied raised")
        .unwrap();
    // Raised by the operator's own evaluation, within one interval (plus its round's work).
    assert!(
        raised_after <= harness::PROBE_INTERVAL + Duration::from_secs(1),
        "access-denied raised {raised_after:?} after the first refusal"
    );

    // Nothing lost: every refused request is a record, and the queue dropped none.
    let end_ms = keyward_storage::vocab::now_ms() + 1;
    let denied = AuditQuery {
        operation: Some("Decrypt".into()),
        result: Some(AuditResult::Error),
        ..AuditQuery::default()
    };
    let records = all_records(&plane, &acme.id, &cluster.id, &denied, start_ms, end_ms).await;
    let flood: Vec<_> = records
        .iter()
        .filter(|r| !r.probe && r.error_code.as_deref() == Some("AccessDeniedException"))
        .collect();
    assert_eq!(flood.len(), FLOOD);
    assert_eq!(plane.audit_dropped(), 0);

    // The evaluation of every alarm with 10,000 refusals in its window stays inside the interval.
    let mut rounds = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        plane.evaluate_alarms_now().await.unwrap();
        rounds.push(t.elapsed());
    }
    rounds.sort();
    let (_, reason) = plane
        .alarms(&acme.id, &cluster.id)
        .await
        .unwrap()
        .into_iter()
        .find(|a| a.kind == AlarmKind::AccessDenied)
        .map(|a| (a.state, a.reason))
        .unwrap();
    assert!(reason.starts_with("1"), "{reason}");
    println!(
        "flood: {FLOOD} denied Decrypts in {flood_time:?} ({:.0}/s); access-denied raised after \
         {raised_after:?}; evaluation with them in the window: median {:?}, max {:?}",
        FLOOD as f64 / flood_time.as_secs_f64(),
        rounds[2],
        rounds[4]
    );
    assert!(rounds[4] < harness::PROBE_INTERVAL / 2, "{rounds:?}");
    plane.shutdown().await;
}
