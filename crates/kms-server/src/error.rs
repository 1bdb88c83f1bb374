//! The wire's errors, and the one place that maps an AWS error code to its HTTP status.

use axum::http::StatusCode;

/// Why a request was refused before (or after) it reached the engine.
///
/// Messages never carry secrets: signature failures say that the signature did not match, not what
/// it should have been.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No `Authorization` header.
    #[error("Request is missing Authentication Token")]
    MissingAuthenticationToken,
    /// A malformed `Authorization` header or missing date.
    #[error("{0}")]
    IncompleteSignature(String),
    /// Unknown access key id, or a session token that does not match it.
    #[error("The security token included in the request is invalid.")]
    UnrecognizedClient,
    /// A temporary (STS) access key past its expiration on the KMS clock.
    #[error("The security token included in the request is expired")]
    ExpiredToken,
    /// Bad signature, wrong scope, or a date more than 15 minutes away.
    #[error("{0}")]
    InvalidSignature(String),
    /// `X-Amz-Target` missing or naming no service we serve.
    #[error("{0}")]
    UnknownOperation(String),
    /// The body exceeds [`crate::MAX_BODY_BYTES`].
    #[error("Request body exceeds the maximum allowed size of {limit} bytes.")]
    RequestTooLarge { limit: usize },
    /// The engine's answer: AWS's exception name and message.
    #[error("{message}")]
    Api {
        code: keyward_kms::Code,
        message: String,
    },
    /// Binding, accepting or serving connections failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The engine failed outside a request (open, reset, clock).
    #[error("KMS engine: {0}")]
    Engine(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// AWS's exception name, as written in `__type`.
    pub fn aws_code(&self) -> &'static str {
        match self {
            Error::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            Error::IncompleteSignature(_) => "IncompleteSignatureException",
            Error::UnrecognizedClient => "UnrecognizedClientException",
            Error::ExpiredToken => "ExpiredTokenException",
            Error::InvalidSignature(_) => "InvalidSignatureException",
            Error::UnknownOperation(_) => "UnknownOperationException",
            Error::RequestTooLarge { .. } => "RequestEntityTooLargeException",
            Error::Api { code, .. } => code.as_str(),
            Error::Io(_) | Error::Engine(_) => "InternalFailure",
        }
    }

    /// The message sent to the client. Internal failures are answered generically (and logged in full
    /// by the caller).
    pub fn client_message(&self) -> String {
        match self {
            Error::Io(_) | Error::Engine(_) => {
                "We encountered an internal error. Please try again.".into()
            }
            other => other.to_string(),
        }
    }
}

/// The HTTP status of an answer: the engine's own mapping ([`keyward_kms::Code::http_status`])
/// for the engine's refusals, [`http_status`] for the wire's.
pub fn status_of(error: &Error) -> StatusCode {
    match error {
        Error::Api { code, .. } => StatusCode::from_u16(code.http_status())
            .expect("the engine's statuses are valid HTTP statuses"),
        other => http_status(other.aws_code()),
    }
}

/// The HTTP status AWS KMS (and CloudTrail) answer for each exception name. KMS answers 400 for
/// nearly every client error, including AccessDeniedException and the SigV4 failures; only internal
/// and dependency failures are 5xx.
pub fn http_status(code: &str) -> StatusCode {
    match code {
        "KMSInternalException" | "InternalFailure" | "CloudTrailInternalException" => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        "DependencyTimeoutException" | "ServiceUnavailable" | "ServiceUnavailableException" => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        "RequestEntityTooLargeException" => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_aws() {
        assert_eq!(http_status("NotFoundException"), StatusCode::BAD_REQUEST);
        assert_eq!(
            http_status("AccessDeniedException"),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            http_status("InvalidSignatureException"),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            http_status("KMSInternalException"),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            http_status("DependencyTimeoutException"),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            Error::RequestTooLarge { limit: 1 }.aws_code(),
            "RequestEntityTooLargeException"
        );
    }

    #[test]
    fn internal_errors_do_not_leak_detail() {
        let error = Error::Engine("disk /secret/path failed".into());
        assert!(!error.client_message().contains("/secret"));
    }
}
