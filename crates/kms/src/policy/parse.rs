//! Parsing and validation of policy documents into their compiled form.
//!
//! Grammar (IAM JSON policy reference, as KMS accepts it):
//! ```text
//! policy    = { "Version"?: "2012-10-17" | "2008-10-17", "Id"?: string,
//!               "Statement": statement | [statement, ...] }
//! statement = { "Sid"?: string, "Effect": "Allow" | "Deny",
//!               ("Principal" | "NotPrincipal"): principal,      (key policies: required;
//!                                                                identity policies: forbidden)
//!               ("Action" | "NotAction"): string | [string, ...],
//!               ("Resource" | "NotResource"): string | [string, ...],
//!               "Condition"?: { operator: { key: value | [value, ...] } } }
//! principal = "*" | { ("AWS" | "Service" | "Federated" | "CanonicalUser"): string | [string, ...] }
//! ```

use serde_json::{Map, Value};

use super::condition::{parse_conditions, Condition};
use super::pattern::Pattern;
use super::{PolicyError, MAX_POLICY_BYTES};

/// The policy language version named in the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyVersion {
    V2012_10_17,
    V2008_10_17,
}

/// A parsed, validated, compiled policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    version: PolicyVersion,
    id: Option<Box<str>>,
    statements: Box<[Statement]>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Statement {
    pub(crate) sid: Option<Box<str>>,
    pub(crate) deny: bool,
    /// None in identity policies.
    pub(crate) principals: Option<Principals>,
    actions: ActionSet,
    /// Bit i set when the action element covers `KMS_ACTIONS[i]`: evaluation of a known action
    /// is one bit test instead of a walk over the patterns.
    action_mask: u64,
    resources: ResourceSet,
    pub(crate) conditions: Box<[Condition]>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Principals {
    pub(crate) negated: bool,
    pub(crate) entries: Box<[PrincipalEntry]>,
}

/// One principal named by a policy, classified once.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PrincipalEntry {
    /// `"*"` or `{"AWS": "*"}`.
    Any,
    /// `"111122223333"` or `arn:aws:iam::111122223333:root`.
    Account(Box<str>),
    /// An IAM user; `id` is its unique id as of when the policy was saved.
    User { arn: Box<str>, id: Option<Box<str>> },
    /// An IAM role; matches every session of the role whose id is `id`.
    Role { arn: Box<str>, id: Option<Box<str>> },
    /// One role session, `arn:aws:sts::A:assumed-role/R/S`.
    Session(Box<str>),
    /// A unique id (`AIDA...`, `AROA...`), as AWS shows a deleted principal.
    UniqueId(Box<str>),
    /// `{"Service": "..."}`.
    Service(Box<str>),
    /// Federated, CanonicalUser and federated-user principals: valid, never our callers.
    Unmatchable,
}

#[derive(Debug, Clone, PartialEq)]
struct ActionPattern {
    /// Lowercased service prefix, e.g. `kms`; None for `"*"`.
    service: Option<Box<str>>,
    /// Lowercased action-name pattern.
    name: Pattern,
}

#[derive(Debug, Clone, PartialEq)]
struct ActionSet {
    negated: bool,
    patterns: Box<[ActionPattern]>,
}

#[derive(Debug, Clone, PartialEq)]
struct ResourceSet {
    /// `"*"` is among the (not negated) patterns: every resource matches.
    any: bool,
    negated: bool,
    patterns: Box<[Pattern]>,
}

