//! Property test of request parsing: arbitrary targets, headers and bodies, signed or not, never
//! panic the server and always get a well-formed AWS answer with a request id.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};

use crate::raw::signed_headers;
use crate::support::start;

#[derive(Debug, Clone)]
struct Case {
    target: String,
    body: Vec<u8>,
    extra_header: Option<(String, String)>,
    sign: bool,
}

fn case() -> impl Strategy<Value = Case> {
    let target = prop_oneof![
        Just("TrentService.CreateKey".to_owned()),
        Just("TrentService.Encrypt".to_owned()),
        Just("TrentService.Decrypt".to_owned()),
        Just("TrentService.GenerateDataKey".to_owned()),
        Just("TrentService.CreateAlias".to_owned()),
        Just("com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.LookupEvents".to_owned()),
        "TrentService\\.[A-Za-z]{0,20}",
        "[ -~]{0,40}",
    ];
    let json_body = prop_oneof![
        Just(br#"{"KeyId":"alias/x","Plaintext":"AAAA"}"#.to_vec()),
        Just(br#"{"CiphertextBlob":"AQID"}"#.to_vec()),
        Just(br#"{"MaxResults":-1,"NextToken":"zz"}"#.to_vec()),
        "\\{(\"[A-Za-z]{1,12}\":(\"[ -~]{0,20}\"|[0-9-]{1,8}|null|true|\\[\\]|\\{\\}),?){0,4}\\}"
            .prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..300),
    ];
    let extra = proptest::option::of(("x-[a-z]{1,10}", "[ -~]{0,30}"));
    (target, json_body, extra, any::<bool>()).prop_map(|(target, body, extra_header, sign)| Case {
        target,
        body,
        extra_header,
        sign,
    })
}

#[tokio::test]
async fn arbitrary_requests_get_well_formed_aws_answers() {
    let h = start().await;
    let mut runner = TestRunner::new(Config {
        cases: 200,
        ..Config::default()
    });
    let strategy = case();
    let cases: Vec<Case> = (0..200)
        .map(|_| strategy.new_tree(&mut runner).expect("generate").current())
        .collect();
    let mut client = h.raw().await;
    let host = client.host().to_owned();
    for case in cases {
        let service = if case.target.starts_with("com.amazonaws.cloudtrail") {
            "cloudtrail"
        } else {
            "kms"
        };
        let mut headers = if case.sign {
            signed_headers(
                &h.creds(),
                &host,
                service,
                &case.target,
                &case.body,
                time::OffsetDateTime::now_utc(),
            )
        } else {
            vec![("x-amz-target".to_owned(), case.target.clone())]
        };
        if let Some(extra) = &case.extra_header {
            headers.push(extra.clone());
        }
        let answer = client
            .send("POST", "/", &headers, &case.body)
            .await
            .unwrap_or_else(|e| panic!("connection broken by {case:?}: {e}"));
        assert!(answer.header("x-amzn-requestid").is_some(), "{case:?}");
        if answer.status == 200 {
            assert!(answer.json().is_object(), "{case:?}");
        } else {
            assert!(
                matches!(answer.status, 400 | 413),
                "{case:?} → {}",
                answer.status
            );
            let json = answer.json();
            let code = json["__type"].as_str().unwrap_or_default();
            assert!(
                !code.is_empty() && code.chars().all(|c| c.is_ascii_alphanumeric()),
                "{case:?} → {json}"
            );
            assert!(json["message"].is_string(), "{case:?} → {json}");
        }
    }
    // Still serving correctly afterwards.
    assert_eq!(h.kms_raw("ListKeys", "{}").await.status, 200);
}
