//! Grants: a key's permission for a grantee principal to run some operations, optionally only
//! under an encryption-context constraint.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::clock::epoch_seconds;
use crate::identity::Identity;

/// Operations a grant on a symmetric encryption key may allow.
pub(crate) const GRANT_OPERATIONS: &[&str] = &[
    "Decrypt",
    "Encrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "ReEncryptFrom",
    "ReEncryptTo",
    "CreateGrant",
    "RetireGrant",
    "DescribeKey",
];

/// Every operation name AWS's model accepts in `Operations`.
pub(crate) const ALL_GRANT_OPERATIONS: &[&str] = &[
    "Decrypt",
    "Encrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "ReEncryptFrom",
    "ReEncryptTo",
    "Sign",
    "Verify",
    "GetPublicKey",
    "CreateGrant",
    "RetireGrant",
    "DescribeKey",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "GenerateMac",
    "VerifyMac",
    "DeriveSharedSecret",
];

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Constraints {
    pub subset: Option<BTreeMap<String, String>>,
    pub equals: Option<BTreeMap<String, String>>,
}

/// A constraint pair matches a request pair when the keys are equal ignoring ASCII case and the
/// values are equal exactly (AWS: "in a grant constraint, the key in each key-value pair is not
/// case sensitive, but the value is case sensitive").
fn has_pair(map: &BTreeMap<String, String>, key: &str, value: &str) -> bool {
    map.iter()
        .any(|(k, v)| k.eq_ignore_ascii_case(key) && v == value)
}

/// `inner` ⊆ `outer` as sets of pairs, keys compared as a constraint compares them.
fn pairs_within(inner: &BTreeMap<String, String>, outer: &BTreeMap<String, String>) -> bool {
    inner.iter().all(|(k, v)| has_pair(outer, k, v))
}

impl Constraints {
    /// The subset map when present and not empty (AWS treats an empty map as not specified).
    fn subset(&self) -> Option<&BTreeMap<String, String>> {
        self.subset.as_ref().filter(|m| !m.is_empty())
    }

    fn equals(&self) -> Option<&BTreeMap<String, String>> {
        self.equals.as_ref().filter(|m| !m.is_empty())
    }

    /// Whether a request's encryption context satisfies the constraint.
    pub(crate) fn holds(&self, context: &BTreeMap<String, String>) -> bool {
        let subset_ok = self.subset().is_none_or(|s| pairs_within(s, context));
        let equals_ok = self
            .equals()
            .is_none_or(|e| e.len() == context.len() && pairs_within(e, context));
        subset_ok && equals_ok
    }

    /// The pairs the constraint names (for `kms:EncryptionContext*` conditions on CreateGrant).
    pub(crate) fn pairs(&self) -> Option<&BTreeMap<String, String>> {
        self.equals().or(self.subset())
    }
}

/// Whether every encryption context `child` lets through, `parent` lets through too: a grant
/// created through a grant must be "equally strict or stricter" than its parent.
pub(crate) fn at_least_as_strict(
    child: Option<&Constraints>,
    parent: Option<&Constraints>,
) -> bool {
    let Some(parent) = parent else {
        return true;
    };
    let child = child.cloned().unwrap_or_default();
    match (parent.equals(), parent.subset()) {
        // Only the exact context passes the parent: the child must demand that same context.
        (Some(pe), _) => child
            .equals()
            .is_some_and(|ce| ce.len() == pe.len() && pairs_within(pe, ce)),
        // The parent demands some pairs: the child must demand them too (as a subset or within
        // the exact context it requires).
        (None, Some(ps)) => match (child.equals(), child.subset()) {
            (Some(ce), _) => pairs_within(ps, ce),
            (None, Some(cs)) => pairs_within(ps, cs),
            (None, None) => false,
        },
        (None, None) => true,
    }
}

/// The grant a `CreateGrant` request would create, when it is authorized through a grant.
pub(crate) struct ChildGrant<'a> {
    pub operations: &'a [String],
    pub constraints: Option<&'a Constraints>,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub(crate) struct Grant {
    pub id: String,
    pub key_id: String,
    pub key_arn: String,
    pub key_account: String,
    pub name: Option<String>,
    pub created_ms: i64,
    pub grantee: String,
    pub retiring: Option<String>,
    pub operations: Vec<String>,
    pub constraints: Option<Constraints>,
    pub token: String,
}

