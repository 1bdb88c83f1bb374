//! Authorization that is not one request against one key policy, through the real server with
//! aws-sdk-kms (and raw signed requests for CloudTrail): who may retire and revoke grants,
//! ListRetirableGrants across accounts and its paging, LookupEvents permissions, and the rights
//! aliases need on both their keys. Every refusal asserts AWS's error code, message shape and
//! HTTP status, and that nothing changed.

use std::collections::BTreeMap;

use aws_sdk_kms::types::{GrantListEntry, GrantOperation, Tag};
use keyward_kms::IdentityConfig;
use keyward_kms_server::DevServer;

use crate::iam::refusal;
use crate::raw::{signed_headers, Creds, RawClient};

const A: &str = "111122223333";
const B: &str = "444455556666";

/// (access key id, principal) of every caller; the secret is the id reversed.
const CALLERS: &[(&str, &str, &str)] = &[
    ("AKIAAUTHZROOTA000001", A, "root"),
    ("AKIAAUTHZADMIN000001", A, "user/admin"),
    ("AKIAAUTHZBOB00000001", A, "user/bob"),
    ("AKIAAUTHZCAROL000001", A, "user/carol"),
    ("AKIAAUTHZDAN00000001", A, "user/dan"),
    ("AKIAAUTHZRETIRER0001", A, "user/retirer"),
    ("AKIAAUTHZNORETIRE001", A, "user/noretire"),
    ("AKIAAUTHZMOVER000001", A, "user/mover"),
    ("AKIAAUTHZKEYONLY0001", A, "user/keyonly"),
    ("AKIAAUTHZROOTB000001", B, "root"),
    ("AKIAAUTHZBEE00000001", B, "user/bee"),
    ("AKIAAUTHZBUZZ0000001", B, "user/buzz"),
];

fn secret(id: &str) -> String {
    id.chars().rev().collect()
}

fn identities() -> IdentityConfig {
    let mut toml = String::new();
    for account in [A, B] {
        toml.push_str(&format!("[[account]]\nid = \"{account}\"\n"));
        for (id, acct, principal) in CALLERS {
            if *acct == account {
                toml.push_str(&format!(
                    "[[account.access_key]]\nid = \"{id}\"\nsecret = \"{}\"\nprincipal = \"{principal}\"\n",
                    secret(id)
                ));
            }
        }
        let policies: &[(&str, &str)] = if account == A {
            &[
                (
                    "admin",
                    r#"{"Effect":"Allow","Action":["kms:*","cloudtrail:LookupEvents"],"Resource":"*"}"#,
                ),
                (
                    "retirer",
                    r#"{"Effect":"Allow","Action":"kms:RetireGrant","Resource":"*"}"#,
                ),
                (
                    "noretire",
                    r#"{"Effect":"Deny","Action":"kms:RetireGrant","Resource":"*"}"#,
                ),
                (
                    "mover",
                    r#"{"Effect":"Allow","Action":"kms:*","Resource":"*"}"#,
                ),
                (
                    "keyonly",
                    r#"{"Effect":"Allow","Action":"kms:DescribeKey","Resource":"*"}"#,
                ),
            ]
        } else {
            &[(
                "bee",
                r#"{"Effect":"Allow","Action":"kms:RetireGrant","Resource":"*"}"#,
            )]
        };
        for (user, statement) in policies {
            toml.push_str(&format!(
                "[[account.user]]\nname = \"{user}\"\npolicy = '''{{\"Version\":\"2012-10-17\",\"Statement\":[{statement}]}}'''\n"
            ));
        }
    }
    IdentityConfig::from_toml_str(&toml).expect("the test identities")
}

struct Env {
    server: DevServer,
    clients: BTreeMap<String, aws_sdk_kms::Client>,
    _dir: tempfile::TempDir,
}

fn arn(account: &str, principal: &str) -> String {
    format!("arn:aws:iam::{account}:{principal}")
}

impl Env {
    async fn start() -> Env {
        let dir = tempfile::tempdir().expect("temp dir");
        let server = DevServer::try_start_with(&dir.path().join("kms"), identities())
            .expect("the dev server");
        let mut clients = BTreeMap::new();
        for (id, account, principal) in CALLERS {
            let config = server.sdk_config_as(id, &secret(id)).await;
            clients.insert(
                format!("{account}:{principal}"),
                aws_sdk_kms::Client::new(&config),
            );
        }
        Env {
            server,
            clients,
            _dir: dir,
        }
    }