/// Every KMS action (API operation or permission), sorted, so that a request's action can be
/// found by binary search and tested against a statement's precomputed [`Statement`] mask.
const KMS_ACTIONS: [&str; 55] = [
    "CancelKeyDeletion",
    "ConnectCustomKeyStore",
    "CreateAlias",
    "CreateCustomKeyStore",
    "CreateGrant",
    "CreateKey",
    "Decrypt",
    "DeleteAlias",
    "DeleteCustomKeyStore",
    "DeleteImportedKeyMaterial",
    "DeriveSharedSecret",
    "DescribeCustomKeyStores",
    "DescribeKey",
    "DisableKey",
    "DisableKeyRotation",
    "DisconnectCustomKeyStore",
    "EnableKey",
    "EnableKeyRotation",
    "Encrypt",
    "GenerateDataKey",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "GenerateDataKeyWithoutPlaintext",
    "GenerateMac",
    "GenerateRandom",
    "GetKeyPolicy",
    "GetKeyRotationStatus",
    "GetParametersForImport",
    "GetPublicKey",
    "ImportKeyMaterial",
    "ListAliases",
    "ListGrants",
    "ListKeyPolicies",
    "ListKeyRotations",
    "ListKeys",
    "ListResourceTags",
    "ListRetirableGrants",
    "PutKeyPolicy",
    "ReEncryptFrom",
    "ReEncryptTo",
    "ReplicateKey",
    "RetireGrant",
    "RevokeGrant",
    "RotateKeyOnDemand",
    "ScheduleKeyDeletion",
    "Sign",
    "SynchronizeMultiRegionKey",
    "TagResource",
    "UntagResource",
    "UpdateAlias",
    "UpdateCustomKeyStore",
    "UpdateKeyDescription",
    "UpdatePrimaryRegion",
    "Verify",
    "VerifyMac",
];

/// The index of a KMS action spelled as in `X-Amz-Target` (exact case), for the mask test;
/// None for other spellings and unknown actions, which fall back to the patterns. Candidates are
/// bucketed by length so a lookup is one or two byte comparisons, not a binary search.
pub(crate) fn kms_action_index(action: &str) -> Option<u8> {
    static BY_LEN: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    let by_len = BY_LEN.get_or_init(|| {
        let longest = KMS_ACTIONS.iter().map(|a| a.len()).max().unwrap_or(0);
        let mut table = vec![Vec::new(); longest + 1];
        for (i, a) in KMS_ACTIONS.iter().enumerate() {
            table[a.len()].push(i as u8);
        }
        table
    });
    by_len
        .get(action.len())?
        .iter()
        .copied()
        .find(|&i| KMS_ACTIONS[usize::from(i)].as_bytes() == action.as_bytes())
}

/// The request's action with its index in [`KMS_ACTIONS`] (KMS actions only), looked up once
/// per evaluation.
pub(crate) struct ActionKey<'a> {
    service: &'a str,
    name: &'a str,
    index: Option<u8>,
}

impl<'a> ActionKey<'a> {
    pub(crate) fn new(service: &'a str, name: &'a str) -> ActionKey<'a> {
        ActionKey {
            service,
            name,
            index: if service == "kms" {
                kms_action_index(name)
            } else {
                None
            },
        }
    }
}

impl Statement {
    /// Whether the statement covers the request's KMS action (e.g. `Decrypt`),
    /// case-insensitively: a bit test for the known actions (looked up once per evaluation),
    /// the patterns otherwise.
    #[inline]
    pub(crate) fn action_matches(&self, action: &ActionKey<'_>) -> bool {
        match action.index {
            Some(i) => self.action_mask & (1u64 << i) != 0,
            None => self.action_matches_slow(action.service, action.name),
        }
    }

    fn action_matches_slow(&self, service: &str, action: &str) -> bool {
        let any = self.actions.patterns.iter().any(|p| {
            p.service
                .as_deref()
                .is_none_or(|s| s.eq_ignore_ascii_case(service))
                && p.name.matches(action, true)
        });
        any != self.actions.negated
    }

    #[inline]
    pub(crate) fn resource_matches(&self, resource: &str) -> bool {
        if self.resources.any {
            return true;
        }
        let any = self
            .resources
            .patterns
            .iter()
            .any(|p| p.matches(resource, false));
        any != self.resources.negated
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Key,
    Identity,
    Trust,
}

impl Policy {
    /// Parses a key policy (a resource-based policy: every statement needs `Principal` or
    /// `NotPrincipal`).
    pub fn parse(json: &str) -> Result<Policy, PolicyError> {
        parse(json, Kind::Key)
    }

    /// Parses an IAM identity policy (no `Principal` allowed).
    pub fn parse_identity(json: &str) -> Result<Policy, PolicyError> {
        parse(json, Kind::Identity)
    }

