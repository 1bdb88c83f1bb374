//! The admin routes a dev engine may serve: `POST /_keyward/clock` (move the KMS clock forward, to
//! watch a rotation or a deletion window complete) and `POST /_keyward/reset` (delete every key,
//! alias, grant and trail record). Both are off unless [`crate::ServeOptions`] turns them on.
//!
//! Every admin request is authenticated: a SigV4 signature (service `kms`) by an account's **root**
//! principal, or `Authorization: Bearer <token>` with the admin token the server was given. IAM
//! users, role sessions, unsigned and badly signed requests are refused with AWS's errors and
//! change nothing. A browser page cannot forge either: both need an `Authorization` header, which a
//! cross-origin page can only send after a CORS preflight that this server never answers.

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::response::Response;
use keyward_kms::IdentityKind;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::Error;
use crate::wire::{error_response, read_body, verify, AppState, Shared};

pub(crate) const CLOCK_PATH: &str = "/_keyward/clock";
pub(crate) const RESET_PATH: &str = "/_keyward/reset";

/// The largest single move of the test clock: ten years, more than any deletion window (30 days)
/// or rotation period (2,560 days) a test needs to pass.
pub const MAX_CLOCK_ADVANCE_SECONDS: u64 = 10 * 365 * 86_400;

/// A bearer token accepted on the admin routes. Only its SHA-256 is kept, compared in constant time.
pub struct AdminToken {
    digest: Zeroizing<[u8; 32]>,
}

impl AdminToken {
    pub fn new(token: &str) -> AdminToken {
        AdminToken {
            digest: Zeroizing::new(sha256(token.as_bytes())),
        }
    }

    fn matches(&self, presented: &str) -> bool {
        bool::from(sha256(presented.as_bytes()).ct_eq(&*self.digest))
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Who may use the admin routes: an account root by SigV4, or the holder of the admin token.
fn authenticate(
    shared: &Shared,
    parts: &axum::http::request::Parts,
    body: &[u8],
    action: &str,
) -> Result<(), Error> {
    let authorization = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or(Error::MissingAuthenticationToken)?;
    let authorization = authorization.to_str().unwrap_or_default();
    let (scheme, token) = authorization.split_once(' ').unwrap_or((authorization, ""));
    if scheme.eq_ignore_ascii_case("Bearer") {
        return match &shared.admin_token {
            Some(admin) if !token.trim().is_empty() && admin.matches(token.trim()) => Ok(()),
            _ => Err(Error::UnrecognizedClient),
        };
    }
    let verified = verify(shared, parts, body, "kms")?;
    if verified.key.identity.kind != IdentityKind::Root {
        return Err(Error::Api {
            code: keyward_kms::Code::AccessDeniedException,
            message: format!(
                "User: {} is not authorized to perform: keyward:{action}: only an account's root \
                 user (or the admin token) may use the test routes",
                verified.key.identity.arn
            ),
        });
    }
    Ok(())
}

/// Everything every admin route does before its own work: POST only, a bounded body, and
/// [`authenticate`]. The refusal is the answer to send.
async fn admit(shared: &Shared, request: Request, action: &str) -> Result<Bytes, Response> {
    let request_id = new_request_id();
    let (parts, body) = request.into_parts();
    let checked = async {
        let body = read_body(&parts, body).await?;
        authenticate(shared, &parts, &body, action)?;
        if parts.method != Method::POST {
            return Err(Error::UnknownOperation(format!(
                "{action} takes POST, not {}",
                parts.method
            )));
        }
        Ok(body)
    }
    .await;
    checked.map_err(|error| error_response(&error, request_id))
}

fn new_request_id() -> HeaderValue {
    HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
        .expect("a uuid is a valid header value")
}

fn ok() -> Response {
    let mut response = Response::new(axum::body::Body::from("{}"));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert("x-amzn-requestid", new_request_id());
    response
}

fn validation(message: String) -> Response {
    error_response(
        &Error::Api {
            code: keyward_kms::Code::ValidationException,
            message,
        },
        new_request_id(),
    )
}

/// `POST /_keyward/reset`: clear every key, alias, grant and trail record (identities stay).
pub(crate) async fn admin_reset(State(state): State<AppState>, request: Request) -> Response {
    if let Err(refusal) = admit(&state.0, request, "Reset").await {
        return refusal;
    }
    match state.0.engine.reset().await {
        Ok(()) => ok(),
        Err(error) => {
            tracing::error!(%error, "reset failed");
            error_response(&Error::Engine(error.to_string()), new_request_id())
        }
    }
}

/// `POST /_keyward/clock {"advance_seconds": N}`: move the KMS clock forward and run what became
/// due. `N` is 1 to [`MAX_CLOCK_ADVANCE_SECONDS`]; the clock as a whole stays within
/// [`keyward_kms::MAX_CLOCK_OFFSET`] of the wall clock.
pub(crate) async fn admin_clock(State(state): State<AppState>, request: Request) -> Response {
    let body = match admit(&state.0, request, "AdvanceClock").await {
        Ok(body) => body,
        Err(refusal) => return refusal,
    };
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Clock {
        advance_seconds: u64,
    }
    let clock: Clock = match serde_json::from_slice(&body) {
        Ok(clock) => clock,
        Err(_) => {
            return validation(format!(
                "expected {{\"advance_seconds\": N}} with N a whole number from 1 to \
                 {MAX_CLOCK_ADVANCE_SECONDS}"
            ))
        }
    };
    if !(1..=MAX_CLOCK_ADVANCE_SECONDS).contains(&clock.advance_seconds) {
        return validation(format!(
            "1 validation error detected: Value '{}' at 'advanceSeconds' failed to satisfy \
             constraint: Member must have value between 1 and {MAX_CLOCK_ADVANCE_SECONDS}",
            clock.advance_seconds
        ));
    }
    match state
        .0
        .engine
        .advance_clock(std::time::Duration::from_secs(clock.advance_seconds))
        .await
    {
        Ok(()) => ok(),
        Err(error @ keyward_kms::Error::ClockOutOfRange { .. }) => validation(error.to_string()),
        Err(error) => {
            tracing::error!(%error, "moving the clock failed");
            error_response(&Error::Engine(error.to_string()), new_request_id())
        }
    }
}
