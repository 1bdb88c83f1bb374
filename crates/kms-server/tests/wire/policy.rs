//! Key-policy, identity-policy and grant authorization through the real server and aws-sdk-kms:
//! the engine's allow/deny table (each case naming the AWS rule it checks), one SDK client per
//! identity. Zero cases may let an unauthorized call through.

#[path = "../../../kms/tests/engine/policy_cases.rs"]
mod policy_cases;

use std::collections::{BTreeMap, HashMap};

use aws_sdk_kms::error::ProvideErrorMetadata;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::GrantConstraints;
use aws_sdk_kms::types::{DataKeySpec, GrantOperation};
use keyward_kms::{Engine, EngineConfig, Identity, RootKey};
use policy_cases::{
    base_action, grant_request, identities, key_policy, setup_grants, who, Case, Want, CASES, KEYS,
};

const NAMES: &[&str] = &[
    "root",
    "other-root",
    "alice",
    "bob",
    "carol",
    "dave",
    "erin",
    "grantee",
];

fn access_key_id(i: usize) -> String {
    format!("AKIAPOLICYTABLE{i:05}")
}

async fn client(endpoint: &str, i: usize) -> aws_sdk_kms::Client {
    let creds = aws_credential_types::Credentials::from_keys(
        access_key_id(i),
        format!("policy-table-secret-{i}"),
        None,
    );
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(creds)
        .load()
        .await;
    aws_sdk_kms::Client::new(&config)
}

/// Ok, or the error's (code, message).
fn outcome<T, E>(
    r: Result<T, aws_sdk_kms::error::SdkError<E, aws_sdk_kms::config::http::HttpResponse>>,
) -> Result<(), (String, String)>
where
    E: ProvideErrorMetadata + std::fmt::Debug,
{
    match r {
        Ok(_) => Ok(()),
        Err(e) => Err((
            e.code()
                .unwrap_or_else(|| panic!("no error code in {e:?}"))
                .to_string(),
            e.message().unwrap_or_default().to_string(),
        )),
    }
}

/// A CreateGrant through the SDK.
#[allow(clippy::too_many_arguments)] // one argument per field of the request, as the SDK builder has them
async fn create_grant(
    kms: &aws_sdk_kms::Client,
    key: &str,
    grantee: &str,
    operations: &[impl AsRef<str>],
    app: Option<&str>,
    equals: bool,
    retiring: Option<&str>,
    dry: Option<bool>,
) -> Result<(), (String, String)> {
    let constraints = app.map(|app| {
        let pair: HashMap<String, String> = [("app".to_string(), app.to_string())].into();
        if equals {
            GrantConstraints::builder()
                .set_encryption_context_equals(Some(pair))
                .build()
        } else {
            GrantConstraints::builder()
                .set_encryption_context_subset(Some(pair))
                .build()
        }
    });
    outcome(
        kms.create_grant()
            .key_id(key)
            .grantee_principal(grantee)
            .set_operations(Some(
                operations
                    .iter()
                    .map(|o| GrantOperation::from(o.as_ref()))
                    .collect(),
            ))
            .set_constraints(constraints)
            .set_retiring_principal(retiring.map(str::to_string))
            .set_dry_run(dry)
            .send()
            .await,
    )
}