    /// The client of `principal` ("root", "user/bob") in account A, or B with "B:" before it.
    fn kms(&self, who: &str) -> &aws_sdk_kms::Client {
        let key = match who.strip_prefix("B:") {
            Some(p) => format!("{B}:{p}"),
            None => format!("{A}:{who}"),
        };
        &self.clients[&key]
    }

    async fn key(&self, policy: Option<String>) -> String {
        self.kms("root")
            .create_key()
            .set_policy(policy)
            .send()
            .await
            .expect("CreateKey")
            .key_metadata()
            .expect("KeyMetadata")
            .arn()
            .expect("Arn")
            .to_string()
    }

    async fn grant(
        &self,
        key: &str,
        grantee: &str,
        operations: &[GrantOperation],
        retiring: Option<&str>,
    ) -> (String, String) {
        let g = self
            .kms("root")
            .create_grant()
            .key_id(key)
            .grantee_principal(grantee)
            .set_operations(Some(operations.to_vec()))
            .set_retiring_principal(retiring.map(str::to_string))
            .send()
            .await
            .expect("CreateGrant");
        (
            g.grant_id().expect("GrantId").to_string(),
            g.grant_token().expect("GrantToken").to_string(),
        )
    }

    async fn grant_ids(&self, key: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .kms("root")
            .list_grants()
            .key_id(key)
            .send()
            .await
            .expect("ListGrants")
            .grants()
            .iter()
            .map(|g| g.grant_id().unwrap_or_default().to_string())
            .collect();
        ids.sort();
        ids
    }

    async fn alias_target(&self, name: &str) -> Option<String> {
        self.kms("root")
            .list_aliases()
            .send()
            .await
            .expect("ListAliases")
            .aliases()
            .iter()
            .find(|a| a.alias_name() == Some(name))
            .and_then(|a| a.target_key_id().map(str::to_string))
    }

    /// LookupEvents signed by `id` (raw: the CloudTrail SDK is not a dependency).
    async fn lookup_events(&self, id: &str) -> (u16, serde_json::Value) {
        let mut client = RawClient::connect(self.server.endpoint()).await;
        let body = serde_json::json!({"MaxResults": 50}).to_string();
        let creds = Creds {
            access_key_id: id.to_string(),
            secret: secret(id),
            region: self.server.region().to_string(),
        };
        let headers = signed_headers(
            &creds,
            client.host(),
            "cloudtrail",
            "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.LookupEvents",
            body.as_bytes(),
            time::OffsetDateTime::now_utc(),
        );
        let answer = client
            .send("POST", "/", &headers, body.as_bytes())
            .await
            .expect("answer");
        (answer.status, answer.json())
    }
}

/// The AccessDeniedException head AWS KMS gives: "User: <arn> is not authorized to perform:
/// kms:<action> on resource: <resource> ".
#[track_caller]
fn assert_denied(got: (String, String, u16), who: &str, action: &str, resource: &str) {
    let (code, message, status) = got;
    assert_eq!(
        (code.as_str(), status),
        ("AccessDeniedException", 400),
        "{message}"
    );
    let head =
        format!("User: {who} is not authorized to perform: kms:{action} on resource: {resource} ");
    assert!(
        message.starts_with(&head),
        "{message}\nwanted it to start with {head}"
    );
}

