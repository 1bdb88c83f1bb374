//! The `Condition` element: operators, set qualifiers (`ForAnyValue:`/`ForAllValues:`),
//! `...IfExists`, the condition keys KMS fills in, and their evaluation.
//!
//! Semantics follow the IAM user guide ("IAM JSON policy elements: Condition operators" and
//! "Single-valued vs. multivalued context keys"):
//! - several values for one key are ORed; several keys, and several operators, are ANDed;
//! - a key absent from the request makes a positive operator false and a negated operator
//!   (`StringNotEquals`, `ArnNotLike`, ...) true; `...IfExists` makes it true for both;
//! - `ForAnyValue:` is true when some request value matches (false when the key is absent or
//!   empty); `ForAllValues:` is true when every request value matches (true when absent/empty);
//! - `Null` tests presence: `"true"` means the key must be absent.

use std::borrow::Cow;
use std::net::IpAddr;

use super::evaluate::RequestContext;
use super::pattern::{ArnPattern, Pattern};
use super::PolicyError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Qualifier {
    Single,
    ForAnyValue,
    ForAllValues,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    String,
    StringIgnoreCase,
    StringLike,
    Numeric(NumCmp),
    Date(NumCmp),
    Bool,
    Binary,
    Ip,
    Arn,
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NumCmp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A condition key, resolved once at parse time. Names are case-insensitive.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Key {
    /// `kms:EncryptionContext:<name>`, the name stored as written (matched case-insensitively).
    EncryptionContext(Box<str>),
    EncryptionContextKeys,
    CallerAccount,
    ViaService,
    GrantIsForAwsResource,
    GrantOperations,
    GranteePrincipal,
    RetiringPrincipal,
    EncryptionAlgorithm,
    PrincipalArn,
    PrincipalAccount,
    PrincipalType,
    UserId,
    SourceIp,
    SecureTransport,
    CurrentTime,
    EpochTime,
    /// Any other key (`sts:ExternalId`, `aws:PrincipalTag/team`, ...): accepted as AWS does,
    /// looked up in [`RequestContext::extra`](super::RequestContext), absent otherwise.
    Other(Box<str>),
}

impl Key {
    fn parse(name: &str) -> Result<Key, PolicyError> {
        const EC: &str = "kms:encryptioncontext:";
        let lower = name.to_ascii_lowercase();
        if lower.starts_with(EC) {
            let rest = &name[EC.len()..];
            if rest.is_empty() {
                return Err(PolicyError::InvalidCondition(format!(
                    "condition key {name} names no encryption context key"
                )));
            }
            return Ok(Key::EncryptionContext(rest.into()));
        }
        Ok(match lower.as_str() {
            "kms:encryptioncontextkeys" => Key::EncryptionContextKeys,
            "kms:calleraccount" => Key::CallerAccount,
            "kms:viaservice" => Key::ViaService,
            "kms:grantisforawsresource" => Key::GrantIsForAwsResource,
            "kms:grantoperations" => Key::GrantOperations,
            "kms:granteeprincipal" => Key::GranteePrincipal,
            "kms:retiringprincipal" => Key::RetiringPrincipal,
            "kms:encryptionalgorithm" => Key::EncryptionAlgorithm,
            "aws:principalarn" => Key::PrincipalArn,
            "aws:principalaccount" => Key::PrincipalAccount,
            "aws:principaltype" => Key::PrincipalType,
            "aws:userid" => Key::UserId,
            "aws:sourceip" => Key::SourceIp,
            "aws:securetransport" => Key::SecureTransport,
            "aws:currenttime" => Key::CurrentTime,
            "aws:epochtime" => Key::EpochTime,
            "" => {
                return Err(PolicyError::InvalidCondition(
                    "empty condition key".to_string(),
                ))
            }
            _ => Key::Other(name.into()),
        })
    }
}

/// The request's values for one key. Multi-valued keys borrow from the request; single values
/// are borrowed or, for computed ones, owned.
pub(crate) enum Values<'a> {
    One(Cow<'a, str>),
    Strings(&'a [String]),
    EcKeys(&'a std::collections::BTreeMap<String, String>),
}

impl Values<'_> {
    fn any(&self, mut f: impl FnMut(&str) -> bool) -> bool {
        match self {
            Values::One(v) => f(v),
            Values::Strings(vs) => vs.iter().any(|v| f(v)),
            Values::EcKeys(m) => m.keys().any(|v| f(v)),
        }
    }
    fn all(&self, mut f: impl FnMut(&str) -> bool) -> bool {
        match self {
            Values::One(v) => f(v),
            Values::Strings(vs) => vs.iter().all(|v| f(v)),
            Values::EcKeys(m) => m.keys().all(|v| f(v)),
        }
    }
}

/// The policy's values, compiled for the operator's family.
#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Strings(Box<[Box<str>]>),
    Globs(Box<[Pattern]>),
    Numbers(Box<[f64]>),
    Dates(Box<[i64]>),
    Bools(Box<[bool]>),
    Nets(Box<[(IpAddr, u8)]>),
    Arns(Box<[ArnPattern]>),
    Null(bool),
}

/// One `operator: { key: values }` pair, compiled.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Condition {
    qualifier: Qualifier,
    family: Family,
    negated: bool,
    if_exists: bool,
    key: Key,
    operand: Operand,
}