async fn run_case(
    kms: &aws_sdk_kms::Client,
    case: &Case,
    key: &str,
    blob: Option<Vec<u8>>,
) -> Result<(), (String, String)> {
    let ctx: Option<HashMap<String, String>> = case
        .ctx
        .map(|(k, v)| [(k.to_string(), v.to_string())].into());
    let (action, dry) = match case.action.strip_prefix("DryRun") {
        Some(a) => (a, Some(true)),
        None => (case.action, None),
    };
    match action {
        "DescribeKey" => outcome(kms.describe_key().key_id(key).send().await),
        "GetKeyPolicy" => outcome(
            kms.get_key_policy()
                .key_id(key)
                .policy_name("default")
                .send()
                .await,
        ),
        "Encrypt" => outcome(
            kms.encrypt()
                .key_id(key)
                .plaintext(Blob::new(b"secret".to_vec()))
                .set_encryption_context(ctx)
                .set_dry_run(dry)
                .send()
                .await,
        ),
        "Decrypt" => outcome(
            kms.decrypt()
                .ciphertext_blob(Blob::new(blob.expect("a blob")))
                .set_encryption_context(ctx)
                .set_dry_run(dry)
                .send()
                .await,
        ),
        "GenerateDataKey" => outcome(
            kms.generate_data_key()
                .key_id(key)
                .key_spec(DataKeySpec::Aes256)
                .set_encryption_context(ctx)
                .send()
                .await,
        ),
        "GenerateDataKeyWithoutPlaintext" => outcome(
            kms.generate_data_key_without_plaintext()
                .key_id(key)
                .key_spec(DataKeySpec::Aes256)
                .set_encryption_context(ctx)
                .send()
                .await,
        ),
        a if a.starts_with("CreateGrant") => {
            let caller_arn = match who(case.who) {
                (account, None) => Identity::root(account).arn,
                (account, Some(user)) => Identity::iam_user(account, user).arn,
            };
            let g = grant_request(a, &caller_arn).expect("a CreateGrant case");
            create_grant(
                kms,
                key,
                &g.grantee,
                &g.operations,
                g.app,
                g.equals,
                g.retiring.as_deref(),
                dry,
            )
            .await
        }
        other => panic!("the table has no SDK call for {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_deny_table_through_the_sdk() {
    assert!(CASES.len() >= 60);
    let mut ids = identities();
    for (i, name) in NAMES.iter().enumerate() {
        let identity = match who(name) {
            (account, None) => Identity::root(account),
            (account, Some(user)) => Identity::iam_user(account, user),
        };
        ids.add(
            access_key_id(i),
            identity,
            format!("policy-table-secret-{i}").as_bytes(),
        )
        .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(EngineConfig {
        data_dir: dir.path().to_owned(),
        root_key: RootKey::generate().unwrap(),
        identities: ids,
        dev: true,
    })
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(keyward_kms_server::serve(
        listener,
        engine.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    let mut clients = BTreeMap::new();
    for (i, name) in NAMES.iter().enumerate() {
        clients.insert(*name, client(&endpoint, i).await);
    }
    let root = &clients["root"];

    let mut arns = BTreeMap::new();
    for k in KEYS {
        let v = root
            .create_key()
            .set_policy(key_policy(k).map(|p| p.to_string()))
            .send()
            .await
            .unwrap();
        arns.insert(format!("{k:?}"), v.key_metadata.unwrap().arn.unwrap());
    }
    for g in setup_grants() {
        create_grant(
            root,
            &arns[&format!("{:?}", g.key)],
            &g.grantee,
            g.operations,
            g.app,
            false,
            None,
            None,
        )
        .await
        .unwrap();
    }

    let mut failures = Vec::new();
    let mut denials = 0;
    for case in CASES {
        let key = &arns[&format!("{:?}", case.key)];
        let blob = if case.action.ends_with("Decrypt") {
            let out = root
                .encrypt()
                .key_id(key)
                .plaintext(Blob::new(b"secret".to_vec()))
                .set_encryption_context(
                    case.ctx
                        .map(|(k, v)| [(k.to_string(), v.to_string())].into()),
                )
                .send()
                .await
                .unwrap();
            Some(out.ciphertext_blob.unwrap().into_inner())
        } else {
            None
        };
        let who_arn = match who(case.who) {
            (account, None) => Identity::root(account).arn,
            (account, Some(user)) => Identity::iam_user(account, user).arn,
        };
        let action = base_action(case.action);
        let got = match run_case(&clients[case.who], case, key, blob).await {
            Ok(()) => Want::Allow,
            Err((code, _)) if code == "DryRunOperationException" => Want::Allow,
            Err((code, message)) if code == "AccessDeniedException" => {
                let head = format!(
                    "User: {who_arn} is not authorized to perform: kms:{action} on resource: {key} "
                );
                assert!(message.starts_with(&head), "{}: {message}", case.rule);
                denials += 1;
                Want::Deny
            }
            Err((code, message)) => {
                panic!("{} ({} {action}): {code}: {message}", case.rule, case.who)
            }
        };
        if got != case.want {
            failures.push(format!(
                "{} — {} {} on {:?}: want {:?}, got {:?}",
                case.rule, case.who, case.action, case.key, case.want, got
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let mut out = Vec::new();
    engine.export_trail(&mut out).unwrap();
    let denied_in_callers_account = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| {
            r["errorCode"] == "AccessDeniedException"
                && r["recipientAccountId"] == r["userIdentity"]["accountId"]
        })
        .count();
    assert_eq!(denied_in_callers_account, denials);
}
