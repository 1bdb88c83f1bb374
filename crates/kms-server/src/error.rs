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

/// The HTTP status of an answer, one arm per kind of refusal so that none falls to a default: the
/// engine's own mapping ([`keyward_kms::Code::http_status`]) for the engine's refusals; for the
/// wire's, what AWS KMS answers: 400 for the SigV4 and target failures (KMS answers 400 for nearly
/// every client error, AccessDeniedException included), 413 for an oversize body, 500 for our own
/// failures.
pub fn status_of(error: &Error) -> StatusCode {
    match error {
        Error::Api { code, .. } => StatusCode::from_u16(code.http_status())
            .expect("the engine's statuses are valid HTTP statuses"),
        Error::MissingAuthenticationToken
        | Error::IncompleteSignature(_)
        | Error::UnrecognizedClient
        | Error::ExpiredToken
        | Error::InvalidSignature(_)
        | Error::UnknownOperation(_) => StatusCode::BAD_REQUEST,
        Error::RequestTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        Error::Io(_) | Error::Engine(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_aws() {
        let api = |code| Error::Api {
            code,
            message: String::new(),
        };
        for (error, status) in [
            (api(keyward_kms::Code::NotFoundException), 400),
            (api(keyward_kms::Code::AccessDeniedException), 400),
            (api(keyward_kms::Code::KMSInternalException), 500),
            (Error::InvalidSignature(String::new()), 400),
            (Error::MissingAuthenticationToken, 400),
            (Error::UnrecognizedClient, 400),
            (Error::ExpiredToken, 400),
            (Error::UnknownOperation(String::new()), 400),
            (Error::RequestTooLarge { limit: 1 }, 413),
            (Error::Engine(String::new()), 500),
        ] {
            assert_eq!(status_of(&error).as_u16(), status, "{error:?}");
        }
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
