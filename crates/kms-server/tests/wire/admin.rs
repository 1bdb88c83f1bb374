//! The admin routes (`/_keyward/clock`, `/_keyward/reset`): not served unless the listener asks for
//! them, and then obeyed only by an account root's SigV4 signature or the admin token. Every
//! refusal is AWS's error and changes nothing; no clock value can break the clock.

use keyward_kms::IdentityConfig;
use keyward_kms_server::{AdminToken, DevServer, ServeOptions};

use crate::iam::{identities_toml, CUSTOMER_ROOT_KEY, OPERATOR_KEY, OPERATOR_SECRET};
use crate::raw::{signed_post_headers, Creds, RawClient, RawResponse};

const CLOCK: &str = "/_keyward/clock";
const RESET: &str = "/_keyward/reset";

fn creds(access_key_id: &str, secret: &str) -> Creds {
    Creds {
        access_key_id: access_key_id.into(),
        secret: secret.into(),
        region: "us-east-1".into(),
    }
}

fn customer_root() -> Creds {
    creds(CUSTOMER_ROOT_KEY, "customer-root-secret")
}

/// `POST path` signed with `creds` (or unsigned), carrying `body`.
async fn post(endpoint: &str, path: &str, signer: Option<&Creds>, body: &str) -> RawResponse {
    let mut client = RawClient::connect(endpoint).await;
    let headers = match signer {
        Some(creds) => signed_post_headers(
            creds,
            client.host(),
            path,
            body.as_bytes(),
            time::OffsetDateTime::now_utc(),
        ),
        None => vec![("content-type".into(), "application/json".into())],
    };
    client
        .send("POST", path, &headers, body.as_bytes())
        .await
        .expect("answer")
}

async fn post_with_headers(
    endpoint: &str,
    path: &str,
    headers: Vec<(String, String)>,
    body: &str,
) -> RawResponse {
    let mut client = RawClient::connect(endpoint).await;
    client
        .send("POST", path, &headers, body.as_bytes())
        .await
        .expect("answer")
}

