//! Alarms on a cluster's key, evaluated continuously from what the platform itself observes —
//! the key health its probes establish, the KMS audit of the cluster's role, what `DescribeKey`
//! says of the key's material, the probe's projected cost — so the same code works against
//! real AWS, where the customer's CloudTrail cannot be read unless the customer lets it be.
//!
//! Every cluster with a key has the alarms of [`AlarmKind`], each `OK`, `ALARM` or
//! `INSUFFICIENT_DATA` as CloudWatch alarms are; every transition is recorded with its cause
//! (`alarm_transitions`), so "what happened to my key, and when" has an answer after the fact.
//! The operator evaluates all of them once per probe interval, so an alarm follows the health
//! change that causes it within one interval. What each watches for is set by the rules
//! (`alarm_rules.rs`: per organization, overridden per cluster, else the defaults); an alarm a
//! rule switches off is not evaluated and not listed.
//!
//! Where each alarm's facts come from:
//! - key-disabled, key-deletion-scheduled, key-deleted, cluster-key-inaccessible: the stored
//!   key health (`health.rs`);
//! - access-denied: the audit's refused requests of the role in the rule's window (of the rule's
//!   operations), against the rule's threshold — the platform's own record, so never short of
//!   data;
//! - key-rotated: `DescribeKey`'s `CurrentKeyMaterialId`, asked once per
//!   `key_material_check_interval` (hourly by default) and recorded (`key_materials`); a new
//!   material is a rotation, ALARM for the rule's window, then OK; informational, data stays
//!   readable. A KMS that does not report the material leaves it INSUFFICIENT_DATA;
//! - unexpected-principal: the key account's CloudTrail, read through a role the customer lends
//!   (`trail.rs`); without one, INSUFFICIENT_DATA with the reason and what to do;
//! - probe-cost-budget: [`crate::cost::probe_projection`] at the configured interval and prices
//!   against the rule's budget (none by default: OK).
//!
//! Not here: notifications of the transitions.

use serde::Serialize;

use crate::alarm_rules::{EffectiveRules, RuleStore};
use crate::cluster::Cluster;
use crate::cost::ProbeProjection;
use crate::db::{Db, Value};
use crate::error::{Error, Result};
use crate::health::{HealthStatus, InaccessibleReason};

/// How far back the access-denied alarm counts refused requests unless a rule says otherwise.
pub const ACCESS_DENIED_WINDOW_MS: i64 = 5 * 60 * 1000;
/// Refused requests in the window that raise the access-denied alarm unless a rule says otherwise.
pub const ACCESS_DENIED_THRESHOLD: usize = 1;

// The kinds are the rules' vocabulary, so they live with the rules (rules -> kinds, one way).
pub use crate::alarm_rules::AlarmKind;

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

/// What KMS has told the platform of the key's material (DescribeKey's `CurrentKeyMaterialId`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MaterialSeen {
    /// Not checked yet, or KMS did not say (the reason).
    Unknown(String),
    /// Seen; `rotated_at_ms` is when a new material was first seen (`None`: never).
    Seen { rotated_at_ms: Option<i64> },
}

/// What the key account's trail says of the principals that used the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PrincipalsSeen {
    /// The trail could not be read (the reason, for the alarm).
    Unreadable(String),
    /// Data operations on the key in the window by principals that are neither the cluster's
    /// role nor allowed: (principal ARN, operation, requests).
    Read {
        unexpected: Vec<(String, String, u64)>,
        window_seconds: u64,
    },
}

/// Everything one evaluation of a cluster's alarms is decided from.
pub(crate) struct Observed<'a> {
    pub(crate) rules: &'a EffectiveRules,
    /// Refused requests in the rule's window (of the rule's operations).
    pub(crate) denied_in_window: usize,
    /// The probe's projected cost per month at the configured interval.
    pub(crate) probe: &'a ProbeProjection,
    pub(crate) material: MaterialSeen,
    pub(crate) principals: PrincipalsSeen,
    pub(crate) now_ms: i64,
}

