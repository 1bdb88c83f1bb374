//! IAM roles, STS sessions and roles as KMS principals through the real server, driven by
//! aws-sdk-iam, aws-sdk-sts and aws-sdk-kms: the platform account's operator creates a cluster
//! role and assumes it; the customer's key policy names the role; the session uses the key.

use aws_sdk_kms::error::ProvideErrorMetadata;
use aws_sdk_kms::types::{DataKeySpec, GrantOperation};
use keyward_kms::IdentityConfig;
use keyward_kms_server::DevServer;

pub const PLATFORM: &str = "111122223333";
pub const CUSTOMER: &str = "444455556666";
pub const OPERATOR_KEY: &str = "AKIAOPERATOR00000001";
pub const OPERATOR_SECRET: &str = "operator-secret";
const NOBODY_KEY: &str = "AKIANOBODY0000000001";
const PLATFORM_ROOT_KEY: &str = "AKIAPLATFORMROOT0001";
pub const CUSTOMER_ROOT_KEY: &str = "AKIACUSTOMERROOT0001";
pub const CLUSTER: &str = "c-0123456789abcdef";
pub const ROLE_NAME: &str = "keyward-cluster-c-0123456789abcdef";

pub fn role_arn() -> String {
    format!("arn:aws:iam::{PLATFORM}:role/keyward/{ROLE_NAME}")
}

pub fn operator_arn() -> String {
    format!("arn:aws:iam::{PLATFORM}:user/keyward-operator")
}

/// The embedded setup of the contract: the platform account with its operator (iam:*,
/// sts:AssumeRole, kms:*) and a user with no policy; the customer account's root.
pub fn identities_toml() -> String {
    format!(
        r#"
[[account]]
id = "{PLATFORM}"
[[account.access_key]]
id = "{PLATFORM_ROOT_KEY}"
secret = "platform-root-secret"
[[account.access_key]]
id = "{OPERATOR_KEY}"
secret = "{OPERATOR_SECRET}"
principal = "user/keyward-operator"
[[account.access_key]]
id = "{NOBODY_KEY}"
secret = "nobody-secret"
principal = "user/nobody"
[[account.user]]
name = "keyward-operator"
policy = '''{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":["iam:*","sts:AssumeRole","kms:*"],"Resource":"*"}}]}}'''

[[account]]
id = "{CUSTOMER}"
[[account.access_key]]
id = "{CUSTOMER_ROOT_KEY}"
secret = "customer-root-secret"
"#
    )
}

pub fn trust_policy() -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"{}"}},"Action":"sts:AssumeRole","Condition":{{"StringEquals":{{"sts:ExternalId":"{CLUSTER}"}}}}}}]}}"#,
        operator_arn()
    )
}

pub const ROLE_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["kms:DescribeKey","kms:GenerateDataKey*","kms:Decrypt","kms:CreateGrant","kms:ReEncrypt*","kms:RetireGrant"],"Resource":"*"}]}"#;

/// The customer's key policy: the root administers; the guide's two statements name the role.
pub fn key_policy(role: &str, decrypt: bool) -> String {
    let basic = if decrypt {
        r#"["kms:DescribeKey","kms:GenerateDataKey*","kms:Decrypt"]"#
    } else {
        r#"["kms:DescribeKey","kms:GenerateDataKey*"]"#
    };
    format!(
        r#"{{"Version":"2012-10-17","Statement":[
{{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{CUSTOMER}:root"}},"Action":"kms:*","Resource":"*"}},
{{"Sid":"Allow keyward cluster role basic key access","Effect":"Allow","Principal":{{"AWS":"{role}"}},"Action":{basic},"Resource":"*"}},
{{"Sid":"Allow keyward cluster role to create grants for encrypted disks","Effect":"Allow","Principal":{{"AWS":"{role}"}},"Action":["kms:CreateGrant"],"Resource":"*"}}]}}"#
    )
}

pub struct Env {
    pub server: DevServer,
    pub iam: aws_sdk_iam::Client,
    pub sts: aws_sdk_sts::Client,
    pub customer_kms: aws_sdk_kms::Client,
    _dir: tempfile::TempDir,
}

pub async fn start() -> Env {
    let dir = tempfile::tempdir().expect("temp dir");
    let identities = IdentityConfig::from_toml_str(&identities_toml()).expect("identities");
    let server = DevServer::try_start_with(&dir.path().join("kms"), identities).expect("server");
    let operator = server.sdk_config_as(OPERATOR_KEY, OPERATOR_SECRET).await;
    let customer = server
        .sdk_config_as(CUSTOMER_ROOT_KEY, "customer-root-secret")
        .await;
    Env {
        iam: aws_sdk_iam::Client::new(&operator),
        sts: aws_sdk_sts::Client::new(&operator),
        customer_kms: aws_sdk_kms::Client::new(&customer),
        server,
        _dir: dir,
    }
}

