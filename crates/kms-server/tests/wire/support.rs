//! One dev server per test, with an aws-sdk-kms client and a raw signed client.

use aws_sdk_kms::error::ProvideErrorMetadata;
use keyward_kms_server::DevServer;

use crate::raw::{signed_headers, Creds, RawClient, RawResponse};

pub struct Harness {
    pub server: DevServer,
    pub kms: aws_sdk_kms::Client,
    _dir: tempfile::TempDir,
}

pub async fn start() -> Harness {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = DevServer::start(&dir.path().join("kms"));
    let config = server.sdk_config().await;
    Harness {
        kms: aws_sdk_kms::Client::new(&config),
        server,
        _dir: dir,
    }
}

impl Harness {
    pub fn creds(&self) -> Creds {
        Creds {
            access_key_id: self.server.access_key_id().to_owned(),
            secret: self.server.secret_access_key().to_owned(),
            region: self.server.region().to_owned(),
        }
    }

    pub async fn raw(&self) -> RawClient {
        RawClient::connect(self.server.endpoint()).await
    }

    /// A correctly signed KMS JSON request.
    pub async fn kms_raw(&self, action: &str, body: &str) -> RawResponse {
        let mut client = self.raw().await;
        let headers = signed_headers(
            &self.creds(),
            client.host(),
            "kms",
            &format!("TrentService.{action}"),
            body.as_bytes(),
            time::OffsetDateTime::now_utc(),
        );
        client
            .send("POST", "/", &headers, body.as_bytes())
            .await
            .expect("answer")
    }

    /// CloudTrail LookupEvents with a raw signed request (the SDK for CloudTrail is not a dependency).
    pub async fn lookup_events(&self, body: serde_json::Value) -> serde_json::Value {
        let mut client = self.raw().await;
        let body = body.to_string();
        let headers = signed_headers(
            &self.creds(),
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
        assert_eq!(
            answer.status,
            200,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        answer.json()
    }

    /// Every trail record (parsed `CloudTrailEvent`s), newest first, through LookupEvents paging.
    pub async fn all_events(&self) -> Vec<serde_json::Value> {
        let mut records = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut request = serde_json::json!({"MaxResults": 50});
            if let Some(token) = &token {
                request["NextToken"] = token.clone().into();
            }
            let page = self.lookup_events(request).await;
            for event in page["Events"].as_array().expect("Events") {
                let record: serde_json::Value = serde_json::from_str(
                    event["CloudTrailEvent"].as_str().expect("CloudTrailEvent"),
                )
                .expect("CloudTrailEvent is JSON");
                records.push(record);
            }
            match page["NextToken"].as_str() {
                Some(next) if !next.is_empty() => token = Some(next.to_owned()),
                _ => return records,
            }
        }
    }

    /// `POST /_keyward/clock`, signed by the account root.
    pub async fn advance_days(&self, days: u64) {
        let mut client = self.raw().await;
        let body = serde_json::json!({"advance_seconds": days * 86_400}).to_string();
        let headers = crate::raw::signed_post_headers(
            &self.creds(),
            client.host(),
            "/_keyward/clock",
            body.as_bytes(),
            time::OffsetDateTime::now_utc(),
        );
        let answer = client
            .send("POST", "/_keyward/clock", &headers, body.as_bytes())
            .await
            .expect("answer");
        assert_eq!(
            answer.status,
            200,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
    }

    /// Creates a key with the default settings and returns its id.
    pub async fn new_key_id(&self) -> String {
        self.kms
            .create_key()
            .send()
            .await
            .expect("CreateKey")
            .key_metadata()
            .expect("KeyMetadata")
            .key_id()
            .to_owned()
    }

    pub async fn key_count(&self) -> usize {
        self.kms
            .list_keys()
            .send()
            .await
            .expect("ListKeys")
            .keys()
            .len()
    }
}

/// The AWS error code of a failed SDK call, and its HTTP status.
pub fn aws_error<E, R>(
    result: Result<R, aws_sdk_kms::error::SdkError<E, aws_smithy_runtime_api_shim::HttpResponse>>,
) -> (String, u16)
where
    E: ProvideErrorMetadata + std::fmt::Debug,
    R: std::fmt::Debug,
{
    match result {
        Ok(ok) => panic!("expected an AWS error, got {ok:?}"),
        Err(error) => {
            let status = error
                .raw_response()
                .map(|r| r.status().as_u16())
                .unwrap_or(0);
            let code = error
                .code()
                .unwrap_or_else(|| panic!("no error code in {error:?}"))
                .to_owned();
            (code, status)
        }
    }
}

/// Asserts a failed SDK call carries AWS error `code` with HTTP 400.
#[track_caller]
pub fn assert_code<E, R>(
    result: Result<R, aws_sdk_kms::error::SdkError<E, aws_smithy_runtime_api_shim::HttpResponse>>,
    code: &str,
) where
    E: ProvideErrorMetadata + std::fmt::Debug,
    R: std::fmt::Debug,
{
    let (got, status) = aws_error(result);
    assert_eq!(got, code);
    assert_eq!(status, 400, "{code} must be HTTP 400");
}

/// aws-sdk-kms re-exports the HTTP response type of its errors here.
pub mod aws_smithy_runtime_api_shim {
    pub type HttpResponse = aws_sdk_kms::config::http::HttpResponse;
}
