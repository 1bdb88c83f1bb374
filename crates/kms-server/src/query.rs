//! The AWS query protocol for IAM and STS on the same listener as KMS.
//!
//! A request without `X-Amz-Target` whose SigV4 credential scope names `iam` or `sts` is a query
//! request: form-encoded `Action=...&Version=...` in the body (POST) or the URL (GET). After SigV4
//! verification for that service this module reads the action's members into a typed operation
//! ([`IamRequest`], [`StsRequest`]), the engine runs it ([`keyward_kms::Engine::call_iam`],
//! [`keyward_kms::Engine::call_sts`]) and this module writes the typed answer as AWS's XML:
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
use std::fmt::Write as _;

use keyward_kms::{iso8601, Code, IamAnswer, IamRequest, RoleInfo, StsAnswer, StsRequest};

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

/// IAM's and STS's error codes: the engine's ([`Code`]) and the wire's own refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QueryCode {
    /// The engine's refusal (and the wire's unknown action and internal failure, which IAM and
    /// STS name as the engine does: `InvalidAction`, `InternalFailure`).
    Api(Code),
    MissingAuthenticationToken,
    IncompleteSignature,
    InvalidClientTokenId,
    ExpiredToken,
    SignatureDoesNotMatch,
    RequestEntityTooLarge,
}

impl QueryCode {
    fn as_str(self) -> &'static str {
        match self {
            QueryCode::Api(code) => code.as_str(),
            QueryCode::MissingAuthenticationToken => "MissingAuthenticationToken",
            QueryCode::IncompleteSignature => "IncompleteSignature",
            QueryCode::InvalidClientTokenId => "InvalidClientTokenId",
            QueryCode::ExpiredToken => "ExpiredToken",
            QueryCode::SignatureDoesNotMatch => "SignatureDoesNotMatch",
            QueryCode::RequestEntityTooLarge => "RequestEntityTooLarge",
        }
    }

    /// IAM's and STS's HTTP status for the code, one arm each so none falls to a default: the
    /// engine's codes keep their own ([`Code::http_status`]: 404 for a missing entity, 409 for
    /// conflicts and limits, 403 for a denial); a request that fails authentication is 403, except
    /// an expired token, which STS answers with 400 and IAM with 403.
    fn status(self, service: QueryService) -> StatusCode {
        match self {
            QueryCode::Api(code) => StatusCode::from_u16(code.http_status())
                .expect("the engine's statuses are valid HTTP statuses"),
            QueryCode::MissingAuthenticationToken
            | QueryCode::InvalidClientTokenId
            | QueryCode::SignatureDoesNotMatch => StatusCode::FORBIDDEN,
            QueryCode::ExpiredToken => match service {
                QueryService::Iam => StatusCode::FORBIDDEN,
                QueryService::Sts => StatusCode::BAD_REQUEST,
            },
            QueryCode::IncompleteSignature => StatusCode::BAD_REQUEST,
            QueryCode::RequestEntityTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }
}

/// A refusal in the query protocol's terms.
struct QueryError {
    code: QueryCode,
    message: String,
}

impl QueryError {
    fn new(code: QueryCode, message: impl Into<String>) -> QueryError {
        QueryError {
            code,
            message: message.into(),
        }
    }
}

/// The wire's own refusals (signature, size) as IAM/STS name them.
fn from_wire(error: Error) -> QueryError {
    let message = error.client_message();
    let code = match error {
        Error::MissingAuthenticationToken => QueryCode::MissingAuthenticationToken,
        Error::IncompleteSignature(_) => QueryCode::IncompleteSignature,
        Error::UnrecognizedClient => QueryCode::InvalidClientTokenId,
        Error::ExpiredToken => QueryCode::ExpiredToken,
        Error::InvalidSignature(_) => QueryCode::SignatureDoesNotMatch,
        Error::UnknownOperation(_) => QueryCode::Api(Code::InvalidAction),
        Error::RequestTooLarge { .. } => QueryCode::RequestEntityTooLarge,
        Error::Api { code, .. } => QueryCode::Api(code),
        Error::Io(_) | Error::Engine(_) => QueryCode::Api(Code::InternalFailure),
    };
    QueryError::new(code, message)
}

/// XML text with `&`, `<`, `>`, `"` and `'` escaped: the one escaper of every XML answer.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// `<name>text</name>`, the text escaped.
fn el(out: &mut String, name: &str, text: &str) {
    let _ = write!(out, "<{name}>{}</{name}>", esc(text));
}

