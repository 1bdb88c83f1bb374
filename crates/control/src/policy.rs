//! The key-policy statements a customer adds so that a cluster's role may use their key
//! (GUIDE.md step 2), and merging them into an existing key policy.

use serde_json::{json, Value};

use crate::Error;

/// `Sid` of the statement that lets the cluster's role describe the key and use it for data keys.
pub const BASIC_ACCESS_SID: &str = "Allow keyward cluster role basic key access";
/// `Sid` of the statement that lets the cluster's role create grants for encrypted disks.
pub const CREATE_GRANT_SID: &str =
    "Allow keyward cluster role to create grants for encrypted disks";

/// The only operations the cluster's role ever puts in a grant: `Decrypt` for attaching a disk
/// (as EBS does), `ReEncryptFrom`/`ReEncryptTo` for the short-lived grants of a key change
/// (`keyward_envelope::rewrap`). The `CreateGrant` statement allows nothing else.
pub const GRANT_OPERATIONS: [&str; 3] = ["Decrypt", "ReEncryptFrom", "ReEncryptTo"];

/// The condition of the `CreateGrant` statement: the role may create grants only for itself
/// (grantee and retiring principal), only with [`GRANT_OPERATIONS`]. So whoever holds the
/// platform's credentials cannot leave a grant for an outside principal on the key, and removing
/// the statements later leaves no grant the customer did not see coming: every grant the role
/// made names the role, and the role's own grants die with its access.
pub fn create_grant_condition(role_arn: &str) -> Value {
    json!({
        "StringEquals": {
            "kms:GranteePrincipal": role_arn,
            "kms:RetiringPrincipal": role_arn
        },
        "ForAllValues:StringEquals": { "kms:GrantOperations": GRANT_OPERATIONS }
    })
}

/// The two statements of the guide, exactly, with `role_arn` as the principal. Returned as a JSON
/// array of statements, to copy into the key policy's `Statement` list. The `CreateGrant`
/// statement is conditioned (see [`create_grant_condition`]).
pub fn key_policy_statements(role_arn: &str) -> Value {
    json!([
        {
            "Sid": BASIC_ACCESS_SID,
            "Effect": "Allow",
            "Principal": { "AWS": role_arn },
            "Action": ["kms:DescribeKey", "kms:GenerateDataKey*", "kms:Decrypt"],
            "Resource": "*"
        },
        {
            "Sid": CREATE_GRANT_SID,
            "Effect": "Allow",
            "Principal": { "AWS": role_arn },
            "Action": ["kms:CreateGrant"],
            "Resource": "*",
            "Condition": create_grant_condition(role_arn)
        }
    ])
}

/// `policy` (a key policy document, as JSON text) with the two statements for `role_arn` added.
///
/// Idempotent: statements of `policy` with one of our two `Sid`s are replaced, every other
/// statement is kept in its order and ours come last. A single statement object (which IAM
/// accepts in place of a list) becomes a list. A policy without `Version` gets "2012-10-17", the
/// version the `kms:GenerateDataKey*` wildcard needs.
pub fn merge_key_policy(policy: &str, role_arn: &str) -> Result<Value, Error> {
    let mut document: Value =
        serde_json::from_str(policy).map_err(|e| Error::InvalidPolicy(format!("not JSON: {e}")))?;
    let object = document
        .as_object_mut()
        .ok_or_else(|| Error::InvalidPolicy("the document is not a JSON object".into()))?;
    let mut statements = match object.remove("Statement") {
        None => Vec::new(),
        Some(Value::Array(list)) => list,
        Some(single @ Value::Object(_)) => vec![single],
        Some(_) => {
            return Err(Error::InvalidPolicy(
                "`Statement` is neither a statement nor a list of statements".into(),
            ))
        }
    };
    statements.retain(|s| {
        !matches!(s.get("Sid").and_then(Value::as_str), Some(sid) if sid == BASIC_ACCESS_SID || sid == CREATE_GRANT_SID)
    });
    if let Value::Array(ours) = key_policy_statements(role_arn) {
        statements.extend(ours);
    }
    object
        .entry("Version")
        .or_insert_with(|| Value::String("2012-10-17".into()));
    object.insert("Statement".into(), Value::Array(statements));
    Ok(document)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLE: &str = "arn:aws:iam::444455556666:role/keyward-cluster-c1";

    #[test]
    fn statements_are_the_guides_with_the_role_filled_in() {
        let s = key_policy_statements(ROLE);
        assert_eq!(s.as_array().unwrap().len(), 2);
        assert_eq!(s[0]["Sid"], BASIC_ACCESS_SID);
        assert_eq!(s[0]["Principal"]["AWS"], ROLE);
        assert_eq!(
            s[0]["Action"],
            json!(["kms:DescribeKey", "kms:GenerateDataKey*", "kms:Decrypt"])
        );
        assert_eq!(s[1]["Sid"], CREATE_GRANT_SID);
        assert_eq!(s[1]["Action"], json!(["kms:CreateGrant"]));
        assert_eq!(s[1]["Resource"], "*");
        assert_eq!(s[1]["Effect"], "Allow");
        let condition = &s[1]["Condition"];
        assert_eq!(condition["StringEquals"]["kms:GranteePrincipal"], ROLE);
        assert_eq!(condition["StringEquals"]["kms:RetiringPrincipal"], ROLE);
        assert_eq!(
            condition["ForAllValues:StringEquals"]["kms:GrantOperations"],
            json!(["Decrypt", "ReEncryptFrom", "ReEncryptTo"])
        );
    }

    #[test]
    fn merge_keeps_other_statements_and_is_idempotent() {
        let default = r#"{"Version":"2012-10-17","Id":"key-default-1","Statement":[{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}]}"#;
        let once = merge_key_policy(default, ROLE).unwrap();
        let statements = once["Statement"].as_array().unwrap();
        assert_eq!(statements.len(), 3);
        assert_eq!(statements[0]["Sid"], "Enable IAM User Permissions");
        assert_eq!(once["Id"], "key-default-1");
        let twice = merge_key_policy(&once.to_string(), ROLE).unwrap();
        assert_eq!(once, twice);
    }

    #[test]
    fn merge_replaces_our_statements_for_a_new_role() {
        let once = merge_key_policy("{}", ROLE).unwrap();
        let other = "arn:aws:iam::444455556666:role/keyward-cluster-c2";
        let again = merge_key_policy(&once.to_string(), other).unwrap();
        assert_eq!(again["Statement"], key_policy_statements(other));
        assert_eq!(again["Version"], "2012-10-17");
    }

    #[test]
    fn merge_accepts_a_single_statement_object() {
        let single = r#"{"Version":"2012-10-17","Statement":{"Sid":"Admins","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}}"#;
        let merged = merge_key_policy(single, ROLE).unwrap();
        assert_eq!(merged["Statement"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn merge_refuses_what_is_not_a_policy() {
        for bad in ["not json", "[]", r#"{"Statement":"x"}"#] {
            assert!(
                matches!(merge_key_policy(bad, ROLE), Err(Error::InvalidPolicy(_))),
                "{bad}"
            );
        }
    }
}