/// (code, message, HTTP status) of a refused SDK call.
pub fn refusal<T, E>(
    r: Result<T, aws_sdk_kms::error::SdkError<E, aws_sdk_kms::config::http::HttpResponse>>,
) -> (String, String, u16)
where
    E: ProvideErrorMetadata + std::fmt::Debug,
{
    match r {
        Ok(_) => panic!("the call succeeded but should have been refused"),
        Err(e) => {
            let status = e.raw_response().map_or(0, |r| r.status().as_u16());
            (
                e.code()
                    .unwrap_or_else(|| panic!("no error code in {e:?}"))
                    .to_string(),
                e.message().unwrap_or_default().to_string(),
                status,
            )
        }
    }
}

impl Env {
    pub async fn create_role(&self) -> aws_sdk_iam::types::Role {
        self.iam
            .create_role()
            .role_name(ROLE_NAME)
            .path("/keyward/")
            .assume_role_policy_document(trust_policy())
            .description("keyward cluster role")
            .send()
            .await
            .expect("CreateRole")
            .role()
            .expect("Role")
            .clone()
    }

    pub async fn put_role_policy(&self) {
        self.iam
            .put_role_policy()
            .role_name(ROLE_NAME)
            .policy_name("keyward-kms")
            .policy_document(ROLE_POLICY)
            .send()
            .await
            .expect("PutRolePolicy");
    }

    pub async fn assume(&self) -> aws_credential_types::Credentials {
        let out = self
            .sts
            .assume_role()
            .role_arn(role_arn())
            .role_session_name("keyward-operator")
            .external_id(CLUSTER)
            .send()
            .await
            .expect("AssumeRole");
        let c = out.credentials().expect("Credentials");
        aws_credential_types::Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_string()),
            None,
            "test",
        )
    }

    pub async fn kms_as(&self, creds: &aws_credential_types::Credentials) -> aws_sdk_kms::Client {
        aws_sdk_kms::Client::new(&self.server.sdk_config_for_session(creds).await)
    }

    pub async fn customer_key(&self, policy: &str) -> String {
        self.customer_kms
            .create_key()
            .policy(policy)
            .send()
            .await
            .expect("CreateKey")
            .key_metadata()
            .expect("KeyMetadata")
            .arn()
            .expect("Arn")
            .to_string()
    }

    /// `POST /_keyward/clock`.
    pub async fn advance_seconds(&self, seconds: u64) {
        self.server
            .engine()
            .advance_clock(std::time::Duration::from_secs(seconds))
            .await
            .expect("advance the clock");
    }
}

/// What the guide's key policy must let a session of the cluster role do.
pub async fn use_key(kms: &aws_sdk_kms::Client, key: &str) {
    kms.describe_key()
        .key_id(key)
        .send()
        .await
        .expect("DescribeKey");
    let dk = kms
        .generate_data_key()
        .key_id(key)
        .key_spec(DataKeySpec::Aes256)
        .encryption_context("keyward:cluster", CLUSTER)
        .send()
        .await
        .expect("GenerateDataKey");
    let plain = kms
        .decrypt()
        .key_id(key)
        .ciphertext_blob(dk.ciphertext_blob().expect("CiphertextBlob").clone())
        .encryption_context("keyward:cluster", CLUSTER)
        .send()
        .await
        .expect("Decrypt");
    assert_eq!(plain.plaintext(), dk.plaintext());
    kms.create_grant()
        .key_id(key)
        .grantee_principal(role_arn())
        .operations(GrantOperation::Decrypt)
        .send()
        .await
        .expect("CreateGrant");
}

