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

/// Whether a principal ARN named in a grant stands for `identity`: the same ARN, the role of an
/// assumed-role session, or the account root (any principal of the account).
pub(crate) fn principal_matches(principal: &str, identity: &Identity) -> bool {
    if principal == identity.arn {
        return true;
    }
    if principal == format!("arn:aws:iam::{}:root", identity.account_id) {
        return true;
    }
    if let Some(issuer) = &identity.session_issuer_arn {
        return principal == issuer;
    }
    false
}

impl Grant {
    /// Whether this grant lets `identity` run `operation` with `context`.
    pub(crate) fn allows(
        &self,
        identity: &Identity,
        operation: &str,
        context: Option<&BTreeMap<String, String>>,
    ) -> bool {
        if !self.operations.iter().any(|o| o == operation)
            || !principal_matches(&self.grantee, identity)
        {
            return false;
        }
        let empty = BTreeMap::new();
        let context = context.unwrap_or(&empty);
        match &self.constraints {
            None => true,
            Some(c) => {
                let subset_ok = c
                    .subset
                    .as_ref()
                    .is_none_or(|s| s.iter().all(|(k, v)| context.get(k) == Some(v)));
                let equals_ok = c.equals.as_ref().is_none_or(|e| e == context);
                subset_ok && equals_ok
            }
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
        });
        if let Some(n) = &self.name {
            v["Name"] = json!(n);
        }
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

    fn grant(constraints: Option<Constraints>) -> Grant {
        Grant {
            id: "g".into(),
            key_id: "k".into(),
            key_arn: "arn".into(),
            key_account: "111122223333".into(),
            name: None,
            created_ms: 0,
            grantee: "arn:aws:iam::444455556666:user/bob".into(),
            retiring: None,
            operations: vec!["Decrypt".into()],
            constraints,
            token: "t".into(),
        }
    }

    #[test]
    fn subset_and_equals_constraints() {
        let bob = Identity::iam_user("444455556666", "bob");
        let ctx: BTreeMap<String, String> = [
            ("vol".to_string(), "v1".to_string()),
            ("x".to_string(), "y".to_string()),
        ]
        .into();
        let sub: BTreeMap<String, String> = [("vol".to_string(), "v1".to_string())].into();
        let g = grant(Some(Constraints {
            subset: Some(sub.clone()),
            equals: None,
        }));
        assert!(g.allows(&bob, "Decrypt", Some(&ctx)));
        assert!(!g.allows(&bob, "Decrypt", None));
        assert!(!g.allows(&bob, "Encrypt", Some(&ctx)));
        let g = grant(Some(Constraints {
            subset: None,
            equals: Some(sub.clone()),
        }));
        assert!(!g.allows(&bob, "Decrypt", Some(&ctx)));
        assert!(g.allows(&bob, "Decrypt", Some(&sub)));
        let alice = Identity::iam_user("444455556666", "alice");
        assert!(!grant(None).allows(&alice, "Decrypt", None));
    }
}