/// Policy documents are URL-encoded in IAM's answers (RFC 3986 unreserved characters kept).
fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn role_xml(out: &mut String, r: &RoleInfo) {
    el(out, "Path", &r.path);
    el(out, "RoleName", &r.name);
    el(out, "RoleId", &r.id);
    el(out, "Arn", &r.arn);
    el(out, "CreateDate", &iso8601(r.created_ms));
    el(
        out,
        "AssumeRolePolicyDocument",
        &url_encode(&r.trust_policy),
    );
    if let Some(d) = &r.description {
        el(out, "Description", d);
    }
    el(out, "MaxSessionDuration", &r.max_session_secs.to_string());
}

fn paging_xml(out: &mut String, next: Option<&str>) {
    el(
        out,
        "IsTruncated",
        if next.is_some() { "true" } else { "false" },
    );
    if let Some(m) = next {
        el(out, "Marker", m);
    }
}

/// The inner XML of `<{Action}Result>` (empty for actions that return nothing).
fn iam_xml(answer: &IamAnswer) -> String {
    let mut out = String::new();
    match answer {
        IamAnswer::Role(role) => {
            out.push_str("<Role>");
            role_xml(&mut out, role);
            out.push_str("</Role>");
        }
        IamAnswer::Roles { roles, next_marker } => {
            out.push_str("<Roles>");
            for r in roles {
                out.push_str("<member>");
                role_xml(&mut out, r);
                out.push_str("</member>");
            }
            out.push_str("</Roles>");
            paging_xml(&mut out, next_marker.as_deref());
        }
        IamAnswer::RolePolicy {
            role_name,
            policy_name,
            document,
        } => {
            el(&mut out, "RoleName", role_name);
            el(&mut out, "PolicyName", policy_name);
            el(&mut out, "PolicyDocument", &url_encode(document));
        }
        IamAnswer::PolicyNames { names, next_marker } => {
            out.push_str("<PolicyNames>");
            for n in names {
                el(&mut out, "member", n);
            }
            out.push_str("</PolicyNames>");
            paging_xml(&mut out, next_marker.as_deref());
        }
        IamAnswer::Done => {}
    }
    out
}

fn sts_xml(answer: &StsAnswer) -> String {
    let mut out = String::new();
    match answer {
        StsAnswer::CallerIdentity {
            arn,
            user_id,
            account,
        } => {
            el(&mut out, "Arn", arn);
            el(&mut out, "UserId", user_id);
            el(&mut out, "Account", account);
        }
        StsAnswer::AssumedRole(c) => {
            out.push_str("<Credentials>");
            el(&mut out, "AccessKeyId", &c.access_key_id);
            el(&mut out, "SecretAccessKey", &c.secret_access_key);
            el(&mut out, "SessionToken", &c.session_token);
            el(&mut out, "Expiration", &iso8601(c.expires_ms));
            out.push_str("</Credentials><AssumedRoleUser>");
            el(&mut out, "AssumedRoleId", &c.assumed_role_id);
            el(&mut out, "Arn", &c.arn);
            out.push_str("</AssumedRoleUser>");
        }
    }
    out
}

/// The decoded form parameters of one request.
struct Form(Vec<(String, String)>);