#[tokio::test]
async fn the_operator_creates_a_role_that_the_customer_key_policy_names() {
    let env = start().await;
    let role = env.create_role().await;
    assert_eq!(role.arn(), role_arn());
    assert_eq!(role.path(), "/keyward/");
    assert!(role.role_id().starts_with("AROA") && role.role_id().len() == 21);
    assert_eq!(role.max_session_duration(), Some(3600));
    env.put_role_policy().await;

    let got = env
        .iam
        .get_role()
        .role_name(ROLE_NAME)
        .send()
        .await
        .expect("GetRole");
    let got = got.role().expect("Role");
    assert_eq!(got.role_id(), role.role_id());
    assert_eq!(got.description(), Some("keyward cluster role"));
    // IAM answers policy documents URL-encoded.
    let doc = got.assume_role_policy_document().expect("document");
    assert!(doc.starts_with("%7B%22Version%22"), "{doc}");
    let decoded = percent_decode(doc);
    assert_eq!(decoded, trust_policy());

    let creds = env.assume().await;
    assert!(creds.access_key_id().starts_with("ASIA"));
    let key = env.customer_key(&key_policy(&role_arn(), true)).await;
    let session_kms = env.kms_as(&creds).await;
    use_key(&session_kms, &key).await;

    // GetCallerIdentity for each kind of identity.
    let me = aws_sdk_sts::Client::new(&env.server.sdk_config_for_session(&creds).await)
        .get_caller_identity()
        .send()
        .await
        .expect("GetCallerIdentity");
    assert_eq!(
        me.arn(),
        Some(format!("arn:aws:sts::{PLATFORM}:assumed-role/{ROLE_NAME}/keyward-operator").as_str())
    );
    assert_eq!(
        me.user_id(),
        Some(format!("{}:keyward-operator", role.role_id()).as_str())
    );
    assert_eq!(me.account(), Some(PLATFORM));
    let op = env
        .sts
        .get_caller_identity()
        .send()
        .await
        .expect("GetCallerIdentity");
    assert_eq!(op.arn(), Some(operator_arn().as_str()));
    assert!(op.user_id().unwrap().starts_with("AIDA"));
    let root = aws_sdk_sts::Client::new(
        &env.server
            .sdk_config_as(CUSTOMER_ROOT_KEY, "customer-root-secret")
            .await,
    )
    .get_caller_identity()
    .send()
    .await
    .expect("GetCallerIdentity");
    assert_eq!(
        root.arn(),
        Some(format!("arn:aws:iam::{CUSTOMER}:root").as_str())
    );
    assert_eq!(root.user_id(), Some(CUSTOMER));

    // The session's KMS calls are in the customer's trail as an AssumedRole with its issuer.
    let mut out = Vec::new();
    env.server.engine().export_trail(&mut out).expect("trail");
    let text = String::from_utf8(out).expect("utf-8");
    let record: serde_json::Value = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
        .find(|r| r["eventName"] == "Decrypt" && r["recipientAccountId"] == CUSTOMER)
        .expect("the Decrypt record in the key owner's trail");
    let who = &record["userIdentity"];
    assert_eq!(who["type"], "AssumedRole");
    assert_eq!(
        who["arn"],
        format!("arn:aws:sts::{PLATFORM}:assumed-role/{ROLE_NAME}/keyward-operator")
    );
    assert_eq!(who["sessionContext"]["sessionIssuer"]["arn"], role_arn());
    assert_eq!(who["accessKeyId"], creds.access_key_id());

    // IAM and STS calls are in the trail too; the session's secret never is.
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let created = records
        .iter()
        .find(|r| r["eventSource"] == "iam.amazonaws.com" && r["eventName"] == "CreateRole")
        .expect("CreateRole in the trail");
    assert_eq!(created["userIdentity"]["arn"], operator_arn());
    assert_eq!(created["requestParameters"]["roleName"], ROLE_NAME);
    let assumed = records
        .iter()
        .find(|r| r["eventSource"] == "sts.amazonaws.com" && r["eventName"] == "AssumeRole")
        .expect("AssumeRole in the trail");
    assert_eq!(assumed["requestParameters"]["externalId"], CLUSTER);
    assert_eq!(
        assumed["responseElements"]["credentials"]["accessKeyId"],
        creds.access_key_id()
    );
    assert!(!text.contains(creds.secret_access_key()));
    assert!(!text.contains(creds.session_token().expect("token")));
}

#[tokio::test]
async fn cross_account_use_needs_the_roles_identity_policy() {
    let env = start().await;
    env.create_role().await;
    let key = env.customer_key(&key_policy(&role_arn(), true)).await;
    let creds = env.assume().await;
    let kms = env.kms_as(&creds).await;
    // No inline policy on the role yet: the key policy alone does not allow a caller from
    // another account.
    let (code, message, _) = refusal(kms.describe_key().key_id(&key).send().await);
    assert_eq!(code, "AccessDeniedException");
    assert_eq!(
        message,
        format!(
            "User: arn:aws:sts::{PLATFORM}:assumed-role/{ROLE_NAME}/keyward-operator is not authorized to perform: kms:DescribeKey on resource: {key} because no identity-based policy allows the kms:DescribeKey action"
        )
    );
    // The role's inline policy takes effect for the existing session at once.
    env.put_role_policy().await;
    use_key(&kms, &key).await;
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).expect("hex"));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("utf-8")
}