#[tokio::test]
async fn retire_and_revoke_by_each_kind_of_principal() {
    let env = Env::start().await;
    let key = env.key(None).await;
    let bob = arn(A, "user/bob");
    let carol = arn(A, "user/carol");
    let decrypt = [GrantOperation::Decrypt];
    let retire = |who: &'static str, id: &str| {
        let kms = env.kms(who).clone();
        let key = key.clone();
        let id = id.to_string();
        async move { kms.retire_grant().key_id(key).grant_id(id).send().await }
    };

    // The retiring principal may, without any policy.
    let (g, _) = env.grant(&key, &bob, &decrypt, Some(&carol)).await;
    retire("user/carol", &g)
        .await
        .expect("the retiring principal retires");
    // The grantee may when the grant includes RetireGrant, by token too.
    let (g, token) = env
        .grant(
            &key,
            &bob,
            &[GrantOperation::Decrypt, GrantOperation::RetireGrant],
            None,
        )
        .await;
    env.kms("user/bob")
        .retire_grant()
        .grant_token(token)
        .send()
        .await
        .expect("the grantee retires a grant that includes RetireGrant");
    assert!(!env.grant_ids(&key).await.contains(&g));

    // A grant without RetireGrant and without a retiring principal.
    let (g, _) = env.grant(&key, &bob, &decrypt, None).await;
    let before = env.grant_ids(&key).await;
    for (who, who_arn) in [
        ("user/bob", bob.clone()),
        ("user/dan", arn(A, "user/dan")),
        ("user/noretire", arn(A, "user/noretire")),
        ("B:root", arn(B, "root")),
        ("B:user/bee", arn(B, "user/bee")),
    ] {
        assert_denied(
            refusal(retire(who, &g).await),
            &who_arn,
            "RetireGrant",
            &key,
        );
        assert_eq!(
            env.grant_ids(&key).await,
            before,
            "{who} changed the grants"
        );
    }
    // The key's account may: a principal to whom its IAM policy delegates kms:RetireGrant…
    retire("user/retirer", &g)
        .await
        .expect("delegated kms:RetireGrant");
    // …and its root.
    let (g, _) = env.grant(&key, &bob, &decrypt, None).await;
    retire("root", &g).await.expect("the key's account root");

    // A deny of kms:RetireGrant in the caller's IAM policy wins even for the retiring principal.
    let (g, _) = env
        .grant(&key, &bob, &decrypt, Some(&arn(A, "user/noretire")))
        .await;
    let before = env.grant_ids(&key).await;
    let (code, message, status) = refusal(retire("user/noretire", &g).await);
    assert_eq!((code.as_str(), status), ("AccessDeniedException", 400));
    assert!(
        message.ends_with("with an explicit deny in an identity-based policy"),
        "{message}"
    );
    assert_eq!(env.grant_ids(&key).await, before);
    retire("root", &g).await.expect("root cleans up");

    // A retiring principal that is another account: its IAM policies delegate.
    let (g, _) = env.grant(&key, &bob, &decrypt, Some(&arn(B, "root"))).await;
    let before = env.grant_ids(&key).await;
    assert_denied(
        refusal(retire("B:user/buzz", &g).await),
        &arn(B, "user/buzz"),
        "RetireGrant",
        &key,
    );
    assert_eq!(env.grant_ids(&key).await, before);
    retire("B:user/bee", &g)
        .await
        .expect("delegated in the retiring account");
    let (g, _) = env.grant(&key, &bob, &decrypt, Some(&arn(B, "root"))).await;
    retire("B:root", &g)
        .await
        .expect("the retiring account's root");

    // RevokeGrant is a key-policy permission: not the grantee's, not a user without policy.
    let (g, _) = env
        .grant(
            &key,
            &bob,
            &[GrantOperation::Decrypt, GrantOperation::RetireGrant],
            None,
        )
        .await;
    let before = env.grant_ids(&key).await;
    for (who, who_arn) in [("user/bob", bob.clone()), ("user/dan", arn(A, "user/dan"))] {
        let r = env
            .kms(who)
            .revoke_grant()
            .key_id(&key)
            .grant_id(&g)
            .send()
            .await;
        let got = refusal(r);
        assert!(
            got.1
                .ends_with("because no identity-based policy allows the kms:RevokeGrant action"),
            "{}",
            got.1
        );
        assert_denied(got, &who_arn, "RevokeGrant", &key);
        assert_eq!(env.grant_ids(&key).await, before);
    }
    let r = env
        .kms("B:root")
        .revoke_grant()
        .key_id(&key)
        .grant_id(&g)
        .send()
        .await;
    assert_denied(refusal(r), &arn(B, "root"), "RevokeGrant", &key);
    assert_eq!(env.grant_ids(&key).await, before);
    env.kms("user/admin")
        .revoke_grant()
        .key_id(&key)
        .grant_id(&g)
        .send()
        .await
        .expect("kms:RevokeGrant by IAM policy through the default key policy");
    assert!(!env.grant_ids(&key).await.contains(&g));
}

