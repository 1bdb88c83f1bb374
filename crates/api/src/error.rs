//! Errors: the crate's own [`Error`], and [`ApiError`], what a request is answered with when it
//! fails — `{"error": {"code": "...", "message": "...", ...}}` with the HTTP status of its code.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

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

/// The HTTP status of an error code: the one place codes become statuses.
pub fn status_of(code: &str) -> StatusCode {
    match code {
        "invalid_request" => StatusCode::BAD_REQUEST,
        "unauthenticated" => StatusCode::UNAUTHORIZED,
        "not_found" => StatusCode::NOT_FOUND,
        "method_not_allowed" => StatusCode::METHOD_NOT_ALLOWED,
        "conflict" | "key_not_associated" | "not_ready" => StatusCode::CONFLICT,
        "key_deleted" => StatusCode::GONE,
        "payload_too_large" => StatusCode::PAYLOAD_TOO_LARGE,
        "association_failed" => StatusCode::UNPROCESSABLE_ENTITY,
        "key_inaccessible" => StatusCode::LOCKED,
        "too_many_requests" => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A failed request. `details` adds fields to the error object (the association report, the
/// reason a key is inaccessible).
#[derive(Debug)]
pub struct ApiError {
    pub code: &'static str,
    pub message: String,
    pub details: Option<(&'static str, serde_json::Value)>,
}

impl ApiError {
    pub fn new(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            details: None,
        }
    }

    pub fn unauthenticated(message: impl Into<String>) -> ApiError {
        ApiError::new("unauthenticated", message)
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new("invalid_request", message)
    }
}

impl From<keyward_control::Error> for ApiError {
    fn from(error: keyward_control::Error) -> ApiError {
        let code = error.code();
        if code == "internal" {
            // The full error goes to the log; the caller learns only that it was ours.
            tracing::error!(%error, "internal error answering a request");
            return ApiError::new("internal", "internal error; the server log has the details");
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
        let mut body = serde_json::json!({"code": self.code, "message": self.message});
        if let Some((name, value)) = self.details {
            body[name] = value;
        }
        let mut response = (
            status_of(self.code),
            axum::Json(serde_json::json!({ "error": body })),
        )
            .into_response();
        if self.code == "too_many_requests" {
            // The permits free as soon as the requests in flight end.
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        if self.code == "unauthenticated" {
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
        for (code, status) in [
            ("not_found", 404),
            ("unauthenticated", 401),
            ("invalid_request", 400),
            ("conflict", 409),
            ("key_not_associated", 409),
            ("not_ready", 409),
            ("association_failed", 422),
            ("key_inaccessible", 423),
            ("key_deleted", 410),
            ("internal", 500),
            ("payload_too_large", 413),
            ("method_not_allowed", 405),
            ("too_many_requests", 429),
        ] {
            assert_eq!(status_of(code).as_u16(), status, "{code}");
        }
    }
}