impl Form {
    /// The member's value, if the caller sent it.
    fn get(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    /// The IAM operation the action names, its members read by their query-protocol names.
    fn iam(&self, action: &str) -> Option<IamRequest> {
        let role_name = || self.get("RoleName");
        Some(match action {
            "CreateRole" => IamRequest::CreateRole {
                role_name: role_name(),
                path: self.get("Path"),
                assume_role_policy_document: self.get("AssumeRolePolicyDocument"),
                description: self.get("Description"),
                max_session_duration: self.get("MaxSessionDuration"),
            },
            "GetRole" => IamRequest::GetRole {
                role_name: role_name(),
            },
            "DeleteRole" => IamRequest::DeleteRole {
                role_name: role_name(),
            },
            "ListRoles" => IamRequest::ListRoles {
                path_prefix: self.get("PathPrefix"),
                marker: self.get("Marker"),
                max_items: self.get("MaxItems"),
            },
            "PutRolePolicy" => IamRequest::PutRolePolicy {
                role_name: role_name(),
                policy_name: self.get("PolicyName"),
                policy_document: self.get("PolicyDocument"),
            },
            "GetRolePolicy" => IamRequest::GetRolePolicy {
                role_name: role_name(),
                policy_name: self.get("PolicyName"),
            },
            "DeleteRolePolicy" => IamRequest::DeleteRolePolicy {
                role_name: role_name(),
                policy_name: self.get("PolicyName"),
            },
            "ListRolePolicies" => IamRequest::ListRolePolicies {
                role_name: role_name(),
                marker: self.get("Marker"),
                max_items: self.get("MaxItems"),
            },
            _ => return None,
        })
    }

    /// The STS operation the action names.
    fn sts(&self, action: &str) -> Option<StsRequest> {
        Some(match action {
            "GetCallerIdentity" => StsRequest::GetCallerIdentity,
            "AssumeRole" => StsRequest::AssumeRole {
                role_arn: self.get("RoleArn"),
                role_session_name: self.get("RoleSessionName"),
                external_id: self.get("ExternalId"),
                duration_seconds: self.get("DurationSeconds"),
            },
            _ => return None,
        })
    }
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
            let status = e.code.status(service);
            if status.is_server_error() {
                tracing::error!(code = e.code.as_str(), message = %e.message, "IAM/STS request failed inside the server");
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
                    esc(e.code.as_str()),
                    esc(&e.message)
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
            QueryCode::Api(Code::InvalidAction),
            "The action or operation requested is invalid. Verify that the action is typed correctly.",
        ));
    }
    let caller = caller_of(&parts, verified, request_id, shared.transport);
    let form = Form(params);
    let unknown = |version: &str| {
        QueryError::new(
            QueryCode::Api(Code::InvalidAction),
            format!("Could not find operation {action} for version {version}"),
        )
    };
    let answer = match service {
        QueryService::Iam => {
            let request = form.iam(&action).ok_or_else(|| unknown("2010-05-08"))?;
            shared
                .engine
                .call_iam(&caller, &request)
                .await
                .map(|a| iam_xml(&a))
        }
        QueryService::Sts => {
            let request = form.sts(&action).ok_or_else(|| unknown("2011-06-15"))?;
            shared
                .engine
                .call_sts(&caller, &request)
                .await
                .map(|a| sts_xml(&a))
        }
    };
    answer
        .map(|xml| (action, xml))
        .map_err(|e| QueryError::new(QueryCode::Api(e.code), e.message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encoding_keeps_unreserved_characters_only() {
        assert_eq!(
            url_encode(r#"{"A": "b-c_d.e~"}"#),
            "%7B%22A%22%3A%20%22b-c_d.e~%22%7D"
        );
    }

    #[test]
    fn xml_text_is_escaped() {
        assert_eq!(
            esc(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&apos;"
        );
    }

    #[test]
    fn actions_read_their_members_by_query_name() {
        let form = Form(vec![
            ("RoleName".into(), "r".into()),
            ("PolicyName".into(), "p".into()),
            ("MaxItems".into(), "x".into()),
        ]);
        assert_eq!(
            form.iam("GetRolePolicy"),
            Some(IamRequest::GetRolePolicy {
                role_name: Some("r".into()),
                policy_name: Some("p".into()),
            })
        );
        assert_eq!(
            form.iam("ListRolePolicies"),
            Some(IamRequest::ListRolePolicies {
                role_name: Some("r".into()),
                marker: None,
                max_items: Some("x".into()),
            })
        );
        assert_eq!(form.iam("AssumeRole"), None);
        assert_eq!(
            form.sts("GetCallerIdentity"),
            Some(StsRequest::GetCallerIdentity)
        );
        assert_eq!(form.sts("CreateRole"), None);
    }

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
        for (code, service, status) in [
            (QueryCode::Api(Code::NoSuchEntity), QueryService::Iam, 404),
            (QueryCode::Api(Code::DeleteConflict), QueryService::Iam, 409),
            (QueryCode::Api(Code::AccessDenied), QueryService::Sts, 403),
            (
                QueryCode::Api(Code::ValidationError),
                QueryService::Iam,
                400,
            ),
            (
                QueryCode::Api(Code::InternalFailure),
                QueryService::Sts,
                500,
            ),
            (QueryCode::ExpiredToken, QueryService::Sts, 400),
            (QueryCode::ExpiredToken, QueryService::Iam, 403),
            (QueryCode::SignatureDoesNotMatch, QueryService::Sts, 403),
            (QueryCode::IncompleteSignature, QueryService::Iam, 400),
            (QueryCode::RequestEntityTooLarge, QueryService::Iam, 413),
        ] {
            assert_eq!(code.status(service).as_u16(), status, "{code:?}");
        }
    }
}
