//! The guide's scenario end to end with the aws CLI against the real server (one endpoint for
//! IAM, STS and KMS): the platform account creates the cluster role; the customer's key policy
//! names it with the guide's two statements; a session of the role (AWS_SESSION_TOKEN) uses the
//! key; removing kms:Decrypt refuses Decrypt only; a deleted and re-created role has no access
//! until the key policy is saved again.

use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use serde_json::Value;

use crate::iam::{
    key_policy, operator_arn, role_arn, start, trust_policy, CLUSTER, CUSTOMER, OPERATOR_KEY,
    OPERATOR_SECRET, PLATFORM, ROLE_NAME, ROLE_POLICY,
};

/// Who the CLI signs as: (access key id, secret, session token).
type As<'a> = (&'a str, &'a str, Option<&'a str>);

const CUSTOMER_ROOT: As<'static> = ("AKIACUSTOMERROOT0001", "customer-root-secret", None);
const OPERATOR: As<'static> = (OPERATOR_KEY, OPERATOR_SECRET, None);

/// Runs `aws <args>` as `who`; Ok(stdout as JSON, or Null when empty) or Err(stderr).
async fn aws(endpoint: &str, who: As<'_>, args: &[&str]) -> Result<Value, String> {
    let mut command = Command::new("aws");
    command
        .args(args)
        .args(["--endpoint-url", endpoint, "--output", "json"])
        .env("AWS_ACCESS_KEY_ID", who.0)
        .env("AWS_SECRET_ACCESS_KEY", who.1)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_PAGER", "");
    match who.2 {
        Some(token) => command.env("AWS_SESSION_TOKEN", token),
        None => command.env_remove("AWS_SESSION_TOKEN"),
    };
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .expect("the aws CLI must be installed (scripts/test puts .venv/bin on PATH)");
    if output.status.success() {
        let text = String::from_utf8_lossy(&output.stdout);
        if text.trim().is_empty() {
            Ok(Value::Null)
        } else {
            Ok(serde_json::from_str(&text).expect("the CLI prints JSON"))
        }
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

async fn ok(endpoint: &str, who: As<'_>, args: &[&str]) -> Value {
    aws(endpoint, who, args)
        .await
        .unwrap_or_else(|e| panic!("aws {args:?} failed: {e}"))
}

async fn create_role(endpoint: &str) -> String {
    let trust = trust_policy();
    let created = ok(
        endpoint,
        OPERATOR,
        &[
            "iam",
            "create-role",
            "--role-name",
            ROLE_NAME,
            "--path",
            "/keyward/",
            "--assume-role-policy-document",
            &trust,
        ],
    )
    .await;
    assert_eq!(created["Role"]["Arn"], role_arn());
    // The CLI decodes IAM's URL-encoded policy documents back to JSON.
    assert_eq!(
        created["Role"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["AWS"],
        operator_arn()
    );
    ok(
        endpoint,
        OPERATOR,
        &[
            "iam",
            "put-role-policy",
            "--role-name",
            ROLE_NAME,
            "--policy-name",
            "keyward-kms",
            "--policy-document",
            ROLE_POLICY,
        ],
    )
    .await;
    created["Role"]["RoleId"]
        .as_str()
        .expect("RoleId")
        .to_string()
}

/// `aws sts assume-role` as the operator: (access key id, secret, token).
async fn assume(endpoint: &str) -> (String, String, String) {
    let out = ok(
        endpoint,
        OPERATOR,
        &[
            "sts",
            "assume-role",
            "--role-arn",
            &role_arn(),
            "--role-session-name",
            "keyward-operator",
            "--external-id",
            CLUSTER,
        ],
    )
    .await;
    let c = &out["Credentials"];
    assert!(c["Expiration"].is_string());
    (
        c["AccessKeyId"].as_str().unwrap().to_string(),
        c["SecretAccessKey"].as_str().unwrap().to_string(),
        c["SessionToken"].as_str().unwrap().to_string(),
    )
}

async fn generate(endpoint: &str, who: As<'_>, key: &str) -> Result<Value, String> {
    aws(
        endpoint,
        who,
        &[
            "kms",
            "generate-data-key",
            "--key-id",
            key,
            "--key-spec",
            "AES_256",
            "--encryption-context",
            &format!("keyward:cluster={CLUSTER}"),
        ],
    )
    .await
}

async fn decrypt(endpoint: &str, who: As<'_>, blob: &Path) -> Result<Value, String> {
    aws(
        endpoint,
        who,
        &[
            "kms",
            "decrypt",
            "--ciphertext-blob",
            &format!("fileb://{}", blob.display()),
            "--encryption-context",
            &format!("keyward:cluster={CLUSTER}"),
        ],
    )
    .await
}

fn put_policy_args<'a>(key: &'a str, policy: &'a str) -> [&'a str; 8] {
    [
        "kms",
        "put-key-policy",
        "--key-id",
        key,
        "--policy-name",
        "default",
        "--policy",
        policy,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guides_scenario_with_the_aws_cli() {
    let env = start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let e = env.server.endpoint().to_string();
    let e = e.as_str();
    let old_id = create_role(e).await;

    // The customer creates a key whose policy has the guide's two statements naming the role.
    let full = key_policy(&role_arn(), true);
    let created = ok(e, CUSTOMER_ROOT, &["kms", "create-key", "--policy", &full]).await;
    let key = created["KeyMetadata"]["Arn"]
        .as_str()
        .expect("Arn")
        .to_string();
    assert!(key.starts_with(&format!("arn:aws:kms:us-east-1:{CUSTOMER}:key/")));

    // A session of the role, through AWS_SESSION_TOKEN.
    let (akid, secret, token) = assume(e).await;
    let session: As<'_> = (&akid, &secret, Some(&token));
    let who = ok(e, session, &["sts", "get-caller-identity"]).await;
    assert_eq!(
        who["Arn"],
        format!("arn:aws:sts::{PLATFORM}:assumed-role/{ROLE_NAME}/keyward-operator")
    );
    let described = ok(e, session, &["kms", "describe-key", "--key-id", &key]).await;
    assert_eq!(described["KeyMetadata"]["KeyState"], "Enabled");
    let dk = generate(e, session, &key).await.expect("GenerateDataKey");
    let blob = dir.path().join("data-key.bin");
    std::fs::write(
        &blob,
        base64::engine::general_purpose::STANDARD
            .decode(dk["CiphertextBlob"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    let plain = decrypt(e, session, &blob).await.expect("Decrypt");
    assert_eq!(plain["Plaintext"], dk["Plaintext"]);
    assert_eq!(plain["KeyId"], key.as_str());
    let grant = ok(
        e,
        session,
        &[
            "kms",
            "create-grant",
            "--key-id",
            &key,
            "--grantee-principal",
            &role_arn(),
            "--operations",
            "Decrypt",
            "GenerateDataKey",
        ],
    )
    .await;
    assert!(grant["GrantId"].is_string());
    // The grant would authorize Decrypt on its own: retire it, so the next step tests the
    // key policy alone.
    ok(
        e,
        CUSTOMER_ROOT,
        &[
            "kms",
            "revoke-grant",
            "--key-id",
            &key,
            "--grant-id",
            grant["GrantId"].as_str().unwrap(),
        ],
    )
    .await;

    // Without kms:Decrypt in the policy, Decrypt is refused with AWS's message while
    // GenerateDataKey still works.
    let no_decrypt = key_policy(&role_arn(), false);
    ok(e, CUSTOMER_ROOT, &put_policy_args(&key, &no_decrypt)).await;
    let refused = decrypt(e, session, &blob)
        .await
        .expect_err("Decrypt must be refused");
    assert!(
        refused.contains(&format!(
            "An error occurred (AccessDeniedException) when calling the Decrypt operation: User: arn:aws:sts::{PLATFORM}:assumed-role/{ROLE_NAME}/keyward-operator is not authorized to perform: kms:Decrypt on resource: {key} because no resource-based policy allows the kms:Decrypt action"
        )),
        "{refused}"
    );
    generate(e, session, &key)
        .await
        .expect("GenerateDataKey without Decrypt");
    ok(e, CUSTOMER_ROOT, &put_policy_args(&key, &full)).await;
    decrypt(e, session, &blob).await.expect("Decrypt restored");

    // The role deleted and re-created under the same name: access is gone until the key
    // policy is saved again.
    for args in [
        &[
            "iam",
            "delete-role-policy",
            "--role-name",
            ROLE_NAME,
            "--policy-name",
            "keyward-kms",
        ][..],
        &["iam", "delete-role", "--role-name", ROLE_NAME][..],
    ] {
        ok(e, OPERATOR, args).await;
    }
    let new_id = create_role(e).await;
    assert_ne!(new_id, old_id);
    let (akid, secret, token) = assume(e).await;
    let session: As<'_> = (&akid, &secret, Some(&token));
    let refused = aws(e, session, &["kms", "describe-key", "--key-id", &key])
        .await
        .expect_err("the new role is not the one the policy names");
    assert!(refused.contains("AccessDeniedException"), "{refused}");
    generate(e, session, &key)
        .await
        .expect_err("GenerateDataKey refused too");
    let shown = ok(
        e,
        CUSTOMER_ROOT,
        &[
            "kms",
            "get-key-policy",
            "--key-id",
            &key,
            "--policy-name",
            "default",
        ],
    )
    .await;
    assert!(
        shown["Policy"].as_str().unwrap().contains(&old_id),
        "the old role shows as its unique id"
    );
    ok(e, CUSTOMER_ROOT, &put_policy_args(&key, &full)).await;
    ok(e, session, &["kms", "describe-key", "--key-id", &key]).await;
    decrypt(e, session, &blob)
        .await
        .expect("Decrypt after re-saving");
}