#[tokio::test]
async fn assume_role_refusals_change_nothing() {
    let env = start().await;
    env.create_role().await;
    env.put_role_policy().await;
    let assume = |external: Option<&str>, duration: Option<i32>| {
        let mut r = env
            .sts
            .assume_role()
            .role_arn(role_arn())
            .role_session_name("keyward-operator");
        if let Some(e) = external {
            r = r.external_id(e);
        }
        if let Some(d) = duration {
            r = r.duration_seconds(d);
        }
        r.send()
    };
    let denied = format!(
        "User: {} is not authorized to perform: sts:AssumeRole on resource: {}",
        operator_arn(),
        role_arn()
    );
    for external in [Some("c-ffffffffffffffff"), None] {
        let (code, message, status) = refusal(assume(external, None).await);
        assert_eq!(
            (code.as_str(), status),
            ("AccessDenied", 403),
            "{external:?}"
        );
        assert_eq!(message, denied);
    }
    let (code, message, status) = refusal(assume(Some(CLUSTER), Some(899)).await);
    assert_eq!((code.as_str(), status), ("ValidationError", 400));
    assert!(
        message.contains("greater than or equal to 900"),
        "{message}"
    );
    let (code, message, _) = refusal(assume(Some(CLUSTER), Some(7200)).await);
    assert_eq!(code, "ValidationError");
    assert_eq!(
        message,
        "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."
    );
    // A role that does not exist is refused like one that may not be assumed.
    let missing = format!("arn:aws:iam::{PLATFORM}:role/keyward/nope");
    let (code, message, _) = refusal(
        env.sts
            .assume_role()
            .role_arn(&missing)
            .role_session_name("s1")
            .external_id(CLUSTER)
            .send()
            .await,
    );
    assert_eq!(code, "AccessDenied");
    assert!(message.ends_with(&format!("on resource: {missing}")));
    // A user the trust policy does not name, and an account root.
    let nobody =
        aws_sdk_sts::Client::new(&env.server.sdk_config_as(NOBODY_KEY, "nobody-secret").await);
    let (code, _, _) = refusal(
        nobody
            .assume_role()
            .role_arn(role_arn())
            .role_session_name("s1")
            .external_id(CLUSTER)
            .send()
            .await,
    );
    assert_eq!(code, "AccessDenied");
    let root = aws_sdk_sts::Client::new(
        &env.server
            .sdk_config_as(PLATFORM_ROOT_KEY, "platform-root-secret")
            .await,
    );
    let (code, message, _) = refusal(
        root.assume_role()
            .role_arn(role_arn())
            .role_session_name("s1")
            .external_id(CLUSTER)
            .send()
            .await,
    );
    assert_eq!(
        (code.as_str(), message.as_str()),
        ("AccessDenied", "Roles may not be assumed by root accounts.")
    );
    // Malformed parameters are refused before anything is looked up.
    let bad: [(&str, &str, &str, &str); 4] = [
        ("arn:aws:iam::111122223333:user/keyward-operator", "s1", CLUSTER, "is invalid"),
        (&role_arn(), "s", CLUSTER, "at 'roleSessionName' failed to satisfy constraint: Member must have length greater than or equal to 2"),
        (&role_arn(), "bad session", CLUSTER, "at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern"),
        (&role_arn(), "s1", "bad external id", "at 'externalId' failed to satisfy constraint: Member must satisfy regular expression pattern"),
    ];
    for (arn, session, external, want) in bad {
        let (code, message, status) = refusal(
            env.sts
                .assume_role()
                .role_arn(arn)
                .role_session_name(session)
                .external_id(external)
                .send()
                .await,
        );
        assert_eq!(
            (code.as_str(), status),
            ("ValidationError", 400),
            "{message}"
        );
        assert!(message.contains(want), "{message}");
    }
    // Every refusal above is in the trail with its error, and none issued credentials.
    let mut out = Vec::new();
    env.server.engine().export_trail(&mut out).expect("trail");
    let records: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|r: &serde_json::Value| r["eventName"] == "AssumeRole")
        .collect();
    assert_eq!(records.len(), 11);
    assert!(records
        .iter()
        .all(|r| r["errorCode"].is_string() && r["responseElements"].is_null()));

    // The right ExternalId and a duration within the role's maximum work.
    assume(Some(CLUSTER), Some(900)).await.expect("AssumeRole");
}

