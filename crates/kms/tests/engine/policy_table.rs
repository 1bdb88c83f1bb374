//! A table of allow/deny cases through `Engine::call_kms`, each naming the AWS rule it checks.
//! Zero cases may let an unauthorized call through, and every denial must be in the trail.

use std::collections::BTreeMap;

use keyward_kms::Caller;
use serde_json::{json, Value};

use crate::policy_cases::{body, identities, key_policy, setup_grants, who, Want, CASES, KEYS};
use crate::{b64, root_caller, user_caller, Fixture};
use Want::{Allow, Deny};

fn caller(name: &str) -> Caller {
    match who(name) {
        (account, None) => root_caller(account),
        (account, Some(user)) => user_caller(account, user),
    }
}

#[tokio::test]
async fn allow_deny_table() {
    assert!(CASES.len() >= 60, "{} cases", CASES.len());
    let f = Fixture::with_identities(identities());
    let mut arns: BTreeMap<String, String> = BTreeMap::new();
    for k in KEYS {
        let body = match key_policy(k) {
            Some(p) => json!({"Policy": p.to_string()}),
            None => json!({}),
        };
        let v = f.ok("CreateKey", body).await;
        arns.insert(
            format!("{k:?}"),
            v["KeyMetadata"]["Arn"].as_str().unwrap().to_string(),
        );
    }
    let arn = |k| arns[&format!("{k:?}")].clone();
    // The table's grants: the grantee (another account, no policies) may Decrypt with the
    // Default and DenyCtx keys, and Decrypt/CreateGrant under app=web with the Chain key; the
    // other account may Decrypt with the AcctGrant key.
    for g in setup_grants() {
        f.ok("CreateGrant", g.body(&arn(g.key))).await;
    }
    let mut denials = 0;
    let mut failures = Vec::new();
    for case in CASES {
        let key = arn(case.key);
        let dry = case.action.starts_with("DryRun");
        // A ciphertext under the case's key and context, made by the key's own root.
        let blob = if case.action.ends_with("Decrypt") {
            let context: Value = match case.ctx {
                Some((k, v)) => json!({ k: v }),
                None => json!({}),
            };
            let v = f
                .ok(
                    "Encrypt",
                    json!({"KeyId": key, "Plaintext": b64(b"secret"), "EncryptionContext": context}),
                )
                .await;
            Some(v["CiphertextBlob"].clone())
        } else {
            None
        };
        let (action, body) = body(case, &key, blob.as_ref());
        let who = caller(case.who);
        let result = f.call_as(&who, action, body).await;
        let got = match &result {
            Ok(_) => Allow,
            Err(e) if dry && e.code == "DryRunOperationException" => Allow,
            Err(e) if e.code == "AccessDeniedException" => {
                let head = format!(
                    "User: {} is not authorized to perform: kms:{action} on resource: {key} ",
                    who.identity.arn
                );
                assert!(e.message.starts_with(&head), "{}: {}", case.rule, e.message);
                denials += 1;
                Deny
            }
            Err(e) => panic!("{} ({} {action}): unexpected {e}", case.rule, case.who),
        };
        if got != case.want {
            failures.push(format!(
                "{} — {} {} on {:?} ctx {:?}: want {:?}, got {:?}",
                case.rule, case.who, case.action, case.key, case.ctx, case.want, got
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Every denial is in the trail of the caller's account with its code and message.
    let trail = f.trail();
    let denied_records = trail
        .iter()
        .filter(|r| {
            r["errorCode"] == "AccessDeniedException"
                && r["recipientAccountId"] == r["userIdentity"]["accountId"]
        })
        .count();
    assert_eq!(denied_records, denials);
    assert!(trail
        .iter()
        .filter(|r| r["errorCode"] == "AccessDeniedException")
        .all(|r| r["errorMessage"].as_str().unwrap().starts_with("User: ")));
}
