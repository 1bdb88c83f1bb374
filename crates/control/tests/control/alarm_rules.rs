//! Alarm rules per organization and per cluster, and the alarms they drive from real events:
//! refused requests counted by operation and threshold, the probe's cost against a budget, an
//! on-demand rotation of the key, and another principal using the key as the key account's
//! trail shows it.

use std::time::Duration;

use keyward_control::{AlarmKind, AlarmState, ControlPlane, Organization};
use serde_json::json;

use crate::harness::{self, org, read_document, ready_external_cluster, Env, CUSTOMER, PLATFORM};

async fn settle(plane: &ControlPlane, org: &Organization, cluster: &str) {
    plane.check_health_now(&org.id, cluster).await.unwrap();
    plane.evaluate_alarms_now().await.unwrap();
}

async fn alarm(
    plane: &ControlPlane,
    org: &Organization,
    cluster: &str,
    kind: AlarmKind,
) -> Option<(AlarmState, String)> {
    plane
        .alarms(&org.id, cluster)
        .await
        .unwrap()
        .into_iter()
        .find(|a| a.kind == kind)
        .map(|a| (a.state, a.reason))
}

async fn state(
    plane: &ControlPlane,
    org: &Organization,
    cluster: &str,
    kind: AlarmKind,
) -> AlarmState {
    alarm(plane, org, cluster, kind)
        .await
        .unwrap_or_else(|| panic!("{kind:?} is not listed"))
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_rule_is_refused_naming_its_field_and_nothing_is_stored() {
    let env: Env = harness::start().await;
    let plane = env.plane("plane").await;
    let acme = org(&plane, "acme").await;
    let cluster = harness::external_cluster(&plane, &acme, "prod").await;
    let stored = plane
        .set_cluster_alarm_rules(
            &acme.id,
            &cluster.id,
            &json!({"access_denied_threshold": 4}),
        )
        .await
        .unwrap();
    assert_eq!(stored.effective.access_denied_threshold, 4);
    let org_stored = plane
        .set_org_alarm_rules(&acme.id, &json!({"rotation_window_seconds": 60}))
        .await
        .unwrap();
    for (bad, field) in [
        (
            json!({"access_denied_threshold": 0}),
            "access_denied_threshold",
        ),
        (
            json!({"access_denied_window_seconds": 100_000}),
            "access_denied_window_seconds",
        ),
        (
            json!({"enabled": {"key-stolen": false}}),
            "enabled.key-stolen",
        ),
        (
            json!({"access_denied_operations": ["Decrypt", "Sign"]}),
            "access_denied_operations[1]",
        ),
        (
            json!({"allowed_principals": ["arn:aws:iam::12:role/x"]}),
            "allowed_principals[0]",
        ),
        (
            json!({"trail_reader_role_arn": "role/x"}),
            "trail_reader_role_arn",
        ),
        (
            json!({"probe_cost_budget_usd": -1}),
            "probe_cost_budget_usd",
        ),
        (
            json!({"access_denied_threshold": 2, "colour": "red"}),
            "\"colour\"",
        ),
    ] {
        let refused = plane
            .set_cluster_alarm_rules(&acme.id, &cluster.id, &bad)
            .await
            .unwrap_err();
        assert_eq!(refused.code(), "invalid_request", "{bad}");
        assert!(refused.to_string().contains(field), "{bad}: {refused}");
        let refused = plane.set_org_alarm_rules(&acme.id, &bad).await.unwrap_err();
        assert!(refused.to_string().contains(field), "{bad}: {refused}");
    }
    // Nothing of the refused rules was stored, at either level.
    let now = plane
        .cluster_alarm_rules(&acme.id, &cluster.id)
        .await
        .unwrap();
    assert_eq!(now.cluster, stored.cluster);
    assert_eq!(now.organization, org_stored.organization);
    assert_eq!(now.effective.access_denied_threshold, 4);
    assert_eq!(now.effective.rotation_window_seconds, 60);
    // Another organization can neither read nor set the cluster's rule.
    let globex = org(&plane, "globex").await;
    for refused in [
        plane
            .cluster_alarm_rules(&globex.id, &cluster.id)
            .await
            .unwrap_err(),
        plane
            .set_cluster_alarm_rules(&globex.id, &cluster.id, &json!({}))
            .await
            .unwrap_err(),
    ] {
        assert_eq!(refused.code(), "not_found");
    }
    assert_eq!(
        plane
            .cluster_alarm_rules(&acme.id, &cluster.id)
            .await
            .unwrap(),
        now
    );
    plane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_rule_overrides_its_organizations_which_overrides_the_defaults() {
    let env = harness::start().await;
    let plane = env.plane("plane").await;
    let acme = org(&plane, "acme").await;
    let (cluster, key) = ready_external_cluster(&env, &plane, &acme, "prod").await;
    let (other, _) = ready_external_cluster(&env, &plane, &acme, "staging").await;
    // The organization: only refused GenerateDataKey requests count; key-rotated off.
    plane
        .set_org_alarm_rules(
            &acme.id,
            &json!({
                "access_denied_operations": ["GenerateDataKey"],
                "enabled": {"key-rotated": false}
            }),
        )
        .await
        .unwrap();
    // Decrypt taken from prod's role: its refused requests are Decrypts.
    env.set_customer_policy(&key, &cluster.role_arn, false)
        .await;
    settle(&plane, &acme, &cluster.id).await;
    settle(&plane, &acme, &cluster.id).await;
    assert_eq!(
        state(&plane, &acme, &cluster.id, AlarmKind::AccessDenied).await,
        AlarmState::Ok
    );
    assert_eq!(
        alarm(&plane, &acme, &cluster.id, AlarmKind::KeyRotated).await,
        None
    );
    assert_eq!(
        alarm(&plane, &acme, &other.id, AlarmKind::KeyRotated).await,
        None
    );
    // The cluster's rule: Decrypts count, key-rotated on again; the other cluster keeps the
    // organization's.
    let view = plane
        .set_cluster_alarm_rules(
            &acme.id,
            &cluster.id,
            &json!({"access_denied_operations": ["Decrypt"], "enabled": {"key-rotated": true}}),
        )
        .await
        .unwrap();
    assert_eq!(
        view.effective.access_denied_operations,
        Some(vec!["Decrypt".to_owned()])
    );
    plane.evaluate_alarms_now().await.unwrap();
    let (denied, reason) = alarm(&plane, &acme, &cluster.id, AlarmKind::AccessDenied)
        .await
        .unwrap();
    assert_eq!(denied, AlarmState::Alarm, "{reason}");
    assert!(reason.contains("(Decrypt only)"), "{reason}");
    assert!(alarm(&plane, &acme, &cluster.id, AlarmKind::KeyRotated)
        .await
        .is_some());
    assert_eq!(
        alarm(&plane, &acme, &other.id, AlarmKind::KeyRotated).await,
        None
    );
    // A threshold above what was refused: OK again.
    plane
        .set_cluster_alarm_rules(
            &acme.id,
            &cluster.id,
            &json!({"access_denied_operations": ["Decrypt"], "access_denied_threshold": 1_000_000}),
        )
        .await
        .unwrap();
    plane.evaluate_alarms_now().await.unwrap();
    assert_eq!(
        state(&plane, &acme, &cluster.id, AlarmKind::AccessDenied).await,
        AlarmState::Ok
    );
    // Every change is a recorded transition with its cause.
    let history = plane
        .alarm_history(&acme.id, &cluster.id, 200)
        .await
        .unwrap();
    assert!(history.iter().any(|t| t.kind == AlarmKind::AccessDenied
        && t.from == AlarmState::Alarm
        && t.to == AlarmState::Ok
        && t.reason.contains("the threshold is 1000000")));
    plane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_cost_alarm_compares_the_probes_monthly_cost_with_the_budget() {
    let env = harness::start().await;
    let plane = env.plane("plane").await;
    let acme = org(&plane, "acme").await;
    let (cluster, _) = ready_external_cluster(&env, &plane, &acme, "prod").await;
    settle(&plane, &acme, &cluster.id).await;
    let (ok, reason) = alarm(&plane, &acme, &cluster.id, AlarmKind::ProbeCostBudget)
        .await
        .unwrap();
    assert_eq!(ok, AlarmState::Ok);
    assert!(reason.contains("no budget is set"), "{reason}");
    // One probe a second: 2,592,000 requests in 30 days at $0.03 per 10,000 = $7.776.
    let report = plane
        .usage(&acme.id, &cluster.id, None, None)
        .await
        .unwrap();
    assert_eq!(report.probe_cost.micro_usd_per_month, 7_776_000);
    plane
        .set_org_alarm_rules(&acme.id, &json!({"probe_cost_budget_usd": 5}))
        .await
        .unwrap();
    plane.evaluate_alarms_now().await.unwrap();
    let (over, reason) = alarm(&plane, &acme, &cluster.id, AlarmKind::ProbeCostBudget)
        .await
        .unwrap();
    assert_eq!(over, AlarmState::Alarm);
    assert!(
        reason.contains("7.776000 USD") && reason.contains("5.000000 USD"),
        "{reason}"
    );
    plane
        .set_cluster_alarm_rules(&acme.id, &cluster.id, &json!({"probe_cost_budget_usd": 10}))
        .await
        .unwrap();
    plane.evaluate_alarms_now().await.unwrap();
    assert_eq!(
        state(&plane, &acme, &cluster.id, AlarmKind::ProbeCostBudget).await,
        AlarmState::Ok
    );
    plane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_on_demand_rotation_raises_key_rotated_for_its_window_and_data_stays_readable() {
    let env = harness::start().await;
    let plane = env
        .plane_with("plane", |c| {
            c.key_material_check_interval = Duration::from_millis(500)
        })
        .await;
    let acme = org(&plane, "acme").await;
    let (cluster, key) = ready_external_cluster(&env, &plane, &acme, "prod").await;
    plane
        .set_cluster_alarm_rules(
            &acme.id,
            &cluster.id,
            &json!({"rotation_window_seconds": 3}),
        )
        .await
        .unwrap();
    plane
        .put_document(&acme.id, &cluster.id, "before.txt", &b"old material"[..])
        .await
        .unwrap();
    settle(&plane, &acme, &cluster.id).await;
    let (ok, reason) = alarm(&plane, &acme, &cluster.id, AlarmKind::KeyRotated)
        .await
        .unwrap();
    assert_eq!(ok, AlarmState::Ok, "{reason}");

    env.customer
        .rotate_key_on_demand()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    let rotated_at = std::time::Instant::now();
    // The next material check (one interval at most) sees the new material.
    harness::wait_for("key-rotated ALARM", Duration::from_secs(3), || async {
        plane.evaluate_alarms_now().await.unwrap();
        state(&plane, &acme, &cluster.id, AlarmKind::KeyRotated).await == AlarmState::Alarm
    })
    .await;
    let (_, reason) = alarm(&plane, &acme, &cluster.id, AlarmKind::KeyRotated)
        .await
        .unwrap();
    assert!(
        reason.contains("rotated") && reason.contains(&key),
        "{reason}"
    );
    // Informational: nothing else raised, the data under the old material reads, new data writes.
    for kind in [
        AlarmKind::KeyDisabled,
        AlarmKind::ClusterKeyInaccessible,
        AlarmKind::AccessDenied,
    ] {
        assert_eq!(
            state(&plane, &acme, &cluster.id, kind).await,
            AlarmState::Ok,
            "{kind:?}"
        );
    }
    assert_eq!(
        read_document(&plane, &acme.id, &cluster.id, "before.txt").await,
        b"old material"
    );
    plane
        .put_document(&acme.id, &cluster.id, "after.txt", &b"new material"[..])
        .await
        .unwrap();
    assert_eq!(
        read_document(&plane, &acme.id, &cluster.id, "after.txt").await,
        b"new material"
    );
    // After the rule's window it is OK again, and both changes are recorded.
    harness::wait_for(
        "key-rotated OK after the window",
        Duration::from_secs(8),
        || async {
            plane.evaluate_alarms_now().await.unwrap();
            state(&plane, &acme, &cluster.id, AlarmKind::KeyRotated).await == AlarmState::Ok
        },
    )
    .await;
    assert!(rotated_at.elapsed() >= Duration::from_secs(2));
    let history = plane
        .alarm_history(&acme.id, &cluster.id, 100)
        .await
        .unwrap();
    let rotated: Vec<_> = history
        .iter()
        .filter(|t| t.kind == AlarmKind::KeyRotated)
        .map(|t| (t.from, t.to))
        .collect();
    assert_eq!(
        rotated[..2],
        [
            (AlarmState::Alarm, AlarmState::Ok),
            (AlarmState::Ok, AlarmState::Alarm)
        ]
    );
    plane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_principal_using_the_key_raises_unexpected_principal_from_the_key_accounts_trail() {
    let env = harness::start().await;
    let plane = env.plane("plane").await;
    let acme = org(&plane, "acme").await;
    let (cluster, key) = ready_external_cluster(&env, &plane, &acme, "prod").await;
    settle(&plane, &acme, &cluster.id).await;
    // Without a way to read the customer's trail: no data, and the reason says what to do.
    let (state0, reason) = alarm(&plane, &acme, &cluster.id, AlarmKind::UnexpectedPrincipal)
        .await
        .unwrap();
    assert_eq!(state0, AlarmState::InsufficientData);
    assert!(
        reason.contains(&format!("cannot read the CloudTrail of account {CUSTOMER}"))
            && reason.contains("trail_reader_role_arn")
            && reason.contains(&acme.id),
        "{reason}"
    );

    // The customer lets the platform's operator read its trail: a role in the key's account.
    let trust = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"AWS": format!("arn:aws:iam::{PLATFORM}:user/keyward-operator")},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"sts:ExternalId": acme.id}}
        }]
    });
    let reader = env
        .customer_iam
        .create_role()
        .role_name("keyward-trail-reader")
        .assume_role_policy_document(trust.to_string())
        .send()
        .await
        .unwrap()
        .role()
        .unwrap()
        .arn()
        .to_owned();
    env.customer_iam
        .put_role_policy()
        .role_name("keyward-trail-reader")
        .policy_name("lookup")
        .policy_document(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Action": "cloudtrail:LookupEvents", "Resource": "*"}]})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    plane
        .set_cluster_alarm_rules(
            &acme.id,
            &cluster.id,
            &json!({"trail_reader_role_arn": reader}),
        )
        .await
        .unwrap();
    plane.evaluate_alarms_now().await.unwrap();
    let (read, reason) = alarm(&plane, &acme, &cluster.id, AlarmKind::UnexpectedPrincipal)
        .await
        .unwrap();
    assert_eq!(
        read,
        AlarmState::Ok,
        "only the cluster's role used the key: {reason}"
    );

    // The customer's root makes a data key under the cluster's key.
    env.customer
        .generate_data_key()
        .key_id(&key)
        .number_of_bytes(32)
        .send()
        .await
        .unwrap();
    plane.evaluate_alarms_now().await.unwrap();
    let root = format!("arn:aws:iam::{CUSTOMER}:root");
    let (raised, reason) = alarm(&plane, &acme, &cluster.id, AlarmKind::UnexpectedPrincipal)
        .await
        .unwrap();
    assert_eq!(raised, AlarmState::Alarm, "{reason}");
    assert!(
        reason.contains(&format!("{root} (GenerateDataKey x1)")),
        "{reason}"
    );

    // Allowed by the rule: OK again.
    plane
        .set_cluster_alarm_rules(
            &acme.id,
            &cluster.id,
            &json!({"trail_reader_role_arn": reader, "allowed_principals": [root]}),
        )
        .await
        .unwrap();
    plane.evaluate_alarms_now().await.unwrap();
    assert_eq!(
        state(&plane, &acme, &cluster.id, AlarmKind::UnexpectedPrincipal).await,
        AlarmState::Ok
    );
    // A reader the operator may not assume (the wrong ExternalId): no data, and why.
    let globex = org(&plane, "globex").await;
    let (other, _) = ready_external_cluster(&env, &plane, &globex, "other").await;
    plane
        .set_cluster_alarm_rules(
            &globex.id,
            &other.id,
            &json!({"trail_reader_role_arn": reader}),
        )
        .await
        .unwrap();
    plane.evaluate_alarms_now().await.unwrap();
    let (blind, reason) = alarm(&plane, &globex, &other.id, AlarmKind::UnexpectedPrincipal)
        .await
        .unwrap();
    assert_eq!(blind, AlarmState::InsufficientData);
    assert!(reason.contains("could not be read as"), "{reason}");
    plane.shutdown().await;
}
