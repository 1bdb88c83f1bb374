//! The AWS query protocol for IAM and STS on the same listener as KMS.
//!
//! A request without `X-Amz-Target` whose SigV4 credential scope names `iam` or `sts` is a query
//! request: form-encoded `Action=...&Version=...` in the body (POST) or the URL (GET). After SigV4
//! verification for that service the engine runs the action ([`keyward_kms::Engine::call_iam`],
//! [`keyward_kms::Engine::call_sts`]) and the answer is AWS's XML:
//!
//! ```text
//! <CreateRoleResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/">
//!   <CreateRoleResult>...</CreateRoleResult>
//!   <ResponseMetadata><RequestId>uuid</RequestId></ResponseMetadata>
//! </CreateRoleResponse>
//! ```
//!
//! or `<ErrorResponse><Error><Type>Sender</Type><Code>..</Code><Message>..</Message></Error>
//! <RequestId>..</RequestId></ErrorResponse>` with IAM's/STS's HTTP status for the code.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use keyward_kms::Form;

use crate::error::Error;
use crate::wire::{caller_of, read_body, verify, Shared};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueryService {
    Iam,
    Sts,
}

impl QueryService {
    fn name(self) -> &'static str {
        match self {
            QueryService::Iam => "iam",
            QueryService::Sts => "sts",
        }
    }

    fn xmlns(self) -> &'static str {
        match self {
            QueryService::Iam => "https://iam.amazonaws.com/doc/2010-05-08/",
            QueryService::Sts => "https://sts.amazonaws.com/doc/2011-06-15/",
        }
    }
}

/// The query service named by the request's SigV4 credential scope
/// (`Credential=AKID/DATE/REGION/SERVICE/aws4_request`), if it is IAM or STS.
pub(crate) fn service_of(headers: &HeaderMap) -> Option<QueryService> {
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let credential = auth.split("Credential=").nth(1)?;
    let credential = credential.split([',', ' ']).next()?;
    match credential.split('/').nth(3)? {
        "iam" => Some(QueryService::Iam),
        "sts" => Some(QueryService::Sts),
        _ => None,
    }
}

/// A refusal in the query protocol's terms.
struct QueryError {
    code: String,
    message: String,
}

impl QueryError {
    fn new(code: impl Into<String>, message: impl Into<String>) -> QueryError {
        QueryError {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// IAM's and STS's HTTP status for an error code.
fn status_of(code: &str, service: QueryService) -> StatusCode {
    match code {
        "NoSuchEntity" => StatusCode::NOT_FOUND,
        "EntityAlreadyExists" | "DeleteConflict" | "LimitExceeded" => StatusCode::CONFLICT,
        "AccessDenied"
        | "InvalidClientTokenId"
        | "SignatureDoesNotMatch"
        | "MissingAuthenticationToken" => StatusCode::FORBIDDEN,
        "ExpiredToken" if service == QueryService::Iam => StatusCode::FORBIDDEN,
        "ServiceFailure" | "InternalFailure" => StatusCode::INTERNAL_SERVER_ERROR,
        "RequestEntityTooLarge" => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// The wire's own refusals (signature, size) as IAM/STS name them.
fn from_wire(error: Error) -> QueryError {
    let message = error.client_message();
    let code = match error {
        Error::MissingAuthenticationToken => "MissingAuthenticationToken",
        Error::IncompleteSignature(_) => "IncompleteSignature",
        Error::UnrecognizedClient => "InvalidClientTokenId",
        Error::ExpiredToken => "ExpiredToken",
        Error::InvalidSignature(_) => "SignatureDoesNotMatch",
        Error::UnknownOperation(_) => "InvalidAction",
        Error::RequestTooLarge { .. } => "RequestEntityTooLarge",
        Error::Api { code, .. } => code.as_str(),
        Error::Io(_) | Error::Engine(_) => "InternalFailure",
    };
    QueryError::new(code, message)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub(crate) async fn handle(shared: &Shared, request: Request, service: QueryService) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let (status, body) = match handle_inner(shared, request, service, &request_id).await {
        Ok((action, result)) => {
            let result = if result.is_empty() {
                String::new()
            } else {
                format!("<{action}Result>{result}</{action}Result>")
            };
            (
                StatusCode::OK,
                format!(
                    "<{action}Response xmlns=\"{}\">{result}<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{action}Response>",
                    service.xmlns()
                ),
            )
        }
        Err(e) => {
            let status = status_of(&e.code, service);
            if status.is_server_error() {
                tracing::error!(code = %e.code, message = %e.message, "IAM/STS request failed inside the server");
            }
            let kind = if status.is_server_error() {
                "Receiver"
            } else {
                "Sender"
            };
            (
                status,
                format!(
                    "<ErrorResponse xmlns=\"{}\"><Error><Type>{kind}</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>",
                    service.xmlns(),
                    escape(&e.code),
                    escape(&e.message)
                ),
            )
        }
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    headers.insert(
        "x-amzn-requestid",
        HeaderValue::from_str(&request_id).expect("a uuid is a valid header value"),
    );
    response
}

/// Decodes `application/x-www-form-urlencoded` pairs (`+` is a space).
fn decode_form(text: &str, out: &mut Vec<(String, String)>) {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.push((decode(k), decode(v)));
    }
}

async fn handle_inner(
    shared: &Shared,
    request: Request,
    service: QueryService,
    request_id: &str,
) -> Result<(String, String), QueryError> {
    let (parts, body) = request.into_parts();
    let body = read_body(&parts, body).await.map_err(from_wire)?;
    let verified = verify(shared, &parts, &body, service.name()).map_err(from_wire)?;
    let mut params = Vec::new();
    decode_form(parts.uri.query().unwrap_or_default(), &mut params);
    if parts.method == Method::POST {
        decode_form(&String::from_utf8_lossy(&body), &mut params);
    }
    let action = params
        .iter()
        .find(|(k, _)| k == "Action")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    if action.is_empty() || !action.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(QueryError::new(
            "InvalidAction",
            "The action or operation requested is invalid. Verify that the action is typed correctly.",
        ));
    }
    let caller = caller_of(&parts, verified, request_id, shared.transport);
    let form = Form(&params);
    let answer = match service {
        QueryService::Iam => shared.engine.call_iam(&caller, &action, &form).await,
        QueryService::Sts => shared.engine.call_sts(&caller, &action, &form).await,
    };
    answer
        .map(|xml| (action, xml))
        .map_err(|e| QueryError::new(e.code.as_str(), e.message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_plus_and_percent() {
        let mut out = Vec::new();
        decode_form(
            "Action=CreateRole&Doc=%7B%22a%22%3A+1%7D&Empty=&Flag",
            &mut out,
        );
        assert_eq!(
            out,
            [
                ("Action".to_string(), "CreateRole".to_string()),
                ("Doc".into(), "{\"a\": 1}".into()),
                ("Empty".into(), String::new()),
                ("Flag".into(), String::new()),
            ]
        );
    }

    #[test]
    fn scope_names_the_service() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static(
                "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20260101/us-east-1/sts/aws4_request, SignedHeaders=host;x-amz-date, Signature=00",
            ),
        );
        assert!(service_of(&headers) == Some(QueryService::Sts));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static(
                "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20260101/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=00",
            ),
        );
        assert!(service_of(&headers).is_none());
        assert_eq!(
            status_of("NoSuchEntity", QueryService::Iam),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status_of("DeleteConflict", QueryService::Iam),
            StatusCode::CONFLICT
        );
        assert_eq!(
            status_of("ExpiredToken", QueryService::Sts),
            StatusCode::BAD_REQUEST
        );
    }
}