fn assert_refused(answer: &RawResponse, code: &str, what: &str) {
    assert_eq!(
        (answer.status, answer.error_type().as_str()),
        (400, code),
        "{what}: {}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.header("x-amzn-errortype"), Some(code), "{what}");
}

fn start(dir: &std::path::Path) -> DevServer {
    let identities = IdentityConfig::from_toml_str(&identities_toml()).expect("identities");
    DevServer::try_start_with(dir, identities).expect("server")
}

async fn key_state(kms: &aws_sdk_kms::Client, key_id: &str) -> String {
    kms.describe_key()
        .key_id(key_id)
        .send()
        .await
        .expect("DescribeKey")
        .key_metadata()
        .expect("metadata")
        .key_state()
        .expect("state")
        .as_str()
        .to_owned()
}

async fn key_count(kms: &aws_sdk_kms::Client) -> usize {
    kms.list_keys().send().await.expect("ListKeys").keys().len()
}

#[tokio::test]
async fn unsigned_badly_signed_and_non_root_admin_calls_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("kms"));
    let endpoint = server.endpoint().to_owned();
    let config = server
        .sdk_config_as(CUSTOMER_ROOT_KEY, "customer-root-secret")
        .await;
    let kms = aws_sdk_kms::Client::new(&config);
    // A key whose deletion a clock move of 8 days would complete, and one a reset would delete.
    let doomed = kms.create_key().send().await.unwrap();
    let doomed = doomed.key_metadata().unwrap().key_id().to_owned();
    kms.schedule_key_deletion()
        .key_id(&doomed)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    let keys_before = key_count(&kms).await;

    let eight_days = r#"{"advance_seconds": 691200}"#;
    let operator = creds(OPERATOR_KEY, OPERATOR_SECRET);
    let wrong_secret = creds(CUSTOMER_ROOT_KEY, "not-the-secret");
    let unknown_key = creds("AKIAUNKNOWN000000000", "whatever");
    for path in [CLOCK, RESET] {
        let refused = post(&endpoint, path, None, eight_days).await;
        assert_refused(&refused, "MissingAuthenticationTokenException", path);

        let refused = post(&endpoint, path, Some(&wrong_secret), eight_days).await;
        assert_refused(&refused, "InvalidSignatureException", path);

        let refused = post(&endpoint, path, Some(&unknown_key), eight_days).await;
        assert_refused(&refused, "UnrecognizedClientException", path);

        // Signed for one body, sent with another.
        let mut client = RawClient::connect(&endpoint).await;
        let headers = signed_post_headers(
            &customer_root(),
            client.host(),
            path,
            b"{}",
            time::OffsetDateTime::now_utc(),
        );
        let refused = client
            .send("POST", path, &headers, eight_days.as_bytes())
            .await
            .unwrap();
        assert_refused(&refused, "InvalidSignatureException", path);

        // An IAM user allowed kms:* is still not an account root.
        let refused = post(&endpoint, path, Some(&operator), eight_days).await;
        assert_refused(&refused, "AccessDeniedException", path);
        let message = refused.json()["message"].as_str().unwrap().to_owned();
        assert!(
            message.contains("user/keyward-operator") && message.contains("root"),
            "{message}"
        );

        // A bearer token where the server was given none.
        let refused = post_with_headers(
            &endpoint,
            path,
            vec![("authorization".into(), "Bearer guess".into())],
            eight_days,
        )
        .await;
        assert_refused(&refused, "UnrecognizedClientException", path);
    }
    assert_eq!(key_state(&kms, &doomed).await, "PendingDeletion");
    assert_eq!(
        key_count(&kms).await,
        keys_before,
        "a refused reset deleted keys"
    );

    // The account root may: the clock moves and the deletion completes; a reset clears the keys.
    let moved = post(&endpoint, CLOCK, Some(&customer_root()), eight_days).await;
    assert_eq!(
        moved.status,
        200,
        "{}",
        String::from_utf8_lossy(&moved.body)
    );
    let gone = kms.describe_key().key_id(&doomed).send().await;
    assert!(
        gone.is_err(),
        "the deletion window passed on the moved clock"
    );
    kms.create_key().send().await.unwrap();
    let reset = post(&endpoint, RESET, Some(&customer_root()), "").await;
    assert_eq!(
        reset.status,
        200,
        "{}",
        String::from_utf8_lossy(&reset.body)
    );
    assert_eq!(key_count(&kms).await, 0);
}

