//! The facade's organizations, clusters, roles and key association, against the real server.

use aws_sdk_iam::error::ProvideErrorMetadata;
use keyward_control::{
    Check, ClusterState, ControlPlane, Encryption, Error, HealthStatus, NewCluster, Outcome,
};

use crate::harness::{
    self, external_cluster, org, ready_external_cluster, wait_ready, Env, OPERATOR_KEY,
    OPERATOR_SECRET, PLATFORM,
};

fn decoded(document: &str) -> serde_json::Value {
    let text = percent_encoding::percent_decode_str(document)
        .decode_utf8()
        .expect("utf-8");
    serde_json::from_str(&text).expect("a JSON policy")
}

/// Create, read, list and delete a cluster on each database; the role exists with the contract's
/// name, path, trust policy and inline policy, and is gone after the cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_lifecycle_and_its_role() {
    let env = harness::start().await;
    for (n, db) in crate::db::test_databases().await.into_iter().enumerate() {
        let data = env.dir.path().join(format!("plane-{n}"));
        let plane = ControlPlane::open(env.config(&data, &db.url))
            .await
            .unwrap();
        lifecycle_on(&env, &plane).await;
        plane.shutdown().await;
    }
}

async fn lifecycle_on(env: &Env, plane: &ControlPlane) {
    let (acme, token) = plane.create_organization("acme").await.unwrap();
    assert!(
        acme.id.starts_with("o-") && acme.id.len() == 18,
        "{}",
        acme.id
    );
    assert!(token.expose().starts_with("kw_"));
    assert_eq!(plane.authenticate(token.expose()).await.unwrap(), acme);
    let forged = format!("kw_{}", "A".repeat(43));
    assert!(matches!(
        plane.authenticate(&forged).await,
        Err(Error::Unauthenticated)
    ));
    assert!(matches!(
        plane.authenticate("").await,
        Err(Error::Unauthenticated)
    ));

    let cluster = external_cluster(plane, &acme, "prod").await;
    assert!(cluster.id.starts_with("c-") && cluster.id.len() == 18);
    assert_eq!(cluster.state, ClusterState::AwaitingKey);
    assert_eq!(cluster.region, "us-east-1");
    assert_eq!(cluster.key_arn, None);
    assert_eq!(cluster.health.status, HealthStatus::Unknown);
    let name = format!("keyward-cluster-{}", cluster.id);
    assert_eq!(
        cluster.role_arn,
        format!("arn:aws:iam::{PLATFORM}:role/keyward/{name}")
    );

    // The role, as IAM has it.
    let role = env.iam.get_role().role_name(&name).send().await.unwrap();
    let role = role.role().unwrap();
    assert_eq!(role.arn(), cluster.role_arn);
    assert_eq!(role.path(), "/keyward/");
    let trust = decoded(role.assume_role_policy_document().unwrap());
    let statement = &trust["Statement"][0];
    assert_eq!(statement["Effect"], "Allow");
    assert_eq!(statement["Action"], "sts:AssumeRole");
    assert_eq!(
        statement["Principal"]["AWS"],
        format!("arn:aws:iam::{PLATFORM}:user/keyward-operator")
    );
    assert_eq!(
        statement["Condition"]["StringEquals"]["sts:ExternalId"],
        cluster.id.as_str()
    );
    let inline = env
        .iam
        .get_role_policy()
        .role_name(&name)
        .policy_name("keyward-kms")
        .send()
        .await
        .unwrap();
    let inline = decoded(inline.policy_document());
    assert_eq!(inline, keyward_control::role_policy());

    // Read, list, key policy.
    assert_eq!(
        plane.cluster(&acme.id, &cluster.id).await.unwrap().name,
        "prod"
    );
    let listed = plane.list_clusters(&acme.id).await.unwrap();
    assert_eq!(
        listed.iter().map(|c| &c.id).collect::<Vec<_>>(),
        [&cluster.id]
    );
    let policy = plane.key_policy(&acme.id, &cluster.id).await.unwrap();
    assert_eq!(
        policy["Statement"],
        keyward_control::key_policy_statements(&cluster.role_arn)
    );

    // Bad input changes nothing.
    let same_name = plane
        .create_cluster(
            &acme.id,
            NewCluster {
                name: "prod".into(),
                region: None,
                encryption: Encryption::External,
            },
        )
        .await;
    assert_eq!(same_name.unwrap_err().code(), "conflict");
    for (name, region) in [("", None), ("a/b", None), ("ok", Some("moon-1"))] {
        let refused = plane
            .create_cluster(
                &acme.id,
                NewCluster {
                    name: name.into(),
                    region: region.map(str::to_owned),
                    encryption: Encryption::External,
                },
            )
            .await
            .unwrap_err();
        assert_eq!(refused.code(), "invalid_request", "{name} {region:?}");
        assert!(matches!(refused, Error::InvalidRequest(_)), "{refused}");
    }
    assert_eq!(plane.list_clusters(&acme.id).await.unwrap().len(), 1);
    let missing = plane
        .cluster(&acme.id, "c-0000000000000000")
        .await
        .unwrap_err();
    assert_eq!(
        (
            missing.code().as_str(),
            matches!(missing, Error::NotFound { .. })
        ),
        ("not_found", true)
    );
    let not_an_id = plane.cluster(&acme.id, "../etc").await.unwrap_err();
    assert_eq!(not_an_id.code(), "not_found");

    // Data routes before a key: key_not_associated.
    let early = plane
        .put_document(&acme.id, &cluster.id, "a.txt", &b"x"[..])
        .await
        .unwrap_err();
    assert_eq!(
        (
            early.code().as_str(),
            matches!(early, Error::KeyNotAssociated { .. })
        ),
        ("key_not_associated", true)
    );

    // Delete: the cluster and its role are gone.
    plane.delete_cluster(&acme.id, &cluster.id).await.unwrap();
    assert_eq!(
        plane
            .cluster(&acme.id, &cluster.id)
            .await
            .unwrap_err()
            .code(),
        "not_found"
    );
    let gone = env
        .iam
        .get_role()
        .role_name(&name)
        .send()
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Some("NoSuchEntity"));
    assert!(plane.list_clusters(&acme.id).await.unwrap().is_empty());
}

