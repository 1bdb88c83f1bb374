//! SigV4 refusals with raw HTTP: each gets AWS's exception name, HTTP 400, a request id, and changes
//! nothing.

use time::{Duration, OffsetDateTime};

use crate::raw::{signed_headers, Creds, RawResponse};
use crate::support::{start, Harness};

const CREATE_KEY: &str = "TrentService.CreateKey";

fn assert_refused(answer: &RawResponse, code: &str) {
    assert_eq!(
        answer.status,
        400,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.error_type(), code);
    assert!(answer.json()["message"].is_string());
    assert!(answer
        .header("x-amzn-requestid")
        .is_some_and(|id| id.len() == 36));
    assert_eq!(
        answer.header("content-type"),
        Some("application/x-amz-json-1.1")
    );
}

async fn send(h: &Harness, headers: Vec<(String, String)>, body: &str) -> RawResponse {
    h.raw()
        .await
        .send("POST", "/", &headers, body.as_bytes())
        .await
        .expect("answer")
}

fn headers_for(
    h: &Harness,
    creds: &Creds,
    body: &str,
    when: OffsetDateTime,
) -> Vec<(String, String)> {
    let host = h.server.endpoint().trim_start_matches("http://").to_owned();
    signed_headers(creds, &host, "kms", CREATE_KEY, body.as_bytes(), when)
}

fn set(headers: &mut [(String, String)], name: &str, value: &str) {
    headers
        .iter_mut()
        .find(|(n, _)| n == name)
        .expect("header present")
        .1 = value.to_owned();
}

#[tokio::test]
async fn signed_request_is_accepted_and_refusals_change_nothing() {
    let h = start().await;
    let now = OffsetDateTime::now_utc();
    let good = headers_for(&h, &h.creds(), "{}", now);
    let answer = send(&h, good, "{}").await;
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(h.key_count().await, 1);

    // Tampered body: signed one body, sent another.
    let headers = headers_for(&h, &h.creds(), "{}", now);
    let tampered = r#"{"Description":"evil"}"#;
    let mut with_length = headers.clone();
    with_length.push(("content-length".into(), tampered.len().to_string()));
    assert_refused(
        &send(&h, with_length, tampered).await,
        "InvalidSignatureException",
    );

    // Tampered signed header: the target changed after signing.
    let mut headers = headers_for(&h, &h.creds(), "{}", now);
    set(
        &mut headers,
        "x-amz-target",
        "TrentService.ScheduleKeyDeletion",
    );
    assert_refused(&send(&h, headers, "{}").await, "InvalidSignatureException");

    // A body hash header that lies is not trusted: we hash the body ourselves.
    let mut headers = headers_for(&h, &h.creds(), "{}", now);
    headers.push((
        "x-amz-content-sha256".into(),
        "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a".into(),
    ));
    let answer = send(&h, headers, "{}").await;
    assert_eq!(
        answer.status, 200,
        "an unsigned x-amz-content-sha256 does not change the signed hash"
    );
    assert_eq!(h.key_count().await, 2);

    // Wrong secret.
    let mut wrong = h.creds();
    wrong.secret.push('x');
    assert_refused(
        &send(&h, headers_for(&h, &wrong, "{}", now), "{}").await,
        "InvalidSignatureException",
    );

    // Unknown access key.
    let mut unknown = h.creds();
    unknown.access_key_id = "AKIAUNKNOWNUNKNOWN00".into();
    let answer = send(&h, headers_for(&h, &unknown, "{}", now), "{}").await;
    assert_refused(&answer, "UnrecognizedClientException");
    assert_eq!(
        answer.json()["message"],
        "The security token included in the request is invalid."
    );

    // A session token on a long-term key.
    let mut headers = headers_for(&h, &h.creds(), "{}", now);
    headers.push(("x-amz-security-token".into(), "forged".into()));
    assert_refused(
        &send(&h, headers, "{}").await,
        "UnrecognizedClientException",
    );

    // Stale and future dates (more than 15 minutes away).
    let stale = send(
        &h,
        headers_for(&h, &h.creds(), "{}", now - Duration::minutes(16)),
        "{}",
    )
    .await;
    assert_refused(&stale, "InvalidSignatureException");
    let message = stale.json()["message"].as_str().unwrap().to_owned();
    assert!(
        message.starts_with("Signature expired: ") && message.ends_with(" - 15 min.)"),
        "{message}"
    );
    let future = send(
        &h,
        headers_for(&h, &h.creds(), "{}", now + Duration::minutes(16)),
        "{}",
    )
    .await;
    assert_refused(&future, "InvalidSignatureException");
    assert!(future.json()["message"]
        .as_str()
        .unwrap()
        .starts_with("Signature not yet current: "));
    // Within the window is fine.
    let answer = send(
        &h,
        headers_for(&h, &h.creds(), "{}", now - Duration::minutes(14)),
        "{}",
    )
    .await;
    assert_eq!(answer.status, 200);

    // Missing authentication.
    let mut headers = headers_for(&h, &h.creds(), "{}", now);
    headers.retain(|(n, _)| n != "authorization");
    assert_refused(
        &send(&h, headers, "{}").await,
        "MissingAuthenticationTokenException",
    );

    // Signed for another service.
    let host = h.server.endpoint().trim_start_matches("http://").to_owned();
    let s3 = signed_headers(&h.creds(), &host, "s3", CREATE_KEY, b"{}", now);
    assert_refused(&send(&h, s3, "{}").await, "InvalidSignatureException");

    // Garbage in the Authorization header.
    let mut headers = headers_for(&h, &h.creds(), "{}", now);
    set(
        &mut headers,
        "authorization",
        "AWS4-HMAC-SHA256 Credential=x",
    );
    assert_refused(
        &send(&h, headers, "{}").await,
        "IncompleteSignatureException",
    );

    assert_eq!(h.key_count().await, 3, "no refused request created a key");
}

