//! Alarms on a cluster's key, evaluated continuously from what the platform itself observes —
//! the key health its probes establish and the KMS audit of the cluster's role — so the same
//! code works against real AWS, where the customer's CloudTrail cannot be read.
//!
//! Every cluster with a key has the default alarms ([`AlarmKind`]), each `OK`, `ALARM` or
//! `INSUFFICIENT_DATA` as CloudWatch alarms are; every transition is recorded with its cause
//! (`alarm_transitions`), so "what happened to my key, and when" has an answer after the fact.
//! The operator evaluates all of them once per probe interval, so an alarm
//! follows the health change that causes it within one interval.
//!
//! Not here (yet): rules per cluster or organization, notifications, the unexpected-principal
//! and rotation alarms.

use serde::Serialize;

use crate::cluster::Cluster;
use crate::db::{Db, Value};
use crate::error::{Error, Result};
use crate::health::{HealthStatus, InaccessibleReason};

/// How far back the access-denied alarm counts refused requests.
pub const ACCESS_DENIED_WINDOW_MS: i64 = 5 * 60 * 1000;
/// Refused requests in the window that raise the access-denied alarm.
pub const ACCESS_DENIED_THRESHOLD: usize = 1;

/// The alarms every cluster with a key has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlarmKind {
    /// The key is disabled.
    KeyDisabled,
    /// The key is scheduled for deletion: the customer's window to cancel.
    KeyDeletionScheduled,
    /// The key is deleted: the cluster's data is gone for good.
    KeyDeleted,
    /// KMS refused a request of the cluster's role for want of permission.
    AccessDenied,
    /// The cluster cannot reach its data (any cause).
    ClusterKeyInaccessible,
}

impl AlarmKind {
    pub const ALL: [AlarmKind; 5] = [
        AlarmKind::KeyDisabled,
        AlarmKind::KeyDeletionScheduled,
        AlarmKind::KeyDeleted,
        AlarmKind::AccessDenied,
        AlarmKind::ClusterKeyInaccessible,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlarmKind::KeyDisabled => "key-disabled",
            AlarmKind::KeyDeletionScheduled => "key-deletion-scheduled",
            AlarmKind::KeyDeleted => "key-deleted",
            AlarmKind::AccessDenied => "access-denied",
            AlarmKind::ClusterKeyInaccessible => "cluster-key-inaccessible",
        }
    }

    fn parse(value: &str) -> Option<AlarmKind> {
        AlarmKind::ALL.into_iter().find(|k| k.as_str() == value)
    }
}

/// CloudWatch's three alarm states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AlarmState {
    #[serde(rename = "OK")]
    Ok,
    #[serde(rename = "ALARM")]
    Alarm,
    #[serde(rename = "INSUFFICIENT_DATA")]
    InsufficientData,
}

impl AlarmState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmState::Ok => "OK",
            AlarmState::Alarm => "ALARM",
            AlarmState::InsufficientData => "INSUFFICIENT_DATA",
        }
    }

    fn parse(value: &str) -> Option<AlarmState> {
        [
            AlarmState::Ok,
            AlarmState::Alarm,
            AlarmState::InsufficientData,
        ]
        .into_iter()
        .find(|s| s.as_str() == value)
    }
}

/// One alarm of a cluster, as last evaluated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alarm {
    pub kind: AlarmKind,
    pub state: AlarmState,
    /// Why it is in its state, in words a person can act on.
    pub reason: String,
    /// When it entered its state, unix milliseconds.
    pub since_ms: i64,
}

/// One change of an alarm's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlarmTransition {
    pub kind: AlarmKind,
    pub from: AlarmState,
    pub to: AlarmState,
    pub reason: String,
    pub at_ms: i64,
}