/// Every association failure the facade can meet is reported check by check, and nothing is
/// applied: the cluster keeps waiting for its key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn association_failures_apply_nothing() {
    let env = harness::start().await;
    let plane = env.plane("plane").await;
    let acme = org(&plane, "acme").await;
    let cluster = external_cluster(&plane, &acme, "prod").await;
    let good = env.customer_key(&cluster.role_arn).await;
    let id = good.rsplit('/').next().unwrap();

    let cases: Vec<(String, Check)> = vec![
        ("alias/prod".into(), Check::NotAlias),
        (
            "arn:aws:kms:us-east-1:444455556666:key/nope".into(),
            Check::ArnFormat,
        ),
        (good.replace("us-east-1", "eu-west-1"), Check::Region),
        (
            good.replace(id, "00000000-0000-0000-0000-000000000000"),
            Check::KeyExists,
        ),
        // A key with the default policy, which does not name the role.
        (
            env.customer
                .create_key()
                .send()
                .await
                .unwrap()
                .key_metadata()
                .unwrap()
                .arn()
                .unwrap()
                .to_owned(),
            Check::DescribeKeyPermission,
        ),
        // A key whose policy leaves out Decrypt.
        (
            env.customer_key_with(&harness::customer_policy(&cluster.role_arn, false))
                .await,
            Check::DecryptPermission,
        ),
        // A key whose CreateGrant statement lacks its conditions: the role could grant anyone.
        (
            env.customer_key_with(&{
                let mut policy: serde_json::Value =
                    serde_json::from_str(&harness::customer_policy(&cluster.role_arn, true))
                        .unwrap();
                policy["Statement"][2]
                    .as_object_mut()
                    .unwrap()
                    .remove("Condition")
                    .expect("the guide's CreateGrant statement is conditioned");
                policy.to_string()
            })
            .await,
            Check::CreateGrantLimitedToRole,
        ),
        // A key of another partition: a role of `aws` can never use it.
        (good.replace("arn:aws:", "arn:aws-cn:"), Check::Partition),
        // Another organization's internal key, which lives in the platform's account and is
        // deleted with that organization's cluster.
        (
            {
                let globex = org(&plane, "globex").await;
                plane
                    .create_cluster(
                        &globex.id,
                        NewCluster {
                            name: "managed".into(),
                            region: Some("us-east-1".into()),
                            encryption: Encryption::Internal,
                        },
                    )
                    .await
                    .unwrap()
                    .key_arn
                    .expect("an internal key is applied at creation")
            },
            Check::CustomerAccount,
        ),
    ];
    for (key, check) in cases {
        let association = plane
            .associate_key(&acme.id, &cluster.id, &key)
            .await
            .unwrap();
        assert!(
            !association.applied,
            "{key} was applied: {:#?}",
            association.report
        );
        match association.report.outcome(check) {
            Some(Outcome::Failed { fix, .. }) => assert!(!fix.is_empty()),
            other => panic!("{key}: {check:?} is {other:?}"),
        }
        let error = association.into_result().unwrap_err();
        assert_eq!(
            (
                error.code().as_str(),
                matches!(error, Error::AssociationFailed(_))
            ),
            ("association_failed", true)
        );
        let after = plane.cluster(&acme.id, &cluster.id).await.unwrap();
        assert_eq!(after.state, ClusterState::AwaitingKey);
        assert_eq!(after.key_arn, None);
    }

    // A disabled key fails `enabled`.
    env.customer
        .disable_key()
        .key_id(&good)
        .send()
        .await
        .unwrap();
    let disabled = plane
        .associate_key(&acme.id, &cluster.id, &good)
        .await
        .unwrap();
    assert!(!disabled.applied);
    assert!(matches!(
        disabled.report.outcome(Check::Enabled),
        Some(Outcome::Failed { fix, .. }) if fix.contains("enable-key")
    ));
    env.customer
        .enable_key()
        .key_id(&good)
        .send()
        .await
        .unwrap();

    // The right key is applied, once.
    let applied = plane
        .associate_key(&acme.id, &cluster.id, &good)
        .await
        .unwrap();
    assert!(applied.applied, "{:?}", applied.report);
    let ready = wait_ready(&plane, &acme.id, &cluster.id).await;
    assert_eq!(ready.key_arn.as_deref(), Some(good.as_str()));
    plane.shutdown().await;
}

