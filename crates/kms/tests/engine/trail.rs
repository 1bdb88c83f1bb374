use serde_json::{json, Value};

use crate::{b64, root_caller, user_caller, Fixture, ACCOUNT, OTHER_ACCOUNT, REGION};

async fn lookup(f: &Fixture, body: Value) -> Value {
    f.engine
        .call_cloudtrail(
            &root_caller(ACCOUNT),
            "LookupEvents",
            body.to_string().as_bytes(),
        )
        .await
        .unwrap()
}

async fn lookup_err(f: &Fixture, body: Value) -> &'static str {
    f.engine
        .call_cloudtrail(
            &root_caller(ACCOUNT),
            "LookupEvents",
            body.to_string().as_bytes(),
        )
        .await
        .unwrap_err()
        .code
        .as_str()
}

fn records(f: &Fixture) -> Vec<Value> {
    let mut out = Vec::new();
    f.engine.export_trail(&mut out).unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn every_call_is_recorded_allowed_or_failed_without_plaintext() {
    let f = Fixture::new();
    let (id, arn) = f.create_key().await;
    let secret = "c2VjcmV0LXBsYWludGV4dA==";
    f.ok(
        "Encrypt",
        json!({"KeyId": id, "Plaintext": secret, "EncryptionContext": {"a": "b"}}),
    )
    .await;
    f.ok("DisableKey", json!({"KeyId": id})).await;
    f.err(
        "GenerateDataKey",
        json!({"KeyId": id, "KeySpec": "AES_256"}),
    )
    .await;
    f.engine
        .call_kms(&root_caller(ACCOUNT), "CreateKey", b"{oops")
        .await
        .unwrap_err();
    let recs = records(&f);
    let names: Vec<&str> = recs
        .iter()
        .map(|r| r["eventName"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "CreateKey",
            "Encrypt",
            "DisableKey",
            "GenerateDataKey",
            "CreateKey"
        ]
    );
    let create = &recs[0];
    assert_eq!(create["eventVersion"], "1.08");
    assert_eq!(create["eventSource"], "kms.amazonaws.com");
    assert_eq!(create["awsRegion"], REGION);
    assert_eq!(create["eventType"], "AwsApiCall");
    assert_eq!(create["managementEvent"], true);
    assert_eq!(create["eventCategory"], "Management");
    assert_eq!(create["recipientAccountId"], ACCOUNT);
    assert_eq!(create["readOnly"], false);
    assert_eq!(create["userIdentity"]["type"], "Root");
    assert_eq!(
        create["userIdentity"]["arn"],
        format!("arn:aws:iam::{ACCOUNT}:root")
    );
    assert_eq!(
        create["userIdentity"]["accessKeyId"],
        "AKIAROOTTESTKEY00001"
    );
    assert_eq!(create["sourceIPAddress"], "127.0.0.1");
    assert_eq!(create["userAgent"], "keyward-tests");
    assert_eq!(create["responseElements"]["keyMetadata"]["arn"], arn);
    assert_eq!(
        create["resources"],
        json!([{"accountId": ACCOUNT, "type": "AWS::KMS::Key", "ARN": arn}])
    );
    assert!(create["eventID"].as_str().unwrap().len() == 36);
    assert!(create["eventTime"].as_str().unwrap().ends_with('Z'));
    let enc = &recs[1];
    assert_eq!(enc["readOnly"], true);
    assert_eq!(enc["responseElements"], Value::Null);
    assert_eq!(enc["requestParameters"]["keyId"], id);
    assert_eq!(
        enc["requestParameters"]["encryptionContext"],
        json!({"a": "b"})
    );
    assert!(enc["requestParameters"].get("plaintext").is_none());
    let failed = &recs[3];
    assert_eq!(failed["errorCode"], "DisabledException");
    assert_eq!(failed["errorMessage"], format!("{arn} is disabled."));
    assert_eq!(recs[4]["errorCode"], "SerializationException");
    let all = recs.iter().map(|r| r.to_string()).collect::<String>();
    assert!(!all.contains(secret));
}

#[tokio::test]
async fn lookup_events_pages_newest_first_and_filters() {
    let f = Fixture::new();
    let (id, arn) = f.create_key().await;
    for _ in 0..4 {
        f.ok(
            "GenerateDataKey",
            json!({"KeyId": id, "KeySpec": "AES_256"}),
        )
        .await;
    }
    f.err("DescribeKey", json!({"KeyId": "nope"})).await;
    let alice = user_caller(ACCOUNT, "alice");
    f.call_as(&alice, "ListKeys", json!({})).await.unwrap();

    let all = lookup(&f, json!({})).await;
    let events = all["Events"].as_array().unwrap();
    assert_eq!(events.len(), 7);
    assert_eq!(events[0]["EventName"], "ListKeys");
    assert_eq!(events[0]["Username"], "alice");
    assert_eq!(events[6]["EventName"], "CreateKey");
    let ct: Value = serde_json::from_str(events[1]["CloudTrailEvent"].as_str().unwrap()).unwrap();
    assert_eq!(ct["errorCode"], "NotFoundException");

    // Paging: 3 + 3 + 1, no overlap, same order.
    let mut ids = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut body = json!({"MaxResults": 3});
        if let Some(t) = &token {
            body["NextToken"] = json!(t);
        }
        let page = lookup(&f, body).await;
        for e in page["Events"].as_array().unwrap() {
            ids.push(e["EventId"].as_str().unwrap().to_string());
        }
        match page.get("NextToken") {
            Some(t) => token = Some(t.as_str().unwrap().to_string()),
            None => break,
        }
    }
    let expected: Vec<String> = events
        .iter()
        .map(|e| e["EventId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, expected);

    let by =
        |k: &str, v: &str| json!({"LookupAttributes": [{"AttributeKey": k, "AttributeValue": v}]});
    let count = |v: Value| v["Events"].as_array().unwrap().len();
    assert_eq!(
        count(lookup(&f, by("EventName", "GenerateDataKey")).await),
        4
    );
    assert_eq!(count(lookup(&f, by("ReadOnly", "false")).await), 1);
    assert_eq!(count(lookup(&f, by("ReadOnly", "true")).await), 6);
    assert_eq!(count(lookup(&f, by("Username", "alice")).await), 1);
    assert_eq!(count(lookup(&f, by("ResourceName", &arn)).await), 5);
    assert_eq!(
        count(lookup(&f, by("ResourceType", "AWS::KMS::Key")).await),
        5
    );
    assert_eq!(
        count(lookup(&f, by("EventSource", "kms.amazonaws.com")).await),
        7
    );
    assert_eq!(
        count(lookup(&f, by("AccessKeyId", "AKIAUSERTESTKEY00001")).await),
        1
    );
    assert_eq!(count(lookup(&f, by("EventId", &expected[2])).await), 1);
    let e0 = &lookup(&f, by("EventName", "CreateKey")).await["Events"][0];
    assert_eq!(
        e0["Resources"],
        json!([{"ResourceType": "AWS::KMS::Key", "ResourceName": arn}])
    );
    // Time range.
    let t = e0["EventTime"].as_f64().unwrap();
    assert_eq!(count(lookup(&f, json!({"StartTime": t + 3600.0})).await), 0);
    assert_eq!(
        count(lookup(&f, json!({"EndTime": t + 3600.0, "StartTime": t - 3600.0})).await),
        7
    );

    // Other accounts see nothing of ours.
    let other = f
        .engine
        .call_cloudtrail(&root_caller(OTHER_ACCOUNT), "LookupEvents", b"{}")
        .await
        .unwrap();
    assert_eq!(other["Events"], json!([]));

    let two = json!({"LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": "a"},
                                          {"AttributeKey": "EventName", "AttributeValue": "b"}]});
    assert_eq!(
        lookup_err(&f, two).await,
        "InvalidLookupAttributesException"
    );
    assert_eq!(
        lookup_err(&f, by("Colour", "x")).await,
        "InvalidLookupAttributesException"
    );
    assert_eq!(
        lookup_err(&f, json!({"MaxResults": 51})).await,
        "InvalidMaxResultsException"
    );
    assert_eq!(
        lookup_err(&f, json!({"NextToken": "zzz"})).await,
        "InvalidNextTokenException"
    );
    assert_eq!(
        lookup_err(&f, json!({"StartTime": 100, "EndTime": 50})).await,
        "InvalidTimeRangeException"
    );
    // LookupEvents itself is not recorded.
    assert_eq!(count(lookup(&f, json!({})).await), 7);
}

