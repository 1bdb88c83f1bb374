//! The keyward REST API: the HTTP face of [`keyward_control::ControlPlane`].
//!
//! What it does:
//! - [`router`]: every route of the API (see [`ROUTES`] and the OpenAPI 3.1 document served at
//!   `GET /v1/openapi.json`, [`OPENAPI_JSON`]), each a thin translation of one facade call.
//! - Authentication: `Authorization: Bearer <token>` (or the console's session cookie) on every
//!   route but `GET /healthz`, `GET /livez`, `GET /readyz` (probes of load balancers, which
//!   carry no credentials; their answers hold no tenant data), `GET /v1/openapi.json` and the
//!   console's pages. Organization tokens are checked by the control plane (which scopes
//!   every cluster by organization, so another organization's cluster is `not_found`); the one
//!   admin routes (`/v1/organizations...`, `GET /metrics`) take the bootstrap [`AdminToken`], compared in
//!   constant time.
//! - Errors: `{"error": {"code", "message"}}` with the HTTP status mapped from the code in one
//!   `match` ([`Code::status`]); internal errors answer a generic message and are logged in
//!   full. Request bodies are bounded ([`Limits`]): too large is `413 payload_too_large`.
//! - Documents stream: an upload is encrypted as it arrives and a download decrypted as it is
//!   sent, so a request's memory is a few frames and upload parts whatever the document's size.
//!   A download that fails after its first byte (the key seen inaccessible, a frame that fails
//!   authentication) is aborted, never ended as if whole.
//! - Observability: `GET /metrics` (admin token: it shows every organization's clusters) in
//!   Prometheus's text format — the control plane's KMS, cache, byte and key-health figures and
//!   the API's requests by route and status; every request runs in a `request` span with a
//!   random id, sent back as `x-request-id`.
//! - [`embedded`]: the identities of the embedded setup (`keyward up` and tests).
//! - [`console`]: the console, the guide's screens as pages on the same listener (HTML, CSS and
//!   a vanilla script embedded in the binary) calling this API with a session cookie (`HttpOnly`,
//!   `SameSite=Strict`) and a CSRF token required on every change; it polls for what changes by
//!   itself. Every answer carries a strict Content-Security-Policy, `X-Frame-Options: DENY` and
//!   `nosniff`. Bearer requests are unchanged: with an `Authorization` header the cookie is not
//!   looked at.
//!
//! - Concurrency: each organization has at most [`Limits::max_data_requests_per_org`] data
//!   requests in flight; more answer `429 too_many_requests` with `Retry-After` before anything
//!   is read or written.
//!
//! What it does not do: TLS (it listens on loopback; put a TLS terminator in front to expose it),
//! rate limiting over time (only concurrency is capped), or any business rule — those live in
//! the control plane.

#![forbid(unsafe_code)]

pub mod console;
pub mod embedded;
pub mod error;
mod observe;
mod routes;

use std::future::Future;
use std::sync::Arc;

use zeroize::Zeroizing;

pub use error::{ApiError, Code, Error, Result};
pub use observe::REQUEST_ID_HEADER;
pub use routes::{router, ROUTES};

/// The OpenAPI 3.1 document of this API, as served at `GET /v1/openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("../openapi.json");

/// The default largest document: 5 GiB, the largest object S3 takes in one `PutObject`.
pub const DEFAULT_MAX_DOCUMENT_BYTES: u64 = 5 << 30;