#[tokio::test]
async fn list_retirable_grants_stays_in_the_callers_account_and_pages() {
    let env = Env::start().await;
    let key = env.key(None).await;
    let bob = arn(A, "user/bob");
    let carol = arn(A, "user/carol");
    let mut carols = Vec::new();
    for _ in 0..3 {
        carols.push(
            env.grant(&key, &bob, &[GrantOperation::Decrypt], Some(&carol))
                .await
                .0,
        );
    }
    let (for_b, _) = env
        .grant(
            &key,
            &bob,
            &[GrantOperation::Decrypt],
            Some(&arn(B, "root")),
        )
        .await;

    // Another account's principal is not the caller's to list.
    let r = env
        .kms("B:root")
        .list_retirable_grants()
        .retiring_principal(&carol)
        .send()
        .await;
    assert_denied(refusal(r), &arn(B, "root"), "ListRetirableGrants", &carol);
    // Its own principal lists the grants it may retire, on keys of any account.
    let listed = env
        .kms("B:root")
        .list_retirable_grants()
        .retiring_principal(arn(B, "root"))
        .send()
        .await
        .expect("ListRetirableGrants in B");
    let ids: Vec<&str> = listed
        .grants()
        .iter()
        .filter_map(GrantListEntry::grant_id)
        .collect();
    assert_eq!(ids, [for_b.as_str()]);

    // Paging as AWS: Limit 1..=100, Truncated and NextMarker.
    for limit in [0, 101] {
        let (code, message, status) = refusal(
            env.kms("root")
                .list_retirable_grants()
                .retiring_principal(&carol)
                .limit(limit)
                .send()
                .await,
        );
        assert_eq!((code.as_str(), status), ("ValidationException", 400));
        assert!(
            message.contains("'limit'") || message.contains("Limit"),
            "{message}"
        );
    }
    let first = env
        .kms("root")
        .list_retirable_grants()
        .retiring_principal(&carol)
        .limit(2)
        .send()
        .await
        .expect("page 1");
    assert_eq!(first.grants().len(), 2);
    assert!(first.truncated());
    let marker = first.next_marker().expect("NextMarker").to_string();
    let second = env
        .kms("root")
        .list_retirable_grants()
        .retiring_principal(&carol)
        .limit(2)
        .marker(marker)
        .send()
        .await
        .expect("page 2");
    assert_eq!(second.grants().len(), 1);
    assert!(!second.truncated());
    assert_eq!(second.next_marker(), None);
    let mut seen: Vec<String> = first
        .grants()
        .iter()
        .chain(second.grants())
        .filter_map(|g| g.grant_id().map(str::to_string))
        .collect();
    seen.sort();
    carols.sort();
    assert_eq!(seen, carols);
    // ListGrants pages the same way.
    let page = env
        .kms("root")
        .list_grants()
        .key_id(&key)
        .limit(3)
        .send()
        .await
        .expect("ListGrants");
    assert_eq!((page.grants().len(), page.truncated()), (3, true));
    let rest = env
        .kms("root")
        .list_grants()
        .key_id(&key)
        .limit(3)
        .marker(page.next_marker().expect("NextMarker"))
        .send()
        .await
        .expect("ListGrants page 2");
    assert_eq!((rest.grants().len(), rest.truncated()), (1, false));
    // An unnamed grant lists an empty name, as AWS does.
    assert!(rest.grants().iter().all(|g| g.name() == Some("")));
}

#[tokio::test]
async fn lookup_events_needs_permission_and_shows_only_the_callers_account() {
    let env = Env::start().await;
    let key = env.key(None).await;
    env.kms("B:root")
        .list_keys()
        .send()
        .await
        .expect("B's own call");

    // Without cloudtrail:LookupEvents: CloudTrail's AccessDeniedException, nothing disclosed.
    for (id, who) in [
        ("AKIAAUTHZDAN00000001", arn(A, "user/dan")),
        ("AKIAAUTHZMOVER000001", arn(A, "user/mover")),
    ] {
        let (status, body) = env.lookup_events(id).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["__type"], "AccessDeniedException");
        assert_eq!(
            body["message"],
            format!(
                "User: {who} is not authorized to perform: cloudtrail:LookupEvents because no \
                 identity-based policy allows the cloudtrail:LookupEvents action"
            )
        );
        assert!(body.get("Events").is_none());
    }
    // With it (and for root): only the caller's own account.
    let (status, mine) = env.lookup_events("AKIAAUTHZADMIN000001").await;
    assert_eq!(status, 200, "{mine}");
    let accounts = |page: &serde_json::Value| -> Vec<String> {
        page["Events"]
            .as_array()
            .expect("Events")
            .iter()
            .map(|e| {
                let record: serde_json::Value =
                    serde_json::from_str(e["CloudTrailEvent"].as_str().unwrap()).unwrap();
                record["recipientAccountId"].as_str().unwrap().to_string()
            })
            .collect()
    };
    let a = accounts(&mine);
    assert!(!a.is_empty() && a.iter().all(|x| x == A), "{a:?}");
    assert!(mine.to_string().contains(&key));
    let (status, theirs) = env.lookup_events("AKIAAUTHZROOTB000001").await;
    assert_eq!(status, 200);
    let b = accounts(&theirs);
    assert!(!b.is_empty() && b.iter().all(|x| x == B), "{b:?}");
    assert!(!theirs.to_string().contains(&key));
}