/// What one evaluation decides for each enabled alarm of a cluster.
fn decide(cluster: &Cluster, seen: &Observed<'_>) -> Vec<(AlarmKind, AlarmState, String)> {
    let health = &cluster.health;
    let rules = seen.rules;
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
    let threshold = usize::try_from(rules.access_denied_threshold).unwrap_or(usize::MAX);
    let denied = seen.denied_in_window >= threshold;
    let window = window_words(rules.access_denied_window_seconds);
    let of_operations = match &rules.access_denied_operations {
        Some(ops) => format!(" ({} only)", ops.join(", ")),
        None => String::new(),
    };
    let mut decided = vec![
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
            format!(
                "{} request(s) of the cluster's role refused with AccessDeniedException in the \
                 last {window}{of_operations}; the threshold is {}",
                seen.denied_in_window, rules.access_denied_threshold
            ),
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
    ];
    decided.push(match &seen.principals {
        PrincipalsSeen::Unreadable(why) => (
            AlarmKind::UnexpectedPrincipal,
            AlarmState::InsufficientData,
            why.clone(),
        ),
        PrincipalsSeen::Read {
            unexpected,
            window_seconds,
        } if unexpected.is_empty() => (
            AlarmKind::UnexpectedPrincipal,
            AlarmState::Ok,
            format!(
                "only the cluster's role and the allowed principals used key {key} in the last {}",
                window_words(*window_seconds)
            ),
        ),
        PrincipalsSeen::Read {
            unexpected,
            window_seconds,
        } => (
            AlarmKind::UnexpectedPrincipal,
            AlarmState::Alarm,
            format!(
                "key {key} used by principal(s) other than the cluster's role in the last {}: {}",
                window_words(*window_seconds),
                unexpected
                    .iter()
                    .map(|(who, op, n)| format!("{who} ({op} x{n})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
    });
    let rotation_window_ms =
        i64::try_from(rules.rotation_window_seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
    decided.push(match &seen.material {
        MaterialSeen::Unknown(why) => (
            AlarmKind::KeyRotated,
            AlarmState::InsufficientData,
            why.clone(),
        ),
        MaterialSeen::Seen {
            rotated_at_ms: Some(at),
        } if seen.now_ms - at < rotation_window_ms => (
            AlarmKind::KeyRotated,
            AlarmState::Alarm,
            format!(
                "the material of key {key} rotated (seen {}); new data keys are made under the \
                 new material, data under the old stays readable; this clears {} after the \
                 rotation",
                keyward_storage::vocab::iso8601(*at),
                window_words(rules.rotation_window_seconds)
            ),
        ),
        MaterialSeen::Seen { rotated_at_ms } => (
            AlarmKind::KeyRotated,
            AlarmState::Ok,
            match rotated_at_ms {
                Some(at) => format!(
                    "no rotation in the last {} (the last seen {})",
                    window_words(rules.rotation_window_seconds),
                    keyward_storage::vocab::iso8601(*at)
                ),
                None => "no rotation seen since the platform started watching the key".to_owned(),
            },
        ),
    });
    let cost = format!(
        "the key-health probe (one request every {} ms) costs {} USD a month ({} requests)",
        seen.probe.interval_ms, seen.probe.usd_per_month, seen.probe.requests_per_month
    );
    decided.push(match rules.probe_budget_micro_usd() {
        None => (
            AlarmKind::ProbeCostBudget,
            AlarmState::Ok,
            format!("{cost}; no budget is set"),
        ),
        Some(budget) if seen.probe.micro_usd_per_month > budget => (
            AlarmKind::ProbeCostBudget,
            AlarmState::Alarm,
            format!(
                "{cost}, above the budget of {} USD: lengthen the probe interval or raise the \
                 budget",
                crate::cost::usd(budget)
            ),
        ),
        Some(budget) => (
            AlarmKind::ProbeCostBudget,
            AlarmState::Ok,
            format!(
                "{cost}, within the budget of {} USD",
                crate::cost::usd(budget)
            ),
        ),
    });
    decided.retain(|(kind, _, _)| rules.is_enabled(*kind));
    decided
}

/// `300` as "5 minutes", `90` as "90 seconds".
fn window_words(seconds: u64) -> String {
    if seconds >= 3600 && seconds.is_multiple_of(3600) {
        format!("{} hour(s)", seconds / 3600)
    } else if seconds >= 60 && seconds.is_multiple_of(60) {
        format!("{} minute(s)", seconds / 60)
    } else {
        format!("{seconds} second(s)")
    }
}

/// The alarms' stored state.
#[derive(Clone)]
pub(crate) struct Alarms {
    db: Db,
    pub(crate) rules: RuleStore,
}

/// The key material last recorded for a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MaterialRow {
    pub(crate) key_arn: String,
    pub(crate) material_id: String,
    pub(crate) rotated_at_ms: Option<i64>,
    pub(crate) checked_at_ms: i64,
}

impl Alarms {
    pub(crate) fn new(db: Db) -> Alarms {
        Alarms {
            rules: RuleStore::new(db.clone()),
            db,
        }
    }

    /// The key material last recorded for the cluster.
    pub(crate) async fn material(&self, cluster_id: &str) -> Result<Option<MaterialRow>> {
        let row = self
            .db
            .query_opt(
                "SELECT key_arn, material_id, rotated_at_ms, checked_at_ms FROM key_materials \
                 WHERE cluster_id = $1",
                &[cluster_id.into()],
            )
            .await?;
        row.map(|row| {
            Ok(MaterialRow {
                key_arn: row.text("key_arn")?,
                material_id: row.text("material_id")?,
                rotated_at_ms: row.opt_int("rotated_at_ms")?,
                checked_at_ms: row.int("checked_at_ms")?,
            })
        })
        .transpose()
    }

    /// Records the material KMS reports current for the cluster's key at `now_ms`; a material
    /// other than the one recorded for the same key is a rotation, seen now. Another key (a key
    /// change) starts afresh. Returns when the last rotation was seen.
    pub(crate) async fn record_material(
        &self,
        cluster_id: &str,
        key_arn: &str,
        material_id: &str,
        now_ms: i64,
    ) -> Result<Option<i64>> {
        let before = self.material(cluster_id).await?;
        let rotated_at_ms = match &before {
            Some(b) if b.key_arn == key_arn && b.material_id != material_id => Some(now_ms),
            Some(b) if b.key_arn == key_arn => b.rotated_at_ms,
            _ => None,
        };
        self.db
            .execute(
                "INSERT INTO key_materials (cluster_id, key_arn, material_id, rotated_at_ms, \
                 checked_at_ms) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (cluster_id) DO UPDATE \
                 SET key_arn = $2, material_id = $3, rotated_at_ms = $4, checked_at_ms = $5",
                &[
                    cluster_id.into(),
                    key_arn.into(),
                    material_id.into(),
                    rotated_at_ms.into(),
                    now_ms.into(),
                ],
            )
            .await?;
        Ok(rotated_at_ms)
    }

    /// Evaluates every enabled alarm of `cluster` from `seen` and records the transitions;
    /// an alarm a rule switched off is forgotten (listed again, from INSUFFICIENT_DATA, when it
    /// is switched back on). Returns the transitions.
    pub(crate) async fn evaluate(
        &self,
        cluster: &Cluster,
        seen: &Observed<'_>,
    ) -> Result<Vec<AlarmTransition>> {
        let now_ms = seen.now_ms;
        let current = self.current(&cluster.id).await?;
        let mut statements = Vec::new();
        let mut transitions = Vec::new();
        let decided = decide(cluster, seen);
        for alarm in &current {
            if !decided.iter().any(|(kind, _, _)| *kind == alarm.kind) {
                statements.push((
                    "DELETE FROM alarms WHERE cluster_id = $1 AND kind = $2".to_owned(),
                    vec![cluster.id.as_str().into(), alarm.kind.as_str().into()],
                ));
            }
        }
        for (kind, state, reason) in decided {
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
                            crate::org::random_id("at-")?.into(),
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

    /// Forgets a deleted cluster's alarms, rules and key material (its transitions stay, as its
    /// audit does).
    pub(crate) async fn forget(&self, cluster_id: &str) -> Result<()> {
        self.db
            .transaction(vec![
                (
                    "DELETE FROM alarms WHERE cluster_id = $1".to_owned(),
                    vec![cluster_id.into()],
                ),
                (
                    "DELETE FROM alarm_rules WHERE scope = 'cluster' AND owner_id = $1".to_owned(),
                    vec![cluster_id.into()],
                ),
                (
                    "DELETE FROM key_materials WHERE cluster_id = $1".to_owned(),
                    vec![cluster_id.into()],
                ),
            ])
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
            disk_node: None,
        }
    }

    fn states(decided: &[(AlarmKind, AlarmState, String)]) -> Vec<(AlarmKind, AlarmState)> {
        decided.iter().map(|(k, s, _)| (*k, *s)).collect()
    }

    fn probe() -> ProbeProjection {
        crate::cost::probe_projection(
            std::time::Duration::from_secs(10),
            &crate::KmsPrices::default(),
        )
    }

    fn seen<'a>(
        rules: &'a EffectiveRules,
        probe: &'a ProbeProjection,
        denied: usize,
    ) -> Observed<'a> {
        Observed {
            rules,
            denied_in_window: denied,
            probe,
            material: MaterialSeen::Seen {
                rotated_at_ms: None,
            },
            principals: PrincipalsSeen::Read {
                unexpected: Vec::new(),
                window_seconds: 300,
            },
            now_ms: 1_000_000,
        }
    }

    #[test]
    fn each_health_raises_exactly_its_alarms() {
        use AlarmKind::*;
        use AlarmState::*;
        let rules = EffectiveRules::default();
        let probe = probe();
        let healthy = cluster(KeyHealth::healthy("k"));
        assert_eq!(
            states(&decide(&healthy, &seen(&rules, &probe, 0))),
            [
                (KeyDisabled, Ok),
                (KeyDeletionScheduled, Ok),
                (KeyDeleted, Ok),
                (AccessDenied, Ok),
                (ClusterKeyInaccessible, Ok),
                (UnexpectedPrincipal, Ok),
                (KeyRotated, Ok),
                (ProbeCostBudget, Ok),
            ]
        );
        let disabled = cluster(KeyHealth::inaccessible(
            InaccessibleReason::Disabled,
            "k is disabled".into(),
        ));
        let decided = states(&decide(&disabled, &seen(&rules, &probe, 0)));
        assert_eq!(decided[0], (KeyDisabled, Alarm));
        assert_eq!(decided[1], (KeyDeletionScheduled, Ok));
        assert_eq!(decided[4], (ClusterKeyInaccessible, Alarm));
        let pending = cluster(KeyHealth::inaccessible(
            InaccessibleReason::PendingDeletion,
            "deletion date 2027-01-01".into(),
        ));
        let decided = decide(&pending, &seen(&rules, &probe, 2));
        assert_eq!(decided[1].1, Alarm);
        assert!(decided[1].2.contains("2027-01-01"), "{}", decided[1].2);
        assert_eq!(decided[3].1, Alarm);
        assert!(decided[3].2.starts_with("2 request(s)"));
        let unknown = cluster(KeyHealth::unknown());
        assert!(decide(&unknown, &seen(&rules, &probe, 0))[..5]
            .iter()
            .filter(|(k, _, _)| *k != AccessDenied)
            .all(|(_, s, _)| *s == InsufficientData));
    }

    fn one(
        cluster: &Cluster,
        seen: &Observed<'_>,
        kind: AlarmKind,
    ) -> Option<(AlarmState, String)> {
        decide(cluster, seen)
            .into_iter()
            .find(|(k, _, _)| *k == kind)
            .map(|(_, s, reason)| (s, reason))
    }

    #[test]
    fn rules_set_thresholds_budgets_windows_and_switch_alarms_off() {
        use AlarmKind::*;
        use AlarmState::*;
        let healthy = cluster(KeyHealth::healthy("k"));
        let probe = probe();
        let mut rules = EffectiveRules {
            access_denied_threshold: 3,
            rotation_window_seconds: 60,
            ..EffectiveRules::default()
        };
        let state = |rules: &EffectiveRules, denied: usize, kind: AlarmKind| {
            one(&healthy, &seen(rules, &probe, denied), kind).unwrap().0
        };
        assert_eq!(state(&rules, 2, AccessDenied), Ok);
        assert_eq!(state(&rules, 3, AccessDenied), Alarm);
        // The default 10 s probe costs 0.7776 USD a month: above 0.50, within 1.
        rules.probe_cost_budget_usd = Some(0.5);
        let (s, reason) = one(&healthy, &seen(&rules, &probe, 0), ProbeCostBudget).unwrap();
        assert_eq!(s, Alarm);
        assert!(
            reason.contains("0.777600") && reason.contains("0.500000"),
            "{reason}"
        );
        rules.probe_cost_budget_usd = Some(1.0);
        assert_eq!(state(&rules, 0, ProbeCostBudget), Ok);
        // Rotated 10 s ago: ALARM inside a 60 s window; 61 s ago: OK.
        let mut observed = seen(&rules, &probe, 0);
        observed.material = MaterialSeen::Seen {
            rotated_at_ms: Some(observed.now_ms - 10_000),
        };
        assert_eq!(one(&healthy, &observed, KeyRotated).unwrap().0, Alarm);
        observed.material = MaterialSeen::Seen {
            rotated_at_ms: Some(observed.now_ms - 61_000),
        };
        assert_eq!(one(&healthy, &observed, KeyRotated).unwrap().0, Ok);
        observed.principals = PrincipalsSeen::Unreadable("cannot read the trail".into());
        assert_eq!(
            one(&healthy, &observed, UnexpectedPrincipal),
            Some((InsufficientData, "cannot read the trail".into()))
        );
        observed.principals = PrincipalsSeen::Read {
            unexpected: vec![(
                "arn:aws:iam::444455556666:user/eve".into(),
                "Decrypt".into(),
                2,
            )],
            window_seconds: 300,
        };
        let (s, reason) = one(&healthy, &observed, UnexpectedPrincipal).unwrap();
        assert_eq!(s, Alarm);
        assert!(reason.contains("user/eve (Decrypt x2)"), "{reason}");
        let mut off = rules.clone();
        off.enabled.insert("key-rotated".into(), false);
        assert_eq!(one(&healthy, &seen(&off, &probe, 0), KeyRotated), None);
    }
}
