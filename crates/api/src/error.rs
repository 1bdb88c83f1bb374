//! Errors: the crate's own [`Error`], and [`ApiError`], what a request is answered with when it
//! fails — `{"error": {"code": "...", "message": "...", ...}}` with the HTTP status of its code.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keyward_control::ErrorCode;

/// Failures of this crate outside a request (serving, tokens).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("the API server failed: {0}")]
    Io(#[source] std::io::Error),
    #[error("the admin token is not valid: it must be `kwadmin_` and at least 32 more characters")]
    InvalidAdminToken,
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every error code the REST API answers with, and its HTTP status: the one place codes become
/// statuses, an exhaustive `match` (as garage's `common_error.rs`), so a code without a status does
/// not compile. The control plane's kinds come in through [`From<ErrorCode>`], exhaustive too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    InvalidRequest,
    Unauthenticated,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    KeyNotAssociated,
    NotReady,
    KeyDeleted,
    PayloadTooLarge,
    AssociationFailed,
    KeyInaccessible,
    TooManyRequests,
    Internal,
}

impl Code {
    /// The stable, snake_case name in the error object's `code`.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::InvalidRequest => "invalid_request",
            Code::Unauthenticated => "unauthenticated",
            Code::Forbidden => "forbidden",
            Code::NotFound => "not_found",
            Code::MethodNotAllowed => "method_not_allowed",
            Code::Conflict => "conflict",
            Code::KeyNotAssociated => "key_not_associated",
            Code::NotReady => "not_ready",
            Code::KeyDeleted => "key_deleted",
            Code::PayloadTooLarge => "payload_too_large",
            Code::AssociationFailed => "association_failed",
            Code::KeyInaccessible => "key_inaccessible",
            Code::TooManyRequests => "too_many_requests",
            Code::Internal => "internal",
        }
    }

    /// The HTTP status answered with the code.
    pub fn status(self) -> StatusCode {
        match self {
            Code::InvalidRequest => StatusCode::BAD_REQUEST,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::Forbidden => StatusCode::FORBIDDEN,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Code::Conflict | Code::KeyNotAssociated | Code::NotReady => StatusCode::CONFLICT,
            Code::KeyDeleted => StatusCode::GONE,
            Code::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Code::AssociationFailed => StatusCode::UNPROCESSABLE_ENTITY,
            Code::KeyInaccessible => StatusCode::LOCKED,
            Code::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<ErrorCode> for Code {
    fn from(code: ErrorCode) -> Code {
        match code {
            ErrorCode::NotFound => Code::NotFound,
            ErrorCode::Unauthenticated => Code::Unauthenticated,
            ErrorCode::InvalidRequest => Code::InvalidRequest,
            ErrorCode::Conflict => Code::Conflict,
            ErrorCode::KeyNotAssociated => Code::KeyNotAssociated,
            ErrorCode::NotReady => Code::NotReady,
            ErrorCode::AssociationFailed => Code::AssociationFailed,
            ErrorCode::KeyInaccessible => Code::KeyInaccessible,
            ErrorCode::KeyDeleted => Code::KeyDeleted,
            ErrorCode::Internal => Code::Internal,
        }
    }
}

/// A failed request. `details` adds fields to the error object (the association report, the
/// reason a key is inaccessible).
#[derive(Debug)]
pub struct ApiError {
    pub code: Code,
    pub message: String,
    pub details: Option<(&'static str, serde_json::Value)>,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            details: None,
        }
    }

    pub fn unauthenticated(message: impl Into<String>) -> ApiError {
        ApiError::new(Code::Unauthenticated, message)
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(Code::InvalidRequest, message)
    }
}

impl From<keyward_control::Error> for ApiError {
    fn from(error: keyward_control::Error) -> ApiError {
        let code = Code::from(error.code());
        if code == Code::Internal {
            // The full error goes to the log; the caller learns only that it was ours.
            tracing::error!(%error, "internal error answering a request");
            return ApiError::new(
                Code::Internal,
                "internal error; the server log has the details",
            );
        }
        let details = match &error {
            keyward_control::Error::AssociationFailed(report) => {
                serde_json::to_value(report).ok().map(|v| ("report", v))
            }
            keyward_control::Error::KeyInaccessible { reason, .. } => {
                serde_json::to_value(reason).ok().map(|v| ("reason", v))
            }
            _ => None,
        };
        ApiError {
            code,
            message: error.to_string(),
            details,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({"code": self.code.as_str(), "message": self.message});
        if let Some((name, value)) = self.details {
            body[name] = value;
        }
        let mut response = (
            self.code.status(),
            axum::Json(serde_json::json!({ "error": body })),
        )
            .into_response();
        if self.code == Code::TooManyRequests {
            // The permits free as soon as the requests in flight end.
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        if self.code == Code::Unauthenticated {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_contract_code_has_its_status() {
        for (code, name, status) in [
            (Code::NotFound, "not_found", 404),
            (Code::Unauthenticated, "unauthenticated", 401),
            (Code::Forbidden, "forbidden", 403),
            (Code::InvalidRequest, "invalid_request", 400),
            (Code::Conflict, "conflict", 409),
            (Code::KeyNotAssociated, "key_not_associated", 409),
            (Code::NotReady, "not_ready", 409),
            (Code::AssociationFailed, "association_failed", 422),
            (Code::KeyInaccessible, "key_inaccessible", 423),
            (Code::KeyDeleted, "key_deleted", 410),
            (Code::Internal, "internal", 500),
            (Code::PayloadTooLarge, "payload_too_large", 413),
            (Code::MethodNotAllowed, "method_not_allowed", 405),
            (Code::TooManyRequests, "too_many_requests", 429),
        ] {
            assert_eq!(code.as_str(), name);
            assert_eq!(code.status().as_u16(), status, "{name}");
        }
    }

    #[test]
    fn control_kinds_keep_their_names() {
        for kind in [
            ErrorCode::NotFound,
            ErrorCode::Unauthenticated,
            ErrorCode::InvalidRequest,
            ErrorCode::Conflict,
            ErrorCode::KeyNotAssociated,
            ErrorCode::NotReady,
            ErrorCode::AssociationFailed,
            ErrorCode::KeyInaccessible,
            ErrorCode::KeyDeleted,
            ErrorCode::Internal,
        ] {
            assert_eq!(Code::from(kind).as_str(), kind.as_str());
        }
    }
}