#[tokio::test]
async fn aliases_need_rights_on_the_alias_and_on_every_key_they_touch() {
    let env = Env::start().await;
    let admin = arn(A, "user/admin");
    // OLD names only admin; NEW delegates to IAM and names keyonly for the alias actions.
    let old = env
        .kms("user/admin")
        .create_key()
        .policy(
            serde_json::json!({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": admin}, "Action": "kms:*", "Resource": "*"}]})
            .to_string(),
        )
        .send()
        .await
        .expect("CreateKey")
        .key_metadata()
        .unwrap()
        .arn()
        .unwrap()
        .to_string();
    let new = env
        .key(Some(
            serde_json::json!({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": arn(A, "root")}, "Action": "kms:*", "Resource": "*"},
                {"Effect": "Allow", "Principal": {"AWS": arn(A, "user/keyonly")},
                 "Action": ["kms:CreateAlias", "kms:UpdateAlias", "kms:DeleteAlias"], "Resource": "*"}]})
            .to_string(),
        ))
        .await;
    let old_id = old.rsplit('/').next().unwrap().to_string();
    let new_id = new.rsplit('/').next().unwrap().to_string();
    env.kms("user/admin")
        .create_alias()
        .alias_name("alias/app")
        .target_key_id(&old)
        .send()
        .await
        .expect("CreateAlias by admin");
    let alias_arn = format!("arn:aws:kms:us-east-1:{A}:alias/app");
    let mover = arn(A, "user/mover");

    // mover may use the alias (IAM kms:*) and NEW, but OLD's policy does not name it.
    let r = env
        .kms("user/mover")
        .update_alias()
        .alias_name("alias/app")
        .target_key_id(&new)
        .send()
        .await;
    assert_denied(refusal(r), &mover, "UpdateAlias", &old);
    assert_eq!(
        env.alias_target("alias/app").await.as_deref(),
        Some(old_id.as_str())
    );
    let r = env
        .kms("user/mover")
        .delete_alias()
        .alias_name("alias/app")
        .send()
        .await;
    assert_denied(refusal(r), &mover, "DeleteAlias", &old);
    let r = env
        .kms("user/mover")
        .create_alias()
        .alias_name("alias/other")
        .target_key_id(&old)
        .send()
        .await;
    assert_denied(refusal(r), &mover, "CreateAlias", &old);
    assert_eq!(env.alias_target("alias/other").await, None);

    // keyonly has the key's rights but no IAM permission on the alias.
    let keyonly = arn(A, "user/keyonly");
    let r = env
        .kms("user/keyonly")
        .create_alias()
        .alias_name("alias/k")
        .target_key_id(&new)
        .send()
        .await;
    let got = refusal(r);
    assert!(
        got.1
            .ends_with("because no identity-based policy allows the kms:CreateAlias action"),
        "{}",
        got.1
    );
    assert_denied(
        got,
        &keyonly,
        "CreateAlias",
        &format!("arn:aws:kms:us-east-1:{A}:alias/k"),
    );
    assert_eq!(env.alias_target("alias/k").await, None);

    // Moving the alias back from NEW to OLD needs OLD's right as the new key.
    env.kms("user/admin")
        .update_alias()
        .alias_name("alias/app")
        .target_key_id(&new)
        .send()
        .await
        .expect("admin may: OLD names it, the root statement of NEW delegates to its IAM policy");
    let r = env
        .kms("user/mover")
        .update_alias()
        .alias_name("alias/app")
        .target_key_id(&old)
        .send()
        .await;
    assert_denied(refusal(r), &mover, "UpdateAlias", &old);
    assert_eq!(
        env.alias_target("alias/app").await.as_deref(),
        Some(new_id.as_str())
    );
    let r = env
        .kms("user/keyonly")
        .delete_alias()
        .alias_name("alias/app")
        .send()
        .await;
    assert_denied(refusal(r), &keyonly, "DeleteAlias", &alias_arn);
    env.kms("user/mover")
        .delete_alias()
        .alias_name("alias/app")
        .send()
        .await
        .expect("mover may delete an alias of NEW");
    assert_eq!(env.alias_target("alias/app").await, None);
}

#[tokio::test]
async fn requests_refused_with_awss_validation_errors_change_nothing() {
    let env = Env::start().await;
    let kms = env.kms("root");
    let key = env.key(None).await;
    kms.create_alias()
        .alias_name("alias/kept")
        .target_key_id(&key)
        .send()
        .await
        .expect("CreateAlias");
    let aliases = || async {
        let mut names: Vec<String> = kms
            .list_aliases()
            .send()
            .await
            .expect("ListAliases")
            .aliases()
            .iter()
            .filter_map(|a| a.alias_name().map(str::to_string))
            .collect();
        names.sort();
        names
    };
    let keys = || async { kms.list_keys().send().await.expect("ListKeys").keys().len() };
    let (aliases_before, keys_before) = (aliases().await, keys().await);

    for (name, target, message) in [
        ("noprefix", key.clone(), "Invalid identifier".to_string()),
        (
            "alias/my:alias",
            key.clone(),
            "alias/my:alias contains invalid characters for an alias".to_string(),
        ),
        (
            "alias/sp ace",
            key.clone(),
            "1 validation error detected: Value 'alias/sp ace' at 'aliasName' failed to satisfy \
             constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$"
                .to_string(),
        ),
        (
            "alias/new",
            "alias/kept".to_string(),
            "Aliases must refer to keys. Not aliases".to_string(),
        ),
        (
            "alias/new",
            format!("arn:aws:kms:us-east-1:{A}:alias/kept"),
            "Aliases must refer to keys. Not aliases".to_string(),
        ),
    ] {
        let got = refusal(
            kms.create_alias()
                .alias_name(name)
                .target_key_id(target)
                .send()
                .await,
        );
        assert_eq!(
            got,
            ("ValidationException".to_string(), message, 400),
            "{name}"
        );
    }
    let got = refusal(
        kms.update_alias()
            .alias_name("alias/kept")
            .target_key_id("alias/kept")
            .send()
            .await,
    );
    assert_eq!(got.0, "ValidationException");
    assert_eq!(got.1, "Aliases must refer to keys. Not aliases");

    // CreateKey checks the key spec before it parses the policy.
    let got = refusal(
        kms.create_key()
            .key_spec(aws_sdk_kms::types::KeySpec::from("RSA_1"))
            .policy("not a policy")
            .send()
            .await,
    );
    assert_eq!(
        (got.0.as_str(), got.2),
        ("ValidationException", 400),
        "{}",
        got.1
    );
    assert!(got.1.contains("keySpec"), "{}", got.1);
    // PutKeyPolicy finds the key before it parses the policy.
    let missing = format!("arn:aws:kms:us-east-1:{A}:key/11111111-2222-3333-4444-555555555555");
    let got = refusal(
        kms.put_key_policy()
            .key_id(&missing)
            .policy("not a policy")
            .send()
            .await,
    );
    assert_eq!(
        got,
        (
            "NotFoundException".into(),
            format!("Key '{missing}' does not exist"),
            400
        )
    );
    // Duplicate tag keys.
    let tag = |k: &str, v: &str| Tag::builder().tag_key(k).tag_value(v).build().unwrap();
    let got = refusal(
        kms.create_key()
            .tags(tag("team", "a"))
            .tags(tag("team", "b"))
            .send()
            .await,
    );
    assert_eq!(
        got,
        (
            "TagException".into(),
            "Duplicate tag keys are not allowed.".into(),
            400
        )
    );
    let got = refusal(
        kms.tag_resource()
            .key_id(&key)
            .tags(tag("team", "a"))
            .tags(tag("team", "b"))
            .send()
            .await,
    );
    assert_eq!(got.0, "TagException");
    let tags = kms
        .list_resource_tags()
        .key_id(&key)
        .send()
        .await
        .expect("tags");
    assert!(tags.tags().is_empty());

    assert_eq!(aliases().await, aliases_before);
    assert_eq!(keys().await, keys_before);
}
