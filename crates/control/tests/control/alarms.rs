//! Alarms from real events: the customer disables the key, schedules its deletion, takes
//! `kms:Decrypt` from the cluster's role — each raises its alarms within an evaluation, every
//! transition is recorded with its cause, and each clears when the customer undoes it.

use keyward_control::{AlarmKind, AlarmState, ControlPlane, HealthStatus, Organization};

use crate::harness::{self, org, ready_external_cluster, Env};

async fn states(
    plane: &ControlPlane,
    org: &Organization,
    cluster: &str,
) -> Vec<(AlarmKind, AlarmState)> {
    plane
        .alarms(&org.id, cluster)
        .await
        .unwrap()
        .iter()
        .map(|a| (a.kind, a.state))
        .collect()
}

/// Probes the key now, then evaluates the alarms (as the operator does each interval).
async fn settle(plane: &ControlPlane, org: &Organization, cluster: &str) {
    plane.check_health_now(&org.id, cluster).await.unwrap();
    plane.evaluate_alarms_now().await.unwrap();
}

fn state_of(all: &[(AlarmKind, AlarmState)], kind: AlarmKind) -> AlarmState {
    all.iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, s)| *s)
        .unwrap_or_else(|| panic!("{kind:?} missing from {all:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_key_event_raises_its_alarms_and_each_clears_when_undone() {
    let env: Env = harness::start().await;
    let plane = env.plane("plane").await;
    let acme = org(&plane, "acme").await;
    let (cluster, key) = ready_external_cluster(&env, &plane, &acme, "prod").await;
    settle(&plane, &acme, &cluster.id).await;
    let all = states(&plane, &acme, &cluster.id).await;
    assert_eq!(all.len(), AlarmKind::ALL.len());
    // Every alarm OK but unexpected-principal, which has no trail to read by default.
    assert!(
        all.iter()
            .all(|(k, s)| *s == AlarmState::Ok || *k == AlarmKind::UnexpectedPrincipal),
        "{all:?}"
    );
    assert_eq!(
        state_of(&all, AlarmKind::UnexpectedPrincipal),
        AlarmState::InsufficientData
    );

    // Disabled: key-disabled and cluster-key-inaccessible, nothing else.
    env.customer
        .disable_key()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    settle(&plane, &acme, &cluster.id).await;
    let all = states(&plane, &acme, &cluster.id).await;
    assert_eq!(state_of(&all, AlarmKind::KeyDisabled), AlarmState::Alarm);
    assert_eq!(
        state_of(&all, AlarmKind::ClusterKeyInaccessible),
        AlarmState::Alarm
    );
    assert_eq!(
        state_of(&all, AlarmKind::KeyDeletionScheduled),
        AlarmState::Ok
    );
    let history = plane
        .alarm_history(&acme.id, &cluster.id, 50)
        .await
        .unwrap();
    let raised = history
        .iter()
        .find(|t| t.kind == AlarmKind::KeyDisabled && t.to == AlarmState::Alarm)
        .expect("the transition is recorded");
    assert_eq!(raised.from, AlarmState::Ok);
    assert!(
        raised.reason.contains("disabled") && raised.reason.contains(&key),
        "{}",
        raised.reason
    );
    env.customer.enable_key().key_id(&key).send().await.unwrap();
    settle(&plane, &acme, &cluster.id).await;
    let all = states(&plane, &acme, &cluster.id).await;
    assert!(
        all.iter()
            .all(|(k, s)| *s == AlarmState::Ok || *k == AlarmKind::UnexpectedPrincipal),
        "{all:?}"
    );

    // Deletion scheduled: the alarm names the date; cancelled (and enabled), it clears.
    env.customer
        .schedule_key_deletion()
        .key_id(&key)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    settle(&plane, &acme, &cluster.id).await;
    let alarms = plane.alarms(&acme.id, &cluster.id).await.unwrap();
    let scheduled = alarms
        .iter()
        .find(|a| a.kind == AlarmKind::KeyDeletionScheduled)
        .unwrap();
    assert_eq!(scheduled.state, AlarmState::Alarm);
    assert!(
        scheduled.reason.contains("deletion date"),
        "{}",
        scheduled.reason
    );
    env.customer
        .cancel_key_deletion()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    env.customer.enable_key().key_id(&key).send().await.unwrap();
    settle(&plane, &acme, &cluster.id).await;
    assert_eq!(
        state_of(
            &states(&plane, &acme, &cluster.id).await,
            AlarmKind::KeyDeletionScheduled
        ),
        AlarmState::Ok
    );

    // Decrypt taken away: the role's refused requests raise access-denied.
    env.set_customer_policy(&key, &cluster.role_arn, false)
        .await;
    settle(&plane, &acme, &cluster.id).await;
    let all = states(&plane, &acme, &cluster.id).await;
    assert_eq!(state_of(&all, AlarmKind::AccessDenied), AlarmState::Alarm);
    let health = plane.cluster(&acme.id, &cluster.id).await.unwrap().health;
    assert_eq!(health.status, HealthStatus::KeyInaccessible);

    // Another organization sees none of it.
    let globex = org(&plane, "globex").await;
    assert_eq!(
        plane
            .alarms(&globex.id, &cluster.id)
            .await
            .unwrap_err()
            .code(),
        "not_found"
    );
    assert_eq!(
        plane
            .alarm_history(&globex.id, &cluster.id, 10)
            .await
            .unwrap_err()
            .code(),
        "not_found"
    );
    plane.shutdown().await;
}