#[tokio::test]
async fn temporary_credentials_need_their_token_and_expire_on_the_kms_clock() {
    let env = start().await;
    env.create_role().await;
    env.put_role_policy().await;
    let key = env.customer_key(&key_policy(&role_arn(), true)).await;
    let creds = env.assume().await;
    let kms = env.kms_as(&creds).await;
    kms.describe_key()
        .key_id(&key)
        .send()
        .await
        .expect("DescribeKey");

    // Without the session token, or with another one, the key is not recognised.
    for token in [None, Some("not-the-token".to_string())] {
        let wrong = aws_credential_types::Credentials::new(
            creds.access_key_id(),
            creds.secret_access_key(),
            token,
            None,
            "test",
        );
        let (code, message, status) = refusal(
            env.kms_as(&wrong)
                .await
                .describe_key()
                .key_id(&key)
                .send()
                .await,
        );
        assert_eq!(
            (code.as_str(), status),
            ("UnrecognizedClientException", 400)
        );
        assert_eq!(
            message,
            "The security token included in the request is invalid."
        );
        let sts = aws_sdk_sts::Client::new(&env.server.sdk_config_for_session(&wrong).await);
        let (code, _, status) = refusal(sts.get_caller_identity().send().await);
        assert_eq!((code.as_str(), status), ("InvalidClientTokenId", 403));
    }

    env.advance_seconds(3600).await;
    let (code, message, status) = refusal(kms.describe_key().key_id(&key).send().await);
    assert_eq!((code.as_str(), status), ("ExpiredTokenException", 400));
    assert_eq!(
        message,
        "The security token included in the request is expired"
    );
    let sts = aws_sdk_sts::Client::new(&env.server.sdk_config_for_session(&creds).await);
    let (code, _, status) = refusal(sts.get_caller_identity().send().await);
    assert_eq!((code.as_str(), status), ("ExpiredToken", 400));
    // A new session works again.
    let fresh = env.assume().await;
    env.kms_as(&fresh)
        .await
        .describe_key()
        .key_id(&key)
        .send()
        .await
        .expect("DescribeKey with fresh credentials");
}

#[tokio::test]
async fn roles_and_sessions_survive_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("kms");
    let (creds, role_id) = {
        let identities = IdentityConfig::from_toml_str(&identities_toml()).unwrap();
        let server = DevServer::try_start_with(&data, identities).unwrap();
        let config = server.sdk_config_as(OPERATOR_KEY, OPERATOR_SECRET).await;
        let env = Env {
            iam: aws_sdk_iam::Client::new(&config),
            sts: aws_sdk_sts::Client::new(&config),
            customer_kms: aws_sdk_kms::Client::new(&config),
            server,
            _dir: tempfile::tempdir().unwrap(),
        };
        let role = env.create_role().await;
        env.put_role_policy().await;
        (env.assume().await, role.role_id().to_string())
    };
    let identities = IdentityConfig::from_toml_str(&identities_toml()).unwrap();
    let server = DevServer::try_start_with(&data, identities).unwrap();
    let config = server.sdk_config_as(OPERATOR_KEY, OPERATOR_SECRET).await;
    let role = aws_sdk_iam::Client::new(&config)
        .get_role()
        .role_name(ROLE_NAME)
        .send()
        .await
        .expect("GetRole after restart");
    assert_eq!(role.role().unwrap().role_id(), role_id);
    let me = aws_sdk_sts::Client::new(&server.sdk_config_for_session(&creds).await)
        .get_caller_identity()
        .send()
        .await
        .expect("the session's credentials after restart");
    assert!(me.user_id().unwrap().starts_with(&role_id));
}

