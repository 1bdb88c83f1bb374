//! Alarm rules: what the alarms of a cluster watch for, set per organization and per cluster.
//!
//! A rule ([`AlarmRule`]) holds only the fields its owner set. The rules a cluster's alarms are
//! evaluated with ([`EffectiveRules`]) take each field from the cluster's rule, else from its
//! organization's, else from the defaults ([`EffectiveRules::default`]); `enabled` is merged kind
//! by kind. A cluster without any rule has the defaults, so every external cluster has its
//! alarms from the start.
//!
//! A rule is read from JSON by [`AlarmRule::parse`], which checks every field and names the
//! field it refuses (out-of-range numbers, unknown alarm kinds or KMS operations, malformed
//! ARNs, unknown fields): a refused rule is never stored.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value as Json};

use crate::db::{Db, Value};
use crate::error::{Error, Result};

/// The alarms every cluster with a key has (each can be switched off by a rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlarmKind {
    /// The key is disabled.
    KeyDisabled,
    /// The key is scheduled for deletion: the customer's window to cancel.
    KeyDeletionScheduled,
    /// The key is deleted: the cluster's data is gone for good.
    KeyDeleted,
    /// KMS refused requests of the cluster's role for want of permission (count over a window
    /// above a threshold, optionally of some operations only).
    AccessDenied,
    /// The cluster cannot reach its data (any cause).
    ClusterKeyInaccessible,
    /// The key was used for data by a principal other than the cluster's role and the rule's
    /// allowed ones, as the key account's trail shows.
    UnexpectedPrincipal,
    /// The key's material rotated (informational: data stays readable); ALARM for the rule's
    /// window after the rotation was seen.
    KeyRotated,
    /// The key-health probe's projected cost per month is above the rule's budget.
    ProbeCostBudget,
}

impl AlarmKind {
    pub const ALL: [AlarmKind; 8] = [
        AlarmKind::KeyDisabled,
        AlarmKind::KeyDeletionScheduled,
        AlarmKind::KeyDeleted,
        AlarmKind::AccessDenied,
        AlarmKind::ClusterKeyInaccessible,
        AlarmKind::UnexpectedPrincipal,
        AlarmKind::KeyRotated,
        AlarmKind::ProbeCostBudget,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlarmKind::KeyDisabled => "key-disabled",
            AlarmKind::KeyDeletionScheduled => "key-deletion-scheduled",
            AlarmKind::KeyDeleted => "key-deleted",
            AlarmKind::AccessDenied => "access-denied",
            AlarmKind::ClusterKeyInaccessible => "cluster-key-inaccessible",
            AlarmKind::UnexpectedPrincipal => "unexpected-principal",
            AlarmKind::KeyRotated => "key-rotated",
            AlarmKind::ProbeCostBudget => "probe-cost-budget",
        }
    }

    pub fn parse(value: &str) -> Option<AlarmKind> {
        AlarmKind::ALL.into_iter().find(|k| k.as_str() == value)
    }
}

/// The access-denied alarm's threshold: from 1 to this many refused requests.
pub const MAX_ACCESS_DENIED_THRESHOLD: u64 = 1_000_000;
/// The access-denied window: from 10 s to one day.
pub const ACCESS_DENIED_WINDOW_SECONDS: (u64, u64) = (10, 86_400);
/// The key-rotated alarm's window: from 1 s to 30 days.
pub const ROTATION_WINDOW_SECONDS: (u64, u64) = (1, 30 * 86_400);
/// The probe-cost budget, in USD per month: above 0, at most this.
pub const MAX_PROBE_COST_BUDGET_USD: f64 = 100_000.0;
/// Allowed principals one rule may list at most.
pub const MAX_ALLOWED_PRINCIPALS: usize = 50;

/// The KMS operations a cluster's role makes, which the access-denied alarm can count.
pub const KMS_OPERATIONS: [&str; 11] = [
    "CreateGrant",
    "Decrypt",
    "DescribeKey",
    "Encrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "GetKeyPolicy",
    "ListGrants",
    "ReEncrypt",
    "RetireGrant",
    "RevokeGrant",
];

