//! The console: the guide's screens as a few pages served on the API listener, and its sign-in.
//!
//! The pages are plain HTML, CSS and one vanilla script embedded in the binary
//! (`include_str!`): nothing is fetched at run time and no framework is loaded. The script calls
//! the same JSON API as the CLI, authenticated by a session cookie instead of a bearer token, and
//! polls it every [`POLL_SECONDS`] seconds for what changes by itself (key health, provisioning
//! and re-wrap progress, alarms); it says so in the page.
//!
//! Sign-in: `POST /console/session` with an organization's token answers a session cookie
//! (`HttpOnly`, `SameSite=Strict`, [`SESSION_LIFETIME`]) and a CSRF token. The session id is 32
//! random bytes; only its SHA-256 is kept, in memory, beside the organization's token (checked
//! again on every request, so a revoked token ends its sessions) and the CSRF token. A request
//! authenticated by the cookie that is not `GET`/`HEAD` must carry the CSRF token in the
//! [`CSRF_HEADER`] header, compared in constant time; without it the answer is `403 forbidden`
//! and nothing changes. A request with an `Authorization` header is a bearer request as before:
//! the cookie is not looked at.
//!
//! Every answer of the listener carries a strict Content-Security-Policy (`default-src 'self'`,
//! no inline script or style, `frame-ancestors 'none'`), `X-Frame-Options: DENY`,
//! `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer` and `Cache-Control:
//! no-store`.
//!
//! What it does not do: sessions do not survive a restart of the server (sign in again), the
//! cookie is not `Secure` (the listener speaks plain HTTP on loopback; behind a TLS terminator
//! that is what protects it in transit), and the console's routes ([`ROUTES`]) are not in the
//! OpenAPI document, which describes the JSON API.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use base64::Engine as _;
use keyward_control::{OrgId, Organization};
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::error::{ApiError, Code};
use crate::AppState;

type ApiResult<T = Response> = std::result::Result<T, ApiError>;

/// The console's routes, outside the OpenAPI document (which describes the JSON API).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/console/"),
    ("GET", "/console/console.js"),
    ("GET", "/console/console.css"),
    ("GET", "/console/icon.svg"),
    ("POST", "/console/session"),
    ("GET", "/console/session"),
    ("DELETE", "/console/session"),
];

/// The header a cookie-authenticated state change must carry the session's CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The session cookie's name.
pub const SESSION_COOKIE: &str = "keyward_session";
/// How long a session lasts from sign-in, used or not.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// How often the console's script asks the API again for what changes by itself.
pub const POLL_SECONDS: u32 = 1;
/// Sessions kept at most, all organizations together; past it sign-in answers 429.
const MAX_SESSIONS: usize = 10_000;
/// Sessions one organization keeps at most; a new one ends its oldest.
const MAX_SESSIONS_PER_ORG: usize = 32;

const INDEX_HTML: &str = include_str!("../console/index.html");
const CONSOLE_JS: &str = include_str!("../console/console.js");
const CONSOLE_CSS: &str = include_str!("../console/console.css");
const ICON_SVG: &str = include_str!("../console/icon.svg");

/// The policy of every answer: only this origin's scripts, styles, images and connections; no
/// inline code, no plugins, no framing, forms post here only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// The console's sessions, by the SHA-256 of their id.
#[derive(Default)]
pub(crate) struct Sessions(Mutex<HashMap<[u8; 32], Session>>);

struct Session {
    organization: Organization,
    /// The organization token signed in with, authenticated again on each request.
    token: Zeroizing<String>,
    csrf: Zeroizing<String>,
    created: Instant,
    expires: Instant,
    expires_at_ms: i64,
}

/// 32 random bytes in unpadded base64url.
fn random_token() -> ApiResult<Zeroizing<String>> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(&mut bytes[..])
        .map_err(|_| ApiError::new(Code::Internal, "the random generator failed"))?;
    Ok(Zeroizing::new(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes[..]),
    ))
}