/// One organization never sees or touches another's cluster: every facade call answers
/// `not_found`, as for a cluster that does not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn organizations_are_isolated() {
    let env = harness::start().await;
    let plane = env.plane("plane").await;
    let acme = org(&plane, "acme").await;
    let evil = org(&plane, "evil").await;
    let (cluster, key) = ready_external_cluster(&env, &plane, &acme, "prod").await;
    plane
        .put_document(&acme.id, &cluster.id, "secret.txt", &b"acme only"[..])
        .await
        .unwrap();

    let (e, c) = (&evil.id, cluster.id.as_str());
    let body = || &b"x"[..];
    let refusals: Vec<(&str, Result<(), Error>)> = vec![
        ("cluster", plane.cluster(e, c).await.map(drop)),
        ("key_policy", plane.key_policy(e, c).await.map(drop)),
        (
            "associate_key",
            plane.associate_key(e, c, &key).await.map(drop),
        ),
        ("verify", plane.verify(e, c).await.map(drop)),
        (
            "put_document",
            plane.put_document(e, c, "x", body()).await.map(drop),
        ),
        (
            "get_document",
            plane.get_document(e, c, "secret.txt").await.map(drop),
        ),
        (
            "list_documents",
            plane.list_documents(e, c, "").await.map(drop),
        ),
        (
            "delete_document",
            plane.delete_document(e, c, "secret.txt").await,
        ),
        ("create_backup", plane.create_backup(e, c).await.map(drop)),
        ("list_backups", plane.list_backups(e, c).await.map(drop)),
        (
            "restore_backup",
            plane.restore_backup(e, c, "b-1").await.map(drop),
        ),
        ("list_disks", plane.list_disks(e, c).await.map(drop)),
        (
            "check_health_now",
            plane.check_health_now(e, c).await.map(drop),
        ),
        ("delete_cluster", plane.delete_cluster(e, c).await),
    ];
    for (call, result) in refusals {
        match result {
            Err(error) => assert_eq!(error.code(), "not_found", "{call}: {error}"),
            Ok(()) => panic!("{call} let another organization in"),
        }
    }
    assert!(plane.list_clusters(e).await.unwrap().is_empty());
    // Nothing was touched.
    assert_eq!(
        harness::read_document(&plane, &acme.id, c, "secret.txt").await,
        b"acme only"
    );
    assert_eq!(
        plane.cluster(&acme.id, c).await.unwrap().state,
        ClusterState::Ready
    );
    plane.shutdown().await;
}