/// What one evaluation decides for each alarm of a cluster, from its stored health and the
/// access-denied refusals the audit holds in the window.
fn decide(cluster: &Cluster, denied_in_window: usize) -> Vec<(AlarmKind, AlarmState, String)> {
    let health = &cluster.health;
    let key = cluster.key_arn.as_deref().unwrap_or("(none)");
    let unknown = health.status == HealthStatus::Unknown;
    let is = |reason: InaccessibleReason| {
        health.status == HealthStatus::KeyInaccessible && health.reason == Some(reason)
    };
    let state_of = |on: bool| {
        if unknown {
            AlarmState::InsufficientData
        } else if on {
            AlarmState::Alarm
        } else {
            AlarmState::Ok
        }
    };
    let because = |on: bool, alarm: &str, ok: &str| {
        if unknown {
            format!("key {key} not probed yet")
        } else if on {
            format!("{alarm}: {}", health.message)
        } else {
            ok.to_owned()
        }
    };
    let disabled = is(InaccessibleReason::Disabled);
    let scheduled = is(InaccessibleReason::PendingDeletion);
    let deleted = health.status == HealthStatus::KeyDeleted;
    let inaccessible = matches!(
        health.status,
        HealthStatus::KeyInaccessible | HealthStatus::KeyDeleted
    );
    let denied = denied_in_window >= ACCESS_DENIED_THRESHOLD;
    vec![
        (
            AlarmKind::KeyDisabled,
            state_of(disabled),
            because(disabled, "the key is disabled", "the key is not disabled"),
        ),
        (
            AlarmKind::KeyDeletionScheduled,
            state_of(scheduled),
            because(
                scheduled,
                "the key is scheduled for deletion",
                "no deletion is scheduled",
            ),
        ),
        (
            AlarmKind::KeyDeleted,
            state_of(deleted),
            because(deleted, "the key is deleted", "the key exists"),
        ),
        (
            AlarmKind::AccessDenied,
            // The audit is the platform's own record: it always has data.
            if denied {
                AlarmState::Alarm
            } else {
                AlarmState::Ok
            },
            if denied {
                format!(
                    "{denied_in_window} request(s) of the cluster's role refused with \
                     AccessDeniedException in the last {} minutes",
                    ACCESS_DENIED_WINDOW_MS / 60_000
                )
            } else {
                format!(
                    "no request refused for want of permission in the last {} minutes",
                    ACCESS_DENIED_WINDOW_MS / 60_000
                )
            },
        ),
        (
            AlarmKind::ClusterKeyInaccessible,
            state_of(inaccessible),
            because(
                inaccessible,
                "the cluster's data is locked",
                "the cluster reaches its data",
            ),
        ),
    ]
}

/// The alarms' stored state.
#[derive(Clone)]
pub(crate) struct Alarms {
    db: Db,
}

impl Alarms {
    pub(crate) fn new(db: Db) -> Alarms {
        Alarms { db }
    }

    /// Evaluates every alarm of `cluster` now (`now_ms`, wall time) and records the
    /// transitions. Returns them. The audit's queue should be flushed first.
    pub(crate) async fn evaluate(
        &self,
        audit: &crate::audit::AuditLog,
        cluster: &Cluster,
        now_ms: i64,
    ) -> Result<Vec<AlarmTransition>> {
        let denied = audit
            .count_denied(&cluster.id, now_ms - ACCESS_DENIED_WINDOW_MS)
            .await?;
        let current = self.current(&cluster.id).await?;
        let mut statements = Vec::new();
        let mut transitions = Vec::new();
        for (kind, state, reason) in decide(cluster, denied) {
            let before = current.iter().find(|a| a.kind == kind);
            match before {
                Some(alarm) if alarm.state == state => {
                    if alarm.reason != reason {
                        statements.push((
                            "UPDATE alarms SET reason = $3 WHERE cluster_id = $1 AND kind = $2"
                                .to_owned(),
                            vec![
                                cluster.id.as_str().into(),
                                kind.as_str().into(),
                                reason.into(),
                            ],
                        ));
                    }
                }
                _ => {
                    let from = before.map_or(AlarmState::InsufficientData, |a| a.state);
                    statements.push((
                        "INSERT INTO alarms (cluster_id, kind, state, reason, since_ms) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (cluster_id, kind) DO UPDATE \
                         SET state = $3, reason = $4, since_ms = $5"
                            .to_owned(),
                        vec![
                            cluster.id.as_str().into(),
                            kind.as_str().into(),
                            state.as_str().into(),
                            reason.as_str().into(),
                            now_ms.into(),
                        ],
                    ));
                    // The first evaluation of a new cluster records where each alarm starts.
                    statements.push((
                        "INSERT INTO alarm_transitions (id, cluster_id, kind, from_state, \
                         to_state, reason, at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                            .to_owned(),
                        vec![
                            transition_id()?.into(),
                            cluster.id.as_str().into(),
                            kind.as_str().into(),
                            from.as_str().into(),
                            state.as_str().into(),
                            reason.as_str().into(),
                            now_ms.into(),
                        ],
                    ));
                    transitions.push(AlarmTransition {
                        kind,
                        from,
                        to: state,
                        reason,
                        at_ms: now_ms,
                    });
                }
            }
        }
        if !statements.is_empty() {
            self.db.transaction(statements).await?;
        }
        Ok(transitions)
    }