/// The map key of a session id: its digest, so the map's lookup (not constant-time) reveals
/// nothing of an id an attacker could use.
fn session_key(id: &str) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, id.as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(digest.as_ref());
    key
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new session for `organization`: (session id, CSRF token, expiry in unix ms).
    fn open(
        &self,
        organization: Organization,
        token: Zeroizing<String>,
    ) -> ApiResult<(Zeroizing<String>, Zeroizing<String>, i64)> {
        let id = random_token()?;
        let csrf = random_token()?;
        let now = Instant::now();
        let expires_at_ms = now_ms() + SESSION_LIFETIME.as_millis() as i64;
        let mut map = self.lock();
        map.retain(|_, s| s.expires > now);
        let org_id: &OrgId = &organization.id;
        let mine: Vec<([u8; 32], Instant)> = map
            .iter()
            .filter(|(_, s)| &s.organization.id == org_id)
            .map(|(k, s)| (*k, s.created))
            .collect();
        if mine.len() >= MAX_SESSIONS_PER_ORG {
            if let Some((oldest, _)) = mine.iter().min_by_key(|(_, created)| *created) {
                map.remove(oldest);
            }
        }
        if map.len() >= MAX_SESSIONS {
            return Err(ApiError::new(
                Code::TooManyRequests,
                format!("the console has {MAX_SESSIONS} sessions open, its limit; retry later"),
            ));
        }
        map.insert(
            session_key(&id),
            Session {
                organization,
                token,
                csrf: csrf.clone(),
                created: now,
                expires: now + SESSION_LIFETIME,
                expires_at_ms,
            },
        );
        Ok((id, csrf, expires_at_ms))
    }

    /// The live session of `id`: (organization, its token, CSRF token, expiry in unix ms).
    fn find(&self, id: &str) -> Option<(Organization, Zeroizing<String>, Zeroizing<String>, i64)> {
        let key = session_key(id);
        let mut map = self.lock();
        let session = map.get(&key)?;
        if session.expires <= Instant::now() {
            map.remove(&key);
            return None;
        }
        Some((
            session.organization.clone(),
            session.token.clone(),
            session.csrf.clone(),
            session.expires_at_ms,
        ))
    }

    fn close(&self, id: &str) {
        self.lock().remove(&session_key(id));
    }
}

/// The session cookie's value in the request, if any.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty())
}

/// Whether the request carries `csrf` in [`CSRF_HEADER`], compared in constant time.
fn csrf_matches(headers: &HeaderMap, csrf: &str) -> bool {
    let Some(presented) = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let digest = |s: &str| aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes());
    aws_lc_rs::constant_time::verify_slices_are_equal(
        digest(presented).as_ref(),
        digest(csrf).as_ref(),
    )
    .is_ok()
}

fn is_safe(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

/// The organization token behind the request's session cookie, for a request without an
/// `Authorization` header: `None` without a cookie; `401` for an unknown or expired session;
/// `403` for a state change without the session's CSRF token.
pub(crate) fn session_token(
    parts: &Parts,
    state: &AppState,
) -> ApiResult<Option<Zeroizing<String>>> {
    let Some(id) = session_cookie(&parts.headers) else {
        return Ok(None);
    };
    let (_, token, csrf, _) = state.0.sessions.find(id).ok_or_else(|| {
        ApiError::unauthenticated("the console session has ended or expired: sign in again")
    })?;
    if !is_safe(&parts.method) && !csrf_matches(&parts.headers, &csrf) {
        return Err(ApiError::new(
            Code::Forbidden,
            format!(
                "a change made with the console's session cookie must carry the session's CSRF token in the {CSRF_HEADER} header"
            ),
        ));
    }
    Ok(Some(token))
}

/// The console's routes, added to the API's router.
pub(crate) fn routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    let page = |body: &'static str, content_type: &'static str| {
        get(move || async move {
            (
                [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
                body,
            )
                .into_response()
        })
    };
    vec![
        ("/", get(|| async { redirect("/console/") })),
        ("/console/", page(INDEX_HTML, "text/html; charset=utf-8")),
        (
            "/console/console.js",
            page(CONSOLE_JS, "text/javascript; charset=utf-8"),
        ),
        (
            "/console/console.css",
            page(CONSOLE_CSS, "text/css; charset=utf-8"),
        ),
        ("/console/icon.svg", page(ICON_SVG, "image/svg+xml")),
        (
            "/console/session",
            get(show_session).post(sign_in).delete(sign_out),
        ),
    ]
}

fn redirect(to: &'static str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, HeaderValue::from_static(to))],
    )
        .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    token: String,
}

fn session_body(organization: &Organization, csrf: &str, expires_at_ms: i64) -> serde_json::Value {
    serde_json::json!({
        "organization": organization,
        "csrf_token": csrf,
        "expires_at_ms": expires_at_ms,
        "poll_seconds": POLL_SECONDS,
    })
}