    /// Parses a role's trust policy (`AssumeRolePolicyDocument`): `Principal` required, no
    /// `Resource` (the statement applies to the role it is attached to). Evaluate it with
    /// `RequestContext { service: "sts", action: "AssumeRole", resource: <role ARN>, .. }`.
    pub fn parse_trust(json: &str) -> Result<Policy, PolicyError> {
        parse(json, Kind::Trust)
    }

    pub fn version(&self) -> PolicyVersion {
        self.version
    }

    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    pub fn statement_count(&self) -> usize {
        self.statements.len()
    }

    /// The statement ids, in order (None for statements without `Sid`).
    pub fn sids(&self) -> impl Iterator<Item = Option<&str>> {
        self.statements.iter().map(|s| s.sid.as_deref())
    }

    pub(crate) fn statements(&self) -> &[Statement] {
        &self.statements
    }

    /// The IAM user and role ARNs the policy names, which AWS resolves to unique ids when the
    /// policy is saved (each once, in order of first appearance).
    pub fn principal_arns(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for e in self.entries() {
            if let PrincipalEntry::User { arn, .. } | PrincipalEntry::Role { arn, .. } = e {
                if !out.contains(&&**arn) {
                    out.push(arn);
                }
            }
        }
        out
    }

    /// The account ids the policy names as principals (`"ACCT"`, `arn:aws:iam::ACCT:root`, and
    /// the accounts of named users, roles and sessions), each once. AWS refuses a policy naming
    /// an account that does not exist ("invalid principals"); the engine checks these against the
    /// accounts it knows.
    pub fn principal_accounts(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for e in self.entries() {
            let account = match e {
                PrincipalEntry::Account(a) => Some(&**a),
                PrincipalEntry::User { arn, .. }
                | PrincipalEntry::Role { arn, .. }
                | PrincipalEntry::Session(arn) => arn.split(':').nth(4),
                _ => None,
            };
            if let Some(a) = account {
                if !out.contains(&a) {
                    out.push(a);
                }
            }
        }
        out
    }

    /// Binds every IAM user and role principal to its unique id. `resolve` answers the unique id
    /// (`AIDA...`/`AROA...`) of an ARN, or None when no such user or role exists, which AWS refuses
    /// as an invalid principal.
    ///
    /// When saving a policy, resolve against the live IAM state and persist the pairs (see
    /// [`Policy::principal_ids`]); when loading, resolve from the persisted pairs. A role that
    /// is deleted and re-created gets a new id, so the saved policy stops matching its sessions
    /// until it is saved again, as in AWS. Unbound principals match by ARN alone.
    pub fn resolve_principals(
        &mut self,
        mut resolve: impl FnMut(&str) -> Option<String>,
    ) -> Result<(), PolicyError> {
        for st in self.statements.iter_mut() {
            let Some(p) = st.principals.as_mut() else {
                continue;
            };
            for e in p.entries.iter_mut() {
                if let PrincipalEntry::User { arn, id } | PrincipalEntry::Role { arn, id } = e {
                    match resolve(arn) {
                        Some(found) => *id = Some(found.into()),
                        None => return Err(PolicyError::InvalidPrincipal(arn.to_string())),
                    }
                }
            }
        }
        Ok(())
    }

    /// The (ARN, unique id) pairs bound by [`Policy::resolve_principals`], for persisting.
    pub fn principal_ids(&self) -> Vec<(&str, &str)> {
        let mut out: Vec<(&str, &str)> = Vec::new();
        for e in self.entries() {
            if let PrincipalEntry::User { arn, id: Some(id) }
            | PrincipalEntry::Role { arn, id: Some(id) } = e
            {
                if !out.iter().any(|(a, _)| *a == &**arn) {
                    out.push((arn, id));
                }
            }
        }
        out
    }