/// Splits `ForAnyValue:StringLikeIfExists` into its parts; None when the operator is unknown.
fn parse_operator(op: &str) -> Option<(Qualifier, Family, bool, bool)> {
    let (qualifier, rest) = if let Some(r) = op.strip_prefix("ForAnyValue:") {
        (Qualifier::ForAnyValue, r)
    } else if let Some(r) = op.strip_prefix("ForAllValues:") {
        (Qualifier::ForAllValues, r)
    } else {
        (Qualifier::Single, op)
    };
    let (base, if_exists) = match rest.strip_suffix("IfExists") {
        Some(b) => (b, true),
        None => (rest, false),
    };
    use Family::*;
    let (family, negated) = match base {
        "StringEquals" => (String, false),
        "StringNotEquals" => (String, true),
        "StringEqualsIgnoreCase" => (StringIgnoreCase, false),
        "StringNotEqualsIgnoreCase" => (StringIgnoreCase, true),
        "StringLike" => (StringLike, false),
        "StringNotLike" => (StringLike, true),
        "NumericEquals" => (Numeric(NumCmp::Eq), false),
        "NumericNotEquals" => (Numeric(NumCmp::Eq), true),
        "NumericLessThan" => (Numeric(NumCmp::Lt), false),
        "NumericLessThanEquals" => (Numeric(NumCmp::Le), false),
        "NumericGreaterThan" => (Numeric(NumCmp::Gt), false),
        "NumericGreaterThanEquals" => (Numeric(NumCmp::Ge), false),
        "DateEquals" => (Date(NumCmp::Eq), false),
        "DateNotEquals" => (Date(NumCmp::Eq), true),
        "DateLessThan" => (Date(NumCmp::Lt), false),
        "DateLessThanEquals" => (Date(NumCmp::Le), false),
        "DateGreaterThan" => (Date(NumCmp::Gt), false),
        "DateGreaterThanEquals" => (Date(NumCmp::Ge), false),
        "Bool" => (Bool, false),
        "BinaryEquals" => (Binary, false),
        "IpAddress" => (Ip, false),
        "NotIpAddress" => (Ip, true),
        "ArnEquals" | "ArnLike" => (Arn, false),
        "ArnNotEquals" | "ArnNotLike" => (Arn, true),
        "Null" if !if_exists && qualifier == Qualifier::Single => (Null, false),
        _ => return None,
    };
    Some((qualifier, family, negated, if_exists))
}