/// The unexpected-principal window: from 10 s to one day.
pub const PRINCIPAL_WINDOW_SECONDS: (u64, u64) = (10, 86_400);

const FIELDS: [&str; 9] = [
    "enabled",
    "access_denied_threshold",
    "access_denied_window_seconds",
    "access_denied_operations",
    "probe_cost_budget_usd",
    "allowed_principals",
    "principal_window_seconds",
    "trail_reader_role_arn",
    "rotation_window_seconds",
];

/// One organization's or one cluster's rule: only what its owner set.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AlarmRule {
    /// Alarm kinds switched on or off (a disabled alarm is not evaluated and not listed).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub enabled: BTreeMap<String, bool>,
    /// Refused requests in the window that raise access-denied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_denied_threshold: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_denied_window_seconds: Option<u64>,
    /// Only refusals of these operations count (all when unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_denied_operations: Option<Vec<String>>,
    /// The probe's projected cost per month above which probe-cost-budget raises.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe_cost_budget_usd: Option<f64>,
    /// Principals besides the cluster's role that may use its key without raising
    /// unexpected-principal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_principals: Option<Vec<String>>,
    /// How far back unexpected-principal looks in the key account's trail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal_window_seconds: Option<u64>,
    /// A role in the key's account that the platform's operator may assume (ExternalId: the
    /// organization id) and that allows `cloudtrail:LookupEvents`: how the platform reads the
    /// trail where KMS logs other principals' use of the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trail_reader_role_arn: Option<String>,
    /// How long key-rotated stays in ALARM after a rotation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation_window_seconds: Option<u64>,
}

/// The rules one cluster's alarms are evaluated with: every field decided.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EffectiveRules {
    /// Every alarm kind, on or off.
    pub enabled: BTreeMap<String, bool>,
    pub access_denied_threshold: u64,
    pub access_denied_window_seconds: u64,
    /// `None`: refusals of every operation count.
    pub access_denied_operations: Option<Vec<String>>,
    /// `None`: no budget, probe-cost-budget stays OK.
    pub probe_cost_budget_usd: Option<f64>,
    pub allowed_principals: Vec<String>,
    pub principal_window_seconds: u64,
    /// `None`: the platform cannot read the key account's trail; unexpected-principal is
    /// INSUFFICIENT_DATA.
    pub trail_reader_role_arn: Option<String>,
    pub rotation_window_seconds: u64,
}

impl Default for EffectiveRules {
    /// Every alarm on; access-denied at the first refusal in 5 minutes, any operation; no probe
    /// budget; no principal besides the cluster's role, over the last hour, and no trail reader;
    /// key-rotated for a day after a rotation.
    fn default() -> EffectiveRules {
        EffectiveRules {
            enabled: AlarmKind::ALL
                .iter()
                .map(|k| (k.as_str().to_owned(), true))
                .collect(),
            access_denied_threshold: 1,
            access_denied_window_seconds: 300,
            access_denied_operations: None,
            probe_cost_budget_usd: None,
            allowed_principals: Vec::new(),
            principal_window_seconds: 3600,
            trail_reader_role_arn: None,
            rotation_window_seconds: 86_400,
        }
    }
}

impl EffectiveRules {
    /// The defaults overridden by `organization`'s rule, then by `cluster`'s.
    pub fn merge(organization: &AlarmRule, cluster: &AlarmRule) -> EffectiveRules {
        let mut rules = EffectiveRules::default();
        for rule in [organization, cluster] {
            for (kind, on) in &rule.enabled {
                rules.enabled.insert(kind.clone(), *on);
            }
            if let Some(v) = rule.access_denied_threshold {
                rules.access_denied_threshold = v;
            }
            if let Some(v) = rule.access_denied_window_seconds {
                rules.access_denied_window_seconds = v;
            }
            if let Some(v) = &rule.access_denied_operations {
                rules.access_denied_operations = Some(v.clone());
            }
            if let Some(v) = rule.probe_cost_budget_usd {
                rules.probe_cost_budget_usd = Some(v);
            }
            if let Some(v) = &rule.allowed_principals {
                rules.allowed_principals = v.clone();
            }
            if let Some(v) = rule.principal_window_seconds {
                rules.principal_window_seconds = v;
            }
            if let Some(v) = &rule.trail_reader_role_arn {
                rules.trail_reader_role_arn = Some(v.clone());
            }
            if let Some(v) = rule.rotation_window_seconds {
                rules.rotation_window_seconds = v;
            }
        }
        rules
    }