    fn entries(&self) -> impl Iterator<Item = &PrincipalEntry> {
        self.statements
            .iter()
            .filter_map(|s| s.principals.as_ref())
            .flat_map(|p| p.entries.iter())
    }
}

fn parse(json: &str, kind: Kind) -> Result<Policy, PolicyError> {
    if json.len() > MAX_POLICY_BYTES {
        return Err(PolicyError::TooLarge { size: json.len() });
    }
    let doc: Value = serde_json::from_str(json).map_err(|e| PolicyError::NotJson(e.to_string()))?;
    let doc = doc.as_object().ok_or(PolicyError::NotAnObject)?;
    let mut version = PolicyVersion::V2008_10_17;
    let mut id = None;
    let mut statement = None;
    for (name, value) in doc {
        match name.as_str() {
            "Version" => {
                let v = value.as_str().ok_or(PolicyError::WrongType("Version"))?;
                version = match v {
                    "2012-10-17" => PolicyVersion::V2012_10_17,
                    "2008-10-17" => PolicyVersion::V2008_10_17,
                    other => return Err(PolicyError::UnsupportedVersion(other.to_string())),
                };
            }
            "Id" => id = Some(value.as_str().ok_or(PolicyError::WrongType("Id"))?.into()),
            "Statement" => statement = Some(value),
            other => return Err(PolicyError::UnknownElement(other.to_string())),
        }
    }
    let statements = match statement.ok_or(PolicyError::MissingElement("Statement"))? {
        Value::Array(items) => items
            .iter()
            .map(|s| parse_statement(s, kind))
            .collect::<Result<Vec<_>, _>>()?,
        single @ Value::Object(_) => vec![parse_statement(single, kind)?],
        _ => return Err(PolicyError::WrongType("Statement")),
    };
    Ok(Policy {
        version,
        id,
        statements: statements.into(),
    })
}

/// A string or a non-empty array of strings.
fn strings<'v>(value: &'v Value, element: &'static str) -> Result<Vec<&'v str>, PolicyError> {
    match value {
        Value::String(s) => Ok(vec![s]),
        Value::Array(items) if items.is_empty() => Err(PolicyError::Empty(element)),
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().ok_or(PolicyError::WrongType(element)))
            .collect(),
        _ => Err(PolicyError::WrongType(element)),
    }
}

/// Takes whichever of `positive` / `negative` is present; both is an error.
fn one_of<'v>(
    st: &'v Map<String, Value>,
    positive: &'static str,
    negative: &'static str,
) -> Result<Option<(&'v Value, bool)>, PolicyError> {
    match (st.get(positive), st.get(negative)) {
        (Some(_), Some(_)) => Err(PolicyError::Conflicting(positive, negative)),
        (Some(v), None) => Ok(Some((v, false))),
        (None, Some(v)) => Ok(Some((v, true))),
        (None, None) => Ok(None),
    }
}