#[tokio::test]
async fn a_deleted_and_recreated_role_has_no_access_until_the_key_policy_is_saved_again() {
    let env = start().await;
    let old = env.create_role().await;
    env.put_role_policy().await;
    let policy = key_policy(&role_arn(), true);
    let key = env.customer_key(&policy).await;
    let old_session = env.kms_as(&env.assume().await).await;
    use_key(&old_session, &key).await;

    // IAM refuses to delete a role that still has inline policies.
    let (code, message, status) = refusal(env.iam.delete_role().role_name(ROLE_NAME).send().await);
    assert_eq!((code.as_str(), status), ("DeleteConflict", 409));
    assert_eq!(message, "Cannot delete entity, must delete policies first.");
    env.iam
        .delete_role_policy()
        .role_name(ROLE_NAME)
        .policy_name("keyward-kms")
        .send()
        .await
        .expect("DeleteRolePolicy");
    env.iam
        .delete_role()
        .role_name(ROLE_NAME)
        .send()
        .await
        .expect("DeleteRole");
    let (code, message, status) = refusal(env.iam.get_role().role_name(ROLE_NAME).send().await);
    assert_eq!((code.as_str(), status), ("NoSuchEntity", 404));
    assert_eq!(
        message,
        format!("The role with name {ROLE_NAME} cannot be found.")
    );
    // As on AWS, the deleted role's session still authenticates, and the key policy, bound to
    // the role's unique id, denies it: AccessDeniedException, not UnrecognizedClientException.
    let session_arn = format!("arn:aws:sts::{PLATFORM}:assumed-role/{ROLE_NAME}/keyward-operator");
    let ciphertext = env
        .customer_kms
        .encrypt()
        .key_id(&key)
        .plaintext(aws_sdk_kms::primitives::Blob::new(b"data".to_vec()))
        .send()
        .await
        .expect("Encrypt by the key's owner")
        .ciphertext_blob()
        .expect("CiphertextBlob")
        .clone()
        .into_inner();
    for action in ["DescribeKey", "GenerateDataKey", "Decrypt"] {
        let result = match action {
            "DescribeKey" => refusal(old_session.describe_key().key_id(&key).send().await),
            "GenerateDataKey" => refusal(
                old_session
                    .generate_data_key()
                    .key_id(&key)
                    .key_spec(DataKeySpec::Aes256)
                    .send()
                    .await,
            ),
            _ => refusal(
                old_session
                    .decrypt()
                    .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(ciphertext.clone()))
                    .send()
                    .await,
            ),
        };
        let (code, message, status) = result;
        assert_eq!(
            (code.as_str(), status),
            ("AccessDeniedException", 400),
            "{action}: {message}"
        );
        assert!(
            message.starts_with(&format!(
                "User: {session_arn} is not authorized to perform: kms:{action} on resource: {key}"
            )),
            "{action}: {message}"
        );
    }
    // The key policy now shows the deleted role by its unique id, as AWS does.
    let shown = env
        .customer_kms
        .get_key_policy()
        .key_id(&key)
        .send()
        .await
        .expect("GetKeyPolicy")
        .policy()
        .expect("Policy")
        .to_string();
    assert!(shown.contains(&format!("\"{}\"", old.role_id())), "{shown}");
    assert!(!shown.contains(&role_arn()), "{shown}");

    // Same name, new role: a new id, which the saved policy does not match.
    let new = env.create_role().await;
    assert_ne!(new.role_id(), old.role_id());
    env.put_role_policy().await;
    let kms = env.kms_as(&env.assume().await).await;
    let (code, _, _) = refusal(kms.describe_key().key_id(&key).send().await);
    assert_eq!(code, "AccessDeniedException");
    let (code, _, _) = refusal(
        kms.generate_data_key()
            .key_id(&key)
            .key_spec(DataKeySpec::Aes256)
            .send()
            .await,
    );
    assert_eq!(code, "AccessDeniedException");

    // Saving the policy again binds the ARN to the new role.
    env.customer_kms
        .put_key_policy()
        .key_id(&key)
        .policy(&policy)
        .send()
        .await
        .expect("PutKeyPolicy");
    use_key(&kms, &key).await;
    let shown = env
        .customer_kms
        .get_key_policy()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(shown.policy(), Some(policy.as_str()));
    // The old role's session stays denied: the policy and the grants now name the new role.
    let (code, _, _) = refusal(old_session.describe_key().key_id(&key).send().await);
    assert_eq!(code, "AccessDeniedException");
}