/// Parses the whole `Condition` element into a flat list (all of which must hold).
pub(crate) fn parse_conditions(value: &serde_json::Value) -> Result<Vec<Condition>, PolicyError> {
    let ops = value
        .as_object()
        .ok_or(PolicyError::WrongType("Condition"))?;
    let mut out = Vec::new();
    for (op, block) in ops {
        let (qualifier, family, negated, if_exists) =
            parse_operator(op).ok_or_else(|| PolicyError::UnknownConditionOperator(op.clone()))?;
        let block = block.as_object().ok_or_else(|| {
            PolicyError::InvalidCondition(format!("{op} must map condition keys to values"))
        })?;
        if block.is_empty() {
            return Err(PolicyError::InvalidCondition(format!(
                "{op} names no condition key"
            )));
        }
        for (key, values) in block {
            let texts = condition_values(op, key, values)?;
            let key = Key::parse(key)?;
            let operand = compile_operand(op, family, &texts)?;
            out.push(Condition {
                qualifier,
                family,
                negated,
                if_exists,
                key,
                operand,
            });
        }
    }
    Ok(out)
}

/// A condition value may be a string, number or boolean, or a non-empty array of those.
fn condition_values(
    op: &str,
    key: &str,
    value: &serde_json::Value,
) -> Result<Vec<String>, PolicyError> {
    use serde_json::Value as V;
    let scalar = |v: &V| match v {
        V::String(s) => Ok(s.clone()),
        V::Bool(b) => Ok(b.to_string()),
        V::Number(n) => Ok(n.to_string()),
        _ => Err(PolicyError::InvalidCondition(format!(
            "{op} {key}: values must be strings, numbers or booleans"
        ))),
    };
    match value {
        V::Array(items) if items.is_empty() => Err(PolicyError::InvalidCondition(format!(
            "{op} {key}: empty list of values"
        ))),
        V::Array(items) => items.iter().map(scalar).collect(),
        other => Ok(vec![scalar(other)?]),
    }
}

fn bad_value(op: &str, v: &str) -> PolicyError {
    PolicyError::InvalidCondition(format!("{op}: invalid value \"{v}\""))
}