/// How a principal ARN named in a grant (grantee or retiring principal) stands for a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Named {
    No,
    /// The caller's own ARN, its account's root for the root itself, or for a session its role.
    Direct,
    /// The caller's account (`arn:aws:iam::ACCT:root`) and the caller is not that root: as
    /// everywhere in AWS, an account principal delegates to the account's IAM policies, so the
    /// caller needs an identity policy allowing the action.
    Account,
}

/// Whether a principal ARN named in a grant stands for `identity`.
pub(crate) fn principal_named(principal: &str, identity: &Identity) -> Named {
    if identity.issuer_deleted {
        // The session of a deleted role is nobody a grant can name.
        return Named::No;
    }
    if principal == identity.arn {
        return Named::Direct;
    }
    if identity
        .session_issuer_arn
        .as_deref()
        .is_some_and(|issuer| principal == issuer)
    {
        return Named::Direct;
    }
    if principal == format!("arn:aws:iam::{}:root", identity.account_id) {
        return Named::Account;
    }
    Named::No
}

/// Operations whose requests carry an encryption context: the only ones a constraint limits.
fn takes_context(operation: &str) -> bool {
    !matches!(operation, "DescribeKey" | "CreateGrant" | "RetireGrant")
}

impl Grant {
    /// Whether this grant covers `operation` with `context`, leaving aside who the grantee is.
    /// For `CreateGrant`, `child` is the grant being created: its operations must be among this
    /// grant's and its constraints at least as strict (AWS: "Principals who get CreateGrant
    /// permission from a grant have more limited grant permissions").
    pub(crate) fn covers(
        &self,
        operation: &str,
        context: Option<&BTreeMap<String, String>>,
        child: Option<&ChildGrant<'_>>,
    ) -> bool {
        if !self.operations.iter().any(|o| o == operation) {
            return false;
        }
        if operation == "CreateGrant" {
            let Some(child) = child else {
                return false;
            };
            return child.operations.iter().all(|o| self.operations.contains(o))
                && at_least_as_strict(child.constraints, self.constraints.as_ref());
        }
        match &self.constraints {
            Some(c) if takes_context(operation) => {
                let empty = BTreeMap::new();
                c.holds(context.unwrap_or(&empty))
            }
            _ => true,
        }
    }

