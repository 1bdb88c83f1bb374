//! What the API records of each request: a request id (a `request` span around the handler, so
//! every log line it makes carries the id, and the `x-request-id` header of the answer) and a
//! count by method, route and status for `GET /metrics`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use keyward_control::Exposition;
use tracing::Instrument;

use crate::AppState;

/// The header that carries a request's id in the answer.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Requests answered, by (method, route template, status). Bounded: routes are the router's
/// templates (any path no route matches is `unmatched`), methods are the ones routed and the
/// rest `other`, statuses are three digits.
#[derive(Default)]
pub(crate) struct HttpCounts(Mutex<BTreeMap<(&'static str, String, u16), u64>>);

impl HttpCounts {
    fn count(&self, method: &'static str, route: String, status: u16) {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *counts.entry((method, route, status)).or_default() += 1;
    }

    pub(crate) fn write(&self, out: &mut Exposition) {
        out.family(
            "keyward_api_requests_total",
            "counter",
            "API requests answered, by method, route and HTTP status.",
        );
        let counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for ((method, route, status), count) in counts.iter() {
            out.sample(
                "keyward_api_requests_total",
                &[
                    ("method", method),
                    ("route", route),
                    ("status", &status.to_string()),
                ],
                *count as f64,
            );
        }
    }
}

fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        _ => "other",
    }
}

/// A fresh request id: 16 hex digits of randomness (a time-ordered counter would tell callers
/// how busy the server is).
fn request_id() -> String {
    let mut bytes = [0u8; 8];
    // A failing random generator leaves zeros: the id is for correlation, not a secret.
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    format!("{:016x}", u64::from_be_bytes(bytes))
}

/// The middleware: runs the request inside its span, counts its answer, names its id.
pub(crate) async fn observe(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let id = request_id();
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let span = tracing::info_span!("request", id = %id, method, route = %route);
    let mut response = next.run(request).instrument(span.clone()).await;
    span.in_scope(|| tracing::debug!(status = response.status().as_u16(), "answered"));
    state
        .0
        .http
        .count(method, route, response.status().as_u16());
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}