    pub fn is_enabled(&self, kind: AlarmKind) -> bool {
        self.enabled.get(kind.as_str()).copied().unwrap_or(true)
    }

    /// The probe budget in micro-dollars.
    pub(crate) fn probe_budget_micro_usd(&self) -> Option<u64> {
        self.probe_cost_budget_usd
            .map(|usd| (usd * 1_000_000.0).round() as u64)
    }
}

/// What the API shows of a cluster's or an organization's rules.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RulesView {
    /// The organization's rule.
    pub organization: AlarmRule,
    /// The cluster's rule (absent for an organization's view).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<AlarmRule>,
    /// What the cluster's alarms are evaluated with (for an organization: what a cluster
    /// without a rule of its own gets).
    pub effective: EffectiveRules,
}

fn invalid(field: &str, why: impl std::fmt::Display) -> Error {
    Error::InvalidRequest(format!("alarm rule field {field}: {why}"))
}

impl AlarmRule {
    /// Reads and checks a rule: a JSON object of the fields to set (`null` leaves a field
    /// unset). Every error names the field.
    pub fn parse(json: &Json) -> Result<AlarmRule> {
        let Some(object) = json.as_object() else {
            return Err(Error::InvalidRequest(format!(
                "an alarm rule is a JSON object with the fields {}",
                FIELDS.join(", ")
            )));
        };
        if let Some(unknown) = object.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(Error::InvalidRequest(format!(
                "alarm rule field {unknown:?} is unknown; the fields are {}",
                FIELDS.join(", ")
            )));
        }
        let field = |name: &str| object.get(name).filter(|v| !v.is_null());
        let mut rule = AlarmRule::default();
        if let Some(enabled) = field("enabled") {
            rule.enabled = parse_enabled(enabled)?;
        }
        rule.access_denied_threshold = parse_int(
            object,
            "access_denied_threshold",
            (1, MAX_ACCESS_DENIED_THRESHOLD),
        )?;
        rule.access_denied_window_seconds = parse_int(
            object,
            "access_denied_window_seconds",
            ACCESS_DENIED_WINDOW_SECONDS,
        )?;
        rule.rotation_window_seconds =
            parse_int(object, "rotation_window_seconds", ROTATION_WINDOW_SECONDS)?;
        rule.principal_window_seconds =
            parse_int(object, "principal_window_seconds", PRINCIPAL_WINDOW_SECONDS)?;
        if let Some(arn) = field("trail_reader_role_arn") {
            let text = arn.as_str().unwrap_or_default();
            if !(principal_arn_ok(text)
                && text
                    .split(':')
                    .nth(5)
                    .is_some_and(|r| r.starts_with("role/")))
            {
                return Err(invalid(
                    "trail_reader_role_arn",
                    format!("{arn} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)"),
                ));
            }
            rule.trail_reader_role_arn = Some(text.to_owned());
        }
        if let Some(list) = field("access_denied_operations") {
            let names = parse_strings("access_denied_operations", list, KMS_OPERATIONS.len())?;
            for (i, name) in names.iter().enumerate() {
                if !KMS_OPERATIONS.contains(&name.as_str()) {
                    return Err(invalid(
                        &format!("access_denied_operations[{i}]"),
                        format!(
                            "{name:?} is not a KMS operation a cluster's role makes; they are {}",
                            KMS_OPERATIONS.join(", ")
                        ),
                    ));
                }
            }
            if names.is_empty() {
                return Err(invalid(
                    "access_denied_operations",
                    "an empty list would count nothing; leave the field out to count every \
                     operation",
                ));
            }
            rule.access_denied_operations = Some(names);
        }
        if let Some(budget) = field("probe_cost_budget_usd") {
            let usd = budget
                .as_f64()
                .filter(|v| v.is_finite() && *v > 0.0 && *v <= MAX_PROBE_COST_BUDGET_USD)
                .ok_or_else(|| {
                    invalid(
                        "probe_cost_budget_usd",
                        format!(
                            "{budget} is not a number of dollars above 0 and at most \
                             {MAX_PROBE_COST_BUDGET_USD}"
                        ),
                    )
                })?;
            rule.probe_cost_budget_usd = Some(usd);
        }
        if let Some(list) = field("allowed_principals") {
            let arns = parse_strings("allowed_principals", list, MAX_ALLOWED_PRINCIPALS)?;
            for (i, arn) in arns.iter().enumerate() {
                if !principal_arn_ok(arn) {
                    return Err(invalid(
                        &format!("allowed_principals[{i}]"),
                        format!(
                            "{arn:?} is not an IAM principal ARN \
                             (arn:aws:iam::<account>:role/<name>, arn:aws:iam::<account>:user/<name>, \
                             arn:aws:iam::<account>:root or \
                             arn:aws:sts::<account>:assumed-role/<role>/<session>)"
                        ),
                    ));
                }
            }
            rule.allowed_principals = Some(arns);
        }
        Ok(rule)
    }

    fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }

    /// A stored rule (checked when it was stored; checked again, so a rule a later build no
    /// longer accepts is an error rather than a silent default).
    fn from_stored(text: &str) -> Result<AlarmRule> {
        let json: Json = serde_json::from_str(text)
            .map_err(|e| Error::Internal(format!("alarm_rules holds bad JSON: {e}")))?;
        AlarmRule::parse(&json)
    }
}