#[tokio::test]
async fn role_listing_inline_policies_and_paging() {
    let env = start().await;
    env.create_role().await;
    env.put_role_policy().await;
    for (name, path) in [("keyward-cluster-b", "/keyward/"), ("other", "/")] {
        env.iam
            .create_role()
            .role_name(name)
            .path(path)
            .assume_role_policy_document(trust_policy())
            .max_session_duration(7200)
            .send()
            .await
            .expect("CreateRole");
    }
    let all = env.iam.list_roles().send().await.expect("ListRoles");
    let names: Vec<&str> = all.roles().iter().map(|r| r.role_name()).collect();
    assert_eq!(names, ["keyward-cluster-b", ROLE_NAME, "other"]);
    assert!(!all.is_truncated());
    let keyward = env
        .iam
        .list_roles()
        .path_prefix("/keyward/")
        .max_items(1)
        .send()
        .await
        .expect("ListRoles");
    assert_eq!(keyward.roles().len(), 1);
    assert!(keyward.is_truncated());
    let rest = env
        .iam
        .list_roles()
        .path_prefix("/keyward/")
        .marker(keyward.marker().expect("Marker"))
        .send()
        .await
        .expect("ListRoles page 2");
    assert_eq!(rest.roles()[0].role_name(), ROLE_NAME);
    assert!(!rest.is_truncated());
    let other = all
        .roles()
        .iter()
        .find(|r| r.role_name() == "other")
        .unwrap();
    assert_eq!(other.max_session_duration(), Some(7200));
    assert_eq!(other.arn(), format!("arn:aws:iam::{PLATFORM}:role/other"));

    let second = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"kms:ScheduleKeyDeletion","Resource":"*"}]}"#;
    env.iam
        .put_role_policy()
        .role_name(ROLE_NAME)
        .policy_name("deny-deletion")
        .policy_document(second)
        .send()
        .await
        .expect("PutRolePolicy");
    let listed = env
        .iam
        .list_role_policies()
        .role_name(ROLE_NAME)
        .send()
        .await
        .expect("ListRolePolicies");
    assert_eq!(listed.policy_names(), ["deny-deletion", "keyward-kms"]);
    let got = env
        .iam
        .get_role_policy()
        .role_name(ROLE_NAME)
        .policy_name("keyward-kms")
        .send()
        .await
        .expect("GetRolePolicy");
    assert_eq!(got.role_name(), ROLE_NAME);
    assert_eq!(percent_decode(got.policy_document()), ROLE_POLICY);
    env.iam
        .delete_role_policy()
        .role_name(ROLE_NAME)
        .policy_name("deny-deletion")
        .send()
        .await
        .expect("DeleteRolePolicy");
    let (code, message, status) = refusal(
        env.iam
            .get_role_policy()
            .role_name(ROLE_NAME)
            .policy_name("deny-deletion")
            .send()
            .await,
    );
    assert_eq!((code.as_str(), status), ("NoSuchEntity", 404));
    assert_eq!(
        message,
        "The role policy with name deny-deletion cannot be found."
    );

    // Role chaining: a session may assume a role its trust policy allows, for at most an hour.
    let chained_trust = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"{}"}},"Action":"sts:AssumeRole"}}]}}"#,
        role_arn()
    );
    env.iam
        .create_role()
        .role_name("chained")
        .assume_role_policy_document(chained_trust)
        .max_session_duration(7200)
        .send()
        .await
        .expect("CreateRole");
    env.iam
        .put_role_policy()
        .role_name(ROLE_NAME)
        .policy_name("chain")
        .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Resource":"*"}]}"#)
        .send()
        .await
        .expect("PutRolePolicy");
    let session =
        aws_sdk_sts::Client::new(&env.server.sdk_config_for_session(&env.assume().await).await);
    let chained = format!("arn:aws:iam::{PLATFORM}:role/chained");
    let (code, message, _) = refusal(
        session
            .assume_role()
            .role_arn(&chained)
            .role_session_name("hop")
            .duration_seconds(7200)
            .send()
            .await,
    );
    assert_eq!(code, "ValidationError");
    assert!(message.contains("role chaining"), "{message}");
    let hop = session
        .assume_role()
        .role_arn(&chained)
        .role_session_name("hop")
        .send()
        .await
        .expect("AssumeRole by a role session");
    assert_eq!(
        hop.assumed_role_user().unwrap().arn(),
        format!("arn:aws:sts::{PLATFORM}:assumed-role/chained/hop")
    );
}