/// `POST /console/session`: `{"token": "<organization token>"}` as JSON (a cross-site form
/// cannot send that without a preflight this server never grants) answers the session cookie
/// and the CSRF token.
async fn sign_in(State(state): State<AppState>, headers: HeaderMap, body: Body) -> ApiResult {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next() == Some("application/json"));
    if !json {
        return Err(ApiError::invalid(
            "sign-in takes a JSON body {\"token\": \"...\"} with Content-Type: application/json",
        ));
    }
    let bytes = crate::routes::read_body(body, state.0.limits.max_json_bytes).await?;
    let request: SignIn = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::invalid(format!("the JSON body is not valid: {e}")))?;
    let given = Zeroizing::new(request.token);
    let token = Zeroizing::new(given.trim().to_owned());
    if token.is_empty() {
        return Err(ApiError::invalid("enter your organization's API token"));
    }
    if state.0.admin.matches(&token) {
        return Err(ApiError::unauthenticated(
            "the admin token cannot sign in to the console; use an organization's token",
        ));
    }
    let organization = state.0.plane.authenticate(&token).await?;
    let (id, csrf, expires_at_ms) = state.0.sessions.open(organization.clone(), token)?;
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        id.as_str(),
        SESSION_LIFETIME.as_secs()
    );
    let mut response = (
        StatusCode::CREATED,
        axum::Json(session_body(&organization, &csrf, expires_at_ms)),
    )
        .into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie)
            .map_err(|_| ApiError::new(Code::Internal, "the session cookie is not a header"))?,
    );
    Ok(response)
}

/// `GET /console/session`: the signed-in organization and the CSRF token (a page loaded again
/// learns it here; another origin cannot read the answer).
async fn show_session(State(state): State<AppState>, headers: HeaderMap) -> ApiResult {
    let (organization, token, csrf, expires_at_ms) = session_cookie(&headers)
        .and_then(|id| state.0.sessions.find(id))
        .ok_or_else(|| ApiError::unauthenticated("not signed in"))?;
    // A token revoked since sign-in ends the session.
    state.0.plane.authenticate(&token).await?;
    Ok((
        StatusCode::OK,
        axum::Json(session_body(&organization, &csrf, expires_at_ms)),
    )
        .into_response())
}

/// `DELETE /console/session`: signs out (CSRF token required) and clears the cookie.
async fn sign_out(State(state): State<AppState>, headers: HeaderMap) -> ApiResult {
    let id = session_cookie(&headers).ok_or_else(|| ApiError::unauthenticated("not signed in"))?;
    let (_, _, csrf, _) = state
        .0
        .sessions
        .find(id)
        .ok_or_else(|| ApiError::unauthenticated("not signed in"))?;
    if !csrf_matches(&headers, &csrf) {
        return Err(ApiError::new(
            Code::Forbidden,
            format!("signing out takes the session's CSRF token in the {CSRF_HEADER} header"),
        ));
    }
    state.0.sessions.close(id);
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("keyward_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    Ok(response)
}

/// The security headers of every answer (see the module's documentation).
pub(crate) async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        ("content-security-policy", CONTENT_SECURITY_POLICY),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
    ] {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(id: &str) -> Organization {
        Organization {
            id: id.into(),
            name: "acme".into(),
        }
    }

    #[test]
    fn a_session_is_found_by_its_id_only_and_ends_when_closed() {
        let sessions = Sessions::default();
        let (id, csrf, _) = sessions
            .open(org("o-1"), Zeroizing::new("kw_x".into()))
            .unwrap();
        let (found, token, found_csrf, _) = sessions.find(&id).unwrap();
        assert_eq!(found.id, "o-1");
        assert_eq!(token.as_str(), "kw_x");
        assert_eq!(found_csrf.as_str(), csrf.as_str());
        assert!(sessions.find(&id[1..]).is_none());
        assert!(sessions.find(csrf.as_str()).is_none());
        sessions.close(&id);
        assert!(sessions.find(&id).is_none());
    }

    #[test]
    fn an_organization_keeps_a_bounded_number_of_sessions_its_oldest_ending_first() {
        let sessions = Sessions::default();
        let first = sessions
            .open(org("o-1"), Zeroizing::new("kw_x".into()))
            .unwrap()
            .0;
        let other = sessions
            .open(org("o-2"), Zeroizing::new("kw_y".into()))
            .unwrap()
            .0;
        for _ in 0..MAX_SESSIONS_PER_ORG {
            std::thread::sleep(Duration::from_millis(1));
            sessions
                .open(org("o-1"), Zeroizing::new("kw_x".into()))
                .unwrap();
        }
        assert!(sessions.find(&first).is_none(), "the oldest ended");
        assert!(sessions.find(&other).is_some(), "another org's untouched");
        assert_eq!(sessions.lock().len(), MAX_SESSIONS_PER_ORG + 1);
    }

    #[test]
    fn the_cookie_and_the_csrf_header_are_read_exactly() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; keyward_session=abc ; b=2"),
        );
        assert_eq!(session_cookie(&headers), Some("abc"));
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("xkeyward_session=abc"),
        );
        assert_eq!(session_cookie(&headers), None);
        headers.insert(CSRF_HEADER, HeaderValue::from_static("tok"));
        assert!(csrf_matches(&headers, "tok"));
        assert!(!csrf_matches(&headers, "to"));
        assert!(!csrf_matches(&HeaderMap::new(), "tok"));
    }
}