fn parse_enabled(value: &Json) -> Result<BTreeMap<String, bool>> {
    let Some(map) = value.as_object() else {
        return Err(invalid(
            "enabled",
            "must be an object of alarm kind to true or false",
        ));
    };
    let mut enabled = BTreeMap::new();
    for (kind, on) in map {
        if AlarmKind::ALL.iter().all(|k| k.as_str() != kind) {
            return Err(invalid(
                &format!("enabled.{kind}"),
                format!(
                    "{kind:?} is not an alarm kind; the kinds are {}",
                    AlarmKind::ALL.map(AlarmKind::as_str).join(", ")
                ),
            ));
        }
        let Some(on) = on.as_bool() else {
            return Err(invalid(&format!("enabled.{kind}"), "must be true or false"));
        };
        enabled.insert(kind.clone(), on);
    }
    Ok(enabled)
}

fn parse_int(
    object: &Map<String, Json>,
    name: &str,
    (min, max): (u64, u64),
) -> Result<Option<u64>> {
    let Some(value) = object.get(name).filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    value
        .as_u64()
        .filter(|v| (min..=max).contains(v))
        .map(Some)
        .ok_or_else(|| {
            invalid(
                name,
                format!("{value} is not a whole number from {min} to {max}"),
            )
        })
}