/// Our own `Signer` (kept for the unit tests beside the verifier) signs exactly as the SDK's
/// `aws-sigv4` does: same `Authorization` for the same request, over bodies, query strings that
/// need sorting and encoding, and header values with runs of spaces.
#[test]
fn our_signer_agrees_with_aws_sigv4() {
    use keyward_kms_server::sigv4::{format_amz_date, Signer};

    let creds = Creds {
        access_key_id: "AKIDEXAMPLE".into(),
        secret: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
        region: "eu-west-1".into(),
    };
    let when = OffsetDateTime::from_unix_timestamp(1_767_225_600).unwrap();
    // (service, method, path, query, headers besides host, body)
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        Vec<(&'a str, &'a str)>,
        &'a [u8],
    );
    let cases: [Case; 4] = [
        (
            "kms",
            "POST",
            "/",
            "",
            vec![
                ("content-type", "application/x-amz-json-1.1"),
                ("x-amz-target", CREATE_KEY),
            ],
            br#"{"Description":"a key"}"#,
        ),
        (
            "iam",
            "GET",
            "/",
            "Version=2010-05-08&Action=ListRoles&PathPrefix=%2Fteam%2F",
            vec![],
            b"",
        ),
        (
            "kms",
            "POST",
            "/_keyward/clock",
            "",
            vec![("content-type", "application/json")],
            br#"{"advance_seconds": 60}"#,
        ),
        (
            "sts",
            "POST",
            "/",
            "",
            vec![
                ("content-type", "application/x-www-form-urlencoded"),
                ("x-amz-meta-note", "  two   spaces  "),
            ],
            b"Action=GetCallerIdentity&Version=2011-06-15",
        ),
    ];
    for (service, method, path, query, extra, body) in cases {
        let mut headers = vec![("host".to_owned(), "127.0.0.1:4599".to_owned())];
        headers.extend(extra.iter().map(|(n, v)| (n.to_string(), v.to_string())));
        let theirs = crate::raw::aws_sigv4_headers(
            &creds, service, method, path, query, &headers, body, when,
        );
        let header = |name: &str| {
            theirs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("aws-sigv4 adds {name}"))
        };
        let date = format_amz_date(when);
        assert_eq!(header("x-amz-date"), date);
        let mut ours_headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        ours_headers.push(("x-amz-date", &date));
        let ours = Signer {
            access_key_id: &creds.access_key_id,
            secret: creds.secret.as_bytes(),
            region: &creds.region,
            service,
        }
        .authorization(method, path, query, &ours_headers, body);
        assert_eq!(
            ours,
            header("authorization"),
            "{service} {method} {path}?{query}"
        );
    }
}
