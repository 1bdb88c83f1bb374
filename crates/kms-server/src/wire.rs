//! The HTTP layer: one handler for every AWS JSON 1.1 request, and the admin routes a dev engine
//! serves when [`ServeOptions`] asks for them.
//!
//! A request goes: body read with a size limit → `X-Amz-Target` resolved to a service and action →
//! SigV4 verified for that service → the engine runs the action (and writes its trail record) →
//! the answer, or `{"__type": ..., "message": ...}` with the status from [`crate::error::status_of`].
//! Every answer carries `x-amzn-RequestId`, the id the engine writes in the trail.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::response::Response;
use axum::routing::any;
use axum::Router;
use keyward_kms::{AccessKey, Caller, Engine};
use time::OffsetDateTime;

use crate::admin::{admin_clock, admin_reset, AdminToken, CLOCK_PATH, RESET_PATH};
use crate::error::{status_of, Error};
use crate::sigv4::{SigningSecret, Verifier};
use crate::ServeOptions;

/// The largest request body we read. AWS KMS documents no figure for the whole request; the largest
/// legitimate KMS request is a 32 KiB key policy (PutKeyPolicy/CreateKey), so 1 MiB refuses nothing
/// real while bounding what a client can make us buffer. Larger bodies get HTTP 413.
pub const MAX_BODY_BYTES: usize = 1 << 20;

const KMS_TARGET_PREFIX: &str = "TrentService.";
const CLOUDTRAIL_TARGET_PREFIX: &str = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.";
/// The same target as the AWS SDK for Rust sends it (AWS accepts both forms).
const CLOUDTRAIL_SHORT_TARGET_PREFIX: &str = "CloudTrail_20131101.";
const JSON_1_1: &str = "application/x-amz-json-1.1";
const REQUEST_ID: &str = "x-amzn-requestid";

pub(crate) struct Shared {
    pub(crate) engine: Engine,
    pub(crate) verifier: Verifier,
    pub(crate) admin_token: Option<AdminToken>,
    /// What the listener carries requests over; the engine sees it as `aws:SecureTransport`.
    pub(crate) transport: Transport,
}

/// How requests reach a listener. AWS sets `aws:SecureTransport` true only for requests over
/// TLS; this server listens in plain HTTP, so its requests are `PlainHttp` and a key policy's
/// `"Bool": {"aws:SecureTransport": "false"}` deny statement applies to them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    PlainHttp,
    Tls,
}

impl Transport {
    pub fn is_secure(self) -> bool {
        self == Transport::Tls
    }
}

#[derive(Clone)]
pub(crate) struct AppState(pub(crate) Arc<Shared>);

/// The whole HTTP application: AWS JSON 1.1 for KMS and CloudTrail on `POST /` (and IAM/STS in
/// the query protocol), plus the admin routes `options` turns on for a dev engine. A route that is
/// off is not served at all: its path falls through to the AWS handler like any unknown path.
pub fn router(engine: Engine, options: ServeOptions) -> Router {
    let dev = engine.is_dev();
    let state = AppState(Arc::new(Shared {
        engine,
        verifier: Verifier::new(),
        admin_token: options.admin_token,
        transport: Transport::PlainHttp,
    }));
    let mut router = Router::new();
    if dev && options.reset {
        router = router.route(RESET_PATH, any(admin_reset));
    }
    if dev && options.test_clock {
        router = router.route(CLOCK_PATH, any(admin_clock));
    }
    router.fallback(handle_aws).with_state(state)
}

impl SigningSecret for AccessKey {
    fn secret(&self) -> &[u8] {
        AccessKey::secret(self)
    }
    fn session_token(&self) -> Option<&str> {
        self.session_token.as_deref()
    }
}

enum Service<'a> {
    Kms(&'a str),
    CloudTrail(&'a str),
}

async fn handle_aws(State(state): State<AppState>, request: Request) -> Response {
    // JSON protocols name their action in X-Amz-Target; IAM and STS speak the query protocol,
    // recognised by the service of the SigV4 credential scope.
    if !request.headers().contains_key("x-amz-target") {
        if let Some(service) = crate::query::service_of(request.headers()) {
            return crate::query::handle(&state.0, request, service).await;
        }
    }
    let request_id = uuid::Uuid::new_v4().to_string();
    let answer = handle_aws_inner(&state.0, request, &request_id).await;
    let request_id = HeaderValue::from_str(&request_id).expect("a uuid is a valid header value");
    match answer {
        Ok(body) => {
            let mut response = Response::new(Body::from(body));
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_1_1));
            headers.insert(REQUEST_ID, request_id);
            response
        }
        Err(error) => {
            if matches!(error, Error::Io(_) | Error::Engine(_)) {
                tracing::error!(%error, "request failed inside the server");
            }
            error_response(&error, request_id)
        }
    }
}