fn parse_strings(name: &str, value: &Json, max: usize) -> Result<Vec<String>> {
    let Some(items) = value.as_array() else {
        return Err(invalid(name, "must be a list of strings"));
    };
    if items.len() > max {
        return Err(invalid(
            name,
            format!("{} entries, at most {max}", items.len()),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Some(text) = item.as_str() else {
            return Err(invalid(&format!("{name}[{i}]"), "must be a string"));
        };
        if out.iter().any(|o| o == text) {
            return Err(invalid(
                &format!("{name}[{i}]"),
                format!("{text:?} is listed twice"),
            ));
        }
        out.push(text.to_owned());
    }
    Ok(out)
}

/// `arn:<partition>:iam::<12 digits>:(role|user)/<path and name>`, `...:root`, or
/// `arn:<partition>:sts::<12 digits>:assumed-role/<role>/<session>`.
pub(crate) fn principal_arn_ok(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ["arn", partition, service, "", account, resource] = parts[..] else {
        return false;
    };
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 128
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-/".contains(&b))
    };
    let partition_ok = matches!(partition, "aws" | "aws-cn" | "aws-us-gov");
    let account_ok = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
    let resource_ok = match service {
        "iam" => {
            resource == "root"
                || resource
                    .strip_prefix("role/")
                    .or_else(|| resource.strip_prefix("user/"))
                    .is_some_and(|rest| name_ok(rest) && !rest.ends_with('/'))
        }
        "sts" => resource
            .strip_prefix("assumed-role/")
            .and_then(|rest| rest.split_once('/'))
            .is_some_and(|(role, session)| {
                name_ok(role) && name_ok(session) && !session.contains('/')
            }),
        _ => false,
    };
    partition_ok && account_ok && resource_ok
}

/// Where rules are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope<'a> {
    Organization(&'a str),
    Cluster(&'a str),
}

impl Scope<'_> {
    fn key(&self) -> (&'static str, &str) {
        match self {
            Scope::Organization(id) => ("organization", id),
            Scope::Cluster(id) => ("cluster", id),
        }
    }
}

/// The stored rules.
#[derive(Clone)]
pub(crate) struct RuleStore {
    db: Db,
}

impl RuleStore {
    pub(crate) fn new(db: Db) -> RuleStore {
        RuleStore { db }
    }

    /// The rule stored for `scope` (an empty one if none).
    pub(crate) async fn get(&self, scope: Scope<'_>) -> Result<AlarmRule> {
        let (kind, id) = scope.key();
        let row = self
            .db
            .query_opt(
                "SELECT rules FROM alarm_rules WHERE scope = $1 AND owner_id = $2",
                &[kind.into(), id.into()],
            )
            .await?;
        match row {
            Some(row) => AlarmRule::from_stored(&row.text("rules")?),
            None => Ok(AlarmRule::default()),
        }
    }

    /// Replaces the rule of `scope`; an empty rule deletes it.
    pub(crate) async fn set(&self, scope: Scope<'_>, rule: &AlarmRule, now_ms: i64) -> Result<()> {
        let (kind, id) = scope.key();
        if *rule == AlarmRule::default() {
            self.db
                .execute(
                    "DELETE FROM alarm_rules WHERE scope = $1 AND owner_id = $2",
                    &[kind.into(), id.into()],
                )
                .await?;
        } else {
            self.db
                .execute(
                    "INSERT INTO alarm_rules (scope, owner_id, rules, updated_at_ms) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (scope, owner_id) DO UPDATE \
                     SET rules = $3, updated_at_ms = $4",
                    &[
                        kind.into(),
                        id.into(),
                        rule.to_json().into(),
                        Value::Int(now_ms),
                    ],
                )
                .await?;
        }
        Ok(())
    }

    /// The organization's and the cluster's rules, and what they make together.
    pub(crate) async fn view(&self, org_id: &str, cluster_id: Option<&str>) -> Result<RulesView> {
        let organization = self.get(Scope::Organization(org_id)).await?;
        let cluster = match cluster_id {
            Some(id) => Some(self.get(Scope::Cluster(id)).await?),
            None => None,
        };
        let effective = EffectiveRules::merge(
            &organization,
            cluster.as_ref().unwrap_or(&AlarmRule::default()),
        );
        Ok(RulesView {
            organization,
            cluster,
            effective,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refused(body: Json) -> String {
        AlarmRule::parse(&body).unwrap_err().to_string()
    }

    #[test]
    fn a_full_rule_parses_and_round_trips() {
        let body = json!({
            "enabled": {"key-rotated": false},
            "access_denied_threshold": 5,
            "access_denied_window_seconds": 600,
            "access_denied_operations": ["Decrypt", "GenerateDataKey"],
            "probe_cost_budget_usd": 2.5,
            "allowed_principals": [
                "arn:aws:iam::444455556666:role/app",
                "arn:aws:sts::444455556666:assumed-role/app/s1",
                "arn:aws:iam::444455556666:root"
            ],
            "principal_window_seconds": 600,
            "trail_reader_role_arn": "arn:aws:iam::444455556666:role/keyward-trail-reader",
            "rotation_window_seconds": 3600
        });
        let rule = AlarmRule::parse(&body).unwrap();
        assert_eq!(rule.access_denied_threshold, Some(5));
        assert_eq!(AlarmRule::from_stored(&rule.to_json()).unwrap(), rule);
        assert_eq!(AlarmRule::parse(&json!({})).unwrap(), AlarmRule::default());
    }

    #[test]
    fn each_bad_field_is_named() {
        for (body, names) in [
            (json!({"threshold": 1}), "\"threshold\" is unknown"),
            (
                json!({"access_denied_threshold": 0}),
                "access_denied_threshold: 0",
            ),
            (
                json!({"access_denied_threshold": -3}),
                "access_denied_threshold",
            ),
            (
                json!({"access_denied_threshold": "5"}),
                "access_denied_threshold",
            ),
            (
                json!({"access_denied_window_seconds": 5}),
                "access_denied_window_seconds: 5",
            ),
            (
                json!({"rotation_window_seconds": 0}),
                "rotation_window_seconds",
            ),
            (
                json!({"enabled": {"key-stolen": true}}),
                "enabled.key-stolen",
            ),
            (
                json!({"enabled": {"key-rotated": "no"}}),
                "enabled.key-rotated",
            ),
            (
                json!({"access_denied_operations": ["Decrypt", "Sign"]}),
                "access_denied_operations[1]",
            ),
            (
                json!({"access_denied_operations": []}),
                "access_denied_operations",
            ),
            (json!({"probe_cost_budget_usd": 0}), "probe_cost_budget_usd"),
            (
                json!({"probe_cost_budget_usd": 1e9}),
                "probe_cost_budget_usd",
            ),
            (
                json!({"allowed_principals": ["arn:aws:iam::4444:role/x"]}),
                "allowed_principals[0]",
            ),
            (
                json!({"allowed_principals": ["arn:aws:iam::444455556666:role/a", "arn:aws:iam::444455556666:role/a"]}),
                "allowed_principals[1]",
            ),
            (
                json!({"allowed_principals": ["arn:aws:s3:::bucket"]}),
                "allowed_principals[0]",
            ),
            (
                json!({"trail_reader_role_arn": "arn:aws:iam::444455556666:user/u"}),
                "trail_reader_role_arn",
            ),
            (json!({"trail_reader_role_arn": 7}), "trail_reader_role_arn"),
            (
                json!({"principal_window_seconds": 86_401}),
                "principal_window_seconds",
            ),
            (json!([1]), "JSON object"),
        ] {
            let message = refused(body.clone());
            assert!(message.contains(names), "{body}: {message}");
        }
    }

    #[test]
    fn a_cluster_rule_overrides_the_organizations_which_overrides_the_defaults() {
        let org = AlarmRule::parse(&json!({
            "access_denied_threshold": 10,
            "access_denied_window_seconds": 60,
            "enabled": {"key-rotated": false, "probe-cost-budget": false}
        }))
        .unwrap();
        let cluster = AlarmRule::parse(&json!({
            "access_denied_threshold": 3,
            "enabled": {"probe-cost-budget": true}
        }))
        .unwrap();
        let rules = EffectiveRules::merge(&org, &cluster);
        assert_eq!(rules.access_denied_threshold, 3);
        assert_eq!(rules.access_denied_window_seconds, 60);
        assert_eq!(rules.rotation_window_seconds, 86_400);
        assert!(!rules.is_enabled(AlarmKind::KeyRotated));
        assert!(rules.is_enabled(AlarmKind::ProbeCostBudget));
        assert!(rules.is_enabled(AlarmKind::KeyDisabled));
        assert_eq!(
            EffectiveRules::merge(&AlarmRule::default(), &AlarmRule::default()),
            EffectiveRules::default()
        );
    }
}