    /// The cluster's alarms as last evaluated (none before the first evaluation).
    pub(crate) async fn current(&self, cluster_id: &str) -> Result<Vec<Alarm>> {
        let rows = self
            .db
            .query(
                "SELECT kind, state, reason, since_ms FROM alarms WHERE cluster_id = $1 \
                 ORDER BY kind",
                &[cluster_id.into()],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(Alarm {
                    kind: kind_of(&row.text("kind")?)?,
                    state: state_of(&row.text("state")?)?,
                    reason: row.text("reason")?,
                    since_ms: row.int("since_ms")?,
                })
            })
            .collect()
    }

    /// The cluster's transitions, newest first, at most `limit`.
    pub(crate) async fn history(
        &self,
        cluster_id: &str,
        limit: usize,
    ) -> Result<Vec<AlarmTransition>> {
        let rows = self
            .db
            .query(
                &format!(
                    "SELECT kind, from_state, to_state, reason, at_ms FROM alarm_transitions \
                     WHERE cluster_id = $1 ORDER BY at_ms DESC, id DESC LIMIT {}",
                    limit.clamp(1, 1000)
                ),
                &[Value::from(cluster_id)],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(AlarmTransition {
                    kind: kind_of(&row.text("kind")?)?,
                    from: state_of(&row.text("from_state")?)?,
                    to: state_of(&row.text("to_state")?)?,
                    reason: row.text("reason")?,
                    at_ms: row.int("at_ms")?,
                })
            })
            .collect()
    }

    /// Forgets a deleted cluster's alarms (its transitions stay, as its audit does).
    pub(crate) async fn forget(&self, cluster_id: &str) -> Result<()> {
        self.db
            .execute(
                "DELETE FROM alarms WHERE cluster_id = $1",
                &[cluster_id.into()],
            )
            .await?;
        Ok(())
    }
}

fn kind_of(value: &str) -> Result<AlarmKind> {
    AlarmKind::parse(value)
        .ok_or_else(|| Error::Internal(format!("alarms holds an unknown kind {value:?}")))
}

fn state_of(value: &str) -> Result<AlarmState> {
    AlarmState::parse(value)
        .ok_or_else(|| Error::Internal(format!("alarms holds an unknown state {value:?}")))
}

fn transition_id() -> Result<String> {
    let mut bytes = [0u8; 12];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| Error::internal("the random generator failed"))?;
    Ok(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::KeyHealth;

    fn cluster(health: KeyHealth) -> Cluster {
        Cluster {
            id: "c-1".into(),
            name: "prod".into(),
            region: "us-east-1".into(),
            encryption: crate::cluster::Encryption::External,
            role_arn: "arn:aws:iam::111122223333:role/keyward/keyward-cluster-c-1".into(),
            key_arn: Some("arn:aws:kms:us-east-1:444455556666:key/k".into()),
            state: crate::cluster::ClusterState::Ready,
            health,
            rewrap: None,
            failure: None,
            created_at_ms: 0,
        }
    }

    fn states(decided: &[(AlarmKind, AlarmState, String)]) -> Vec<(AlarmKind, AlarmState)> {
        decided.iter().map(|(k, s, _)| (*k, *s)).collect()
    }

    #[test]
    fn each_health_raises_exactly_its_alarms() {
        use AlarmKind::*;
        use AlarmState::*;
        let healthy = cluster(KeyHealth::healthy("k"));
        assert_eq!(
            states(&decide(&healthy, 0)),
            [
                (KeyDisabled, Ok),
                (KeyDeletionScheduled, Ok),
                (KeyDeleted, Ok),
                (AccessDenied, Ok),
                (ClusterKeyInaccessible, Ok)
            ]
        );
        let disabled = cluster(KeyHealth::inaccessible(
            InaccessibleReason::Disabled,
            "k is disabled".into(),
        ));
        assert_eq!(
            states(&decide(&disabled, 0)),
            [
                (KeyDisabled, Alarm),
                (KeyDeletionScheduled, Ok),
                (KeyDeleted, Ok),
                (AccessDenied, Ok),
                (ClusterKeyInaccessible, Alarm)
            ]
        );
        let pending = cluster(KeyHealth::inaccessible(
            InaccessibleReason::PendingDeletion,
            "deletion date 2027-01-01".into(),
        ));
        let decided = decide(&pending, 2);
        assert_eq!(decided[1].1, Alarm);
        assert!(decided[1].2.contains("2027-01-01"), "{}", decided[1].2);
        assert_eq!(decided[3].1, Alarm);
        assert!(decided[3].2.starts_with("2 request(s)"));
        let unknown = cluster(KeyHealth::unknown());
        assert!(decide(&unknown, 0)
            .iter()
            .filter(|(k, _, _)| *k != AccessDenied)
            .all(|(_, s, _)| *s == InsufficientData));
    }
}