fn parse_statement(value: &Value, kind: Kind) -> Result<Statement, PolicyError> {
    let st = value
        .as_object()
        .ok_or(PolicyError::WrongType("Statement"))?;
    for name in st.keys() {
        match name.as_str() {
            "Sid" | "Effect" | "Principal" | "NotPrincipal" | "Action" | "NotAction"
            | "Resource" | "NotResource" | "Condition" => {}
            other => return Err(PolicyError::UnknownElement(other.to_string())),
        }
    }
    let sid = match st.get("Sid") {
        Some(v) => Some(v.as_str().ok_or(PolicyError::WrongType("Sid"))?.into()),
        None => None,
    };
    let deny = match st.get("Effect") {
        None => return Err(PolicyError::MissingElement("Effect")),
        Some(Value::String(s)) if s == "Allow" => false,
        Some(Value::String(s)) if s == "Deny" => true,
        Some(Value::String(s)) => return Err(PolicyError::InvalidEffect(s.clone())),
        Some(_) => return Err(PolicyError::WrongType("Effect")),
    };
    let principals = match (kind, one_of(st, "Principal", "NotPrincipal")?) {
        (Kind::Key | Kind::Trust, None) => return Err(PolicyError::MissingElement("Principal")),
        (Kind::Key | Kind::Trust, Some((v, negated))) => Some(Principals {
            negated,
            entries: parse_principal(v)?.into(),
        }),
        (Kind::Identity, None) => None,
        (Kind::Identity, Some((_, negated))) => {
            return Err(PolicyError::ProhibitedPrincipal(if negated {
                "NotPrincipal"
            } else {
                "Principal"
            }))
        }
    };
    let (action_value, negated) =
        one_of(st, "Action", "NotAction")?.ok_or(PolicyError::MissingElement("Action"))?;
    let actions = ActionSet {
        negated,
        patterns: strings(action_value, if negated { "NotAction" } else { "Action" })?
            .into_iter()
            .map(parse_action)
            .collect::<Result<_, _>>()?,
    };
    let resources = match (kind, one_of(st, "Resource", "NotResource")?) {
        (Kind::Trust, None) => ResourceSet {
            any: true,
            negated: false,
            patterns: Box::new([Pattern::Any]),
        },
        (Kind::Trust, Some((_, negated))) => {
            return Err(PolicyError::ProhibitedElement(if negated {
                "NotResource"
            } else {
                "Resource"
            }))
        }
        (_, None) => return Err(PolicyError::MissingElement("Resource")),
        (_, Some((resource_value, negated))) => {
            let element = if negated { "NotResource" } else { "Resource" };
            let patterns: Box<[Pattern]> = strings(resource_value, element)?
                .into_iter()
                .map(parse_resource)
                .collect::<Result<_, _>>()?;
            ResourceSet {
                any: !negated && patterns.contains(&Pattern::Any),
                negated,
                patterns,
            }
        }
    };
    let conditions = match st.get("Condition") {
        Some(c) => parse_conditions(c)?.into(),
        None => Box::default(),
    };
    let mut st = Statement {
        sid,
        deny,
        principals,
        actions,
        action_mask: 0,
        resources,
        conditions,
    };
    st.action_mask = KMS_ACTIONS
        .iter()
        .enumerate()
        .filter(|(_, a)| st.action_matches_slow("kms", a))
        .fold(0u64, |m, (i, _)| m | (1u64 << i));
    Ok(st)
}

fn parse_action(text: &str) -> Result<ActionPattern, PolicyError> {
    let bad = || PolicyError::InvalidAction(text.to_string());
    if text == "*" {
        return Ok(ActionPattern {
            service: None,
            name: Pattern::Any,
        });
    }
    let (service, name) = text.split_once(':').ok_or_else(bad)?;
    let service_ok = !service.is_empty()
        && service
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'*' || b == b'?' || b == b'-' || b == b'_');
    if !service_ok || !name_ok {
        return Err(bad());
    }
    Ok(ActionPattern {
        service: Some(service.to_ascii_lowercase().into()),
        name: Pattern::compile(name, true),
    })
}

fn parse_resource(text: &str) -> Result<Pattern, PolicyError> {
    if text == "*" || (text.starts_with("arn:") && text.len() > 4) {
        Ok(Pattern::compile(text, false))
    } else {
        Err(PolicyError::InvalidResource(text.to_string()))
    }
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// `AIDA...` (user) or `AROA...` (role) unique ids: 4-letter prefix then upper-case
/// alphanumerics, 16 to 128 characters in all.
fn is_unique_id(s: &str) -> bool {
    (s.starts_with("AIDA") || s.starts_with("AROA"))
        && (16..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// An IAM name or path segment: `[\w+=,.@-]+`.
fn is_iam_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b))
}

/// `path/name` with an optional path of IAM-name segments.
fn is_iam_path_and_name(s: &str) -> bool {
    !s.is_empty() && s.split('/').all(is_iam_name)
}