/// `internal` encryption: the platform makes the key in its own account, with the operator's
/// administration statement and the role's two, and applies it at once. No other principal of the
/// platform account may use it: another cluster's role, whose identity policy allows
/// `kms:Decrypt` on `*`, is refused by the key policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_encryption_uses_a_platform_key() {
    let env = harness::start().await;
    let plane = env.plane("plane").await;
    let acme = org(&plane, "acme").await;
    let cluster = plane
        .create_cluster(
            &acme.id,
            NewCluster {
                name: "managed".into(),
                region: Some("us-east-1".into()),
                encryption: Encryption::Internal,
            },
        )
        .await
        .unwrap();
    let key = cluster
        .key_arn
        .clone()
        .expect("an internal key is applied at creation");
    assert!(
        key.starts_with(&format!("arn:aws:kms:us-east-1:{PLATFORM}:key/")),
        "{key}"
    );
    let policy = env
        .operator_kms
        .get_key_policy()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    let policy: serde_json::Value = serde_json::from_str(policy.policy().unwrap()).unwrap();
    let statements = policy["Statement"].as_array().unwrap();
    assert_eq!(statements.len(), 3, "{policy:#}");
    let operator = format!("arn:aws:iam::{PLATFORM}:user/keyward-operator");
    assert_eq!(statements[0]["Principal"]["AWS"], operator.as_str());
    let admin = statements[0]["Action"].as_array().unwrap();
    for data_action in [
        "kms:Decrypt",
        "kms:GenerateDataKey",
        "kms:ReEncryptFrom",
        "kms:*",
    ] {
        assert!(!admin.contains(&data_action.into()), "{data_action}");
    }
    for statement in &statements[1..] {
        assert_eq!(statement["Principal"]["AWS"], cluster.role_arn.as_str());
    }
    wait_ready(&plane, &acme.id, &cluster.id).await;
    // Another cluster's role in the same account, allowed kms:* on any key by its identity
    // policy, gets nothing from this key.
    let other = plane
        .create_cluster(
            &acme.id,
            NewCluster {
                name: "neighbour".into(),
                region: Some("us-east-1".into()),
                encryption: Encryption::External,
            },
        )
        .await
        .unwrap();
    let operator_config = env
        .server
        .sdk_config_as(OPERATOR_KEY, OPERATOR_SECRET)
        .await;
    let neighbour =
        keyward_control::cluster_kms(&operator_config, &other.role_arn, &other.id, "us-east-1")
            .await;
    let refused = neighbour
        .generate_data_key()
        .key_id(&key)
        .number_of_bytes(32)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        refused.as_service_error().and_then(|e| e.meta().code()),
        Some("AccessDeniedException"),
        "{refused:?}"
    );
    let own = keyward_control::cluster_kms(
        &operator_config,
        &cluster.role_arn,
        &cluster.id,
        "us-east-1",
    )
    .await;
    own.generate_data_key()
        .key_id(&key)
        .number_of_bytes(32)
        .send()
        .await
        .expect("the cluster's own role uses its key");
    // The customer cannot swap in a key of their own.
    let swap = plane
        .associate_key(&acme.id, &cluster.id, &key)
        .await
        .unwrap_err();
    assert_eq!(swap.code(), "invalid_request");
    // Deleting the cluster schedules the platform key's deletion.
    plane.delete_cluster(&acme.id, &cluster.id).await.unwrap();
    let described = env
        .operator_kms
        .describe_key()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        described.key_metadata().unwrap().key_state(),
        Some(&aws_sdk_kms::types::KeyState::PendingDeletion)
    );
    plane.shutdown().await;
}