#[tokio::test]
async fn absurd_clock_values_are_refused_and_the_clock_survives_its_limit_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("kms");
    let server = start(&data);
    let endpoint = server.endpoint().to_owned();
    let config = server
        .sdk_config_as(CUSTOMER_ROOT_KEY, "customer-root-secret")
        .await;
    let kms = aws_sdk_kms::Client::new(&config);
    let key = kms.create_key().send().await.unwrap();
    let key = key.key_metadata().unwrap().key_id().to_owned();
    kms.schedule_key_deletion()
        .key_id(&key)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();

    let max = keyward_kms_server::admin::MAX_CLOCK_ADVANCE_SECONDS;
    for body in [
        format!(r#"{{"advance_seconds": {}}}"#, u64::MAX),
        format!(r#"{{"advance_seconds": {}}}"#, max + 1),
        r#"{"advance_seconds": 0}"#.to_owned(),
        r#"{"advance_seconds": -1}"#.to_owned(),
        r#"{"advance_seconds": 1e30}"#.to_owned(),
        r#"{"advance_seconds": "9"}"#.to_owned(),
        r#"{"advance_seconds": 9, "extra": 1}"#.to_owned(),
        "not json".to_owned(),
    ] {
        let refused = post(&endpoint, CLOCK, Some(&customer_root()), &body).await;
        assert_refused(&refused, "ValidationException", &body);
    }
    assert_eq!(
        key_state(&kms, &key).await,
        "PendingDeletion",
        "nothing moved"
    );

    // Up to the whole limit in the largest steps, and then one second more is refused.
    let steps = keyward_kms::MAX_CLOCK_OFFSET.as_secs() / max;
    let step = format!(r#"{{"advance_seconds": {max}}}"#);
    for _ in 0..steps {
        let moved = post(&endpoint, CLOCK, Some(&customer_root()), &step).await;
        assert_eq!(
            moved.status,
            200,
            "{}",
            String::from_utf8_lossy(&moved.body)
        );
    }
    let refused = post(
        &endpoint,
        CLOCK,
        Some(&customer_root()),
        r#"{"advance_seconds": 1}"#,
    )
    .await;
    assert_refused(&refused, "ValidationException", "past the limit");
    assert!(
        refused.json()["message"]
            .as_str()
            .unwrap()
            .contains("36500 days"),
        "{}",
        refused.json()
    );

    // The KMS keeps working at the far end of its clock, and after a restart.
    let round_trip = |kms: aws_sdk_kms::Client| async move {
        let key = kms.create_key().send().await.expect("CreateKey");
        let key = key.key_metadata().unwrap().key_id().to_owned();
        let data_key = kms
            .generate_data_key()
            .key_id(&key)
            .number_of_bytes(32)
            .send()
            .await
            .expect("GenerateDataKey");
        let plain = kms
            .decrypt()
            .ciphertext_blob(data_key.ciphertext_blob().unwrap().clone())
            .send()
            .await
            .expect("Decrypt");
        assert_eq!(plain.plaintext(), data_key.plaintext());
    };
    round_trip(kms.clone()).await;
    drop(kms);
    drop(server);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let server = start(&data);
    let config = server
        .sdk_config_as(CUSTOMER_ROOT_KEY, "customer-root-secret")
        .await;
    round_trip(aws_sdk_kms::Client::new(&config)).await;
}

#[tokio::test]
async fn admin_routes_are_not_served_unless_asked_for_and_take_the_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let identities = IdentityConfig::from_toml_str(&identities_toml()).unwrap();
    let engine = keyward_kms::Engine::open(keyward_kms::EngineConfig {
        data_dir: dir.path().join("kms"),
        root_key: keyward_kms::RootKey::from_hex(&"ab".repeat(32)).unwrap(),
        identities,
        dev: true,
    })
    .unwrap();
    // Two listeners on one engine: one with nothing asked for, one with the clock and a token.
    let bare = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bare_endpoint = format!("http://{}", bare.local_addr().unwrap());
    let clocked = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let clocked_endpoint = format!("http://{}", clocked.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    tokio::spawn(keyward_kms_server::serve(
        bare,
        engine.clone(),
        until_stopped(stopped.clone()),
    ));
    tokio::spawn(keyward_kms_server::serve_with(
        clocked,
        engine.clone(),
        ServeOptions {
            test_clock: true,
            reset: false,
            admin_token: Some(AdminToken::new("the-admin-token")),
        },
        until_stopped(stopped),
    ));

    let root = customer_root();
    for path in [CLOCK, RESET] {
        // Not served: the path is an ordinary AWS request without an operation.
        let answer = post(&bare_endpoint, path, Some(&root), "{}").await;
        assert_refused(&answer, "UnknownOperationException", path);
        let answer = post(&bare_endpoint, path, None, "{}").await;
        assert_refused(&answer, "MissingAuthenticationTokenException", path);
    }
    // Reset is never served where only the clock was asked for, whoever asks.
    let answer = post(&clocked_endpoint, RESET, Some(&root), "").await;
    assert_refused(&answer, "UnknownOperationException", "reset");
    let bearer = |token: &str| {
        vec![
            ("authorization".to_owned(), format!("Bearer {token}")),
            ("content-type".to_owned(), "application/json".to_owned()),
        ]
    };
    let one_second = r#"{"advance_seconds": 1}"#;
    let refused = post_with_headers(
        &clocked_endpoint,
        CLOCK,
        bearer("the-admin-tokem"),
        one_second,
    )
    .await;
    assert_refused(&refused, "UnrecognizedClientException", "wrong token");
    let refused = post_with_headers(&clocked_endpoint, CLOCK, bearer(""), one_second).await;
    assert_refused(&refused, "UnrecognizedClientException", "empty token");
    let moved = post_with_headers(
        &clocked_endpoint,
        CLOCK,
        bearer("the-admin-token"),
        one_second,
    )
    .await;
    assert_eq!(
        moved.status,
        200,
        "{}",
        String::from_utf8_lossy(&moved.body)
    );
    let _ = stop.send(true);
}
