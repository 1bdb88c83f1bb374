//! The key lifecycle of the issue, through aws-sdk-kms against the real server on loopback.

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{DataKeySpec, KeyState, Tag};

use crate::support::{assert_code, start};

fn context(cluster: &str) -> std::collections::HashMap<String, String> {
    [
        ("cluster".to_owned(), cluster.to_owned()),
        ("class".to_owned(), "documents".to_owned()),
    ]
    .into()
}

#[tokio::test]
async fn create_describe_list_and_crypto_with_context() {
    let h = start().await;
    let created = h
        .kms
        .create_key()
        .description("documents of c1")
        .tags(
            Tag::builder()
                .tag_key("team")
                .tag_value("storage")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("CreateKey");
    let meta = created.key_metadata().expect("metadata");
    let key_id = meta.key_id().to_owned();
    let arn = meta.arn().expect("arn").to_owned();
    assert_eq!(
        arn,
        format!(
            "arn:aws:kms:us-east-1:{}:key/{key_id}",
            h.server.account_id()
        )
    );
    assert_eq!(meta.key_state(), Some(&KeyState::Enabled));
    assert_eq!(meta.description(), Some("documents of c1"));
    assert_eq!(meta.aws_account_id(), Some(h.server.account_id()));

    let described = h
        .kms
        .describe_key()
        .key_id(&arn)
        .send()
        .await
        .expect("DescribeKey by ARN");
    assert_eq!(described.key_metadata().unwrap().key_id(), key_id);
    let listed = h.kms.list_keys().send().await.expect("ListKeys");
    assert!(listed
        .keys()
        .iter()
        .any(|k| k.key_id() == Some(key_id.as_str())));

    // Encrypt/Decrypt bound to the context.
    let encrypted = h
        .kms
        .encrypt()
        .key_id(&key_id)
        .plaintext(Blob::new(b"customer secret".to_vec()))
        .set_encryption_context(Some(context("c1")))
        .send()
        .await
        .expect("Encrypt");
    assert_eq!(encrypted.key_id(), Some(arn.as_str()));
    let blob = encrypted.ciphertext_blob().unwrap().clone();
    let decrypted = h
        .kms
        .decrypt()
        .ciphertext_blob(blob.clone())
        .set_encryption_context(Some(context("c1")))
        .send()
        .await
        .expect("Decrypt");
    assert_eq!(decrypted.plaintext().unwrap().as_ref(), b"customer secret");
    assert_eq!(decrypted.key_id(), Some(arn.as_str()));
    assert_code(
        h.kms
            .decrypt()
            .ciphertext_blob(blob.clone())
            .set_encryption_context(Some(context("c2")))
            .send()
            .await,
        "InvalidCiphertextException",
    );
    assert_code(
        h.kms.decrypt().ciphertext_blob(blob.clone()).send().await,
        "InvalidCiphertextException",
    );

    // Data keys: KeySpec and NumberOfBytes; the wrapped copy decrypts to the same bytes.
    let data_key = h
        .kms
        .generate_data_key()
        .key_id(&key_id)
        .key_spec(DataKeySpec::Aes256)
        .set_encryption_context(Some(context("c1")))
        .send()
        .await
        .expect("GenerateDataKey");
    assert_eq!(data_key.plaintext().unwrap().as_ref().len(), 32);
    let unwrapped = h
        .kms
        .decrypt()
        .ciphertext_blob(data_key.ciphertext_blob().unwrap().clone())
        .set_encryption_context(Some(context("c1")))
        .key_id(&arn)
        .send()
        .await
        .expect("Decrypt data key with KeyId");
    assert_eq!(
        unwrapped.plaintext().unwrap().as_ref(),
        data_key.plaintext().unwrap().as_ref()
    );
    let sixteen = h
        .kms
        .generate_data_key()
        .key_id(&key_id)
        .key_spec(DataKeySpec::Aes128)
        .send()
        .await
        .unwrap();
    assert_eq!(sixteen.plaintext().unwrap().as_ref().len(), 16);
    let bytes = h
        .kms
        .generate_data_key()
        .key_id(&key_id)
        .number_of_bytes(64)
        .send()
        .await
        .unwrap();
    assert_eq!(bytes.plaintext().unwrap().as_ref().len(), 64);
    let wrapped_only = h
        .kms
        .generate_data_key_without_plaintext()
        .key_id(&key_id)
        .key_spec(DataKeySpec::Aes256)
        .send()
        .await
        .expect("GenerateDataKeyWithoutPlaintext");
    let unwrapped = h
        .kms
        .decrypt()
        .ciphertext_blob(wrapped_only.ciphertext_blob().unwrap().clone())
        .send()
        .await;
    assert_eq!(unwrapped.unwrap().plaintext().unwrap().as_ref().len(), 32);

    // KeyId on Decrypt must name the key that encrypted; ReEncrypt moves a ciphertext to another key.
    let other = h.new_key_id().await;
    assert_code(
        h.kms
            .decrypt()
            .ciphertext_blob(blob.clone())
            .set_encryption_context(Some(context("c1")))
            .key_id(&other)
            .send()
            .await,
        "IncorrectKeyException",
    );
    let moved = h
        .kms
        .re_encrypt()
        .ciphertext_blob(blob.clone())
        .set_source_encryption_context(Some(context("c1")))
        .destination_key_id(&other)
        .set_destination_encryption_context(Some(context("c9")))
        .send()
        .await
        .expect("ReEncrypt");
    let back = h
        .kms
        .decrypt()
        .ciphertext_blob(moved.ciphertext_blob().unwrap().clone())
        .set_encryption_context(Some(context("c9")))
        .send()
        .await
        .expect("Decrypt re-encrypted");
    assert_eq!(back.plaintext().unwrap().as_ref(), b"customer secret");

    let random = h
        .kms
        .generate_random()
        .number_of_bytes(48)
        .send()
        .await
        .expect("GenerateRandom");
    assert_eq!(random.plaintext().unwrap().as_ref().len(), 48);
    assert_code(
        h.kms.generate_random().number_of_bytes(1025).send().await,
        "ValidationException",
    );
}

#[tokio::test]
async fn every_key_state_gets_its_aws_error() {
    let h = start().await;
    let key_id = h.new_key_id().await;
    let blob = h
        .kms
        .encrypt()
        .key_id(&key_id)
        .plaintext(Blob::new(b"x".to_vec()))
        .send()
        .await
        .unwrap()
        .ciphertext_blob()
        .unwrap()
        .clone();
    let other = h.new_key_id().await;

    macro_rules! all_crypto_fail_with {
        ($code:expr) => {
            assert_code(
                h.kms
                    .encrypt()
                    .key_id(&key_id)
                    .plaintext(Blob::new(b"x".to_vec()))
                    .send()
                    .await,
                $code,
            );
            assert_code(
                h.kms.decrypt().ciphertext_blob(blob.clone()).send().await,
                $code,
            );
            assert_code(
                h.kms
                    .generate_data_key()
                    .key_id(&key_id)
                    .key_spec(DataKeySpec::Aes256)
                    .send()
                    .await,
                $code,
            );
            assert_code(
                h.kms
                    .generate_data_key_without_plaintext()
                    .key_id(&key_id)
                    .key_spec(DataKeySpec::Aes256)
                    .send()
                    .await,
                $code,
            );
            assert_code(
                h.kms
                    .re_encrypt()
                    .ciphertext_blob(blob.clone())
                    .destination_key_id(&other)
                    .send()
                    .await,
                $code,
            );
        };
    }

    h.kms
        .disable_key()
        .key_id(&key_id)
        .send()
        .await
        .expect("DisableKey");
    let state = h.kms.describe_key().key_id(&key_id).send().await.unwrap();
    assert_eq!(
        state.key_metadata().unwrap().key_state(),
        Some(&KeyState::Disabled)
    );
    all_crypto_fail_with!("DisabledException");

    h.kms
        .enable_key()
        .key_id(&key_id)
        .send()
        .await
        .expect("EnableKey");
    h.kms
        .decrypt()
        .ciphertext_blob(blob.clone())
        .send()
        .await
        .expect("decrypts again once enabled");

    assert_code(
        h.kms
            .schedule_key_deletion()
            .key_id(&key_id)
            .pending_window_in_days(6)
            .send()
            .await,
        "ValidationException",
    );
    assert_code(
        h.kms
            .schedule_key_deletion()
            .key_id(&key_id)
            .pending_window_in_days(31)
            .send()
            .await,
        "ValidationException",
    );
    let scheduled = h
        .kms
        .schedule_key_deletion()
        .key_id(&key_id)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    assert_eq!(scheduled.key_state(), Some(&KeyState::PendingDeletion));
    assert!(scheduled.deletion_date().is_some());
    let described = h
        .kms
        .describe_key()
        .key_id(&key_id)
        .send()
        .await
        .expect("DescribeKey while pending");
    assert_eq!(
        described.key_metadata().unwrap().key_state(),
        Some(&KeyState::PendingDeletion)
    );
    all_crypto_fail_with!("KMSInvalidStateException");
    assert_code(
        h.kms.enable_key().key_id(&key_id).send().await,
        "KMSInvalidStateException",
    );

    h.kms
        .cancel_key_deletion()
        .key_id(&key_id)
        .send()
        .await
        .expect("CancelKeyDeletion");
    let described = h.kms.describe_key().key_id(&key_id).send().await.unwrap();
    assert_eq!(
        described.key_metadata().unwrap().key_state(),
        Some(&KeyState::Disabled)
    );
    all_crypto_fail_with!("DisabledException");

    // A deletion completes when its window passes on the KMS clock; then the key is gone.
    h.kms
        .schedule_key_deletion()
        .key_id(&key_id)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    h.advance_days(8).await;
    assert_code(
        h.kms.describe_key().key_id(&key_id).send().await,
        "NotFoundException",
    );
    assert_code(
        h.kms.decrypt().ciphertext_blob(blob.clone()).send().await,
        "NotFoundException",
    );
    assert!(!h
        .kms
        .list_keys()
        .send()
        .await
        .unwrap()
        .keys()
        .iter()
        .any(|k| k.key_id() == Some(key_id.as_str())));

    assert_code(
        h.kms
            .describe_key()
            .key_id("11111111-2222-3333-4444-555555555555")
            .send()
            .await,
        "NotFoundException",
    );
}

#[tokio::test]
async fn aliases_tags_descriptions_and_policies() {
    let h = start().await;
    let first = h
        .kms
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .clone();
    let second = h
        .kms
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .clone();
    let account = h.server.account_id();

    h.kms
        .create_alias()
        .alias_name("alias/docs")
        .target_key_id(first.key_id())
        .send()
        .await
        .expect("CreateAlias");
    assert_code(
        h.kms
            .create_alias()
            .alias_name("alias/docs")
            .target_key_id(first.key_id())
            .send()
            .await,
        "AlreadyExistsException",
    );
    assert_code(
        h.kms
            .create_alias()
            .alias_name("not-an-alias")
            .target_key_id(first.key_id())
            .send()
            .await,
        // AWS: "Invalid identifier".
        "ValidationException",
    );
    // Alias name and alias ARN work wherever a key id does.
    let alias_arn = format!("arn:aws:kms:us-east-1:{account}:alias/docs");
    for id in ["alias/docs", alias_arn.as_str()] {
        let described = h
            .kms
            .describe_key()
            .key_id(id)
            .send()
            .await
            .expect("DescribeKey by alias");
        assert_eq!(described.key_metadata().unwrap().key_id(), first.key_id());
        let encrypted = h
            .kms
            .encrypt()
            .key_id(id)
            .plaintext(Blob::new(b"x".to_vec()))
            .send()
            .await
            .unwrap();
        assert_eq!(encrypted.key_id(), first.arn());
    }
    let aliases = h
        .kms
        .list_aliases()
        .key_id(first.key_id())
        .send()
        .await
        .expect("ListAliases");
    let docs = aliases
        .aliases()
        .iter()
        .find(|a| a.alias_name() == Some("alias/docs"))
        .expect("alias listed");
    assert_eq!(docs.target_key_id(), Some(first.key_id()));
    assert_eq!(docs.alias_arn(), Some(alias_arn.as_str()));

    h.kms
        .update_alias()
        .alias_name("alias/docs")
        .target_key_id(second.key_id())
        .send()
        .await
        .expect("UpdateAlias");
    let described = h
        .kms
        .describe_key()
        .key_id("alias/docs")
        .send()
        .await
        .unwrap();
    assert_eq!(described.key_metadata().unwrap().key_id(), second.key_id());
    h.kms
        .delete_alias()
        .alias_name("alias/docs")
        .send()
        .await
        .expect("DeleteAlias");
    assert_code(
        h.kms.describe_key().key_id("alias/docs").send().await,
        "NotFoundException",
    );
    assert_code(
        h.kms.delete_alias().alias_name("alias/docs").send().await,
        "NotFoundException",
    );

    // Tags.
    let tag = |k: &str, v: &str| Tag::builder().tag_key(k).tag_value(v).build().unwrap();
    h.kms
        .tag_resource()
        .key_id(first.key_id())
        .tags(tag("env", "prod"))
        .tags(tag("team", "db"))
        .send()
        .await
        .unwrap();
    h.kms
        .tag_resource()
        .key_id(first.key_id())
        .tags(tag("env", "dev"))
        .send()
        .await
        .unwrap();
    let mut tags: Vec<(String, String)> = h
        .kms
        .list_resource_tags()
        .key_id(first.key_id())
        .send()
        .await
        .unwrap()
        .tags()
        .iter()
        .map(|t| (t.tag_key().to_owned(), t.tag_value().to_owned()))
        .collect();
    tags.sort();
    assert_eq!(
        tags,
        [("env".into(), "dev".into()), ("team".into(), "db".into())]
    );
    h.kms
        .untag_resource()
        .key_id(first.key_id())
        .tag_keys("team")
        .send()
        .await
        .unwrap();
    let tags = h
        .kms
        .list_resource_tags()
        .key_id(first.key_id())
        .send()
        .await
        .unwrap();
    assert_eq!(tags.tags().len(), 1);

    // Description and policy.
    h.kms
        .update_key_description()
        .key_id(first.key_id())
        .description("renamed")
        .send()
        .await
        .unwrap();
    let described = h
        .kms
        .describe_key()
        .key_id(first.key_id())
        .send()
        .await
        .unwrap();
    assert_eq!(
        described.key_metadata().unwrap().description(),
        Some("renamed")
    );
    let names = h
        .kms
        .list_key_policies()
        .key_id(first.key_id())
        .send()
        .await
        .unwrap();
    assert_eq!(names.policy_names(), ["default"]);
    let policy = h
        .kms
        .get_key_policy()
        .key_id(first.key_id())
        .policy_name("default")
        .send()
        .await
        .unwrap();
    let policy: serde_json::Value =
        serde_json::from_str(policy.policy().unwrap()).expect("policy is JSON");
    assert!(policy["Statement"].is_array());
    let new_policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "Enable IAM User Permissions",
            "Effect": "Allow",
            "Principal": {"AWS": format!("arn:aws:iam::{account}:root")},
            "Action": "kms:*",
            "Resource": "*"
        }]
    })
    .to_string();
    h.kms
        .put_key_policy()
        .key_id(first.key_id())
        .policy_name("default")
        .policy(&new_policy)
        .send()
        .await
        .unwrap();
    let stored = h
        .kms
        .get_key_policy()
        .key_id(first.key_id())
        .policy_name("default")
        .send()
        .await
        .unwrap();
    let stored: serde_json::Value = serde_json::from_str(stored.policy().unwrap()).unwrap();
    assert_eq!(stored["Statement"][0]["Sid"], "Enable IAM User Permissions");
    assert_code(
        h.kms
            .put_key_policy()
            .key_id(first.key_id())
            .policy_name("default")
            .policy("{not json")
            .send()
            .await,
        "MalformedPolicyDocumentException",
    );
}