/// Upper bounds of request bodies.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// JSON bodies (cluster creation, key association, organizations). 64 KiB: the largest is a
    /// key ARN or a name; AWS caps a whole key policy at 32 KiB.
    pub max_json_bytes: u64,
    /// A document uploaded with `PUT /v1/clusters/{id}/documents/{name}`. Documents are streamed
    /// (encrypted as they arrive, decrypted as they are sent), so this bounds what a cluster
    /// stores per document, not memory. A `Content-Length` over it is refused before reading; a
    /// body without one is cut at it; either way `413 payload_too_large` and nothing is stored.
    pub max_document_bytes: u64,
    /// Data requests (document put/get/delete/list, backup create/restore) one organization may
    /// have in flight at once; past it the API answers `429 too_many_requests` with
    /// `Retry-After`. Each holds its permit for the whole request, the body read included.
    pub max_data_requests_per_org: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_json_bytes: 64 * 1024,
            max_document_bytes: DEFAULT_MAX_DOCUMENT_BYTES,
            max_data_requests_per_org: 8,
        }
    }
}

/// The bootstrap admin token: it may create organizations (and nothing else). Not `Debug`, not
/// `Clone`, wiped on drop; compared in constant time.
pub struct AdminToken(Zeroizing<String>);

/// The prefix of admin tokens, so a leaked one is recognisable.
pub const ADMIN_TOKEN_PREFIX: &str = "kwadmin_";

impl AdminToken {
    /// A new random token: `kwadmin_` and 32 random bytes in unpadded base64url.
    pub fn generate() -> Result<AdminToken> {
        use base64::Engine as _;
        let mut bytes = Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::fill(&mut bytes[..])
            .map_err(|_| Error::Internal("the random generator failed".into()))?;
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes[..]);
        Ok(AdminToken(Zeroizing::new(format!(
            "{ADMIN_TOKEN_PREFIX}{encoded}"
        ))))
    }

    /// A token read back from where it was kept (e.g. `keyward up`'s data directory).
    pub fn from_string(token: String) -> Result<AdminToken> {
        let token = Zeroizing::new(token);
        if token.len() < ADMIN_TOKEN_PREFIX.len() + 32 || !token.starts_with(ADMIN_TOKEN_PREFIX) {
            return Err(Error::InvalidAdminToken);
        }
        Ok(AdminToken(token))
    }

    /// The token, to hand to its owner. The one way to read it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this token. Both are hashed first so the comparison is of equal
    /// lengths and takes the same time wherever they differ.
    pub fn matches(&self, presented: &str) -> bool {
        use aws_lc_rs::digest::{digest, SHA256};
        let ours = digest(&SHA256, self.0.as_bytes());
        let theirs = digest(&SHA256, presented.as_bytes());
        aws_lc_rs::constant_time::verify_slices_are_equal(ours.as_ref(), theirs.as_ref()).is_ok()
    }
}

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(Error::Io)
}

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState(pub(crate) Arc<Shared>);

pub(crate) struct Shared {
    pub(crate) plane: keyward_control::ControlPlane,
    pub(crate) admin: AdminToken,
    pub(crate) limits: Limits,
    /// Each organization's data-request permits. Entries are made only after a token
    /// authenticated (so only for organizations that exist) and dropped when idle once the map
    /// is full, so it stays bounded.
    pub(crate) data_permits: std::sync::Mutex<
        std::collections::HashMap<keyward_control::OrgId, Arc<tokio::sync::Semaphore>>,
    >,
    /// Requests answered, for `GET /metrics`.
    pub(crate) http: observe::HttpCounts,
    /// The console's signed-in sessions.
    pub(crate) sessions: console::Sessions,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_tokens_match_only_themselves() {
        let token = AdminToken::generate().unwrap();
        assert!(token.expose().starts_with(ADMIN_TOKEN_PREFIX));
        assert!(token.matches(token.expose()));
        let other = AdminToken::generate().unwrap();
        assert!(!token.matches(other.expose()));
        assert!(!token.matches(""));
        assert!(!token.matches(&token.expose()[..token.expose().len() - 1]));
        let back = AdminToken::from_string(token.expose().to_owned()).unwrap();
        assert!(back.matches(token.expose()));
        assert!(AdminToken::from_string("kwadmin_short".into()).is_err());
        assert!(AdminToken::from_string(format!("kw_{}", "a".repeat(43))).is_err());
    }
}