fn parse_bool(v: &str) -> Option<bool> {
    if v.eq_ignore_ascii_case("true") {
        Some(true)
    } else if v.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// Seconds since the epoch from an ISO 8601 date-time, a plain date, or an epoch number.
fn parse_date(v: &str) -> Option<i64> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(n) = v.parse::<i64>() {
        return Some(n);
    }
    if let Ok(t) = time::OffsetDateTime::parse(v, &Rfc3339) {
        return Some(t.unix_timestamp());
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(v, &fmt)
        .ok()
        .map(|d| d.midnight().assume_utc().unix_timestamp())
}

fn parse_net(v: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = match v.split_once('/') {
        Some((a, l)) => (a.parse::<IpAddr>().ok()?, Some(l.parse::<u8>().ok()?)),
        None => (v.parse::<IpAddr>().ok()?, None),
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = len.unwrap_or(max);
    (len <= max).then_some((addr, len))
}

fn in_net(ip: IpAddr, net: (IpAddr, u8)) -> bool {
    fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
        let full = usize::from(bits / 8);
        let rest = bits % 8;
        if a[..full] != b[..full] {
            return false;
        }
        rest == 0 || {
            let mask = 0xFFu8 << (8 - rest);
            a[full] & mask == b[full] & mask
        }
    }
    match (ip, net.0) {
        (IpAddr::V4(a), IpAddr::V4(b)) => prefix_eq(&a.octets(), &b.octets(), net.1),
        (IpAddr::V6(a), IpAddr::V6(b)) => prefix_eq(&a.octets(), &b.octets(), net.1),
        _ => false,
    }
}

fn compile_operand(op: &str, family: Family, texts: &[String]) -> Result<Operand, PolicyError> {
    let all = |f: &dyn Fn(&str) -> bool| texts.iter().all(|t| f(t));
    Ok(match family {
        Family::String | Family::Binary => {
            Operand::Strings(texts.iter().map(|t| t.as_str().into()).collect())
        }
        Family::StringIgnoreCase => {
            Operand::Strings(texts.iter().map(|t| t.to_lowercase().into()).collect())
        }
        Family::StringLike => {
            Operand::Globs(texts.iter().map(|t| Pattern::compile(t, false)).collect())
        }
        Family::Numeric(_) => Operand::Numbers(
            texts
                .iter()
                .map(|t| {
                    t.parse::<f64>()
                        .ok()
                        .filter(|n| n.is_finite())
                        .ok_or_else(|| bad_value(op, t))
                })
                .collect::<Result<_, _>>()?,
        ),
        Family::Date(_) => Operand::Dates(
            texts
                .iter()
                .map(|t| parse_date(t).ok_or_else(|| bad_value(op, t)))
                .collect::<Result<_, _>>()?,
        ),
        Family::Bool => Operand::Bools(
            texts
                .iter()
                .map(|t| parse_bool(t).ok_or_else(|| bad_value(op, t)))
                .collect::<Result<_, _>>()?,
        ),
        Family::Ip => Operand::Nets(
            texts
                .iter()
                .map(|t| parse_net(t).ok_or_else(|| bad_value(op, t)))
                .collect::<Result<_, _>>()?,
        ),
        Family::Arn => {
            if !all(&|t| t == "*" || ArnPattern::compile(t).is_some()) {
                let t = texts
                    .iter()
                    .find(|t| ArnPattern::compile(t).is_none())
                    .unwrap();
                return Err(bad_value(op, t));
            }
            Operand::Arns(
                texts
                    .iter()
                    .map(|t| {
                        ArnPattern::compile(if t == "*" { "*:*:*:*:*:*" } else { t })
                            .unwrap_or_else(|| unreachable!("checked above"))
                    })
                    .collect(),
            )
        }
        Family::Null => {
            let [only] = texts else {
                return Err(bad_value(op, &texts.join(",")));
            };
            Operand::Null(parse_bool(only).ok_or_else(|| bad_value(op, only))?)
        }
    })
}

fn compare(cmp: NumCmp, request: f64, policy: f64) -> bool {
    match cmp {
        NumCmp::Eq => request == policy,
        NumCmp::Lt => request < policy,
        NumCmp::Le => request <= policy,
        NumCmp::Gt => request > policy,
        NumCmp::Ge => request >= policy,
    }
}

impl Condition {
    /// Whether one request value matches one of the policy's values (before negation).
    fn value_matches(&self, v: &str) -> bool {
        match (&self.operand, self.family) {
            (Operand::Strings(ps), Family::StringIgnoreCase) => {
                let lower = v.to_lowercase();
                ps.iter().any(|p| **p == *lower)
            }
            (Operand::Strings(ps), _) => ps.iter().any(|p| **p == *v),
            (Operand::Globs(ps), _) => ps.iter().any(|p| p.matches(v, false)),
            (Operand::Numbers(ps), Family::Numeric(cmp)) => match v.parse::<f64>() {
                Ok(n) => ps.iter().any(|p| compare(cmp, n, *p)),
                Err(_) => false,
            },
            (Operand::Dates(ps), Family::Date(cmp)) => match parse_date(v) {
                Some(n) => ps.iter().any(|p| compare(cmp, n as f64, *p as f64)),
                None => false,
            },
            (Operand::Bools(ps), _) => match parse_bool(v) {
                Some(b) => ps.contains(&b),
                None => false,
            },
            (Operand::Nets(ns), _) => match v.parse::<IpAddr>() {
                Ok(ip) => ns.iter().any(|n| in_net(ip, *n)),
                Err(_) => false,
            },
            (Operand::Arns(ps), _) => ps.iter().any(|p| p.matches(v)),
            _ => false,
        }
    }

    fn test(&self, v: &str) -> bool {
        self.value_matches(v) != self.negated
    }

    pub(crate) fn holds(&self, ctx: &RequestContext<'_>) -> bool {
        let values = ctx.condition_values(&self.key);
        if let Operand::Null(expect_absent) = self.operand {
            return values.is_none() == expect_absent;
        }
        match values {
            None => {
                self.if_exists
                    || match self.qualifier {
                        Qualifier::ForAllValues => true,
                        Qualifier::ForAnyValue => false,
                        Qualifier::Single => self.negated,
                    }
            }
            Some(vs) => match self.qualifier {
                Qualifier::Single | Qualifier::ForAnyValue => vs.any(|v| self.test(v)),
                Qualifier::ForAllValues => vs.all(|v| self.test(v)),
            },
        }
    }
}