#[tokio::test]
async fn rotation_on_the_dev_clock_keeps_old_ciphertexts_readable() {
    let h = start().await;
    let key_id = h.new_key_id().await;
    let encrypt = |text: &'static [u8]| {
        let kms = h.kms.clone();
        let key_id = key_id.clone();
        async move {
            kms.encrypt()
                .key_id(key_id)
                .plaintext(Blob::new(text.to_vec()))
                .send()
                .await
                .unwrap()
                .ciphertext_blob()
                .unwrap()
                .clone()
        }
    };
    let decrypt = |blob: Blob| {
        let kms = h.kms.clone();
        async move {
            kms.decrypt()
                .ciphertext_blob(blob)
                .send()
                .await
                .expect("Decrypt")
                .plaintext()
                .unwrap()
                .clone()
        }
    };
    let v1 = encrypt(b"version one").await;

    assert_code(
        h.kms
            .enable_key_rotation()
            .key_id(&key_id)
            .rotation_period_in_days(89)
            .send()
            .await,
        "ValidationException",
    );
    h.kms
        .enable_key_rotation()
        .key_id(&key_id)
        .rotation_period_in_days(90)
        .send()
        .await
        .expect("EnableKeyRotation");
    let status = h
        .kms
        .get_key_rotation_status()
        .key_id(&key_id)
        .send()
        .await
        .unwrap();
    assert!(status.key_rotation_enabled());
    assert_eq!(status.rotation_period_in_days(), Some(90));
    assert!(status.next_rotation_date().is_some());

    h.advance_days(91).await;
    let rotations = h
        .kms
        .list_key_rotations()
        .key_id(&key_id)
        .send()
        .await
        .expect("ListKeyRotations");
    assert_eq!(
        rotations.rotations().len(),
        1,
        "one automatic rotation after 91 days"
    );
    let v2 = encrypt(b"version two").await;
    assert_ne!(v1.as_ref(), v2.as_ref());

    h.kms
        .rotate_key_on_demand()
        .key_id(&key_id)
        .send()
        .await
        .expect("RotateKeyOnDemand");
    let rotations = h
        .kms
        .list_key_rotations()
        .key_id(&key_id)
        .send()
        .await
        .unwrap();
    assert_eq!(rotations.rotations().len(), 2);
    let v3 = encrypt(b"version three").await;

    assert_eq!(decrypt(v1).await.as_ref(), b"version one");
    assert_eq!(decrypt(v2).await.as_ref(), b"version two");
    assert_eq!(decrypt(v3).await.as_ref(), b"version three");

    h.kms
        .disable_key_rotation()
        .key_id(&key_id)
        .send()
        .await
        .expect("DisableKeyRotation");
    let status = h
        .kms
        .get_key_rotation_status()
        .key_id(&key_id)
        .send()
        .await
        .unwrap();
    assert!(!status.key_rotation_enabled());
}