    /// ListGrants' `GrantListEntry`.
    pub(crate) fn entry(&self) -> Value {
        let mut v = json!({
            "KeyId": self.key_arn,
            "GrantId": self.id,
            "CreationDate": epoch_seconds(self.created_ms),
            "GranteePrincipal": self.grantee,
            "IssuingAccount": format!("arn:aws:iam::{}:root", self.key_account),
            "Operations": self.operations,
            // AWS lists an unnamed grant with an empty name.
            "Name": self.name.as_deref().unwrap_or(""),
        });
        if let Some(r) = &self.retiring {
            v["RetiringPrincipal"] = json!(r);
        }
        if let Some(c) = &self.constraints {
            let mut cv = json!({});
            if let Some(s) = &c.subset {
                cv["EncryptionContextSubset"] = json!(s);
            }
            if let Some(e) = &c.equals {
                cv["EncryptionContextEquals"] = json!(e);
            }
            v["Constraints"] = cv;
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn grant(operations: &[&str], constraints: Option<Constraints>) -> Grant {
        Grant {
            id: "g".into(),
            key_id: "k".into(),
            key_arn: "arn".into(),
            key_account: "111122223333".into(),
            name: None,
            created_ms: 0,
            grantee: "arn:aws:iam::444455556666:user/bob".into(),
            retiring: None,
            operations: operations.iter().map(|o| o.to_string()).collect(),
            constraints,
            token: "t".into(),
        }
    }

    fn subset(pairs: &[(&str, &str)]) -> Option<Constraints> {
        Some(Constraints {
            subset: Some(map(pairs)),
            equals: None,
        })
    }

    fn equals(pairs: &[(&str, &str)]) -> Option<Constraints> {
        Some(Constraints {
            subset: None,
            equals: Some(map(pairs)),
        })
    }

    #[test]
    fn subset_and_equals_constraints() {
        let ctx = map(&[("vol", "v1"), ("x", "y")]);
        let sub = map(&[("vol", "v1")]);
        let g = grant(&["Decrypt"], subset(&[("vol", "v1")]));
        assert!(g.covers("Decrypt", Some(&ctx), None));
        assert!(!g.covers("Decrypt", Some(&BTreeMap::new()), None));
        assert!(!g.covers("Encrypt", Some(&ctx), None));
        // Constraint keys ignore case; values do not.
        assert!(g.covers("Decrypt", Some(&map(&[("VOL", "v1")])), None));
        assert!(!g.covers("Decrypt", Some(&map(&[("vol", "V1")])), None));
        let g = grant(&["Decrypt"], equals(&[("vol", "v1")]));
        assert!(!g.covers("Decrypt", Some(&ctx), None));
        assert!(g.covers("Decrypt", Some(&sub), None));
    }

    #[test]
    fn constraints_do_not_limit_operations_without_a_context() {
        let g = grant(&["DescribeKey", "RetireGrant"], subset(&[("vol", "v1")]));
        assert!(g.covers("DescribeKey", None, None));
        assert!(g.covers("RetireGrant", None, None));
    }

    #[test]
    fn a_child_grant_is_no_broader_than_its_parent() {
        let parent = grant(&["Decrypt", "CreateGrant"], subset(&[("vol", "v1")]));
        let ops = |o: &[&str]| o.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let child = |o: &[String], c: &Option<Constraints>| {
            let ok = parent.covers(
                "CreateGrant",
                None,
                Some(&ChildGrant {
                    operations: o,
                    constraints: c.as_ref(),
                }),
            );
            ok
        };
        assert!(child(&ops(&["Decrypt"]), &subset(&[("vol", "v1")])));
        assert!(child(
            &ops(&["Decrypt"]),
            &subset(&[("vol", "v1"), ("x", "y")])
        ));
        assert!(child(
            &ops(&["Decrypt"]),
            &equals(&[("VOL", "v1"), ("x", "y")])
        ));
        assert!(child(
            &ops(&["Decrypt", "CreateGrant"]),
            &subset(&[("vol", "v1")])
        ));
        // Wider operations, or a weaker constraint, are refused.
        assert!(!child(&ops(&["Encrypt"]), &subset(&[("vol", "v1")])));
        assert!(!child(
            &ops(&["Decrypt", "ReEncryptFrom"]),
            &subset(&[("vol", "v1")])
        ));
        assert!(!child(&ops(&["Decrypt"]), &None));
        assert!(!child(&ops(&["Decrypt"]), &subset(&[("vol", "v2")])));
        assert!(!child(&ops(&["Decrypt"]), &subset(&[("x", "y")])));
        // A grant without CreateGrant creates nothing.
        let plain = grant(&["Decrypt"], None);
        assert!(!plain.covers(
            "CreateGrant",
            None,
            Some(&ChildGrant {
                operations: &ops(&["Decrypt"]),
                constraints: None
            })
        ));
        // An Equals parent needs exactly its context in the child.
        let eq = equals(&[("vol", "v1")]);
        assert!(at_least_as_strict(eq.as_ref(), eq.as_ref()));
        assert!(!at_least_as_strict(
            subset(&[("vol", "v1")]).as_ref(),
            eq.as_ref()
        ));
        assert!(!at_least_as_strict(
            equals(&[("vol", "v1"), ("x", "y")]).as_ref(),
            eq.as_ref()
        ));
        assert!(at_least_as_strict(None, None));
        assert!(at_least_as_strict(eq.as_ref(), None));
    }

    #[test]
    fn grant_principals() {
        let bob = Identity::iam_user("444455556666", "bob");
        assert_eq!(principal_named(&bob.arn, &bob), Named::Direct);
        assert_eq!(
            principal_named("arn:aws:iam::444455556666:root", &bob),
            Named::Account
        );
        let root = Identity::root("444455556666");
        assert_eq!(
            principal_named("arn:aws:iam::444455556666:root", &root),
            Named::Direct
        );
        assert_eq!(
            principal_named("arn:aws:iam::111122223333:root", &bob),
            Named::No
        );
        let alice = Identity::iam_user("444455556666", "alice");
        assert_eq!(principal_named(&bob.arn, &alice), Named::No);
    }
}