/// `{"__type": code, "message": message}` with the status AWS uses for `code`.
pub(crate) fn error_response(error: &Error, request_id: HeaderValue) -> Response {
    let code = error.aws_code();
    let body = serde_json::to_vec(&serde_json::json!({
        "__type": code,
        "message": error.client_message(),
    }))
    .expect("a JSON object of two strings serializes");
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status_of(error);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_1_1));
    headers.insert(REQUEST_ID, request_id);
    // The AWS SDKs read the error code from this header first.
    if let Ok(value) = HeaderValue::from_str(code) {
        headers.insert("x-amzn-errortype", value);
    }
    response
}

async fn handle_aws_inner(
    shared: &Shared,
    request: Request,
    request_id: &str,
) -> Result<Vec<u8>, Error> {
    let (parts, body) = request.into_parts();
    let body = read_body(&parts, body).await?;

    if !parts.headers.contains_key(header::AUTHORIZATION) {
        return Err(Error::MissingAuthenticationToken);
    }
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let service = if let Some(action) = target.strip_prefix(KMS_TARGET_PREFIX) {
        Service::Kms(action)
    } else if let Some(action) = target
        .strip_prefix(CLOUDTRAIL_TARGET_PREFIX)
        .or_else(|| target.strip_prefix(CLOUDTRAIL_SHORT_TARGET_PREFIX))
    {
        Service::CloudTrail(action)
    } else {
        return Err(Error::UnknownOperation(String::new()));
    };
    let service_name = match service {
        Service::Kms(_) => "kms",
        Service::CloudTrail(_) => "cloudtrail",
    };

    let verified = verify(shared, &parts, &body, service_name)?;
    if parts.method != Method::POST {
        return Err(Error::UnknownOperation(String::new()));
    }

    let caller = caller_of(&parts, verified, request_id, shared.transport);
    let answer = match service {
        Service::Kms(action) => shared.engine.call_kms(&caller, action, &body).await,
        Service::CloudTrail(action) => shared.engine.call_cloudtrail(&caller, action, &body).await,
    };
    match answer {
        Ok(value) => Ok(serde_json::to_vec(&value).expect("a serde_json::Value serializes")),
        Err(api) => Err(Error::Api {
            code: api.code,
            message: api.message,
        }),
    }
}

/// The request's body, refused as too large before reading when its declared length says so,
/// and while reading when it goes past the limit without one.
pub(crate) async fn read_body(
    parts: &axum::http::request::Parts,
    body: Body,
) -> Result<Bytes, Error> {
    let declared_length = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = Error::RequestTooLarge {
        limit: MAX_BODY_BYTES,
    };
    if declared_length.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large);
    }
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| too_large)
}

/// SigV4 verification for `service` (`kms`, `iam`, ...), then the expiry of temporary
/// credentials, which every service refuses alike.
pub(crate) fn verify(
    shared: &Shared,
    parts: &axum::http::request::Parts,
    body: &[u8],
    service: &str,
) -> Result<crate::sigv4::Verified<AccessKey>, Error> {
    let verified = shared.verifier.verify(
        parts.method.as_str(),
        parts.uri.path(),
        parts.uri.query().unwrap_or_default(),
        &parts.headers,
        body,
        service,
        OffsetDateTime::now_utc(),
        |access_key_id| shared.engine.access_key(access_key_id),
    )?;
    if shared.engine.is_expired(&verified.key) {
        return Err(Error::ExpiredToken);
    }
    Ok(verified)
}

/// Who is calling, from a verified request.
pub(crate) fn caller_of(
    parts: &axum::http::request::Parts,
    verified: crate::sigv4::Verified<AccessKey>,
    request_id: &str,
    transport: Transport,
) -> Caller {
    let source_ip = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string())
        .unwrap_or_else(|| "127.0.0.1".to_owned());
    let user_agent = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    Caller {
        identity: verified.key.identity,
        access_key_id: verified.access_key_id,
        region: verified.region,
        source_ip,
        secure_transport: transport.is_secure(),
        user_agent,
        request_id: request_id.to_owned(),
    }
}