#[tokio::test]
async fn iam_bad_input_gets_iams_errors_and_changes_nothing() {
    let env = start().await;
    env.create_role().await;
    let create = |name: &str, doc: &str| {
        env.iam
            .create_role()
            .role_name(name)
            .assume_role_policy_document(doc)
            .send()
    };
    // Names are unique per account regardless of case.
    let (code, message, status) = refusal(create(&ROLE_NAME.to_uppercase(), &trust_policy()).await);
    assert_eq!((code.as_str(), status), ("EntityAlreadyExists", 409));
    assert_eq!(
        message,
        format!("Role with name {ROLE_NAME} already exists.")
    );

    let nobody_trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/ghost"},"Action":"sts:AssumeRole"}]}"#;
    let with_resource = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"sts:AssumeRole","Resource":"*"}]}"#;
    let bad_operator = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"sts:AssumeRole","Condition":{"StringEqualz":{"sts:ExternalId":"x"}}}]}"#;
    let cases: Vec<(&str, String, &str, u16, &str)> = vec![
        ("r1", "{not json".into(), "MalformedPolicyDocument", 400, ""),
        (
            "r2",
            nobody_trust.into(),
            "MalformedPolicyDocument",
            400,
            "Invalid principal in policy: \"AWS\":\"arn:aws:iam::111122223333:user/ghost\"",
        ),
        ("r3", with_resource.into(), "MalformedPolicyDocument", 400, "Has prohibited field Resource"),
        ("r4", bad_operator.into(), "MalformedPolicyDocument", 400, "Invalid Condition type : StringEqualz"),
        (
            "r5",
            trust_policy().replace("Condition", &format!("Sid\":\"{}\",\"Condition", "x".repeat(2100))),
            "LimitExceeded",
            409,
            "Cannot exceed quota for ACLSizePerRole: 2048",
        ),
        (
            "bad name!",
            trust_policy(),
            "ValidationError",
            400,
            "1 validation error detected: Value 'bad name!' at 'roleName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]+",
        ),
    ];
    for (name, doc, want_code, want_status, want_message) in cases {
        let (code, message, status) = refusal(create(name, &doc).await);
        assert_eq!(
            (code.as_str(), status),
            (want_code, want_status),
            "{name}: {message}"
        );
        if !want_message.is_empty() {
            assert_eq!(message, want_message, "{name}");
        }
    }
    let (code, message, _) = refusal(
        env.iam
            .create_role()
            .role_name("r6")
            .assume_role_policy_document(trust_policy())
            .max_session_duration(100)
            .send()
            .await,
    );
    assert_eq!(code, "ValidationError");
    assert!(
        message.contains("greater than or equal to 3600"),
        "{message}"
    );
    let (code, message, _) = refusal(
        env.iam
            .create_role()
            .role_name("r7")
            .path("keyward")
            .assume_role_policy_document(trust_policy())
            .send()
            .await,
    );
    assert_eq!(code, "ValidationError");
    assert!(message.contains("at 'path'"), "{message}");

    // Inline policies are identity policies: no Principal; and the role must exist.
    let (code, message, status) = refusal(
        env.iam
            .put_role_policy()
            .role_name(ROLE_NAME)
            .policy_name("p")
            .policy_document(trust_policy())
            .send()
            .await,
    );
    assert_eq!((code.as_str(), status), ("MalformedPolicyDocument", 400));
    assert_eq!(message, "Policy document should not specify a principal.");
    let (code, _, status) = refusal(
        env.iam
            .put_role_policy()
            .role_name("ghost")
            .policy_name("p")
            .policy_document(ROLE_POLICY)
            .send()
            .await,
    );
    assert_eq!((code.as_str(), status), ("NoSuchEntity", 404));
    let (code, _, status) = refusal(env.iam.delete_role().role_name("ghost").send().await);
    assert_eq!((code.as_str(), status), ("NoSuchEntity", 404));

    // IAM is the root's and the allowed users': a user without an iam: policy is refused.
    let nobody =
        aws_sdk_iam::Client::new(&env.server.sdk_config_as(NOBODY_KEY, "nobody-secret").await);
    let (code, message, status) = refusal(
        nobody
            .create_role()
            .role_name("r8")
            .assume_role_policy_document(trust_policy())
            .send()
            .await,
    );
    assert_eq!((code.as_str(), status), ("AccessDenied", 403));
    assert_eq!(
        message,
        format!("User: arn:aws:iam::{PLATFORM}:user/nobody is not authorized to perform: iam:CreateRole on resource: arn:aws:iam::{PLATFORM}:role/r8 because no identity-based policy allows the iam:CreateRole action")
    );
    let (code, _, _) = refusal(nobody.list_roles().send().await);
    assert_eq!(code, "AccessDenied");

    // Nothing above changed anything.
    let roles = env.iam.list_roles().send().await.expect("ListRoles");
    let names: Vec<&str> = roles.roles().iter().map(|r| r.role_name()).collect();
    assert_eq!(names, [ROLE_NAME]);
    let policies = env
        .iam
        .list_role_policies()
        .role_name(ROLE_NAME)
        .send()
        .await
        .unwrap();
    assert!(policies.policy_names().is_empty());

    // A key policy naming a role that does not exist is refused as KMS does.
    let ghost = format!("arn:aws:iam::{PLATFORM}:role/keyward/ghost");
    let (code, message, _) = refusal(
        env.customer_kms
            .create_key()
            .policy(key_policy(&ghost, true))
            .send()
            .await,
    );
    assert_eq!(code, "MalformedPolicyDocumentException");
    assert_eq!(
        message,
        "Policy contains a statement with one or more invalid principals."
    );
}

/// The control plane's way in: aws-config's refreshing `AssumeRoleProvider` over the operator's
/// credentials, against the same endpoint.
#[tokio::test]
async fn aws_configs_assume_role_provider_reaches_the_key_as_the_role() {
    let env = start().await;
    env.create_role().await;
    env.put_role_policy().await;
    let key = env.customer_key(&key_policy(&role_arn(), true)).await;
    let operator = env
        .server
        .sdk_config_as(OPERATOR_KEY, OPERATOR_SECRET)
        .await;
    let provider = aws_config::sts::AssumeRoleProvider::builder(role_arn())
        .session_name("keyward-operator")
        .external_id(CLUSTER)
        .configure(&operator)
        .build()
        .await;
    let config = operator
        .to_builder()
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(provider),
        )
        .build();
    let kms = aws_sdk_kms::Client::new(&config);
    use_key(&kms, &key).await;
    let me = aws_sdk_sts::Client::new(&config)
        .get_caller_identity()
        .send()
        .await
        .expect("GetCallerIdentity");
    assert_eq!(
        me.arn(),
        Some(format!("arn:aws:sts::{PLATFORM}:assumed-role/{ROLE_NAME}/keyward-operator").as_str())
    );
}