#[tokio::test]
async fn cross_account_calls_are_recorded_in_both_accounts_unless_denied() {
    let f = Fixture::new();
    let (id, arn) = f.create_key().await;
    let host = user_caller(OTHER_ACCOUNT, "host");
    f.call_as(&host, "DescribeKey", json!({"KeyId": arn}))
        .await
        .unwrap_err();
    f.ok(
        "CreateGrant",
        json!({"KeyId": id, "GranteePrincipal": host.identity.arn, "Operations": ["Encrypt"]}),
    )
    .await;
    f.call_as(
        &host,
        "Encrypt",
        json!({"KeyId": arn, "Plaintext": b64(b"x")}),
    )
    .await
    .unwrap();
    let recs = records(&f);
    let in_account = |acct: &str, name: &str| {
        recs.iter()
            .filter(|r| r["recipientAccountId"] == acct && r["eventName"] == name)
            .count()
    };
    // The denied DescribeKey is the caller's alone, as AWS logs it: the key owner's trail never
    // shows who was refused its key.
    assert_eq!(in_account(OTHER_ACCOUNT, "DescribeKey"), 1);
    assert_eq!(in_account(ACCOUNT, "DescribeKey"), 0);
    assert_eq!(in_account(OTHER_ACCOUNT, "Encrypt"), 1);
    assert_eq!(in_account(ACCOUNT, "Encrypt"), 1);
    let denied = recs
        .iter()
        .find(|r| r["eventName"] == "DescribeKey")
        .unwrap();
    assert_eq!(denied["errorCode"], "AccessDeniedException");
    assert_eq!(
        denied["errorMessage"],
        format!(
            "User: {} is not authorized to perform: kms:DescribeKey on resource: {arn} because no \
             resource-based policy allows the kms:DescribeKey action",
            host.identity.arn
        )
    );
    assert_eq!(denied["userIdentity"]["type"], "IAMUser");
    assert_eq!(denied["userIdentity"]["userName"], "host");
}

#[tokio::test]
async fn service_events_for_rotation_and_deletion() {
    let f = Fixture::new();
    let (a, a_arn) = f.create_key().await;
    let (b, _) = f.create_key().await;
    f.ok(
        "EnableKeyRotation",
        json!({"KeyId": a, "RotationPeriodInDays": 90}),
    )
    .await;
    f.ok(
        "ScheduleKeyDeletion",
        json!({"KeyId": b, "PendingWindowInDays": 7}),
    )
    .await;
    f.engine
        .advance_clock(std::time::Duration::from_secs(91 * 86400))
        .await
        .unwrap();
    let recs = records(&f);
    let rot = recs
        .iter()
        .find(|r| r["eventName"] == "RotateKey")
        .expect("rotation event");
    assert_eq!(rot["eventType"], "AwsServiceEvent");
    assert_eq!(rot["resources"][0]["ARN"], a_arn);
    let del = recs
        .iter()
        .find(|r| r["eventName"] == "DeleteKey")
        .expect("deletion event");
    assert_eq!(del["eventType"], "AwsServiceEvent");
    assert_eq!(del["recipientAccountId"], ACCOUNT);
}