fn parse_aws_principal(text: &str) -> Result<PrincipalEntry, PolicyError> {
    let bad = || PolicyError::InvalidPrincipal(text.to_string());
    if text == "*" {
        return Ok(PrincipalEntry::Any);
    }
    if is_account_id(text) {
        return Ok(PrincipalEntry::Account(text.into()));
    }
    if is_unique_id(text) {
        return Ok(PrincipalEntry::UniqueId(text.into()));
    }
    // arn:PARTITION:SERVICE::ACCOUNT:RESOURCE
    let mut parts = text.splitn(6, ':');
    let (Some("arn"), Some(partition), Some(service), Some(""), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(bad());
    };
    let partition_ok = partition == "aws"
        || partition.strip_prefix("aws-").is_some_and(|p| {
            !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
        });
    if !partition_ok || !is_account_id(account) {
        return Err(bad());
    }
    match service {
        "iam" => {
            if resource == "root" {
                Ok(PrincipalEntry::Account(account.into()))
            } else if resource
                .strip_prefix("user/")
                .is_some_and(is_iam_path_and_name)
            {
                Ok(PrincipalEntry::User {
                    arn: text.into(),
                    id: None,
                })
            } else if resource
                .strip_prefix("role/")
                .is_some_and(is_iam_path_and_name)
            {
                Ok(PrincipalEntry::Role {
                    arn: text.into(),
                    id: None,
                })
            } else {
                Err(bad())
            }
        }
        "sts" => {
            if let Some(rest) = resource.strip_prefix("assumed-role/") {
                match rest.split_once('/') {
                    Some((role, session)) if is_iam_name(role) && is_iam_name(session) => {
                        Ok(PrincipalEntry::Session(text.into()))
                    }
                    _ => Err(bad()),
                }
            } else if resource
                .strip_prefix("federated-user/")
                .is_some_and(is_iam_name)
            {
                Ok(PrincipalEntry::Unmatchable)
            } else {
                Err(bad())
            }
        }
        _ => Err(bad()),
    }
}

fn parse_principal(value: &Value) -> Result<Vec<PrincipalEntry>, PolicyError> {
    let invalid = || PolicyError::InvalidPrincipal(value.to_string());
    match value {
        Value::String(s) if s == "*" => Ok(vec![PrincipalEntry::Any]),
        Value::Object(map) if !map.is_empty() => {
            let mut out = Vec::new();
            for (kind, names) in map {
                let names = strings(names, "Principal").map_err(|_| invalid())?;
                for name in names {
                    out.push(match kind.as_str() {
                        "AWS" => parse_aws_principal(name)?,
                        "Service" => {
                            let ok = name.contains('.')
                                && name.bytes().all(|b| {
                                    b.is_ascii_lowercase()
                                        || b.is_ascii_digit()
                                        || b"-.".contains(&b)
                                });
                            if !ok {
                                return Err(PolicyError::InvalidPrincipal(name.to_string()));
                            }
                            PrincipalEntry::Service(name.into())
                        }
                        "Federated" | "CanonicalUser"
                            if !name.is_empty() && !name.contains('*') =>
                        {
                            PrincipalEntry::Unmatchable
                        }
                        _ => return Err(PolicyError::InvalidPrincipal(name.to_string())),
                    });
                }
            }
            Ok(out)
        }
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn kms_actions_are_sorted_and_fit_the_mask() {
        assert!(KMS_ACTIONS.windows(2).all(|w| w[0] < w[1]));
        assert!(KMS_ACTIONS.len() <= 64);
        assert_eq!(kms_action_index("Decrypt"), Some(6));
        assert_eq!(kms_action_index("decrypt"), None);
    }

    #[test]
    fn mask_and_patterns_agree_for_every_known_action() {
        let p = Policy::parse(
            r#"{"Statement":[
              {"Effect":"Allow","Principal":"*","Action":["kms:GenerateDataKey*","kms:Re*","kms:?ecrypt"],"Resource":"*"},
              {"Effect":"Allow","Principal":"*","NotAction":["kms:List*","kms:Describe*"],"Resource":"*"},
              {"Effect":"Allow","Principal":"*","Action":["*","s3:GetObject"],"Resource":"*"},
              {"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*"}]}"#,
        )
        .unwrap();
        for st in p.statements() {
            for (i, a) in KMS_ACTIONS.iter().enumerate() {
                assert_eq!(kms_action_index(a), Some(i as u8));
                let fast = st.action_matches(&ActionKey::new("kms", a));
                assert_eq!(fast, st.action_matches_slow("kms", a), "{a}");
                let upper = a.to_uppercase();
                assert_eq!(
                    fast,
                    st.action_matches(&ActionKey::new("kms", &upper)),
                    "{a}"
                );
            }
        }
    }
}
